/* gemm.c: see gemm.h. The portable path packs op(B) into a transposed
 * panel once per call, so that every output element is a contiguous dot
 * product over K (eight partial sums, vectorised by the compiler), and rows
 * of C are shared between OpenMP threads when the build has OpenMP. */
#include "gemm.h"

#include <stdlib.h>
#include <string.h>

#ifdef LC_BLAS
#include <cblas.h>
#endif

#define AT(X, ld, t, i, j) ((t) ? (X)[(size_t)(j) * (ld) + (i)] : (X)[(size_t)(i) * (ld) + (j)])

#define DEFINE_PORTABLE(NAME, T)                                                                  \
    static T NAME##_dot(const T *a, const T *b, int K) {                                          \
        T s[8] = {0};                                                                             \
        int k = 0;                                                                                \
        for (; k + 8 <= K; k += 8)                                                                \
            for (int u = 0; u < 8; u++) s[u] += a[k + u] * b[k + u];                              \
        T r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));                  \
        for (; k < K; k++) r += a[k] * b[k];                                                      \
        return r;                                                                                 \
    }                                                                                             \
    void NAME(int ta, int tb, int M, int N, int K, T alpha, const T *A, int lda, const T *B,      \
              int ldb, T beta, T *C, int ldc) {                                                   \
        if (M <= 0 || N <= 0) return;                                                             \
        /* rows of op(A) and columns of op(B), contiguous over K */                               \
        const T *a = A, *b = B;                                                                   \
        T *pa = NULL, *pb = NULL;                                                                 \
        if (ta && K > 0) {                                                                        \
            pa = malloc(sizeof(T) * (size_t)M * K);                                               \
            if (!pa) abort(); /* out of memory in a kernel: no caller can recover */              \
            for (int i = 0; i < M; i++)                                                           \
                for (int k = 0; k < K; k++) pa[(size_t)i * K + k] = AT(A, lda, 1, i, k);          \
            a = pa;                                                                               \
        }                                                                                         \
        if (!tb && K > 0) {                                                                       \
            pb = malloc(sizeof(T) * (size_t)N * K);                                               \
            if (!pb) abort();                                                                     \
            for (int k = 0; k < K; k++)                                                           \
                for (int j = 0; j < N; j++) pb[(size_t)j * K + k] = B[(size_t)k * ldb + j];       \
            b = pb;                                                                               \
        }                                                                                         \
        const int sa = ta ? K : lda, sb = tb ? ldb : K;                                           \
        _Pragma("omp parallel for schedule(static) if ((double)M * N * K > 1e6)")                 \
        for (int i = 0; i < M; i++) {                                                             \
            T *c = C + (size_t)i * ldc;                                                           \
            for (int j = 0; j < N; j++) {                                                         \
                T d = K > 0 ? NAME##_dot(a + (size_t)i * sa, b + (size_t)j * sb, K) : 0;          \
                c[j] = beta == 0 ? alpha * d : alpha * d + beta * c[j];                           \
            }                                                                                     \
        }                                                                                         \
        free(pa);                                                                                 \
        free(pb);                                                                                 \
    }

DEFINE_PORTABLE(lc_sgemm_portable, float)
DEFINE_PORTABLE(lc_dgemm_portable, double)

#ifdef LC_BLAS
void lc_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void lc_dgemm(int ta, int tb, int M, int N, int K, double alpha, const double *A, int lda,
              const double *B, int ldb, double beta, double *C, int ldc) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
const char *lc_gemm_backend(void) { return "openblas"; }
#else
void lc_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    lc_sgemm_portable(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void lc_dgemm(int ta, int tb, int M, int N, int K, double alpha, const double *A, int lda,
              const double *B, int ldb, double beta, double *C, int ldc) {
    lc_dgemm_portable(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
const char *lc_gemm_backend(void) { return "portable"; }
#endif
