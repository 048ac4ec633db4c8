/* ops.c: numeric kernels (see ops.h for shapes and contracts). */
#include "ops.h"

#include "gemm.h"
#include <math.h>
#include "lc_omp.h"
#include <string.h>

/* ---- matrix multiply ---------------------------------------------------- */

// out (N, OC) [+]= inp (N, C) · w (OC, C)^T + bias
void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int C,
                    int OC, int accumulate) {
    if (N <= 0 || OC <= 0) return;
    if (C <= 0) {
        if (!accumulate) memset(out, 0, sizeof(float) * (size_t)N * OC);
    } else {
        lc_sgemm(LC_N, LC_T, N, OC, C, 1.0f, inp, C, w, C,
                    accumulate ? 1.0f : 0.0f, out, OC);
    }
    if (bias) rows_add(out, bias, N, OC);
}

// dinp (N, C) += dout (N, OC) · w (OC, C)
void matmul_backward_input(float *dinp, const float *dout, const float *w, int N, int C, int OC) {
    if (N <= 0 || C <= 0 || OC <= 0) return;
    lc_sgemm(LC_N, LC_N, N, C, OC, 1.0f, dout, OC, w, C, 1.0f,
                dinp, C);
}

// dw (OC, C) += dout (N, OC)^T · inp (N, C); dbias (OC) += colsum(dout)
void matmul_backward_weight(float *dw, float *dbias, const float *dout, const float *inp, int N,
                            int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    if (dw && C > 0)
        lc_sgemm(LC_T, LC_N, OC, C, N, 1.0f, dout, OC, inp, C,
                    1.0f, dw, C);
    if (dbias) colsum_add(dbias, dout, N, OC);
}

void matmul_forward_ref(float *out, const float *inp, const float *w, const float *bias, int N,
                        int C, int OC, int accumulate) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++) s += (double)inp[(size_t)n * C + c] * w[(size_t)o * C + c];
            float *dst = &out[(size_t)n * OC + o];
            *dst = accumulate ? *dst + (float)s : (float)s;
        }
}

void matmul_backward_input_ref(float *dinp, const float *dout, const float *w, int N, int C,
                               int OC) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int o = 0; o < OC; o++) s += (double)dout[(size_t)n * OC + o] * w[(size_t)o * C + c];
            dinp[(size_t)n * C + c] += (float)s;
        }
}

void matmul_backward_weight_ref(float *dw, float *dbias, const float *dout, const float *inp,
                                int N, int C, int OC) {
    for (int o = 0; o < OC; o++) {
        if (dw)
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int n = 0; n < N; n++) s += (double)dout[(size_t)n * OC + o] * inp[(size_t)n * C + c];
                dw[(size_t)o * C + c] += (float)s;
            }
        if (dbias) {
            double s = 0;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + o];
            dbias[o] += (float)s;
        }
    }
}

/* Rows [o0, o1) of one matvec job. Each row's sum is a SIMD reduction
 * (per-lane partial sums, then a tree) written out in the source, so it
 * vectorises without -ffast-math. For matrices up to MATVEC_MULTIROW_MAX floats four rows share
 * each load of x (measured 1.4-2.5x faster on cache-resident stories260K
 * shapes); larger ones stream from memory, where one row at a time measured
 * faster (lm_head 32000 x 288: 1.0 vs 1.5 ms on one core). The choice
 * depends on the shape only, so the result does not depend on the threads.
 *
 * With several x (nb > 1) every output (b, o) is computed by the very same
 * sequence of float operations as for one x (the fixed order below), and
 * whether row o is in a four-row group depends only on (OC, C) and o: the
 * groups start at row 0 and thread shares are multiples of 4. A row of one x
 * therefore has the same bits whatever nb, the other x and the threads are;
 * batched decoding and prefill rely on it (kernels/transformer.c;
 * test_kernels and test_prefill check it). The nb x share each group of W
 * rows while it is
 * in cache, which is what makes them faster than nb single products. */
#define MATVEC_MULTIROW_MAX (1u << 20)

