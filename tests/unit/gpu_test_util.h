// GPU tests' guard: REQUIRE_GPU() skips the test, loudly (*** SKIPPED on stderr and in gtest's
// report), when this build has no CUDA backend or no GPU is usable. CI machines have nvcc but no GPU.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "cuda/backend.h"

namespace moekit::test {

// True when a GPU is usable; otherwise false with the reason.
inline bool gpu_usable(std::string& reason) {
    if (!backend::cuda_compiled()) {
        reason = "CUDA backend not built";
        return false;
    }
    if (backend::cuda_devices().empty()) {
        reason = backend::cuda_unavailable_reason();
        return false;
    }
    return true;
}

}  // namespace moekit::test

#define REQUIRE_GPU()                                                                   \
    do {                                                                                \
        std::string reason;                                                             \
        if (!::moekit::test::gpu_usable(reason)) {                                      \
            std::fprintf(stderr, "*** SKIPPED (no GPU): %s\n", reason.c_str());         \
            GTEST_SKIP() << "SKIPPED: GPU test not run: " << reason;                    \
        }                                                                               \
    } while (0)
