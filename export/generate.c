/* generate: the reference runtime. Loads a base model (llama2.c checkpoint,
 * Hugging Face folder or the project's HDF5 file), any number of LoRAs with
 * weights and calibrations, and generates text with a KV cache.
 * stdout carries only the generated text (or ids with --print-ids);
 * diagnostics go to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "loaders.h"
#include "model.h"

static void usage(FILE *f) {
    fputs(
        "usage: generate --model PATH [options]\n"
        "\n"
        "Generates text from a base model with optional LoRAs and calibrations,\n"
        "in one inference pass with a KV cache. Only the generated text goes to\n"
        "stdout; load and speed diagnostics go to stderr.\n"
        "\n"
        "  --model PATH           llama2.c checkpoint (.bin), Hugging Face folder\n"
        "                         (config.json + safetensors) or project HDF5 file\n"
        "  --tokenizer PATH       llama2.c tokenizer (tokenizer.bin / tok512.bin).\n"
        "                         Default: tokenizer.bin or tok<vocab>.bin beside a\n"
        "                         llama2.c checkpoint\n"
        "  --prompt TEXT          prompt text (default: start from BOS alone)\n"
        "  --prompt-ids LIST      prompt as comma-separated token ids (no tokenizer\n"
        "                         needed; BOS is not added)\n"
        "  --max-new-tokens N     tokens to generate (default 256); stops early at\n"
        "                         EOS or BOS, or at the model's context length\n"
        "  --temperature T        0 = greedy (default 1.0)\n"
        "  --top-p P              nucleus sampling mass in (0,1] (default 0.9)\n"
        "  --seed S               sampling seed (default: from the clock, printed)\n"
        "  --lora PATH[:WEIGHT]   add a LoRA (PEFT folder or project HDF5) with merge\n"
        "                         weight WEIGHT (default 1); repeatable\n"
        "  --calib PATH           add a calibration (LC / LC++; project HDF5 or\n"
        "                         safetensors); repeatable\n"
        "  --print-ids            print generated token ids instead of text\n"
        "  --quiet                no diagnostics on stderr\n"
        "  --help                 this text\n",
        f);
}

static int parse_int(const char *s, const char *flag, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < -2147483647L || v > 2147483647L) {
        fprintf(stderr, "generate: %s expects an integer, found '%s'\n", flag, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, const char *flag, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || end == s) {
        fprintf(stderr, "generate: %s expects a number, found '%s'\n", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* tokenizer.bin or tok<V>.bin beside a llama2.c checkpoint */
static int find_tokenizer(const char *model_path, int V, char *out, size_t n) {
    struct stat st;
    if (stat(model_path, &st) != 0 || S_ISDIR(st.st_mode)) return -1;
    const char *slash = strrchr(model_path, '/');
    int dlen = slash ? (int)(slash - model_path) : 1;
    const char *dir = slash ? model_path : ".";
    snprintf(out, n, "%.*s/tokenizer.bin", dlen, dir);
    if (is_file(out)) return 0;
    snprintf(out, n, "%.*s/tok%d.bin", dlen, dir, V);
    if (is_file(out)) return 0;
    return -1;
}

#define MAX_ADAPTERS ADAPTER_MAX

