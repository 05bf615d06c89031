// tokenizer.ggml.* metadata from a Hugging Face tokenizer.json, as llama.cpp's
// convert_hf_to_gguf.py (get_vocab_base + gguf-py's SpecialVocab) writes it. Declared in
// gguf_model.h.
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "quantize/gguf_model.h"

namespace moekit::quantize {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

json load_json(const fs::path& file) {
    std::ifstream in(file);
    if (!in) throw Error("quantize", "cannot read " + file.string());
    try {
        return json::parse(in);
    } catch (const std::exception& e) {
        throw Error("quantize", file.string() + ": invalid JSON: " + e.what());
    }
}

bool looks_special(const std::string& t) {
    auto starts = [&](const std::string& p) { return t.rfind(p, 0) == 0; };
    auto ends = [&](const std::string& s) { return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0; };
    return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || (starts("<|") && ends("|>")) ||
           (starts("\xef\xbd\x9c") && ends("\xef\xbd\x9c>")) || (starts("<\xef\xbd\x9c") && ends("\xef\xbd\x9c>"));
}

bool is_byte_level(const json& pre) {
    if (!pre.is_object()) return false;
    if (pre.value("type", "") == "ByteLevel") return true;
    if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers"))
        for (const auto& p : pre["pretokenizers"])
            if (p.value("type", "") == "ByteLevel") return true;
    return false;
}

// GGUF token types (llama.cpp's llama_token_type).
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;

}  // namespace

