// libFuzzer target: parse_safetensors must reject any malformed input with moekit::Error and
// never crash, read out of bounds or throw anything else. Accepted inputs must be consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto* bytes = reinterpret_cast<const std::byte*>(data);
    try {
        const auto header = moekit::io::parse_safetensors(bytes, size, "fuzz.safetensors");
        // Invariants of an accepted header: tensors tile the data buffer in order.
        uint64_t covered = 0;
        for (const auto& info : header.tensors) {
            if (info.begin != covered || info.end < info.begin) std::abort();
            if (info.n_elements() * moekit::core::dtype_size(info.dtype) != info.nbytes()) std::abort();
            covered = info.end;
        }
        if (header.data_offset() + covered != size) std::abort();
    } catch (const moekit::Error&) {
        // expected for malformed input
    }
    return 0;
}
