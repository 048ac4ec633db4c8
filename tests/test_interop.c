/* Interop exports (export/lib/interop.c, export/INTEROP.md):
 *
 *   lora_append_calib  base + merged LoRA(s) + LC++ (shared and per layer)
 *                      give the same logits as base + the one appended LoRA
 *                      (normwise relative error <= 1e-5); a bias
 *                      calibration and a rank above min(out, in) are refused
 *                      with clear messages.
 *   PEFT               the appended LoRA saved as a PEFT folder is loaded
 *                      back by an independent float64 PyTorch reader
 *                      (scripts/peft_check.py: PEFT's adapter_config rules +
 *                      scripts/torch_ref.py's model) and its logits match the
 *                      C logits (<= 1e-4). Skipped with a message without
 *                      Debian's python3-torch. A LoRA with merge weight and
 *                      coefficients is folded by peft_write_lora and loads
 *                      back (lora_load) with the same logits.
 *   GGUF               the file is parsed by Hugging Face's @huggingface/gguf
 *                      (tests/js/gguf_check.mjs); keys, types, tensor names,
 *                      reversed dims, dtypes, 32-byte alignment are checked
 *                      and every tensor's bytes are read at data offset +
 *                      tensor offset and compared with the expected values
 *                      (lora_b of q/k row-permuted for llama and mistral, not
 *                      for qwen2). The permutation is checked on hand-worked
 *                      examples of llama.cpp's formula and by showing that it
 *                      turns HF rotate-half RoPE into interleaved RoPE.
 *                      Fails, naming what to install, when node or
 *                      tests/js/node_modules is missing (CI runs `npm ci`).
 *   bad input          unwritable path (error names it, nothing left
 *                      behind), F16 overflow, unknown architecture. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "interop.h"
#include "loaders.h"
#include "merge.h"
#include "model.h"
#include "tensor_file.h"
#include "testutil.h"

#define TOL_APPEND 1e-5
#define TOL_PEFT 1e-4
#define BT_B 2
#define BT_T 7

static model_config make_cfg(const char *arch, int H, int Hkv, int hd) {
    model_config c = {0};
    snprintf(c.arch, sizeof c.arch, "%s", arch);
    int qwen = !strcmp(arch, "qwen2");
    c.dim = 24, c.n_layers = 3, c.n_heads = H, c.n_kv_heads = Hkv, c.head_dim = hd;
    c.hidden_dim = 40, c.vocab_size = 23, c.max_seq_len = 32;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f;
    c.tie_embeddings = qwen, c.qkv_bias = qwen;
    c.bos_id = 1, c.eos_id = 2;
    return c;
}

static unsigned mods(const char *list) { /* "q,v,down" -> mask */
    unsigned m = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        int k = module_parse(t);
        cr_assert_geq(k, 0, "bad module %s", t);
        m |= 1u << k;
    }
    return m;
}

static void make_tokens(const model_config *c, int *tok, int *tgt) {
    for (int i = 0; i < BT_B * BT_T; i++) tok[i] = (i * 7 + 3) % c->vocab_size, tgt[i] = -1;
}

/* (B*T, V) logits of base + ad. Caller frees. */
static float *logits_of(const model *m, adapter_set *ad) {
    lc_err err = {{0}};
    int tok[BT_B * BT_T], tgt[BT_B * BT_T];
    make_tokens(&m->cfg, tok, tgt);
    model_acts *a;
    cr_assert_eq(model_acts_init(&a, m, ad, BT_B, BT_T, ACTS_KEEP_LOGITS, &err), LC_OK, "%s", err.msg);
    float loss;
    cr_assert_eq(model_forward(m, a, tok, tgt, BT_B, BT_T, &loss, &err), LC_OK, "%s", err.msg);
    size_t n = (size_t)BT_B * BT_T * m->cfg.vocab_size;
    float *out = malloc(sizeof(float) * n);
    memcpy(out, model_acts_logits(a), sizeof(float) * n);
    model_acts_free(a);
    return out;
}

