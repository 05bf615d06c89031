// Multi-type congestion fit (analysis/congestion.h, METHODS.md §3 step 4): the logit-choice
// equilibrium rho = mean_t softmax(z_t - gamma*rho) and the fit of gamma to observed loads,
// solved for many weightings of the same tokens at once so the bootstrap costs matrix products.
//
// With a_te = exp(z_te - max_j z_tj) (computed once) and v_e = exp(-(u_e - min u)), the mean
// choice under shifts u is m_e = v_e * sum_t w_t a_te / d_t / sum_t w_t with d = A v: two
// products with A per evaluation, E exponentials, and for C weightings at once A V and A^T Y
// are matrix-matrix products.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <string>

#include <Eigen/Dense>

#include "analysis/congestion.h"
#include "core/blas.h"
#include "core/error.h"

namespace moekit::analysis {

namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;
using RowMatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

[[noreturn]] void fail(const std::string& msg) { throw moekit::Error("analysis", msg); }

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kGolden = 0.6180339887498949;  // (sqrt 5 - 1) / 2

// Mean choice distributions of grouped rows under several (shift, group weighting) pairs.
class ChoiceModel {
public:
    ChoiceModel(const Eigen::Ref<const model::Matrix>& logits, std::vector<int32_t> group, int64_t n_group)
        : group_(std::move(group)), n_group_(n_group) {
        core::use_single_threaded_blas();  // we parallelize over fits ourselves
        const int64_t N = logits.rows(), E = logits.cols();
        if (N < 1 || E < 1) fail("the multi-type fit needs at least one sampled token and one expert");
        if (static_cast<int64_t>(group_.size()) != N) fail("row groups do not match the sampled logits");
        a_.resize(N, E);
        group_rows_.assign(static_cast<size_t>(n_group), 0.0);
        for (int64_t t = 0; t < N; ++t) {
            double mx = -kInf;
            for (int64_t e = 0; e < E; ++e) {
                const double z = logits(t, e);
                if (!std::isfinite(z)) fail("sampled router logit of row " + std::to_string(t) + " is not finite");
                mx = std::max(mx, z);
            }
            for (int64_t e = 0; e < E; ++e) a_(t, e) = std::exp(static_cast<double>(logits(t, e)) - mx);
            const int32_t g = group_[static_cast<size_t>(t)];
            if (g < 0 || g >= n_group) fail("row group out of range");
            group_rows_[static_cast<size_t>(g)] += 1.0;
        }
    }

    int64_t n_expert() const { return a_.cols(); }
    int64_t n_group() const { return n_group_; }

    // Total row weight of a group weighting.
    double total_weight(const VectorXd& w) const {
        double s = 0.0;
        for (int64_t g = 0; g < n_group_; ++g) s += w[g] * group_rows_[static_cast<size_t>(g)];
        return s;
    }

    // M.col(c) = sum_t W(g_t, c) softmax(z_t - U.col(c)) / sum_t W(g_t, c).
    void mean_choice(const MatrixXd& U, const MatrixXd& W, MatrixXd& M) const {
        const int64_t N = a_.rows(), E = a_.cols(), C = U.cols();
        MatrixXd V(E, C);
        for (int64_t c = 0; c < C; ++c) V.col(c) = (-(U.col(c).array() - U.col(c).minCoeff())).exp().matrix();
        MatrixXd Y = a_ * V;  // d_t, then w_t / d_t in place
        std::vector<char> exact(static_cast<size_t>(C), 0);
        for (int64_t c = 0; c < C; ++c) {
            double* y = Y.col(c).data();
            for (int64_t t = 0; t < N; ++t) {
                if (!(y[t] > 1e-280) || !std::isfinite(y[t])) exact[static_cast<size_t>(c)] = 1;  // underflow
                y[t] = W(group_[static_cast<size_t>(t)], c) / y[t];
            }
        }
        M.noalias() = a_.transpose() * Y;
        for (int64_t c = 0; c < C; ++c) {
            const double total = total_weight(W.col(c));
            if (exact[static_cast<size_t>(c)]) {
                M.col(c) = exact_mean(U.col(c), W.col(c)) / total;
                continue;
            }
            M.col(c) = V.col(c).cwiseProduct(M.col(c)) / total;
        }
    }

private:
    // Unnormalized sum_t w_t softmax(z_t - u) with a per-row log-sum-exp (the rare underflow path).
    VectorXd exact_mean(const VectorXd& u, const VectorXd& w) const {
        const int64_t N = a_.rows(), E = a_.cols();
        VectorXd sum = VectorXd::Zero(E), s(E);
        for (int64_t t = 0; t < N; ++t) {
            const double wt = w[group_[static_cast<size_t>(t)]];
            if (wt == 0) continue;
            for (int64_t e = 0; e < E; ++e) s[e] = std::log(a_(t, e)) - u[e];
            const double mx = s.maxCoeff();
            s = (s.array() - mx).exp().matrix();
            sum += wt / s.sum() * s;
        }
        return sum;
    }

