// io::Tokenizer: loading tokenizer.json (+ tokenizer_config.json), added-token extraction
// (tokenizers' AddedVocabulary), the encode pipeline and decode.
//
// Pipeline, as in tokenizers' TokenizerImpl::encode_single_sequence:
//   1. split the raw text on added tokens with normalized=false (leftmost-longest);
//   2. normalize each remaining segment, then split it on added tokens with normalized=true
//      (matched against their normalized content);
//   3. pre-tokenize the remaining pieces; 4. BPE each piece;
//   5. truncation, post-processor (when add_special_tokens), padding.
#include "io/tokenizer.h"

#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "io/tokenizer_impl.h"

namespace moekit::io {

namespace {

using tok::Json;

// Byte trie for leftmost-longest matching of added tokens (aho-corasick LeftmostLongest
// gives the same matches for a set of literal patterns).
class Trie {
public:
    void insert(std::string_view pattern, int32_t value) {
        if (pattern.empty()) return;
        first_[static_cast<unsigned char>(pattern[0])] = true;
        int32_t node = 0;
        for (char ch : pattern) {
            auto b = static_cast<unsigned char>(ch);
            int32_t next = child(node, b);
            if (next < 0) {
                next = static_cast<int32_t>(nodes_.size());
                nodes_[node].children.emplace_back(b, next);
                nodes_.emplace_back();
            }
            node = next;
        }
        if (nodes_[node].value < 0) nodes_[node].value = value;
        empty_ = false;
    }
    bool empty() const { return empty_; }
    // Longest pattern starting at s[pos]: (length, value); length 0 when none.
    std::pair<size_t, int32_t> longest_at(std::string_view s, size_t pos) const {
        if (!first_[static_cast<unsigned char>(s[pos])]) return {0, -1};
        int32_t node = 0;
        std::pair<size_t, int32_t> best{0, -1};
        for (size_t i = pos; i < s.size(); ++i) {
            node = child(node, static_cast<unsigned char>(s[i]));
            if (node < 0) break;
            if (nodes_[node].value >= 0) best = {i + 1 - pos, nodes_[node].value};
        }
        return best;
    }

private:
    struct Node {
        std::vector<std::pair<unsigned char, int32_t>> children;
        int32_t value = -1;
    };
    int32_t child(int32_t node, unsigned char b) const {
        for (auto [c, n] : nodes_[node].children) {
            if (c == b) return n;
        }
        return -1;
    }
    std::vector<Node> nodes_{1};
    bool first_[256] = {};
    bool empty_ = true;
};

struct Segment {
    size_t start, end;
    int32_t id;  // -1: plain text
};

std::string token_content(const Json& j) {
    if (j.is_string()) return j.get<std::string>();
    if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
    return {};
}

Json read_json_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("tokenizer", path.string() + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    try {
        return Json::parse(ss.str());
    } catch (const Json::exception& e) {
        throw Error("tokenizer", path.string() + ": invalid JSON: " + e.what());
    }
}

}  // namespace

struct Tokenizer::Impl {
    std::string source;
    std::unique_ptr<tok::BpeModel> model;
    std::unique_ptr<tok::Normalizer> normalizer;
    std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
    std::unique_ptr<tok::Decoder> decoder;
    tok::PostProcessor post;

    std::vector<AddedTokenInfo> added;                 // one per distinct content
    std::vector<std::string> added_decode;             // what decode() shows for each (see build_tries)
    std::unordered_map<std::string, size_t> added_by_content;
    std::unordered_map<int32_t, size_t> added_by_id;
    std::unordered_set<std::string> special_contents;
    Trie raw_trie, normalized_trie;  // values index `added`

    std::optional<size_t> trunc_max;
    bool trunc_left = false;
    bool padding = false;
    std::optional<size_t> pad_fixed, pad_multiple;
    bool pad_left = false;
    int32_t pad_id = 0;

    std::optional<int32_t> bos, eos;
    std::optional<bool> add_bos, add_eos;
    int64_t vocab_size = 0;

