// Percentile bootstrap over batches of sequences (analysis/bootstrap.h).
#include "analysis/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"

namespace moekit::analysis {

nlohmann::ordered_json to_json(const Interval& interval) {
    return {{"value", interval.value}, {"ci95", {interval.lo, interval.hi}}};
}

std::vector<int32_t> assign_batches(int64_t n_seq, int64_t batches) {
    if (n_seq < 0 || batches < 1) throw Error("profile", "bootstrap needs at least one batch");
    const int64_t b = std::min(batches, std::max<int64_t>(n_seq, 1));
    std::vector<int32_t> out(static_cast<size_t>(n_seq));
    for (int64_t s = 0; s < n_seq; ++s) out[static_cast<size_t>(s)] = static_cast<int32_t>(s * b / n_seq);
    return out;
}

BootstrapPlan::BootstrapPlan(int64_t n_seq, const BootstrapOptions& options) {
    if (options.batches < 1) throw Error("profile", "--bootstrap-batches must be at least 1");
    if (options.resamples < 0) throw Error("profile", "--bootstrap-resamples must be non-negative");
    n_batch_ = std::min(options.batches, std::max<int64_t>(n_seq, 1));
    batch_of_seq_ = assign_batches(n_seq, n_batch_);
    full_.assign(static_cast<size_t>(n_batch_), 1);
    std::mt19937_64 rng(options.seed);
    const uint64_t b = static_cast<uint64_t>(n_batch_);
    weights_.resize(static_cast<size_t>(options.resamples));
    for (auto& w : weights_) {
        w.assign(static_cast<size_t>(n_batch_), 0);
        for (int64_t i = 0; i < n_batch_; ++i) ++w[static_cast<size_t>(rng() % b)];
    }
}

Interval BootstrapPlan::interval(const std::function<double(const std::vector<int32_t>&)>& statistic) const {
    Interval out;
    out.value = statistic(full_);
    out.lo = out.hi = out.value;
    if (weights_.empty()) return out;
    std::vector<double> values;
    values.reserve(weights_.size());
    for (const auto& w : weights_) {
        const double v = statistic(w);
        if (std::isfinite(v)) values.push_back(v);
    }
    if (values.empty()) return out;
    out.lo = quantile(values, 0.025);
    out.hi = quantile(std::move(values), 0.975);
    return out;
}

double quantile(std::vector<double> values, double q) {
    if (values.empty()) return 0.0;
    std::sort(values.begin(), values.end());
    const double pos = q * static_cast<double>(values.size() - 1);
    const size_t i = static_cast<size_t>(std::floor(pos));
    if (i + 1 >= values.size()) return values.back();
    const double frac = pos - static_cast<double>(i);
    return values[i] + frac * (values[i + 1] - values[i]);
}

}  // namespace moekit::analysis
