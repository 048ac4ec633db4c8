/* export: writes the on-device bundle (export/BUNDLE.md) for compositional
 * tasks that `calibrate` has run, from a JSON config (configs/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "config.h"
#include "exporter.h"
#include "loaders.h"

static void usage(FILE *f) {
    fputs("usage: export --config FILE.json\n"
          "\n"
          "Packs, for one base model, the single-task LoRAs and per compositional\n"
          "task the merge recipe, the calibration and the evaluation results that\n"
          "`calibrate` wrote, into one bundle file (export/BUNDLE.md) that\n"
          "`generate --bundle FILE --task NAME` runs. Prints a size report (bytes\n"
          "per part against the base and one single-task LoRA) on stdout.\n"
          "Schema: configs/README.md.\n",
          f);
}

int main(int argc, char **argv) {
    const char *cfg_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            cfg_file = argv[++i];
        } else {
            fprintf(stderr, "export: unknown or incomplete argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!cfg_file) {
        fprintf(stderr, "export: --config is required (see --help)\n");
        return 2;
    }
    lc_err err = {{0}};
    cfg *c = NULL;
    model m = {0};
    export_item items[64];
    char *paths[3] = {0};
    int rc = 1, n = 0, adt, cdt, lock = -1;
    const char *s_model, *s_cal, *s_out;
    if (cfg_load(&c, cfg_file, &err) || cfg_string(c, "model", 1, NULL, &s_model, &err) ||
        cfg_string(c, "calibrate_dir", 1, NULL, &s_cal, &err) ||
        cfg_string(c, "output", 1, NULL, &s_out, &err) ||
        cfg_enum(c, "adapter_dtype", 0, BUNDLE_F16, BUNDLE_DTYPE_NAMES, &adt, &err) ||
        cfg_enum(c, "calibration_dtype", 0, BUNDLE_F32, BUNDLE_DTYPE_NAMES, &cdt, &err) ||
        (n = cfg_array_len(c, "tasks", &err)) < 0)
        goto fail;
    if (n == 0 || n > 64) {
        lc_errf(&err, "%s: key 'tasks': 1 to 64 {\"task\", \"method\"} entries", cfg_file);
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "tasks[%d].task", i);
        if (cfg_string(c, key, 1, NULL, &items[i].task, &err)) goto fail;
        snprintf(key, sizeof key, "tasks[%d].method", i);
        if (cfg_string(c, key, 1, NULL, &items[i].method, &err)) goto fail;
    }
    int n_int = cfg_array_len(c, "interop", &err);
    if (n_int < 0) goto fail;
    const char *it_task[16], *it_method[16], *it_peft[16], *it_gguf[16];
    int it_f16[16];
    if (n_int > 16) {
        lc_errf(&err, "%s: key 'interop': at most 16 entries", cfg_file);
        goto fail;
    }
    for (int i = 0; i < n_int; i++) {
        char key[64];
#define K(f) (snprintf(key, sizeof key, "interop[%d]." f, i), key)
        if (cfg_string(c, K("task"), 1, NULL, &it_task[i], &err) ||
            cfg_string(c, K("method"), 1, NULL, &it_method[i], &err) ||
            cfg_string(c, K("peft_dir"), 0, NULL, &it_peft[i], &err) ||
            cfg_string(c, K("gguf"), 0, NULL, &it_gguf[i], &err) ||
            cfg_bool(c, K("gguf_f16"), 0, 0, &it_f16[i], &err))
            goto fail;
#undef K
        if (!it_peft[i] && !it_gguf[i]) {
            lc_errf(&err, "%s: key 'interop[%d]': give peft_dir and/or gguf", cfg_file, i);
            goto fail;
        }
    }
    if (cfg_finish(c, &err)) goto fail;
    paths[0] = cfg_resolve_path(c, s_model);
    paths[1] = cfg_resolve_path(c, s_cal);
    paths[2] = cfg_resolve_path(c, s_out);
    { /* the bundle's folder: created, and locked as train and calibrate lock theirs */
        char od[4200];
        const char *sl = strrchr(paths[2], '/');
        snprintf(od, sizeof od, "%.*s", sl ? (int)(sl - paths[2]) : 1, sl ? paths[2] : ".");
        if ((od[0] && lc_make_dirs(od, &err)) || lc_dir_lock(od[0] ? od : "/", &lock, &err)) goto fail;
    }
    if (model_load(&m, paths[0], &err)) goto fail;
    export_spec spec = {paths[1], items, n, (bundle_dtype)adt, (bundle_dtype)cdt, paths[2], paths[0]};
    printf("Bundle %s (adapters %s, calibrations %s):\n\n", paths[2], BUNDLE_DTYPE_NAMES[adt],
           BUNDLE_DTYPE_NAMES[cdt]);
    if (export_bundle(&m, &spec, stdout, &err)) goto fail;
    bundle *b;
    if (bundle_open(&b, paths[2], &err)) goto fail; /* read back: the file is valid */
    printf("\nbundle file: %zu bytes\n", bundle_size(b));
    bundle_close(b);
    fprintf(stderr, "export: wrote %s\n", paths[2]);
    for (int i = 0; i < n_int; i++) {
        char *pd = it_peft[i] ? cfg_resolve_path(c, it_peft[i]) : NULL;
        char *gp = it_gguf[i] ? cfg_resolve_path(c, it_gguf[i]) : NULL;
        int r = export_interop(&m, paths[1], it_task[i], it_method[i], pd, gp, it_f16[i], &err);
        if (!r) {
            if (pd) fprintf(stderr, "export: wrote PEFT adapter %s (%s / %s)\n", pd, it_task[i], it_method[i]);
            if (gp) fprintf(stderr, "export: wrote GGUF LoRA %s (%s / %s)\n", gp, it_task[i], it_method[i]);
        }
        free(pd), free(gp);
        if (r) goto fail;
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "export: %s\n", err.msg);
done:
    lc_dir_unlock(lock);
    model_free(&m);
    for (int i = 0; i < 3; i++) free(paths[i]);
    cfg_free(c);
    return rc;
}
