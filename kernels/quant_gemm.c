/* quant_gemm.c: the tile-dequantized GEMMs of kernels/quant.h (training
 * through a frozen stored matrix): a tile of W's rows is converted to
 * float32 (bit-exact, quant.c) and multiplied with OpenBLAS. */
#include "gemm.h"
#include <stdlib.h>

#include "quant.h"
#include "quant_kernels.h"

/* ---- tile-dequantized GEMMs ----------------------------------------------------------------- */

static int64_t tile_rows(const qmat *W) {
    int64_t t = (int64_t)QMAT_TILE_FLOATS / W->cols;
    if (t < 16) t = 16;
    return t < W->rows ? t : W->rows;
}

int qmat_gemm_xwt(const qmat *W, const float *X, int N, const float *bias, float *Y,
                  int accumulate, lc_err *err) {
    if (err) err->msg[0] = 0;
    if (qmat_check(W, err)) return LC_FAIL;
    if (N <= 0) return N == 0 ? LC_OK : lc_errf(err, "gemm: negative row count %d", N);
    const int64_t rows = W->rows, cols = W->cols, tr = tile_rows(W);
    float *buf = lc_malloc(sizeof(float) * (size_t)(tr * cols), err);
    if (!buf) return LC_FAIL;
    for (int64_t r0 = 0; r0 < rows; r0 += tr) {
        const int64_t n = rows - r0 < tr ? rows - r0 : tr;
        qmat_rows_to_f32(W, r0, n, buf);
        // Y[:, r0:r0+n] (N, n) [+]= X (N, cols) · tile (n, cols)^T
        lc_sgemm(LC_N, LC_T, N, (int)n, (int)cols, 1.0f, X,
                    (int)cols, buf, (int)cols, accumulate ? 1.0f : 0.0f, Y + r0, (int)rows);
    }
    free(buf);
    if (bias)
        for (int i = 0; i < N; i++)
            for (int64_t r = 0; r < rows; r++) Y[(size_t)i * rows + r] += bias[r];
    return LC_OK;
}

int qmat_gemm_dyw(const qmat *W, const float *dY, int N, float *dX, lc_err *err) {
    if (err) err->msg[0] = 0;
    if (qmat_check(W, err)) return LC_FAIL;
    if (N <= 0) return N == 0 ? LC_OK : lc_errf(err, "gemm: negative row count %d", N);
    const int64_t rows = W->rows, cols = W->cols, tr = tile_rows(W);
    float *buf = lc_malloc(sizeof(float) * (size_t)(tr * cols), err);
    if (!buf) return LC_FAIL;
    for (int64_t r0 = 0; r0 < rows; r0 += tr) {
        const int64_t n = rows - r0 < tr ? rows - r0 : tr;
        qmat_rows_to_f32(W, r0, n, buf);
        // dX (N, cols) += dY[:, r0:r0+n] (N, n) · tile (n, cols)
        lc_sgemm(LC_N, LC_N, N, (int)cols, (int)n, 1.0f,
                    dY + r0, (int)rows, buf, (int)cols, 1.0f, dX, (int)cols);
    }
    free(buf);
    return LC_OK;
}
