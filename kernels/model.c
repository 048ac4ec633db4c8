/* model.c: configuration helpers, parameter blocks of the base model, LoRAs
 * and calibrations, random initialisation, sampling. The maths of the
 * forward and backward passes lives in transformer.c and ops.c. */
#include "model.h"
#include "lc_crc32.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

/* ---- configuration ---------------------------------------------------- */

static const char *const MOD_NAMES[MOD_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
static const char *const MOD_PATHS[MOD_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
static const char *const MOD_SHORT[MOD_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

const char *module_name(module_kind m) { return MOD_NAMES[m]; }
const char *module_path(module_kind m) { return MOD_PATHS[m]; }
const char *module_short(module_kind m) { return MOD_SHORT[m]; }

int module_parse(const char *s) {
    for (int m = 0; m < MOD_COUNT; m++)
        if (!strcmp(s, MOD_NAMES[m]) || !strcmp(s, MOD_PATHS[m]) || !strcmp(s, MOD_SHORT[m]))
            return m;
    return -1;
}

int module_in_dim(const model_config *c, module_kind m) {
    switch (m) {
    case MOD_O: return c->n_heads * c->head_dim;
    case MOD_DOWN: return c->hidden_dim;
    default: return c->dim;
    }
}

int module_out_dim(const model_config *c, module_kind m) {
    switch (m) {
    case MOD_Q: return c->n_heads * c->head_dim;
    case MOD_K:
    case MOD_V: return c->n_kv_heads * c->head_dim;
    case MOD_GATE:
    case MOD_UP: return c->hidden_dim;
    default: return c->dim;
    }
}

int model_config_validate(const model_config *c, const char *src, lc_err *err) {
    struct { const char *name; int v; } pos[] = {
        {"hidden_size", c->dim},          {"num_hidden_layers", c->n_layers},
        {"num_attention_heads", c->n_heads}, {"num_key_value_heads", c->n_kv_heads},
        {"head_dim", c->head_dim},        {"intermediate_size", c->hidden_dim},
        {"vocab_size", c->vocab_size},    {"max_position_embeddings", c->max_seq_len}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0)
            return lc_errf(err, "%s: '%s' must be positive, found %d", src, pos[i].name, pos[i].v);
    if (c->n_heads % c->n_kv_heads)
        return lc_errf(err, "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
                       src, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return lc_errf(err, "%s: head_dim must be even for RoPE, found %d", src, c->head_dim);
    if (!(c->norm_eps > 0) || !isfinite(c->norm_eps))
        return lc_errf(err, "%s: 'rms_norm_eps' must be positive, found %g", src, c->norm_eps);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return lc_errf(err, "%s: 'rope_theta' must be positive, found %g", src, c->rope_theta);
    if (c->rope_type == ROPE_LLAMA3) {
        if (!(c->rope_factor > 0) || !(c->rope_low_freq_factor > 0) ||
            !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_original_max_pos <= 0)
            return lc_errf(err, "%s: 'rope_scaling' (llama3) needs factor > 0, 0 < low_freq_factor "
                           "< high_freq_factor and original_max_position_embeddings > 0", src);
    } else if (c->rope_type == ROPE_LINEAR && !(c->rope_factor > 0)) {
        return lc_errf(err, "%s: 'rope_scaling' (linear) needs factor > 0", src);
    }
    /* sizes must fit the int indexing used by the kernels */
    double big = (double)c->vocab_size * c->dim;
    double f = (double)c->hidden_dim * c->dim;
    if (big > 2e9 || f > 2e9)
        return lc_errf(err, "%s: model too large for this build (vocab*hidden %.0f)", src, big);
    return LC_OK;
}

/* ---- parameter layout ------------------------------------------------- */

/* Number of floats in the parameter block of cfg. */
static size_t model_count_params(const model_config *c) {
    size_t n = (size_t)c->vocab_size * c->dim * (c->tie_embeddings ? 1 : 2) + c->dim;
    for (int m = 0; m < MOD_COUNT; m++) {
        n += (size_t)c->n_layers * module_out_dim(c, m) * module_in_dim(c, m);
        if (c->qkv_bias && m <= MOD_V) n += (size_t)c->n_layers * module_out_dim(c, m);
    }
    return n + (size_t)c->n_layers * 2 * c->dim;
}

/* Points the tensors of w into base, in the HF tensor order of
 * model_for_each_tensor (w->layers must hold n_layers entries). */
static void model_layout(const model_config *c, float *base, model_weights *w) {
    float *p = base;
    w->tok_emb = p, p += (size_t)c->vocab_size * c->dim;
    for (int l = 0; l < c->n_layers; l++) {
        layer_weights *lw = &w->layers[l];
        lw->attn_norm = p, p += c->dim;
        for (int m = 0; m < MOD_COUNT; m++) {
            lw->w[m] = p, p += (size_t)module_out_dim(c, m) * module_in_dim(c, m);
            if (c->qkv_bias && m <= MOD_V) {
                float **b = m == MOD_Q ? &lw->bq : m == MOD_K ? &lw->bk : &lw->bv;
                *b = p, p += module_out_dim(c, m);
            }
        }
        lw->ffn_norm = p, p += c->dim;
    }
    w->final_norm = p, p += c->dim;
    w->lm_head = c->tie_embeddings ? w->tok_emb : p;
}

static void rope_init(model *m) {
    const model_config *c = &m->cfg;
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double inv = 1.0 / pow((double)c->rope_theta, (2.0 * i) / c->head_dim);
        if (c->rope_type == ROPE_LINEAR) {
            inv /= c->rope_factor;
        } else if (c->rope_type == ROPE_LLAMA3) {
            /* HF _compute_llama3_parameters */
            double low_wl = c->rope_original_max_pos / c->rope_low_freq_factor;
            double high_wl = c->rope_original_max_pos / c->rope_high_freq_factor;
            double wl = 2.0 * M_PI / inv;
            if (wl > low_wl) {
                inv = inv / c->rope_factor;
            } else if (wl >= high_wl) {
                double smooth = (c->rope_original_max_pos / wl - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                inv = (1.0 - smooth) * inv / c->rope_factor + smooth * inv;
            }
        }
        m->rope_inv_freq[i] = (float)inv;
    }
}

int model_init(model *m, const model_config *cfg, lc_err *err) {
    memset(m, 0, sizeof *m);
    if (model_config_validate(cfg, "model config", err)) return LC_FAIL;
    m->cfg = *cfg;
    m->n_params = model_count_params(cfg);
    m->n_data = m->n_params;
    m->data = lc_calloc_big(m->n_params, sizeof(float), err);
    m->w.layers = lc_calloc(cfg->n_layers, sizeof(layer_weights), err);
    m->rope_inv_freq = lc_calloc(cfg->head_dim / 2, sizeof(float), err);
    if (!m->data || !m->w.layers || !m->rope_inv_freq) {
        model_free(m);
        return LC_FAIL;
    }
    model_layout(cfg, m->data, &m->w);
    rope_init(m);
    return LC_OK;
}

int model_init_view(model *m, const model_config *cfg, lc_err *err) {
    memset(m, 0, sizeof *m);
    if (model_config_validate(cfg, "model config", err)) return LC_FAIL;
    m->cfg = *cfg;
    m->n_params = model_count_params(cfg);
    m->w.layers = lc_calloc(cfg->n_layers, sizeof(layer_weights), err);
    m->rope_inv_freq = lc_calloc(cfg->head_dim / 2, sizeof(float), err);
    if (!m->w.layers || !m->rope_inv_freq) {
        model_free(m);
        return LC_FAIL;
    }
    rope_init(m);
    return LC_OK;
}

int model_enable_grad(model *m, lc_err *err) {
    if (m->grad) return LC_OK;
    if (m->base_type != QT_F32)
        return lc_errf(err, "the base model's matrices are stored as %s (frozen): they cannot be "
                       "trained; train adapters, or load the base without a base type",
                       qtype_name(m->base_type));
    m->grad = lc_calloc(m->n_params, sizeof(float), err);
    m->g.layers = lc_calloc(m->cfg.n_layers, sizeof(layer_weights), err);
    if (!m->grad || !m->g.layers) {
        free(m->grad);
        free(m->g.layers);
        m->grad = NULL;
        m->g.layers = NULL;
        return LC_FAIL;
    }
    model_layout(&m->cfg, m->grad, &m->g);
    return LC_OK;
}

static void free_stored(model *m) {
    qmat_free(&m->w.q_tok_emb);
    qmat_free(&m->w.q_lm_head); /* a view when tied: frees nothing */
    for (int l = 0; m->w.layers && l < m->cfg.n_layers; l++)
        for (int mo = 0; mo < MOD_COUNT; mo++) qmat_free(&m->w.layers[l].q[mo]);
    free(m->copies);
    m->copies = NULL, m->copies_bytes = 0;
}

void model_free(model *m) {
    if (!m) return;
    free_stored(m);
    free(m->data);
    free(m->w.layers);
    free(m->grad);
    free(m->g.layers);
    free(m->rope_inv_freq);
    memset(m, 0, sizeof *m);
}

/* The float32 values of a matrix for model_for_each_tensor: w itself, or q
 * dequantized into *scratch (grown as needed); NULL when out of memory. */
static float *tensor_f32(float *w, const qmat *q, float **scratch, size_t *cap) {
    if (w) return w;
    const size_t n = (size_t)(q->rows * q->cols);
    if (n > *cap) {
        float *p = realloc(*scratch, sizeof(float) * n);
        if (!p) return NULL;
        *scratch = p, *cap = n;
    }
    return qmat_to_f32(q, *scratch, NULL) ? NULL : *scratch;
}

/* The one list of a model's tensors (HF names, shapes, order). m == NULL:
 * shapes only, fn gets NULL data (model_config_for_each_tensor). */
/* What each_tensor passes for a matrix: float32 (dequantized when stored),
 * nothing (vectors only), or the stored form (sfn). */
enum { EACH_F32, EACH_VECTORS, EACH_STORED };

static int each_tensor(const model_config *c, model *m, int mode, model_tensor_fn fn, model_stored_fn sfn,
                       void *ctx) {
    char name[256];
    int64_t shape[2];
    int r = 0;
    float *scratch = NULL;
    size_t cap = 0;
#define VISIT_DATA(nm, nd, s0, s1, data, gfield)                                           \
    do {                                                                                   \
        float *d_ = m ? (data) : NULL;                                                     \
        if (m && !d_) {                                                                    \
            r = LC_FAIL;                                                                   \
            goto done;                                                                     \
        }                                                                                  \
        shape[0] = (s0);                                                                   \
        shape[1] = (s1);                                                                   \
        if (mode == EACH_STORED) r = sfn(nm, nd, shape, d_, NULL, ctx);                    \
        else r = fn(nm, nd, shape, d_, m && m->grad ? m->g.gfield : NULL, ctx);            \
        if (r) goto done;                                                                  \
    } while (0)
#define VISIT(nm, nd, s0, s1, field) VISIT_DATA(nm, nd, s0, s1, m->w.field, field)
#define VISIT_MAT(nm, s0, s1, field, qfield)                                               \
    do {                                                                                   \
        if (mode == EACH_VECTORS) break;                                                   \
        if (mode == EACH_STORED && m && !m->w.field) {                                     \
            shape[0] = (s0);                                                               \
            shape[1] = (s1);                                                               \
            if ((r = sfn(nm, 2, shape, NULL, &m->w.qfield, ctx))) goto done;               \
            break;                                                                         \
        }                                                                                  \
        VISIT_DATA(nm, 2, s0, s1, mode == EACH_STORED ? m->w.field                         \
                   : tensor_f32(m->w.field, &m->w.qfield, &scratch, &cap), field);         \
    } while (0)
    VISIT_MAT("model.embed_tokens.weight", c->vocab_size, c->dim, tok_emb, q_tok_emb);
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        VISIT(name, 1, c->dim, 0, layers[l].attn_norm);
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, module_path(mo));
            VISIT_MAT(name, module_out_dim(c, mo), module_in_dim(c, mo), layers[l].w[mo], layers[l].q[mo]);
            if (c->qkv_bias && mo <= MOD_V) {
                snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, module_path(mo));
                if (mo == MOD_Q) VISIT(name, 1, module_out_dim(c, mo), 0, layers[l].bq);
                else if (mo == MOD_K) VISIT(name, 1, module_out_dim(c, mo), 0, layers[l].bk);
                else VISIT(name, 1, module_out_dim(c, mo), 0, layers[l].bv);
            }
        }
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        VISIT(name, 1, c->dim, 0, layers[l].ffn_norm);
    }
    VISIT("model.norm.weight", 1, c->dim, 0, final_norm);
    if (!c->tie_embeddings) VISIT_MAT("lm_head.weight", c->vocab_size, c->dim, lm_head, q_lm_head);
#undef VISIT_MAT
#undef VISIT
#undef VISIT_DATA
done:
    free(scratch);
    return r;
}

