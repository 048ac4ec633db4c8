/* model.h: a Llama-family decoder (Llama 2/3, Qwen2, Mistral) with frozen
 * base weights, any number of LoRAs active at once, and Learnable
 * Calibration (bias vectors and LC++ low-rank pairs), forward and backward.
 *
 * Shapes (row-major, PyTorch/HF layout):
 *   D  = dim (hidden_size)          F  = hidden_dim (intermediate_size)
 *   H  = n_heads, Hkv = n_kv_heads  hd = head_dim (given or D/H)
 *   V  = vocab_size                 L  = n_layers
 *   linear module m: W (out_m, in_m), y = x W^T
 *     q: (H*hd, D)  k,v: (Hkv*hd, D)  o: (D, H*hd)
 *     gate, up: (F, D)  down: (D, F)
 *
 * An adapted linear module computes (GUIDE.md section 2):
 *   y = W x + b + sum_i w_i s_i B_i (A_i x) + p_m + P2_m (P1_m x)
 * with LoRA i: A_i (r, in), B_i (out, r), s_i = alpha/r (alpha/sqrt(r) with
 * rsLoRA), merge weight w_i; LC bias p_m (out); LC++ P1_m (k, in), P2_m
 * (out, k). Calibration is shared across layers or per layer.
 *
 * Gradients: a tensor gets a gradient only if its owner has a grad block
 * (lora_enable_grad, calib_enable_grad, model_enable_grad). Frozen weights
 * never get gradient buffers and no weight-gradient GEMM is run for them. */
#ifndef MODEL_H
#define MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "lc_err.h"
#include "lc_rng.h"
#include "quant.h"

/* ---- configuration ---------------------------------------------------- */

typedef enum { ROPE_DEFAULT = 0, ROPE_LLAMA3, ROPE_LINEAR } rope_kind;

typedef struct {
    char arch[32]; /* "llama", "qwen2", "mistral" */
    int dim, n_layers, n_heads, n_kv_heads, head_dim, hidden_dim;
    int vocab_size, max_seq_len;
    float norm_eps, rope_theta;
    rope_kind rope_type;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos;
    int tie_embeddings, qkv_bias;
    int bos_id, eos_id; /* -1 when unknown */
} model_config;

/* Checks the values are usable (positive sizes, heads divisible, ...). */
int model_config_validate(const model_config *c, const char *src, lc_err *err);

/* The seven projections that adapters may target. */
typedef enum {
    MOD_Q = 0, MOD_K, MOD_V, MOD_O, MOD_GATE, MOD_UP, MOD_DOWN, MOD_COUNT
} module_kind;

#define MOD_MASK_ALL ((1u << MOD_COUNT) - 1u)

/* "q_proj", "k_proj", ..., "down_proj" */
const char *module_name(module_kind m);
/* "self_attn.q_proj", ..., "mlp.down_proj" (HF path inside a layer). */
const char *module_path(module_kind m);
/* short names used in configs: "q","k","v","o","gate","up","down" */
const char *module_short(module_kind m);
/* Parses "q", "q_proj" or "self_attn.q_proj"; -1 if unknown. */
int module_parse(const char *s);
int module_in_dim(const model_config *c, module_kind m);
int module_out_dim(const model_config *c, module_kind m);

/* ---- base weights ----------------------------------------------------- */

/* A matrix is either float32 (w[m] into data) or stored in another type
 * (w[m] == NULL and q[m] holds it; model_quantize): a frozen base held as
 * F16/BF16/Q8_0/Q4_0/Q4_K/Q6_K, or loaded zero-copy from a file. Norms
 * and biases are always float32. */
typedef struct {
    float *attn_norm; /* (D) */
    float *ffn_norm;  /* (D) */
    float *w[MOD_COUNT]; /* (out_m, in_m); NULL when stored */
    qmat q[MOD_COUNT];   /* the stored matrix when w[m] == NULL */
    float *bq, *bk, *bv; /* (H*hd), (Hkv*hd), (Hkv*hd); NULL unless qkv_bias */
} layer_weights;

typedef struct {
    float *tok_emb;    /* (V, D); NULL when stored */
    qmat q_tok_emb;
    layer_weights *layers; /* L entries */
    float *final_norm; /* (D) */
    float *lm_head;    /* (V, D); == tok_emb when tied; NULL when stored */
    qmat q_lm_head;    /* a view of q_tok_emb when tied */
} model_weights;

