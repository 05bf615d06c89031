// Tests for analysis/congestion (METHODS.md §3): the temperature fit recovers a planted T exactly;
// the equilibrium satisfies rho = mean_t softmax(z_t - gamma*rho) checked by a brute-force
// per-element evaluation (and row weights = duplicated rows); the multi-type fit recovers a
// planted gamma exactly from the equilibrium and within sampling error from sampled top-1 choices;
// the bootstrap resamples equal fits on the physically resampled trace; and over synthetic
// replicates the 95% intervals cover the planted T and gamma at a reasonable rate.
#include "analysis/congestion.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "analysis/load_stats.h"
#include "core/error.h"

namespace {

using namespace moekit::analysis;
using json = nlohmann::ordered_json;
using moekit::model::Matrix;

// ---- hand-built traces (as in test_analysis_load.cpp) -----------------------------------------

// Layer j routes token t by selected[j] (or top-k of logits[j] when empty); sums from the logits.
RoutingTrace make_trace(int64_t E, int64_t k, const std::vector<int64_t>& seq_len,
                        const std::vector<std::vector<float>>& logits,
                        const std::vector<std::vector<int32_t>>& selected, int64_t stride) {
    RoutingTrace t;
    t.model_type = t.model_name = "test";
    t.n_expert = E, t.n_expert_used = k, t.n_layer = static_cast<int64_t>(logits.size());
    t.scoring = "softmax";
    t.logit_sample_stride = stride;
    t.domains = {"d"};
    t.seq_begin = {0};
    for (int64_t len : seq_len) t.seq_begin.push_back(t.seq_begin.back() + len);
    const int64_t T = t.seq_begin.back(), S = static_cast<int64_t>(seq_len.size());
    t.seq_domain.assign(static_cast<size_t>(S), 0);
    t.token_ids.assign(static_cast<size_t>(T), 3);
    for (int64_t s = 0; s < S; ++s)
        for (int64_t p = 0; p < seq_len[s]; p += stride) t.sample_rows.push_back(t.seq_begin[s] + p);
    for (size_t j = 0; j < logits.size(); ++j) {
        TraceLayer l;
        l.layer = static_cast<int64_t>(j);
        l.seq_sum_prob.assign(static_cast<size_t>(S * E), 0.0);
        l.seq_sum_centered_logit.assign(static_cast<size_t>(S * E), 0.0);
        l.seq_sum_entropy.assign(static_cast<size_t>(S), 0.0);
        l.seq_sum_out_norm.assign(static_cast<size_t>(S * E), 0.0);
        l.seq_max_abs_out.assign(static_cast<size_t>(S * E), 0.0f);
        for (int64_t s = 0; s < S; ++s)
            for (int64_t i = t.seq_begin[s]; i < t.seq_begin[s + 1]; ++i) {
                const float* z = logits[j].data() + i * E;
                double mean = 0.0;
                for (int64_t e = 0; e < E; ++e) mean += z[e] / double(E);
                for (int64_t e = 0; e < E; ++e) l.seq_sum_centered_logit[s * E + e] += z[e] - mean;
                std::vector<int32_t> order(static_cast<size_t>(E));
                std::iota(order.begin(), order.end(), 0);
                std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[a] > z[b]; });
                for (int64_t slot = 0; slot < k; ++slot) {
                    l.selected.push_back(selected.empty() ? order[slot] : selected[j][i * k + slot]);
                    l.gates.push_back(1.0f);
                }
            }
        for (int64_t r : t.sample_rows)
            for (int64_t e = 0; e < E; ++e) l.sample_logits.push_back(logits[j][r * E + e]);
        t.layers.push_back(std::move(l));
    }
    t.validate();
    return t;
}

