/* Kernel tests: each optimised kernel against its plain reference, and each
 * backward against central finite differences of its forward.
 *
 * Finite differences run in float32 on O(1) values with step 1e-2 on the
 * scalar objective sum(out * g) for a fixed random g; the tolerance is 2e-2
 * relative (normwise), which a wrong term (sign, missing factor) exceeds by
 * orders of magnitude. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "model.h"
#include "ops.h"
#include "testutil.h"

static void randn(float *p, size_t n, float std, lc_rng *r) {
    for (size_t i = 0; i < n; i++) p[i] = std * lc_rng_normal(r);
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Numerical gradient of sum(f(x) * g) w.r.t. x, by central differences. */
typedef void (*fwd_fn)(float *out, const float *x, void *ctx);
static void numgrad(float *dx, float *x, size_t n, float *out, const float *g, size_t nout,
                    fwd_fn f, void *ctx) {
    const float h = 1e-2f;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + h;
        f(out, x, ctx);
        double p = dot(out, g, nout);
        x[i] = keep - h;
        f(out, x, ctx);
        double q = dot(out, g, nout);
        x[i] = keep;
        dx[i] = (float)((p - q) / (2 * h));
    }
}

Test(kernels, matmul_matches_reference) {
    lc_rng r;
    lc_rng_seed(&r, 1);
    int N = 7, C = 13, OC = 5;
    float inp[7 * 13], w[5 * 13], b[5], out[35], ref[35], dout[35];
    randn(inp, sizeof inp / 4, 1, &r);
    randn(w, sizeof w / 4, 1, &r);
    randn(b, 5, 1, &r);
    randn(dout, 35, 1, &r);
    for (int acc = 0; acc < 2; acc++) {
        for (int i = 0; i < 35; i++) out[i] = ref[i] = 0.5f * i;
        matmul_forward(out, inp, w, b, N, C, OC, acc);
        matmul_forward_ref(ref, inp, w, b, N, C, OC, acc);
        cr_assert_lt(tu_rel_err_f32(out, ref, 35), 1e-6);
    }
    float di[7 * 13] = {0}, dir[7 * 13] = {0}, dw[65] = {0}, dwr[65] = {0}, db[5] = {0}, dbr[5] = {0};
    matmul_backward_input(di, dout, w, N, C, OC);
    matmul_backward_input_ref(dir, dout, w, N, C, OC);
    cr_assert_lt(tu_rel_err_f32(di, dir, 91), 1e-6);
    matmul_backward_weight(dw, db, dout, inp, N, C, OC);
    matmul_backward_weight_ref(dwr, dbr, dout, inp, N, C, OC);
    cr_assert_lt(tu_rel_err_f32(dw, dwr, 65), 1e-6);
    cr_assert_lt(tu_rel_err_f32(db, dbr, 5), 1e-6);
    float mv[5], mvr[5];
    matvec(mv, w, inp, b, C, OC, 0);
    matmul_forward_ref(mvr, inp, w, b, 1, C, OC, 0);
    cr_assert_lt(tu_rel_err_f32(mv, mvr, 5), 1e-6);
}

/* ---- RMSNorm ---- */
typedef struct { const float *w; int N, C; int wrt_w; const float *x; } rms_ctx;
static void rms_fwd(float *out, const float *v, void *p) {
    rms_ctx *c = p;
    if (c->wrt_w) rmsnorm_forward(out, NULL, c->x, v, c->N, c->C, 1e-5f);
    else rmsnorm_forward(out, NULL, v, c->w, c->N, c->C, 1e-5f);
}

Test(kernels, rmsnorm_backward_matches_finite_differences) {
    lc_rng r;
    lc_rng_seed(&r, 2);
    enum { N = 3, C = 10 };
    float x[N * C], w[C], g[N * C], out[N * C], rstd[N], dx[N * C] = {0}, dw[C] = {0}, nx[N * C], nw[C];
    randn(x, N * C, 1, &r);
    randn(w, C, 1, &r);
    randn(g, N * C, 1, &r);
    rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f);
    rmsnorm_backward(dx, dw, g, x, w, rstd, N, C);
    rms_ctx c = {w, N, C, 0, x};
    numgrad(nx, x, N * C, out, g, N * C, rms_fwd, &c);
    cr_assert_lt(tu_rel_err_f32(dx, nx, N * C), 2e-2, "dx err %g", tu_rel_err_f32(dx, nx, N * C));
    c.wrt_w = 1;
    numgrad(nw, w, C, out, g, N * C, rms_fwd, &c);
    cr_assert_lt(tu_rel_err_f32(dw, nw, C), 2e-2);
}