typedef struct {
    model_config cfg;
    model_weights w; /* pointers into data */
    float *data;     /* the float32 parameters, one block */
    size_t n_params; /* number of parameters (stored ones included) */
    size_t n_data;   /* floats in data: n_params, or only the norms and
                      * biases once the matrices are stored */
    int base_type;   /* QT_F32, or the type model_quantize stored the matrices in */
    void *copies;        /* stored matrices copied from a file, one block (the
                          * GGUF reader's q/k rows put back in HF order, or every
                          * matrix when not used in place): their qmats point
                          * into it with owned NULL; model_free frees it */
    size_t copies_bytes; /* bytes of the matrices in copies (without the
                          * alignment padding between them) */
    uint32_t f32_crc32; /* stored: CRC-32 of the float32 weights they were made
                         * from (the base's identity, export/lib/bundle.h) */
    int f32_crc32_set;  /* 1 when f32_crc32 holds it (model_quantize); 0: a base
                         * read in its stored type, whose identity is that of
                         * its dequantized values */
    model_weights g; /* pointers into grad; all NULL when frozen */
    float *grad;     /* NULL unless model_enable_grad() */
    float *rope_inv_freq; /* (hd/2), with rope scaling applied */
} model;

/* Allocates zeroed weights for cfg (validated). */
int model_init(model *m, const model_config *cfg, lc_err *err);
void model_free(model *m);
/* The same without a data block (data stays NULL): the caller points
 * every weight at memory it owns, e.g. a file mapping; model_free then
 * frees only the tables. */
int model_init_view(model *m, const model_config *cfg, lc_err *err);
/* Full-parameter training: allocates a zeroed gradient block. Refused for
 * a model with stored matrices (model_quantize). */
int model_enable_grad(model *m, lc_err *err);
/* Fills weights with N(0, std) (norm weights = 1), seeded; for tests and
 * benchmarks with random weights. */
void model_init_random(model *m, float std, uint64_t seed);
/* The HF tensor name of each parameter, in block order; calls fn(name,
 * ndim, shape, ptr_into_data, grad_ptr_or_NULL, ctx) for each tensor. The
 * tied lm_head is not listed. Returns the first non-zero fn result. A
 * stored matrix is passed dequantized in a scratch buffer (read-only:
 * writes to it are lost); LC_FAIL if that buffer cannot be allocated. */
typedef int (*model_tensor_fn)(const char *name, int ndim, const int64_t *shape,
                               float *data, float *grad, void *ctx);
int model_for_each_tensor(model *m, model_tensor_fn fn, void *ctx);
/* The same for the norms and biases only (the vectors: float32 whatever
 * the matrices are stored in), in the same order. */
int model_for_each_vector(model *m, model_tensor_fn fn, void *ctx);
/* Every tensor in the same order as stored: data for a float32 tensor, q
 * (and data NULL) for a stored matrix, nothing dequantized. */
typedef int (*model_stored_fn)(const char *name, int ndim, const int64_t *shape, const float *data,
                               const qmat *q, void *ctx);
int model_for_each_stored(const model *m, model_stored_fn fn, void *ctx);
/* The same names and shapes for a configuration alone, before anything is
 * allocated (data and grad are NULL): readers check a file holds every
 * tensor a header claims before model_init allocates for it. */
int model_config_for_each_tensor(const model_config *c, model_tensor_fn fn, void *ctx);

/* Stores every matrix (embedding, the seven projections of each layer, the
 * lm head) in type (QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K;
 * QT_F32 does nothing): a matrix whose rows are not a whole number of the
 * type's blocks is stored as F16. Norms and biases stay float32 and the
 * float32 matrices are freed. The base is frozen from then on
 * (model_enable_grad refuses). */
int model_quantize(model *m, int type, lc_err *err);
/* Back to float32 in place (the dequantized values); nothing if not stored. */
int model_dequantize(model *m, lc_err *err);
/* dst = a float32 model with src's values (dequantized where stored). */
int model_to_f32(model *dst, const model *src, lc_err *err);
/* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k" (any case) -> type;
 * -1 if unknown. */
int model_base_type_parse(const char *s);
/* A model whose matrices will be stored in type: the norms and biases get
 * a zeroed float32 block (data), the matrices (w.q_*, layers[].q[]) are
 * left empty for the caller to fill (e.g. views of a file's bytes), and
 * base_type = type. */
int model_init_stored(model *m, const model_config *cfg, int type, lc_err *err);
/* Bytes of weights the model owns: its float32 block and the stored
 * matrices that are not views. */
size_t model_owned_bytes(const model *m);
/* Bytes held by the base weights (float32 block plus stored matrices). */
size_t model_weight_bytes(const model *m);

/* ---- LoRA ------------------------------------------------------------- */