// The trace made of batch b's sequences repeated w[b] times (what a resample stands for).
RoutingTrace resampled(const RoutingTrace& t, const BootstrapPlan& plan, const std::vector<int32_t>& w) {
    RoutingTrace out = t;
    const int64_t E = t.n_expert, k = t.n_expert_used;
    out.token_ids.clear(), out.seq_domain.clear(), out.sample_rows.clear();
    out.seq_begin = {0};
    for (auto& l : out.layers) {
        l.selected.clear(), l.gates.clear(), l.seq_sum_prob.clear(), l.seq_sum_centered_logit.clear();
        l.seq_sum_entropy.clear(), l.seq_sum_out_norm.clear(), l.seq_max_abs_out.clear(), l.sample_logits.clear();
    }
    auto copy = [](auto& into, const auto& from, int64_t a, int64_t b) { into.insert(into.end(), from.begin() + a, from.begin() + b); };
    for (int64_t b = 0; b < plan.n_batch(); ++b)
        for (int32_t rep = 0; rep < w[b]; ++rep)
            for (int64_t s = 0; s < t.n_seq(); ++s) {
                if (plan.batch_of_seq()[s] != b) continue;
                const int64_t r0 = t.seq_begin[s], r1 = t.seq_begin[s + 1], new0 = out.seq_begin.back();
                copy(out.token_ids, t.token_ids, r0, r1);
                out.seq_begin.push_back(new0 + r1 - r0);
                out.seq_domain.push_back(t.seq_domain[s]);
                std::vector<int64_t> samples;
                for (size_t i = 0; i < t.sample_rows.size(); ++i)
                    if (t.sample_rows[i] >= r0 && t.sample_rows[i] < r1)
                        samples.push_back(static_cast<int64_t>(i)), out.sample_rows.push_back(new0 + t.sample_rows[i] - r0);
                for (size_t j = 0; j < t.layers.size(); ++j) {
                    const TraceLayer& a = t.layers[j];
                    TraceLayer& o = out.layers[j];
                    copy(o.selected, a.selected, r0 * k, r1 * k);
                    copy(o.gates, a.gates, r0 * k, r1 * k);
                    copy(o.seq_sum_prob, a.seq_sum_prob, s * E, (s + 1) * E);
                    copy(o.seq_sum_centered_logit, a.seq_sum_centered_logit, s * E, (s + 1) * E);
                    copy(o.seq_sum_out_norm, a.seq_sum_out_norm, s * E, (s + 1) * E);
                    copy(o.seq_max_abs_out, a.seq_max_abs_out, s * E, (s + 1) * E);
                    o.seq_sum_entropy.push_back(a.seq_sum_entropy[s]);
                    for (int64_t i : samples) copy(o.sample_logits, a.sample_logits, i * E, (i + 1) * E);
                }
            }
    out.validate();
    return out;
}

// ---- brute force ------------------------------------------------------------------------------

std::vector<double> brute_softmax(const std::vector<double>& x, double T) {
    std::vector<double> p(x.size());
    double sum = 0;
    for (size_t i = 0; i < x.size(); ++i) sum += p[i] = std::exp(x[i] / T);  // small |x| only
    for (double& v : p) v /= sum;
    return p;
}

double brute_l1(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
    return s;
}

// sum_t w_t softmax(z_t - gamma*rho) / sum_t w_t, element by element.
std::vector<double> brute_mean_choice(const Matrix& z, double gamma, const std::vector<double>& rho,
                                      const std::vector<double>& w = {}) {
    const int64_t N = z.rows(), E = z.cols();
    std::vector<double> m(static_cast<size_t>(E), 0.0);
    double total = 0;
    for (int64_t t = 0; t < N; ++t) {
        const double wt = w.empty() ? 1.0 : w[t];
        std::vector<double> u(static_cast<size_t>(E));
        double mx = -1e300, sum = 0;
        for (int64_t e = 0; e < E; ++e) mx = std::max(mx, u[e] = z(t, e) - gamma * rho[e]);
        for (int64_t e = 0; e < E; ++e) sum += u[e] = std::exp(u[e] - mx);
        for (int64_t e = 0; e < E; ++e) m[e] += wt * u[e] / sum;
        total += wt;
    }
    for (double& v : m) v /= total;
    return m;
}

