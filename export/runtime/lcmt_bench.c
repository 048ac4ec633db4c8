/* lcmt_bench: the runtime's measurements (scripts/bench_runtime.sh runs it).
 *
 *   lcmt_bench make110m DIR
 *     writes a base of the stories110M shape with random weights (a Hugging
 *     Face folder: config.json + F32 model.safetensors), a llama2.c
 *     tokenizer of its vocabulary size, and a bundle b.lcb for it with two
 *     LoRA-form tasks (t1: two rank-8 LoRAs concatenated + LC++ rank 4;
 *     t2: one of them + LC bias).
 *   lcmt_bench make15m DIR
 *     the same at the stories15M shape (dim 288, 6 layers, hidden 768).
 *   lcmt_bench gguf DIR TYPE
 *     DIR/TYPE.gguf: that base as a GGUF with its matrices in TYPE (q8_0,
 *     q4_0, ...), and DIR/b-TYPE.lcb: the same bundle made for that file.
 *   lcmt_bench touch FILE
 *     the cost of a first touch in this machine: maps FILE, prefaults it as
 *     the runtime does (MADV_POPULATE_READ), then reads one byte of every
 *     page three times; prints each pass's time. Where the second pass is
 *     much faster than the first, a populated page still costs a fault at
 *     its first touch (a nested VM's shadow page tables).
 *   lcmt_bench run MODEL TOKENIZER|- BUNDLE TASK_A TASK_B INPUT T0_NS
 *     T0_NS: CLOCK_REALTIME nanoseconds taken just before the program was
 *     started (the script passes `date +%s%N`). Prints the time from then to
 *     the first generated token, the open times, resident memory against the
 *     mapped weight bytes, and the task switch time. Environment:
 *     LCMT_BENCH_COPY=1 reads the weights into memory instead of mapping
 *     them; LCMT_BENCH_BASE_TYPE=T holds the matrices in type T
 *     (lcmt_model_params.base_type). */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "lc_rng.h"
#include "lc_time.h"
#include "lcmt.h"
#include "loaders.h"
#include "model.h"
#include "tensor_file.h"

/* ---- make110m ----------------------------------------------------------------------- */

static int die(const char *what) {
    fprintf(stderr, "lcmt_bench: %s\n", what);
    return 1;
}

typedef struct {
    tensor_writer *w;
    lc_err *err;
} add_ctx;

static int add_tensor(const char *name, int ndim, const int64_t *shape, float *data, float *grad, void *vc) {
    (void)grad;
    add_ctx *c = vc;
    return tensor_writer_add_f32(c->w, name, ndim, shape, data, DT_F32, c->err);
}

static int write_base(const char *dir, const model_config *c) {
    char p[4200];
    lc_err err;
    char *js = hf_config_to_json(c);
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (!js || lc_write_text_atomic(p, js, &err)) return die(js ? err.msg : "out of memory");
    free(js);
    model m;
    if (model_init(&m, c, &err)) return die(err.msg);
    model_init_random(&m, 0.02f, 110);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    tensor_writer *w;
    if (tensor_writer_open(&w, p, TW_SAFETENSORS, &err)) return die(err.msg);
    add_ctx ctx = {w, &err};
    if (model_for_each_tensor(&m, add_tensor, &ctx)) {
        tensor_writer_abort(w);
        return die(err.msg);
    }
    if (tensor_writer_close(w, &err)) return die(err.msg);
    fprintf(stderr, "lcmt_bench: wrote %s (%zu parameters)\n", p, m.n_params);
    model_free(&m);
    return 0;
}

static int write_tokenizer(const char *path, int vocab) {
    FILE *f = fopen(path, "wb");
    if (!f) return die("cannot write the tokenizer");
    int maxlen = 16, ok = fwrite(&maxlen, 4, 1, f) == 1;
    for (int i = 0; ok && i < vocab; i++) {
        char piece[32];
        float score = 0;
        if (i == 0) snprintf(piece, sizeof piece, "<unk>");
        else if (i == 1) snprintf(piece, sizeof piece, "<s>");
        else if (i == 2) snprintf(piece, sizeof piece, "</s>");
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else snprintf(piece, sizeof piece, "w%d", i), score = -(float)i;
        int len = (int)strlen(piece);
        ok = fwrite(&score, 4, 1, f) == 1 && fwrite(&len, 4, 1, f) == 1 && fwrite(piece, 1, (size_t)len, f) == (size_t)len;
    }
    return fclose(f) == 0 && ok ? 0 : die("cannot write the tokenizer");
}

