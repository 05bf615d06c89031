// Tests for analysis/specialization (METHODS.md §4): every output of the profile's
// `layers[].specialization`, `super_experts` and `summary.top_specialized` against brute-force
// implementations written here straight from METHODS.md (plain loops over tokens, membership by
// linear search, token-level router distributions instead of the trace's per-sequence sums),
// on random traces with fixed seeds and on hand-built adversarial ones.
#include "analysis/specialization.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace {

using moekit::analysis::RoutingTrace;
using moekit::analysis::SpecializationParams;
using moekit::analysis::TraceLayer;
using json = nlohmann::ordered_json;
namespace an = moekit::analysis;

constexpr double kNull = std::numeric_limits<double>::quiet_NaN();  // brute force's "undefined"
constexpr double kTol = 1e-12;

// A trace plus the token-level router distributions it was summed from (the oracle's input).
struct Toy {
    RoutingTrace trace;
    std::vector<std::vector<double>> prob;  // per MoE layer, [T * E] softmax(z_t)
};

struct ToySpec {
    uint64_t seed = 1;
    int64_t n_expert = 8, k = 2, n_layer = 8;
    std::vector<int64_t> moe_layers{1, 3, 5, 7};
    std::vector<std::string> domains{"en", "code", "math"};
    std::vector<std::pair<int32_t, int64_t>> seqs;  // (domain, length)
    int32_t vocab = 12;
    int64_t usable = -1;  // experts that can be selected (the rest are dead); -1 = all
};

// Random routing with a domain and token-id bias so that specialization is visible.
Toy make_toy(const ToySpec& spec) {
    std::mt19937_64 rng(spec.seed);
    Toy toy;
    RoutingTrace& tr = toy.trace;
    const int64_t E = spec.n_expert, k = spec.k;
    const int64_t usable = spec.usable < 0 ? E : spec.usable;
    tr.model_type = "toy";
    tr.n_layer = spec.n_layer;
    tr.n_expert = E;
    tr.n_expert_used = k;
    tr.scoring = "softmax";
    tr.domains = spec.domains;
    tr.seq_begin.push_back(0);
    std::vector<double> id_w;
    for (int32_t v = 0; v < spec.vocab; ++v) id_w.push_back(1.0 / (v + 1.0));
    std::discrete_distribution<int32_t> pick_id(id_w.begin(), id_w.end());
    for (auto [d, len] : spec.seqs) {
        for (int64_t i = 0; i < len; ++i) tr.token_ids.push_back(pick_id(rng));
        tr.seq_begin.push_back(tr.seq_begin.back() + len);
        tr.seq_domain.push_back(d);
    }
    const int64_t T = tr.n_tokens(), n_seq = tr.n_seq();
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_real_distribution<float> unif(0.0f, 1.0f);
    for (int64_t il : spec.moe_layers) {
        TraceLayer L;
        L.layer = il;
        std::vector<double> p(static_cast<size_t>(T * E));
        L.seq_sum_prob.assign(static_cast<size_t>(n_seq * E), 0.0);
        L.seq_max_abs_out.assign(static_cast<size_t>(n_seq * E), 0.0f);
        for (int64_t s = 0; s < n_seq; ++s) {
            const int32_t d = tr.seq_domain[s];
            for (int64_t t = tr.seq_begin[s]; t < tr.seq_begin[s + 1]; ++t) {
                std::vector<double> w(static_cast<size_t>(usable));
                for (int64_t e = 0; e < usable; ++e)
                    w[e] = 1.0 + 3.0 * (e % 3 == d) + 4.0 * (e == (tr.token_ids[t] + il) % usable);
                for (int64_t i = 0; i < k; ++i) {  // weighted sampling without replacement
                    std::discrete_distribution<int64_t> pick(w.begin(), w.end());
                    const int64_t e = pick(rng);
                    w[e] = 0.0;
                    L.selected.push_back(static_cast<int32_t>(e));
                    L.gates.push_back(1.0f / k);
                    float& mx = L.seq_max_abs_out[s * E + e];
                    mx = std::max(mx, unif(rng));
                }
                double z_max = -1e300, z_sum = 0.0;
                std::vector<double> z(static_cast<size_t>(E));
                for (int64_t e = 0; e < E; ++e) z_max = std::max(z_max, z[e] = normal(rng) + 0.3 * (e % 3 == d));
                for (int64_t e = 0; e < E; ++e) z_sum += std::exp(z[e] - z_max);
                for (int64_t e = 0; e < E; ++e) {
                    p[t * E + e] = std::exp(z[e] - z_max) / z_sum;
                    L.seq_sum_prob[s * E + e] += p[t * E + e];
                }
            }
        }
        tr.layers.push_back(std::move(L));
        toy.prob.push_back(std::move(p));
    }
    return toy;
}

