/* llama2c.c: llama2.c "legacy" checkpoints (read and write) and the
 * llama2.c tokenizer (tokenizer.bin) with its SentencePiece-style encoder.
 *
 * Checkpoint layout (little-endian):
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *   float32 token_embedding (V,D), rms_att (L,D), wq (L,D,D),
 *     wk (L,KV,D), wv (L,KV,D), wo (L,D,D), rms_ffn (L,D), w1 (L,F,D),
 *     w2 (L,D,F), w3 (L,F,D), rms_final (D), freq_cis_real (S,hd/2),
 *     freq_cis_imag (S,hd/2), then wcls (V,D) iff vocab_size < 0
 *   with KV = D * n_kv_heads / n_heads, hd = D / n_heads, S = seq_len.
 *
 * RoPE convention: llama2.c rotates interleaved pairs (2i, 2i+1) of each
 * head; this project (like HF) rotates (i, i+hd/2). The rows of wq and wk
 * are permuted on load (and back on save) so the two agree exactly:
 *   HF row j*(hd/2)+i of a head = llama2.c row 2i+j, j in {0,1}. */
#include "loaders.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define L2C_HEADER_BYTES 28

/* ---- RoPE row permutation --------------------------------------------- */

/* dst (n_heads*hd, cols) in HF order <- src in llama2.c order. */
static void rows_l2c_to_hf(float *dst, const float *src, int n_heads, int hd, int cols) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < half; i++)
                memcpy(dst + ((size_t)h * hd + (size_t)j * half + i) * cols,
                       src + ((size_t)h * hd + 2 * (size_t)i + j) * cols, sizeof(float) * cols);
}

/* The inverse: dst in llama2.c order <- src in HF order. */
static void rows_hf_to_l2c(float *dst, const float *src, int n_heads, int hd, int cols) {
    int half = hd / 2;
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < half; i++)
                memcpy(dst + ((size_t)h * hd + 2 * (size_t)i + j) * cols,
                       src + ((size_t)h * hd + (size_t)j * half + i) * cols, sizeof(float) * cols);
}

/* ---- checkpoint: header ----------------------------------------------- */

static const char *const HEADER_FIELDS[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                             "n_kv_heads", "vocab_size", "seq_len"};

/* Validates the header and fills cfg; *n_floats = float32 count after it. */
static int l2c_header_config(const int32_t h[7], const char *path, model_config *cfg,
                             uint64_t *n_floats, lc_err *err) {
    for (int i = 0; i < 7; i++) {
        if (i == 5) continue;
        if (h[i] <= 0)
            return lc_errf(err, "%s: header field '%s' must be positive, found %d", path,
                           HEADER_FIELDS[i], (int)h[i]);
    }
    if (h[5] == 0 || h[5] == INT32_MIN)
        return lc_errf(err, "%s: header field 'vocab_size' must be non-zero, found %d", path,
                       (int)h[5]);
    int D = h[0], F = h[1], L = h[2], H = h[3], Hkv = h[4], V = h[5] < 0 ? -h[5] : h[5], S = h[6];
    if (D % H)
        return lc_errf(err, "%s: header field 'dim' (%d) is not a multiple of 'n_heads' (%d)", path,
                       D, H);
    if (H % Hkv)
        return lc_errf(err, "%s: header field 'n_heads' (%d) is not a multiple of 'n_kv_heads' (%d)",
                       path, H, Hkv);
    int hd = D / H;
    if (hd % 2)
        return lc_errf(err, "%s: head size dim/n_heads = %d must be even for RoPE", path, hd);
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->arch, sizeof cfg->arch, "llama");
    cfg->dim = D;
    cfg->hidden_dim = F;
    cfg->n_layers = L;
    cfg->n_heads = H;
    cfg->n_kv_heads = Hkv;
    cfg->head_dim = hd;
    cfg->vocab_size = V;
    cfg->max_seq_len = S;
    cfg->norm_eps = 1e-5f;
    cfg->rope_theta = 10000.0f;
    cfg->rope_type = ROPE_DEFAULT;
    cfg->tie_embeddings = h[5] > 0;
    cfg->qkv_bias = 0;
    cfg->bos_id = 1;
    cfg->eos_id = 2;
    if (model_config_validate(cfg, path, err)) return LC_FAIL;
    /* the count in double first: the products of three header fields may
     * not fit in 64 bits for a hostile file */
    double kv = (double)D * Hkv / H;
    double est = (double)V * D * (cfg->tie_embeddings ? 1 : 2) + (double)L * D * 2 + D +
                 (double)L * D * D * 2 + (double)L * kv * D * 2 + (double)L * F * D * 3 +
                 (double)S * hd;
    if (est > 1e15)
        return lc_errf(err, "%s: header describes %.3g weights, which is implausible", path, est);
    uint64_t KV = (uint64_t)D * Hkv / H;
    *n_floats = (uint64_t)V * D * (cfg->tie_embeddings ? 1 : 2) + (uint64_t)L * D * 2 + D +
                (uint64_t)L * D * D * 2 + (uint64_t)L * KV * D * 2 + (uint64_t)L * F * D * 3 +
                (uint64_t)S * hd;
    return LC_OK;
}

