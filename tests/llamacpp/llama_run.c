/* llama_run: a small driver over llama.cpp's prebuilt libllama (the npm
 * node-llama-cpp build in node_modules/@node-llama-cpp/linux-x64/bins), so
 * tests can compare the project against the real runtime. Compiled against
 * the exact llama.h of those binaries (include/, from scripts/setup.sh).
 *
 *   llama_run generate MODEL N IDS [--lora FILE[:SCALE]]   greedy, N new ids
 *   llama_run logits MODEL IDS                             logits of every position
 *   llama_run tokenize MODEL TEXT [--no-special]           ids of TEXT
 *   llama_run bench MODEL N IDS [--lora FILE[:SCALE]]      decode tok/s (scripts/bench_decode.sh)
 *   llama_run first MODEL IDS [--lora FILE[:SCALE]] START_NS
 *                                                          process start (START_NS: `date +%s%N`
 *                                                          before exec) to the first greedy token,
 *                                                          by phase (scripts/bench_runtime.sh)
 *   llama_run quantize IN OUT f16|bf16|q8_0|q4_0|q4_k|q6_k                    llama_model_quantize
 *
 * IDS is comma-separated ("1" = from BOS). Greedy decoding takes the
 * lowest index among equal maxima (as the project's sample_token) and stops
 * at EOS or BOS (not printed), like `generate`. The context uses an F32 KV cache, no
 * flash attention, one sequence; threads from LLAMA_RUN_THREADS (default
 * 1). Output: ids separated by spaces, or one line of logits (%.9g) per
 * position, on stdout; errors on stderr with exit status 1. Set
 * LLAMA_RUN_VERBOSE=1 for llama.cpp's own log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-backend.h"
#include "llama.h"

#ifndef LLAMA_BIN_DIR
#define LLAMA_BIN_DIR "."
#endif

static void quiet_log(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int parse_ids(const char *s, llama_token **out) {
    int cap = 16, n = 0;
    llama_token *v = malloc(sizeof *v * cap);
    const char *p = s;
    while (v && *p) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 0) {
            free(v);
            return -1;
        }
        if (n == cap) {
            llama_token *nv = realloc(v, sizeof *v * (cap *= 2));
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[n++] = (llama_token)x;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            free(v);
            return -1;
        }
    }
    *out = v;
    return v ? n : -1;
}

static struct llama_model *load_model(const char *path) {
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *m = llama_model_load_from_file(path, mp);
    if (!m) fprintf(stderr, "llama_run: llama.cpp could not load %s\n", path);
    return m;
}

static struct llama_context *make_ctx(struct llama_model *m, int n_ctx) {
    struct llama_context_params cp = llama_context_default_params();
    const char *th = getenv("LLAMA_RUN_THREADS");
    int threads = th ? atoi(th) : 1;
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_ctx;
    cp.n_ubatch = (uint32_t)n_ctx;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = threads > 0 ? threads : 1;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.no_perf = true;
    struct llama_context *c = llama_init_from_model(m, cp);
    if (!c) fprintf(stderr, "llama_run: llama_init_from_model failed\n");
    return c;
}

/* --lora FILE[:SCALE] among argv[from..argc): the adapter applied to c (0), none given (0), or an error (1) */
static int attach_lora(struct llama_model *m, struct llama_context *c, int argc, char **argv, int from) {
    const char *lora = NULL;
    for (int i = from; i < argc; i++)
        if (!strcmp(argv[i], "--lora") && i + 1 < argc) lora = argv[++i];
    if (!lora) return 0;
    char path[4096];
    float scale = 1.0f;
    snprintf(path, sizeof path, "%s", lora);
    char *colon = strrchr(path, ':');
    if (colon) {
        scale = strtof(colon + 1, NULL);
        *colon = 0;
    }
    struct llama_adapter_lora *ad = llama_adapter_lora_init(m, path);
    if (!ad) return fprintf(stderr, "llama_run: cannot load LoRA %s\n", path), 1;
    if (llama_set_adapters_lora(c, &ad, 1, &scale)) return fprintf(stderr, "llama_run: cannot apply LoRA %s\n", path), 1;
    return 0;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int cmd_generate(int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "llama_run generate MODEL N IDS [--lora F[:S]]\n"), 2;
    int n_new = atoi(argv[1]);
    llama_token *ids;
    int n = parse_ids(argv[2], &ids);
    if (n <= 0) return fprintf(stderr, "llama_run: bad ids '%s'\n", argv[2]), 2;
    struct llama_model *m = load_model(argv[0]);
    if (!m) return 1;
    const struct llama_vocab *voc = llama_model_get_vocab(m);
    int V = llama_vocab_n_tokens(voc);
    int n_ctx = n + n_new + 1;
    struct llama_context *c = make_ctx(m, n_ctx);
    if (!c || attach_lora(m, c, argc, argv, 3)) return 1;
    llama_token bos = llama_vocab_bos(voc), eos = llama_vocab_eos(voc);
    if (llama_decode(c, llama_batch_get_one(ids, n)))
        return fprintf(stderr, "llama_run: llama_decode failed\n"), 1;
    for (int k = 0; k < n_new; k++) {
        llama_token t = (llama_token)argmax(llama_get_logits_ith(c, -1), V);
        if (t == eos || t == bos) break; /* generate stops there, not printing it */
        printf("%s%d", k ? " " : "", t);
        if (k + 1 == n_new) break;
        if (llama_decode(c, llama_batch_get_one(&t, 1)))
            return fprintf(stderr, "llama_run: llama_decode failed\n"), 1;
    }
    printf("\n");
    llama_free(c);
    llama_model_free(m);
    free(ids);
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Decode speed as `generate` reports it: the prompt, then N greedy tokens
 * (EOS does not end it), tokens/s over the steps after the first. */
static int cmd_bench(int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "llama_run bench MODEL N IDS [--lora F[:S]]\n"), 2;
    int n_new = atoi(argv[1]);
    llama_token *ids;
    int n = parse_ids(argv[2], &ids);
    if (n <= 0 || n_new < 2) return fprintf(stderr, "llama_run: bad ids '%s' or N < 2\n", argv[2]), 2;
    struct llama_model *m = load_model(argv[0]);
    if (!m) return 1;
    int V = llama_vocab_n_tokens(llama_model_get_vocab(m));
    struct llama_context *c = make_ctx(m, n + n_new + 1);
    if (!c || attach_lora(m, c, argc, argv, 3)) return 1;
    double t0 = now_s(), t1 = 0;
    if (llama_decode(c, llama_batch_get_one(ids, n))) return fprintf(stderr, "llama_run: llama_decode failed\n"), 1;
    t1 = now_s();
    for (int k = 0; k < n_new - 1; k++) { /* the last new token needs no step */
        llama_token t = (llama_token)argmax(llama_get_logits_ith(c, -1), V);
        if (llama_decode(c, llama_batch_get_one(&t, 1))) return fprintf(stderr, "llama_run: llama_decode failed\n"), 1;
    }
    double t2 = now_s();
    printf("prompt %d tokens %.6f s; %d steps after the first in %.6f s: %.2f tok/s\n", n, t1 - t0, n_new - 1,
           t2 - t1, (n_new - 1) / (t2 - t1));
    llama_free(c);
    llama_model_free(m);
    free(ids);
    return 0;
}

