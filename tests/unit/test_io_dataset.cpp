// io/dataset: --data parsing, every data format (text, JSONL text/input_ids, .bin, .npy) and
// their malformed variants, Python-identical document splitting, and the tokenization rule:
// assets/corpus/eval/<domain>.txt through the demo tokenizer reproduces the golden eval ids
// (tests/golden/demo_eval_ids.bin, written by scripts/train_demo_model.py) exactly.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/dataset.h"
#include "io/tokenizer.h"

namespace fs = std::filesystem;
using namespace moekit::io;

namespace {

const fs::path kTests = fs::path(MOEKIT_TEST_DATA);
const fs::path kRoot = kTests.parent_path();

class TempDir {
public:
    TempDir() {
        path_ = fs::temp_directory_path() / ("moekit_dataset_" + std::to_string(getpid()) + "_" + std::to_string(counter_++));
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    fs::path write(const std::string& name, const std::string& bytes) const {
        std::ofstream(path_ / name, std::ios::binary) << bytes;
        return path_ / name;
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
    static inline int counter_ = 0;
};

template <typename T>
std::string raw_bytes(const std::vector<T>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// A .npy file as numpy writes it (version 1.0 or 2.0, header padded to 64 bytes).
std::string npy(const std::string& descr, const std::string& shape, const std::string& data, int version = 1,
                const std::string& fortran = "False") {
    std::string header = "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': (" + shape + "), }";
    const size_t prefix = version == 1 ? 10 : 12;
    while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string out = "\x93NUMPY";
    out += static_cast<char>(version);
    out += '\0';
    const size_t n = header.size();
    out += static_cast<char>(n & 0xFF);
    out += static_cast<char>((n >> 8) & 0xFF);
    if (version != 1) out += std::string(2, '\0');
    return out + header + data;
}

// Expects read_documents to throw an Error whose message contains every needle.
void expect_error(const fs::path& path, std::vector<std::string> needles, DataFormat format = DataFormat::automatic) {
    try {
        read_documents(path, format);
        ADD_FAILURE() << path << ": no error";
    } catch (const moekit::Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("[data]"), std::string::npos) << msg;
        for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    }
}

std::vector<int32_t> flat(const RawDocuments& raw) { return raw.ids; }

}  // namespace

TEST(DataSources, StemsExplicitAndMixed) {
    auto s = parse_data_sources("a/en.txt,b/code.py");
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0].domain, "en");
    EXPECT_EQ(s[0].path, fs::path("a/en.txt"));
    EXPECT_EQ(s[1].domain, "code");
    s = parse_data_sources("en=x/a.txt,code-py=y/b.py,z/c.bin");
    ASSERT_EQ(s.size(), 3u);
    EXPECT_EQ(s[0].domain, "en");
    EXPECT_EQ(s[0].path, fs::path("x/a.txt"));
    EXPECT_EQ(s[1].domain, "code-py");
    EXPECT_EQ(s[2].domain, "c");
    s = parse_data_sources("v=a=b.txt");  // only the first '=' separates
    EXPECT_EQ(s[0].path, fs::path("a=b.txt"));
}

TEST(DataSources, Errors) {
    for (const char* bad : {"", "a.txt,,b.txt", "a.txt,", "=a.txt", "en=", "e n=a.txt", "en=a.txt,en=b.txt", "x/a.txt,y/a.txt"}) {
        try {
            parse_data_sources(bad);
            ADD_FAILURE() << "no error for '" << bad << "'";
        } catch (const moekit::Error& e) {
            EXPECT_EQ(std::string(e.what()).rfind("[data]", 0), 0u) << e.what();
        }
    }
    EXPECT_EQ(parse_data_format("npy"), DataFormat::npy);
    EXPECT_THROW(parse_data_format("csv"), moekit::Error);
}