int model_for_each_tensor(model *m, model_tensor_fn fn, void *ctx) {
    return each_tensor(&m->cfg, m, EACH_F32, fn, NULL, ctx);
}

int model_for_each_vector(model *m, model_tensor_fn fn, void *ctx) {
    return each_tensor(&m->cfg, m, EACH_VECTORS, fn, NULL, ctx);
}

int model_for_each_stored(const model *m, model_stored_fn fn, void *ctx) {
    return each_tensor(&m->cfg, (model *)m, EACH_STORED, NULL, fn, ctx);
}

int model_config_for_each_tensor(const model_config *c, model_tensor_fn fn, void *ctx) {
    return each_tensor(c, NULL, EACH_F32, fn, NULL, ctx);
}

/* ---- stored matrices ----------------------------------------------------- */

int model_base_type_parse(const char *s) {
    static const int types[] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (!strcasecmp(s, qtype_name(types[i]))) return types[i];
    return -1;
}

/* The float32 tensors that stay float32 when the matrices are stored, in
 * block order: norms and biases. Returns how many (fills p[] if non-NULL). */
static int small_tensors(model_weights *w, const model_config *c, float ***p, size_t *len) {
    int n = 0;
#define ADD(field, size) \
    do { if (p) p[n] = &(field), len[n] = (size); n++; } while (0)
    for (int l = 0; l < c->n_layers; l++) {
        layer_weights *lw = &w->layers[l];
        ADD(lw->attn_norm, c->dim);
        if (c->qkv_bias) {
            ADD(lw->bq, module_out_dim(c, MOD_Q));
            ADD(lw->bk, module_out_dim(c, MOD_K));
            ADD(lw->bv, module_out_dim(c, MOD_V));
        }
        ADD(lw->ffn_norm, c->dim);
    }
    ADD(w->final_norm, c->dim);
#undef ADD
    return n;
}

