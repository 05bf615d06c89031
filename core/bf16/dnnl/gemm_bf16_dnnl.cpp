// The bf16 GEMM backend on oneDNN's matmul primitive (see core/gemm_bf16.h). On AVX512_BF16
// CPUs oneDNN 2.6 picks its brgemm kernel (brg:avx512_core_bf16), 2.1-3.4x OpenBLAS's sgemm per
// core on the engine's shapes (bench/bench_gemm_bf16.cpp); on AMX CPUs its AMX kernel.
//
// Primitives depend on the row count n, which varies per expert: each thread keeps the
// primitives it created, keyed by shape, and oneDNN's own primitive cache shares the JIT-ed
// kernels across threads (a new shape costs ~0.2 ms once). oneDNN uses OpenMP; every call runs
// with the calling thread's OpenMP thread count set to 1 so that oneDNN neither nests a team nor
// plans its work for threads that will not come.
#include <omp.h>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "core/bf16/dnnl/single_threaded.h"
#include "core/error.h"
#include "core/gemm_bf16.h"

namespace moekit::core::bf16 {

namespace {

using dnnl::memory;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::engine& cpu_engine() {
    static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    return eng;
}

using detail::SingleThreaded;

// The weights as matmul sees them: [K = cols, N = rows]; W row-major [rows, cols] is tag "ba".
memory::desc weights_plain(int64_t rows, int64_t cols) { return memory::desc({cols, rows}, dt::f32, tag::ba); }

// The blocked layout oneDNN's kernel wants for weights of this shape. It does not depend on the
// row count of x (checked for 16..4096 rows), so it is fixed at pack time with a nominal one.
memory::desc weights_packed(int64_t rows, int64_t cols) {
    static std::mutex mutex;
    static std::map<std::pair<int64_t, int64_t>, memory::desc> cache;
    std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::make_pair(rows, cols);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    const int64_t m = 256;
    const memory::desc a({m, cols}, dt::bf16, tag::ab);
    const memory::desc b({cols, rows}, dt::bf16, tag::any);
    const memory::desc c({m, rows}, dt::f32, tag::ab);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), cpu_engine());
    return cache.emplace(key, pd.weights_desc()).first->second;
}

struct Kernel {
    dnnl::reorder to_bf16;  // x fp32 (ldx) -> bf16 dense
    dnnl::matmul matmul;
    memory::desc x_f32, x_bf16, w, out;
};

Kernel make_kernel(int64_t n, int64_t ldx, int64_t rows, int64_t cols, int64_t ldo) {
    Kernel k;
    k.x_f32 = memory::desc({n, cols}, dt::f32, memory::dims{ldx, 1});
    k.x_bf16 = memory::desc({n, cols}, dt::bf16, tag::ab);
    k.w = weights_packed(rows, cols);
    k.out = memory::desc({n, rows}, dt::f32, memory::dims{ldo, 1});
    auto& eng = cpu_engine();
    k.to_bf16 = dnnl::reorder(dnnl::reorder::primitive_desc(eng, k.x_f32, eng, k.x_bf16));
    k.matmul = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(k.x_bf16, k.w, k.out), eng));
    return k;
}

// Per thread: its kernels by shape (bounded), its stream, its bf16 copy of x.
struct ThreadState {
    std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>, Kernel> kernels;
    std::vector<uint16_t> x_bf16;
    dnnl::stream stream{cpu_engine()};
};

constexpr size_t kMaxKernelsPerThread = 1024;

const char* isa_name(dnnl::cpu_isa isa) {
    switch (isa) {
        case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
        case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
        case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni (bf16 emulated)";
        case dnnl::cpu_isa::avx512_core: return "avx512_core (bf16 emulated)";
        default: return "no AVX-512 (bf16 via reference code, slow)";
    }
}

}  // namespace

bool available() { return true; }

std::string describe() {
    const auto* v = dnnl::version();
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
           ", ISA " + isa_name(dnnl::get_effective_cpu_isa());
}

std::size_t packed_bytes(int64_t rows, int64_t cols) { return weights_packed(rows, cols).get_size(); }

void pack(const float* w, int64_t rows, int64_t cols, void* dst) {
    try {
        const SingleThreaded single;
        auto& eng = cpu_engine();
        memory src(weights_plain(rows, cols), eng, const_cast<float*>(w));
        memory out(weights_packed(rows, cols), eng, dst);
        dnnl::stream s(eng);
        dnnl::reorder(src, out).execute(s, src, out);
        s.wait();
    } catch (const dnnl::error& e) {
        throw Error("bf16", "packing a [" + std::to_string(rows) + ", " + std::to_string(cols) +
                                "] weight for oneDNN failed: " + e.what());
    }
}

void gemm(const float* x, int64_t n, int64_t ldx, const void* packed, int64_t rows, int64_t cols, float* out,
          int64_t ldo) {
    if (n <= 0) return;
    try {
        const SingleThreaded single;
        thread_local ThreadState ts;
        const auto key = std::make_tuple(n, ldx, rows, cols, ldo);
        auto it = ts.kernels.find(key);
        if (it == ts.kernels.end()) {
            if (ts.kernels.size() >= kMaxKernelsPerThread) ts.kernels.clear();
            it = ts.kernels.emplace(key, make_kernel(n, ldx, rows, cols, ldo)).first;
        }
        const Kernel& k = it->second;
        ts.x_bf16.resize(static_cast<size_t>(n * cols));
        auto& eng = cpu_engine();
        memory xf(k.x_f32, eng, const_cast<float*>(x)), xb(k.x_bf16, eng, ts.x_bf16.data()),
            w(k.w, eng, const_cast<void*>(packed)), o(k.out, eng, out);
        k.to_bf16.execute(ts.stream, xf, xb);
        k.matmul.execute(ts.stream, {{DNNL_ARG_SRC, xb}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, o}});
        ts.stream.wait();
    } catch (const dnnl::error& e) {
        throw Error("bf16", "oneDNN matmul [" + std::to_string(n) + ", " + std::to_string(cols) + "] x [" +
                                std::to_string(cols) + ", " + std::to_string(rows) + "] failed: " + e.what());
    }
}

}  // namespace moekit::core::bf16
