/* bundle.h: the on-device bundle (export/BUNDLE.md is the format): one
 * file with the single-task LoRAs, and per compositional task its merge
 * recipe, calibration and evaluation results. Writer (export) and reader
 * (generate --bundle). The reader maps the file; f32 tensors are used in
 * place, f16 and int8 ones converted once at load. */
#ifndef BUNDLE_H
#define BUNDLE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "lc_err.h"
#include "merge.h"
#include "model.h"

#define BUNDLE_VERSION 1
#define BUNDLE_ALIGN 64

typedef enum { BUNDLE_F32 = 0, BUNDLE_F16, BUNDLE_I8 } bundle_dtype;
extern const char *const BUNDLE_DTYPE_NAMES[]; /* "f32", "f16", "i8", NULL */

/* ---- writing -------------------------------------------------------------- */

typedef struct bundle_writer bundle_writer;

int bundle_writer_open(bundle_writer **out, const char *path, lc_err *err);
/* Queues a tensor (copied, converted to dt; int8 with per-row scales). */
int bundle_writer_add(bundle_writer *w, const char *name, int ndim, const int64_t *shape,
                      const float *data, bundle_dtype dt, lc_err *err);
/* Bytes the tensors take so far (data section, with scales and padding
 * excluded) for names starting with prefix. */
size_t bundle_writer_bytes(const bundle_writer *w, const char *prefix);
/* Writes header + manifest + tensors to a temporary file and renames it
 * onto the path. manifest: a JSON object (taken over and freed); "format",
 * "version" and "tensors" are set here. Frees w either way. */
int bundle_writer_close(bundle_writer *w, cJSON *manifest, lc_err *err);
/* The same, and writes the bundle's SHA-256 (hex, 64 digits) beside it as
 * "<path>.sha256" ("<hex>  <name>", what sha256sum -c reads). The old
 * sidecar is removed just before the new bundle is renamed into place and
 * the new sidecar follows, so a sidecar present always matches its bundle;
 * a failure before that leaves both previous files intact. */
int bundle_writer_close_pinned(bundle_writer *w, cJSON *manifest, char hex[65], lc_err *err);
void bundle_writer_abort(bundle_writer *w);

/* Identity of a base model: architecture, shapes, parameter count, the
 * CRC-32 of its weights and the CRC-32 of a fixed sample of them
 * (BUNDLE.md), as a JSON object. */
cJSON *bundle_base_identity(const model *m);
uint32_t model_weights_crc32(const model *m);
/* The sample: per tensor, BUNDLE_SAMPLE_BLOCKS blocks of
 * BUNDLE_SAMPLE_BYTES evenly spaced (the whole tensor when smaller). */
#define BUNDLE_SAMPLE_BLOCKS 8
#define BUNDLE_SAMPLE_BYTES 1024
uint32_t model_weights_sample_crc32(const model *m);

/* ---- reading -------------------------------------------------------------- */

typedef struct bundle bundle;

/* Maps and validates (header, version, ranges, CRCs, manifest JSON). */
int bundle_open(bundle **out, const char *path, lc_err *err);
void bundle_close(bundle *b);
const cJSON *bundle_manifest(const bundle *b);
const char *bundle_path(const bundle *b);
size_t bundle_size(const bundle *b);
/* The whole file as mapped (bundle_size bytes). */
const unsigned char *bundle_bytes(const bundle *b);
/* The float32 values of a tensor whose shape must equal shape: a pointer
 * into the mapping (f32) or into a buffer b owns (f16, i8). The tensor's
 * CRC is checked on first use. */
int bundle_tensor(bundle *b, const char *name, int ndim, const int64_t *shape, const float **out,
                  lc_err *err);
/* Number of tensors converted (copied) so far, and bytes used in place. */
void bundle_stats(const bundle *b, size_t *copied_bytes, size_t *mapped_bytes);

/* Refuses a base whose identity differs from the one recorded: every
 * field, the full weights CRC included (reads every weight). */
int bundle_check_base(const bundle *b, const model *m, lc_err *err);
/* The same with the sampled CRC in place of the full one (about 8 kB read
 * per tensor: a wrong or other base is refused, a base edited outside the
 * sample is not); bundles without weights_sample_crc32 get the full check. */
int bundle_check_base_quick(const bundle *b, const model *m, lc_err *err);

/* One task, ready to run on the base: its merge (merged_model: a LoRA view
 * or a dense copy of the base) plus its calibration. */
typedef struct {
    lora loras[ADAPTER_MAX]; /* the task's single-task LoRAs (views into b) */
    int n_loras;
    float *coef[ADAPTER_MAX]; /* learned-merge coefficients (owned) */
    merge_spec spec;
    merged_model mm;
    calib cb; /* view into b */
    int have_calib;
    adapter_set ad; /* mm.ad plus the calibration */
    model *m;       /* the model to run */
    const cJSON *task; /* its manifest entry */
} bundle_task;

/* Task names in the bundle (NULL-terminated, malloc'd array of pointers
 * into the manifest). */
const char **bundle_task_names(const bundle *b, int *n);
int bundle_task_load(bundle *b, model *base, const char *task, bundle_task *out, lc_err *err);
/* The same without checking the base (the caller did, once). */
int bundle_task_load_checked(bundle *b, model *base, const char *task, bundle_task *out, lc_err *err);
void bundle_task_free(bundle_task *t);


#endif
