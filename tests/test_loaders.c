/* Tests for data-loaders/{hf_config,model_io,adapter_io,llama2c}.c: round
 * trips of models (HF folder, HDF5, llama2.c), LoRAs (PEFT, HDF5) and
 * calibrations; config parsing (synthetic and the real configs in
 * ../shared); one test per kind of bad input, each checking that the
 * message names the file and the tensor or key; the real stories260K
 * checkpoint and tokenizer. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loaders.h"
#include "tensor_file.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------- */

#define ASSERT_HAS(msg, sub) \
    cr_assert(strstr((msg), (sub)) != NULL, "message \"%s\" lacks \"%s\"", (msg), (sub))

typedef struct {
    char p[512];
} tpath;

static tpath new_dir(void) {
    tpath d;
    snprintf(d.p, sizeof d.p, "%s", tu_tmpdir());
    return d;
}

static tpath in_dir(const tpath *d, const char *name) {
    tpath r;
    cr_assert_lt(snprintf(r.p, sizeof r.p, "%s/%s", d->p, name), (int)sizeof r.p, "path too long");
    return r;
}

static void write_text(const char *path, const char *text) {
    cr_assert_eq(tu_write_file(path, text, strlen(text)), 0, "cannot write %s", path);
}

static model_config small_cfg(const char *arch, int tie, int bias) {
    model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "%s", arch);
    c.dim = 32;
    c.n_layers = 3;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 8;
    c.hidden_dim = 48;
    c.vocab_size = 64;
    c.max_seq_len = 40;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.rope_type = ROPE_DEFAULT;
    c.tie_embeddings = tie;
    c.qkv_bias = bias;
    c.bos_id = 1;
    c.eos_id = 2;
    return c;
}

static void assert_cfg_eq(const model_config *a, const model_config *b) {
    cr_assert_str_eq(a->arch, b->arch);
    cr_assert_eq(a->dim, b->dim);
    cr_assert_eq(a->n_layers, b->n_layers);
    cr_assert_eq(a->n_heads, b->n_heads);
    cr_assert_eq(a->n_kv_heads, b->n_kv_heads);
    cr_assert_eq(a->head_dim, b->head_dim);
    cr_assert_eq(a->hidden_dim, b->hidden_dim);
    cr_assert_eq(a->vocab_size, b->vocab_size);
    cr_assert_eq(a->max_seq_len, b->max_seq_len);
    cr_assert_eq(a->norm_eps, b->norm_eps);
    cr_assert_eq(a->rope_theta, b->rope_theta);
    cr_assert_eq(a->rope_type, b->rope_type);
    if (a->rope_type != ROPE_DEFAULT) cr_assert_eq(a->rope_factor, b->rope_factor);
    if (a->rope_type == ROPE_LLAMA3) {
        cr_assert_eq(a->rope_low_freq_factor, b->rope_low_freq_factor);
        cr_assert_eq(a->rope_high_freq_factor, b->rope_high_freq_factor);
        cr_assert_eq(a->rope_original_max_pos, b->rope_original_max_pos);
    }
    cr_assert_eq(a->tie_embeddings, b->tie_embeddings);
    cr_assert_eq(a->qkv_bias, b->qkv_bias);
    cr_assert_eq(a->bos_id, b->bos_id);
    cr_assert_eq(a->eos_id, b->eos_id);
}

static void assert_model_eq(const model *a, const model *b) {
    assert_cfg_eq(&a->cfg, &b->cfg);
    cr_assert_eq(a->n_params, b->n_params);
    cr_assert(!memcmp(a->data, b->data, sizeof(float) * a->n_params), "weights differ");
}

static void make_model(model *m, const model_config *c, uint64_t seed) {
    lc_err err;
    cr_assert_eq(model_init(m, c, &err), LC_OK, "%s", err.msg);
    model_init_random(m, 0.5f, seed);
}

/* ---- config.json -------------------------------------------------------- */

static const char *LLAMA3_JSON =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\","
    " \"vocab_size\": 128256, \"hidden_size\": 2048, \"intermediate_size\": 8192,"
    " \"num_hidden_layers\": 16, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
    " \"hidden_act\": \"silu\", \"max_position_embeddings\": 131072, \"rms_norm_eps\": 1e-05,"
    " \"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0,"
    " \"low_freq_factor\": 1.0, \"original_max_position_embeddings\": 8192,"
    " \"rope_type\": \"llama3\"}, \"attention_bias\": false, \"tie_word_embeddings\": true,"
    " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009]}";

Test(hf_config, llama3_with_rope_scaling) {
    model_config c;
    lc_err err;
    cr_assert_eq(hf_config_parse(LLAMA3_JSON, "cfg.json", &c, &err), LC_OK, "%s", err.msg);
    cr_assert_str_eq(c.arch, "llama");
    cr_assert_eq(c.dim, 2048);
    cr_assert_eq(c.n_layers, 16);
    cr_assert_eq(c.n_heads, 32);
    cr_assert_eq(c.n_kv_heads, 8);
    cr_assert_eq(c.head_dim, 64);
    cr_assert_eq(c.hidden_dim, 8192);
    cr_assert_eq(c.vocab_size, 128256);
    cr_assert_eq(c.max_seq_len, 131072);
    cr_assert_eq(c.norm_eps, 1e-5f);
    cr_assert_eq(c.rope_theta, 500000.0f);
    cr_assert_eq(c.rope_type, ROPE_LLAMA3);
    cr_assert_eq(c.rope_factor, 32.0f);
    cr_assert_eq(c.rope_low_freq_factor, 1.0f);
    cr_assert_eq(c.rope_high_freq_factor, 4.0f);
    cr_assert_eq(c.rope_original_max_pos, 8192);
    cr_assert_eq(c.tie_embeddings, 1);
    cr_assert_eq(c.qkv_bias, 0);
    cr_assert_eq(c.bos_id, 128000);
    cr_assert_eq(c.eos_id, 128001); /* first of the list */

    /* to_json then parse gives the same config */
    char *js = hf_config_to_json(&c);
    cr_assert_not_null(js);
    model_config c2;
    cr_assert_eq(hf_config_parse(js, "regen", &c2, &err), LC_OK, "%s\n%s", err.msg, js);
    assert_cfg_eq(&c, &c2);
    cr_assert(strstr(js, "\"rms_norm_eps\":\t1e-05") || strstr(js, "1e-05"), "%s", js);
    free(js);
}