/* ---- checkpoint: load ------------------------------------------------- */

static int read_floats(FILE *f, float *dst, size_t n, const char *path, const char *what,
                       lc_err *err) {
    if (fread(dst, sizeof(float), n, f) != n)
        return lc_errf(err, "%s: read error in '%s'", path, what);
    return LC_OK;
}

int model_load_llama2c(model *m, const char *path, lc_err *err) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) return lc_errf(err, "%s: cannot open: %s", path, strerror(errno));
    float *tmp = NULL;
    int rc = LC_FAIL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        lc_errf(err, "%s: not a regular file", path);
        goto done;
    }
    if (st.st_size < L2C_HEADER_BYTES) {
        lc_errf(err, "%s: truncated: expected a %d-byte llama2.c header, found %lld bytes", path,
                L2C_HEADER_BYTES, (long long)st.st_size);
        goto done;
    }
    int32_t h[7];
    if (fread(h, sizeof(int32_t), 7, f) != 7) {
        lc_errf(err, "%s: read error in the header", path);
        goto done;
    }
    model_config cfg;
    uint64_t n_floats = 0;
    if (l2c_header_config(h, path, &cfg, &n_floats, err)) {
        if (err) {
            size_t n = strlen(err->msg);
            snprintf(err->msg + n, sizeof err->msg - n, " (is this a llama2.c checkpoint?)");
        }
        goto done;
    }
    uint64_t want = n_floats * sizeof(float), have = (uint64_t)st.st_size - L2C_HEADER_BYTES;
    if (have < want) {
        lc_errf(err, "%s: truncated: expected %llu bytes for the weights, found %llu", path,
                (unsigned long long)want, (unsigned long long)have);
        goto done;
    }
    if (have > want) {
        lc_errf(err, "%s: %llu bytes of trailing data: expected %llu bytes for the weights, "
                "found %llu", path, (unsigned long long)(have - want), (unsigned long long)want,
                (unsigned long long)have);
        goto done;
    }
    if (model_init(m, &cfg, err)) {
        lc_err_prefix(err, "%s: ", path);
        goto done;
    }
    const int D = cfg.dim, F = cfg.hidden_dim, L = cfg.n_layers, hd = cfg.head_dim;
    const size_t KV = (size_t)cfg.n_kv_heads * hd;
    tmp = lc_malloc(sizeof(float) * (size_t)D * D, err);
    if (!tmp) goto done;
    model_weights *w = &m->w;
    if (read_floats(f, w->tok_emb, (size_t)cfg.vocab_size * D, path, "token_embedding_table", err))
        goto done;
    /* the file is section-major (all layers of one tensor, then the next) */
    int bad = 0;
    for (int l = 0; l < L && !bad; l++)
        bad = read_floats(f, w->layers[l].attn_norm, D, path, "rms_att_weight", err);
    for (int l = 0; l < L && !bad; l++) {
        bad = read_floats(f, tmp, (size_t)D * D, path, "wq", err);
        if (!bad) rows_l2c_to_hf(w->layers[l].w[MOD_Q], tmp, cfg.n_heads, hd, D);
    }
    for (int l = 0; l < L && !bad; l++) {
        bad = read_floats(f, tmp, KV * D, path, "wk", err);
        if (!bad) rows_l2c_to_hf(w->layers[l].w[MOD_K], tmp, cfg.n_kv_heads, hd, D);
    }
    for (int l = 0; l < L && !bad; l++)
        bad = read_floats(f, w->layers[l].w[MOD_V], KV * D, path, "wv", err);
    for (int l = 0; l < L && !bad; l++)
        bad = read_floats(f, w->layers[l].w[MOD_O], (size_t)D * D, path, "wo", err);
    for (int l = 0; l < L && !bad; l++)
        bad = read_floats(f, w->layers[l].ffn_norm, D, path, "rms_ffn_weight", err);
    for (int l = 0; l < L && !bad; l++)
        bad = read_floats(f, w->layers[l].w[MOD_GATE], (size_t)F * D, path, "w1", err);
    for (int l = 0; l < L && !bad; l++)
        bad = read_floats(f, w->layers[l].w[MOD_DOWN], (size_t)D * F, path, "w2", err);
    for (int l = 0; l < L && !bad; l++)
        bad = read_floats(f, w->layers[l].w[MOD_UP], (size_t)F * D, path, "w3", err);
    if (bad) goto done;
    if (read_floats(f, w->final_norm, D, path, "rms_final_weight", err)) goto done;
    if (!cfg.tie_embeddings) {
        /* skip the two RoPE tables (seq_len, hd/2) each, unused */
        if (fseeko(f, (off_t)sizeof(float) * cfg.max_seq_len * hd, SEEK_CUR) != 0) {
            lc_errf(err, "%s: seek error", path);
            goto done;
        }
        if (read_floats(f, w->lm_head, (size_t)cfg.vocab_size * D, path, "wcls", err)) goto done;
    }
    rc = LC_OK;