TEST(DataText, SplitsLikePython) {
    // Expected values from Python: [d for d in t.strip("\n").split("\n\n") if d.strip()] after
    // universal-newline translation.
    using V = std::vector<std::string>;
    EXPECT_EQ(split_documents("\n\nA\n\nB\n\n\nC\n\n\n\nD  \n \n\n"), (V{"A", "B", "\nC", "D  \n "}));
    EXPECT_EQ(split_documents("one\ntwo\n\n\n\n\nthree"), (V{"one\ntwo", "\nthree"}));
    EXPECT_EQ(split_documents("  \n\n\t\n\nx"), (V{"x"}));
    EXPECT_EQ(split_documents("a\r\n\r\nb\rc\r\r\rd"), (V{"a", "b\nc", "\nd"}));
    EXPECT_EQ(split_documents("x\n\n\xE3\x80\x80\n\ny"), (V{"x", "y"}));  // U+3000 is whitespace to Python
    EXPECT_EQ(split_documents("single"), (V{"single"}));
}

TEST(DataText, FileAndErrors) {
    TempDir tmp;
    const auto raw = read_documents(tmp.write("a.md", "first doc\nline 2\n\nsecond\n"));
    EXPECT_FALSE(raw.pretokenized);
    EXPECT_EQ(raw.format, DataFormat::text);
    EXPECT_EQ(raw.n_documents(), 2);
    expect_error(tmp.path() / "missing.txt", {"missing.txt", "does not exist"});
    expect_error(tmp.write("empty.txt", ""), {"empty.txt", "is empty"});
    expect_error(tmp.write("blank.txt", "\n \n\n\t\n"), {"blank.txt", "no documents"});
    expect_error(tmp.path(), {"is a directory"});
}

TEST(DataJsonl, TextAndIds) {
    TempDir tmp;
    auto raw = read_documents(tmp.write("t.jsonl", "{\"text\": \"hello\", \"id\": 1}\n\n{\"text\": \"world\"}\n{\"text\": \"  \"}\n"));
    EXPECT_FALSE(raw.pretokenized);
    EXPECT_EQ(raw.texts, (std::vector<std::string>{"hello", "world"}));
    raw = read_documents(tmp.write("i.json", "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": []}\r\n{\"input_ids\": [4]}"));
    EXPECT_TRUE(raw.pretokenized);
    EXPECT_EQ(flat(raw), (std::vector<int32_t>{1, 2, 3, 4}));
    EXPECT_EQ(raw.doc_begin, (std::vector<int64_t>{0, 3, 4}));
    // --format jsonl forces JSONL on any extension
    raw = read_documents(tmp.write("i.txt", "{\"input_ids\": [7]}\n"), DataFormat::jsonl);
    EXPECT_EQ(flat(raw), (std::vector<int32_t>{7}));
}

TEST(DataJsonl, Malformed) {
    TempDir tmp;
    expect_error(tmp.write("a.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n"), {"a.jsonl", "line 2", "invalid JSON"});
    expect_error(tmp.write("b.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"body\": \"x\"}\n"), {"b.jsonl", "line 3", "missing field \"text\""});
    expect_error(tmp.write("c.jsonl", "{\"body\": \"x\"}\n"), {"line 1", "no \"text\" or \"input_ids\""});
    expect_error(tmp.write("d.jsonl", "{\"text\": 5}\n"), {"line 1", "not a string"});
    expect_error(tmp.write("e.jsonl", "[1, 2]\n"), {"line 1", "JSON object"});
    expect_error(tmp.write("f.jsonl", "{\"input_ids\": [1, \"2\"]}\n"), {"line 1", "input_ids[1]", "not an integer"});
    expect_error(tmp.write("g.jsonl", "{\"input_ids\": [1]}\n{\"input_ids\": [-5]}\n"), {"line 2", "-5", "outside the vocabulary"});
    expect_error(tmp.write("h.jsonl", "{\"input_ids\": [4294967296]}\n"), {"outside the vocabulary"});
    expect_error(tmp.write("i.jsonl", "{\"input_ids\": 3}\n"), {"not an array"});
    expect_error(tmp.write("j.jsonl", "\n\n  \n"), {"no JSON records"});
    expect_error(tmp.write("k.jsonl", "{\"input_ids\": []}\n"), {"no documents"});
}