/* The sums have an order fixed by the source, not by the compiler: eight
 * lanes of partial sums in a GCC/Clang vector (lane l adds the terms
 * c = l mod 8 of the first C/8*8), a fixed tree over the lanes, then the
 * tail in order. Every kernel below, whatever number of rows and x it
 * serves, computes each (row, x) pair with exactly this sequence of
 * operations, so a product has the same bits in every kernel, whatever the
 * ISA (AVX2+FMA, AVX-512, SSE2, NEON: the vector is split or widened) and
 * whatever the -mtune cost model decides about unrolling (an `omp simd`
 * reduction left that to the compiler, and -march=znver3 chose differently
 * per kernel). */
typedef float lc_v8 __attribute__((vector_size(32)));
/* *acc += w[0..8) x[0..8). Where the machine has a fused multiply-add it is
 * used by name, everywhere: left to -ffp-contract, GCC fuses in some
 * kernels and not in others (-mtune=znver3 avoids FMA in a single
 * accumulation chain, so matvec_dot1 got mul + add where matvec_dot4 got
 * FMA, and the bits differed). Without one (SSE2 builds) nothing can be
 * fused (on other architectures a compiler may fuse `*acc += a * b` as it
 * likes: test_kernels would tell). Vectors pass by pointer: no vector
 * crosses a call boundary. */
#if defined(__FMA__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define LC_HAVE_FMA 1
static inline void fma8(lc_v8 *acc, const float *w, const float *x) {
    *acc = (lc_v8)_mm256_fmadd_ps(_mm256_loadu_ps(w), _mm256_loadu_ps(x), (__m256)*acc);
}
#elif defined(__aarch64__)
#include <arm_neon.h>
#define LC_HAVE_FMA 1
static inline void fma8(lc_v8 *acc, const float *w, const float *x) {
    float32x4_t lo, hi;
    memcpy(&lo, acc, sizeof lo), memcpy(&hi, (const float *)acc + 4, sizeof hi);
    lo = vfmaq_f32(lo, vld1q_f32(w), vld1q_f32(x));
    hi = vfmaq_f32(hi, vld1q_f32(w + 4), vld1q_f32(x + 4));
    memcpy(acc, &lo, sizeof lo), memcpy((float *)acc + 4, &hi, sizeof hi);
}
#else
#define LC_HAVE_FMA 0
static inline void fma8(lc_v8 *acc, const float *w, const float *x) {
    lc_v8 a, b;
    memcpy(&a, w, sizeof a), memcpy(&b, x, sizeof b);
    *acc += a * b;
}
#endif
static inline float dot_finish(const lc_v8 *acc, const float *row, const float *x, int c, int C) {
    const lc_v8 a = *acc;
    float s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
#if LC_HAVE_FMA
    for (; c < C; c++) s = fmaf(row[c], x[c], s);
#else
    for (; c < C; c++) s += row[c] * x[c];
#endif
    return s;
}

__attribute__((noinline)) static void matvec_dot4(float s[4], const float *r0, const float *x, int C) {
    const float *r1 = r0 + C, *r2 = r1 + C, *r3 = r2 + C;
    lc_v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    int c = 0;
    for (; c + 8 <= C; c += 8) {
        fma8(&s0, r0 + c, x + c);
        fma8(&s1, r1 + c, x + c);
        fma8(&s2, r2 + c, x + c);
        fma8(&s3, r3 + c, x + c);
    }
    s[0] = dot_finish(&s0, r0, x, c, C), s[1] = dot_finish(&s1, r1, x, c, C);
    s[2] = dot_finish(&s2, r2, x, c, C), s[3] = dot_finish(&s3, r3, x, c, C);
}

__attribute__((noinline)) static float matvec_dot1(const float *row, const float *x, int C) {
    lc_v8 s0 = {0};
    int c = 0;
    for (; c + 8 <= C; c += 8) fma8(&s0, row + c, x + c);
    return dot_finish(&s0, row, x, c, C);
}

