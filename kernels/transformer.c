/* transformer.c: forward and backward of the Llama-family decoder over a
 * batch, with LoRAs and calibrations applied at run time on top of the
 * frozen base, and single-token decoding with a KV cache.
 *
 * Per layer (PyTorch equivalents in the comments):
 *   xn  = rmsnorm(x_in) * attn_norm
 *   q,k,v = adapted(q/k/v, xn); q,k = rope(q), rope(k)
 *   att = softmax(q k^T / sqrt(hd) + causal) v          (grouped-query)
 *   x_mid = x_in + adapted(o, att)
 *   xn  = rmsnorm(x_mid) * ffn_norm
 *   x_out = x_mid + adapted(down, silu(adapted(gate, xn)) * adapted(up, xn))
 * adapted(m, x) = x W^T + b + sum_i w_i s_i (x A_i^T) B_i^T + p + (x P1^T) P2^T
 *
 * Saved for backward, per layer: x_in, rstd1, q, k, v (after RoPE), the
 * attention probabilities, att, x_mid, rstd2, gate and up (before SiLU),
 * and the low-rank activations x A^T and x P1^T. The normalised inputs and
 * silu(gate)*up are recomputed in backward (cheap, and it saves 3 (N, D)
 * plus one (N, F) buffer per layer). */
#include "gemm.h"
#include <math.h>
#include "lc_omp.h"
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "ops.h"

#define LOGIT_CHUNK 256

typedef struct {
    float *x_in, *rstd1, *q, *k, *v, *probs, *att, *x_mid, *rstd2, *gate, *up;
    float *ax[MOD_COUNT][ADAPTER_MAX];  /* (N, r_i), already scaled by w_i s_i */
    float *p1x[MOD_COUNT][ADAPTER_MAX]; /* (N, k) */
} layer_acts;

struct model_acts {
    int B, T, flags;
    int cur_B, cur_T;
    const model *m;
    adapter_set ad;
    layer_acts *layers; /* L entries; all alias one set without ACTS_BACKWARD */
    float *x_final, *rstd_f, *xf, *dxf, *dlm;
    float *logits;  /* (N, V) with ACTS_KEEP_LOGITS */
    float *lchunk;  /* (LOGIT_CHUNK, V) */
    float *cx;      /* (LOGIT_CHUNK, D) gathered rows */
    int *rows, *tokens, *targets;
    double row_loss[LOGIT_CHUNK];
    float *cos_t, *sin_t;
    float *xn, *h;
    float *dres, *dxn, *dh, *dgate, *dup, *datt, *dq, *dk, *dv, *dS, *dlow;
    int max_low; /* largest LoRA / LC++ rank */
    int n_scratch; /* attention scratch blocks (threads) */
    uint64_t drop_seed; /* 0: no LoRA dropout */
    float *xdrop, *xdrop2; /* (N, max in) scratch for LoRA dropout */
    float *tile;    /* a dequantized tile of a stored base matrix (quant.h) */
    void **allocs;
    int n_allocs, cap_allocs;
    size_t bytes;
};

/* ---- workspace ---------------------------------------------------------- */

static float *acts_alloc(model_acts *a, size_t n, lc_err *err) {
    if (a->n_allocs == a->cap_allocs) {
        int cap = a->cap_allocs ? 2 * a->cap_allocs : 64;
        void **p = realloc(a->allocs, sizeof(void *) * cap);
        if (!p) {
            lc_errf(err, "out of memory");
            return NULL;
        }
        a->allocs = p;
        a->cap_allocs = cap;
    }
    float *p = lc_calloc(n ? n : 1, sizeof(float), err);
    if (p) {
        a->allocs[a->n_allocs++] = p;
        a->bytes += n * sizeof(float);
    }
    return p;
}

void model_acts_free(model_acts *a) {
    if (!a) return;
    for (int i = 0; i < a->n_allocs; i++) free(a->allocs[i]);
    free(a->allocs);
    free(a->layers);
    free(a->rows);
    free(a->tokens);
    free(a->targets);
    free(a);
}

size_t model_acts_bytes(const model_acts *a) { return a->bytes; }
const float *model_acts_logits(const model_acts *a) { return a->logits; }
const float *model_acts_demb(const model_acts *a) { return a->dres; }
void model_acts_set_dropout(model_acts *a, uint64_t seed) { a->drop_seed = seed; }

/* ---- LoRA dropout ------------------------------------------------------- */

/* xd (N, in) = x * keep / (1 - p), keep ~ Bernoulli(1 - p) drawn from
 * (seed, layer, module, adapter, element). */
static void lora_dropout(float *xd, const float *x, size_t n, float p, uint64_t seed, int l, int mo,
                         int i) {
    const uint64_t stream = seed ^ ((uint64_t)((l * MOD_COUNT + mo) * ADAPTER_MAX + i) << 40);
    const float scale = 1.0f / (1.0f - p);
    const uint32_t thresh = (uint32_t)(p * 4294967296.0);
#pragma omp parallel for simd schedule(static) if (n >= (1u << 16))
    for (size_t k = 0; k < n; k++) {
        uint32_t u = (uint32_t)(lc_splitmix64(stream + k) >> 32);
        xd[k] = u >= thresh ? x[k] * scale : 0.0f;
    }
}

/* The factor of LoRA lr's term in slot s: weight * scale * coef. */
static inline float lora_ws(const lora *lr, int s) {
    return lr->weight * lr->scale * (lr->coef ? lr->coef[s] : 1.0f);
}

/* sum a[k] b[k] in float64 */
static double dot_f64(const float *a, const float *b, size_t n) {
    double acc = 0.0;
    for (size_t k = 0; k < n; k++) acc += (double)a[k] * b[k];
    return acc;
}

static int lora_uses_dropout(const model_acts *a, const lora *lr) {
    return a->drop_seed != 0 && lr->dropout > 0.0f && a->xdrop != NULL;
}

