// io::Tokenizer against goldens produced by the Hugging Face `tokenizers` library
// (scripts/make_tokenizer_golden.py): every id sequence must match exactly.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "io/tokenizer.h"
#include "io/tokenizer_impl.h"

namespace fs = std::filesystem;
using moekit::io::Tokenizer;
using Json = nlohmann::json;

namespace {

// MOEKIT_TEST_DATA is the tests/ directory; goldens name paths relative to the repository root.
const fs::path kRoot = fs::path(MOEKIT_TEST_DATA).filename() == "tests" ? fs::path(MOEKIT_TEST_DATA).parent_path()
                                                                         : fs::path(MOEKIT_TEST_DATA);
const fs::path kGolden = kRoot / "tests" / "golden" / "tokenizer";

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

Json read_json(const fs::path& p) { return Json::parse(read_file(p)); }

std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (true) {
        size_t nl = text.find('\n', start);
        lines.push_back(text.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
        if (nl == std::string::npos) break;
        start = nl + 1;
    }
    return lines;
}

// ids[from, from + 16) with the total length.
std::string show(const std::vector<int32_t>& ids, size_t from) {
    std::string s = "(" + std::to_string(ids.size()) + " ids) [" + (from > 0 ? "...," : "");
    for (size_t i = from; i < ids.size() && i < from + 16; ++i) s += (i > from ? "," : "") + std::to_string(ids[i]);
    if (ids.size() > from + 16) s += ",...";
    return s + "]";
}

std::string excerpt(const std::string& s, size_t at) {
    size_t b = at > 40 ? at - 40 : 0;
    return Json(s.substr(b, 100)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// A golden "special" entry is the full id list or {"p": prefix, "s": suffix} around plain.
std::vector<int32_t> expand_special(const Json& entry, const std::vector<int32_t>& plain) {
    if (entry.is_array()) return entry.get<std::vector<int32_t>>();
    std::vector<int32_t> out = entry["p"].get<std::vector<int32_t>>();
    out.insert(out.end(), plain.begin(), plain.end());
    for (int32_t id : entry["s"].get<std::vector<int32_t>>()) out.push_back(id);
    return out;
}

class GoldenChecker {
public:
    GoldenChecker(const std::string& name, const Tokenizer& tok) : name_(name), tok_(tok) {}
    void ids(const std::string& what, const std::string& text, bool special, const std::vector<int32_t>& expected) {
        ++checks_;
        auto got = tok_.encode(text, special);
        if (got == expected) return;
        if (++failures_ <= 5) {
            size_t k = 0;
            while (k < got.size() && k < expected.size() && got[k] == expected[k]) ++k;
            size_t from = k > 4 ? k - 4 : 0;
            ADD_FAILURE() << name_ << " " << what << " (add_special_tokens=" << special << ") text="
                          << excerpt(text, 0) << "\n  first difference at id index " << k << "\n  expected "
                          << show(expected, from) << "\n  got      " << show(got, from) << "\n  decoded  "
                          << excerpt(tok_.decode(std::vector<int32_t>(got.begin() + from, got.end())), 40);
        }
    }
    // A null golden means tokenizers itself panicked there (its Strip decoder on an empty token).
    void text(const std::string& what, const std::string& got, const Json& golden) {
        if (golden.is_null()) return;
        const std::string expected = golden.get<std::string>();
        ++checks_;
        if (got == expected) return;
        if (++failures_ <= 5) {
            size_t k = 0;
            while (k < got.size() && k < expected.size() && got[k] == expected[k]) ++k;
            ADD_FAILURE() << name_ << " " << what << ": first difference at byte " << k << "\n  expected "
                          << excerpt(expected, k) << "\n  got      " << excerpt(got, k);
        }
    }
    int checks() const { return checks_; }
    int failures() const { return failures_; }

private:
    std::string name_;
    const Tokenizer& tok_;
    int checks_ = 0, failures_ = 0;
};

}  // namespace

TEST(TokenizerGolden, MatchesHuggingFaceTokenizers) {
    const Json index = read_json(kGolden / "index.json");
    const std::string text = read_file(kGolden / "test_text.txt");
    const auto lines = split_lines(text);
    const auto fuzz = read_json(kGolden / "fuzz_texts.json").get<std::vector<std::string>>();
    int total_checks = 0;
    for (const auto& name : index["goldens"].get<std::vector<std::string>>()) {
        SCOPED_TRACE(name);
        const Json g = read_json(kGolden / (name + ".golden.json"));
        const fs::path dir = kRoot / g["tokenizer_dir"].get<std::string>();
        if (!fs::exists(dir / "tokenizer.json")) {
            ADD_FAILURE() << name << ": " << dir << "/tokenizer.json is missing";
            continue;
        }
        Tokenizer tok = Tokenizer::load(dir);
        GoldenChecker check(name, tok);
        EXPECT_EQ(tok.vocab_size(), g["vocab_size"].get<int64_t>()) << name;

        const auto whole_plain = g["whole"]["plain"].get<std::vector<int32_t>>();
        const auto whole_special = expand_special(g["whole"]["special"], whole_plain);
        check.ids("whole text", text, false, whole_plain);
        check.ids("whole text", text, true, whole_special);
        check.text("decode(whole)", tok.decode(whole_special, false), g["whole"]["decode"]);
        const Json& skip = g["whole"]["decode_skip"];
        check.text("decode(whole, skip_special_tokens)", tok.decode(whole_special, true),
                   skip.is_null() ? g["whole"]["decode"] : skip);

        ASSERT_EQ(g["lines_plain"].size(), lines.size()) << name;
        for (size_t i = 0; i < lines.size(); ++i) {
            const auto plain = g["lines_plain"][i].get<std::vector<int32_t>>();
            check.ids("line " + std::to_string(i + 1), lines[i], false, plain);
            if (g.contains("lines_special")) {
                check.ids("line " + std::to_string(i + 1), lines[i], true,
                          g["lines_special"][i].get<std::vector<int32_t>>());
            }
            check.text("decode(line " + std::to_string(i + 1) + ")", tok.decode(plain, false), g["lines_decode"][i]);
        }
        ASSERT_EQ(g["fuzz_plain"].size(), fuzz.size()) << name;
        for (size_t i = 0; i < fuzz.size(); ++i) {
            const auto plain = g["fuzz_plain"][i].get<std::vector<int32_t>>();
            const auto special = expand_special(g["fuzz_special"][i], plain);
            check.ids("fuzz #" + std::to_string(i), fuzz[i], false, plain);
            check.ids("fuzz #" + std::to_string(i), fuzz[i], true, special);
            check.text("decode(fuzz #" + std::to_string(i) + ")", tok.decode(special, false), g["fuzz_decode"][i]);
        }
        EXPECT_EQ(check.failures(), 0) << name << ": " << check.failures() << " of " << check.checks()
                                       << " checks differ from tokenizers";
        total_checks += check.checks();
    }
    std::cout << "[tokenizer golden] " << index["goldens"].size() << " tokenizers, " << total_checks
              << " id/decode sequences compared (tokenizers " << index["tokenizers_version"].get<std::string>()
              << ")\n";
}

TEST(TokenizerGolden, ConfigSpecialTokens) {
    Tokenizer ds = Tokenizer::load(kGolden / "deepseek_v3");
    ASSERT_TRUE(ds.bos_id().has_value());
    EXPECT_EQ(*ds.bos_id(), *ds.token_to_id("<｜begin▁of▁sentence｜>"));
    EXPECT_EQ(*ds.eos_id(), *ds.token_to_id("<｜end▁of▁sentence｜>"));
    EXPECT_EQ(ds.add_bos_token(), std::optional<bool>(true));
    EXPECT_EQ(ds.prefix_special_ids(), std::vector<int32_t>{*ds.bos_id()});
    EXPECT_TRUE(ds.is_special(*ds.bos_id()));

    Tokenizer qwen = Tokenizer::load(kGolden / "qwen2");
    EXPECT_FALSE(qwen.bos_id().has_value());
    EXPECT_EQ(qwen.eos_id(), qwen.token_to_id("<|im_end|>"));
    EXPECT_FALSE(qwen.is_special(*qwen.token_to_id("<think>")));
    EXPECT_EQ(qwen.id_to_token(*qwen.token_to_id("<|im_start|>")), std::optional<std::string>("<|im_start|>"));

    Tokenizer mistral = Tokenizer::load(kGolden / "mistral_sp");
    EXPECT_EQ(mistral.bos_id(), mistral.token_to_id("<s>"));
    EXPECT_EQ(mistral.token_to_id("<0x41>").value(), 3 + 0x41);
    EXPECT_FALSE(mistral.token_to_id("definitely-not-a-token").has_value());
}

namespace {

Json minimal_bpe() {
    return Json::parse(R"({
      "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
      "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
      "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
}

std::string error_of(const Json& j) {
    try {
        Tokenizer::from_json(j, {}, "x/tokenizer.json");
    } catch (const moekit::Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(Tokenizer, MergesInBothForms) {
    Json j = minimal_bpe();
    EXPECT_EQ(Tokenizer::from_json(j).encode("abba", false), (std::vector<int32_t>{2, 1, 0}));
    j["model"]["merges"] = Json::parse(R"([["a", "b"]])");
    EXPECT_EQ(Tokenizer::from_json(j).encode("abba", false), (std::vector<int32_t>{2, 1, 0}));
    // No unk token: characters outside the vocab are dropped before merging, as in tokenizers.
    EXPECT_EQ(Tokenizer::from_json(j).encode("axb", false), (std::vector<int32_t>{2}));
}

TEST(Tokenizer, UnsupportedComponentsAreNamed) {
    Json j = minimal_bpe();
    j["model"]["type"] = "Unigram";
    EXPECT_EQ(error_of(j), "[tokenizer] x/tokenizer.json: model type 'Unigram' is not supported (supported: BPE)");
    j = minimal_bpe();
    j["normalizer"] = Json::parse(R"({"type": "Precompiled", "precompiled_charsmap": "AAAA"})");
    EXPECT_NE(error_of(j).find("normalizer type 'Precompiled' is not supported"), std::string::npos);
    j = minimal_bpe();
    j["pre_tokenizer"] = Json::parse(R"({"type": "UnicodeScripts"})");
    EXPECT_NE(error_of(j).find("pre_tokenizer type 'UnicodeScripts' is not supported"), std::string::npos);
    j = minimal_bpe();
    j["pre_tokenizer"] = Json::parse(R"({"type": "Split", "pattern": {"Regex": "(a"}, "behavior": "Isolated", "invert": false})");
    EXPECT_NE(error_of(j).find("does not compile"), std::string::npos);
    j = minimal_bpe();
    j["decoder"] = Json::parse(R"({"type": "CTC"})");
    EXPECT_NE(error_of(j).find("decoder type 'CTC' is not supported"), std::string::npos);
    j = minimal_bpe();
    j["post_processor"] = Json::parse(R"({"type": "Mystery"})");
    EXPECT_NE(error_of(j).find("post_processor type 'Mystery' is not supported"), std::string::npos);
    j = minimal_bpe();
    j["model"]["merges"] = Json::parse(R"(["a c"])");
    EXPECT_NE(error_of(j).find("merge #0"), std::string::npos);
    j = minimal_bpe();
    j.erase("model");
    EXPECT_NE(error_of(j).find("missing \"model\""), std::string::npos);

    EXPECT_THROW(Tokenizer::load(kRoot / "tests" / "golden" / "no-such-dir"), moekit::Error);
}

TEST(Tokenizer, InvalidUtf8IsReplacedNotFatal) {
    Tokenizer tok = Tokenizer::load(kGolden / "gpt2_olmoe");
    std::string bad = "ok \xff\xfe bytes \xe2\x82 end";
    EXPECT_EQ(tok.encode(bad, false), tok.encode("ok \xEF\xBF\xBD\xEF\xBF\xBD bytes \xEF\xBF\xBD end", false));
    EXPECT_EQ(moekit::io::tok::sanitize_utf8("a\xed\xa0\x80z"), "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz");
}

TEST(Tokenizer, RegexTranslation) {
    using moekit::io::tok::Regex;
    EXPECT_EQ(Regex::translate(R"(\h+)", "t"), "[0-9a-fA-F]+");
    EXPECT_EQ(Regex::translate(R"((?m:.))", "t"), "(?s:.)");
    std::vector<std::pair<size_t, size_t>> m;
    Regex re(R"(\s+(?!\S)|\s+)", "t");
    re.find_all("a  \u180e b", m);  // U+180E is not White_Space in Oniguruma (PCRE2's \s has it)
    const std::vector<std::pair<size_t, size_t>> expected{{1, 2}, {2, 3}, {6, 7}};
    EXPECT_EQ(m, expected);
}

TEST(Tokenizer, ConcurrentEncodeMatchesSerial) {
    Tokenizer tok = Tokenizer::load(kGolden / "qwen2");
    const auto lines = split_lines(read_file(kGolden / "test_text.txt"));
    std::vector<std::vector<int32_t>> serial;
    for (const auto& l : lines) serial.push_back(tok.encode(l, true));
    std::vector<std::thread> threads;
    std::vector<int> bad(4, 0);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int rep = 0; rep < 5; ++rep) {
                for (size_t i = 0; i < lines.size(); ++i) bad[t] += tok.encode(lines[i], true) != serial[i];
            }
        });
    }
    for (auto& th : threads) th.join();
    for (int b : bad) EXPECT_EQ(b, 0);
}

TEST(Tokenizer, Throughput) {
    const std::string text = read_file(kGolden / "test_text.txt");
    for (const char* name : {"gpt2_olmoe", "qwen2", "llama3", "deepseek_v3", "mistral_sp", "metaspace_first"}) {
        Tokenizer tok = Tokenizer::load(kGolden / name);
        size_t n = tok.encode(text, false).size();  // warms the word cache
        const int reps = 100;
        auto t0 = std::chrono::steady_clock::now();
        size_t total = 0;
        for (int r = 0; r < reps; ++r) total += tok.encode(text, false).size();
        double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        EXPECT_EQ(total, n * reps);
        std::printf("[tokenizer throughput] %-16s %5zu tokens  %.3f M tokens/s  (%.2f MB/s)\n", name, n,
                    static_cast<double>(total) / dt / 1e6, static_cast<double>(text.size()) * reps / dt / 1e6);
    }
}