/* ---- RoPE ---- */
typedef struct { const float *cs, *sn; int B, T, nh, hd; } rope_ctx;
static void rope_fwd(float *out, const float *x, void *p) {
    rope_ctx *c = p;
    memcpy(out, x, sizeof(float) * c->B * c->T * c->nh * c->hd);
    rope_apply(out, c->cs, c->sn, c->B, c->T, c->nh, c->hd, 0);
}

Test(kernels, rope_backward_matches_finite_differences) {
    lc_rng r;
    lc_rng_seed(&r, 3);
    enum { B = 2, T = 5, NH = 3, HD = 8, n = B * T * NH * HD };
    float inv[HD / 2], cs[T * HD / 2], sn[T * HD / 2], x[n], g[n], out[n], dx[n], nx[n];
    for (int i = 0; i < HD / 2; i++) inv[i] = powf(100.0f, -2.0f * i / HD);
    rope_tables(cs, sn, inv, 3, T, HD);
    randn(x, n, 1, &r);
    randn(g, n, 1, &r);
    memcpy(dx, g, sizeof dx);
    rope_apply(dx, cs, sn, B, T, NH, HD, 1);
    rope_ctx c = {cs, sn, B, T, NH, HD};
    numgrad(nx, x, n, out, g, n, rope_fwd, &c);
    cr_assert_lt(tu_rel_err_f32(dx, nx, n), 2e-2);
    /* inverse really inverts */
    memcpy(out, x, sizeof out);
    rope_apply(out, cs, sn, B, T, NH, HD, 0);
    rope_apply(out, cs, sn, B, T, NH, HD, 1);
    cr_assert_lt(tu_rel_err_f32(out, x, n), 1e-6);
}

/* ---- attention ---- */
enum { AB = 2, AT = 6, AH = 4, AHKV = 2, AHD = 4 };
enum { AQN = AB * AT * AH * AHD, AKN = AB * AT * AHKV * AHD };
typedef struct { float *q, *k, *v; int which; } att_ctx;
static void att_fwd(float *out, const float *x, void *p) {
    att_ctx *c = p;
    float probs[AB * AH * AT * AT];
    attention_forward(out, probs, c->which == 0 ? x : c->q, c->which == 1 ? x : c->k,
                      c->which == 2 ? x : c->v, AB, AT, AH, AHKV, AHD);
}

Test(kernels, attention_backward_matches_finite_differences) {
    lc_rng r;
    lc_rng_seed(&r, 4);
    float q[AQN], k[AKN], v[AKN], g[AQN], out[AQN], probs[AB * AH * AT * AT];
    float dq[AQN], dk[AKN], dv[AKN], scratch[4 * 64 * AT], num[AQN];
    randn(q, AQN, 1, &r);
    randn(k, AKN, 1, &r);
    randn(v, AKN, 1, &r);
    randn(g, AQN, 1, &r);
    attention_forward(out, probs, q, k, v, AB, AT, AH, AHKV, AHD);
    /* causality: probabilities above the diagonal are zero, rows sum to 1
     * (T = 6 is one block, so every row is written in full) */
    for (int t = 0; t < AT; t++) {
        double s = 0;
        for (int j = 0; j < AT; j++) {
            if (j > t) cr_assert_eq(probs[t * AT + j], 0.0f);
            s += probs[t * AT + j];
        }
        cr_assert_float_eq(s, 1.0, 1e-5);
    }
    attention_backward(dq, dk, dv, g, probs, q, k, v, scratch, 4, AB, AT, AH, AHKV, AHD);
    att_ctx c = {q, k, v, 0};
    numgrad(num, q, AQN, out, g, AQN, att_fwd, &c);
    cr_assert_lt(tu_rel_err_f32(dq, num, AQN), 2e-2, "dq %g", tu_rel_err_f32(dq, num, AQN));
    c.which = 1;
    numgrad(num, k, AKN, out, g, AQN, att_fwd, &c);
    cr_assert_lt(tu_rel_err_f32(dk, num, AKN), 2e-2, "dk %g", tu_rel_err_f32(dk, num, AKN));
    c.which = 2;
    numgrad(num, v, AKN, out, g, AQN, att_fwd, &c);
    cr_assert_lt(tu_rel_err_f32(dv, num, AKN), 2e-2, "dv %g", tu_rel_err_f32(dv, num, AKN));
}

