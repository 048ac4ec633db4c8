/* convert: rewrite a base model in another on-disk layout.
 *   convert --model IN --out OUT [--format h5|hf|llama2c|gguf]
 *           [--tokenizer TOK] [--type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k]
 * IN is anything `generate --model` reads. The output format follows
 * --format, else OUT's name: *.h5 / *.hdf5 -> project HDF5, *.bin ->
 * llama2.c legacy checkpoint, *.gguf -> GGUF base for llama.cpp (with the
 * tokenizer: --tokenizer, else the one beside IN), anything else ->
 * Hugging Face folder. */
#include <stdio.h>
#include <string.h>

#include "loaders.h"
#include "model.h"
#include "tokenizer.h"

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void usage(FILE *f) {
    fputs("usage: convert --model IN --out OUT [--format h5|hf|llama2c|gguf]\n"
          "               [--tokenizer TOK] [--type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k]\n"
          "\n"
          "Reads a base model (llama2.c checkpoint, Hugging Face folder, project\n"
          "HDF5 file or GGUF) and writes it as project HDF5 (*.h5), llama2.c\n"
          "(*.bin), GGUF (*.gguf) or a Hugging Face folder (config.json +\n"
          "model.safetensors, F32). The output is written to a temporary name and\n"
          "renamed when complete.\n"
          "\n"
          "GGUF only:\n"
          "  --tokenizer TOK  tokenizer to store (llama2.c tokenizer.bin / tok512.bin,\n"
          "                   or a byte-level BPE tokenizer.json); default: the one\n"
          "                   beside the model\n"
          "  --type T         type of the weight matrices (default f32); norms stay\n"
          "                   f32; a matrix whose rows are not whole blocks falls back\n"
          "                   (q4_k -> q4_0, q6_k -> q8_0, then f16)\n",
          f);
}

int main(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *fmt = NULL, *tok_path = NULL, *type_s = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if ((!strcmp(a, "--model") || !strcmp(a, "--out") || !strcmp(a, "--format") ||
             !strcmp(a, "--tokenizer") || !strcmp(a, "--type")) && !v) {
            fprintf(stderr, "convert: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--model")) in = argv[++i];
        else if (!strcmp(a, "--out")) out = argv[++i];
        else if (!strcmp(a, "--format")) fmt = argv[++i];
        else if (!strcmp(a, "--tokenizer")) tok_path = argv[++i];
        else if (!strcmp(a, "--type")) type_s = argv[++i];
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
                    : ends_with(out, ".gguf")                        ? "gguf"
                                                                     : "hf";
    if (strcmp(fmt, "h5") && strcmp(fmt, "hf") && strcmp(fmt, "llama2c") && strcmp(fmt, "gguf")) {
        fprintf(stderr, "convert: --format must be h5, hf, llama2c or gguf, found '%s'\n", fmt);
        return 2;
    }
    int is_gguf = !strcmp(fmt, "gguf");
    if (!is_gguf && (tok_path || type_s)) {
        fprintf(stderr, "convert: --tokenizer and --type apply to GGUF output only\n");
        return 2;
    }
    int type = 0;
    if (type_s && gguf_write_type_parse(type_s, &type)) {
        fprintf(stderr, "convert: --type must be f32, f16, bf16, q8_0, q4_0, q4_k or q6_k, "
                        "found '%s'\n", type_s);
        return 2;
    }
    lc_err err = {{0}};
    model m;
    if (model_load(&m, in, &err)) {
        fprintf(stderr, "convert: %s\n", err.msg);
        return 1;
    }
    int rc;
    if (is_gguf) {
        char found[4200];
        tokenizer *tok = NULL;
        if (!tok_path) {
            if (model_tokenizer_path(in, m.cfg.vocab_size, found, sizeof found, &err)) {
                fprintf(stderr, "convert: %s (llama.cpp needs the tokenizer in the GGUF; give "
                                "--tokenizer)\n", err.msg);
                model_free(&m);
                return 1;
            }
            tok_path = found;
        }
        rc = tokenizer_load(&tok, tok_path, m.cfg.vocab_size, &err) ||
             model_save_gguf(&m, tok, type, out, &err);
        tokenizer_free(tok);
    } else {
        rc = !strcmp(fmt, "h5")   ? model_save_h5(&m, out, &err)
             : !strcmp(fmt, "hf") ? model_save_hf(&m, out, &err)
                                  : model_save_llama2c(&m, out, &err);
    }
    if (rc) fprintf(stderr, "convert: %s\n", err.msg);
    else fprintf(stderr, "convert: wrote %s (%s%s%s, %zu parameters)\n", out, fmt,
                 is_gguf ? " " : "", is_gguf ? (type_s ? type_s : "f32") : "", m.n_params);
    model_free(&m);
    return rc ? 1 : 0;
}