/* The same sums for several x at once, one load of a W vector serving
 * several x: 4 rows x MATVEC_XG x, or 1 row x 4 x. */
#if defined(__AVX512F__)
#define MATVEC_XG 4 /* 16 accumulators: 32 vector registers hold them and the loads */
#else
#define MATVEC_XG 2 /* 8 accumulators: 16 vector registers hold them and the loads */
#endif
__attribute__((noinline)) static void matvec_dot4xg(float s[4][MATVEC_XG], const float *r0, const float *x0,
                                                    int C) {
    const float *r[4] = {r0, r0 + C, r0 + 2 * (size_t)C, r0 + 3 * (size_t)C};
    lc_v8 a[4][MATVEC_XG];
    for (int i = 0; i < 4; i++)
        for (int g = 0; g < MATVEC_XG; g++) a[i][g] = (lc_v8){0};
    int c = 0;
    for (; c + 8 <= C; c += 8)
        for (int i = 0; i < 4; i++)
            for (int g = 0; g < MATVEC_XG; g++) fma8(&a[i][g], r[i] + c, x0 + (size_t)g * C + c);
    for (int i = 0; i < 4; i++)
        for (int g = 0; g < MATVEC_XG; g++) s[i][g] = dot_finish(&a[i][g], r[i], x0 + (size_t)g * C, c, C);
}

/* one row, four consecutive x (x0 + b C, b < 4) */
__attribute__((noinline)) static void matvec_dot1x4(float s[4], const float *row, const float *x0, int C) {
    const float *x[4] = {x0, x0 + C, x0 + 2 * (size_t)C, x0 + 3 * (size_t)C};
    lc_v8 a[4] = {{0}, {0}, {0}, {0}};
    int c = 0;
    for (; c + 8 <= C; c += 8)
        for (int g = 0; g < 4; g++) fma8(&a[g], row + c, x[g] + c);
    for (int g = 0; g < 4; g++) s[g] = dot_finish(&a[g], row, x[g], c, C);
}

static inline void matvec_store(const matvec_job *j, float *out, int o, float s) {
    float v = j->bias ? s + j->bias[o] : s;
    out[o] = j->accumulate ? out[o] + v : v;
}

/* x of one block stay in L1 while a block of W rows (in L2) passes over them */
#define MATVEC_XBLOCK 8
#define MATVEC_WBLOCK_FLOATS (1u << 15)

static void matvec_rows(const matvec_job *j, int o0, int o1) {
    const int C = j->C, OC = j->OC, nb = j->nb > 1 ? j->nb : 1;
    const int multirow = (size_t)OC * C <= MATVEC_MULTIROW_MAX;
    const int n4 = multirow ? OC / 4 * 4 : 0; /* rows below n4 are in four-row groups */
    int wb = (int)(MATVEC_WBLOCK_FLOATS / (C > 0 ? (unsigned)C : 1u)) / 4 * 4;
    if (wb < 4) wb = 4;
    for (int ob = o0; ob < o1; ob += wb) {
        const int oe = ob + wb < o1 ? ob + wb : o1;
        for (int b0 = 0; b0 < nb; b0 += MATVEC_XBLOCK) {
            const int be = b0 + MATVEC_XBLOCK < nb ? b0 + MATVEC_XBLOCK : nb;
            int o = ob;
            for (; o + 4 <= oe && o + 4 <= n4; o += 4) {
                const float *r0 = j->w + (size_t)o * C;
                int b = b0;
                for (; b + MATVEC_XG <= be; b += MATVEC_XG) {
                    float s[4][MATVEC_XG];
                    matvec_dot4xg(s, r0, j->x + (size_t)b * C, C);
                    for (int g = 0; g < MATVEC_XG; g++)
                        for (int i = 0; i < 4; i++) matvec_store(j, j->out + (size_t)(b + g) * OC, o + i, s[i][g]);
                }
                for (; b < be; b++) {
                    float s[4];
                    matvec_dot4(s, r0, j->x + (size_t)b * C, C);
                    float *out = j->out + (size_t)b * OC;
                    for (int i = 0; i < 4; i++) matvec_store(j, out, o + i, s[i]);
                }
            }
            for (; o < oe; o++) {
                const float *row = j->w + (size_t)o * C;
                int b = b0;
                for (; b + 4 <= be; b += 4) {
                    float s[4];
                    matvec_dot1x4(s, row, j->x + (size_t)b * C, C);
                    for (int g = 0; g < 4; g++) matvec_store(j, j->out + (size_t)(b + g) * OC, o, s[g]);
                }
                for (; b < be; b++)
                    matvec_store(j, j->out + (size_t)b * OC, o, matvec_dot1(row, j->x + (size_t)b * C, C));
            }
        }
    }
}