typedef struct {
    char name[128];
    int rank;
    float alpha;
    int rslora;
    float scale;  /* alpha/rank or alpha/sqrt(rank) */
    float weight; /* merge weight w_i used at run time (default 1) */
    int n_layers;
    unsigned module_mask;
    unsigned char *layer_on; /* (L) 1 if the layer is adapted */
    float **A, **B; /* [L*MOD_COUNT]; NULL where not adapted */
    float *data;
    size_t n_params;
    float **gA, **gB; /* NULL unless trainable */
    float *grad;
    float dropout; /* applied to x before A in training (issue 3) */
    /* Optional per-(layer, module) coefficients c (L*MOD_COUNT; NULL = all
     * 1): the module computes y += c[l*7+m] * weight * scale * B (A x).
     * gcoef (NULL unless trainable) receives d(loss)/dc: the learned-
     * coefficient merge (calibrate/MERGING.md). */
    float *coef, *gcoef;
} lora;

/* Allocates zeroed A and B for the given modules and layers (layer_on NULL =
 * every layer). */
int lora_init(lora *l, const model_config *c, int rank, float alpha, int rslora,
              unsigned module_mask, const unsigned char *layer_on, lc_err *err);
/* The same without a data block: A and B stay NULL and the caller points
 * every adapted slot at tensors it owns (e.g. a memory-mapped bundle);
 * lora_free then frees only the tables. */
int lora_init_view(lora *l, const model_config *c, int rank, float alpha, int rslora,
                   unsigned module_mask, const unsigned char *layer_on, lc_err *err);
void lora_free(lora *l);
int lora_enable_grad(lora *l, lc_err *err);
/* Allocates coef (filled with `value`) and, if trainable, a zeroed gcoef. */
int lora_enable_coef(lora *l, float value, int trainable, lc_err *err);
/* PEFT's default init: A ~ kaiming-uniform(a=sqrt(5)) i.e. U(-1/sqrt(in),
 * 1/sqrt(in)), B = 0. */
void lora_init_peft(lora *l, const model_config *c, uint64_t seed);
/* Fills A and B with N(0, std) (tests). */
void lora_init_random(lora *l, float std, uint64_t seed);
/* PEFT tensor name for layer/module/A-or-B:
 * "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight" */
void lora_tensor_name(char *buf, size_t n, int layer, module_kind m, int is_b);

/* ---- Learnable Calibration -------------------------------------------- */

typedef enum { CALIB_BIAS = 0, CALIB_LOWRANK } calib_kind;

typedef struct {
    char name[128];
    calib_kind kind;
    int rank;      /* k, for CALIB_LOWRANK */
    int per_layer; /* 0: one set shared by all layers; 1: one per layer */
    int n_slots;   /* 1 or L */
    unsigned module_mask;
    float **p;       /* [n_slots*MOD_COUNT] (out) for CALIB_BIAS */
    float **P1, **P2; /* (k, in), (out, k) for CALIB_LOWRANK */
    float *data;
    size_t n_params;
    float **gp, **gP1, **gP2;
    float *grad;
} calib;

int calib_init(calib *cb, const model_config *c, calib_kind kind, int rank,
               int per_layer, unsigned module_mask, lc_err *err);
/* Without a data block; the caller points p / P1 / P2 (see lora_init_view). */
int calib_init_view(calib *cb, const model_config *c, calib_kind kind, int rank, int per_layer,
                    unsigned module_mask, lc_err *err);
void calib_free(calib *cb);
int calib_enable_grad(calib *cb, lc_err *err);
/* LC: zeros. LC++: P1 ~ U(-1/sqrt(in), 1/sqrt(in)), P2 = 0, so training
 * starts from the merged model exactly. */
void calib_init_default(calib *cb, const model_config *c, uint64_t seed);
/* Tensor names: "calib.<short>.bias" (shape (out) or (L, out) per layer),
 * "calib.<short>.P1" ((k,in) or (L,k,in)), "calib.<short>.P2". */
void calib_tensor_name(char *buf, size_t n, module_kind m, const char *part);

/* ---- what is active in one pass --------------------------------------- */

#define ADAPTER_MAX 16

typedef struct {
    lora *loras[ADAPTER_MAX];
    int n_loras;
    calib *cals[ADAPTER_MAX];
    int n_cals;
} adapter_set;

/* Checks every adapter fits the model (layers, dims). */
int adapter_set_validate(const adapter_set *ad, const model *m, lc_err *err);

/* ---- training-style forward / backward over a batch ------------------- */

typedef struct model_acts model_acts; /* opaque: saved activations */

enum {
    ACTS_BACKWARD = 1,   /* keep what backward needs */
    ACTS_KEEP_LOGITS = 2 /* keep all (B*T, V) logits (tests, evaluation) */
};

