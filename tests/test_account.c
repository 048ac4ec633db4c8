/* Tests for calibrate/lib/account.c: parameter counts of LC, LC++, LoRAs
 * and base models, storage at fp16, the efficiency table, and errors.
 *
 * Every expected number below is worked out by hand in the comments from
 * the config values (not by calling the code under test), and the small
 * hand-made configs are also cross-checked against the sizes the real
 * allocators report (model_init, lora_init, calib_init). */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "loaders.h"
#include "model.h"
#include "testutil.h"

#define ASSERT_HAS(text, sub) \
    cr_assert(strstr((text), (sub)) != NULL, "output lacks \"%s\":\n%s", (sub), (text))

/* ../shared/assets (LC_SHARED_DIR/assets when set) or a visible skip. A
 * plain stderr line, not cr_log_warn: Criterion 2.4 turns a warning into a
 * failing exit status even when every test passes. */
static const char *shared_or_skip(const char *test) {
    const char *assets = tu_shared_assets();
    if (!assets) {
        fprintf(stderr, "SKIP account/%s: ../shared/assets not found next to the checkout "
                        "(set LC_SHARED_DIR); this test needs the real HF configs\n", test);
        cr_skip_test("SKIP: ../shared/assets not found; this test needs the real HF configs");
    }
    return assets;
}

static void load_shared(const char *name, model_config *c) {
    char path[4096];
    lc_err err = {0};
    snprintf(path, sizeof path, "%s/hf-configs/%s/config.json", tu_shared_assets(), name);
    cr_assert_eq(account_load_config(path, c, &err), LC_OK, "%s", err.msg);
}

static account_result compute(const model_config *c, int r, unsigned mask, int k, int per_layer) {
    account_opts o;
    account_opts_default(&o);
    o.lora_rank = r;
    o.lora_mask = mask;
    o.lc_rank = k;
    o.per_layer = per_layer;
    account_result res;
    lc_err err = {0};
    cr_assert_eq(account_compute(c, &o, &res, &err), LC_OK, "%s", err.msg);
    return res;
}

/* Runs the table printer into a string. */
static char *table(const char *const *names, const model_config *cfgs, int n,
                   const account_opts *o) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    lc_err err = {0};
    int rc = account_print_table(f, names, cfgs, n, o, &err);
    fclose(f);
    cr_assert_eq(rc, LC_OK, "%s", err.msg);
    return buf;
}

/* ---- Llama-3.2-1B ---------------------------------------------------------
 * config.json: hidden_size D = 2048, num_hidden_layers L = 16,
 * num_attention_heads H = 32, num_key_value_heads Hkv = 8, head_dim hd = 64,
 * intermediate_size F = 8192, vocab_size V = 128256, tied embeddings, no
 * attention bias.
 *   q: out 32*64 = 2048, in 2048      k, v: out 8*64 = 512, in 2048
 *   o: out 2048, in 2048              gate, up: out 8192, in 2048
 *   down: out 2048, in 8192 */

