// The BPE model of tokenizer.json (tokenizers' models::bpe): initial symbols per character
// (with continuing_subword_prefix / end_of_word_suffix, byte_fallback to <0xNN> tokens, unk
// fusing), then merges applied lowest rank first (ties: leftmost), exactly like
// Word::merge_all. Results are cached per word.
#include <algorithm>

#include "core/error.h"
#include "io/tokenizer_impl.h"

namespace moekit::io::tok {

namespace {

uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Symbol {
    int32_t id;
    int32_t prev, next;
    uint32_t len;  // bytes; 0 = merged away
};

struct MergeCand {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    // The max-heap pops the "largest": lowest rank, then lowest position.
    bool operator<(const MergeCand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

BpeModel::BpeModel(const Json& j, const std::string& file) {
    std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
    if (!j.contains("vocab") || !j["vocab"].is_object()) {
        throw Error("tokenizer", file + ": model.vocab is missing or not an object");
    }
    vocab_.reserve(j["vocab"].size());
    for (auto it = j["vocab"].begin(); it != j["vocab"].end(); ++it) {
        if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
            it.value().get<int64_t>() > INT32_MAX) {
            throw Error("tokenizer", file + ": model.vocab['" + it.key() + "'] is not a valid id");
        }
        auto id = static_cast<int32_t>(it.value().get<int64_t>());
        vocab_[it.key()] = id;
        max_id_ = std::max<int64_t>(max_id_, id);
    }
    id_to_token_.resize(static_cast<size_t>(max_id_ + 1));
    has_id_.assign(static_cast<size_t>(max_id_ + 1), false);
    for (const auto& [tok, id] : vocab_) {
        id_to_token_[id] = tok;
        has_id_[id] = true;
    }
    auto str_or_empty = [&](const char* key) {
        return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
    };
    if (j.contains("unk_token") && j["unk_token"].is_string()) unk_token_ = j["unk_token"].get<std::string>();
    prefix_ = str_or_empty("continuing_subword_prefix");
    suffix_ = str_or_empty("end_of_word_suffix");
    fuse_unk_ = j.value("fuse_unk", false);
    byte_fallback_ = j.value("byte_fallback", false);
    ignore_merges_ = j.value("ignore_merges", false);
    if (j.contains("dropout") && !j["dropout"].is_null() && j["dropout"].get<double>() != 0.0) {
        throw Error("tokenizer", file + ": BPE dropout is not supported (it makes encoding random)");
    }
    if (byte_fallback_) {
        static const char* hex = "0123456789ABCDEF";
        for (int b = 0; b < 256; ++b) {
            std::string t = "<0x";
            t += hex[b >> 4];
            t += hex[b & 15];
            t += '>';
            if (auto id = vocab_get(t)) byte_ids_[b] = *id;
        }
    }

    if (!j.contains("merges") || !j["merges"].is_array()) {
        throw Error("tokenizer", file + ": model.merges is missing or not an array");
    }
    const Json& merges = j["merges"];
    merges_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const Json& m = merges[rank];
        std::string a, b;
        if (m.is_string()) {
            const std::string& s = m.get_ref<const std::string&>();
            size_t sp = s.find(' ');
            if (sp == std::string::npos) {
                throw Error("tokenizer", file + ": merge #" + std::to_string(rank) + " '" + s + "' is not \"a b\"");
            }
            a = s.substr(0, sp);
            b = s.substr(sp + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            a = m[0].get<std::string>();
            b = m[1].get<std::string>();
        } else {
            throw Error("tokenizer", file + ": merge #" + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
        }
        auto ia = vocab_get(a), ib = vocab_get(b);
        if (!ia || !ib) {
            throw Error("tokenizer", file + ": merge #" + std::to_string(rank) + " uses a token missing from the vocab");
        }
        std::string merged = a + (prefix_.empty() || b.compare(0, prefix_.size(), prefix_) != 0 ? b : b.substr(prefix_.size()));
        auto im = vocab_get(merged);
        if (!im) {
            throw Error("tokenizer", file + ": merge #" + std::to_string(rank) + " produces '" + merged +
                                         "' which is missing from the vocab");
        }
        merges_[pair_key(*ia, *ib)] = {static_cast<int32_t>(rank), *im};
    }
}

std::optional<int32_t> BpeModel::vocab_get(std::string_view s) const {
    auto it = vocab_.find(s);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const { return vocab_get(token); }

const std::string* BpeModel::id_to_token(int32_t id) const {
    if (id < 0 || id > max_id_ || !has_id_[id]) return nullptr;
    return &id_to_token_[id];
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (ignore_merges_) {
        if (auto id = vocab_get(word)) {
            out.push_back(*id);
            return;
        }
    }
    bool cacheable = word.size() <= kMaxCachedWordBytes;
    if (cacheable) {
        std::shared_lock lock(cache_mutex_);
        auto it = cache_.find(word);
        if (it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    size_t first = out.size();
    merge_word(word, out);
    if (cacheable) {
        std::unique_lock lock(cache_mutex_);
        if (cache_.size() < kMaxCacheEntries) cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + first, out.end()));
    }
}

void BpeModel::merge_word(std::string_view w, std::vector<int32_t>& out) const {
    thread_local std::vector<Symbol> symbols;
    symbols.clear();
    auto add = [&](int32_t id, uint32_t len) {
        auto n = static_cast<int32_t>(symbols.size());
        symbols.push_back({id, n - 1, n + 1, len});
    };
    int32_t unk_id_pending = -1;  // pending unk symbol (id, byte length); -1 = none
    uint32_t unk_len = 0;
    std::string s;
    size_t i = 0;
    while (i < w.size()) {
        size_t start = i;
        i += utf8_len(static_cast<unsigned char>(w[i]));
        if (i > w.size()) i = w.size();
        auto byte_len = static_cast<uint32_t>(i - start);
        std::string_view ch = w.substr(start, byte_len);
        std::optional<int32_t> id;
        bool decorated = (start != 0 && !prefix_.empty()) || (i == w.size() && !suffix_.empty());
        if (decorated) {
            s.clear();
            if (start != 0) s += prefix_;
            s += ch;
            if (i == w.size()) s += suffix_;
            id = vocab_get(s);
        } else {
            id = vocab_get(ch);
        }
        if (id) {
            if (unk_id_pending >= 0) {
                add(unk_id_pending, unk_len);
                unk_id_pending = -1;
            }
            add(*id, byte_len);
            continue;
        }
        std::string_view bytes = decorated ? std::string_view(s) : ch;
        if (byte_fallback_) {
            bool all = true;
            for (char b : bytes) all = all && byte_ids_[static_cast<unsigned char>(b)] >= 0;
            if (all) {
                for (char b : bytes) add(byte_ids_[static_cast<unsigned char>(b)], 1);
                continue;
            }
        }
        if (unk_token_) {
            auto unk_id = vocab_get(*unk_token_);
            if (!unk_id) {
                throw Error("tokenizer", "tokenizer.json: unk_token '" + *unk_token_ + "' is not in the vocab");
            }
            if (unk_id_pending >= 0 && fuse_unk_) {
                unk_len += byte_len;
            } else {
                if (unk_id_pending >= 0) add(unk_id_pending, unk_len);
                unk_id_pending = *unk_id;
                unk_len = byte_len;
            }
        }
    }
    if (unk_id_pending >= 0) add(unk_id_pending, unk_len);
    if (!symbols.empty()) symbols.back().next = -1;

    thread_local std::vector<MergeCand> heap;
    heap.clear();
    auto push = [&](MergeCand c) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end());
    };
    auto lookup = [&](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
        auto it = merges_.find(pair_key(a, b));
        return it == merges_.end() ? nullptr : &it->second;
    };
    for (size_t k = 0; k + 1 < symbols.size(); ++k) {
        if (auto m = lookup(symbols[k].id, symbols[k + 1].id)) push({m->first, static_cast<int32_t>(k), m->second});
    }
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end());
        MergeCand top = heap.back();
        heap.pop_back();
        Symbol& cur = symbols[top.pos];
        if (cur.len == 0 || cur.next == -1) continue;
        int32_t next_pos = cur.next;
        Symbol right = symbols[next_pos];
        auto m = lookup(cur.id, right.id);
        if (m == nullptr || m->second != top.new_id) continue;
        cur.id = top.new_id;
        cur.len += right.len;
        cur.next = right.next;
        symbols[next_pos].len = 0;
        if (right.next > -1 && right.next < static_cast<int32_t>(symbols.size())) symbols[right.next].prev = top.pos;
        if (cur.prev >= 0) {
            if (auto pm = lookup(symbols[cur.prev].id, cur.id)) push({pm->first, cur.prev, pm->second});
        }
        if (cur.next >= 0 && cur.next < static_cast<int32_t>(symbols.size())) {
            if (auto nm = lookup(cur.id, symbols[cur.next].id)) push({nm->first, top.pos, nm->second});
        }
    }
    for (const Symbol& sym : symbols) {
        if (sym.len != 0) out.push_back(sym.id);
    }
}

}  // namespace moekit::io::tok
