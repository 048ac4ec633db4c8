/* model_map.c: see model_map.h. */
#include "model_map.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "loaders.h"
#include "tensor_file.h"

struct model_map {
    tensor_file *tf; /* safetensors: the mapping the weights point into */
    gguf_file *gf;   /* GGUF: the mapping the stored matrices point into */
    float *owned;    /* converted tensors (one block), or NULL */
    size_t mapped, owned_bytes;
    int copied_model; /* 1: m came from model_load (owns its data) */
};

static int has_suffix(const char *s, const char *suf) {
    const size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* 1 if q is a view of a mapping: neither owned nor in m's copies block. */
static int is_view(const model *m, const qmat *q) {
    const uintptr_t p = (uintptr_t)q->data, c = (uintptr_t)m->copies;
    return p && !q->owned && !(c && p >= c && p < c + m->copies_bytes);
}

/* The bytes of m's stored matrices that are views: those point into a
 * mapping. */
static size_t view_bytes(const model *m) {
    size_t b = 0;
    if (is_view(m, &m->w.q_tok_emb)) b += qmat_bytes(&m->w.q_tok_emb);
    if (!m->cfg.tie_embeddings && is_view(m, &m->w.q_lm_head)) b += qmat_bytes(&m->w.q_lm_head);
    for (int l = 0; m->w.layers && l < m->cfg.n_layers; l++)
        for (int mo = 0; mo < MOD_COUNT; mo++)
            if (is_view(m, &m->w.layers[l].q[mo])) b += qmat_bytes(&m->w.layers[l].q[mo]);
    return b;
}

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[2];
    float **slot;
} wslot;

/* Every weight of m's configuration with the slot its pointer goes into,
 * in model_for_each_tensor's order. Returns the count (array malloc'd). */
static int weight_slots(model *m, wslot **out, char **names_out, lc_err *err) {
    const model_config *c = &m->cfg;
    const int per_layer = MOD_COUNT + 2 + (c->qkv_bias ? 3 : 0);
    const int n_max = 3 + c->n_layers * per_layer;
    wslot *s = calloc((size_t)n_max, sizeof *s);
    char *names = calloc((size_t)n_max, 96);
    if (!s || !names) {
        free(s), free(names);
        return lc_errf(err, "out of memory");
    }
    int n = 0;
#define ADD(nd, s0, s1, ptr, ...)                                         \
    do {                                                                  \
        snprintf(names + (size_t)n * 96, 96, __VA_ARGS__);                \
        s[n] = (wslot){names + (size_t)n * 96, nd, {s0, s1}, &(ptr)};     \
        n++;                                                              \
    } while (0)
    ADD(2, c->vocab_size, c->dim, m->w.tok_emb, "model.embed_tokens.weight");
    for (int l = 0; l < c->n_layers; l++) {
        layer_weights *lw = &m->w.layers[l];
        ADD(1, c->dim, 0, lw->attn_norm, "model.layers.%d.input_layernorm.weight", l);
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            ADD(2, module_out_dim(c, mo), module_in_dim(c, mo), lw->w[mo], "model.layers.%d.%s.weight", l,
                module_path(mo));
            if (c->qkv_bias && mo <= MOD_V)
                ADD(1, module_out_dim(c, mo), 0, *(mo == MOD_Q ? &lw->bq : mo == MOD_K ? &lw->bk : &lw->bv),
                    "model.layers.%d.%s.bias", l, module_path(mo));
        }
        ADD(1, c->dim, 0, lw->ffn_norm, "model.layers.%d.post_attention_layernorm.weight", l);
    }
    ADD(1, c->dim, 0, m->w.final_norm, "model.norm.weight");
    if (!c->tie_embeddings) ADD(2, c->vocab_size, c->dim, m->w.lm_head, "lm_head.weight");
#undef ADD
    *out = s;
    *names_out = names;
    return n;
}