Test(account, llama_3_2_1b_lc_lcpp_lora) {
    shared_or_skip("llama_3_2_1b_lc_lcpp_lora");
    model_config c;
    load_shared("llama-3.2-1b", &c);
    account_result r = compute(&c, 8, MOD_MASK_ALL, 4, 0);

    /* LC = 2048 + 512 + 512 + 2048 + 8192 + 8192 + 2048 = 23,552 (GUIDE.md) */
    cr_assert_eq(r.lc.params, 23552);
    cr_assert_eq(account_lc_params(&c, MOD_MASK_ALL, 0), 23552);
    /* fp16: 47,104 bytes = 0.047104 MB */
    cr_assert_eq(r.lc.bytes, 47104);
    cr_assert_float_eq(r.lc.mb, 0.047104, 1e-12);

    /* LC++ k = 4: k (in + out) per module type
     *   q 4*(2048+2048) = 16,384   k 4*(2048+512) = 10,240   v 10,240
     *   o 16,384   gate 4*(2048+8192) = 40,960   up 40,960   down 40,960
     *   total 4 * 44,032 = 176,128 */
    cr_assert_eq(r.lcpp.params, 176128);
    cr_assert_eq(r.lcpp.bytes, 352256);

    /* LoRA rank 8 on all seven, per layer 8 * sum(in + out) = 8 * 44,032 =
     * 352,256; times 16 layers = 5,636,096 (11,272,192 bytes). */
    cr_assert_eq(r.lora.params, 5636096);
    cr_assert_eq(r.joint.params, 5636096);
    cr_assert_eq(r.lora.bytes, 11272192);
    cr_assert_float_eq(r.lora.mb, 11.272192, 1e-9);
    cr_assert_float_eq(r.lora.pct_lora, 100.0, 1e-12);
    cr_assert_float_eq(r.joint.pct_lora, 100.0, 1e-12);

    /* LC is 23,552 / 5,636,096 = 0.41788 % of a LoRA, LC++ 176,128 /
     * 5,636,096 = 3.125 % exactly (= 4*44,032 / (8*16*44,032) = 1/32). */
    cr_assert_float_eq(r.lc.pct_lora, 100.0 * 23552 / 5636096, 1e-12);
    cr_assert_float_eq(r.lcpp.pct_lora, 3.125, 1e-12);
    /* and 23,552 / 1,235,814,400 of the base */
    cr_assert_float_eq(r.lc.pct_base, 100.0 * 23552 / 1235814400.0, 1e-15);

    /* LoRA on q and v only, rank 16: 16 * 16 * ((2048+2048) + (2048+512))
     * = 256 * 6,656 = 1,703,936; LC on the same modules: 2048 + 512 = 2,560 */
    r = compute(&c, 16, (1u << MOD_Q) | (1u << MOD_V), 4, 0);
    cr_assert_eq(r.lora.params, 1703936);
    cr_assert_eq(r.lc.params, 2560);
    /* LC++ 4 * 6,656 = 26,624 */
    cr_assert_eq(r.lcpp.params, 26624);
}

Test(account, llama_3_2_1b_base_params) {
    shared_or_skip("llama_3_2_1b_base_params");
    model_config c;
    load_shared("llama-3.2-1b", &c);
    cr_assert_eq(c.tie_embeddings, 1);
    cr_assert_eq(c.qkv_bias, 0);
    /* embedding 128,256 * 2048 = 262,668,288
     * per layer: q 2048*2048 = 4,194,304; k, v 512*2048 = 1,048,576 each;
     *   o 4,194,304; gate, up, down 8192*2048 = 16,777,216 each;
     *   projections 60,817,408 + norms 2*2048 = 60,821,504
     * 16 layers: 973,144,064; final norm 2048; lm_head tied (0)
     * total 262,668,288 + 973,144,064 + 2,048 = 1,235,814,400 (the known
     * figure for Llama-3.2-1B) */
    cr_assert_eq(account_base_params(&c), 1235814400LL);
    account_result r = compute(&c, 8, MOD_MASK_ALL, 4, 0);
    cr_assert_eq(r.base.params, 1235814400LL);
    cr_assert_eq(r.base.bytes, 2471628800LL);
    cr_assert_float_eq(r.base.pct_base, 100.0, 1e-12);
    /* untied it would add another V * D */
    c.tie_embeddings = 0;
    cr_assert_eq(account_base_params(&c), 1235814400LL + 262668288LL);
}

/* ---- Qwen2.5 ----------------------------------------------------------------
 * 1.5B: D = 1536, L = 28, H = 12, Hkv = 2, hd = 1536/12 = 128, F = 8960,
 *   V = 151936, tied, qkv biases (model_type qwen2).
 *   q: out 1536   k, v: out 2*128 = 256   o: out 1536
 *   gate, up: out 8960   down: out 1536
 * 0.5B: D = 896, L = 24, H = 14, Hkv = 2, hd = 896/14 = 64, F = 4864,
 *   V = 151936, tied, qkv biases.
 *   q: out 896   k, v: out 2*64 = 128   o: out 896
 *   gate, up: out 4864   down: out 896 */

