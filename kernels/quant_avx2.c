/* quant_avx2.c: the AVX2 dot products of kernels/quant.h, compiled for
 * x86-64 + AVX2 + FMA + F16C and nothing more, whatever the build's -march
 * ("arch=x86-64" resets what -march=native added: on an AVX-512 machine
 * GCC would otherwise use EVEX instructions here), and called only after
 * quant.c has checked the CPU (cpuid). Each computes exactly what the
 * reference in quant.c computes: the same integer block sums, the same
 * float lanes or chains, the same final tree; no multiply and add are
 * fused. Q8_0 and Q4_0 also take 8 rows at a time. */
#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("arch=x86-64,avx2,fma,f16c")
#pragma GCC optimize("fp-contract=off")
#endif

#include <immintrin.h>

#include "qtype.h"
#include "quant_kernels.h"

static inline float f16(const uint8_t *p) { return _cvtsh_ss(qrd16(p)); }

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* int32 lane j = sum of w[t] q[t] for t in 4j..4j+3 (w, q int8, q != -128) */
static inline __m256i dot_i8_lanes(__m256i w, __m256i q) {
    const __m256i aw = _mm256_sign_epi8(w, w);
    const __m256i sq = _mm256_sign_epi8(q, w);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sq), _mm256_set1_epi16(1));
}

/* ---- float rows: 32 lanes in four registers --------------------------------- */

#define DOT_FLOAT_AVX2(name, LOAD8, esize, tail_load)                                    \
    static float name(const void *row, const qx_t *x, int64_t cols) {                    \
        const uint8_t *p = row;                                                          \
        const float *xv = x->x;                                                          \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                      \
        int64_t i = 0;                                                                   \
        for (; i + 32 <= cols; i += 32) {                                                \
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(LOAD8(p + esize * i), _mm256_loadu_ps(xv + i)));           \
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(LOAD8(p + esize * (i + 8)), _mm256_loadu_ps(xv + i + 8)));  \
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(LOAD8(p + esize * (i + 16)), _mm256_loadu_ps(xv + i + 16))); \
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(LOAD8(p + esize * (i + 24)), _mm256_loadu_ps(xv + i + 24))); \
        }                                                                                \
        float a[32];                                                                     \
        _mm256_storeu_ps(a, a0);                                                         \
        _mm256_storeu_ps(a + 8, a1);                                                     \
        _mm256_storeu_ps(a + 16, a2);                                                    \
        _mm256_storeu_ps(a + 24, a3);                                                    \
        for (; i < cols; i++) {                                                          \
            const float w = tail_load;                                                   \
            a[i & 31] = a[i & 31] + w * xv[i];                                           \
        }                                                                                \
        return qsum32(a);                                                                \
    }

static inline __m256 load8_f32(const uint8_t *p) { return _mm256_loadu_ps((const float *)p); }
static inline __m256 load8_f16(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline __m256 load8_bf16(const uint8_t *p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
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

DOT_FLOAT_AVX2(dot_f32, load8_f32, 4, tail_f32(p + 4 * i))
DOT_FLOAT_AVX2(dot_f16, load8_f16, 2, f16(p + 2 * i))
DOT_FLOAT_AVX2(dot_bf16, load8_bf16, 2, tail_bf16(p + 2 * i))

/* ---- Q8_0, Q4_0: exact block sums, one float chain per row ----------------------- */

/* int32 lanes whose total is block b's exact dot product, less 8 * sum(q) for
 * Q4_0: its weights are used as the unsigned nibbles u = w + 8 (maddubs takes
 * them as they are; pairs stay below 2 * 15 * 127), the caller subtracts
 * 8 * bsum[b] once. */
static inline __m256i q8_0_lanes(const uint8_t *pb, __m256i q) {
    return dot_i8_lanes(_mm256_loadu_si256((const __m256i *)(pb + 2)), q);
}
static inline __m256i q4_0_lanes(const uint8_t *pb, __m256i q) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m128i qs = _mm_loadu_si128((const __m128i *)(pb + 2));
    const __m256i u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), _mm_and_si128(qs, m4));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1));
}
#define Q8_0_CORR(x, b) 0
#define Q4_0_CORR(x, b) (8 * (x)->bsum[b])

#define DOT_Q32_AVX2(name, LANES, CORR, bsz)                                              \
    static float name(const void *row, const qx_t *x, int64_t cols) {                     \
        const uint8_t *p = row;                                                           \
        float acc = 0.0f;                                                                 \
        for (int64_t b = 0; b < cols / 32; b++, p += bsz) {                               \
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x->q + 32 * b));       \
            const int32_t s = hsum_i32(LANES(p, q)) - CORR(x, b);                         \
            acc = acc + (f16(p) * x->d[b]) * (float)s;                                    \
        }                                                                                 \
        return acc;                                                                       \
    }

