/* A base whose matrices are stored in another type (model_quantize):
 *  - training loss and the gradients of LoRAs, calibrations and the input
 *    embeddings through the stored base equal those of a float32 model
 *    holding the dequantized weights (model_to_f32): the only difference
 *    is the tiling of the base GEMMs (kernels/quant_gemm.c);
 *  - decoder logits against the float32 decoder on the dequantized
 *    weights (the stored decoder quantizes the activations, as llama.cpp);
 *  - the reference and SIMD decoders give identical logits;
 *  - a stored base cannot get gradients; savers and dequantization see
 *    the dequantized values, the weights CRC (bundle identity) stays that
 *    of the float32 weights the base was made from;
 *  - a dense merge on a stored base is stored again;
 *  - the "base_type" job key and `generate --base-type`. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "config.h"
#include "job.h"
#include "loaders.h"
#include "merge.h"
#include "model.h"
#include "model_map.h"
#include "quant.h"
#include "testutil.h"

static const char *tn(int t) {
    const char *s = qtype_name(t);
    return s ? s : "?";
}

static const int TYPES[] = {QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K};
#define N_TYPES ((int)(sizeof TYPES / sizeof *TYPES))

/* dim 256 so that every matrix of the K-quants is whole blocks, except the
 * ones reading hidden_dim = 320 (down): those fall back to F16 for
 * Q4_K/Q6_K, which the test checks. */
static model_config cfg_for(int qwen) {
    model_config c = {0};
    strcpy(c.arch, qwen ? "qwen2" : "llama");
    c.dim = 256, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64;
    c.hidden_dim = 320, c.vocab_size = 97, c.max_seq_len = 32;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f;
    c.tie_embeddings = qwen, c.qkv_bias = qwen;
    c.bos_id = 1, c.eos_id = 2;
    return c;
}

typedef struct {
    lora l;
    calib cl, cb;
    adapter_set ad;
} adapters;

