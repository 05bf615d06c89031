// Wall-clock timing for the phase timings every command reports (calibration, write, wall).
#pragma once

#include <chrono>

namespace moekit::core {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace moekit::core