/* Eight rows' lane vectors to one vector of their totals (row r in lane r). */
static inline __m256i hsum8_i32(const __m256i *v) {
    const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    const __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

/* Eight rows at once: lane r is row r's chain, so each lane computes what
 * the one-row function computes (the same integers, the same float
 * multiply and add, blocks in order); the activation is loaded once. The
 * 8 rows are read 8 strides apart, which the hardware prefetcher follows
 * badly (a 32000x768 Q8_0 matrix ran at half speed), so each block step
 * also prefetches its share of the next group's bytes, in order. */
#define DOT8_Q32_AVX2(name, LANES, CORR, bsz)                                                        \
    static void name(const uint8_t *row0, size_t rb, const qx_t *x, int64_t cols, float *out) {      \
        __m256 acc = _mm256_setzero_ps();                                                            \
        const uint8_t *p = row0;                                                                     \
        const uint8_t *pf = row0 + 8 * rb;                                                           \
        for (int64_t b = 0; b < cols / 32; b++, p += bsz, pf += 8 * bsz) {                           \
            for (int k = 0; k < 8 * bsz; k += 64) _mm_prefetch((const char *)pf + k, _MM_HINT_T0);   \
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x->q + 32 * b));                  \
            __m256i v[8];                                                                            \
            for (int r = 0; r < 8; r++) v[r] = LANES(p + rb * (size_t)r, q);                         \
            const __m256i s = _mm256_sub_epi32(hsum8_i32(v), _mm256_set1_epi32(CORR(x, b)));         \
            const __m128i h = _mm_setr_epi16((short)qrd16(p), (short)qrd16(p + rb),                  \
                (short)qrd16(p + 2 * rb), (short)qrd16(p + 3 * rb), (short)qrd16(p + 4 * rb),        \
                (short)qrd16(p + 5 * rb), (short)qrd16(p + 6 * rb), (short)qrd16(p + 7 * rb));       \
            const __m256 dd = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(x->d[b]));            \
            acc = _mm256_add_ps(acc, _mm256_mul_ps(dd, _mm256_cvtepi32_ps(s)));                      \
        }                                                                                            \
        _mm256_storeu_ps(out, acc);                                                                  \
    }

/* Eight rows and four activations at once (a prefill or a batch): each
 * block's weights are loaded, and Q4_0's nibbles unpacked, once for the
 * four; every (row, activation) pair is the chain dot8 computes, bit for
 * bit (the same integers, the same float multiply and add per lane). */
static inline __m256i q8_0_w(const uint8_t *pb) { return _mm256_loadu_si256((const __m256i *)(pb + 2)); }
static inline __m256i q8_0_wlanes(__m256i w, __m256i q) { return dot_i8_lanes(w, q); }
static inline __m256i q4_0_w(const uint8_t *pb) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m128i qs = _mm_loadu_si128((const __m128i *)(pb + 2));
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m4), _mm_and_si128(qs, m4));
}
static inline __m256i q4_0_wlanes(__m256i u, __m256i q) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1));
}

#define DOT8X4_Q32_AVX2(name, WLOAD, WLANES, CORR, bsz)                                               \
    static void name(const uint8_t *row0, size_t rb, const qx_t *x, int64_t cols, float *out) {       \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),              \
                         _mm256_setzero_ps()};                                                        \
        const uint8_t *p = row0;                                                                     \
        const uint8_t *pf = row0 + 8 * rb;                                                           \
        for (int64_t b = 0; b < cols / 32; b++, p += bsz, pf += 8 * bsz) {                           \
            for (int k = 0; k < 8 * bsz; k += 64) _mm_prefetch((const char *)pf + k, _MM_HINT_T0);   \
            __m256i w[8];                                                                            \
            for (int r = 0; r < 8; r++) w[r] = WLOAD(p + rb * (size_t)r);                            \
            const __m128i h = _mm_setr_epi16((short)qrd16(p), (short)qrd16(p + rb),                  \
                (short)qrd16(p + 2 * rb), (short)qrd16(p + 3 * rb), (short)qrd16(p + 4 * rb),        \
                (short)qrd16(p + 5 * rb), (short)qrd16(p + 6 * rb), (short)qrd16(p + 7 * rb));       \
            const __m256 dw = _mm256_cvtph_ps(h);                                                    \
            for (int j = 0; j < 4; j++) {                                                            \
                const __m256i q = _mm256_loadu_si256((const __m256i *)(x[j].q + 32 * b));            \
                __m256i v[8];                                                                        \
                for (int r = 0; r < 8; r++) v[r] = WLANES(w[r], q);                                  \
                const __m256i s = _mm256_sub_epi32(hsum8_i32(v), _mm256_set1_epi32(CORR(&x[j], b))); \
                const __m256 dd = _mm256_mul_ps(dw, _mm256_set1_ps(x[j].d[b]));                      \
                acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(dd, _mm256_cvtepi32_ps(s)));            \
            }                                                                                        \
        }                                                                                            \
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(out + 8 * j, acc[j]);                           \
    }

