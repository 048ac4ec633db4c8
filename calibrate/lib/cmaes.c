/* cmaes.c: the (mu/mu_w, lambda)-CMA-ES of N. Hansen, "The CMA Evolution
 * Strategy: A Tutorial" (arXiv:1604.00772), with full covariance, rank-one
 * and rank-mu updates and cumulative step-size adaptation (CSA), minimising
 * f over the box [lo, hi]^n.
 *
 * Each generation g:
 *   z_k ~ N(0, I), y_k = B D z_k, x_k = m + sigma y_k      (k = 1..lambda)
 *   where C = B D^2 B^T (eigendecomposition by LAPACK dsyev_, every
 *   generation; n <= 64 so this is cheap next to one objective evaluation).
 *   The candidates are sorted by f(clamp(x_k)) and, with the mu best,
 *   <y>_w = sum_i w_i y_{i:lambda}
 *   m      <- m + sigma <y>_w                                   (c_m = 1)
 *   p_sigma <- (1-c_s) p_sigma + sqrt(c_s (2-c_s) mu_eff) C^{-1/2} <y>_w
 *   h_sigma = [ |p_sigma| / sqrt(1-(1-c_s)^(2(g+1))) < (1.4 + 2/(n+1)) E|N(0,I)| ]
 *   p_c    <- (1-c_c) p_c + h_sigma sqrt(c_c (2-c_c) mu_eff) <y>_w
 *   C      <- (1 - c_1 - c_mu) C + c_1 (p_c p_c^T + (1-h_sigma) c_c (2-c_c) C)
 *             + c_mu sum_i w_i y_{i:lambda} y_{i:lambda}^T
 *   sigma  <- sigma exp((c_s/d_s) (|p_sigma| / E|N(0,I)| - 1))
 * with the tutorial's defaults: lambda = 4 + floor(3 ln n), mu =
 * floor(lambda/2), w_i proportional to ln((lambda+1)/2) - ln i (i <= mu,
 * summing to 1; no negative weights), mu_eff = 1/sum w_i^2,
 * c_s = (mu_eff+2)/(n+mu_eff+5), d_s = 1 + 2 max(0, sqrt((mu_eff-1)/(n+1)) - 1)
 * + c_s, c_c = (4+mu_eff/n)/(n+4+2 mu_eff/n), c_1 = 2/((n+1.3)^2+mu_eff),
 * c_mu = min(1-c_1, 2 (mu_eff-2+1/mu_eff)/((n+2)^2+mu_eff)),
 * E|N(0,I)| ~ sqrt(n) (1 - 1/(4n) + 1/(21n^2)).
 *
 * Box: a candidate is clamped coordinate-wise into [lo, hi] before it is
 * evaluated, and the update uses the clamped (repaired, "Lamarckian") point:
 * y_k = (clamp(x_k) - m) / sigma. Because the mean starts in the box and is
 * a convex combination of clamped points, it never leaves the box. As
 * recommended for injected/repaired solutions (Hansen 2011, "Injecting
 * External Solutions Into CMA-ES"), a repaired y_k whose Mahalanobis norm
 * |C^{-1/2} y_k| exceeds sqrt(n) + 2n/(n+2) is scaled down to that length,
 * so repair cannot blow up the step-size or covariance updates.
 *
 * Budget and result: the start point (clamped) is evaluated first, then
 * generations follow until exactly `budget` evaluations have been made; a
 * last, partial generation evaluates only the candidates the budget allows
 * and makes no update. The best point evaluated (earliest on ties) is
 * returned. A NaN objective value ranks as worse than every number and never
 * replaces a numeric best. On any failure (bad arguments, the objective
 * returning non-LC_OK, LAPACK) x and *best are left unchanged; an objective
 * failure keeps the message the objective put in err (a generic one is
 * supplied if it left err empty). on_eval gets k = 1..budget and the same
 * ctx as the objective. If the covariance matrix becomes ill-conditioned
 * (condition number > 1e14) a multiple of I is added to it, as in pycma.
 *
 * Random numbers: splitmix64 seeded from opts->seed, Box-Muller normals; no
 * global state, so runs with the same seed are bit-for-bit reproducible
 * (given the same LAPACK build). */
#include "cmaes.h"
#include "lc_rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (OpenBLAS exports it): symmetric eigendecomposition. */
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                   double *w, double *work, const int *lwork, int *info);

