// Expert grouping for merging (merge/grouping.h).
#include "merge/grouping.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "core/error.h"

namespace moekit::merge {

std::string_view method_name(Method method) {
    switch (method) {
        case Method::m_smoe: return "m-smoe";
        case Method::hc_smoe: return "hc-smoe";
        case Method::sub_moe: return "sub-moe";
    }
    return "?";
}

Method parse_method(std::string_view name) {
    std::string s(name);
    std::replace(s.begin(), s.end(), '_', '-');
    for (Method m : {Method::m_smoe, Method::hc_smoe, Method::sub_moe})
        if (s == method_name(m)) return m;
    throw Error("merge", "unknown method '" + std::string(name) + "' (expected m-smoe, hc-smoe or sub-moe)");
}

bool needs_all_experts(Method method) { return method != Method::m_smoe; }

Eigen::MatrixXd cosine_from_gram(const Eigen::MatrixXd& g) {
    const Eigen::Index n = g.rows();
    Eigen::MatrixXd c = Eigen::MatrixXd::Zero(n, n);
    for (Eigen::Index i = 0; i < n; ++i)
        for (Eigen::Index j = 0; j < n; ++j) {
            const double den = std::sqrt(g(i, i) * g(j, j));
            c(i, j) = i == j ? 1.0 : (den > 0 ? g(i, j) / den : 0.0);
        }
    return c;
}

void normalize_groups(Groups& groups) {
    for (auto& g : groups) std::sort(g.begin(), g.end());
    std::sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) { return a.front() < b.front(); });
}

namespace {

void check_n(const std::vector<int64_t>& candidates, int64_t n) {
    if (n < 1 || n > static_cast<int64_t>(candidates.size()))
        throw InternalError("merge", "cannot group " + std::to_string(candidates.size()) + " experts into " + std::to_string(n));
}

}  // namespace

Groups group_m_smoe(const std::vector<int64_t>& cand, int64_t n, const std::vector<double>& freq, const Eigen::MatrixXd& logit_cos) {
    check_n(cand, n);
    std::vector<int64_t> order = cand;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return freq[static_cast<size_t>(a)] > freq[static_cast<size_t>(b)];
    });
    std::vector<int64_t> dominant(order.begin(), order.begin() + n);
    std::sort(dominant.begin(), dominant.end());
    Groups groups;
    for (int64_t d : dominant) groups.push_back({d});
    for (int64_t e : cand) {
        if (std::find(dominant.begin(), dominant.end(), e) != dominant.end()) continue;
        size_t best = 0;
        for (size_t g = 1; g < dominant.size(); ++g)
            if (logit_cos(e, dominant[g]) > logit_cos(e, dominant[best])) best = g;
        groups[best].push_back(e);
    }
    normalize_groups(groups);
    return groups;
}