Matrix random_logits(int64_t N, const std::vector<double>& mu, double sigma, std::mt19937_64& rng) {
    std::normal_distribution<double> n(0.0, 1.0);
    Matrix z(N, static_cast<int64_t>(mu.size()));
    for (int64_t t = 0; t < N; ++t)
        for (int64_t e = 0; e < z.cols(); ++e) z(t, e) = static_cast<float>(mu[e] + sigma * n(rng));
    return z;
}

std::vector<double> normal_vector(int64_t n, double scale, std::mt19937_64& rng) {
    std::normal_distribution<double> d(0.0, scale);
    std::vector<double> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng);
    return v;
}

// A k = 1 trace of 40-token sequences whose token t chooses expert e with probability p_t(e).
template <typename Prob>
RoutingTrace sampled_trace(const Matrix& z, Prob prob, int64_t stride, std::mt19937_64& rng) {
    const int64_t N = z.rows(), E = z.cols();
    std::vector<float> flat(z.data(), z.data() + N * E);
    std::vector<int32_t> choice(static_cast<size_t>(N));
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int64_t t = 0; t < N; ++t) {
        const std::vector<double> p = prob(t);
        double x = u(rng), c = 0;
        int32_t e = 0;
        for (; e + 1 < E; ++e)
            if ((c += p[e]) > x) break;
        choice[t] = e;
    }
    return make_trace(E, 1, std::vector<int64_t>(static_cast<size_t>(N / 40), 40), {flat}, {choice}, stride);
}

// ---- tests ------------------------------------------------------------------------------------

TEST(Congestion, SoftmaxAndL1) {
    const std::vector<double> x{0.5, -1.0, 2.0, 0.0};
    const auto a = softmax(x, 0.7), b = brute_softmax(x, 0.7);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-15);
    EXPECT_NEAR(l1_distance(a, std::vector<double>(4, 0.25)), brute_l1(b, std::vector<double>(4, 0.25)), 1e-15);
    EXPECT_THROW(l1_distance(a, std::vector<double>(3, 0.0)), moekit::Error);
}

TEST(Congestion, TemperatureFitRecoversPlantedTemperature) {
    std::mt19937_64 rng(17);
    for (int64_t E : {8, 64}) {
        const auto q = normal_vector(E, 1.5, rng);
        for (double T : {0.05, 0.3, 0.8, 1.0, 1.5, 4.0, 20.0, 100.0}) {
            const auto rho = brute_softmax(q, T);
            const TemperatureFit fit = fit_temperature(q, rho);
            EXPECT_NEAR(fit.temperature, T, 1e-8 * T) << "E=" << E << " T=" << T;
            EXPECT_NEAR(fit.gamma, double(E) * (fit.temperature - 1), 1e-9 * double(E));
            EXPECT_LT(fit.l1, 1e-10) << "E=" << E << " T=" << T;
            EXPECT_NEAR(fit.softmax_l1, brute_l1(brute_softmax(q, 1.0), rho), 1e-14);
            const TemperatureFit near = fit_temperature_near(q, rho, T * 1.3);
            EXPECT_NEAR(near.temperature, T, 1e-8 * T);
            const TemperatureFit far = fit_temperature_near(q, rho, T * 30);  // edge: falls back
            EXPECT_NEAR(far.temperature, T, 1e-8 * T);
        }
    }
}

TEST(Congestion, TemperatureFitEdgeCases) {
    // Constant quality: T is not identified; the documented T = 1.
    const TemperatureFit c = fit_temperature(std::vector<double>(5, 0.3), std::vector<double>{0.5, 0.2, 0.1, 0.1, 0.1});
    EXPECT_EQ(c.temperature, 1.0);
    EXPECT_EQ(c.gamma, 0.0);
    EXPECT_NEAR(c.l1, 0.6, 1e-15);
    // Uniform loads are best matched by the hottest allowed softmax.
    const TemperatureFit u = fit_temperature(std::vector<double>{1, 0, -1, 2}, std::vector<double>(4, 0.25));
    EXPECT_NEAR(u.temperature, kMaxTemperature, 1e-9 * kMaxTemperature);
    EXPECT_THROW(fit_temperature(std::vector<double>{1, 2}, std::vector<double>{1}), moekit::Error);
    EXPECT_THROW(fit_temperature(std::vector<double>{}, std::vector<double>{}), moekit::Error);
    EXPECT_THROW(fit_temperature(std::vector<double>{1, NAN}, std::vector<double>{0.5, 0.5}), moekit::Error);
}

