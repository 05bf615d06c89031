// Decoders (ids -> text) and post-processors (special tokens around a single sequence) of
// tokenizer.json.
#include "core/error.h"
#include "io/tokenizer_impl.h"

namespace moekit::io::tok {

namespace {

class Sequence final : public Decoder {
public:
    std::vector<std::unique_ptr<Decoder>> items;
    void decode_chain(std::vector<std::string>& tokens) const override {
        for (const auto& d : items) d->decode_chain(tokens);
    }
};

class ByteLevel final : public Decoder {
public:
    void decode_chain(std::vector<std::string>& tokens) const override {
        std::string bytes;
        for (const std::string& t : tokens) {
            size_t mark = bytes.size();
            bool ok = true;
            size_t i = 0;
            while (i < t.size()) {
                int b = byte_from_char(next_cp(t, i));
                if (b < 0) {
                    ok = false;
                    break;
                }
                bytes.push_back(static_cast<char>(b));
            }
            if (!ok) {
                bytes.resize(mark);
                bytes += t;
            }
        }
        tokens.assign(1, sanitize_utf8(bytes));
    }
};

class Metaspace final : public Decoder {
public:
    Metaspace(char32_t rep, bool prepend) : rep_(rep), prepend_(prepend) {}
    void decode_chain(std::vector<std::string>& tokens) const override {
        for (size_t k = 0; k < tokens.size(); ++k) {
            std::string out;
            const std::string& t = tokens[k];
            size_t i = 0;
            while (i < t.size()) {
                size_t b = i;
                char32_t c = next_cp(t, i);
                if (c == rep_) {
                    if (!(k == 0 && prepend_)) out += ' ';
                } else {
                    out.append(t, b, i - b);
                }
            }
            tokens[k] = std::move(out);
        }
    }

private:
    char32_t rep_;
    bool prepend_;
};

class Replace final : public Decoder {
public:
    Replace(std::unique_ptr<Regex> re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
    void decode_chain(std::vector<std::string>& tokens) const override {
        std::vector<std::pair<size_t, size_t>> m;
        for (std::string& t : tokens) {
            m.clear();
            re_->find_all(t, m);
            if (m.empty()) continue;
            std::string out;
            size_t prev = 0;
            for (auto [a, b] : m) {
                out.append(t, prev, a - prev);
                out += content_;
                prev = b;
            }
            out.append(t, prev, std::string::npos);
            t = std::move(out);
        }
    }

private:
    std::unique_ptr<Regex> re_;
    std::string content_;
};

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

class ByteFallback final : public Decoder {
public:
    void decode_chain(std::vector<std::string>& tokens) const override {
        std::vector<std::string> out;
        std::string pending;
        auto flush = [&] {
            if (pending.empty()) return;
            if (is_valid_utf8(pending)) {
                out.push_back(pending);
            } else {
                for (size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
            }
            pending.clear();
        };
        for (std::string& t : tokens) {
            if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
                int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
                if (hi >= 0 && lo >= 0) {
                    pending.push_back(static_cast<char>(hi * 16 + lo));
                    continue;
                }
            }
            flush();
            out.push_back(std::move(t));
        }
        flush();
        tokens = std::move(out);
    }
};

class Fuse final : public Decoder {
public:
    void decode_chain(std::vector<std::string>& tokens) const override {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
    }
};

class Strip final : public Decoder {
public:
    Strip(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
    void decode_chain(std::vector<std::string>& tokens) const override {
        for (std::string& t : tokens) {
            std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, cp)
            size_t i = 0;
            while (i < t.size()) {
                size_t b = i;
                chars.emplace_back(b, next_cp(t, i));
            }
            size_t start_cut = 0;
            for (size_t k = 0; k < std::min(start_, chars.size()); ++k) {
                if (chars[k].second != content_) break;
                start_cut = k + 1;
            }
            size_t stop_cut = chars.size();
            for (size_t k = 0; k < std::min(stop_, chars.size()); ++k) {
                size_t index = chars.size() - k - 1;
                if (chars[index].second != content_) break;
                stop_cut = index;
            }
            if (stop_cut <= start_cut) {
                t.clear();
                continue;
            }
            size_t b = chars[start_cut].first;
            size_t e = stop_cut < chars.size() ? chars[stop_cut].first : t.size();
            t = t.substr(b, e - b);
        }
    }

private:
    char32_t content_;
    size_t start_, stop_;
};

class BpeDecoder final : public Decoder {
public:
    explicit BpeDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
    void decode_chain(std::vector<std::string>& tokens) const override {
        if (suffix_.empty()) return;
        for (size_t k = 0; k < tokens.size(); ++k) {
            std::string& t = tokens[k];
            std::string rep = k + 1 == tokens.size() ? "" : " ";
            std::string out;
            size_t prev = 0, pos;
            while ((pos = t.find(suffix_, prev)) != std::string::npos) {
                out.append(t, prev, pos - prev);
                out += rep;
                prev = pos + suffix_.size();
            }
            out.append(t, prev, std::string::npos);
            t = std::move(out);
        }
    }

private:
    std::string suffix_;
};

char32_t single_char(const Json& j, const char* key, const std::string& where) {
    std::string s = j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
    size_t i = 0;
    if (s.empty()) throw Error("tokenizer", where + ": missing field '" + key + "'");
    char32_t c = next_cp(s, i);
    if (i != s.size()) throw Error("tokenizer", where + ": field '" + key + "' must be a single character");
    return c;
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const Json& j, const std::string& file) {
    if (j.is_null()) return nullptr;
    const std::string type = component_type(j, file, "decoder");
    std::string where = file + ": decoder " + type;
    if (type == "Sequence") {
        auto seq = std::make_unique<Sequence>();
        if (!j.contains("decoders") || !j["decoders"].is_array()) {
            throw Error("tokenizer", where + ": missing \"decoders\" array");
        }
        for (const Json& item : j["decoders"]) {
            if (auto d = make_decoder(item, file)) seq->items.push_back(std::move(d));
        }
        return seq;
    }
    if (type == "ByteLevel") return std::make_unique<ByteLevel>();
    if (type == "Metaspace") {
        bool prepend = true;
        if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
            prepend = j["prepend_scheme"].get<std::string>() != "never";
        } else if (j.contains("add_prefix_space")) {
            prepend = j.value("add_prefix_space", true);
        }
        return std::make_unique<Metaspace>(single_char(j, "replacement", where), prepend);
    }
    if (type == "Replace") {
        if (!j.contains("pattern")) throw Error("tokenizer", where + ": missing \"pattern\"");
        std::string content = j.contains("content") && j["content"].is_string() ? j["content"].get<std::string>() : "";
        return std::make_unique<Replace>(make_pattern(j["pattern"], where), content);
    }
    if (type == "ByteFallback") return std::make_unique<ByteFallback>();
    if (type == "Fuse") return std::make_unique<Fuse>();
    if (type == "Strip") {
        return std::make_unique<Strip>(single_char(j, "content", where), j.value("start", size_t{0}), j.value("stop", size_t{0}));
    }
    if (type == "BPEDecoder") return std::make_unique<BpeDecoder>(j.value("suffix", std::string("</w>")));
    throw Error("tokenizer", file + ": decoder type '" + type +
                                 "' is not supported (supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, "
                                 "Strip, BPEDecoder, Sequence)");
}

PostProcessor make_post_processor(const Json& j, const std::string& file) {
    PostProcessor pp;
    if (j.is_null()) return pp;
    const std::string type = component_type(j, file, "post_processor");
    std::string where = file + ": post_processor " + type;
    if (type == "ByteLevel") return pp;
    if (type == "Sequence") {
        if (!j.contains("processors") || !j["processors"].is_array()) {
            throw Error("tokenizer", where + ": missing \"processors\" array");
        }
        for (const Json& item : j["processors"]) {
            PostProcessor inner = make_post_processor(item, file);
            pp.prefix.insert(pp.prefix.begin(), inner.prefix.begin(), inner.prefix.end());
            pp.suffix.insert(pp.suffix.end(), inner.suffix.begin(), inner.suffix.end());
        }
        return pp;
    }
    if (type == "RobertaProcessing" || type == "BertProcessing") {
        auto id_of = [&](const char* key) {
            if (!j.contains(key) || !j[key].is_array() || j[key].size() != 2 || !j[key][1].is_number_integer()) {
                throw Error("tokenizer", where + ": field '" + key + "' must be [token, id]");
            }
            return j[key][1].get<int32_t>();
        };
        pp.prefix.push_back(id_of("cls"));
        pp.suffix.push_back(id_of("sep"));
        return pp;
    }
    if (type == "TemplateProcessing") {
        if (!j.contains("single") || !j["single"].is_array()) throw Error("tokenizer", where + ": missing \"single\"");
        const Json& specials = j.contains("special_tokens") ? j["special_tokens"] : Json::object();
        bool seen_sequence = false;
        for (const Json& item : j["single"]) {
            if (item.contains("Sequence")) {
                if (seen_sequence) throw Error("tokenizer", where + ": single template has two sequences");
                seen_sequence = true;
                continue;
            }
            if (!item.contains("SpecialToken") || !item["SpecialToken"].contains("id")) {
                throw Error("tokenizer", where + ": template piece " + item.dump() + " is not supported");
            }
            std::string name = item["SpecialToken"]["id"].get<std::string>();
            if (!specials.contains(name) || !specials[name].contains("ids") || !specials[name]["ids"].is_array()) {
                throw Error("tokenizer", where + ": special token '" + name + "' is missing from special_tokens");
            }
            auto& dst = seen_sequence ? pp.suffix : pp.prefix;
            for (const Json& id : specials[name]["ids"]) dst.push_back(id.get<int32_t>());
        }
        return pp;
    }
    throw Error("tokenizer", file + ": post_processor type '" + type +
                                 "' is not supported (supported: TemplateProcessing, ByteLevel, RobertaProcessing, "
                                 "BertProcessing, Sequence)");
}

}  // namespace moekit::io::tok
