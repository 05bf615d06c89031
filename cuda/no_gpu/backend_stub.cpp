// Backend stub linked when moekit is built without CUDA: reports no GPU and refuses GPU work
// with a clear message.
#include "cuda/backend.h"
#include "cuda/device_ops.h"
#include "cuda/linalg.h"

#include "core/error.h"

namespace moekit::backend {

bool cuda_compiled() { return false; }
std::vector<GpuInfo> cuda_devices() { return {}; }
std::string cuda_unavailable_reason() { return "moekit was built without the CUDA backend (MOEKIT_CUDA=OFF or no nvcc)"; }

void cuda_convert_to_f32(int, core::DType, const std::byte*, std::size_t, float*) {
    throw Error("cuda", cuda_unavailable_reason());
}

core::Svd<double> cuda_svd(int, const core::MatrixC<double>&) { throw Error("cuda", cuda_unavailable_reason()); }

std::unique_ptr<DeviceOps> make_cuda_ops(int) { throw Error("cuda", cuda_unavailable_reason()); }

}  // namespace moekit::backend
