/* interop.c: PEFT and GGUF LoRA exports (interop.h, export/INTEROP.md). */
#include "interop.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loaders.h"
#include "tensor_file.h"

/* ---- merged LoRA + LC++ as one LoRA ----------------------------------- */

int lora_append_calib(const lora *merged, const calib *cb, const model_config *c, lora *out,
                      lc_err *err) {
    memset(out, 0, sizeof *out);
    if (!merged && !cb) return lc_errf(err, "export: neither a LoRA nor a calibration to export");
    const char *cname = cb ? (cb->name[0] ? cb->name : "calibration") : "";
    const char *lname = merged ? (merged->name[0] ? merged->name : "LoRA") : "";
    if (cb && cb->kind == CALIB_BIAS)
        return lc_errf(err,
                       "calibration '%s' is a bias calibration (LC): a bias cannot be expressed as "
                       "a LoRA, since B (A x) has no constant term; export it in the project's "
                       "bundle format (which carries it) or use an LC++ (lowrank) calibration",
                       cname);
    if (cb && cb->kind != CALIB_LOWRANK)
        return lc_errf(err, "calibration '%s': unknown kind %d", cname, (int)cb->kind);
    if (merged && merged->n_layers != c->n_layers)
        return lc_errf(err, "LoRA '%s' has %d layers, the model has %d", lname, merged->n_layers,
                       c->n_layers);
    if (cb && cb->n_slots != 1 && cb->n_slots != c->n_layers)
        return lc_errf(err, "calibration '%s' has %d per-layer slots, the model has %d layers",
                       cname, cb->n_slots, c->n_layers);
    if (merged && merged->rank <= 0)
        return lc_errf(err, "LoRA '%s' has rank %d", lname, merged->rank);
    if (cb && cb->rank <= 0) return lc_errf(err, "calibration '%s' has rank %d", cname, cb->rank);

    const int L = c->n_layers;
    const int r0 = merged ? merged->rank : 0, k = cb ? cb->rank : 0, R = r0 + k;
    unsigned mask = (merged ? merged->module_mask : 0u) | (cb ? cb->module_mask : 0u);
    mask &= MOD_MASK_ALL;
    unsigned char *on = lc_calloc((size_t)L, 1, err);
    if (!on) return LC_FAIL;
    for (int i = 0; i < L; i++) on[i] = cb ? 1 : (merged->layer_on && merged->layer_on[i] != 0);

    if (lora_init(out, c, R, (float)R, 0, mask, on, err)) {
        free(on);
        if (merged && cb)
            return lc_err_prefix(err, "LoRA '%s' (rank %d) + LC++ '%s' (rank %d) as one LoRA of "
                                      "rank %d: ", lname, r0, cname, k, R);
        return lc_err_prefix(err, "exporting '%s' as one LoRA: ", merged ? lname : cname);
    }
    free(on);
    if (merged && cb)
        snprintf(out->name, sizeof out->name, "%.60s+%.60s", lname, cname);
    else
        snprintf(out->name, sizeof out->name, "%s", merged ? lname : cname);

    for (int l = 0; l < L; l++) {
        if (!out->layer_on[l]) continue;
        for (int m = 0; m < MOD_COUNT; m++) {
            if (!(mask >> m & 1)) continue;
            const size_t s = (size_t)l * MOD_COUNT + m;
            const int in = module_in_dim(c, m), od = module_out_dim(c, m);
            float *A = out->A[s], *B = out->B[s];
            if (merged && merged->A[s] && merged->B[s]) {
                double f = (double)merged->weight * (double)merged->scale;
                if (merged->coef) f *= (double)merged->coef[s];
                memcpy(A, merged->A[s], sizeof(float) * (size_t)r0 * in);
                const float *Bm = merged->B[s];
                for (int o = 0; o < od; o++)
                    for (int j = 0; j < r0; j++)
                        B[(size_t)o * R + j] = (float)(f * (double)Bm[(size_t)o * r0 + j]);
            }
            if (cb && (cb->module_mask >> m & 1)) {
                const size_t cs = (size_t)(cb->per_layer ? l : 0) * MOD_COUNT + m;
                const float *P1 = cb->P1[cs], *P2 = cb->P2[cs];
                if (!P1 || !P2) {
                    lora_free(out);
                    return lc_errf(err, "calibration '%s': module %s has no P1/P2 in slot %zu",
                                   cname, module_name(m), cs / MOD_COUNT);
                }
                memcpy(A + (size_t)r0 * in, P1, sizeof(float) * (size_t)k * in);
                for (int o = 0; o < od; o++)
                    memcpy(B + (size_t)o * R + r0, P2 + (size_t)o * k, sizeof(float) * (size_t)k);
            }
        }
    }
    return LC_OK;
}

