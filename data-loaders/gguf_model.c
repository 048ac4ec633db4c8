/* gguf_model.c: base models and their tokenizers in GGUF files, laid out as
 * llama.cpp's convert_hf_to_gguf.py writes them for the architectures
 * `llama` (also Mistral), `qwen2` and `mistral` (read as llama).
 *
 *   hparams   <arch>.context_length, embedding_length, block_count,
 *             feed_forward_length, attention.head_count(_kv),
 *             attention.key_length, rope.dimension_count, rope.freq_base,
 *             rope.scaling.type/factor (linear), attention.layer_norm_rms_epsilon,
 *             vocab_size
 *   tensors   token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v,
 *             attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm,
 *             output (absent = tied to token_embd); qwen2: attn_{q,k,v}.bias.
 *             dims in ggml order (ne[0] = the input dim of a matrix).
 *   llama     q and k rows (and biases) are permuted by LlamaModel.permute:
 *             gguf row h*hd + 2j + t = HF row h*hd + t*hd/2 + j; undone on
 *             read, applied on write. qwen2 keeps HF's order (NEOX RoPE).
 *
 * Tokenizer: tokenizer.ggml.model "llama" (SentencePiece: tokens, scores,
 * token_type) or "gpt2" (byte-level BPE: tokens, token_type, merges, pre),
 * with bos/eos/unknown ids and add_bos/add_eos. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "loaders.h"
#include "qtype.h"
#include "quant.h"
#include "tokenizer.h"

/* ---- names ------------------------------------------------------------- */

static const char *const GGUF_MODULE[MOD_COUNT] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

/* The GGUF tensor name of an HF parameter name (model_for_each_tensor's). */
static int gguf_name_of(const char *hf, char *out, size_t n) {
    int l;
    char rest[128];
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, n, "token_embd.weight"), 0;
    if (!strcmp(hf, "model.norm.weight")) return snprintf(out, n, "output_norm.weight"), 0;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, n, "output.weight"), 0;
    if (sscanf(hf, "model.layers.%d.%127s", &l, rest) != 2) return -1;
    if (!strcmp(rest, "input_layernorm.weight")) return snprintf(out, n, "blk.%d.attn_norm.weight", l), 0;
    if (!strcmp(rest, "post_attention_layernorm.weight"))
        return snprintf(out, n, "blk.%d.ffn_norm.weight", l), 0;
    for (int m = 0; m < MOD_COUNT; m++) {
        size_t pl = strlen(module_path(m));
        if (!strncmp(rest, module_path(m), pl) && rest[pl] == '.')
            return snprintf(out, n, "blk.%d.%s.%s", l, GGUF_MODULE[m], rest + pl + 1), 0;
    }
    return -1;
}

/* Which rows to permute: the head count for q / k weights and biases of a
 * llama-layout model, else 0. */
static int permute_heads(const model_config *c, int llama_layout, const char *hf) {
    if (!llama_layout) return 0;
    if (strstr(hf, ".self_attn.q_proj.")) return c->n_heads;
    if (strstr(hf, ".self_attn.k_proj.")) return c->n_kv_heads;
    return 0;
}

/* rows = n_head * hd; to_gguf = 1: HF -> llama.cpp order, 0: the inverse. */
static void permute_rows(const float *in, float *out, int rows, int cols, int n_head, int to_gguf) {
    int hd = rows / n_head, half = hd / 2;
    for (int h = 0; h < n_head; h++)
        for (int j = 0; j < half; j++)
            for (int t = 0; t < 2; t++) {
                size_t g = (size_t)h * hd + 2 * (size_t)j + t, f = (size_t)h * hd + (size_t)t * half + j;
                size_t dst = to_gguf ? g : f, src = to_gguf ? f : g;
                memcpy(out + dst * cols, in + src * cols, sizeof(float) * (size_t)cols);
            }
}

/* The GGUF architecture for a model config and whether q/k are permuted. */
static int arch_of(const model_config *c, const char **arch, int *llama_layout, lc_err *err) {
    if (!strcmp(c->arch, "llama") || !strcmp(c->arch, "mistral")) {
        *arch = "llama"; /* convert_hf_to_gguf.py writes Mistral as llama */
        *llama_layout = 1;
        return LC_OK;
    }
    if (!strcmp(c->arch, "qwen2")) {
        *arch = "qwen2";
        *llama_layout = 0;
        return LC_OK;
    }
    return lc_errf(err, "architecture '%s' has no GGUF layout here (llama, mistral, qwen2)", c->arch);
}

/* ---- reading ----------------------------------------------------------- */

static int get_i(const gguf_file *f, const char *arch, const char *suffix, int required,
                 int64_t lo, int64_t hi, int *out, lc_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v = *out;
    if (gguf_get_int(f, key, required, lo, hi, &v, err)) return LC_FAIL;
    *out = (int)v;
    return LC_OK;
}

static int get_f(const gguf_file *f, const char *arch, const char *suffix, int required,
                 float *out, lc_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    double v = *out;
    if (gguf_get_float(f, key, required, &v, err)) return LC_FAIL;
    *out = (float)v;
    return LC_OK;
}

