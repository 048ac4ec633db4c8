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

#include "bundle.h"
#include "generation.h"
#include "loaders.h"
#include "model.h"
#include "tokenizer.h"

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
        "  --tokenizer PATH       tokenizer.json (Hugging Face) or llama2.c tokenizer\n"
        "                         (tokenizer.bin / tok512.bin). Default: the model\n"
        "                         folder's tokenizer.json, or tokenizer.bin /\n"
        "                         tok<vocab>.bin beside a checkpoint file\n"
        "  --prompt TEXT          prompt text (default: start from BOS alone)\n"
        "  --prompt-ids LIST      prompt as comma-separated token ids (no tokenizer\n"
        "                         needed; BOS is not added)\n"
        "  --max-new-tokens N     tokens to generate (default 256); stops early at\n"
        "                         EOS or BOS, at a stop string, or at the model's\n"
        "                         context length\n"
        "  --temperature T        0 = greedy (default 1.0)\n"
        "  --top-p P              nucleus sampling mass in (0,1] (default 0.9)\n"
        "  --stop TEXT            end the answer before TEXT (e.g. $'\\n'); repeatable,\n"
        "                         up to 8\n"
        "  --no-stop              no stop strings (not even a bundle task's)\n"
        "  --seed S               sampling seed (default: from the clock, printed)\n"
        "  --lora PATH[:WEIGHT]   add a LoRA (PEFT folder or project HDF5) with merge\n"
        "                         weight WEIGHT (default 1); repeatable\n"
        "  --calib PATH           add a calibration (LC / LC++; project HDF5 or\n"
        "                         safetensors); repeatable\n"
        "  --bundle FILE          load the adapters of a bundle made by `export`\n"
        "                         (checked against --model) and answer as its task\n"
        "  --task NAME            the bundle's compositional task (optional when the\n"
        "                         bundle has one); --prompt then fills the task's\n"
        "                         prompt template (e.g. the dialogue to summarise).\n"
        "                         The answer is generated with the settings the task\n"
        "                         was evaluated with (max new tokens, temperature,\n"
        "                         top-p, stop strings), unless the flags above are\n"
        "                         given, and printed without leading whitespace\n"
        "  --base-type TYPE       hold the base's matrices as f16, bf16, q8_0, q4_0,\n"
        "                         q4_k or q6_k (rows that are not whole blocks: f16)\n"
        "                         and decode with quantized matrix-vector kernels\n"
        "                         (default f32); applied after a --bundle's check\n"
        "  --raw-prompt           use --prompt as the whole prompt (no template)\n"
        "  --print-ids            print generated token ids instead of text\n"
        "  --quiet                no diagnostics on stderr\n"
        "  --help                 this text\n",
        f);
}

/* tpl with its one {field} replaced by value ("{{" / "}}" are literal
 * braces); 1 if tpl has several different fields. */
static int render_one_field(const char *tpl, const char *value, char **out) {
    const char *field = NULL;
    size_t flen = 0, n = strlen(tpl) + 1, vl = strlen(value);
    for (const char *p = tpl; *p; p++) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            p++;
            continue;
        }
        if (*p != '{') continue;
        const char *e = strchr(p, '}');
        if (!e) break;
        if (field && ((size_t)(e - p - 1) != flen || strncmp(field, p + 1, flen))) return 1;
        field = p + 1, flen = (size_t)(e - p - 1);
        n += vl;
        p = e;
    }
    char *s = malloc(n), *d = s;
    if (!s) return 1;
    for (const char *p = tpl; *p;) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            *d++ = *p;
            p += 2;
        } else if (*p == '{' && strchr(p, '}')) {
            memcpy(d, value, vl);
            d += vl;
            p = strchr(p, '}') + 1;
        } else {
            *d++ = *p++;
        }
    }
    *d = 0;
    *out = s;
    return 0;
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

#define MAX_ADAPTERS ADAPTER_MAX

/* streaming to stdout: text as it becomes final, or ids */
typedef struct {
    int n_ids;
} out_state;

static void put_text(void *ctx, const char *s, size_t n) {
    (void)ctx;
    fwrite(s, 1, n, stdout);
    fflush(stdout);
}

