/* cmaes.h: gradient-free minimisation in a box with CMA-ES (Hansen's
 * (mu/mu_w, lambda)-CMA-ES with rank-one and rank-mu updates and
 * cumulative step-size adaptation), for LoraHub's merge weights. Small
 * dimension (n <= 64); deterministic for a given seed. */
#ifndef CMAES_H
#define CMAES_H

#include <stdint.h>

#include "lc_err.h"

/* f(x) to minimise; return LC_FAIL (with err set) to abort the search. */
typedef int (*cmaes_objective)(const double *x, int n, void *ctx, double *f, lc_err *err);

typedef struct {
    int budget;       /* objective evaluations in all (>= 1) */
    double sigma0;    /* initial step size */
    double lo, hi;    /* box bounds for every coordinate (lo < hi) */
    uint64_t seed;
    int lambda;       /* population size; 0 = 4 + floor(3 ln n) */
    /* optional: called after every evaluation (progress display) */
    void (*on_eval)(int k, int budget, const double *x, int n, double f, double best, void *ctx);
} cmaes_opts;

/* Starts at x (clamped into the box) and, on return, x holds the best point
 * evaluated and *best its value. Candidates are sampled around the mean
 * and clamped into the box before they are evaluated. The start point is
 * evaluated first (it counts against the budget). */
int cmaes_minimize(cmaes_objective f, void *ctx, double *x, int n, const cmaes_opts *o,
                   double *best, lc_err *err);

#endif
