/* calib_plan.h: `calibrate` as a library. A plan is a parsed calibrate job
 * config (configs/README.md): the single-task adapters, the compositional
 * tasks and the methods (baselines, merges, LC/LC++, Shared LC). Running it
 * runs every selected (task, method) job in config order, each writing
 * <output_dir>/<task>/<method>/results.json (+ predictions.jsonl, and for
 * trained methods calibration.h5 / coefficients.h5, metrics.jsonl,
 * checkpoint.h5; a merge's recipe is results.json's "merge"), then the run summary
 * <output_dir>/results.{json,csv} and table.md over all jobs. */
#ifndef CALIB_PLAN_H
#define CALIB_PLAN_H

#include <stdio.h>

#include "dist.h"
#include "lc_err.h"

typedef struct calib_plan calib_plan;

typedef struct {
    const char *only;  /* comma-separated method names to run; NULL = all */
    const char *tasks; /* comma-separated task names to run; NULL = all */
    int resume;        /* skip finished jobs, continue training from checkpoints */
    long stop_after;   /* testing aid: stop training after this many steps (0 = off) */
    int no_summary;    /* run the selected jobs only: no run summary, no lock on
                        * output_dir (each training still locks its job folder), so
                        * runs with disjoint selections can share output_dir */
    int load;          /* 1: load the base, tokenizer and the adapters the selected
                        * jobs need (to run); 0: read and check the config only */
    const lc_dist *dist; /* NULL = one process. Under MPI every rank runs every job:
                          * training data-parallel (train/lib/trainer.c), validation
                          * losses and test-set generation sharded; rank 0 alone
                          * takes the folder lock, reports and writes files, which
                          * are those of one process (wall times aside). */
} calib_plan_opts;

/* Reads and checks every key of the config (an unknown or mistyped key
 * fails here, before anything slow), and with o->load the model and
 * adapters. Fails when the selection picks no job. */
int calib_plan_open(calib_plan **out, const char *cfg_path, const calib_plan_opts *o, lc_err *err);
void calib_plan_free(calib_plan *p);

int calib_plan_n_jobs(const calib_plan *p);

/* One JSON object per line: first {"adapter", "path"} for every adapter the
 * selected jobs need (a selected Shared LC trains on every task of its
 * family, so their adapters too), then {"job", "task", "family", "method",
 * "type", "dir"} for every selected job in run order. */
int calib_plan_print(const calib_plan *p, FILE *f, lc_err *err);

/* Runs the selected jobs and writes the run summary. Needs o->load. */
int calib_plan_run(calib_plan *p, lc_err *err);

#endif
