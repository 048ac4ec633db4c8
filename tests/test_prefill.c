/* Prefill and batched decoding (kernels/model.h):
 *  - the logits after model_decoder_prefill of N prompt tokens are bit for
 *    bit those after N model_decoder_step calls, for every base type
 *    (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K), Llama and Qwen2 layouts (qkv
 *    biases, tied embeddings), with two LoRAs (one with per-module merge
 *    coefficients, as the learned merge), an LC bias shared by all layers and
 *    an LC++ pair per layer; N spans several prefill chunks and starts at
 *    pos0 = 0 or in the middle of a sequence; the greedy continuation then
 *    gives identical logits (hence ids) step after step. The bound is 0:
 *    every row is computed with the step's arithmetic (transformer.c);
 *  - the same holds with one thread for the steps and the default count for
 *    the prefill (the per-row arithmetic does not depend on threads);
 *  - model_decoder_step_batch over sequences at different positions gives
 *    every sequence the bits of its own single steps;
 *  - bad arguments are errors with a message, never a partial result. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lc_omp.h"
#include "model.h"
#include "quant.h"
#include "testutil.h"

static const int TYPES[] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K};
#define N_TYPES ((int)(sizeof TYPES / sizeof *TYPES))
#define MAX_SEQ 200

/* dim 256: whole blocks for every type (down reads hidden_dim = 320, which
 * falls back to F16 for the K-quants, as model_quantize documents). */
static model_config cfg_for(int qwen) {
    model_config c = {0};
    strcpy(c.arch, qwen ? "qwen2" : "llama");
    c.dim = 256, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64;
    c.hidden_dim = 320, c.vocab_size = 97, c.max_seq_len = MAX_SEQ;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f;
    c.tie_embeddings = qwen, c.qkv_bias = qwen;
    c.bos_id = 1, c.eos_id = 2;
    return c;
}

typedef struct {
    lora l1, l2;
    calib cb, cl;
    adapter_set ad;
} adapters;