/* Random LC++ calibration with non-zero P2. */
static void make_calib(calib *cb, const model_config *c, int k, int per_layer, const char *ms,
                       uint64_t seed) {
    lc_err err = {{0}};
    cr_assert_eq(calib_init(cb, c, CALIB_LOWRANK, k, per_layer, mods(ms), &err), LC_OK, "%s", err.msg);
    snprintf(cb->name, sizeof cb->name, "lcpp%s", per_layer ? "_pl" : "");
    lc_rng r;
    lc_rng_seed(&r, seed);
    for (size_t i = 0; i < cb->n_params; i++) cb->data[i] = 0.2f * lc_rng_normal(&r);
}

/* A "merged" LoRA: subset of layers and modules, weight != 1, coefficients. */
static void make_lora(lora *l, const model_config *c, int r, const char *ms, const unsigned char *on,
                      uint64_t seed, int with_coef) {
    lc_err err = {{0}};
    cr_assert_eq(lora_init(l, c, r, 2.0f * r, 0, mods(ms), on, &err), LC_OK, "%s", err.msg);
    snprintf(l->name, sizeof l->name, "merged%d", (int)seed);
    lora_init_random(l, 0.3f, seed);
    l->weight = 0.7f;
    if (with_coef) {
        cr_assert_eq(lora_enable_coef(l, 1.0f, 0, &err), LC_OK, "%s", err.msg);
        for (int i = 0; i < l->n_layers * MOD_COUNT; i++) l->coef[i] = 0.5f + 0.1f * (i % 7);
    }
}

static void model_make(model *m, const model_config *c, uint64_t seed) {
    lc_err err = {{0}};
    cr_assert_eq(model_init(m, c, &err), LC_OK, "%s", err.msg);
    model_init_random(m, 0.3f, seed);
}

static double rel_err(const float *a, const float *b, size_t n) { return tu_rel_err_f32(a, b, n); }

/* ---- lora_append_calib ------------------------------------------------- */