TEST(Congestion, EquilibriumIsTheFixedPoint) {
    std::mt19937_64 rng(23);
    const int64_t E = 6, N = 300;
    const Matrix z = random_logits(N, normal_vector(E, 1.0, rng), 1.5, rng);
    std::vector<double> w(static_cast<size_t>(N));
    for (auto& x : w) x = static_cast<double>(rng() % 4);
    Matrix dup(0, E);  // rows repeated w_t times
    for (int64_t t = 0; t < N; ++t)
        for (int r = 0; r < w[t]; ++r) {
            dup.conservativeResize(dup.rows() + 1, E);
            dup.row(dup.rows() - 1) = z.row(t);
        }
    for (double gamma : {0.0, 0.5, 3.0, 20.0, 200.0, 2000.0}) {
        const Equilibrium eq = equilibrium(z, gamma);
        ASSERT_TRUE(eq.converged) << "gamma=" << gamma << " residual " << eq.residual;
        const auto m = brute_mean_choice(z, gamma, eq.rho);
        EXPECT_LT(brute_l1(m, eq.rho), 1e-10) << "gamma=" << gamma;
        EXPECT_NEAR(std::accumulate(eq.rho.begin(), eq.rho.end(), 0.0), 1.0, 1e-12);
        const Equilibrium weighted = equilibrium(z, gamma, {}, w);
        const Equilibrium repeated = equilibrium(dup, gamma);
        ASSERT_TRUE(weighted.converged && repeated.converged);
        EXPECT_LT(brute_l1(weighted.rho, repeated.rho), 1e-10) << "gamma=" << gamma;
        EXPECT_LT(brute_l1(brute_mean_choice(z, gamma, weighted.rho, w), weighted.rho), 1e-10);
    }
    EXPECT_THROW(equilibrium(z, -1.0), moekit::Error);
}

TEST(Congestion, MultiTypeFitRecoversPlantedGammaExactly) {
    std::mt19937_64 rng(29);
    const int64_t E = 8, N = 500;
    const Matrix z = random_logits(N, normal_vector(E, 1.0, rng), 1.0, rng);
    for (double gamma : {0.5 * E, 2.0 * E, 10.0 * E}) {
        const Equilibrium eq = equilibrium(z, gamma);
        ASSERT_TRUE(eq.converged);
        const MultiTypeFit fit = fit_multi_type(z, eq.rho);
        EXPECT_TRUE(fit.converged);
        EXPECT_NEAR(fit.gamma, gamma, 1e-6 * gamma);
        EXPECT_LT(fit.l1, 1e-9);
        EXPECT_NEAR(fit.softmax_l1, brute_l1(brute_mean_choice(z, 0.0, eq.rho), eq.rho), 1e-12);
    }
    // The softmax's own mean choice: gamma = 0.
    const auto m0 = brute_mean_choice(z, 0.0, std::vector<double>(E, 0.0));
    const MultiTypeFit zero = fit_multi_type(z, m0);
    EXPECT_EQ(zero.gamma, 0.0);
    EXPECT_LT(zero.l1, 1e-12);
}

