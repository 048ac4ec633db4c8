/* merge.c: LoRA merge methods (calibrate/MERGING.md gives every formula).
 *
 * All arithmetic on task vectors is float64: tau_i = s_i B_i A_i (out, in)
 * is formed with dgemm from the float32 factors, then combined per method.
 * Results are stored as float32 (a LoRA or a delta added into weights). */
#include "merge.h"
#include "lc_rng.h"

#include "gemm.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const MERGE_NAMES[] = {"linear", "concat", "svd", "ties", "dare_linear",
                                   "dare_ties", "slerp", "lorahub", "learned", NULL};

/* LAPACK (OpenBLAS exports it); the on-device runtime (LC_NO_LAPACK) has
 * none, and refuses the merges that need an SVD at load time. */
#ifndef LC_NO_LAPACK
extern void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda,
                    double *s, double *u, const int *ldu, double *vt, const int *ldvt,
                    double *work, const int *lwork, int *iwork, int *info);
#endif

void merge_spec_default(merge_spec *s, merge_method method) {
    memset(s, 0, sizeof *s);
    s->method = method;
    for (int i = 0; i < ADAPTER_MAX; i++) s->weights[i] = 1.0;
    s->density = 1.0;
    s->lambda = 1.0;
    s->mean = TIES_MEAN_COUNT;
    s->t = 0.5;
}

int merge_gives_lora(const merge_spec *s) {
    switch (s->method) {
    case MERGE_CONCAT: case MERGE_SVD: case MERGE_LORAHUB: case MERGE_LEARNED: return 1;
    case MERGE_TIES: case MERGE_DARE_LINEAR: case MERGE_DARE_TIES: return s->svd_rank > 0;
    default: return 0;
    }
}

static int is_adapted(lora *const *ls, int n, int l, int m) {
    for (int i = 0; i < n; i++)
        if (ls[i]->A[l * MOD_COUNT + m]) return 1;
    return 0;
}

static int sum_rank(lora *const *ls, int n) {
    int r = 0;
    for (int i = 0; i < n; i++) r += ls[i]->rank;
    return r;
}

