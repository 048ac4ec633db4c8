/* quant_gemm.c: the tile-dequantized GEMMs of kernels/quant.h (training
 * through a frozen stored matrix): a tile of W's rows is converted to
 * float32 (bit-exact, quant.c) and multiplied with OpenBLAS. */
#include "gemm.h"
#include <stdlib.h>

#include "quant.h"
#include "quant_kernels.h"

static int64_t tile_rows(const qmat *W) {
    int64_t t = (int64_t)QMAT_TILE_FLOATS / W->cols;
    if (t < 16) t = 16;
    return t < W->rows ? t : W->rows;
}

size_t qmat_tile_floats(const qmat *W) { return (size_t)(tile_rows(W) * W->cols); }

void qmat_gemm_xwt_work(const qmat *W, const float *X, int N, const float *bias, float *Y,
                        int accumulate, float *tile) {
    const int64_t rows = W->rows, cols = W->cols, tr = tile_rows(W);
    if (N <= 0) return;
    for (int64_t r0 = 0; r0 < rows; r0 += tr) {
        const int64_t n = rows - r0 < tr ? rows - r0 : tr;
        qmat_rows_to_f32(W, r0, n, tile);
        // Y[:, r0:r0+n] (N, n) [+]= X (N, cols) · tile (n, cols)^T
        lc_sgemm(LC_N, LC_T, N, (int)n, (int)cols, 1.0f, X,
                    (int)cols, tile, (int)cols, accumulate ? 1.0f : 0.0f, Y + r0, (int)rows);
    }
    if (bias) /* after the product, as ops.c's matmul_forward adds it */
        for (int i = 0; i < N; i++)
            for (int64_t r = 0; r < rows; r++) Y[(size_t)i * rows + r] += bias[r];
}

void qmat_gemm_dyw_work(const qmat *W, const float *dY, int N, float *dX, float *tile) {
    const int64_t rows = W->rows, cols = W->cols, tr = tile_rows(W);
    if (N <= 0) return;
    for (int64_t r0 = 0; r0 < rows; r0 += tr) {
        const int64_t n = rows - r0 < tr ? rows - r0 : tr;
        qmat_rows_to_f32(W, r0, n, tile);
        // dX (N, cols) += dY[:, r0:r0+n] (N, n) · tile (n, cols)
        lc_sgemm(LC_N, LC_N, N, (int)cols, (int)n, 1.0f,
                    dY + r0, (int)rows, tile, (int)cols, 1.0f, dX, (int)cols);
    }
}

static float *tile_alloc(const qmat *W, int N, lc_err *err) {
    if (err) err->msg[0] = 0;
    if (qmat_check(W, err)) return NULL;
    if (N < 0) {
        lc_errf(err, "gemm: negative row count %d", N);
        return NULL;
    }
    return lc_malloc(sizeof(float) * qmat_tile_floats(W), err);
}

int qmat_gemm_xwt(const qmat *W, const float *X, int N, const float *bias, float *Y,
                  int accumulate, lc_err *err) {
    float *tile = tile_alloc(W, N, err);
    if (!tile) return LC_FAIL;
    qmat_gemm_xwt_work(W, X, N, bias, Y, accumulate, tile);
    free(tile);
    return LC_OK;
}

int qmat_gemm_dyw(const qmat *W, const float *dY, int N, float *dX, lc_err *err) {
    float *tile = tile_alloc(W, N, err);
    if (!tile) return LC_FAIL;
    qmat_gemm_dyw_work(W, dY, N, dX, tile);
    free(tile);
    return LC_OK;
}
