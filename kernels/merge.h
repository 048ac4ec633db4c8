/* merge.h: merging single-task LoRAs (calibrate/MERGING.md has the exact
 * formulas; this header names them).
 *
 * Every method works per adapted (layer, module) on the task vectors
 * tau_i = s_i B_i A_i (out, in). A merge gives either a LoRA (applied at run
 * time, base untouched) or a dense delta added to a copy of the base
 * weights. */
#ifndef MERGE_H
#define MERGE_H

#include <stdint.h>

#include "lc_err.h"
#include "model.h"

typedef enum {
    MERGE_LINEAR = 0, /* dense: sum_i w_i tau_i */
    MERGE_CONCAT,     /* LoRA rank sum r_i: exactly linear */
    MERGE_SVD,        /* LoRA rank svd_rank: truncated SVD of linear */
    MERGE_TIES,       /* dense (LoRA if svd_rank > 0) */
    MERGE_DARE_LINEAR,
    MERGE_DARE_TIES,
    MERGE_SLERP,      /* dense, two adapters */
    MERGE_LORAHUB,    /* LoRA rank r: A = sum w_i A_i, B = sum w_i B_i */
    MERGE_LEARNED,    /* LoRA: concat with per-(adapter, layer, module) coefficients */
    MERGE_COUNT
} merge_method;

/* "linear", "concat", "svd", "ties", "dare_linear", "dare_ties", "slerp",
 * "lorahub", "learned", NULL */
extern const char *const MERGE_NAMES[];

typedef enum { TIES_MEAN_COUNT = 0, TIES_MEAN_WEIGHT } ties_mean;

typedef struct {
    merge_method method;
    double weights[ADAPTER_MAX]; /* w_i (default 1) */
    double density;              /* ties, dare_*: (0, 1] */
    double lambda;               /* ties, dare_*: scale of the result (default 1) */
    ties_mean mean;              /* ties, dare_ties */
    uint64_t seed;               /* dare_* */
    int svd_rank;                /* svd: required; ties, dare_*: 0 = dense, > 0 = LoRA */
    double t;                    /* slerp: [0, 1] */
    /* learned: coefficient per (adapter, layer, module), layout
     * [i][l * MOD_COUNT + m]; NULL = all 1 (only w_i). */
    const float *const *coef;
} merge_spec;

/* Defaults: weights 1, density 1, lambda 1, count mean, seed 0, t 0.5. */
void merge_spec_default(merge_spec *s, merge_method method);

/* Checks the spec against the adapters (count, density range, SVD rank
 * versus module sizes, equal ranks and scales for lorahub, two adapters
 * for slerp). Messages name the key (e.g. "merge.density"). */
int merge_spec_validate(const merge_spec *s, lora *const *ls, int n, const model_config *c,
                        lc_err *err);

/* 1 if the method's result is a LoRA (concat, svd, lorahub, learned, or
 * ties/dare_* with svd_rank > 0), 0 if it is a dense delta. */
int merge_gives_lora(const merge_spec *s);

/* The merged delta of one module: out (out_m, in_m) row-major, float64.
 * For LoRA-form methods this is the product B A of the merged LoRA (svd,
 * and ties/dare_* with svd_rank > 0, give the rank-truncated product).
 * *adapted = 0 (and out zeroed) when no adapter adapts (layer, m). */
int merge_module_delta(const merge_spec *s, lora *const *ls, int n, const model_config *c,
                       int layer, module_kind m, double *out, int *adapted, lc_err *err);

/* LoRA-form methods: fills *out (lora_init'd here; rank as the method
 * gives, scale 1 except lorahub which keeps s, weight 1) over the union of
 * the adapters' layers and modules. */
int merge_to_lora(const merge_spec *s, lora *const *ls, int n, const model_config *c, lora *out,
                  lc_err *err);

/* Dense methods (also accepted for LoRA-form ones): adds the merged delta
 * of every adapted module to the weights of dst, which must be a model with
 * the adapters' configuration (normally a copy of the base). */
int merge_into_model(const merge_spec *s, lora *const *ls, int n, model *dst, lc_err *err);

/* Trainable parameter count a method adds on top of the single-task LoRAs
 * (lorahub: n; learned: n * adapted modules; others: 0). */
size_t merge_extra_params(const merge_spec *s, lora *const *ls, int n);

/* A merge made ready to run: the model to use (the base itself, or a
 * copy with a dense delta folded in, held in the base's storage type
 * when the base is stored: model_quantize) and the adapter set holding
 * the merged LoRA when the method gives one. */
typedef struct {
    model clone;
    int cloned;
    lora merged;
    int have_lora;
    model *m;        /* &clone or the base */
    adapter_set ad;  /* {merged} or empty; callers may append calibrations */
} merged_model;

int merged_model_build(const merge_spec *s, lora *const *ls, int n, model *base, merged_model *out,
                       lc_err *err);
void merged_model_free(merged_model *mm);

/* A copy of a model's weights (no gradients), for dense merges; float32
 * (dequantized) when src's matrices are stored in another type. */
int model_clone(model *dst, const model *src, lc_err *err);

/* Truncated SVD of a (rows, cols) row-major float64 matrix: U (rows, k),
 * S (k), Vt (k, cols) with k <= min(rows, cols), singular values
 * descending (LAPACK dgesdd). */
int svd_truncated(const double *a, int rows, int cols, int k, double *U, double *S, double *Vt,
                  lc_err *err);

#endif
