// Linear assignment (the Hungarian method in its shortest-augmenting-path form with dual
// potentials, O(n^3)): for a square cost matrix C, the permutation p minimizing sum_i C(i, p[i]).
// moekit uses it to align the intermediate neurons of experts before they are averaged
// (merge/combine.h); tests/unit/test_merge_assignment.cpp checks it against brute force.
#pragma once

#include <cstdint>
#include <vector>

#include <Eigen/Core>

namespace moekit::merge {

// col_of_row[i] = the column assigned to row i. Throws Error("merge") for a non-square or
// non-finite matrix. Among optimal assignments the one found is deterministic.
std::vector<int64_t> solve_assignment(const Eigen::MatrixXd& cost);

// sum_i cost(i, col_of_row[i]).
double assignment_cost(const Eigen::MatrixXd& cost, const std::vector<int64_t>& col_of_row);

}  // namespace moekit::merge