static void adapters_init(adapters *a, const model_config *c) {
    lc_err err;
    cr_assert_eq(lora_init(&a->l, c, 4, 8.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
    lora_init_random(&a->l, 0.05f, 3);
    cr_assert_eq(calib_init(&a->cl, c, CALIB_LOWRANK, 2, 1, MOD_MASK_ALL, &err), LC_OK);
    cr_assert_eq(calib_init(&a->cb, c, CALIB_BIAS, 0, 0, MOD_MASK_ALL, &err), LC_OK);
    lc_rng r;
    lc_rng_seed(&r, 4);
    for (size_t i = 0; i < a->cl.n_params; i++) a->cl.data[i] = 0.05f * lc_rng_normal(&r);
    for (size_t i = 0; i < a->cb.n_params; i++) a->cb.data[i] = 0.05f * lc_rng_normal(&r);
    cr_assert_eq(lora_enable_grad(&a->l, &err), LC_OK);
    cr_assert_eq(calib_enable_grad(&a->cl, &err), LC_OK);
    cr_assert_eq(calib_enable_grad(&a->cb, &err), LC_OK);
    a->ad = (adapter_set){{&a->l}, 1, {&a->cl, &a->cb}, 2};
}

static void adapters_zero_grad(adapters *a) {
    memset(a->l.grad, 0, sizeof(float) * a->l.n_params);
    memset(a->cl.grad, 0, sizeof(float) * a->cl.n_params);
    memset(a->cb.grad, 0, sizeof(float) * a->cb.n_params);
}

static void adapters_free(adapters *a) {
    lora_free(&a->l);
    calib_free(&a->cl);
    calib_free(&a->cb);
}

static void random_model_v(model *m, int qwen, int vocab) {
    lc_err err;
    model_config c = cfg_for(qwen);
    if (vocab) c.vocab_size = vocab;
    cr_assert_eq(model_init(m, &c, &err), LC_OK, "%s", err.msg);
    model_init_random(m, 0.05f, 21);
}

static void random_model(model *m, int qwen) { random_model_v(m, qwen, 0); }

/* loss, LoRA/calibration gradients and d(emb) of one forward/backward */
typedef struct {
    float loss;
    float *gl, *gcl, *gcb, *demb;
} step_out;

static step_out run_step(model *m, adapters *ad, const int *tok, const int *tgt, int B, int T) {
    lc_err err;
    model_acts *a;
    cr_assert_eq(model_acts_init(&a, m, &ad->ad, B, T, ACTS_BACKWARD, &err), LC_OK, "%s", err.msg);
    adapters_zero_grad(ad);
    step_out o = {0};
    cr_assert_eq(model_forward(m, a, tok, tgt, B, T, &o.loss, &err), LC_OK, "%s", err.msg);
    model_backward(m, a, 1.0f);
    const size_t nd = (size_t)B * T * m->cfg.dim;
    o.gl = malloc(sizeof(float) * ad->l.n_params);
    o.gcl = malloc(sizeof(float) * ad->cl.n_params);
    o.gcb = malloc(sizeof(float) * ad->cb.n_params);
    o.demb = malloc(sizeof(float) * nd);
    memcpy(o.gl, ad->l.grad, sizeof(float) * ad->l.n_params);
    memcpy(o.gcl, ad->cl.grad, sizeof(float) * ad->cl.n_params);
    memcpy(o.gcb, ad->cb.grad, sizeof(float) * ad->cb.n_params);
    memcpy(o.demb, model_acts_demb(a), sizeof(float) * nd);
    model_acts_free(a);
    return o;
}

static void step_free(step_out *o) { free(o->gl), free(o->gcl), free(o->gcb), free(o->demb); }

/* Bound for training: the stored and the float32 model compute the same
 * products on the same float32 values except that the stored base's
 * GEMMs run a tile of rows at a time (sgemm's blocking may differ, and dX
 * is summed tile by tile). Bound: 1e-5 normwise for the gradients, 1e-6
 * relative for the loss (tests log the measured values). */
#define TRAIN_REL 1e-5

Test(quant_model, training_through_stored_base_equals_dequantized_f32) {
    for (int qwen = 0; qwen < 2; qwen++)
        for (int t = 0; t < N_TYPES; t++) {
            const int type = TYPES[t];
            model mq, mf;
            lc_err err;
            /* 1100 x 256 embedding / lm head: three tiles of QMAT_TILE_FLOATS */
            random_model_v(&mq, qwen, 1100);
            cr_assert_eq(model_quantize(&mq, type, &err), LC_OK, "%s", err.msg);
            cr_assert_eq(mq.base_type, type);
            cr_assert_null(mq.w.tok_emb);
            cr_assert_null(mq.w.layers[0].w[MOD_Q]);
            const int down_type = qtype_block(type) == 256 ? QT_F16 : type; /* 320 columns */
            cr_assert_eq(mq.w.layers[1].q[MOD_DOWN].type, down_type, "%s: down stored as %s",
                         tn(type), tn(mq.w.layers[1].q[MOD_DOWN].type));
            cr_assert_eq(mq.w.layers[1].q[MOD_UP].type, type);
            cr_assert_eq(model_to_f32(&mf, &mq, &err), LC_OK, "%s", err.msg);
            cr_assert_eq(mf.base_type, QT_F32);
            cr_assert_lt(model_weight_bytes(&mq), model_weight_bytes(&mf));
            adapters ad;
            adapters_init(&ad, &mq.cfg);
            const int B = 2, T = 11;
            int tok[22], tgt[22];
            lc_rng r;
            lc_rng_seed(&r, 8);
            for (int i = 0; i < B * T; i++) {
                tok[i] = (int)(lc_rng_u32(&r) % mq.cfg.vocab_size);
                tgt[i] = i % T < 3 ? -1 : (int)(lc_rng_u32(&r) % mq.cfg.vocab_size);
            }
            step_out sq = run_step(&mq, &ad, tok, tgt, B, T);
            step_out sf = run_step(&mf, &ad, tok, tgt, B, T);
            const double el = fabs(sq.loss - sf.loss) / fabs(sf.loss);
            const double e1 = tu_rel_err_f32(sq.gl, sf.gl, ad.l.n_params);
            const double e2 = tu_rel_err_f32(sq.gcl, sf.gcl, ad.cl.n_params);
            const double e3 = tu_rel_err_f32(sq.gcb, sf.gcb, ad.cb.n_params);
            const double e4 = tu_rel_err_f32(sq.demb, sf.demb, (size_t)B * T * mq.cfg.dim);
            cr_log_info("%s%s: loss %.6f rel %.1e; grads LoRA %.1e LC++ %.1e LC %.1e emb %.1e",
                        tn(type), qwen ? " (qwen2, tied, biases)" : "", sq.loss, el, e1, e2, e3, e4);
            cr_assert(el <= 1e-6, "%s: loss %g vs %g", tn(type), sq.loss, sf.loss);
            cr_assert(e1 <= TRAIN_REL && e2 <= TRAIN_REL && e3 <= TRAIN_REL && e4 <= TRAIN_REL,
                      "%s: gradient differences %g %g %g %g", tn(type), e1, e2, e3, e4);
            step_free(&sq), step_free(&sf);
            adapters_free(&ad);
            model_free(&mq), model_free(&mf);
        }
}

/* Decoder logits, stored vs float32 on the dequantized weights, 6
 * positions. F16/BF16/F32-style rows are dotted in float32 by both (only
 * the summation order differs): bound 1e-5 normwise. Q8_0/Q4_0/Q4_K/Q6_K
 * quantize each activation block to int8 (|error| <= amax/254 per
 * element, llama.cpp's approach): bound 4e-2 normwise on the logits of
 * this random model (measured 1.7e-2..2.3e-2 on this machine). */
static void decode(model *m, float *out, int n_pos) {
    lc_err err;
    model_decoder *d;
    cr_assert_eq(model_decoder_init(&d, m, NULL, n_pos, &err), LC_OK, "%s", err.msg);
    for (int p = 0; p < n_pos; p++) {
        const float *lg = model_decoder_step(d, (p * 7 + 3) % m->cfg.vocab_size, p);
        cr_assert_not_null(lg);
        memcpy(out + (size_t)p * m->cfg.vocab_size, lg, sizeof(float) * m->cfg.vocab_size);
    }
    model_decoder_free(d);
}

Test(quant_model, decoder_logits_vs_f32_and_ref_vs_simd) {
    const int n_pos = 6;
    for (int t = 0; t < N_TYPES; t++) {
        const int type = TYPES[t];
        model mq, mf;
        lc_err err;
        random_model(&mq, t % 2);
        cr_assert_eq(model_quantize(&mq, type, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(model_to_f32(&mf, &mq, &err), LC_OK);
        const size_t n = (size_t)n_pos * mq.cfg.vocab_size;
        float *lq = malloc(sizeof(float) * n), *lf = malloc(sizeof(float) * n), *lr = malloc(sizeof(float) * n);
        decode(&mq, lq, n_pos);
        decode(&mf, lf, n_pos);
        quant_force_ref(1);
        decode(&mq, lr, n_pos);
        quant_force_ref(0);
        cr_assert(!memcmp(lq, lr, sizeof(float) * n), "%s: %s decoder differs from the reference",
                  tn(type), quant_path());
        const double e = tu_rel_err_f32(lq, lf, n);
        const double bound = qtype_block(type) == 1 ? 1e-5 : 4e-2;
        cr_log_info("%s: decoder logits vs f32 on the dequantized weights: %.2e (bound %g)", tn(type), e, bound);
        cr_assert(e <= bound, "%s: logits differ by %g > %g", tn(type), e, bound);
        free(lq), free(lf), free(lr);
        model_free(&mq), model_free(&mf);
    }
}

Test(quant_model, stored_base_gradient_is_refused) {
    model m;
    lc_err err;
    random_model(&m, 0);
    cr_assert_eq(model_quantize(&m, QT_Q8_0, &err), LC_OK);
    cr_assert_eq(model_enable_grad(&m, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "Q8_0") && strstr(err.msg, "frozen"), "%s", err.msg);
    cr_assert_null(m.grad);
    cr_assert_eq(model_quantize(&m, QT_Q4_0, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "already stored as Q8_0"), "%s", err.msg);
    model_free(&m);
    random_model(&m, 0);
    cr_assert_eq(model_enable_grad(&m, &err), LC_OK);
    cr_assert_eq(model_quantize(&m, QT_Q8_0, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "trainable"), "%s", err.msg);
    cr_assert_eq(model_quantize(&m, 3, &err), LC_FAIL); /* GGML's Q4_1 */
    model_free(&m);
}

Test(quant_model, savers_crc_and_dequantize_see_dequantized_values) {
    model mq, mf, back;
    lc_err err;
    random_model(&mq, 0);
    const uint32_t crc_f32 = model_weights_crc32(&mq);
    cr_assert_eq(model_quantize(&mq, QT_Q4_K, &err), LC_OK);
    cr_assert_eq(model_to_f32(&mf, &mq, &err), LC_OK);
    /* the identity stays that of the float32 weights the base was made from */
    cr_assert_eq(model_weights_crc32(&mq), crc_f32);
    cr_assert_neq(model_weights_crc32(&mf), crc_f32);
    char path[512];
    snprintf(path, sizeof path, "%s/q.bin", tu_tmpdir());
    cr_assert_eq(model_save_llama2c(&mq, path, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_load(&back, path, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_weights_crc32(&back), model_weights_crc32(&mf));
    model_free(&back);
    snprintf(path, sizeof path, "%s/q.h5", tu_tmpdir());
    cr_assert_eq(model_save_h5(&mq, path, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_load(&back, path, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_weights_crc32(&back), model_weights_crc32(&mf));
    model_free(&back);
    cr_assert_eq(model_dequantize(&mq, &err), LC_OK);
    cr_assert_eq(mq.base_type, QT_F32);
    cr_assert_eq(mq.n_params, mf.n_params);
    cr_assert(!memcmp(mq.data, mf.data, sizeof(float) * mf.n_params));
    model_free(&mq), model_free(&mf);
}

Test(quant_model, base_type_job_key) {
    lc_err err;
    for (int k = 0; k < 3; k++) {
        static const char *const texts[] = {"{\"base_type\": \"q8_0\"}", "{\"base_type\": \"Q4_K\"}",
                                            "{\"base_type\": \"q5_1\"}"};
        cfg *c;
        cr_assert_eq(cfg_parse(&c, texts[k], "job.json", &err), LC_OK, "%s", err.msg);
        model m;
        random_model(&m, 0);
        const int rc = job_base_type(c, &m, &err);
        if (k < 2) {
            cr_assert_eq(rc, LC_OK, "%s", err.msg);
            cr_assert_eq(m.base_type, k == 0 ? QT_Q8_0 : QT_Q4_K);
        } else {
            cr_assert_eq(rc, LC_FAIL);
            cr_assert(strstr(err.msg, "job.json") && strstr(err.msg, "base_type") && strstr(err.msg, "q5_1"),
                      "%s", err.msg);
        }
        model_free(&m);
        cfg_free(c);
    }
}

/* `generate --base-type q8_0` decodes with the stored base: its greedy ids
 * equal those of the in-process decoder on the same stored model. */
Test(quant_model, generate_base_type_flag, .timeout = 120) {
    model m;
    lc_err err;
    model_config c = cfg_for(0);
    c.n_heads = 4, c.head_dim = 64; /* llama2.c: head_dim * n_heads == dim */
    cr_assert_eq(model_init(&m, &c, &err), LC_OK);
    model_init_random(&m, 0.3f, 5);
    char path[512];
    snprintf(path, sizeof path, "%s/g.bin", tu_tmpdir());
    cr_assert_eq(model_save_llama2c(&m, path, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_quantize(&m, QT_Q8_0, &err), LC_OK);
    model_decoder *d;
    cr_assert_eq(model_decoder_init(&d, &m, NULL, 16, &err), LC_OK);
    char want[512] = "";
    const int prompt[2] = {5, 9};
    int tokv = prompt[0], n_out = 0;
    for (int p = 0; p < 11 && n_out < 9; p++) {
        float *lg = model_decoder_step(d, tokv, p);
        cr_assert_not_null(lg);
        if (p == 0) {
            tokv = prompt[1];
            continue;
        }
        tokv = sample_token(lg, c.vocab_size, 0.0f, 1.0f, NULL);
        if (tokv == c.eos_id || tokv == c.bos_id) break;
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", n_out++ ? " " : "", tokv);
    }
    cr_assert_gt(n_out, 2, "the random model ends too early to compare");
    model_decoder_free(d);
    model_free(&m);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s --model %s --prompt-ids 5,9 --max-new-tokens 9 --temperature 0 --no-stop --print-ids "
             "--quiet --base-type q8_0",
             tu_bin("generate"), path);
    int st;
    char *out = tu_capture(cmd, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_log_info("generate: %s; in process: %s", out, want);
    cr_assert(!strncmp(out, want, strlen(want)), "generate printed '%s', expected '%s'", out, want);
    free(out);
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt-ids 5 --base-type q5_1 2>&1", tu_bin("generate"), path);
    out = tu_capture(cmd, &st);
    cr_assert_eq(st, 2, "%s", out);
    cr_assert(strstr(out, "--base-type") && strstr(out, "q5_1"), "%s", out);
    free(out);
}

/* A dense merge on a stored base: the clone with the delta folded in is
 * held in the base's type again, equal to quantizing (dequantized base +
 * delta) directly. */
Test(quant_model, dense_merge_on_stored_base_is_stored) {
    model mq, mf;
    lc_err err;
    random_model(&mq, 0);
    cr_assert_eq(model_quantize(&mq, QT_Q8_0, &err), LC_OK);
    cr_assert_eq(model_to_f32(&mf, &mq, &err), LC_OK);
    lora l;
    cr_assert_eq(lora_init(&l, &mq.cfg, 2, 4.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK);
    lora_init_random(&l, 0.05f, 7);
    lora *ls[1] = {&l};
    merge_spec s;
    merge_spec_default(&s, MERGE_TIES);
    s.density = 0.5;
    merged_model a, b;
    cr_assert_eq(merged_model_build(&s, ls, 1, &mq, &a, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(merged_model_build(&s, ls, 1, &mf, &b, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(a.m->base_type, QT_Q8_0);
    cr_assert_eq(b.m->base_type, QT_F32);
    cr_assert_eq(model_quantize(b.m, QT_Q8_0, &err), LC_OK);
    const qmat *qa = &a.m->w.layers[1].q[MOD_UP], *qb = &b.m->w.layers[1].q[MOD_UP];
    cr_assert(!memcmp(qa->data, qb->data, qmat_bytes(qa)), "merged stored weights differ");
    merged_model_free(&a), merged_model_free(&b);
    lora_free(&l);
    model_free(&mq), model_free(&mf);
}

/* model_weight_bytes counts every stored matrix once, whether the model
 * owns it, copies it into its block of copies or views the file: a GGUF
 * base opened in place (untied llama: its output matrix is a view of the
 * mapping; tied qwen2: no output matrix) holds exactly the bytes the
 * in-memory quantized model holds, and the mapping's accounting agrees. */
Test(quant_model, weight_bytes_count_views_and_copies) {
    for (int qwen = 0; qwen < 2; qwen++) {
        model mq, mv;
        lc_err err;
        random_model(&mq, qwen);
        cr_assert_eq(model_quantize(&mq, QT_Q8_0, &err), LC_OK, "%s", err.msg);
        size_t want = sizeof(float) * mq.n_data + qmat_bytes(&mq.w.q_tok_emb);
        if (!qwen) want += qmat_bytes(&mq.w.q_lm_head);
        for (int l = 0; l < mq.cfg.n_layers; l++)
            for (int mo = 0; mo < MOD_COUNT; mo++) want += qmat_bytes(&mq.w.layers[l].q[mo]);
        cr_assert_eq(model_weight_bytes(&mq), want);
        char path[512];
        snprintf(path, sizeof path, "%s/w%d.gguf", tu_tmpdir(), qwen);
        cr_assert_eq(model_save_gguf(&mq, NULL, QT_Q8_0, path, &err), LC_OK, "%s", err.msg);
        model_map *mm;
        cr_assert_eq(model_map_open(&mm, &mv, path, 0, &err), LC_OK, "%s", err.msg);
        cr_assert_eq(mv.cfg.tie_embeddings, qwen);
        if (!qwen) cr_assert_null(mv.w.q_lm_head.owned, "the output matrix is a view of the file");
        size_t mapped, owned;
        model_map_stats(mm, &mapped, &owned);
        cr_assert_eq(model_weight_bytes(&mv), want, "%s: %zu bytes counted, %zu held",
                     qwen ? "qwen2" : "llama", model_weight_bytes(&mv), want);
        cr_assert_eq(mapped + owned, want);
        model_map_close(mm, &mv);
        model_free(&mq);
    }
}