void matvec_batch(const matvec_job *jobs, int n_jobs) {
    size_t work = 0;
    for (int i = 0; i < n_jobs; i++)
        work += (size_t)jobs[i].OC * jobs[i].C * (size_t)(jobs[i].nb > 1 ? jobs[i].nb : 1);
    /* Below this many multiply-adds a parallel region costs more than it
     * saves (a plain branch: even if(0) regions go through libgomp). */
    if (work < MATVEC_PARALLEL_MIN || omp_get_max_threads() < 2 || omp_in_parallel()) {
        for (int i = 0; i < n_jobs; i++) matvec_rows(&jobs[i], 0, jobs[i].OC);
        return;
    }
    /* one region for all jobs: each thread takes its share of every job's
     * rows, in multiples of 4, so no barrier separates the jobs */
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int i = 0; i < n_jobs; i++) {
            const int blocks = (jobs[i].OC + 3) / 4;
            int o0 = (int)((long)blocks * t / nt) * 4, o1 = (int)((long)blocks * (t + 1) / nt) * 4;
            if (o1 > jobs[i].OC) o1 = jobs[i].OC;
            if (o0 < o1) matvec_rows(&jobs[i], o0, o1);
        }
    }
}

// out (OC) [+]= w (OC, C) · x (C) + bias
void matvec(float *out, const float *w, const float *x, const float *bias, int C, int OC,
            int accumulate) {
    matvec_job j = {out, w, x, bias, C, OC, accumulate, 1};
    matvec_batch(&j, 1);
}

/* ---- RMSNorm ------------------------------------------------------------- */

static void rmsnorm_row(float *y, float *rstd, const float *x, const float *w, int C, float eps) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int c = 0; c < C; c++) ss += x[c] * x[c];
    float r = 1.0f / sqrtf(ss / C + eps);
    if (rstd) *rstd = r;
    for (int c = 0; c < C; c++) y[c] = x[c] * r * w[c];
}

// out (N, C) = inp * rstd * w
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                     float eps) {
    if ((size_t)N * C < (1u << 16)) { /* small (decoding): no parallel region at all */
        for (int n = 0; n < N; n++)
            rmsnorm_row(out + (size_t)n * C, rstd ? rstd + n : NULL, inp + (size_t)n * C, w, C, eps);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        rmsnorm_row(out + (size_t)n * C, rstd ? rstd + n : NULL, inp + (size_t)n * C, w, C, eps);
}

// y = x r w, r = (mean(x^2)+eps)^-1/2:
// dx = r (w dy) - x r^3 / C * sum(w dy x);  dw = sum_n dy x r
void rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                      const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= (1u << 16))
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float r = rstd[n], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int c = 0; c < C; c++) dot += w[c] * dy[c] * x[c];
        float k = dot * r * r * r / C;
        for (int c = 0; c < C; c++) dx[c] += r * w[c] * dy[c] - k * x[c];
    }
    if (dw)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float r = rstd[n];
            for (int c = 0; c < C; c++) dw[c] += dy[c] * x[c] * r;
        }
}

/* ---- RoPE ---------------------------------------------------------------- */