static int config_from_gguf(const gguf_file *f, model_config *c, lc_err *err) {
    const char *path = gguf_path(f);
    memset(c, 0, sizeof *c);
    char *arch = NULL;
    if (gguf_get_str(f, "general.architecture", 1, &arch, err)) return LC_FAIL;
    int rc = LC_FAIL;
    if (strcmp(arch, "llama") && strcmp(arch, "qwen2") && strcmp(arch, "mistral")) {
        lc_errf(err, "%s: key 'general.architecture': unknown architecture '%.64s' (supported: "
                "llama, qwen2, mistral)", path, arch);
        goto done;
    }
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    const int64_t BIG = 1 << 30;
    c->n_kv_heads = -1;
    c->head_dim = -1;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->rope_type = ROPE_DEFAULT;
    c->bos_id = c->eos_id = -1;
    int n_rot = -1;
    if (get_i(f, arch, "context_length", 1, 1, BIG, &c->max_seq_len, err) ||
        get_i(f, arch, "embedding_length", 1, 1, BIG, &c->dim, err) ||
        get_i(f, arch, "block_count", 1, 1, 1 << 16, &c->n_layers, err) ||
        get_i(f, arch, "feed_forward_length", 1, 1, BIG, &c->hidden_dim, err) ||
        get_i(f, arch, "attention.head_count", 1, 1, 1 << 16, &c->n_heads, err) ||
        get_i(f, arch, "attention.head_count_kv", 0, 1, 1 << 16, &c->n_kv_heads, err) ||
        get_i(f, arch, "attention.key_length", 0, 1, 1 << 16, &c->head_dim, err) ||
        get_i(f, arch, "rope.dimension_count", 0, 1, 1 << 16, &n_rot, err) ||
        get_f(f, arch, "rope.freq_base", 0, &c->rope_theta, err) ||
        get_f(f, arch, "attention.layer_norm_rms_epsilon", 1, &c->norm_eps, err))
        goto done;
    if (c->n_kv_heads < 0) c->n_kv_heads = c->n_heads;
    if (c->head_dim < 0) c->head_dim = c->dim / c->n_heads;
    int vlen = c->head_dim;
    char key[160];
    if (get_i(f, arch, "attention.value_length", 0, 1, 1 << 16, &vlen, err)) goto done;
    if (vlen != c->head_dim) {
        lc_errf(err, "%s: key '%s.attention.value_length': %d differs from the key length %d "
                "(not supported)", path, arch, vlen, c->head_dim);
        goto done;
    }
    if (n_rot >= 0 && n_rot != c->head_dim) {
        lc_errf(err, "%s: key '%s.rope.dimension_count': %d, but the head dim is %d (partial "
                "rotary embeddings are not supported)", path, arch, n_rot, c->head_dim);
        goto done;
    }
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    char *st = NULL;
    if (gguf_get_str(f, key, 0, &st, err)) goto done;
    if (st && !strcmp(st, "linear")) {
        c->rope_type = ROPE_LINEAR;
        c->rope_factor = 1.0f;
        if (get_f(f, arch, "rope.scaling.factor", 1, &c->rope_factor, err)) {
            free(st);
            goto done;
        }
    } else if (st && strcmp(st, "none")) {
        lc_errf(err, "%s: key '%s': RoPE scaling '%.40s' is not supported (none, linear)", path,
                key, st);
        free(st);
        goto done;
    }
    free(st);
    if (gguf_find_tensor(f, "rope_freqs.weight")) {
        lc_errf(err, "%s: tensor 'rope_freqs.weight': per-frequency RoPE factors (Llama 3 "
                "scaling) are not supported when reading", path);
        goto done;
    }
    /* vocabulary: <arch>.vocab_size, else the rows of token_embd */
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb) {
        lc_errf(err, "%s: tensor 'token_embd.weight': missing", path);
        goto done;
    }
    c->vocab_size = emb->n_dims == 2 && emb->ne[1] <= BIG ? (int)emb->ne[1] : -1;
    if (get_i(f, arch, "vocab_size", 0, 1, BIG, &c->vocab_size, err)) goto done;
    const gguf_value *toks = gguf_find(f, "tokenizer.ggml.tokens");
    if (toks && toks->type == GGUF_T_ARRAY && toks->n != (uint64_t)c->vocab_size) {
        lc_errf(err, "%s: key 'tokenizer.ggml.tokens': %llu tokens, but the model's vocabulary "
                "has %d (tensor 'token_embd.weight' / key '%s.vocab_size')", path,
                (unsigned long long)toks->n, c->vocab_size, arch);
        goto done;
    }
    int64_t id = -1;
    if (gguf_get_int(f, "tokenizer.ggml.bos_token_id", 0, 0, c->vocab_size - 1, &id, err)) goto done;
    c->bos_id = (int)id;
    id = -1;
    if (gguf_get_int(f, "tokenizer.ggml.eos_token_id", 0, 0, c->vocab_size - 1, &id, err)) goto done;
    c->eos_id = (int)id;
    c->qkv_bias = !strcmp(arch, "qwen2") || gguf_find_tensor(f, "blk.0.attn_q.bias") != NULL;
    c->tie_embeddings = gguf_find_tensor(f, "output.weight") == NULL;
    if (!strcmp(arch, "mistral")) snprintf(c->arch, sizeof c->arch, "mistral");
    if (model_config_validate(c, path, err)) goto done;
    /* The sizes that decide the allocation must agree with tensors that are
     * in the file before the model is allocated (a corrupt hparam must not
     * ask for gigabytes): the rest is checked tensor by tensor on load. */
    struct { const char *name; int64_t ne0, ne1; } probe[] = {
        {"token_embd.weight", c->dim, c->vocab_size},
        {"blk.0.attn_q.weight", c->dim, (int64_t)c->n_heads * c->head_dim},
        {"blk.0.attn_k.weight", c->dim, (int64_t)c->n_kv_heads * c->head_dim},
        {"blk.0.ffn_up.weight", c->dim, c->hidden_dim}};
    for (size_t k = 0; k < sizeof probe / sizeof *probe; k++) {
        const gguf_tensor *t = gguf_find_tensor(f, probe[k].name);
        if (!t) {
            lc_errf(err, "%s: tensor '%s': missing", path, probe[k].name);
            goto done;
        }
        if (t->n_dims != 2 || t->ne[0] != probe[k].ne0 || t->ne[1] != probe[k].ne1) {
            lc_errf(err, "%s: tensor '%s': expected dims [%lld, %lld] from the hparams, found "
                    "[%lld, %lld%s]", path, probe[k].name, (long long)probe[k].ne0,
                    (long long)probe[k].ne1, (long long)t->ne[0],
                    (long long)(t->n_dims > 1 ? t->ne[1] : 1), t->n_dims > 2 ? ", ..." : "");
            goto done;
        }
    }
    char nm[64];
    snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", c->n_layers - 1);
    if (!gguf_find_tensor(f, nm)) {
        lc_errf(err, "%s: tensor '%s': missing (key '%s.block_count' is %d)", path, nm, arch,
                c->n_layers);
        goto done;
    }
    rc = LC_OK;
