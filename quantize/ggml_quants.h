// ggml tensor types moekit writes into GGUF files, and their block quantizers. Each quantizer
// reproduces ggml's reference quantizer (ggml-quants.c quantize_row_*_ref, what llama-quantize
// runs when no importance matrix is given) bit for bit: the same float operations in the same
// order (this file is compiled with -ffp-contract=off so no FMA changes a rounding), the same
// nearest_int, the same scale searches (make_qkx2_quants for Q4_K, make_qx_quants for Q6_K).
// tests/unit/test_quantize_ggml.cpp compares every type byte for byte with ggml's own C code.
//
// Block layouts (little-endian, fp16 scales):
//   Q8_0: 32 values in 34 bytes  (d, 32 x int8; value = q*d)
//   Q4_0: 32 values in 18 bytes  (d, 16 bytes: element j low nibble, j+16 high; (q-8)*d)
//   Q5_0: 32 values in 22 bytes  (d, 4 bytes of 5th bits, 16 bytes of nibbles; (q-16)*d)
//   Q4_K: 256 values in 144 bytes (d, dmin, 12 bytes of 6-bit scales/mins, 128 bytes nibbles)
//   Q6_K: 256 values in 210 bytes (128 bytes low nibbles, 64 bytes high 2 bits, 16 int8 scales, d)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moekit::quantize {

// Values are ggml's enum ggml_type ids (the GGUF tensor-info type field).
enum class GgmlType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q5_0 = 6,
    Q8_0 = 8,
    Q4_K = 12,
    Q6_K = 14,
    BF16 = 30,
};

std::string_view ggml_type_name(GgmlType type);                 // "q4_K", as ggml names it
std::optional<GgmlType> parse_ggml_type(std::string_view name); // case-insensitive
int64_t ggml_block_size(GgmlType type);                         // values per block (1 for floats)
int64_t ggml_type_size(GgmlType type);                          // bytes per block
bool ggml_is_quantized(GgmlType type);
// Bytes of one row of n values (n must be a multiple of the block size).
uint64_t ggml_row_bytes(GgmlType type, int64_t n);
// Average bits per weight of the type (block bytes * 8 / block values).
double ggml_bits_per_weight(GgmlType type);

// What llama-quantize does when a row length is not a multiple of the type's block size
// (llama-quant.cpp tensor_type_fallback): Q4_K -> Q5_0, Q6_K -> Q8_0; a 32-block type that
// still does not fit, or a fallback that does not, becomes F16.
GgmlType ggml_fallback_type(GgmlType type, int64_t row_length);

// Quantizes n values (a multiple of the block size) into dst (ggml_row_bytes(type, n) bytes).
void quantize_row(GgmlType type, const float* x, std::byte* dst, int64_t n);
// Decodes n values back to fp32 (ggml's dequantize_row_*).
void dequantize_row(GgmlType type, const std::byte* src, float* y, int64_t n);

// Quantize + dequantize (what the quantized model computes with).
std::vector<float> fake_quantize_row(GgmlType type, const float* x, int64_t n);

}  // namespace moekit::quantize
