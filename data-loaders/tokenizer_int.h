/* tokenizer_int.h: what the tokenizer's source files share; not a public
 * header (tokenizer.h is). The files:
 *   tokenizer.c         tokenizer.json parsing, loading, the accessors
 *   tokenizer_text.c    UTF-8, Unicode properties and normalization, hash
 *                       maps, the added-token trie, piece lists
 *   tokenizer_encode.c  the encode pipeline and BPE
 *   tokenizer_decode.c  the decoder chain
 *   tokenizer_parts.c   tokenizer_parts (GGUF tokenizer.ggml.*) in and out
 * Functions shared between them carry a tok_ prefix. */
#ifndef LC_TOKENIZER_INT_H
#define LC_TOKENIZER_INT_H
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lc_sbuf.h"
#include "lc_utf8.h"
#include "loaders.h"
#include "unicode_tables.h"

/* ======================================================================
 * Small growable buffers
 * ====================================================================== */

static inline void *xgrow(void *p, size_t *cap, size_t need, size_t elem) {
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 4) return NULL;
        c *= 2;
    }
    if (c > SIZE_MAX / elem) return NULL;
    void *q = realloc(p, c * elem);
    if (!q) return NULL;
    *cap = c;
    return q;
}

/* Ensures arr has room for `need` elements; 0 on success, -1 on OOM. */
#define GROW(arr, cap, need)                                                  \
    ({                                                                        \
        int rc_ = 0;                                                          \
        if ((size_t)(need) > (cap)) {                                         \
            void *q_ = xgrow((arr), &(cap), (size_t)(need), sizeof *(arr));   \
            if (q_)                                                           \
                (arr) = q_;                                                   \
            else                                                              \
                rc_ = -1;                                                     \
        }                                                                     \
        rc_;                                                                  \
    })

typedef lc_sbuf sbuf; /* kernels/base/lc_sbuf.h */

typedef struct {
    int *p;
    size_t n, cap;
} ivec;

static inline int ivec_push(ivec *v, int x) {
    if (GROW(v->p, v->cap, v->n + 1)) return LC_FAIL;
    v->p[v->n++] = x;
    return LC_OK;
}

static inline int oom(lc_err *err) { return lc_errf(err, "tokenizer: out of memory"); }


/* ======================================================================
 * Text and maps (tokenizer_text.c)
 * ====================================================================== */

typedef struct {
    uint32_t *cp;
    uint8_t *cc;
    size_t n, cap, cccap;
} u32buf;

enum { NF_D = 0, NF_C = 1, NF_KD = 2, NF_KC = 3 };

/* Open addressing; slots hold indices into the caller's (strs, lens). */
typedef struct {
    int32_t *slot;
    size_t mask;
} strmap;

typedef struct {
    uint64_t *key;
    int32_t *a, *b;
    size_t mask, n;
} u64map;
#define U64_EMPTY UINT64_MAX

/* ======================================================================
 * The tokenizer
 * ====================================================================== */

enum { KIND_HF = 1, KIND_L2C = 2 };

#define MAX_TOKEN_ID (1 << 26) /* larger ids are taken for a corrupt file */

enum { NORM_NF, NORM_PREPEND, NORM_REPLACE, NORM_STRIP, NORM_LOWER };
typedef struct {
    int type, form;      /* form: NF_* */
    char *a, *b;         /* Prepend: a; Replace: a -> b */
    size_t alen, blen;
    int left, right;     /* Strip */
} norm_step;

enum { RX_GPT2, RX_LLAMA3, RX_QWEN2 };
extern const char RX_GPT2_STR[], RX_LLAMA3_STR[], RX_QWEN2_STR[]; /* the known Split regexes */

enum { PT_SPLIT, PT_BYTELEVEL, PT_METASPACE, PT_DIGITS };
enum { SB_REMOVED, SB_ISOLATED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct {
    int type;
    int rx;              /* Split: RX_* or -1 for a literal */
    char *lit;
    size_t lit_len;
    int behavior, invert;
    int add_prefix_space, use_regex; /* ByteLevel */
    uint32_t repl;                   /* Metaspace */
    int prepend, split;
    int individual;                  /* Digits */
} pt_step;

enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE };
typedef struct {
    int type;
    char *a, *b;
    size_t alen, blen;
    uint32_t cp;         /* Strip content / Metaspace replacement */
    int start, stop, prepend;
} dec_step;

typedef struct {
    int is_seq;          /* Sequence A, else these special ids */
    int *ids, n;
} tmpl_item;

typedef struct {
    tmpl_item *items;
    int n;
} tmpl;

typedef struct {
    char *content, *norm; /* norm: content normalized (normalized=true) */
    int len, norm_len;
    int id, special, single_word, lstrip, rstrip, normalized;
    int special_set; /* the content is in HF's special_tokens_set */
} added_tok;

typedef struct {
    u64map edges;        /* (node << 8 | byte) -> child */
    int *term;           /* node -> added index, -1 */
    size_t n, cap;
    uint8_t first[256];
} trie;

