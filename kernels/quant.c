/* quant.c: row conversion, the reference dot products, and the matrix
 * products of kernels/quant.h.
 *
 * Floating point here must be evaluated as written: ggml-base is built
 * for plain x86-64 (no FMA) and the SIMD paths multiply and add
 * separately, so contracting a*b+c into a fused multiply-add (GCC's
 * default with -march=native) would change bits. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "quant.h"

#include <math.h>
#include "lc_omp.h"
#include <stdlib.h>
#include <string.h>

#include "quant_kernels.h"

/* ---- scalars ---------------------------------------------------------------- */

static inline float f32_from_bits(uint32_t w) {
    float f;
    memcpy(&f, &w, 4);
    return f;
}

static inline uint32_t f32_bits(float f) {
    uint32_t w;
    memcpy(&w, &f, 4);
    return w;
}

/* Maratyszcza's FP16 conversions, which ggml uses (exact, round to nearest
 * even; NaN becomes 0x7E00 with the sign). */
float quant_f16_to_f32(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normalized = f32_from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = f32_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
    const uint32_t r = sign | (two_w < (1u << 27) ? f32_bits(denormalized) : f32_bits(normalized));
    return f32_from_bits(r);
}

uint16_t quant_f32_to_f16(float f) {
    float base = (fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = f32_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = f32_from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f32_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

float quant_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

/* Round to nearest even; NaN stays NaN with the quiet bit set. */
uint16_t quant_f32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

static inline void wr16(void *p, uint16_t v) { memcpy(p, &v, 2); }

/* x86's cvttss2si: truncation, and INT32_MIN for NaN and out-of-range
 * values (where C leaves the conversion undefined and ggml's C relies on
 * what x86 does). */
static inline int32_t cvtt_x86(float f) {
    if (!(f >= -2147483648.0f && f < 2147483648.0f)) return INT32_MIN;
    return (int32_t)f;
}

/* ggml's nearest_int: round to nearest even by the 1.5 * 2^23 trick
 * (exact for |f| <= 2^22; the same bits as ggml beyond). */
static inline int nearest_int(float f) {
    const float v = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

#define QMIN(a, b) ((a) < (b) ? (a) : (b))
#define QMAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- dequantization ----------------------------------------------------------- */

static void deq_q8_0(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, p += 34, y += 32) {
        const float d = quant_f16_to_f32(qrd16(p));
        const int8_t *q = (const int8_t *)(p + 2);
        for (int j = 0; j < 32; j++) y[j] = q[j] * d;
    }
}

static void deq_q4_0(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, p += 18, y += 32) {
        const float d = quant_f16_to_f32(qrd16(p));
        const uint8_t *q = p + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = ((q[j] & 0x0F) - 8) * d;
            y[j + 16] = ((q[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_k(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, p += 144) {
        const float d = quant_f16_to_f32(qrd16(p)), dmin = quant_f16_to_f32(qrd16(p + 2));
        const uint8_t *sc = p + 4, *q = p + 16;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t s, m;
            q4k_scale_min(j, sc, &s, &m);
            const float d1 = d * s, m1 = dmin * m;
            q4k_scale_min(j + 1, sc, &s, &m);
            const float d2 = d * s, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void deq_q6_k(const uint8_t *p, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, p += 210) {
        const float d = quant_f16_to_f32(qrd16(p + 208));
        const uint8_t *ql = p, *qh = p + 128;
        const int8_t *sc = (const int8_t *)(p + 192);
        for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

/* ---- quantization (ggml's reference quantizers) ----------------------------------- */

static void quant_q8_0(const float *x, uint8_t *p, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, p += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = QMAX(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        wr16(p, quant_f32_to_f16(d));
        for (int j = 0; j < 32; j++) p[2 + j] = (uint8_t)cvtt_x86(roundf(x[j] * id));
    }
}

static void quant_q4_0(const float *x, uint8_t *p, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, p += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        wr16(p, quant_f32_to_f16(d));
        for (int j = 0; j < 16; j++) {
            /* (int8_t)(x * id + 8.5f), then at most 15 */
            const int a = (int8_t)(uint8_t)cvtt_x86(x[j] * id + 8.5f);
            const int b = (int8_t)(uint8_t)cvtt_x86(x[j + 16] * id + 8.5f);
            const uint8_t xa = (uint8_t)QMIN(15, a), xb = (uint8_t)QMIN(15, b);
            p[2 + j] = (uint8_t)(xa | (uint8_t)(xb << 4));
        }
    }
}

/* ggml's make_qkx2_quants: scale and min of one sub-block (weighted
 * least squares over a sweep of candidate scales). */
static float qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                         float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep) {
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
        L[i] = (uint8_t)QMAX(0, QMIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = QMAX(0, QMIN(nmax, l));
            Laux[i] = (uint8_t)l;
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

static void quant_q4_k(const float *x, uint8_t *p, int64_t nb) {
    uint8_t L[256], Laux[32];
    float weights[32], mins[8], scales[8];
    for (int64_t i = 0; i < nb; i++, x += 256, p += 144) {
        uint8_t *ys = p + 4;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; ++j) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
            const float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f,
                                    0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < 8; ++j) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
            ls = QMIN(63, ls);
            lm = QMIN(63, lm);
            if (j < 4) {
                ys[j] = ls;
                ys[j + 4] = lm;
            } else {
                ys[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                ys[j - 4] |= (uint8_t)((ls >> 4) << 6);
                ys[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        wr16(p, quant_f32_to_f16(max_scale / 63.f));
        wr16(p + 2, quant_f32_to_f16(max_min / 63.f));
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, m;
            q4k_scale_min(j, ys, &sc, &m);
            const float d = quant_f16_to_f32(qrd16(p)) * sc;
            if (!d) continue;
            const float dm = quant_f16_to_f32(qrd16(p + 2)) * m;
            for (int ii = 0; ii < 32; ++ii) {
                const int l = nearest_int((x[32 * j + ii] + dm) / d);
                L[32 * j + ii] = (uint8_t)QMAX(0, QMIN(15, l));
            }
        }
        uint8_t *q = p + 16;
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

/* ggml's make_qx_quants with rmse_type 1 and no importance weights. */
static float qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < 1e-15f) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = QMAX(-nmax, QMIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = QMAX(-nmax, QMIN(nmax - 1, l));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + QMAX(-nmax, QMIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void quant_q6_k(const float *x, uint8_t *p, int64_t nb) {
    int8_t L[256];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += 256, p += 210) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ++ib) {
            const float scale = qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < 1e-15f) {
            memset(p, 0, 210);
            wr16(p + 208, quant_f32_to_f16(0.f));
            continue;
        }
        int8_t *ysc = (int8_t *)(p + 192);
        const float iscale = -128.f / max_scale;
        wr16(p + 208, quant_f32_to_f16(1 / iscale));
        for (int ib = 0; ib < 16; ++ib) ysc[ib] = (int8_t)QMIN(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < 16; ++j) {
            const float d = quant_f16_to_f32(qrd16(p + 208)) * ysc[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = QMAX(-32, QMIN(31, l));
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = p, *qh = p + 128;
        for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
    }
}

/* ---- rows ------------------------------------------------------------------------- */

int qrow_check(int type, int64_t n, lc_err *err) {
    const int b = qtype_block(type);
    if (b == 0) return lc_errf(err, "unknown weight type id %d", type);
    if (n <= 0 || n % b)
        return lc_errf(err, "a %s row must be a positive multiple of %d elements, found %lld",
                       qtype_name(type), b, (long long)n);
    return LC_OK;
}

int qrow_to_f32(int type, const void *src, float *dst, int64_t n, lc_err *err) {
    if (qrow_check(type, n, err)) return LC_FAIL;
    const uint8_t *p = src;
    const int64_t nb = n / qtype_block(type);
    switch (type) {
    case QT_F32: memcpy(dst, src, sizeof(float) * (size_t)n); break;
    case QT_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = quant_f16_to_f32(qrd16(p + 2 * i));
        break;
    case QT_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = quant_bf16_to_f32(qrd16(p + 2 * i));
        break;
    case QT_Q8_0: deq_q8_0(p, dst, nb); break;
    case QT_Q4_0: deq_q4_0(p, dst, nb); break;
    case QT_Q4_K: deq_q4_k(p, dst, nb); break;
    case QT_Q6_K: deq_q6_k(p, dst, nb); break;
    }
    return LC_OK;
}

int qrow_from_f32(int type, const float *src, void *dst, int64_t n, lc_err *err) {
    if (qrow_check(type, n, err)) return LC_FAIL;
    uint8_t *p = dst;
    const int64_t nb = n / qtype_block(type);
    switch (type) {
    case QT_F32: memcpy(dst, src, sizeof(float) * (size_t)n); break;
    case QT_F16:
        for (int64_t i = 0; i < n; i++) wr16(p + 2 * i, quant_f32_to_f16(src[i]));
        break;
    case QT_BF16:
        for (int64_t i = 0; i < n; i++) wr16(p + 2 * i, quant_f32_to_bf16(src[i]));
        break;
    case QT_Q8_0: quant_q8_0(src, p, nb); break;
    case QT_Q4_0: quant_q4_0(src, p, nb); break;
    case QT_Q4_K: quant_q4_k(src, p, nb); break;
    case QT_Q6_K: quant_q6_k(src, p, nb); break;
    }
    return LC_OK;
}

/* ---- reference dot products ---------------------------------------------------------- */

/* F32/F16/BF16: 32 lanes, element i into lane i % 32 (qsum32). */
#define DOT_FLOAT_REF(name, load)                                        \
    static float name(const void *row, const qx_t *x, int64_t cols) {    \
        const uint8_t *p = row;                                          \
        float a[32] = {0};                                               \
        for (int64_t i = 0; i < cols; i++) {                             \
            const float w = load;                                        \
            a[i & 31] = a[i & 31] + w * x->x[i];                         \
        }                                                                \
        return qsum32(a);                                                \
    }
static inline float rdf32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}
DOT_FLOAT_REF(dot_f32_ref, rdf32(p + 4 * i))
DOT_FLOAT_REF(dot_f16_ref, quant_f16_to_f32(qrd16(p + 2 * i)))
DOT_FLOAT_REF(dot_bf16_ref, quant_bf16_to_f32(qrd16(p + 2 * i)))

/* Q8_0/Q4_0: per block b, the exact integer dot product S_b of the block's
 * 32 weights and x's 32 quantized values, then, blocks in order,
 *   acc = acc + (d_w d_x) * (float)S_b
 * (as the K-quants). Every path computes the same integers and this one
 * chain per row, so rows can be computed in parallel lanes (quant_avx2.c
 * takes 8 rows at a time) with the bits of this loop. */
static float dot_q8_0_ref(const void *row, const qx_t *x, int64_t cols) {
    const uint8_t *p = row;
    float acc = 0.0f;
    for (int64_t b = 0; b < cols / 32; b++, p += 34) {
        const float dd = quant_f16_to_f32(qrd16(p)) * x->d[b];
        const int8_t *w = (const int8_t *)(p + 2), *q = x->q + 32 * b;
        int32_t s = 0;
        for (int t = 0; t < 32; t++) s += w[t] * q[t];
        acc = acc + dd * (float)s;
    }
    return acc;
}

static float dot_q4_0_ref(const void *row, const qx_t *x, int64_t cols) {
    const uint8_t *p = row;
    float acc = 0.0f;
    for (int64_t b = 0; b < cols / 32; b++, p += 18) {
        const float dd = quant_f16_to_f32(qrd16(p)) * x->d[b];
        const int8_t *q = x->q + 32 * b;
        int32_t s = 0;
        for (int j = 0; j < 16; j++) /* element j: low nibble of byte j; element j + 16: high nibble */
            s += ((p[2 + j] & 0xF) - 8) * q[j] + ((p[2 + j] >> 4) - 8) * q[j + 16];
        acc = acc + dd * (float)s;
    }
    return acc;
}

/* Q4_K: per super-block the exact integers
 *   isum = sum_s sc_s * (q4 . y)_s,  msum = sum_s m_s * (sum of y)_s
 * then acc += (d dx) isum - (dmin dx) msum, super-blocks in order. */
static float dot_q4_k_ref(const void *row, const qx_t *x, int64_t cols) {
    const uint8_t *p = row;
    float acc = 0.0f;
    for (int64_t b = 0; b < cols / 256; b++, p += 144) {
        const int8_t *y = x->q + 256 * b;
        const int32_t *bs = x->bsum + 16 * b;
        const uint8_t *qs = p + 16;
        int32_t isum = 0, msum = 0;
        for (int s = 0; s < 8; s++) {
            uint8_t sc, m;
            q4k_scale_min(s, p + 4, &sc, &m);
            const uint8_t *q = qs + 32 * (s / 2);
            const int shift = (s & 1) * 4;
            int32_t dot = 0;
            for (int l = 0; l < 32; l++) dot += ((q[l] >> shift) & 0xF) * y[32 * s + l];
            isum += sc * dot;
            msum += m * (bs[2 * s] + bs[2 * s + 1]);
        }
        const float dd = quant_f16_to_f32(qrd16(p)) * x->d[b];
        const float dm = quant_f16_to_f32(qrd16(p + 2)) * x->d[b];
        acc = acc + (dd * (float)isum - dm * (float)msum);
    }
    return acc;
}

/* Q6_K: isum = sum_s sc_s * ((q6 . y)_s - 32 (sum of y)_s), exact; then
 * acc += (d dx) isum. */
static float dot_q6_k_ref(const void *row, const qx_t *x, int64_t cols) {
    const uint8_t *p = row;
    float acc = 0.0f;
    for (int64_t b = 0; b < cols / 256; b++, p += 210) {
        const int8_t *y = x->q + 256 * b;
        const int32_t *bs = x->bsum + 16 * b;
        const int8_t *sc = (const int8_t *)(p + 192);
        int32_t dot[16] = {0};
        for (int n = 0; n < 2; n++) {
            const uint8_t *ql = p + 64 * n, *qh = p + 128 + 32 * n;
            const int8_t *yy = y + 128 * n;
            for (int l = 0; l < 32; l++) {
                const int q1 = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
                const int q2 = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                const int q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                const int q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                dot[8 * n + l / 16] += q1 * yy[l];
                dot[8 * n + 2 + l / 16] += q2 * yy[l + 32];
                dot[8 * n + 4 + l / 16] += q3 * yy[l + 64];
                dot[8 * n + 6 + l / 16] += q4 * yy[l + 96];
            }
        }
        int32_t isum = 0;
        for (int s = 0; s < 16; s++) isum += sc[s] * (dot[s] - 32 * bs[s]);
        const float dd = quant_f16_to_f32(qrd16(p + 208)) * x->d[b];
        acc = acc + dd * (float)isum;
    }
    return acc;
}

qdot_fn quant_ref_dot(int type) {
    switch (type) {
    case QT_F32: return dot_f32_ref;
    case QT_F16: return dot_f16_ref;
    case QT_BF16: return dot_bf16_ref;
    case QT_Q8_0: return dot_q8_0_ref;
    case QT_Q4_0: return dot_q4_0_ref;
    case QT_Q4_K: return dot_q4_k_ref;
    case QT_Q6_K: return dot_q6_k_ref;
    default: return NULL;
    }
}

/* ---- path selection ----------------------------------------------------------------- */

static int g_force_ref = -1; /* -1: not read from the environment yet */

static int force_ref(void) {
    if (g_force_ref < 0) {
        const char *e = getenv("LC_QUANT_REF");
        g_force_ref = e && *e && strcmp(e, "0") != 0;
    }
    return g_force_ref;
}

void quant_force_ref(int on) { g_force_ref = on != 0; }

#if defined(__x86_64__)
#include <cpuid.h>
static int cpu_avx2(void) {
    static int have = -1;
    if (have < 0) {
        /* F16C from CPUID (leaf 1, ECX bit 29): clang's __builtin_cpu_supports
         * does not know "f16c" */
        unsigned a, b, c = 0, d;
        const int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    }
    return have;
}
#endif

const char *quant_path(void) {
    if (force_ref()) return "ref";
#if defined(__x86_64__)
    if (cpu_avx2()) return "avx2";
#elif defined(__aarch64__)
    return "neon";
#endif
    return "ref";
}

static qdot_fn dot_for(int type) {
    if (!force_ref()) {
#if defined(__x86_64__)
        if (cpu_avx2()) return quant_avx2_dot(type);
#elif defined(__aarch64__)
        return quant_neon_dot(type);
#endif
    }
    return quant_ref_dot(type);
}

/* The paths' 8-row product for a type, NULL when rows go one at a time. */
static qdot8_fn dot8_for(int type) {
    if (!force_ref()) {
#if defined(__x86_64__)
        if (cpu_avx2()) return quant_avx2_dot8(type);
#elif defined(__aarch64__)
        return quant_neon_dot8(type);
#endif
    }
    (void)type;
    return NULL;
}

/* The paths' 8-row, 4-activation product for a type, NULL when none. */
static qdot8x4_fn dot8x4_for(int type) {
    if (!force_ref()) {
#if defined(__x86_64__)
        if (cpu_avx2()) return quant_avx2_dot8x4(type);
#endif
    }
    (void)type;
    return NULL;
}

/* ---- activation ------------------------------------------------------------------------ */

/* q (bs ints) and d of one block: d = amax / 127, q = round-to-even of
 * x * 127 / amax. amax is the largest |x| found as an integer maximum of
 * the bits, so any NaN or infinity is seen wherever it is (d = NaN). */
static void quantize_block(const float *x, int bs, int8_t *q, float *d) {
    uint32_t mb = 0;
    for (int i = 0; i < bs; i++) {
        const uint32_t b = f32_bits(x[i]) & 0x7fffffffu;
        mb = b > mb ? b : mb;
    }
    if (mb >= 0x7f800000u || mb == 0) {
        memset(q, 0, (size_t)bs);
        *d = mb ? NAN : 0.0f;
        return;
    }
    const float amax = f32_from_bits(mb);
    const float id = 127.0f / amax;
    if (!(id <= 3.0e38f)) { /* amax below ~4e-37: the block counts as zero */
        memset(q, 0, (size_t)bs);
        *d = 0.0f;
        return;
    }
    *d = amax / 127.0f;
    for (int i = 0; i < bs; i++) {
        int v = nearest_int(x[i] * id);
        q[i] = (int8_t)QMAX(-127, QMIN(127, v));
    }
}

/* Bytes of scratch quant_prepare_x needs for one x of a type. */
static size_t prep_bytes(int type, int64_t cols) {
    switch (type) {
    case QT_Q8_0: case QT_Q4_0:
        return (size_t)cols + (sizeof(float) + sizeof(int32_t)) * (size_t)(cols / 32) + 16;
    case QT_Q4_K: case QT_Q6_K:
        return (size_t)cols + sizeof(float) * (size_t)(cols / 256) +
               sizeof(int32_t) * (size_t)(cols / 16) + 16;
    default: return 0;
    }
}

static void prepare_x(qx_t *px, int type, const float *x, int64_t cols, uint8_t *buf) {
    px->x = x;
    px->q = NULL, px->d = NULL, px->bsum = NULL;
    const int bs = (type == QT_Q8_0 || type == QT_Q4_0) ? 32 : (type == QT_Q4_K || type == QT_Q6_K) ? 256 : 0;
    if (!bs) return;
    const int64_t nb = cols / bs;
    float *d = (float *)buf; /* buf is malloc'd: aligned for floats and ints */
    int32_t *bsum = (int32_t *)(d + nb);
    const int g = bs == 256 ? 16 : 32; /* the elements each bsum covers */
    int8_t *q = (int8_t *)(bsum + cols / g);
    for (int64_t b = 0; b < nb; b++) quantize_block(x + b * bs, bs, q + b * bs, d + b);
    for (int64_t k = 0; k < cols / g; k++) {
        int32_t s = 0;
        for (int i = 0; i < g; i++) s += q[g * k + i];
        bsum[k] = s;
    }
    px->q = q, px->d = d, px->bsum = bsum;
}

/* ---- matrices ----------------------------------------------------------------------------- */

int qmat_view(qmat *m, int type, int64_t rows, int64_t cols, const void *data, lc_err *err) {
    memset(m, 0, sizeof *m);
    if (rows <= 0) return lc_errf(err, "a matrix needs at least one row, found %lld", (long long)rows);
    if (qrow_check(type, cols, err)) return LC_FAIL;
    if (!data) return lc_errf(err, "no data for a %lld x %lld %s matrix", (long long)rows,
                              (long long)cols, qtype_name(type));
    m->type = type, m->rows = rows, m->cols = cols;
    m->row_bytes = qtype_row_bytes(type, cols);
    m->data = data;
    return LC_OK;
}

int qmat_from_f32(qmat *m, int type, const float *w, int64_t rows, int64_t cols, lc_err *err) {
    memset(m, 0, sizeof *m);
    if (rows <= 0) return lc_errf(err, "a matrix needs at least one row, found %lld", (long long)rows);
    if (qrow_check(type, cols, err)) return LC_FAIL;
    const size_t rb = qtype_row_bytes(type, cols);
    void *buf = lc_malloc(rb * (size_t)rows, err);
    if (!buf) return LC_FAIL;
    /* rows are independent: converting them in parallel gives the same bytes */
#pragma omp parallel for schedule(dynamic, 16) if (rows * cols >= (1 << 18))
    for (int64_t r = 0; r < rows; r++)
        qrow_from_f32(type, w + r * cols, (uint8_t *)buf + rb * (size_t)r, cols, NULL);
    m->type = type, m->rows = rows, m->cols = cols, m->row_bytes = rb;
    m->data = m->owned = buf;
    return LC_OK;
}

void qmat_free(qmat *m) {
    if (!m) return;
    free(m->owned);
    memset(m, 0, sizeof *m);
}

size_t qmat_bytes(const qmat *m) { return m->row_bytes * (size_t)m->rows; }

void qmat_rows_to_f32(const qmat *m, int64_t r0, int64_t n, float *out) {
    const uint8_t *base = (const uint8_t *)m->data + m->row_bytes * (size_t)r0;
#pragma omp parallel for schedule(static) if (n * m->cols >= (1 << 18) && !omp_in_parallel())
    for (int64_t r = 0; r < n; r++)
        qrow_to_f32(m->type, base + m->row_bytes * (size_t)r, out + r * m->cols, m->cols, NULL);
}

int qmat_check(const qmat *m, lc_err *err) {
    if (!m || !m->data || m->rows <= 0 || qrow_check(m->type, m->cols, err) ||
        m->row_bytes != qtype_row_bytes(m->type, m->cols))
        return err && err->msg[0] ? lc_err_prefix(err, "matrix: ")
                                  : lc_errf(err, "matrix: not a valid stored matrix");
    return LC_OK;
}

int qmat_to_f32(const qmat *m, float *out, lc_err *err) {
    if (err) err->msg[0] = 0;
    if (qmat_check(m, err)) return LC_FAIL;
    qmat_rows_to_f32(m, 0, m->rows, out);
    return LC_OK;
}

/* ---- matrix-vector ----------------------------------------------------------------------- */

/* Below this many multiply-adds the product runs on the calling thread. */
#define QMV_PARALLEL_MIN (1 << 16)

int qmat_matvec_batch(const qmat *W, const float *X, int nb, const float *bias, float *Y,
                      int accumulate, lc_err *err) {
    if (err) err->msg[0] = 0;
    if (qmat_check(W, err)) return LC_FAIL;
    if (nb <= 0) return nb == 0 ? LC_OK : lc_errf(err, "matvec: negative batch %d", nb);
    const qdot_fn dot = dot_for(W->type);
    const int64_t rows = W->rows, cols = W->cols;
    const size_t pb = (prep_bytes(W->type, cols) + 63) & ~(size_t)63;
    uint8_t *scratch = NULL;
    qx_t px1, *px = &px1;
    if (nb > 1 || pb) {
        scratch = lc_malloc(pb * (size_t)nb + sizeof(qx_t) * (size_t)nb + 64, err);
        if (!scratch) return LC_FAIL;
        px = (qx_t *)(scratch + pb * (size_t)nb);
    }
    for (int b = 0; b < nb; b++) prepare_x(&px[b], W->type, X + (size_t)b * cols, cols, scratch + pb * (size_t)b);
    const uint8_t *data = W->data;
    const qdot8_fn dot8 = dot8_for(W->type);
    const qdot8x4_fn dot8x4 = dot8 ? dot8x4_for(W->type) : NULL;
    const int64_t G = dot8 ? 8 : 1, ngroups = (rows + G - 1) / G;
    const int par = rows * cols * nb >= QMV_PARALLEL_MIN && omp_get_max_threads() > 1 && !omp_in_parallel();
    (void)par; /* unused without OpenMP */
    /* Rows in groups of G (8 when the path has an 8-row product; a row's
     * value does not depend on its group), every x for each group while its
     * rows are in cache. */
#pragma omp parallel for schedule(static) if (par)
    for (int64_t g = 0; g < ngroups; g++) {
        const int64_t r0 = g * G, n = rows - r0 < G ? rows - r0 : G;
        const uint8_t *row0 = data + W->row_bytes * (size_t)r0;
        for (int b = 0; b < nb;) {
            float v[32];
            int nx = 1;
            if (n == 8 && dot8x4 && nb - b >= 4) {
                dot8x4(row0, W->row_bytes, &px[b], cols, v);
                nx = 4;
            } else if (n == 8 && dot8) {
                dot8(row0, W->row_bytes, &px[b], cols, v);
            } else {
                for (int64_t i = 0; i < n; i++) v[i] = dot(row0 + W->row_bytes * (size_t)i, &px[b], cols);
            }
            for (int j = 0; j < nx; j++, b++)
                for (int64_t i = 0; i < n; i++) {
                    const int64_t r = r0 + i;
                    float vi = v[8 * j + i];
                    if (bias) vi = vi + bias[r];
                    float *y = &Y[(size_t)b * rows + r];
                    *y = accumulate ? *y + vi : vi;
                }
        }
    }
    free(scratch);
    return LC_OK;
}

int qmat_matvec(const qmat *W, const float *x, const float *bias, float *y, int accumulate,
                lc_err *err) {
    return qmat_matvec_batch(W, x, 1, bias, y, accumulate, err);
}
