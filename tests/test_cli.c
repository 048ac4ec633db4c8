/* The programs as a user runs them: bad input gets a clear message on
 * stderr naming the file and the tensor or key, a non-zero exit and no
 * crash (the sanitizer build runs these too, so a leak or overflow in an
 * error path fails here); sampling is reproducible from its seed. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loaders.h"
#include "model.h"
#include "testutil.h"


/* Runs `generate ARGS`, returns its exit status and stderr (malloc'd). */
static char *run_generate(const char *args, int *status) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1 >/dev/null", tu_bin("generate"), args);
    return tu_capture(cmd, status);
}

static void expect_failure(const char *args, const char *needle1, const char *needle2) {
    int st;
    char *msg = run_generate(args, &st);
    cr_assert_not_null(msg);
    cr_assert(st != 0, "generate %s: expected a non-zero exit, got 0", args);
    cr_assert(st != -1, "generate %s: did not exit normally (crash?)", args);
    cr_assert_null(strstr(msg, "Sanitizer"), "generate %s: sanitizer report:\n%s", args, msg);
    cr_assert_not_null(strstr(msg, needle1), "generate %s: message lacks '%s':\n%s", args, needle1, msg);
    if (needle2)
        cr_assert_not_null(strstr(msg, needle2), "generate %s: message lacks '%s':\n%s", args, needle2, msg);
    free(msg);
}

/* A tiny valid HF folder in dir/name. */
static void write_tiny_hf(const char *dir) {
    model_config c = {0};
    strcpy(c.arch, "llama");
    c.dim = 16, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 8;
    c.hidden_dim = 24, c.vocab_size = 32, c.max_seq_len = 64;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.bos_id = 1, c.eos_id = 2;
    model m;
    lc_err err;
    cr_assert_eq(model_init(&m, &c, &err), LC_OK);
    model_init_random(&m, 0.2f, 3);
    cr_assert_eq(model_save_hf(&m, dir, &err), LC_OK, "%s", err.msg);
    model_free(&m);
}

static char *slurp(const char *path, size_t *n) {
    lc_err err;
    char *p = lc_read_file(path, n, &err);
    cr_assert_not_null(p, "%s", err.msg);
    return p;
}

/* Writes a safetensors file with the given header text and data size. */
static void write_st(const char *path, const char *header, size_t data_bytes) {
    uint64_t n = strlen(header);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(&n, 8, 1, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_bytes; i++) fputc(0, f);
    fclose(f);
}

static char tiny[512];
static void setup_tiny(void) {
    snprintf(tiny, sizeof tiny, "%s/tiny", tu_tmpdir());
    write_tiny_hf(tiny);
}

TestSuite(cli, .init = setup_tiny, .timeout = 120);

Test(cli, valid_tiny_model_generates_ids) {
    int st;
    char args[1024], cmd[4096];
    snprintf(args, sizeof args, "--model %s --prompt-ids 1,5,7 --print-ids --max-new-tokens 5 --temperature 0", tiny);
    snprintf(cmd, sizeof cmd, "%s %s 2>/dev/null", tu_bin("generate"), args);
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0);
    cr_assert_gt(strlen(out), 1, "no ids printed");
    free(out);
}

Test(cli, missing_model_path) {
    expect_failure("--model /nonexistent/model.bin", "/nonexistent/model.bin", NULL);
}

Test(cli, bad_flags) {
    char a[1024];
    snprintf(a, sizeof a, "--model %s --temperature -1", tiny);
    expect_failure(a, "--temperature", NULL);
    snprintf(a, sizeof a, "--model %s --top-p 2", tiny);
    expect_failure(a, "--top-p", NULL);
    snprintf(a, sizeof a, "--model %s --frobnicate", tiny);
    expect_failure(a, "unknown argument '--frobnicate'", NULL);
    expect_failure("--max-new-tokens", "needs a value", NULL);
    snprintf(a, sizeof a, "--model %s --prompt-ids 1,99999 --print-ids", tiny);
    expect_failure(a, "--prompt-ids", NULL);
}

Test(cli, invalid_config_json) {
    char path[1024], a[1024];
    snprintf(path, sizeof path, "%s/config.json", tiny);
    tu_write_file(path, "{\"hidden_size\": 16,", 19);
    snprintf(a, sizeof a, "--model %s --prompt-ids 1 --print-ids", tiny);
    expect_failure(a, "config.json", "invalid JSON");
}