TEST(Congestion, MultiTypeRecoversGammaFromSampledChoices) {
    std::mt19937_64 rng(31);
    const int64_t E = 8, N = 20000;
    const double gamma = 2.0 * E;
    const Matrix z = random_logits(N, normal_vector(E, 1.0, rng), 1.0, rng);
    const Equilibrium eq = equilibrium(z, gamma);
    ASSERT_TRUE(eq.converged);
    const RoutingTrace t = sampled_trace(z, [&](int64_t i) {
        std::vector<double> u(E);
        for (int64_t e = 0; e < E; ++e) u[e] = z(i, e) - gamma * eq.rho[e];
        return softmax(u);
    }, 1, rng);
    const json c = congestion_layer_json(t, 0, BootstrapPlan(t.n_seq(), {50, 200, 1}));
    const json& g = c["multi"]["gamma"];
    EXPECT_NEAR(g["value"].get<double>(), gamma, 0.15 * gamma);
    EXPECT_LE(g["ci95"][0].get<double>(), gamma);
    EXPECT_GE(g["ci95"][1].get<double>(), gamma);
    EXPECT_TRUE(c["multi"]["converged"].get<bool>());
    EXPECT_LT(c["multi"]["l1"].get<double>(), c["multi"]["softmax_l1"].get<double>());
    EXPECT_EQ(c["multi_resamples"].get<int64_t>(), 200);
    EXPECT_EQ(c["multi_rows"].get<int64_t>(), N);
    EXPECT_EQ(c["quality"], "centered_logit");
    const json m = congestion_model_json({c, c});
    EXPECT_EQ(m["gamma_multi"]["mean"].get<double>(), g["value"].get<double>());
    EXPECT_EQ(m["gamma_single"]["min"].get<double>(), c["single"]["gamma"]["value"].get<double>());
}

TEST(Congestion, ResamplesEqualFitsOnResampledTraces) {
    std::mt19937_64 rng(37);
    const int64_t E = 6, k = 2;
    std::vector<int64_t> lens;
    for (int i = 0; i < 30; ++i) lens.push_back(10 + static_cast<int64_t>(rng() % 20));
    const int64_t T = std::accumulate(lens.begin(), lens.end(), int64_t(0));
    const Matrix z = random_logits(T, normal_vector(E, 0.8, rng), 1.0, rng);
    const RoutingTrace t = make_trace(E, k, lens, {std::vector<float>(z.data(), z.data() + T * E)}, {}, 3);
    const BootstrapPlan plan(t.n_seq(), {10, 12, 5});
    const CongestionEstimates est = congestion_estimates(t, 0, plan);
    ASSERT_TRUE(est.has_multi);
    ASSERT_EQ(est.multi_gamma.size(), 12u);
    // q and f of a whole trace, as METHODS.md defines them.
    auto inputs = [&](const RoutingTrace& rt, std::vector<double>& q, std::vector<double>& f) {
        q.assign(E, 0.0), f.assign(E, 0.0);
        for (int64_t s = 0; s < rt.n_seq(); ++s)
            for (int64_t e = 0; e < E; ++e) q[e] += rt.layers[0].seq_sum_centered_logit[s * E + e] / double(rt.n_tokens());
        for (int32_t e : rt.layers[0].selected) f[e] += 1.0 / double(rt.n_tokens() * k);
    };
    std::vector<double> q, f;
    inputs(t, q, f);
    EXPECT_EQ(est.single.temperature, fit_temperature(q, f).temperature);
    const Eigen::Map<const Matrix> sampled(t.layers[0].sample_logits.data(), static_cast<int64_t>(t.sample_rows.size()), E);
    EXPECT_NEAR(est.multi.gamma, fit_multi_type(sampled, f).gamma, 1e-9 * est.multi.gamma);
    for (int64_t r = 0; r < plan.n_resample(); ++r) {
        const RoutingTrace rt = resampled(t, plan, plan.weights(r));
        inputs(rt, q, f);
        EXPECT_NEAR(est.temperature[r], fit_temperature(q, f).temperature, 1e-7 * est.temperature[r]) << "resample " << r;
        const Eigen::Map<const Matrix> rz(rt.layers[0].sample_logits.data(), static_cast<int64_t>(rt.sample_rows.size()), E);
        const MultiTypeFit want = fit_multi_type(rz, f);
        EXPECT_NEAR(est.multi_gamma[r], want.gamma, 1e-4 * want.gamma + 1e-9) << "resample " << r;
    }
    // Without sampled logits there is no multi-type fit.
    RoutingTrace bare = t;
    bare.sample_rows.clear();
    bare.layers[0].sample_logits.clear();
    const json c = congestion_layer_json(bare, 0, BootstrapPlan(bare.n_seq(), {10, 0, 5}));
    EXPECT_TRUE(c["multi"].is_null());
    EXPECT_EQ(c["multi_resamples"].get<int64_t>(), 0);
    EXPECT_EQ(c["single"]["temperature"]["ci95"][0].get<double>(), c["single"]["temperature"]["value"].get<double>());
    EXPECT_TRUE(congestion_model_json({c})["gamma_multi"].is_null());
}