Groups group_hc_smoe(const std::vector<int64_t>& cand, int64_t n, const Eigen::MatrixXd& mean_output) {
    check_n(cand, n);
    const size_t m = cand.size();
    Eigen::MatrixXd dist(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(m));
    for (size_t i = 0; i < m; ++i)
        for (size_t j = 0; j < m; ++j) {
            const auto a = mean_output.row(cand[i]), b = mean_output.row(cand[j]);
            const double den = a.norm() * b.norm();
            dist(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = i == j ? 0.0 : 1.0 - (den > 0 ? a.dot(b) / den : 0.0);
        }
    std::vector<std::vector<size_t>> clusters(m);
    for (size_t i = 0; i < m; ++i) clusters[i] = {i};
    while (static_cast<int64_t>(clusters.size()) > n) {
        double best = std::numeric_limits<double>::infinity();
        size_t ba = 0, bb = 1;
        for (size_t a = 0; a < clusters.size(); ++a)
            for (size_t b = a + 1; b < clusters.size(); ++b) {
                double s = 0;
                for (size_t i : clusters[a])
                    for (size_t j : clusters[b]) s += dist(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
                s /= static_cast<double>(clusters[a].size() * clusters[b].size());
                if (s < best) {
                    best = s;
                    ba = a;
                    bb = b;
                }
            }
        clusters[ba].insert(clusters[ba].end(), clusters[bb].begin(), clusters[bb].end());
        std::sort(clusters[ba].begin(), clusters[ba].end());
        clusters.erase(clusters.begin() + static_cast<std::ptrdiff_t>(bb));
    }
    Groups groups;
    for (const auto& c : clusters) {
        std::vector<int64_t> g;
        for (size_t i : c) g.push_back(cand[i]);
        groups.push_back(std::move(g));
    }
    normalize_groups(groups);
    return groups;
}

namespace {

// Squared kernel distances of every point to every cluster centroid: K_ii - 2 mean_{j in c} K_ij
// + mean_{j,l in c} K_jl.
Eigen::MatrixXd kernel_distances(const Eigen::MatrixXd& K, const std::vector<int64_t>& assign, int64_t n) {
    const Eigen::Index m = K.rows();
    Eigen::MatrixXd d = Eigen::MatrixXd::Constant(m, n, std::numeric_limits<double>::infinity());
    for (int64_t c = 0; c < n; ++c) {
        std::vector<Eigen::Index> mem;
        for (Eigen::Index i = 0; i < m; ++i)
            if (assign[static_cast<size_t>(i)] == c) mem.push_back(i);
        if (mem.empty()) continue;
        double within = 0;
        for (auto j : mem)
            for (auto l : mem) within += K(j, l);
        within /= static_cast<double>(mem.size() * mem.size());
        for (Eigen::Index i = 0; i < m; ++i) {
            double cross = 0;
            for (auto j : mem) cross += K(i, j);
            d(i, c) = std::max(0.0, K(i, i) - 2.0 * cross / static_cast<double>(mem.size()) + within);
        }
    }
    return d;
}

}  // namespace

Groups group_sub_moe(const std::vector<int64_t>& cand, int64_t n, const Eigen::MatrixXd& output_cos, uint64_t seed) {
    check_n(cand, n);
    const auto m = static_cast<Eigen::Index>(cand.size());
    Eigen::MatrixXd K(m, m);
    for (Eigen::Index i = 0; i < m; ++i)
        for (Eigen::Index j = 0; j < m; ++j) K(i, j) = output_cos(cand[static_cast<size_t>(i)], cand[static_cast<size_t>(j)]);
    std::mt19937_64 rng(seed);
    std::vector<int64_t> best_assign;
    double best_inertia = std::numeric_limits<double>::infinity();
    for (int restart = 0; restart < 10; ++restart) {
        // k-means++ seeding on the kernel distances d(i, j)^2 = K_ii + K_jj - 2 K_ij.
        std::vector<Eigen::Index> centers{static_cast<Eigen::Index>(rng() % static_cast<uint64_t>(m))};
        while (static_cast<int64_t>(centers.size()) < n) {
            std::vector<double> d2(static_cast<size_t>(m));
            double total = 0;
            for (Eigen::Index i = 0; i < m; ++i) {
                double best = std::numeric_limits<double>::infinity();
                for (auto c : centers) best = std::min(best, std::max(0.0, K(i, i) + K(c, c) - 2 * K(i, c)));
                d2[static_cast<size_t>(i)] = best;
                total += best;
            }
            Eigen::Index pick = 0;
            if (total <= 0) {  // all remaining points coincide with centers: take the first unused
                while (std::find(centers.begin(), centers.end(), pick) != centers.end()) ++pick;
            } else {
                double r = std::uniform_real_distribution<double>(0.0, total)(rng);
                for (pick = 0; pick < m - 1; ++pick) {
                    if (r < d2[static_cast<size_t>(pick)]) break;
                    r -= d2[static_cast<size_t>(pick)];
                }
                while (d2[static_cast<size_t>(pick)] <= 0 && pick > 0) --pick;  // never a chosen center
                if (std::find(centers.begin(), centers.end(), pick) != centers.end()) {
                    pick = 0;
                    while (std::find(centers.begin(), centers.end(), pick) != centers.end()) ++pick;
                }
            }
            centers.push_back(pick);
        }
        std::vector<int64_t> assign(static_cast<size_t>(m), -1);
        for (size_t c = 0; c < centers.size(); ++c) assign[static_cast<size_t>(centers[c])] = static_cast<int64_t>(c);
        for (Eigen::Index i = 0; i < m; ++i) {  // initial assignment: nearest center
            if (assign[static_cast<size_t>(i)] >= 0) continue;
            size_t best = 0;
            for (size_t c = 1; c < centers.size(); ++c)
                if (K(i, centers[c]) > K(i, centers[best])) best = c;
            assign[static_cast<size_t>(i)] = static_cast<int64_t>(best);
        }
        double inertia = 0;
        for (int iter = 0; iter < 100; ++iter) {
            const Eigen::MatrixXd d = kernel_distances(K, assign, n);
            std::vector<int64_t> next(static_cast<size_t>(m));
            inertia = 0;
            for (Eigen::Index i = 0; i < m; ++i) {
                Eigen::Index c = 0;
                d.row(i).minCoeff(&c);
                next[static_cast<size_t>(i)] = c;
                inertia += d(i, c);
            }
            // Keep every cluster non-empty: an empty one takes the point farthest from its centroid.
            for (int64_t c = 0; c < n; ++c) {
                if (std::count(next.begin(), next.end(), c) > 0) continue;
                Eigen::Index far = -1;
                double far_d = -1;
                for (Eigen::Index i = 0; i < m; ++i) {
                    const int64_t own = next[static_cast<size_t>(i)];
                    if (std::count(next.begin(), next.end(), own) < 2) continue;
                    if (d(i, own) > far_d) {
                        far_d = d(i, own);
                        far = i;
                    }
                }
                next[static_cast<size_t>(far)] = c;
            }
            if (next == assign) break;
            assign = std::move(next);
        }
        if (inertia < best_inertia - 1e-12) {
            best_inertia = inertia;
            best_assign = assign;
        }
    }
    Groups groups(static_cast<size_t>(n));
    for (Eigen::Index i = 0; i < m; ++i) groups[static_cast<size_t>(best_assign[static_cast<size_t>(i)])].push_back(cand[static_cast<size_t>(i)]);
    normalize_groups(groups);
    return groups;
}

}  // namespace moekit::merge