static int crc_fn(const char *name, int ndim, const int64_t *shape, float *data, float *grad,
                  void *ctx) {
    uint32_t *c = ctx;
    size_t bytes = sizeof(float) * (size_t)shape[0] * (ndim == 2 ? (size_t)shape[1] : 1);
    *c = lc_crc32(*c, data, bytes);
    return 0;
}

static int store_matrix(float **w, qmat *q, int type, int64_t rows, int64_t cols, lc_err *err) {
    const int t = qrow_check(type, cols, NULL) == LC_OK ? type : QT_F16;
    if (qmat_from_f32(q, t, *w, rows, cols, err)) return LC_FAIL;
    *w = NULL;
    return LC_OK;
}

int model_quantize(model *m, int type, lc_err *err) {
    const model_config *c = &m->cfg;
    if (type == QT_F32) return LC_OK;
    if (type != QT_F16 && type != QT_BF16 && type != QT_Q8_0 && type != QT_Q4_0 && type != QT_Q4_K &&
        type != QT_Q6_K)
        return lc_errf(err, "base type %d is not one of f16, bf16, q8_0, q4_0, q4_k, q6_k", type);
    if (m->base_type != QT_F32)
        return lc_errf(err, "the base model is already stored as %s", qtype_name(m->base_type));
    if (m->grad) return lc_errf(err, "the base model is trainable (full-parameter training): it cannot be stored as %s",
                                qtype_name(type));
    uint32_t crc = 0;
    model_for_each_tensor(m, crc_fn, &crc); /* float32 here: nothing to allocate */
    /* the small tensors move to a new block; the matrices to their types */
    const int ns = small_tensors(&m->w, c, NULL, NULL);
    float ***ptr = malloc(sizeof(float **) * ns);
    size_t *len = malloc(sizeof(size_t) * ns), total = 0;
    if (!ptr || !len) {
        free(ptr), free(len);
        return lc_errf(err, "out of memory");
    }
    small_tensors(&m->w, c, ptr, len);
    for (int i = 0; i < ns; i++) total += len[i];
    float *block = lc_calloc_big(total, sizeof(float), err);
    int rc = block ? LC_OK : LC_FAIL;
    if (!rc) rc = store_matrix(&m->w.tok_emb, &m->w.q_tok_emb, type, c->vocab_size, c->dim, err);
    for (int l = 0; !rc && l < c->n_layers; l++)
        for (int mo = 0; !rc && mo < MOD_COUNT; mo++)
            rc = store_matrix(&m->w.layers[l].w[mo], &m->w.layers[l].q[mo], type, module_out_dim(c, mo),
                              module_in_dim(c, mo), err);
    if (!rc && !c->tie_embeddings)
        rc = store_matrix(&m->w.lm_head, &m->w.q_lm_head, type, c->vocab_size, c->dim, err);
    if (rc) { /* back to float32 pointers: the block is still whole */
        free_stored(m);
        model_layout(c, m->data, &m->w);
        free(block), free(ptr), free(len);
        return lc_err_prefix(err, "storing the base as %s: ", qtype_name(type));
    }
    if (c->tie_embeddings) {
        m->w.q_lm_head = m->w.q_tok_emb;
        m->w.q_lm_head.owned = NULL;
        m->w.lm_head = NULL;
    }
    float *p = block;
    for (int i = 0; i < ns; i++) {
        memcpy(p, *ptr[i], sizeof(float) * len[i]);
        *ptr[i] = p, p += len[i];
    }
    free(m->data);
    m->data = block;
    m->n_data = total;
    m->base_type = type;
    m->f32_crc32 = (uint32_t)crc;
    m->f32_crc32_set = 1;
    free(ptr), free(len);
    return LC_OK;
}

