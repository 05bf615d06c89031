// Hungarian method for linear assignment (merge/assignment.h).
//
// Rows are inserted one at a time. Each insertion grows a Dijkstra-like tree of tight edges
// under the reduced costs C(i, j) - u(i) - v(j) >= 0: min_slack[j] is the smallest reduced cost
// from the tree to column j, and the potentials are shifted by the smallest slack until a free
// column is reached; the path found is then flipped. Indices are 1-based inside, column 0 being
// the virtual column that holds the row being inserted.
#include "merge/assignment.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace moekit::merge {

std::vector<int64_t> solve_assignment(const Eigen::MatrixXd& cost) {
    const int64_t n = cost.rows();
    if (cost.cols() != n) throw Error("merge", "assignment needs a square cost matrix, got " + std::to_string(n) + " x " +
                                                   std::to_string(cost.cols()));
    if (!cost.allFinite()) throw Error("merge", "assignment cost matrix has non-finite entries");
    if (n == 0) return {};
    const double inf = std::numeric_limits<double>::infinity();
    const auto N = static_cast<size_t>(n + 1);
    std::vector<double> u(N, 0.0), v(N, 0.0), min_slack(N);
    std::vector<int64_t> row_of_col(N, 0), prev_col(N, 0);
    std::vector<char> in_tree(N);
    for (int64_t i = 1; i <= n; ++i) {
        row_of_col[0] = i;
        int64_t col = 0;
        std::fill(min_slack.begin(), min_slack.end(), inf);
        std::fill(in_tree.begin(), in_tree.end(), 0);
        do {
            in_tree[static_cast<size_t>(col)] = 1;
            const int64_t row = row_of_col[static_cast<size_t>(col)];
            double delta = inf;
            int64_t next = 0;
            for (int64_t j = 1; j <= n; ++j) {
                const auto J = static_cast<size_t>(j);
                if (in_tree[J]) continue;
                const double reduced = cost(row - 1, j - 1) - u[static_cast<size_t>(row)] - v[J];
                if (reduced < min_slack[J]) {
                    min_slack[J] = reduced;
                    prev_col[J] = col;
                }
                if (min_slack[J] < delta) {
                    delta = min_slack[J];
                    next = j;
                }
            }
            for (int64_t j = 0; j <= n; ++j) {
                const auto J = static_cast<size_t>(j);
                if (in_tree[J]) {
                    u[static_cast<size_t>(row_of_col[J])] += delta;
                    v[J] -= delta;
                } else {
                    min_slack[J] -= delta;
                }
            }
            col = next;
        } while (row_of_col[static_cast<size_t>(col)] != 0);
        // Flip the augmenting path back to the virtual column.
        do {
            const int64_t back = prev_col[static_cast<size_t>(col)];
            row_of_col[static_cast<size_t>(col)] = row_of_col[static_cast<size_t>(back)];
            col = back;
        } while (col != 0);
    }
    std::vector<int64_t> col_of_row(static_cast<size_t>(n));
    for (int64_t j = 1; j <= n; ++j) col_of_row[static_cast<size_t>(row_of_col[static_cast<size_t>(j)] - 1)] = j - 1;
    return col_of_row;
}

double assignment_cost(const Eigen::MatrixXd& cost, const std::vector<int64_t>& col_of_row) {
    double s = 0;
    for (size_t i = 0; i < col_of_row.size(); ++i) s += cost(static_cast<Eigen::Index>(i), col_of_row[i]);
    return s;
}

}  // namespace moekit::merge
