/* export: writes the on-device bundle (export/BUNDLE.md) for compositional
 * tasks that `calibrate` has run, from a JSON config (configs/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "config.h"
#include "export_job.h"
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
    export_job j;
    model m = {0};
    char *paths[3] = {0};
    int rc = 1, lock = -1;
    if (export_job_read(&j, cfg_file, &err)) goto fail;
    cfg *c = j.c;
    const char *s_model = j.model, *s_cal = j.calibrate_dir, *s_out = j.output;
    const int adt = j.adapter_dtype, cdt = j.calib_dtype, n = j.n_items, n_int = j.n_interop;
    const export_item *items = j.items;
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
        const export_interop_item *it = &j.interop[i];
        char *pd = it->peft_dir ? cfg_resolve_path(c, it->peft_dir) : NULL;
        char *gp = it->gguf ? cfg_resolve_path(c, it->gguf) : NULL;
        int r = export_interop(&m, paths[1], it->task, it->method, pd, gp, it->gguf_f16, &err);
        if (!r) {
            if (pd) fprintf(stderr, "export: wrote PEFT adapter %s (%s / %s)\n", pd, it->task, it->method);
            if (gp) fprintf(stderr, "export: wrote GGUF LoRA %s (%s / %s)\n", gp, it->task, it->method);
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
    export_job_free(&j);
    return rc;
}