#define CMAES_MAX_N 64
#define CMAES_MAX_LAMBDA 100000
#define CMAES_MAX_COND 1e14

/* ---- random numbers ------------------------------------------------------ */

typedef struct {
    uint64_t s;
    int have_spare;
    double spare;
} cmaes_rng;

/* SplitMix64 as a stream: the state advances by the golden gamma, the
 * output is lc_splitmix64 of the state before the step. */
static uint64_t splitmix64(uint64_t *s) {
    const uint64_t x = *s;
    *s += 0x9e3779b97f4a7c15ull;
    return lc_splitmix64(x);
}

/* Uniform in the open interval (0, 1). */
static double rng_uniform(cmaes_rng *r) {
    return ((double)(splitmix64(&r->s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller; the second value of each pair is kept). */
static double rng_normal(cmaes_rng *r) {
    if (r->have_spare) {
        r->have_spare = 0;
        return r->spare;
    }
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586476925 * u2;
    r->spare = rad * sin(th);
    r->have_spare = 1;
    return rad * cos(th);
}

/* ---- helpers ------------------------------------------------------------- */

static double clampd(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* a better than b: numbers beat NaN; among numbers, smaller wins. */
static int better(double a, double b) { return !isnan(a) && (isnan(b) || a < b); }

typedef struct {
    double f;
    int k;
} ranked;

static int ranked_cmp(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    if (better(a->f, b->f)) return -1;
    if (better(b->f, a->f)) return 1;
    return (a->k > b->k) - (a->k < b->k);
}

/* Eigendecomposition of C (n x n, column-major; the lower triangle is the
 * authoritative one and is copied into the upper) into B (columns
 * are eigenvectors) and d (square roots of the eigenvalues). Repairs a
 * numerically indefinite or ill-conditioned C by adding a multiple of I to
 * it (which leaves the eigenvectors unchanged). */
static int eigen(int n, double *C, double *B, double *d, double *work, int lwork, lc_err *err) {
    int info = 0;
    for (int j = 0; j < n; j++) /* mirror the updated lower triangle into the upper */
        for (int i = j + 1; i < n; i++) C[(size_t)i * n + j] = C[(size_t)j * n + i];
    memcpy(B, C, (size_t)n * n * sizeof *B);
    dsyev_("V", "U", &n, B, &n, d, work, &lwork, &info);
    if (info != 0)
        return lc_errf(err, "cmaes: LAPACK dsyev failed on the %dx%d covariance matrix (info %d)",
                       n, n, info);
    double emin = d[0], emax = d[n - 1]; /* ascending */
    if (!(emax > 0) || !isfinite(emax))
        return lc_errf(err, "cmaes: covariance matrix degenerated (largest eigenvalue %g)", emax);
    if (emin < emax / CMAES_MAX_COND) {
        double add = emax / CMAES_MAX_COND - emin;
        for (int i = 0; i < n; i++) {
            C[(size_t)i * n + i] += add;
            d[i] += add;
        }
    }
    for (int i = 0; i < n; i++) d[i] = sqrt(d[i]);
    return LC_OK;
}

/* ---- the search ---------------------------------------------------------- */

int cmaes_minimize(cmaes_objective f, void *ctx, double *x, int n, const cmaes_opts *o,
                   double *best, lc_err *err) {
    if (!f) return lc_errf(err, "cmaes: no objective function given");
    if (!x || !o || !best) return lc_errf(err, "cmaes: x, opts and best must not be NULL");
    if (n < 1 || n > CMAES_MAX_N)
        return lc_errf(err, "cmaes: dimension n = %d, expected 1..%d", n, CMAES_MAX_N);
    if (o->budget < 1)
        return lc_errf(err, "cmaes: budget = %d evaluations, expected >= 1", o->budget);
    if (!isfinite(o->lo) || !isfinite(o->hi) || !(o->lo < o->hi))
        return lc_errf(err, "cmaes: box [%g, %g] is invalid, expected finite lo < hi", o->lo,
                       o->hi);
    if (!isfinite(o->sigma0) || !(o->sigma0 > 0))
        return lc_errf(err, "cmaes: sigma0 = %g, expected a finite value > 0", o->sigma0);
    if (o->lambda != 0 && (o->lambda < 2 || o->lambda > CMAES_MAX_LAMBDA))
        return lc_errf(err, "cmaes: lambda = %d, expected 0 (default) or 2..%d", o->lambda,
                       CMAES_MAX_LAMBDA);
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return lc_errf(err, "cmaes: start point x[%d] = %g is not finite", i, x[i]);

    const double lo = o->lo, hi = o->hi, dn = n;

    /* memory: one block of doubles plus the ranking and LAPACK workspace */
    const int lambda = o->lambda ? o->lambda : 4 + (int)floor(3.0 * log(dn));
    const int mu = lambda / 2;
    const size_t nn = (size_t)n * n, nl = (size_t)lambda * n;
    double *mem = lc_malloc((2 * nn + 7 * (size_t)n + 2 * nl + 2 * (size_t)lambda) * sizeof(double),
                            err);
    ranked *rank = mem ? lc_malloc((size_t)lambda * sizeof *rank, err) : NULL;
    double *work = NULL;
    if (!rank) {
        free(mem);
        return LC_FAIL;
    }
    double *C = mem, *B = C + nn, *m = B + nn, *ps = m + n, *pc = ps + n, *d = pc + n;
    double *ybar = d + n, *tmp = ybar + n, *xbest = tmp + n;
    double *ary = xbest + n, *arx = ary + nl, *fit = arx + nl, *wts = fit + lambda;

    /* strategy parameters (tutorial defaults) */
    double wsum = 0, w2sum = 0;
    for (int i = 0; i < mu; i++) wsum += wts[i] = log((lambda + 1) / 2.0) - log(i + 1.0);
    for (int i = 0; i < mu; i++) {
        wts[i] /= wsum;
        w2sum += wts[i] * wts[i];
    }
    const double mueff = 1.0 / w2sum;
    const double cs = (mueff + 2) / (dn + mueff + 5);
    const double ds = 1 + 2 * fmax(0.0, sqrt((mueff - 1) / (dn + 1)) - 1) + cs;
    const double cc = (4 + mueff / dn) / (dn + 4 + 2 * mueff / dn);
    const double c1 = 2 / ((dn + 1.3) * (dn + 1.3) + mueff);
    const double cmu = fmin(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((dn + 2) * (dn + 2) + mueff));
    const double chin = sqrt(dn) * (1 - 1 / (4 * dn) + 1 / (21 * dn * dn));
    const double ymax = sqrt(dn) + 2 * dn / (dn + 2); /* Mahalanobis cap for repaired steps */

    /* LAPACK workspace: query the optimal size (at least the minimum 3n-1) */
    int lwork = -1, info = 0;
    {
        double q = 0;
        dsyev_("V", "U", &n, B, &n, d, &q, &lwork, &info);
        int minw = 3 * n - 1 > 1 ? 3 * n - 1 : 1;
        lwork = (info == 0 && q >= minw && q < 1e7) ? (int)q : minw;
    }
    work = lc_malloc((size_t)lwork * sizeof *work, err);
    if (!work) {
        free(rank);
        free(mem);
        return LC_FAIL;
    }

    cmaes_rng rng = {o->seed, 0, 0.0};
    double sigma = o->sigma0, fbest = NAN;
    int evals = 0, rc = LC_OK;

    memset(C, 0, nn * sizeof *C);
    memset(B, 0, nn * sizeof *B);
    for (int i = 0; i < n; i++) {
        C[(size_t)i * n + i] = B[(size_t)i * n + i] = d[i] = 1;
        ps[i] = pc[i] = 0;
        m[i] = clampd(x[i], lo, hi);
    }

    /* the start point is the first evaluation */
    {
        double fv = NAN;
        if (err) err->msg[0] = '\0';
        if (f(m, n, ctx, &fv, err) != LC_OK) {
            if (err && !err->msg[0]) lc_errf(err, "cmaes: objective failed at evaluation 1");
            rc = LC_FAIL;
            goto done;
        }
        evals = 1;
        fbest = fv;
        memcpy(xbest, m, (size_t)n * sizeof *m);
        if (o->on_eval) o->on_eval(evals, o->budget, m, n, fv, fbest, ctx);
    }

    for (int gen = 0; evals < o->budget; gen++) {
        /* sample and evaluate */
        int nev = lambda;
        if (nev > o->budget - evals) nev = o->budget - evals;
        for (int k = 0; k < nev; k++) {
            double *y = ary + (size_t)k * n, *xk = arx + (size_t)k * n;
            for (int i = 0; i < n; i++) tmp[i] = d[i] * rng_normal(&rng);
            int clamped = 0;
            for (int r = 0; r < n; r++) {
                double s = 0;
                for (int i = 0; i < n; i++) s += B[(size_t)i * n + r] * tmp[i];
                y[r] = s;
                double xr = m[r] + sigma * s;
                xk[r] = clampd(xr, lo, hi);
                if (xk[r] != xr) clamped = 1;
            }
            if (clamped) {
                /* repaired step, capped in Mahalanobis norm */
                for (int r = 0; r < n; r++) y[r] = (xk[r] - m[r]) / sigma;
                double s2 = 0;
                for (int i = 0; i < n; i++) {
                    double s = 0;
                    for (int r = 0; r < n; r++) s += B[(size_t)i * n + r] * y[r];
                    s /= d[i];
                    s2 += s * s;
                }
                double norm = sqrt(s2);
                if (norm > ymax)
                    for (int r = 0; r < n; r++) y[r] *= ymax / norm;
            }
            double fv = NAN;
            if (err) err->msg[0] = '\0';
            if (f(xk, n, ctx, &fv, err) != LC_OK) {
                if (err && !err->msg[0])
                    lc_errf(err, "cmaes: objective failed at evaluation %d", evals + 1);
                rc = LC_FAIL;
                goto done;
            }
            evals++;
            fit[k] = fv;
            if (better(fv, fbest)) {
                fbest = fv;
                memcpy(xbest, xk, (size_t)n * sizeof *xk);
            }
            if (o->on_eval) o->on_eval(evals, o->budget, xk, n, fv, fbest, ctx);
        }
        if (nev < lambda || evals >= o->budget) break; /* no update after the last evaluation */

        /* selection */
        for (int k = 0; k < lambda; k++) rank[k] = (ranked){fit[k], k};
        qsort(rank, (size_t)lambda, sizeof *rank, ranked_cmp);

        /* mean */
        for (int r = 0; r < n; r++) {
            double s = 0;
            for (int i = 0; i < mu; i++) s += wts[i] * ary[(size_t)rank[i].k * n + r];
            ybar[r] = s;
            m[r] = clampd(m[r] + sigma * s, lo, hi); /* clamp only guards rounding */
        }

        /* p_sigma with C^{-1/2} ybar = B D^{-1} B^T ybar */
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int r = 0; r < n; r++) s += B[(size_t)i * n + r] * ybar[r];
            tmp[i] = s / d[i];
        }
        double csn = sqrt(cs * (2 - cs) * mueff), psn2 = 0;
        for (int r = 0; r < n; r++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += B[(size_t)i * n + r] * tmp[i];
            ps[r] = (1 - cs) * ps[r] + csn * s;
            psn2 += ps[r] * ps[r];
        }
        double psn = sqrt(psn2);
        int hsig = psn / sqrt(1 - pow(1 - cs, 2.0 * (gen + 1))) < (1.4 + 2 / (dn + 1)) * chin;

        /* p_c */
        double ccn = sqrt(cc * (2 - cc) * mueff);
        for (int r = 0; r < n; r++) pc[r] = (1 - cc) * pc[r] + (hsig ? ccn * ybar[r] : 0.0);

        /* C: rank-one and rank-mu updates (lower triangle, then mirrored) */
        double dh = hsig ? 0.0 : cc * (2 - cc);
        double keep = 1 - c1 - cmu + c1 * dh;
        for (int j = 0; j < n; j++)
            for (int i = j; i < n; i++) {
                double rmu = 0;
                for (int q = 0; q < mu; q++) {
                    const double *y = ary + (size_t)rank[q].k * n;
                    rmu += wts[q] * y[i] * y[j];
                }
                C[(size_t)j * n + i] = keep * C[(size_t)j * n + i] + c1 * pc[i] * pc[j] + cmu * rmu;
            }

        /* sigma (CSA) */
        sigma *= exp((cs / ds) * (psn / chin - 1));
        if (!isfinite(sigma) || sigma > 1e6 * (hi - lo)) sigma = 1e6 * (hi - lo);

        rc = eigen(n, C, B, d, work, lwork, err);
        if (rc != LC_OK) goto done;
    }

    memcpy(x, xbest, (size_t)n * sizeof *x);
    *best = fbest;
done:
    free(work);
    free(rank);
    free(mem);
    return rc;
}