static double g_t_main, g_t_backends; /* wall clock (s) at main and after the back ends are loaded */

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* What lcmt_bench run measures for our runtime, for llama.cpp: the phases
 * from process start to the first token of a prompt (greedy, one token). */
static int cmd_first(int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "llama_run first MODEL IDS [--lora F[:S]] START_NS\n"), 2;
    const double t0 = (double)strtoll(argv[argc - 1], NULL, 10) * 1e-9; /* last, as lcmt_bench run takes it */
    llama_token *ids;
    int n = parse_ids(argv[1], &ids);
    if (n <= 0) return fprintf(stderr, "llama_run: bad ids '%s'\n", argv[1]), 2;
    struct llama_model *m = load_model(argv[0]);
    if (!m) return 1;
    const double t_model = wall_s();
    const int V = llama_vocab_n_tokens(llama_model_get_vocab(m));
    struct llama_context *c = make_ctx(m, n + 1);
    if (!c || attach_lora(m, c, argc - 1, argv, 2)) return 1;
    int lora = 0;
    for (int i = 2; i < argc - 1; i++) lora |= !strcmp(argv[i], "--lora");
    const double t_ctx = wall_s();
    if (llama_decode(c, llama_batch_get_one(ids, n))) return fprintf(stderr, "llama_run: llama_decode failed\n"), 1;
    const int t = argmax(llama_get_logits_ith(c, -1), V);
    const double t_first = wall_s();
    printf("process start to main:        %8.2f ms\n", (g_t_main - t0) * 1e3);
    printf("back ends loaded:             %8.2f ms\n", (g_t_backends - g_t_main) * 1e3);
    printf("model load:                   %8.2f ms\n", (t_model - g_t_backends) * 1e3);
    printf("%-30s%8.2f ms\n", lora ? "context + LoRA:" : "context:", (t_ctx - t_model) * 1e3);
    printf("prompt tokens:                %8d (first token %d, %.2f ms after the call)\n", n, t, (t_first - t_ctx) * 1e3);
    printf("process start to first token: %8.2f ms\n", (t_first - t0) * 1e3);
    llama_free(c);
    llama_model_free(m);
    free(ids);
    return 0;
}