void add_gguf_tokenizer(io::GgufWriter& w, const fs::path& dir, const io::HfConfig& config) {
    using io::GgufValue;
    const fs::path tok_file = dir / "tokenizer.json";
    if (!fs::exists(tok_file))
        throw Error("quantize", "--format gguf needs " + tok_file.string() + " (llama.cpp reads the vocabulary from the GGUF)");
    const json tok = load_json(tok_file);
    const json& model = tok.at("model");
    if (model.value("type", "") != "BPE")
        throw Error("quantize", tok_file.string() + ": tokenizer model '" + model.value("type", "?") +
                                    "' is not supported for GGUF output (BPE only)");
    const bool byte_level = is_byte_level(tok.value("pre_tokenizer", json()));
    const bool spm_style = !byte_level && model.value("byte_fallback", false);
    if (!byte_level && !spm_style)
        throw Error("quantize", tok_file.string() +
                                    ": neither a ByteLevel BPE (GPT-2 style) nor a byte-fallback BPE "
                                    "(SentencePiece style) tokenizer; GGUF output does not support it yet");

    std::map<int64_t, std::string> by_id;
    for (const auto& [text, id] : model.at("vocab").items()) by_id[id.get<int64_t>()] = text;
    std::map<int64_t, json> added;
    const json added_list = tok.value("added_tokens", json::array());
    for (const auto& a : added_list) {
        by_id[a.at("id").get<int64_t>()] = a.at("content").get<std::string>();
        added[a.at("id").get<int64_t>()] = a;
    }
    const int64_t vocab_size = config.get_int_or("vocab_size", by_id.empty() ? 0 : by_id.rbegin()->first + 1);

    json tc = fs::exists(dir / "tokenizer_config.json") ? load_json(dir / "tokenizer_config.json") : json::object();
    // SentencePiece-style vocabularies (gguf-py's LlamaHfVocab): control tokens are the
    // tokenizer's named special tokens (all_special_ids), other added tokens are user-defined.
    std::set<std::string> named_special;
    for (const char* k : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
        if (auto e = tc.find(k); e != tc.end()) {
            if (e->is_string()) named_special.insert(e->get<std::string>());
            if (e->is_object() && e->contains("content") && (*e)["content"].is_string()) named_special.insert((*e)["content"]);
        }
    }
    if (auto e = tc.find("additional_special_tokens"); e != tc.end() && e->is_array())
        for (const auto& x : *e)
            if (x.is_string()) named_special.insert(x.get<std::string>());
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    std::vector<float> scores;
    for (int64_t i = 0; i < vocab_size; ++i) {
        auto it = by_id.find(i);
        if (it == by_id.end()) {
            tokens.push_back("[PAD" + std::to_string(i) + "]");
            types.push_back(kUnused);
            scores.push_back(-1000.0f);
            continue;
        }
        const std::string& t = it->second;
        int32_t type = kNormal;
        if (auto a = added.find(i); a != added.end()) {
            if (spm_style)
                type = named_special.count(t) ? kControl : kUserDefined;
            else
                type = (a->second.value("special", false) || looks_special(t)) ? kControl : kUserDefined;
        } else if (spm_style && t.size() == 6 && t.rfind("<0x", 0) == 0 && t.back() == '>') {
            type = kByte;
        }
        tokens.push_back(t);
        types.push_back(type);
        scores.push_back(-1000.0f);  // gguf-py's LlamaHfVocab: no scores in tokenizer.json, every token -1000
    }
    w.set("tokenizer.ggml.model", GgufValue::str(byte_level ? "gpt2" : "llama"));
    if (byte_level) {
        // The converter names the pre-tokenizer by hashing its output on a test string; moekit
        // reads it from tokenizer.json: ByteLevel with the GPT-2 regex is what the converter's
        // table calls "gpt-2" (llama-vocab.cpp refuses any other spelling, e.g. "gpt2").
        w.set("tokenizer.ggml.pre", GgufValue::str("gpt-2"));
    } else {
        w.set("tokenizer.ggml.pre", GgufValue::str("default"));
    }
    w.set("tokenizer.ggml.tokens", GgufValue::str_array(tokens));
    if (spm_style) w.set("tokenizer.ggml.scores", GgufValue::f32_array(scores));
    w.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
    if (byte_level) {
        std::vector<std::string> merges;
        for (const auto& m : model.value("merges", json::array())) {
            if (m.is_string()) {
                merges.push_back(m.get<std::string>());
            } else if (m.is_array() && m.size() == 2) {
                // A space inside a pair is written as U+0120, exactly as gguf-py does (chr(32 + 256)).
                std::string joined;
                for (int k = 0; k < 2; ++k) {
                    if (k) joined += ' ';
                    for (char ch : m[k].get<std::string>()) joined += ch == ' ' ? std::string("\xc4\xa0") : std::string(1, ch);
                }
                merges.push_back(joined);
            }
        }
        w.set("tokenizer.ggml.merges", GgufValue::str_array(merges));
    }

    // Special tokens: tokenizer_config.json first, then config.json's *_token_id (gguf-py SpecialVocab).
    std::map<std::string, bool> add_flag;
    if (const json& pp = tok.value("post_processor", json()); pp.is_object()) {
        json procs = pp.contains("processors") ? pp["processors"] : json::array({pp});
        for (const auto& p : procs) {
            const std::string type = p.value("type", "");
            if (type == "ByteLevel") {
                add_flag.emplace("bos", false);
                add_flag.emplace("eos", false);
            } else if (type == "TemplateProcessing") {
                const json single = p.value("single", json::array());
                const std::string bos = tc.contains("bos_token") && tc["bos_token"].is_string() ? tc["bos_token"].get<std::string>() : "";
                const std::string eos = tc.contains("eos_token") && tc["eos_token"].is_string() ? tc["eos_token"].get<std::string>() : "";
                std::string first, last;
                if (single.size() > 1) {
                    if (single.front().contains("SpecialToken")) {
                        first = single.front()["SpecialToken"].value("id", "");
                        if (bos.empty() && !first.empty()) tc["bos_token"] = first;
                        add_flag["bos"] = bos.empty() || first == bos;
                    }
                    if (single.back().contains("SpecialToken")) {
                        last = single.back()["SpecialToken"].value("id", "");
                        add_flag["eos"] = last == eos;
                    }
                }
                // Pair template "[first] A [sep...] B [last]": add_sep as gguf-py's SpecialVocab derives it.
                json pair = p.value("pair", json::array());
                auto special_id = [](const json& e) { return e.contains("SpecialToken") ? e["SpecialToken"].value("id", "") : std::string(); };
                auto seq_id = [](const json& e) { return e.contains("Sequence") ? e["Sequence"].value("id", "") : std::string(); };
                std::size_t b = (!first.empty() && !pair.empty() && special_id(pair.front()) == first) ? 1 : 0;
                std::size_t e = pair.size();
                if (!last.empty() && e > b && special_id(pair[e - 1]) == last) --e;
                if (e > b && seq_id(pair[b]) == "A" && seq_id(pair[e - 1]) == "B" && e - b > 2) {
                    const std::string sep = tc.contains("sep_token") && tc["sep_token"].is_string() ? tc["sep_token"].get<std::string>() : "";
                    auto is_sep = [&](const std::string& id) { return !id.empty() && (id == sep || id == eos); };
                    bool add_sep = false;
                    const std::string m0 = special_id(pair[b + 1]);
                    if (is_sep(m0) && last.empty()) add_sep = true;
                    if (e - b - 2 == 2 && is_sep(special_id(pair[b + 2]))) add_sep = true;
                    add_flag["sep"] = add_sep;
                }
            }
        }
    }
    static const std::pair<const char*, const char*> kinds[] = {
        {"bos", "bos_token_id"}, {"eos", "eos_token_id"}, {"unk", "unknown_token_id"}, {"sep", "seperator_token_id"},
        {"pad", "padding_token_id"}, {"cls", "cls_token_id"}, {"mask", "mask_token_id"}};
    json hf = config.json();
    for (const auto& [kind, key] : kinds) {
        if (auto f = tc.find(std::string("add_") + kind + "_token"); f != tc.end() && f->is_boolean())
            add_flag.emplace(kind, f->get<bool>());
        std::optional<int64_t> id;
        if (auto e = tc.find(std::string(kind) + "_token"); e != tc.end()) {
            std::string content;
            if (e->is_string()) content = e->get<std::string>();
            if (e->is_object() && (*e).contains("content") && (*e)["content"].is_string()) content = (*e)["content"];
            if (!content.empty())
                for (const auto& a : added_list)
                    if (a.value("content", "") == content) {
                        id = a.at("id").get<int64_t>();
                        break;
                    }
        }
        if (!id) {
            auto c = hf.find(std::string(kind) + "_token_id");
            if (c != hf.end() && c->is_number_integer()) id = c->get<int64_t>();
        }
        if (id && *id >= 0 && *id < vocab_size)
            w.set(std::string("tokenizer.ggml.") + key, GgufValue::u32(static_cast<uint32_t>(*id)));
    }
    for (const char* kind : {"bos", "eos", "sep"})
        if (auto f = add_flag.find(kind); f != add_flag.end())
            w.set(std::string("tokenizer.ggml.add_") + kind + "_token", GgufValue::boolean(f->second));
    if (auto ct = tc.find("chat_template"); ct != tc.end() && ct->is_string())
        w.set("tokenizer.chat_template", GgufValue::str(ct->get<std::string>()));
}

}  // namespace moekit::quantize
