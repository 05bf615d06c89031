// Element types as safetensors names them, their sizes, and scalar conversions to and from
// fp32 (bf16/f16/fp8 decode; round-to-nearest-even encode).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace moekit::core {

enum class DType : uint8_t {
    BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2,
};

// The safetensors spelling ("BF16", "F8_E4M3", ...).
std::string_view dtype_name(DType dtype);
// Parses a safetensors dtype string; nullopt when unknown.
std::optional<DType> parse_dtype(std::string_view name);
// Bytes per element.
std::size_t dtype_size(DType dtype);
bool dtype_is_float(DType dtype);

float bf16_to_f32(uint16_t bits);
float f16_to_f32(uint16_t bits);
float f8_e4m3_to_f32(uint8_t bits);  // OCP E4M3FN: no infinities, 0x7f/0xff are NaN
float f8_e5m2_to_f32(uint8_t bits);
uint16_t f32_to_bf16(float value);   // round to nearest even, NaN stays NaN
uint16_t f32_to_f16(float value);    // round to nearest even, overflow to inf

// Converts n elements of `dtype` starting at `src` (little-endian bytes) to fp32.
// Integer and bool types convert by value. `src` need not be aligned.
void convert_to_f32(DType dtype, const std::byte* src, std::size_t n, float* dst);
// The reverse for the float types moekit writes: n fp32 values to F32, BF16 or F16 bytes
// (little-endian, round to nearest even). `dst` need not be aligned; other dtypes throw.
void convert_from_f32(DType dtype, const float* src, std::size_t n, std::byte* dst);

}  // namespace moekit::core
