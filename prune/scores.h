// Expert-pruning scores (METHODS.md §5) and super experts (§4), all from one calibration pass
// that sees routed tokens only: a ScoreObserver accumulates, per MoE layer and expert, the sums
// every method needs; method_scores() turns them into one score per expert (lower = pruned first).
//
// Conventions fixed here (named in moekit.json "params.conventions"):
//  * g_{t,e} is the gate the architecture actually applies (after renormalization and
//    routed_scaling_factor where the router does them); S_t is the architecture's own selection.
//  * REAP renormalizes the gates over the token's selected experts: g~ = g / sum_{j in S_t} g_j.
//  * TCESS uses the raw router logit z_{t,e} (as METHODS.md writes it) and averages over all
//    calibration tokens T, routed or not.
//  * EASY-EP: c_t = max(1 - cos(h_t, h_t + y_t), 0), c_t = 0 when either vector is zero.
//  * EAN and REAP are 0 for an expert that never received a token.
//  * Super experts: m = max |down_proj output| over routed calibration tokens; super iff
//    m > the 99.5th percentile (linear interpolation, numpy's default) of all MoE layers' m,
//    m > max(m) / 10, and the decoder layer index il < 0.75 * n_layer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.h"
#include "model/engine.h"

namespace moekit::prune {

enum class Method { frequency, weighted_frequency, ean, reap, tcess, easy_ep, naee, random };

std::string_view method_name(Method method);      // "frequency", "weighted-frequency", ..., "easy-ep"
std::vector<Method> all_methods();
// Accepts the names above (underscores for dashes too); throws Error("prune") listing them.
Method parse_method(std::string_view name);

// Per-expert sums of one MoE layer over the calibration tokens; merge() adds two of them.
struct LayerStats {
    int64_t layer = 0;                  // decoder layer index
    int64_t n_expert = 0;
    int64_t n_tokens = 0;               // T
    std::vector<int64_t> load;          // #{(t, slot) : e in S_t}
    std::vector<double> gate_sum;       // sum_t g_{t,e}
    std::vector<double> norm_sum;       // sum over routed t of ||E_e(x_t)||_2
    std::vector<double> reap_sum;       // sum over routed t of g~_{t,e} ||E_e(x_t)||_2
    std::vector<double> tcess_sum;      // sum_t z_{t,e} 1[e in S_t]
    std::vector<double> easy_sum;       // sum over routed t of g_{t,e} ||E_e(x_t)||_2 c_t
    std::vector<float> max_abs;         // max over routed t of max_i |E_e(x_t)_i|

    LayerStats() = default;
    LayerStats(int64_t layer, int64_t n_expert);
    void merge(const LayerStats& other);
};

// One score per expert for every method except naee (its scores come from prune/naee.h).
// random: uniform in [0, 1) from a 64-bit Mersenne Twister seeded with std::seed_seq{seed low/high
// 32 bits, layer low/high 32 bits} (the raw 53 high bits; seed_seq and mt19937_64 are specified
// exactly by the standard, so the numbers are the same on every platform).
std::vector<double> method_scores(Method method, const LayerStats& stats, uint64_t seed = 0);

// Accumulates LayerStats for every MoE layer; add it to every forward pass of the calibration.
class ScoreObserver : public model::Observer {
public:
    explicit ScoreObserver(const model::ModelConfig& config);
    uint32_t sites() const override { return model::kSiteRouter | model::kSiteExpert | model::kSiteMoeBlock; }
    void on_router(const model::RouterEvent& event) override;
    void on_expert(const model::ExpertEvent& event) override;
    void on_moe_block(const model::MoeBlockEvent& event) override;

    // One entry per MoE layer, ascending decoder index.
    std::vector<LayerStats> layers() const;

private:
    struct Pending {                    // an EASY-EP term waiting for the layer's c_t
        int64_t row;
        int64_t expert;
        double weighted_norm;           // g_{t,e} ||E_e(x_t)||
    };
    std::vector<LayerStats> stats_;     // indexed by decoder layer (empty for dense layers)
    std::vector<double> gate_total_;    // current layer: sum_j g_{t,j} per token
    std::vector<Pending> pending_;
};

// LayerStats on disk (model/calib_cache.h entries of this kind): per MoE layer il the tensors
// "layer.<il>.<field>" (load, tcess... as I64/F64/F32 vectors, n_tokens as I64[1]).
inline constexpr std::string_view kScoreStatsKind = "prune-scores";
std::vector<io::TensorSource> layer_stats_tensors(const std::vector<LayerStats>& layers);
// Throws Error("calibration") when the entry does not hold exactly `config`'s MoE layers.
std::vector<LayerStats> load_layer_stats(const io::SafetensorsFile& file, const model::ModelConfig& config);

struct SuperExpert {
    int64_t layer;
    int64_t expert;
    float max_abs;
};

struct SuperExpertRule {
    double percentile = 99.5;
    double threshold = 0;               // the percentile value
    float max_all = 0;                  // max(m)
    int64_t layer_limit = 0;            // layers il < layer_limit qualify
};

// Super experts among `layers` (all MoE layers of a model with n_layer decoder layers).
std::vector<SuperExpert> find_super_experts(const std::vector<LayerStats>& layers, int64_t n_layer,
                                            SuperExpertRule* rule = nullptr);

// Linear-interpolation percentile (numpy's default), q in [0, 100].
double percentile(std::vector<double> values, double q);

}  // namespace moekit::prune