Test(account, qwen2_5_lc_counts) {
    shared_or_skip("qwen2_5_lc_counts");
    model_config c15, c05;
    load_shared("qwen2.5-1.5b", &c15);
    load_shared("qwen2.5-0.5b", &c05);
    cr_assert_eq(c15.head_dim, 128);
    cr_assert_eq(c05.head_dim, 64);

    /* 1.5B: 1536 + 256 + 256 + 1536 + 8960 + 8960 + 1536 = 23,040 */
    account_result r = compute(&c15, 8, MOD_MASK_ALL, 4, 0);
    cr_assert_eq(r.lc.params, 23040);
    /* LC++ k=4: sum(in+out) = (1536+1536) + 2*(1536+256) + (1536+1536)
     *   + 2*(1536+8960) + (8960+1536) = 3072 + 3584 + 3072 + 20992 + 10496
     *   = 41,216; times 4 = 164,864 */
    cr_assert_eq(r.lcpp.params, 164864);
    /* LoRA r=8: 8 * 41,216 * 28 layers = 9,232,384 */
    cr_assert_eq(r.lora.params, 9232384);

    /* 0.5B: 896 + 128 + 128 + 896 + 4864 + 4864 + 896 = 12,672 */
    r = compute(&c05, 8, MOD_MASK_ALL, 4, 0);
    cr_assert_eq(r.lc.params, 12672);
    /* sum(in+out) = (896+896) + 2*(896+128) + (896+896) + 2*(896+4864)
     *   + (4864+896) = 1792 + 2048 + 1792 + 11520 + 5760 = 22,912;
     * LC++ 4 * 22,912 = 91,648; LoRA r=8: 8 * 22,912 * 24 = 4,399,104 */
    cr_assert_eq(r.lcpp.params, 91648);
    cr_assert_eq(r.lora.params, 4399104);
}

Test(account, per_layer_is_n_layers_times_shared) {
    shared_or_skip("per_layer_is_n_layers_times_shared");
    const char *names[] = {"llama-3.2-1b", "qwen2.5-1.5b", "qwen2.5-0.5b"};
    /* per-layer LC: 16 * 23,552 = 376,832; 28 * 23,040 = 645,120;
     * 24 * 12,672 = 304,128 */
    const int64_t want_lc[] = {376832, 645120, 304128};
    for (int i = 0; i < 3; i++) {
        model_config c;
        load_shared(names[i], &c);
        account_result s = compute(&c, 8, MOD_MASK_ALL, 4, 0);
        account_result p = compute(&c, 8, MOD_MASK_ALL, 4, 1);
        cr_assert_eq(p.lc.params, want_lc[i], "%s: %lld", names[i], (long long)p.lc.params);
        cr_assert_eq(p.lc.params, (int64_t)c.n_layers * s.lc.params, "%s", names[i]);
        cr_assert_eq(p.lcpp.params, (int64_t)c.n_layers * s.lcpp.params, "%s", names[i]);
        /* the LoRA does not change with the calibration layout */
        cr_assert_eq(p.lora.params, s.lora.params);
        cr_assert_eq(p.opts.per_layer, 1);
    }
}