done:
    free(arch);
    return rc;
}

typedef struct {
    const gguf_file *f;
    int llama_layout;
    const model_config *c;
    unsigned char *used; /* per GGUF tensor */
    lc_err *err;
} rd_ctx;

static int read_tensor_fn(const char *hf, int ndim, const int64_t *shape, float *data, float *grad,
                          void *vctx) {
    rd_ctx *x = vctx;
    const char *path = gguf_path(x->f);
    char name[160];
    if (gguf_name_of(hf, name, sizeof name))
        return lc_errf(x->err, "%s: no GGUF name for parameter '%s'", path, hf);
    const gguf_tensor *t = gguf_find_tensor(x->f, name);
    if (!t) return lc_errf(x->err, "%s: tensor '%s': missing", path, name);
    /* ggml dims are the PyTorch shape reversed */
    int same = t->n_dims == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->ne[d] == shape[ndim - 1 - d];
    if (!same) {
        char want[96] = "", got[96] = "";
        for (int d = 0; d < ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "",
                     (long long)shape[ndim - 1 - d]);
        for (int d = 0; d < t->n_dims; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)t->ne[d]);
        return lc_errf(x->err, "%s: tensor '%s': expected dims [%s] from the hparams, found [%s]",
                       path, name, want, got);
    }
    if (!data) return LC_OK; /* the check before allocating */
    x->used[t - gguf_tensor_at(x->f, 0)] = 1;
    int heads = permute_heads(x->c, x->llama_layout, hf);
    if (!heads) return gguf_tensor_read_f32(x->f, t, data, x->err);
    size_t n = (size_t)shape[0] * (ndim == 2 ? (size_t)shape[1] : 1);
    float *tmp = malloc(sizeof(float) * n);
    if (!tmp) return lc_errf(x->err, "%s: out of memory", path);
    int rc = gguf_tensor_read_f32(x->f, t, tmp, x->err);
    if (!rc) permute_rows(tmp, data, (int)shape[0], ndim == 2 ? (int)shape[1] : 1, heads, 0);
    free(tmp);
    return rc;
}

/* ---- keeping the file's storage type ----------------------------------- */

/* The one type the file's matrices (2-D tensors) are stored in, when it is
 * a type the engine holds matrices in (F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K);
 * else QT_F32 (float32 matrices, or several types as llama.cpp's mixed
 * presets such as Q4_K_M write). */
static int file_matrix_type(const gguf_file *f) {
    /* the main type: that of the first matrix whose rows are whole blocks
     * of it; matrices whose rows are not may be F16 (as llama.cpp and
     * model_quantize both fall back) */
    int t = -1;
    for (int i = 0; i < gguf_n_tensors(f) && t < 0; i++) {
        const gguf_tensor *g = gguf_tensor_at(f, i);
        if (g->n_dims == 2 && g->type != QT_F16) t = g->type;
    }
    if (t < 0) t = QT_F16;
    if (t != QT_F16 && t != QT_BF16 && t != QT_Q8_0 && t != QT_Q4_0 && t != QT_Q4_K && t != QT_Q6_K)
        return QT_F32;
    for (int i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *g = gguf_tensor_at(f, i);
        if (g->n_dims != 2 || g->type == t) continue;
        if (g->type == QT_F16 && g->ne[0] % qtype_block(t)) continue;
        return QT_F32;
    }
    return t;
}

