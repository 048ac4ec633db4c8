/* ops.h: the numeric kernels, forward and backward, on raw float pointers
 * with explicit dimensions. Row-major everywhere; N = number of token rows
 * (B*T). Kernels never allocate (callers pass scratch) and never open files.
 *
 * Backward kernels ACCUMULATE (+=) into their outputs unless stated, so
 * gradients from several paths (residual stream, several projections) add. */
#ifndef OPS_H
#define OPS_H

#include <stddef.h>

/* ---- matrix multiply (OpenBLAS sgemm) ---------------------------------- */

/* out (N, OC) [+]= inp (N, C) · w (OC, C)^T (+ bias (OC) if non-NULL).
 * accumulate = 0 overwrites out. */
void matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                    int N, int C, int OC, int accumulate);
/* dinp (N, C) += dout (N, OC) · w (OC, C) */
void matmul_backward_input(float *dinp, const float *dout, const float *w, int N, int C, int OC);
/* dw (OC, C) += dout (N, OC)^T · inp (N, C); dbias (OC) += sum_n dout (if non-NULL) */
void matmul_backward_weight(float *dw, float *dbias, const float *dout, const float *inp,
                            int N, int C, int OC);
/* Plain-loop references of the three above (tests compare against them). */
void matmul_forward_ref(float *out, const float *inp, const float *w, const float *bias,
                        int N, int C, int OC, int accumulate);
void matmul_backward_input_ref(float *dinp, const float *dout, const float *w, int N, int C, int OC);
void matmul_backward_weight_ref(float *dw, float *dbias, const float *dout, const float *inp,
                                int N, int C, int OC);

/* out (OC) = w (OC, C) · x (C) (+ bias) ; threaded over rows when large.
 * accumulate = 1 adds into out. For single-token decoding. */
void matvec(float *out, const float *w, const float *x, const float *bias, int C, int OC,
            int accumulate);

/* Several independent matvecs (e.g. q, k and v of one layer) in one parallel
 * region: each thread takes a share of every job's rows. Runs serially
 * below MATVEC_PARALLEL_MIN total multiply-adds, or inside a parallel
 * region. Each output is computed exactly as matvec would. */
/* With nb > 1 one job is nb products with the same w: x (nb, C) and out
 * (nb, OC) row-major, i.e. out = x w^T [+ bias]; row b of out has exactly
 * the bits matvec gives for row b of x (the per-row arithmetic does not
 * depend on nb or the threads). nb 0 counts as 1. */
typedef struct {
    float *out;
    const float *w, *x, *bias; /* bias may be NULL */
    int C, OC, accumulate;
    int nb;
} matvec_job;
void matvec_batch(const matvec_job *jobs, int n_jobs);
#define MATVEC_PARALLEL_MIN (1u << 16)

/* ---- RMSNorm ----------------------------------------------------------- */

/* out (N, C) = inp (N, C) * rstd (N) * w (C), rstd = 1/sqrt(mean(inp^2) + eps).
 * rstd may be NULL (not saved). */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                     float eps);
/* dinp (N, C) += d/dinp; dw (C) += d/dw if non-NULL. */
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp,
                      const float *w, const float *rstd, int N, int C);

/* ---- rotary position embedding (HF rotate_half convention) ------------- */

/* Fills cos/sin tables (T, hd/2) for positions pos0 .. pos0+T-1. */
void rope_tables(float *cos_t, float *sin_t, const float *inv_freq, int pos0, int T, int hd);
/* x (B, T, nh, hd) rotated in place: for each head and i < hd/2,
 * (x_i, x_{i+hd/2}) <- (x_i c - x_{i+hd/2} s, x_{i+hd/2} c + x_i s).
 * Backward is the rotation by the opposite angle (inverse = 1). */
void rope_apply(float *x, const float *cos_t, const float *sin_t, int B, int T, int nh, int hd,
                int inverse);

/* ---- causal grouped-query attention ------------------------------------ */

/* q (B, T, H, hd), k/v (B, T, Hkv, hd) -> out (B, T, H, hd);
 * probs (B, H, T, T) saved softmax: row t holds keys 0..t, zeros up to the
 * end of its 64-row block, and is not written beyond (never read). */
void attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                       int B, int T, int H, int Hkv, int hd);
/* dq (B,T,H,hd), dk, dv (B,T,Hkv,hd) are OVERWRITTEN. scratch holds
 * n_scratch blocks of attention_scratch_floats(T) floats, one per thread
 * used (at most n_scratch threads run). */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                        const float *q, const float *k, const float *v, float *scratch,
                        int n_scratch, int B, int T, int H, int Hkv, int hd);
/* Scratch floats one thread of attention_backward needs. */
size_t attention_scratch_floats(int T);

/* ---- SwiGLU ------------------------------------------------------------ */

/* h (N) = silu(gate) * up, elementwise over n values. */
void swiglu_forward(float *h, const float *gate, const float *up, size_t n);
/* dgate, dup OVERWRITTEN from dh. */
void swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate,
                     const float *up, size_t n);

/* ---- small helpers ----------------------------------------------------- */

/* e^x in single precision, within 2 ulp of expf for x in [-87, 88] (1 ulp
 * in a sweep of every float there), 0 below -87.33 (where expf is subnormal
 * or 0); not meant for x > 88. Inline so that loops over it vectorise
 * (libm's expf is scalar without -ffast-math). Cephes' range reduction
 * x = n ln2 + r, |r| <= ln2/2, and degree-6 polynomial. For softmax
 * (attention, the classifier's loss), whose arguments are <= 0. */
static inline float lc_expf(float x) {
    const float hi = 88.3762626647949f, lo = -87.3365478515625f;
    /* NaN compares false: it is computed as hi (no undefined int conversion)
     * and returned as NaN at the end, so a NaN logit still gives a NaN loss */
    float xc = x < hi ? (x > lo ? x : lo) : hi;
    /* n = round(xc / ln 2) by the 1.5 * 2^23 trick (|xc / ln 2| < 2^22):
     * GCC 12 does not vectorise floorf, and with it no loop calling this
     * function was vectorised */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { unsigned u; float f; } s = {.u = (unsigned)((int)n + 127) << 23};
    return x != x ? x : x < lo ? 0.0f : p * s.f;
}

/* out (C) += sum over N rows of x (N, C) */
void colsum_add(float *out, const float *x, int N, int C);
/* x (N, C) += v (C) broadcast over rows */
void rows_add(float *x, const float *v, int N, int C);
/* y += a * x */
void axpy(float *y, const float *x, float a, size_t n);

#endif