    RowMatD a_;                       // [N, E] exp(z - row max)
    std::vector<int32_t> group_;      // [N]
    int64_t n_group_ = 0;
    std::vector<double> group_rows_;  // rows per group
};

// One fixed-point solve: damped iteration with Anderson acceleration (congestion.h).
struct Solve {
    double gamma = 0.0;
    VectorXd x, x_prev, f_prev, x_best, f_best;
    std::vector<VectorXd> dx, df;
    bool has_prev = false;
    double best_res = kInf;
    int64_t iter = 0;
    bool done = false, converged = false;
    VectorXd rho;
    double residual = kInf;

    void start(double g, const VectorXd& x0) {
        gamma = g;
        x = x0;
        dx.clear();
        df.clear();
        has_prev = false;
        best_res = kInf;
        iter = 0;
        done = converged = false;
        residual = kInf;
    }

    // g = m(gamma * x): decide convergence or take the next step.
    void step(const VectorXd& g, const EquilibriumOptions& opt) {
        ++iter;
        if (!g.allFinite()) {
            done = true;
            rho = x;
            return;
        }
        const VectorXd f = g - x;
        residual = f.lpNorm<1>();
        if (residual <= opt.tolerance || iter >= opt.max_iterations) {
            done = true;
            converged = residual <= opt.tolerance;
            rho = g;
            return;
        }
        const double beta = 2.0 / (2.0 + gamma * g.maxCoeff());
        if (residual > 10.0 * best_res) {  // acceleration went astray: restart from the best iterate
            dx.clear();
            df.clear();
            has_prev = false;
            x_prev = x_best;
            f_prev = f_best;
            x = x_best + beta * f_best;
            return;
        }
        if (residual < best_res) {
            best_res = residual;
            x_best = x;
            f_best = f;
        }
        if (has_prev) {
            dx.push_back(x - x_prev);
            df.push_back(f - f_prev);
            if (static_cast<int>(dx.size()) > opt.anderson_depth) {
                dx.erase(dx.begin());
                df.erase(df.begin());
            }
        }
        x_prev = x;
        f_prev = f;
        has_prev = true;
        if (dx.empty()) {
            x += beta * f;
            return;
        }
        const int64_t m = static_cast<int64_t>(dx.size());
        MatrixXd DX(x.size(), m), DF(x.size(), m);
        for (int64_t i = 0; i < m; ++i) {
            DX.col(i) = dx[static_cast<size_t>(i)];
            DF.col(i) = df[static_cast<size_t>(i)];
        }
        const VectorXd theta = DF.completeOrthogonalDecomposition().solve(f);
        const VectorXd next = x + beta * f - (DX + beta * DF) * theta;
        x = next.allFinite() ? next : VectorXd(x + beta * f);
    }
};

// Runs every unfinished solve to completion; solve c uses weighting column weights.col(c).
void solve_all(const ChoiceModel& model, const MatrixXd& weights, std::vector<Solve>& solves, const EquilibriumOptions& opt) {
    const int64_t E = model.n_expert();
    std::vector<int64_t> active;
    for (size_t c = 0; c < solves.size(); ++c)
        if (!solves[c].done) active.push_back(static_cast<int64_t>(c));
    MatrixXd U, W, M;
    while (!active.empty()) {
        const int64_t A = static_cast<int64_t>(active.size());
        U.resize(E, A);
        W.resize(model.n_group(), A);
        for (int64_t i = 0; i < A; ++i) {
            const Solve& s = solves[static_cast<size_t>(active[static_cast<size_t>(i)])];
            U.col(i) = s.gamma * s.x;
            W.col(i) = weights.col(active[static_cast<size_t>(i)]);
        }
        M.resize(E, A);
        model.mean_choice(U, W, M);
        std::vector<int64_t> still;
        for (int64_t i = 0; i < A; ++i) {
            Solve& s = solves[static_cast<size_t>(active[static_cast<size_t>(i)])];
            s.step(M.col(i), opt);
            if (!s.done) still.push_back(active[static_cast<size_t>(i)]);
        }
        active.swap(still);
    }
}

// {0} and E * 10^[-3, 3] at 8 points per decade.
std::vector<double> global_grid(int64_t E) {
    std::vector<double> g{0.0};
    for (int i = -24; i <= 24; ++i) g.push_back(static_cast<double>(E) * std::pow(10.0, i / 8.0));
    return g;
}

// One fit's search state: a grid scan, then golden section inside the best bracket.
struct Search {
    VectorXd target, warm;
    double best_gamma = kNaN, best_l1 = kInf, l1_at_zero = kNaN;
    bool converged = true;
    std::vector<double> grid_l1;
    bool log_mode = true;
    double a = 0, b = 0, x1 = 0, x2 = 0, f1 = 0, f2 = 0, tol_abs = 0;
    double gamma_of(double s) const { return log_mode ? std::exp(s) : s; }
};

// Evaluates L1(rho(gamma_c), target_c) for the listed searches, warm-starting each from its last.
std::vector<double> evaluate(const ChoiceModel& model, const MatrixXd& weights, std::vector<Search>& searches,
                             const std::vector<int64_t>& which, const std::vector<double>& gammas, const EquilibriumOptions& opt) {
    std::vector<Solve> solves(which.size());
    MatrixXd W(model.n_group(), static_cast<int64_t>(which.size()));
    for (size_t i = 0; i < which.size(); ++i) {
        solves[i].start(gammas[i], searches[static_cast<size_t>(which[i])].warm);
        W.col(static_cast<int64_t>(i)) = weights.col(which[i]);
    }
    solve_all(model, W, solves, opt);
    std::vector<double> l1(which.size());
    for (size_t i = 0; i < which.size(); ++i) {
        Search& s = searches[static_cast<size_t>(which[i])];
        s.warm = solves[i].rho;
        s.converged = s.converged && solves[i].converged;
        l1[i] = (solves[i].rho - s.target).lpNorm<1>();
        if (!std::isfinite(l1[i])) l1[i] = kInf;
        if (gammas[i] == 0.0) s.l1_at_zero = l1[i];
        if (l1[i] < s.best_l1) s.best_l1 = l1[i], s.best_gamma = gammas[i];
    }
    return l1;
}

// Fits every column of weights/targets on `grid` (ascending) then golden section to `tol`
// (in ln gamma; relative to the bracket in the linear case).
void run_search(const ChoiceModel& model, const MatrixXd& weights, std::vector<Search>& searches, std::vector<int64_t> cols,
                const std::vector<double>& grid, double tol, const EquilibriumOptions& opt) {
    const size_t n = grid.size();
    for (int64_t c : cols) searches[static_cast<size_t>(c)].grid_l1.assign(n, kInf);
    for (size_t i = 0; i < n; ++i) {
        const auto l1 = evaluate(model, weights, searches, cols, std::vector<double>(cols.size(), grid[i]), opt);
        for (size_t k = 0; k < cols.size(); ++k) searches[static_cast<size_t>(cols[k])].grid_l1[i] = l1[k];
    }
    if (n < 2) return;
    for (int64_t c : cols) {
        Search& s = searches[static_cast<size_t>(c)];
        const size_t i = static_cast<size_t>(std::min_element(s.grid_l1.begin(), s.grid_l1.end()) - s.grid_l1.begin());
        const double lo = grid[i == 0 ? 0 : i - 1], hi = grid[std::min(i + 1, n - 1)];
        s.log_mode = lo > 0;
        s.a = s.log_mode ? std::log(lo) : lo;
        s.b = s.log_mode ? std::log(hi) : hi;
        s.tol_abs = s.log_mode ? tol : tol * hi;
    }
    // Golden section in lockstep: every unfinished search evaluates one point per round.
    auto round = [&](const std::vector<int64_t>& which, bool first) {
        std::vector<double> g(which.size());
        for (size_t k = 0; k < which.size(); ++k) {
            const Search& s = searches[static_cast<size_t>(which[k])];
            g[k] = s.gamma_of(first ? s.x1 : s.x2);
        }
        const auto l1 = evaluate(model, weights, searches, which, g, opt);
        for (size_t k = 0; k < which.size(); ++k) (first ? searches[static_cast<size_t>(which[k])].f1 : searches[static_cast<size_t>(which[k])].f2) = l1[k];
    };
    for (int64_t c : cols) {
        Search& s = searches[static_cast<size_t>(c)];
        s.x1 = s.b - kGolden * (s.b - s.a);
        s.x2 = s.a + kGolden * (s.b - s.a);
    }
    round(cols, true);
    round(cols, false);
    for (;;) {
        std::vector<int64_t> left, right;  // new point x1 (left) or x2 (right)
        for (int64_t c : cols) {
            Search& s = searches[static_cast<size_t>(c)];
            if (s.b - s.a <= s.tol_abs) continue;
            if (s.f1 < s.f2) {
                s.b = s.x2, s.x2 = s.x1, s.f2 = s.f1, s.x1 = s.b - kGolden * (s.b - s.a);
                left.push_back(c);
            } else {
                s.a = s.x1, s.x1 = s.x2, s.f1 = s.f2, s.x2 = s.a + kGolden * (s.b - s.a);
                right.push_back(c);
            }
        }
        if (left.empty() && right.empty()) break;
        if (!left.empty()) round(left, true);
        if (!right.empty()) round(right, false);
    }
}

void check_target(std::span<const double> rho, int64_t E) {
    if (static_cast<int64_t>(rho.size()) != E) fail("observed loads have " + std::to_string(rho.size()) + " experts, the logits " + std::to_string(E));
    for (double v : rho)
        if (!std::isfinite(v)) fail("observed load share is not finite");
}

// Group per row and group weights for optional per-row weights (each row its own group).
void row_weighting(int64_t N, std::span<const double> row_weights, std::vector<int32_t>& group, MatrixXd& W) {
    if (row_weights.empty()) {
        group.assign(static_cast<size_t>(N), 0);
        W = MatrixXd::Ones(1, 1);
        return;
    }
    if (static_cast<int64_t>(row_weights.size()) != N) fail("row weights do not match the logits' rows");
    group.resize(static_cast<size_t>(N));
    W.resize(N, 1);
    double total = 0.0;
    for (int64_t t = 0; t < N; ++t) {
        const double w = row_weights[static_cast<size_t>(t)];
        if (!std::isfinite(w) || w < 0) fail("row weights must be non-negative");
        group[static_cast<size_t>(t)] = static_cast<int32_t>(t);
        W(t, 0) = w;
        total += w;
    }
    if (!(total > 0)) fail("row weights sum to zero");
}

MultiTypeFit to_fit(const Search& s) {
    MultiTypeFit f;
    f.gamma = s.best_gamma;
    f.l1 = s.best_l1;
    f.softmax_l1 = s.l1_at_zero;
    f.converged = s.converged;
    return f;
}

}  // namespace