int model_acts_init(model_acts **out, const model *m, const adapter_set *ad, int B, int T,
                    int flags, lc_err *err) {
    *out = NULL;
    const model_config *c = &m->cfg;
    if (B <= 0 || T <= 0) return lc_errf(err, "batch shape must be positive, found %d x %d", B, T);
    if (T > c->max_seq_len)
        return lc_errf(err, "sequence length %d exceeds the model's maximum %d", T, c->max_seq_len);
    if (adapter_set_validate(ad, m, err)) return LC_FAIL;
    model_acts *a = calloc(1, sizeof *a);
    if (!a) return lc_errf(err, "out of memory");
    a->B = B, a->T = T, a->flags = flags, a->m = m;
    if (ad) a->ad = *ad;
    const size_t N = (size_t)B * T, D = c->dim, F = c->hidden_dim, V = c->vocab_size;
    const size_t QD = (size_t)c->n_heads * c->head_dim, KD = (size_t)c->n_kv_heads * c->head_dim;
    const int L = c->n_layers, nbuf = (flags & ACTS_BACKWARD) ? L : 1;
    a->layers = calloc(L, sizeof(layer_acts));
    a->rows = malloc(sizeof(int) * N);
    a->tokens = malloc(sizeof(int) * N);
    a->targets = malloc(sizeof(int) * N);
    if (!a->layers || !a->rows || !a->tokens || !a->targets) goto oom;
    for (int i = 0; i < a->ad.n_loras; i++)
        if (a->ad.loras[i]->rank > a->max_low) a->max_low = a->ad.loras[i]->rank;
    for (int i = 0; i < a->ad.n_cals; i++)
        if (a->ad.cals[i]->rank > a->max_low) a->max_low = a->ad.cals[i]->rank;
#define ALLOC(dst, n) \
    do { if (!((dst) = acts_alloc(a, (n), err))) goto fail; } while (0)
    for (int l = 0; l < nbuf; l++) {
        layer_acts *la = &a->layers[l];
        ALLOC(la->x_in, N * D);
        ALLOC(la->rstd1, N);
        ALLOC(la->q, N * QD);
        ALLOC(la->k, N * KD);
        ALLOC(la->v, N * KD);
        ALLOC(la->probs, (size_t)B * c->n_heads * T * T);
        ALLOC(la->att, N * QD);
        ALLOC(la->x_mid, N * D);
        ALLOC(la->rstd2, N);
        ALLOC(la->gate, N * F);
        ALLOC(la->up, N * F);
        for (int mo = 0; mo < MOD_COUNT; mo++) {
            for (int i = 0; i < a->ad.n_loras; i++) {
                const lora *lr = a->ad.loras[i];
                /* without backward, layer buffers are shared: size for any layer */
                int any = 0;
                for (int ll = (nbuf == 1 ? 0 : l); ll < (nbuf == 1 ? L : l + 1); ll++)
                    any |= lr->A[ll * MOD_COUNT + mo] != NULL;
                if (any) ALLOC(la->ax[mo][i], N * lr->rank);
            }
            for (int i = 0; i < a->ad.n_cals; i++) {
                const calib *cb = a->ad.cals[i];
                if (cb->kind == CALIB_LOWRANK && (cb->module_mask >> mo & 1))
                    ALLOC(la->p1x[mo][i], N * cb->rank);
            }
        }
    }
    for (int l = nbuf; l < L; l++) a->layers[l] = a->layers[0];
    ALLOC(a->x_final, N * D);
    ALLOC(a->rstd_f, N);
    ALLOC(a->xf, N * D);
    ALLOC(a->lchunk, (size_t)LOGIT_CHUNK * V);
    ALLOC(a->cx, (size_t)LOGIT_CHUNK * D);
    if (flags & ACTS_KEEP_LOGITS) ALLOC(a->logits, N * V);
    {
        size_t tile = m->w.lm_head ? 0 : qmat_tile_floats(&m->w.q_lm_head);
        for (int l = 0; l < L; l++)
            for (int mo = 0; mo < MOD_COUNT; mo++)
                if (!m->w.layers[l].w[mo]) {
                    const size_t t = qmat_tile_floats(&m->w.layers[l].q[mo]);
                    tile = t > tile ? t : tile;
                }
        if (tile) ALLOC(a->tile, tile);
    }
    ALLOC(a->cos_t, (size_t)T * c->head_dim / 2);
    ALLOC(a->sin_t, (size_t)T * c->head_dim / 2);
    ALLOC(a->xn, N * D);
    ALLOC(a->h, N * F);
    if (flags & ACTS_BACKWARD) {
        ALLOC(a->dxf, N * D);
        if (m->grad) ALLOC(a->dlm, V * D);
        ALLOC(a->dres, N * D);
        ALLOC(a->dxn, N * D);
        ALLOC(a->dh, N * F);
        ALLOC(a->dgate, N * F);
        ALLOC(a->dup, N * F);
        ALLOC(a->datt, N * QD);
        ALLOC(a->dq, N * QD);
        ALLOC(a->dk, N * KD);
        ALLOC(a->dv, N * KD);
        a->n_scratch = omp_get_max_threads();
        ALLOC(a->dS, attention_scratch_floats(T) * a->n_scratch);
        ALLOC(a->dlow, N * (a->max_low > 0 ? a->max_low : 1));
        int any_drop = 0;
        for (int i = 0; i < a->ad.n_loras; i++) any_drop |= a->ad.loras[i]->dropout > 0.0f;
        if (any_drop) {
            size_t wide = F > D ? F : D;
            if (QD > wide) wide = QD;
            ALLOC(a->xdrop, N * wide);
            ALLOC(a->xdrop2, N * wide);
        }
    }
#undef ALLOC
    *out = a;
    return LC_OK;
oom:
    lc_errf(err, "out of memory allocating activations for batch %d x %d", B, T);
fail:
    model_acts_free(a);
    return LC_FAIL;
}

/* ---- adapted linear module ----------------------------------------------- */

/* The bias of module mo (q/k/v only; Qwen2), of the weights or of their
 * gradients (same layout). */
static float *module_bias(const layer_weights *lw, int mo) {
    return mo == MOD_Q ? lw->bq : mo == MOD_K ? lw->bk : mo == MOD_V ? lw->bv : NULL;
}

/* The frozen base's products, float32 or stored (a tile of rows
 * dequantized at a time into a->tile, kernels/quant.h). */
// y (N, out) [+]= x (N, in) W^T + b
static void base_forward(model_acts *a, float *y, const float *x, const float *w, const qmat *q,
                         const float *b, int N, int in, int out, int accumulate) {
    if (w) matmul_forward(y, x, w, b, N, in, out, accumulate);
    else qmat_gemm_xwt_work(q, x, N, b, y, accumulate, a->tile);
}

// dx (N, in) += dy (N, out) W
static void base_backward_input(model_acts *a, float *dx, const float *dy, const float *w,
                                const qmat *q, int N, int in, int out) {
    if (w) matmul_backward_input(dx, dy, w, N, in, out);
    else qmat_gemm_dyw_work(q, dy, N, dx, a->tile);
}

/* row tok of the embedding into dst (D) */
static void embed_row(const model *m, int tok, float *dst) {
    const int D = m->cfg.dim;
    if (m->w.tok_emb) {
        memcpy(dst, m->w.tok_emb + (size_t)tok * D, sizeof(float) * D);
    } else {
        const qmat *q = &m->w.q_tok_emb;
        qrow_to_f32(q->type, (const uint8_t *)q->data + q->row_bytes * (size_t)tok, dst, D, NULL);
    }
}