/* ---- PEFT ------------------------------------------------------------- */

int peft_write_lora(const lora *l, const model_config *c, const char *dir, lc_err *err) {
    if (l->weight == 1.0f && !l->coef) return lora_save_peft(l, dir, err);
    lora folded;
    if (lora_append_calib(l, NULL, c, &folded, err)) return lc_err_prefix(err, "%s: ", dir);
    int rc = lora_save_peft(&folded, dir, err);
    lora_free(&folded);
    return rc;
}

/* ---- GGUF ------------------------------------------------------------- */

/* gguf_metadata_value_type and ggml_type values (ggml docs/gguf.md). */
enum { GGUF_U32 = 4, GGUF_F32 = 6, GGUF_STRING = 8 };
enum { GGML_F32 = 0, GGML_F16 = 1 };
#define GGUF_VERSION 3
#define GGUF_ALIGN 32
#define GGML_QUANT_VERSION 2 /* gguf-py constants.GGML_QUANT_VERSION */

/* gguf-py TENSOR_NAMES for our seven projections. */
static const char *const GGUF_MOD[MOD_COUNT] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                "ffn_gate", "ffn_up", "ffn_down"};

int gguf_lora_arch(const model_config *c, const char **gguf_arch, int *permute_qk, lc_err *err) {
    if (!strcmp(c->arch, "llama") || !strcmp(c->arch, "mistral")) {
        *gguf_arch = "llama";
        *permute_qk = 1;
        return LC_OK;
    }
    if (!strcmp(c->arch, "qwen2")) {
        *gguf_arch = "qwen2";
        *permute_qk = 0;
        return LC_OK;
    }
    return lc_errf(err, "architecture '%s': no GGUF LoRA mapping (llama, mistral, qwen2 are known)",
                   c->arch);
}

void gguf_permute_rows(const float *in, float *out, int rows, int cols, int n_head) {
    const int hd = rows / n_head, half = hd / 2;
    for (int h = 0; h < n_head; h++)
        for (int t = 0; t < 2; t++)
            for (int j = 0; j < half; j++)
                memcpy(out + ((size_t)h * hd + 2 * j + t) * cols,
                       in + ((size_t)h * hd + (size_t)t * half + j) * cols, sizeof(float) * cols);
}

/* Little-endian byte buffer for the header. */
typedef struct {
    unsigned char *p;
    size_t n, cap;
    int oom;
} bbuf;

