// The layer-streaming forward engine: teacher-forced forward of every supported architecture
// in fp32 on the CPU. Weights of one decoder layer are resident at a time: all sequences are
// pushed through layer l, observers see what they asked for, layer l is freed, then l+1.
// Peak memory = one layer's weights + the activations of the token set, independent of depth.
// The same forward is available one layer at a time (prepare / embed / forward_layer /
// final_norm) for callers that change weights between layers (sequential GPTQ), with replacement
// weights supplied through WeightOverrides instead of a rewritten checkpoint.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "cuda/device_ops.h"
#include "io/checkpoint.h"
#include "model/arch.h"

namespace moekit::model {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using IndexMatrix = Eigen::Matrix<int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Named observation sites; an observer's sites() is a bitwise OR. The engine computes nothing
// extra for sites nobody asked for (non-routed expert outputs only for kSiteAllExperts).
// Observers are called on the thread that called forward_hidden, in this order per layer:
// on_router; then, experts in ascending order, each expert's kSiteExpert event (only experts with
// at least one routed token) followed by its kSiteAllExperts event; on_moe_block; on_layer.
// Dense (non-MoE) layers emit only on_layer. An observer that asked for both kSiteExpert and
// kSiteAllExperts receives both events for an expert (the all-experts one has rows = 0..T-1).
// Event references are valid only during the call.
enum Site : uint32_t {
    kSiteRouter = 1u << 0,         // router logits, scores, selected experts, gates
    kSiteExpert = 1u << 1,         // per routed expert: its routed inputs and outputs (before gating)
    kSiteAllExperts = 1u << 2,     // every expert on every token (costly: HC-SMoE, NAEE)
    kSiteMoeBlock = 1u << 3,       // MoE block: residual before, normed input, routed output
    kSiteLayer = 1u << 4,          // decoder layer input and output hidden states
};

// Rows of the layer-wide token matrix are the concatenation of all sequences, in order.
struct TokenLayout {
    std::vector<int64_t> seq_begin;  // row offset of each sequence; size n_seq + 1
    int64_t n_tokens() const { return seq_begin.empty() ? 0 : seq_begin.back(); }
};

struct RouterEvent {
    int64_t layer;                 // decoder layer index
    const TokenLayout& tokens;
    const Matrix& logits;          // [T, E] raw router logits (fp32)
    const Matrix& scores;          // [T, E] softmax or sigmoid of the logits (before any bias)
    const IndexMatrix& selected;   // [T, k] selected experts, in the order the router ranks them
    const Matrix& gates;           // [T, k] weight applied to each selected expert's output
};

struct ExpertEvent {
    int64_t layer;
    int64_t expert;
    std::span<const int64_t> rows; // token rows routed to this expert (all rows for kSiteAllExperts)
    const Matrix& input;           // [n, d_model] expert input (the normed MoE block input)
    const Matrix& output;          // [n, d_model] expert output before gating
    std::span<const float> gates;  // [n] gate weight applied (0 for non-routed rows)
};

struct MoeBlockEvent {
    int64_t layer;
    const TokenLayout& tokens;
    const Matrix& residual;        // [T, d] hidden state entering the MoE sub-block (h)
    const Matrix& input;           // [T, d] after post-attention norm (x)
    const Matrix& routed_output;   // [T, d] sum of gated routed expert outputs (y, no shared expert)
    const Matrix& output;          // [T, d] full block output added to the residual
};

struct LayerEvent {
    int64_t layer;
    const TokenLayout& tokens;
    const Matrix& input;
    const Matrix& output;
};

class Observer {
public:
    virtual ~Observer() = default;
    virtual uint32_t sites() const = 0;
    virtual void on_router(const RouterEvent&) {}
    virtual void on_expert(const ExpertEvent&) {}
    virtual void on_moe_block(const MoeBlockEvent&) {}
    virtual void on_layer(const LayerEvent&) {}
};

// Precision of the large matmuls. kF32: fp32 throughout (the exact path, parity with
// transformers). kBf16: attention projections, dense/shared/expert MLPs and a cached lm_head run
// as bf16 x bf16 GEMMs with fp32 accumulation (core/gemm_bf16.h); weights and activations are
// rounded to bf16 per GEMM; norms, RoPE, attention scores, softmax, the router, routing and
// everything downstream of the logits stay fp32.
enum class Compute { kF32, kBf16 };
const char* compute_name(Compute compute);           // "fp32" / "bf16"
Compute parse_compute(const std::string& name);      // throws Error for anything else
// Replacement fp32 values for some checkpoint tensors, consulted every time the engine reads a
// tensor (decoder-layer weights, routed experts, embedding rows, lm_head rows). Lets a caller run
// the model with modified weights without writing a checkpoint (sequential GPTQ runs layer l with
// its quantized weights). The contents may change between engine calls: the engine keeps nothing
// it read beyond the call, except the lm_head cache (EngineOptions::lm_head_cache_max_bytes),
// which is filled on the first logits() call.
class WeightOverrides {
public:
    virtual ~WeightOverrides() = default;
    // The tensor's values (row-major, the checkpoint's shape, n_elements floats) or an empty span
    // to read the checkpoint. Called concurrently from the engine's threads; must not modify.
    virtual std::span<const float> find(std::string_view name) const = 0;
};

// WeightOverrides held in a map by checkpoint tensor name.
class TensorMapOverrides : public WeightOverrides {
public:
    std::map<std::string, std::vector<float>, std::less<>> tensors;
    std::span<const float> find(std::string_view name) const override {
        const auto it = tensors.find(name);
        return it == tensors.end() ? std::span<const float>{} : std::span<const float>(it->second);
    }
};

struct EngineOptions {
    int threads = 0;               // 0: OpenMP default
    Compute compute = Compute::kF32;  // kBf16 throws Error at construction without a bf16 backend
    // logits(): the fp32 lm_head is converted once and kept when it is at most this many bytes;
    // larger ones are converted in row blocks on every call.
    uint64_t lm_head_cache_max_bytes = uint64_t(256) << 20;
    // Drop the checkpoint's mapped pages of each tensor right after converting it to fp32
    // (madvise(MADV_DONTNEED) on the mapping; io::SafetensorsFile::release). Without it every
    // file page the engine touched stays in the process's RSS, which then grows with depth
    // (the whole checkpoint after one pass). Turning it off only saves re-faulting pages
    // (from the page cache) when the same weights are read again by the next batch.
    bool release_mapped_pages = true;
    // Not owned; must outlive the engine. nullptr: every tensor comes from the checkpoint.
    const WeightOverrides* overrides = nullptr;
    // Where the decoder layers run: nullptr = the CPU engine (the reference); otherwise a
    // compute device (backend::make_cuda_ops for a GPU). On a device the hidden states stay
    // there between layers, weights are uploaded layer by layer (routed experts after routing),
    // routing decisions are made on the host by the same code, and Compute::kBf16 keeps the GEMM
    // weights in bf16 on the device (no oneDNN needed). Observers receive host copies.
    std::shared_ptr<backend::DeviceOps> device = nullptr;
    // Bytes of weights the device keeps between passes (uploaded once, reused by every later
    // batch); layers beyond it are uploaded for every pass. Default: 85 % of the device's free
    // memory less a reserve for activations (on the host implementation, which reports no free
    // memory: nothing kept). With `overrides` nothing is kept either: their values may change
    // between calls.
    uint64_t device_weight_budget = ~uint64_t(0);
};

// A set of sequences prepared for the layer-by-layer forward: their token layout, positions and
// RoPE table (Engine::prepare). Cheap to copy (shared, immutable).
class ForwardBatch {
public:
    const TokenLayout& tokens() const;
    int64_t n_tokens() const { return tokens().n_tokens(); }

private:
    friend class Engine;
    struct Data;
    std::shared_ptr<const Data> d_;
};

class Engine {
public:
    // Reads config.json through the architecture registry; weights stay on disk until needed.
    // The engine keeps a reference to `checkpoint`, which must outlive it.
    explicit Engine(const io::Checkpoint& checkpoint, EngineOptions options = {});
    ~Engine();
    Engine(Engine&&) noexcept;

