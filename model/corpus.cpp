// Corpus loading and windowing shared by the commands that run the model (model/corpus.h).
#include "model/corpus.h"

#include <algorithm>

#include "core/error.h"
#include "io/tokenizer.h"

namespace moekit::model {

namespace fs = std::filesystem;

namespace {
constexpr int64_t kDefaultSeqLen = 512;
}

std::vector<int32_t> Corpus::window_ids(size_t w) const {
    const CorpusWindow& win = windows.at(w);
    const auto& ids = streams[win.domain];
    return {ids.begin() + win.begin, ids.begin() + win.begin + win.len};
}

int64_t resolve_seq_len(const io::Checkpoint& checkpoint, int64_t seq_len) {
    if (seq_len == 0)
        seq_len = std::min(kDefaultSeqLen, checkpoint.config().get_int_opt("max_position_embeddings").value_or(kDefaultSeqLen));
    return std::max<int64_t>(seq_len, 2);
}

Corpus load_corpus(const io::Checkpoint& checkpoint, int64_t vocab_size, const CorpusOptions& options) {
    if (options.data.empty()) throw Error("data", "no data files given (" + options.flag + ")");
    if (options.seq_len != 0 && options.seq_len < 2)
        throw Error("data", "--seq-len must be at least 2 (got " + std::to_string(options.seq_len) + ")");
    if (options.max_tokens < 0) throw Error("data", "--max-tokens must not be negative");
    Corpus corpus;
    corpus.seq_len = resolve_seq_len(checkpoint, options.seq_len);

    std::vector<io::RawDocuments> raws;
    for (const auto& src : options.data) {
        raws.push_back(io::read_documents(src.path, options.format));
        corpus.has_text = corpus.has_text || !raws.back().pretokenized;
    }
    const fs::path& model_dir = checkpoint.dir();
    std::optional<io::Tokenizer> tokenizer;
    if (corpus.has_text) {
        if (!fs::exists(model_dir / "tokenizer.json"))
            throw Error("data", "text data needs MODEL_DIR/tokenizer.json, which '" + model_dir.string() +
                                    "' lacks; pass pre-tokenized ids (.bin, .npy, JSONL input_ids) instead");
        tokenizer.emplace(io::Tokenizer::load(model_dir));
    }
    const io::TokenizeOptions tok_options{options.add_eos, options.add_bos, options.max_tokens};
    const io::TokenizeRule rule = io::tokenize_rule(tokenizer ? &*tokenizer : nullptr, tok_options);
    corpus.bos_id = rule.bos_id;
    corpus.eos_id = rule.eos_id;
    corpus.tokenization = corpus.has_text ? rule.describe() : "pre-tokenized ids used as given";

    for (size_t d = 0; d < raws.size(); ++d) {
        io::TokenStream stream = io::make_token_stream(raws[d], tokenizer ? &*tokenizer : nullptr, tok_options);
        io::check_vocabulary(stream.ids, vocab_size, raws[d].path, "the model's vocabulary (vocab_size)");
        CorpusDomain cd;
        cd.name = options.data[d].domain;
        cd.path = options.data[d].path;
        cd.format = raws[d].detail;
        cd.documents = stream.n_documents;
        cd.documents_used = stream.n_documents_used;
        cd.tokens = static_cast<int64_t>(stream.ids.size());
        cd.tokens_available = stream.n_tokens_total;
        if (cd.tokens < 2)
            throw Error("data", "'" + cd.path.string() + "': only " + std::to_string(cd.tokens) +
                                    " token; at least 2 are needed for one window");
        for (int64_t b = 0; b < cd.tokens; b += corpus.seq_len) {
            const int64_t len = std::min(corpus.seq_len, cd.tokens - b);
            if (len < 2) continue;  // a trailing single id predicts nothing
            corpus.windows.push_back({d, b, len});
            ++cd.windows;
        }
        corpus.domains.push_back(std::move(cd));
        corpus.streams.push_back(std::move(stream.ids));
    }
    return corpus;
}

std::vector<std::pair<size_t, size_t>> batch_windows(const std::vector<CorpusWindow>& windows, int64_t batch_tokens) {
    std::vector<std::pair<size_t, size_t>> batches;
    for (size_t w = 0; w < windows.size();) {
        size_t e = w;
        int64_t n = 0;
        while (e < windows.size() && (e == w || n + windows[e].len <= batch_tokens)) n += windows[e++].len;
        batches.emplace_back(w, e);
        w = e;
    }
    return batches;
}

std::vector<std::vector<int32_t>> sample_windows(const Corpus& corpus, int64_t max_tokens) {
    int64_t total = 0;
    for (const auto& w : corpus.windows) total += w.len;
    const auto stride = static_cast<size_t>(std::max<int64_t>(1, (total + max_tokens - 1) / max_tokens));
    std::vector<std::vector<int32_t>> out;
    int64_t used = 0;
    for (size_t w = 0; w < corpus.windows.size(); w += stride) {
        if (used + corpus.windows[w].len > max_tokens) continue;
        out.push_back(corpus.window_ids(w));
        used += corpus.windows[w].len;
    }
    if (out.empty() && !corpus.windows.empty()) {
        std::vector<int32_t> ids = corpus.window_ids(0);
        ids.resize(static_cast<size_t>(std::max<int64_t>(2, std::min<int64_t>(max_tokens, static_cast<int64_t>(ids.size())))));
        out.push_back(std::move(ids));
    }
    return out;
}

}  // namespace moekit::model
