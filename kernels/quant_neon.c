/* quant_neon.c: the NEON (aarch64) dot products of kernels/quant.h. Each
 * computes exactly what the reference in quant.c computes: the same
 * integer block sums, the same float lanes or chains, the same final tree;
 * no multiply and add are fused. Baseline ARMv8-A NEON (no dot-product
 * extension needed). */
#if defined(__aarch64__)

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <arm_neon.h>

#include "qtype.h"
#include "quant_kernels.h"

static inline float f16(const uint8_t *p) {
    const uint16_t h = qrd16(p);
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* ---- float rows: 32 lanes in eight registers ----------------------------- */

static inline float32x4_t ld4_f32(const uint8_t *p) { return vld1q_f32((const float *)p); }
static inline float32x4_t ld4_f16(const uint8_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)p)));
}
static inline float32x4_t ld4_bf16(const uint8_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)p), 16));
}
static inline float tail_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}
static inline float tail_bf16(const uint8_t *p) {
    const uint32_t w = (uint32_t)qrd16(p) << 16;
    float f;
    memcpy(&f, &w, 4);
    return f;
}

#define DOT_FLOAT_NEON(name, LOAD4, esize, tail_load)                                   \
    static float name(const void *row, const qx_t *x, int64_t cols) {                   \
        const uint8_t *p = row;                                                         \
        const float *xv = x->x;                                                         \
        float32x4_t a[8];                                                               \
        for (int k = 0; k < 8; k++) a[k] = vdupq_n_f32(0.0f);                           \
        int64_t i = 0;                                                                  \
        for (; i + 32 <= cols; i += 32)                                                 \
            for (int k = 0; k < 8; k++)                                                 \
                a[k] = vaddq_f32(a[k], vmulq_f32(LOAD4(p + esize * (i + 4 * k)),        \
                                                 vld1q_f32(xv + i + 4 * k)));           \
        float s[32];                                                                    \
        for (int k = 0; k < 8; k++) vst1q_f32(s + 4 * k, a[k]);                         \
        for (; i < cols; i++) {                                                         \
            const float w = tail_load;                                                  \
            s[i & 31] = s[i & 31] + w * xv[i];                                          \
        }                                                                               \
        return qsum32(s);                                                               \
    }

DOT_FLOAT_NEON(dot_f32, ld4_f32, 4, tail_f32(p + 4 * i))
DOT_FLOAT_NEON(dot_f16, ld4_f16, 2, f16(p + 2 * i))
DOT_FLOAT_NEON(dot_bf16, ld4_bf16, 2, tail_bf16(p + 2 * i))

/* ---- Q8_0, Q4_0 -------------------------------------------------------------------- */

/* lanes 0..3 and 4..7 of the block's integer sums */
static inline void dot_i8_lanes(const int8_t *w, const int8_t *q, int32x4_t *lo, int32x4_t *hi) {
    const int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16);
    const int8x16_t q0 = vld1q_s8(q), q1 = vld1q_s8(q + 16);
    const int32x4_t p0 = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(q0)));
    const int32x4_t p1 = vpaddlq_s16(vmull_high_s8(w0, q0));
    const int32x4_t p2 = vpaddlq_s16(vmull_s8(vget_low_s8(w1), vget_low_s8(q1)));
    const int32x4_t p3 = vpaddlq_s16(vmull_high_s8(w1, q1));
    *lo = vpaddq_s32(p0, p1);
    *hi = vpaddq_s32(p2, p3);
}

static inline void q8_0_w(const uint8_t *p, int8_t *w) { memcpy(w, p + 2, 32); }

static inline void q4_0_w(const uint8_t *p, int8_t *w) {
    const uint8x16_t qs = vld1q_u8(p + 2), m4 = vdupq_n_u8(0x0F);
    const int8x16_t eight = vdupq_n_s8(8);
    vst1q_s8(w, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(qs, m4)), eight));
    vst1q_s8(w + 16, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(qs, 4)), eight));
}

