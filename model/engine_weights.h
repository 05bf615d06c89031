// Private to the forward engine (model/engine*.cpp, attention*, moe*): fp32 weight buffers whose
// allocations are counted, the weights of one decoder layer (LayerWeights), and the loader that
// converts them from the checkpoint's mapped bytes (bf16/f16/f32/fp8 with block scales).
//
// Memory accounting: every Weight buffer is a std::vector with a counting allocator bound to the
// engine's WeightCounter, so `now`/`peak` are the bytes actually allocated for fp32 weights, not
// a number the engine adds up by hand. Engine::peak_weight_bytes() reports `peak`.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <sys/mman.h>

#include <Eigen/Core>

#include "io/checkpoint.h"
#include "model/arch.h"
#include "model/engine.h"

namespace moekit::model::detail {

// Wall-clock profile of the engine's phases (nanoseconds, summed over calls), kept only when the
// environment variable MOEKIT_ENGINE_PROFILE is set and printed to stderr when the engine is
// destroyed. Development aid for bench/bench_eval.py's breakdown.
struct EngineProfile {
    enum Phase { kEmbed, kLoadLayer, kAttention, kRouterAndMoe, kLoadExperts, kDenseMlp, kNorms, kLogits, kRelease, kCount };
    std::atomic<int64_t> ns[kCount] = {};
    bool enabled = false;
};
EngineProfile& engine_profile();

// RAII timer adding to engine_profile() when it is enabled.
class PhaseTimer {
public:
    explicit PhaseTimer(EngineProfile::Phase phase);
    ~PhaseTimer();
    PhaseTimer(const PhaseTimer&) = delete;
    PhaseTimer& operator=(const PhaseTimer&) = delete;

private:
    EngineProfile::Phase phase_;
    int64_t t0_ = -1;
};

struct WeightCounter {
    std::atomic<uint64_t> now{0};
    std::atomic<uint64_t> peak{0};
    void add(uint64_t bytes) {
        const uint64_t cur = now.fetch_add(bytes) + bytes;
        uint64_t prev = peak.load();
        while (cur > prev && !peak.compare_exchange_weak(prev, cur)) {}
    }
    void sub(uint64_t bytes) { now.fetch_sub(bytes); }
};

template <class T>
struct CountingAllocator {
    using value_type = T;
    // Moving/assigning a Weight takes its buffer and its counter along (no uncounted copies).
    using propagate_on_container_move_assignment = std::true_type;
    using propagate_on_container_copy_assignment = std::true_type;
    using propagate_on_container_swap = std::true_type;
    WeightCounter* counter = nullptr;
    CountingAllocator() = default;
    explicit CountingAllocator(WeightCounter* c) : counter(c) {}
    template <class U>
    CountingAllocator(const CountingAllocator<U>& other) : counter(other.counter) {}
    // Buffers of kDirectMapBytes or more are anonymous mmaps of their own, unmapped on free:
    // with glibc's malloc they would, after the first frees raise its dynamic mmap threshold,
    // come from the heap/arenas, whose fragmentation under the layer-by-layer alloc/free
    // pattern let the resident set creep up with depth (measured: ~1.5 MiB per layer in
    // tests/unit/test_model_engine_memory.cpp).
    static constexpr std::size_t kDirectMapBytes = std::size_t(64) << 10;
    T* allocate(std::size_t n) {
        const std::size_t bytes = n * sizeof(T);
        void* p;
        if (bytes >= kDirectMapBytes) {
            p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) throw std::bad_alloc();
            // Transparent huge pages where the system allows them on request ("madvise" mode):
            // 512x fewer zero-fill faults when the buffer is first written, fewer TLB misses in
            // the GEMMs. Advisory; failure is harmless.
            if (bytes >= (std::size_t(2) << 20)) ::madvise(p, bytes, MADV_HUGEPAGE);
        } else {
            p = ::operator new(bytes, std::align_val_t{64});
        }
        if (counter) counter->add(bytes);
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        const std::size_t bytes = n * sizeof(T);
        if (counter) counter->sub(bytes);
        if (bytes >= kDirectMapBytes)
            ::munmap(p, bytes);
        else
            ::operator delete(p, std::align_val_t{64});
    }
    template <class U>
    bool operator==(const CountingAllocator<U>& o) const { return counter == o.counter; }
};

using ConstMatrixMap = Eigen::Map<const Matrix>;
using ConstRowMap = Eigen::Map<const Eigen::RowVectorXf>;

// A dense fp32 tensor [rows, cols] (a vector has rows = 1). Empty when the tensor is absent.
// In bf16 compute mode (EngineOptions::compute) the matrices that only feed GEMMs are held
// instead in the bf16 GEMM backend's packed layout (`packed`, core/gemm_bf16.h; `data` freed).
struct Weight {
    std::vector<float, CountingAllocator<float>> data;
    int64_t rows = 0;
    int64_t cols = 0;
    std::vector<std::byte, CountingAllocator<std::byte>> packed;
    bool empty() const { return data.empty() && packed.empty(); }
    bool is_packed() const { return !packed.empty(); }
    ConstMatrixMap mat() const { return ConstMatrixMap(data.data(), rows, cols); }
    ConstRowMap vec() const { return ConstRowMap(data.data(), rows * cols); }
};

