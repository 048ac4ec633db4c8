/* tokenizer.h: one interface over the tokenizers the project reads:
 *   - Hugging Face tokenizer.json: byte-level BPE (GPT-2, Llama 3, Qwen2/3,
 *     with their pre-tokenizer regex), SentencePiece-style BPE with byte
 *     fallback (Llama 2, Mistral, TinyLlama), added/special tokens,
 *     normalizers (NFC, Prepend/Replace), post-processor (BOS/EOS);
 *   - the llama2.c tokenizer format (tokenizer.bin / tok512.bin).
 * Results are identical to Hugging Face's `tokenizers` (checked against its
 * npm build in tests). */
#ifndef TOKENIZER_H
#define TOKENIZER_H

#include <stddef.h>

#include "lc_err.h"

typedef struct tokenizer tokenizer; /* opaque */

/* path: a tokenizer.json, a folder holding one, a GGUF model file, or a
 * llama2.c tokenizer file (then vocab_size must be the model's; for tokenizer.json it may be 0
 * or the model's vocabulary, which must be >= the tokenizer's ids). */
int tokenizer_load(tokenizer **out, const char *path, int vocab_size, lc_err *err);
void tokenizer_free(tokenizer *t);

int tokenizer_vocab_size(const tokenizer *t); /* largest id + 1 */
int tokenizer_bos(const tokenizer *t);        /* -1 when none */
int tokenizer_eos(const tokenizer *t);        /* -1 when none */
/* From the tokenizer_config.json beside a tokenizer.json (NULL when there
 * is none or it lacks the key): its chat_template (of a list of named
 * templates, the one named "default"), and the bos_token / eos_token text.
 * *cfg_path (may be NULL) gets the config file's path. */
const char *tokenizer_chat_template(const tokenizer *t, const char **cfg_path);
const char *tokenizer_bos_text(const tokenizer *t);
const char *tokenizer_eos_text(const tokenizer *t);
/* Id of an exact token string ("<|im_end|>"), -1 if absent. */
int tokenizer_token_id(const tokenizer *t, const char *piece);

/* Encodes len bytes of UTF-8 text (invalid UTF-8 is an error).
 * add_special = 1 applies the post-processor (e.g. BOS) like HF's
 * add_special_tokens=True. Special-token text inside the string is matched
 * as the special token. *ids is malloc'd; *n its length. */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_special,
                     int **ids, int *n, lc_err *err);

/* Decodes ids to a malloc'd NUL-terminated UTF-8 string, like HF's decode
 * (skip_special = 1 drops special tokens). Byte sequences that are not
 * valid UTF-8 become U+FFFD as in HF. NULL only on out-of-memory. */
char *tokenizer_decode(const tokenizer *t, const int *ids, int n, int skip_special);

/* ---- a tokenizer as parts (what GGUF's tokenizer.ggml.* keys hold) ------ */

enum { TOKENIZER_SPM = 1, TOKENIZER_BPE = 2 };
/* GGUF token types (llama.cpp's llama_token_type) */
enum { TOKTYPE_NORMAL = 1, TOKTYPE_UNKNOWN = 2, TOKTYPE_CONTROL = 3, TOKTYPE_USER_DEFINED = 4,
       TOKTYPE_UNUSED = 5, TOKTYPE_BYTE = 6 };

typedef struct {
    int model;          /* TOKENIZER_SPM ("llama") or TOKENIZER_BPE ("gpt2") */
    char *pre;          /* BPE pre-tokenizer: "gpt-2", "qwen2", "llama-bpe" */
    int n_tokens;
    char **tokens;      /* pieces as GGUF stores them: SentencePiece's U+2581 for a
                         * space (SPM); GPT-2 byte-level characters (BPE) */
    int *token_lens;
    float *scores;      /* SPM merge scores; NULL for BPE */
    int *types;         /* TOKTYPE_* */
    int n_merges;
    char **merges;      /* BPE "a b", by rank */
    int bos, eos, unk;  /* -1 when none */
    int add_bos, add_eos;
    char *chat_template; /* tokenizer.chat_template (Jinja), NULL when none */
} tokenizer_parts;

/* Builds a tokenizer from parts (the arrays are copied). SPM is encoded
 * like llama.cpp's SentencePiece tokenizer (dummy prefix, best-score
 * merges, <0xNN> byte fallback; the 256 byte tokens must be ids 3..258);
 * BPE is GPT-2 byte-level BPE with the pre-tokenizer `pre`; CONTROL and
 * USER_DEFINED tokens become added tokens (special for CONTROL). A chat
 * template is kept (tokenizer_chat_template then names `src`), with the
 * BOS / EOS pieces as its bos_token / eos_token when they are CONTROL or
 * USER_DEFINED tokens (literal text). Errors say what disagrees and start
 * with `src`. */
int tokenizer_from_parts(tokenizer **out, const tokenizer_parts *p, const char *src,
                         lc_err *err);
/* The reverse, for writing a GGUF: a llama2.c tokenizer becomes SPM, a
 * byte-level BPE tokenizer.json (the GPT-2, Qwen2 or Llama 3 pre-tokenizer)
 * becomes BPE; anything else (SentencePiece-style tokenizer.json) is an
 * error. The chat template (tokenizer_config.json's or a GGUF's) is
 * copied. Free with tokenizer_parts_free. */
int tokenizer_to_parts(const tokenizer *t, tokenizer_parts *p, lc_err *err);
void tokenizer_parts_free(tokenizer_parts *p);

/* The tokenizer stored in a GGUF file (tokenizer.ggml.*; gguf_model.c).
 * vocab_size > 0 must equal its token count. tokenizer_load calls this
 * for a file that starts with "GGUF". */
int tokenizer_load_gguf(tokenizer **out, const char *path, int vocab_size, lc_err *err);

#endif
