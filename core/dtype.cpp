// Element types and scalar conversions. Hand-written because the bit layouts are tiny and
// fixed, and the bulk bf16 -> f32 loop must vectorize (it is a 16-bit shift).
#include "core/dtype.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace moekit::core {
namespace {

struct DTypeInfo {
    DType dtype;
    std::string_view name;
    std::size_t size;
    bool is_float;
};

constexpr std::array<DTypeInfo, 15> kDTypes{{
    {DType::BOOL, "BOOL", 1, false},    {DType::U8, "U8", 1, false},
    {DType::I8, "I8", 1, false},        {DType::I16, "I16", 2, false},
    {DType::U16, "U16", 2, false},      {DType::I32, "I32", 4, false},
    {DType::U32, "U32", 4, false},      {DType::I64, "I64", 8, false},
    {DType::U64, "U64", 8, false},      {DType::F16, "F16", 2, true},
    {DType::BF16, "BF16", 2, true},     {DType::F32, "F32", 4, true},
    {DType::F64, "F64", 8, true},       {DType::F8_E4M3, "F8_E4M3", 1, true},
    {DType::F8_E5M2, "F8_E5M2", 1, true},
}};

const DTypeInfo& info(DType dtype) {
    for (const auto& entry : kDTypes)
        if (entry.dtype == dtype) return entry;
    throw InternalError("dtype", "unhandled dtype value " + std::to_string(int(dtype)));
}

template <typename T>
T load_le(const std::byte* p) {
    T value;
    std::memcpy(&value, p, sizeof(T));  // host is little-endian (checked in CMake)
    return value;
}

}  // namespace

std::string_view dtype_name(DType dtype) { return info(dtype).name; }
std::size_t dtype_size(DType dtype) { return info(dtype).size; }
bool dtype_is_float(DType dtype) { return info(dtype).is_float; }

std::optional<DType> parse_dtype(std::string_view name) {
    for (const auto& entry : kDTypes)
        if (entry.name == name) return entry.dtype;
    return std::nullopt;
}

float bf16_to_f32(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

float f16_to_f32(uint16_t bits) {
    const uint32_t sign = uint32_t(bits & 0x8000) << 16;
    const uint32_t exponent = (bits >> 10) & 0x1f;
    const uint32_t mantissa = bits & 0x3ff;
    if (exponent == 0) {
        // zero or subnormal: mantissa * 2^-24
        const float magnitude = float(mantissa) * 0x1p-24f;
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
    return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

float f8_e4m3_to_f32(uint8_t bits) {
    const bool negative = bits & 0x80;
    const uint32_t exponent = (bits >> 3) & 0xf;
    const uint32_t mantissa = bits & 0x7;
    float magnitude;
    if (exponent == 0xf && mantissa == 0x7) {
        magnitude = std::numeric_limits<float>::quiet_NaN();
    } else if (exponent == 0) {
        magnitude = float(mantissa) * 0x1p-9f;  // subnormal: m/8 * 2^-6
    } else {
        magnitude = std::ldexp(1.0f + float(mantissa) / 8.0f, int(exponent) - 7);
    }
    return negative ? -magnitude : magnitude;
}

float f8_e5m2_to_f32(uint8_t bits) { return f16_to_f32(uint16_t(bits) << 8); }

uint16_t f32_to_bf16(float value) {
    uint32_t bits = std::bit_cast<uint32_t>(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return uint16_t(bits >> 16);
}

uint16_t f32_to_f16(float value) {
    const uint32_t bits = std::bit_cast<uint32_t>(value);
    const uint16_t sign = uint16_t((bits >> 16) & 0x8000);
    const uint32_t abs_bits = bits & 0x7fffffffu;
    if (abs_bits > 0x7f800000u) return sign | 0x7e00;            // NaN
    if (abs_bits >= 0x477ff000u) return sign | 0x7c00;           // rounds to >= 65520: inf
    if (abs_bits < 0x38800000u) {                                // below 2^-14: subnormal
        // value * 2^24 rounded to nearest even gives the subnormal mantissa
        const float scaled = std::bit_cast<float>(abs_bits) * 0x1p24f;
        return sign | uint16_t(std::nearbyint(scaled));
    }
    uint32_t rounded = abs_bits + 0xfffu + ((abs_bits >> 13) & 1u);
    return sign | uint16_t((rounded - (112u << 23)) >> 13);
}

void convert_to_f32(DType dtype, const std::byte* src, std::size_t n, float* dst) {
    switch (dtype) {
        case DType::F32: std::memcpy(dst, src, n * 4); return;
        case DType::BF16:
            for (std::size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_le<uint16_t>(src + 2 * i));
            return;
        case DType::F16:
            for (std::size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_le<uint16_t>(src + 2 * i));
            return;
        case DType::F64:
            for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<double>(src + 8 * i));
            return;
        case DType::F8_E4M3:
            for (std::size_t i = 0; i < n; ++i) dst[i] = f8_e4m3_to_f32(uint8_t(src[i]));
            return;
        case DType::F8_E5M2:
            for (std::size_t i = 0; i < n; ++i) dst[i] = f8_e5m2_to_f32(uint8_t(src[i]));
            return;
        case DType::BOOL:
        case DType::U8:
            for (std::size_t i = 0; i < n; ++i) dst[i] = float(uint8_t(src[i]));
            return;
        case DType::I8:
            for (std::size_t i = 0; i < n; ++i) dst[i] = float(int8_t(src[i]));
            return;
        case DType::I16:
            for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<int16_t>(src + 2 * i));
            return;
        case DType::U16:
            for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<uint16_t>(src + 2 * i));
            return;
        case DType::I32:
            for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<int32_t>(src + 4 * i));
            return;
        case DType::U32:
            for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<uint32_t>(src + 4 * i));
            return;
        case DType::I64:
            for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<int64_t>(src + 8 * i));
            return;
        case DType::U64:
            for (std::size_t i = 0; i < n; ++i) dst[i] = float(load_le<uint64_t>(src + 8 * i));
            return;
    }
    throw InternalError("dtype", "convert_to_f32: unhandled dtype");
}

void convert_from_f32(DType dtype, const float* src, std::size_t n, std::byte* dst) {
    switch (dtype) {
        case DType::F32: std::memcpy(dst, src, n * 4); return;
        case DType::BF16:
            for (std::size_t i = 0; i < n; ++i) {
                const uint16_t bits = f32_to_bf16(src[i]);
                std::memcpy(dst + 2 * i, &bits, 2);
            }
            return;
        case DType::F16:
            for (std::size_t i = 0; i < n; ++i) {
                const uint16_t bits = f32_to_f16(src[i]);
                std::memcpy(dst + 2 * i, &bits, 2);
            }
            return;
        default: break;
    }
    throw InternalError("dtype", "convert_from_f32: cannot encode " + std::string(dtype_name(dtype)));
}

}  // namespace moekit::core
