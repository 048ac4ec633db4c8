/* account.h: parameter and storage accounting for the efficiency table of
 * Learnable Calibration (Bohdal et al., EMNLP 2025): how many extra
 * parameters and bytes each compositional-task method needs on top of the
 * base model and the single-task LoRAs a device already holds.
 *
 * Counts (shapes as in kernels/model.h; the sums run over the module types
 * m in the given mask, in/out = module_in_dim/module_out_dim, L = n_layers):
 *   LC           sum_m out_m                      (x L with per_layer)
 *   LC++ rank k  sum_m k (in_m + out_m)           (x L with per_layer)
 *   LoRA rank r  L sum_m r (in_m + out_m)         (single-task = joint expert)
 *   base model   V D (embedding) + L [sum_m out_m in_m over all 7 modules
 *                + 2 D (norms) + q/k/v biases if qkv_bias] + D (final norm)
 *                + V D (lm_head) unless tie_embeddings
 * Storage is 2 bytes per parameter (fp16); MB means 10^6 bytes (decimal
 * megabytes, not MiB). Counts are exact 64-bit integers. */
#ifndef ACCOUNT_H
#define ACCOUNT_H

#include <stdint.h>
#include <stdio.h>

#include "lc_err.h"
#include "model.h"

#define ACCOUNT_DEFAULT_LORA_RANK 8 /* configs/README.md: lora.rank */
#define ACCOUNT_DEFAULT_LC_RANK 4   /* GUIDE.md: LC++ k = 4 */
#define ACCOUNT_BYTES_PER_PARAM 2   /* fp16 */

typedef struct {
    int lora_rank;       /* r of a single-task / joint-expert LoRA, >= 1 */
    unsigned lora_mask;  /* modules the LoRAs adapt (bit m = module_kind m) */
    unsigned calib_mask; /* modules LC / LC++ calibrate; 0 = lora_mask */
    int lc_rank;         /* k of LC++, >= 1 */
    int per_layer;       /* 0: calibration shared by all layers; 1: per layer */
} account_opts;

/* r = 8 and k = 4 on all seven modules, calibration shared across layers. */
void account_opts_default(account_opts *o);

/* One method's extra size. */
typedef struct {
    int64_t params;
    int64_t bytes;   /* params * 2 (fp16) */
    double mb;       /* bytes / 1e6 */
    double pct_lora; /* 100 * params / (one single-task LoRA's params) */
    double pct_base; /* 100 * params / (base model params) */
} account_size;

typedef struct {
    account_opts opts; /* as used (calib_mask filled in) */
    account_size lc;    /* LC bias vectors */
    account_size lcpp;  /* LC++ rank-k pairs */
    account_size joint; /* a joint-expert LoRA of rank r (per compositional task) */
    account_size lora;  /* one single-task LoRA of rank r (same count as joint) */
    account_size base;  /* the base model */
} account_result;

/* Parameters of the base model: embedding V*D, per layer the seven
 * projections, two RMSNorm weights and (qkv_bias) the q/k/v biases, the
 * final norm, and the lm_head V*D unless the embeddings are tied. */
int64_t account_base_params(const model_config *c);
/* LC: one bias of length out_m per module type in mask (times n_layers
 * when per_layer). */
int64_t account_lc_params(const model_config *c, unsigned mask, int per_layer);
/* LC++: P1 (k, in_m) and P2 (out_m, k) per module type in mask (times
 * n_layers when per_layer). */
int64_t account_lcpp_params(const model_config *c, unsigned mask, int k, int per_layer);
/* A LoRA of rank r on the modules in mask in every layer: A (r, in_m) and
 * B (out_m, r) per layer and module. */
int64_t account_lora_params(const model_config *c, unsigned mask, int r);

/* Fills out for config c with options o (NULL = account_opts_default).
 * Fails (err names the config key or option) on non-positive dimensions,
 * rank < 1, or a module mask that is empty or has bits past the seven
 * modules. */
int account_compute(const model_config *c, const account_opts *o, account_result *out,
                    lc_err *err);

/* Writes the paper-style efficiency table in Markdown for n configs:
 * rows are the methods (zero-shot, main-task LoRA, multi-step LoRA (2
 * inferences), joint-expert LoRA (1 inference + a rank-r LoRA stored per
 * compositional task), linear merge, LC, LC++), columns are inferences and,
 * for each config, the extra parameters, extra MB at fp16 and % of one
 * single-task LoRA. A list above the table gives each base model's and
 * LoRA's size; notes below state the conventions. names[i] labels config i
 * (names NULL or names[i] NULL: its arch). o NULL = defaults. Fails on
 * invalid input (as account_compute, err prefixed with the name) or a
 * write error. */
int account_print_table(FILE *out, const char *const *names, const model_config *cfgs, int n,
                        const account_opts *o, lc_err *err);

/* Reads a Hugging Face config.json (path to the file, or to the model
 * folder holding it) with lc_read_file + hf_config_parse. */
int account_load_config(const char *path, model_config *c, lc_err *err);

/* The `calibrate --account PATH [--lora-rank R] [--lc-rank K]` action:
 * loads the config and prints its table (all seven modules, calibration
 * shared across layers). lora_rank / lc_rank 0 select the defaults (8, 4);
 * negative values are an error. The table is labelled with the config's
 * folder name. Errors name the file and key. */
int account_print_file(FILE *out, const char *config_path, int lora_rank, int lc_rank,
                       lc_err *err);

#endif
