/* trainer.h: what `train` and `calibrate` share: the list of trainable
 * tensors, AdamW, learning-rate schedules, HDF5 checkpoints and the
 * training loop (gradient accumulation, clipping, validation, keep-best,
 * progress line, metrics log, bit-exact resume, NaN/Inf stop). */
#ifndef TRAINER_H
#define TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "dist.h"
#include "lc_err.h"
#include "model.h"

/* ---- trainable tensors -------------------------------------------------- */

typedef struct {
    char name[192];
    float *data, *grad;
    size_t n;
    int decay; /* weight decay applies */
} param_ref;

typedef struct {
    param_ref *p;
    int n, cap;
    size_t total;
} param_list;

int param_list_add(param_list *pl, const char *name, float *data, float *grad, size_t n,
                   int decay, lc_err *err);
/* Every A and B of a LoRA (PEFT names), after lora_enable_grad. */
int param_list_add_lora(param_list *pl, const lora *l, const model_config *c, lc_err *err);
/* Every tensor of a calibration, after calib_enable_grad. */
int param_list_add_calib(param_list *pl, const calib *cb, const model_config *c, lc_err *err);
/* A LoRA's per-(layer, module) merge coefficients (after lora_enable_coef
 * with trainable = 1), as "<prefix>.coef" (L*7; unadapted slots get zero
 * gradient and stay put). No weight decay. */
int param_list_add_coef(param_list *pl, const lora *l, const char *prefix, lc_err *err);
/* Every base weight (full training), after model_enable_grad; weight decay
 * on matrices only, not on norms and biases. */
int param_list_add_model(param_list *pl, model *m, lc_err *err);
void param_list_free(param_list *pl);
void param_list_zero_grad(param_list *pl);
/* sqrt(sum of squared gradients); NaN/Inf if any gradient is not finite. */
double param_list_grad_norm(const param_list *pl);
void param_list_scale_grad(param_list *pl, float s);
/* torch.nn.utils.clip_grad_norm_, as train_run clips: total =
 * param_list_grad_norm; when max_norm > 0 and total is finite, every
 * gradient is multiplied by min(1, max_norm / (total + 1e-6)). Returns
 * total (before clipping). */
double param_list_clip_grad_norm(param_list *pl, double max_norm);

/* ---- AdamW (PyTorch's torch.optim.AdamW) -------------------------------- */

typedef struct {
    double beta1, beta2, eps, weight_decay;
    float *m, *v; /* first and second moments, param_list layout */
    long step;
    const param_list *pl;
} adamw;

int adamw_init(adamw *o, const param_list *pl, double beta1, double beta2, double eps,
               double weight_decay, lc_err *err);
void adamw_free(adamw *o);
/* p -= lr*wd*p; m,v update; p -= lr * mhat / (sqrt(vhat) + eps) */
void adamw_step(adamw *o, double lr);

/* ---- schedules ---------------------------------------------------------- */

typedef enum { SCHED_CONSTANT = 0, SCHED_LINEAR, SCHED_COSINE } sched_kind;
extern const char *const SCHED_NAMES[]; /* "constant", "linear", "cosine", NULL */

/* Linear warmup from 0 over `warmup` steps, then constant / linear decay /
 * cosine decay to base*min_ratio at step `total`. step is 0-based. */
double lr_schedule(sched_kind k, double base, long step, long total, long warmup,
                   double min_ratio);

/* ---- the loop ------------------------------------------------------------ */

typedef struct {
    int batch_size, seq_len, grad_accum;
    /* Rows per work unit (training.micro_batch_size; 0 or >= batch_size =
     * the whole batch). A step is grad_accum x ceil(batch_size /
     * micro_batch) units; each unit's gradient is computed alone and the
     * units are added in order, so the result does not depend on how many
     * MPI ranks share them (unit u runs on rank u mod size). */
    int micro_batch;
    long steps;
    uint64_t seed;
    int shuffle;
    int eval_every, eval_batches; /* eval_batches 0 = the whole validation set */
    int checkpoint_every, log_every, keep_best;
    double lr, beta1, beta2, eps, weight_decay, grad_clip, min_lr_ratio;
    long warmup;
    sched_kind schedule;
    const char *out_dir;
    const char *what; /* "train" or "calibrate", for messages */
    long stop_after;  /* testing aid: stop (as if killed) after this step; 0 = off */
    const lc_dist *dist; /* NULL = one process; else rank 0 alone writes files */
} train_opts;

/* Writes the trainable adapter to a folder (e.g. PEFT + HDF5 for a LoRA,
 * HDF5 for a calibration). */
typedef int (*adapter_save_fn)(void *ctx, const char *dir, lc_err *err);

typedef struct {
    long steps_done;
    double last_loss, best_val, last_val;
    double seconds;
    long tokens;
} train_result;

/* Trains the tensors in pl (which must be the grads enabled on the model /
 * adapters in ad) on `train`, validating on `val` (may be NULL).
 * Files in o->out_dir: checkpoint.h5 (every checkpoint_every steps and at
 * the end; temp + rename), metrics.jsonl (one line per logged step and per
 * validation), final/ and best/ (keep_best) via save(). With resume = 1
 * and a checkpoint present, continues bit-exactly where it stopped. A
 * non-finite loss or gradient stops with an error naming the step; the last
 * good checkpoint stays. */
int train_run(model *m, const adapter_set *ad, param_list *pl, const dataset *train,
              const dataset *val, int pad_id, const train_opts *o, int resume,
              adapter_save_fn save, void *save_ctx, train_result *res, lc_err *err);

/* Several (model, adapters, data) sources training the same tensors (e.g.
 * one Shared LC calibration over all languages, each language with its own
 * merged LoRAs). Micro-batches cycle through the sources (micro-batch g of
 * the run comes from source g mod n_src); each source keeps its own data
 * order (seed + k * 0x9E3779B9) and its position is checkpointed. The
 * validation loss is the mean over the sources that have a validation set.
 * train_run is the one-source case. */
typedef struct {
    model *m;
    const adapter_set *ad;
    const dataset *train, *val; /* val may be NULL */
} train_source;

int train_run_multi(const train_source *src, int n_src, param_list *pl, int pad_id,
                    const train_opts *o, int resume, adapter_save_fn save, void *save_ctx,
                    train_result *res, lc_err *err);

/* Mean of the sources' validation losses (batch size, length and
 * eval_batches from o); sources without a validation set are left out;
 * NAN when none has one. */
int train_sources_val_loss(const train_source *src, int n_src, const train_opts *o, int pad_id,
                           double *out, lc_err *err);

/* Reads the shared `training.*` and `optimizer.*` keys (configs/README.md)
 * and checks their ranges; seq_len defaults to max_len - 1. out_dir, what
 * and stop_after are left for the caller. */
int train_opts_from_cfg(cfg *c, int max_len, int keep_best_default, train_opts *o, lc_err *err);

/* Mean token loss of `d` (first max_batches batches of size B x T; 0 = all)
 * in file order. */
int eval_loss(model *m, const adapter_set *ad, const dataset *d, int B, int T, int pad_id,
              int max_batches, double *loss, lc_err *err);
/* The same, batch k on rank k mod size, every rank getting the same result
 * (bit for bit that of eval_loss). dist NULL = eval_loss. */
int eval_loss_dist(model *m, const adapter_set *ad, const dataset *d, int B, int T, int pad_id,
                   int max_batches, const lc_dist *dist, double *loss, lc_err *err);

#endif