static void adapters_init(adapters *a, const model_config *c) {
    lc_err err;
    cr_assert_eq(lora_init(&a->l1, c, 4, 8.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
    lora_init_random(&a->l1, 0.05f, 3);
    const unsigned char on[2] = {0, 1}; /* second LoRA: layer 1 only, q v down */
    cr_assert_eq(lora_init(&a->l2, c, 2, 4.0f, 1, (1u << MOD_Q) | (1u << MOD_V) | (1u << MOD_DOWN), on, &err),
                 LC_OK, "%s", err.msg);
    lora_init_random(&a->l2, 0.05f, 4);
    a->l2.weight = 0.7f;
    cr_assert_eq(lora_enable_coef(&a->l2, 0.5f, 0, &err), LC_OK, "%s", err.msg);
    for (int s = 0; s < c->n_layers * MOD_COUNT; s++) a->l2.coef[s] = 0.3f + 0.1f * s;
    cr_assert_eq(calib_init(&a->cb, c, CALIB_BIAS, 0, 0, MOD_MASK_ALL, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(calib_init(&a->cl, c, CALIB_LOWRANK, 3, 1, MOD_MASK_ALL & ~(1u << MOD_K), &err), LC_OK,
                 "%s", err.msg);
    lc_rng r;
    lc_rng_seed(&r, 4);
    for (size_t i = 0; i < a->cb.n_params; i++) a->cb.data[i] = 0.05f * lc_rng_normal(&r);
    for (size_t i = 0; i < a->cl.n_params; i++) a->cl.data[i] = 0.05f * lc_rng_normal(&r);
    a->ad = (adapter_set){{&a->l1, &a->l2}, 2, {&a->cb, &a->cl}, 2};
}

static void adapters_free(adapters *a) {
    lora_free(&a->l1), lora_free(&a->l2), calib_free(&a->cb), calib_free(&a->cl);
}

static void make_model(model *m, int qwen, int type) {
    lc_err err;
    model_config c = cfg_for(qwen);
    cr_assert_eq(model_init(m, &c, &err), LC_OK, "%s", err.msg);
    model_init_random(m, 0.08f, 11 + qwen);
    cr_assert_eq(model_quantize(m, type, &err), LC_OK, "%s", err.msg);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* N prompt tokens from pos0 (after pos0 stepped tokens), then 10 greedy
 * tokens: prefill vs steps. */
static void check_prefill(const model *m, const adapter_set *ad, int n, int pos0, int step_threads) {
    const int V = m->cfg.vocab_size;
    const char *tname = qtype_name(m->base_type);
    lc_err err;
    model_decoder *ds, *dp;
    cr_assert_eq(model_decoder_init(&ds, m, ad, MAX_SEQ, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(model_decoder_init(&dp, m, ad, MAX_SEQ, &err), LC_OK, "%s", err.msg);
    int ids[MAX_SEQ];
    for (int i = 0; i < pos0 + n; i++) ids[i] = (i * 37 + 5) % V;
    const int threads = omp_get_max_threads();
    float *ls = NULL;
    if (step_threads) omp_set_num_threads(step_threads);
    for (int p = 0; p < pos0 + n; p++) {
        ls = model_decoder_step(ds, ids[p], p);
        cr_assert_not_null(ls);
        if (p < pos0) cr_assert_not_null(model_decoder_step(dp, ids[p], p));
    }
    if (step_threads) omp_set_num_threads(threads);
    float *lp = model_decoder_prefill(dp, ids + pos0, n, pos0, &err);
    cr_assert_not_null(lp, "%s", err.msg);
    cr_assert(!memcmp(ls, lp, sizeof(float) * V),
              "%s %s: logits after prefill of %d tokens from %d differ from %d steps (rel. err %g)", tname,
              m->cfg.arch, n, pos0, pos0 + n, tu_rel_err_f32(lp, ls, V));
    int pos = pos0 + n;
    for (int k = 0; k < 10; k++, pos++) {
        const int a = argmax(ls, V), b = argmax(lp, V);
        cr_assert_eq(a, b, "%s: greedy id %d differs after prefill", tname, k);
        ls = model_decoder_step(ds, a, pos);
        lp = model_decoder_step(dp, b, pos);
        cr_assert(ls && lp);
        cr_assert(!memcmp(ls, lp, sizeof(float) * V), "%s: logits of greedy step %d differ", tname, k);
    }
    model_decoder_free(ds);
    model_decoder_free(dp);
}

Test(prefill, equals_steps_every_type_with_adapters, .timeout = 240) {
    for (int qwen = 0; qwen < 2; qwen++)
        for (int t = 0; t < N_TYPES; t++) {
            model m;
            make_model(&m, qwen, TYPES[t]);
            adapters a;
            adapters_init(&a, &m.cfg);
            check_prefill(&m, &a.ad, 150, 0, 0); /* three chunks, the last partial */
            check_prefill(&m, &a.ad, 37, 21, 0); /* in the middle of a sequence */
            check_prefill(&m, &a.ad, 1, 0, 0);
            check_prefill(&m, NULL, 70, 0, 0); /* the base alone */
            adapters_free(&a);
            model_free(&m);
        }
}

Test(prefill, does_not_depend_on_threads, .timeout = 120) {
    const int types[2] = {QT_F32, QT_Q8_0};
    for (int t = 0; t < 2; t++) {
        model m;
        make_model(&m, 1, types[t]);
        adapters a;
        adapters_init(&a, &m.cfg);
        check_prefill(&m, &a.ad, 130, 0, 1);
        adapters_free(&a);
        model_free(&m);
    }
}

/* Five sequences at different positions (different prompt lengths), stepped
 * together: each one's logits equal those of its own steps, at every step,
 * also when the batch shrinks. */
Test(prefill, batched_step_equals_single_steps, .timeout = 240) {
    for (int qwen = 0; qwen < 2; qwen++)
        for (int t = 0; t < N_TYPES; t++) {
            model m;
            make_model(&m, qwen, TYPES[t]);
            const int V = m.cfg.vocab_size;
            adapters a;
            adapters_init(&a, &m.cfg);
            enum { NS = 5 };
            const int plen[NS] = {3, 17, 1, 66, 9};
            model_decoder *single[NS], *batch[NS];
            int tok[NS], pos[NS];
            lc_err err;
            for (int s = 0; s < NS; s++) {
                cr_assert_eq(model_decoder_init(&single[s], &m, &a.ad, MAX_SEQ, &err), LC_OK, "%s", err.msg);
                cr_assert_eq(model_decoder_init(&batch[s], &m, &a.ad, MAX_SEQ, &err), LC_OK, "%s", err.msg);
                int ids[80];
                for (int i = 0; i < plen[s]; i++) ids[i] = (i * 13 + 7 * s + 1) % V;
                float *l1 = NULL;
                for (int p = 0; p < plen[s]; p++) l1 = model_decoder_step(single[s], ids[p], p);
                float *l2 = model_decoder_prefill(batch[s], ids, plen[s], 0, &err);
                cr_assert(l1 && l2, "%s", err.msg);
                cr_assert(!memcmp(l1, l2, sizeof(float) * V));
                tok[s] = argmax(l1, V), pos[s] = plen[s];
            }
            for (int k = 0; k < 8; k++) {
                const int n = k < 4 ? NS : NS - 2; /* the last two leave the batch */
                cr_assert_eq(model_decoder_step_batch(batch, tok, pos, n, &err), LC_OK, "%s", err.msg);
                for (int s = 0; s < n; s++) {
                    const float *l1 = model_decoder_step(single[s], tok[s], pos[s]);
                    const float *l2 = model_decoder_logits(batch[s]);
                    cr_assert_not_null(l1);
                    cr_assert(!memcmp(l1, l2, sizeof(float) * V),
                              "%s %s: sequence %d, batched step %d (n = %d) differs from its single step (rel. err %g)",
                              qtype_name(TYPES[t]), m.cfg.arch, s, k, n, tu_rel_err_f32(l2, l1, V));
                    tok[s] = argmax(l1, V), pos[s]++;
                }
            }
            for (int s = 0; s < NS; s++) model_decoder_free(single[s]), model_decoder_free(batch[s]);
            adapters_free(&a);
            model_free(&m);
        }
}

Test(prefill, bad_arguments_are_errors) {
    model m;
    make_model(&m, 0, QT_F32);
    lc_err err = {{0}};
    model_decoder *d, *d2, *other;
    cr_assert_eq(model_decoder_init(&d, &m, NULL, 16, &err), LC_OK);
    cr_assert_eq(model_decoder_init(&d2, &m, NULL, 16, &err), LC_OK);
    cr_assert_eq(model_decoder_init(&other, &m, NULL, 20, &err), LC_OK);
    int ids[20] = {0};
    cr_assert_null(model_decoder_prefill(d, ids, 17, 0, &err));
    cr_assert(strstr(err.msg, "16 positions"), "%s", err.msg);
    cr_assert_null(model_decoder_prefill(d, ids, 4, 13, &err));
    cr_assert(strstr(err.msg, "13..16"), "%s", err.msg);
    cr_assert_null(model_decoder_prefill(d, ids, 0, 0, &err));
    cr_assert(strstr(err.msg, "no tokens"), "%s", err.msg);
    ids[2] = 97;
    cr_assert_null(model_decoder_prefill(d, ids, 4, 0, &err));
    cr_assert(strstr(err.msg, "token 97 at 2"), "%s", err.msg);
    model_decoder *pair[2] = {d, d};
    int tk[2] = {1, 2}, ps[2] = {0, 0};
    cr_assert_eq(model_decoder_step_batch(pair, tk, ps, 2, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "twice"), "%s", err.msg);
    pair[1] = other;
    cr_assert_eq(model_decoder_step_batch(pair, tk, ps, 2, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "decoder 1"), "%s", err.msg);
    pair[1] = d2;
    ps[1] = 16;
    cr_assert_eq(model_decoder_step_batch(pair, tk, ps, 2, &err), LC_FAIL);
    cr_assert(strstr(err.msg, "position 16 of sequence 1"), "%s", err.msg);
    ps[1] = 0;
    cr_assert_eq(model_decoder_step_batch(pair, tk, ps, 2, &err), LC_OK, "%s", err.msg);
    model_decoder_free(d), model_decoder_free(d2), model_decoder_free(other);
    model_free(&m);
}