/* the exact block sums, one float chain per row (as the reference) */
#define DOT_Q32_NEON(name, WLOAD, bsz)                                                    \
    static float name(const void *row, const qx_t *x, int64_t cols) {                     \
        const uint8_t *p = row;                                                           \
        float acc = 0.0f;                                                                 \
        for (int64_t b = 0; b < cols / 32; b++, p += bsz) {                               \
            int8_t w[32];                                                                 \
            WLOAD(p, w);                                                                  \
            int32x4_t lo, hi;                                                             \
            dot_i8_lanes(w, x->q + 32 * b, &lo, &hi);                                     \
            const int32_t s = vaddvq_s32(vaddq_s32(lo, hi));                              \
            acc = acc + (f16(p) * x->d[b]) * (float)s;                                    \
        }                                                                                 \
        return acc;                                                                       \
    }

DOT_Q32_NEON(dot_q8_0, q8_0_w, 34)
DOT_Q32_NEON(dot_q4_0, q4_0_w, 18)

/* Eight rows at once: lane r of a0 (rows 0..3) and a1 (rows 4..7) is row
 * r's chain, so each lane computes what the one-row function computes (the
 * same integers, the same float multiply and add, blocks in order); the
 * block sums of four rows are reduced in one pairwise tree, and the next
 * group's bytes are prefetched in order (as quant_avx2.c). */
static inline int32x4_t hsum4_i32(const int32x4_t *v) {
    return vpaddq_s32(vpaddq_s32(v[0], v[1]), vpaddq_s32(v[2], v[3]));
}
static inline float32x4_t f16x4(const uint8_t *p, size_t rb) {
    uint16_t h[4];
    for (int r = 0; r < 4; r++) h[r] = qrd16(p + rb * (size_t)r);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}
#define DOT8_Q32_NEON(name, WLOAD, bsz)                                                           \
    static void name(const uint8_t *row0, size_t rb, const qx_t *x, int64_t cols, float *out) {   \
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;                                              \
        const uint8_t *p = row0, *pf = row0 + 8 * rb;                                             \
        for (int64_t b = 0; b < cols / 32; b++, p += bsz, pf += 8 * bsz) {                        \
            for (int k = 0; k < 8 * bsz; k += 64) __builtin_prefetch(pf + k);                     \
            int32x4_t s[8];                                                                       \
            for (int r = 0; r < 8; r++) {                                                         \
                int8_t w[32];                                                                     \
                WLOAD(p + rb * (size_t)r, w);                                                     \
                int32x4_t lo, hi;                                                                 \
                dot_i8_lanes(w, x->q + 32 * b, &lo, &hi);                                         \
                s[r] = vaddq_s32(lo, hi);                                                         \
            }                                                                                     \
            const float32x4_t dx = vdupq_n_f32(x->d[b]);                                          \
            const float32x4_t d0 = vmulq_f32(f16x4(p, rb), dx);                                   \
            const float32x4_t d1 = vmulq_f32(f16x4(p + 4 * rb, rb), dx);                          \
            a0 = vaddq_f32(a0, vmulq_f32(d0, vcvtq_f32_s32(hsum4_i32(s))));                       \
            a1 = vaddq_f32(a1, vmulq_f32(d1, vcvtq_f32_s32(hsum4_i32(s + 4))));                   \
        }                                                                                         \
        vst1q_f32(out, a0);                                                                       \
        vst1q_f32(out + 4, a1);                                                                   \
    }

DOT8_Q32_NEON(dot8_q8_0, q8_0_w, 34)
DOT8_Q32_NEON(dot8_q4_0, q4_0_w, 18)

qdot8_fn quant_neon_dot8(int type) {
    return type == QT_Q8_0 ? dot8_q8_0 : type == QT_Q4_0 ? dot8_q4_0 : NULL;
}

/* ---- K-quants: exact integer sums per super-block -------------------------------- */

/* sum over 16 elements of u (0..63, as int8) times y */
static inline int32x4_t dot16(int8x16_t u, int8x16_t y) {
    return vpadalq_s16(vpaddlq_s16(vmull_s8(vget_low_s8(u), vget_low_s8(y))), vmull_high_s8(u, y));
}