DOT_Q32_AVX2(dot_q8_0, q8_0_lanes, Q8_0_CORR, 34)
DOT_Q32_AVX2(dot_q4_0, q4_0_lanes, Q4_0_CORR, 18)
DOT8_Q32_AVX2(dot8_q8_0, q8_0_lanes, Q8_0_CORR, 34)
DOT8_Q32_AVX2(dot8_q4_0, q4_0_lanes, Q4_0_CORR, 18)
DOT8X4_Q32_AVX2(dot8x4_q8_0, q8_0_w, q8_0_wlanes, Q8_0_CORR, 34)
DOT8X4_Q32_AVX2(dot8x4_q4_0, q4_0_w, q4_0_wlanes, Q4_0_CORR, 18)

/* ---- K-quants: exact integer sums per super-block ------------------------------ */

static float dot_q4_k(const void *row, const qx_t *x, int64_t cols) {
    const uint8_t *p = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float acc = 0.0f;
    for (int64_t b = 0; b < cols / 256; b++, p += 144) {
        const int8_t *y = x->q + 256 * b;
        const int32_t *bs = x->bsum + 16 * b;
        uint8_t sc[8], m[8];
        int32_t msum = 0;
        for (int s = 0; s < 8; s++) {
            q4k_scale_min(s, p + 4, &sc[s], &m[s]);
            msum += m[s] * (bs[2 * s] + bs[2 * s + 1]);
        }
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * c));
            const __m256i lo = _mm256_and_si256(q4, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            const __m256i y0 = _mm256_loadu_si256((const __m256i *)(y + 64 * c));
            const __m256i y1 = _mm256_loadu_si256((const __m256i *)(y + 64 * c + 32));
            const __m256i p0 = _mm256_maddubs_epi16(lo, y0), p1 = _mm256_maddubs_epi16(hi, y1);
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p0, _mm256_set1_epi16(sc[2 * c])));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p1, _mm256_set1_epi16(sc[2 * c + 1])));
        }
        const float dd = f16(p) * x->d[b], dm = f16(p + 2) * x->d[b];
        acc = acc + (dd * (float)hsum_i32(isum) - dm * (float)msum);
    }
    return acc;
}

static float dot_q6_k(const void *row, const qx_t *x, int64_t cols) {
    const uint8_t *p = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    float acc = 0.0f;
    for (int64_t b = 0; b < cols / 256; b++, p += 210) {
        const int8_t *sc = (const int8_t *)(p + 192);
        const int32_t *bs = x->bsum + 16 * b;
        int32_t corr = 0;
        for (int s = 0; s < 16; s++) corr += sc[s] * bs[s];
        __m256i isum = _mm256_setzero_si256();
        for (int n = 0; n < 2; n++) {
            const uint8_t *ql = p + 64 * n, *qh = p + 128 + 32 * n;
            const int8_t *y = x->q + 256 * b + 128 * n;
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                const __m256i yk = _mm256_loadu_si256((const __m256i *)(y + 32 * k));
                const __m256i prod = _mm256_maddubs_epi16(q[k], yk);
                const __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[8 * n + 2 * k + 1]),
                                                     _mm_set1_epi16(sc[8 * n + 2 * k]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(prod, scv));
            }
        }
        const float dd = f16(p + 208) * x->d[b];
        acc = acc + dd * (float)(hsum_i32(isum) - 32 * corr);
    }
    return acc;
}

qdot8_fn quant_avx2_dot8(int type) {
    return type == QT_Q8_0 ? dot8_q8_0 : type == QT_Q4_0 ? dot8_q4_0 : NULL;
}

qdot8x4_fn quant_avx2_dot8x4(int type) {
    return type == QT_Q8_0 ? dot8x4_q8_0 : type == QT_Q4_0 ? dot8x4_q4_0 : NULL;
}

qdot_fn quant_avx2_dot(int type) {
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

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#else
typedef int quant_avx2_unused; /* ISO C: no empty translation unit */
#endif