// ---- brute force, straight from METHODS.md §4 -------------------------------------------------

int32_t domain_of(const RoutingTrace& tr, int64_t t) {
    for (int64_t s = 0; s < tr.n_seq(); ++s)
        if (t >= tr.seq_begin[s] && t < tr.seq_begin[s + 1]) return tr.seq_domain[s];
    return -1;
}

bool in_s(const RoutingTrace& tr, int64_t j, int64_t t, int64_t e) {
    const auto& sel = tr.layers[j].selected;
    const int64_t k = tr.n_expert_used;
    return std::find(sel.begin() + t * k, sel.begin() + (t + 1) * k, e) != sel.begin() + (t + 1) * k;
}

// spec(e, D) = N_{e,D} / N_D; [D][E], kNull for an empty domain.
std::vector<std::vector<double>> bf_rate(const RoutingTrace& tr, int64_t j) {
    const int64_t D = tr.domains.size();
    std::vector<std::vector<double>> out(D, std::vector<double>(tr.n_expert, kNull));
    for (int64_t d = 0; d < D; ++d) {
        int64_t n_d = 0;
        for (int64_t t = 0; t < tr.n_tokens(); ++t) n_d += domain_of(tr, t) == d;
        if (n_d == 0) continue;
        for (int64_t e = 0; e < tr.n_expert; ++e) {
            int64_t n_ed = 0;
            for (int64_t t = 0; t < tr.n_tokens(); ++t) n_ed += domain_of(tr, t) == d && in_s(tr, j, t, e);
            out[d][e] = double(n_ed) / double(n_d);
        }
    }
    return out;
}

std::vector<double> bf_cv(const std::vector<std::vector<double>>& rate, int64_t E) {
    std::vector<double> out(E, kNull);
    for (int64_t e = 0; e < E; ++e) {
        std::vector<double> r;
        for (const auto& row : rate)
            if (!std::isnan(row[e]) && row[e] > 1e-5) r.push_back(row[e]);
        if (r.size() < 2) continue;
        const double n = r.size();
        double mean = 0.0, var = 0.0;
        for (double x : r) mean += x / n;
        for (double x : r) var += (x - mean) * (x - mean) / (n - 1.0);
        out[e] = std::sqrt(var) / mean;
    }
    return out;
}

// max_e P(top1 = e | v) per id v seen >= min_count times; expert score = mean over its ids.
std::vector<double> bf_vocab(const RoutingTrace& tr, int64_t j, bool next, int64_t min_count) {
    const int64_t E = tr.n_expert, k = tr.n_expert_used;
    std::map<int32_t, std::vector<int64_t>> hist;  // id -> top-1 counts per expert
    for (int64_t s = 0; s < tr.n_seq(); ++s)
        for (int64_t t = tr.seq_begin[s]; t < tr.seq_begin[s + 1]; ++t) {
            if (next && t + 1 >= tr.seq_begin[s + 1]) continue;  // last token: no next token
            auto& h = hist[tr.token_ids[next ? t + 1 : t]];
            h.resize(E, 0);
            ++h[tr.layers[j].selected[t * k]];
        }
    std::vector<double> sum(E, 0.0), cnt(E, 0.0);
    for (const auto& [v, h] : hist) {
        int64_t total = 0;
        for (int64_t c : h) total += c;
        if (total < min_count) continue;
        int64_t arg = 0;
        for (int64_t e = 1; e < E; ++e)
            if (h[e] > h[arg]) arg = e;  // strict: ties keep the lowest id
        sum[arg] += double(h[arg]) / double(total);
        cnt[arg] += 1.0;
    }
    std::vector<double> out(E, kNull);
    for (int64_t e = 0; e < E; ++e)
        if (cnt[e] > 0) out[e] = sum[e] / cnt[e];
    return out;
}

