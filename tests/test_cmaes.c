/* Tests for calibrate/lib/cmaes.c: convergence on the sphere (2D, 5D), a
 * shifted quadratic inside the box, an optimum outside the box (ends on the
 * boundary), Rosenbrock 2D (a known CMA-ES benchmark: f < 1e-6 within 2000
 * evaluations from (-1, 1) with sigma 0.5), the exact evaluation budget,
 * determinism, the start point as first evaluation, best-point bookkeeping,
 * the default population size, objective failure and bad arguments. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmaes.h"

/* ---- objectives and a recorder ------------------------------------------ */

#define MAX_REC 12000

typedef struct {
    int calls;
    int fail_at;          /* 1-based call that fails (0 = never) */
    const double *shift;  /* optimum of the quadratics (NULL = origin) */
    double xs[MAX_REC][8]; /* evaluated points (first 8 coordinates) */
    double fs[MAX_REC];
} rec;

static rec *rec_new(void) {
    rec *r = calloc(1, sizeof *r);
    cr_assert(r);
    return r;
}

static void rec_point(rec *r, const double *x, int n, double f) {
    if (r->calls < MAX_REC) {
        for (int i = 0; i < n && i < 8; i++) r->xs[r->calls][i] = x[i];
        r->fs[r->calls] = f;
    }
    r->calls++;
}

static int sphere(const double *x, int n, void *ctx, double *f, lc_err *err) {
    rec *r = ctx;
    double s = 0;
    for (int i = 0; i < n; i++) {
        double d = x[i] - (r->shift ? r->shift[i] : 0.0);
        s += d * d;
    }
    if (r->fail_at && r->calls + 1 == r->fail_at) {
        r->calls++;
        return lc_errf(err, "test objective: forward pass failed at call %d", r->calls);
    }
    rec_point(r, x, n, s);
    *f = s;
    return LC_OK;
}

/* An ill-conditioned, non-separable quadratic around shift (d = x - shift):
 * sum_i 10^(3i/(n-1)) d_i^2 + sum_i d_i d_{i+1}, so the covariance has
 * something to learn. Positive definite by Gershgorin (diagonal >= 1 in row 0,
 * >= 10^(3/(n-1)) > 1 elsewhere; off-diagonal row sums <= 1), minimum 0 at shift. */
static int ellipsoid(const double *x, int n, void *ctx, double *f, lc_err *err) {
    rec *r = ctx;
    double s = 0;
    for (int i = 0; i < n; i++) {
        double d = x[i] - r->shift[i];
        s += pow(10.0, n > 1 ? 3.0 * i / (n - 1) : 0.0) * d * d;
    }
    double c = 0;
    for (int i = 0; i + 1 < n; i++) c += (x[i] - r->shift[i]) * (x[i + 1] - r->shift[i + 1]);
    s += c;
    rec_point(r, x, n, s);
    *f = s;
    return LC_OK;
}

/* f = sum_i 10^(6 i/(n-1)) (Q x)_i^2 with Q (n x n, row-major) in r->shift. */
static int rot_ellipsoid(const double *x, int n, void *ctx, double *f, lc_err *err) {
    rec *r = ctx;
    double s = 0;
    for (int i = 0; i < n; i++) {
        double qx = 0;
        for (int j = 0; j < n; j++) qx += r->shift[i * n + j] * x[j];
        s += pow(10.0, 6.0 * i / (n - 1)) * qx * qx;
    }
    rec_point(r, x, n, s);
    *f = s;
    return LC_OK;
}

static int rosenbrock(const double *x, int n, void *ctx, double *f, lc_err *err) {
    rec *r = ctx;
    double s = 0;
    for (int i = 0; i + 1 < n; i++) {
        double a = x[i + 1] - x[i] * x[i], b = 1 - x[i];
        s += 100 * a * a + b * b;
    }
    rec_point(r, x, n, s);
    *f = s;
    return LC_OK;
}

static cmaes_opts opts(int budget, double sigma0, double lo, double hi, uint64_t seed) {
    cmaes_opts o;
    memset(&o, 0, sizeof o);
    o.budget = budget;
    o.sigma0 = sigma0;
    o.lo = lo;
    o.hi = hi;
    o.seed = seed;
    o.lambda = 0;
    o.on_eval = NULL;
    return o;
}

/* ---- convergence --------------------------------------------------------- */