Equilibrium equilibrium(const Eigen::Ref<const model::Matrix>& logits, double gamma, const EquilibriumOptions& options,
                        std::span<const double> row_weights, std::span<const double> rho0) {
    if (!std::isfinite(gamma) || gamma < 0) fail("the congestion coefficient must be a finite gamma >= 0");
    std::vector<int32_t> group;
    MatrixXd W;
    row_weighting(logits.rows(), row_weights, group, W);
    const ChoiceModel model(logits, group, W.rows());
    const int64_t E = model.n_expert();
    VectorXd x0 = VectorXd::Constant(E, 1.0 / static_cast<double>(E));
    if (!rho0.empty()) {
        check_target(rho0, E);
        x0 = Eigen::Map<const VectorXd>(rho0.data(), E);
    }
    std::vector<Solve> solves(1);
    solves[0].start(gamma, x0);
    solve_all(model, W, solves, options);
    Equilibrium out;
    out.rho.assign(solves[0].rho.data(), solves[0].rho.data() + E);
    out.iterations = solves[0].iter;
    out.residual = solves[0].residual;
    out.converged = solves[0].converged;
    return out;
}

MultiTypeFit fit_multi_type(const Eigen::Ref<const model::Matrix>& logits, std::span<const double> rho_obs,
                            std::span<const double> row_weights) {
    std::vector<int32_t> group;
    MatrixXd W;
    row_weighting(logits.rows(), row_weights, group, W);
    const ChoiceModel model(logits, group, W.rows());
    const int64_t E = model.n_expert();
    check_target(rho_obs, E);
    std::vector<Search> searches(1);
    searches[0].target = Eigen::Map<const VectorXd>(rho_obs.data(), E);
    searches[0].warm = searches[0].target;
    run_search(model, W, searches, {0}, global_grid(E), 1e-10, EquilibriumOptions{});
    return to_fit(searches[0]);
}

