// dtype conversions against an independent oracle: tests/golden/dtype_golden.txt and
// dtype_encode.bin, produced by scripts/make_dtype_golden.py with numpy (f16) and torch
// (bf16, float8_e4m3fn, float8_e5m2).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace {

using namespace moekit::core;

const std::string kGolden = std::string(MOEKIT_TEST_DATA) + "/golden/";

struct Golden {
    std::map<std::string, uint64_t> decode_hash;                         // fmt -> fnv1a64
    std::map<std::string, std::vector<std::pair<uint32_t, uint32_t>>> decode;  // fmt -> (bits, f32 bits)
};

const Golden& golden() {
    static const Golden g = [] {
        Golden out;
        std::ifstream in(kGolden + "dtype_golden.txt");
        EXPECT_TRUE(in) << "missing " << kGolden << "dtype_golden.txt (run scripts/make_dtype_golden.py)";
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] == '#') continue;
            std::istringstream fields(line);
            std::string kind, fmt, a, b;
            fields >> kind >> fmt >> a;
            if (kind == "decode_hash") {
                out.decode_hash[fmt] = std::stoull(a, nullptr, 16);
            } else if (kind == "decode") {
                fields >> b;
                out.decode[fmt].emplace_back(uint32_t(std::stoul(a, nullptr, 16)), uint32_t(std::stoul(b, nullptr, 16)));
            }
        }
        return out;
    }();
    return g;
}

uint32_t canonical_bits(float value) {
    return std::isnan(value) ? 0x7fc00000u : std::bit_cast<uint32_t>(value);
}

uint64_t fnv1a64(const std::vector<uint32_t>& words) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t w : words)
        for (int i = 0; i < 4; ++i) {
            h ^= (w >> (8 * i)) & 0xffu;
            h *= 0x100000001b3ull;
        }
    return h;
}

// Bit-exact equality, except that any NaN equals any NaN.
void expect_same(float got, uint32_t want_bits, const std::string& what) {
    const float want = std::bit_cast<float>(want_bits);
    if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got)) << what << ": want NaN, got " << got;
    } else {
        EXPECT_EQ(std::bit_cast<uint32_t>(got), want_bits) << what << ": want " << want << ", got " << got;
    }
}

std::string hex(uint32_t v) {
    std::ostringstream s;
    s << "0x" << std::hex << v;
    return s.str();
}

TEST(CoreDtypeGolden, FileHasAllSections) {
    const Golden& g = golden();
    EXPECT_EQ(g.decode_hash.count("f16"), 1u);
    EXPECT_EQ(g.decode_hash.count("bf16"), 1u);
    EXPECT_EQ(g.decode.at("f8_e4m3").size(), 256u);
    EXPECT_EQ(g.decode.at("f8_e5m2").size(), 256u);
    EXPECT_GE(g.decode.at("f16").size(), 30u);
    EXPECT_GE(g.decode.at("bf16").size(), 30u);
}

TEST(CoreDtypeGolden, F16SpecialsDecode) {
    for (const auto& [bits, want] : golden().decode.at("f16"))
        expect_same(f16_to_f32(uint16_t(bits)), want, "f16 " + hex(bits));
}

TEST(CoreDtypeGolden, Bf16SpecialsDecode) {
    for (const auto& [bits, want] : golden().decode.at("bf16"))
        expect_same(bf16_to_f32(uint16_t(bits)), want, "bf16 " + hex(bits));
}

TEST(CoreDtypeGolden, AllF16PatternsDecodeLikeNumpy) {
    std::vector<uint32_t> words(65536);
    for (uint32_t p = 0; p < 65536; ++p) words[p] = canonical_bits(f16_to_f32(uint16_t(p)));
    EXPECT_EQ(fnv1a64(words), golden().decode_hash.at("f16"))
        << "f16 decode of some of the 65536 patterns differs from numpy";
}