// y (N, out) [+]= x (N, in) W^T + b + sum_i ws_i (x A_i^T) B_i^T + p + (x P1^T) P2^T
static void adapted_forward(const model *m, model_acts *a, layer_acts *la, int l, int mo, float *y,
                            const float *x, int N, int accumulate) {
    const adapter_set *ad = &a->ad;
    const model_config *c = &m->cfg;
    const int in = module_in_dim(c, mo), out = module_out_dim(c, mo);
    const layer_weights *lw = &m->w.layers[l];
    base_forward(a, y, x, lw->w[mo], &lw->q[mo], module_bias(lw, mo), N, in, out, accumulate);
    for (int i = 0; i < ad->n_loras; i++) {
        const lora *lr = ad->loras[i];
        const int s = l * MOD_COUNT + mo;
        if (!lr->A[s]) continue;
        float *ax = la->ax[mo][i];
        const int r = lr->rank;
        const float *xin = x;
        if (lora_uses_dropout(a, lr)) {
            lora_dropout(a->xdrop, x, (size_t)N * in, lr->dropout, a->drop_seed, l, mo, i);
            xin = a->xdrop;
        }
        // ax (N, r) = drop(x) (N, in) · A (r, in)^T
        lc_sgemm(LC_N, LC_T, N, r, in, 1.0f, xin, in, lr->A[s], in,
                    0.0f, ax, r);
        // y (N, out) += ws * ax (N, r) · B (out, r)^T
        lc_sgemm(LC_N, LC_T, N, out, r, lora_ws(lr, s), ax, r,
                    lr->B[s], r, 1.0f, y, out);
    }
    for (int i = 0; i < ad->n_cals; i++) {
        const calib *cb = ad->cals[i];
        if (!(cb->module_mask >> mo & 1)) continue;
        const int s = (cb->per_layer ? l : 0) * MOD_COUNT + mo;
        if (cb->kind == CALIB_BIAS) {
            rows_add(y, cb->p[s], N, out);
        } else {
            float *p1x = la->p1x[mo][i];
            const int k = cb->rank;
            // p1x (N, k) = x · P1^T ; y += p1x · P2^T
            lc_sgemm(LC_N, LC_T, N, k, in, 1.0f, x, in, cb->P1[s],
                        in, 0.0f, p1x, k);
            lc_sgemm(LC_N, LC_T, N, out, k, 1.0f, p1x, k, cb->P2[s],
                        k, 1.0f, y, out);
        }
    }
}

/* dx (N, in) += dy W + sum_i ws_i (dy B_i) A_i + (dy P2) P1; weight grads
 * (+=) only for tensors with a grad block. */
static void adapted_backward(model *m, model_acts *a, layer_acts *la, int l, int mo, float *dx,
                             const float *dy, const float *x, int N) {
    const adapter_set *ad = &a->ad;
    float *dlow = a->dlow;
    const model_config *c = &m->cfg;
    const int in = module_in_dim(c, mo), out = module_out_dim(c, mo);
    const layer_weights *lw = &m->w.layers[l];
    base_backward_input(a, dx, dy, lw->w[mo], &lw->q[mo], N, in, out);
    if (m->grad) { /* never with stored matrices (model_enable_grad refuses) */
        layer_weights *gw = &m->g.layers[l];
        matmul_backward_weight(gw->w[mo], module_bias(gw, mo), dy, x, N, in, out);
    }
    for (int i = 0; i < ad->n_loras; i++) {
        lora *lr = ad->loras[i];
        const int s = l * MOD_COUNT + mo;
        if (!lr->A[s]) continue;
        const int r = lr->rank;
        const float ws = lora_ws(lr, s);
        float *ax = la->ax[mo][i];
        // dlow (N, r) = dy (N, out) · B (out, r)   (d loss / d(ws * ax))
        lc_sgemm(LC_N, LC_N, N, r, out, 1.0f, dy, out, lr->B[s], r,
                    0.0f, dlow, r);
        // d loss / d coef = weight * scale * <dlow, ax>
        if (lr->gcoef) lr->gcoef[s] += lr->weight * lr->scale * (float)dot_f64(dlow, ax, (size_t)N * r);
        const float *xa = x; /* the input A saw */
        if (lora_uses_dropout(a, lr)) {
            lora_dropout(a->xdrop, x, (size_t)N * in, lr->dropout, a->drop_seed, l, mo, i);
            xa = a->xdrop;
        }
        if (lr->grad) {
            // dB (out, r) += ws * dy^T · ax ;  dA (r, in) += ws * dlow^T · xa
            lc_sgemm(LC_T, LC_N, out, r, N, ws, dy, out, ax, r, 1.0f,
                        lr->gB[s], r);
            lc_sgemm(LC_T, LC_N, r, in, N, ws, dlow, r, xa, in, 1.0f,
                        lr->gA[s], in);
        }
        if (xa != x) {
            /* dx += drop'(ws * dlow A): the same mask applied to the gradient */
            float *g = a->xdrop2;
            lc_sgemm(LC_N, LC_N, N, in, r, ws, dlow, r, lr->A[s],
                        in, 0.0f, g, in);
            lora_dropout(g, g, (size_t)N * in, lr->dropout, a->drop_seed, l, mo, i);
            axpy(dx, g, 1.0f, (size_t)N * in);
        } else {
            // dx (N, in) += ws * dlow (N, r) · A (r, in)
            lc_sgemm(LC_N, LC_N, N, in, r, ws, dlow, r, lr->A[s],
                        in, 1.0f, dx, in);
        }
    }
    for (int i = 0; i < ad->n_cals; i++) {
        calib *cb = ad->cals[i];
        if (!(cb->module_mask >> mo & 1)) continue;
        const int s = (cb->per_layer ? l : 0) * MOD_COUNT + mo;
        if (cb->kind == CALIB_BIAS) {
            if (cb->grad) colsum_add(cb->gp[s], dy, N, out);
            continue;
        }
        const int k = cb->rank;
        // dlow (N, k) = dy · P2
        lc_sgemm(LC_N, LC_N, N, k, out, 1.0f, dy, out, cb->P2[s],
                    k, 0.0f, dlow, k);
        if (cb->grad) {
            lc_sgemm(LC_T, LC_N, out, k, N, 1.0f, dy, out,
                        la->p1x[mo][i], k, 1.0f, cb->gP2[s], k);
            lc_sgemm(LC_T, LC_N, k, in, N, 1.0f, dlow, k, x, in,
                        1.0f, cb->gP1[s], in);
        }
        lc_sgemm(LC_N, LC_N, N, in, k, 1.0f, dlow, k, cb->P1[s],
                    in, 1.0f, dx, in);
    }
}

