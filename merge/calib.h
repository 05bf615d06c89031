// What merging needs from the calibration pass, per MoE layer, as additive sums (merge() adds
// two of them, so batches, files and processes combine) plus a capture of router inputs:
//  * load (tokens routed to each expert, the architecture's own selection) -> frequencies f_e;
//  * the router-logit Gram matrix sum_t z_t z_t^T (M-SMoE's cosine of router-logit columns);
//  * every expert's output on sampled tokens (the engine's costed kSiteAllExperts request, a
//    separate pass over evenly spaced windows as prune's NAEE does): their sum (HC-SMoE's mean
//    outputs) and Gram matrix sum_t <E_i(x_t), E_j(x_t)> (Sub-MoE's cosine distances);
//  * the router inputs x_t and logits z_t of every `capture_stride`-th calibration token, from
//    which the router refit accumulates X^T X and X^T y and the routing agreement is measured.
#pragma once

#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "io/safetensors.h"
#include "model/engine.h"

namespace moekit::merge {

struct LayerCalib {
    int64_t layer = 0;                  // decoder layer index
    int64_t n_expert = 0;
    int64_t d_model = 0;
    int64_t n_tokens = 0;               // router tokens seen
    std::vector<int64_t> load;          // #{(t, slot): e in S_t}
    Eigen::MatrixXd logit_gram;         // E x E
    int64_t sample_tokens = 0;          // tokens of the all-experts pass
    Eigen::MatrixXd output_sum;         // E x d
    Eigen::MatrixXd output_gram;        // E x E
    model::Matrix x;                    // [captured, d] router inputs
    model::Matrix logits;               // [captured, E]

    LayerCalib() = default;
    LayerCalib(int64_t layer, int64_t n_expert, int64_t d_model);
    void merge(const LayerCalib& other);  // sums add, captures append
};

// Router statistics and captures on every calibration pass (router + MoE-block sites).
class RouterObserver : public model::Observer {
public:
    // capture_stride: keep the router input of every stride-th token of each layer (>= 1).
    RouterObserver(const model::ModelConfig& config, int64_t capture_stride);
    uint32_t sites() const override { return model::kSiteRouter | model::kSiteMoeBlock; }
    void on_router(const model::RouterEvent& event) override;
    void on_moe_block(const model::MoeBlockEvent& event) override;
    std::vector<LayerCalib>& layers() { return layers_; }  // MoE layers, ascending

private:
    std::vector<LayerCalib> layers_;
    std::vector<int64_t> index_;        // decoder layer -> layers_ index (-1 dense)
    int64_t stride_;
    std::vector<int64_t> seen_;         // per layer: tokens seen before the current pass
};

// Every expert's output on the sampled tokens: fills output_sum / output_gram / sample_tokens.
class OutputObserver : public model::Observer {
public:
    OutputObserver(std::vector<LayerCalib>& layers, int64_t n_layer);
    uint32_t sites() const override { return model::kSiteAllExperts | model::kSiteMoeBlock; }
    void on_expert(const model::ExpertEvent& event) override;
    void on_moe_block(const model::MoeBlockEvent& event) override;

private:
    std::vector<LayerCalib>& layers_;
    std::vector<int64_t> index_;
    std::vector<model::Matrix> outputs_;  // current layer, per expert [T, d]
};

// LayerCalib on disk (model/calib_cache.h entries): kRouterStatsKind holds the router pass
// (n_tokens, load, logit_gram, x, logits per layer), kOutputStatsKind the all-experts sample
// (sample_tokens, output_sum, output_gram). Tensors "layer.<il>.<field>", matrices flattened in
// their own storage order with the shape in the tensor.
inline constexpr std::string_view kRouterStatsKind = "merge-router";
inline constexpr std::string_view kOutputStatsKind = "merge-outputs";
std::vector<io::TensorSource> layer_calib_tensors(const std::vector<LayerCalib>& layers, bool outputs);
// The router part for `config`'s MoE layers; throws Error("calibration") when it does not fit.
std::vector<LayerCalib> load_layer_calib(const io::SafetensorsFile& file, const model::ModelConfig& config);
// Fills output_sum / output_gram / sample_tokens of `layers` from a kOutputStatsKind entry.
void load_output_stats(const io::SafetensorsFile& file, std::vector<LayerCalib>& layers);

}  // namespace moekit::merge