TEST(CoreDtypeGolden, AllBf16PatternsDecodeLikeTorch) {
    std::vector<uint32_t> words(65536);
    for (uint32_t p = 0; p < 65536; ++p) words[p] = canonical_bits(bf16_to_f32(uint16_t(p)));
    EXPECT_EQ(fnv1a64(words), golden().decode_hash.at("bf16"));
}

TEST(CoreDtypeGolden, AllF8E4M3PatternsDecodeLikeTorch) {
    for (const auto& [bits, want] : golden().decode.at("f8_e4m3"))
        expect_same(f8_e4m3_to_f32(uint8_t(bits)), want, "f8_e4m3 " + hex(bits));
}

TEST(CoreDtypeGolden, AllF8E5M2PatternsDecodeLikeTorch) {
    for (const auto& [bits, want] : golden().decode.at("f8_e5m2"))
        expect_same(f8_e5m2_to_f32(uint8_t(bits)), want, "f8_e5m2 " + hex(bits));
}

struct EncodeRecord {
    uint32_t f32;
    uint16_t f16;
    uint16_t bf16;
};

std::vector<EncodeRecord> encode_records() {
    std::ifstream in(kGolden + "dtype_encode.bin", std::ios::binary);
    std::vector<EncodeRecord> records;
    unsigned char buf[8];
    while (in.read(reinterpret_cast<char*>(buf), 8)) {
        EncodeRecord r;
        std::memcpy(&r.f32, buf, 4);
        std::memcpy(&r.f16, buf + 4, 2);
        std::memcpy(&r.bf16, buf + 6, 2);
        records.push_back(r);
    }
    return records;
}

TEST(CoreDtypeGolden, EncodeF16MatchesNumpy) {
    const auto records = encode_records();
    ASSERT_GE(records.size(), 3000u);
    int failures = 0;
    for (const auto& r : records) {
        const float value = std::bit_cast<float>(r.f32);
        const uint16_t got = f32_to_f16(value);
        if (std::isnan(value)) {
            EXPECT_TRUE(std::isnan(f16_to_f32(got))) << "f32 " << hex(r.f32) << " -> f16 " << hex(got);
            continue;
        }
        if (got != r.f16 && ++failures <= 20)
            ADD_FAILURE() << "f32 " << hex(r.f32) << " (" << value << ") -> f16 " << hex(got) << ", numpy " << hex(r.f16);
    }
    EXPECT_EQ(failures, 0);
}

TEST(CoreDtypeGolden, EncodeBf16MatchesTorch) {
    const auto records = encode_records();
    ASSERT_GE(records.size(), 3000u);
    int failures = 0;
    for (const auto& r : records) {
        const float value = std::bit_cast<float>(r.f32);
        const uint16_t got = f32_to_bf16(value);
        if (std::isnan(value)) {
            EXPECT_TRUE(std::isnan(bf16_to_f32(got))) << "f32 " << hex(r.f32) << " -> bf16 " << hex(got);
            continue;
        }
        if (got != r.bf16 && ++failures <= 20)
            ADD_FAILURE() << "f32 " << hex(r.f32) << " (" << value << ") -> bf16 " << hex(got) << ", torch " << hex(r.bf16);
    }
    EXPECT_EQ(failures, 0);
}

TEST(CoreDtype, F16RoundTripsEveryFinitePattern) {
    for (uint32_t p = 0; p < 65536; ++p) {
        const float value = f16_to_f32(uint16_t(p));
        if (std::isnan(value)) continue;
        ASSERT_EQ(f32_to_f16(value), uint16_t(p)) << hex(p);
    }
}