typedef struct {
    float **dst;
    int n, i;
} copy_ctx;

static int collect_fn(const char *name, int ndim, const int64_t *shape, float *data, float *grad,
                      void *ctx) {
    copy_ctx *x = ctx;
    if (x->dst) x->dst[x->i] = data;
    x->i++;
    return 0;
}

static int copy_fn(const char *name, int ndim, const int64_t *shape, float *data, float *grad,
                   void *ctx) {
    copy_ctx *x = ctx;
    const size_t n = (size_t)shape[0] * (ndim == 2 ? (size_t)shape[1] : 1);
    memcpy(x->dst[x->i++], data, sizeof(float) * n);
    return 0;
}

int model_to_f32(model *dst, const model *src, lc_err *err) {
    if (model_init(dst, &src->cfg, err)) return LC_FAIL;
    copy_ctx x = {NULL, 0, 0};
    model_for_each_tensor(dst, collect_fn, &x);
    x.dst = malloc(sizeof(float *) * x.i);
    x.n = x.i, x.i = 0;
    int rc = x.dst ? LC_OK : LC_FAIL;
    if (!rc) model_for_each_tensor(dst, collect_fn, &x), x.i = 0;
    if (!rc) rc = model_for_each_tensor((model *)src, copy_fn, &x) ? LC_FAIL : LC_OK;
    free(x.dst);
    if (rc) {
        model_free(dst);
        return lc_errf(err, "out of memory copying the base model to float32");
    }
    return LC_OK;
}

