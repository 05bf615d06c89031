// Expert grouping (merge/grouping.h) on planted structure: M-SMoE's dominant experts and their
// most similar members, HC-SMoE's average-linkage clusters, Sub-MoE's k-means clusters (and its
// determinism for a seed), method parsing.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "core/error.h"
#include "merge/grouping.h"

namespace {

using namespace moekit::merge;

// Points in three tight clusters (experts {0, 3, 6}, {1, 4}, {2, 5, 7}) along orthogonal directions.
Eigen::MatrixXd planted_points(std::mt19937_64& rng) {
    std::normal_distribution<double> n(0.0, 0.05);
    const int cluster[8] = {0, 1, 2, 0, 1, 2, 0, 2};
    Eigen::MatrixXd p = Eigen::MatrixXd::Zero(8, 5);
    for (int e = 0; e < 8; ++e) {
        p(e, cluster[e]) = 1.0 + e * 0.1;
        for (int j = 0; j < 5; ++j) p(e, j) += n(rng);
    }
    return p;
}

const Groups kPlanted = {{0, 3, 6}, {1, 4}, {2, 5, 7}};
const std::vector<int64_t> kAll = {0, 1, 2, 3, 4, 5, 6, 7};

TEST(MergeGrouping, MSmoeJoinsTheMostSimilarDominantExpert) {
    std::mt19937_64 rng(1);
    const Eigen::MatrixXd p = planted_points(rng);
    const Eigen::MatrixXd cos = cosine_from_gram(p * p.transpose());
    // Dominant: the most frequent of each cluster (6, 4, 2).
    const std::vector<double> freq = {1, 2, 9, 3, 8, 1, 7, 0};
    EXPECT_EQ(group_m_smoe(kAll, 3, freq, cos), kPlanted);
    // Ties in frequency keep the lower index dominant.
    const Groups one = group_m_smoe({0, 1, 2}, 1, {1, 1, 1}, Eigen::MatrixXd::Identity(8, 8));
    EXPECT_EQ(one, (Groups{{0, 1, 2}}));
}

TEST(MergeGrouping, HcSmoeFindsPlantedClusters) {
    std::mt19937_64 rng(2);
    const Eigen::MatrixXd p = planted_points(rng);
    EXPECT_EQ(group_hc_smoe(kAll, 3, p), kPlanted);
    EXPECT_EQ(group_hc_smoe(kAll, 8, p).size(), 8u);
    EXPECT_EQ(group_hc_smoe(kAll, 1, p), (Groups{kAll}));
}

TEST(MergeGrouping, SubMoeFindsPlantedClustersDeterministically) {
    std::mt19937_64 rng(3);
    const Eigen::MatrixXd p = planted_points(rng);
    const Eigen::MatrixXd cos = cosine_from_gram(p * p.transpose());
    for (uint64_t seed : {0, 1, 42}) EXPECT_EQ(group_sub_moe(kAll, 3, cos, seed), kPlanted) << "seed " << seed;
    // Candidates as a subset (one routing group).
    const Groups two = group_sub_moe({4, 5, 6, 7}, 2, cos, 0);
    ASSERT_EQ(two.size(), 2u);
    EXPECT_EQ(two[0].size() + two[1].size(), 4u);
    const auto& with5 = two[0][0] == 5 || (two[0].size() > 1 && two[0][1] == 5) ? two[0] : two[1];
    EXPECT_NE(std::find(with5.begin(), with5.end(), 7), with5.end());  // the planted pair among them stays together
    const Groups g = group_sub_moe({4, 5, 6, 7}, 4, cos, 9);
    EXPECT_EQ(g, (Groups{{4}, {5}, {6}, {7}}));
}

TEST(MergeGrouping, MethodNames) {
    EXPECT_EQ(parse_method("m-smoe"), Method::m_smoe);
    EXPECT_EQ(parse_method("hc_smoe"), Method::hc_smoe);
    EXPECT_EQ(method_name(Method::sub_moe), "sub-moe");
    EXPECT_THROW(parse_method("magic"), moekit::Error);
    EXPECT_TRUE(needs_all_experts(Method::hc_smoe));
    EXPECT_FALSE(needs_all_experts(Method::m_smoe));
}

}  // namespace