done:
    free(tmp);
    fclose(f);
    if (rc) model_free(m);
    return rc;
}

/* ---- checkpoint: save ------------------------------------------------- */

static int write_floats(FILE *f, const float *src, size_t n) {
    return fwrite(src, sizeof(float), n, f) == n ? LC_OK : LC_FAIL;
}

int model_save_llama2c(const model *m, const char *path, lc_err *err) {
    if (m->base_type != QT_F32) { /* stored matrices: write their float32 values */
        model f;
        if (model_to_f32(&f, m, err)) return lc_err_prefix(err, "%s: ", path);
        int rc = model_save_llama2c(&f, path, err);
        model_free(&f);
        return rc;
    }
    const model_config *c = &m->cfg;
    if (c->qkv_bias)
        return lc_errf(err, "%s: the llama2.c format cannot store q/k/v biases", path);
    if (c->head_dim * c->n_heads != c->dim)
        return lc_errf(err, "%s: the llama2.c format needs head_dim * n_heads == dim (%d * %d != %d)",
                       path, c->head_dim, c->n_heads, c->dim);
    if (c->rope_type != ROPE_DEFAULT || c->rope_theta != 10000.0f)
        return lc_errf(err, "%s: the llama2.c format fixes RoPE at theta 10000 without scaling",
                       path);
    if (c->norm_eps != 1e-5f)
        return lc_errf(err, "%s: the llama2.c format fixes rms_norm_eps at 1e-5, found %g", path,
                       c->norm_eps);
    char tmp_path[4200];
    FILE *f = lc_tmp_open(path, tmp_path, sizeof tmp_path, err);
    if (!f) return LC_FAIL;
    const int D = c->dim, F = c->hidden_dim, L = c->n_layers, hd = c->head_dim, half = hd / 2;
    const size_t KV = (size_t)c->n_kv_heads * hd;
    size_t row = (size_t)c->max_seq_len * half;
    size_t nbuf = (size_t)D * D > row ? (size_t)D * D : row;
    float *buf = lc_malloc(sizeof(float) * nbuf, err);
    if (!buf) {
        fclose(f);
        unlink(tmp_path);
        return LC_FAIL;
    }
    int32_t h[7] = {D, F, L, c->n_heads, c->n_kv_heads,
                    c->tie_embeddings ? c->vocab_size : -c->vocab_size, c->max_seq_len};
    const model_weights *w = &m->w;
    int bad = fwrite(h, sizeof h, 1, f) != 1;
    bad = bad || write_floats(f, w->tok_emb, (size_t)c->vocab_size * D);
    for (int l = 0; l < L && !bad; l++) bad = write_floats(f, w->layers[l].attn_norm, D);
    for (int l = 0; l < L && !bad; l++) {
        rows_hf_to_l2c(buf, w->layers[l].w[MOD_Q], c->n_heads, hd, D);
        bad = write_floats(f, buf, (size_t)D * D);
    }
    for (int l = 0; l < L && !bad; l++) {
        rows_hf_to_l2c(buf, w->layers[l].w[MOD_K], c->n_kv_heads, hd, D);
        bad = write_floats(f, buf, KV * D);
    }
    for (int l = 0; l < L && !bad; l++) bad = write_floats(f, w->layers[l].w[MOD_V], KV * D);
    for (int l = 0; l < L && !bad; l++) bad = write_floats(f, w->layers[l].w[MOD_O], (size_t)D * D);
    for (int l = 0; l < L && !bad; l++) bad = write_floats(f, w->layers[l].ffn_norm, D);
    for (int l = 0; l < L && !bad; l++) bad = write_floats(f, w->layers[l].w[MOD_GATE], (size_t)F * D);
    for (int l = 0; l < L && !bad; l++) bad = write_floats(f, w->layers[l].w[MOD_DOWN], (size_t)D * F);
    for (int l = 0; l < L && !bad; l++) bad = write_floats(f, w->layers[l].w[MOD_UP], (size_t)F * D);
    bad = bad || write_floats(f, w->final_norm, D);
    /* freq_cis_real then freq_cis_imag: cos/sin(pos / 10000^(2i/hd)) */
    for (int part = 0; part < 2 && !bad; part++) {
        for (int pos = 0; pos < c->max_seq_len; pos++)
            for (int i = 0; i < half; i++) {
                double freq = 1.0 / pow(10000.0, (2.0 * i) / hd);
                double a = (double)pos * (float)freq;
                buf[(size_t)pos * half + i] = (float)(part == 0 ? cos(a) : sin(a));
            }
        bad = write_floats(f, buf, row);
    }
    if (!c->tie_embeddings) bad = bad || write_floats(f, w->lm_head, (size_t)c->vocab_size * D);
    int e = bad ? errno : 0;
    free(buf);
    return lc_tmp_close(f, !bad, e, tmp_path, path, err);
}