int model_dequantize(model *m, lc_err *err) {
    if (m->base_type == QT_F32) return LC_OK;
    model f;
    if (model_to_f32(&f, m, err)) return LC_FAIL;
    model_free(m);
    *m = f;
    return LC_OK;
}

int model_init_stored(model *m, const model_config *cfg, int type, lc_err *err) {
    if (model_init_view(m, cfg, err)) return LC_FAIL;
    const int ns = small_tensors(&m->w, cfg, NULL, NULL);
    float ***ptr = malloc(sizeof(float **) * ns);
    size_t *len = malloc(sizeof(size_t) * ns), total = 0;
    if (!ptr || !len) {
        free(ptr), free(len), model_free(m);
        return lc_errf(err, "out of memory");
    }
    small_tensors(&m->w, cfg, ptr, len);
    for (int i = 0; i < ns; i++) total += len[i];
    m->data = lc_calloc_big(total, sizeof(float), err);
    if (!m->data) {
        free(ptr), free(len), model_free(m);
        return LC_FAIL;
    }
    float *p = m->data;
    for (int i = 0; i < ns; i++) *ptr[i] = p, p += len[i];
    free(ptr), free(len);
    m->n_data = total;
    m->base_type = type;
    return LC_OK;
}

size_t model_owned_bytes(const model *m) {
    size_t b = (m->data ? sizeof(float) * m->n_data : 0) + m->copies_bytes;
    if (m->w.q_tok_emb.owned) b += qmat_bytes(&m->w.q_tok_emb);
    if (m->w.q_lm_head.owned) b += qmat_bytes(&m->w.q_lm_head);
    for (int l = 0; m->w.layers && l < m->cfg.n_layers; l++)
        for (int mo = 0; mo < MOD_COUNT; mo++)
            if (m->w.layers[l].q[mo].owned) b += qmat_bytes(&m->w.layers[l].q[mo]);
    return b;
}

size_t model_weight_bytes(const model *m) {
    size_t b = sizeof(float) * m->n_data + qmat_bytes(&m->w.q_tok_emb);
    if (!m->cfg.tie_embeddings) b += qmat_bytes(&m->w.q_lm_head); /* tied: a view of q_tok_emb */
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int mo = 0; mo < MOD_COUNT; mo++) b += qmat_bytes(&m->w.layers[l].q[mo]);
    return b;
}

/* ---- random numbers --------------------------------------------------- */

static void fill_normal(float *p, size_t n, float std, lc_rng *r) {
    for (size_t i = 0; i < n; i++) p[i] = std * lc_rng_normal(r);
}

static void fill_uniform(float *p, size_t n, float bound, lc_rng *r) {
    for (size_t i = 0; i < n; i++) p[i] = bound * (2.0f * lc_rng_uniform(r) - 1.0f);
}

static int init_random_fn(const char *name, int ndim, const int64_t *shape, float *data,
                          float *grad, void *ctx) {
    void **args = ctx;
    lc_rng *r = args[0];
    float std = *(float *)args[1];
    size_t n = (size_t)shape[0] * (ndim == 2 ? (size_t)shape[1] : 1);
    if (strstr(name, "norm")) {
        for (size_t i = 0; i < n; i++) data[i] = 1.0f;
    } else if (strstr(name, ".bias")) {
        fill_normal(data, n, std, r);
    } else {
        fill_normal(data, n, std, r);
    }
    return 0;
}

void model_init_random(model *m, float std, uint64_t seed) {
    lc_rng r;
    lc_rng_seed(&r, seed);
    void *args[2] = {&r, &std};
    model_for_each_tensor(m, init_random_fn, args);
}

/* ---- LoRA ------------------------------------------------------------- */