int main(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = NULL, *prompt_ids = NULL;
    const char *lora_specs[MAX_ADAPTERS], *calib_paths[MAX_ADAPTERS];
    int n_lora = 0, n_calib = 0, max_new = 256, print_ids = 0, quiet = 0, have_seed = 0;
    float temperature = 1.0f, top_p = 0.9f;
    int seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                           \
    do {                                                                       \
        if (!v) {                                                              \
            fprintf(stderr, "generate: %s needs a value (see --help)\n", a);  \
            return 2;                                                          \
        }                                                                      \
        i++;                                                                   \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model")) {
            NEED_VALUE(); model_path = v;
        } else if (!strcmp(a, "--tokenizer")) {
            NEED_VALUE(); tok_path = v;
        } else if (!strcmp(a, "--prompt")) {
            NEED_VALUE(); prompt = v;
        } else if (!strcmp(a, "--prompt-ids")) {
            NEED_VALUE(); prompt_ids = v;
        } else if (!strcmp(a, "--max-new-tokens")) {
            NEED_VALUE();
            if (parse_int(v, a, &max_new) || max_new < 0) {
                fprintf(stderr, "generate: --max-new-tokens must be >= 0\n");
                return 2;
            }
        } else if (!strcmp(a, "--temperature")) {
            NEED_VALUE();
            if (parse_float(v, a, &temperature) || !(temperature >= 0)) {
                fprintf(stderr, "generate: --temperature must be >= 0\n");
                return 2;
            }
        } else if (!strcmp(a, "--top-p")) {
            NEED_VALUE();
            if (parse_float(v, a, &top_p) || !(top_p > 0 && top_p <= 1)) {
                fprintf(stderr, "generate: --top-p must be in (0, 1]\n");
                return 2;
            }
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE();
            if (parse_int(v, a, &seed)) return 2;
            have_seed = 1;
        } else if (!strcmp(a, "--lora")) {
            NEED_VALUE();
            if (n_lora == MAX_ADAPTERS) {
                fprintf(stderr, "generate: at most %d --lora\n", MAX_ADAPTERS);
                return 2;
            }
            lora_specs[n_lora++] = v;
        } else if (!strcmp(a, "--calib")) {
            NEED_VALUE();
            if (n_calib == MAX_ADAPTERS) {
                fprintf(stderr, "generate: at most %d --calib\n", MAX_ADAPTERS);
                return 2;
            }
            calib_paths[n_calib++] = v;
        } else if (!strcmp(a, "--bundle") || !strcmp(a, "--task")) {
            fprintf(stderr, "generate: %s: bundles are not implemented yet (the export issue "
                            "delivers them)\n", a);
            return 2;
        } else if (!strcmp(a, "--print-ids")) {
            print_ids = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else {
            fprintf(stderr, "generate: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
#undef NEED_VALUE
    }
    if (!model_path) {
        fprintf(stderr, "generate: --model is required (see --help)\n");
        return 2;
    }
    if (prompt && prompt_ids) {
        fprintf(stderr, "generate: give --prompt or --prompt-ids, not both\n");
        return 2;
    }

    int rc = 1;
    lc_err err = {{0}};
    model m = {0};
    lora loras[MAX_ADAPTERS];
    calib cals[MAX_ADAPTERS];
    int n_lora_ok = 0, n_calib_ok = 0;
    l2c_tokenizer tok = {0};
    int have_tok = 0;
    model_decoder *dec = NULL;
    int *ids = NULL;
    double t0 = now_s();

    if (model_load(&m, model_path, &err)) {
        fprintf(stderr, "generate: %s\n", err.msg);
        goto done;
    }
    const model_config *c = &m.cfg;
    adapter_set ad = {0};
    for (int i = 0; i < n_lora; i++) {
        char path[4096];
        float w = 1.0f;
        snprintf(path, sizeof path, "%s", lora_specs[i]);
        char *colon = strrchr(path, ':');
        if (colon && colon[1] && !strchr(colon, '/')) {
            char *end;
            float wv = strtof(colon + 1, &end);
            if (*end == 0) {
                *colon = 0;
                w = wv;
            }
        }
        if (lora_load(&loras[i], c, path, &err)) {
            fprintf(stderr, "generate: %s\n", err.msg);
            goto done;
        }
        n_lora_ok++;
        loras[i].weight = w;
        ad.loras[ad.n_loras++] = &loras[i];
    }
    for (int i = 0; i < n_calib; i++) {
        if (calib_load(&cals[i], c, calib_paths[i], &err)) {
            fprintf(stderr, "generate: %s\n", err.msg);
            goto done;
        }
        n_calib_ok++;
        ad.cals[ad.n_cals++] = &cals[i];
    }

    if (!tok_path && !prompt_ids) {
        static char found[4096];
        if (find_tokenizer(model_path, c->vocab_size, found, sizeof found) == 0) tok_path = found;
    }
    if (tok_path) {
        size_t tl = strlen(tok_path);
        if (tl >= 5 && !strcmp(tok_path + tl - 5, ".json")) {
            fprintf(stderr, "generate: %s: Hugging Face tokenizer.json is not supported yet "
                            "(the tokenizer issue delivers it); use --prompt-ids and --print-ids\n",
                    tok_path);
            goto done;
        }
        if (l2c_tokenizer_load(&tok, tok_path, c->vocab_size, &err)) {
            fprintf(stderr, "generate: %s\n", err.msg);
            goto done;
        }
        have_tok = 1;
    } else if (!print_ids || prompt) {
        fprintf(stderr, "generate: no tokenizer found for %s; give --tokenizer, or use "
                        "--prompt-ids with --print-ids\n", model_path);
        goto done;
    }

    /* the prompt */
    int bos = c->bos_id >= 0 ? c->bos_id : 1;
    size_t cap = (prompt ? strlen(prompt) : 0) + (prompt_ids ? strlen(prompt_ids) : 0) + 8;
    ids = malloc(sizeof(int) * cap);
    if (!ids) {
        fprintf(stderr, "generate: out of memory\n");
        goto done;
    }
    int n_prompt = 0;
    if (prompt_ids) {
        const char *p = prompt_ids;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v >= c->vocab_size) {
                fprintf(stderr, "generate: --prompt-ids: '%s' is not a token id in [0, %d)\n", p,
                        c->vocab_size);
                goto done;
            }
            ids[n_prompt++] = (int)v;
            p = end;
            while (*p == ',' || *p == ' ') p++;
        }
        if (n_prompt == 0) {
            fprintf(stderr, "generate: --prompt-ids is empty\n");
            goto done;
        }
    } else if (prompt && have_tok) {
        n_prompt = l2c_encode(&tok, prompt, 1, 0, ids);
        if (c->bos_id >= 0) ids[0] = bos;
    } else {
        ids[n_prompt++] = bos;
    }
    int max_seq = n_prompt + max_new;
    if (max_seq > c->max_seq_len) max_seq = c->max_seq_len;
    if (n_prompt > max_seq) {
        fprintf(stderr, "generate: the prompt has %d tokens, the model's context is %d\n",
                n_prompt, c->max_seq_len);
        goto done;
    }
    if (model_decoder_init(&dec, &m, &ad, max_seq, &err)) {
        fprintf(stderr, "generate: %s\n", err.msg);
        goto done;
    }
    double t_load = now_s() - t0;
    if (!have_seed) seed = (int)(time(NULL) & 0x7fffffff);
    lc_rng rng;
    lc_rng_seed(&rng, (uint64_t)seed);
    if (!quiet)
        fprintf(stderr, "generate: %s: %d layers, dim %d, vocab %d; %d LoRA(s), %d calibration(s); "
                        "loaded in %.3f s; seed %d\n",
                model_path, c->n_layers, c->dim, c->vocab_size, n_lora_ok, n_calib_ok, t_load, seed);

    /* prefill the prompt, then sample */
    double t1 = now_s();
    int prev = ids[0], produced = 0;
    float *logits = NULL;
    for (int pos = 0; pos < n_prompt; pos++) {
        logits = model_decoder_step(dec, ids[pos], pos);
        prev = ids[pos];
    }
    for (int pos = n_prompt; pos < max_seq + 1 && produced < max_new; pos++) {
        int next = sample_token(logits, c->vocab_size, temperature, top_p, &rng);
        produced++;
        if (next == c->eos_id || next == bos) break;
        if (print_ids) {
            printf(produced > 1 ? " %d" : "%d", next);
        } else {
            char buf[2];
            int len;
            const char *piece = l2c_decode(&tok, prev, next, buf, &len);
            fwrite(piece, 1, len, stdout);
        }
        fflush(stdout);
        prev = next;
        if (pos >= max_seq) break;
        logits = model_decoder_step(dec, next, pos);
    }
    printf("\n");
    double dt = now_s() - t1;
    if (!quiet)
        fprintf(stderr, "generate: %d prompt + %d new tokens in %.3f s (%.1f tok/s)\n", n_prompt,
                produced, dt, dt > 0 ? (n_prompt + produced) / dt : 0.0);
    rc = 0;
done:
    free(ids);
    model_decoder_free(dec);
    if (have_tok) l2c_tokenizer_free(&tok);
    for (int i = 0; i < n_lora_ok; i++) lora_free(&loras[i]);
    for (int i = 0; i < n_calib_ok; i++) calib_free(&cals[i]);
    model_free(&m);
    return rc;
}
