/* gemm.h: the project's matrix products, row-major:
 *   C (M x N) = alpha * op(A) op(B) + beta * C,  op(X) = X or X^T,
 * with op(A) M x K and op(B) K x N; lda/ldb/ldc are the row strides of the
 * matrices as stored. Built with LC_BLAS (the default desktop build) these
 * are OpenBLAS's cblas_sgemm/cblas_dgemm; without it (the device runtime),
 * a portable blocked implementation in gemm.c that needs only libc and,
 * optionally, OpenMP. Both are tested against a double-precision reference
 * (tests/test_kernels.c). */
#ifndef LC_GEMM_H
#define LC_GEMM_H

enum { LC_N = 0, LC_T = 1 };

void lc_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
void lc_dgemm(int ta, int tb, int M, int N, int K, double alpha, const double *A, int lda,
              const double *B, int ldb, double beta, double *C, int ldc);

/* The portable implementation, always compiled (the reference for tests
 * of the BLAS build, and the device build's only one). */
void lc_sgemm_portable(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc);
void lc_dgemm_portable(int ta, int tb, int M, int N, int K, double alpha, const double *A,
                       int lda, const double *B, int ldb, double beta, double *C, int ldc);

/* "openblas" or "portable": what lc_sgemm runs in this build. */
const char *lc_gemm_backend(void);

#endif
