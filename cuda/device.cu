// CUDA implementation of the backend interface (cuda/backend.h): device discovery and the
// dtype-conversion kernel. Compiled only when CMake finds nvcc; cuda/no_gpu/ is the stub.
#include "cuda/backend.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"

namespace moekit::backend {
namespace {

void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw Error("cuda", std::string(what) + ": " + cudaGetErrorString(status));
}

// Device buffer owned for the duration of one call.
struct DeviceBuffer {
    void* ptr = nullptr;
    explicit DeviceBuffer(std::size_t bytes) { check(cudaMalloc(&ptr, bytes ? bytes : 1), "cudaMalloc"); }
    ~DeviceBuffer() { cudaFree(ptr); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

__global__ void bf16_to_f32_kernel(const uint16_t* src, float* dst, std::size_t n) {
    for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
        dst[i] = __uint_as_float(uint32_t(src[i]) << 16);
}

__global__ void f16_to_f32_kernel(const __half_raw* src, float* dst, std::size_t n) {
    for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
        dst[i] = __half2float(__half(src[i]));
}

}  // namespace

bool cuda_compiled() { return true; }

std::vector<GpuInfo> cuda_devices() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error so later calls report their own
        return {};
    }
    std::vector<GpuInfo> gpus;
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
        gpus.push_back({i, prop.name, uint64_t(prop.totalGlobalMem), prop.major, prop.minor});
    }
    return gpus;
}

std::string cuda_unavailable_reason() {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        cudaGetLastError();
        return std::string("no CUDA device: ") + cudaGetErrorString(status);
    }
    return count == 0 ? "no CUDA device found" : "";
}

void cuda_convert_to_f32(int device, core::DType dtype, const std::byte* src, std::size_t n, float* dst) {
    if (dtype != core::DType::BF16 && dtype != core::DType::F16 && dtype != core::DType::F32)
        throw Error("cuda", "cuda_convert_to_f32 supports BF16, F16 and F32, not " + std::string(core::dtype_name(dtype)));
    check(cudaSetDevice(device), "cudaSetDevice");
    if (dtype == core::DType::F32) {
        std::memcpy(dst, src, n * sizeof(float));
        return;
    }
    DeviceBuffer d_src(n * 2), d_dst(n * sizeof(float));
    check(cudaMemcpy(d_src.ptr, src, n * 2, cudaMemcpyHostToDevice), "cudaMemcpy to device");
    const int threads = 256;
    const int blocks = int(std::min<std::size_t>((n + threads - 1) / threads, 65535));
    if (n > 0) {
        if (dtype == core::DType::BF16)
            bf16_to_f32_kernel<<<blocks, threads>>>(static_cast<const uint16_t*>(d_src.ptr), static_cast<float*>(d_dst.ptr), n);
        else
            f16_to_f32_kernel<<<blocks, threads>>>(static_cast<const __half_raw*>(d_src.ptr), static_cast<float*>(d_dst.ptr), n);
        check(cudaGetLastError(), "conversion kernel launch");
    }
    check(cudaMemcpy(dst, d_dst.ptr, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}

}  // namespace moekit::backend
