// Congestion coefficient gamma_eff (analysis/congestion.h): the single-type temperature fit, the
// per-layer estimates with their bootstrap resamples, and the profile JSON. The multi-type
// equilibrium and its fit live in congestion_multi.cpp.
#include "analysis/congestion.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <string>

#include "analysis/load_stats.h"
#include "core/error.h"

namespace moekit::analysis {

namespace {

using nlohmann::ordered_json;

[[noreturn]] void fail(const std::string& msg) { throw moekit::Error("analysis", msg); }

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kGolden = 0.6180339887498949;
constexpr int kPerDecade = 20;                    // single-type grid: 20 points per decade of T
const double kStep = std::log(10.0) / kPerDecade;
const double kMinS = std::log(kMinTemperature), kMaxS = std::log(kMaxTemperature);

void check_pair(std::span<const double> q, std::span<const double> rho) {
    if (q.empty() || q.size() != rho.size())
        fail("the temperature fit needs quality and load vectors of the same non-zero length (got " + std::to_string(q.size()) +
             " and " + std::to_string(rho.size()) + ")");
    for (size_t i = 0; i < q.size(); ++i)
        if (!std::isfinite(q[i]) || !std::isfinite(rho[i])) fail("the temperature fit got a non-finite value");
}

// L1(softmax(q / e^s), rho) with a reused buffer.
class TemperatureObjective {
public:
    TemperatureObjective(std::span<const double> q, std::span<const double> rho)
        : q_(q), rho_(rho), buf_(q.size()), q_max_(*std::max_element(q.begin(), q.end())) {}
    double operator()(double s) {
        const double inv_t = std::exp(-s);
        double sum = 0.0;
        for (size_t e = 0; e < q_.size(); ++e) sum += buf_[e] = std::exp((q_[e] - q_max_) * inv_t);
        double l1 = 0.0;
        for (size_t e = 0; e < q_.size(); ++e) l1 += std::abs(buf_[e] / sum - rho_[e]);
        return l1;
    }

private:
    std::span<const double> q_, rho_;
    std::vector<double> buf_;
    double q_max_;
};

struct SearchResult {
    double s = 0.0, l1 = kInf;
    size_t grid_index = 0;
};

// Grid scan over s (ascending; ties to the smallest |s|), then golden section to `tol` inside the
// best point's bracket; the result is the best point evaluated.
SearchResult search_s(TemperatureObjective& f, const std::vector<double>& grid, double tol) {
    SearchResult best;
    for (size_t i = 0; i < grid.size(); ++i) {
        const double v = f(grid[i]);
        if (v < best.l1 || (v == best.l1 && std::abs(grid[i]) < std::abs(best.s))) best = {grid[i], v, i};
    }
    if (grid.size() < 2) return best;
    const size_t i = best.grid_index;
    double a = grid[i == 0 ? 0 : i - 1], b = grid[std::min(i + 1, grid.size() - 1)];
    double x1 = b - kGolden * (b - a), x2 = a + kGolden * (b - a);
    double f1 = f(x1), f2 = f(x2);
    auto keep = [&](double x, double v) {
        if (v < best.l1) best.s = x, best.l1 = v;
    };
    keep(x1, f1);
    keep(x2, f2);
    while (b - a > tol) {
        if (f1 < f2) {
            b = x2, x2 = x1, f2 = f1, x1 = b - kGolden * (b - a), f1 = f(x1);
            keep(x1, f1);
        } else {
            a = x1, x1 = x2, f1 = f2, x2 = a + kGolden * (b - a), f2 = f(x2);
            keep(x2, f2);
        }
    }
    return best;
}

std::vector<double> global_s_grid() {
    std::vector<double> g;
    const int lo = static_cast<int>(std::lround(std::log10(kMinTemperature) * kPerDecade));
    const int hi = static_cast<int>(std::lround(std::log10(kMaxTemperature) * kPerDecade));
    for (int i = lo; i <= hi; ++i) g.push_back(i * kStep);  // i = 0 is exactly T = 1
    return g;
}

TemperatureFit finish(std::span<const double> q, std::span<const double> rho, double temperature, double l1) {
    TemperatureFit fit;
    fit.temperature = temperature;
    fit.gamma = static_cast<double>(q.size()) * (temperature - 1.0);
    fit.l1 = l1;
    fit.softmax_l1 = l1_distance(softmax(q), rho);
    return fit;
}

bool constant(std::span<const double> q) {
    const auto [lo, hi] = std::minmax_element(q.begin(), q.end());
    return *hi - *lo == 0.0;
}

// Runs f(i) for i in [0, n) on OpenMP threads; the first exception is rethrown afterwards.
template <typename F>
void parallel_for(int64_t n, F f) {
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 16) if (n > 32)
    for (int64_t i = 0; i < n; ++i) {
        try {
            f(i);
        } catch (...) {
#pragma omp critical(moekit_congestion_error)
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
}

ordered_json min_max_mean(const std::vector<double>& v) {
    if (v.empty()) return nullptr;
    double sum = 0.0;
    for (double x : v) sum += x;
    return {{"min", *std::min_element(v.begin(), v.end())},
            {"max", *std::max_element(v.begin(), v.end())},
            {"mean", sum / static_cast<double>(v.size())}};
}

}  // namespace

std::vector<double> softmax(std::span<const double> x, double temperature) {
    std::vector<double> p(x.size());
    if (x.empty()) return p;
    const double mx = *std::max_element(x.begin(), x.end());
    double sum = 0.0;
    for (size_t i = 0; i < x.size(); ++i) sum += p[i] = std::exp((x[i] - mx) / temperature);
    for (double& v : p) v /= sum;
    return p;
}

double l1_distance(std::span<const double> a, std::span<const double> b) {
    if (a.size() != b.size()) fail("L1 distance of vectors of different lengths");
    double s = 0.0;
    for (size_t i = 0; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
    return s;
}

TemperatureFit fit_temperature(std::span<const double> quality, std::span<const double> rho) {
    check_pair(quality, rho);
    if (constant(quality)) return finish(quality, rho, 1.0, l1_distance(softmax(quality), rho));
    TemperatureObjective f(quality, rho);
    const SearchResult r = search_s(f, global_s_grid(), 1e-12);
    return finish(quality, rho, std::exp(r.s), r.l1);
}

TemperatureFit fit_temperature_near(std::span<const double> quality, std::span<const double> rho, double hint, double tolerance) {
    check_pair(quality, rho);
    if (constant(quality)) return finish(quality, rho, 1.0, l1_distance(softmax(quality), rho));
    if (!(hint > 0) || !std::isfinite(hint)) return fit_temperature(quality, rho);
    std::vector<double> grid;
    for (int i = -4; i <= 4; ++i) {
        const double s = std::log(hint) + i * kStep;
        if (s >= kMinS && s <= kMaxS) grid.push_back(s);
    }
    TemperatureObjective f(quality, rho);
    if (grid.size() < 3) return fit_temperature(quality, rho);
    const SearchResult r = search_s(f, grid, tolerance);
    // On the local grid's edge: the minimum may lie outside it, unless the edge is the global bound.
    const bool low_edge = r.grid_index == 0 && grid.front() > kMinS + 1e-12;
    const bool high_edge = r.grid_index + 1 == grid.size() && grid.back() < kMaxS - 1e-12;
    if (low_edge || high_edge) return fit_temperature(quality, rho);
    return finish(quality, rho, std::exp(r.s), r.l1);
}

CongestionEstimates congestion_estimates(const RoutingTrace& trace, int64_t j, const BootstrapPlan& plan) {
    const LoadBatchSums sums = load_batch_sums(trace, j, plan.batch_of_seq(), plan.n_batch());
    const TraceLayer& layer = trace.layers[static_cast<size_t>(j)];
    const int64_t E = sums.n_expert, k = sums.n_expert_used, B = sums.n_batch, S = trace.n_seq();
    if (static_cast<int64_t>(layer.seq_sum_centered_logit.size()) != S * E)
        fail("MoE layer " + std::to_string(j) + ": seq_sum_centered_logit has the wrong size");
    std::vector<double> centered(static_cast<size_t>(B * E), 0.0);  // per batch sums
    for (int64_t s = 0; s < S; ++s) {
        const int64_t b = plan.batch_of_seq()[static_cast<size_t>(s)];
        for (int64_t e = 0; e < E; ++e) centered[static_cast<size_t>(b * E + e)] += layer.seq_sum_centered_logit[static_cast<size_t>(s * E + e)];
    }
    // Quality and observed shares under a batch weighting.
    auto inputs = [&](const std::vector<int32_t>& w, std::vector<double>& q, std::vector<double>& f) {
        q.assign(static_cast<size_t>(E), 0.0);
        f.assign(static_cast<size_t>(E), 0.0);
        double tokens = 0.0;
        for (int64_t b = 0; b < B; ++b) {
            const double wb = w[static_cast<size_t>(b)];
            if (wb == 0) continue;
            tokens += wb * sums.tokens[static_cast<size_t>(b)];
            for (int64_t e = 0; e < E; ++e) {
                q[static_cast<size_t>(e)] += wb * centered[static_cast<size_t>(b * E + e)];
                f[static_cast<size_t>(e)] += wb * sums.counts[static_cast<size_t>(b * E + e)];
            }
        }
        if (tokens <= 0) return;  // no tokens: q = f = 0
        for (int64_t e = 0; e < E; ++e) {
            q[static_cast<size_t>(e)] /= tokens;
            f[static_cast<size_t>(e)] /= tokens * static_cast<double>(k);
        }
    };

    CongestionEstimates out;
    std::vector<double> q, f;
    inputs(plan.full(), q, f);
    out.single = fit_temperature(q, f);
    const int64_t R = plan.n_resample();
    out.temperature.assign(static_cast<size_t>(R), kNaN);
    parallel_for(R, [&](int64_t r) {
        std::vector<double> qr, fr;
        inputs(plan.weights(r), qr, fr);
        out.temperature[static_cast<size_t>(r)] = fit_temperature_near(qr, fr, out.single.temperature).temperature;
    });

    const int64_t n_sample = static_cast<int64_t>(trace.sample_rows.size());
    if (n_sample == 0) return out;
    if (static_cast<int64_t>(layer.sample_logits.size()) != n_sample * E)
        fail("MoE layer " + std::to_string(j) + ": sample_logits has the wrong size");
    const Eigen::Map<const model::Matrix> logits(layer.sample_logits.data(), n_sample, E);
    std::vector<int32_t> row_group(static_cast<size_t>(n_sample));
    for (int64_t i = 0; i < n_sample; ++i) {  // token row -> sequence -> batch
        const int64_t row = trace.sample_rows[static_cast<size_t>(i)];
        const auto it = std::upper_bound(trace.seq_begin.begin(), trace.seq_begin.end(), row);
        const int64_t s = (it - trace.seq_begin.begin()) - 1;
        if (s < 0 || s >= S) fail("sampled token row " + std::to_string(row) + " lies outside every sequence");
        row_group[static_cast<size_t>(i)] = plan.batch_of_seq()[static_cast<size_t>(s)];
    }
    out.has_multi = true;
    out.multi_rows = n_sample;
    out.multi = fit_multi_type(logits, f);
    const int64_t Rm = std::min(R, kMaxMultiResamples);
    std::vector<std::vector<double>> weights(static_cast<size_t>(Rm)), targets(static_cast<size_t>(Rm));
    for (int64_t r = 0; r < Rm; ++r) {
        const auto& w = plan.weights(r);
        weights[static_cast<size_t>(r)].assign(w.begin(), w.end());
        inputs(w, q, targets[static_cast<size_t>(r)]);
    }
    const auto fits = fit_multi_type_grouped(logits, row_group, B, weights, targets, out.multi.gamma);
    out.multi_gamma.resize(static_cast<size_t>(Rm));
    for (int64_t r = 0; r < Rm; ++r) {
        const MultiTypeFit& fit = fits[static_cast<size_t>(r)];
        out.multi_gamma[static_cast<size_t>(r)] = fit.converged ? fit.gamma : kNaN;
    }
    return out;
}

ordered_json congestion_layer_json(const RoutingTrace& trace, int64_t j, const BootstrapPlan& plan) {
    const CongestionEstimates est = congestion_estimates(trace, j, plan);
    const double E = static_cast<double>(trace.n_expert);
    std::vector<double> gammas;
    for (double t : est.temperature) gammas.push_back(E * (t - 1.0));
    ordered_json single;
    single["temperature"] = to_json(interval_from_resamples(est.single.temperature, est.temperature));
    single["gamma"] = to_json(interval_from_resamples(est.single.gamma, gammas));
    single["l1"] = est.single.l1;
    single["softmax_l1"] = est.single.softmax_l1;
    ordered_json out;
    out["single"] = std::move(single);
    if (est.has_multi) {
        ordered_json multi;
        multi["gamma"] = to_json(interval_from_resamples(est.multi.gamma, est.multi_gamma));
        multi["l1"] = est.multi.l1;
        multi["softmax_l1"] = est.multi.softmax_l1;
        multi["converged"] = est.multi.converged;
        out["multi"] = std::move(multi);
    } else {
        out["multi"] = nullptr;
    }
    out["quality"] = "centered_logit";
    out["multi_resamples"] = static_cast<int64_t>(est.multi_gamma.size());
    out["multi_rows"] = est.multi_rows;
    return out;
}

ordered_json congestion_model_json(const std::vector<ordered_json>& layers) {
    std::vector<double> single, multi;
    auto value_of = [](const ordered_json& fit, std::vector<double>& into) {
        if (!fit.is_object() || !fit.contains("gamma")) return;
        const ordered_json& g = fit["gamma"];
        const ordered_json* v = g.is_object() && g.contains("value") ? &g["value"] : &g;
        if (v->is_number() && std::isfinite(v->get<double>())) into.push_back(v->get<double>());
    };
    for (const ordered_json& layer : layers) {
        if (!layer.is_object()) continue;
        if (layer.contains("single")) value_of(layer["single"], single);
        if (layer.contains("multi")) value_of(layer["multi"], multi);
    }
    ordered_json out;
    out["gamma_single"] = min_max_mean(single);
    out["gamma_multi"] = min_max_mean(multi);
    return out;
}

}  // namespace moekit::analysis