/* Where a model's copied matrices go: one block for all of them (a copy
 * per matrix in its own pages took a page fault, and in a nested VM a
 * shadow-page fill, for every 4 KB written; one 2 MB-aligned block is a
 * handful of huge pages). base NULL: sizing pass, only off grows. */
typedef struct {
    unsigned char *base;
    size_t off;   /* next free byte (each copy starts COPY_ALIGN aligned) */
    size_t bytes; /* of the matrices copied so far */
} copy_arena;

#define COPY_ALIGN 64

/* One matrix from the file's bytes: a view of the mapping (view = 1, when
 * no rows move) or a copy in the arena; with heads > 0 (llama's q/k) the
 * rows are put back in HF order: our row r is file row h*hd + 2j + t for
 * r = h*hd + t*hd/2 + j. In the sizing pass (a->base NULL) q is checked
 * and left empty. */
static int stored_matrix(const gguf_file *f, const char *name, int64_t rows, int64_t cols, int heads, int view,
                         unsigned char *used, qmat *q, copy_arena *a, lc_err *err) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) return lc_errf(err, "%s: tensor '%s': missing", gguf_path(f), name);
    used[t - gguf_tensor_at(f, 0)] = 1;
    if (qmat_view(q, t->type, rows, cols, t->data, err) || (size_t)rows * q->row_bytes != t->nbytes) {
        memset(q, 0, sizeof *q);
        return lc_errf(err, "%s: tensor '%s': %lld x %lld %s takes %zu bytes, not %zu", gguf_path(f), name,
                       (long long)rows, (long long)cols, gguf_type_name(t->type) ? gguf_type_name(t->type) : "?",
                       (size_t)rows * qtype_row_bytes(t->type, cols), t->nbytes);
    }
    if (view && !heads) return LC_OK;
    unsigned char *own = a->base ? a->base + a->off : NULL;
    a->off += (t->nbytes + COPY_ALIGN - 1) / COPY_ALIGN * COPY_ALIGN;
    a->bytes += t->nbytes;
    if (!own) {
        memset(q, 0, sizeof *q);
        return LC_OK;
    }
    const unsigned char *file = t->data;
    const size_t rb = q->row_bytes;
    const int64_t hd = heads ? rows / heads : 0, half = hd / 2;
    for (int64_t r = 0; r < rows; r++) {
        int64_t g = r;
        if (heads) {
            const int64_t h = r / hd, i = r % hd, tt = i / half, j = i % half;
            g = h * hd + 2 * j + tt;
        }
        memcpy(own + (size_t)r * rb, file + (size_t)g * rb, rb);
    }
    q->data = own; /* owned stays NULL: the block is m->copies */
    return LC_OK;
}

/* Every matrix of m through stored_matrix, in file order. */
static int stored_matrices(model *m, const gguf_file *f, const model_config *c, int llama_layout, int view,
                           unsigned char *used, copy_arena *a, lc_err *err) {
    char name[96];
    int rc = stored_matrix(f, "token_embd.weight", c->vocab_size, c->dim, 0, view, used, &m->w.q_tok_emb, a, err);
    for (int l = 0; !rc && l < c->n_layers; l++)
        for (int mo = 0; !rc && mo < MOD_COUNT; mo++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, GGUF_MODULE[mo]);
            const int heads = !llama_layout ? 0 : mo == MOD_Q ? c->n_heads : mo == MOD_K ? c->n_kv_heads : 0;
            rc = stored_matrix(f, name, module_out_dim(c, mo), module_in_dim(c, mo), heads, view, used,
                               &m->w.layers[l].q[mo], a, err);
        }
    if (!rc && !c->tie_embeddings)
        rc = stored_matrix(f, "output.weight", c->vocab_size, c->dim, 0, view, used, &m->w.q_lm_head, a, err);
    return rc;
}

typedef struct {
    const gguf_file *f;
    int llama_layout;
    const model_config *c;
    unsigned char *used;
    lc_err *err;
} vec_ctx;

/* the norms and biases, read (converted) into the model's float32 block */
static int read_vector_fn(const char *hf, int ndim, const int64_t *shape, float *data, float *grad, void *vctx) {
    (void)ndim, (void)shape, (void)grad;
    vec_ctx *x = vctx;
    char name[160];
    if (gguf_name_of(hf, name, sizeof name))
        return lc_errf(x->err, "%s: no GGUF name for parameter '%s'", gguf_path(x->f), hf);
    const gguf_tensor *t = gguf_find_tensor(x->f, name);
    if (!t) return lc_errf(x->err, "%s: tensor '%s': missing", gguf_path(x->f), name);
    x->used[t - gguf_tensor_at(x->f, 0)] = 1;
    const int heads = permute_heads(x->c, x->llama_layout, hf);
    if (!heads) return gguf_tensor_read_f32(x->f, t, data, x->err);
    float *tmp = malloc(sizeof(float) * (size_t)shape[0]);
    if (!tmp) return lc_errf(x->err, "%s: out of memory", gguf_path(x->f));
    int rc = gguf_tensor_read_f32(x->f, t, tmp, x->err);
    if (!rc) permute_rows(tmp, data, (int)shape[0], 1, heads, 0);
    free(tmp);
    return rc;
}

