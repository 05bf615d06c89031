// Micro-benchmark: oneDNN bf16 x bf16 -> fp32 matmul against OpenBLAS sgemm (what the engine's
// fp32 path uses) on the shapes `moekit eval` spends its time in, single-threaded and with the
// caller's thread count. Decides whether a bf16 compute mode can beat fp32 on this CPU at all.
//
// Build: c++ -O2 -std=c++20 bench/bench_gemm_bf16.cpp -o /tmp/bench_gemm_bf16 -ldnnl -lopenblas -fopenmp
// Run:   /tmp/bench_gemm_bf16 [threads]     (ONEDNN_VERBOSE=1 shows which kernel oneDNN picked)
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

template <class F>
double best_seconds(F&& f, double min_total = 0.4) {
    f();  // warm-up
    double best = 1e30, total = 0;
    int reps = 0;
    while (total < min_total || reps < 3) {
        const double t0 = now();
        f();
        const double dt = now() - t0;
        best = std::min(best, dt);
        total += dt;
        ++reps;
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    const int nt = argc > 1 ? std::atoi(argv[1]) : 1;
    omp_set_num_threads(nt);
    openblas_set_num_threads(nt);
    using namespace dnnl;
    engine eng(engine::kind::cpu, 0);
    stream strm(eng);
    std::printf("threads %d, oneDNN %d.%d.%d, effective ISA %d\n", nt, version()->major, version()->minor,
                version()->patch, int(get_effective_cpu_isa()));
    // M x K times (N x K)^T: the engine's x W^T with W row-major [N, K].
    struct Shape {
        const char* what;
        int M, K, N;
    };
    const Shape shapes[] = {
        {"expert gate+up, 64 rows", 64, 1024, 1024},   {"expert gate+up, 256 rows", 256, 1024, 1024},
        {"expert gate+up, 1024 rows", 1024, 1024, 1024}, {"expert down, 1024 rows", 1024, 512, 1024},
        {"attention q, 2048 rows", 2048, 1024, 1024},   {"lm_head, 1024 rows", 1024, 1024, 8192},
    };
    std::mt19937 rng(0);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::printf("%-28s %10s %10s %10s %8s\n", "shape (M x K x N)", "sgemm", "bf16", "bf16 wall", "ratio");
    for (const Shape& s : shapes) {
        std::vector<float> A(size_t(s.M) * s.K), B(size_t(s.N) * s.K), C(size_t(s.M) * s.N);
        for (auto& v : A) v = nd(rng);
        for (auto& v : B) v = nd(rng);
        const double flop = 2.0 * s.M * s.K * s.N;
        const double t_f32 = best_seconds([&] {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.M, s.N, s.K, 1.f, A.data(), s.K, B.data(), s.K, 0.f,
                        C.data(), s.N);
        });

        // Weights: [K, N] logical, stored as W^T (ba: N x K row-major), reordered once to the
        // kernel's blocked layout; activations converted to bf16 on every call (as the engine will).
        memory::desc a_f32({s.M, s.K}, memory::data_type::f32, memory::format_tag::ab);
        memory::desc a_bf({s.M, s.K}, memory::data_type::bf16, memory::format_tag::ab);
        memory::desc b_f32({s.K, s.N}, memory::data_type::f32, memory::format_tag::ba);
        memory::desc b_any({s.K, s.N}, memory::data_type::bf16, memory::format_tag::any);
        memory::desc c_f32({s.M, s.N}, memory::data_type::f32, memory::format_tag::ab);
        matmul::primitive_desc pd(matmul::desc(a_bf, b_any, c_f32), eng);
        memory a_src(a_f32, eng, A.data()), a_mem(a_bf, eng), b_src(b_f32, eng, B.data()), b_mem(pd.weights_desc(), eng),
            c_mem(c_f32, eng, C.data());
        reorder(b_src, b_mem).execute(strm, b_src, b_mem);
        reorder a_cvt(a_src, a_mem);
        matmul mm(pd);
        const double t_bf = best_seconds([&] {
            mm.execute(strm, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
            strm.wait();
        });
        const double t_bf_wall = best_seconds([&] {
            a_cvt.execute(strm, a_src, a_mem);
            mm.execute(strm, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
            strm.wait();
        });
        char name[96];
        std::snprintf(name, sizeof name, "%s %dx%dx%d", s.what, s.M, s.K, s.N);
        std::printf("%-44s sgemm %6.1f  bf16 %6.1f  bf16+cvt %6.1f GFLOP/s  ratio %.2f (%.2f with cvt)\n", name,
                    flop / t_f32 * 1e-9, flop / t_bf * 1e-9, flop / t_bf_wall * 1e-9, t_f32 / t_bf, t_f32 / t_bf_wall);
    }
}