std::vector<MultiTypeFit> fit_multi_type_grouped(const Eigen::Ref<const model::Matrix>& logits,
                                                 std::span<const int32_t> row_group, int64_t n_group,
                                                 const std::vector<std::vector<double>>& group_weights,
                                                 const std::vector<std::vector<double>>& targets, double gamma_hint,
                                                 double tolerance) {
    if (n_group < 1) fail("the multi-type fit needs at least one row group");
    const ChoiceModel model(logits, std::vector<int32_t>(row_group.begin(), row_group.end()), n_group);
    const int64_t E = model.n_expert(), C = static_cast<int64_t>(group_weights.size());
    if (static_cast<int64_t>(targets.size()) != C) fail("one target per weighting is needed");
    MatrixXd W(n_group, C);
    std::vector<Search> searches(static_cast<size_t>(C));
    std::vector<int64_t> usable;
    for (int64_t c = 0; c < C; ++c) {
        const auto& w = group_weights[static_cast<size_t>(c)];
        if (static_cast<int64_t>(w.size()) != n_group) fail("group weights do not match the row groups");
        for (int64_t g = 0; g < n_group; ++g) W(g, c) = w[static_cast<size_t>(g)];
        check_target(targets[static_cast<size_t>(c)], E);
        Search& s = searches[static_cast<size_t>(c)];
        s.target = Eigen::Map<const VectorXd>(targets[static_cast<size_t>(c)].data(), E);
        s.warm = s.target;
        if (model.total_weight(W.col(c)) > 0) usable.push_back(c);  // no sampled token drawn: NaN
        else s.converged = false;
    }
    const EquilibriumOptions opt{1e-10, 5000, 5};
    const std::vector<double> full = global_grid(E);
    std::vector<double> local;
    if (gamma_hint > full[1] && std::isfinite(gamma_hint))
        for (int i = -6; i <= 6; ++i) {
            const double g = gamma_hint * std::pow(2.0, i / 2.0);
            if (g >= full[1] && g <= full.back()) local.push_back(g);
        }

    // Split the fits over threads (each runs its products single-threaded).
    const int n_chunk = std::max(1, std::min<int>(omp_in_parallel() ? 1 : omp_get_max_threads(), static_cast<int>(usable.size())));
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic) num_threads(n_chunk) if (n_chunk > 1)
    for (int chunk = 0; chunk < n_chunk; ++chunk) {
        try {
            std::vector<int64_t> cols;
            for (size_t i = static_cast<size_t>(chunk); i < usable.size(); i += static_cast<size_t>(n_chunk)) cols.push_back(usable[i]);
            if (cols.empty()) continue;
            std::vector<int64_t> redo = cols;
            if (local.size() >= 3) {
                run_search(model, W, searches, cols, local, tolerance, opt);
                redo.clear();
                for (int64_t c : cols) {  // best on the local grid's edge (and not the global top): full search
                    const auto& l1 = searches[static_cast<size_t>(c)].grid_l1;
                    const size_t i = static_cast<size_t>(std::min_element(l1.begin(), l1.end()) - l1.begin());
                    if (i == 0 || (i + 1 == l1.size() && local.back() < full.back())) redo.push_back(c);
                }
            }
            for (int64_t c : redo) {
                Search& s = searches[static_cast<size_t>(c)];
                s.best_l1 = kInf;
                s.converged = true;
                s.warm = s.target;
            }
            if (!redo.empty()) run_search(model, W, searches, redo, full, tolerance, opt);
        } catch (...) {
#pragma omp critical(moekit_congestion_error)
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);

    std::vector<MultiTypeFit> out(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) out[static_cast<size_t>(c)] = to_fit(searches[static_cast<size_t>(c)]);
    return out;
}

}  // namespace moekit::analysis