static int lora_setup(lora *l, const model_config *c, int rank, float alpha, int rslora,
                      unsigned module_mask, const unsigned char *layer_on, int alloc, lc_err *err) {
    memset(l, 0, sizeof *l);
    if (rank <= 0) return lc_errf(err, "LoRA rank must be positive, found %d", rank);
    if (!(module_mask & MOD_MASK_ALL)) return lc_errf(err, "LoRA targets no module");
    for (int m = 0; m < MOD_COUNT; m++) {
        if (!(module_mask >> m & 1)) continue;
        int mn = module_in_dim(c, m) < module_out_dim(c, m) ? module_in_dim(c, m) : module_out_dim(c, m);
        if (rank > mn)
            return lc_errf(err, "LoRA rank %d is larger than module %s (%d x %d)", rank,
                           module_name(m), module_out_dim(c, m), module_in_dim(c, m));
    }
    l->rank = rank;
    l->alpha = alpha;
    l->rslora = rslora;
    l->scale = rslora ? alpha / sqrtf((float)rank) : alpha / (float)rank;
    l->weight = 1.0f;
    l->n_layers = c->n_layers;
    l->module_mask = module_mask & MOD_MASK_ALL;
    int L = c->n_layers;
    l->layer_on = lc_calloc(L, 1, err);
    l->A = lc_calloc((size_t)L * MOD_COUNT, sizeof(float *), err);
    l->B = lc_calloc((size_t)L * MOD_COUNT, sizeof(float *), err);
    if (!l->layer_on || !l->A || !l->B) goto fail;
    size_t n = 0;
    for (int i = 0; i < L; i++) {
        l->layer_on[i] = layer_on ? (layer_on[i] != 0) : 1;
        if (!l->layer_on[i]) continue;
        for (int m = 0; m < MOD_COUNT; m++)
            if (l->module_mask >> m & 1)
                n += (size_t)rank * (module_in_dim(c, m) + module_out_dim(c, m));
    }
    l->n_params = n;
    if (!alloc) return LC_OK;
    l->data = lc_calloc_big(n, sizeof(float), err);
    if (!l->data) goto fail;
    size_t off = 0;
    for (int i = 0; i < L; i++) {
        if (!l->layer_on[i]) continue;
        for (int m = 0; m < MOD_COUNT; m++) {
            if (!(l->module_mask >> m & 1)) continue;
            l->A[i * MOD_COUNT + m] = l->data + off;
            off += (size_t)rank * module_in_dim(c, m);
            l->B[i * MOD_COUNT + m] = l->data + off;
            off += (size_t)rank * module_out_dim(c, m);
        }
    }
    return LC_OK;
fail:
    lora_free(l);
    return LC_FAIL;
}

int lora_init(lora *l, const model_config *c, int rank, float alpha, int rslora,
              unsigned module_mask, const unsigned char *layer_on, lc_err *err) {
    return lora_setup(l, c, rank, alpha, rslora, module_mask, layer_on, 1, err);
}

int lora_init_view(lora *l, const model_config *c, int rank, float alpha, int rslora,
                   unsigned module_mask, const unsigned char *layer_on, lc_err *err) {
    return lora_setup(l, c, rank, alpha, rslora, module_mask, layer_on, 0, err);
}

int lora_enable_grad(lora *l, lc_err *err) {
    if (l->grad) return LC_OK;
    size_t slots = (size_t)l->n_layers * MOD_COUNT;
    l->grad = lc_calloc(l->n_params, sizeof(float), err);
    l->gA = lc_calloc(slots, sizeof(float *), err);
    l->gB = lc_calloc(slots, sizeof(float *), err);
    if (!l->grad || !l->gA || !l->gB) {
        free(l->grad); free(l->gA); free(l->gB);
        l->grad = NULL; l->gA = l->gB = NULL;
        return LC_FAIL;
    }
    for (size_t s = 0; s < slots; s++) {
        if (l->A[s]) l->gA[s] = l->grad + (l->A[s] - l->data);
        if (l->B[s]) l->gB[s] = l->grad + (l->B[s] - l->data);
    }
    return LC_OK;
}

int lora_enable_coef(lora *l, float value, int trainable, lc_err *err) {
    size_t slots = (size_t)l->n_layers * MOD_COUNT;
    if (!l->coef && !(l->coef = lc_calloc(slots, sizeof(float), err))) return LC_FAIL;
    for (size_t s = 0; s < slots; s++) l->coef[s] = value;
    if (trainable && !l->gcoef && !(l->gcoef = lc_calloc(slots, sizeof(float), err))) return LC_FAIL;
    return LC_OK;
}

void lora_free(lora *l) {
    if (!l) return;
    free(l->layer_on); free(l->A); free(l->B); free(l->data);
    free(l->gA); free(l->gB); free(l->grad); free(l->coef); free(l->gcoef);
    memset(l, 0, sizeof *l);
}

void lora_init_peft(lora *l, const model_config *c, uint64_t seed) {
    lc_rng r;
    lc_rng_seed(&r, seed);
    for (int i = 0; i < l->n_layers; i++)
        for (int m = 0; m < MOD_COUNT; m++) {
            int s = i * MOD_COUNT + m;
            if (!l->A[s]) continue;
            int in = module_in_dim(c, m);
            fill_uniform(l->A[s], (size_t)l->rank * in, 1.0f / sqrtf((float)in), &r);
            memset(l->B[s], 0, sizeof(float) * l->rank * module_out_dim(c, m));
        }
}