/* m with every matrix in the file's storage type t, straight from the
 * file's bytes (no float32 copy, nothing re-quantized: the engine runs on
 * the very weights llama.cpp runs on): views of the mapping when view = 1
 * (the file must then stay open as long as m), else owned copies; the
 * norms and biases in m's float32 block. */
static int load_stored(model *m, const gguf_file *f, const model_config *c, int t, int llama_layout, int view,
                       unsigned char *used, lc_err *err) {
    if (model_init_stored(m, c, t, err)) return lc_err_prefix(err, "%s: ", gguf_path(f));
    copy_arena a = {NULL, 0, 0};
    int rc = stored_matrices(m, f, c, llama_layout, view, used, &a, err); /* sizes the copies */
    if (!rc && a.off) {
        if (!(m->copies = lc_calloc_big(a.off, 1, err)))
            rc = lc_err_prefix(err, "%s: the copied matrices: ", gguf_path(f));
        else
            m->copies_bytes = a.bytes;
        a = (copy_arena){m->copies, 0, 0};
    }
    if (!rc) rc = stored_matrices(m, f, c, llama_layout, view, used, &a, err);
    if (!rc && c->tie_embeddings) {
        m->w.q_lm_head = m->w.q_tok_emb;
        m->w.q_lm_head.owned = NULL;
    }
    vec_ctx x = {f, llama_layout, c, used, err};
    if (!rc) rc = model_for_each_vector(m, read_vector_fn, &x);
    if (rc) {
        model_free(m);
        return LC_FAIL;
    }
    return LC_OK;
}

/* Opens path into m: the matrices in the file's own storage type when all
 * share one the engine holds (load_stored; views of the mapping when keep
 * is non-NULL, and *keep then owns the file), else float32 (dequantized). */
static int open_gguf(model *m, const char *path, gguf_file **keep, lc_err *err) {
    memset(m, 0, sizeof *m);
    if (keep) *keep = NULL;
    gguf_file *f = NULL;
    if (gguf_open(&f, path, err)) return LC_FAIL;
    model_config c;
    int rc = LC_FAIL, kept = 0;
    unsigned char *used = NULL;
    if (config_from_gguf(f, &c, err)) goto done;
    /* every tensor the hparams imply is in the file with its dims before
     * anything is allocated for them (gguf_open has checked the data of
     * each lies inside the file) */
    rd_ctx pre = {f, 0, &c, NULL, err};
    if (model_config_validate(&c, path, err) || model_config_for_each_tensor(&c, read_tensor_fn, &pre))
        goto done;
    used = calloc((size_t)gguf_n_tensors(f) + 1, 1);
    if (!used) {
        lc_errf(err, "%s: out of memory", path);
        goto done;
    }
    const int llama_layout = !strcmp(c.arch, "llama") || !strcmp(c.arch, "mistral");
    const int t = getenv("LC_GGUF_F32") ? QT_F32 : file_matrix_type(f);
    if (t != QT_F32) {
        if (keep) { /* used in place: every page is read by the first token, and the copies below read some now */
            size_t n;
            const void *p = gguf_mapping(f, &n);
            lc_prefault(p, n);
        }
        if (load_stored(m, f, &c, t, llama_layout, keep != NULL, used, err)) goto done;
        kept = keep != NULL;
    } else {
        if (model_init(m, &c, err)) {
            lc_err_prefix(err, "%s: ", path);
            goto done;
        }
        rd_ctx x = {f, llama_layout, &m->cfg, used, err};
        if (model_for_each_tensor(m, read_tensor_fn, &x)) goto fail;
    }
    for (int i = 0; i < gguf_n_tensors(f); i++)
        if (!used[i]) {
            lc_errf(err, "%s: tensor '%s': not used by a %s model", path, gguf_tensor_at(f, i)->name, c.arch);
            goto fail;
        }
    rc = LC_OK;
    goto done;
fail:
    model_free(m);
done:
    free(used);
    if (rc == LC_OK && kept) *keep = f;
    else gguf_close(f);
    return rc;
}

int model_load_gguf(model *m, const char *path, lc_err *err) { return open_gguf(m, path, NULL, err); }

int model_map_gguf(model *m, const char *path, gguf_file **keep, lc_err *err) {
    return open_gguf(m, path, keep, err);
}

/* ---- tokenizer --------------------------------------------------------- */