static float dot_q4_k(const void *row, const qx_t *x, int64_t cols) {
    const uint8_t *p = row;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    float acc = 0.0f;
    for (int64_t b = 0; b < cols / 256; b++, p += 144) {
        const int8_t *y = x->q + 256 * b;
        const int32_t *bs = x->bsum + 16 * b;
        int32_t isum = 0, msum = 0;
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = p + 16 + 32 * c;
            const uint8x16_t qa = vld1q_u8(q), qb = vld1q_u8(q + 16);
            const int8_t *y0 = y + 64 * c, *y1 = y0 + 32;
            const int32x4_t lo = vaddq_s32(dot16(vreinterpretq_s8_u8(vandq_u8(qa, m4)), vld1q_s8(y0)),
                                           dot16(vreinterpretq_s8_u8(vandq_u8(qb, m4)), vld1q_s8(y0 + 16)));
            const int32x4_t hi = vaddq_s32(dot16(vreinterpretq_s8_u8(vshrq_n_u8(qa, 4)), vld1q_s8(y1)),
                                           dot16(vreinterpretq_s8_u8(vshrq_n_u8(qb, 4)), vld1q_s8(y1 + 16)));
            uint8_t sc, m;
            q4k_scale_min(2 * c, p + 4, &sc, &m);
            isum += sc * vaddvq_s32(lo);
            msum += m * (bs[4 * c] + bs[4 * c + 1]);
            q4k_scale_min(2 * c + 1, p + 4, &sc, &m);
            isum += sc * vaddvq_s32(hi);
            msum += m * (bs[4 * c + 2] + bs[4 * c + 3]);
        }
        const float dd = f16(p) * x->d[b], dm = f16(p + 2) * x->d[b];
        acc = acc + (dd * (float)isum - dm * (float)msum);
    }
    return acc;
}

static float dot_q6_k(const void *row, const qx_t *x, int64_t cols) {
    const uint8_t *p = row;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3);
    float acc = 0.0f;
    for (int64_t b = 0; b < cols / 256; b++, p += 210) {
        const int8_t *sc = (const int8_t *)(p + 192);
        const int32_t *bs = x->bsum + 16 * b;
        int32_t isum = 0;
        for (int n = 0; n < 2; n++) {
            const uint8_t *ql = p + 64 * n, *qh = p + 128 + 32 * n;
            const int8_t *y = x->q + 256 * b + 128 * n;
            for (int half = 0; half < 2; half++) { /* l in [16 half, 16 half + 16) */
                const uint8x16_t l0 = vld1q_u8(ql + 16 * half), l1 = vld1q_u8(ql + 32 + 16 * half);
                const uint8x16_t h = vld1q_u8(qh + 16 * half);
                uint8x16_t q[4];
                q[0] = vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(h, m3), 4));
                q[1] = vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 2), m3), 4));
                q[2] = vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 4), m3), 4));
                q[3] = vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(h, 6), 4));
                for (int k = 0; k < 4; k++) {
                    const int s = 8 * n + 2 * k + half;
                    const int32_t d = vaddvq_s32(dot16(vreinterpretq_s8_u8(q[k]), vld1q_s8(y + 32 * k + 16 * half)));
                    isum += sc[s] * (d - 32 * bs[s]);
                }
            }
        }
        const float dd = f16(p + 208) * x->d[b];
        acc = acc + dd * (float)isum;
    }
    return acc;
}

qdot_fn quant_neon_dot(int type) {
    switch (type) {
    case QT_F32: return dot_f32;
    case QT_F16: return dot_f16;
    case QT_BF16: return dot_bf16;
    case QT_Q8_0: return dot_q8_0;
    case QT_Q4_0: return dot_q4_0;
    case QT_Q4_K: return dot_q4_k;
    case QT_Q6_K: return dot_q6_k;
    default: return NULL;
    }
}

#else
typedef int quant_neon_unused; /* ISO C: no empty translation unit */
#endif
