/* Whole-model tests on tiny random models: the gradient of the loss w.r.t.
 * every kind of trainable tensor against central finite differences, the
 * KV-cache decoder against the batch forward, and the loss against the
 * logits. The independent PyTorch comparison is in test_reference.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generation.h"
#include "model.h"
#include "testutil.h"

static model_config tiny_config(int qwen) {
    model_config c = {0};
    strcpy(c.arch, qwen ? "qwen2" : "llama");
    c.dim = 16, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 4;
    c.hidden_dim = 24, c.vocab_size = 19, c.max_seq_len = 32;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f;
    c.tie_embeddings = qwen, c.qkv_bias = qwen;
    c.bos_id = 1, c.eos_id = 2;
    return c;
}

typedef struct {
    model m;
    lora l0, l1;
    calib cb, cl;
    adapter_set ad;
    model_acts *a;
    int tokens[2 * 7], targets[2 * 7];
} fixture;

static void fixture_init(fixture *f, int qwen, int per_layer) {
    lc_err err;
    model_config c = tiny_config(qwen);
    cr_assert_eq(model_init(&f->m, &c, &err), LC_OK, "%s", err.msg);
    model_init_random(&f->m, 0.3f, 11);
    /* norm weights away from 1 so their gradients are exercised */
    lc_rng r;
    lc_rng_seed(&r, 5);
    for (int l = 0; l < c.n_layers; l++)
        for (int i = 0; i < c.dim; i++) {
            f->m.w.layers[l].attn_norm[i] += 0.1f * lc_rng_normal(&r);
            f->m.w.layers[l].ffn_norm[i] += 0.1f * lc_rng_normal(&r);
        }
    unsigned char on[2] = {1, 0};
    cr_assert_eq(lora_init(&f->l0, &c, 3, 6.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(lora_init(&f->l1, &c, 2, 4.0f, 1, (1u << MOD_Q) | (1u << MOD_DOWN), on, &err), LC_OK);
    lora_init_random(&f->l0, 0.2f, 1);
    lora_init_random(&f->l1, 0.2f, 2);
    f->l0.weight = 0.7f, f->l1.weight = 0.4f;
    cr_assert_eq(calib_init(&f->cb, &c, CALIB_BIAS, 0, per_layer, MOD_MASK_ALL, &err), LC_OK);
    cr_assert_eq(calib_init(&f->cl, &c, CALIB_LOWRANK, 2, per_layer, MOD_MASK_ALL, &err), LC_OK);
    lc_rng_seed(&r, 9);
    for (size_t i = 0; i < f->cb.n_params; i++) f->cb.data[i] = 0.1f * lc_rng_normal(&r);
    for (size_t i = 0; i < f->cl.n_params; i++) f->cl.data[i] = 0.2f * lc_rng_normal(&r);
    f->ad = (adapter_set){{&f->l0, &f->l1}, 2, {&f->cb, &f->cl}, 2};
    for (int i = 0; i < 14; i++) {
        f->tokens[i] = (int)(lc_rng_u32(&r) % c.vocab_size);
        f->targets[i] = (i % 7) < 2 ? -1 : (int)(lc_rng_u32(&r) % c.vocab_size);
    }
}

static void fixture_free(fixture *f) {
    model_acts_free(f->a);
    lora_free(&f->l0);
    lora_free(&f->l1);
    calib_free(&f->cb);
    calib_free(&f->cl);
    model_free(&f->m);
}

static double loss_of(fixture *f) {
    float loss;
    lc_err err;
    cr_assert_eq(model_forward(&f->m, f->a, f->tokens, f->targets, 2, 7, &loss, &err), LC_OK, "%s", err.msg);
    return loss;
}

/* Checks grad[idx] against a central difference for a few indices of a
 * tensor (data, grad, n). */
static void fd_check(fixture *f, const char *what, float *data, const float *grad, size_t n) {
    const float h = 1e-2f;
    double maxg = 0;
    for (size_t i = 0; i < n; i++) maxg = fmax(maxg, fabs(grad[i]));
    cr_assert_gt(maxg, 0.0, "%s: gradient is all zero", what);
    size_t step = n / 5 + 1;
    for (size_t i = 0; i < n; i += step) {
        float keep = data[i];
        data[i] = keep + h;
        double p = loss_of(f);
        data[i] = keep - h;
        double q = loss_of(f);
        data[i] = keep;
        double num = (p - q) / (2 * h);
        cr_assert_lt(fabs(num - grad[i]), 2e-2 * maxg + 1e-4, "%s[%zu]: analytic %g, numeric %g",
                     what, i, grad[i], num);
    }
}

static void run_grad_check(int qwen, int per_layer) {
    fixture f;
    lc_err err;
    fixture_init(&f, qwen, per_layer);
    cr_assert_eq(lora_enable_grad(&f.l0, &err), LC_OK);
    cr_assert_eq(lora_enable_grad(&f.l1, &err), LC_OK);
    cr_assert_eq(calib_enable_grad(&f.cb, &err), LC_OK);
    cr_assert_eq(calib_enable_grad(&f.cl, &err), LC_OK);
    cr_assert_eq(model_enable_grad(&f.m, &err), LC_OK);
    cr_assert_eq(model_acts_init(&f.a, &f.m, &f.ad, 2, 7, ACTS_BACKWARD, &err), LC_OK, "%s", err.msg);
    loss_of(&f);
    model_backward(&f.m, f.a, 1.0f);
    const model_config *c = &f.m.cfg;
    char name[128];
    for (int mo = 0; mo < MOD_COUNT; mo++) {
        int in = module_in_dim(c, mo), out = module_out_dim(c, mo);
        for (int l = 0; l < c->n_layers; l++) {
            int s = l * MOD_COUNT + mo;
            snprintf(name, sizeof name, "lora0.A[%d,%s]", l, module_short(mo));
            fd_check(&f, name, f.l0.A[s], f.l0.gA[s], (size_t)3 * in);
            snprintf(name, sizeof name, "lora0.B[%d,%s]", l, module_short(mo));
            fd_check(&f, name, f.l0.B[s], f.l0.gB[s], (size_t)3 * out);
            snprintf(name, sizeof name, "W[%d,%s]", l, module_short(mo));
            fd_check(&f, name, f.m.w.layers[l].w[mo], f.m.g.layers[l].w[mo], (size_t)in * out);
        }
        for (int s = 0; s < f.cb.n_slots; s++) {
            int k = s * MOD_COUNT + mo;
            snprintf(name, sizeof name, "calib.p[%d,%s]", s, module_short(mo));
            fd_check(&f, name, f.cb.p[k], f.cb.gp[k], out);
            snprintf(name, sizeof name, "calib.P1[%d,%s]", s, module_short(mo));
            fd_check(&f, name, f.cl.P1[k], f.cl.gP1[k], (size_t)2 * in);
            snprintf(name, sizeof name, "calib.P2[%d,%s]", s, module_short(mo));
            fd_check(&f, name, f.cl.P2[k], f.cl.gP2[k], (size_t)2 * out);
        }
    }
    fd_check(&f, "lora1.A[0,q]", f.l1.A[MOD_Q], f.l1.gA[MOD_Q], (size_t)2 * c->dim);
    fd_check(&f, "lora1.B[0,down]", f.l1.B[MOD_DOWN], f.l1.gB[MOD_DOWN], (size_t)2 * c->dim);
    cr_assert_null(f.l1.A[MOD_COUNT + MOD_Q], "layer 1 is not adapted by lora1");
    fd_check(&f, "tok_emb", f.m.w.tok_emb, f.m.g.tok_emb, (size_t)c->vocab_size * c->dim);
    fd_check(&f, "final_norm", f.m.w.final_norm, f.m.g.final_norm, c->dim);
    fd_check(&f, "attn_norm[1]", f.m.w.layers[1].attn_norm, f.m.g.layers[1].attn_norm, c->dim);
    fd_check(&f, "ffn_norm[0]", f.m.w.layers[0].ffn_norm, f.m.g.layers[0].ffn_norm, c->dim);
    if (qwen) {
        fd_check(&f, "bq[0]", f.m.w.layers[0].bq, f.m.g.layers[0].bq, 16);
        fd_check(&f, "bk[1]", f.m.w.layers[1].bk, f.m.g.layers[1].bk, 8);
        fd_check(&f, "bv[1]", f.m.w.layers[1].bv, f.m.g.layers[1].bv, 8);
    } else {
        fd_check(&f, "lm_head", f.m.w.lm_head, f.m.g.lm_head, (size_t)c->vocab_size * c->dim);
    }
    fixture_free(&f);
}

Test(model, gradients_match_finite_differences_llama_shared) { run_grad_check(0, 0); }
Test(model, gradients_match_finite_differences_qwen2_per_layer) { run_grad_check(1, 1); }

Test(model, frozen_tensors_get_no_gradient_buffers) {
    fixture f;
    lc_err err;
    fixture_init(&f, 0, 0);
    cr_assert_eq(calib_enable_grad(&f.cl, &err), LC_OK);
    cr_assert_eq(model_acts_init(&f.a, &f.m, &f.ad, 2, 7, ACTS_BACKWARD, &err), LC_OK);
    loss_of(&f);
    model_backward(&f.m, f.a, 1.0f);
    cr_assert_null(f.m.grad);
    cr_assert_null(f.l0.grad);
    cr_assert_null(f.cb.grad);
    double s = 0;
    for (size_t i = 0; i < f.cl.n_params; i++) s += fabs(f.cl.grad[i]);
    cr_assert_gt(s, 0.0);
    fixture_free(&f);
}

Test(model, loss_is_mean_cross_entropy_of_kept_logits) {
    fixture f;
    lc_err err;
    fixture_init(&f, 1, 0);
    cr_assert_eq(model_acts_init(&f.a, &f.m, &f.ad, 2, 7, ACTS_KEEP_LOGITS, &err), LC_OK);
    double loss = loss_of(&f);
    const float *lg = model_acts_logits(f.a);
    int V = f.m.cfg.vocab_size, n = 0;
    double s = 0;
    for (int i = 0; i < 14; i++) {
        if (f.targets[i] < 0) continue;
        const float *z = lg + (size_t)i * V;
        double mx = z[0], sum = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, z[j]);
        for (int j = 0; j < V; j++) sum += exp(z[j] - mx);
        s += mx + log(sum) - z[f.targets[i]];
        n++;
    }
    cr_assert_float_eq(loss, s / n, 1e-5);
    fixture_free(&f);
}