/* ---- tokenizer -------------------------------------------------------- */

typedef struct {
    const char *s;
    int len, id;
} piece_ref;

static int cmp_bytes(const char *a, int alen, const char *b, int blen) {
    int n = alen < blen ? alen : blen;
    int r = memcmp(a, b, (size_t)n);
    if (r) return r;
    return (alen > blen) - (alen < blen);
}

static int cmp_piece_ref(const void *pa, const void *pb) {
    const piece_ref *a = pa, *b = pb;
    int r = cmp_bytes(a->s, a->len, b->s, b->len);
    return r ? r : (a->id > b->id) - (a->id < b->id);
}

void l2c_tokenizer_free(l2c_tokenizer *t) {
    if (!t) return;
    if (t->vocab) free(t->vocab[0]); /* all pieces live in one block */
    free(t->vocab);
    free(t->lens);
    free(t->scores);
    free(t->sorted);
    memset(t, 0, sizeof *t);
}

int l2c_tokenizer_load(l2c_tokenizer *t, const char *path, int vocab_size, lc_err *err) {
    memset(t, 0, sizeof *t);
    if (vocab_size <= 0)
        return lc_errf(err, "%s: vocab_size must be positive, found %d", path, vocab_size);
    size_t size;
    char *raw = lc_read_file(path, &size, err);
    if (!raw) return LC_FAIL;
    int rc = LC_FAIL;
    piece_ref *refs = NULL;
    if (size < 4) {
        lc_errf(err, "%s: truncated: expected a 4-byte header (max_token_length), found %zu bytes",
                path, size);
        goto done;
    }
    int32_t maxlen;
    memcpy(&maxlen, raw, 4);
    if (maxlen < 0) {
        lc_errf(err, "%s: max_token_length must not be negative, found %d", path, (int)maxlen);
        goto done;
    }
    /* first pass: check every record fits and count the piece bytes */
    size_t pos = 4, total = 0;
    for (int i = 0; i < vocab_size; i++) {
        if (size - pos < 8) {
            lc_errf(err, "%s: truncated at token %d of %d: expected an 8-byte record header at "
                    "byte %zu, found %zu bytes", path, i, vocab_size, pos, size - pos);
            goto done;
        }
        int32_t len;
        memcpy(&len, raw + pos + 4, 4);
        pos += 8;
        if (len < 0 || (size_t)len > size - pos) {
            lc_errf(err, "%s: token %d: length %d does not fit the %zu bytes left in the file", path,
                    i, (int)len, size - pos);
            goto done;
        }
        pos += (size_t)len;
        total += (size_t)len + 1;
    }
    if (pos != size) {
        lc_errf(err, "%s: %zu bytes after token %d: the file holds more than the model's "
                "vocab_size %d tokens", path, size - pos, vocab_size - 1, vocab_size);
        goto done;
    }
    t->vocab_size = vocab_size;
    t->max_token_length = maxlen;
    t->vocab = lc_calloc(vocab_size, sizeof(char *), err);
    t->lens = lc_calloc(vocab_size, sizeof(int), err);
    t->scores = lc_calloc(vocab_size, sizeof(float), err);
    t->sorted = lc_calloc(vocab_size, sizeof(int), err);
    refs = lc_calloc(vocab_size, sizeof(piece_ref), err);
    char *block = lc_malloc(total, err);
    if (!t->vocab || !t->lens || !t->scores || !t->sorted || !refs || !block) {
        free(block);
        goto done;
    }
    t->vocab[0] = block;
    pos = 4;
    for (int i = 0; i < vocab_size; i++) {
        int32_t len;
        memcpy(&t->scores[i], raw + pos, 4);
        memcpy(&len, raw + pos + 4, 4);
        pos += 8;
        memcpy(block, raw + pos, (size_t)len);
        block[len] = 0;
        t->vocab[i] = block;
        t->lens[i] = len;
        if (len > t->max_token_length) t->max_token_length = len;
        refs[i] = (piece_ref){block, len, i};
        block += len + 1;
        pos += (size_t)len;
    }
    qsort(refs, vocab_size, sizeof *refs, cmp_piece_ref);
    for (int i = 0; i < vocab_size; i++) t->sorted[i] = refs[i].id;
    t->bos_id = vocab_size > 1 ? 1 : -1;
    t->eos_id = vocab_size > 2 ? 2 : -1;
    rc = LC_OK;
done:
    free(refs);
    free(raw);
    if (rc) l2c_tokenizer_free(t);
    return rc;
}