/* ---- SwiGLU ---- */
typedef struct { const float *gate, *up; int wrt_up; size_t n; } sw_ctx;
static void sw_fwd(float *out, const float *x, void *p) {
    sw_ctx *c = p;
    swiglu_forward(out, c->wrt_up ? c->gate : x, c->wrt_up ? x : c->up, c->n);
}

Test(kernels, swiglu_backward_matches_finite_differences) {
    lc_rng r;
    lc_rng_seed(&r, 5);
    enum { n = 40 };
    float gt[n], up[n], g[n], out[n], dg[n], du[n], num[n];
    randn(gt, n, 2, &r);
    randn(up, n, 1, &r);
    randn(g, n, 1, &r);
    swiglu_backward(dg, du, g, gt, up, n);
    sw_ctx c = {gt, up, 0, n};
    numgrad(num, gt, n, out, g, n, sw_fwd, &c);
    cr_assert_lt(tu_rel_err_f32(dg, num, n), 2e-2);
    c.wrt_up = 1;
    numgrad(num, up, n, out, g, n, sw_fwd, &c);
    cr_assert_lt(tu_rel_err_f32(du, num, n), 2e-2);
}

/* Several 64-row blocks (T = 150): the blocked kernel against a plain
 * triple loop, and its backward against finite differences on samples. */
enum { LB = 1, LT = 150, LH = 2, LHKV = 1, LHD = 4 };
enum { LQN = LB * LT * LH * LHD, LKN = LB * LT * LHKV * LHD };
static void naive_attention(float *out, const float *q, const float *k, const float *v) {
    for (int h = 0; h < LH; h++)
        for (int t = 0; t < LT; t++) {
            double s[LT], mx = -1e30, sum = 0;
            for (int j = 0; j <= t; j++) {
                double d = 0;
                for (int i = 0; i < LHD; i++) d += (double)q[(t * LH + h) * LHD + i] * k[j * LHD + i];
                s[j] = d / 2.0; /* 1/sqrt(4) */
                if (s[j] > mx) mx = s[j];
            }
            for (int j = 0; j <= t; j++) sum += (s[j] = exp(s[j] - mx));
            for (int i = 0; i < LHD; i++) {
                double o = 0;
                for (int j = 0; j <= t; j++) o += s[j] / sum * v[j * LHD + i];
                out[(t * LH + h) * LHD + i] = (float)o;
            }
        }
}

static float g_long[LQN];
static double long_objective(const float *q, const float *k, const float *v) {
    static float out[LQN], probs[LB * LH * LT * LT];
    attention_forward(out, probs, q, k, v, LB, LT, LH, LHKV, LHD);
    return dot(out, g_long, LQN);
}

Test(kernels, attention_blocked_matches_naive_over_several_blocks) {
    lc_rng r;
    lc_rng_seed(&r, 6);
    static float q[LQN], k[LKN], v[LKN], out[LQN], ref[LQN], probs[LB * LH * LT * LT];
    static float dq[LQN], dk[LKN], dv[LKN], scratch[2 * 64 * LT];
    randn(q, LQN, 1, &r);
    randn(k, LKN, 1, &r);
    randn(v, LKN, 1, &r);
    randn(g_long, LQN, 1, &r);
    attention_forward(out, probs, q, k, v, LB, LT, LH, LHKV, LHD);
    naive_attention(ref, q, k, v);
    cr_assert_lt(tu_rel_err_f32(out, ref, LQN), 1e-5, "%g", tu_rel_err_f32(out, ref, LQN));
    attention_backward(dq, dk, dv, g_long, probs, q, k, v, scratch, 2, LB, LT, LH, LHKV, LHD);
    const float h = 1e-2f;
    float *xs[3] = {q, k, v}, *gs[3] = {dq, dk, dv};
    int ns[3] = {LQN, LKN, LKN};
    for (int w = 0; w < 3; w++) {
        double mg = 0;
        for (int i = 0; i < ns[w]; i++) mg = fmax(mg, fabs(gs[w][i]));
        for (int i = 7; i < ns[w]; i += ns[w] / 25) {
            float keep = xs[w][i];
            xs[w][i] = keep + h;
            double p = long_objective(q, k, v);
            xs[w][i] = keep - h;
            double m = long_objective(q, k, v);
            xs[w][i] = keep;
            double num = (p - m) / (2 * h);
            cr_assert_lt(fabs(num - gs[w][i]), 2e-2 * mg, "tensor %d [%d]: %g vs %g", w, i, gs[w][i], num);
        }
    }
}