static int cmd_logits(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "llama_run logits MODEL IDS\n"), 2;
    llama_token *ids;
    int n = parse_ids(argv[1], &ids);
    if (n <= 0) return fprintf(stderr, "llama_run: bad ids '%s'\n", argv[1]), 2;
    struct llama_model *m = load_model(argv[0]);
    if (!m) return 1;
    int V = llama_vocab_n_tokens(llama_model_get_vocab(m));
    struct llama_context *c = make_ctx(m, n);
    if (!c) return 1;
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = ids[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = n;
    if (llama_decode(c, b)) return fprintf(stderr, "llama_run: llama_decode failed\n"), 1;
    for (int i = 0; i < n; i++) {
        const float *l = llama_get_logits_ith(c, i);
        for (int j = 0; j < V; j++) printf("%s%.9g", j ? " " : "", l[j]);
        printf("\n");
    }
    llama_batch_free(b);
    llama_free(c);
    llama_model_free(m);
    free(ids);
    return 0;
}

static int cmd_tokenize(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "llama_run tokenize MODEL TEXT [--no-special]\n"), 2;
    int add_special = !(argc > 2 && !strcmp(argv[2], "--no-special"));
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *m = llama_model_load_from_file(argv[0], mp);
    if (!m) return fprintf(stderr, "llama_run: llama.cpp could not load %s\n", argv[0]), 1;
    const struct llama_vocab *voc = llama_model_get_vocab(m);
    int len = (int)strlen(argv[1]), cap = len + 8;
    llama_token *ids = malloc(sizeof *ids * (size_t)cap);
    int n = llama_tokenize(voc, argv[1], len, ids, cap, add_special, true);
    if (n < 0) return fprintf(stderr, "llama_run: llama_tokenize failed (%d)\n", n), 1;
    for (int i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    printf("\n");
    free(ids);
    llama_model_free(m);
    return 0;
}

static int cmd_quantize(int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "llama_run quantize IN OUT f16|bf16|q8_0|q4_0|q4_k|q6_k\n"), 2;
    struct llama_model_quantize_params qp = llama_model_quantize_default_params();
    if (!strcmp(argv[2], "f16")) qp.ftype = LLAMA_FTYPE_MOSTLY_F16;
    else if (!strcmp(argv[2], "bf16")) qp.ftype = LLAMA_FTYPE_MOSTLY_BF16;
    else if (!strcmp(argv[2], "q8_0")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q8_0;
    else if (!strcmp(argv[2], "q4_0")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q4_0;
    else if (!strcmp(argv[2], "q4_k")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q4_K_S;
    else if (!strcmp(argv[2], "q6_k")) qp.ftype = LLAMA_FTYPE_MOSTLY_Q6_K;
    else return fprintf(stderr, "llama_run: unknown type '%s'\n", argv[2]), 2;
    qp.nthread = 1;
    qp.pure = true; /* every matrix in the one type (no Q6_K output etc.) */
    if (llama_model_quantize(argv[0], argv[1], &qp))
        return fprintf(stderr, "llama_run: llama_model_quantize failed\n"), 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: llama_run generate|logits|tokenize|bench|first|quantize ...\n");
        return 2;
    }
    g_t_main = wall_s();
    if (!getenv("LLAMA_RUN_VERBOSE")) llama_log_set(quiet_log, NULL);
    const char *dir = getenv("LLAMA_BIN_DIR");
    ggml_backend_load_all_from_path(dir ? dir : LLAMA_BIN_DIR);
    llama_backend_init();
    g_t_backends = wall_s();
    int rc;
    if (!strcmp(argv[1], "generate")) rc = cmd_generate(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "bench")) rc = cmd_bench(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "first")) rc = cmd_first(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "logits")) rc = cmd_logits(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "tokenize")) rc = cmd_tokenize(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "quantize")) rc = cmd_quantize(argc - 2, argv + 2);
    else rc = (fprintf(stderr, "llama_run: unknown command %s\n", argv[1]), 2);
    llama_backend_free();
    return rc;
}