struct tokenizer {
    int kind;
    char *path;
    int n_ids, bos, eos;
    /* from tokenizer_config.json (NULL when absent): its chat_template and
     * the bos_token / eos_token text; cfg_path names the file */
    char *chat_template, *bos_text, *eos_text, *cfg_path;
    int vocab_count;     /* entries in model.vocab (HF's get_vocab_size) */
    /* llama2.c (also a GGUF SentencePiece vocabulary) */
    l2c_tokenizer l2c;
    int l2c_add_bos, l2c_add_eos;
    /* model */
    char **id_str;       /* (n_ids) model vocab pieces, NULL for holes */
    int *id_len;
    char *arena;
    strmap vocab;        /* over id_str */
    u64map merges;       /* (a << 32 | b) -> (rank, new id) */
    /* (last char of a << 32 | first char of b) over all merges (a, b): a
     * merge can only join two symbols whose junction is in this set; empty
     * (key NULL) when that reasoning does not hold (subword prefixes) */
    u64map junctions;
    uint32_t *first_cp, *last_cp; /* (n_ids) of each piece, UINT32_MAX if none */
    int unk_id, byte_fallback, fuse_unk, ignore_merges;
    char *cont_prefix, *eow_suffix;
    size_t cont_prefix_len, eow_suffix_len;
    int byte_id[256];    /* <0xXX> ids, -1 when absent */
    /* added tokens */
    added_tok *added;
    int n_added;
    int *added_of_id;    /* (n_ids) -> added index, -1 */
    char **added_str;
    int *added_len;
    strmap added_map;    /* content -> added index */
    trie raw_trie, norm_trie;
    uint8_t *is_special; /* (n_ids) token string is a special token */
    /* pipeline */
    norm_step *norm;
    int n_norm;
    pt_step *pt;
    int n_pt;
    dec_step *dec;
    int n_dec, has_decoder;
    tmpl *post;
    int n_post;
};


typedef struct {
    size_t off, len; /* in the owning text */
    int id;          /* >= 0: already a token (added) */
    int first;       /* starts at offset 0 of the original text */
} piece;

typedef struct {
    sbuf text;
    piece *p;
    size_t n, cap;
} pieces;

/* ---- functions of tokenizer_text.c ---------------------------------------- */

int tok_pieces_add(pieces *ps, const char *s, size_t n, int id, int first);
/* Ends a piece whose bytes were written into ps->text from offset off on
 * (id -1): the one place, with tok_pieces_add, where pieces are made, so
 * that the text buffer always exists once a piece does (off + text.p is
 * never arithmetic on a null pointer, even when every piece is empty). */
int tok_pieces_end(pieces *ps, size_t off, int first);
void tok_pieces_clear(pieces *ps);
void tok_pieces_free(pieces *ps);
int tok_sbuf_put_cp(sbuf *b, uint32_t cp);
/* Appends s to out with invalid sequences replaced by U+FFFD. */
int tok_utf8_lossy(sbuf *out, const char *s, size_t n);
uint32_t tok_range_val(const uni_range *r, int n, uint32_t cp);
/* UNI_CAT_L, UNI_CAT_N or UNI_CAT_OTHER. */
int tok_uni_cat(uint32_t cp);
/* The White_Space property (= \s in Oniguruma, char::is_whitespace). */
int tok_uni_ws(uint32_t cp);
/* Unicode normalization form `form` of s[0..n) (valid UTF-8) into out. */
int tok_uni_normalize(int form, const char *s, size_t n, sbuf *out, u32buf *w);
/* Lowercase, character by character (Rust's char::to_lowercase). */
int tok_uni_lowercase(const char *s, size_t n, sbuf *out);
int tok_strmap_init(strmap *m, size_t n);
int tok_strmap_find(const strmap *m, char *const *strs, const int *lens, const char *s,
                    size_t n);
/* Inserts idx; returns the index already holding the same string (kept),
 * or -1 when idx was inserted. */
int tok_strmap_insert(strmap *m, char *const *strs, const int *lens, int idx);
int tok_u64map_init(u64map *m, size_t n);
void tok_u64map_free(u64map *m);
int tok_u64map_find(const u64map *m, uint64_t k, int32_t *a, int32_t *b);
/* Sets k -> (a, b), overwriting; grows when over half full. */
int tok_u64map_set(u64map *m, uint64_t k, int32_t a, int32_t b);
int tok_trie_add(trie *tr, const char *s, int len, int idx);
void tok_trie_free(trie *tr);
/* Longest token starting at s[i]: its added index and end, or -1. */
int tok_trie_longest(const trie *tr, const char *s, size_t n, size_t i, size_t *end);
const char *tok_id_token(const tokenizer *t, int id, int *len);
int tok_vocab_find(const tokenizer *t, const char *s, size_t n);

/* ---- functions of tokenizer.c --------------------------------------------- */

char *tok_dup_bytes(const char *s, size_t n);
/* txt/len: the JSON text; path names it in errors and locates a
 * tokenizer_config.json (find_special = 1) for BOS/EOS. */
int tok_load_json_text(tokenizer *t, const char *txt, size_t len, const char *path,
                       int vocab_size, int find_special, lc_err *err);

/* ---- functions of tokenizer_encode.c -------------------------------------- */

int tok_replace_all(sbuf *out, const char *s, size_t n, const char *a, size_t alen,
                    const char *b, size_t blen);
/* Applies the normalizer steps to s[0..n) into out (out != tmp). */
int tok_normalize_text(const tokenizer *t, const char *s, size_t n, sbuf *out, sbuf *tmp,
                       u32buf *w);
int tok_char_byte(uint32_t cp);

#endif