static void bb_put(bbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void bb_u32(bbuf *b, uint32_t v) {
    unsigned char x[4];
    for (int i = 0; i < 4; i++) x[i] = (unsigned char)(v >> (8 * i));
    bb_put(b, x, 4);
}

static void bb_u64(bbuf *b, uint64_t v) {
    unsigned char x[8];
    for (int i = 0; i < 8; i++) x[i] = (unsigned char)(v >> (8 * i));
    bb_put(b, x, 8);
}

static void bb_f32(bbuf *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    bb_u32(b, u);
}

static void bb_str(bbuf *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}

static void kv_str(bbuf *b, const char *k, const char *v) {
    bb_str(b, k);
    bb_u32(b, GGUF_STRING);
    bb_str(b, v);
}

static uint64_t align_up(uint64_t x) { return (x + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN; }

/* One tensor of the file. */
typedef struct {
    char name[96];
    int layer, mod, is_b;
    uint64_t ne0, ne1; /* ggml order: ne0 = columns (innermost) */
    uint64_t offset;   /* relative to the data section */
} gtensor;

/* The stored values of one tensor (float32, before the F16 cast). */
static void tensor_values(const lora *l, const model_config *c, const gtensor *t, int permute,
                         float *dst, float *tmp) {
    const size_t s = (size_t)t->layer * MOD_COUNT + t->mod;
    const int r = l->rank, in = module_in_dim(c, t->mod), od = module_out_dim(c, t->mod);
    if (!t->is_b) {
        memcpy(dst, l->A[s], sizeof(float) * (size_t)r * in);
        return;
    }
    /* alpha carries scale; weight and coef go into B (exactly 1 for a plain LoRA). */
    double f = l->weight;
    if (l->coef) f *= l->coef[s];
    if (l->scale == 0.0f) f = 0.0; /* alpha 0 would mean scale 1 to llama.cpp */
    const float *src = l->B[s];
    if (f != 1.0) {
        for (size_t i = 0; i < (size_t)od * r; i++) tmp[i] = (float)(f * (double)src[i]);
        src = tmp;
    }
    if (permute && (t->mod == MOD_Q || t->mod == MOD_K)) {
        gguf_permute_rows(src, dst, od, r, t->mod == MOD_Q ? c->n_heads : c->n_kv_heads);
    } else {
        memcpy(dst, src, sizeof(float) * (size_t)od * r);
    }
}

int gguf_write_lora(const lora *l, const model_config *c, const char *path, int f16, lc_err *err) {
    const char *arch = NULL;
    int permute = 0;
    if (gguf_lora_arch(c, &arch, &permute, err)) return lc_err_prefix(err, "%s: ", path);
    if (l->n_layers != c->n_layers)
        return lc_errf(err, "%s: LoRA '%s' has %d layers, the model has %d", path, l->name,
                       l->n_layers, c->n_layers);
    if (l->rank <= 0) return lc_errf(err, "%s: LoRA '%s' has rank %d", path, l->name, l->rank);
    const int hd = c->head_dim > 0 ? c->head_dim : c->dim / c->n_heads;
    if (permute && hd % 2)
        return lc_errf(err, "%s: head_dim %d is odd: the llama Q/K row permutation needs it even",
                       path, hd);

    /* tensor list and offsets */
    int n = 0;
    for (int li = 0; li < l->n_layers; li++)
        for (int m = 0; m < MOD_COUNT; m++)
            if (l->A[(size_t)li * MOD_COUNT + m] && l->B[(size_t)li * MOD_COUNT + m]) n += 2;
    if (!n) return lc_errf(err, "%s: LoRA '%s' adapts no module", path, l->name);
    gtensor *ts = lc_calloc((size_t)n, sizeof *ts, err);
    if (!ts) return lc_err_prefix(err, "%s: ", path);
    const size_t esz = f16 ? 2 : 4;
    uint64_t off = 0;
    size_t max_elems = 0;
    int i = 0;
    for (int li = 0; li < l->n_layers; li++)
        for (int m = 0; m < MOD_COUNT; m++) {
            const size_t s = (size_t)li * MOD_COUNT + m;
            if (!l->A[s] || !l->B[s]) continue;
            const uint64_t in = (uint64_t)module_in_dim(c, m), od = (uint64_t)module_out_dim(c, m);
            for (int b = 0; b < 2; b++, i++) {
                gtensor *t = &ts[i];
                snprintf(t->name, sizeof t->name, "blk.%d.%s.weight.lora_%c", li, GGUF_MOD[m],
                         b ? 'b' : 'a');
                t->layer = li, t->mod = m, t->is_b = b;
                t->ne0 = b ? (uint64_t)l->rank : in;  /* A (r, in) -> [in, r] */
                t->ne1 = b ? od : (uint64_t)l->rank;  /* B (out, r) -> [r, out] */
                t->offset = off;
                off = align_up(off + t->ne0 * t->ne1 * esz);
                if (t->ne0 * t->ne1 > max_elems) max_elems = (size_t)(t->ne0 * t->ne1);
            }
        }

    /* header: magic, version, counts, key-values, tensor infos, padding */
    const float alpha = l->scale == 0.0f ? (float)l->rank : l->scale * (float)l->rank;
    bbuf h = {0};
    bb_put(&h, "GGUF", 4);
    bb_u32(&h, GGUF_VERSION);
    bb_u64(&h, (uint64_t)n);
    bb_u64(&h, 6); /* key-value count */
    kv_str(&h, "general.architecture", arch);
    kv_str(&h, "general.type", "adapter");
    kv_str(&h, "general.name", l->name[0] ? l->name : "lora");
    kv_str(&h, "adapter.type", "lora");
    bb_str(&h, "adapter.lora.alpha");
    bb_u32(&h, GGUF_F32);
    bb_f32(&h, alpha);
    bb_str(&h, "general.quantization_version");
    bb_u32(&h, GGUF_U32);
    bb_u32(&h, GGML_QUANT_VERSION);
    for (i = 0; i < n; i++) {
        bb_str(&h, ts[i].name);
        bb_u32(&h, 2);
        bb_u64(&h, ts[i].ne0);
        bb_u64(&h, ts[i].ne1);
        bb_u32(&h, f16 ? GGML_F16 : GGML_F32);
        bb_u64(&h, ts[i].offset);
    }
    static const unsigned char zeros[GGUF_ALIGN] = {0};
    bb_put(&h, zeros, (size_t)(align_up(h.n) - h.n));

    float *vals = malloc(sizeof(float) * (max_elems ? max_elems : 1));
    float *tmp = malloc(sizeof(float) * (max_elems ? max_elems : 1));
    unsigned char *raw = malloc(esz * (max_elems ? max_elems : 1));
    char tmpname[4200];
    int rc = LC_FAIL;
    FILE *f = NULL;
    if (h.oom || !vals || !tmp || !raw) {
        lc_errf(err, "%s: out of memory", path);
        goto done;
    }
    f = lc_tmp_open(path, tmpname, sizeof tmpname, err);
    if (!f) goto done;
    int ok = fwrite(h.p, 1, h.n, f) == h.n;
    uint64_t pos = 0;
    for (i = 0; ok && i < n; i++) {
        const gtensor *t = &ts[i];
        const size_t ne = (size_t)(t->ne0 * t->ne1);
        if (pos < t->offset) ok = fwrite(zeros, 1, (size_t)(t->offset - pos), f) == t->offset - pos;
        pos = t->offset;
        tensor_values(l, c, t, permute, vals, tmp);
        for (size_t e = 0; e < ne; e++) {
            if (!isfinite(vals[e])) {
                lc_errf(err, "%s: tensor %s: value %zu is not finite (%g)", path, t->name, e,
                        (double)vals[e]);
                goto fail_file;
            }
            if (f16) {
                uint16_t hv = lc_f32_to_f16(vals[e]);
                if (!isfinite(lc_f16_to_f32(hv))) {
                    lc_errf(err, "%s: tensor %s: value %g overflows F16; write F32 instead", path,
                            t->name, (double)vals[e]);
                    goto fail_file;
                }
                raw[2 * e] = (unsigned char)(hv & 0xff);
                raw[2 * e + 1] = (unsigned char)(hv >> 8);
            } else {
                uint32_t u;
                memcpy(&u, &vals[e], 4);
                for (int q = 0; q < 4; q++) raw[4 * e + q] = (unsigned char)(u >> (8 * q));
            }
        }
        ok = ok && fwrite(raw, esz, ne, f) == ne;
        pos += ne * esz;
    }
    if (ok && pos < off) ok = fwrite(zeros, 1, (size_t)(off - pos), f) == off - pos;
    FILE *ff = f;
    f = NULL;
    if (lc_tmp_close(ff, ok, ok ? 0 : errno, tmpname, path, err)) goto done;
    rc = LC_OK;
    goto done;
fail_file:
    fclose(f);
    f = NULL;
    unlink(tmpname);
done:
    free(h.p);
    free(vals);
    free(tmp);
    free(raw);
    free(ts);
    return rc;
}
