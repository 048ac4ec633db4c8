/* make_seeds.c: writes the seed corpus of every harness (tests/fuzz/corpus/)
 * from the small base of fuzz.h with the project's own writers, so every
 * seed is a valid input the reader accepts and the fuzzer mutates from
 * there. Run by scripts/fuzz.sh --seeds; the output is committed.
 *   fuzz_make_seeds OUT_DIR
 * Hand-written seeds (data sets, templates, tokenizer.json files, job
 * configs) are committed as they are and not made here. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "fuzz.h"
#include "lc_rng.h"
#include "loaders.h"
#include "tensor_file.h"

static const char *out;
static lc_err err;

static void die(const char *what) {
    fprintf(stderr, "fuzz_make_seeds: %s: %s\n", what, err.msg);
    exit(1);
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) die(path);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Writes out/<harness>/<name>: the parts joined by FZ_SEP. */
static void seed(const char *harness, const char *name, int n, const void *const *parts, const size_t *lens) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", out, harness);
    if (lc_make_dirs(p, &err)) die(p);
    snprintf(p, sizeof p, "%s/%s/%s", out, harness, name);
    FILE *f = fopen(p, "wb");
    if (!f) die(p);
    for (int i = 0; i < n; i++) {
        if (i) fwrite(FZ_SEP, 1, strlen(FZ_SEP), f);
        fwrite(parts[i], 1, lens[i], f);
    }
    if (fclose(f)) die(p);
    fprintf(stderr, "fuzz_make_seeds: %s\n", p);
}

static void seed_file(const char *harness, const char *name, const char *path) {
    size_t n;
    unsigned char *b = slurp(path, &n);
    const void *pp[1] = {b};
    seed(harness, name, 1, pp, &n);
    free(b);
}

typedef struct {
    tensor_writer *w;
} add_ctx;

static int add_tensor(const char *name, int ndim, const int64_t *shape, float *data, float *grad, void *vc) {
    (void)grad;
    return tensor_writer_add_f32(((add_ctx *)vc)->w, name, ndim, shape, data, DT_F32, &err);
}

/* A small safetensors file of mixed dtypes, by hand (the writer makes f32). */
static size_t mixed_safetensors(unsigned char *buf, const char *names[2]) {
    char hdr[512];
    int h = snprintf(hdr, sizeof hdr,
                     "{\"__metadata__\":{\"format\":\"pt\"},"
                     "\"%s\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                     "\"%s\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[8,16]},"
                     "\"c\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[16,32]},"
                     "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[32,40]},"
                     "\"e\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[40,48]}}",
                     names[0], names[1]);
    while (h % 8) hdr[h++] = ' ';
    uint64_t hl = (uint64_t)h;
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, hdr, (size_t)h);
    unsigned char *d = buf + 8 + h;
    const uint16_t f16[4] = {0x3c00, 0xc000, 0x7bff, 0x0001}, bf[4] = {0x3f80, 0xbf80, 0x7f7f, 0x0080};
    const int64_t i64[2] = {-3, 1LL << 40};
    const double f64 = 0.25;
    const int32_t i32[2] = {7, -7};
    memcpy(d, f16, 8), memcpy(d + 8, bf, 8), memcpy(d + 16, i64, 16), memcpy(d + 32, &f64, 8), memcpy(d + 40, i32, 8);
    return 8 + (size_t)h + 48;
}

static void write_l2c_tokenizer(const char *path, int vocab) {
    FILE *f = fopen(path, "wb");
    int maxlen = 16;
    fwrite(&maxlen, 4, 1, f);
    const char *words[] = {"\xe2\x96\x81" "the", "\xe2\x96\x81" "a", "an"};
    for (int i = 0; i < vocab; i++) {
        char piece[32];
        float score = 0;
        if (i == 0) strcpy(piece, "<unk>");
        else if (i == 1) strcpy(piece, "<s>");
        else if (i == 2) strcpy(piece, "</s>");
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else strcpy(piece, words[(i - 259) % 3]), score = -(float)i;
        int len = (int)strlen(piece);
        fwrite(&score, 4, 1, f), fwrite(&len, 4, 1, f), fwrite(piece, 1, (size_t)len, f);
    }
    fclose(f);
}

static cJSON *modules(unsigned mask) {
    cJSON *a = cJSON_CreateArray();
    for (int m = 0; m < MOD_COUNT; m++)
        if (mask >> m & 1) cJSON_AddItemToArray(a, cJSON_CreateString(module_short(m)));
    return a;
}