int tokenizer_load_gguf(tokenizer **out, const char *path, int vocab_size, lc_err *err) {
    *out = NULL;
    gguf_file *f = NULL;
    if (gguf_open(&f, path, err)) return LC_FAIL;
    tokenizer_parts p;
    memset(&p, 0, sizeof p);
    char *model = NULL;
    int rc = LC_FAIL;
    const gguf_value *toks, *scores, *types, *merges;
    if (gguf_get_str(f, "tokenizer.ggml.model", 1, &model, err) ||
        gguf_get_arr(f, "tokenizer.ggml.tokens", 1, GGUF_T_STRING, &toks, err) ||
        gguf_get_arr(f, "tokenizer.ggml.scores", 0, GGUF_T_FLOAT32, &scores, err) ||
        gguf_get_arr(f, "tokenizer.ggml.token_type", 0, GGUF_T_INT32, &types, err) ||
        gguf_get_arr(f, "tokenizer.ggml.merges", 0, GGUF_T_STRING, &merges, err) ||
        gguf_get_str(f, "tokenizer.ggml.pre", 0, &p.pre, err) ||
        gguf_get_str(f, "tokenizer.chat_template", 0, &p.chat_template, err))
        goto done;
    if (!strcmp(model, "llama")) p.model = TOKENIZER_SPM;
    else if (!strcmp(model, "gpt2")) p.model = TOKENIZER_BPE;
    else {
        lc_errf(err, "%s: key 'tokenizer.ggml.model': '%.40s' is not supported (llama, gpt2)",
                path, model);
        goto done;
    }
    if (toks->n == 0 || toks->n > (1 << 26)) {
        lc_errf(err, "%s: key 'tokenizer.ggml.tokens': %llu tokens", path,
                (unsigned long long)toks->n);
        goto done;
    }
    int V = (int)toks->n;
    if (vocab_size > 0 && V != vocab_size) {
        lc_errf(err, "%s: key 'tokenizer.ggml.tokens': %d tokens, but the model's vocabulary has "
                "%d", path, V, vocab_size);
        goto done;
    }
    const char *arr_keys[2] = {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"};
    const gguf_value *arrs[2] = {scores, types};
    for (int k = 0; k < 2; k++)
        if (arrs[k] && arrs[k]->n != toks->n) {
            lc_errf(err, "%s: key '%s': %llu entries for %d tokens", path, arr_keys[k],
                    (unsigned long long)arrs[k]->n, V);
            goto done;
        }
    if (p.model == TOKENIZER_BPE && !merges) {
        lc_errf(err, "%s: key 'tokenizer.ggml.merges': missing (a gpt2 tokenizer needs merges)",
                path);
        goto done;
    }
    p.n_tokens = V;
    p.tokens = calloc((size_t)V, sizeof *p.tokens);
    p.token_lens = calloc((size_t)V, sizeof *p.token_lens);
    p.types = malloc(sizeof(int) * (size_t)V);
    if (scores) p.scores = malloc(sizeof(float) * (size_t)V);
    if (!p.tokens || !p.token_lens || !p.types || (scores && !p.scores)) goto oom;
    for (int i = 0; i < V; i++) {
        if (toks->strs[i].len > (1 << 20)) {
            lc_errf(err, "%s: key 'tokenizer.ggml.tokens': token %d is %llu bytes long", path, i,
                    (unsigned long long)toks->strs[i].len);
            goto done;
        }
        p.token_lens[i] = (int)toks->strs[i].len;
        if (!(p.tokens[i] = malloc((size_t)p.token_lens[i] + 1))) goto oom;
        memcpy(p.tokens[i], toks->strs[i].p, (size_t)p.token_lens[i]);
        p.tokens[i][p.token_lens[i]] = 0;
        p.types[i] = types ? (int)gguf_arr_i64(types, (uint64_t)i) : TOKTYPE_NORMAL;
        if (scores) p.scores[i] = (float)gguf_arr_f64(scores, (uint64_t)i);
    }
    if (merges) {
        if (merges->n > (1 << 24)) {
            lc_errf(err, "%s: key 'tokenizer.ggml.merges': %llu merges", path,
                    (unsigned long long)merges->n);
            goto done;
        }
        p.merges = calloc((size_t)merges->n + 1, sizeof *p.merges);
        if (!p.merges) goto oom;
        for (uint64_t i = 0; i < merges->n; i++) {
            const gguf_str *s = &merges->strs[i];
            if (!(p.merges[i] = malloc((size_t)s->len + 1))) goto oom;
            p.n_merges = (int)i + 1;
            memcpy(p.merges[i], s->p, (size_t)s->len);
            p.merges[i][s->len] = 0;
            const char *sp = memchr(s->p, ' ', (size_t)s->len);
            if (!sp || memchr(sp + 1, ' ', (size_t)(s->p + s->len - sp - 1)) ||
                strlen(p.merges[i]) != s->len) {
                lc_errf(err, "%s: key 'tokenizer.ggml.merges': entry %llu '%.60s' is not \"a b\"",
                        path, (unsigned long long)i, p.merges[i]);
                goto done;
            }
        }
    }
    /* special ids: defaults as llama.cpp's for SentencePiece (unk 0, bos 1, eos 2) */
    int64_t ids[3] = {p.model == TOKENIZER_SPM ? 1 : -1, p.model == TOKENIZER_SPM ? 2 : -1,
                      p.model == TOKENIZER_SPM ? 0 : -1};
    const char *id_keys[3] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                              "tokenizer.ggml.unknown_token_id"};
    for (int k = 0; k < 3; k++) {
        if (gguf_get_int(f, id_keys[k], 0, 0, V - 1, &ids[k], err)) goto done;
    }
    p.bos = (int)ids[0];
    p.eos = (int)ids[1];
    p.unk = (int)ids[2];
    p.add_bos = p.model == TOKENIZER_SPM;
    if (gguf_get_bool(f, "tokenizer.ggml.add_bos_token", 0, &p.add_bos, err) ||
        gguf_get_bool(f, "tokenizer.ggml.add_eos_token", 0, &p.add_eos, err))
        goto done;
    int asp = 1;
    if (gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", 0, &asp, err)) goto done;
    if (p.model == TOKENIZER_SPM && !asp) {
        lc_errf(err, "%s: key 'tokenizer.ggml.add_space_prefix': false is not supported", path);
        goto done;
    }
    rc = tokenizer_from_parts(out, &p, path, err);
    goto done;
oom:
    lc_errf(err, "%s: out of memory", path);
done:
    tokenizer_parts_free(&p);
    free(model);
    gguf_close(f);
    return rc;
}

/* ---- writing ----------------------------------------------------------- */

int gguf_write_type_parse(const char *s, int *type) {
    static const struct { const char *name; int type; } T[] = {
        {"f32", QT_F32}, {"f16", QT_F16}, {"bf16", QT_BF16}, {"q8_0", QT_Q8_0},
        {"q4_0", QT_Q4_0}, {"q4_k", QT_Q4_K}, {"q6_k", QT_Q6_K}};
    for (size_t i = 0; i < sizeof T / sizeof *T; i++)
        if (!strcmp(s, T[i].name)) {
            *type = T[i].type;
            return LC_OK;
        }
    return LC_FAIL;
}

/* llama_ftype for a file whose matrices are `type`. */
static uint32_t file_type_of(int type) {
    switch (type) {
    case QT_F32: return 0;
    case QT_F16: return 1;
    case QT_Q4_0: return 2;
    case QT_Q8_0: return 7;
    case QT_Q4_K: return 14; /* Q4_K_S */
    case QT_Q6_K: return 18;
    case QT_BF16: return 32;
    default: return 0;
    }
}

/* Encodes rows x cols floats as `type` into a malloc'd buffer, with
 * kernels/quant.h's conversions (bit-exact against ggml's quantizers). */
static int encode_rows(const float *src, size_t rows, size_t cols, int type, void **out,
                       size_t *nbytes, const char *name, lc_err *err) {
    size_t rb = qtype_row_bytes(type, (int64_t)cols);
    if (!rb) return lc_errf(err, "tensor '%s': rows of %zu are not whole %s blocks", name, cols,
                            qtype_name(type));
    unsigned char *buf = malloc(rb * rows);
    if (!buf) return lc_errf(err, "tensor '%s': out of memory", name);
    if (qrow_from_f32(type, src, buf, (int64_t)(rows * cols), err)) {
        free(buf);
        return lc_err_prefix(err, "tensor '%s': ", name);
    }
    *out = buf;
    *nbytes = rb * rows;
    return LC_OK;
}

typedef struct {
    gguf_writer *w;
    const model_config *c;
    int llama_layout, type;
    lc_err *err;
} wr_ctx;

static int write_tensor_fn(const char *hf, int ndim, const int64_t *shape, float *data, float *grad,
                           void *vctx) {
    wr_ctx *x = vctx;
    char name[160];
    if (gguf_name_of(hf, name, sizeof name))
        return lc_errf(x->err, "no GGUF name for parameter '%s'", hf);
    size_t rows = ndim == 2 ? (size_t)shape[0] : 1, cols = (size_t)shape[ndim - 1];
    const float *src = data;
    float *perm = NULL;
    int heads = permute_heads(x->c, x->llama_layout, hf);
    if (heads) {
        size_t r = (size_t)shape[0], cc = ndim == 2 ? (size_t)shape[1] : 1;
        if (!(perm = malloc(sizeof(float) * r * cc))) return lc_errf(x->err, "out of memory");
        permute_rows(data, perm, (int)r, (int)cc, heads, 1);
        src = perm;
    }
    /* matrices in the requested type, falling back when a row is not whole
     * blocks (Q4_K -> Q4_0, Q6_K -> Q8_0, then F16); vectors stay F32 */
    int type = QT_F32;
    if (ndim == 2) {
        type = x->type;
        if (!qtype_row_bytes(type, (int64_t)cols) && type == QT_Q4_K) type = QT_Q4_0;
        if (!qtype_row_bytes(type, (int64_t)cols) && type == QT_Q6_K) type = QT_Q8_0;
        if (!qtype_row_bytes(type, (int64_t)cols)) type = QT_F16;
    }
    void *buf = NULL;
    size_t nb = 0;
    int rc = encode_rows(src, rows, cols, type, &buf, &nb, name, x->err);
    free(perm);
    if (rc) return rc;
    int64_t ne[2] = {(int64_t)cols, (int64_t)rows};
    return gguf_add_tensor(x->w, name, type, ndim, ne, buf, nb, 1, x->err);
}

static int write_tokenizer(gguf_writer *w, const tokenizer *tok, int vocab_size, lc_err *err) {
    tokenizer_parts p;
    if (tokenizer_to_parts(tok, &p, err)) return LC_FAIL;
    int rc = LC_FAIL;
    if (p.n_tokens != vocab_size) {
        lc_errf(err, "the tokenizer has %d tokens but the model's vocabulary is %d (llama.cpp "
                "needs them equal)", p.n_tokens, vocab_size);
        goto done;
    }
    if (gguf_set_str(w, "tokenizer.ggml.model", p.model == TOKENIZER_SPM ? "llama" : "gpt2", err))
        goto done;
    if (p.model == TOKENIZER_BPE && gguf_set_str(w, "tokenizer.ggml.pre", p.pre, err)) goto done;
    if (gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)p.tokens, p.token_lens,
                         (uint64_t)p.n_tokens, err))
        goto done;
    if (p.scores &&
        gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_T_FLOAT32, p.scores, (uint64_t)p.n_tokens, err))
        goto done;
    int32_t *types = malloc(sizeof(int32_t) * (size_t)p.n_tokens);
    if (!types) {
        lc_errf(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < p.n_tokens; i++) types[i] = p.types[i];
    int r2 = gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, types,
                          (uint64_t)p.n_tokens, err);
    free(types);
    if (r2) goto done;
    if (p.model == TOKENIZER_BPE &&
        gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)p.merges, NULL,
                         (uint64_t)p.n_merges, err))
        goto done;
    if ((p.bos >= 0 && gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)p.bos, err)) ||
        (p.eos >= 0 && gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)p.eos, err)) ||
        (p.unk >= 0 && gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)p.unk, err)) ||
        gguf_set_bool(w, "tokenizer.ggml.add_bos_token", p.add_bos, err) ||
        gguf_set_bool(w, "tokenizer.ggml.add_eos_token", p.add_eos, err) ||
        (p.chat_template && gguf_set_str(w, "tokenizer.chat_template", p.chat_template, err)))
        goto done;
    rc = LC_OK;
