/* train_job.c: see train_job.h. */
#include "train_job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dataset.h"
#include "job.h"
#include "loaders.h"
#include "model.h"
#include "qtype.h"
#include "tokenizer.h"
#include "trainer.h"

typedef struct {
    int full;
    lora *l;
    model *m;
    int peft, hdf5;
} save_ctx;

static int save_adapter(void *p, const char *dir, lc_err *err) {
    save_ctx *s = p;
    char path[4096];
    if (lc_make_dirs(dir, err)) return LC_FAIL;
    if (s->full) {
        snprintf(path, sizeof path, "%s/model.h5", dir);
        if (s->hdf5 && model_save_h5(s->m, path, err)) return LC_FAIL;
        if (s->peft && model_save_hf(s->m, dir, err)) return LC_FAIL; /* HF folder */
        return LC_OK;
    }
    if (s->peft && lora_save_peft(s->l, dir, err)) return LC_FAIL;
    snprintf(path, sizeof path, "%s/adapter.h5", dir);
    if (s->hdf5 && lora_save_h5(s->l, path, err)) return LC_FAIL;
    return LC_OK;
}

static const char *const MODE_NAMES[] = {"lora", "full", NULL};

int train_job_run(const char *cfg_path, const train_job_opts *jo, lc_err *err) {
    cfg *c = NULL;
    model m = {0};
    lora l = {0};
    tokenizer *tok = NULL;
    dataset dtrain = {0}, dval = {0};
    prompt_format pfmt = {0};
    param_list pl = {0};
    char *model_path = NULL, *tok_path = NULL, *out_dir = NULL, *train_path = NULL, *val_path = NULL;
    const char **mods = NULL;
    int *layers = NULL;
    int rc = LC_FAIL, have_val = 0;

    if (cfg_load(&c, cfg_path, err)) goto fail;
    const char *s_model, *s_tok, *s_out, *s_train, *s_val, *ptpl, *ttpl;
    int mode;
    const char *s_init;
    double init_std;
    long long init_seed_model;
    if (cfg_string(c, "init.config", 0, NULL, &s_init, err) ||
        cfg_float(c, "init.std", 0, 0.02, &init_std, err) ||
        cfg_i64(c, "init.seed", 0, 1, &init_seed_model, err) ||
        cfg_string(c, "model", s_init ? 0 : 1, NULL, &s_model, err) ||
        cfg_string(c, "tokenizer", 0, NULL, &s_tok, err) ||
        cfg_string(c, "output_dir", 1, NULL, &s_out, err) ||
        cfg_enum(c, "mode", 0, 0, MODE_NAMES, &mode, err))
        goto fail;
    /* the frozen base's storage type, applied once the model is loaded */
    const int base_type = job_base_type_read(c, err);
    if (base_type < 0) goto fail;
    if (mode == 1 && base_type != QT_F32) {
        lc_errf(err, "%s: key 'base_type': a stored base is frozen, so it cannot go with mode \"full\" "
                "(use f32, or mode \"lora\")", cfg_path);
        goto fail;
    }
    /* data */
    int max_len, add_bos, add_eos, bad_row, max_train, max_val, pkind;
    const char *s_system;
    if (cfg_string(c, "data.train", 1, NULL, &s_train, err) ||
        cfg_enum(c, "data.prompt_format", 0, PROMPT_RAW, PROMPT_FORMAT_NAMES, &pkind, err) ||
        cfg_string(c, "data.system", 0, NULL, &s_system, err) ||
        cfg_string(c, "data.validation", 0, NULL, &s_val, err) ||
        cfg_string(c, "data.prompt_template", 1, NULL, &ptpl, err) ||
        cfg_string(c, "data.target_template", 1, NULL, &ttpl, err) ||
        cfg_int(c, "data.max_len", 0, 256, &max_len, err) ||
        cfg_bool(c, "data.add_bos", 0, 1, &add_bos, err) ||
        cfg_bool(c, "data.add_eos", 0, 1, &add_eos, err) ||
        cfg_enum(c, "data.on_bad_row", 0, 0, BAD_ROW_NAMES, &bad_row, err) ||
        cfg_int(c, "data.max_train_examples", 0, 0, &max_train, err) ||
        cfg_int(c, "data.max_val_examples", 0, 0, &max_val, err))
        goto fail;
    /* training + optimizer */
    train_opts o;
    if (train_opts_from_cfg(c, max_len, 1, &o, err)) goto fail;
    o.stop_after = jo->stop_after;
    o.what = "train";
    /* lora + output */
    int rank, rslora, init_seed, n_mods = 0, n_layers = 0, out_peft, out_h5;
    double alpha, dropout;
    if (mode == 0) {
        if (cfg_int(c, "lora.rank", 0, 8, &rank, err) ||
            cfg_float(c, "lora.alpha", 0, 2.0 * rank, &alpha, err) ||
            cfg_bool(c, "lora.rslora", 0, 0, &rslora, err) ||
            cfg_float(c, "lora.dropout", 0, 0.0, &dropout, err) ||
            cfg_int(c, "lora.init_seed", 0, 0, &init_seed, err) ||
            cfg_string_list(c, "lora.target_modules", 0, &mods, &n_mods, err) ||
            cfg_int_list(c, "lora.layers", 0, &layers, &n_layers, err))
            goto fail;
    }
    if (cfg_bool(c, "output.peft", 0, 1, &out_peft, err) ||
        cfg_bool(c, "output.hdf5", 0, 1, &out_h5, err) || cfg_finish(c, err))
        goto fail;
    if (mode == 0 && (rank <= 0 || !(dropout >= 0 && dropout < 1))) {
        lc_errf(err, "%s: lora.rank must be positive and 0 <= lora.dropout < 1", cfg_path);
        goto fail;
    }

    if (s_init && s_model) {
        lc_errf(err, "%s: give 'model' (a base to fine-tune) or 'init' (a new model), not both", cfg_path);
        goto fail;
    }
    if (s_init && (mode != 1 || !s_tok)) {
        lc_errf(err, "%s: 'init' (training from scratch) needs \"mode\": \"full\" and a 'tokenizer'",
                cfg_path);
        goto fail;
    }
    if (jo->check_only) {
        rc = LC_OK;
        goto fail;
    }
    model_path = cfg_resolve_path(c, s_init ? s_init : s_model);
    out_dir = cfg_resolve_path(c, s_out);
    train_path = cfg_resolve_path(c, s_train);
    if (s_val) val_path = cfg_resolve_path(c, s_val);
    o.out_dir = out_dir;
    o.dist = jo->dist;
    const int r0 = lc_dist_rank(jo->dist) == 0; /* rank 0 alone reports */

    if (s_init) { /* a new model from a Hugging Face config.json, random weights */
        model_config mc;
        char *text = lc_read_file(model_path, NULL, err);
        if (!text) goto fail;
        int r = hf_config_parse(text, model_path, &mc, err);
        free(text);
        if (r || model_init(&m, &mc, err)) goto fail;
        model_init_random(&m, (float)init_std, (uint64_t)init_seed_model);
        if (r0) fprintf(stderr, "train: new %s model from %s: %zu parameters (N(0, %g), seed %lld)\n",
                mc.arch, model_path, m.n_params, init_std, init_seed_model);
    } else if (model_load(&m, model_path, err)) {
        goto fail;
    }
    if (s_tok) {
        tok_path = cfg_resolve_path(c, s_tok);
    } else {
        char buf[4096];
        if (model_tokenizer_path(model_path, m.cfg.vocab_size, buf, sizeof buf, err)) goto fail;
        tok_path = strdup(buf);
    }
    if (tokenizer_load(&tok, tok_path, m.cfg.vocab_size, err)) goto fail;
    if (job_base_type(c, &m, err)) goto fail; /* "base_type": the frozen base in that type */
    if (prompt_format_init(&pfmt, pkind, tok, s_system, err)) {
        lc_err_prefix(err, "%s: key 'data.prompt_format': ", cfg_path);
        goto fail;
    }

    dataset_spec spec = {train_path, ptpl, ttpl, max_len, add_bos, add_eos, bad_row, max_train, &pfmt};
    if (dataset_load(&dtrain, &spec, tok, err)) goto fail;
    if (val_path) {
        spec.path = val_path;
        spec.max_examples = max_val;
        if (dataset_load(&dval, &spec, tok, err)) goto fail;
        have_val = 1;
    }
    if (r0) fprintf(stderr, "train: %s: %d training examples (%d skipped, %d truncated)%s\n", train_path,
            dtrain.n, dtrain.n_skipped, dtrain.n_truncated, have_val ? "" : "; no validation set");

    adapter_set ad = {0};
    save_ctx sc = {mode == 1, &l, &m, out_peft, out_h5};
    if (mode == 0) {
        unsigned mask = 0;
        for (int i = 0; i < n_mods; i++) {
            int mo = module_parse(mods[i]);
            if (mo < 0) {
                lc_errf(err, "%s: key 'lora.target_modules[%d]': unknown module '%s' (q, k, v, o, "
                        "gate, up, down)", cfg_path, i, mods[i]);
                goto fail;
            }
            mask |= 1u << mo;
        }
        if (!n_mods) mask = MOD_MASK_ALL;
        unsigned char *on = NULL;
        if (n_layers) {
            on = calloc(m.cfg.n_layers, 1);
            for (int i = 0; on && i < n_layers; i++) {
                if (layers[i] < 0 || layers[i] >= m.cfg.n_layers) {
                    free(on);
                    lc_errf(err, "%s: key 'lora.layers[%d]': layer %d is outside the model's 0..%d",
                            cfg_path, i, layers[i], m.cfg.n_layers - 1);
                    goto fail;
                }
                on[layers[i]] = 1;
            }
        }
        int r = lora_init(&l, &m.cfg, rank, (float)alpha, rslora, mask, on, err);
        free(on);
        if (r) goto fail;
        lora_init_peft(&l, &m.cfg, (uint64_t)init_seed);
        l.dropout = (float)dropout;
        if (lora_enable_grad(&l, err) || param_list_add_lora(&pl, &l, &m.cfg, err)) goto fail;
        ad.loras[ad.n_loras++] = &l;
        if (r0) fprintf(stderr, "train: LoRA rank %d, alpha %g%s on %d modules: %zu trainable parameters\n",
                rank, alpha, rslora ? " (rsLoRA)" : "", __builtin_popcount(mask), l.n_params);
    } else {
        if (model_enable_grad(&m, err) || param_list_add_model(&pl, &m, err)) goto fail;
        if (r0) fprintf(stderr, "train: full-parameter training: %zu trainable parameters\n", m.n_params);
    }
    int pad = tokenizer_eos(tok) >= 0 ? tokenizer_eos(tok) : 0;
    train_result res;
    if (train_run(&m, &ad, &pl, &dtrain, have_val ? &dval : NULL, pad, &o, jo->resume, save_adapter, &sc,
                  &res, err))
        goto fail;
    if (r0) fprintf(stderr, "train: done: %ld steps, %ld tokens in %.1f s; last loss %.4f%s\n",
            res.steps_done, res.tokens, res.seconds, res.last_loss, have_val ? "" : "");
    if (r0 && have_val) fprintf(stderr, "train: best validation loss %.4f\n", res.best_val);
    if (r0) fprintf(stderr, "train: wrote %s/final%s\n", out_dir, o.keep_best && have_val ? " and best/" : "");
    rc = LC_OK;
fail:
    param_list_free(&pl);
    dataset_free(&dtrain);
    if (have_val) dataset_free(&dval);
    tokenizer_free(tok);
    prompt_format_free(&pfmt);
    lora_free(&l);
    model_free(&m);
    free(mods);
    free(layers);
    free(model_path);
    free(tok_path);
    free(out_dir);
    free(train_path);
    free(val_path);
    cfg_free(c);
    return rc;
}