int merge_spec_validate(const merge_spec *s, lora *const *ls, int n, const model_config *c,
                        lc_err *err) {
    if ((int)s->method < 0 || s->method >= MERGE_COUNT) return lc_errf(err, "merge.method: unknown method");
    const char *name = MERGE_NAMES[s->method];
    if (n < 1 || n > ADAPTER_MAX)
        return lc_errf(err, "merge '%s': needs 1 to %d adapters, found %d", name, ADAPTER_MAX, n);
    for (int i = 0; i < n; i++) {
        if (ls[i]->n_layers != c->n_layers)
            return lc_errf(err, "merge '%s': adapter %d ('%s') has %d layers, the model %d", name, i,
                           ls[i]->name, ls[i]->n_layers, c->n_layers);
        if (!isfinite(s->weights[i]))
            return lc_errf(err, "merge.weights[%d]: must be a finite number", i);
    }
    if (!isfinite(s->lambda)) return lc_errf(err, "merge.lambda: must be a finite number");
    int ties_like = s->method == MERGE_TIES || s->method == MERGE_DARE_LINEAR ||
                    s->method == MERGE_DARE_TIES;
    if (ties_like && !(s->density > 0.0 && s->density <= 1.0))
        return lc_errf(err, "merge.density: must be in (0, 1] for '%s', found %g", name, s->density);
    if (s->svd_rank < 0) return lc_errf(err, "merge.svd_rank: must be >= 0, found %d", s->svd_rank);
    if (s->method == MERGE_SVD && s->svd_rank <= 0)
        return lc_errf(err, "merge.svd_rank: method 'svd' needs a positive rank");
    if (s->svd_rank > 0 && (s->method == MERGE_SVD || ties_like)) {
        for (int l = 0; l < c->n_layers; l++)
            for (int m = 0; m < MOD_COUNT; m++) {
                if (!is_adapted(ls, n, l, m)) continue;
                int in = module_in_dim(c, m), out = module_out_dim(c, m);
                if (s->svd_rank > (in < out ? in : out))
                    return lc_errf(err, "merge.svd_rank: rank %d is larger than module %s (%d x %d)",
                                   s->svd_rank, module_name(m), out, in);
            }
    } else if (s->svd_rank > 0) {
        return lc_errf(err, "merge.svd_rank: not used by method '%s'", name);
    }
    if (s->method == MERGE_CONCAT || s->method == MERGE_LEARNED) {
        int R = sum_rank(ls, n);
        for (int m = 0; m < MOD_COUNT; m++) {
            int in = module_in_dim(c, m), out = module_out_dim(c, m);
            int any = 0;
            for (int l = 0; l < c->n_layers; l++) any |= is_adapted(ls, n, l, m);
            if (any && R > (in < out ? in : out))
                return lc_errf(err, "merge '%s': the concatenated rank %d is larger than module %s "
                               "(%d x %d); use 'linear' (a dense delta) instead", name, R,
                               module_name(m), out, in);
        }
    }
    if (s->method == MERGE_SLERP) {
        if (n != 2) return lc_errf(err, "merge 'slerp': needs exactly 2 adapters, found %d", n);
        if (!(s->t >= 0.0 && s->t <= 1.0)) return lc_errf(err, "merge.t: must be in [0, 1], found %g", s->t);
        if (s->weights[0] != 1.0 || s->weights[1] != 1.0)
            return lc_errf(err, "merge.weights: 'slerp' takes t, not weights (leave them at 1)");
    }
    if (s->method == MERGE_LORAHUB) {
        for (int i = 1; i < n; i++)
            if (ls[i]->rank != ls[0]->rank || fabsf(ls[i]->scale - ls[0]->scale) > 1e-6f * fabsf(ls[0]->scale))
                return lc_errf(err, "merge 'lorahub': adapters must share rank and scale (it "
                               "averages A and B); adapter %d has rank %d scale %g, adapter 0 rank "
                               "%d scale %g", i, ls[i]->rank, ls[i]->scale, ls[0]->rank, ls[0]->scale);
    }
    return LC_OK;
}

/* ---- task vectors --------------------------------------------------------- */

/* tau (out, in) = s B A in float64; zero when the adapter skips (l, m). */
static int task_vector(const lora *lr, const model_config *c, int l, int m, double *tau, lc_err *err) {
    const int in = module_in_dim(c, m), out = module_out_dim(c, m), r = lr->rank;
    const int s = l * MOD_COUNT + m;
    memset(tau, 0, sizeof(double) * out * in);
    if (!lr->A[s]) return LC_OK;
    double *a = malloc(sizeof(double) * r * in), *b = malloc(sizeof(double) * out * r);
    if (!a || !b) {
        free(a), free(b);
        return lc_errf(err, "out of memory");
    }
    for (size_t k = 0; k < (size_t)r * in; k++) a[k] = lr->A[s][k];
    for (size_t k = 0; k < (size_t)out * r; k++) b[k] = lr->B[s][k];
    /* the scale in float64 from alpha and r (lr->scale is its float32 copy) */
    const double scale = lr->rslora ? (double)lr->alpha / sqrt((double)r) : (double)lr->alpha / r;
    // tau (out, in) = scale * B (out, r) · A (r, in)
    lc_dgemm(LC_N, LC_N, out, in, r, scale, b, r, a, in, 0.0, tau,
                in);
    free(a), free(b);
    return LC_OK;
}

/* In place: keep the k = floor(d n) largest |v| (ties at the cut in index
 * order), zero the rest. */
