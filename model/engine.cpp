// The layer-streaming forward engine (model/engine.h).
//
// forward_hidden = prepare + embed + forward_layer per layer + final_norm. embed gathers the
// embedding rows for the batch's token ids only; forward_layer(l): load LayerWeights(l) (attention, norms, router, shared/dense MLP), push the whole
// token matrix through attention and the MoE/dense block (routed experts loaded after routing,
// chunk by chunk, and released after use), call the layer observers, destroy LayerWeights(l);
// final RMSNorm. Peak weight memory is one layer's (at most), independent of depth.
// Resident memory: each tensor's mapped checkpoint pages are dropped right after conversion
// (EngineOptions::release_mapped_pages; io::SafetensorsFile::release) and the whole layer's once
// more when it is done (fault-around re-maps neighbours), so file-backed pages do not pile up in
// the RSS either; tests/unit/test_model_engine_memory.cpp measures peak RSS at 2 and 8 layers.
//
// Threading: OpenMP with EngineOptions::threads (0 = omp_get_max_threads()); every parallel
// region names its thread count, and Eigen products run single-threaded inside them.
// Observers are always called from the calling thread, in a fixed order per layer:
// router, then expert events in ascending expert order (for each expert: its kSiteExpert event,
// then its kSiteAllExperts event), then moe_block, then layer.
#include "model/engine.h"

#include "core/blas.h"

#include <omp.h>

#include <algorithm>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "core/gemm_bf16.h"
#include "model/attention.h"
#include "model/engine_device.h"
#include "model/engine_extras.h"
#include "model/engine_linalg.h"
#include "model/engine_weights.h"
#include "model/moe.h"
#include "model/norm.h"

namespace moekit::model {

using namespace detail;

namespace {

constexpr int64_t kHeadBlockRows = 256;

ObserverSets split_observers(std::span<Observer* const> observers) {
    ObserverSets obs;
    for (Observer* o : observers) {
        if (!o) continue;
        const uint32_t s = o->sites();
        if (s & kSiteRouter) obs.router.push_back(o);
        if (s & kSiteExpert) obs.expert.push_back(o);
        if (s & kSiteAllExperts) obs.all_experts.push_back(o);
        if (s & kSiteMoeBlock) obs.moe_block.push_back(o);
        if (s & kSiteLayer) obs.layer.push_back(o);
    }
    return obs;
}

}  // namespace

const char* compute_name(Compute compute) { return compute == Compute::kBf16 ? "bf16" : "fp32"; }

Compute parse_compute(const std::string& name) {
    if (name == "fp32") return Compute::kF32;
    if (name == "bf16") return Compute::kBf16;
    throw Error("engine", "unknown compute precision '" + name + "' (expected fp32 or bf16)");
}

struct Engine::Impl {
    const io::Checkpoint& ckpt;
    const ArchSpec* arch = nullptr;
    ModelConfig mc;
    EngineExtras extras;
    int n_threads = 1;
    uint64_t head_cache_max_bytes = 0;
    float eps = 1e-6f;
    std::string embed_name = "model.embed_tokens.weight";
    std::string head_name;
    mutable WeightCounter counter;       // decoder layers + final norm
    mutable WeightCounter head_counter;  // lm_head cache / blocks
    std::unique_ptr<WeightLoader> loader;
    std::unique_ptr<WeightLoader> head_loader;
    mutable std::mutex head_mutex;
    mutable std::optional<Weight> head_cache;
    std::unique_ptr<DeviceForward> device;  // EngineOptions::device; null on the CPU