static cJSON *modules_all(void) {
    cJSON *a = cJSON_CreateArray();
    for (int m = 0; m < MOD_COUNT; m++) cJSON_AddItemToArray(a, cJSON_CreateString(module_short(m)));
    return a;
}

/* out: a bundle for the base at base_path (its identity), two tasks */
static int write_bundle(const char *base_path, const char *out) {
    const char *p = out;
    lc_err err;
    model base;
    if (model_load(&base, base_path, &err)) return die(err.msg);
    const model_config *c = &base.cfg;
    bundle_writer *w;
    if (bundle_writer_open(&w, p, &err)) return die(err.msg);
    cJSON *man = cJSON_CreateObject(), *ads = cJSON_CreateArray(), *tasks = cJSON_CreateArray();
    cJSON_AddStringToObject(man, "created_by", "lcmt_bench make110m");
    cJSON_AddItemToObject(man, "base", bundle_base_identity(&base));
    lc_rng r;
    lc_rng_seed(&r, 7);
    const char *names[2] = {"a", "b"};
    for (int k = 0; k < 2; k++) {
        const int rank = 8;
        for (int l = 0; l < c->n_layers; l++)
            for (int mo = 0; mo < MOD_COUNT; mo++) {
                int64_t sa[2] = {rank, module_in_dim(c, mo)}, sb[2] = {module_out_dim(c, mo), rank};
                size_t na = (size_t)sa[0] * sa[1], nb = (size_t)sb[0] * sb[1];
                float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
                for (size_t i = 0; i < na; i++) A[i] = 0.02f * lc_rng_normal(&r);
                for (size_t i = 0; i < nb; i++) B[i] = 0.02f * lc_rng_normal(&r);
                char tn[256];
                snprintf(tn, sizeof tn, "adapter.%s.layers.%d.%s.A", names[k], l, module_short(mo));
                if (bundle_writer_add(w, tn, 2, sa, A, BUNDLE_F32, &err)) return die(err.msg);
                snprintf(tn, sizeof tn, "adapter.%s.layers.%d.%s.B", names[k], l, module_short(mo));
                if (bundle_writer_add(w, tn, 2, sb, B, BUNDLE_F32, &err)) return die(err.msg);
                free(A), free(B);
            }
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "name", names[k]);
        cJSON_AddNumberToObject(a, "rank", rank);
        cJSON_AddNumberToObject(a, "alpha", 16);
        cJSON_AddFalseToObject(a, "rslora");
        cJSON_AddItemToObject(a, "modules", modules_all());
        cJSON *ls = cJSON_AddArrayToObject(a, "layers");
        for (int l = 0; l < c->n_layers; l++) cJSON_AddItemToArray(ls, cJSON_CreateNumber(l));
        cJSON_AddItemToArray(ads, a);
    }
    for (int t = 0; t < 2; t++) {
        const char *tname = t ? "t2" : "t1";
        cJSON *tj = cJSON_CreateObject(), *mg = cJSON_CreateObject(), *mads = cJSON_CreateArray();
        cJSON_AddStringToObject(tj, "name", tname);
        cJSON_AddStringToObject(tj, "method", t ? "LC" : "LC++");
        cJSON_AddStringToObject(mg, "method", "concat");
        for (int k = 0; k <= 1 - t; k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", names[k + t]);
            cJSON_AddNumberToObject(e, "weight", 1.0);
            cJSON_AddItemToArray(mads, e);
        }
        cJSON_AddItemToObject(mg, "adapters", mads);
        cJSON_AddItemToObject(tj, "merge", mg);
        cJSON *cal = cJSON_CreateObject();
        cJSON_AddStringToObject(cal, "kind", t ? "bias" : "lowrank");
        cJSON_AddNumberToObject(cal, "rank", t ? 0 : 4);
        cJSON_AddFalseToObject(cal, "per_layer");
        cJSON_AddItemToObject(cal, "modules", modules_all());
        cJSON_AddItemToObject(tj, "calibration", cal);
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            char tn[256];
            const int64_t in = module_in_dim(c, mo), out = module_out_dim(c, mo);
            if (t) {
                float *b = calloc((size_t)out, sizeof(float));
                for (int64_t i = 0; i < out; i++) b[i] = 0.01f * lc_rng_normal(&r);
                snprintf(tn, sizeof tn, "task.%s.calib.%s.bias", tname, module_short(mo));
                if (bundle_writer_add(w, tn, 1, &out, b, BUNDLE_F32, &err)) return die(err.msg);
                free(b);
            } else {
                int64_t s1[2] = {4, in}, s2[2] = {out, 4};
                float *P1 = malloc(sizeof(float) * 4 * in), *P2 = malloc(sizeof(float) * 4 * out);
                for (int64_t i = 0; i < 4 * in; i++) P1[i] = 0.02f * lc_rng_normal(&r);
                for (int64_t i = 0; i < 4 * out; i++) P2[i] = 0.02f * lc_rng_normal(&r);
                snprintf(tn, sizeof tn, "task.%s.calib.%s.P1", tname, module_short(mo));
                if (bundle_writer_add(w, tn, 2, s1, P1, BUNDLE_F32, &err)) return die(err.msg);
                snprintf(tn, sizeof tn, "task.%s.calib.%s.P2", tname, module_short(mo));
                if (bundle_writer_add(w, tn, 2, s2, P2, BUNDLE_F32, &err)) return die(err.msg);
                free(P1), free(P2);
            }
        }
        cJSON_AddStringToObject(tj, "prompt_template", "{text} Summary:");
        cJSON *res = cJSON_CreateObject(), *g = cJSON_CreateObject();
        cJSON_AddNumberToObject(g, "max_new_tokens", 16);
        cJSON_AddNumberToObject(g, "temperature", 0);
        cJSON_AddNumberToObject(g, "top_p", 1);
        cJSON_AddItemToObject(res, "generation", g);
        cJSON_AddItemToObject(tj, "results", res);
        cJSON_AddItemToArray(tasks, tj);
    }
    cJSON_AddItemToObject(man, "adapters", ads);
    cJSON_AddItemToObject(man, "tasks", tasks);
    if (bundle_writer_close(w, man, &err)) return die(err.msg);
    model_free(&base);
    fprintf(stderr, "lcmt_bench: wrote %s\n", p);
    return 0;
}