/* Compares the piece of id with the concatenation a || b. */
static int cmp_piece_concat(const l2c_tokenizer *t, int id, const char *a, int alen,
                            const char *b, int blen) {
    const char *p = t->vocab[id];
    int plen = t->lens[id];
    int n = plen < alen ? plen : alen;
    int r = memcmp(p, a, (size_t)n);
    if (r) return r;
    if (plen <= alen) return plen < alen ? -1 : (blen > 0 ? -1 : 0);
    return cmp_bytes(p + alen, plen - alen, b, blen);
}

/* The lowest id whose piece is a || b, or -1. */
static int lookup_concat(const l2c_tokenizer *t, const char *a, int alen, const char *b,
                         int blen) {
    int lo = 0, hi = t->vocab_size; /* first index with piece >= key */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (cmp_piece_concat(t, t->sorted[mid], a, alen, b, blen) < 0) lo = mid + 1;
        else hi = mid;
    }
    if (lo < t->vocab_size && cmp_piece_concat(t, t->sorted[lo], a, alen, b, blen) == 0)
        return t->sorted[lo];
    return -1;
}

static int byte_token(const l2c_tokenizer *t, unsigned char b) {
    return b + 3 < t->vocab_size ? b + 3 : 0; /* <0xNN> pieces start at id 3 */
}

typedef struct {
    float score;
    int left, right; /* node indices */
    int id;          /* merged token */
    unsigned vl, vr; /* node versions when pushed */
} l2c_pair;

