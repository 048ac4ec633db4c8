/* export_job.h: the `export` job config (configs/README.md, "export"),
 * read and checked in full before anything is loaded, so that the program
 * is parse-then-run and a fuzz harness can call the reader. */
#ifndef EXPORT_JOB_H
#define EXPORT_JOB_H

#include "bundle.h"
#include "config.h"
#include "exporter.h"
#include "lc_err.h"

#define EXPORT_MAX_TASKS 64
#define EXPORT_MAX_INTEROP 16

typedef struct {
    const char *task, *method;
    const char *peft_dir, *gguf; /* as written (relative to the config); either may be NULL */
    int gguf_f16;
} export_interop_item;

typedef struct {
    cfg *c;           /* owns every string below */
    const char *model, *calibrate_dir, *output; /* as written (cfg_resolve_path to use) */
    bundle_dtype adapter_dtype, calib_dtype;
    export_item items[EXPORT_MAX_TASKS];
    int n_items;
    export_interop_item interop[EXPORT_MAX_INTEROP];
    int n_interop;
} export_job;

/* Reads and checks every key of cfg_file (unknown keys are errors).
 * On failure j holds nothing (export_job_free is still safe). */
int export_job_read(export_job *j, const char *cfg_file, lc_err *err);
void export_job_free(export_job *j);

#endif