/* ---- decoding helpers ---- */

/* matvec_batch against the plain reference: row counts that are not a
 * multiple of 4, a bias, accumulate, a job large enough to run in parallel
 * and one large enough for the one-row path (more than 2^20 floats). */
Test(kernels, matvec_batch_matches_reference) {
    lc_rng r;
    lc_rng_seed(&r, 11);
    enum { NJ = 4 };
    const int C[NJ] = {13, 64, 300, 1100}, OC[NJ] = {7, 33, 301, 1000};
    float *w[NJ], *x[NJ], *b[NJ], *out[NJ], *ref[NJ];
    matvec_job jobs[NJ];
    for (int i = 0; i < NJ; i++) {
        w[i] = malloc(sizeof(float) * C[i] * OC[i]);
        x[i] = malloc(sizeof(float) * C[i]);
        b[i] = malloc(sizeof(float) * OC[i]);
        out[i] = malloc(sizeof(float) * OC[i]);
        ref[i] = malloc(sizeof(float) * OC[i]);
        randn(w[i], (size_t)C[i] * OC[i], 1.0f, &r);
        randn(x[i], C[i], 1.0f, &r);
        randn(b[i], OC[i], 1.0f, &r);
        randn(out[i], OC[i], 1.0f, &r);
        memcpy(ref[i], out[i], sizeof(float) * OC[i]);
        int acc = i % 2;
        jobs[i] = (matvec_job){out[i], w[i], x[i], i == 1 ? NULL : b[i], C[i], OC[i], acc, 1};
        matmul_forward_ref(ref[i], x[i], w[i], i == 1 ? NULL : b[i], 1, C[i], OC[i], acc);
    }
    matvec_batch(jobs, NJ);
    for (int i = 0; i < NJ; i++) {
        cr_assert_lt(tu_rel_err_f32(out[i], ref[i], OC[i]), 1e-6, "job %d", i);
        /* one job alone (matvec) gives the same bits as inside the batch */
        float *one = malloc(sizeof(float) * OC[i]);
        memcpy(one, ref[i], sizeof(float) * OC[i]);
        matvec(one, w[i], x[i], i == 1 ? NULL : b[i], C[i], OC[i], 0);
        if (i % 2 == 0) cr_assert(!memcmp(one, out[i], sizeof(float) * OC[i]), "job %d", i);
        free(one);
        free(w[i]); free(x[i]); free(b[i]); free(out[i]); free(ref[i]);
    }
}

/* Several x in one job (nb > 1, what prefill and batched decoding use):
 * every output has the bits of a product with that x alone, for lengths
 * around the vector width and its multiples, row counts not a multiple of 4,
 * x counts around the kernels' groups (4 rows x 2 or 4 x, one row x 4 x),
 * and a matrix on the one-row path (more than 2^20 floats); threads 1 and
 * the default. */
Test(kernels, matvec_several_x_equal_one_at_a_time) {
    lc_rng r;
    lc_rng_seed(&r, 12);
    const int Cs[] = {1, 3, 8, 15, 16, 17, 31, 33, 48, 64, 172, 288, 300, 768}, nC = sizeof Cs / sizeof *Cs;
    const int nbs[] = {2, 3, 4, 5, 7, 8, 9, 13, 16, 17};
    for (int big = 0; big < 2; big++)
        for (int ci = 0; ci < nC; ci++) {
            const int C = Cs[ci], OC = big ? (int)((1u << 20) / (unsigned)C) + 7 : 37;
            if (big && C < 172) continue;
            float *w = malloc(sizeof(float) * (size_t)C * OC), *x = malloc(sizeof(float) * (size_t)C * 17);
            float *b = malloc(sizeof(float) * OC), *out = malloc(sizeof(float) * (size_t)OC * 17);
            float *one = malloc(sizeof(float) * OC);
            randn(w, (size_t)C * OC, 1.0f, &r);
            randn(x, (size_t)C * 17, 1.0f, &r);
            randn(b, OC, 1.0f, &r);
            for (int k = 0; k < (int)(sizeof nbs / sizeof *nbs); k++) {
                const int nb = nbs[k];
                matvec_job j = {out, w, x, b, C, OC, 0, nb};
                matvec_batch(&j, 1);
                for (int i = 0; i < nb; i++) {
                    matvec(one, w, x + (size_t)i * C, b, C, OC, 0);
                    cr_assert(!memcmp(one, out + (size_t)i * OC, sizeof(float) * OC),
                              "C %d, OC %d, nb %d: x %d differs from its own product", C, OC, nb, i);
                }
            }
            free(w), free(x), free(b), free(out), free(one);
        }
}