/* What batch_next_fit relies on: positions after the last target change
 * neither the loss nor any gradient, so a (B, 7) batch whose targets end at
 * t = 4 gives the (B, 5) batch's loss and gradients. */
Test(model, trailing_positions_without_targets_change_nothing) {
    fixture f;
    lc_err err;
    fixture_init(&f, 0, 1);
    cr_assert_eq(lora_enable_grad(&f.l0, &err), LC_OK);
    cr_assert_eq(calib_enable_grad(&f.cl, &err), LC_OK);
    cr_assert_eq(model_acts_init(&f.a, &f.m, &f.ad, 2, 7, ACTS_BACKWARD, &err), LC_OK, "%s", err.msg);
    enum { T = 7, TS = 5 };
    for (int b = 0; b < 2; b++)
        for (int t = TS; t < T; t++) f.targets[b * T + t] = -1;
    size_t nA = (size_t)3 * f.m.cfg.dim, nP = (size_t)2 * f.m.cfg.dim;
    float gA[2][64], gP[2][64], loss[2];
    int tk[2 * TS], tg[2 * TS];
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < TS; t++) tk[b * TS + t] = f.tokens[b * T + t], tg[b * TS + t] = f.targets[b * T + t];
    for (int k = 0; k < 2; k++) {
        memset(f.l0.gA[MOD_V], 0, sizeof(float) * nA);
        memset(f.cl.gP1[MOD_UP], 0, sizeof(float) * nP);
        cr_assert_eq(model_forward(&f.m, f.a, k ? tk : f.tokens, k ? tg : f.targets, 2, k ? TS : T,
                                   &loss[k], &err), LC_OK, "%s", err.msg);
        model_backward(&f.m, f.a, 1.0f);
        memcpy(gA[k], f.l0.gA[MOD_V], sizeof(float) * nA);
        memcpy(gP[k], f.cl.gP1[MOD_UP], sizeof(float) * nP);
    }
    cr_assert_float_eq(loss[0], loss[1], 1e-6, "loss %.9g vs %.9g", loss[0], loss[1]);
    for (size_t i = 0; i < nA; i++) cr_assert_float_eq(gA[0][i], gA[1][i], 1e-6, "lora A grad %zu", i);
    for (size_t i = 0; i < nP; i++) cr_assert_float_eq(gP[0][i], gP[1][i], 1e-6, "P1 grad %zu", i);
    int nonzero = 0;
    for (size_t i = 0; i < nA; i++) nonzero |= gA[0][i] != 0.0f;
    cr_assert(nonzero, "the gradient compared is all zero: the test shows nothing");
    fixture_free(&f);
}