static void put_id(void *ctx, int id) {
    out_state *o = ctx;
    printf(o->n_ids++ ? " %d" : "%d", id);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = NULL, *prompt_ids = NULL;
    const char *bundle_path_arg = NULL, *task_arg = NULL;
    int raw_prompt = 0, base_type = QT_F32;
    const char *lora_specs[MAX_ADAPTERS], *calib_paths[MAX_ADAPTERS];
    int n_lora = 0, n_calib = 0, max_new = 256, print_ids = 0, quiet = 0, have_seed = 0;
    float temperature = 1.0f, top_p = 0.9f;
    /* which settings the command line gave (a bundle task's own fill the rest) */
    int set_max_new = 0, set_temperature = 0, set_top_p = 0, no_stop = 0;
    const char *stops[GEN_MAX_STOP];
    int n_stops = 0;
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
        } else if (!strcmp(a, "--base-type")) {
            NEED_VALUE();
            if ((base_type = model_base_type_parse(v)) < 0) {
                fprintf(stderr, "generate: --base-type must be f32, f16, bf16, q8_0, q4_0, q4_k or q6_k, "
                        "found '%s'\n", v);
                return 2;
            }
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
            set_max_new = 1;
        } else if (!strcmp(a, "--temperature")) {
            NEED_VALUE();
            if (parse_float(v, a, &temperature) || !(temperature >= 0)) {
                fprintf(stderr, "generate: --temperature must be >= 0\n");
                return 2;
            }
            set_temperature = 1;
        } else if (!strcmp(a, "--top-p")) {
            NEED_VALUE();
            if (parse_float(v, a, &top_p) || !(top_p > 0 && top_p <= 1)) {
                fprintf(stderr, "generate: --top-p must be in (0, 1]\n");
                return 2;
            }
            set_top_p = 1;
        } else if (!strcmp(a, "--stop")) {
            NEED_VALUE();
            if (!v[0] || n_stops == GEN_MAX_STOP) {
                fprintf(stderr, "generate: --stop takes a non-empty text, at most %d times\n", GEN_MAX_STOP);
                return 2;
            }
            stops[n_stops++] = v;
        } else if (!strcmp(a, "--no-stop")) {
            no_stop = 1;
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
        } else if (!strcmp(a, "--bundle")) {
            NEED_VALUE();
            bundle_path_arg = v;
        } else if (!strcmp(a, "--task")) {
            NEED_VALUE();
            task_arg = v;
        } else if (!strcmp(a, "--raw-prompt")) {
            raw_prompt = 1;
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
    if (bundle_path_arg && (n_lora || n_calib)) {
        fprintf(stderr, "generate: --bundle brings its own adapters; do not add --lora/--calib\n");
        return 2;
    }
    if (no_stop && n_stops) {
        fprintf(stderr, "generate: give --stop or --no-stop, not both\n");
        return 2;
    }
    if (task_arg && !bundle_path_arg) {
        fprintf(stderr, "generate: --task needs --bundle\n");
        return 2;
    }

    int rc = 1;
    lc_err err = {{0}};
    model m = {0};
    lora loras[MAX_ADAPTERS];
    calib cals[MAX_ADAPTERS];
    int n_lora_ok = 0, n_calib_ok = 0;
    bundle *bnd = NULL;
    bundle_task bt = {0};
    int have_bt = 0;
    char *rendered = NULL;
    model *run_m = &m;
    tokenizer *tok = NULL;
    char *text = NULL;
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
    if (bundle_path_arg) {
        double tb = now_s();
        if (bundle_open(&bnd, bundle_path_arg, &err)) {
            fprintf(stderr, "generate: %s\n", err.msg);
            goto done;
        }
        int nt;
        const char **names = bundle_task_names(bnd, &nt);
        if (!task_arg && nt == 1) task_arg = names[0];
        free(names);
        if (!task_arg) {
            fprintf(stderr, "generate: %s holds %d tasks: name one with --task\n", bundle_path_arg, nt);
            goto done;
        }
        if (bundle_task_load(bnd, &m, task_arg, &bt, &err)) {
            fprintf(stderr, "generate: %s\n", err.msg);
            goto done;
        }
        have_bt = 1;
        ad = bt.ad;
        run_m = bt.m;
        size_t copied, mapped;
        bundle_stats(bnd, &copied, &mapped);
        if (!quiet)
            fprintf(stderr, "generate: bundle %s, task '%s': %zu bytes, loaded in %.3f s (%zu bytes used "
                    "in place from the mapping, %zu converted)\n", bundle_path_arg, task_arg,
                    bundle_size(bnd), now_s() - tb, mapped, copied);
        /* the settings the task was evaluated with, where the command line is silent */
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(bt.task, "results");
        const cJSON *gj = cJSON_GetObjectItemCaseSensitive(res, "generation");
        const cJSON *x;
        if (!set_max_new && cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(gj, "max_new_tokens")) &&
            x->valuedouble >= 0 && x->valuedouble < 1e9)
            max_new = (int)x->valuedouble;
        if (!set_temperature && cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(gj, "temperature")) &&
            x->valuedouble >= 0)
            temperature = (float)x->valuedouble;
        if (!set_top_p && cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(gj, "top_p")) &&
            x->valuedouble > 0 && x->valuedouble <= 1)
            top_p = (float)x->valuedouble;
        const cJSON *sj = cJSON_GetObjectItemCaseSensitive(gj, "stop");
        if (!n_stops && !no_stop && cJSON_IsArray(sj)) {
            const cJSON *e;
            cJSON_ArrayForEach(e, sj) if (cJSON_IsString(e) && e->valuestring[0] && n_stops < GEN_MAX_STOP)
                stops[n_stops++] = e->valuestring;
        }
        if (!quiet && gj) {
            fprintf(stderr, "generate: task '%s' answers with max %d new tokens, temperature %g, top-p %g, "
                    "%d stop string(s)\n", task_arg, max_new, temperature, top_p, n_stops);
        }
        /* the task's prompt template, when it has one field: the prompt fills it */
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(bt.task, "prompt_template");
        if (prompt && !raw_prompt && cJSON_IsString(tp)) {
            if (render_one_field(tp->valuestring, prompt, &rendered)) {
                fprintf(stderr, "generate: task '%s': its prompt template \"%s\" has more than one "
                        "field; pass the whole prompt with --raw-prompt\n", task_arg, tp->valuestring);
                goto done;
            }
            prompt = rendered;
        }
    }

    if (!tok_path && !prompt_ids) {
        static char found[4096];
        lc_err ignored;
        if (model_tokenizer_path(model_path, c->vocab_size, found, sizeof found, &ignored) == LC_OK)
            tok_path = found;
    }
    if (tok_path) {
        if (tokenizer_load(&tok, tok_path, c->vocab_size, &err)) {
            fprintf(stderr, "generate: %s\n", err.msg);
            goto done;
        }
    } else if (!print_ids || prompt) {
        fprintf(stderr, "generate: no tokenizer found for %s; give --tokenizer, or use "
                        "--prompt-ids with --print-ids\n", model_path);
        goto done;
    }

    /* the prompt */
    int bos = tok && tokenizer_bos(tok) >= 0 ? tokenizer_bos(tok) : c->bos_id >= 0 ? c->bos_id : 1;
    int *enc = NULL, n_enc = 0;
    if (prompt && !prompt_ids && tok &&
        tokenizer_encode(tok, prompt, strlen(prompt), 1, &enc, &n_enc, &err)) {
        fprintf(stderr, "generate: --prompt: %s\n", err.msg);
        goto done;
    }
    size_t cap = (size_t)n_enc + (prompt_ids ? strlen(prompt_ids) : 0) + (size_t)max_new + 8;
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
    } else if (n_enc > 0) {
        memcpy(ids, enc, sizeof(int) * n_enc);
        n_prompt = n_enc;
    } else {
        ids[n_prompt++] = bos;
    }
    free(enc);
    if (n_stops && !tok) {
        fprintf(stderr, "generate: stop strings need a tokenizer (give --tokenizer, or --no-stop)\n");
        goto done;
    }
    if (n_prompt > c->max_seq_len) {
        fprintf(stderr, "generate: the prompt has %d tokens, the model's context is %d\n",
                n_prompt, c->max_seq_len);
        goto done;
    }
    /* generation runs to max_new or to the end of the model's context */
    int max_seq = n_prompt + max_new;
    if (max_seq > c->max_seq_len) max_seq = c->max_seq_len;
    if (max_seq < 2) max_seq = 2;
    if (model_quantize(run_m, base_type, &err)) {
        fprintf(stderr, "generate: %s: %s\n", model_path, err.msg);
        goto done;
    }
    if (model_decoder_init(&dec, run_m, &ad, max_seq, &err)) {
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
                model_path, c->n_layers, c->dim, c->vocab_size, ad.n_loras, ad.n_cals, t_load, seed);

    /* the shared decode loop (generation.h), streaming to stdout */
    gen_opts g = {0};
    g.max_new_tokens = max_seq - n_prompt < max_new ? max_seq - n_prompt : max_new;
    g.temperature = temperature, g.top_p = top_p, g.stop_at_bos = 1, g.n_stop = n_stops;
    for (int i = 0; i < n_stops; i++) g.stop[i] = stops[i];
    out_state os = {0};
    gen_stream gs = {0};
    gs.ctx = &os;
    if (print_ids) gs.on_token = put_id;
    else gs.on_text = put_text;
    gs.trim_leading = have_bt && !raw_prompt;
    double t1 = now_s();
    int n_new = 0;
    if (generate_text(dec, max_seq, run_m, tok, ids, n_prompt, &g, &rng, &gs, &text, &n_new, &err)) {
        fprintf(stderr, "generate: %s\n", err.msg);
        goto done;
    }
    printf("\n");
    fflush(stdout);
    double t_end = now_s(), dt = t_end - t1, dt_rest = t_end - gs.t_first;
    /* The second rate leaves out the first step, as llama2.c's run.c does
     * ("achieved tok/s": steps after the first over the time since it). */
    if (!quiet)
        fprintf(stderr, "generate: %d prompt + %d new tokens, %d steps in %.3f s (%.1f tok/s; "
                        "%.1f tok/s after the first step)\n",
                gs.n_prompt, n_new, gs.n_steps, dt, dt > 0 ? (gs.n_prompt + n_new) / dt : 0.0,
                gs.n_steps > 1 && dt_rest > 0 ? (gs.n_steps - 1) / dt_rest : 0.0);
    rc = 0;
done:
    free(ids);
    model_decoder_free(dec);
    free(text);
    tokenizer_free(tok);
    if (have_bt) bundle_task_free(&bt);
    bundle_close(bnd);
    free(rendered);
    for (int i = 0; i < n_lora_ok; i++) lora_free(&loras[i]);
    for (int i = 0; i < n_calib_ok; i++) calib_free(&cals[i]);
    model_free(&m);
    return rc;
}