/* small: the stories15M shape; else stories110M */
static int make_shape(const char *dir, int small) {
    lc_err err;
    if (lc_make_dirs(dir, &err)) return die(err.msg);
    model_config c = {0};
    strcpy(c.arch, "llama");
    if (small) {
        c.dim = 288, c.n_layers = 6, c.n_heads = 6, c.n_kv_heads = 6, c.head_dim = 48;
        c.hidden_dim = 768, c.vocab_size = 32000, c.max_seq_len = 256;
    } else {
        c.dim = 768, c.n_layers = 12, c.n_heads = 12, c.n_kv_heads = 12, c.head_dim = 64;
        c.hidden_dim = 2048, c.vocab_size = 32000, c.max_seq_len = 1024;
    }
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.tie_embeddings = 1, c.bos_id = 1, c.eos_id = 2;
    char p[4200];
    snprintf(p, sizeof p, "%s/tok32000.bin", dir);
    if (write_base(dir, &c) || write_tokenizer(p, c.vocab_size)) return 1;
    snprintf(p, sizeof p, "%s/b.lcb", dir);
    return write_bundle(dir, p);
}

/* DIR/TYPE.gguf (the base of make110m/make15m, matrices in TYPE, as
 * `convert --type` writes it) and DIR/b-TYPE.lcb, the same bundle made
 * for that file */
static int make_gguf(const char *dir, const char *type) {
    lc_err err;
    int t;
    if (gguf_write_type_parse(type, &t)) return die("type must be f32, f16, bf16, q8_0, q4_0, q4_k or q6_k");
    model m;
    if (model_load(&m, dir, &err)) return die(err.msg);
    char p[4200], b[4200];
    snprintf(p, sizeof p, "%s/%s.gguf", dir, type);
    snprintf(b, sizeof b, "%s/b-%s.lcb", dir, type);
    int rc = model_save_gguf(&m, NULL, t, p, &err);
    model_free(&m);
    if (rc) return die(err.msg);
    return write_bundle(p, b);
}

/* ---- run ------------------------------------------------------------------------------ */

typedef struct {
    lcmt_session *s;
    double t_first;
} first_ctx;