Test(cli, incomplete_config_json) {
    char path[1024], a[1024];
    snprintf(path, sizeof path, "%s/config.json", tiny);
    const char *cfg = "{\"model_type\": \"llama\", \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
                      " \"intermediate_size\": 24, \"vocab_size\": 32}";
    tu_write_file(path, cfg, strlen(cfg));
    snprintf(a, sizeof a, "--model %s --prompt-ids 1 --print-ids", tiny);
    expect_failure(a, "config.json", "hidden_size");
}

Test(cli, shape_disagrees_with_config) {
    char path[1024], a[1024];
    snprintf(path, sizeof path, "%s/config.json", tiny);
    size_t n;
    char *cfg = slurp(path, &n);
    char *p = strstr(cfg, "\"intermediate_size\":");
    cr_assert_not_null(p, "%s", cfg);
    p = strstr(p, "24");
    cr_assert_not_null(p);
    p[1] = '0'; /* 24 -> 20 */
    tu_write_file(path, cfg, n);
    free(cfg);
    snprintf(a, sizeof a, "--model %s --prompt-ids 1 --print-ids", tiny);
    expect_failure(a, "model.safetensors", "gate_proj.weight");
}

Test(cli, truncated_safetensors) {
    char path[1024], a[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", tiny);
    size_t n;
    char *b = slurp(path, &n);
    tu_write_file(path, b, n - 100);
    free(b);
    snprintf(a, sizeof a, "--model %s --prompt-ids 1 --print-ids", tiny);
    expect_failure(a, "model.safetensors", NULL);
}

Test(cli, safetensors_header_past_end) {
    char path[1024], a[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", tiny);
    size_t n;
    char *b = slurp(path, &n);
    uint64_t huge = (uint64_t)n * 4;
    memcpy(b, &huge, 8);
    tu_write_file(path, b, n);
    free(b);
    snprintf(a, sizeof a, "--model %s --prompt-ids 1 --print-ids", tiny);
    expect_failure(a, "model.safetensors", "header");
}

Test(cli, safetensors_bad_offsets_and_dtype) {
    char path[1024], a[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", tiny);
    snprintf(a, sizeof a, "--model %s --prompt-ids 1 --print-ids", tiny);
    write_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24);
    expect_failure(a, "model.safetensors", "overlap");
    write_st(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
    expect_failure(a, "model.safetensors", "'a'");
    write_st(path, "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16);
    expect_failure(a, "model.safetensors", "Q4_K");
}

Test(cli, missing_tensor) {
    char path[1024], a[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", tiny);
    write_st(path, "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[32,16],"
                   "\"data_offsets\":[0,2048]}}", 2048);
    snprintf(a, sizeof a, "--model %s --prompt-ids 1 --print-ids", tiny);
    expect_failure(a, "model.safetensors", "missing");
}

Test(cli, truncated_llama2c_checkpoint_and_tokenizer) {
    const char *dir = tu_tmpdir();
    char ck[1024], tok[1024], a[4096];
    snprintf(ck, sizeof ck, "%s/m.bin", dir);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s --model %s --out %s 2>/dev/null", tu_bin("convert"), tiny, ck);
    cr_assert_eq(tu_system(cmd), 0, "convert failed");
    size_t n;
    char *b = slurp(ck, &n);
    tu_write_file(ck, b, n / 2);
    free(b);
    snprintf(a, sizeof a, "--model %s --prompt-ids 1 --print-ids", ck);
    expect_failure(a, "m.bin", "truncated");
    /* a tokenizer cut in the middle of a piece */
    snprintf(ck, sizeof ck, "%s/m2.bin", dir);
    snprintf(cmd, sizeof cmd, "%s --model %s --out %s 2>/dev/null", tu_bin("convert"), tiny, ck);
    cr_assert_eq(tu_system(cmd), 0);
    snprintf(tok, sizeof tok, "%s/tok.bin", dir);
    unsigned char tb[64] = {0};
    int32_t maxlen = 8;
    memcpy(tb, &maxlen, 4);
    tu_write_file(tok, tb, 20);
    snprintf(a, sizeof a, "--model %s --tokenizer %s --prompt hello", ck, tok);
    expect_failure(a, "tok.bin", NULL);
}

Test(cli, lora_that_does_not_fit) {
    const char *dir = tu_tmpdir();
    char lp[1024], a[4096];
    snprintf(lp, sizeof lp, "%s/lora", dir);
    model_config c = {0};
    strcpy(c.arch, "llama");
    c.dim = 24, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 12;
    c.hidden_dim = 24, c.vocab_size = 32, c.max_seq_len = 64;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f;
    lora l;
    lc_err err;
    cr_assert_eq(lora_init(&l, &c, 2, 4, 0, 1u << MOD_Q, NULL, &err), LC_OK);
    cr_assert_eq(lora_save_peft(&l, lp, &err), LC_OK, "%s", err.msg);
    lora_free(&l);
    snprintf(a, sizeof a, "--model %s --lora %s --prompt-ids 1 --print-ids", tiny, lp);
    expect_failure(a, "adapter_model.safetensors", "q_proj");
}

Test(cli, sampling_is_reproducible_from_the_seed) {
    char cmd[2048];
    int st;
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt-ids 1 --print-ids --max-new-tokens 30 "
             "--temperature 1.5 --top-p 1 --seed 7 2>/dev/null", tu_bin("generate"), tiny);
    char *a = tu_capture(cmd, &st), *b = tu_capture(cmd, &st);
    cr_assert_str_eq(a, b, "same seed, different output");
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt-ids 1 --print-ids --max-new-tokens 30 "
             "--temperature 1.5 --top-p 1 --seed 8 2>/dev/null", tu_bin("generate"), tiny);
    char *c = tu_capture(cmd, &st);
    cr_assert_str_neq(a, c, "different seeds gave the same 30 sampled tokens");
    /* top-p this small keeps only the most likely token: greedy */
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt-ids 1 --print-ids --max-new-tokens 30 "
             "--temperature 1 --top-p 0.0001 --seed 9 2>/dev/null", tu_bin("generate"), tiny);
    char *d = tu_capture(cmd, &st);
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt-ids 1 --print-ids --max-new-tokens 30 "
             "--temperature 0 2>/dev/null", tu_bin("generate"), tiny);
    char *e = tu_capture(cmd, &st);
    cr_assert_str_eq(d, e, "top-p 0.0001 should equal greedy");
    free(a); free(b); free(c); free(d); free(e);
}

/* calibrate --plan: reads and checks the config without the model or any
 * adapter file (none exist here), lists the adapters the selection needs
 * (a selected Shared LC trains on its whole family) and the jobs in run
 * order, and runs nothing. */
static char *calibrate_plan(const char *args, int *st) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && %s --config configs/benchmark/stories260k/calibrate.json %s --plan 2>&1",
             tu_source_dir(), tu_bin("calibrate"), args);
    return tu_capture(cmd, st);
}