TEST(DataBin, Int32LittleEndian) {
    TempDir tmp;
    const auto raw = read_documents(tmp.write("a.bin", raw_bytes(std::vector<int32_t>{5, 0, 4095, 17})));
    EXPECT_TRUE(raw.pretokenized);
    EXPECT_EQ(flat(raw), (std::vector<int32_t>{5, 0, 4095, 17}));
    EXPECT_EQ(raw.n_documents(), 1);
    expect_error(tmp.write("b.bin", std::string(6, '\0')), {"b.bin", "not a multiple of 4"});
    expect_error(tmp.write("c.bin", raw_bytes(std::vector<int32_t>{1, -2})), {"c.bin", "-2", "negative"});
    expect_error(tmp.write("d.bin", ""), {"d.bin", "is empty"});
}

TEST(DataNpy, DtypesAndShapes) {
    TempDir tmp;
    const std::vector<int32_t> i4{1, 2, 3, 4, 5, 6};
    const std::vector<int64_t> i8{1, 2, 3, 4, 5, 6};
    const std::vector<uint16_t> u2{1, 2, 3, 4, 5, 6};
    const std::vector<uint32_t> u4{1, 2, 3, 4, 5, 6};
    const std::vector<int32_t> want{1, 2, 3, 4, 5, 6};
    auto raw = read_documents(tmp.write("a.npy", npy("<i4", "6,", raw_bytes(i4))));
    EXPECT_EQ(flat(raw), want);
    EXPECT_EQ(raw.n_documents(), 1);
    raw = read_documents(tmp.write("b.npy", npy("<i8", "2, 3", raw_bytes(i8))));
    EXPECT_EQ(flat(raw), want);
    EXPECT_EQ(raw.doc_begin, (std::vector<int64_t>{0, 3, 6}));
    raw = read_documents(tmp.write("c.npy", npy("<u2", "3, 2", raw_bytes(u2), 2)));
    EXPECT_EQ(flat(raw), want);
    EXPECT_EQ(raw.n_documents(), 3);
    raw = read_documents(tmp.write("d.npy", npy("<u4", "6,", raw_bytes(u4))));
    EXPECT_EQ(flat(raw), want);
}

TEST(DataNpy, Malformed) {
    TempDir tmp;
    const std::string six = raw_bytes(std::vector<int32_t>{1, 2, 3, 4, 5, 6});
    expect_error(tmp.write("m.npy", "NUMPY" + six), {"m.npy", "magic"});
    expect_error(tmp.write("f.npy", npy("<f4", "6,", six)), {"f.npy", "dtype '<f4'"});
    expect_error(tmp.write("be.npy", npy(">i4", "6,", six)), {"be.npy", "dtype '>i4'"});
    expect_error(tmp.write("fo.npy", npy("<i4", "2, 3", six, 1, "True")), {"fortran_order"});
    expect_error(tmp.write("sz.npy", npy("<i4", "7,", six)), {"sz.npy", "needs 28 data bytes"});
    expect_error(tmp.write("3d.npy", npy("<i4", "1, 2, 3", six)), {"3d.npy", "1-D"});
    expect_error(tmp.write("0d.npy", npy("<i4", "", six.substr(0, 4))), {"0d.npy", "shape"});
    expect_error(tmp.write("big.npy", npy("<i8", "1,", raw_bytes(std::vector<int64_t>{int64_t(1) << 40}))), {"outside the vocabulary"});
    expect_error(tmp.write("neg.npy", npy("<i4", "1,", raw_bytes(std::vector<int32_t>{-1}))), {"-1"});
    expect_error(tmp.write("empty.npy", npy("<i4", "0,", "")), {"empty.npy", "empty"});
    std::string truncated = npy("<i4", "6,", six);
    truncated[8] = '\x7F';  // header length beyond the file
    truncated.resize(40);
    expect_error(tmp.write("tr.npy", truncated), {"tr.npy", "header"});
}

