// The bf16 GEMM backend of a build without oneDNN (MOEKIT_BF16=OFF or libdnnl-dev missing):
// available() is false, everything else throws. See core/gemm_bf16.h.
#include "core/error.h"
#include "core/gemm_bf16.h"

namespace moekit::core::bf16 {

namespace {
[[noreturn]] void absent() {
    throw Error("bf16", "this moekit was built without a bf16 GEMM backend (install libdnnl-dev and rebuild)");
}
}  // namespace

bool available() { return false; }
std::string describe() { return "none"; }
std::size_t packed_bytes(int64_t, int64_t) { absent(); }
void pack(const float*, int64_t, int64_t, void*) { absent(); }
void gemm(const float*, int64_t, int64_t, const void*, int64_t, int64_t, float*, int64_t) { absent(); }

}  // namespace moekit::core::bf16