// Entropy-normalized JSD from token-level p_t, via H(M) - (H(A) + H(B))/2.
std::vector<std::vector<double>> bf_jsd(const Toy& toy, int64_t j) {
    const RoutingTrace& tr = toy.trace;
    const int64_t D = tr.domains.size(), E = tr.n_expert;
    std::vector<std::vector<double>> q(D, std::vector<double>(E, 0.0));
    std::vector<int64_t> n(D, 0);
    for (int64_t t = 0; t < tr.n_tokens(); ++t) {
        const int32_t d = domain_of(tr, t);
        ++n[d];
        for (int64_t e = 0; e < E; ++e) q[d][e] += toy.prob[j][t * E + e];
    }
    auto H = [](const std::vector<double>& x) {
        double h = 0.0;
        for (double v : x)
            if (v > 0) h -= v * std::log(v);
        return h;
    };
    for (int64_t d = 0; d < D; ++d)
        for (auto& v : q[d]) v = n[d] ? v / double(n[d]) : 0.0;
    std::vector<std::vector<double>> out(D, std::vector<double>(D, kNull));
    for (int64_t a = 0; a < D; ++a)
        for (int64_t b = 0; b < D; ++b) {
            if (!n[a] || !n[b]) continue;
            std::vector<double> m(E);
            for (int64_t e = 0; e < E; ++e) m[e] = (q[a][e] + q[b][e]) / 2;
            const double denom = std::log(double(E)) - (H(q[a]) + H(q[b])) / 2;
            out[a][b] = denom <= 1e-12 ? 0.0 : std::min(1.0, std::max(0.0, (H(m) - (H(q[a]) + H(q[b])) / 2) / denom));
        }
    return out;
}

std::vector<std::vector<double>> bf_coact(const RoutingTrace& tr, int64_t j) {
    const int64_t E = tr.n_expert;
    // Rows of experts never selected are undefined (0/0): NaN, expected as null.
    std::vector<std::vector<double>> c(E, std::vector<double>(E, std::numeric_limits<double>::quiet_NaN()));
    for (int64_t a = 0; a < E; ++a) {
        int64_t den = 0;
        for (int64_t t = 0; t < tr.n_tokens(); ++t) den += in_s(tr, j, t, a);
        for (int64_t b = 0; b < E && den > 0; ++b) {
            int64_t num = 0;
            for (int64_t t = 0; t < tr.n_tokens(); ++t) num += in_s(tr, j, t, a) && in_s(tr, j, t, b);
            c[a][b] = double(num) / double(den);
        }
    }
    return c;
}

std::vector<std::vector<double>> bf_affinity(const RoutingTrace& tr, int64_t j) {
    const int64_t E = tr.n_expert;
    std::vector<std::vector<double>> A(E, std::vector<double>(E, std::numeric_limits<double>::quiet_NaN()));
    for (int64_t a = 0; a < E; ++a) {
        int64_t den = 0;
        for (int64_t t = 0; t < tr.n_tokens(); ++t) den += in_s(tr, j, t, a);
        for (int64_t b = 0; b < E && den > 0; ++b) {
            int64_t num = 0;
            for (int64_t t = 0; t < tr.n_tokens(); ++t) num += in_s(tr, j, t, a) && in_s(tr, j + 1, t, b);
            A[a][b] = double(num) / double(den);
        }
    }
    return A;
}

// numpy 'linear' percentile, textbook form.
double bf_percentile(std::vector<double> x, double q) {
    std::sort(x.begin(), x.end());
    const double h = (x.size() - 1) * q / 100.0;
    const size_t lo = size_t(std::floor(h)), hi = std::min(lo + 1, x.size() - 1);
    return x[lo] + (h - double(lo)) * (x[hi] - x[lo]);
}

struct BfSuper {
    int64_t layer, expert;
    double m;
};
std::vector<BfSuper> bf_super(const RoutingTrace& tr) {
    std::vector<BfSuper> all;
    for (int64_t j = 0; j < tr.n_moe_layer(); ++j)
        for (int64_t e = 0; e < tr.n_expert; ++e) {
            double m = 0.0;
            for (int64_t s = 0; s < tr.n_seq(); ++s) m = std::max(m, double(tr.layers[j].seq_max_abs_out[s * tr.n_expert + e]));
            all.push_back({tr.layers[j].layer, e, m});
        }
    std::vector<double> ms;
    for (const auto& x : all) ms.push_back(x.m);
    const double p = bf_percentile(ms, 99.5), mx = *std::max_element(ms.begin(), ms.end());
    std::vector<BfSuper> out;
    for (const auto& x : all)
        if (x.m > p && x.m > mx / 10 && x.layer < 0.75 * tr.n_layer) out.push_back(x);
    std::sort(out.begin(), out.end(), [](const BfSuper& a, const BfSuper& b) {
        return a.m != b.m ? a.m > b.m : (a.layer != b.layer ? a.layer < b.layer : a.expert < b.expert);
    });
    return out;
}

// ---- comparison helpers ----------------------------------------------------------------------

