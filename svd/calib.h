// The calibration statistics SVD-LLM and D2-MoE whiten with: per MoE layer and routed expert,
// the number of routed tokens and the input second-moment sums of its two kinds of projection,
//   h_in  = Σ x xᵀ  [d_model, d_model]  over the expert's routed inputs x (gate_proj, up_proj see x),
//   h_mid = Σ a aᵀ  [d_ff, d_ff]        over a = silu(W_gate x) ⊙ (W_up x) (what down_proj sees),
// accumulated in double. An engine Observer on kSiteExpert (routed tokens only): the engine hands
// it x; the intermediate activation a is recomputed here from x and the expert's gate/up weights
// read from the checkpoint, so the engine needs no change. Sums over batches simply add.
//
// Memory: n_expert × (d_model² + d_ff²) × 8 bytes per MoE layer held: one layer when the
// statistics are consumed in the last engine pass (set_last_pass), every MoE layer before it.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "io/checkpoint.h"
#include "model/arch.h"
#include "model/engine.h"
#include "svd/lowrank.h"

namespace moekit::svd {

struct ExpertStats {
    int64_t tokens = 0;  // routed tokens seen
    MatrixD h_in;        // Σ x xᵀ (empty until the first token)
    MatrixD h_mid;       // Σ a aᵀ
};

struct LayerCalib {
    int64_t layer = -1;
    std::vector<ExpertStats> experts;  // n_expert of the layer
};

class CalibObserver : public model::Observer {
public:
    // `checkpoint` (read for the experts' gate/up weights) must outlive the observer.
    CalibObserver(const io::Checkpoint& checkpoint, const model::ArchSpec& arch, const model::ModelConfig& config);
    uint32_t sites() const override { return model::kSiteExpert | model::kSiteLayer; }
    void on_expert(const model::ExpertEvent& event) override;
    void on_layer(const model::LayerEvent& event) override;

    // Layer streaming: when set, the engine pass that is running is the last one, so a MoE
    // layer's statistics are complete at its on_layer event; they are handed to `consumer` there
    // and freed, and only one layer's statistics are held at a time (the engine pushes all of a
    // pass's tokens through layer l before l+1). Unset (default), statistics accumulate.
    void set_last_pass(std::function<void(LayerCalib&)> consumer) { consumer_ = std::move(consumer); }

    // MoE layers in ascending order.
    const std::vector<LayerCalib>& layers() const { return layers_; }
    std::vector<LayerCalib>& layers() { return layers_; }

private:
    const io::Checkpoint& ckpt_;
    const model::ArchSpec& arch_;
    std::vector<int64_t> slot_;  // decoder layer -> index in layers_ (-1 for dense layers)
    std::vector<LayerCalib> layers_;
    std::function<void(LayerCalib&)> consumer_;
};

// The intermediate activation a = silu(x W_gateᵀ) ⊙ (x W_upᵀ) for rows x [n, d] (row-major fp32),
// with W_gate, W_up [f, d] row-major: a [n, f]. Shared with the tests' brute-force check.
model::Matrix intermediate(const model::Matrix& x, const float* w_gate, const float* w_up, int64_t f);

}  // namespace moekit::svd