static void check_append(const char *arch, int per_layer) {
    lc_err err = {{0}};
    model_config c = make_cfg(arch, 4, 2, 6);
    model m;
    model_make(&m, &c, 5);
    unsigned char on[3] = {1, 0, 1};
    lora l;
    make_lora(&l, &c, 3, "q,v,o,down", on, 17, 1);
    calib cb;
    make_calib(&cb, &c, 2, per_layer, "q,k,up,down", 23);

    adapter_set ad = {0};
    ad.loras[ad.n_loras++] = &l;
    ad.cals[ad.n_cals++] = &cb;
    float *ref = logits_of(&m, &ad);

    lora one;
    cr_assert_eq(lora_append_calib(&l, &cb, &c, &one, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(one.rank, 5);
    cr_assert_float_eq(one.scale, 1.0f, 0.0f);
    cr_assert_float_eq(one.alpha, 5.0f, 0.0f);
    cr_assert_eq(one.module_mask, mods("q,k,v,o,up,down"));
    for (int i = 0; i < c.n_layers; i++) cr_assert(one.layer_on[i], "layer %d not adapted", i);
    cr_assert_null(one.coef);
    cr_assert_float_eq(one.weight, 1.0f, 0.0f);
    /* a module the LoRA does not adapt (k) has zero LoRA columns; one the
     * calibration does not (v) has zero calibration rows */
    const float *Bk = one.B[1 * MOD_COUNT + MOD_K], *Av = one.A[0 * MOD_COUNT + MOD_V];
    for (int o = 0; o < module_out_dim(&c, MOD_K); o++)
        for (int j = 0; j < 3; j++) cr_assert_eq(Bk[o * 5 + j], 0.0f);
    for (int j = 3; j < 5; j++)
        for (int i = 0; i < module_in_dim(&c, MOD_V); i++) cr_assert_eq(Av[j * c.dim + i], 0.0f);

    adapter_set ad1 = {0};
    ad1.loras[ad1.n_loras++] = &one;
    float *got = logits_of(&m, &ad1);
    size_t n = (size_t)BT_B * BT_T * c.vocab_size;
    double e = rel_err(got, ref, n);
    cr_assert_lt(e, TOL_APPEND, "%s per_layer=%d: appended LoRA logits differ by %.3g", arch,
                 per_layer, e);
    fprintf(stderr, "append %-6s %s calib: rank 3+2, logits rel err %.2g\n", arch,
            per_layer ? "per-layer" : "shared   ", e);
    free(ref);
    free(got);
    lora_free(&one);
    lora_free(&l);
    calib_free(&cb);
    model_free(&m);
}

Test(interop, append_shared_calib_llama) { check_append("llama", 0); }
Test(interop, append_per_layer_calib_qwen2) { check_append("qwen2", 1); }
Test(interop, append_per_layer_calib_llama) { check_append("llama", 1); }

/* The intended pipeline: two LoRAs -> concat merge -> + LC++. */
Test(interop, concat_merge_plus_calib) {
    lc_err err = {{0}};
    model_config c = make_cfg("llama", 4, 2, 6);
    model m;
    model_make(&m, &c, 6);
    lora a, b;
    make_lora(&a, &c, 2, "q,k,v,o,gate,up,down", NULL, 31, 0);
    make_lora(&b, &c, 3, "q,v", NULL, 32, 0);
    a.weight = 1.0f, b.weight = 1.0f;
    calib cb;
    make_calib(&cb, &c, 2, 0, "q,k,v,o,gate,up,down", 33);
    adapter_set ad = {0};
    ad.loras[ad.n_loras++] = &a;
    ad.loras[ad.n_loras++] = &b;
    ad.cals[ad.n_cals++] = &cb;
    float *ref = logits_of(&m, &ad);

    merge_spec s;
    merge_spec_default(&s, MERGE_CONCAT);
    lora *ls[2] = {&a, &b};
    lora merged, one;
    cr_assert_eq(merge_to_lora(&s, ls, 2, &c, &merged, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(lora_append_calib(&merged, &cb, &c, &one, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(one.rank, 7);
    adapter_set ad1 = {0};
    ad1.loras[ad1.n_loras++] = &one;
    float *got = logits_of(&m, &ad1);
    double e = rel_err(got, ref, (size_t)BT_B * BT_T * c.vocab_size);
    cr_assert_lt(e, TOL_APPEND, "concat + LC++: logits differ by %.3g", e);
    free(ref);
    free(got);
    lora_free(&one);
    lora_free(&merged);
    lora_free(&a);
    lora_free(&b);
    calib_free(&cb);
    model_free(&m);
}

/* cb NULL: weight, coef and scale are folded into B (scale 1). */
Test(interop, append_without_calib_folds_scale) {
    lc_err err = {{0}};
    model_config c = make_cfg("qwen2", 4, 2, 6);
    model m;
    model_make(&m, &c, 7);
    unsigned char on[3] = {0, 1, 1};
    lora l;
    make_lora(&l, &c, 2, "k,gate", on, 41, 1);
    adapter_set ad = {0};
    ad.loras[ad.n_loras++] = &l;
    float *ref = logits_of(&m, &ad);
    lora one;
    cr_assert_eq(lora_append_calib(&l, NULL, &c, &one, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(one.rank, 2);
    cr_assert_eq(one.layer_on[0], 0, "layer 0 must stay unadapted without a calibration");
    cr_assert_null(one.A[0]);
    adapter_set ad1 = {0};
    ad1.loras[ad1.n_loras++] = &one;
    float *got = logits_of(&m, &ad1);
    double e = rel_err(got, ref, (size_t)BT_B * BT_T * c.vocab_size);
    cr_assert_lt(e, TOL_APPEND, "folded LoRA: logits differ by %.3g", e);
    free(ref);
    free(got);
    lora_free(&one);
    lora_free(&l);
    model_free(&m);
}

Test(interop, bias_calib_refused) {
    lc_err err = {{0}};
    model_config c = make_cfg("llama", 4, 2, 6);
    lora l;
    make_lora(&l, &c, 2, "q,v", NULL, 51, 0);
    calib cb;
    cr_assert_eq(calib_init(&cb, &c, CALIB_BIAS, 0, 0, MOD_MASK_ALL, &err), LC_OK, "%s", err.msg);
    snprintf(cb.name, sizeof cb.name, "lc_bias");
    lora out;
    cr_assert_eq(lora_append_calib(&l, &cb, &c, &out, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "bias") && strstr(err.msg, "lc_bias") && strstr(err.msg, "bundle"),
              "message should say a bias cannot be a LoRA and name the calibration: %s", err.msg);
    cr_assert_null(out.data);
    lora_free(&out); /* safe on the zeroed result */
    fprintf(stderr, "bias refused: %s\n", err.msg);
    lora_free(&l);
    calib_free(&cb);
}

Test(interop, rank_overflow_refused) {
    lc_err err = {{0}};
    model_config c = make_cfg("llama", 4, 2, 6); /* k/v out = 12 */
    lora l;
    make_lora(&l, &c, 10, "k", NULL, 61, 0);
    calib cb;
    make_calib(&cb, &c, 3, 0, "q", 62);
    lora out;
    cr_assert_eq(lora_append_calib(&l, &cb, &c, &out, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "rank 13") && strstr(err.msg, "k_proj"),
              "message should give the rank and the module: %s", err.msg);
    fprintf(stderr, "rank overflow: %s\n", err.msg);
    lora_free(&l);
    calib_free(&cb);
    cr_assert_eq(lora_append_calib(NULL, NULL, &c, &out, &err), LC_FAIL);
}

/* ---- PEFT ---------------------------------------------------------------- */

static void need_torch(void) {
    tu_require_python("torch, numpy", "Debian's python3-torch and python3-numpy");
}

static void check_peft(const char *arch, int per_layer) {
    need_torch();
    lc_err err = {{0}};
    model_config c = make_cfg(arch, 4, 2, 6);
    model m;
    model_make(&m, &c, 8);
    unsigned char on[3] = {1, 1, 0};
    lora l;
    make_lora(&l, &c, 3, "q,k,o,up", on, 71, 1);
    calib cb;
    make_calib(&cb, &c, 2, per_layer, "v,gate,down,q", 72);
    lora one;
    cr_assert_eq(lora_append_calib(&l, &cb, &c, &one, &err), LC_OK, "%s", err.msg);

    const char *dir = tu_tmpdir();
    char mdir[600], adir[600], tpath[600], opath[600], log[600], cmd[4096];
    snprintf(mdir, sizeof mdir, "%s/model", dir);
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    snprintf(tpath, sizeof tpath, "%s/tokens.json", dir);
    snprintf(opath, sizeof opath, "%s/logits.safetensors", dir);
    snprintf(log, sizeof log, "%s/peft_check.log", dir);
    cr_assert_eq(model_save_hf(&m, mdir, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(peft_write_lora(&one, &c, adir, &err), LC_OK, "%s", err.msg);

    /* the PEFT folder round-trips through the project's loader */
    lora back;
    cr_assert_eq(lora_load(&back, &c, adir, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(back.rank, one.rank);
    cr_assert_float_eq(back.scale, 1.0f, 0.0f);
    cr_assert_eq(back.module_mask, one.module_mask);
    for (size_t s = 0; s < (size_t)c.n_layers * MOD_COUNT; s++) {
        cr_assert_eq(!back.A[s], !one.A[s]);
        if (!one.A[s]) continue;
        int in = module_in_dim(&c, s % MOD_COUNT), od = module_out_dim(&c, s % MOD_COUNT);
        cr_assert_eq(memcmp(back.A[s], one.A[s], sizeof(float) * one.rank * in), 0);
        cr_assert_eq(memcmp(back.B[s], one.B[s], sizeof(float) * one.rank * od), 0);
    }
    lora_free(&back);

    int tok[BT_B * BT_T], tgt[BT_B * BT_T];
    make_tokens(&c, tok, tgt);
    cJSON *tj = cJSON_CreateObject();
    cJSON_AddNumberToObject(tj, "B", BT_B);
    cJSON_AddNumberToObject(tj, "T", BT_T);
    cJSON_AddItemToObject(tj, "tokens", cJSON_CreateIntArray(tok, BT_B * BT_T));
    char *ts = cJSON_PrintUnformatted(tj);
    cr_assert_eq(tu_write_file(tpath, ts, strlen(ts)), 0);
    free(ts);
    cJSON_Delete(tj);

    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/scripts/peft_check.py %s %s %s %s 2>%s",
             tu_source_dir(), mdir, adir, tpath, opath, log);
    int st = tu_system(cmd);
    char *lt = lc_read_file(log, NULL, &err);
    cr_assert_eq(st, 0, "scripts/peft_check.py failed (exit %d): %s", st, lt ? lt : "(no log)");
    if (lt) fprintf(stderr, "%s", lt);
    free(lt);

    tensor_file *tf;
    cr_assert_eq(tensor_file_open(&tf, opath, &err), LC_OK, "%s", err.msg);
    size_t n = (size_t)BT_B * BT_T * c.vocab_size;
    double *ref = malloc(sizeof(double) * n);
    int64_t shape[3] = {BT_B, BT_T, c.vocab_size};
    cr_assert_eq(tensor_file_read_f64(tf, "logits", 3, shape, ref, &err), LC_OK, "%s", err.msg);
    tensor_file_free(tf);

    adapter_set ad1 = {0};
    ad1.loras[ad1.n_loras++] = &one;
    float *got = logits_of(&m, &ad1);
    double e1 = tu_rel_err_f32_f64(got, ref, n);
    cr_assert_lt(e1, TOL_PEFT, "%s: C logits (appended LoRA) vs PEFT reference: %.3g", arch, e1);
    /* and against the runtime composition it replaces */
    adapter_set ad = {0};
    ad.loras[ad.n_loras++] = &l;
    ad.cals[ad.n_cals++] = &cb;
    float *orig = logits_of(&m, &ad);
    double e2 = tu_rel_err_f32_f64(orig, ref, n);
    cr_assert_lt(e2, TOL_PEFT, "%s: C logits (LoRA + LC++) vs PEFT reference: %.3g", arch, e2);
    fprintf(stderr, "peft %-6s %s: rel err %.2g (appended), %.2g (LoRA + LC++)\n", arch,
            per_layer ? "per-layer" : "shared", e1, e2);
    free(got);
    free(orig);
    free(ref);
    lora_free(&one);
    lora_free(&l);
    calib_free(&cb);
    model_free(&m);
}

Test(interop, peft_llama_shared, .timeout = 120) { check_peft("llama", 0); }
Test(interop, peft_qwen2_per_layer, .timeout = 120) { check_peft("qwen2", 1); }

/* PEFT has no merge weight or coefficients: peft_write_lora folds them. */
Test(interop, peft_write_folds_weight_and_coef) {
    lc_err err = {{0}};
    model_config c = make_cfg("llama", 4, 2, 6);
    model m;
    model_make(&m, &c, 9);
    unsigned char on[3] = {0, 1, 1};
    lora l;
    make_lora(&l, &c, 2, "q,down", on, 95, 1); /* weight 0.7, coef != 1 */
    const char *dir = tu_tmpdir();
    char adir[600];
    snprintf(adir, sizeof adir, "%s/adapter", dir);
    cr_assert_eq(peft_write_lora(&l, &c, adir, &err), LC_OK, "%s", err.msg);
    lora back;
    cr_assert_eq(lora_load(&back, &c, adir, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(back.layer_on[0], 0);
    adapter_set ad = {0}, ad1 = {0};
    ad.loras[ad.n_loras++] = &l;
    ad1.loras[ad1.n_loras++] = &back;
    float *ref = logits_of(&m, &ad), *got = logits_of(&m, &ad1);
    double e = rel_err(got, ref, (size_t)BT_B * BT_T * c.vocab_size);
    cr_assert_lt(e, TOL_APPEND, "PEFT round trip of a weighted LoRA: %.3g", e);
    free(ref);
    free(got);
    lora_free(&back);
    lora_free(&l);
    model_free(&m);
}

/* ---- the Q/K permutation --------------------------------------------------- */

/* w = arange(rows) as a column; llama.cpp's
 * w.reshape(n_head, 2, rows // n_head // 2).swapaxes(1, 2).reshape(rows),
 * worked by hand. */
Test(interop, permutation_known_examples) {
    float in[12], out[12];
    for (int i = 0; i < 12; i++) in[i] = (float)i;
    /* rows 8, n_head 2 (hd 4): head 0 [[0,1],[2,3]]^T -> 0 2 1 3 */
    static const float e8[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    gguf_permute_rows(in, out, 8, 1, 2);
    for (int i = 0; i < 8; i++) cr_assert_eq(out[i], e8[i], "rows 8: out[%d] = %g", i, out[i]);
    /* rows 12, n_head 2 (hd 6): [[0,1,2],[3,4,5]]^T -> 0 3 1 4 2 5 */
    static const float e12[12] = {0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11};
    gguf_permute_rows(in, out, 12, 1, 2);
    for (int i = 0; i < 12; i++) cr_assert_eq(out[i], e12[i], "rows 12: out[%d] = %g", i, out[i]);
    /* rows 12, n_head 3 (hd 4), two columns: rows move whole */
    float in2[24], out2[24];
    for (int i = 0; i < 24; i++) in2[i] = (float)i;
    static const int rowmap[12] = {0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11};
    gguf_permute_rows(in2, out2, 12, 2, 3);
    for (int r = 0; r < 12; r++)
        for (int col = 0; col < 2; col++)
            cr_assert_eq(out2[r * 2 + col], in2[rowmap[r] * 2 + col]);
}

/* What the permutation is for: llama.cpp's "llama" RoPE rotates interleaved
 * pairs (2j, 2j+1); HF rotates (j, j + hd/2). Permuting the rows of q must
 * commute the two: perm(rope_hf(q)) == rope_interleaved(perm(q)). */
Test(interop, permutation_maps_rotate_half_to_interleaved) {
    enum { NH = 3, HD = 8, ROWS = NH * HD };
    float q[ROWS], pq[ROWS], a[ROWS], b[ROWS], pa[ROWS];
    lc_rng r;
    lc_rng_seed(&r, 99);
    for (int i = 0; i < ROWS; i++) q[i] = lc_rng_normal(&r);
    for (int pos = 0; pos < 5; pos++) {
        for (int h = 0; h < NH; h++) /* HF rotate-half */
            for (int j = 0; j < HD / 2; j++) {
                double th = pos * pow(10000.0, -2.0 * j / HD);
                float x0 = q[h * HD + j], x1 = q[h * HD + j + HD / 2];
                a[h * HD + j] = (float)(x0 * cos(th) - x1 * sin(th));
                a[h * HD + j + HD / 2] = (float)(x1 * cos(th) + x0 * sin(th));
            }
        gguf_permute_rows(a, pa, ROWS, 1, NH);
        gguf_permute_rows(q, pq, ROWS, 1, NH);
        for (int h = 0; h < NH; h++) /* interleaved (GGML_ROPE_TYPE_NORM) */
            for (int j = 0; j < HD / 2; j++) {
                double th = pos * pow(10000.0, -2.0 * j / HD);
                float x0 = pq[h * HD + 2 * j], x1 = pq[h * HD + 2 * j + 1];
                b[h * HD + 2 * j] = (float)(x0 * cos(th) - x1 * sin(th));
                b[h * HD + 2 * j + 1] = (float)(x1 * cos(th) + x0 * sin(th));
            }
        for (int i = 0; i < ROWS; i++)
            cr_assert_float_eq(pa[i], b[i], 1e-6, "pos %d row %d: %g vs %g", pos, i, pa[i], b[i]);
    }
}

/* ---- GGUF ------------------------------------------------------------------ */

static void need_node(void) { tu_require_npm("@huggingface/gguf"); }

static cJSON *jget(cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert_not_null(v, "gguf_check output has no '%s'", k);
    return v;
}

static void check_meta_str(cJSON *meta, const char *key, const char *want) {
    cJSON *e = jget(meta, key);
    cr_assert_eq(jget(e, "type")->valueint, 8, "%s: GGUF type %d, expected 8 (string)", key,
                 jget(e, "type")->valueint);
    cr_assert(cJSON_IsString(jget(e, "value")) && !strcmp(jget(e, "value")->valuestring, want),
              "%s: expected '%s'", key, want);
}

/* Independent of the library: index form of reshape/swapaxes. */
static float expect_b(const float *B, int rows, int r, int row, int col, int n_head, int permute) {
    if (!permute) return B[(size_t)row * r + col];
    int hd = rows / n_head, h = row / hd, w = row % hd; /* new row (h, j, t) = w = 2j + t */
    int j = w / 2, t = w % 2;
    return B[((size_t)h * hd + t * (hd / 2) + j) * r + col]; /* old row (h, t, j) */
}

static void check_gguf(const char *arch, int f16) {
    need_node();
    lc_err err = {{0}};
    model_config c = make_cfg(arch, 4, 2, 6);
    unsigned char on[3] = {1, 0, 1};
    lora l;
    make_lora(&l, &c, 3, "q,k,v,o,gate,up,down", on, 81, 0);
    calib cb;
    make_calib(&cb, &c, 2, 1, "q,k,down", 82);
    lora one;
    cr_assert_eq(lora_append_calib(&l, &cb, &c, &one, &err), LC_OK, "%s", err.msg);

    const char *dir = tu_tmpdir();
    char path[600], cmd[2048];
    snprintf(path, sizeof path, "%s/adapter-%s.gguf", dir, f16 ? "F16" : "F32");
    cr_assert_eq(gguf_write_lora(&one, &c, path, f16, &err), LC_OK, "%s", err.msg);

    snprintf(cmd, sizeof cmd, "node '%s/tests/js/gguf_check.mjs' '%s' 2>&1", tu_source_dir(), path);
    int st;
    char *outp = tu_capture(cmd, &st);
    cr_assert_not_null(outp);
    cr_assert_eq(st, 0, "gguf_check.mjs failed (exit %d): %s", st, outp);
    cJSON *j = cJSON_Parse(outp);
    cr_assert_not_null(j, "gguf_check output is not JSON: %.300s", outp);
    free(outp);

    cr_assert_eq(jget(j, "version")->valueint, 3);
    cr_assert(cJSON_IsTrue(jget(j, "littleEndian")));
    cJSON *meta = jget(j, "metadata");
    const char *garch = strcmp(arch, "qwen2") ? "llama" : "qwen2";
    int permute = strcmp(arch, "qwen2") != 0;
    check_meta_str(meta, "general.architecture", garch);
    check_meta_str(meta, "general.type", "adapter");
    check_meta_str(meta, "adapter.type", "lora");
    cJSON *alpha = jget(meta, "adapter.lora.alpha");
    cr_assert_eq(jget(alpha, "type")->valueint, 6, "adapter.lora.alpha must be float32 (6)");
    cr_assert_float_eq(jget(alpha, "value")->valuedouble, (double)one.rank, 0.0,
                       "alpha %g: llama.cpp scales by alpha / rank, which must be 1",
                       jget(alpha, "value")->valuedouble);
    cJSON *qv = jget(meta, "general.quantization_version");
    cr_assert_eq(jget(qv, "type")->valueint, 4);
    cr_assert_eq(jget(qv, "value")->valueint, 2);

    size_t flen = 0;
    char *file = lc_read_file(path, &flen, &err);
    cr_assert_not_null(file, "%s", err.msg);
    double data_off = jget(j, "tensorDataOffset")->valuedouble;
    cr_assert_eq(fmod(data_off, 32.0), 0.0);
    cJSON *tens = jget(j, "tensors");
    int idx = 0, n_checked = 0;
    const int R = one.rank;
    for (int li = 0; li < c.n_layers; li++)
        for (int m = 0; m < MOD_COUNT; m++) {
            size_t s = (size_t)li * MOD_COUNT + m;
            if (!one.A[s]) continue;
            static const char *gm[MOD_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                "ffn_gate", "ffn_up", "ffn_down"};
            int in = module_in_dim(&c, m), od = module_out_dim(&c, m);
            for (int isb = 0; isb < 2; isb++, idx++) {
                cJSON *t = cJSON_GetArrayItem(tens, idx);
                cr_assert_not_null(t, "tensor %d missing", idx);
                char want[96];
                snprintf(want, sizeof want, "blk.%d.%s.weight.lora_%c", li, gm[m], isb ? 'b' : 'a');
                cr_assert_str_eq(jget(t, "name")->valuestring, want);
                cr_assert_eq(jget(t, "n_dims")->valueint, 2, "%s", want);
                cJSON *sh = jget(t, "shape");
                long ne0 = (long)cJSON_GetArrayItem(sh, 0)->valuedouble;
                long ne1 = (long)cJSON_GetArrayItem(sh, 1)->valuedouble;
                /* PyTorch A (r, in) -> ne [in, r]; B (out, r) -> ne [r, out] */
                cr_assert_eq(ne0, isb ? R : in, "%s: ne0 %ld", want, ne0);
                cr_assert_eq(ne1, isb ? od : R, "%s: ne1 %ld", want, ne1);
                cr_assert_eq(jget(t, "dtype")->valueint, f16 ? 1 : 0, "%s dtype", want);
                double toff = jget(t, "offset")->valuedouble;
                cr_assert_eq(fmod(toff, 32.0), 0.0, "%s: offset %.0f not 32-aligned", want, toff);
                size_t start = (size_t)(data_off + toff), esz = f16 ? 2 : 4;
                size_t ne = (size_t)ne0 * ne1;
                cr_assert_leq(start + ne * esz, flen, "%s runs past the end of the file", want);
                const unsigned char *p = (const unsigned char *)file + start;
                for (size_t e = 0; e < ne; e++) {
                    float v;
                    if (f16) {
                        uint16_t hb = (uint16_t)(p[2 * e] | p[2 * e + 1] << 8);
                        v = lc_f16_to_f32(hb);
                    } else {
                        uint32_t u = (uint32_t)p[4 * e] | (uint32_t)p[4 * e + 1] << 8 |
                                     (uint32_t)p[4 * e + 2] << 16 | (uint32_t)p[4 * e + 3] << 24;
                        memcpy(&v, &u, 4);
                    }
                    /* ggml row-major over ne: element e = (row e / ne0, col e % ne0) */
                    int row = (int)(e / ne0), col = (int)(e % ne0);
                    float x = isb ? expect_b(one.B[s], od, R, row, col,
                                             m == MOD_Q ? c.n_heads : c.n_kv_heads,
                                             permute && (m == MOD_Q || m == MOD_K))
                                  : one.A[s][(size_t)row * in + col];
                    if (f16) x = lc_f16_to_f32(lc_f32_to_f16(x));
                    cr_assert_eq(v, x, "%s element (%d, %d): file %g, expected %g", want, row, col,
                                 v, x);
                }
                n_checked++;
            }
        }
    cr_assert_eq(cJSON_GetArraySize(tens), idx, "the file has %d tensors, expected %d",
                 cJSON_GetArraySize(tens), idx);
    fprintf(stderr, "gguf %-7s %s: %d tensors checked (arch %s, q/k lora_b %s), %zu bytes\n", arch,
            f16 ? "F16" : "F32", n_checked, garch, permute ? "permuted" : "as is", flen);
    free(file);
    cJSON_Delete(j);
    lora_free(&one);
    lora_free(&l);
    calib_free(&cb);
}

Test(interop, gguf_llama_f32, .timeout = 60) { check_gguf("llama", 0); }
Test(interop, gguf_llama_f16, .timeout = 60) { check_gguf("llama", 1); }
Test(interop, gguf_qwen2_f32, .timeout = 60) { check_gguf("qwen2", 0); }
Test(interop, gguf_mistral_f32, .timeout = 60) { check_gguf("mistral", 0); }

/* ---- bad input --------------------------------------------------------------- */

static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

Test(interop, gguf_bad_paths_and_values) {
    lc_err err = {{0}};
    model_config c = make_cfg("llama", 4, 2, 6);
    lora l;
    make_lora(&l, &c, 2, "q,v", NULL, 91, 0);

    const char *bad = "/nonexistent-lcmt-dir/sub/adapter.gguf";
    cr_assert_eq(gguf_write_lora(&l, &c, bad, 0, &err), LC_FAIL);
    cr_assert(strstr(err.msg, bad), "error should name the path: %s", err.msg);
    fprintf(stderr, "unwritable: %s\n", err.msg);

    /* F16 overflow: refused, nothing left behind */
    const char *dir = tu_tmpdir();
    char path[600];
    snprintf(path, sizeof path, "%s/big.gguf", dir);
    l.A[MOD_V][3] = 1e6f;
    cr_assert_eq(gguf_write_lora(&l, &c, path, 1, &err), LC_FAIL);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "blk.0.attn_v.weight.lora_a") &&
                  strstr(err.msg, "F16"),
              "error should name the file, the tensor and F16: %s", err.msg);
    cr_assert_eq(dir_entries(dir), 0, "a failed write left files in %s", dir);
    /* the same LoRA is fine in F32 */
    cr_assert_eq(gguf_write_lora(&l, &c, path, 0, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(dir_entries(dir), 1);

    /* an architecture llama.cpp's converter mapping is not known for */
    model_config c2 = c;
    snprintf(c2.arch, sizeof c2.arch, "gpt2");
    cr_assert_eq(gguf_write_lora(&l, &c2, path, 0, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "gpt2") && strstr(err.msg, path), "%s", err.msg);
    lora_free(&l);
}