void expect_value(const json& got, double want, const std::string& where) {
    if (std::isnan(want)) {
        EXPECT_TRUE(got.is_null()) << where << ": got " << got.dump();
    } else {
        ASSERT_TRUE(got.is_number()) << where << ": got " << got.dump();
        EXPECT_NEAR(got.get<double>(), want, kTol * std::max(1.0, std::abs(want))) << where;
    }
}
void expect_vector(const json& got, const std::vector<double>& want, const std::string& where) {
    ASSERT_TRUE(got.is_array()) << where;
    ASSERT_EQ(got.size(), want.size()) << where;
    for (size_t i = 0; i < want.size(); ++i) expect_value(got[i], want[i], where + "[" + std::to_string(i) + "]");
}
void expect_matrix(const json& got, const std::vector<std::vector<double>>& want, const std::string& where) {
    ASSERT_TRUE(got.is_array()) << where;
    ASSERT_EQ(got.size(), want.size()) << where;
    for (size_t i = 0; i < want.size(); ++i) expect_vector(got[i], want[i], where + "[" + std::to_string(i) + "]");
}

// Every field of layers[j].specialization against the brute force.
void check_layer_json(const Toy& toy, int64_t j, const SpecializationParams& params) {
    const RoutingTrace& tr = toy.trace;
    const int64_t E = tr.n_expert, k = tr.n_expert_used;
    const std::string at = "layer " + std::to_string(j) + " ";
    const json got = an::specialization_layer_json(tr, j, params);
    std::vector<std::string> keys;
    for (const auto& [key, v] : got.items()) keys.push_back(key);
    EXPECT_EQ(keys, (std::vector<std::string>{"domain_rate", "domain_cv", "vocab_input", "vocab_next", "jsd",
                                              "coactivation", "affinity_next", "max_abs_out"}));
    const auto rate = bf_rate(tr, j);
    expect_matrix(got["domain_rate"], rate, at + "domain_rate");
    expect_vector(got["domain_cv"], bf_cv(rate, E), at + "domain_cv");
    expect_vector(got["vocab_input"], bf_vocab(tr, j, false, params.vocab_min_count), at + "vocab_input");
    expect_vector(got["vocab_next"], bf_vocab(tr, j, true, params.vocab_min_count), at + "vocab_next");
    expect_matrix(got["jsd"], bf_jsd(toy, j), at + "jsd");
    const auto co = bf_coact(tr, j);
    expect_matrix(got["coactivation"], co, at + "coactivation");
    std::vector<double> mx(E, 0.0);
    for (int64_t s = 0; s < tr.n_seq(); ++s)
        for (int64_t e = 0; e < E; ++e) mx[e] = std::max(mx[e], double(tr.layers[j].seq_max_abs_out[s * E + e]));
    expect_vector(got["max_abs_out"], mx, at + "max_abs_out");
    if (j + 1 == tr.n_moe_layer()) {
        EXPECT_TRUE(got["affinity_next"].is_null()) << at;
        return;
    }
    const auto A = bf_affinity(tr, j);
    const json& aff = got["affinity_next"];
    expect_matrix(aff["matrix"], A, at + "affinity");
    std::vector<double> mass(E);
    std::vector<std::tuple<double, int64_t, int64_t>> entries;
    for (int64_t a = 0; a < E; ++a) {
        std::vector<double> row = A[a];
        double sum = 0.0;
        for (double v : row) sum += v;
        if (std::isnan(row[0])) {  // expert a never selected in layer j: undefined row
            mass[a] = std::numeric_limits<double>::quiet_NaN();
            continue;
        }
        EXPECT_NEAR(sum, double(k), 1e-12) << at << "row " << a << " sums to k";
        std::sort(row.rbegin(), row.rend());
        mass[a] = 0.0;
        for (int64_t i = 0; i < k; ++i) mass[a] += row[i] / double(k);
        for (int64_t b = 0; b < E; ++b)
            if (A[a][b] > 0) entries.emplace_back(-A[a][b], a, b);
    }
    expect_vector(aff["topk_mass"], mass, at + "topk_mass");
    std::sort(entries.begin(), entries.end());
    entries.resize(std::min<size_t>(entries.size(), params.n_top_transitions));
    ASSERT_EQ(aff["top"].size(), entries.size()) << at;
    for (size_t i = 0; i < entries.size(); ++i) {
        EXPECT_EQ(aff["top"][i]["from"].get<int64_t>(), std::get<1>(entries[i])) << at << "top " << i;
        EXPECT_EQ(aff["top"][i]["to"].get<int64_t>(), std::get<2>(entries[i])) << at << "top " << i;
        EXPECT_NEAR(aff["top"][i]["value"].get<double>(), -std::get<0>(entries[i]), kTol) << at << "top " << i;
    }
}

