// From calibration statistics to the low-rank factors of every routed expert (METHODS.md §7).
//
// Methods:
//  * svd-llm: each projection W of each expert is factorized by whitened SVD (svd/lowrank.h)
//    with that expert's own input statistics (gate/up: h_in, down: h_mid, divided by the token
//    count); rank r = ⌊m·n·ρ/(m+n)⌋ for kept-parameter ratio ρ.
//  * d2-moe: per layer and projection a shared base W_b = Σ_i α_i W_i with α_i = tokens_i / Σ tokens
//    (uniform when the layer saw no tokens); each expert keeps W_b + A_i B_i where A_i B_i is the
//    whitened SVD of its delta W_i − W_b. The base is stored once per layer and projection and
//    counts against the budget: E experts of [m, n] may keep ρ·E·m·n parameters, the base takes
//    m·n of them, so r = ⌊(ρ·E − 1)·m·n / (E·(m+n))⌋ (refused when below 1).
//  * svd: plain truncated SVD at the svd-llm rank, no calibration (the baseline).
// Fallback: an expert that received no routed token has no statistics; it is factorized by plain
// SVD (recorded per layer as `fallback_experts`), never NaN.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/arch.h"
#include "svd/calib.h"

namespace moekit::svd {

enum class Method { svd_llm, d2_moe, plain };
Method parse_method(const std::string& name);  // "svd-llm", "d2-moe", "svd"; Error("svd") otherwise
std::string method_name(Method method);

enum class Proj { gate = 0, up = 1, down = 2 };
inline constexpr const char* kProjNames[3] = {"gate", "up", "down"};

// One factorized projection: W ≈ base + A B, fp32 row-major.
struct Factors {
    int64_t m = 0, n = 0, r = 0;
    std::vector<float> a;  // [m, r]
    std::vector<float> b;  // [r, n]
};

struct ExpertFactors {
    Factors proj[3];
    bool fallback = false;  // plain SVD because the expert saw no tokens (whitened methods)
    double shift = 0.0;     // largest diagonal shift its H needed (0: positive definite)
};

struct LayerFactors {
    int64_t layer = -1;
    std::vector<int64_t> tokens;          // routed tokens per expert
    std::vector<ExpertFactors> experts;
    std::vector<float> base[3];           // d2-moe: W_b per projection, [m, n] row-major
    std::vector<double> alpha;            // d2-moe: α_i
    double tail_energy[3] = {0, 0, 0};    // mean over experts of the relative truncation energy
};

// Rank per projection for `method` at `ratio`, for an [m, n] projection in layers of E experts.
// Throws Error("svd") when d2-moe's base leaves no budget.
int64_t method_rank(Method method, int64_t m, int64_t n, int64_t n_expert, double ratio);

// Factorizes every routed expert of MoE layer `layer`; `calib` (that layer's statistics) may be
// null for Method::plain. Experts are processed in parallel (n_threads).
LayerFactors compress_layer(const io::Checkpoint& checkpoint, const model::ArchSpec& arch,
                            const model::ModelConfig& config, Method method, double ratio, int64_t layer,
                            const LayerCalib* calib, int n_threads, const SvdFn& svd_fn = {});

// Factorizes every routed expert of every MoE layer. `calib` may be null for Method::plain.
// Experts are processed in parallel (n_threads); `progress` gets (fraction, what).
std::vector<LayerFactors> compress(const io::Checkpoint& checkpoint, const model::ArchSpec& arch,
                                   const model::ModelConfig& config, Method method, double ratio,
                                   const std::vector<LayerCalib>* calib, int n_threads,
                                   const std::function<void(double, const std::string&)>& progress = {},
                                   const SvdFn& svd_fn = {});

}  // namespace moekit::svd