static int trim_magnitude(double *v, size_t n, double d, lc_err *err) {
    size_t k = (size_t)floor(d * (double)n);
    if (k >= n) return LC_OK;
    if (k == 0) {
        memset(v, 0, sizeof(double) * n);
        return LC_OK;
    }
    double *w = malloc(sizeof(double) * n);
    if (!w) return lc_errf(err, "out of memory");
    for (size_t i = 0; i < n; i++) w[i] = fabs(v[i]);
    /* quickselect: the k-th largest value (index k-1 in descending order) */
    size_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        double pivot = w[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (w[i] > pivot) i++;
            while (w[j] < pivot) j--;
            if (i <= j) {
                double t = w[i];
                w[i] = w[j], w[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    double thr = w[want];
    free(w);
    size_t above = 0;
    for (size_t i = 0; i < n; i++) above += fabs(v[i]) > thr;
    size_t eq_left = k - above;
    for (size_t i = 0; i < n; i++) {
        double a = fabs(v[i]);
        if (a > thr) continue;
        if (a == thr && eq_left > 0) {
            eq_left--;
            continue;
        }
        v[i] = 0.0;
    }
    return LC_OK;
}

/* v *= mask / d with the DARE mask of (seed, l, m, i). */
static void dare_drop(double *v, size_t n, double d, uint64_t seed, int l, int m, int i) {
    if (d >= 1.0) return;
    const uint64_t stream = seed ^ ((uint64_t)((l * MOD_COUNT + m) * 16 + i) << 40);
    const uint64_t thresh = (uint64_t)floor(d * 4294967296.0);
    for (size_t e = 0; e < n; e++) {
        uint64_t u = lc_splitmix64(stream + e) >> 32;
        v[e] = u < thresh ? v[e] / d : 0.0;
    }
}

/* out = lambda * disjoint mean of t[i] (n tensors of size len) under the
 * elected sign; weights w for the "weight" mean. */
static void ties_combine(double *out, double *const *t, const double *w, int n, size_t len,
                         ties_mean mean, double lambda) {
    for (size_t e = 0; e < len; e++) {
        double sum = 0.0;
        for (int i = 0; i < n; i++) sum += t[i][e];
        const double sigma = sum >= 0.0 ? 1.0 : -1.0;
        double acc = 0.0, cnt = 0.0, wsum = 0.0;
        for (int i = 0; i < n; i++) {
            double v = t[i][e];
            if (v == 0.0 || (v > 0.0 ? 1.0 : -1.0) != sigma) continue;
            acc += v;
            cnt += 1.0;
            wsum += w[i];
        }
        double div = mean == TIES_MEAN_COUNT ? (cnt > 1.0 ? cnt : 1.0) : (wsum != 0.0 ? wsum : 1.0);
        out[e] = lambda * acc / div;
    }
}

/* a (out, in) <- its rank-k truncated SVD product. */
static int truncate_rank(double *a, int out, int in, int k, lc_err *err) {
    double *U = malloc(sizeof(double) * out * k), *S = malloc(sizeof(double) * k),
           *Vt = malloc(sizeof(double) * k * in);
    int rc = LC_FAIL;
    if (!U || !S || !Vt) {
        lc_errf(err, "out of memory");
        goto done;
    }
    if (svd_truncated(a, out, in, k, U, S, Vt, err)) goto done;
    for (int i = 0; i < out; i++)
        for (int j = 0; j < k; j++) U[(size_t)i * k + j] *= S[j];
    lc_dgemm(LC_N, LC_N, out, in, k, 1.0, U, k, Vt, in, 0.0, a, in);
    rc = LC_OK;
done:
    free(U), free(S), free(Vt);
    return rc;
}

static double coef_of(const merge_spec *s, int i, int slot) {
    return s->coef && s->coef[i] ? s->coef[i][slot] : 1.0;
}

int merge_module_delta(const merge_spec *s, lora *const *ls, int n, const model_config *c,
                       int layer, module_kind m, double *out, int *adapted, lc_err *err) {
    const int in = module_in_dim(c, m), o = module_out_dim(c, m);
    const size_t len = (size_t)o * in;
    const int slot = layer * MOD_COUNT + m;
    memset(out, 0, sizeof(double) * len);
    *adapted = is_adapted(ls, n, layer, m);
    if (!*adapted) return LC_OK;
    double *t[ADAPTER_MAX] = {0};
    int rc = LC_FAIL;
    for (int i = 0; i < n; i++)
        if (!(t[i] = malloc(sizeof(double) * len))) {
            lc_errf(err, "out of memory");
            goto done;
        }
    if (s->method == MERGE_LORAHUB) {
        /* s * (sum w_i B_i) (sum w_i A_i) */
        const int r = ls[0]->rank;
        double *sa = calloc((size_t)r * in, sizeof(double)), *sb = calloc((size_t)o * r, sizeof(double));
        if (!sa || !sb) {
            free(sa), free(sb);
            lc_errf(err, "out of memory");
            goto done;
        }
        for (int i = 0; i < n; i++) {
            const lora *lr = ls[i];
            if (!lr->A[slot]) continue;
            for (size_t k = 0; k < (size_t)r * in; k++) sa[k] += s->weights[i] * lr->A[slot][k];
            for (size_t k = 0; k < (size_t)o * r; k++) sb[k] += s->weights[i] * lr->B[slot][k];
        }
        lc_dgemm(LC_N, LC_N, o, in, r, ls[0]->scale, sb, r, sa, in,
                    0.0, out, in);
        free(sa), free(sb);
        rc = LC_OK;
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (task_vector(ls[i], c, layer, m, t[i], err)) goto done;
    switch (s->method) {
    case MERGE_LINEAR: case MERGE_CONCAT: case MERGE_SVD: case MERGE_LEARNED:
        for (int i = 0; i < n; i++) {
            const double f = s->weights[i] * (s->method == MERGE_LEARNED ? coef_of(s, i, slot) : 1.0);
            for (size_t e = 0; e < len; e++) out[e] += f * t[i][e];
        }
        if (s->method == MERGE_SVD && truncate_rank(out, o, in, s->svd_rank, err)) goto done;
        break;
    case MERGE_TIES: case MERGE_DARE_LINEAR: case MERGE_DARE_TIES:
        for (int i = 0; i < n; i++) {
            if (s->method == MERGE_TIES) {
                if (trim_magnitude(t[i], len, s->density, err)) goto done;
            } else {
                dare_drop(t[i], len, s->density, s->seed, layer, m, i);
            }
            for (size_t e = 0; e < len; e++) t[i][e] *= s->weights[i];
        }
        if (s->method == MERGE_DARE_LINEAR) {
            for (int i = 0; i < n; i++)
                for (size_t e = 0; e < len; e++) out[e] += s->lambda * t[i][e];
        } else {
            ties_combine(out, t, s->weights, n, len, s->mean, s->lambda);
        }
        if (s->svd_rank > 0 && truncate_rank(out, o, in, s->svd_rank, err)) goto done;
        break;
    case MERGE_SLERP: {
        double n0 = 0, n1 = 0, dot = 0;
        for (size_t e = 0; e < len; e++) {
            n0 += t[0][e] * t[0][e];
            n1 += t[1][e] * t[1][e];
            dot += t[0][e] * t[1][e];
        }
        n0 = sqrt(n0), n1 = sqrt(n1);
        double c0 = 1.0 - s->t, c1 = s->t;
        if (n0 > 0 && n1 > 0) {
            double cs = dot / (n0 * n1);
            cs = cs > 1.0 ? 1.0 : cs < -1.0 ? -1.0 : cs;
            if (fabs(cs) <= 0.9995) {
                double th = acos(cs), st = sin(th);
                c0 = sin((1.0 - s->t) * th) / st;
                c1 = sin(s->t * th) / st;
            }
        }
        for (size_t e = 0; e < len; e++) out[e] = c0 * t[0][e] + c1 * t[1][e];
        break;
    }
    default:
        lc_errf(err, "merge: method %d has no dense form", (int)s->method);
        goto done;
    }
    rc = LC_OK;
done:
    for (int i = 0; i < n; i++) free(t[i]);
    return rc;
}

/* ---- results ----------------------------------------------------------------- */

static void union_layers_modules(lora *const *ls, int n, const model_config *c, unsigned *mask,
                                 unsigned char *on) {
    *mask = 0;
    for (int i = 0; i < n; i++) *mask |= ls[i]->module_mask;
    for (int l = 0; l < c->n_layers; l++) {
        on[l] = 0;
        for (int m = 0; m < MOD_COUNT; m++) on[l] |= is_adapted(ls, n, l, m);
    }
}

int merge_to_lora(const merge_spec *s, lora *const *ls, int n, const model_config *c, lora *out,
                  lc_err *err) {
    memset(out, 0, sizeof *out);
    if (!merge_gives_lora(s))
        return lc_errf(err, "merge '%s' gives a dense delta, not a LoRA", MERGE_NAMES[s->method]);
    if (merge_spec_validate(s, ls, n, c, err)) return LC_FAIL;
    const int L = c->n_layers;
    unsigned mask;
    unsigned char *on = malloc(L);
    if (!on) return lc_errf(err, "out of memory");
    union_layers_modules(ls, n, c, &mask, on);
    int rank, rc = LC_FAIL;
    double *delta = NULL, *U = NULL, *S = NULL, *Vt = NULL;
    if (s->method == MERGE_CONCAT || s->method == MERGE_LEARNED) rank = sum_rank(ls, n);
    else if (s->method == MERGE_LORAHUB) rank = ls[0]->rank;
    else rank = s->svd_rank;
    if (s->method == MERGE_LORAHUB) {
        if (lora_init(out, c, rank, ls[0]->alpha, ls[0]->rslora, mask, on, err)) goto done;
    } else if (lora_init(out, c, rank, (float)rank, 0, mask, on, err)) { /* scale 1 */
        goto done;
    }
    snprintf(out->name, sizeof out->name, "merge:%s", MERGE_NAMES[s->method]);
    for (int l = 0; l < L; l++)
        for (int m = 0; m < MOD_COUNT; m++) {
            const int slot = l * MOD_COUNT + m;
            if (!out->A[slot]) continue;
            const int in = module_in_dim(c, m), o = module_out_dim(c, m);
            float *A = out->A[slot], *B = out->B[slot];
            if (s->method == MERGE_CONCAT || s->method == MERGE_LEARNED) {
                int row = 0; /* A rows / B columns of adapter i start here */
                for (int i = 0; i < n; i++) {
                    const lora *lr = ls[i];
                    const int r = lr->rank;
                    if (lr->A[slot]) {
                        const double f = s->weights[i] * lr->scale *
                                         (s->method == MERGE_LEARNED ? coef_of(s, i, slot) : 1.0);
                        memcpy(A + (size_t)row * in, lr->A[slot], sizeof(float) * r * in);
                        for (int oo = 0; oo < o; oo++)
                            for (int j = 0; j < r; j++)
                                B[(size_t)oo * rank + row + j] = (float)(f * lr->B[slot][(size_t)oo * r + j]);
                    }
                    row += r;
                }
            } else if (s->method == MERGE_LORAHUB) {
                for (int i = 0; i < n; i++) {
                    const lora *lr = ls[i];
                    if (!lr->A[slot]) continue;
                    const float w = (float)s->weights[i];
                    for (size_t k = 0; k < (size_t)rank * in; k++) A[k] += w * lr->A[slot][k];
                    for (size_t k = 0; k < (size_t)o * rank; k++) B[k] += w * lr->B[slot][k];
                }
            } else { /* svd of the (untruncated for ties/dare) delta */
                merge_spec full = *s;
                if (s->method == MERGE_SVD) full.method = MERGE_LINEAR;
                full.svd_rank = 0;
                int adapted;
                free(delta), free(U), free(S), free(Vt);
                delta = malloc(sizeof(double) * o * in);
                U = malloc(sizeof(double) * o * rank);
                S = malloc(sizeof(double) * rank);
                Vt = malloc(sizeof(double) * rank * in);
                if (!delta || !U || !S || !Vt) {
                    lc_errf(err, "out of memory");
                    goto done;
                }
                if (merge_module_delta(&full, ls, n, c, l, m, delta, &adapted, err) ||
                    svd_truncated(delta, o, in, rank, U, S, Vt, err))
                    goto done;
                for (int oo = 0; oo < o; oo++)
                    for (int j = 0; j < rank; j++) B[(size_t)oo * rank + j] = (float)(U[(size_t)oo * rank + j] * S[j]);
                for (size_t k = 0; k < (size_t)rank * in; k++) A[k] = (float)Vt[k];
            }
        }
    rc = LC_OK;
done:
    free(on), free(delta), free(U), free(S), free(Vt);
    if (rc) lora_free(out);
    return rc;
}

int merge_into_model(const merge_spec *s, lora *const *ls, int n, model *dst, lc_err *err) {
    const model_config *c = &dst->cfg;
    if (merge_spec_validate(s, ls, n, c, err)) return LC_FAIL;
    size_t maxlen = 0;
    for (int m = 0; m < MOD_COUNT; m++) {
        size_t len = (size_t)module_in_dim(c, m) * module_out_dim(c, m);
        maxlen = len > maxlen ? len : maxlen;
    }
    double *delta = malloc(sizeof(double) * maxlen);
    if (!delta) return lc_errf(err, "out of memory");
    for (int l = 0; l < c->n_layers; l++)
        for (int m = 0; m < MOD_COUNT; m++) {
            int adapted;
            if (merge_module_delta(s, ls, n, c, l, m, delta, &adapted, err)) {
                free(delta);
                return LC_FAIL;
            }
            if (!adapted) continue;
            float *w = dst->w.layers[l].w[m];
            size_t len = (size_t)module_in_dim(c, m) * module_out_dim(c, m);
            for (size_t e = 0; e < len; e++) w[e] = (float)((double)w[e] + delta[e]);
        }
    free(delta);
    return LC_OK;
}

size_t merge_extra_params(const merge_spec *s, lora *const *ls, int n) {
    if (s->method == MERGE_LORAHUB) return (size_t)n;
    if (s->method != MERGE_LEARNED) return 0;
    size_t k = 0;
    for (int i = 0; i < n; i++)
        for (int sl = 0; sl < ls[i]->n_layers * MOD_COUNT; sl++) k += ls[i]->A[sl] != NULL;
    return k;
}

int merged_model_build(const merge_spec *s, lora *const *ls, int n, model *base, merged_model *out,
                       lc_err *err) {
    memset(out, 0, sizeof *out);
    if (merge_gives_lora(s)) {
        if (merge_to_lora(s, ls, n, &base->cfg, &out->merged, err)) return LC_FAIL;
        out->have_lora = 1;
        out->m = base;
        out->ad.loras[out->ad.n_loras++] = &out->merged;
        return LC_OK;
    }
    if (model_clone(&out->clone, base, err)) return LC_FAIL;
    out->cloned = 1;
    out->m = &out->clone;
    /* a base held in a storage type: the merged weights are held in it too,
     * as the device would hold the merged base */
    if (merge_into_model(s, ls, n, &out->clone, err) ||
        model_quantize(&out->clone, base->base_type, err)) {
        merged_model_free(out);
        return LC_FAIL;
    }
    return LC_OK;
}

void merged_model_free(merged_model *mm) {
    if (mm->cloned) model_free(&mm->clone);
    if (mm->have_lora) lora_free(&mm->merged);
    memset(mm, 0, sizeof *mm);
}

/* Copies one tensor of src into the same tensor of dst (walked in the same
 * order, so the k-th visit of dst is the k-th of src). */
typedef struct {
    const float **src;
    int n, i;
} clone_walk;

static int collect_tensor(const char *name, int ndim, const int64_t *shape, float *data, float *grad,
                          void *p) {
    (void)name, (void)ndim, (void)shape, (void)grad;
    clone_walk *w = p;
    w->src[w->n++] = data;
    return 0;
}

static int copy_tensor(const char *name, int ndim, const int64_t *shape, float *data, float *grad,
                       void *p) {
    (void)name, (void)grad;
    clone_walk *w = p;
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    memcpy(data, w->src[w->i++], sizeof(float) * n);
    return 0;
}

int model_clone(model *dst, const model *src, lc_err *err) {
    /* a base stored in another type is cloned dequantized (merges write into it) */
    if (src->base_type != QT_F32) return model_to_f32(dst, src, err);
    if (model_init(dst, &src->cfg, err)) return LC_FAIL;
    if (src->data) { /* one block: one copy */
        memcpy(dst->data, src->data, sizeof(float) * src->n_params);
        return LC_OK;
    }
    /* a view (weights in place in a mapped file): tensor by tensor */
    clone_walk w = {lc_calloc(src->cfg.n_layers * 16 + 16, sizeof *w.src, err), 0, 0};
    if (!w.src) {
        model_free(dst);
        return LC_FAIL;
    }
    model_for_each_tensor((model *)src, collect_tensor, &w);
    model_for_each_tensor(dst, copy_tensor, &w);
    free(w.src);
    return LC_OK;
}

int svd_truncated(const double *a, int rows, int cols, int k, double *U, double *S, double *Vt,
                  lc_err *err) {
    const int mn = rows < cols ? rows : cols;
    if (k < 1 || k > mn)
        return lc_errf(err, "SVD rank %d outside 1..%d for a %d x %d matrix", k, mn, rows, cols);
#ifdef LC_NO_LAPACK
    (void)a;
    memset(U, 0, sizeof(double) * (size_t)rows * k); /* defined outputs, as after a failed dgesdd */
    memset(S, 0, sizeof(double) * (size_t)k);
    memset(Vt, 0, sizeof(double) * (size_t)k * cols);
    return lc_errf(err, "this merge needs an SVD, and this build has no LAPACK (the on-device runtime)");
#else
    /* LAPACK is column-major: the row-major a (rows, cols) is the
     * column-major M = a^T (cols x rows) = Um Sm VTm, so a = VTm^T Sm Um^T. */
    const int m = cols, nn = rows, lda = m, ldu = m, ldvt = mn;
    double *M = malloc(sizeof(double) * (size_t)m * nn), *s = malloc(sizeof(double) * mn),
           *um = malloc(sizeof(double) * (size_t)m * mn), *vtm = malloc(sizeof(double) * (size_t)mn * nn);
    int *iwork = malloc(sizeof(int) * 8 * (size_t)mn);
    double *work = NULL, wq;
    int rc = LC_FAIL, info, lwork = -1;
    if (!M || !s || !um || !vtm || !iwork) {
        lc_errf(err, "out of memory");
        goto done;
    }
    memcpy(M, a, sizeof(double) * (size_t)m * nn);
    dgesdd_("S", &m, &nn, M, &lda, s, um, &ldu, vtm, &ldvt, &wq, &lwork, iwork, &info);
    if (info != 0) {
        lc_errf(err, "SVD workspace query failed (LAPACK info %d)", info);
        goto done;
    }
    lwork = (int)wq;
    if (!(work = malloc(sizeof(double) * (size_t)lwork))) {
        lc_errf(err, "out of memory");
        goto done;
    }
    dgesdd_("S", &m, &nn, M, &lda, s, um, &ldu, vtm, &ldvt, work, &lwork, iwork, &info);
    if (info != 0) {
        lc_errf(err, "SVD of a %d x %d matrix did not converge (LAPACK info %d)", rows, cols, info);
        goto done;
    }
    for (int j = 0; j < k; j++) S[j] = s[j];
    /* U (rows, k): U[r][j] = VTm(j, r) = vtm[j + r*ldvt] */
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < k; j++) U[(size_t)r * k + j] = vtm[j + (size_t)r * ldvt];
    /* Vt (k, cols): Vt[j][c] = Um(c, j) = um[c + j*ldu] */
    for (int j = 0; j < k; j++)
        for (int cc = 0; cc < cols; cc++) Vt[(size_t)j * cols + cc] = um[cc + (size_t)j * ldu];
    rc = LC_OK;
done:
    free(M), free(s), free(um), free(vtm), free(iwork), free(work);
    return rc;
#endif
}