void check_top_specialized(const RoutingTrace& tr, int64_t n) {
    struct Pick {
        int64_t j, e, d;
        double rate, ratio;
    };
    std::vector<Pick> all;
    int64_t nonempty = 0;
    for (int64_t d = 0; d < int64_t(tr.domains.size()); ++d) {
        int64_t n_d = 0;
        for (int64_t t = 0; t < tr.n_tokens(); ++t) n_d += domain_of(tr, t) == d;
        nonempty += n_d > 0;
    }
    for (int64_t j = 0; j < tr.n_moe_layer() && nonempty >= 2; ++j) {
        const auto rate = bf_rate(tr, j);
        for (int64_t d = 0; d < int64_t(tr.domains.size()); ++d)
            for (int64_t e = 0; e < tr.n_expert; ++e)
                if (!std::isnan(rate[d][e]))
                    all.push_back({j, e, d, rate[d][e], rate[d][e] * tr.n_expert / tr.n_expert_used});
    }
    std::stable_sort(all.begin(), all.end(), [](const Pick& a, const Pick& b) {
        if (a.ratio != b.ratio) return a.ratio > b.ratio;
        return std::tie(a.j, a.e, a.d) < std::tie(b.j, b.e, b.d);
    });
    all.resize(std::min<size_t>(all.size(), n));
    const json got = an::top_specialized_json(tr, n);
    ASSERT_EQ(got.size(), all.size());
    for (size_t i = 0; i < all.size(); ++i) {
        EXPECT_EQ(got[i]["layer"].get<int64_t>(), tr.layers[all[i].j].layer) << i;
        EXPECT_EQ(got[i]["expert"].get<int64_t>(), all[i].e) << i;
        EXPECT_EQ(got[i]["domain"].get<std::string>(), tr.domains[all[i].d]) << i;
        EXPECT_NEAR(got[i]["rate"].get<double>(), all[i].rate, kTol) << i;
        EXPECT_NEAR(got[i]["ratio_to_uniform"].get<double>(), all[i].ratio, kTol * all[i].ratio) << i;
    }
}

void check_super(const RoutingTrace& tr, const SpecializationParams& params) {
    const auto want = bf_super(tr);
    const json got = an::super_experts_json(tr, params);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(got[i]["layer"].get<int64_t>(), want[i].layer) << i;
        EXPECT_EQ(got[i]["expert"].get<int64_t>(), want[i].expert) << i;
        EXPECT_EQ(got[i]["max_abs_out"].get<double>(), want[i].m) << i;
    }
}

void check_all(const Toy& toy, const SpecializationParams& params) {
    for (int64_t j = 0; j < toy.trace.n_moe_layer(); ++j) check_layer_json(toy, j, params);
    check_super(toy.trace, params);
    for (int64_t n : {0, 1, 5, 10, 100000}) check_top_specialized(toy.trace, n);
}

std::vector<std::pair<int32_t, int64_t>> random_seqs(uint64_t seed, int n, int32_t n_domain, int64_t lo, int64_t hi) {
    std::mt19937_64 rng(seed);
    std::vector<std::pair<int32_t, int64_t>> out;
    for (int i = 0; i < n; ++i)
        out.emplace_back(int32_t(rng() % n_domain), lo + int64_t(rng() % uint64_t(hi - lo + 1)));
    return out;
}

}  // namespace

// ---- tests -----------------------------------------------------------------------------------

TEST(Specialization, RandomThreeDomains) {
    for (uint64_t seed : {1u, 2u, 3u}) {
        ToySpec spec;
        spec.seed = seed;
        spec.seqs = random_seqs(seed + 100, 14, 3, 1, 60);
        const Toy toy = make_toy(spec);
        SCOPED_TRACE("seed " + std::to_string(seed));
        check_all(toy, SpecializationParams{});
        SpecializationParams small;
        small.vocab_min_count = 3;
        small.n_top_transitions = 25;
        check_all(toy, small);
    }
}