    explicit Impl(const io::Checkpoint& c) : ckpt(c) {}
};

Engine::Engine(const io::Checkpoint& checkpoint, EngineOptions options) : impl_(std::make_unique<Impl>(checkpoint)) {
    Impl& m = *impl_;
    ResolvedConfig resolved = resolve_config(checkpoint.config());
    m.arch = resolved.arch;
    m.mc = std::move(resolved.config);
    m.extras = read_extras(checkpoint.config(), m.mc);
    m.n_threads = options.threads > 0 ? options.threads : std::max(1, omp_get_max_threads());
    core::use_single_threaded_blas();  // our OpenMP regions own the parallelism
    m.eps = static_cast<float>(m.mc.rms_norm_eps);
    m.head_cache_max_bytes = options.lm_head_cache_max_bytes;
    if (static_cast<int64_t>(m.mc.is_moe_layer.size()) != m.mc.n_layer)
        throw InternalError("engine", "is_moe_layer does not cover every layer");
    m.head_name = m.mc.tie_word_embeddings ? m.embed_name : "lm_head.weight";
    if (!m.mc.tie_word_embeddings && !checkpoint.find(m.head_name) && checkpoint.find(m.embed_name))
        throw Error("engine", checkpoint.dir().string() + ": no lm_head.weight and tie_word_embeddings is false");
    for (const std::string& name : {m.embed_name, m.head_name}) {
        const auto& shape = checkpoint.at(name).info->shape;
        if (shape.size() != 2 || shape[1] != m.mc.d_model || shape[0] < m.mc.vocab_size)
            throw Error("engine", "tensor '" + name + "' must be [>= vocab_size " + std::to_string(m.mc.vocab_size) +
                                      ", hidden_size " + std::to_string(m.mc.d_model) + "]");
    }
    m.loader = std::make_unique<WeightLoader>(checkpoint, *m.arch, m.mc, m.counter);
    m.head_loader = std::make_unique<WeightLoader>(checkpoint, *m.arch, m.mc, m.head_counter);
    m.loader->set_release_pages(options.release_mapped_pages);
    m.head_loader->set_release_pages(options.release_mapped_pages);
    if (options.device) {
        // The device keeps its own bf16 copies; the host loader always hands over fp32.
        m.device = std::make_unique<DeviceForward>(options.device, m.mc, m.extras, *m.loader, m.eps,
                                                   options.compute == Compute::kBf16, m.n_threads,
                                                   // Overrides may change between calls (GPTQ runs a
                                                   // layer again with its quantized weights): keep nothing.
                                                   options.overrides ? 0 : options.device_weight_budget);
    } else {
        if (options.compute == Compute::kBf16 && !core::bf16::available())
            throw Error("engine", "--compute bf16 needs the bf16 GEMM backend: " + core::bf16::describe() +
                                      " (this build has none; install libdnnl-dev and rebuild)");
        m.loader->set_compute(options.compute);
        m.head_loader->set_compute(options.compute);
    }
    m.loader->set_overrides(options.overrides);
    m.head_loader->set_overrides(options.overrides);
}

Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;

const ModelConfig& Engine::config() const { return impl_->mc; }
const ArchSpec& Engine::arch() const { return *impl_->arch; }
uint64_t Engine::peak_weight_bytes() const { return impl_->counter.peak.load(); }
uint64_t Engine::device_weight_bytes() const { return impl_->device ? impl_->device->cached_weight_bytes() : 0; }
std::string Engine::device_name() const { return impl_->device ? impl_->device->ops().describe() : "cpu"; }

struct ForwardBatch::Data {
    TokenLayout layout;
    std::vector<int32_t> ids;
    std::vector<int64_t> positions;
    RopeTable rope;
    Data(TokenLayout l, std::vector<int32_t> i, std::vector<int64_t> p, const RopeSpec& spec, int64_t max_len)
        : layout(std::move(l)), ids(std::move(i)), positions(std::move(p)), rope(spec, max_len) {}
};

const TokenLayout& ForwardBatch::tokens() const {
    if (!d_) throw InternalError("engine", "ForwardBatch used before Engine::prepare");
    return d_->layout;
}

ForwardBatch Engine::prepare(const std::vector<std::vector<int32_t>>& sequences) const {
    const Impl& m = *impl_;
    const ModelConfig& mc = m.mc;
    if (sequences.empty()) throw Error("engine", "forward: no sequences given");

    TokenLayout layout;
    layout.seq_begin.reserve(sequences.size() + 1);
    layout.seq_begin.push_back(0);
    std::vector<int32_t> ids;
    std::vector<int64_t> positions;
    int64_t max_len = 0;
    for (size_t s = 0; s < sequences.size(); ++s) {
        const auto& seq = sequences[s];
        if (seq.empty()) throw Error("engine", "forward: sequence " + std::to_string(s) + " is empty");
        for (size_t i = 0; i < seq.size(); ++i) {
            if (seq[i] < 0 || seq[i] >= mc.vocab_size)
                throw Error("engine", "forward: token id " + std::to_string(seq[i]) + " at position " + std::to_string(i) +
                                          " of sequence " + std::to_string(s) + " is outside the vocabulary [0, " +
                                          std::to_string(mc.vocab_size) + ")");
            ids.push_back(seq[i]);
            positions.push_back(static_cast<int64_t>(i));
        }
        max_len = std::max<int64_t>(max_len, static_cast<int64_t>(seq.size()));
        layout.seq_begin.push_back(static_cast<int64_t>(ids.size()));
    }
    ForwardBatch batch;
    batch.d_ = std::make_shared<const ForwardBatch::Data>(std::move(layout), std::move(ids), std::move(positions),
                                                          m.extras.rope, max_len);
    return batch;
}

Matrix Engine::embed(const ForwardBatch& batch) const {
    const PhaseTimer timer(EngineProfile::kEmbed);
    (void)batch.tokens();  // throws if not prepared
    Matrix h;
    impl_->loader->gather_rows(impl_->embed_name, batch.d_->ids, h);
    return h;
}

void Engine::forward_layer(const ForwardBatch& batch, int64_t il, Matrix& h, std::span<Observer* const> observers) const {
    const Impl& m = *impl_;
    const ModelConfig& mc = m.mc;
    const int nt = m.n_threads;
    const TokenLayout& layout = batch.tokens();
    const ForwardBatch::Data& bd = *batch.d_;
    if (il < 0 || il >= mc.n_layer)
        throw Error("engine", "forward_layer: layer " + std::to_string(il) + " outside [0, " + std::to_string(mc.n_layer) + ")");
    if (h.rows() != layout.n_tokens() || h.cols() != mc.d_model)
        throw Error("engine", "forward_layer: hidden states are " + std::to_string(h.rows()) + " x " +
                                  std::to_string(h.cols()) + ", expected " + std::to_string(layout.n_tokens()) + " x " +
                                  std::to_string(mc.d_model));

    const ObserverSets obs = split_observers(observers);
    if (m.device) {
        const DeviceBatch db = m.device->prepare(layout, bd.positions, bd.rope);
        backend::DeviceMatrix hd = m.device->ops().upload(h.data(), h.rows(), h.cols());
        m.device->forward_layer(db, il, hd, obs);
        m.device->ops().download(hd, h.data());
        return;
    }

    Matrix x, branch, h_in;
    {
        std::optional<PhaseTimer> timer(std::in_place, EngineProfile::kLoadLayer);
        LayerWeights lw = m.loader->load_layer(il);
        timer.emplace(EngineProfile::kAttention);
        if (!obs.layer.empty()) h_in = h;

        AttentionContext actx{layout, bd.positions, bd.rope, m.extras.sliding_window[static_cast<size_t>(il)],
                              m.extras.clip_qkv, m.eps, nt};
        rms_norm(h, lw.input_norm, m.eps, x, nt);
        if (mc.mla.kv_lora_rank > 0)
            mla_attention(x, lw.attn, mc, m.extras.rope.mla_mscale2, actx, branch);
        else
            gqa_attention(x, lw.attn, mc, actx, branch);
        h += branch;

        rms_norm(h, lw.post_norm, m.eps, x, nt);
        if (mc.is_moe_layer[static_cast<size_t>(il)]) {
            timer.emplace(EngineProfile::kRouterAndMoe);
            MoeContext mctx{il, layout, obs, *m.loader, nt};
            moe_block(h, x, lw, mc, mctx, branch);
        } else {
            timer.emplace(EngineProfile::kDenseMlp);
            mlp(x, lw.dense, branch, nt);
        }
        h += branch;
        timer.reset();
        for (Observer* o : obs.layer) o->on_layer(LayerEvent{il, layout, h_in, h});
        const PhaseTimer release_timer(EngineProfile::kRelease);
        m.loader->release_layer(il);  // pages fault-around re-mapped after their tensor's release
    }  // lw (layer il's weights) is destroyed here, before the caller loads layer il + 1
}

void Engine::final_norm(Matrix& h) const {
    const Impl& m = *impl_;
    const PhaseTimer timer(EngineProfile::kNorms);
    const Weight norm = m.loader->load("model.norm.weight");
    rms_norm(h, norm, m.eps, h, m.n_threads);
}

Matrix Engine::forward_hidden(const std::vector<std::vector<int32_t>>& sequences,
                              std::span<Observer* const> observers) const {
    const ForwardBatch batch = prepare(sequences);
    Matrix h = embed(batch);
    if (const DeviceForward* dev = impl_->device.get()) {
        // The hidden states stay on the device from the embedding to the final norm.
        const ObserverSets obs = split_observers(observers);
        const ForwardBatch::Data& bd = *batch.d_;
        const DeviceBatch db = dev->prepare(bd.layout, bd.positions, bd.rope);
        backend::DeviceMatrix hd = dev->ops().upload(h.data(), h.rows(), h.cols());
        for (int64_t il = 0; il < impl_->mc.n_layer; ++il) dev->forward_layer(db, il, hd, obs);
        dev->final_norm(hd);
        dev->ops().download(hd, h.data());
        return h;
    }
    for (int64_t il = 0; il < impl_->mc.n_layer; ++il) forward_layer(batch, il, h, observers);
    final_norm(h);
    return h;
}

namespace {

// logits()/device_logits(): `hidden` is [T, d_model] and the rows lie inside it.
void check_logits_rows(const Matrix& hidden, int64_t d_model, int64_t row_begin, int64_t n_rows) {
    if (hidden.cols() != d_model)
        throw Error("engine", "logits: hidden has " + std::to_string(hidden.cols()) + " columns, expected " + std::to_string(d_model));
    if (row_begin < 0 || n_rows < 0 || row_begin + n_rows > hidden.rows())
        throw Error("engine", "logits: rows [" + std::to_string(row_begin) + ", " + std::to_string(row_begin + n_rows) +
                                  ") outside hidden (" + std::to_string(hidden.rows()) + " rows)");
}

}  // namespace

backend::DeviceMatrix Engine::device_logits(const Matrix& hidden, int64_t row_begin, int64_t n_rows) const {
    const Impl& m = *impl_;
    if (!m.device) throw InternalError("engine", "device_logits on the CPU engine");
    check_logits_rows(hidden, m.mc.d_model, row_begin, n_rows);
    const PhaseTimer timer(EngineProfile::kLogits);
    std::lock_guard<std::mutex> lock(m.head_mutex);
    const Matrix block = hidden.middleRows(row_begin, n_rows);
    const int64_t V = m.mc.vocab_size;
    return m.device->logits(block, V, [&](float* dst) { m.head_loader->read_rows(m.head_name, 0, V, dst); });
}

Matrix Engine::logits(const Matrix& hidden, int64_t row_begin, int64_t n_rows) const {
    const Impl& m = *impl_;
    const int64_t d = m.mc.d_model, V = m.mc.vocab_size;
    if (m.device) return m.device->download(device_logits(hidden, row_begin, n_rows));
    check_logits_rows(hidden, d, row_begin, n_rows);
    const auto rows = hidden.middleRows(row_begin, n_rows);
    const PhaseTimer timer(EngineProfile::kLogits);
    Matrix out(n_rows, V);
    if (n_rows == 0) return out;
    if (uint64_t(V) * uint64_t(d) * sizeof(float) <= m.head_cache_max_bytes) {
        std::lock_guard<std::mutex> lock(m.head_mutex);
        if (!m.head_cache) {
            Weight w = m.head_loader->alloc(V, d);
            m.head_loader->read_rows(m.head_name, 0, V, w.data.data());
            m.head_loader->to_compute(w);  // bf16 mode: the cached lm_head is packed too
            m.head_cache = std::move(w);
        }
    }
    if (m.head_cache) {
        linear(rows, *m.head_cache, nullptr, out, m.n_threads);
        return out;
    }
    // Large vocabulary: convert kHeadBlockRows lm_head rows at a time, per thread, and multiply.
    const auto n_blocks = static_cast<std::ptrdiff_t>((V + kHeadBlockRows - 1) / kHeadBlockRows);
#pragma omp parallel num_threads(m.n_threads)
    {
        Matrix w(kHeadBlockRows, d);
#pragma omp for schedule(dynamic, 4)
        for (std::ptrdiff_t b = 0; b < n_blocks; ++b) {
            const int64_t v0 = b * kHeadBlockRows, nv = std::min(kHeadBlockRows, V - v0);
            m.head_loader->read_rows(m.head_name, v0, nv, w.data());
            out.middleCols(v0, nv).noalias() = rows * w.topRows(nv).transpose();
        }
    }
    return out;
}

}  // namespace moekit::model