/* ---- forward --------------------------------------------------------------- */

/* Classifier and loss over the rows in a->rows, LOGIT_CHUNK rows at a time.
 * With ACTS_BACKWARD also d(loss)/d(xf) into a->dxf and, in full training,
 * d(loss)/d(lm_head) into a->dlm. Returns the summed (not averaged) loss. */
/* The softmax pieces of one row of V logits, each a loop GCC vectorises
 * (checked in the object code: a plain max loop and, before lc_expf stopped
 * calling floorf, every exp loop ran scalar). The in-place case has its
 * own function so that no loop reads and writes through two pointers that
 * may be equal. */
static float row_max(const float *z, int V) {
    float mx = z[0];
#pragma omp simd reduction(max : mx)
    for (int j = 1; j < V; j++) mx = z[j] > mx ? z[j] : mx;
    return mx;
}

static float exp_sum(const float *z, int V, float mx) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < V; j++) sum += lc_expf(z[j] - mx);
    return sum;
}

static float exp_sum_inplace(float *x, int V, float mx) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < V; j++) sum += (x[j] = lc_expf(x[j] - mx));
    return sum;
}

static float exp_sum_to(float *restrict d, const float *restrict z, int V, float mx) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < V; j++) sum += (d[j] = lc_expf(z[j] - mx));
    return sum;
}

static double classifier_forward(model_acts *a, int n_rows, int count) {
    const model *m = a->m;
    const int D = m->cfg.dim, V = m->cfg.vocab_size;
    const int bw = (a->flags & ACTS_BACKWARD) != 0;
    const float inv_count = count ? 1.0f / count : 0.0f;
    double loss = 0.0;
    for (int r0 = 0; r0 < n_rows; r0 += LOGIT_CHUNK) {
        const int ch = n_rows - r0 < LOGIT_CHUNK ? n_rows - r0 : LOGIT_CHUNK;
        const int *rows = a->rows + r0;
        for (int i = 0; i < ch; i++) memcpy(a->cx + (size_t)i * D, a->xf + (size_t)rows[i] * D, sizeof(float) * D);
        // logits (ch, V) = cx (ch, D) · lm_head (V, D)^T
        float *lg = a->logits ? a->logits + (size_t)r0 * V : a->lchunk;
        base_forward(a, lg, a->cx, m->w.lm_head, &m->w.q_lm_head, NULL, ch, D, V, 0);
        float *dl = a->lchunk; /* the gradient may overwrite the logits when not kept */
        double *row_loss = a->row_loss;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < ch; i++) {
            const int tgt = a->targets[rows[i]];
            const float *z = lg + (size_t)i * V;
            float *d = dl + (size_t)i * V;
            row_loss[i] = 0.0;
            if (tgt < 0) {
                if (bw) memset(d, 0, sizeof(float) * V);
                continue;
            }
            const float mx = row_max(z, V), zt = z[tgt];
            /* one exp per logit: e_j kept in d (which may be z itself) */
            const float sum = !bw ? exp_sum(z, V, mx) : d == z ? exp_sum_inplace(d, V, mx)
                                                               : exp_sum_to(d, z, V, mx);
            row_loss[i] = (double)mx + log((double)sum) - zt;
            if (bw) {
                const float sc = inv_count / sum;
#pragma omp simd
                for (int j = 0; j < V; j++) d[j] *= sc;
                d[tgt] -= inv_count;
            }
        }
        /* summed in row order so the loss is bit-reproducible across runs */
        for (int i = 0; i < ch; i++) loss += row_loss[i];
        if (!bw) continue;
        // dcx (ch, D) = dl (ch, V) · lm_head (V, D), scattered back to the rows
        float *dcx = a->xn; /* free scratch at this point: (N, D) >= (ch, D) */
        memset(dcx, 0, sizeof(float) * (size_t)ch * D);
        base_backward_input(a, dcx, dl, m->w.lm_head, &m->w.q_lm_head, ch, D, V);
        for (int i = 0; i < ch; i++) memcpy(a->dxf + (size_t)rows[i] * D, dcx + (size_t)i * D, sizeof(float) * D);
        if (a->dlm) matmul_backward_weight(a->dlm, NULL, dl, a->cx, ch, D, V);
    }
    return loss;
}

int model_forward(const model *m, model_acts *a, const int *tokens, const int *targets, int B, int T, float *loss, lc_err *err) {
    const model_config *c = &m->cfg;
    if (B <= 0 || T <= 0 || B > a->B || T > a->T)
        return lc_errf(err, "batch %d x %d does not fit the workspace (%d x %d)", B, T, a->B, a->T);
    const int N = B * T, D = c->dim, L = c->n_layers, V = c->vocab_size;
    const int H = c->n_heads, Hkv = c->n_kv_heads, hd = c->head_dim, F = c->hidden_dim;
    int count = 0;
    for (int n = 0; n < N; n++) {
        if (tokens[n] < 0 || tokens[n] >= V)
            return lc_errf(err, "token id %d at position %d is outside the vocabulary [0, %d)",
                           tokens[n], n, V);
        if (targets && (targets[n] < -1 || targets[n] >= V))
            return lc_errf(err, "target id %d at position %d is outside the vocabulary [0, %d)",
                           targets[n], n, V);
        a->tokens[n] = tokens[n];
        a->targets[n] = targets ? targets[n] : -1;
        count += a->targets[n] >= 0;
    }
    a->cur_B = B, a->cur_T = T;
    rope_tables(a->cos_t, a->sin_t, m->rope_inv_freq, 0, T, hd);

    // x = tok_emb[tokens]
    float *x0 = a->layers[0].x_in;
    for (int n = 0; n < N; n++) embed_row(m, tokens[n], x0 + (size_t)n * D);

    for (int l = 0; l < L; l++) {
        layer_acts *la = &a->layers[l];
        const layer_weights *lw = &m->w.layers[l];
        rmsnorm_forward(a->xn, la->rstd1, la->x_in, lw->attn_norm, N, D, c->norm_eps);
        adapted_forward(m, a, la, l, MOD_Q, la->q, a->xn, N, 0);
        adapted_forward(m, a, la, l, MOD_K, la->k, a->xn, N, 0);
        adapted_forward(m, a, la, l, MOD_V, la->v, a->xn, N, 0);
        rope_apply(la->q, a->cos_t, a->sin_t, B, T, H, hd, 0);
        rope_apply(la->k, a->cos_t, a->sin_t, B, T, Hkv, hd, 0);
        attention_forward(la->att, la->probs, la->q, la->k, la->v, B, T, H, Hkv, hd);
        memcpy(la->x_mid, la->x_in, sizeof(float) * (size_t)N * D);
        adapted_forward(m, a, la, l, MOD_O, la->x_mid, la->att, N, 1);
        rmsnorm_forward(a->xn, la->rstd2, la->x_mid, lw->ffn_norm, N, D, c->norm_eps);
        adapted_forward(m, a, la, l, MOD_GATE, la->gate, a->xn, N, 0);
        adapted_forward(m, a, la, l, MOD_UP, la->up, a->xn, N, 0);
        swiglu_forward(a->h, la->gate, la->up, (size_t)N * F);
        float *next = l == L - 1 ? a->x_final : a->layers[l + 1].x_in;
        memcpy(next, la->x_mid, sizeof(float) * (size_t)N * D);
        adapted_forward(m, a, la, l, MOD_DOWN, next, a->h, N, 1);
    }
    rmsnorm_forward(a->xf, a->rstd_f, a->x_final, m->w.final_norm, N, D, c->norm_eps);

    int n_rows = 0;
    for (int n = 0; n < N; n++)
        if ((a->flags & ACTS_KEEP_LOGITS) || a->targets[n] >= 0) a->rows[n_rows++] = n;
    if (a->flags & ACTS_BACKWARD) {
        memset(a->dxf, 0, sizeof(float) * (size_t)N * D);
        if (a->dlm) memset(a->dlm, 0, sizeof(float) * (size_t)V * D);
    }
    double total = classifier_forward(a, n_rows, count);
    double mean = count ? total / count : 0.0;
    if (loss) *loss = (float)mean;
    if (!isfinite(mean))
        return lc_errf(err, "non-finite loss (%g) over %d target tokens", mean, count);
    return LC_OK;
}