// A SwiGLU MLP: gate and up fused into one [2F, d] matrix (rows [0, F) gate, [F, 2F) up), so one
// GEMM computes both. Biases (DeepSeek-V2 mlp_bias) likewise fused.
struct MlpWeights {
    Weight gate_up;
    Weight gate_up_bias;
    Weight down;
    Weight down_bias;
    // A low-rank routed expert (ModelConfig::lowrank_factored; `moekit svd --format factored`):
    // W ≈ A B per projection, applied as two thin GEMMs (x Bᵀ, then Aᵀ), never reconstructed.
    // gate_up_b stacks B_gate [rank_gate, d] over B_up [r_up, d]; gate_a/up_a [F, r]; down_b
    // [r_down, F]; down_a [d, r_down]. `base` (d2-moe): the layer's shared dense expert added to it.
    Weight gate_up_b, gate_a, up_a, down_b, down_a;
    int64_t rank_gate = 0;
    const struct MlpWeights* base = nullptr;
    bool factored() const { return !gate_a.empty(); }
    int64_t d_ff() const { return factored() ? gate_a.rows : gate_up.rows / 2; }
    bool empty() const { return gate_up.empty() && gate_a.empty(); }
};

struct AttentionWeights {
    // Ordinary attention (GQA); q is also MLA's plain q_proj when q_lora_rank == 0.
    Weight q, k, v, o, q_bias, k_bias, v_bias, o_bias, q_norm, k_norm;
    // MLA (DeepSeek-V2/V3).
    Weight q_a, q_a_bias, q_a_norm, q_b, kv_a, kv_a_bias, kv_a_norm, kv_b;
};

// Everything decoder layer `layer` needs. Routed experts are loaded after routing, only those
// with tokens (or all of them when an observer asked for kSiteAllExperts).
struct LayerWeights {
    int64_t layer = -1;
    Weight input_norm, post_norm;
    AttentionWeights attn;
    MlpWeights dense;                 // dense (non-MoE) layers
    Weight router;                    // [E, d]
    Weight router_bias;               // DeepSeek-V3 e_score_correction_bias [E]
    MlpWeights shared;                // shared expert(s), empty if none
    Weight shared_gate;               // Qwen2-MoE shared_expert_gate [1, d]
    std::vector<MlpWeights> experts;  // size n_expert; an entry is empty until loaded
    MlpWeights expert_base;           // low-rank d2-moe checkpoints: the shared base of the experts
};

class WeightLoader {
public:
    WeightLoader(const io::Checkpoint& checkpoint, const ArchSpec& arch, const ModelConfig& config,
                 WeightCounter& counter);

    // bf16: load_layer/load_experts pack the GEMM-only matrices (attention projections, dense,
    // shared and routed expert MLPs; not the router, norms or biases) with to_compute().
    void set_compute(Compute compute) { compute_ = compute; }
    // In bf16 mode: packs w for core::bf16::gemm and frees its fp32 data; otherwise a no-op.
    void to_compute(Weight& w) const;

    // All of layer il's weights except the routed experts.
    LayerWeights load_layer(int64_t il) const;
    // Loads the listed experts of lw.layer that are not loaded yet (in parallel over experts).
    void load_experts(LayerWeights& lw, std::span<const int64_t> experts, int n_threads) const;
    // Frees one expert's weights (after its last use).
    static void release_expert(LayerWeights& lw, int64_t ie);

    Weight alloc(int64_t rows, int64_t cols) const;     // counted, uninitialized
    Weight load(std::string_view name) const;           // throws Error if absent
    Weight load_optional(std::string_view name) const;  // empty if absent

    // Rows `ids` of a 2-D tensor [n, d], converted per row from the mapped bytes into out [ids, d].
    void gather_rows(std::string_view name, std::span<const int32_t> ids, Matrix& out) const;
    // Rows [row_begin, row_begin + n) of a 2-D tensor as fp32 into dst (n x cols floats).
    void read_rows(std::string_view name, int64_t row_begin, int64_t n, float* dst) const;
    // Shape of a tensor (throws Error if absent).
    std::vector<int64_t> shape(std::string_view name) const;

    const io::Checkpoint& checkpoint() const { return ckpt_; }
    WeightCounter& counter() const { return counter_; }

    // When on (the default), every read above drops the mapped checkpoint pages it touched right
    // after converting them (io::SafetensorsFile::release), so file-backed pages do not pile up
    // in the resident set layer after layer: peak RSS stays ~ one layer's fp32 weights plus the
    // pages being converted, whatever the depth. Off: pages stay mapped (re-reads fault nothing).
    void set_release_pages(bool on) { release_pages_ = on; }
    // Values that replace checkpoint tensors in every read above (EngineOptions::overrides).
    void set_overrides(const WeightOverrides* overrides) { overrides_ = overrides; }
    // At the end of decoder layer il (when release is on): releases the layer's tensors once
    // more, adjacent ranges merged (so pages two of its tensors share go too) and widened to the
    // enclosing 64 KiB-aligned windows. Needed because the kernel's fault-around maps up to
    // fault_around_bytes (64 KiB) of already-cached pages around each faulting address: reading
    // one tensor re-maps parts of its already released neighbours (of other layers, when the
    // file interleaves layers), which would otherwise stay resident for good. Widening past the
    // layer's own bytes only drops mappings; neighbours fault back in unchanged when read.
    void release_layer(int64_t il) const;
    bool release_pages() const { return release_pages_; }

private:
    MlpWeights load_mlp(const std::string& gate, const std::string& up, const std::string& down, bool bias) const;
    MlpWeights load_lowrank(const ExpertTensorNames& names) const;
    void read_into(std::string_view name, float* dst, uint64_t n_expected) const;
    // The override of `name` (checked against the checkpoint's element count), or empty.
    std::span<const float> override_of(std::string_view name) const;

    const io::Checkpoint& ckpt_;
    const ArchSpec& arch_;
    const ModelConfig& mc_;
    WeightCounter& counter_;
    bool release_pages_ = true;
    Compute compute_ = Compute::kF32;
    const WeightOverrides* overrides_ = nullptr;
};

}  // namespace moekit::model::detail