done:
    tokenizer_parts_free(&p);
    return rc;
}

int model_save_gguf(const model *m, const tokenizer *tok, int type, const char *path,
                    lc_err *err) {
    const model_config *c = &m->cfg;
    const char *arch = NULL;
    int llama_layout = 0;
    if (arch_of(c, &arch, &llama_layout, err)) return lc_err_prefix(err, "%s: ", path);
    if (!qtype_name(type)) return lc_errf(err, "%s: unknown weight type %d", path, type);
    if (c->rope_type == ROPE_LLAMA3 && c->head_dim % 2)
        return lc_errf(err, "%s: odd head dim", path);
    gguf_writer *w = gguf_writer_new();
    if (!w) return lc_errf(err, "%s: out of memory", path);
    char key[160];
    int rc = LC_FAIL;
    const char *slash = strrchr(path, '/');
    char name[128];
    snprintf(name, sizeof name, "%s", slash ? slash + 1 : path);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = 0;
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    if (gguf_set_str(w, "general.architecture", arch, err) ||
        gguf_set_str(w, "general.type", "model", err) ||
        gguf_set_str(w, "general.name", name, err) ||
        gguf_set_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size, err) ||
        gguf_set_u32(w, KEY("context_length"), (uint32_t)c->max_seq_len, err) ||
        gguf_set_u32(w, KEY("embedding_length"), (uint32_t)c->dim, err) ||
        gguf_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers, err) ||
        gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->hidden_dim, err) ||
        gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads, err) ||
        gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads, err) ||
        gguf_set_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim, err) ||
        gguf_set_f32(w, KEY("rope.freq_base"), c->rope_theta, err) ||
        gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps, err))
        goto done;
    if (c->head_dim * c->n_heads != c->dim &&
        (gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim, err) ||
         gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim, err)))
        goto done;
    if (c->rope_type == ROPE_LINEAR &&
        (gguf_set_str(w, KEY("rope.scaling.type"), "linear", err) ||
         gguf_set_f32(w, KEY("rope.scaling.factor"), c->rope_factor, err)))
        goto done;