Test(cmaes, sphere_2d_converges) {
    for (uint64_t seed = 1; seed <= 5; seed++) {
        rec *r = rec_new();
        double x[2] = {1.0, -0.8}, best = -1;
        cmaes_opts o = opts(300, 0.5, -1.5, 1.5, seed);
        lc_err err = {{0}};
        cr_assert_eq(cmaes_minimize(sphere, r, x, 2, &o, &best, &err), LC_OK, "%s", err.msg);
        cr_assert_lt(best, 1e-6, "seed %llu: best %g after 300 evaluations",
                     (unsigned long long)seed, best);
        cr_assert_lt(fabs(x[0]) + fabs(x[1]), 3e-3, "x = (%g, %g)", x[0], x[1]);
        cr_assert_eq(r->calls, 300);
        free(r);
    }
}

Test(cmaes, sphere_5d_converges) {
    for (uint64_t seed = 1; seed <= 5; seed++) {
        rec *r = rec_new();
        double x[5] = {0.9, -0.7, 0.5, 1.2, -1.0}, best = -1;
        cmaes_opts o = opts(800, 0.5, -1.5, 1.5, seed);
        lc_err err = {{0}};
        cr_assert_eq(cmaes_minimize(sphere, r, x, 5, &o, &best, &err), LC_OK, "%s", err.msg);
        cr_assert_lt(best, 1e-6, "seed %llu: best %g after 800 evaluations",
                     (unsigned long long)seed, best);
        double s = 0;
        for (int i = 0; i < 5; i++) s += x[i] * x[i];
        cr_assert_float_eq(s, best, 1e-15, "returned x does not match returned value");
        free(r);
    }
}

/* The LoraHub setting (start 0, sigma 0.5, box [-1.5, 1.5], 40 evaluations)
 * on a shifted sphere, n = 8 and 16, over 40 seeds: on average the best
 * point must beat the start clearly and beat random search (39 Gaussian
 * samples around the start with the same sigma, clamped) with the same
 * budget. A single run need not improve on the start at n = 16: a sample's
 * expected value is |shift|^2 + n sigma^2, well above the start's. */
static uint64_t xs_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

