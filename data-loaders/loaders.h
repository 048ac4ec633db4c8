/* loaders.h: model, adapter and tokenizer files -> in-memory structures
 * (model.h), and back. Every error names the file and the tensor or key. */
#ifndef LOADERS_H
#define LOADERS_H

#include <stdio.h>

#include "fsutil.h" /* the file helpers (lc_read_file, atomic writes, locks) */
#include "lc_err.h"
#include "model.h"

/* ---- configs ---------------------------------------------------------- */

/* Parses a Hugging Face config.json text (Llama, Qwen2, Mistral):
 * hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads
 * (default = heads), head_dim (default hidden/heads), intermediate_size,
 * vocab_size, max_position_embeddings, rms_norm_eps, rope_theta,
 * rope_scaling {rope_type|type: "llama3"|"linear", factor, low_freq_factor,
 * high_freq_factor, original_max_position_embeddings}, tie_word_embeddings,
 * attention_bias / model_type "qwen2" (q/k/v biases), bos/eos_token_id.
 * `src` names the file in errors ("<src>: key 'hidden_size': missing"). */
int hf_config_parse(const char *json_text, const char *src, model_config *c,
                    lc_err *err);
/* The inverse, for writing HF folders and HDF5 attributes. Caller frees. */
char *hf_config_to_json(const model_config *c);

/* The tokenizer that comes with a model: the file itself for a GGUF model
 * (its tokenizer.ggml.* keys); <dir>/tokenizer.json for a
 * Hugging Face folder; tokenizer.bin or tok<vocab>.bin beside a llama2.c
 * checkpoint or HDF5 file. Returns LC_FAIL (err says where it looked) when
 * there is none. */
int model_tokenizer_path(const char *model_path, int vocab_size, char *out, size_t n,
                         lc_err *err);

/* ---- models ----------------------------------------------------------- */

/* Dispatches on what `path` is:
 *   directory with config.json      -> Hugging Face folder (safetensors,
 *                                      single or sharded; F32/F16/BF16)
 *   *.gguf or a file starting "GGUF" -> GGUF base (model_load_gguf)
 *   HDF5 file (signature)           -> the project's HDF5 layout
 *   anything else                   -> llama2.c legacy checkpoint */
int model_load(model *m, const char *path, lc_err *err);
int model_load_hf(model *m, const char *dir, lc_err *err);
int model_load_llama2c(model *m, const char *path, lc_err *err);
int model_load_h5(model *m, const char *path, lc_err *err);
/* Project HDF5 layout (see data-loaders/FORMATS.md). */
int model_save_h5(const model *m, const char *path, lc_err *err);
/* Hugging Face folder: config.json + model.safetensors (F32), put in place
 * as one (lc_dir_write, keeping the folder's other files). */
int model_save_hf(const model *m, const char *dir, lc_err *err);
/* llama2.c legacy checkpoint (shared classifier iff tied). */
int model_save_llama2c(const model *m, const char *path, lc_err *err);

/* GGUF base model (data-loaders/gguf_model.c; FORMATS.md "GGUF"): the
 * llama, qwen2 and mistral layouts of llama.cpp's convert_hf_to_gguf.py.
 * When every matrix is in one type the engine holds (F16, BF16, Q8_0,
 * Q4_0, Q4_K, Q6_K; F16 where rows are not whole blocks), the matrices
 * are held in it, copied byte for byte from the file; otherwise (F32,
 * mixed types, LC_GGUF_F32=1) everything is dequantized into a float32
 * model. llama's q/k row permutation is undone. */
int model_load_gguf(model *m, const char *path, lc_err *err);
/* The same with the matrices as views of the file's mapping where no
 * rows move (all but llama's q/k, which are copied in HF order): *keep
 * then holds the open file, to be closed (gguf_close) after model_free;
 * *keep = NULL when the model was read into memory instead (float32). */
typedef struct gguf_file gguf_file;
int model_map_gguf(model *m, const char *path, gguf_file **keep, lc_err *err);
/* Writes m as a GGUF base llama.cpp loads: hparams, the tokenizer (tok;
 * NULL = none, which llama.cpp refuses), matrices in `type` (a qtype; a
 * matrix whose rows are not whole blocks falls back: Q4_K -> Q4_0, Q6_K ->
 * Q8_0, then F16), norms in F32, general.file_type. */
typedef struct tokenizer tokenizer;
int model_save_gguf(const model *m, const tokenizer *tok, int type, const char *path,
                    lc_err *err);
/* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k" -> qtype; LC_FAIL
 * for anything else. */
int gguf_write_type_parse(const char *s, int *type);

/* ---- adapters --------------------------------------------------------- */

/* LoRA from a PEFT folder (adapter_config.json + adapter_model.safetensors),
 * or the project's HDF5 file. Shapes are checked against the model config;
 * a tensor for an unknown module or a layer past the model is an error. */
int lora_load(lora *l, const model_config *c, const char *path, lc_err *err);
/* PEFT folder (adapter_config.json + adapter_model.safetensors), put in
 * place as one (lc_dir_write, keeping the folder's other files). */
int lora_save_peft(const lora *l, const char *dir, lc_err *err);
int lora_save_h5(const lora *l, const char *path, lc_err *err);

/* Calibration from the project's HDF5 file or a safetensors file with the
 * same tensor names and metadata (kind, rank, per_layer, modules). */
/* The learned-merge coefficients of n LoRAs (lora.coef, (L, 7) each) as
 * HDF5 datasets "<lora name>.coef"; temp file + rename. */
int lora_save_coefs(lora *const *ls, int n, const char *path, lc_err *err);
int calib_load(calib *cb, const model_config *c, const char *path, lc_err *err);
int calib_save(const calib *cb, const char *path, lc_err *err); /* HDF5 */

/* ---- llama2.c tokenizer ----------------------------------------------- */

typedef struct {
    int vocab_size;
    int max_token_length;
    char **vocab;   /* (vocab_size) NUL-terminated pieces */
    int *lens;      /* byte length of each piece */
    float *scores;  /* (vocab_size) merge scores */
    int *sorted;    /* ids sorted by piece, for lookup */
    int bos_id, eos_id;
} l2c_tokenizer;

/* vocab_size must match the model's (the file does not store it). */
int l2c_tokenizer_load(l2c_tokenizer *t, const char *path, int vocab_size,
                       lc_err *err);
void l2c_tokenizer_free(l2c_tokenizer *t);
/* SentencePiece-style encoding as llama2.c does it (dummy prefix space,
 * byte fallback <0xNN>, greedy best-score merges). ids must hold
 * strlen(text)+3 entries. Returns the count. */
int l2c_encode(const l2c_tokenizer *t, const char *text, int bos, int eos,
               int *ids);
/* The bytes of `token` following `prev` (strips the leading space after
 * BOS, turns <0xNN> into the byte). Sets *len. */
const char *l2c_decode(const l2c_tokenizer *t, int prev, int token,
                       char buf[2], int *len);

#endif