void lora_init_random(lora *l, float std, uint64_t seed) {
    lc_rng r;
    lc_rng_seed(&r, seed);
    fill_normal(l->data, l->n_params, std, &r);
}

void lora_tensor_name(char *buf, size_t n, int layer, module_kind m, int is_b) {
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.lora_%c.weight", layer,
             module_path(m), is_b ? 'B' : 'A');
}

/* ---- calibration ------------------------------------------------------ */

static int calib_setup(calib *cb, const model_config *c, calib_kind kind, int rank, int per_layer,
                       unsigned module_mask, int alloc, lc_err *err) {
    memset(cb, 0, sizeof *cb);
    if (kind != CALIB_BIAS && kind != CALIB_LOWRANK)
        return lc_errf(err, "unknown calibration kind %d", (int)kind);
    if (kind == CALIB_LOWRANK) {
        if (rank <= 0) return lc_errf(err, "LC++ rank must be positive, found %d", rank);
        for (int m = 0; m < MOD_COUNT; m++) {
            if (!(module_mask >> m & 1)) continue;
            int in = module_in_dim(c, m), out = module_out_dim(c, m);
            if (rank > (in < out ? in : out))
                return lc_errf(err, "LC++ rank %d is larger than module %s (%d x %d)", rank,
                               module_name(m), out, in);
        }
    }
    if (!(module_mask & MOD_MASK_ALL)) return lc_errf(err, "calibration targets no module");
    cb->kind = kind;
    cb->rank = kind == CALIB_LOWRANK ? rank : 0;
    cb->per_layer = per_layer ? 1 : 0;
    cb->n_slots = per_layer ? c->n_layers : 1;
    cb->module_mask = module_mask & MOD_MASK_ALL;
    size_t slots = (size_t)cb->n_slots * MOD_COUNT;
    cb->p = lc_calloc(slots, sizeof(float *), err);
    cb->P1 = lc_calloc(slots, sizeof(float *), err);
    cb->P2 = lc_calloc(slots, sizeof(float *), err);
    if (!cb->p || !cb->P1 || !cb->P2) goto fail;
    /* Block order: module-major, then slot, so that a per-layer tensor of one
     * module is contiguous as (L, ...) (the on-disk shape). */
    size_t n = 0;
    for (int m = 0; m < MOD_COUNT; m++) {
        if (!(cb->module_mask >> m & 1)) continue;
        size_t in = module_in_dim(c, m), out = module_out_dim(c, m);
        n += cb->n_slots * (kind == CALIB_BIAS ? out : (size_t)cb->rank * (in + out));
    }
    cb->n_params = n;
    if (!alloc) return LC_OK;
    cb->data = lc_calloc(n, sizeof(float), err);
    if (!cb->data) goto fail;
    size_t off = 0;
    for (int m = 0; m < MOD_COUNT; m++) {
        if (!(cb->module_mask >> m & 1)) continue;
        size_t in = module_in_dim(c, m), out = module_out_dim(c, m);
        if (kind == CALIB_BIAS) {
            for (int s = 0; s < cb->n_slots; s++, off += out) cb->p[s * MOD_COUNT + m] = cb->data + off;
        } else {
            for (int s = 0; s < cb->n_slots; s++, off += cb->rank * in)
                cb->P1[s * MOD_COUNT + m] = cb->data + off;
            for (int s = 0; s < cb->n_slots; s++, off += cb->rank * out)
                cb->P2[s * MOD_COUNT + m] = cb->data + off;
        }
    }
    return LC_OK;
fail:
    calib_free(cb);
    return LC_FAIL;
}

int calib_enable_grad(calib *cb, lc_err *err) {
    if (cb->grad) return LC_OK;
    size_t slots = (size_t)cb->n_slots * MOD_COUNT;
    cb->grad = lc_calloc(cb->n_params, sizeof(float), err);
    cb->gp = lc_calloc(slots, sizeof(float *), err);
    cb->gP1 = lc_calloc(slots, sizeof(float *), err);
    cb->gP2 = lc_calloc(slots, sizeof(float *), err);
    if (!cb->grad || !cb->gp || !cb->gP1 || !cb->gP2) {
        free(cb->grad); free(cb->gp); free(cb->gP1); free(cb->gP2);
        cb->grad = NULL; cb->gp = cb->gP1 = cb->gP2 = NULL;
        return LC_FAIL;
    }
    for (size_t s = 0; s < slots; s++) {
        if (cb->p[s]) cb->gp[s] = cb->grad + (cb->p[s] - cb->data);
        if (cb->P1[s]) cb->gP1[s] = cb->grad + (cb->P1[s] - cb->data);
        if (cb->P2[s]) cb->gP2[s] = cb->grad + (cb->P2[s] - cb->data);
    }
    return LC_OK;
}

