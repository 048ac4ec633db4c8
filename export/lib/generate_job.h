/* generate_job.h: what `generate` does once its options are parsed: open
 * the base, a bundle's task or LoRAs and calibrations, answer one prompt
 * through the runtime API (export/runtime/lcmt.h), stream the text (or the
 * ids) to `out`, and print load and speed diagnostics to `log`. The
 * program (export/generate.c) only parses argv into generate_opts. */
#ifndef GENERATE_JOB_H
#define GENERATE_JOB_H

#include <stdio.h>

#include "lc_err.h"

#define GENERATE_MAX_ADAPTERS 16
#define GENERATE_MAX_STOP 8

typedef struct {
    const char *model_path, *tok_path;          /* --model (required), --tokenizer */
    const char *prompt, *prompt_ids;            /* at most one of the two */
    const char *bundle, *task;                  /* --bundle, --task */
    const char *bundle_pin, *base_pin;          /* --bundle-sha256, --base-sha256 */
    int verify_sha;                             /* --verify-sha256 */
    int raw_prompt, chat, no_bos, no_stop;
    const char *system_msg, *base_type;         /* --system, --base-type */
    const char *lora_specs[GENERATE_MAX_ADAPTERS]; /* PATH or PATH:WEIGHT */
    const char *calib_paths[GENERATE_MAX_ADAPTERS];
    int n_lora, n_calib;
    int max_new;                                /* 256 unless given */
    float temperature, top_p;                   /* 1.0 and 0.9 unless given */
    /* which of the three the command line gave (a bundle task's own fill the rest) */
    int set_max_new, set_temperature, set_top_p;
    const char *stops[GENERATE_MAX_STOP];
    int n_stops;
    int seed, have_seed;                        /* without --seed: the clock */
    int print_ids, quiet;
} generate_opts;

/* The defaults of every option (what `generate --model M` uses). */
generate_opts generate_opts_default(void);

/* Runs the job. Returns LC_OK, or LC_FAIL with err naming what failed
 * (the program prints it after "generate: "). Options are taken as
 * checked by the program: no conflicting pair is checked again here. */
int generate_job_run(const generate_opts *o, FILE *out, FILE *log, lc_err *err);

#endif
