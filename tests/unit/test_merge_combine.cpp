// Expert merging identities (merge/combine.h, merge/router.h): merging identical experts returns
// that expert; a planted neuron permutation is recovered exactly by alignment; a full-rank
// Sub-MoE joint SVD merge equals frequency-weighted averaging (and a rank cut is the truncated
// SVD's); the refit router reproduces the original routing mass when the members' logits allow
// it exactly; the routing agreement of an unchanged router is 1.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include <Eigen/SVD>

#include "merge/combine.h"
#include "merge/router.h"

namespace {

using namespace moekit::merge;
using moekit::model::Matrix;

Matrix random_matrix(int64_t r, int64_t c, std::mt19937_64& rng) {
    std::normal_distribution<float> n;
    Matrix m(r, c);
    for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = n(rng);
    return m;
}

ExpertWeights random_expert(int64_t d_ff, int64_t d, std::mt19937_64& rng) {
    return ExpertWeights{random_matrix(d_ff, d, rng), random_matrix(d_ff, d, rng), random_matrix(d, d_ff, rng)};
}

TEST(MergeCombine, IdenticalExpertsMergeToThatExpert) {
    std::mt19937_64 rng(1);
    const ExpertWeights e = random_expert(24, 16, rng);
    const std::vector<double> w = normalized_weights({5, 0, 11});
    const Matrix avg = weighted_sum({e.gate, e.gate, e.gate}, w);
    EXPECT_LE((avg - e.gate).cwiseAbs().maxCoeff(), 1e-6f);
    const Matrix svd = joint_svd_merge({e.down, e.down, e.down}, w, 0);
    EXPECT_LE((svd - e.down).cwiseAbs().maxCoeff(), 1e-4f);
    // Alignment of identical experts is the identity.
    std::vector<int64_t> id(24);
    std::iota(id.begin(), id.end(), 0);
    EXPECT_EQ(align_permutation(e, e), id);
}

TEST(MergeCombine, PlantedPermutationIsRecovered) {
    std::mt19937_64 rng(2);
    const int64_t d_ff = 48, d = 32;
    const ExpertWeights ref = random_expert(d_ff, d, rng);
    std::vector<int64_t> planted(static_cast<size_t>(d_ff));
    std::iota(planted.begin(), planted.end(), 0);
    std::shuffle(planted.begin(), planted.end(), rng);
    // member neuron planted[a] holds the reference's neuron a (plus a little noise).
    ExpertWeights member = ref;
    for (int64_t a = 0; a < d_ff; ++a) {
        member.gate.row(planted[static_cast<size_t>(a)]) = ref.gate.row(a);
        member.up.row(planted[static_cast<size_t>(a)]) = ref.up.row(a);
        member.down.col(planted[static_cast<size_t>(a)]) = ref.down.col(a);
    }
    const ExpertWeights noise = random_expert(d_ff, d, rng);
    member.gate += 0.05f * noise.gate;
    member.up += 0.05f * noise.up;
    member.down += 0.05f * noise.down;
    EXPECT_EQ(align_permutation(ref, member), planted);
    // Without noise, permuting back gives the reference exactly.
    ExpertWeights exact = ref;
    for (int64_t a = 0; a < d_ff; ++a) {
        exact.gate.row(planted[static_cast<size_t>(a)]) = ref.gate.row(a);
        exact.up.row(planted[static_cast<size_t>(a)]) = ref.up.row(a);
        exact.down.col(planted[static_cast<size_t>(a)]) = ref.down.col(a);
    }
    const ExpertWeights back = permute_neurons(exact, align_permutation(ref, exact));
    EXPECT_EQ(back.gate, ref.gate);
    EXPECT_EQ(back.up, ref.up);
    EXPECT_EQ(back.down, ref.down);
}

TEST(MergeCombine, FullRankJointSvdEqualsWeightedAverage) {
    std::mt19937_64 rng(3);
    for (auto [out, in] : {std::pair<int64_t, int64_t>{16, 24}, {24, 16}, {8, 8}}) {
        std::vector<Matrix> mats;
        for (int i = 0; i < 3; ++i) mats.push_back(random_matrix(out, in, rng));
        const std::vector<double> w = normalized_weights({3, 1, 6});
        const Matrix avg = weighted_sum(mats, w);
        const Matrix svd = joint_svd_merge(mats, w, 0);
        EXPECT_LE((svd - avg).cwiseAbs().maxCoeff(), 1e-4f * avg.cwiseAbs().maxCoeff()) << out << "x" << in;
        // A rank cut gives a matrix of (at most) that rank, closer to the average as r grows.
        const Matrix r2 = joint_svd_merge(mats, w, 2), r6 = joint_svd_merge(mats, w, 6);
        Eigen::JacobiSVD<Eigen::MatrixXf> s2(r2);
        EXPECT_LE(s2.singularValues()(2), 1e-3f * s2.singularValues()(0));
        EXPECT_LT((r6 - avg).norm(), (r2 - avg).norm());
    }
}

TEST(MergeRouter, RefitReproducesRoutingMass) {
    // Router inputs with a constant feature, so logsumexp of identical member rows (x.w + ln n)
    // is exactly linear in x; the refit router's softmax then gives each group its members' mass.
    std::mt19937_64 rng(4);
    const int64_t T = 400, d = 12, E = 6;
    Matrix x = random_matrix(T, d, rng);
    x.col(0).setOnes();
    Matrix router = random_matrix(E, d, rng);
    router.row(1) = router.row(0);
    router.row(4) = router.row(3);
    router.row(5) = router.row(3);
    const Groups groups = {{0, 1}, {2}, {3, 4, 5}};
    const Matrix logits = x * router.transpose();
    const std::vector<std::vector<double>> w = {{0.5, 0.5}, {1.0}, {0.2, 0.3, 0.5}};
    const Matrix mean = mean_router(router, groups, w);
    const Matrix refit = refit_router(x, logits, groups, router, mean);
    EXPECT_EQ(refit.row(1), router.row(2));  // a group of one keeps its row
    const Matrix z = x * refit.transpose();
    double worst = 0;
    for (int64_t t = 0; t < T; ++t) {
        const Eigen::RowVectorXd p = (logits.row(t).cast<double>().array() - logits.row(t).maxCoeff()).exp().matrix();
        const Eigen::RowVectorXd q = (z.row(t).cast<double>().array() - z.row(t).maxCoeff()).exp().matrix();
        for (size_t g = 0; g < groups.size(); ++g) {
            double mass = 0;
            for (int64_t e : groups[g]) mass += p(e);
            worst = std::max(worst, std::abs(mass / p.sum() - q(static_cast<int64_t>(g)) / q.sum()));
        }
    }
    EXPECT_LE(worst, 1e-4);
}

TEST(MergeRouter, AgreementOfAnUnchangedRouterIsOne) {
    std::mt19937_64 rng(5);
    moekit::model::ModelConfig mc;
    mc.model_type = "olmoe";
    mc.n_expert = 6;
    mc.n_expert_used = 2;
    const Matrix x = random_matrix(200, 8, rng), router = random_matrix(6, 8, rng);
    const Groups id = {{0}, {1}, {2}, {3}, {4}, {5}};
    const Agreement a = routing_agreement(mc, x, x * router.transpose(), {}, router, {}, id);
    EXPECT_EQ(a.tokens, 200);
    EXPECT_DOUBLE_EQ(a.overlap, 1.0);
    EXPECT_DOUBLE_EQ(a.top1, 1.0);
}

}  // namespace
