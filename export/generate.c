/* generate: the reference runtime, a thin program over the on-device
 * runtime's API (export/runtime/lcmt.h; linked here with the desktop
 * libraries, so HDF5 models and SVD merges work too). Loads a base model
 * (llama2.c checkpoint, Hugging Face folder or the project's HDF5 file),
 * any number of LoRAs with weights and calibrations, or a bundle's task,
 * and generates text with a KV cache.
 * stdout carries only the generated text (or ids with --print-ids);
 * diagnostics go to stderr. This file parses and checks the options; the
 * work is export/lib/generate_job.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate_job.h"

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


int main(int argc, char **argv) {
    generate_opts o = generate_opts_default();
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
            NEED_VALUE(); o.model_path = v;
        } else if (!strcmp(a, "--tokenizer")) {
            NEED_VALUE(); o.tok_path = v;
        } else if (!strcmp(a, "--prompt")) {
            NEED_VALUE(); o.prompt = v;
        } else if (!strcmp(a, "--prompt-ids")) {
            NEED_VALUE(); o.prompt_ids = v;
        } else if (!strcmp(a, "--max-new-tokens")) {
            NEED_VALUE();
            if (parse_int(v, a, &o.max_new) || o.max_new < 0) {
                fprintf(stderr, "generate: --max-new-tokens must be >= 0\n");
                return 2;
            }
            o.set_max_new = 1;
        } else if (!strcmp(a, "--temperature")) {
            NEED_VALUE();
            if (parse_float(v, a, &o.temperature) || !(o.temperature >= 0)) {
                fprintf(stderr, "generate: --temperature must be >= 0\n");
                return 2;
            }
            o.set_temperature = 1;
        } else if (!strcmp(a, "--top-p")) {
            NEED_VALUE();
            if (parse_float(v, a, &o.top_p) || !(o.top_p > 0 && o.top_p <= 1)) {
                fprintf(stderr, "generate: --top-p must be in (0, 1]\n");
                return 2;
            }
            o.set_top_p = 1;
        } else if (!strcmp(a, "--stop")) {
            NEED_VALUE();
            if (!v[0] || o.n_stops == GENERATE_MAX_STOP) {
                fprintf(stderr, "generate: --stop takes a non-empty text, at most %d times\n", GENERATE_MAX_STOP);
                return 2;
            }
            o.stops[o.n_stops++] = v;
        } else if (!strcmp(a, "--no-stop")) {
            o.no_stop = 1;
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE();
            if (parse_int(v, a, &o.seed)) return 2;
            o.have_seed = 1;
        } else if (!strcmp(a, "--lora")) {
            NEED_VALUE();
            if (o.n_lora == GENERATE_MAX_ADAPTERS) {
                fprintf(stderr, "generate: at most %d --lora\n", GENERATE_MAX_ADAPTERS);
                return 2;
            }
            o.lora_specs[o.n_lora++] = v;
        } else if (!strcmp(a, "--calib")) {
            NEED_VALUE();
            if (o.n_calib == GENERATE_MAX_ADAPTERS) {
                fprintf(stderr, "generate: at most %d --calib\n", GENERATE_MAX_ADAPTERS);
                return 2;
            }
            o.calib_paths[o.n_calib++] = v;
        } else if (!strcmp(a, "--bundle")) {
            NEED_VALUE();
            o.bundle = v;
        } else if (!strcmp(a, "--bundle-sha256")) {
            NEED_VALUE();
            o.bundle_pin = v;
        } else if (!strcmp(a, "--base-sha256")) {
            NEED_VALUE();
            o.base_pin = v;
        } else if (!strcmp(a, "--verify-sha256")) {
            o.verify_sha = 1;
        } else if (!strcmp(a, "--task")) {
            NEED_VALUE();
            o.task = v;
        } else if (!strcmp(a, "--raw-prompt")) {
            o.raw_prompt = 1;
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
            o.base_type = v;
        } else if (!strcmp(a, "--chat")) {
            o.chat = 1;
        } else if (!strcmp(a, "--system")) {
            NEED_VALUE();
            o.system_msg = v;
        } else if (!strcmp(a, "--no-bos")) {
            o.no_bos = 1;
        } else if (!strcmp(a, "--print-ids")) {
            o.print_ids = 1;
        } else if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else {
            fprintf(stderr, "generate: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
#undef NEED_VALUE
    }
    if (!o.model_path) {
        fprintf(stderr, "generate: --model is required (see --help)\n");
        return 2;
    }
    if (o.prompt && o.prompt_ids) {
        fprintf(stderr, "generate: give --prompt or --prompt-ids, not both\n");
        return 2;
    }
    if (o.bundle && (o.n_lora || o.n_calib)) {
        fprintf(stderr, "generate: --bundle brings its own adapters; do not add --lora/--calib\n");
        return 2;
    }
    if (o.no_stop && o.n_stops) {
        fprintf(stderr, "generate: give --stop or --no-stop, not both\n");
        return 2;
    }
    if (o.task && !o.bundle) {
        fprintf(stderr, "generate: --task needs --bundle\n");
        return 2;
    }
    if ((o.bundle_pin || o.base_pin || o.verify_sha) && !o.bundle) {
        fprintf(stderr, "generate: --bundle-sha256, --base-sha256 and --verify-sha256 need --bundle\n");
        return 2;
    }
    if (o.chat && !o.prompt) {
        fprintf(stderr, "generate: --chat needs --prompt (the user message)\n");
        return 2;
    }
    if (o.system_msg && !o.chat && !o.bundle) {
        fprintf(stderr, "generate: --system needs --chat\n");
        return 2;
    }

    lc_err err = {{0}};
    if (generate_job_run(&o, stdout, stderr, &err)) {
        fprintf(stderr, "generate: %s\n", err.msg);
        return 1;
    }
    return 0;
}