Test(hf_config, qwen2_defaults_and_linear_rope) {
    const char *js = "{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"intermediate_size\": 96,"
                     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                     " \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0},"
                     " \"use_sliding_window\": false, \"sliding_window\": 1024}";
    model_config c;
    lc_err err;
    cr_assert_eq(hf_config_parse(js, "q.json", &c, &err), LC_OK, "%s", err.msg);
    cr_assert_str_eq(c.arch, "qwen2");
    cr_assert_eq(c.qkv_bias, 1);
    cr_assert_eq(c.n_kv_heads, 4);       /* default = heads */
    cr_assert_eq(c.head_dim, 16);        /* hidden / heads */
    cr_assert_eq(c.max_seq_len, 4096);   /* default */
    cr_assert_eq(c.norm_eps, 1e-6f);     /* default */
    cr_assert_eq(c.rope_theta, 10000.f); /* default */
    cr_assert_eq(c.rope_type, ROPE_LINEAR);
    cr_assert_eq(c.rope_factor, 2.0f);
    cr_assert_eq(c.tie_embeddings, 0);
    cr_assert_eq(c.bos_id, -1);
    cr_assert_eq(c.eos_id, -1);
    char *out = hf_config_to_json(&c);
    model_config c2;
    cr_assert_eq(hf_config_parse(out, "regen", &c2, &err), LC_OK, "%s", err.msg);
    assert_cfg_eq(&c, &c2);
    free(out);

    /* attention_bias on a llama config also means q/k/v biases */
    const char *jb = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 96,"
                     " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                     " \"attention_bias\": true, \"rope_scaling\": null, \"head_dim\": 32}";
    cr_assert_eq(hf_config_parse(jb, "b.json", &c, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(c.qkv_bias, 1);
    cr_assert_eq(c.head_dim, 32);
    cr_assert_eq(c.rope_type, ROPE_DEFAULT);
}

static void parse_shared(const char *name, model_config *c) {
    char path[1024];
    lc_err err;
    snprintf(path, sizeof path, "%s/hf-configs/%s/config.json", tu_shared_assets(), name);
    char *text = lc_read_file(path, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    cr_assert_eq(hf_config_parse(text, path, c, &err), LC_OK, "%s", err.msg);
    free(text);
}

Test(hf_config, real_configs) {
    TU_REQUIRE_SHARED();
    model_config c;
    parse_shared("llama-3.2-1b", &c);
    cr_assert_eq(c.dim, 2048);
    cr_assert_eq(c.n_layers, 16);
    cr_assert_eq(c.head_dim, 64);
    cr_assert_eq(c.n_kv_heads, 8);
    cr_assert_eq(c.rope_type, ROPE_LLAMA3);
    cr_assert_eq(c.rope_theta, 500000.0f);
    cr_assert_eq(c.tie_embeddings, 1);
    cr_assert_eq(c.qkv_bias, 0);
    cr_assert_eq(c.bos_id, 128000);
    cr_assert_eq(c.eos_id, 128001);

    parse_shared("qwen2.5-0.5b", &c);
    cr_assert_str_eq(c.arch, "qwen2");
    cr_assert_eq(c.dim, 896);
    cr_assert_eq(c.n_layers, 24);
    cr_assert_eq(c.n_heads, 14);
    cr_assert_eq(c.n_kv_heads, 2);
    cr_assert_eq(c.head_dim, 64);
    cr_assert_eq(c.hidden_dim, 4864);
    cr_assert_eq(c.vocab_size, 151936);
    cr_assert_eq(c.norm_eps, 1e-6f);
    cr_assert_eq(c.rope_theta, 1e6f);
    cr_assert_eq(c.rope_type, ROPE_DEFAULT);
    cr_assert_eq(c.qkv_bias, 1);
    cr_assert_eq(c.tie_embeddings, 1);
    cr_assert_eq(c.max_seq_len, 32768);

    parse_shared("qwen2.5-1.5b", &c);
    cr_assert_eq(c.dim, 1536);
    cr_assert_eq(c.n_layers, 28);
    cr_assert_eq(c.n_heads, 12);
    cr_assert_eq(c.head_dim, 128);
    cr_assert_eq(c.hidden_dim, 8960);
    cr_assert_eq(c.qkv_bias, 1);
}

/* ---- model round trips ------------------------------------------------- */

Test(model_io, hf_round_trip_untied_tied_bias_llama3) {
    model_config cfgs[3] = {small_cfg("llama", 0, 0), small_cfg("qwen2", 1, 1),
                            small_cfg("llama", 1, 0)};
    cfgs[2].rope_type = ROPE_LLAMA3;
    cfgs[2].rope_factor = 8;
    cfgs[2].rope_low_freq_factor = 1;
    cfgs[2].rope_high_freq_factor = 4;
    cfgs[2].rope_original_max_pos = 16;
    cfgs[2].rope_theta = 500000;
    cfgs[2].bos_id = -1;
    for (int i = 0; i < 3; i++) {
        tpath d = new_dir();
        tpath dir = in_dir(&d, "hf/sub"); /* created with its parent */
        model a, b, c;
        lc_err err;
        make_model(&a, &cfgs[i], 10 + i);
        cr_assert_eq(model_save_hf(&a, dir.p, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(model_load_hf(&b, dir.p, &err), LC_OK, "%s", err.msg);
        assert_model_eq(&a, &b);
        cr_assert_eq(model_load(&c, dir.p, &err), LC_OK, "%s", err.msg);
        assert_model_eq(&a, &c);
        model_free(&a);
        model_free(&b);
        model_free(&c);
    }
}

Test(model_io, hf_tied_ignores_lm_head_and_rope_cache) {
    /* a tied checkpoint may carry lm_head.weight and old rotary caches */
    tpath d = new_dir();
    model_config cfg = small_cfg("llama", 1, 0);
    model a, b;
    lc_err err;
    make_model(&a, &cfg, 3);
    cr_assert_eq(model_save_hf(&a, d.p, &err), LC_OK, "%s", err.msg);
    tpath st = in_dir(&d, "model.safetensors");
    tensor_writer *w;
    cr_assert_eq(tensor_writer_open(&w, st.p, TW_SAFETENSORS, &err), LC_OK, "%s", err.msg);
    int64_t shp[2];
    /* rewrite with the extras plus every tensor (stored as BF16) */
    shp[0] = cfg.vocab_size, shp[1] = cfg.dim;
    cr_assert_eq(tensor_writer_add_f32(w, "lm_head.weight", 2, shp, a.w.tok_emb, DT_F32, &err), 0);
    float inv[4] = {1, 2, 3, 4};
    shp[0] = 4;
    cr_assert_eq(tensor_writer_add_f32(w, "model.layers.0.self_attn.rotary_emb.inv_freq", 1, shp,
                                       inv, DT_F32, &err), 0);
    tensor_file *tf;
    cr_assert_eq(tensor_file_open(&tf, st.p, &err), LC_OK, "%s", err.msg);
    for (int i = 0; i < tensor_file_count(tf); i++) {
        const tensor_info *ti = tensor_file_at(tf, i);
        float *buf = malloc(sizeof(float) * ti->numel);
        cr_assert_eq(tensor_file_read_f32(tf, ti->name, 0, NULL, buf, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(tensor_writer_add_f32(w, ti->name, ti->ndim, ti->shape, buf, DT_BF16, &err),
                     LC_OK, "%s", err.msg);
        free(buf);
    }
    tensor_file_free(tf);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_load_hf(&b, d.p, &err), LC_OK, "%s", err.msg);
    /* stored as bf16: equal after rounding */
    for (size_t i = 0; i < a.n_params; i++)
        cr_assert_eq(b.data[i], lc_bf16_to_f32(lc_f32_to_bf16(a.data[i])), "param %zu", i);
    model_free(&a);
    model_free(&b);
}

Test(model_io, h5_round_trip_and_dispatch) {
    model_config cfgs[2] = {small_cfg("mistral", 0, 0), small_cfg("qwen2", 1, 1)};
    for (int i = 0; i < 2; i++) {
        tpath d = new_dir();
        tpath f = in_dir(&d, "m.h5");
        model a, b, c;
        lc_err err;
        make_model(&a, &cfgs[i], 20 + i);
        cr_assert_eq(model_save_h5(&a, f.p, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(model_load_h5(&b, f.p, &err), LC_OK, "%s", err.msg);
        assert_model_eq(&a, &b);
        cr_assert_eq(model_load(&c, f.p, &err), LC_OK, "%s", err.msg);
        assert_model_eq(&a, &c);
        model_free(&a);
        model_free(&b);
        model_free(&c);
    }
}

Test(model_io, h5_wrong_format_attribute) {
    tpath d = new_dir();
    tpath f = in_dir(&d, "x.h5");
    lc_err err;
    tensor_writer *w;
    cr_assert_eq(tensor_writer_open(&w, f.p, TW_HDF5, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(tensor_writer_meta(w, "format", "lcmt-lora", &err), LC_OK);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    model m;
    cr_assert_eq(model_load(&m, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, f.p);
    ASSERT_HAS(err.msg, "format");
}

Test(model_io, llama2c_round_trip_exact) {
    model_config cfgs[2] = {small_cfg("llama", 1, 0), small_cfg("llama", 0, 0)};
    for (int i = 0; i < 2; i++) {
        tpath d = new_dir();
        tpath f = in_dir(&d, "m.bin");
        model a, b, c;
        lc_err err;
        make_model(&a, &cfgs[i], 30 + i);
        cr_assert_eq(model_save_llama2c(&a, f.p, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(model_load_llama2c(&b, f.p, &err), LC_OK, "%s", err.msg);
        assert_model_eq(&a, &b);
        cr_assert_eq(model_load(&c, f.p, &err), LC_OK, "%s", err.msg);
        assert_model_eq(&a, &c);
        model_free(&b);
        model_free(&c);
        model_free(&a);
    }
}

Test(model_io, llama2c_rope_permutation) {
    /* In the file wq/wk rows are in interleaved-pair order: file row 2i+j of
     * a head is our (HF) row j*hd/2+i. */
    tpath d = new_dir();
    tpath f = in_dir(&d, "m.bin");
    model_config cfg = small_cfg("llama", 1, 0);
    model a;
    lc_err err;
    make_model(&a, &cfg, 5);
    cr_assert_eq(model_save_llama2c(&a, f.p, &err), LC_OK, "%s", err.msg);
    size_t n;
    char *raw = lc_read_file(f.p, &n, &err);
    cr_assert_not_null(raw, "%s", err.msg);
    const int D = cfg.dim, L = cfg.n_layers, hd = cfg.head_dim, half = hd / 2;
    const float *wq = (const float *)(raw + 28) + (size_t)cfg.vocab_size * D + (size_t)L * D;
    const float *wk = wq + (size_t)L * D * D;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < cfg.n_heads; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++) {
                    const float *file_row = wq + ((size_t)l * D + h * hd + 2 * i + j) * D;
                    const float *our_row = a.w.layers[l].w[MOD_Q] + ((size_t)h * hd + j * half + i) * D;
                    cr_assert(!memcmp(file_row, our_row, sizeof(float) * D));
                    if (h < cfg.n_kv_heads) {
                        size_t kvd = (size_t)cfg.n_kv_heads * hd;
                        const float *fk = wk + (l * kvd + h * hd + 2 * i + j) * D;
                        const float *ok = a.w.layers[l].w[MOD_K] + ((size_t)h * hd + j * half + i) * D;
                        cr_assert(!memcmp(fk, ok, sizeof(float) * D));
                    }
                }
    free(raw);
    model_free(&a);
}

Test(model_io, llama2c_save_refuses_what_it_cannot_store) {
    tpath d = new_dir();
    tpath f = in_dir(&d, "m.bin");
    model_config cfg = small_cfg("qwen2", 1, 1);
    model a;
    lc_err err;
    make_model(&a, &cfg, 5);
    cr_assert_eq(model_save_llama2c(&a, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "bias");
    cr_assert_neq(access(f.p, F_OK), 0);
    model_free(&a);
}

Test(model_io, nonexistent_path) {
    model m;
    lc_err err;
    cr_assert_eq(model_load(&m, "/nonexistent/model/dir", &err), LC_FAIL);
    ASSERT_HAS(err.msg, "/nonexistent/model/dir");
}

/* ---- bad model input --------------------------------------------------- */

/* A saved HF folder whose config.json is then replaced by `json`. */
static tpath hf_with_config(const char *json) {
    tpath d = new_dir();
    model_config cfg = small_cfg("llama", 0, 0);
    model a;
    lc_err err;
    make_model(&a, &cfg, 1);
    cr_assert_eq(model_save_hf(&a, d.p, &err), LC_OK, "%s", err.msg);
    model_free(&a);
    if (json) write_text(in_dir(&d, "config.json").p, json);
    return d;
}

static void expect_hf_fail(const tpath *d, const char *name_in_msg, const char *what) {
    model m;
    lc_err err = {{0}};
    cr_assert_eq(model_load(&m, d->p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, d->p);
    ASSERT_HAS(err.msg, name_in_msg);
    if (what) ASSERT_HAS(err.msg, what);
}

#define CFG_HEAD "{\"model_type\": \"llama\", \"num_hidden_layers\": 3, \"num_attention_heads\": 4, " \
                 "\"num_key_value_heads\": 2, \"vocab_size\": 64, \"max_position_embeddings\": 40, "

Test(bad_model, invalid_json_config) {
    tpath d = hf_with_config(CFG_HEAD "\"hidden_size\": 32,, }");
    expect_hf_fail(&d, "config.json", "invalid JSON near byte");
}

Test(bad_model, missing_required_key) {
    tpath d = hf_with_config(CFG_HEAD "\"intermediate_size\": 48}");
    expect_hf_fail(&d, "config.json", "key 'hidden_size': missing");
}

Test(bad_model, wrong_type) {
    tpath d = hf_with_config(CFG_HEAD "\"hidden_size\": \"32\", \"intermediate_size\": 48}");
    expect_hf_fail(&d, "config.json", "key 'hidden_size': expected a number, found string");
}

Test(bad_model, unsupported_rope_type) {
    tpath d = hf_with_config(CFG_HEAD "\"hidden_size\": 32, \"intermediate_size\": 48, "
                                      "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}");
    expect_hf_fail(&d, "config.json", "rope_scaling.rope_type");
    model_config c;
    lc_err err;
    cr_assert_eq(hf_config_parse("{\"model_type\": \"gpt2\"}", "g.json", &c, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "g.json");
    ASSERT_HAS(err.msg, "model_type");
    ASSERT_HAS(err.msg, "gpt2");
}

Test(bad_model, missing_tensor) {
    tpath d = new_dir();
    model_config cfg = small_cfg("llama", 0, 0);
    model a;
    lc_err err;
    make_model(&a, &cfg, 1);
    cr_assert_eq(model_save_hf(&a, d.p, &err), LC_OK, "%s", err.msg);
    /* rewrite model.safetensors without one tensor */
    tpath st = in_dir(&d, "model.safetensors");
    tensor_file *tf;
    tensor_writer *w;
    cr_assert_eq(tensor_file_open(&tf, st.p, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(tensor_writer_open(&w, st.p, TW_SAFETENSORS, &err), LC_OK, "%s", err.msg);
    const char *drop = "model.layers.1.mlp.down_proj.weight";
    for (int i = 0; i < tensor_file_count(tf); i++) {
        const tensor_info *ti = tensor_file_at(tf, i);
        if (!strcmp(ti->name, drop)) continue;
        float *buf = malloc(sizeof(float) * ti->numel);
        cr_assert_eq(tensor_file_read_f32(tf, ti->name, 0, NULL, buf, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(tensor_writer_add_f32(w, ti->name, ti->ndim, ti->shape, buf, DT_F32, &err), 0);
        free(buf);
    }
    tensor_file_free(tf);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    model_free(&a);
    expect_hf_fail(&d, drop, "missing");
}

Test(bad_model, missing_lm_head_untied) {
    /* saved tied, config then says untied */
    tpath d = new_dir();
    model_config cfg = small_cfg("llama", 1, 0);
    model a;
    lc_err err;
    make_model(&a, &cfg, 1);
    cr_assert_eq(model_save_hf(&a, d.p, &err), LC_OK, "%s", err.msg);
    cfg.tie_embeddings = 0;
    char *js = hf_config_to_json(&cfg);
    write_text(in_dir(&d, "config.json").p, js);
    free(js);
    model_free(&a);
    expect_hf_fail(&d, "lm_head.weight", "missing");
}

Test(bad_model, tensor_shape_disagrees_with_config) {
    tpath d = hf_with_config(CFG_HEAD "\"hidden_size\": 32, \"intermediate_size\": 40, "
                                      "\"rms_norm_eps\": 1e-5}");
    expect_hf_fail(&d, "model.safetensors", "expected shape [40, 32]");
    model m;
    lc_err err;
    cr_assert_eq(model_load(&m, d.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "mlp.gate_proj.weight");
    ASSERT_HAS(err.msg, "found [48, 32]");
}

/* config.json claims about 10^12 parameters (4 TB as float32) next to a
 * file of a few kB: refused by the first tensor that disagrees, before
 * model_init allocates what the claim implies (which would fail, or abort
 * under ASan). */
Test(bad_model, huge_claim_refused_before_allocating) {
    tpath d = hf_with_config("{\"model_type\": \"llama\", \"num_hidden_layers\": 250, "
                             "\"num_attention_heads\": 128, \"num_key_value_heads\": 8, "
                             "\"vocab_size\": 64, \"max_position_embeddings\": 40, "
                             "\"hidden_size\": 16384, \"intermediate_size\": 65536}");
    expect_hf_fail(&d, "model.embed_tokens.weight", "expected shape [64, 16384]");
}

Test(bad_model, unexpected_tensor) {
    /* biases in the file, config without them: refuse rather than ignore */
    tpath d = new_dir();
    model_config cfg = small_cfg("qwen2", 0, 1);
    model a;
    lc_err err;
    make_model(&a, &cfg, 1);
    cr_assert_eq(model_save_hf(&a, d.p, &err), LC_OK, "%s", err.msg);
    model_free(&a);
    write_text(in_dir(&d, "config.json").p,
               CFG_HEAD "\"hidden_size\": 32, \"intermediate_size\": 48, \"head_dim\": 8}");
    expect_hf_fail(&d, "self_attn.q_proj.bias", "not used");
}

/* header of a llama2.c checkpoint followed by n_floats zeros */
static void write_l2c(const char *path, const int32_t h[7], size_t n_floats) {
    size_t n = 28 + 4 * n_floats;
    char *buf = calloc(1, n);
    memcpy(buf, h, 28);
    cr_assert_eq(tu_write_file(path, buf, n), 0);
    free(buf);
}

Test(bad_model, llama2c_truncated) {
    tpath d = new_dir();
    tpath f = in_dir(&d, "m.bin");
    model_config cfg = small_cfg("llama", 1, 0);
    model a;
    lc_err err;
    make_model(&a, &cfg, 1);
    cr_assert_eq(model_save_llama2c(&a, f.p, &err), LC_OK, "%s", err.msg);
    model_free(&a);
    size_t n;
    char *raw = lc_read_file(f.p, &n, &err);
    cr_assert_eq(tu_write_file(f.p, raw, n - 6), 0);
    model m;
    cr_assert_eq(model_load(&m, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, f.p);
    ASSERT_HAS(err.msg, "truncated: expected");
    char want[128];
    snprintf(want, sizeof want, "expected %zu bytes for the weights, found %zu", n - 28, n - 34);
    ASSERT_HAS(err.msg, want);
    /* trailing garbage is refused too */
    raw = realloc(raw, n + 3);
    cr_assert_eq(tu_write_file(f.p, raw, n + 3), 0);
    cr_assert_eq(model_load(&m, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "trailing");
    free(raw);
    /* shorter than the header */
    cr_assert_eq(tu_write_file(f.p, "abc", 3), 0);
    cr_assert_eq(model_load(&m, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, f.p);
    ASSERT_HAS(err.msg, "truncated");
}

Test(bad_model, llama2c_header_zero_negative_dims) {
    tpath d = new_dir();
    tpath f = in_dir(&d, "m.bin");
    model m;
    lc_err err;
    int32_t h0[7] = {0, 48, 2, 4, 2, 64, 16};
    write_l2c(f.p, h0, 1000);
    cr_assert_eq(model_load_llama2c(&m, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, f.p);
    ASSERT_HAS(err.msg, "'dim'");
    int32_t h1[7] = {32, 48, -2, 4, 2, 64, 16};
    write_l2c(f.p, h1, 1000);
    cr_assert_eq(model_load_llama2c(&m, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "'n_layers'");
    int32_t h2[7] = {32, 48, 2, 4, 3, 64, 16};
    write_l2c(f.p, h2, 1000);
    cr_assert_eq(model_load_llama2c(&m, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "n_kv_heads");
    int32_t h3[7] = {32, 48, 2, 4, 2, 0, 16};
    write_l2c(f.p, h3, 1000);
    cr_assert_eq(model_load_llama2c(&m, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "'vocab_size'");
    /* huge dims: refused before any allocation */
    int32_t h4[7] = {1 << 30, 1 << 30, 1 << 30, 1, 1, 1, 1};
    write_l2c(f.p, h4, 10);
    cr_assert_eq(model_load_llama2c(&m, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, f.p);
}

/* ---- LoRA -------------------------------------------------------------- */

static void assert_lora_eq(const lora *a, const lora *b) {
    cr_assert_eq(a->rank, b->rank);
    cr_assert_eq(a->alpha, b->alpha);
    cr_assert_eq(a->rslora, b->rslora);
    cr_assert_eq(a->scale, b->scale);
    cr_assert_eq(a->dropout, b->dropout);
    cr_assert_eq(a->n_layers, b->n_layers);
    cr_assert_eq(a->module_mask, b->module_mask);
    cr_assert(!memcmp(a->layer_on, b->layer_on, a->n_layers));
    cr_assert_eq(a->n_params, b->n_params);
    cr_assert(!memcmp(a->data, b->data, sizeof(float) * a->n_params));
}

Test(lora_io, peft_and_h5_round_trip) {
    model_config cfg = small_cfg("llama", 1, 0);
    unsigned masks[2] = {MOD_MASK_ALL, (1u << MOD_Q) | (1u << MOD_V) | (1u << MOD_DOWN)};
    unsigned char partial[3] = {1, 0, 1};
    for (int i = 0; i < 2; i++) {
        lora a, b, c;
        lc_err err;
        cr_assert_eq(lora_init(&a, &cfg, 4, 8.0f, i, masks[i], i ? partial : NULL, &err), LC_OK,
                     "%s", err.msg);
        lora_init_random(&a, 0.3f, 40 + i);
        a.dropout = 0.05f;
        tpath d = new_dir();
        tpath peft = in_dir(&d, "new/summarize");
        tpath h5 = in_dir(&d, "reply.h5");
        cr_assert_eq(lora_save_peft(&a, peft.p, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(lora_load(&b, &cfg, peft.p, &err), LC_OK, "%s", err.msg);
        assert_lora_eq(&a, &b);
        cr_assert_str_eq(b.name, "summarize");
        cr_assert_eq(lora_save_h5(&b, h5.p, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(lora_load(&c, &cfg, h5.p, &err), LC_OK, "%s", err.msg);
        assert_lora_eq(&a, &c);
        cr_assert_str_eq(c.name, "reply");
        lora_free(&a);
        lora_free(&b);
        lora_free(&c);
    }
}

/* A PEFT folder with the given config and tensors (name, rows, cols). */
typedef struct {
    const char *name;
    int rows, cols;
} tspec;

static tpath write_peft(const char *config, const tspec *t, int n) {
    tpath d = new_dir();
    lc_err err;
    write_text(in_dir(&d, "adapter_config.json").p, config);
    tensor_writer *w;
    cr_assert_eq(tensor_writer_open(&w, in_dir(&d, "adapter_model.safetensors").p, TW_SAFETENSORS,
                                    &err), LC_OK, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        int64_t shp[2] = {t[i].rows, t[i].cols};
        float *buf = calloc((size_t)t[i].rows * t[i].cols, sizeof(float));
        for (int k = 0; k < t[i].rows * t[i].cols; k++) buf[k] = 0.01f * (k % 7) - i;
        cr_assert_eq(tensor_writer_add_f32(w, t[i].name, 2, shp, buf, DT_F32, &err), LC_OK, "%s",
                     err.msg);
        free(buf);
    }
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    return d;
}

static const char *PEFT_QV =
    "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16, \"target_modules\": [\"q_proj\", "
    "\"v_proj\"], \"layers_to_transform\": null, \"rank_pattern\": {}, \"alpha_pattern\": {}}";

Test(lora_io, peft_adapter_name_infix_and_all_linear) {
    model_config cfg = small_cfg("llama", 1, 0);
    tspec t[] = {{"base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight", 4, 32},
                 {"base_model.model.model.layers.1.self_attn.q_proj.lora_B.default.weight", 32, 4},
                 {"base_model.model.model.layers.2.self_attn.v_proj.lora_A.weight", 4, 32},
                 {"base_model.model.model.layers.2.self_attn.v_proj.lora_B.weight", 16, 4}};
    tpath d = write_peft(PEFT_QV, t, 4);
    lora l;
    lc_err err;
    cr_assert_eq(lora_load(&l, &cfg, d.p, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(l.module_mask, (1u << MOD_Q) | (1u << MOD_V));
    cr_assert_eq(l.layer_on[0], 0);
    cr_assert_eq(l.layer_on[1], 1);
    cr_assert_eq(l.layer_on[2], 1);
    cr_assert_eq(l.scale, 4.0f);
    cr_assert_eq(l.B[2 * MOD_COUNT + MOD_V][5], 0.01f * (5 % 7) - 3);
    /* layer 1 has no v tensors: zero (an exact no-op) */
    cr_assert_eq(l.A[1 * MOD_COUNT + MOD_V][0], 0.0f);
    lora_free(&l);

    /* "all-linear" with a module absent from every layer is an error */
    tpath d2 = write_peft("{\"r\": 4, \"lora_alpha\": 4, \"target_modules\": \"all-linear\"}", t, 4);
    cr_assert_eq(lora_load(&l, &cfg, d2.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "target_modules");
    ASSERT_HAS(err.msg, "k_proj");

    tpath d3 = write_peft("{\"r\": 4, \"target_modules\": [\"q_proj\"], \"rank_pattern\": "
                          "{\"q_proj\": 8}}", t, 2);
    cr_assert_eq(lora_load(&l, &cfg, d3.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "rank_pattern");
    ASSERT_HAS(err.msg, "not supported");
}

Test(bad_lora, a_without_b) {
    model_config cfg = small_cfg("llama", 1, 0);
    tspec t[] = {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 4, 32},
                 {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", 32, 4},
                 {"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", 4, 32}};
    tpath d = write_peft(PEFT_QV, t, 3);
    lora l;
    lc_err err;
    cr_assert_eq(lora_load(&l, &cfg, d.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "adapter_model.safetensors");
    ASSERT_HAS(err.msg, "layers.0.self_attn.v_proj.lora_A.weight");
    ASSERT_HAS(err.msg, "lora_B");
}

Test(bad_lora, shapes_do_not_fit_model) {
    model_config cfg = small_cfg("llama", 1, 0);
    model_config big = cfg;
    big.dim = 48;
    big.head_dim = 12;
    lora a, b;
    lc_err err;
    cr_assert_eq(lora_init(&a, &big, 4, 8, 0, 1u << MOD_K, NULL, &err), LC_OK, "%s", err.msg);
    tpath d = new_dir();
    cr_assert_eq(lora_save_peft(&a, d.p, &err), LC_OK, "%s", err.msg);
    lora_free(&a);
    cr_assert_eq(lora_load(&b, &cfg, d.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "adapter_model.safetensors");
    ASSERT_HAS(err.msg, "tensor 'base_model.model.model.layers.0.self_attn.k_proj.lora_");
    ASSERT_HAS(err.msg, "expected shape [4, 32], found [4, 48]");
}

Test(bad_lora, layer_past_model) {
    model_config cfg = small_cfg("llama", 1, 0), deep = cfg;
    deep.n_layers = 5;
    lora a, b;
    lc_err err;
    unsigned char on[5] = {0, 0, 0, 0, 1};
    cr_assert_eq(lora_init(&a, &deep, 2, 2, 0, 1u << MOD_UP, on, &err), LC_OK, "%s", err.msg);
    tpath d = new_dir();
    tpath f = in_dir(&d, "deep.h5");
    cr_assert_eq(lora_save_h5(&a, f.p, &err), LC_OK, "%s", err.msg);
    lora_free(&a);
    cr_assert_eq(lora_load(&b, &cfg, f.p, &err), LC_FAIL);
    /* layers_to_transform [4] is checked first */
    ASSERT_HAS(err.msg, f.p);
    ASSERT_HAS(err.msg, "layers_to_transform");
    /* the same through tensor names only */
    tspec t[] = {{"base_model.model.model.layers.3.mlp.up_proj.lora_A.weight", 2, 32},
                 {"base_model.model.model.layers.3.mlp.up_proj.lora_B.weight", 48, 2}};
    tpath p = write_peft("{\"r\": 2, \"target_modules\": [\"up_proj\"]}", t, 2);
    cr_assert_eq(lora_load(&b, &cfg, p.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "adapter_model.safetensors");
    ASSERT_HAS(err.msg, "layers.3.mlp.up_proj.lora_A.weight");
    ASSERT_HAS(err.msg, "layer 3 is past");
    /* unknown module */
    tspec u[] = {{"base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight", 2, 32}};
    tpath p2 = write_peft("{\"r\": 2, \"target_modules\": [\"up_proj\"]}", u, 1);
    cr_assert_eq(lora_load(&b, &cfg, p2.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "qkv_proj");
}

/* ---- calibration ------------------------------------------------------- */

Test(calib_io, round_trips) {
    model_config cfg = small_cfg("llama", 1, 0);
    for (int kind = 0; kind < 2; kind++)
        for (int pl = 0; pl < 2; pl++) {
            calib a, b;
            lc_err err;
            unsigned mask = kind ? MOD_MASK_ALL : (1u << MOD_O) | (1u << MOD_GATE);
            cr_assert_eq(calib_init(&a, &cfg, kind, 3, pl, mask, &err), LC_OK, "%s", err.msg);
            lc_rng r;
            lc_rng_seed(&r, 50 + kind * 2 + pl);
            for (size_t i = 0; i < a.n_params; i++) a.data[i] = lc_rng_normal(&r);
            tpath d = new_dir();
            tpath f = in_dir(&d, "cal.h5");
            cr_assert_eq(calib_save(&a, f.p, &err), LC_OK, "%s", err.msg);
            cr_assert_eq(calib_load(&b, &cfg, f.p, &err), LC_OK, "%s", err.msg);
            cr_assert_eq(b.kind, a.kind);
            cr_assert_eq(b.rank, a.rank);
            cr_assert_eq(b.per_layer, a.per_layer);
            cr_assert_eq(b.n_slots, a.n_slots);
            cr_assert_eq(b.module_mask, a.module_mask);
            cr_assert_eq(b.n_params, a.n_params);
            cr_assert(!memcmp(a.data, b.data, sizeof(float) * a.n_params));
            cr_assert_str_eq(b.name, "cal");
            /* the (L, ...) tensor of a per-layer calibration: slot s at s*each */
            if (pl && kind == CALIB_BIAS) {
                tensor_file *tf;
                cr_assert_eq(tensor_file_open(&tf, f.p, &err), LC_OK, "%s", err.msg);
                const tensor_info *ti = tensor_file_find(tf, "calib.gate.bias");
                cr_assert_not_null(ti);
                cr_assert_eq(ti->ndim, 2);
                cr_assert_eq(ti->shape[0], 3);
                cr_assert_eq(ti->shape[1], 48);
                float buf[3 * 48];
                cr_assert_eq(tensor_file_read_f32(tf, "calib.gate.bias", 0, NULL, buf, &err), LC_OK);
                cr_assert_eq(buf[2 * 48 + 5], a.p[2 * MOD_COUNT + MOD_GATE][5]);
                tensor_file_free(tf);
            }
            calib_free(&a);
            calib_free(&b);
        }
}

Test(calib_io, safetensors_input_and_bad_metadata) {
    model_config cfg = small_cfg("llama", 1, 0);
    tpath d = new_dir();
    tpath f = in_dir(&d, "c.safetensors");
    lc_err err;
    tensor_writer *w;
    cr_assert_eq(tensor_writer_open(&w, f.p, TW_SAFETENSORS, &err), LC_OK, "%s", err.msg);
    tensor_writer_meta(w, "format", "lcmt-calib", &err);
    tensor_writer_meta(w, "kind", "bias", &err);
    tensor_writer_meta(w, "per_layer", "0", &err);
    tensor_writer_meta(w, "modules", "q,down", &err);
    float q[32], dn[32];
    for (int i = 0; i < 32; i++) q[i] = (float)i, dn[i] = -(float)i;
    int64_t s = 32;
    tensor_writer_add_f32(w, "calib.q.bias", 1, &s, q, DT_F32, &err);
    tensor_writer_add_f32(w, "calib.down.bias", 1, &s, dn, DT_F16, &err);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    calib c;
    cr_assert_eq(calib_load(&c, &cfg, f.p, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(c.module_mask, (1u << MOD_Q) | (1u << MOD_DOWN));
    cr_assert_eq(c.p[MOD_Q][7], 7.0f);
    cr_assert_eq(c.p[MOD_DOWN][7], -7.0f);
    calib_free(&c);

    /* a module listed without its tensor */
    cr_assert_eq(tensor_writer_open(&w, f.p, TW_SAFETENSORS, &err), LC_OK, "%s", err.msg);
    tensor_writer_meta(w, "format", "lcmt-calib", &err);
    tensor_writer_meta(w, "kind", "bias", &err);
    tensor_writer_meta(w, "modules", "q,k", &err);
    tensor_writer_add_f32(w, "calib.q.bias", 1, &s, q, DT_F32, &err);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(calib_load(&c, &cfg, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, f.p);
    ASSERT_HAS(err.msg, "calib.k.bias");

    /* metadata claiming rank 10^9 (terabytes) next to a small P1: refused by
     * the tensor's shape before calib_init allocates for the claim */
    cr_assert_eq(tensor_writer_open(&w, f.p, TW_SAFETENSORS, &err), LC_OK, "%s", err.msg);
    tensor_writer_meta(w, "format", "lcmt-calib", &err);
    tensor_writer_meta(w, "kind", "lowrank", &err);
    tensor_writer_meta(w, "rank", "1000000000", &err);
    tensor_writer_meta(w, "per_layer", "1", &err);
    tensor_writer_meta(w, "modules", "q", &err);
    int64_t s2[2] = {1, 32};
    tensor_writer_add_f32(w, "calib.q.P1", 2, s2, q, DT_F32, &err);
    tensor_writer_add_f32(w, "calib.q.P2", 2, s2, q, DT_F32, &err);
    cr_assert_eq(tensor_writer_close(w, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(calib_load(&c, &cfg, f.p, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "calib.q.P1");
    ASSERT_HAS(err.msg, "expected shape");
}

/* ---- llama2.c tokenizer ------------------------------------------------ */

Test(l2c_tokenizer, truncated_file) {
    /* 3 tokens "<unk>", "a", "bc"; the file is cut inside the last one */
    unsigned char buf[64];
    size_t n = 0;
    int32_t maxlen = 5;
    memcpy(buf + n, &maxlen, 4), n += 4;
    const char *pieces[3] = {"<unk>", "a", "bc"};
    for (int i = 0; i < 3; i++) {
        float sc = (float)-i;
        int32_t len = (int32_t)strlen(pieces[i]);
        memcpy(buf + n, &sc, 4), n += 4;
        memcpy(buf + n, &len, 4), n += 4;
        memcpy(buf + n, pieces[i], len), n += len;
    }
    tpath d = new_dir();
    tpath f = in_dir(&d, "tok.bin");
    l2c_tokenizer t;
    lc_err err;
    cr_assert_eq(tu_write_file(f.p, buf, n), 0);
    cr_assert_eq(l2c_tokenizer_load(&t, f.p, 3, &err), LC_OK, "%s", err.msg);
    cr_assert_str_eq(t.vocab[2], "bc");
    l2c_tokenizer_free(&t);
    cr_assert_eq(tu_write_file(f.p, buf, n - 1), 0);
    cr_assert_eq(l2c_tokenizer_load(&t, f.p, 3, &err), LC_FAIL);
    ASSERT_HAS(err.msg, f.p);
    ASSERT_HAS(err.msg, "token 2");
    /* a record header cut short */
    cr_assert_eq(tu_write_file(f.p, buf, n - 4), 0);
    cr_assert_eq(l2c_tokenizer_load(&t, f.p, 3, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "token 2");
    /* a negative length */
    int32_t neg = -5;
    memcpy(buf + 4 + 4, &neg, 4);
    cr_assert_eq(tu_write_file(f.p, buf, n), 0);
    cr_assert_eq(l2c_tokenizer_load(&t, f.p, 3, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "token 0");
    ASSERT_HAS(err.msg, "-5");
}

/* ---- the real stories260K ---------------------------------------------- */

Test(stories260k, load_checkpoint_and_tokenizer) {
    TU_REQUIRE_SHARED();
    char ckpt[1024], tokp[1024];
    snprintf(ckpt, sizeof ckpt, "%s/stories260K/stories260K.bin", tu_shared_assets());
    snprintf(tokp, sizeof tokp, "%s/stories260K/tok512.bin", tu_shared_assets());
    model m;
    lc_err err;
    cr_assert_eq(model_load(&m, ckpt, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(m.cfg.dim, 64);
    cr_assert_eq(m.cfg.n_layers, 5);
    cr_assert_eq(m.cfg.n_heads, 8);
    cr_assert_eq(m.cfg.n_kv_heads, 4);
    cr_assert_eq(m.cfg.hidden_dim, 172);
    cr_assert_eq(m.cfg.vocab_size, 512);
    cr_assert_eq(m.cfg.max_seq_len, 512);
    cr_assert_eq(m.cfg.tie_embeddings, 1);
    cr_assert_eq(m.w.lm_head, m.w.tok_emb);

    l2c_tokenizer t;
    cr_assert_eq(l2c_tokenizer_load(&t, tokp, m.cfg.vocab_size, &err), LC_OK, "%s", err.msg);
    const char *text = "Once upon a time";
    int ids[64];
    int n = l2c_encode(&t, text, 1, 0, ids);
    cr_assert_gt(n, 2);
    cr_assert_lt(n, (int)strlen(text) + 1, "merges should shorten the sequence");
    cr_assert_eq(ids[0], 1);
    char out[256] = "";
    size_t o = 0;
    for (int i = 1; i < n; i++) {
        char b[2];
        int len;
        const char *p = l2c_decode(&t, ids[i - 1], ids[i], b, &len);
        memcpy(out + o, p, len);
        o += len;
    }
    out[o] = 0;
    cr_assert_str_eq(out, text);
    /* bytes not in the vocabulary fall back to <0xNN> and decode back */
    const char *odd = "caf\xc3\xa9 \xe2\x82\xac!";
    n = l2c_encode(&t, odd, 1, 1, ids);
    cr_assert_eq(ids[n - 1], 2);
    o = 0;
    for (int i = 1; i < n - 1; i++) {
        char b[2];
        int len;
        const char *p = l2c_decode(&t, ids[i - 1], ids[i], b, &len);
        memcpy(out + o, p, len);
        o += len;
    }
    out[o] = 0;
    cr_assert_str_eq(out, odd);
    /* empty text: no dummy prefix */
    cr_assert_eq(l2c_encode(&t, "", 1, 1, ids), 2);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[1], 2);

    /* greedy decoding from BOS begins as ../shared/README.md shows: checks the
     * RoPE row permutation on real weights */
    model_decoder *dec;
    cr_assert_eq(model_decoder_init(&dec, &m, NULL, 64, &err), LC_OK, "%s", err.msg);
    int tok = 1;
    o = 0;
    for (int pos = 0; pos < 40 && o < 200; pos++) {
        float *logits = model_decoder_step(dec, tok, pos);
        int next = sample_token(logits, m.cfg.vocab_size, 0.0f, 1.0f, NULL);
        char b[2];
        int len;
        const char *p = l2c_decode(&t, tok, next, b, &len);
        memcpy(out + o, p, len);
        o += len;
        tok = next;
    }
    out[o] = 0;
    const char *expect = "Once upon a time, there was a little girl named Lily.";
    cr_assert_eq(strncmp(out, expect, strlen(expect)), 0, "generated: %s", out);
    model_decoder_free(dec);
    l2c_tokenizer_free(&t);
    model_free(&m);
}

/* The heap-based merge in l2c_encode against llama2.c's quadratic scan,
 * written out here, on real dialogue text. */
static int ref_lookup(const l2c_tokenizer *t, const char *s, int n) {
    for (int i = 0; i < t->vocab_size; i++)
        if (t->lens[i] == n && !memcmp(t->vocab[i], s, n)) return i;
    return -1;
}

Test(loaders, l2c_encode_matches_quadratic_reference) {
    TU_REQUIRE_SHARED();
    char tp[1024], dp[1024];
    snprintf(tp, sizeof tp, "%s/stories260K/tok512.bin", tu_shared_assets());
    snprintf(dp, sizeof dp, "%s/dialogsum/dev.jsonl", tu_shared_assets());
    l2c_tokenizer t;
    lc_err err;
    cr_assert_eq(l2c_tokenizer_load(&t, tp, 512, &err), LC_OK, "%s", err.msg);
    size_t len;
    char *text = lc_read_file(dp, &len, &err);
    cr_assert_not_null(text);
    text[3000] = 0;
    int *fast = malloc(sizeof(int) * 3010), *ref = malloc(sizeof(int) * 3010);
    int nf = l2c_encode(&t, text, 1, 1, fast);
    /* reference: characters (or bytes), then repeated best-pair merges */
    int n = 0;
    ref[n++] = 1;
    ref[n++] = ref_lookup(&t, " ", 1);
    for (const char *p = text; *p;) {
        int cl = 1;
        while (cl < 4 && ((unsigned char)p[cl] & 0xC0) == 0x80) cl++;
        int id = ref_lookup(&t, p, cl);
        if (id >= 0) ref[n++] = id;
        else for (int k = 0; k < cl; k++) ref[n++] = (unsigned char)p[k] + 3;
        p += cl;
    }
    char buf[256];
    for (;;) {
        float best = -1e30f;
        int bi = -1, bid = -1;
        for (int i = 1; i + 1 < n; i++) {
            int la = t.lens[ref[i]], lb = t.lens[ref[i + 1]];
            if (la + lb >= (int)sizeof buf) continue;
            memcpy(buf, t.vocab[ref[i]], la);
            memcpy(buf + la, t.vocab[ref[i + 1]], lb);
            int id = ref_lookup(&t, buf, la + lb);
            if (id >= 0 && t.scores[id] > best) best = t.scores[id], bi = i, bid = id;
        }
        if (bi < 0) break;
        ref[bi] = bid;
        memmove(ref + bi + 1, ref + bi + 2, sizeof(int) * (n - bi - 2));
        n--;
    }
    ref[n++] = 2;
    cr_assert_eq(nf, n, "fast %d tokens, reference %d", nf, n);
    for (int i = 0; i < n; i++) cr_assert_eq(fast[i], ref[i], "token %d differs", i);
    free(fast);
    free(ref);
    free(text);
    l2c_tokenizer_free(&t);
}
