/* convert: rewrite a base model in another on-disk layout.
 *   convert --model IN --out OUT [--format h5|hf|llama2c]
 * IN is anything `generate --model` reads. The output format follows
 * --format, else OUT's name: *.h5 / *.hdf5 -> project HDF5, *.bin ->
 * llama2.c legacy checkpoint, anything else -> Hugging Face folder. */
#include <stdio.h>
#include <string.h>

#include "loaders.h"
#include "model.h"

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void usage(FILE *f) {
    fputs("usage: convert --model IN --out OUT [--format h5|hf|llama2c]\n"
          "\n"
          "Reads a base model (llama2.c checkpoint, Hugging Face folder or project\n"
          "HDF5 file) and writes it as project HDF5 (*.h5), llama2.c (*.bin) or a\n"
          "Hugging Face folder (config.json + model.safetensors, F32). The output\n"
          "is written to a temporary name and renamed when complete.\n",
          f);
}

int main(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *fmt = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if ((!strcmp(a, "--model") || !strcmp(a, "--out") || !strcmp(a, "--format")) && !v) {
            fprintf(stderr, "convert: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--model")) in = argv[++i];
        else if (!strcmp(a, "--out")) out = argv[++i];
        else if (!strcmp(a, "--format")) fmt = argv[++i];
        else {
            fprintf(stderr, "convert: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!in || !out) {
        fprintf(stderr, "convert: --model and --out are required (see --help)\n");
        return 2;
    }
    if (!fmt) fmt = ends_with(out, ".h5") || ends_with(out, ".hdf5") ? "h5"
                    : ends_with(out, ".bin")                         ? "llama2c"
                                                                     : "hf";
    if (strcmp(fmt, "h5") && strcmp(fmt, "hf") && strcmp(fmt, "llama2c")) {
        fprintf(stderr, "convert: --format must be h5, hf or llama2c, found '%s'\n", fmt);
        return 2;
    }
    lc_err err = {{0}};
    model m;
    if (model_load(&m, in, &err)) {
        fprintf(stderr, "convert: %s\n", err.msg);
        return 1;
    }
    int rc = !strcmp(fmt, "h5")   ? model_save_h5(&m, out, &err)
             : !strcmp(fmt, "hf") ? model_save_hf(&m, out, &err)
                                  : model_save_llama2c(&m, out, &err);
    if (rc) fprintf(stderr, "convert: %s\n", err.msg);
    else fprintf(stderr, "convert: wrote %s (%s, %zu parameters)\n", out, fmt, m.n_params);
    model_free(&m);
    return rc ? 1 : 0;
}