/* lc_expf within 2 ulp of expf over [-87, 88], exactly 0 below -87.34
 * (softmax arguments), 1 at 0. */
Test(kernels, lc_expf_matches_expf) {
    double worst = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.0007f) {
        float a = lc_expf(x), e = expf(x);
        double ulp = fabs((double)a - e) / (nextafterf(e, INFINITY) - e);
        worst = ulp > worst ? ulp : worst;
    }
    cr_assert_leq(worst, 2.0, "max error %.2f ulp", worst);
    cr_assert_eq(lc_expf(0.0f), 1.0f);
    cr_assert_eq(lc_expf(-88.0f), 0.0f);
    /* non-finite inputs (a NaN logit must still give a NaN loss) */
    cr_assert(isnan(lc_expf(NAN)));
    cr_assert_eq(lc_expf(-INFINITY), 0.0f);
    cr_assert_gt(lc_expf(INFINITY), 1e38f); /* huge, not meant for x > 88 */
    cr_assert_eq(lc_expf(-INFINITY), 0.0f);
}

/* lc_sgemm (OpenBLAS in this build) and the portable implementation the
 * device runtime uses, both against a double-precision product, for every
 * transpose pair, strides wider than the matrices, beta 0 and 1, and sizes
 * that are not multiples of the dot product's eight lanes. */
static void gemm_check(int ta, int tb, int M, int N, int K, float alpha, float beta, int portable) {
    lc_rng r;
    lc_rng_seed(&r, (uint64_t)(ta * 1000 + tb * 100 + M + N * 7 + K * 13));
    const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    const int lda = ac + 3, ldb = bc + 2, ldc = N + 1;
    float *A = malloc(sizeof(float) * (size_t)ar * lda), *B = malloc(sizeof(float) * (size_t)br * ldb);
    float *C = malloc(sizeof(float) * (size_t)M * ldc), *C0 = malloc(sizeof(float) * (size_t)M * ldc);
    randn(A, (size_t)ar * lda, 1.0f, &r);
    randn(B, (size_t)br * ldb, 1.0f, &r);
    randn(C0, (size_t)M * ldc, 1.0f, &r);
    memcpy(C, C0, sizeof(float) * (size_t)M * ldc);
    (portable ? lc_sgemm_portable : lc_sgemm)(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
                mag += fabs(a * b);
            }
            double want = alpha * s + beta * C0[(size_t)i * ldc + j];
            double e = fabs(C[(size_t)i * ldc + j] - want) / (mag + 1.0);
            if (e > worst) worst = e;
        }
    cr_expect_lt(worst, 1e-5, "%s gemm ta=%d tb=%d %dx%dx%d: relative error %.3g",
                 portable ? "portable" : "blas", ta, tb, M, N, K, worst);
    free(A), free(B), free(C), free(C0);
}

Test(kernels, gemm_blas_and_portable_match_double_reference) {
    static const int dims[][3] = {{1, 1, 1}, {1, 37, 64}, {5, 3, 7}, {17, 29, 33}, {64, 48, 200}};
    for (int p = 0; p < 2; p++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t d = 0; d < sizeof dims / sizeof *dims; d++) {
                    gemm_check(ta, tb, dims[d][0], dims[d][1], dims[d][2], 1.0f, 0.0f, p);
                    gemm_check(ta, tb, dims[d][0], dims[d][1], dims[d][2], 0.5f, 1.0f, p);
                }
    cr_expect_str_eq(lc_gemm_backend(), "openblas");
}
