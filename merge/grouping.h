// Which experts of a MoE layer merge together (METHODS.md §6 "Grouping"). Each function groups a
// set of candidate experts (a whole layer, or one routing group of DeepSeek's group-limited
// routing) into n groups; groups are returned with ascending members and ordered by their
// smallest member, so new expert j is the j-th group.
//
//  * M-SMoE: the n most frequent experts (ties: lower index) are dominant; every other expert
//    joins the dominant expert whose router-logit column is most similar (cosine over the
//    calibration tokens, from the Gram matrix sum_t z_t z_t^T; ties: lower index).
//  * HC-SMoE: average-linkage agglomerative clustering (UPGMA) of the experts' mean outputs over
//    the sampled calibration tokens, distance 1 - cosine; the closest pair of clusters (ties:
//    the pair with the lower smallest members) merges until n remain.
//  * Sub-MoE: k-means on cosine distances between expert outputs. Each expert is the unit
//    vector of its outputs on all sampled tokens (concatenated), so cos(i, j) = G_ij /
//    sqrt(G_ii G_jj) with G_ij = sum_t <E_i(x_t), E_j(x_t)>; k-means runs in that kernel space
//    (distance to a centroid from G alone), seeded by k-means++ from mt19937_64(seed), 10
//    restarts, the lowest inertia kept (ties: the earlier restart).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include <Eigen/Core>

namespace moekit::merge {

enum class Method { m_smoe, hc_smoe, sub_moe };
std::string_view method_name(Method method);   // "m-smoe", "hc-smoe", "sub-moe"
// Accepts those names (underscores too); throws Error("merge") listing them.
Method parse_method(std::string_view name);
// Whether the method needs every expert's output on sampled tokens (kSiteAllExperts).
bool needs_all_experts(Method method);

using Groups = std::vector<std::vector<int64_t>>;

// Cosine similarity matrix from a Gram matrix (0 where a norm is 0; 1 on the diagonal).
Eigen::MatrixXd cosine_from_gram(const Eigen::MatrixXd& gram);

// `candidates`: expert indices to group (ascending); n in [1, candidates.size()].
// freq: per expert of the layer; logit_cos / output_cos: E x E cosine matrices.
Groups group_m_smoe(const std::vector<int64_t>& candidates, int64_t n, const std::vector<double>& freq,
                    const Eigen::MatrixXd& logit_cos);
// mean_output: E x d.
Groups group_hc_smoe(const std::vector<int64_t>& candidates, int64_t n, const Eigen::MatrixXd& mean_output);
Groups group_sub_moe(const std::vector<int64_t>& candidates, int64_t n, const Eigen::MatrixXd& output_cos, uint64_t seed);

// Sorts members and orders groups by their smallest member.
void normalize_groups(Groups& groups);

}  // namespace moekit::merge