/* Two adapters (f16 and i8 tensors), tasks "lc" (linear merge + LC bias)
 * and "lcpp" (concat + LC++ rank 2, per layer). */
static void write_bundle(const char *path, model *base) {
    const model_config *c = &base->cfg;
    bundle_writer *w;
    if (bundle_writer_open(&w, path, &err)) die(path);
    cJSON *man = cJSON_CreateObject(), *ads = cJSON_CreateArray(), *tasks = cJSON_CreateArray();
    cJSON_AddStringToObject(man, "created_by", "fuzz_make_seeds");
    cJSON_AddItemToObject(man, "base", bundle_base_identity(base));
    lc_rng r;
    lc_rng_seed(&r, 3);
    const char *names[2] = {"summarize", "translate"};
    const unsigned masks[2] = {1u << MOD_Q | 1u << MOD_V, MOD_MASK_ALL};
    for (int k = 0; k < 2; k++) {
        const int rank = 2;
        for (int l = 0; l < c->n_layers; l++)
            for (int mo = 0; mo < MOD_COUNT; mo++) {
                if (!(masks[k] >> mo & 1)) continue;
                int64_t sa[2] = {rank, module_in_dim(c, mo)}, sb[2] = {module_out_dim(c, mo), rank};
                size_t na = (size_t)sa[0] * sa[1], nb = (size_t)sb[0] * sb[1];
                float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
                for (size_t i = 0; i < na; i++) A[i] = 0.05f * lc_rng_normal(&r);
                for (size_t i = 0; i < nb; i++) B[i] = 0.05f * lc_rng_normal(&r);
                char tn[256];
                snprintf(tn, sizeof tn, "adapter.%s.layers.%d.%s.A", names[k], l, module_short(mo));
                if (bundle_writer_add(w, tn, 2, sa, A, k ? BUNDLE_I8 : BUNDLE_F16, &err)) die(tn);
                snprintf(tn, sizeof tn, "adapter.%s.layers.%d.%s.B", names[k], l, module_short(mo));
                if (bundle_writer_add(w, tn, 2, sb, B, k ? BUNDLE_I8 : BUNDLE_F16, &err)) die(tn);
                free(A), free(B);
            }
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "name", names[k]);
        cJSON_AddNumberToObject(a, "rank", rank);
        cJSON_AddNumberToObject(a, "alpha", 4);
        cJSON_AddBoolToObject(a, "rslora", k);
        cJSON_AddItemToObject(a, "modules", modules(masks[k]));
        cJSON *ls = cJSON_AddArrayToObject(a, "layers");
        for (int l = 0; l < c->n_layers; l++) cJSON_AddItemToArray(ls, cJSON_CreateNumber(l));
        cJSON_AddItemToArray(ads, a);
    }
    for (int t = 0; t < 2; t++) {
        const char *tname = t ? "lcpp" : "lc";
        cJSON *tj = cJSON_CreateObject(), *mg = cJSON_CreateObject(), *mads = cJSON_CreateArray();
        cJSON_AddStringToObject(tj, "name", tname);
        cJSON_AddStringToObject(tj, "method", t ? "LC++" : "LC");
        cJSON_AddStringToObject(mg, "method", t ? "concat" : "linear");
        for (int k = 0; k < 2; k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", names[k]);
            cJSON_AddNumberToObject(e, "weight", t ? 1.0 : 0.5);
            cJSON_AddItemToArray(mads, e);
        }
        cJSON_AddItemToObject(mg, "adapters", mads);
        cJSON_AddItemToObject(tj, "merge", mg);
        cJSON *cal = cJSON_CreateObject();
        cJSON_AddStringToObject(cal, "kind", t ? "lowrank" : "bias");
        cJSON_AddNumberToObject(cal, "rank", t ? 2 : 0);
        cJSON_AddBoolToObject(cal, "per_layer", t);
        cJSON_AddItemToObject(cal, "modules", modules(MOD_MASK_ALL));
        cJSON_AddItemToObject(tj, "calibration", cal);
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            char tn[256];
            const int64_t in = module_in_dim(c, mo), o = module_out_dim(c, mo), L = c->n_layers;
            if (!t) {
                float *b = malloc(sizeof(float) * (size_t)o);
                for (int64_t i = 0; i < o; i++) b[i] = 0.01f * lc_rng_normal(&r);
                snprintf(tn, sizeof tn, "task.%s.calib.%s.bias", tname, module_short(mo));
                if (bundle_writer_add(w, tn, 1, &o, b, BUNDLE_F32, &err)) die(tn);
                free(b);
            } else {
                int64_t s1[3] = {L, 2, in}, s2[3] = {L, o, 2};
                float *P1 = malloc(sizeof(float) * (size_t)(L * 2 * in)), *P2 = malloc(sizeof(float) * (size_t)(L * 2 * o));
                for (int64_t i = 0; i < L * 2 * in; i++) P1[i] = 0.02f * lc_rng_normal(&r);
                for (int64_t i = 0; i < L * 2 * o; i++) P2[i] = 0.02f * lc_rng_normal(&r);
                snprintf(tn, sizeof tn, "task.%s.calib.%s.P1", tname, module_short(mo));
                if (bundle_writer_add(w, tn, 3, s1, P1, BUNDLE_F16, &err)) die(tn);
                snprintf(tn, sizeof tn, "task.%s.calib.%s.P2", tname, module_short(mo));
                if (bundle_writer_add(w, tn, 3, s2, P2, BUNDLE_I8, &err)) die(tn);
                free(P1), free(P2);
            }
        }
        cJSON_AddStringToObject(tj, "prompt_template", t ? "{dialogue}\nResumen:" : "Summarize: {dialogue}\n");
        cJSON *res = cJSON_CreateObject(), *g = cJSON_CreateObject();
        cJSON_AddNumberToObject(g, "max_new_tokens", 8);
        cJSON_AddNumberToObject(g, "temperature", 0);
        cJSON_AddNumberToObject(g, "top_p", 1);
        cJSON_AddItemToObject(res, "generation", g);
        cJSON_AddItemToObject(tj, "results", res);
        cJSON_AddItemToArray(tasks, tj);
    }
    cJSON_AddItemToObject(man, "adapters", ads);
    cJSON_AddItemToObject(man, "tasks", tasks);
    if (bundle_writer_close(w, man, &err)) die(path);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_make_seeds OUT_DIR\n");
        return 2;
    }
    out = argv[1];
    char p[1024], q[1024];
    model *m = fz_tiny_model();
    const tokenizer *tok = fz_byte_tokenizer();
    const char *tmp = fz_dir();

    /* safetensors: the base, and mixed dtypes */
    snprintf(p, sizeof p, "%s/model.safetensors", tmp);
    tensor_writer *w;
    if (tensor_writer_open(&w, p, TW_SAFETENSORS, &err)) die(p);
    add_ctx ctx = {w};
    if (model_for_each_tensor(m, add_tensor, &ctx) || tensor_writer_close(w, &err)) die(p);
    seed_file("safetensors", "base", p);
    unsigned char mixed[1024], shard_a[1024], shard_b[1024];
    const char *ab[2] = {"a", "b"};
    size_t nm = mixed_safetensors(mixed, ab);
    {
        const void *pp[1] = {mixed};
        seed("safetensors", "mixed", 1, pp, &nm);
    }
    /* a sharded index over two such files */
    const char *xa[2] = {"x1", "x2"}, *ya[2] = {"y1", "y2"};
    size_t na = mixed_safetensors(shard_a, xa), nb = mixed_safetensors(shard_b, ya);
    const char *index = "{\"metadata\":{\"total_size\":96},\"weight_map\":{\"x1\":\"a.safetensors\","
                        "\"x2\":\"a.safetensors\",\"y1\":\"b.safetensors\",\"y2\":\"b.safetensors\"}}";
    {
        const void *pp[3] = {index, shard_a, shard_b};
        size_t ll[3] = {strlen(index), na, nb};
        seed("safetensors_index", "two_shards", 3, pp, ll);
    }
    /* config.json, and the HF folder */
    char *cj = hf_config_to_json(&m->cfg);
    size_t cjn = strlen(cj);
    {
        const void *pp[1] = {cj};
        seed("hf_config", "tiny", 1, pp, &cjn);
        size_t n;
        unsigned char *st = slurp(p, &n);
        const void *pp2[2] = {cj, st};
        size_t ll[2] = {cjn, n};
        seed("hf_model", "tiny", 2, pp2, ll);
        free(st);
    }
    const char *shared[] = {"llama-3.2-1b", "qwen2.5-1.5b", "qwen2.5-0.5b"};
    for (int i = 0; i < 3; i++) {
        snprintf(q, sizeof q, "%s/../shared/assets/hf-configs/%s/config.json", LC_SOURCE_DIR, shared[i]);
        FILE *f = fopen(q, "rb");
        if (f) fclose(f), seed_file("hf_config", shared[i], q);
    }
    /* llama2.c checkpoint + tokenizer + text */
    snprintf(p, sizeof p, "%s/model.bin", tmp);
    snprintf(q, sizeof q, "%s/tokenizer.bin", tmp);
    if (model_save_llama2c(m, p, &err)) die(p);
    write_l2c_tokenizer(q, m->cfg.vocab_size);
    {
        size_t n1, n2;
        unsigned char *a = slurp(p, &n1), *b = slurp(q, &n2);
        const char *text = "Once upon a time, the cat sat. \xc3\xa9";
        const void *pp[3] = {a, b, text};
        size_t ll[3] = {n1, n2, strlen(text)};
        seed("llama2c", "tiny", 3, pp, ll);
        free(a), free(b);
    }
    /* GGUF bases in four types, with the byte-level tokenizer */
    const char *types[] = {"f32", "f16", "q8_0", "q4_0"};
    for (int i = 0; i < 4; i++) {
        int ty;
        snprintf(p, sizeof p, "%s/model.gguf", tmp);
        if (gguf_write_type_parse(types[i], &ty) || model_save_gguf(m, tok, ty, p, &err)) die(p);
        seed_file("gguf", types[i], p);
    }
    /* PEFT adapter + a calibration in safetensors */
    {
        lora l;
        if (lora_init(&l, &m->cfg, 2, 4.0f, 0, 1u << MOD_Q | 1u << MOD_V | 1u << MOD_DOWN, NULL, &err)) die("lora");
        lora_init_random(&l, 0.05f, 5);
        snprintf(p, sizeof p, "%s/peft", tmp);
        if (lora_save_peft(&l, p, &err)) die(p);
        lora_free(&l);
        calib cb;
        if (calib_init(&cb, &m->cfg, CALIB_LOWRANK, 2, 0, MOD_MASK_ALL, &err)) die("calib");
        calib_init_default(&cb, &m->cfg, 9);
        snprintf(q, sizeof q, "%s/calibration.safetensors", tmp);
        if (tensor_writer_open(&w, q, TW_SAFETENSORS, &err) || tensor_writer_meta(w, "format", "lcmt-calib", &err) ||
            tensor_writer_meta(w, "version", "1", &err) || tensor_writer_meta(w, "kind", "lowrank", &err) ||
            tensor_writer_meta(w, "rank", "2", &err) || tensor_writer_meta(w, "per_layer", "0", &err) ||
            tensor_writer_meta(w, "modules", "q,k,v,o,gate,up,down", &err))
            die(q);
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            char tn[128];
            int64_t s1[2] = {2, module_in_dim(&m->cfg, mo)}, s2[2] = {module_out_dim(&m->cfg, mo), 2};
            calib_tensor_name(tn, sizeof tn, mo, "P1");
            if (tensor_writer_add_f32(w, tn, 2, s1, cb.P1[mo], DT_F32, &err)) die(tn);
            calib_tensor_name(tn, sizeof tn, mo, "P2");
            if (tensor_writer_add_f32(w, tn, 2, s2, cb.P2[mo], DT_F32, &err)) die(tn);
        }
        if (tensor_writer_close(w, &err)) die(q);
        calib_free(&cb);
        char c1[1100], c2[1100];
        snprintf(c1, sizeof c1, "%s/adapter_config.json", p);
        snprintf(c2, sizeof c2, "%s/adapter_model.safetensors", p);
        size_t n1, n2, n3;
        unsigned char *a = slurp(c1, &n1), *b = slurp(c2, &n2), *cc = slurp(q, &n3);
        const void *pp[3] = {a, b, cc};
        size_t ll[3] = {n1, n2, n3};
        seed("adapter", "lora_and_lcpp", 3, pp, ll);
        free(a), free(b), free(cc);
    }
    /* the bundle */
    snprintf(p, sizeof p, "%s/b.lcb", tmp);
    write_bundle(p, m);
    seed_file("bundle", "two_tasks", p);
    free(cj);
    return 0;
}