Test(model, kv_cache_decoder_matches_batch_forward) {
    for (int qwen = 0; qwen < 2; qwen++) {
        fixture f;
        lc_err err;
        fixture_init(&f, qwen, qwen);
        cr_assert_eq(model_acts_init(&f.a, &f.m, &f.ad, 2, 7, ACTS_KEEP_LOGITS, &err), LC_OK);
        loss_of(&f);
        const float *lg = model_acts_logits(f.a);
        model_decoder *d;
        cr_assert_eq(model_decoder_init(&d, &f.m, &f.ad, 16, &err), LC_OK);
        int V = f.m.cfg.vocab_size;
        for (int t = 0; t < 7; t++) {
            float *z = model_decoder_step(d, f.tokens[7 + t], t); /* second row */
            cr_assert_not_null(z);
            double e = tu_rel_err_f32(z, lg + (size_t)(7 + t) * V, V);
            cr_assert_lt(e, 1e-5, "position %d: rel err %g", t, e);
        }
        cr_assert_null(model_decoder_step(d, V, 0), "out-of-range token is refused");
        cr_assert_null(model_decoder_step(d, 0, 16), "position past the cache is refused");
        /* and generation reports a refused step as an error, not as a short answer */
        gen_opts o = {.max_new_tokens = 4, .top_p = 1.0f};
        const int bad[2] = {1, V};
        char *text = NULL;
        int n_new = -1;
        cr_assert_eq(generate_text(d, 16, &f.m, NULL, bad, 2, &o, NULL, NULL, &text, &n_new, &err), LC_FAIL,
                     "a prompt the decoder refuses must fail the generation");
        cr_assert(strstr(err.msg, "not in [0,"), "%s", err.msg);
        cr_assert_null(text);
        model_decoder_free(d);
        fixture_free(&f);
    }
}