static double xs_normal(uint64_t *s) {
    double u = ((double)(xs_next(s) >> 11) + 0.5) / 9007199254740992.0;
    double v = ((double)(xs_next(s) >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

Test(cmaes, lorahub_setting_beats_random_search) {
    double shift[16];
    for (int i = 0; i < 16; i++) shift[i] = 0.6 * sin(1.0 + i);
    const int ns[2] = {8, 16}, runs = 40;
    uint64_t rs_state = 0x1234567ull;
    for (int c = 0; c < 2; c++) {
        int n = ns[c];
        double f0 = 0, cma = 0, rnd = 0;
        for (int i = 0; i < n; i++) f0 += shift[i] * shift[i];
        for (int seed = 1; seed <= runs; seed++) {
            rec *r = rec_new();
            r->shift = shift;
            double x[16] = {0}, best = -1;
            cmaes_opts o = opts(40, 0.5, -1.5, 1.5, (uint64_t)seed);
            lc_err err = {{0}};
            cr_assert_eq(cmaes_minimize(sphere, r, x, n, &o, &best, &err), LC_OK, "%s", err.msg);
            cr_assert_eq(r->calls, 40);
            cr_assert_leq(best, f0);
            cma += best / runs;
            double rbest = f0;
            for (int k = 1; k < 40; k++) {
                double f = 0;
                for (int i = 0; i < n; i++) {
                    double y = 0.5 * xs_normal(&rs_state);
                    y = y < -1.5 ? -1.5 : (y > 1.5 ? 1.5 : y);
                    f += (y - shift[i]) * (y - shift[i]);
                }
                if (f < rbest) rbest = f;
            }
            rnd += rbest / runs;
            free(r);
        }
        cr_log_info("n = %d: start %.4f, mean best CMA-ES %.4f, random search %.4f", n, f0, cma,
                    rnd);
        cr_assert_lt(cma, 0.85 * f0, "n = %d: mean best %g vs start %g", n, cma, f0);
        cr_assert_lt(cma, 0.95 * rnd, "n = %d: CMA-ES %g not better than random search %g", n, cma,
                     rnd);
    }
}

/* Covariance learning: a rotated ellipsoid with condition number 1e6 in 10D.
 * CMA-ES needs about 6000 evaluations to reach 1e-8 here (Hansen's published
 * figures for the ellipsoid); isotropic step-size adaptation alone would need
 * orders of magnitude more. */
Test(cmaes, rotated_ellipsoid_10d_learns_covariance) {
    enum { N = 10 };
    /* orthogonal Q = I - 2 v v^T / |v|^2 (Householder), v dense */
    double v[N], vv = 0, Q[N][N];
    for (int i = 0; i < N; i++) {
        v[i] = 1.0 + 0.3 * i + 0.1 * (i % 3);
        vv += v[i] * v[i];
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) Q[i][j] = (i == j) - 2 * v[i] * v[j] / vv;
    static double q_flat[N * N];
    memcpy(q_flat, Q, sizeof Q);
    rec *r = rec_new();
    r->shift = q_flat; /* ctx carries Q for this objective */
    double x[N], best = -1;
    for (int i = 0; i < N; i++) x[i] = 1.0 - 0.2 * i;
    cmaes_opts o = opts(10000, 0.5, -5, 5, 1);
    lc_err err = {{0}};
    int calls_to_target = -1;
    cr_assert_eq(cmaes_minimize(rot_ellipsoid, r, x, N, &o, &best, &err), LC_OK, "%s", err.msg);
    for (int k = 0; k < r->calls && k < MAX_REC; k++)
        if (r->fs[k] < 1e-8) {
            calls_to_target = k + 1;
            break;
        }
    cr_log_info("rotated ellipsoid 10D: best %g, f < 1e-8 after %d evaluations", best,
                calls_to_target);
    cr_assert_lt(best, 1e-8, "best %g after 10000 evaluations", best);
    free(r);
}

Test(cmaes, shifted_quadratic_inside_box) {
    const double shift[4] = {0.7, -1.1, 0.25, 1.3};
    rec *r = rec_new();
    r->shift = shift;
    double x[4] = {0}, best = -1;
    cmaes_opts o = opts(2000, 0.5, -1.5, 1.5, 7);
    lc_err err = {{0}};
    cr_assert_eq(cmaes_minimize(ellipsoid, r, x, 4, &o, &best, &err), LC_OK, "%s", err.msg);
    cr_assert_lt(best, 1e-8, "best %g", best);
    for (int i = 0; i < 4; i++)
        cr_assert_lt(fabs(x[i] - shift[i]), 1e-4, "x[%d] = %.9g, optimum %.9g", i, x[i], shift[i]);
    free(r);
}

Test(cmaes, optimum_outside_box_ends_on_boundary) {
    /* optimum (2.5, -0.4, -3): coordinates 0 and 2 outside [-1.5, 1.5] */
    const double shift[3] = {2.5, -0.4, -3.0};
    rec *r = rec_new();
    r->shift = shift;
    double x[3] = {0}, best = -1;
    cmaes_opts o = opts(600, 0.5, -1.5, 1.5, 3);
    lc_err err = {{0}};
    cr_assert_eq(cmaes_minimize(sphere, r, x, 3, &o, &best, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(x[0], 1.5, "x[0] = %.17g, expected the upper bound", x[0]);
    cr_assert_eq(x[2], -1.5, "x[2] = %.17g, expected the lower bound", x[2]);
    cr_assert_lt(fabs(x[1] + 0.4), 1e-4, "x[1] = %.9g", x[1]);
    /* constrained minimum: 1^2 + 1.5^2 = 3.25 */
    cr_assert_lt(fabs(best - 3.25), 1e-8, "best %.12g, expected 3.25", best);
    /* every evaluated point lies in the box */
    for (int k = 0; k < r->calls && k < MAX_REC; k++)
        for (int i = 0; i < 3; i++)
            cr_assert(r->xs[k][i] >= -1.5 && r->xs[k][i] <= 1.5, "eval %d x[%d] = %g", k, i,
                      r->xs[k][i]);
    free(r);
}

/* Independent fact: CMA-ES solves 2D Rosenbrock to 1e-6 within 2000
 * evaluations (measured here: 611-708 for seeds 1-5). */
Test(cmaes, rosenbrock_2d) {
    for (uint64_t seed = 1; seed <= 5; seed++) {
        rec *r = rec_new();
        double x[2] = {-1.0, 1.0}, best = -1;
        cmaes_opts o = opts(2000, 0.5, -5.0, 5.0, seed);
        lc_err err = {{0}};
        cr_assert_eq(cmaes_minimize(rosenbrock, r, x, 2, &o, &best, &err), LC_OK, "%s", err.msg);
        cr_assert_lt(best, 1e-6, "seed %llu: best %g at (%g, %g)", (unsigned long long)seed, best,
                     x[0], x[1]);
        cr_assert_lt(fabs(x[0] - 1) + fabs(x[1] - 1), 1e-2);
        int k = 0;
        while (r->fs[k] >= 1e-6) k++;
        cr_log_info("rosenbrock 2D seed %llu: f < 1e-6 after %d evaluations",
                    (unsigned long long)seed, k + 1);
        free(r);
    }
}

/* ---- budget, start point, best ------------------------------------------ */

Test(cmaes, budget_respected_exactly) {
    /* budgets that end mid-generation and on a generation boundary (n = 2:
     * lambda 6, so 1 + 6k ends on a boundary) */
    const int budgets[] = {1, 2, 6, 7, 8, 13, 40, 41};
    for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++) {
        rec *r = rec_new();
        double x[2] = {0.3, 0.2}, best = -1;
        cmaes_opts o = opts(budgets[b], 0.5, -1.5, 1.5, 11);
        lc_err err = {{0}};
        cr_assert_eq(cmaes_minimize(sphere, r, x, 2, &o, &best, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(r->calls, budgets[b], "budget %d: %d calls", budgets[b], r->calls);
        free(r);
    }
}

typedef struct {
    int count;
    int last_k;
    int budget_seen;
    double last_best;
    int monotone;
} progress;

typedef struct {
    rec r;
    progress p;
} rec_prog;

static void on_eval_count(int k, int budget, const double *x, int n, double f, double best,
                          void *ctx) {
    rec_prog *rp = ctx;
    progress *p = &rp->p;
    if (k != p->last_k + 1) p->monotone = 0;
    if (p->count > 0 && best > p->last_best) p->monotone = 0;
    if (best > f) p->monotone = 0;
    p->count++;
    p->last_k = k;
    p->budget_seen = budget;
    p->last_best = best;
}

Test(cmaes, on_eval_called_per_evaluation) {
    rec_prog *rp = calloc(1, sizeof *rp);
    cr_assert(rp);
    rp->p.monotone = 1;
    double x[3] = {0.5, 0.5, 0.5}, best = -1;
    cmaes_opts o = opts(37, 0.5, -1.5, 1.5, 5);
    o.on_eval = on_eval_count;
    lc_err err = {{0}};
    cr_assert_eq(cmaes_minimize(sphere, &rp->r, x, 3, &o, &best, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(rp->p.count, 37);
    cr_assert_eq(rp->p.last_k, 37);
    cr_assert_eq(rp->p.budget_seen, 37);
    cr_assert(rp->p.monotone, "k not 1..budget in order or best not non-increasing");
    cr_assert_eq(rp->p.last_best, best);
    free(rp);
}

Test(cmaes, start_point_is_first_evaluation) {
    rec *r = rec_new();
    double x[3] = {0.25, -0.5, 1.0}, best = -1;
    cmaes_opts o = opts(20, 0.5, -1.5, 1.5, 9);
    lc_err err = {{0}};
    cr_assert_eq(cmaes_minimize(sphere, r, x, 3, &o, &best, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(r->xs[0][0], 0.25);
    cr_assert_eq(r->xs[0][1], -0.5);
    cr_assert_eq(r->xs[0][2], 1.0);
    free(r);

    /* a start point outside the box is clamped before it is evaluated */
    r = rec_new();
    double y[2] = {4.0, -9.0};
    cmaes_opts o1 = opts(1, 0.5, -1.5, 1.5, 9);
    cr_assert_eq(cmaes_minimize(sphere, r, y, 2, &o1, &best, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(r->calls, 1);
    cr_assert_eq(r->xs[0][0], 1.5);
    cr_assert_eq(r->xs[0][1], -1.5);
    cr_assert_eq(y[0], 1.5);
    cr_assert_eq(y[1], -1.5);
    cr_assert_eq(best, 1.5 * 1.5 * 2);
    free(r);
}

Test(cmaes, best_point_is_returned) {
    /* optimum at the start point: every later point is worse, so the start
     * point comes back bit for bit */
    const double shift[2] = {0.3, -0.2};
    rec *r = rec_new();
    r->shift = shift;
    double x[2] = {0.3, -0.2}, best = -1;
    cmaes_opts o = opts(50, 0.5, -1.5, 1.5, 2);
    lc_err err = {{0}};
    cr_assert_eq(cmaes_minimize(sphere, r, x, 2, &o, &best, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(x[0], 0.3);
    cr_assert_eq(x[1], -0.2);
    cr_assert_eq(best, 0.0);
    free(r);

    /* in general: the returned value is the minimum over all evaluations and
     * x is the (first) point that achieved it */
    r = rec_new();
    double z[4] = {1, 1, -1, 0.5};
    cmaes_opts o2 = opts(60, 0.5, -1.5, 1.5, 4);
    cr_assert_eq(cmaes_minimize(sphere, r, z, 4, &o2, &best, &err), LC_OK, "%s", err.msg);
    int kmin = 0;
    for (int k = 1; k < r->calls; k++)
        if (r->fs[k] < r->fs[kmin]) kmin = k;
    cr_assert_eq(best, r->fs[kmin]);
    for (int i = 0; i < 4; i++) cr_assert_eq(z[i], r->xs[kmin][i]);
    cr_assert_gt(kmin, 0, "the search should have improved on the start point");
    cr_assert_lt(kmin, r->calls - 1, "test is weak if the last point is the best");
    free(r);
}

/* ---- determinism --------------------------------------------------------- */

static rec *run_rec(uint64_t seed, int n, int lambda, int budget) {
    rec *r = rec_new();
    double x[64], best = -1;
    for (int i = 0; i < 64; i++) x[i] = (i % 2 ? -0.1 : 0.1) * (1 + i % 8);
    cmaes_opts o = opts(budget, 0.5, -1.5, 1.5, seed);
    o.lambda = lambda;
    lc_err err = {{0}};
    cr_assert_eq(cmaes_minimize(sphere, r, x, n, &o, &best, &err), LC_OK, "%s", err.msg);
    return r;
}

static int same_trajectory(const rec *a, const rec *b, int n) {
    if (a->calls != b->calls) return 0;
    for (int k = 0; k < a->calls && k < MAX_REC; k++) {
        if (memcmp(&a->fs[k], &b->fs[k], sizeof(double)) != 0) return 0;
        if (memcmp(a->xs[k], b->xs[k], (size_t)n * sizeof(double)) != 0) return 0;
    }
    return 1;
}

Test(cmaes, deterministic_for_a_seed) {
    rec *a = run_rec(123, 5, 0, 200), *b = run_rec(123, 5, 0, 200);
    cr_assert(same_trajectory(a, b, 5), "same seed gave different trajectories");
    rec *c = run_rec(124, 5, 0, 200);
    cr_assert_not(same_trajectory(a, c, 5), "different seeds gave the same trajectory");
    /* same start point, different second point */
    cr_assert_eq(memcmp(a->xs[0], c->xs[0], 5 * sizeof(double)), 0);
    cr_assert_neq(memcmp(a->xs[1], c->xs[1], 5 * sizeof(double)), 0);
    free(a);
    free(b);
    free(c);
}

/* Default lambda = 4 + floor(3 ln n): 6 for n = 2, 10 for n = 10. With the
 * same seed, lambda = 0 must reproduce the explicit value bit for bit, and a
 * different lambda must not. */
Test(cmaes, default_lambda) {
    struct {
        int n, lambda;
    } cases[] = {{2, 6}, {10, 10}, {1, 4}, {16, 12}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int n = cases[c].n > 8 ? 8 : cases[c].n; /* recorder keeps 8 coordinates */
        rec *d = run_rec(77, cases[c].n, 0, 120);
        rec *e = run_rec(77, cases[c].n, cases[c].lambda, 120);
        rec *g = run_rec(77, cases[c].n, cases[c].lambda + 1, 120);
        cr_assert(same_trajectory(d, e, n), "n = %d: default lambda is not %d", cases[c].n,
                  cases[c].lambda);
        cr_assert_not(same_trajectory(d, g, n), "n = %d: lambda %d gave the default's run",
                      cases[c].n, cases[c].lambda + 1);
        free(d);
        free(e);
        free(g);
    }
}

/* ---- errors -------------------------------------------------------------- */

Test(cmaes, objective_failure_propagates) {
    for (int at = 1; at <= 9; at += 4) { /* start point, first and second generation */
        rec *r = rec_new();
        r->fail_at = at;
        double x[2] = {0.4, 0.4}, best = 12345;
        cmaes_opts o = opts(40, 0.5, -1.5, 1.5, 1);
        lc_err err = {{0}};
        cr_assert_eq(cmaes_minimize(sphere, r, x, 2, &o, &best, &err), LC_FAIL);
        cr_assert_eq(r->calls, at, "search continued after the failure");
        char want[128];
        snprintf(want, sizeof want, "test objective: forward pass failed at call %d", at);
        cr_assert_str_eq(err.msg, want);
        cr_assert_eq(best, 12345, "best written on failure");
        free(r);
    }
}

static int fail_silently(const double *x, int n, void *ctx, double *f, lc_err *err) {
    return LC_FAIL;
}

Test(cmaes, objective_failure_without_message) {
    double x[2] = {0, 0}, best = 0;
    cmaes_opts o = opts(10, 0.5, -1.5, 1.5, 1);
    lc_err err;
    strcpy(err.msg, "stale message");
    cr_assert_eq(cmaes_minimize(fail_silently, NULL, x, 2, &o, &best, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "objective failed at evaluation 1"), "msg: %s", err.msg);
}

static void expect_bad(int n, cmaes_opts o, const char *needle) {
    rec *r = rec_new();
    double x[70] = {0}, best = 0;
    lc_err err = {{0}};
    cr_assert_eq(cmaes_minimize(sphere, r, x, n, &o, &best, &err), LC_FAIL, "accepted: %s",
                 needle);
    cr_assert_eq(r->calls, 0);
    cr_assert(strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    free(r);
}

Test(cmaes, bad_arguments) {
    cmaes_opts ok = opts(10, 0.5, -1.5, 1.5, 1), o;
    expect_bad(0, ok, "dimension n = 0");
    expect_bad(65, ok, "dimension n = 65");
    expect_bad(-3, ok, "dimension n = -3");
    o = ok, o.budget = 0;
    expect_bad(2, o, "budget = 0");
    o = ok, o.budget = -5;
    expect_bad(2, o, "budget = -5");
    o = ok, o.lo = 1, o.hi = 1;
    expect_bad(2, o, "box [1, 1]");
    o = ok, o.lo = 2, o.hi = -2;
    expect_bad(2, o, "box [2, -2]");
    o = ok, o.hi = NAN;
    expect_bad(2, o, "box");
    o = ok, o.sigma0 = 0;
    expect_bad(2, o, "sigma0 = 0");
    o = ok, o.sigma0 = -0.5;
    expect_bad(2, o, "sigma0 = -0.5");
    o = ok, o.sigma0 = INFINITY;
    expect_bad(2, o, "sigma0 = inf");
    o = ok, o.lambda = 1;
    expect_bad(2, o, "lambda = 1");
    o = ok, o.lambda = -2;
    expect_bad(2, o, "lambda = -2");

    lc_err err = {{0}};
    double x[2] = {0, NAN}, best = 0;
    cr_assert_eq(cmaes_minimize(sphere, NULL, x, 2, &ok, &best, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "x[1]"), "msg: %s", err.msg);
    x[1] = 0;
    cr_assert_eq(cmaes_minimize(NULL, NULL, x, 2, &ok, &best, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "objective"), "msg: %s", err.msg);
    cr_assert_eq(cmaes_minimize(sphere, NULL, x, 2, NULL, &best, &err), LC_FAIL);
    cr_assert_eq(cmaes_minimize(sphere, NULL, x, 2, &ok, NULL, &err), LC_FAIL);
    cr_assert_eq(cmaes_minimize(sphere, NULL, NULL, 2, &ok, &best, &err), LC_FAIL);
    /* n = 1 and n = 64 are accepted */
    rec *r = rec_new();
    double y[64] = {0.5};
    cmaes_opts o64 = opts(30, 0.5, -1.5, 1.5, 1);
    cr_assert_eq(cmaes_minimize(sphere, r, y, 1, &o64, &best, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(cmaes_minimize(sphere, r, y, 64, &o64, &best, &err), LC_OK, "%s", err.msg);
    free(r);
}