    const ModelConfig& config() const;
    const ArchSpec& arch() const;

    // Runs every sequence through all decoder layers (causal, positions start at 0 in each
    // sequence) and returns the final-normed hidden states, one row per token.
    // Equivalent to prepare, embed, forward_layer for every layer, final_norm.
    Matrix forward_hidden(const std::vector<std::vector<int32_t>>& sequences,
                          std::span<Observer* const> observers = {}) const;

    // The same forward one decoder layer at a time, bit-identical to forward_hidden when the
    // steps are run in order on the same batch. prepare validates the token ids; embed returns
    // the embedding rows [T, d_model]; forward_layer pushes `h` (the hidden states entering
    // layer il, [T, d_model]) through layer il in place, loading and freeing the layer's weights
    // and calling the observers as forward_hidden does for that layer; final_norm applies the
    // model's final RMSNorm in place. A caller may run a layer several times (e.g. once to
    // calibrate on it, once more after changing its weights through WeightOverrides).
    ForwardBatch prepare(const std::vector<std::vector<int32_t>>& sequences) const;
    Matrix embed(const ForwardBatch& batch) const;
    void forward_layer(const ForwardBatch& batch, int64_t il, Matrix& h,
                       std::span<Observer* const> observers = {}) const;
    void final_norm(Matrix& h) const;

    // lm_head on rows [row_begin, row_begin + n_rows) of `hidden`: logits [n_rows, vocab].
    // Callers process the vocabulary projection in chunks so it never holds T x vocab.
    // lm_head weights: converted to fp32 once and cached when the table is at most
    // EngineOptions::lm_head_cache_max_bytes in fp32, otherwise converted block by block from the
    // mapped bytes on every call. Thread-safe.
    Matrix logits(const Matrix& hidden, int64_t row_begin, int64_t n_rows) const;
    // The same logits left on the compute device (EngineOptions::device), for scoring there
    // (backend::DeviceOps::score_rows). Throws InternalError on the CPU engine.
    backend::DeviceMatrix device_logits(const Matrix& hidden, int64_t row_begin, int64_t n_rows) const;

    // Debug/telemetry: the most bytes of fp32 decoder-layer weights (and final norm) resident at
    // once since construction, counted by the allocator of the weight buffers. Layer streaming
    // keeps it at about one layer's weights whatever n_layer is; the lm_head is not included.
    uint64_t peak_weight_bytes() const;

    // "cpu", or the compute device's description (EngineOptions::device).
    std::string device_name() const;
    // Bytes of weights the device keeps between passes (EngineOptions::device_weight_budget);
    // 0 on the CPU.
    uint64_t device_weight_bytes() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace moekit::model