static void on_first(void *user, int id) {
    (void)id;
    first_ctx *f = user;
    if (!f->t_first) f->t_first = lc_wall_s();
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

static int run(char **argv) {
    const double t0 = (double)strtoll(argv[6], NULL, 10) * 1e-9, t_main = lc_wall_s();
    char msg[1024];
    lcmt_model_params mp = lcmt_model_default_params();
    if (strcmp(argv[1], "-")) mp.tokenizer_path = argv[1];
    mp.copy_weights = getenv("LCMT_BENCH_COPY") && atoi(getenv("LCMT_BENCH_COPY"));
    mp.base_type = getenv("LCMT_BENCH_BASE_TYPE");
    lcmt_model *m;
    lcmt_bundle *b;
    lcmt_session *s;
    if (lcmt_model_open(argv[0], &mp, &m, msg, sizeof msg)) return die(msg);
    const double t_model = lc_wall_s();
    if (lcmt_bundle_open(m, argv[2], NULL, &b, msg, sizeof msg)) return die(msg);
    const double t_bundle = lc_wall_s();
    lcmt_session_params sp = lcmt_session_default_params();
    sp.max_new_tokens = 1;
    if (lcmt_session_new(m, b, argv[3], &sp, &s, msg, sizeof msg)) return die(msg);
    first_ctx f = {s, 0};
    lcmt_stream st = {NULL, on_first, &f};
    const double t_answer = lc_wall_s();
    if (lcmt_session_answer(s, argv[5], &st, NULL)) return die(lcmt_session_last_error(s));
    const double t_end = lc_wall_s();
    lcmt_answer_stats as;
    lcmt_session_last_stats(s, &as);
    lcmt_model_info mi;
    lcmt_model_get_info(m, &mi);
    const long rss = rss_kb();
    /* task switches: A -> B -> A ..., each a pointer swap */
    const int n_sw = 10000;
    struct timespec a, z;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n_sw; i++)
        if (lcmt_session_set_task(s, i % 2 ? argv[3] : argv[4])) return die(lcmt_session_last_error(s));
    clock_gettime(CLOCK_MONOTONIC, &z);
    const double sw = ((z.tv_sec - a.tv_sec) + (z.tv_nsec - a.tv_nsec) * 1e-9) / n_sw;
    printf("process start to main:        %8.2f ms\n", (t_main - t0) * 1e3);
    printf("model open:                   %8.2f ms (%zu params; %zu bytes mapped, %zu in memory)\n",
           (t_model - t_main) * 1e3, mi.n_params, mi.mapped_bytes, mi.owned_bytes);
    printf("bundle open (sample check):   %8.2f ms\n", (t_bundle - t_model) * 1e3);
    printf("session new:                  %8.2f ms\n", (t_answer - t_bundle) * 1e3);
    printf("prompt tokens:                %8d (first token %.2f ms after the call: %d decoder steps)\n",
           as.n_prompt, (f.t_first ? f.t_first - t_answer : 0) * 1e3, as.n_steps);
    printf("process start to first token: %8.2f ms\n", (f.t_first ? f.t_first - t0 : t_end - t0) * 1e3);
    printf("resident memory after it:     %8.1f MB (weights %.1f MB: %.1f mapped, %.1f in memory)\n",
           rss / 1024.0, (mi.mapped_bytes + mi.owned_bytes) / 1048576.0, mi.mapped_bytes / 1048576.0,
           mi.owned_bytes / 1048576.0);
    printf("task switch:                  %8.3f us\n", sw * 1e6);
    lcmt_session_free(s);
    lcmt_bundle_free(b);
    lcmt_model_free(m);
    return 0;
}

static int touch(const char *path) {
    const int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) return die("cannot open the file to touch");
    const size_t n = (size_t)st.st_size, page = (size_t)sysconf(_SC_PAGESIZE);
    const unsigned char *p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return die("cannot map the file to touch");
    double t = lc_now_s();
    lc_prefault(p, n);
    printf("%s: %zu pages of %zu bytes; prefault %.2f ms", path, (n + page - 1) / page, page, (lc_now_s() - t) * 1e3);
    volatile unsigned sink = 0;
    for (int pass = 0; pass < 3; pass++) {
        t = lc_now_s();
        for (size_t i = 0; i < n; i += page) sink += p[i];
        const double dt = lc_now_s() - t;
        printf("; read pass %d: %.2f ms (%.3f us a page)", pass + 1, dt * 1e3, dt * 1e6 / ((n + page - 1) / page));
    }
    printf("\n");
    munmap((void *)p, n);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "make110m")) return make_shape(argv[2], 0);
    if (argc == 3 && !strcmp(argv[1], "make15m")) return make_shape(argv[2], 1);
    if (argc == 4 && !strcmp(argv[1], "gguf")) return make_gguf(argv[2], argv[3]);
    if (argc == 9 && !strcmp(argv[1], "run")) return run(argv + 2);
    if (argc == 3 && !strcmp(argv[1], "touch")) return touch(argv[2]);
    fprintf(stderr, "usage: lcmt_bench make110m|make15m DIR\n"
                    "       lcmt_bench gguf DIR TYPE\n"
                    "       lcmt_bench run MODEL TOKENIZER|- BUNDLE TASK_A TASK_B INPUT T0_NS\n"
                    "       lcmt_bench touch FILE\n");
    return 2;
}
