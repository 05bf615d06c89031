// Mixed-precision bit allocation per routed expert (MC-MoE, METHODS.md §8). From one calibration
// pass over the original model, every expert e gets
//   phi_e  its activation frequency (routed tokens / tokens, per layer),
//   w_e    its gate mass (mean gate weight over the tokens routed to it),
//   L_e,b  the mean squared error of its output on its routed tokens when its three projections
//          are RTN-quantized to b bits (each candidate width measured, not modelled);
// the allocation minimizes sum_e phi_e^alpha w_e^beta L_e,b over assignments b_e in the candidate
// set with sum_e b_e <= avg_bits * n_experts (every expert has the same parameter count, so this is
// the average-bit budget exactly). Solved exactly by dynamic programming over (expert, bits spent).
// An expert no calibration token reached has phi = 0 and costs nothing at any width (among equal
// costs the DP keeps the smallest total, so such experts end up narrow); the report lists tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cuda/device_ops.h"
#include "io/checkpoint.h"
#include "model/corpus.h"
#include "quantize/ggml_quants.h"
#include "quantize/rtn.h"

namespace moekit::quantize {

struct ExpertProfile {
    int64_t layer = 0, expert = 0;
    int64_t tokens = 0;
    double frequency = 0;                 // phi
    double gate_mass = 0;                 // w (mean gate over routed tokens)
    std::vector<double> error;            // L at each candidate width (same order as candidates)
    int bits = 0;                         // allocated
};

// Exact minimizer of sum cost[e][c] subject to sum bits[c_e] <= budget (integers). Returns the
// chosen candidate index per expert; throws Error if even the smallest widths exceed the budget.
std::vector<int> allocate_exact(const std::vector<std::vector<double>>& cost, const std::vector<int>& bits, int64_t budget);
// The same with a width list per unit (bits[u][c]).
std::vector<int> allocate_exact_units(const std::vector<std::vector<double>>& cost, const std::vector<std::vector<int>>& bits,
                                      int64_t budget);

struct MixedPrecisionOptions {
    std::vector<int> candidates = {2, 3, 4, 8};
    double avg_bits = 3.5;
    double alpha = 1.0, beta = 1.0;
    IntGrid grid;                         // group size / symmetry for the error measurement
    model::CorpusOptions calib;
    int64_t batch_tokens = 16384;
    int threads = 0;
    // Where the calibration forward runs (model::EngineOptions::device); nullptr: the CPU.
    std::shared_ptr<backend::DeviceOps> device = nullptr;
    std::function<void(double, const std::string&)> progress;
};

// Profiles every routed expert and allocates bits (ExpertProfile::bits).
std::vector<ExpertProfile> mixed_precision_plan(const io::Checkpoint& checkpoint, const MixedPrecisionOptions& options);

// GGUF (quantize/mixed_gguf.cpp): all experts of a layer-projection share one tensor and so one
// ggml type; the allocation unit is the layer-projection. options.avg_bits is over the routed-expert
// weights in real bits per weight (block scales included, after llama-quantize's fallback).
struct ProjectionStats {
    struct Expert {
        int64_t tokens = 0;
        double gate_sum = 0;
        std::vector<std::vector<double>> error;  // [projection][candidate] summed squared output error
    };
    int64_t tokens = 0;
    std::map<int64_t, Expert> experts;
};
struct ProjectionProfile {
    int64_t layer = 0;
    int projection = 0;                   // 0 gate, 1 up, 2 down
    std::vector<GgmlType> types;          // each candidate after the row-length fallback
    std::vector<double> error;            // sum_e phi^alpha w^beta MSE at each candidate
    int choice = 0;
    GgmlType type = GgmlType::Q8_0;
};
std::vector<ProjectionProfile> mixed_precision_gguf_plan(const io::Checkpoint& checkpoint, const std::vector<GgmlType>& candidates,
                                                         const MixedPrecisionOptions& options);

}  // namespace moekit::quantize