void rope_tables(float *cos_t, float *sin_t, const float *inv_freq, int pos0, int T, int hd) {
    int half = hd / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            /* angle in double: positions up to 1e5 times frequencies near 1 */
            double a = (double)(pos0 + t) * inv_freq[i];
            cos_t[(size_t)t * half + i] = (float)cos(a);
            sin_t[(size_t)t * half + i] = (float)sin(a);
        }
}

// one (b, t) row of nh heads in place
static void rope_row(float *x, const float *c, const float *s, int nh, int hd, float sgn) {
    const int half = hd / 2;
    for (int h = 0; h < nh; h++) {
        float *v = x + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            float x0 = v[i], x1 = v[i + half], si = sgn * s[i];
            v[i] = x0 * c[i] - x1 * si;
            v[i + half] = x1 * c[i] + x0 * si;
        }
    }
}

// x (B, T, nh, hd) in place
void rope_apply(float *x, const float *cos_t, const float *sin_t, int B, int T, int nh, int hd,
                int inverse) {
    const int half = hd / 2;
    const float sgn = inverse ? -1.0f : 1.0f;
    const size_t row = (size_t)nh * hd;
    if ((size_t)B * T * row < (1u << 16)) {
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                rope_row(x + ((size_t)b * T + t) * row, cos_t + (size_t)t * half,
                         sin_t + (size_t)t * half, nh, hd, sgn);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            rope_row(x + ((size_t)b * T + t) * row, cos_t + (size_t)t * half,
                     sin_t + (size_t)t * half, nh, hd, sgn);
}

/* ---- attention ------------------------------------------------------------ */

/* Causal attention, one (batch, head) per OpenMP task, in blocks of ATT_BLOCK
 * query rows: block rows r0..r0+n attend to keys 0..r0+n only, so the
 * masked upper triangle beyond each block is never multiplied. Inside a
 * parallel region the OpenMP build of OpenBLAS runs each sgemm on the
 * calling thread. */
#define ATT_BLOCK 64

void attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                       int B, int T, int H, int Hkv, int hd) {
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    const int qs = H * hd, ks = Hkv * hd;
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *qb = q + (size_t)b * T * qs + (size_t)h * hd;
            const float *kb = k + (size_t)b * T * ks + (size_t)(h / group) * hd;
            const float *vb = v + (size_t)b * T * ks + (size_t)(h / group) * hd;
            float *ob = out + (size_t)b * T * qs + (size_t)h * hd;
            float *P = probs + ((size_t)b * H + h) * T * T;
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                const int n = T - r0 < ATT_BLOCK ? T - r0 : ATT_BLOCK, cols = r0 + n;
                float *Pb = P + (size_t)r0 * T;
                // P[r0:r0+n, :cols] = scale * Q[r0:r0+n] · K[:cols]^T
                lc_sgemm(LC_N, LC_T, n, cols, hd, scale,
                            qb + (size_t)r0 * qs, qs, kb, ks, 0.0f, Pb, T);
                for (int i = 0; i < n; i++) {
                    const int t = r0 + i;
                    float *row = Pb + (size_t)i * T;
                    float mx = row[0];
                    for (int j = 1; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
                    float sum = 0.0f;
                    for (int j = 0; j <= t; j++) sum += (row[j] = lc_expf(row[j] - mx));
                    float inv = 1.0f / sum;
                    for (int j = 0; j <= t; j++) row[j] *= inv;
                    /* zero up to the block's last key; later keys are never read */
                    memset(row + t + 1, 0, sizeof(float) * (size_t)(cols - t - 1));
                }
                // O[r0:r0+n] = P[r0:r0+n, :cols] · V[:cols]
                lc_sgemm(LC_N, LC_N, n, hd, cols, 1.0f, Pb, T, vb,
                            ks, 0.0f, ob + (size_t)r0 * qs, qs);
            }
        }
}

