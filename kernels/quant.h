/* quant.h: weight matrices held in a storage type (kernels/qtype.h: F32,
 * F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K), converted row by row to and from
 * float32, multiplied with vectors (decoding) and, through a tile of rows
 * dequantized at a time, with matrices (training through a frozen base).
 *
 * Row conversion is bit-exact against llama.cpp's own definitions (ggml's
 * type traits to_float and ggml_quantize_chunk without an importance
 * matrix, as built for x86-64): tests/test_quant.c compares bytes with
 * libggml-base.so. Where ggml's C relies on an out-of-range float->int
 * conversion (NaN, or the infinite inverse scale of a block whose largest
 * magnitude is below ~1e-36) the x86 result (INT32_MIN, i.e. a zero low
 * byte) is reproduced explicitly. One thing C leaves open is not
 * reproduced: which payload survives when two NaNs meet in an addition
 * (Q4_K/Q6_K inputs with NaNs of different payloads can then differ in a
 * quant; NaNs in an input row make the row meaningless anyway).
 *
 * Matrix-vector products follow llama.cpp: for Q8_0/Q4_0 the activation is
 * quantized to int8 in blocks of 32 (one float scale per block), for
 * Q4_K/Q6_K in blocks of 256 (with sums per 16), and each row is a sum of
 * exact integer block dot products scaled in float. F32/F16/BF16 rows are
 * dotted in float. Each type has a plain C reference and AVX2 (x86-64,
 * chosen at run time from cpuid) and NEON (aarch64) paths that give
 * bit-identical results: the reference is written with the SIMD paths'
 * accumulation order (quant.c says which), and no path fuses a multiply
 * and an add. LC_QUANT_REF=1 in the environment, or quant_force_ref(1),
 * selects the reference. */
#ifndef QUANT_H
#define QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "lc_err.h"
#include "qtype.h"

/* ---- rows ---------------------------------------------------------------- */

/* Checks that type is known and n (> 0) is a multiple of its block size. */
int qrow_check(int type, int64_t n, lc_err *err);
/* dst (n floats) = the row src of the given type (qtype_row_bytes(type, n)
 * bytes). */
int qrow_to_f32(int type, const void *src, float *dst, int64_t n, lc_err *err);
/* dst (qtype_row_bytes(type, n) bytes) = src (n floats) in the given type;
 * several rows may be converted in one call (n = rows * cols) when cols
 * is a block multiple, exactly as ggml_quantize_chunk does. */
int qrow_from_f32(int type, const float *src, void *dst, int64_t n, lc_err *err);

/* ---- matrices ------------------------------------------------------------- */

typedef struct {
    int type;          /* qtype */
    int64_t rows, cols;
    size_t row_bytes;  /* qtype_row_bytes(type, cols) */
    const void *data;  /* rows * row_bytes bytes, row-major; may point into an mmap */
    void *owned;       /* what qmat_free frees (NULL for a view) */
} qmat;

/* A view of rows x cols elements of the given type at data (not copied,
 * not freed). */
int qmat_view(qmat *m, int type, int64_t rows, int64_t cols, const void *data, lc_err *err);
/* Allocates m and converts the float32 matrix w (rows, cols) into type. */
int qmat_from_f32(qmat *m, int type, const float *w, int64_t rows, int64_t cols, lc_err *err);
void qmat_free(qmat *m);
/* Bytes of the stored matrix. */
size_t qmat_bytes(const qmat *m);
/* out (rows, cols) = m in float32. */
int qmat_to_f32(const qmat *m, float *out, lc_err *err);

/* ---- products -------------------------------------------------------------- */

/* y (rows) [+]= W x (cols) [+ bias (rows), may be NULL]. accumulate = 0
 * overwrites y. Threaded over rows (OpenMP) when large and not already in
 * a parallel region; each row's value does not depend on the threads. */
int qmat_matvec(const qmat *W, const float *x, const float *bias, float *y, int accumulate,
                lc_err *err);
/* Several x at once, sharing each pass over W (each row is read once for
 * all of them): Y (nb, rows) [+]= X (nb, cols) W^T [+ bias]. Row b of Y
 * equals qmat_matvec on row b of X bit for bit. */
int qmat_matvec_batch(const qmat *W, const float *X, int nb, const float *bias, float *Y,
                      int accumulate, lc_err *err);

/* Training through a frozen stored matrix: W is dequantized a tile of rows
 * at a time into a float32 buffer of about QMAT_TILE_FLOATS floats and
 * multiplied with cblas_sgemm.
 *   Y (N, rows) [+]= X (N, cols) W^T   [+ bias (rows), may be NULL]
 *   dX (N, cols) += dY (N, rows) W
 * Equal to the same sgemm on the fully dequantized matrix up to the order
 * of the sum over rows in qmat_gemm_dyw (tests/test_quant.c states the
 * bound). */
int qmat_gemm_xwt(const qmat *W, const float *X, int N, const float *bias, float *Y,
                  int accumulate, lc_err *err);
int qmat_gemm_dyw(const qmat *W, const float *dY, int N, float *dX, lc_err *err);
#define QMAT_TILE_FLOATS (1u << 17)
/* The same with the caller's tile buffer of qmat_tile_floats(W) floats, for
 * a valid W (qmat_view / qmat_from_f32) and N >= 0: nothing to fail. */
size_t qmat_tile_floats(const qmat *W);
void qmat_gemm_xwt_work(const qmat *W, const float *X, int N, const float *bias, float *Y,
                        int accumulate, float *tile);
void qmat_gemm_dyw_work(const qmat *W, const float *dY, int N, float *dX, float *tile);

/* ---- kernel path ----------------------------------------------------------- */

/* "avx2", "neon" or "ref": the path qmat_matvec takes now. */
const char *quant_path(void);
/* on = 1 forces the reference (also LC_QUANT_REF=1 at start-up); 0 returns
 * to the best path this CPU has. */
void quant_force_ref(int on);

/* IEEE binary16 / bfloat16 <-> float32, as ggml converts them. */
float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f);
float quant_bf16_to_f32(uint16_t h);
uint16_t quant_f32_to_bf16(float f);

#endif
