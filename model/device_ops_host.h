// The host implementation of the engine's device interface (cuda/device_ops.h): runs the
// engine's device path on the CPU, so it is tested where there is no GPU. Not a fast path: the
// CPU engine (model/engine.cpp) is the one to use on a CPU.
#pragma once

#include <memory>

#include "cuda/device_ops.h"

namespace moekit::model {

std::unique_ptr<backend::DeviceOps> make_host_ops(int n_threads);

}  // namespace moekit::model