Test(account, qwen2_5_base_params) {
    shared_or_skip("qwen2_5_base_params");
    model_config c;
    load_shared("qwen2.5-0.5b", &c);
    cr_assert_eq(c.qkv_bias, 1);
    cr_assert_eq(c.tie_embeddings, 1);
    /* embedding 151,936 * 896 = 136,134,656
     * per layer: q, o 896*896 = 802,816 each; k, v 128*896 = 114,688 each;
     *   gate, up, down 4864*896 = 4,358,144 each; projections 14,909,440;
     *   biases 896 + 128 + 128 = 1,152; norms 2*896 = 1,792; = 14,912,384
     * 24 layers 357,897,216; final norm 896; tied
     * total 136,134,656 + 357,897,216 + 896 = 494,032,768 (the known
     * Qwen2.5-0.5B count) */
    cr_assert_eq(account_base_params(&c), 494032768LL);

    load_shared("qwen2.5-1.5b", &c);
    /* embedding 151,936 * 1536 = 233,373,696
     * per layer: q, o 1536*1536 = 2,359,296 each; k, v 256*1536 = 393,216
     *   each; gate, up, down 8960*1536 = 13,762,560 each; projections
     *   46,792,704; biases 1536 + 256 + 256 = 2,048; norms 3,072;
     *   = 46,797,824
     * 28 layers 1,310,339,072; final norm 1,536; tied
     * total 233,373,696 + 1,310,339,072 + 1,536 = 1,543,714,304 (the known
     * Qwen2.5-1.5B count) */
    cr_assert_eq(account_base_params(&c), 1543714304LL);
}

/* ---- a hand-made config ----------------------------------------------------
 * D = 64, L = 3, H = 4, Hkv = 2, hd = 64/4 = 16, F = 160, V = 100, untied,
 * no bias:
 *   q: (64, 64)  k, v: (32, 64)  o: (64, 64)  gate, up: (160, 64)  down: (64, 160) */
static const char *small_json =
    "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 3,"
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
    " \"intermediate_size\": 160, \"vocab_size\": 100,"
    " \"max_position_embeddings\": 128, \"tie_word_embeddings\": false}";

static void parse_small(const char *json, model_config *c) {
    lc_err err = {0};
    memset(c, 0, sizeof *c);
    cr_assert_eq(hf_config_parse(json, "small/config.json", c, &err), LC_OK, "%s", err.msg);
}