/* Workspace for batches up to B x T with the adapters in ad (the set of
 * adapters must not change while the workspace is used). */
int model_acts_init(model_acts **out, const model *m, const adapter_set *ad,
                    int B, int T, int flags, lc_err *err);
void model_acts_free(model_acts *a);
/* Bytes held by the workspace. */
size_t model_acts_bytes(const model_acts *a);

/* Runs with the adapter set the workspace was made with.
 * tokens (B, T); targets (B, T) with -1 where no loss is taken (prompt,
 * padding). Loss = mean token cross-entropy over targets != -1 (0 when there
 * are none). With ACTS_BACKWARD the gradient of the loss w.r.t. the logits
 * is formed during the forward, chunk by chunk, so the (B*T, V) logits need
 * never be held. Returns LC_FAIL (err says why) on non-finite loss. */
int model_forward(const model *m, model_acts *a, const int *tokens, const int *targets, int B, int T,
                  float *loss, lc_err *err);
/* LoRA dropout (PEFT's lora_dropout: on the LoRA's input, x -> A(drop(x))).
 * seed != 0 turns it on for the following forward/backward pairs (training;
 * change the seed every step); 0 turns it off (evaluation). The mask is a
 * pure function of (seed, layer, module, adapter, element), so backward
 * regenerates it instead of storing it, and a resumed run is bit-exact. */
void model_acts_set_dropout(model_acts *a, uint64_t seed);
/* (B*T, V) logits of the last forward; NULL without ACTS_KEEP_LOGITS. */
const float *model_acts_logits(const model_acts *a);
/* Backward of the last forward. Accumulates (+=) into every enabled grad
 * block (model, LoRAs, calibrations): the caller zeroes them between
 * optimizer steps. grad_scale multiplies the loss (e.g. 1/accum_steps). */
void model_backward(model *m, model_acts *a, float grad_scale);
/* (B*T, D) gradient w.r.t. the input embeddings of the last backward. */
const float *model_acts_demb(const model_acts *a);

/* ---- generation with a KV cache --------------------------------------- */

typedef struct model_decoder model_decoder; /* opaque */

int model_decoder_init(model_decoder **out, const model *m,
                       const adapter_set *ad, int max_seq, lc_err *err);
void model_decoder_free(model_decoder *d);
/* Replaces the adapter set (the LoRAs and calibrations are not copied:
 * they must outlive d). Takes microseconds: a task switch. The KV cache
 * then holds keys and values of the old set: decode again from pos 0. */
int model_decoder_set_adapters(model_decoder *d, const adapter_set *ad, lc_err *err);
/* Runs one token at position pos (0-based, < max_seq) and returns the (V)
 * logits, valid until the next call; NULL for a token or position out of
 * range, or when a stored matrix's product runs out of memory. Stored
 * matrices use qmat_matvec (the activation quantized as llama.cpp does). */
float *model_decoder_step(model_decoder *d, int token, int pos);
/* Prefill: runs the n tokens ids at positions pos0 .. pos0+n-1 (all
 * < max_seq) and returns the (V) logits of the last one (valid until the
 * next call), or NULL with err set (a bad token or position, or out of
 * memory: never a partial result). The rows go through the layers in
 * chunks, one product per weight matrix per chunk (each weight read once
 * per chunk instead of once per token), attention causal over the KV
 * cache. Every row is computed with the arithmetic of model_decoder_step,
 * so the logits equal those of n steps bit for bit. */
float *model_decoder_prefill(model_decoder *d, const int *ids, int n, int pos0, lc_err *err);
/* Batched step: token tokens[i] at position pos[i] for each of n distinct
 * decoders ds[i] (each its own sequence and KV cache; all made for the
 * same model, max_seq and adapter set), one product per weight matrix for
 * all n. Afterwards model_decoder_logits(ds[i]) holds sequence i's logits,
 * bit for bit those model_decoder_step(ds[i], tokens[i], pos[i]) gives.
 * The scratch for n rows is ds[0]'s (grown as needed). LC_FAIL with err on
 * bad arguments or out of memory. */
int model_decoder_step_batch(model_decoder *const *ds, const int *tokens, const int *pos, int n,
                             lc_err *err);
/* The (V) logits of d's last step, prefill or batched step. */
float *model_decoder_logits(model_decoder *d);

/* ---- sampling --------------------------------------------------------- */

/* temperature 0 = greedy (argmax, lowest index on ties); else softmax at
 * temperature then nucleus (top_p in (0,1]; 1 = full distribution).
 * logits are modified in place. Returns the token, or -1 when the nucleus's
 * work space cannot be allocated. */
int sample_token(float *logits, int V, float temperature, float top_p,
                 lc_rng *rng);

#endif