TEST(Specialization, WideLayerDeadExpertsAndEmptyDomain) {
    ToySpec spec;
    spec.seed = 7;
    spec.n_expert = 64;
    spec.k = 6;
    spec.n_layer = 3;
    spec.moe_layers = {0, 1, 2};
    spec.usable = 60;                              // experts 60..63 are never selected
    spec.domains = {"a", "empty", "b"};            // "empty" has no tokens
    spec.seqs = random_seqs(8, 10, 3, 20, 120);
    for (auto& s : spec.seqs) s.first = s.first == 1 ? 2 : s.first;
    spec.seqs.emplace_back(1, 0);                  // a zero-length sequence of "empty"
    spec.vocab = 40;
    const Toy toy = make_toy(spec);
    check_all(toy, SpecializationParams{});
    const json l0 = an::specialization_layer_json(toy.trace, 0, SpecializationParams{});
    EXPECT_TRUE(l0["domain_rate"][1][0].is_null());
    EXPECT_TRUE(l0["jsd"][1][1].is_null());
    EXPECT_EQ(l0["coactivation"][63], json(std::vector<json>(64, json(nullptr))));  // never selected
    EXPECT_EQ(l0["coactivation"][5][5].get<double>(), 1.0);
}

TEST(Specialization, TopOneRoutingAndSingleDomain) {
    ToySpec spec;
    spec.seed = 11;
    spec.n_expert = 16;
    spec.k = 1;
    spec.n_layer = 4;
    spec.moe_layers = {0, 1, 2, 3};
    spec.domains = {"only"};
    spec.seqs = random_seqs(12, 6, 1, 30, 80);
    const Toy toy = make_toy(spec);
    check_all(toy, SpecializationParams{});
    EXPECT_TRUE(an::top_specialized_json(toy.trace, 10).empty());  // one domain: nothing to compare
    for (const auto& cv : an::domain_specialization(toy.trace, 0).cv) EXPECT_FALSE(cv.has_value());
}

// Hand-built: vocab argmax ties, next token not crossing sequences, affinity ties, exact values.
TEST(Specialization, HandBuiltTies) {
    RoutingTrace tr;
    tr.n_layer = 2;
    tr.n_expert = 4;
    tr.n_expert_used = 2;
    tr.domains = {"x", "y"};
    tr.token_ids = {7, 7, 7, 7, 9, /*seq 1*/ 9, 7};
    tr.seq_begin = {0, 5, 7};
    tr.seq_domain = {0, 1};
    TraceLayer l0, l1;
    l0.layer = 0;
    l1.layer = 1;
    // top-1 of id 7 (rows 0,1,2,3,6): 2,1,1,2,3 -> counts {1:2, 2:2, 3:1}, tie -> expert 1, s = 2/5.
    l0.selected = {2, 0, 1, 0, 1, 3, 2, 3, 0, 1, /*seq 1*/ 3, 2, 3, 0};
    l1.selected = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1};  // every token: {0, 1}
    for (TraceLayer* L : {&l0, &l1}) {
        L->seq_sum_prob = {1.25, 1.25, 1.25, 1.25, 0.5, 0.5, 0.5, 0.5};  // both domains uniform
        L->seq_max_abs_out.assign(8, 0.0f);
    }
    tr.layers = {l0, l1};
    const an::VocabIndex in = an::build_vocab_index(tr, false, 2);
    EXPECT_EQ(in.ids, (std::vector<int32_t>{7, 9}));
    const auto vin = an::vocab_specialization(tr, 0, in);
    // id 9 (rows 4, 5): top-1 0 and 3 -> tie -> expert 0, s = 1/2.
    EXPECT_EQ(vin.score[0], 0.5);
    EXPECT_EQ(vin.score[1], 0.4);
    EXPECT_FALSE(vin.score[2].has_value());
    EXPECT_FALSE(vin.score[3].has_value());
    // Next-token pairs: (0,1)(1,2)(2,3) next 7, (3,4) next 9, (5,6) next 7; row 4 -> row 5 crosses
    // the sequence boundary and must not count.
    const an::VocabIndex nx = an::build_vocab_index(tr, true, 1);
    EXPECT_EQ(nx.ids, (std::vector<int32_t>{7, 9}));
    EXPECT_EQ(nx.offsets, (std::vector<int64_t>{0, 4, 5}));
    const auto vnx = an::vocab_specialization(tr, 0, nx);
    // id 7 rows {0,1,2,5}: top-1 2,1,1,3 -> expert 1, 2/4; id 9 row {3}: expert 2, 1.
    EXPECT_EQ(vnx.score[1], 0.5);
    EXPECT_EQ(vnx.score[2], 1.0);
    // Uniform means: the JSD denominator is ~0 and the convention gives 0.
    for (const auto& v : an::domain_jsd(tr, 0)) EXPECT_EQ(v.value(), 0.0);
    // Affinity 0 -> 1: every row of a selected expert is {1, 1, 0, 0}; ties ordered by (from, to).
    const an::Affinity a = an::inter_layer_affinity(tr, 0, 10);
    ASSERT_EQ(a.top.size(), 8u);
    for (size_t i = 0; i < 8; ++i) {
        EXPECT_EQ(a.top[i].from, int64_t(i / 2));
        EXPECT_EQ(a.top[i].to, int64_t(i % 2));
        EXPECT_EQ(a.top[i].value, 1.0);
    }
    for (double m : a.topk_mass) EXPECT_EQ(m, 1.0);
    Toy toy{tr, {}};
    for (int j = 0; j < 2; ++j) toy.prob.push_back(std::vector<double>(7 * 4, 0.25));
    SpecializationParams p;
    p.vocab_min_count = 1;
    check_all(toy, p);
    EXPECT_THROW(an::inter_layer_affinity(tr, 1), moekit::Error);  // no layer after the last
}