int calib_init(calib *cb, const model_config *c, calib_kind kind, int rank, int per_layer,
               unsigned module_mask, lc_err *err) {
    return calib_setup(cb, c, kind, rank, per_layer, module_mask, 1, err);
}

int calib_init_view(calib *cb, const model_config *c, calib_kind kind, int rank, int per_layer,
                    unsigned module_mask, lc_err *err) {
    return calib_setup(cb, c, kind, rank, per_layer, module_mask, 0, err);
}

void calib_free(calib *cb) {
    if (!cb) return;
    free(cb->p); free(cb->P1); free(cb->P2); free(cb->data);
    free(cb->gp); free(cb->gP1); free(cb->gP2); free(cb->grad);
    memset(cb, 0, sizeof *cb);
}

void calib_init_default(calib *cb, const model_config *c, uint64_t seed) {
    memset(cb->data, 0, cb->n_params * sizeof(float));
    if (cb->kind != CALIB_LOWRANK) return;
    lc_rng r;
    lc_rng_seed(&r, seed);
    for (int s = 0; s < cb->n_slots; s++)
        for (int m = 0; m < MOD_COUNT; m++) {
            float *p1 = cb->P1[s * MOD_COUNT + m];
            if (!p1) continue;
            int in = module_in_dim(c, m);
            fill_uniform(p1, (size_t)cb->rank * in, 1.0f / sqrtf((float)in), &r);
        }
}

void calib_tensor_name(char *buf, size_t n, module_kind m, const char *part) {
    snprintf(buf, n, "calib.%s.%s", module_short(m), part);
}

int adapter_set_validate(const adapter_set *ad, const model *m, lc_err *err) {
    if (!ad) return LC_OK;
    if (ad->n_loras < 0 || ad->n_loras > ADAPTER_MAX || ad->n_cals < 0 || ad->n_cals > ADAPTER_MAX)
        return lc_errf(err, "too many adapters (at most %d LoRAs and %d calibrations)", ADAPTER_MAX,
                       ADAPTER_MAX);
    for (int i = 0; i < ad->n_loras; i++)
        if (ad->loras[i]->n_layers != m->cfg.n_layers)
            return lc_errf(err, "LoRA '%s' has %d layers, the model has %d", ad->loras[i]->name,
                           ad->loras[i]->n_layers, m->cfg.n_layers);
    for (int i = 0; i < ad->n_cals; i++)
        if (ad->cals[i]->per_layer && ad->cals[i]->n_slots != m->cfg.n_layers)
            return lc_errf(err, "calibration '%s' has %d layers, the model has %d",
                           ad->cals[i]->name, ad->cals[i]->n_slots, m->cfg.n_layers);
    return LC_OK;
}

/* ---- sampling --------------------------------------------------------- */

typedef struct {
    float p;
    int i;
} prob_index;

static int cmp_prob_desc(const void *a, const void *b) {
    float pa = ((const prob_index *)a)->p, pb = ((const prob_index *)b)->p;
    if (pa > pb) return -1;
    if (pa < pb) return 1;
    return ((const prob_index *)a)->i - ((const prob_index *)b)->i;
}

int sample_token(float *logits, int V, float temperature, float top_p, lc_rng *rng) {
    if (temperature <= 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    float mx = logits[0];
    for (int i = 1; i < V; i++) if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) {
        logits[i] = expf((logits[i] - mx) / temperature);
        sum += logits[i];
    }
    for (int i = 0; i < V; i++) logits[i] = (float)(logits[i] / sum);
    float u = lc_rng_uniform(rng);
    if (top_p <= 0.0f || top_p >= 1.0f) {
        float cdf = 0;
        for (int i = 0; i < V; i++) {
            cdf += logits[i];
            if (u < cdf) return i;
        }
        return V - 1;
    }
    /* nucleus: smallest set of most-likely tokens whose mass exceeds top_p.
     * Tokens below (1-top_p)/(V-1) cannot be in it and are skipped. */
    prob_index *pi = malloc(sizeof *pi * V);
    if (!pi) return -1;
    int n = 0;
    float cutoff = (1.0f - top_p) / (V > 1 ? V - 1 : 1);
    for (int i = 0; i < V; i++)
        if (logits[i] >= cutoff) pi[n++] = (prob_index){logits[i], i};
    qsort(pi, n, sizeof *pi, cmp_prob_desc);
    float cum = 0;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += pi[i].p;
        if (cum > top_p) { last = i; break; }
    }
    float r = u * cum, cdf = 0;
    int tok = pi[last].i;
    for (int i = 0; i <= last; i++) {
        cdf += pi[i].p;
        if (r < cdf) { tok = pi[i].i; break; }
    }
    free(pi);
    return tok;
}
