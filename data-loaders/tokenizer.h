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

/* path: a tokenizer.json, a folder holding one, or a llama2.c tokenizer
 * file (then vocab_size must be the model's; for tokenizer.json it may be 0
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

#endif
