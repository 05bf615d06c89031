// ggml block quantizers, written from the definitions in ggml-quants.c (see ggml_quants.h).
// Compiled with -ffp-contract=off (CMakeLists.txt): every float operation rounds as in ggml's
// portable build.
#include "quantize/ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace moekit::quantize {
namespace {

constexpr int kQK = 32;      // Q4_0 / Q5_0 / Q8_0 block
constexpr int kQKK = 256;    // K-quant super-block
constexpr float kGroupMaxEps = 1e-15f;

// ggml's nearest_int: round half to even through the float mantissa (|v| <= 4194303).
inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int32_t i;
    std::memcpy(&i, &val, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

// roundf (half away from zero) for |v| < 2^31, inline: the libm call was a third of q8_0's time.
// v - trunc(v) is exact in float, so the comparison with 0.5 decides exactly as roundf does.
inline int round_half_away(float v) {
    const int t = static_cast<int>(v);
    const float frac = v - static_cast<float>(t);
    return t + (frac >= 0.5f ? 1 : 0) - (frac <= -0.5f ? 1 : 0);
}

inline void put_f16(std::byte* dst, float v) {
    uint16_t h = core::f32_to_f16(v);
    std::memcpy(dst, &h, 2);
}
inline float get_f16(const std::byte* src) {
    uint16_t h;
    std::memcpy(&h, src, 2);
    return core::f16_to_f32(h);
}

// ---- Q8_0 -------------------------------------------------------------------------------
void quantize_q8_0(const float* x, std::byte* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        auto* qs = reinterpret_cast<int8_t*>(y + 2);
        for (int j = 0; j < kQK; ++j) qs[j] = static_cast<int8_t>(round_half_away(x[j] * id));
    }
}
void dequantize_q8_0(const std::byte* src, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, src += 34, y += kQK) {
        const float d = get_f16(src);
        const auto* qs = reinterpret_cast<const int8_t*>(src + 2);
        for (int j = 0; j < kQK; ++j) y[j] = qs[j] * d;
    }
}

// ---- Q4_0 / Q5_0: scale from the value of largest magnitude, keeping its sign -------------
float signed_absmax(const float* x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    return max;
}
void quantize_q4_0(const float* x, std::byte* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 18) {
        const float d = signed_absmax(x) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        auto* qs = reinterpret_cast<uint8_t*>(y + 2);
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[kQK / 2 + j] * id;
            const uint8_t xi0 = std::min<uint8_t>(15, static_cast<uint8_t>(static_cast<int8_t>(x0 + 8.5f)));
            const uint8_t xi1 = std::min<uint8_t>(15, static_cast<uint8_t>(static_cast<int8_t>(x1 + 8.5f)));
            qs[j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
        }
    }
}
void dequantize_q4_0(const std::byte* src, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, src += 18, y += kQK) {
        const float d = get_f16(src);
        const auto* qs = reinterpret_cast<const uint8_t*>(src + 2);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = ((qs[j] & 0x0F) - 8) * d;
            y[j + kQK / 2] = ((qs[j] >> 4) - 8) * d;
        }
    }
}
void quantize_q5_0(const float* x, std::byte* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 22) {
        const float d = signed_absmax(x) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        uint32_t qh = 0;
        auto* qs = reinterpret_cast<uint8_t*>(y + 6);
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[kQK / 2 + j] * id;
            const uint8_t xi0 = std::min<uint8_t>(31, static_cast<uint8_t>(static_cast<int8_t>(x0 + 16.5f)));
            const uint8_t xi1 = std::min<uint8_t>(31, static_cast<uint8_t>(static_cast<int8_t>(x1 + 16.5f)));
            qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
            qh |= ((xi1 & 0x10u) >> 4) << (j + kQK / 2);
        }
        std::memcpy(y + 2, &qh, 4);
    }
}
void dequantize_q5_0(const std::byte* src, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, src += 22, y += kQK) {
        const float d = get_f16(src);
        uint32_t qh;
        std::memcpy(&qh, src + 2, 4);
        const auto* qs = reinterpret_cast<const uint8_t*>(src + 6);
        for (int j = 0; j < kQK / 2; ++j) {
            const uint8_t xh0 = static_cast<uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
            const uint8_t xh1 = static_cast<uint8_t>((qh >> (j + 12)) & 0x10);
            const int32_t x0 = ((qs[j] & 0x0F) | xh0) - 16;
            const int32_t x1 = ((qs[j] >> 4) | xh1) - 16;
            y[j] = x0 * d;
            y[j + kQK / 2] = x1 * d;
        }
    }
}

// ---- Q4_K ---------------------------------------------------------------------------------
// Asymmetric scale/min search over weighted squared error (ggml's make_qkx2_quants).
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
        float diff = scale * L[i] + min - x[i];
        diff = diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = std::max(0, std::min(nmax, l));
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

