// The compute-backend interface the rest of moekit calls. CMake links either the CUDA
// implementation (cuda/*.cu, *.cpp) or the stub (cuda/no_gpu/), so callers never #ifdef.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace moekit::backend {

struct GpuInfo {
    int index = 0;
    std::string name;
    uint64_t total_memory = 0;
    int compute_major = 0;
    int compute_minor = 0;
};

// True when this build contains the CUDA backend (independent of whether a GPU is present).
bool cuda_compiled();
// GPUs usable right now; empty without the CUDA backend, a driver or a device.
std::vector<GpuInfo> cuda_devices();
// Why no GPU is usable, for messages ("built without CUDA", "no CUDA device: ..."); empty if one is.
std::string cuda_unavailable_reason();

// Converts n elements to fp32 on GPU `device` (host buffers in and out). Throws moekit::Error
// when no GPU is usable. The CPU reference is core::convert_to_f32.
void cuda_convert_to_f32(int device, core::DType dtype, const std::byte* src, std::size_t n, float* dst);

}  // namespace moekit::backend
