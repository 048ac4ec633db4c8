/* job.h: the keys every job config shares (configs/README.md): the base
 * model and its tokenizer. One reader so `train`, `evaluate` and
 * `calibrate` accept them identically. */
#ifndef JOB_H
#define JOB_H

#include "config.h"
#include "lc_err.h"
#include "model.h"
#include "tokenizer.h"

/* Reads "model" (required) and "tokenizer" (optional) and resolves them
 * against the config's folder (malloc'd; *tok_path NULL when the key is
 * absent). Loads nothing: for checking a config without the model. */
int job_base_paths(cfg *c, char **model_path, char **tok_path, lc_err *err);

/* Reads the same keys and loads both; the tokenizer defaults to the one
 * beside the model (model_tokenizer_path), and stores the base in "base_type"
 * (job_base_type). */
int job_load_base(cfg *c, model *m, tokenizer **tok, lc_err *err);
/* Reads "base_type" ("f32" default, "f16", "bf16", "q8_0", "q4_0", "q4_k",
 * "q6_k") and stores the loaded base's matrices in that type
 * (model_quantize), so that the job runs on that base. */
int job_base_type(cfg *c, model *m, lc_err *err);
/* "base_type" as a storage type id (qtype.h), or -1 with the error set:
 * for checking the key before the model is loaded (and before cfg_finish). */
int job_base_type_read(cfg *c, lc_err *err);

#endif