static int pair_before(const l2c_pair *a, const l2c_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(l2c_pair *h, int *n, l2c_pair x) {
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!pair_before(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static l2c_pair heap_pop(l2c_pair *h, int *n) {
    l2c_pair top = h[0], x = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && pair_before(&h[c + 1], &h[c])) c++;
        if (!pair_before(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = x;
    return top;
}

/* Merges ids[0..m) in place; returns the new length. Falls back to the
 * quadratic scan only if memory runs out. */
static int merge_pairs(const l2c_tokenizer *t, int *ids, int m) {
    int *next = malloc(sizeof(int) * m), *prev = malloc(sizeof(int) * m);
    unsigned *ver = calloc(m, sizeof(unsigned));
    l2c_pair *heap = malloc(sizeof(l2c_pair) * (size_t)(3 * m + 1));
    int hn = 0;
    if (!next || !prev || !ver || !heap) {
        free(next); free(prev); free(ver); free(heap);
        for (;;) {
            float best = 0;
            int best_i = -1, best_id = -1;
            for (int i = 0; i + 1 < m; i++) {
                int id = lookup_concat(t, t->vocab[ids[i]], t->lens[ids[i]], t->vocab[ids[i + 1]],
                                       t->lens[ids[i + 1]]);
                if (id >= 0 && (best_i < 0 || t->scores[id] > best)) {
                    best = t->scores[id];
                    best_i = i;
                    best_id = id;
                }
            }
            if (best_i < 0) return m;
            ids[best_i] = best_id;
            memmove(ids + best_i + 1, ids + best_i + 2, sizeof(int) * (size_t)(m - best_i - 2));
            m--;
        }
    }
    for (int i = 0; i < m; i++) next[i] = i + 1 < m ? i + 1 : -1, prev[i] = i - 1;
#define PUSH(a, b)                                                                              \
    do {                                                                                        \
        int id_ = lookup_concat(t, t->vocab[ids[a]], t->lens[ids[a]], t->vocab[ids[b]],         \
                                t->lens[ids[b]]);                                               \
        if (id_ >= 0) heap_push(heap, &hn, (l2c_pair){t->scores[id_], a, b, id_, ver[a], ver[b]}); \
    } while (0)
    for (int i = 0; i + 1 < m; i++) PUSH(i, i + 1);
    while (hn > 0) {
        l2c_pair p = heap_pop(heap, &hn);
        if (ver[p.left] != p.vl || ver[p.right] != p.vr || next[p.left] != p.right) continue;
        /* merge right into left */
        ids[p.left] = p.id;
        ver[p.left]++;
        ver[p.right] = ~0u; /* dead */
        int r = next[p.right];
        next[p.left] = r;
        if (r >= 0) prev[r] = p.left;
        if (hn + 2 > 3 * m) break; /* cannot happen: at most m-1 merges, 2 pushes each */
        if (prev[p.left] >= 0) PUSH(prev[p.left], p.left);
        if (r >= 0) PUSH(p.left, r);
    }
#undef PUSH
    int n = 0;
    for (int i = 0; i >= 0; i = next[i]) ids[n++] = ids[i];
    free(next); free(prev); free(ver); free(heap);
    return n;
}

int l2c_encode(const l2c_tokenizer *t, const char *text, int bos, int eos, int *ids) {
    int n = 0;
    if (bos && t->bos_id >= 0) ids[n++] = t->bos_id;
    if (text[0]) { /* SentencePiece's dummy prefix */
        int sp = lookup_concat(t, " ", 1, "", 0);
        ids[n++] = sp >= 0 ? sp : byte_token(t, ' ');
    }
    /* one token per UTF-8 character, or its bytes when not in the vocab */
    for (const char *p = text; *p;) {
        int clen = 1;
        while (clen < 4 && ((unsigned char)p[clen] & 0xC0) == 0x80) clen++;
        int id = lookup_concat(t, p, clen, "", 0);
        if (id >= 0) {
            ids[n++] = id;
        } else {
            for (int k = 0; k < clen; k++) ids[n++] = byte_token(t, (unsigned char)p[k]);
        }
        p += clen;
    }
    /* Merge the best-scoring adjacent pair (leftmost on ties) until none is
     * in the vocabulary, as llama2.c does, but in O(n log n): the symbols are
     * a linked list and candidate pairs sit in a max-heap keyed by (score,
     * -position); a popped pair whose nodes changed since it was pushed is
     * stale and skipped. */
    int first = bos && t->bos_id >= 0 ? 1 : 0; /* BOS never merges */
    int m = n - first;
    if (m >= 2) n = first + merge_pairs(t, ids + first, m);
    if (eos && t->eos_id >= 0) ids[n++] = t->eos_id;
    return n;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

const char *l2c_decode(const l2c_tokenizer *t, int prev, int token, char buf[2], int *len) {
    buf[0] = 0;
    *len = 0;
    if (token < 0 || token >= t->vocab_size) return buf;
    const char *p = t->vocab[token];
    int n = t->lens[token];
    if (prev == t->bos_id && n > 0 && p[0] == ' ') p++, n--;
    if (n == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>' && hex_value(p[3]) >= 0 &&
        hex_value(p[4]) >= 0) {
        buf[0] = (char)(hex_value(p[3]) * 16 + hex_value(p[4]));
        buf[1] = 0;
        *len = 1;
        return buf;
    }
    *len = n;
    return p;
}