#undef KEY
    if (gguf_set_u32(w, "general.file_type", file_type_of(type), err) ||
        (qtype_block(type) > 1 && gguf_set_u32(w, "general.quantization_version", 2, err)))
        goto done;
    if (tok && write_tokenizer(w, tok, c->vocab_size, err)) goto fail_prefix;
    wr_ctx x = {w, c, llama_layout, type, err};
    if (model_for_each_tensor((model *)m, write_tensor_fn, &x)) goto fail_prefix;
    if (c->rope_type == ROPE_LLAMA3) {
        /* llama.cpp divides each default frequency by rope_freqs[i] */
        int half = c->head_dim / 2;
        float *fr = malloc(sizeof(float) * (size_t)half);
        if (!fr) {
            lc_errf(err, "%s: out of memory", path);
            goto done;
        }
        for (int i = 0; i < half; i++) {
            double inv = 1.0 / pow((double)c->rope_theta, (2.0 * i) / c->head_dim);
            fr[i] = (float)(inv / m->rope_inv_freq[i]);
        }
        int64_t ne[1] = {half};
        if (gguf_add_tensor(w, "rope_freqs.weight", QT_F32, 1, ne, fr, sizeof(float) * (size_t)half,
                            1, err))
            goto fail_prefix;
    }
    rc = gguf_writer_write(w, path, err);
    goto done;
fail_prefix:
    lc_err_prefix(err, "%s: ", path);
done:
    gguf_writer_free(w);
    return rc;
}
