/* exporter.h: builds a bundle (BUNDLE.md) from what `calibrate` wrote:
 * for each (task, method) chosen, the job's results.json gives the merge
 * recipe with the single-task LoRAs' paths, the calibration file and the
 * evaluation results. */
#ifndef EXPORTER_H
#define EXPORTER_H

#include <stdio.h>

#include "bundle.h"
#include "lc_err.h"
#include "model.h"

typedef struct {
    const char *task;   /* calibrate task name */
    const char *method; /* calibrate method name (its job folder is the slug) */
} export_item;

typedef struct {
    const char *calibrate_dir; /* calibrate's output_dir */
    const export_item *items;
    int n_items;
    bundle_dtype adapter_dtype; /* single-task LoRA tensors */
    bundle_dtype calib_dtype;   /* calibration and coefficient tensors */
    const char *output;         /* the bundle file */
    const char *base_path;      /* the base's file or folder: its SHA-256 goes in the manifest
                                 * (base.sha256, base.files); NULL: not recorded */
} export_spec;

/* Writes the bundle and a size report (Markdown) to report (may be NULL):
 * bytes per part against the base model (fp16) and one single-task LoRA.
 * Jobs that need more than one pass (multi_step) or no adapters
 * (zero_shot) cannot go in a bundle and are refused by name. */
int export_bundle(const model *base, const export_spec *s, FILE *report, lc_err *err);

/* One task's merged LoRAs plus its LC++ calibration as a single exact LoRA
 * (export/INTEROP.md): a PEFT folder (peft_dir) and/or a GGUF LoRA adapter
 * for llama.cpp (gguf_path, F16 if gguf_f16). A bias (LC) calibration or
 * a dense merge (ties, dare, slerp) cannot be a LoRA and is refused. */
int export_interop(model *base, const char *calibrate_dir, const char *task, const char *method,
                   const char *peft_dir, const char *gguf_path, int gguf_f16, lc_err *err);

#endif