/* ---- backward ---------------------------------------------------------------- */

void model_backward(model *m, model_acts *a, float grad_scale) {
    const model_config *c = &m->cfg;
    const int B = a->cur_B, T = a->cur_T, N = B * T;
    const int D = c->dim, L = c->n_layers, H = c->n_heads, Hkv = c->n_kv_heads, hd = c->head_dim;
    const int F = c->hidden_dim, QD = H * hd;
    if (!(a->flags & ACTS_BACKWARD) || N == 0) return;

    if (grad_scale != 1.0f)
        for (size_t i = 0; i < (size_t)N * D; i++) a->dxf[i] *= grad_scale;
    if (m->grad && a->dlm) axpy(m->g.lm_head, a->dlm, grad_scale, (size_t)c->vocab_size * D);

    // final norm: dres = d x_final
    memset(a->dres, 0, sizeof(float) * (size_t)N * D);
    rmsnorm_backward(a->dres, m->grad ? m->g.final_norm : NULL, a->dxf, a->x_final,
                     m->w.final_norm, a->rstd_f, N, D);

    for (int l = L - 1; l >= 0; l--) {
        layer_acts *la = &a->layers[l];
        const layer_weights *lw = &m->w.layers[l];
        layer_weights *gw = m->grad ? &m->g.layers[l] : NULL;
        /* MLP: x_out = x_mid + down(silu(gate) * up) */
        swiglu_forward(a->h, la->gate, la->up, (size_t)N * F);
        memset(a->dh, 0, sizeof(float) * (size_t)N * F);
        adapted_backward(m, a, la, l, MOD_DOWN, a->dh, a->dres, a->h, N);
        swiglu_backward(a->dgate, a->dup, a->dh, la->gate, la->up, (size_t)N * F);
        rmsnorm_forward(a->xn, NULL, la->x_mid, lw->ffn_norm, N, D, c->norm_eps);
        memset(a->dxn, 0, sizeof(float) * (size_t)N * D);
        adapted_backward(m, a, la, l, MOD_GATE, a->dxn, a->dgate, a->xn, N);
        adapted_backward(m, a, la, l, MOD_UP, a->dxn, a->dup, a->xn, N);
        rmsnorm_backward(a->dres, gw ? gw->ffn_norm : NULL, a->dxn, la->x_mid, lw->ffn_norm,
                         la->rstd2, N, D);
        /* attention: x_mid = x_in + o(att) */
        memset(a->datt, 0, sizeof(float) * (size_t)N * QD);
        adapted_backward(m, a, la, l, MOD_O, a->datt, a->dres, la->att, N);
        attention_backward(a->dq, a->dk, a->dv, a->datt, la->probs, la->q, la->k, la->v, a->dS,
                           a->n_scratch, B, T, H, Hkv, hd);
        rope_apply(a->dq, a->cos_t, a->sin_t, B, T, H, hd, 1);
        rope_apply(a->dk, a->cos_t, a->sin_t, B, T, Hkv, hd, 1);
        rmsnorm_forward(a->xn, NULL, la->x_in, lw->attn_norm, N, D, c->norm_eps);
        memset(a->dxn, 0, sizeof(float) * (size_t)N * D);
        adapted_backward(m, a, la, l, MOD_Q, a->dxn, a->dq, a->xn, N);
        adapted_backward(m, a, la, l, MOD_K, a->dxn, a->dk, a->xn, N);
        adapted_backward(m, a, la, l, MOD_V, a->dxn, a->dv, a->xn, N);
        rmsnorm_backward(a->dres, gw ? gw->attn_norm : NULL, a->dxn, la->x_in, lw->attn_norm,
                         la->rstd1, N, D);
    }
    // embedding: scatter-add the rows (full training only)
    if (m->grad)
        for (int n = 0; n < N; n++)
            axpy(m->g.tok_emb + (size_t)a->tokens[n] * D, a->dres + (size_t)n * D, 1.0f, D);
}

/* ---- decoding with a KV cache ------------------------------------------------ */

/* One code path runs n token rows through the decoder: a single step (n = 1),
 * a prefill chunk (n prompt tokens of one sequence, at consecutive positions
 * of one KV cache) and a batched step (one token of each of n sequences,
 * each with its own decoder and KV cache). Every per-row operation is the
 * one a single step runs: matvec_batch / qmat_matvec_batch with nb = n give
 * each row the bits of a one-row product (ops.h, quant.h), and the norms,
 * RoPE, attention and SwiGLU are called row by row with the same arguments.
 * So the logits of a row do not depend on n, on the other rows or on the
 * threads: prefill equals token-by-token stepping and a batch equals
 * sequential decoding bit for bit (tests/test_prefill.c, test_eval_batch.c). */

/* Scratch for up to cap rows. */
typedef struct {
    int cap;
    float *x, *xn, *q, *k, *v, *att, *hb, *hb2, *low, *cs, *sn;
    float *logits; /* (cap, V) for batched steps; NULL until needed */
    int logits_cap;
} dec_rows;

