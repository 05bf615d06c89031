// Benchmark helper for bench/bench_svd.py: times moekit's thin SVD (core/linalg.h, LAPACK gesdd
// in double, single-threaded BLAS as moekit runs it) on matrices written by the driver, so the
// driver can time numpy.linalg.svd on exactly the same matrices.
//
// Usage: moekit_bench_svd MATRICES.f64 COUNT ROWS COLS RUNS
//   MATRICES.f64: COUNT row-major float64 matrices [ROWS, COLS], back to back.
// Prints one JSON line: {"count", "rows", "cols", "best_s" (all COUNT SVDs, best of RUNS),
// "checksum" (sum of all singular values, to compare with numpy's)}.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/blas.h"
#include "core/linalg.h"

int main(int argc, char** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s MATRICES.f64 COUNT ROWS COLS RUNS\n", argv[0]);
        return 2;
    }
    const long count = std::stol(argv[2]), rows = std::stol(argv[3]), cols = std::stol(argv[4]), runs = std::stol(argv[5]);
    std::ifstream in(argv[1], std::ios::binary);
    using RowMajor = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    std::vector<moekit::core::MatrixC<double>> mats;
    for (long i = 0; i < count; ++i) {
        RowMajor m(rows, cols);
        in.read(reinterpret_cast<char*>(m.data()), static_cast<std::streamsize>(m.size() * sizeof(double)));
        if (!in) {
            std::fprintf(stderr, "%s: fewer than %ld matrices\n", argv[1], count);
            return 1;
        }
        mats.emplace_back(m);
    }
    moekit::core::use_single_threaded_blas();
    double best = 1e300, checksum = 0;
    for (long r = 0; r < runs; ++r) {
        checksum = 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (const auto& m : mats) checksum += moekit::core::svd(m).s.sum();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::min(best, s);
    }
    std::printf("{\"count\": %ld, \"rows\": %ld, \"cols\": %ld, \"best_s\": %.6f, \"checksum\": %.10g}\n", count, rows, cols,
                best, checksum);
    return 0;
}
