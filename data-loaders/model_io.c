/* model_io.c: base models from/to Hugging Face folders (config.json +
 * safetensors, single or sharded) and the project's HDF5 layout, and the
 * model_load dispatcher. The llama2.c format lives in llama2c.c.
 *
 * Tensors are read by their HF names (model_for_each_tensor) with the exact
 * shape implied by config.json; dtype conversion is tensor_file's job. */
#include "loaders.h"
#include "tensor_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define H5_MODEL_FORMAT "lcmt-model"
#define H5_MODEL_VERSION "1"

static const unsigned char HDF5_SIGNATURE[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

/* ---- small file helpers ----------------------------------------------- */


static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- reading the tensors of a model ----------------------------------- */

typedef struct {
    tensor_file *tf;
    const char *cfg_src; /* where the shapes come from, for messages */
    lc_err *err;
    char **names; /* expected names read so far */
    int n_names, cap_names;
} load_ctx;

static int load_tensor_fn(const char *name, int ndim, const int64_t *shape, float *data,
                          float *grad, void *vctx) {
    load_ctx *ctx = vctx;
    const tensor_info *ti = tensor_file_find(ctx->tf, name);
    if (!ti) {
        if (!strcmp(name, "lm_head.weight"))
            return lc_errf(ctx->err, "%s: tensor '%s': missing (%s has tie_word_embeddings false)",
                           tensor_file_path(ctx->tf), name, ctx->cfg_src);
        return lc_errf(ctx->err, "%s: tensor '%s': missing", tensor_file_path(ctx->tf), name);
    }
    int same = ti->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = ti->shape[i] == shape[i];
    if (!same) {
        char want[128], got[128];
        tensor_shape_str(want, sizeof want, ndim, shape);
        tensor_shape_str(got, sizeof got, ti->ndim, ti->shape);
        return lc_errf(ctx->err, "%s: tensor '%s': expected shape %s (from %s), found %s",
                       tensor_file_path_of(ctx->tf, ti), name, want, ctx->cfg_src, got);
    }
    if (!data) return LC_OK; /* the check before allocating (check_claims) */
    if (tensor_file_read_f32(ctx->tf, name, ndim, shape, data, ctx->err)) return LC_FAIL;
    if (ctx->n_names == ctx->cap_names) {
        int cap = ctx->cap_names ? ctx->cap_names * 2 : 64;
        char **nn = realloc(ctx->names, sizeof(char *) * cap);
        if (!nn) return lc_errf(ctx->err, "out of memory");
        ctx->names = nn;
        ctx->cap_names = cap;
    }
    if (!(ctx->names[ctx->n_names] = strdup(name))) return lc_errf(ctx->err, "out of memory");
    ctx->n_names++;
    return LC_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !memcmp(s + a - b, suffix, b);
}

/* Every tensor cfg describes is in tf with its shape, checked before
 * model_init allocates: a config.json claiming a huge model next to a small
 * file is refused by name, not allocated for (tensor_file has checked each
 * tensor's bytes lie inside its file). */
static int check_claims(const model_config *cfg, tensor_file *tf, const char *cfg_src,
                        lc_err *err) {
    if (model_config_validate(cfg, cfg_src, err)) return LC_FAIL;
    load_ctx ctx = {tf, cfg_src, err, NULL, 0, 0};
    return model_config_for_each_tensor(cfg, load_tensor_fn, &ctx) ? LC_FAIL : LC_OK;
}

/* Reads every parameter of m (already initialised from the config) from tf.
 * Tensors the model does not use are an error (they would mean the config
 * does not describe the checkpoint: an o_proj bias, MLP biases, ...), except
 * RoPE caches and a tied lm_head. */
static int load_model_tensors(model *m, tensor_file *tf, const char *cfg_src, lc_err *err) {
    load_ctx ctx = {tf, cfg_src, err, NULL, 0, 0};
    int rc = model_for_each_tensor(m, load_tensor_fn, &ctx) ? LC_FAIL : LC_OK;
    if (rc == LC_OK) {
        qsort(ctx.names, ctx.n_names, sizeof(char *), cmp_str_ptr);
        for (int i = 0; i < tensor_file_count(tf); i++) {
            const tensor_info *ti = tensor_file_at(tf, i);
            const char *key = ti->name;
            if (bsearch(&key, ctx.names, ctx.n_names, sizeof(char *), cmp_str_ptr)) continue;
            if (ends_with(key, "rotary_emb.inv_freq")) continue;
            if (m->cfg.tie_embeddings && !strcmp(key, "lm_head.weight")) continue;
            rc = lc_errf(err, "%s: tensor '%s': not used by a %s model as described by %s",
                         tensor_file_path_of(tf, ti), key, m->cfg.arch, cfg_src);
            break;
        }
    }
    for (int i = 0; i < ctx.n_names; i++) free(ctx.names[i]);
    free(ctx.names);
    return rc;
}

/* ---- Hugging Face folder ---------------------------------------------- */

int model_load_hf(model *m, const char *dir, lc_err *err) {
    memset(m, 0, sizeof *m);
    char path[4200];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return lc_errf(err, "%s: path too long", dir);
    char *text = lc_read_file(path, NULL, err);
    if (!text) return LC_FAIL;
    model_config cfg;
    int rc = hf_config_parse(text, path, &cfg, err);
    free(text);
    if (rc) return LC_FAIL;
    tensor_file *tf = NULL;
    if (tensor_file_open(&tf, dir, err) || check_claims(&cfg, tf, path, err)) {
        tensor_file_free(tf);
        return LC_FAIL;
    }
    if (model_init(m, &cfg, err)) {
        tensor_file_free(tf);
        return lc_err_prefix(err, "%s: ", path);
    }
    if (load_model_tensors(m, tf, path, err)) {
        tensor_file_free(tf);
        model_free(m);
        return LC_FAIL;
    }
    tensor_file_free(tf);
    return LC_OK;
}

typedef struct {
    tensor_writer *w;
    lc_err *err;
} save_ctx;

static int save_tensor_fn(const char *name, int ndim, const int64_t *shape, float *data,
                          float *grad, void *vctx) {
    save_ctx *ctx = vctx;
    return tensor_writer_add_f32(ctx->w, name, ndim, shape, data, DT_F32, ctx->err) ? LC_FAIL
                                                                                    : LC_OK;
}

/* Writes all parameters of m with tensor_writer, plus metadata pairs. */
static int save_model_tensors(const model *m, const char *path, tensor_writer_format fmt,
                              const char *const *meta, int n_meta, lc_err *err) {
    tensor_writer *w = NULL;
    if (tensor_writer_open(&w, path, fmt, err)) return LC_FAIL;
    for (int i = 0; i < n_meta; i++)
        if (tensor_writer_meta(w, meta[2 * i], meta[2 * i + 1], err)) {
            tensor_writer_abort(w);
            return LC_FAIL;
        }
    save_ctx ctx = {w, err};
    /* model_for_each_tensor only reads m here */
    if (model_for_each_tensor((model *)m, save_tensor_fn, &ctx)) {
        tensor_writer_abort(w);
        return LC_FAIL;
    }
    return tensor_writer_close(w, err);
}

static int save_hf_files(void *ctx, const char *dir, lc_err *err) {
    const model *m = ctx;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        return lc_errf(err, "%s: path too long", dir);
    const char *meta[] = {"format", "pt"};
    if (save_model_tensors(m, path, TW_SAFETENSORS, meta, 1, err)) return LC_FAIL;
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return lc_errf(err, "%s: path too long", dir);
    char *json = hf_config_to_json(&m->cfg);
    if (!json) return lc_errf(err, "%s: out of memory writing config.json", dir);
    int rc = lc_write_text_atomic(path, json, err);
    free(json);
    return rc;
}

/* config.json and model.safetensors written as one folder (lc_dir_write);
 * the user's other files in it (tokenizer.json, ...) stay */
int model_save_hf(const model *m, const char *dir, lc_err *err) {
    return lc_dir_write(dir, 1, save_hf_files, (void *)m, err);
}

/* ---- project HDF5 layout ---------------------------------------------- */

int model_load_h5(model *m, const char *path, lc_err *err) {
    memset(m, 0, sizeof *m);
    tensor_file *tf = NULL;
    if (tensor_file_open(&tf, path, err)) return LC_FAIL;
    int rc = LC_FAIL;
    const char *fmt = tensor_file_meta(tf, "format");
    const char *ver = tensor_file_meta(tf, "version");
    const char *json = tensor_file_meta(tf, "config");
    char src[4200];
    snprintf(src, sizeof src, "%s: attribute 'config'", path);
    model_config cfg;
    if (!fmt || strcmp(fmt, H5_MODEL_FORMAT)) {
        lc_errf(err, "%s: attribute 'format': expected '%s', found %s%s%s", path, H5_MODEL_FORMAT,
                fmt ? "'" : "", fmt ? fmt : "none", fmt ? "'" : "");
    } else if (!ver || strcmp(ver, H5_MODEL_VERSION)) {
        lc_errf(err, "%s: attribute 'version': expected '%s', found %s%s%s", path,
                H5_MODEL_VERSION, ver ? "'" : "", ver ? ver : "none", ver ? "'" : "");
    } else if (!json) {
        lc_errf(err, "%s: attribute 'config': missing", path);
    } else if (!hf_config_parse(json, src, &cfg, err)) {
        if (check_claims(&cfg, tf, src, err)) (void)0;
        else if (model_init(m, &cfg, err)) lc_err_prefix(err, "%s: ", src);
        else if (load_model_tensors(m, tf, src, err)) model_free(m);
        else rc = LC_OK;
    }
    tensor_file_free(tf);
    return rc;
}

int model_save_h5(const model *m, const char *path, lc_err *err) {
    char *json = hf_config_to_json(&m->cfg);
    if (!json) return lc_errf(err, "%s: out of memory", path);
    const char *meta[] = {"format", H5_MODEL_FORMAT, "version", H5_MODEL_VERSION, "config", json};
    int rc = save_model_tensors(m, path, TW_HDF5, meta, 3, err);
    free(json);
    return rc;
}

/* ---- dispatch --------------------------------------------------------- */

int model_load(model *m, const char *path, lc_err *err) {
    memset(m, 0, sizeof *m);
    struct stat st;
    if (stat(path, &st) != 0)
        return lc_errf(err, "%s: cannot open model: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char cfg[4200];
        if (snprintf(cfg, sizeof cfg, "%s/config.json", path) >= (int)sizeof cfg)
            return lc_errf(err, "%s: path too long", path);
        if (access(cfg, F_OK) != 0)
            return lc_errf(err, "%s: directory without config.json (expected a Hugging Face "
                           "model folder)", path);
        return model_load_hf(m, path, err);
    }
    unsigned char sig[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return lc_errf(err, "%s: cannot open model: %s", path, strerror(errno));
    size_t n = fread(sig, 1, sizeof sig, f);
    fclose(f);
    if (n == sizeof sig && !memcmp(sig, HDF5_SIGNATURE, sizeof sig))
        return model_load_h5(m, path, err);
    if ((n >= 4 && !memcmp(sig, "GGUF", 4)) || ends_with(path, ".gguf"))
        return model_load_gguf(m, path, err);
    return model_load_llama2c(m, path, err);
}