TEST(CoreDtype, NamesSizesAndParsing) {
    for (int i = 0; i <= int(DType::F8_E5M2); ++i) {
        const auto dtype = DType(i);
        EXPECT_EQ(parse_dtype(dtype_name(dtype)), dtype);
    }
    EXPECT_EQ(dtype_size(DType::BF16), 2u);
    EXPECT_EQ(dtype_size(DType::F8_E4M3), 1u);
    EXPECT_EQ(dtype_size(DType::I64), 8u);
    EXPECT_EQ(dtype_size(DType::BOOL), 1u);
    EXPECT_EQ(parse_dtype("bf16"), std::nullopt);  // safetensors spellings are upper case
    EXPECT_EQ(parse_dtype("F4"), std::nullopt);
    EXPECT_TRUE(dtype_is_float(DType::F8_E5M2));
    EXPECT_FALSE(dtype_is_float(DType::I32));
}

TEST(CoreDtype, ConvertToF32MatchesScalarDecodersAndIntegers) {
    std::vector<std::byte> raw(64 * 8);
    for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = std::byte((i * 37 + 11) & 0xff);
    std::vector<float> out(64);
    // Unaligned source on purpose.
    convert_to_f32(DType::BF16, raw.data() + 1, 64, out.data());
    for (int i = 0; i < 64; ++i) {
        uint16_t bits;
        std::memcpy(&bits, raw.data() + 1 + 2 * i, 2);
        expect_same(out[i], canonical_bits(bf16_to_f32(bits)), "bf16 elem");
    }
    convert_to_f32(DType::F16, raw.data() + 3, 64, out.data());
    for (int i = 0; i < 64; ++i) {
        uint16_t bits;
        std::memcpy(&bits, raw.data() + 3 + 2 * i, 2);
        expect_same(out[i], canonical_bits(f16_to_f32(bits)), "f16 elem");
    }
    const int64_t ints[3] = {-5, 0, 1234567};
    convert_to_f32(DType::I64, reinterpret_cast<const std::byte*>(ints), 3, out.data());
    EXPECT_EQ(out[0], -5.0f);
    EXPECT_EQ(out[2], 1234567.0f);
    const uint8_t bools[2] = {0, 1};
    convert_to_f32(DType::BOOL, reinterpret_cast<const std::byte*>(bools), 2, out.data());
    EXPECT_EQ(out[0], 0.0f);
    EXPECT_EQ(out[1], 1.0f);
    const int8_t i8[2] = {-128, 127};
    convert_to_f32(DType::I8, reinterpret_cast<const std::byte*>(i8), 2, out.data());
    EXPECT_EQ(out[0], -128.0f);
    EXPECT_EQ(out[1], 127.0f);
}

}  // namespace

// The bulk encoder writes exactly the scalar encoders' bits (unaligned destination included) and
// convert_to_f32 reads them back; non-float dtypes are refused.
TEST(CoreDtype, ConvertFromF32MatchesScalarEncoders) {
    const std::vector<float> x = {0.0f, -0.0f, 1.0f, -2.5f, 3.14159f, 65504.0f, 1e-8f, 1e30f};
    for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
        const std::size_t w = dtype_size(dt);
        std::vector<std::byte> buf(x.size() * w + 1);
        convert_from_f32(dt, x.data(), x.size(), buf.data() + 1);
        std::vector<float> back(x.size());
        convert_to_f32(dt, buf.data() + 1, x.size(), back.data());
        for (std::size_t i = 0; i < x.size(); ++i) {
            uint16_t bits = 0;
            if (w == 2) std::memcpy(&bits, buf.data() + 1 + 2 * i, 2);
            if (dt == DType::BF16) EXPECT_EQ(bits, f32_to_bf16(x[i]));
            if (dt == DType::F16) EXPECT_EQ(bits, f32_to_f16(x[i]));
            const float want = dt == DType::F32 ? x[i] : dt == DType::BF16 ? bf16_to_f32(f32_to_bf16(x[i])) : f16_to_f32(f32_to_f16(x[i]));
            EXPECT_EQ(std::bit_cast<uint32_t>(back[i]), std::bit_cast<uint32_t>(want));
        }
    }
    std::byte out[8];
    EXPECT_THROW(convert_from_f32(DType::I32, x.data(), 1, out), std::exception);
}