TEST(DataTokenize, GoldenDemoIds) {
    const Tokenizer tok = Tokenizer::load(kRoot / "assets" / "demo-moe");
    const auto golden = nlohmann::json::parse(std::ifstream(kTests / "golden" / "demo_ppl.json"));
    std::ifstream in(kTests / "golden" / "demo_eval_ids.bin", std::ios::binary | std::ios::ate);
    const auto bytes = static_cast<size_t>(in.tellg());
    in.seekg(0);
    std::vector<int32_t> all(bytes / 4);
    in.read(reinterpret_cast<char*>(all.data()), static_cast<std::streamsize>(bytes));
    for (const auto& domain : golden["domains"]) {
        const auto& off = golden["offsets"][domain.get<std::string>()];
        const int64_t o = off["offset"], n = off["length"];
        const auto raw = read_documents(kRoot / "assets" / "corpus" / "eval" / (domain.get<std::string>() + ".txt"));
        const TokenStream s = make_token_stream(raw, &tok, TokenizeOptions{true, std::nullopt, n});
        const std::vector<int32_t> want(all.begin() + o, all.begin() + o + n);
        EXPECT_EQ(s.ids, want) << domain;
        EXPECT_TRUE(s.truncated);
        EXPECT_GT(s.n_documents_used, 0);
        EXPECT_LE(s.n_documents_used, s.n_documents);
    }
}

TEST(DataTokenize, Rules) {
    TempDir tmp;
    const Tokenizer demo = Tokenizer::load(kRoot / "assets" / "demo-moe");
    const auto raw = read_documents(tmp.write("a.txt", "hello world\n\nsecond document\n"));
    const TokenStream with_eos = make_token_stream(raw, &demo, {});
    const TokenStream no_eos = make_token_stream(raw, &demo, TokenizeOptions{false, std::nullopt, 0});
    std::vector<int32_t> want = demo.encode("hello world", false);
    want.push_back(*demo.eos_id());
    const auto second = demo.encode("second document", false);
    want.insert(want.end(), second.begin(), second.end());
    want.push_back(*demo.eos_id());
    EXPECT_EQ(with_eos.ids, want);
    EXPECT_EQ(no_eos.ids.size(), want.size() - 2);
    EXPECT_EQ(with_eos.n_documents_used, 2);
    EXPECT_FALSE(tokenize_rule(&demo, TokenizeOptions{true, true, 0}).bos_id);  // the demo has no BOS token

    // Llama/Mistral style: add_bos_token=true in tokenizer_config.json -> BOS + doc + EOS
    const Tokenizer mistral = Tokenizer::load(kTests / "golden" / "tokenizer" / "mistral_sp");
    const TokenizeRule rule = tokenize_rule(&mistral, {});
    ASSERT_TRUE(rule.bos_id && rule.eos_id);
    const TokenStream m = make_token_stream(raw, &mistral, {});
    EXPECT_EQ(m.ids.front(), *rule.bos_id);
    EXPECT_EQ(m.ids.back(), *rule.eos_id);
    EXPECT_NE(rule.describe().find("BOS"), std::string::npos);
    EXPECT_FALSE(tokenize_rule(&mistral, TokenizeOptions{true, false, 0}).bos_id);  // --bos no

    // max_tokens truncation; pre-tokenized data gets no BOS/EOS
    const TokenStream cut = make_token_stream(raw, &demo, TokenizeOptions{true, std::nullopt, 3});
    EXPECT_EQ(cut.ids.size(), 3u);
    EXPECT_TRUE(cut.truncated);
    const auto ids = read_documents(tmp.write("i.jsonl", "{\"input_ids\": [1, 2]}\n{\"input_ids\": [3]}\n"));
    EXPECT_EQ(make_token_stream(ids, &mistral, {}).ids, (std::vector<int32_t>{1, 2, 3}));
    EXPECT_EQ(make_token_stream(ids, nullptr, TokenizeOptions{true, std::nullopt, 2}).n_documents_used, 1);
    EXPECT_THROW(make_token_stream(raw, nullptr, {}), moekit::Error);  // text needs a tokenizer
}

TEST(DataTokenize, VocabularyCheck) {
    check_vocabulary({0, 5, 9}, 10, "x.bin", "the model's vocabulary");
    try {
        check_vocabulary({0, 5, 10}, 10, "x.bin", "the model's vocabulary");
        ADD_FAILURE() << "no error";
    } catch (const moekit::Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("x.bin"), std::string::npos) << msg;
        EXPECT_NE(msg.find("token id 10 at position 2"), std::string::npos) << msg;
    }
}