Test(model, forward_rejects_bad_tokens_and_shapes) {
    fixture f;
    lc_err err;
    fixture_init(&f, 0, 0);
    cr_assert_eq(model_acts_init(&f.a, &f.m, &f.ad, 2, 7, 0, &err), LC_OK);
    float loss;
    f.tokens[3] = 99;
    cr_assert_eq(model_forward(&f.m, f.a, f.tokens, f.targets, 2, 7, &loss, &err), LC_FAIL);
    cr_assert_not_null(strstr(err.msg, "token id 99"), "%s", err.msg);
    f.tokens[3] = 0;
    cr_assert_eq(model_forward(&f.m, f.a, f.tokens, f.targets, 3, 7, &loss, &err), LC_FAIL);
    cr_assert_not_null(strstr(err.msg, "does not fit"), "%s", err.msg);
    f.m.w.layers[0].w[MOD_Q][0] = NAN;
    cr_assert_eq(model_forward(&f.m, f.a, f.tokens, f.targets, 2, 7, &loss, &err), LC_FAIL);
    cr_assert_not_null(strstr(err.msg, "non-finite loss"), "%s", err.msg);
    fixture_free(&f);
}

Test(model, lora_and_calib_reject_bad_shapes) {
    lc_err err;
    model_config c = tiny_config(0);
    lora l;
    calib cb;
    cr_assert_eq(lora_init(&l, &c, 0, 1, 0, MOD_MASK_ALL, NULL, &err), LC_FAIL);
    cr_assert_eq(lora_init(&l, &c, 17, 1, 0, MOD_MASK_ALL, NULL, &err), LC_FAIL);
    cr_assert_not_null(strstr(err.msg, "larger than module"), "%s", err.msg);
    cr_assert_eq(calib_init(&cb, &c, CALIB_LOWRANK, 9, 0, 1u << MOD_K, &err), LC_FAIL);
    cr_assert_not_null(strstr(err.msg, "k_proj"), "%s", err.msg);
}

Test(model, lora_dropout_gradients_match_finite_differences) {
    fixture f;
    lc_err err;
    fixture_init(&f, 0, 0);
    f.l0.dropout = 0.3f;
    cr_assert_eq(lora_enable_grad(&f.l0, &err), LC_OK);
    cr_assert_eq(model_enable_grad(&f.m, &err), LC_OK); /* checks dx through the dropped path */
    cr_assert_eq(model_acts_init(&f.a, &f.m, &f.ad, 2, 7, ACTS_BACKWARD, &err), LC_OK);
    double no_drop = loss_of(&f);
    model_acts_set_dropout(f.a, 1234);
    double with_drop = loss_of(&f);
    cr_assert_neq(no_drop, with_drop, "dropout changed nothing");
    cr_assert_eq(loss_of(&f), with_drop, "the mask must be a function of the seed");
    model_backward(&f.m, f.a, 1.0f);
    const model_config *c = &f.m.cfg;
    for (int mo = 0; mo < MOD_COUNT; mo++) {
        int s = MOD_COUNT + mo; /* layer 1 */
        fd_check(&f, "dropout lora0.A", f.l0.A[s], f.l0.gA[s], (size_t)3 * module_in_dim(c, mo));
        fd_check(&f, "dropout lora0.B", f.l0.B[s], f.l0.gB[s], (size_t)3 * module_out_dim(c, mo));
        fd_check(&f, "dropout W[0]", f.m.w.layers[0].w[mo], f.m.g.layers[0].w[mo],
                 (size_t)module_in_dim(c, mo) * module_out_dim(c, mo));
    }
    fd_check(&f, "dropout tok_emb", f.m.w.tok_emb, f.m.g.tok_emb, (size_t)c->vocab_size * c->dim);
    model_acts_set_dropout(f.a, 0);
    cr_assert_eq(loss_of(&f), no_drop, "seed 0 turns dropout off");
    fixture_free(&f);
}
