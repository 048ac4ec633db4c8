/* generate: the reference runtime, a thin program over the on-device
 * runtime's API (export/runtime/lcmt.h; linked here with the desktop
 * libraries, so HDF5 models and SVD merges work too). Loads a base model
 * (llama2.c checkpoint, Hugging Face folder or the project's HDF5 file),
 * any number of LoRAs with weights and calibrations, or a bundle's task,
 * and generates text with a KV cache.
 * stdout carries only the generated text (or ids with --print-ids);
 * diagnostics go to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lc_time.h"
#include "lcmt.h"

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
        "  --prompt TEXT          prompt text (default: start from BOS alone); BOS is\n"
        "                         put first (once) when the tokenizer has one, as\n"
        "                         train, evaluate and calibrate do\n"
        "  --chat                 render --prompt as the user message of the model's\n"
        "                         chat template (tokenizer_config.json's\n"
        "                         chat_template), generation prompt on\n"
        "  --system TEXT          with --chat: a system message before it\n"
        "  --no-bos               do not put BOS first\n"
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
        "  --bundle-sha256 PIN    refuse the bundle unless its SHA-256 is PIN (64 hex\n"
        "                         digits, or a sha256sum file such as the FILE.sha256\n"
        "                         export writes); without it, FILE.sha256 is checked\n"
        "                         when it exists\n"
        "  --base-sha256 PIN      refuse the base unless its files' SHA-256 is PIN\n"
        "                         (the bundle manifest's base.sha256; BUNDLE.md)\n"
        "  --verify-sha256        check the base's files against the base.sha256 the\n"
        "                         bundle records (the exact files export saw)\n"
        "  --task NAME            the bundle's compositional task (optional when the\n"
        "                         bundle has one); --prompt then fills the task's\n"
        "                         prompt template (e.g. the dialogue to summarise).\n"
        "                         The answer is generated with the settings the task\n"
        "                         was evaluated with (max new tokens, temperature,\n"
        "                         top-p, stop strings), unless the flags above are\n"
        "                         given, and printed without leading whitespace;\n"
        "                         a task calibrated with the chat prompt format\n"
        "                         renders its prompt with the chat template\n"
        "  --base-type TYPE       hold the base's matrices as f16, bf16, q8_0, q4_0,\n"
        "                         q4_k or q6_k (rows that are not whole blocks: f16)\n"
        "                         and decode with quantized matrix-vector kernels\n"
        "                         (default f32); a bundle made for the float32 base\n"
        "                         still belongs to it\n"
        "  --raw-prompt           use --prompt as the whole prompt (no template, no\n"
        "                         chat template)\n"
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


#define MAX_ADAPTERS 16
#define MAX_STOP 8

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
    const char *bundle_path_arg = NULL, *task_arg = NULL, *bundle_pin = NULL, *base_pin = NULL;
    int verify_sha = 0;
    int raw_prompt = 0, chat = 0, no_bos = 0;
    const char *system_msg = NULL, *base_type = NULL;
    const char *lora_specs[MAX_ADAPTERS], *calib_paths[MAX_ADAPTERS];
    int n_lora = 0, n_calib = 0, max_new = 256, print_ids = 0, quiet = 0, have_seed = 0;
    float temperature = 1.0f, top_p = 0.9f;
    /* which settings the command line gave (a bundle task's own fill the rest) */
    int set_max_new = 0, set_temperature = 0, set_top_p = 0, no_stop = 0;
    const char *stops[MAX_STOP];
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
            if (!v[0] || n_stops == MAX_STOP) {
                fprintf(stderr, "generate: --stop takes a non-empty text, at most %d times\n", MAX_STOP);
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
        } else if (!strcmp(a, "--bundle-sha256")) {
            NEED_VALUE();
            bundle_pin = v;
        } else if (!strcmp(a, "--base-sha256")) {
            NEED_VALUE();
            base_pin = v;
        } else if (!strcmp(a, "--verify-sha256")) {
            verify_sha = 1;
        } else if (!strcmp(a, "--task")) {
            NEED_VALUE();
            task_arg = v;
        } else if (!strcmp(a, "--raw-prompt")) {
            raw_prompt = 1;
        } else if (!strcmp(a, "--base-type")) {
            NEED_VALUE();
            static const char *const types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"};
            int known = 0;
            for (size_t k = 0; k < sizeof types / sizeof *types; k++) known |= !strcmp(v, types[k]);
            if (!known) {
                fprintf(stderr, "generate: --base-type must be f32, f16, bf16, q8_0, q4_0, q4_k or q6_k, "
                        "found '%s'\n", v);
                return 2;
            }
            base_type = v;
        } else if (!strcmp(a, "--chat")) {
            chat = 1;
        } else if (!strcmp(a, "--system")) {
            NEED_VALUE();
            system_msg = v;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = 1;
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
    if ((bundle_pin || base_pin || verify_sha) && !bundle_path_arg) {
        fprintf(stderr, "generate: --bundle-sha256, --base-sha256 and --verify-sha256 need --bundle\n");
        return 2;
    }
    if (chat && !prompt) {
        fprintf(stderr, "generate: --chat needs --prompt (the user message)\n");
        return 2;
    }
    if (system_msg && !chat && !bundle_path_arg) {
        fprintf(stderr, "generate: --system needs --chat\n");
        return 2;
    }

    int rc = 1;
    char msg[1024];
    lcmt_model *m = NULL;
    lcmt_bundle *bnd = NULL;
    lcmt_session *s = NULL;
    int *ids = NULL;
    double t0 = lc_now_s();

    lcmt_model_params mp = lcmt_model_default_params();
    mp.tokenizer_path = tok_path;
    mp.tokenizer_optional = !tok_path;
    mp.base_type = base_type;
    if (lcmt_model_open(model_path, &mp, &m, msg, sizeof msg)) {
        fprintf(stderr, "generate: %s\n", msg);
        goto done;
    }
    lcmt_model_info mi;
    lcmt_model_get_info(m, &mi);
    if (!mi.has_tokenizer && (!print_ids || prompt)) {
        fprintf(stderr, "generate: no tokenizer found for %s; give --tokenizer, or use "
                        "--prompt-ids with --print-ids\n", model_path);
        goto done;
    }
    if (n_stops && !mi.has_tokenizer) {
        fprintf(stderr, "generate: stop strings need a tokenizer (give --tokenizer, or --no-stop)\n");
        goto done;
    }

    lcmt_session_params sp = lcmt_session_default_params();
    sp.raw_prompt = raw_prompt;
    sp.chat = chat;
    sp.system = system_msg;
    sp.no_bos = no_bos;
    sp.no_stop = no_stop;
    for (int i = 0; i < n_stops; i++) sp.stop[i] = stops[i];
    sp.n_stop = n_stops;
    if (!have_seed) seed = (int)(time(NULL) & 0x7fffffff);
    sp.seed = (uint64_t)seed;
    if (bundle_path_arg) {
        double tb = lc_now_s();
        lcmt_bundle_params bp = lcmt_bundle_default_params();
        bp.verify = verify_sha ? LCMT_VERIFY_SHA256 : LCMT_VERIFY_FULL; /* the reference tool checks every weight */
        char sidecar[4200];
        snprintf(sidecar, sizeof sidecar, "%s.sha256", bundle_path_arg);
        bp.bundle_sha256 = bundle_pin ? bundle_pin : access(sidecar, R_OK) == 0 ? sidecar : NULL;
        bp.base_sha256 = base_pin;
        bp.allow_dense_copy = 1;
        bp.only_task = task_arg;
        if (lcmt_bundle_open(m, bundle_path_arg, &bp, &bnd, msg, sizeof msg)) {
            fprintf(stderr, "generate: %s\n", msg);
            goto done;
        }
        const int nt = lcmt_bundle_n_tasks(bnd);
        lcmt_task_info ti;
        if (!task_arg && nt == 1 && lcmt_bundle_task(bnd, 0, &ti) == LCMT_OK) task_arg = ti.name;
        if (!task_arg) {
            fprintf(stderr, "generate: %s holds %d tasks: name one with --task\n", bundle_path_arg, nt);
            goto done;
        }
        /* the settings the task was evaluated with, where the command line is silent */
        int k = lcmt_bundle_find_task(bnd, task_arg);
        if (k >= 0 && lcmt_bundle_task(bnd, k, &ti) == LCMT_OK) {
            if (!set_max_new && ti.max_new_tokens >= 0) max_new = ti.max_new_tokens;
            if (!set_temperature && ti.temperature >= 0) temperature = ti.temperature;
            if (!set_top_p && ti.top_p > 0) top_p = ti.top_p;
        }
        lcmt_bundle_info bi;
        lcmt_bundle_get_info(bnd, &bi);
        if (!quiet) {
            fprintf(stderr, "generate: bundle %s, task '%s': %zu bytes, loaded in %.3f s (%zu bytes used "
                    "in place from the mapping, %zu converted)\n", bundle_path_arg, task_arg,
                    bi.file_bytes, lc_now_s() - tb, bi.mapped_bytes, bi.converted_bytes);
            fprintf(stderr, "generate: task '%s' answers with max %d new tokens, temperature %g, top-p %g, "
                    "%d stop string(s)\n", task_arg, max_new, temperature, top_p,
                    n_stops ? n_stops : no_stop ? 0 : ti.n_stop);
        }
    }
    sp.max_new_tokens = max_new, sp.temperature = temperature, sp.top_p = top_p;
    lcmt_status st;
    if (bnd) {
        st = lcmt_session_new(m, bnd, task_arg, &sp, &s, msg, sizeof msg);
    } else {
        lcmt_adapter_spec specs[2 * MAX_ADAPTERS];
        char paths[MAX_ADAPTERS][4096];
        int n = 0;
        for (int i = 0; i < n_lora; i++) {
            float w = 1.0f;
            snprintf(paths[i], sizeof paths[i], "%s", lora_specs[i]);
            char *colon = strrchr(paths[i], ':');
            if (colon && colon[1] && !strchr(colon, '/')) {
                char *end;
                float wv = strtof(colon + 1, &end);
                if (*end == 0) {
                    *colon = 0;
                    w = wv;
                }
            }
            specs[n++] = (lcmt_adapter_spec){paths[i], w, 0};
        }
        for (int i = 0; i < n_calib; i++) specs[n++] = (lcmt_adapter_spec){calib_paths[i], 1.0f, 1};
        st = lcmt_session_new_with_adapters(m, specs, n, &sp, &s, msg, sizeof msg);
    }
    if (st != LCMT_OK) {
        fprintf(stderr, "generate: %s\n", msg);
        goto done;
    }
    double t_load = lc_now_s() - t0;
    if (!quiet)
        fprintf(stderr, "generate: %s: %d layers, dim %d, vocab %d; %d LoRA(s), %d calibration(s)%s%s; "
                        "loaded in %.3f s; seed %d\n",
                model_path, mi.n_layers, mi.dim, mi.vocab_size, n_lora, n_calib, bnd ? " + task " : "",
                bnd ? task_arg : "", t_load, seed);

    out_state os = {0};
    lcmt_stream stream = {print_ids ? NULL : put_text, print_ids ? put_id : NULL, &os};
    if (prompt_ids) {
        int n_prompt = 0;
        ids = malloc(sizeof(int) * (strlen(prompt_ids) + 1));
        if (!ids) {
            fprintf(stderr, "generate: out of memory\n");
            goto done;
        }
        const char *p = prompt_ids;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v >= mi.vocab_size) {
                fprintf(stderr, "generate: --prompt-ids: '%s' is not a token id in [0, %d)\n", p,
                        mi.vocab_size);
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
        st = lcmt_session_answer_ids(s, ids, n_prompt, &stream, NULL);
    } else {
        st = lcmt_session_answer(s, prompt, &stream, NULL);
    }
    if (st != LCMT_OK) {
        fprintf(stderr, "generate: %s\n", lcmt_session_last_error(s));
        goto done;
    }
    printf("\n");
    fflush(stdout);
    lcmt_answer_stats as;
    lcmt_session_last_stats(s, &as);
    const double dt = as.seconds, dt_rest = as.seconds - as.first_seconds;
    const int n_dec = as.n_steps - as.n_prompt; /* decoder steps after the prefill */
    /* The decoding rate leaves out the prompt's prefill (time to first token). */
    if (!quiet)
        fprintf(stderr, "generate: %d prompt + %d new tokens in %.3f s (prompt prefill %.3f s = time to "
                        "first token; %d decoding steps, %.1f tok/s)\n",
                as.n_prompt, as.n_new, dt, as.first_seconds, n_dec,
                n_dec > 0 && dt_rest > 0 ? n_dec / dt_rest : 0.0);
    rc = 0;
done:
    free(ids);
    lcmt_session_free(s);
    lcmt_bundle_free(bnd);
    lcmt_model_free(m);
    return rc;
}