// Over synthetic replicates the 95% intervals contain the planted value most of the time.
TEST(Congestion, BootstrapIntervalsCoverPlantedValues) {
    const int64_t E = 8, N = 2000, n_rep = 24;  // ~2 s of 2 cores per replicate
    const double T_true = 1.5, gamma_true = 2.0 * E;
    std::mt19937_64 rng(41);
    const auto q = normal_vector(E, 1.0, rng);
    const auto rho_single = brute_softmax(q, T_true);
    int covered_t = 0, covered_g = 0;
    double width_t = 0, width_g = 0;
    for (int64_t rep = 0; rep < n_rep; ++rep) {
        // Single type: logits scatter around q, choices drawn from softmax(q / T_true).
        const Matrix z1 = random_logits(N, q, 1.0, rng);
        const RoutingTrace t1 = sampled_trace(z1, [&](int64_t) { return rho_single; }, 1000, rng);
        const BootstrapPlan plan(t1.n_seq(), {50, 200, static_cast<uint64_t>(rep)});
        const CongestionEstimates e1 = congestion_estimates(t1, 0, plan);
        const Interval it = interval_from_resamples(e1.single.temperature, e1.temperature);
        covered_t += it.lo <= T_true && T_true <= it.hi;
        width_t += (it.hi - it.lo) / double(n_rep);
        // Multi type: choices drawn from the equilibrium at gamma_true of the replicate's tokens.
        const Matrix z2 = random_logits(N, q, 1.0, rng);
        const Equilibrium eq = equilibrium(z2, gamma_true);
        ASSERT_TRUE(eq.converged);
        const RoutingTrace t2 = sampled_trace(z2, [&](int64_t i) {
            std::vector<double> u(E);
            for (int64_t e = 0; e < E; ++e) u[e] = z2(i, e) - gamma_true * eq.rho[e];
            return softmax(u);
        }, 1, rng);
        const BootstrapPlan plan2(t2.n_seq(), {50, 100, static_cast<uint64_t>(rep)});
        const CongestionEstimates e2 = congestion_estimates(t2, 0, plan2);
        const Interval ig = interval_from_resamples(e2.multi.gamma, e2.multi_gamma);
        covered_g += ig.lo <= gamma_true && gamma_true <= ig.hi;
        width_g += (ig.hi - ig.lo) / double(n_rep);
    }
    std::printf("[ coverage ] T: %d/%lld (mean width %.3f), gamma: %d/%lld (mean width %.2f)\n", covered_t,
                static_cast<long long>(n_rep), width_t, covered_g, static_cast<long long>(n_rep), width_g);
    EXPECT_GE(covered_t, 0.8 * n_rep);
    EXPECT_GE(covered_g, 0.8 * n_rep);
    EXPECT_LT(width_t, 0.5 * T_true);  // informative, not trivially wide
    // The multi-type L1 fit on 8 experts and 2000 tokens is much less precise than the
    // temperature fit (measured mean width ~0.87 gamma); informative still means well below 2 gamma.
    EXPECT_LT(width_g, 1.0 * gamma_true);
}

}  // namespace
