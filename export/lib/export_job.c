/* export_job.c: the `export` job config reader (export_job.h). */
#include "export_job.h"

#include <stdio.h>
#include <string.h>

void export_job_free(export_job *j) {
    cfg_free(j->c);
    memset(j, 0, sizeof *j);
}

int export_job_read(export_job *j, const char *cfg_file, lc_err *err) {
    memset(j, 0, sizeof *j);
    int adt = BUNDLE_F16, cdt = BUNDLE_F32, n;
    if (cfg_load(&j->c, cfg_file, err)) return LC_FAIL;
    cfg *c = j->c;
    if (cfg_string(c, "model", 1, NULL, &j->model, err) ||
        cfg_string(c, "calibrate_dir", 1, NULL, &j->calibrate_dir, err) ||
        cfg_string(c, "output", 1, NULL, &j->output, err) ||
        cfg_enum(c, "adapter_dtype", 0, BUNDLE_F16, BUNDLE_DTYPE_NAMES, &adt, err) ||
        cfg_enum(c, "calibration_dtype", 0, BUNDLE_F32, BUNDLE_DTYPE_NAMES, &cdt, err) ||
        (n = cfg_array_len(c, "tasks", err)) < 0)
        goto fail;
    j->adapter_dtype = (bundle_dtype)adt, j->calib_dtype = (bundle_dtype)cdt;
    if (n == 0 || n > EXPORT_MAX_TASKS) {
        lc_errf(err, "%s: key 'tasks': 1 to %d {\"task\", \"method\"} entries", cfg_file,
                EXPORT_MAX_TASKS);
        goto fail;
    }
    char key[64];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "tasks[%d].task", i);
        if (cfg_string(c, key, 1, NULL, &j->items[i].task, err)) goto fail;
        snprintf(key, sizeof key, "tasks[%d].method", i);
        if (cfg_string(c, key, 1, NULL, &j->items[i].method, err)) goto fail;
    }
    j->n_items = n;
    int n_int = cfg_array_len(c, "interop", err);
    if (n_int < 0) goto fail;
    if (n_int > EXPORT_MAX_INTEROP) {
        lc_errf(err, "%s: key 'interop': at most %d entries", cfg_file, EXPORT_MAX_INTEROP);
        goto fail;
    }
    for (int i = 0; i < n_int; i++) {
        export_interop_item *it = &j->interop[i];
#define K(f) (snprintf(key, sizeof key, "interop[%d]." f, i), key)
        if (cfg_string(c, K("task"), 1, NULL, &it->task, err) ||
            cfg_string(c, K("method"), 1, NULL, &it->method, err) ||
            cfg_string(c, K("peft_dir"), 0, NULL, &it->peft_dir, err) ||
            cfg_string(c, K("gguf"), 0, NULL, &it->gguf, err) ||
            cfg_bool(c, K("gguf_f16"), 0, 0, &it->gguf_f16, err))
            goto fail;
#undef K
        if (!it->peft_dir && !it->gguf) {
            lc_errf(err, "%s: key 'interop[%d]': give peft_dir and/or gguf", cfg_file, i);
            goto fail;
        }
    }
    j->n_interop = n_int;
    if (cfg_finish(c, err)) goto fail;
    return LC_OK;
fail:
    export_job_free(j);
    return LC_FAIL;
}