TEST(Specialization, PercentileMatchesNumpy) {
    // np.percentile(v, q) of v_i = ((i * 7919) % 1000) / 7, printed with %.17g.
    const std::map<int, std::vector<double>> want = {
        {1, {0, 0, 0, 0, 0}},
        {2, {0, 16.148142857142858, 65.642857142857139, 130.62928571428571, 131.28571428571428}},
        {7, {0, 54.190285714285721, 96.571428571428569, 130.93857142857141, 131.28571428571428}},
        {11, {0, 29.804285714285715, 73.428571428571431, 130.70714285714283, 131.28571428571428}},  // lerp from b
        {37, {0, 17.283428571428576, 69.857142857142861, 138.56571428571428, 139.28571428571428}},
        {200, {0, 16.633000000000003, 70.928571428571416, 140.57357142857143, 141}},
        {1000, {0, 17.553857142857144, 71.357142857142861, 142.00071428571428, 142.71428571428572}},
        {4096, {0, 17.428571428571427, 71.357142857142861, 142, 142.71428571428572}}};
    const double qs[] = {0, 12.3, 50, 99.5, 100};
    for (const auto& [n, vals] : want) {
        std::vector<double> v;
        for (int i = 0; i < n; ++i) v.push_back(double((int64_t(i) * 7919) % 1000) / 7.0);
        for (int i = 0; i < 5; ++i) {
            EXPECT_EQ(an::percentile_linear(v, qs[i]), vals[i]) << "n " << n << " q " << qs[i];
            EXPECT_NEAR(an::percentile_linear(v, qs[i]), bf_percentile(v, qs[i]), 1e-12 * 150);
        }
    }
    EXPECT_THROW(an::percentile_linear({1.0}, 101.0), moekit::Error);
}

TEST(Specialization, SuperExpertCriteria) {
    ToySpec spec;
    spec.n_expert = 64;
    spec.k = 2;
    spec.n_layer = 4;
    spec.moe_layers = {0, 1, 2, 3};
    spec.domains = {"a"};
    spec.seqs = {{0, 10}, {0, 10}};
    Toy toy = make_toy(spec);
    auto& tr = toy.trace;
    auto set = [&](int64_t j, int64_t s, int64_t e, float v) { tr.layers[j].seq_max_abs_out[s * 64 + e] = v; };
    // 256 values: p99.5 interpolates between the 3rd and 2nd largest (index 253.725).
    set(3, 0, 9, 5000.0f);  // the largest, but in the last quarter of layers: not super
    set(0, 1, 4, 700.0f);   // above p99.5 but below max/10 = 500? no: 700 > 500 -> super
    set(1, 0, 2, 2.0f);
    check_super(tr, SpecializationParams{});
    auto sup = an::super_experts(tr, SpecializationParams{});
    ASSERT_EQ(sup.size(), 1u);
    EXPECT_EQ(sup[0].layer, 0);
    EXPECT_EQ(sup[0].expert, 4);
    set(0, 1, 4, 400.0f);   // now below max/10: no super expert although above the percentile
    EXPECT_TRUE(an::super_experts(tr, SpecializationParams{}).empty());
    check_super(tr, SpecializationParams{});
    set(3, 0, 9, 0.5f);     // largest is now 400 in layer 0: super
    sup = an::super_experts(tr, SpecializationParams{});
    ASSERT_EQ(sup.size(), 1u);
    EXPECT_EQ(sup[0].max_abs_out, 400.0);
    check_super(tr, SpecializationParams{});
    // Decoder layer index, not MoE index, decides the last quarter: MoE layers at 1,3,5,7 of 8.
    spec.n_layer = 8;
    spec.moe_layers = {1, 3, 5, 7};
    Toy t1 = make_toy(spec);
    t1.trace.layers[3].seq_max_abs_out[70] = 100.0f;  // decoder layer 7 >= 0.75 * 8: excluded
    EXPECT_TRUE(an::super_experts(t1.trace, SpecializationParams{}).empty());
    check_super(t1.trace, SpecializationParams{});
    t1.trace.layers[3].seq_max_abs_out[70] = 0.0f;
    t1.trace.layers[2].seq_max_abs_out[70] = 100.0f;  // decoder layer 5: super
    sup = an::super_experts(t1.trace, SpecializationParams{});
    ASSERT_EQ(sup.size(), 1u);
    EXPECT_EQ(sup[0].layer, 5);
    EXPECT_EQ(sup[0].moe_index, 2);
    EXPECT_EQ(sup[0].expert, 6);
    check_super(t1.trace, SpecializationParams{});
    // Random traces: whatever the brute force finds.
    for (uint64_t seed : {21u, 22u, 23u}) {
        spec.seed = seed;
        spec.seqs = random_seqs(seed, 5, 1, 5, 30);
        Toy t2 = make_toy(spec);
        std::mt19937_64 rng(seed);
        for (int i = 0; i < 3; ++i) t2.trace.layers[rng() % 4].seq_max_abs_out[rng() % (5 * 64)] = 10.0f + float(rng() % 100);
        check_super(t2.trace, SpecializationParams{});
    }
}