void quantize_q4_k(const float* x, std::byte* yb, int64_t nb) {
    uint8_t L[kQKK], Laux[32];
    float weights[32], mins[kQKK / 32], scales[kQKK / 32];
    for (int64_t i = 0; i < nb; ++i, x += kQKK, yb += 144) {
        auto* sc = reinterpret_cast<uint8_t*>(yb + 4);
        auto* q = reinterpret_cast<uint8_t*>(yb + 16);
        std::memset(sc, 0, 12);
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < kQKK / 32; ++j) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
            const float av_x = std::sqrt(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
            scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < kQKK / 32; ++j) {
            uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
            uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
            ls = std::min<uint8_t>(63, ls);
            lm = std::min<uint8_t>(63, lm);
            if (j < 4) {
                sc[j] = ls;
                sc[j + 4] = lm;
            } else {
                sc[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
                sc[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
                sc[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
            }
        }
        put_f16(yb, max_scale / 63.f);
        put_f16(yb + 2, max_min / 63.f);
        const float d_all = get_f16(yb), dmin_all = get_f16(yb + 2);
        for (int j = 0; j < kQKK / 32; ++j) {
            uint8_t s, m;
            get_scale_min_k4(j, sc, &s, &m);
            const float d = d_all * s;
            if (d == 0.0f) continue;
            const float dm = dmin_all * m;
            for (int ii = 0; ii < 32; ++ii) {
                int l = nearest_int((x[32 * j + ii] + dm) / d);
                L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(15, l)));
            }
        }
        for (int j = 0; j < kQKK; j += 64) {
            for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
    }
}
void dequantize_q4_k(const std::byte* src, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, src += 144) {
        const float d = get_f16(src), dmin = get_f16(src + 2);
        const auto* sc = reinterpret_cast<const uint8_t*>(src + 4);
        const auto* q = reinterpret_cast<const uint8_t*>(src + 16);
        int is = 0;
        for (int j = 0; j < kQKK; j += 64) {
            uint8_t s, m;
            get_scale_min_k4(is + 0, sc, &s, &m);
            const float d1 = d * s, m1 = dmin * m;
            get_scale_min_k4(is + 1, sc, &s, &m);
            const float d2 = d * s, m2 = dmin * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

// ---- Q6_K ---------------------------------------------------------------------------------
// Symmetric scale search weighted by x^2 (ggml's make_qx_quants with rmse_type 1, no weights).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = std::max(-nmax, std::min(nmax - 1, l));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void quantize_q6_k(const float* x, std::byte* yb, int64_t nb) {
    int8_t L[kQKK];
    float scales[kQKK / 16];
    for (int64_t i = 0; i < nb; ++i, x += kQKK, yb += 210) {
        auto* ql = reinterpret_cast<uint8_t*>(yb);
        auto* qh = reinterpret_cast<uint8_t*>(yb + 128);
        auto* sc = reinterpret_cast<int8_t*>(yb + 192);
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < kQKK / 16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = std::fabs(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < kGroupMaxEps) {
            std::memset(yb, 0, 210);
            put_f16(yb + 208, 0.f);
            continue;
        }
        const float iscale = -128.f / max_scale;
        put_f16(yb + 208, 1 / iscale);
        for (int ib = 0; ib < kQKK / 16; ++ib)
            sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
        const float d_all = get_f16(yb + 208);
        for (int j = 0; j < kQKK / 16; ++j) {
            const float d = d_all * sc[j];
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = std::max(-32, std::min(31, l));
                L[16 * j + ii] = static_cast<int8_t>(l + 32);
            }
        }
        for (int j = 0; j < kQKK; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l + 0] & 0xF;
                const uint8_t q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF;
                const uint8_t q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
                ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
                qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                             ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}
void dequantize_q6_k(const std::byte* src, float* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, src += 210) {
        const float d = get_f16(src + 208);
        const auto* ql = reinterpret_cast<const uint8_t*>(src);
        const auto* qh = reinterpret_cast<const uint8_t*>(src + 128);
        const auto* sc = reinterpret_cast<const int8_t*>(src + 192);
        for (int n = 0; n < kQKK; n += 128) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int8_t q1 = static_cast<int8_t>(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                const int8_t q2 = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                const int8_t q3 = static_cast<int8_t>(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                const int8_t q4 = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

}  // namespace

std::string_view ggml_type_name(GgmlType type) {
    switch (type) {
        case GgmlType::F32: return "f32";
        case GgmlType::F16: return "f16";
        case GgmlType::BF16: return "bf16";
        case GgmlType::Q4_0: return "q4_0";
        case GgmlType::Q5_0: return "q5_0";
        case GgmlType::Q8_0: return "q8_0";
        case GgmlType::Q4_K: return "q4_K";
        case GgmlType::Q6_K: return "q6_K";
    }
    return "?";
}

std::optional<GgmlType> parse_ggml_type(std::string_view name) {
    std::string lower(name);
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0,
                       GgmlType::Q4_K, GgmlType::Q6_K}) {
        std::string n(ggml_type_name(t));
        for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (n == lower) return t;
    }
    return std::nullopt;
}

int64_t ggml_block_size(GgmlType type) {
    switch (type) {
        case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: return kQK;
        case GgmlType::Q4_K: case GgmlType::Q6_K: return kQKK;
        default: return 1;
    }
}

int64_t ggml_type_size(GgmlType type) {
    switch (type) {
        case GgmlType::F32: return 4;
        case GgmlType::F16: case GgmlType::BF16: return 2;
        case GgmlType::Q4_0: return 18;
        case GgmlType::Q5_0: return 22;
        case GgmlType::Q8_0: return 34;
        case GgmlType::Q4_K: return 144;
        case GgmlType::Q6_K: return 210;
    }
    return 0;
}

bool ggml_is_quantized(GgmlType type) { return ggml_block_size(type) > 1; }

uint64_t ggml_row_bytes(GgmlType type, int64_t n) {
    const int64_t bs = ggml_block_size(type);
    if (n % bs != 0)
        throw InternalError("quantize", "row of " + std::to_string(n) + " values is not a multiple of the " +
                                            std::string(ggml_type_name(type)) + " block");
    return static_cast<uint64_t>(n / bs) * static_cast<uint64_t>(ggml_type_size(type));
}

double ggml_bits_per_weight(GgmlType type) {
    return 8.0 * static_cast<double>(ggml_type_size(type)) / static_cast<double>(ggml_block_size(type));
}

GgmlType ggml_fallback_type(GgmlType type, int64_t row_length) {
    if (row_length % ggml_block_size(type) == 0) return type;
    GgmlType fallback = type;
    if (type == GgmlType::Q4_K) fallback = GgmlType::Q5_0;
    if (type == GgmlType::Q6_K) fallback = GgmlType::Q8_0;
    if (row_length % ggml_block_size(fallback) != 0) fallback = GgmlType::F16;
    return fallback;
}

void quantize_row(GgmlType type, const float* x, std::byte* dst, int64_t n) {
    const int64_t nb = n / ggml_block_size(type);
    (void)ggml_row_bytes(type, n);  // checks the block multiple
    switch (type) {
        case GgmlType::F32: core::convert_from_f32(core::DType::F32, x, static_cast<std::size_t>(n), dst); return;
        case GgmlType::F16: core::convert_from_f32(core::DType::F16, x, static_cast<std::size_t>(n), dst); return;
        case GgmlType::BF16: core::convert_from_f32(core::DType::BF16, x, static_cast<std::size_t>(n), dst); return;
        case GgmlType::Q4_0: quantize_q4_0(x, dst, nb); return;
        case GgmlType::Q5_0: quantize_q5_0(x, dst, nb); return;
        case GgmlType::Q8_0: quantize_q8_0(x, dst, nb); return;
        case GgmlType::Q4_K: quantize_q4_k(x, dst, nb); return;
        case GgmlType::Q6_K: quantize_q6_k(x, dst, nb); return;
    }
}

void dequantize_row(GgmlType type, const std::byte* src, float* y, int64_t n) {
    const int64_t nb = n / ggml_block_size(type);
    switch (type) {
        case GgmlType::F32: std::memcpy(y, src, static_cast<std::size_t>(n) * 4); return;
        case GgmlType::F16:
            for (int64_t i = 0; i < n; ++i) y[i] = get_f16(src + 2 * i);
            return;
        case GgmlType::BF16:
            for (int64_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, src + 2 * i, 2);
                y[i] = core::bf16_to_f32(h);
            }
            return;
        case GgmlType::Q4_0: dequantize_q4_0(src, y, nb); return;
        case GgmlType::Q5_0: dequantize_q5_0(src, y, nb); return;
        case GgmlType::Q8_0: dequantize_q8_0(src, y, nb); return;
        case GgmlType::Q4_K: dequantize_q4_k(src, y, nb); return;
        case GgmlType::Q6_K: dequantize_q6_k(src, y, nb); return;
    }
}

std::vector<float> fake_quantize_row(GgmlType type, const float* x, int64_t n) {
    std::vector<std::byte> buf(ggml_row_bytes(type, n));
    quantize_row(type, x, buf.data(), n);
    std::vector<float> y(static_cast<std::size_t>(n));
    dequantize_row(type, buf.data(), y.data(), n);
    return y;
}

}  // namespace moekit::quantize