Test(account, small_config_by_hand_and_by_allocation) {
    model_config c;
    parse_small(small_json, &c);
    cr_assert_eq(c.head_dim, 16);
    account_result r = compute(&c, 2, MOD_MASK_ALL, 3, 0);

    /* LC: 64 + 32 + 32 + 64 + 160 + 160 + 64 = 576 */
    cr_assert_eq(r.lc.params, 576);
    /* sum(in+out): 128 + 96 + 96 + 128 + 224 + 224 + 224 = 1,120
     * LC++ k=3: 3,360; LoRA r=2: 2 * 1,120 * 3 layers = 6,720 */
    cr_assert_eq(r.lcpp.params, 3360);
    cr_assert_eq(r.lora.params, 6720);
    cr_assert_eq(r.joint.params, 6720);
    /* per layer: LC 3 * 576 = 1,728; LC++ 3 * 3,360 = 10,080 */
    account_result p = compute(&c, 2, MOD_MASK_ALL, 3, 1);
    cr_assert_eq(p.lc.params, 1728);
    cr_assert_eq(p.lcpp.params, 10080);
    /* base: embedding 100*64 = 6,400; per layer projections 4096 + 2048 +
     * 2048 + 4096 + 3 * 10,240 = 43,008, norms 128 -> 43,136; 3 layers
     * 129,408; final norm 64; lm_head 6,400 (untied)
     * = 6,400 + 129,408 + 64 + 6,400 = 142,272 */
    cr_assert_eq(r.base.params, 142272);
    /* bytes and percentages */
    cr_assert_eq(r.lc.bytes, 1152);
    cr_assert_float_eq(r.lc.mb, 0.001152, 1e-15);
    cr_assert_float_eq(r.lc.pct_lora, 100.0 * 576 / 6720, 1e-12);
    cr_assert_float_eq(r.lora.pct_base, 100.0 * 6720 / 142272, 1e-12);

    /* the allocators agree */
    lc_err err = {0};
    model m;
    cr_assert_eq(model_init(&m, &c, &err), LC_OK, "%s", err.msg);
    cr_assert_eq((int64_t)m.n_params, r.base.params);
    model_free(&m);
    lora l;
    cr_assert_eq(lora_init(&l, &c, 2, 4.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
    cr_assert_eq((int64_t)l.n_params, r.lora.params);
    lora_free(&l);
    for (int per_layer = 0; per_layer <= 1; per_layer++) {
        const account_result *x = per_layer ? &p : &r;
        calib cb;
        cr_assert_eq(calib_init(&cb, &c, CALIB_BIAS, 0, per_layer, MOD_MASK_ALL, &err), LC_OK,
                     "%s", err.msg);
        cr_assert_eq((int64_t)cb.n_params, x->lc.params, "per_layer %d", per_layer);
        calib_free(&cb);
        cr_assert_eq(calib_init(&cb, &c, CALIB_LOWRANK, 3, per_layer, MOD_MASK_ALL, &err),
                     LC_OK, "%s", err.msg);
        cr_assert_eq((int64_t)cb.n_params, x->lcpp.params, "per_layer %d", per_layer);
        calib_free(&cb);
    }
}

Test(account, small_qwen2_biases_and_tied) {
    /* the same dims as qwen2 (q/k/v biases) with tied embeddings:
     * base = 142,272 - 6,400 (lm_head) + 3 * (64 + 32 + 32) = 136,256 */
    model_config c;
    parse_small("{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"num_hidden_layers\": 3,"
                " \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
                " \"intermediate_size\": 160, \"vocab_size\": 100,"
                " \"tie_word_embeddings\": true}",
                &c);
    cr_assert_eq(c.qkv_bias, 1);
    cr_assert_eq(account_base_params(&c), 136256);
    lc_err err = {0};
    model m;
    cr_assert_eq(model_init(&m, &c, &err), LC_OK, "%s", err.msg);
    cr_assert_eq((int64_t)m.n_params, 136256);
    model_free(&m);
    /* the calibration and LoRA counts do not depend on biases or tying */
    account_result r = compute(&c, 2, MOD_MASK_ALL, 3, 0);
    cr_assert_eq(r.lc.params, 576);
    cr_assert_eq(r.lora.params, 6720);
}

Test(account, separate_calibration_mask) {
    model_config c;
    parse_small(small_json, &c);
    account_opts o;
    account_opts_default(&o);
    o.lora_rank = 2;
    o.lc_rank = 3;
    o.calib_mask = (1u << MOD_GATE) | (1u << MOD_DOWN);
    account_result r;
    lc_err err = {0};
    cr_assert_eq(account_compute(&c, &o, &r, &err), LC_OK, "%s", err.msg);
    /* LC on gate and down: 160 + 64 = 224; LC++ 3 * (224 + 224) = 1,344 */
    cr_assert_eq(r.lc.params, 224);
    cr_assert_eq(r.lcpp.params, 1344);
    cr_assert_eq(r.lora.params, 6720);
    cr_assert_eq(r.opts.calib_mask, o.calib_mask);
    /* NULL options are the defaults: r = 8, k = 4, all modules, shared:
     * LoRA 8 * 1,120 * 3 = 26,880; LC++ 4 * 1,120 = 4,480 */
    cr_assert_eq(account_compute(&c, NULL, &r, &err), LC_OK, "%s", err.msg);
    cr_assert_eq(r.lora.params, 26880);
    cr_assert_eq(r.lcpp.params, 4480);
    cr_assert_eq(r.lc.params, 576);
    cr_assert_eq(r.opts.calib_mask, MOD_MASK_ALL);
}

/* ---- the table -------------------------------------------------------------- */

Test(account, table_small_config) {
    model_config c;
    parse_small(small_json, &c);
    account_opts o;
    account_opts_default(&o);
    o.lora_rank = 2;
    o.lc_rank = 3;
    const char *names[] = {"tiny"};
    char *t = table(names, &c, 1, &o);
    ASSERT_HAS(t, "| Method | Inferences | Extra parameters | Extra MB (fp16) | "
                  "% of a single LoRA |");
    ASSERT_HAS(t, "| Zero-shot (base model) | 1 | 0 | 0 | 0 |");
    ASSERT_HAS(t, "| Main-task LoRA | 1 | 0 | 0 | 0 |");
    ASSERT_HAS(t, "| Multi-step LoRA (one task after the other) | 2 | 0 | 0 | 0 |");
    ASSERT_HAS(t, "| Linear merge | 1 | 0 | 0 | 0 |");
    /* joint expert: 6,720 params, 13,440 bytes = 0.01344 MB, 100 % */
    ASSERT_HAS(t, "| Joint-expert LoRA (r = 2, per task) | 1 | 6,720 | 0.0134 | 100.00 |");
    /* LC: 576 params, 1,152 bytes = 0.00115 MB, 576/6720 = 8.571 % */
    ASSERT_HAS(t, "| LC (bias) | 1 | 576 | 0.00115 | 8.57 |");
    /* LC++: 3,360 params, 6,720 bytes = 0.00672 MB, 50 % */
    ASSERT_HAS(t, "| LC++ (k = 3) | 1 | 3,360 | 0.00672 | 50.00 |");
    ASSERT_HAS(t, "- tiny: base model 142,272 parameters");
    ASSERT_HAS(t, "MB = 10^6 bytes");
    free(t);

    o.per_layer = 1;
    t = table(names, &c, 1, &o);
    /* per layer: LC 1,728 = 25.71 %, LC++ 10,080 = 150 % */
    ASSERT_HAS(t, "| LC (bias, per layer) | 1 | 1,728 | 0.00346 | 25.71 |");
    ASSERT_HAS(t, "| LC++ (k = 3, per layer) | 1 | 10,080 | 0.0202 | 150.00 |");
    ASSERT_HAS(t, "one set per layer");
    free(t);
}

Test(account, table_real_configs) {
    shared_or_skip("table_real_configs");
    const char *names[] = {"Llama-3.2-1B", "Qwen2.5-1.5B"};
    model_config cfgs[2];
    load_shared("llama-3.2-1b", &cfgs[0]);
    load_shared("qwen2.5-1.5b", &cfgs[1]);
    char *t = table(names, cfgs, 2, NULL);
    ASSERT_HAS(t, "| Method | Inferences | Llama-3.2-1B extra parameters | Llama-3.2-1B extra "
                  "MB (fp16) | Llama-3.2-1B % of a single LoRA | Qwen2.5-1.5B extra parameters");
    /* LC: Llama 23,552 (0.0471 MB, 0.418 %); Qwen 23,040 (0.0461 MB,
     * 23,040 / 9,232,384 = 0.2496 % -> "0.250") */
    ASSERT_HAS(t, "| LC (bias) | 1 | 23,552 | 0.0471 | 0.418 | 23,040 | 0.0461 | 0.250 |");
    /* joint expert: 11.27 MB and 9,232,384 * 2 = 18.46 MB */
    ASSERT_HAS(t, "| 1 | 5,636,096 | 11.27 | 100.00 | 9,232,384 | 18.46 | 100.00 |");
    ASSERT_HAS(t, "- Llama-3.2-1B: base model 1,235,814,400 parameters (2471.63 MB fp16)");
    ASSERT_HAS(t, "- Qwen2.5-1.5B: base model 1,543,714,304 parameters");
    fprintf(stderr, "account: efficiency table for the real configs:\n%s", t);
    free(t);
}

Test(account, print_file) {
    const char *assets = shared_or_skip("print_file");
    char path[4096];
    snprintf(path, sizeof path, "%s/hf-configs/llama-3.2-1b/config.json", assets);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    lc_err err = {0};
    int rc = account_print_file(f, path, 0, 0, &err);
    fclose(f);
    cr_assert_eq(rc, LC_OK, "%s", err.msg);
    ASSERT_HAS(buf, "- llama-3.2-1b: base model 1,235,814,400 parameters");
    ASSERT_HAS(buf, "| Joint-expert LoRA (r = 8, per task) | 1 | 5,636,096 | 11.27 | 100.00 |");
    ASSERT_HAS(buf, "| LC++ (k = 4) | 1 | 176,128 | 0.352 | 3.12 |");
    free(buf);

    /* the folder works too, and the ranks are taken: r = 16 doubles the
     * LoRA (11,272,192 params), k = 1 gives LC++ 44,032 */
    snprintf(path, sizeof path, "%s/hf-configs/llama-3.2-1b", assets);
    buf = NULL;
    f = open_memstream(&buf, &len);
    rc = account_print_file(f, path, 16, 1, &err);
    fclose(f);
    cr_assert_eq(rc, LC_OK, "%s", err.msg);
    ASSERT_HAS(buf, "- llama-3.2-1b: base model");
    ASSERT_HAS(buf, "| Joint-expert LoRA (r = 16, per task) | 1 | 11,272,192 |");
    ASSERT_HAS(buf, "| LC++ (k = 1) | 1 | 44,032 |");
    free(buf);
}

/* ---- errors ----------------------------------------------------------------- */

Test(account, errors_name_the_file_and_key) {
    lc_err err = {0};
    FILE *null = fopen("/dev/null", "w");
    cr_assert_not_null(null);

    const char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/missing/config.json", dir);
    cr_assert_eq(account_print_file(null, path, 0, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, path);

    /* a config without hidden_size */
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *bad = "{\"model_type\": \"llama\", \"num_hidden_layers\": 2,"
                      " \"num_attention_heads\": 2, \"intermediate_size\": 8,"
                      " \"vocab_size\": 10}";
    cr_assert_eq(tu_write_file(path, bad, strlen(bad)), 0);
    cr_assert_eq(account_print_file(null, path, 0, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, path);
    ASSERT_HAS(err.msg, "hidden_size");
    /* the folder form reports the same file */
    cr_assert_eq(account_print_file(null, dir, 0, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, path);

    /* negative ranks */
    cr_assert_eq(account_print_file(null, path, -1, 0, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "lora rank");
    cr_assert_eq(account_print_file(null, path, 0, -2, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "LC++ rank");

    /* account_compute: options and config keys */
    model_config c;
    parse_small(small_json, &c);
    account_opts o;
    account_result r;
    account_opts_default(&o);
    o.lora_rank = 0;
    cr_assert_eq(account_compute(&c, &o, &r, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "lora_rank must be >= 1, found 0");
    account_opts_default(&o);
    o.lc_rank = -1;
    cr_assert_eq(account_compute(&c, &o, &r, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "lc_rank");
    account_opts_default(&o);
    o.lora_mask = 0;
    cr_assert_eq(account_compute(&c, &o, &r, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "lora_mask");
    account_opts_default(&o);
    o.calib_mask = 1u << MOD_COUNT;
    cr_assert_eq(account_compute(&c, &o, &r, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "calib_mask");
    model_config z = c;
    z.n_kv_heads = 0;
    cr_assert_eq(account_compute(&z, NULL, &r, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "'num_key_value_heads'");

    /* the table prefixes the config's name */
    const char *names[] = {"good", "broken"};
    model_config two[2] = {c, z};
    cr_assert_eq(account_print_table(null, names, two, 2, NULL, &err), LC_FAIL);
    ASSERT_HAS(err.msg, "broken: model config: key 'num_key_value_heads'");
    cr_assert_eq(account_print_table(null, names, two, 0, NULL, &err), LC_FAIL);
    fclose(null);
}
