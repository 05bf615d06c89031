// Percentile bootstrap over batches of sequences (METHODS.md §3.5, used for every interval in
// `moekit profile`). Sequences are grouped into contiguous batches (sequence s of n goes to batch
// floor(s * B / n)); a resample draws B batches with replacement; a statistic is recomputed from
// per-batch aggregates weighted by how often each batch was drawn. All statistics of one run use
// the same draws (one BootstrapPlan), so intervals are reproducible from the seed alone.
//
// Conventions: draws come from std::mt19937_64(seed) as rng() % B (the modulo bias is below
// 2^-50 for any realistic B); the interval is the 2.5th and 97.5th percentiles of the resampled
// values with linear interpolation (numpy's default), non-finite resampled values are dropped.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <nlohmann/json.hpp>

namespace moekit::analysis {

struct Interval {
    double value = 0.0;  // the statistic on the full data
    double lo = 0.0;     // 2.5th percentile of the resamples (= value when there is no bootstrap)
    double hi = 0.0;     // 97.5th percentile
};
// {"value": v, "ci95": [lo, hi]}
nlohmann::ordered_json to_json(const Interval& interval);

struct BootstrapOptions {
    int64_t batches = 50;      // B (capped at the number of sequences)
    int64_t resamples = 1000;  // R; 0 disables intervals
    uint64_t seed = 0;
};

// Batch index of every sequence: floor(s * B / n_seq), B = min(batches, n_seq).
std::vector<int32_t> assign_batches(int64_t n_seq, int64_t batches);

class BootstrapPlan {
public:
    BootstrapPlan(int64_t n_seq, const BootstrapOptions& options);

    int64_t n_batch() const { return n_batch_; }
    int64_t n_resample() const { return static_cast<int64_t>(weights_.size()); }
    const std::vector<int32_t>& batch_of_seq() const { return batch_of_seq_; }
    // Multiplicity of each batch in resample r (sums to n_batch).
    const std::vector<int32_t>& weights(int64_t r) const { return weights_[static_cast<size_t>(r)]; }
    // All-ones weights (the full data).
    const std::vector<int32_t>& full() const { return full_; }

    // value = statistic(full()), [lo, hi] from statistic(weights(r)) over r.
    Interval interval(const std::function<double(const std::vector<int32_t>&)>& statistic) const;

private:
    int64_t n_batch_ = 0;
    std::vector<int32_t> batch_of_seq_;
    std::vector<int32_t> full_;
    std::vector<std::vector<int32_t>> weights_;
};

// Linear-interpolation quantile (numpy default) of `values` (copied and sorted), q in [0, 1].
double quantile(std::vector<double> values, double q);

}  // namespace moekit::analysis
