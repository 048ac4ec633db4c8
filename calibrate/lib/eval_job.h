/* eval_job.h: `evaluate` as a library. The job config (configs/README.md,
 * "evaluate") is read and checked in full before anything is loaded: the
 * job is parse-then-run, and a fuzz harness can call the reader. */
#ifndef EVAL_JOB_H
#define EVAL_JOB_H

#include "config.h"
#include "dist.h"
#include "evaluation.h"
#include "lc_err.h"
#include "merge.h"
#include "model.h"

typedef struct {
    /* strings as written in the config (cfg_resolve_path to use); the
     * base's keys ("model", "tokenizer", "base_type") are checked here and
     * read again by job_load_base */
    const char *output_dir, *label, *data_path, *prompt_template, *target_template, *system;
    int max_len, add_bos, bad_row, max_examples, prompt_kind;
    gen_opts gen;
    rouge_opts rouge;
    const char *lora_path[ADAPTER_MAX];
    double lora_weight[ADAPTER_MAX];
    int n_loras;
    const char *calib_path[ADAPTER_MAX];
    int n_calibs;
    const char *bundle_path, *bundle_task; /* NULL: no bundle */
    /* "merge": a recipe as calibrate records it in a job's results.json;
     * NULL: none. Its adapters, in order: names and paths as written. */
    const cJSON *merge;
    merge_spec merge_spec;
    const char *merge_name[ADAPTER_MAX], *merge_path[ADAPTER_MAX];
    int n_merge;
} eval_job;

/* Reads every key of the config c (cfg_finish included: unknown keys are
 * errors) into j; the strings stay owned by c. */
int eval_job_read(cfg *c, eval_job *j, lc_err *err);

typedef struct {
    const lc_dist *dist; /* the ranks the examples are split over; rank 0 reports and writes */
} eval_job_opts;

/* One `evaluate` job from the config at cfg_path: loads the base and the
 * adapters (LoRAs, a merge recipe's adapters merged, calibrations, or one
 * task of a bundle), generates for every example of the test set and
 * writes output_dir/predictions.jsonl and results.json; progress and the
 * scores go to stderr (rank 0). On failure err says why; the caller
 * reports it (and, across ranks, ends the others). */
int eval_job_run(const char *cfg_path, const eval_job_opts *o, lc_err *err);

#endif
