// Private to the forward engine: the decoder layer on a compute device (cuda/device_ops.h).
// The same forward as the CPU engine (model/engine.cpp, attention.cpp, moe.cpp), op for op:
// weights come from the same WeightLoader (host fp32) and are uploaded when a layer first runs
// (routed experts after routing); the hidden states stay on the device between layers.
// Uploaded weights stay on the device while they fit in the weight budget
// (EngineOptions::device_weight_budget; by default most of the device's free memory), so later
// batches run without touching the host copy; beyond the budget a layer's weights are uploaded
// for each pass and freed after it (layer streaming, for models larger than the device).
// Routing decisions are the CPU's: router logits are computed on the device, downloaded, and go
// through model::detail::route, so the selection rules exist once. Observers get host copies
// of what they asked for (downloads only then).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "cuda/device_ops.h"
#include "model/engine.h"
#include "model/engine_extras.h"
#include "model/engine_weights.h"
#include "model/moe.h"
#include "model/rope.h"

namespace moekit::model::detail {

// A batch's positions and RoPE table on the device.
struct DeviceBatch {
    const TokenLayout* tokens = nullptr;
    backend::DeviceIndex positions;
    backend::DeviceRope rope;
};

class DeviceForward {
public:
    // bf16: GEMM weights kept in bf16 on the device (Compute::kBf16); norms, router, biases fp32.
    // weight_budget: bytes of weights kept on the device between passes (kAutoBudget: 85 % of
    // the device's free memory less a reserve for activations).
    static constexpr uint64_t kAutoBudget = ~uint64_t(0);
    DeviceForward(std::shared_ptr<backend::DeviceOps> ops, const ModelConfig& mc, const EngineExtras& extras,
                  const WeightLoader& loader, float eps, bool bf16, int n_threads, uint64_t weight_budget);
    ~DeviceForward();

    backend::DeviceOps& ops() const { return *ops_; }
    DeviceBatch prepare(const TokenLayout& tokens, std::span<const int64_t> positions, const RopeTable& rope) const;
    // Layer il on the device hidden states h [T, d_model] (updated in place).
    void forward_layer(const DeviceBatch& batch, int64_t il, backend::DeviceMatrix& h, const ObserverSets& obs) const;
    void final_norm(backend::DeviceMatrix& h) const;
    // logits [n, V] = hidden [n, d] W_head^T with the head weight uploaded once (host fp32 rows
    // [V, d] read through `read_head` on first use).
    backend::DeviceMatrix logits(const Matrix& hidden_rows, int64_t vocab, const std::function<void(float*)>& read_head) const;

    Matrix download(const backend::DeviceMatrix& m) const;
    // Bytes of weights kept on the device between passes, and the budget for them.
    uint64_t cached_weight_bytes() const { return cached_bytes_; }
    uint64_t weight_budget() const { return budget_; }

private:
    struct Mlp;
    struct Layer;
    std::shared_ptr<Layer> layer(int64_t il) const;
    Mlp upload_mlp(const MlpWeights& w) const;
    void run_mlp(const Mlp& w, const backend::DeviceMatrix& x, backend::DeviceMatrix& y) const;
    backend::DeviceMatrix upload_vec(const Weight& w) const;
    backend::DeviceWeight upload_gemm(const Weight& w) const;
    void attention(const DeviceBatch& batch, int64_t il, const Layer& lw, const backend::DeviceMatrix& x,
                   backend::DeviceMatrix& out) const;
    void moe_block(const DeviceBatch& batch, int64_t il, Layer& lw, const backend::DeviceMatrix& residual,
                   const backend::DeviceMatrix& x, const ObserverSets& obs, backend::DeviceMatrix& out) const;
    bool keep(uint64_t bytes) const;  // reserves bytes of the budget when they fit

    std::shared_ptr<backend::DeviceOps> ops_;
    const ModelConfig& mc_;
    const EngineExtras& extras_;
    const WeightLoader& loader_;
    float eps_;
    bool bf16_;
    int n_threads_;
    uint64_t budget_ = 0;
    mutable uint64_t cached_bytes_ = 0;
    mutable std::vector<std::shared_ptr<Layer>> cache_;  // per decoder layer; null: not kept
    mutable bool read_host_ = false;                      // this layer's pass read checkpoint pages
    mutable backend::DeviceWeight head_;
};

}  // namespace moekit::model::detail
