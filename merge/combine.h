// Merging the weights of a group of experts (METHODS.md §6 "Alignment", "Merge"):
//  * alignment: the intermediate neurons of a member are permuted to match a reference expert
//    (the group's most frequent member) by a linear assignment maximizing
//    sum_a <gate_ref[a], gate_m[p(a)]> + <up_ref[a], up_m[p(a)]> + <down_ref[:, a], down_m[:, p(a)]>
//    (merge/assignment.h); permuting a SwiGLU expert's neurons leaves its function unchanged;
//  * frequency-weighted averaging W = sum_i f^_i W_i per projection, f^_i = f_i / sum f (uniform
//    when no member received a token);
//  * Sub-MoE joint SVD: [W_1 ... W_n] (along the input dim) = U S V^T, V^T split into column
//    blocks V_i, W = U_r S_r (sum_i f^_i V_i,r) keeping the top r singular values (r = 0: all,
//    which equals the weighted average exactly; merge/edit.cpp then skips the SVD).
#pragma once

#include <cstdint>
#include <vector>

#include "model/engine.h"

namespace moekit::merge {

// One routed expert's projections, fp32: gate, up [d_ff, d_model]; down [d_model, d_ff].
struct ExpertWeights {
    model::Matrix gate, up, down;
};

// p[a] = the member neuron placed at position a.
std::vector<int64_t> align_permutation(const ExpertWeights& reference, const ExpertWeights& member);
ExpertWeights permute_neurons(const ExpertWeights& expert, const std::vector<int64_t>& p);

// sum_i w_i M_i (all the same shape).
model::Matrix weighted_sum(const std::vector<model::Matrix>& mats, const std::vector<double>& weights);

// Normalized frequencies f_i / sum f (uniform when the sum is 0).
std::vector<double> normalized_weights(const std::vector<double>& freq);

// Joint-SVD merge of same-shaped matrices [out, in]; rank 0 or >= min(out, n*in) keeps all.
model::Matrix joint_svd_merge(const std::vector<model::Matrix>& mats, const std::vector<double>& weights, int64_t rank);

}  // namespace moekit::merge