Test(cli, calibrate_plan_lists_adapters_and_jobs_without_loading) {
    int st;
    char *all = calibrate_plan("--tasks reply+ca", &st);
    cr_assert(all && st == 0, "calibrate --plan failed: %s", all ? all : "");
    /* Shared LC is among the methods: the translation family's adapters */
    cr_expect(strstr(all, "{\"adapter\":\"translate-es\""), "family adapter missing:\n%s", all);
    cr_expect(strstr(all, "\"task\":\"reply+ca\",\"family\":\"reply+translate\",\"method\":\"LC++\""),
              "LC++ job missing:\n%s", all);
    cr_expect(!strstr(all, "\"task\":\"reply+es\""), "unselected task listed:\n%s", all);
    free(all);
    char *lc = calibrate_plan("--tasks reply+ca --only LC", &st);
    cr_assert(lc && st == 0, "calibrate --plan --only LC failed: %s", lc ? lc : "");
    cr_expect(strstr(lc, "{\"adapter\":\"reply\""), "%s", lc);
    cr_expect(strstr(lc, "{\"adapter\":\"translate-ca\""), "%s", lc);
    cr_expect(!strstr(lc, "translate-es"), "no Shared LC selected, yet the family is listed:\n%s", lc);
    cr_expect(strstr(lc, "{\"job\":1,\"task\":\"reply+ca\""), "%s", lc);
    cr_expect(!strstr(lc, "{\"job\":2,"), "one job expected:\n%s", lc);
    free(lc);
    char *none = calibrate_plan("--tasks no-such-task", &st);
    cr_expect(st != 0 && none && strstr(none, "select no job"), "%s", none ? none : "");
    free(none);
}