static int host_is_le(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

static int open_hf(model_map *mm, model *m, const char *dir, lc_err *err) {
    char path[4200];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return lc_errf(err, "%s: path too long", dir);
    char *text = lc_read_file(path, NULL, err);
    if (!text) return LC_FAIL;
    model_config cfg;
    int rc = hf_config_parse(text, path, &cfg, err);
    free(text);
    if (rc) return LC_FAIL;
    if (model_init_view(m, &cfg, err)) return lc_err_prefix(err, "%s: ", path);
    if (tensor_file_open(&mm->tf, dir, err)) return LC_FAIL;
    wslot *s = NULL;
    char *names = NULL;
    int n = weight_slots(m, &s, &names, err);
    if (n < 0) return LC_FAIL;
    /* pass 1: shapes, and which tensors need a conversion */
    size_t conv = 0;
    rc = LC_OK;
    for (int i = 0; i < n && rc == LC_OK; i++) {
        const tensor_info *ti = tensor_file_find(mm->tf, s[i].name);
        if (!ti) { /* the messages of model_load_hf */
            if (!strcmp(s[i].name, "lm_head.weight"))
                rc = lc_errf(err, "%s: tensor '%s': missing (%s has tie_word_embeddings false)",
                             tensor_file_path(mm->tf), s[i].name, path);
            else
                rc = lc_errf(err, "%s: tensor '%s': missing", tensor_file_path(mm->tf), s[i].name);
            break;
        }
        const int64_t numel = s[i].ndim == 2 ? s[i].shape[0] * s[i].shape[1] : s[i].shape[0];
        int same = ti->ndim == s[i].ndim;
        for (int d = 0; same && d < s[i].ndim; d++) same = ti->shape[d] == s[i].shape[d];
        if (!same) {
            char want[64], have[256];
            tensor_shape_str(want, sizeof want, s[i].ndim, s[i].shape);
            tensor_shape_str(have, sizeof have, ti->ndim, ti->shape);
            rc = lc_errf(err, "%s: tensor '%s': expected shape %s, found %s", tensor_file_path_of(mm->tf, ti),
                         s[i].name, want, have);
            break;
        }
        const void *p = tensor_file_data(mm->tf, ti);
        if (ti->dtype == DT_F32 && host_is_le() && p && ((uintptr_t)p % sizeof(float)) == 0) {
            *s[i].slot = (float *)p; /* read-only: inference never writes the base */
            mm->mapped += (size_t)numel * sizeof(float);
            lc_prefault(p, (size_t)numel * sizeof(float));
        } else {
            conv += (size_t)numel;
        }
    }
    /* pass 2: convert the rest into one block */
    if (rc == LC_OK && conv) {
        mm->owned = malloc(conv * sizeof(float));
        if (!mm->owned) rc = lc_errf(err, "out of memory converting %zu weights", conv);
        float *q = mm->owned;
        for (int i = 0; i < n && rc == LC_OK; i++) {
            if (*s[i].slot) continue;
            const size_t numel = (size_t)(s[i].ndim == 2 ? s[i].shape[0] * s[i].shape[1] : s[i].shape[0]);
            rc = tensor_file_read_f32(mm->tf, s[i].name, s[i].ndim, s[i].shape, q, err);
            *s[i].slot = q;
            q += numel;
        }
        mm->owned_bytes = conv * sizeof(float);
    }
    /* as model_load_hf: a tensor the configuration does not use is an error */
    for (int i = 0; rc == LC_OK && i < tensor_file_count(mm->tf); i++) {
        const char *key = tensor_file_at(mm->tf, i)->name;
        const size_t kl = strlen(key), sl = strlen("rotary_emb.inv_freq");
        int used = (kl >= sl && !strcmp(key + kl - sl, "rotary_emb.inv_freq")) ||
                   (cfg.tie_embeddings && !strcmp(key, "lm_head.weight"));
        for (int k = 0; !used && k < n; k++) used = !strcmp(s[k].name, key);
        if (!used)
            rc = lc_errf(err, "%s: tensor '%s': not used by a %s model as described by %s",
                         tensor_file_path_of(mm->tf, tensor_file_at(mm->tf, i)), key, cfg.arch, path);
    }
    if (rc == LC_OK && cfg.tie_embeddings) m->w.lm_head = m->w.tok_emb;
    free(s), free(names);
    return rc;
}

int model_map_open(model_map **out, model *m, const char *path, int copy, lc_err *err) {
    *out = NULL;
    memset(m, 0, sizeof *m);
    model_map *mm = calloc(1, sizeof *mm);
    if (!mm) return lc_errf(err, "out of memory");
    struct stat st;
    char cfg[4200];
    int rc;
    if (!copy && stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
        snprintf(cfg, sizeof cfg, "%s/config.json", path) < (int)sizeof cfg && stat(cfg, &st) == 0) {
        rc = open_hf(mm, m, path, err);
    } else if (!copy && has_suffix(path, ".gguf")) {
        /* stored matrices used in place; a float32 or mixed-type file is read */
        rc = model_map_gguf(m, path, &mm->gf, err);
        mm->copied_model = rc == LC_OK && !mm->gf;
        if (rc == LC_OK) {
            mm->mapped = mm->gf ? view_bytes(m) : 0;
            mm->owned_bytes = model_owned_bytes(m); /* (open_gguf prefaulted the mapping) */
        }
    } else {
        rc = model_load(m, path, err);
        mm->copied_model = rc == LC_OK;
        if (rc == LC_OK) mm->owned_bytes = model_owned_bytes(m);
    }
    if (rc) {
        model_map_close(mm, m);
        return LC_FAIL;
    }
    *out = mm;
    return LC_OK;
}

void model_map_close(model_map *mm, model *m) {
    if (m) model_free(m); /* a view's data is NULL: only the tables go */
    if (!mm) return;
    tensor_file_free(mm->tf);
    gguf_close(mm->gf);
    free(mm->owned);
    free(mm);
}

void model_map_detach(model_map *mm, const model *m) {
    if (!mm) return;
    tensor_file_free(mm->tf);
    gguf_close(mm->gf);
    free(mm->owned);
    mm->tf = NULL, mm->gf = NULL, mm->owned = NULL;
    mm->mapped = 0;
    mm->owned_bytes = model_owned_bytes(m);
}

void model_map_stats(const model_map *mm, size_t *mapped_bytes, size_t *owned_bytes) {
    if (mapped_bytes) *mapped_bytes = mm ? mm->mapped : 0;
    if (owned_bytes) *owned_bytes = mm ? mm->owned_bytes : 0;
}