struct model_decoder {
    const model *m;
    adapter_set ad;
    int max_seq;
    float *kc, *vc; /* (L, max_seq, Hkv*hd) */
    float *logits;  /* (V) */
    float *scores;  /* (n_scores, max_seq): one attention row per thread */
    int n_scores;
    int low_cap; /* the largest adapter rank (at least 1) */
    dec_rows r;  /* one row from init; grown by prefill and batched steps */
    int failed;  /* a stored matrix's product ran out of memory this call */
};

static void dec_rows_free(dec_rows *r) {
    free(r->x); free(r->xn); free(r->q); free(r->k); free(r->v); free(r->att);
    free(r->hb); free(r->hb2); free(r->low); free(r->cs); free(r->sn); free(r->logits);
    memset(r, 0, sizeof *r);
}

/* Makes room for n rows (and n logits rows when want_logits). */
static int dec_rows_reserve(model_decoder *d, int n, int want_logits, lc_err *err) {
    const model_config *c = &d->m->cfg;
    dec_rows *r = &d->r;
    if (n > r->cap || r->low == NULL) {
        const size_t N = (size_t)n, QD = (size_t)c->n_heads * c->head_dim,
                     KD = (size_t)c->n_kv_heads * c->head_dim, half = (size_t)c->head_dim / 2;
        dec_rows nr = {0};
        nr.cap = n;
        nr.x = calloc(N * c->dim, sizeof(float));
        nr.xn = calloc(N * c->dim, sizeof(float));
        nr.q = calloc(N * QD, sizeof(float));
        nr.k = calloc(N * KD, sizeof(float));
        nr.v = calloc(N * KD, sizeof(float));
        nr.att = calloc(N * QD, sizeof(float));
        nr.hb = calloc(N * c->hidden_dim, sizeof(float));
        nr.hb2 = calloc(N * c->hidden_dim, sizeof(float));
        nr.low = calloc(N * d->low_cap, sizeof(float));
        nr.cs = calloc(N * half, sizeof(float));
        nr.sn = calloc(N * half, sizeof(float));
        if (!nr.x || !nr.xn || !nr.q || !nr.k || !nr.v || !nr.att || !nr.hb || !nr.hb2 || !nr.low ||
            !nr.cs || !nr.sn) {
            dec_rows_free(&nr);
            return lc_errf(err, "out of memory allocating decoder scratch for %d rows", n);
        }
        nr.logits = r->logits, nr.logits_cap = r->logits_cap;
        r->logits = NULL;
        dec_rows_free(r);
        *r = nr;
    }
    if (want_logits && n > r->logits_cap) {
        float *p = realloc(r->logits, sizeof(float) * (size_t)n * c->vocab_size);
        if (!p) return lc_errf(err, "out of memory allocating logits for %d rows", n);
        r->logits = p, r->logits_cap = n;
    }
    return LC_OK;
}

void model_decoder_free(model_decoder *d) {
    if (!d) return;
    free(d->kc); free(d->vc); free(d->logits); free(d->scores);
    dec_rows_free(&d->r);
    free(d);
}

static int adapters_low_rank(const adapter_set *ad) {
    int low = 1;
    for (int i = 0; ad && i < ad->n_loras; i++) low = ad->loras[i]->rank > low ? ad->loras[i]->rank : low;
    for (int i = 0; ad && i < ad->n_cals; i++) low = ad->cals[i]->rank > low ? ad->cals[i]->rank : low;
    return low;
}

int model_decoder_init(model_decoder **out, const model *m, const adapter_set *ad, int max_seq,
                       lc_err *err) {
    *out = NULL;
    const model_config *c = &m->cfg;
    if (max_seq <= 0) return lc_errf(err, "max_seq must be positive, found %d", max_seq);
    if (adapter_set_validate(ad, m, err)) return LC_FAIL;
    model_decoder *d = calloc(1, sizeof *d);
    if (!d) return lc_errf(err, "out of memory");
    d->m = m;
    if (ad) d->ad = *ad;
    d->max_seq = max_seq;
    size_t KD = (size_t)c->n_kv_heads * c->head_dim;
    size_t kv = (size_t)c->n_layers * max_seq * KD;
    d->low_cap = adapters_low_rank(ad);
    d->n_scores = omp_get_max_threads() > 0 ? omp_get_max_threads() : 1;
    d->kc = calloc(kv, sizeof(float));
    d->vc = calloc(kv, sizeof(float));
    d->logits = calloc(c->vocab_size, sizeof(float));
    d->scores = calloc((size_t)d->n_scores * max_seq, sizeof(float));
    if (!d->kc || !d->vc || !d->logits || !d->scores || dec_rows_reserve(d, 1, 0, err)) {
        model_decoder_free(d);
        return lc_errf(err, "out of memory allocating a KV cache for %d positions", max_seq);
    }
    *out = d;
    return LC_OK;
}

int model_decoder_set_adapters(model_decoder *d, const adapter_set *ad, lc_err *err) {
    if (adapter_set_validate(ad, d->m, err)) return LC_FAIL;
    int low = adapters_low_rank(ad);
    if (low > d->low_cap) {
        float *p = realloc(d->r.low, sizeof(float) * (size_t)low * d->r.cap);
        if (!p) return lc_errf(err, "out of memory");
        d->r.low = p, d->low_cap = low;
    }
    if (ad) d->ad = *ad;
    else memset(&d->ad, 0, sizeof d->ad);
    return LC_OK;
}

float *model_decoder_logits(model_decoder *d) { return d->logits; }

// Y (n, out) += sum_i ws_i (X A_i^T) B_i^T + p + (X P1^T) P2^T: the adapters'
// part of one module for n rows, after the base X W^T + b. Row by row the
// step's arithmetic: low = A x, low *= ws, y += B low (one-row products).
static void adapters_rows(model_decoder *d, int l, int mo, float *Y, const float *X, int n) {
    const model_config *c = &d->m->cfg;
    const int in = module_in_dim(c, mo), out = module_out_dim(c, mo);
    float *low = d->r.low;
    for (int i = 0; i < d->ad.n_loras; i++) {
        const lora *lr = d->ad.loras[i];
        const int s = l * MOD_COUNT + mo;
        if (!lr->A[s]) continue;
        const int r = lr->rank;
        const float ws = lora_ws(lr, s);
        matvec_batch(&(matvec_job){low, lr->A[s], X, NULL, in, r, 0, n}, 1);
        for (size_t j = 0; j < (size_t)n * r; j++) low[j] *= ws;
        matvec_batch(&(matvec_job){Y, lr->B[s], low, NULL, r, out, 1, n}, 1);
    }
    for (int i = 0; i < d->ad.n_cals; i++) {
        const calib *cb = d->ad.cals[i];
        if (!(cb->module_mask >> mo & 1)) continue;
        const int s = (cb->per_layer ? l : 0) * MOD_COUNT + mo;
        if (cb->kind == CALIB_BIAS) {
            for (int b = 0; b < n; b++) axpy(Y + (size_t)b * out, cb->p[s], 1.0f, out);
        } else {
            matvec_batch(&(matvec_job){low, cb->P1[s], X, NULL, in, cb->rank, 0, n}, 1);
            matvec_batch(&(matvec_job){Y, cb->P2[s], low, NULL, cb->rank, out, 1, n}, 1);
        }
    }
}

