// Human-readable formatting used in terminal reports.
#include <gtest/gtest.h>

#include "core/format.h"

using namespace moekit::core;

TEST(Format, HumanCount) {
    EXPECT_EQ(human_count(0), "0");
    EXPECT_EQ(human_count(999), "999");
    EXPECT_EQ(human_count(1234567), "1.23 M");
    EXPECT_EQ(human_count(46.7e9), "46.70 B");
    EXPECT_EQ(human_count(123456), "123.5 K");
}

TEST(Format, HumanBytes) {
    EXPECT_EQ(human_bytes(512), "512 B");
    EXPECT_EQ(human_bytes(1536), "1.50 KiB");
    EXPECT_EQ(human_bytes(5.0 * 1024 * 1024 * 1024), "5.00 GiB");
}

TEST(Format, PercentAndRanges) {
    EXPECT_EQ(percent(0.3661), "36.6%");
    EXPECT_EQ(index_ranges({}), "none");
    EXPECT_EQ(index_ranges({0, 1, 2, 5}), "0-2, 5");
    EXPECT_EQ(index_ranges({3}), "3");
    EXPECT_EQ(index_ranges({1, 3, 4}), "1, 3-4");
}