/* dP = dO V^T; dS = P * (dP - rowsum(P * dP)); dQ = scale dS K;
 * dK += scale dS^T Q; dV += P^T dO. One (batch, kv head) per task so the
 * heads of a group, which add into the same dK and dV, stay on one thread. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                        const float *q, const float *k, const float *v, float *scratch,
                        int n_scratch, int B, int T, int H, int Hkv, int hd) {
    const int group = H / Hkv;
    const float scale = 1.0f / sqrtf((float)hd);
    const int qs = H * hd, ks = Hkv * hd;
    memset(dk, 0, sizeof(float) * (size_t)B * T * ks);
    memset(dv, 0, sizeof(float) * (size_t)B * T * ks);
    const int nt = n_scratch < 1 ? 1 : n_scratch;
    (void)nt; /* used by the pragma only (unused without OpenMP) */
#pragma omp parallel for collapse(2) schedule(dynamic) num_threads(nt)
    for (int b = 0; b < B; b++)
        for (int kh = 0; kh < Hkv; kh++) {
            float *dS = scratch + (size_t)omp_get_thread_num() * ATT_BLOCK * T;
            const size_t ko = (size_t)b * T * ks + (size_t)kh * hd;
            for (int h = kh * group; h < (kh + 1) * group; h++) {
                const size_t qo = (size_t)b * T * qs + (size_t)h * hd;
                const float *P = probs + ((size_t)b * H + h) * T * T;
                for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                    const int n = T - r0 < ATT_BLOCK ? T - r0 : ATT_BLOCK, cols = r0 + n;
                    const float *Pb = P + (size_t)r0 * T;
                    // dS (n, cols) = dO[r0:r0+n] · V[:cols]^T
                    lc_sgemm(LC_N, LC_T, n, cols, hd, 1.0f,
                                dout + qo + (size_t)r0 * qs, qs, v + ko, ks, 0.0f, dS, T);
                    for (int i = 0; i < n; i++) {
                        const int t = r0 + i;
                        const float *p = Pb + (size_t)i * T;
                        float *d = dS + (size_t)i * T;
                        float dot = 0.0f;
                        for (int j = 0; j <= t; j++) dot += p[j] * d[j];
                        for (int j = 0; j <= t; j++) d[j] = p[j] * (d[j] - dot);
                        for (int j = t + 1; j < cols; j++) d[j] = 0.0f;
                    }
                    // dQ[r0:r0+n] = scale dS · K[:cols]
                    lc_sgemm(LC_N, LC_N, n, hd, cols, scale, dS, T,
                                k + ko, ks, 0.0f, dq + qo + (size_t)r0 * qs, qs);
                    // dK[:cols] += scale dS^T · Q[r0:r0+n]
                    lc_sgemm(LC_T, LC_N, cols, hd, n, scale, dS, T,
                                q + qo + (size_t)r0 * qs, qs, 1.0f, dk + ko, ks);
                    // dV[:cols] += P[r0:r0+n, :cols]^T · dO[r0:r0+n]
                    lc_sgemm(LC_T, LC_N, cols, hd, n, 1.0f, Pb, T,
                                dout + qo + (size_t)r0 * qs, qs, 1.0f, dv + ko, ks);
                }
            }
        }
}

size_t attention_scratch_floats(int T) { return (size_t)ATT_BLOCK * T; }

/* ---- SwiGLU ---------------------------------------------------------------- */

void swiglu_forward(float *h, const float *gate, const float *up, size_t n) {
    if (n < (1u << 16)) {
        for (size_t i = 0; i < n; i++) h[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
        return;
    }
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        h[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// h = g sig(g) u: dg = dh u sig(g) (1 + g (1 - sig(g))), du = dh g sig(g)
void swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                     size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= (1u << 16))
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], s = 1.0f / (1.0f + expf(-g));
        dgate[i] = dh[i] * up[i] * s * (1.0f + g * (1.0f - s));
        dup[i] = dh[i] * g * s;
    }
}

/* ---- helpers ---------------------------------------------------------------- */

void colsum_add(float *out, const float *x, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) out[c] += r[c];
    }
}

void rows_add(float *x, const float *v, int N, int C) {
    for (int n = 0; n < N; n++) {
        float *r = x + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) r[c] += v[c];
    }
}

void axpy(float *y, const float *x, float a, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}