// Y_j (n, out) [+]= X W_j^T + b_j + adapters, for modules reading the same
// X (n, in): the float32 products of all of them share one parallel region
// (q, k, v; gate, up)
static void adapted_rows(model_decoder *d, int l, int n_mod, const int *mo, float *const *Y,
                         const float *X, int n, int accumulate) {
    const model_config *c = &d->m->cfg;
    const layer_weights *lw = &d->m->w.layers[l];
    matvec_job jobs[3] = {{0}}; /* n_mod <= 3 */
    int nj = 0;
    for (int i = 0; i < n_mod; i++) {
        if (lw->w[mo[i]])
            jobs[nj++] = (matvec_job){Y[i], lw->w[mo[i]], X, module_bias(lw, mo[i]), module_in_dim(c, mo[i]),
                                      module_out_dim(c, mo[i]), accumulate, n};
        else /* stored: quantized matrix-vector kernels; fails only out of memory */
            d->failed |= qmat_matvec_batch(&lw->q[mo[i]], X, n, module_bias(lw, mo[i]), Y[i], accumulate, NULL);
    }
    if (nj) matvec_batch(jobs, nj);
    if (d->ad.n_loras || d->ad.n_cals)
        for (int i = 0; i < n_mod; i++) adapters_rows(d, l, mo[i], Y[i], X, n);
}

// one head of decoding attention: softmax(q k^T / sqrt(hd)) over positions
// 0..pos, then · v. Inlined with hd a constant for the common head sizes, so
// the short dot products and updates compile to whole vectors.
static inline __attribute__((always_inline)) void
decode_head_hd(float *ah, float *sc, const float *qh, const float *kc, const float *vc, int pos,
               int KD, const int hd, float scale) {
    float mx = -INFINITY;
    for (int t = 0; t <= pos; t++) {
        const float *kt = kc + (size_t)t * KD;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < hd; i++) s += qh[i] * kt[i];
        sc[t] = s * scale;
        mx = sc[t] > mx ? sc[t] : mx;
    }
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int t = 0; t <= pos; t++) {
        sc[t] = lc_expf(sc[t] - mx);
        sum += sc[t];
    }
    const float inv = 1.0f / sum;
    memset(ah, 0, sizeof(float) * hd);
    for (int t = 0; t <= pos; t++) {
        const float *vt = vc + (size_t)t * KD;
        const float p = sc[t] * inv;
#pragma omp simd
        for (int i = 0; i < hd; i++) ah[i] += p * vt[i];
    }
}

/* Out of line, so every (row, head) runs the same code wherever it is called. */
__attribute__((noinline)) static void decode_head(float *ah, float *sc, const float *qh, const float *kc,
                                                  const float *vc, int pos, int KD, int hd, float scale) {
    switch (hd) {
    case 8: decode_head_hd(ah, sc, qh, kc, vc, pos, KD, 8, scale); break;
    case 16: decode_head_hd(ah, sc, qh, kc, vc, pos, KD, 16, scale); break;
    case 32: decode_head_hd(ah, sc, qh, kc, vc, pos, KD, 32, scale); break;
    case 48: decode_head_hd(ah, sc, qh, kc, vc, pos, KD, 48, scale); break;
    case 64: decode_head_hd(ah, sc, qh, kc, vc, pos, KD, 64, scale); break;
    case 128: decode_head_hd(ah, sc, qh, kc, vc, pos, KD, 128, scale); break;
    default: decode_head_hd(ah, sc, qh, kc, vc, pos, KD, hd, scale); break;
    }
}

/* Below this many q·k multiply-adds per layer, attention runs on the calling
 * thread: a parallel region costs more than it saves. */
#define DECODE_ATT_PARALLEL_MIN (1 << 15)

/* Prompt rows per prefill pass: the products then read each weight once per
 * this many tokens. */
#define DECODE_PREFILL_CHUNK 64

/* Runs n rows: row i is token tok[i] at position pos[i] of sequence own[i]
 * (own NULL: all rows are w's, e.g. a prefill chunk). w holds the scratch
 * (capacity >= n, checked by the callers); all own[i] share w's model and
 * adapters. Logits: out_mode 0 none, 1 the last row only into w->logits,
 * 2 every row into own[i]->logits (own[0] = w when n == 1). Returns LC_FAIL
 * when a stored matrix's product ran out of memory. */
