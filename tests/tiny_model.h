/* tiny_model.h: the tiny llama2.c model several tests write (2 x 32-wide
 * layers over a 259-token byte vocabulary), its byte tokenizer and random
 * PEFT LoRAs for it. Header-only, so that only the tests that include it
 * link the writers (test_runtime links the runtime library alone). */
#ifndef TINY_MODEL_H
#define TINY_MODEL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "loaders.h"
#include "model.h"
#include "testutil.h"

/* dim 32, 4 heads (2 KV heads of 8), hidden 48, vocab 259, 64 positions */
static inline model_config tiny_config(int n_layers) {
    model_config c = {0};
    strcpy(c.arch, "llama");
    c.dim = 32, c.n_layers = n_layers, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8;
    c.hidden_dim = 48, c.vocab_size = 259, c.max_seq_len = 64;
    c.norm_eps = 1e-5f, c.rope_theta = 10000.0f, c.tie_embeddings = 1, c.bos_id = 1, c.eos_id = 2;
    return c;
}

/* dir/model.bin (random, std 0.1, seed 1) and dir/tok259.bin (<unk>, <s>, </s>, 256 bytes) */
static inline void tiny_write_model(const char *dir, const model_config *c) {
    model m;
    lc_err err;
    char p[4096];
    cr_assert_eq(model_init(&m, c, &err), LC_OK, "%s", err.msg);
    model_init_random(&m, 0.1f, 1);
    snprintf(p, sizeof p, "%s/model.bin", dir);
    cr_assert_eq(model_save_llama2c(&m, p, &err), LC_OK, "%s", err.msg);
    model_free(&m);
    snprintf(p, sizeof p, "%s/tok259.bin", dir);
    cr_assert_eq(tu_write_byte_tokenizer(p), 0);
}

/* dir/NAME: a PEFT LoRA of the given rank on every module, alpha 4, random (std 0.05) */
static inline void tiny_write_lora(const char *dir, const char *name, const model_config *c, int rank,
                                   uint64_t seed) {
    lora l;
    lc_err err;
    char p[4096];
    cr_assert_eq(lora_init(&l, c, rank, 4.0f, 0, MOD_MASK_ALL, NULL, &err), LC_OK, "%s", err.msg);
    lora_init_random(&l, 0.05f, seed);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(lc_make_dirs(p, &err), LC_OK);
    cr_assert_eq(lora_save_peft(&l, p, &err), LC_OK, "%s", err.msg);
    lora_free(&l);
}

#endif
