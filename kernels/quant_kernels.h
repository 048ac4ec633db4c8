/* quant_kernels.h: what quant.c shares with its SIMD paths (quant_avx2.c,
 * quant_neon.c). Not part of the public API (kernels/quant.h).
 *
 * A row dot product takes the stored row and the activation x prepared
 * once per product (quant_prepare_x in quant.c):
 *   Q8_0, Q4_0: q (cols int8) with one float scale d per block of 32,
 *               x ~ d * q, q in [-127, 127] (round to nearest even of
 *               x * 127 / amax), and bsum, the sum of q over each block;
 *   Q4_K, Q6_K: the same in blocks of 256, plus bsum, the sum of q over
 *               each 16 elements;
 *   F32, F16, BF16: x itself.
 * A block whose largest magnitude is not finite gets d = NaN (so the dot
 * is NaN, as the float product would be), q = 0. */
#ifndef QUANT_KERNELS_H
#define QUANT_KERNELS_H

#include <stdint.h>
#include <string.h>

typedef struct {
    const float *x;      /* (cols) */
    const int8_t *q;     /* (cols) */
    const float *d;      /* (cols / 32) or (cols / 256) */
    const int32_t *bsum; /* (cols / 32) for Q8_0/Q4_0, (cols / 16) for K-quants */
} qx_t;

typedef float (*qdot_fn)(const void *row, const qx_t *x, int64_t cols);
/* The same product for 8 consecutive rows (row r at row0 + r * row_bytes)
 * into out[0..7], each with the bits of the type's qdot_fn. */
typedef void (*qdot8_fn)(const uint8_t *row0, size_t row_bytes, const qx_t *x, int64_t cols, float *out);
/* The same for four activations x[0..3] into out[8 * j + r], each with the
 * bits of the qdot8_fn. */
typedef void (*qdot8x4_fn)(const uint8_t *row0, size_t row_bytes, const qx_t *x, int64_t cols, float *out);

/* The paths' dot product for a type; NULL when the path has none. */
qdot_fn quant_ref_dot(int type);
#if defined(__x86_64__)
qdot_fn quant_avx2_dot(int type); /* call only when the CPU has AVX2, FMA, F16C */
qdot8_fn quant_avx2_dot8(int type); /* Q8_0, Q4_0; NULL for the others */
qdot8x4_fn quant_avx2_dot8x4(int type); /* Q8_0, Q4_0; NULL for the others */
#endif
#if defined(__aarch64__)
qdot_fn quant_neon_dot(int type);
qdot8_fn quant_neon_dot8(int type); /* Q8_0, Q4_0; NULL for the others */
#endif

/* quant.c's checks and row conversion, for quant_gemm.c */
#include "quant.h"
int qmat_check(const qmat *m, lc_err *err);
/* rows [r0, r0 + n) of m into out (n, cols), threaded when large */
void qmat_rows_to_f32(const qmat *m, int64_t r0, int64_t n, float *out);

/* The fixed summation tree of 32 float lanes: halves are added until one
 * is left (lane j + 16, then j + 8, 4, 2, 1). Every float-row path ends
 * with this.
 * F32/F16/BF16 rows: lane j holds elements j, j+32, j+64, .... */
static inline float qsum32(float *a) {
    for (int h = 16; h >= 1; h >>= 1)
        for (int j = 0; j < h; j++) a[j] = a[j] + a[j + h];
    return a[0];
}

static inline uint16_t qrd16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* The 6-bit scale and min of sub-block j of a Q4_K super-block. */
static inline void q4k_scale_min(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

#endif