static int decode_rows(model_decoder *w, model_decoder *const *own, const int *tok, const int *pos, int n,
                       int out_mode) {
    const model *m = w->m;
    const model_config *c = &m->cfg;
    const int D = c->dim, H = c->n_heads, Hkv = c->n_kv_heads, hd = c->head_dim, F = c->hidden_dim;
    const int KD = Hkv * hd, QD = H * hd, group = H / Hkv, half = hd / 2, V = c->vocab_size;
    dec_rows *r = &w->r;
    w->failed = 0;
#define OWN(i) (own ? own[i] : w)
    size_t att_work = 0;
    for (int i = 0; i < n; i++) {
        embed_row(m, tok[i], r->x + (size_t)i * D);
        rope_tables(r->cs + (size_t)i * half, r->sn + (size_t)i * half, m->rope_inv_freq, pos[i], 1, hd);
        att_work += (size_t)H * (pos[i] + 1) * hd;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    const int att_parallel = att_work >= DECODE_ATT_PARALLEL_MIN && omp_get_max_threads() > 1 && w->n_scores > 1;
    static const int QKV[3] = {MOD_Q, MOD_K, MOD_V}, GATE_UP[2] = {MOD_GATE, MOD_UP};
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *lw = &m->w.layers[l];
        const size_t lo = (size_t)l * w->max_seq * KD; /* layer l in every decoder (same max_seq) */
        for (int i = 0; i < n; i++)
            rmsnorm_forward(r->xn + (size_t)i * D, NULL, r->x + (size_t)i * D, lw->attn_norm, 1, D, c->norm_eps);
        adapted_rows(w, l, 3, QKV, (float *const[]){r->q, r->k, r->v}, r->xn, n, 0);
        for (int i = 0; i < n; i++) {
            const float *cs = r->cs + (size_t)i * half, *sn = r->sn + (size_t)i * half;
            float *ki = r->k + (size_t)i * KD;
            rope_apply(r->q + (size_t)i * QD, cs, sn, 1, 1, H, hd, 0);
            rope_apply(ki, cs, sn, 1, 1, Hkv, hd, 0);
            model_decoder *o = OWN(i);
            memcpy(o->kc + lo + (size_t)pos[i] * KD, ki, sizeof(float) * KD);
            memcpy(o->vc + lo + (size_t)pos[i] * KD, r->v + (size_t)i * KD, sizeof(float) * KD);
        }
        /* every row's keys and values are in place: row i attends to its
         * sequence's positions 0..pos[i] (causal within a prefill chunk) */
        const int nh = n * H;
        if (att_parallel) {
#pragma omp parallel for schedule(dynamic, 4) num_threads(w->n_scores)
            for (int ih = 0; ih < nh; ih++) {
                const int i = ih / H, h = ih % H;
                const model_decoder *o = OWN(i);
                decode_head(r->att + (size_t)i * QD + (size_t)h * hd, w->scores + (size_t)omp_get_thread_num() * w->max_seq,
                            r->q + (size_t)i * QD + (size_t)h * hd, o->kc + lo + (size_t)(h / group) * hd,
                            o->vc + lo + (size_t)(h / group) * hd, pos[i], KD, hd, scale);
            }
        } else {
            for (int ih = 0; ih < nh; ih++) {
                const int i = ih / H, h = ih % H;
                const model_decoder *o = OWN(i);
                decode_head(r->att + (size_t)i * QD + (size_t)h * hd, w->scores, r->q + (size_t)i * QD + (size_t)h * hd,
                            o->kc + lo + (size_t)(h / group) * hd, o->vc + lo + (size_t)(h / group) * hd, pos[i],
                            KD, hd, scale);
            }
        }
        adapted_rows(w, l, 1, (const int[]){MOD_O}, (float *const[]){r->x}, r->att, n, 1);
        for (int i = 0; i < n; i++)
            rmsnorm_forward(r->xn + (size_t)i * D, NULL, r->x + (size_t)i * D, lw->ffn_norm, 1, D, c->norm_eps);
        adapted_rows(w, l, 2, GATE_UP, (float *const[]){r->hb, r->hb2}, r->xn, n, 0);
        for (int i = 0; i < n; i++)
            swiglu_forward(r->hb + (size_t)i * F, r->hb + (size_t)i * F, r->hb2 + (size_t)i * F, F);
        adapted_rows(w, l, 1, (const int[]){MOD_DOWN}, (float *const[]){r->x}, r->hb, n, 1);
    }
    if (out_mode) {
        const int first = out_mode == 1 ? n - 1 : 0, nl = n - first;
        float *xs = r->x + (size_t)first * D;
        for (int i = 0; i < nl; i++) rmsnorm_forward(xs + (size_t)i * D, NULL, xs + (size_t)i * D, m->w.final_norm, 1, D, c->norm_eps);
        float *lg = nl == 1 ? OWN(first)->logits : r->logits;
        if (m->w.lm_head) matvec_batch(&(matvec_job){lg, m->w.lm_head, xs, NULL, D, V, 0, nl}, 1);
        else w->failed |= qmat_matvec_batch(&m->w.q_lm_head, xs, nl, NULL, lg, 0, NULL);
        if (nl > 1)
            for (int i = 0; i < nl; i++) memcpy(OWN(first + i)->logits, lg + (size_t)i * V, sizeof(float) * V);
    }
#undef OWN
    return w->failed ? LC_FAIL : LC_OK;
}

float *model_decoder_step(model_decoder *d, int token, int pos) {
    const model_config *c = &d->m->cfg;
    if (token < 0 || token >= c->vocab_size || pos < 0 || pos >= d->max_seq) return NULL;
    return decode_rows(d, NULL, &token, &pos, 1, 2) ? NULL : d->logits;
}

float *model_decoder_prefill(model_decoder *d, const int *ids, int n, int pos0, lc_err *err) {
    const model_config *c = &d->m->cfg;
    if (n <= 0) {
        lc_errf(err, "prefill: no tokens (n = %d)", n);
        return NULL;
    }
    if (pos0 < 0 || pos0 > d->max_seq - n) {
        lc_errf(err, "prefill: positions %d..%d do not fit the decoder's %d positions", pos0, pos0 + n - 1,
                d->max_seq);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size) {
            lc_errf(err, "prefill: token %d at %d is not in [0, %d)", ids[i], i, c->vocab_size);
            return NULL;
        }
    const int chunk = n < DECODE_PREFILL_CHUNK ? n : DECODE_PREFILL_CHUNK;
    if (dec_rows_reserve(d, chunk, 0, err)) return NULL;
    int pos[DECODE_PREFILL_CHUNK];
    for (int p0 = 0; p0 < n; p0 += chunk) {
        const int k = n - p0 < chunk ? n - p0 : chunk;
        for (int i = 0; i < k; i++) pos[i] = pos0 + p0 + i;
        if (decode_rows(d, NULL, ids + p0, pos, k, p0 + k == n ? 1 : 0)) {
            lc_errf(err, "prefill: out of memory in a stored matrix's product");
            return NULL;
        }
    }
    return d->logits;
}

int model_decoder_step_batch(model_decoder *const *ds, const int *tokens, const int *pos, int n, lc_err *err) {
    if (n <= 0) return lc_errf(err, "batched step: no sequences (n = %d)", n);
    model_decoder *w = ds[0];
    const model_config *c = &w->m->cfg;
    for (int i = 0; i < n; i++) {
        const model_decoder *d = ds[i];
        int same = d->m == w->m && d->max_seq == w->max_seq && d->ad.n_loras == w->ad.n_loras &&
                   d->ad.n_cals == w->ad.n_cals;
        for (int a = 0; same && a < w->ad.n_loras; a++) same = d->ad.loras[a] == w->ad.loras[a];
        for (int a = 0; same && a < w->ad.n_cals; a++) same = d->ad.cals[a] == w->ad.cals[a];
        if (!same)
            return lc_errf(err, "batched step: decoder %d has another model, size or adapter set than decoder 0", i);
        for (int j = 0; j < i; j++)
            if (ds[j] == d) return lc_errf(err, "batched step: decoder %d appears twice", i);
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return lc_errf(err, "batched step: token %d of sequence %d is not in [0, %d)", tokens[i], i, c->vocab_size);
        if (pos[i] < 0 || pos[i] >= d->max_seq)
            return lc_errf(err, "batched step: position %d of sequence %d is outside the decoder's %d", pos[i], i,
                           d->max_seq);
    }
    if (dec_rows_reserve(w, n, n > 1, err)) return LC_FAIL;
    if (decode_rows(w, ds, tokens, pos, n, 2))
        return lc_errf(err, "batched step: out of memory in a stored matrix's product");
    return LC_OK;
}