    void add_token(const Json& j);
    void build_tries();
    void find_matches(std::string_view s, const Trie& trie, std::vector<Segment>& out) const;
    void encode_segment(std::string_view seg, bool at_origin, std::vector<int32_t>& ids) const;
};

void Tokenizer::Impl::add_token(const Json& j) {
    AddedTokenInfo t;
    if (!j.is_object() || !j.contains("content") || !j["content"].is_string()) {
        throw Error("tokenizer", source + ": added_tokens entry " + j.dump() + " has no string \"content\"");
    }
    t.content = j["content"].get<std::string>();
    t.special = j.value("special", false);
    t.single_word = j.value("single_word", false);
    t.lstrip = j.value("lstrip", false);
    t.rstrip = j.value("rstrip", false);
    t.normalized = j.value("normalized", !t.special);
    if (t.content.empty()) return;
    if (t.special) special_contents.insert(t.content);
    // Ids are assigned the way tokenizers' AddedVocabulary::add_tokens does (the "id" in the
    // file is only checked there, with a warning): an existing added token or model token
    // keeps its id, a new one gets the next id after the model vocab / previous added tokens.
    if (auto it = added_by_content.find(t.content); it != added_by_content.end()) {
        t.id = added[it->second].id;
        added[it->second] = t;
        return;
    }
    if (auto mid = model->token_to_id(t.content)) {
        t.id = *mid;
    } else {
        auto model_size = static_cast<int64_t>(model->vocab_count());
        int64_t max_added = -1;
        for (const auto& a : added) max_added = std::max<int64_t>(max_added, a.id);
        int64_t id = model_size;
        if (max_added >= 0 && (max_added >= model_size || model_size == 0)) id = max_added + 1;
        t.id = static_cast<int32_t>(id);
    }
    added_by_id[t.id] = added.size();
    added_by_content[t.content] = added.size();
    added.push_back(t);
}

void Tokenizer::Impl::build_tries() {
    // decode() shows a normalized=true added token in its normalized form (tokenizers does).
    added_decode.clear();
    for (const AddedTokenInfo& t : added) {
        std::string shown = t.content;
        if (t.normalized && normalizer) normalizer->normalize(shown);
        added_decode.push_back(std::move(shown));
    }
    // Special tokens first, then the others (the order of tokenizers' tries; it only matters
    // for identical patterns).
    for (int pass = 0; pass < 2; ++pass) {
        for (size_t k = 0; k < added.size(); ++k) {
            const AddedTokenInfo& t = added[k];
            bool special = special_contents.count(t.content) > 0;
            if ((pass == 0) != special) continue;
            if (!t.normalized) {
                raw_trie.insert(t.content, static_cast<int32_t>(k));
            } else {
                std::string norm = t.content;
                if (normalizer) normalizer->normalize(norm);
                normalized_trie.insert(norm, static_cast<int32_t>(k));
            }
        }
    }
}

// tokenizers' AddedVocabulary::find_matches, including single_word / lstrip / rstrip.
void Tokenizer::Impl::find_matches(std::string_view s, const Trie& trie, std::vector<Segment>& out) const {
    out.clear();
    if (s.empty()) return;
    if (trie.empty()) {
        out.push_back({0, s.size(), -1});
        return;
    }
    size_t start_offset = 0;
    size_t pos = 0;
    while (pos < s.size()) {
        auto [len, idx] = trie.longest_at(s, pos);
        if (len == 0) {
            ++pos;
            continue;
        }
        size_t start = pos, stop = pos + len;
        pos = stop;  // the match iterator continues after the match itself
        const AddedTokenInfo& t = added[idx];
        if (t.single_word) {
            bool start_space = start == 0 || !tok::is_word_char(tok::prev_cp(s, start));
            bool stop_space = true;
            if (stop < s.size()) {
                size_t i = stop;
                stop_space = !tok::is_word_char(tok::next_cp(s, i));
            }
            if (!start_space || !stop_space) continue;
        }
        if (t.lstrip) {
            size_t newstart = start;
            while (newstart > 0) {
                char32_t c = tok::prev_cp(s, newstart);
                if (!tok::is_whitespace(c)) break;
                size_t n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
                newstart -= n;
            }
            start = std::max(newstart, start_offset);
        }
        if (t.rstrip) {
            while (stop < s.size()) {
                size_t i = stop;
                if (!tok::is_whitespace(tok::next_cp(s, i))) break;
                stop = i;
            }
        }
        if (start_offset < start) out.push_back({start_offset, start, -1});
        out.push_back({start, stop, t.id});
        start_offset = stop;
    }
    if (start_offset < s.size()) out.push_back({start_offset, s.size(), -1});
}

void Tokenizer::Impl::encode_segment(std::string_view seg, bool at_origin, std::vector<int32_t>& ids) const {
    std::string norm(seg);
    if (normalizer) normalizer->normalize(norm);
    if (norm.empty()) return;
    // How many normalized bytes align with original offset 0: those produced from the first
    // character (including anything prepended to it). Approximated by normalizing that
    // character alone, exact for the normalizers real tokenizers use.
    size_t origin = 0;
    if (at_origin) {
        std::string first(seg.substr(0, std::min(seg.size(), tok::utf8_len(static_cast<unsigned char>(seg[0])))));
        if (normalizer) normalizer->normalize(first);
        origin = std::min(first.size(), norm.size());
    }
    std::vector<tok::Piece> pieces;
    if (normalized_trie.empty()) {
        pieces.push_back(tok::Piece{std::move(norm), -1, origin});
    } else {
        std::vector<Segment> segs;
        find_matches(norm, normalized_trie, segs);
        for (const Segment& sg : segs) {
            if (sg.id >= 0) pieces.push_back(tok::Piece{std::string(), sg.id, 0});
            else pieces.push_back(tok::Piece{norm.substr(sg.start, sg.end - sg.start), -1, origin > sg.start ? origin - sg.start : 0});
        }
    }
    if (pre_tokenizer) pre_tokenizer->pre_tokenize(pieces);
    for (const tok::Piece& p : pieces) {
        if (p.id >= 0) ids.push_back(p.id);
        else model->tokenize(p.text, ids);
    }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::filesystem::path& model_dir) {
    std::filesystem::path tj = model_dir / "tokenizer.json";
    if (!std::filesystem::exists(tj)) {
        throw Error("tokenizer", tj.string() + ": not found (only the tokenizer.json format is supported)");
    }
    Json config;
    std::filesystem::path tc = model_dir / "tokenizer_config.json";
    if (std::filesystem::exists(tc)) config = read_json_file(tc);
    return from_json(read_json_file(tj), config, tj.string());
}

Tokenizer Tokenizer::from_json(const nlohmann::json& j, const nlohmann::json& config, const std::string& source) {
    auto impl = std::make_unique<Impl>();
    impl->source = source;
    if (!j.is_object()) throw Error("tokenizer", source + ": not a JSON object");
    if (!j.contains("model") || !j["model"].is_object()) throw Error("tokenizer", source + ": missing \"model\"");
    const Json& model = j["model"];
    std::string type = model.contains("type") && model["type"].is_string() ? model["type"].get<std::string>()
                       : model.contains("merges")                           ? "BPE"
                                                                            : "?";
    if (type != "BPE") {
        throw Error("tokenizer", source + ": model type '" + type + "' is not supported (supported: BPE)");
    }
    auto get = [&](const char* key) { return j.contains(key) ? j[key] : Json(); };
    impl->model = std::make_unique<tok::BpeModel>(model, source);
    impl->normalizer = tok::make_normalizer(get("normalizer"), source);
    impl->pre_tokenizer = tok::make_pre_tokenizer(get("pre_tokenizer"), source);
    impl->decoder = tok::make_decoder(get("decoder"), source);
    impl->post = tok::make_post_processor(get("post_processor"), source);

    if (Json t = get("truncation"); !t.is_null()) {
        impl->trunc_max = t.value("max_length", size_t{512});
        impl->trunc_left = t.value("direction", std::string("Right")) == "Left";
    }
    if (Json p = get("padding"); !p.is_null()) {
        impl->padding = true;
        if (p.contains("strategy") && p["strategy"].is_object() && p["strategy"].contains("Fixed")) {
            impl->pad_fixed = p["strategy"]["Fixed"].get<size_t>();
        }
        if (p.contains("pad_to_multiple_of") && p["pad_to_multiple_of"].is_number_unsigned()) {
            impl->pad_multiple = p["pad_to_multiple_of"].get<size_t>();
        }
        impl->pad_left = p.value("direction", std::string("Right")) == "Left";
        impl->pad_id = p.value("pad_id", 0);
    }

    if (Json at = get("added_tokens"); at.is_array()) {
        for (const Json& t : at) impl->add_token(t);
    }
    impl->build_tries();

    int64_t max_id = impl->model->max_id();
    for (const auto& t : impl->added) max_id = std::max<int64_t>(max_id, t.id);
    impl->vocab_size = max_id + 1;

    if (config.is_object()) {
        auto resolve = [&](const char* key) -> std::optional<int32_t> {
            if (!config.contains(key)) return std::nullopt;
            std::string content = token_content(config[key]);
            if (content.empty()) return std::nullopt;
            if (auto it = impl->added_by_content.find(content); it != impl->added_by_content.end()) {
                return impl->added[it->second].id;
            }
            return impl->model->token_to_id(content);
        };
        impl->bos = resolve("bos_token");
        impl->eos = resolve("eos_token");
        if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) impl->add_bos = config["add_bos_token"].get<bool>();
        if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) impl->add_eos = config["add_eos_token"].get<bool>();
        if (!config.contains("bos_token") && impl->post.prefix.size() == 1) impl->bos = impl->post.prefix[0];
    } else if (impl->post.prefix.size() == 1) {
        impl->bos = impl->post.prefix[0];
    }
    return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
    const Impl& m = *impl_;
    std::string clean;
    if (!tok::is_valid_utf8(text)) {
        clean = tok::sanitize_utf8(text);
        text = clean;
    }
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 8);
    std::vector<Segment> segs;
    m.find_matches(text, m.raw_trie, segs);
    for (const Segment& sg : segs) {
        if (sg.id >= 0) ids.push_back(sg.id);
        else m.encode_segment(text.substr(sg.start, sg.end - sg.start), sg.start == 0, ids);
    }

    if (m.trunc_max) {
        size_t n_added = add_special_tokens ? m.post.prefix.size() + m.post.suffix.size() : 0;
        size_t max_len = *m.trunc_max > n_added ? *m.trunc_max - n_added : 0;
        if (ids.size() > max_len) {
            if (m.trunc_left) ids.erase(ids.begin(), ids.end() - static_cast<ptrdiff_t>(max_len));
            else ids.resize(max_len);
        }
    }
    if (add_special_tokens && (!m.post.prefix.empty() || !m.post.suffix.empty())) {
        ids.insert(ids.begin(), m.post.prefix.begin(), m.post.prefix.end());
        ids.insert(ids.end(), m.post.suffix.begin(), m.post.suffix.end());
    }
    if (m.padding) {
        size_t target = m.pad_fixed.value_or(ids.size());
        if (m.pad_multiple && *m.pad_multiple > 0 && target % *m.pad_multiple != 0) {
            target += *m.pad_multiple - target % *m.pad_multiple;
        }
        if (ids.size() < target) {
            ids.insert(m.pad_left ? ids.begin() : ids.end(), target - ids.size(), m.pad_id);
        }
    }
    return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
    const Impl& m = *impl_;
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
        const std::string* t = nullptr;
        auto it = m.added_by_id.find(id);
        t = it != m.added_by_id.end() ? &m.added_decode[it->second] : m.model->id_to_token(id);
        // As in tokenizers, "special" is judged on the string shown (a normalized special
        // token whose normalized form differs is therefore kept).
        if (t == nullptr || (skip_special_tokens && m.special_contents.count(*t) > 0)) continue;
        tokens.push_back(*t);
    }
    if (!m.decoder) {
        std::string out;
        for (size_t k = 0; k < tokens.size(); ++k) {
            if (k > 0) out += ' ';
            out += tokens[k];
        }
        return out;
    }
    m.decoder->decode_chain(tokens);
    std::string out;
    for (const std::string& t : tokens) out += t;
    return out;
}

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
std::optional<bool> Tokenizer::add_bos_token() const { return impl_->add_bos; }
std::optional<bool> Tokenizer::add_eos_token() const { return impl_->add_eos; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
    if (auto it = impl_->added_by_content.find(std::string(token)); it != impl_->added_by_content.end()) {
        return impl_->added[it->second].id;
    }
    return impl_->model->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
    if (auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end()) return impl_->added[it->second].content;
    if (const std::string* t = impl_->model->id_to_token(id)) return *t;
    return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
    auto it = impl_->added_by_id.find(id);
    return it != impl_->added_by_id.end() && impl_->special_contents.count(impl_->added[it->second].content) > 0;
}

const std::vector<AddedTokenInfo>& Tokenizer::added_tokens() const { return impl_->added; }
const std::vector<int32_t>& Tokenizer::prefix_special_ids() const { return impl_->post.prefix; }
const std::vector<int32_t>& Tokenizer::suffix_special_ids() const { return impl_->post.suffix; }

}  // namespace moekit::io
