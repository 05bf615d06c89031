// cuda/linalg.h with cuSOLVER (host API only, so plain C++). One cuSOLVER handle and stream per
// process, created on first use; calls are serialized by a mutex (svd factorizes experts from
// several OpenMP threads).
#include "cuda/linalg.h"

#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <mutex>
#include <string>

#include "core/error.h"

namespace moekit::backend {
namespace {

void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw Error("cuda", std::string(what) + ": " + cudaGetErrorString(status));
}

void check_solver(cusolverStatus_t status, const char* what) {
    if (status != CUSOLVER_STATUS_SUCCESS) throw Error("cuda", std::string(what) + " failed (cusolver status " + std::to_string(int(status)) + ")");
}

struct Solver {
    int device = -1;
    cusolverDnHandle_t handle = nullptr;
    cudaStream_t stream = nullptr;
};

// Device memory for one call.
struct Buffer {
    void* ptr = nullptr;
    explicit Buffer(size_t bytes) { check(cudaMalloc(&ptr, bytes ? bytes : 8), "cudaMalloc"); }
    ~Buffer() { cudaFree(ptr); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    double* d() const { return static_cast<double*>(ptr); }
};

std::mutex& solver_mutex() {
    static std::mutex m;
    return m;
}

Solver& solver(int device) {
    static Solver s;
    if (s.device != device) {
        check(cudaSetDevice(device), "cudaSetDevice");
        if (s.handle) cusolverDnDestroy(s.handle);
        if (s.stream) cudaStreamDestroy(s.stream);
        check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
        check_solver(cusolverDnCreate(&s.handle), "cusolverDnCreate");
        check_solver(cusolverDnSetStream(s.handle, s.stream), "cusolverDnSetStream");
        s.device = device;
    }
    check(cudaSetDevice(device), "cudaSetDevice");
    return s;
}

// gesvd for m >= n (cuSOLVER's requirement).
core::Svd<double> gesvd_tall(Solver& s, const core::MatrixC<double>& a) {
    const int m = int(a.rows()), n = int(a.cols()), k = n;
    Buffer d_a(sizeof(double) * size_t(m) * n), d_s(sizeof(double) * k), d_u(sizeof(double) * size_t(m) * k),
        d_vt(sizeof(double) * size_t(k) * n), d_info(sizeof(int)), d_rwork(sizeof(double) * (k > 1 ? k - 1 : 1));
    check(cudaMemcpyAsync(d_a.ptr, a.data(), sizeof(double) * size_t(m) * n, cudaMemcpyHostToDevice, s.stream), "upload");
    int lwork = 0;
    check_solver(cusolverDnDgesvd_bufferSize(s.handle, m, n, &lwork), "cusolverDnDgesvd_bufferSize");
    Buffer d_work(sizeof(double) * size_t(lwork));
    check_solver(cusolverDnDgesvd(s.handle, 'S', 'S', m, n, d_a.d(), m, d_s.d(), d_u.d(), m, d_vt.d(), k, d_work.d(), lwork,
                                  d_rwork.d(), static_cast<int*>(d_info.ptr)),
                 "cusolverDnDgesvd");
    core::Svd<double> out;
    out.s.resize(k);
    out.u.resize(m, k);
    out.vt.resize(k, n);
    int info = 0;
    check(cudaMemcpyAsync(out.s.data(), d_s.ptr, sizeof(double) * k, cudaMemcpyDeviceToHost, s.stream), "download");
    check(cudaMemcpyAsync(out.u.data(), d_u.ptr, sizeof(double) * size_t(m) * k, cudaMemcpyDeviceToHost, s.stream), "download");
    check(cudaMemcpyAsync(out.vt.data(), d_vt.ptr, sizeof(double) * size_t(k) * n, cudaMemcpyDeviceToHost, s.stream), "download");
    check(cudaMemcpyAsync(&info, d_info.ptr, sizeof(int), cudaMemcpyDeviceToHost, s.stream), "download");
    check(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
    if (info != 0)
        throw Error("linalg", "cuSOLVER gesvd did not converge (info " + std::to_string(info) + ") on a " + std::to_string(m) +
                                  " x " + std::to_string(n) + " matrix");
    return out;
}

}  // namespace

core::Svd<double> cuda_svd(int device, const core::MatrixC<double>& a) {
    if (!a.allFinite()) throw Error("linalg", "SVD of a matrix with non-finite values");
    const std::lock_guard<std::mutex> lock(solver_mutex());
    Solver& s = solver(device);
    if (a.rows() >= a.cols()) return gesvd_tall(s, a);
    // Wide: A^T = U' S V'^T, so A = V' S U'^T.
    const core::MatrixC<double> at = a.transpose();
    core::Svd<double> t = gesvd_tall(s, at);
    core::Svd<double> out;
    out.s = std::move(t.s);
    out.u = t.vt.transpose();
    out.vt = t.u.transpose();
    return out;
}

}  // namespace moekit::backend