TEST(Specialization, EmptyTrace) {
    RoutingTrace tr;
    tr.n_layer = 2;
    tr.n_expert = 4;
    tr.n_expert_used = 2;
    tr.domains = {"a", "b"};
    tr.seq_begin = {0};
    tr.layers.resize(2);
    tr.layers[1].layer = 1;
    const json l0 = an::specialization_layer_json(tr, 0, SpecializationParams{});
    EXPECT_EQ(l0["domain_rate"].dump(), "[[null,null,null,null],[null,null,null,null]]");
    EXPECT_EQ(l0["jsd"].dump(), "[[null,null],[null,null]]");
    EXPECT_EQ(l0["vocab_input"].dump(), "[null,null,null,null]");
    EXPECT_EQ(l0["max_abs_out"].dump(), "[0.0,0.0,0.0,0.0]");
    EXPECT_TRUE(an::super_experts_json(tr, SpecializationParams{}).empty());
    EXPECT_TRUE(an::top_specialized_json(tr, 5).empty());
}

TEST(Specialization, BadInputIsAUserError) {
    ToySpec spec;
    spec.seqs = {{0, 5}, {1, 5}};
    const Toy toy = make_toy(spec);
    const SpecializationParams p;
    EXPECT_THROW(an::specialization_layer_json(toy.trace, 4, p), moekit::Error);
    EXPECT_THROW(an::specialization_layer_json(toy.trace, -1, p), moekit::Error);
    RoutingTrace bad = toy.trace;
    bad.layers[1].selected[3] = 8;  // out of range
    EXPECT_THROW(an::coactivation(bad, 1), moekit::Error);
    EXPECT_THROW(an::domain_specialization(bad, 1), moekit::Error);
    EXPECT_THROW(an::inter_layer_affinity(bad, 0), moekit::Error);
    bad = toy.trace;
    bad.layers[0].selected[5] = bad.layers[0].selected[4];  // duplicate within token 2
    EXPECT_THROW(an::coactivation(bad, 0), moekit::Error);
    EXPECT_THROW(an::domain_specialization(bad, 0), moekit::Error);
    bad = toy.trace;
    bad.seq_domain[1] = 3;
    EXPECT_THROW(an::domain_specialization(bad, 0), moekit::Error);
    bad = toy.trace;
    bad.layers[2].seq_sum_prob.pop_back();
    EXPECT_THROW(an::domain_jsd(bad, 2), moekit::Error);
    bad = toy.trace;
    bad.layers[2].seq_max_abs_out[0] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_THROW(an::super_experts(bad, p), moekit::Error);
    EXPECT_THROW(an::build_vocab_index(toy.trace, false, 0), moekit::Error);
    EXPECT_THROW(an::top_specialized(toy.trace, -1), moekit::Error);
    RoutingTrace other = toy.trace;
    other.token_ids.resize(3);
    other.seq_begin = {0, 3};
    other.seq_domain = {0};
    for (auto& L : other.layers) L.selected.resize(3 * 2);
    EXPECT_THROW(an::vocab_specialization(other, 0, an::build_vocab_index(toy.trace, false, 1)), moekit::Error);
}
