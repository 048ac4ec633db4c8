/* job.h: the keys every job config shares (configs/README.md): the base
 * model and its tokenizer. One reader so `train`, `evaluate` and
 * `calibrate` accept them identically. */
#ifndef JOB_H
#define JOB_H

#include "config.h"
#include "lc_err.h"
#include "model.h"
#include "tokenizer.h"

/* Reads "model" (required) and "tokenizer" (default: beside the model, see
 * model_tokenizer_path), loads both. *model_path (malloc'd, resolved
 * against the config's folder) may be NULL if not wanted. */
int job_load_base(cfg *c, model *m, tokenizer **tok, char **model_path, lc_err *err);

#endif
