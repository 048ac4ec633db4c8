/* train_job.h: `train` as a library: one training job from a JSON config
 * (configs/README.md): a LoRA on a frozen base ("mode": "lora"), every
 * weight of a loaded model, or a new model from a config.json ("mode":
 * "full"). Writes output_dir/metrics.jsonl, checkpoint.h5, final/ and
 * best/; progress goes to stderr. */
#ifndef TRAIN_JOB_H
#define TRAIN_JOB_H

#include "dist.h"
#include "lc_err.h"

typedef struct {
    int resume;      /* continue from output_dir/checkpoint.h5, bit-exactly */
    long stop_after; /* testing aid: stop after this many steps (0 = off) */
    const lc_dist *dist; /* NULL = one process; MPI ranks share every batch */
    int check_only;  /* read and check every key of the config, load and write nothing */
} train_job_opts;

int train_job_run(const char *cfg_path, const train_job_opts *o, lc_err *err);

#endif
