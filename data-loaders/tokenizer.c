/* tokenizer.c: the tokenizer interface of tokenizer.h.
 *
 * Two kinds behind one opaque handle:
 *   - Hugging Face tokenizer.json with a BPE model, re-implemented here
 *     step by step like the Rust `tokenizers` library (the reference the
 *     tests compare against, id for id):
 *       1. added tokens are cut out of the raw text (leftmost-longest, as
 *          the aho-corasick matcher HF uses), honouring single_word,
 *          lstrip, rstrip; tokens with normalized=true are matched in the
 *          normalized text instead (and decode to their normalized form);
 *          their ids are assigned as HF's AddedVocabulary does;
 *       2. every other segment is normalized (Sequence, NFC/NFD/NFKC/NFKD,
 *          Prepend, Replace with a literal, Strip, Lowercase);
 *       3. pre-tokenized (Sequence, Split with one of the known regexes or
 *          a literal, ByteLevel, Metaspace, Digits). The regexes are NOT run
 *          by a regex engine: each known pattern string (GPT-2, Llama 3,
 *          Qwen2) is recognised and implemented as a hand-written scanner
 *          over Unicode general categories (unicode_tables.c);
 *       4. each piece goes through BPE (merge ranks in a hash map over id
 *          pairs, a heap ordered by (rank, position) exactly like HF's
 *          Word::merge_all; byte_fallback, unk/fuse_unk, ignore_merges,
 *          continuing_subword_prefix/end_of_word_suffix). Long pieces
 *          (SentencePiece text has no pre-tokenizer: a whole paragraph is
 *          one piece) are cut where no merge can ever join the two sides,
 *          which keeps the heaps small without changing the result;
 *       5. the post-processor (TemplateProcessing, ByteLevel, Sequence)
 *          adds BOS/EOS when add_special is set.
 *     Decoding runs the decoder chain (ByteLevel, Replace, ByteFallback,
 *     Fuse, Strip, Metaspace, Sequence) and ends with a lossy UTF-8
 *     conversion identical to Rust's String::from_utf8_lossy.
 *   - llama2.c tokenizer files, through the l2c_* functions of llama2c.c.
 *
 * Nothing here is global or mutable: a loaded tokenizer is read-only and
 * may be shared by threads; each encode call owns its scratch memory. */
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

#include "loaders.h"
#include "unicode_tables.h"

/* ======================================================================
 * Small growable buffers
 * ====================================================================== */

static void *xgrow(void *p, size_t *cap, size_t need, size_t elem) {
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

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static int sbuf_put(sbuf *b, const void *d, size_t n) {
    if (GROW(b->p, b->cap, b->n + n + 1)) return LC_FAIL;
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
    return LC_OK;
}

typedef struct {
    int *p;
    size_t n, cap;
} ivec;

static int ivec_push(ivec *v, int x) {
    if (GROW(v->p, v->cap, v->n + 1)) return LC_FAIL;
    v->p[v->n++] = x;
    return LC_OK;
}

static int oom(lc_err *err) { return lc_errf(err, "tokenizer: out of memory"); }

/* ======================================================================
 * UTF-8 (Rust's rules: no overlongs, no surrogates, <= U+10FFFF)
 * ====================================================================== */

/* Length of the valid UTF-8 sequence at s (n >= 1 bytes left), 0 if the
 * bytes there are not one. */
static int utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    unsigned lo = 0x80, hi = 0xBF;
    int need;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < (size_t)need) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int k = 2; k < need; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    return need;
}

/* Bytes an invalid sequence at s spans for the replacement: the longest
 * prefix of a valid sequence (at least one byte), as from_utf8_lossy. */
static size_t utf8_bad_len(const unsigned char *s, size_t n) {
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 1;
    }
    size_t k = 1;
    if (k < n && s[k] >= lo && s[k] <= hi) {
        k++;
        while (k < need && k < n && (s[k] & 0xC0) == 0x80) k++;
    }
    return k;
}

/* Decodes the (valid) sequence at s. */
static uint32_t utf8_get(const unsigned char *s, int *len) {
    unsigned c = s[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c < 0xE0) {
        *len = 2;
        return ((c & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if (c < 0xF0) {
        *len = 3;
        return ((c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

static int utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int sbuf_put_cp(sbuf *b, uint32_t cp) {
    char u[4];
    return sbuf_put(b, u, (size_t)utf8_put(u, cp));
}

/* Byte offset of the first invalid sequence, or n when s is valid. */
static size_t utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int k = utf8_valid_len(u + i, n - i);
        if (!k) return i;
        i += (size_t)k;
    }
    return n;
}

/* Appends s to out with invalid sequences replaced by U+FFFD. */
static int utf8_lossy(sbuf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n) {
            if (u[j] < 0x80) {
                j++;
                continue;
            }
            int k = utf8_valid_len(u + j, n - j);
            if (!k) break;
            j += (size_t)k;
        }
        if (sbuf_put(out, s + i, j - i)) return LC_FAIL;
        if (j < n) {
            if (sbuf_put(out, "\xEF\xBF\xBD", 3)) return LC_FAIL;
            j += utf8_bad_len(u + j, n - j);
        }
        i = j;
    }
    return LC_OK;
}

/* ======================================================================
 * Unicode properties and normalization (tables: unicode_tables.c)
 * ====================================================================== */

static uint32_t range_val(const uni_range *r, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid - 1;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return r[mid].val;
    }
    return 0;
}

/* UNI_CAT_L, UNI_CAT_N or UNI_CAT_OTHER. */
static int uni_cat(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return UNI_CAT_L;
        if (cp >= '0' && cp <= '9') return UNI_CAT_N;
        return UNI_CAT_OTHER;
    }
    return (int)range_val(uni_cat_ranges, uni_cat_ranges_count, cp);
}

/* The White_Space property (= \s in Oniguruma, char::is_whitespace). */
static int uni_ws(uint32_t cp) {
    if (cp < 0x80) return (cp >= 9 && cp <= 13) || cp == ' ';
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static int uni_ccc(uint32_t cp) {
    if (cp < 0x300) return 0;
    return (int)range_val(uni_ccc_ranges, uni_ccc_ranges_count, cp);
}

static const uni_decomp *decomp_find(const uni_decomp *t, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < t[mid].cp) hi = mid - 1;
        else if (cp > t[mid].cp) lo = mid + 1;
        else return &t[mid];
    }
    return NULL;
}

enum { HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7 };
enum { HANGUL_LN = 19, HANGUL_VN = 21, HANGUL_TN = 28, HANGUL_NN = 588, HANGUL_SN = 11172 };

/* The primary composite of (a, b), or 0. */
static uint32_t uni_compose(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LN && b >= HANGUL_V && b < HANGUL_V + HANGUL_VN)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_VN + (b - HANGUL_V)) * HANGUL_TN;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SN && (a - HANGUL_S) % HANGUL_TN == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_TN)
        return a + (b - HANGUL_T);
    int lo = 0, hi = uni_comp_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uni_comp_pair *p = &uni_comp[mid];
        if (a < p->first || (a == p->first && b < p->second)) hi = mid - 1;
        else if (a > p->first || b > p->second) lo = mid + 1;
        else return p->composite;
    }
    return 0;
}

typedef struct {
    uint32_t *cp;
    uint8_t *cc;
    size_t n, cap, cccap;
} u32buf;

static int u32_push(u32buf *b, uint32_t cp) {
    if (GROW(b->cp, b->cap, b->n + 1)) return LC_FAIL;
    b->cp[b->n++] = cp;
    return LC_OK;
}

enum { NF_D = 0, NF_C = 1, NF_KD = 2, NF_KC = 3 };

/* Unicode normalization form `form` of s[0..n) (valid UTF-8) into out. */
static int uni_normalize(int form, const char *s, size_t n, sbuf *out, u32buf *w) {
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    if (i == n) return sbuf_put(out, s, n); /* ASCII is invariant */
    const int compat = form == NF_KD || form == NF_KC;
    const uni_decomp *tab = compat ? uni_nfkd : uni_nfd;
    const int tabn = compat ? uni_nfkd_count : uni_nfd_count;
    const uint32_t *data = compat ? uni_nfkd_data : uni_nfd_data;
    /* 1. full decomposition */
    w->n = 0;
    for (i = 0; i < n;) {
        int k;
        uint32_t cp = utf8_get((const unsigned char *)s + i, &k);
        i += (size_t)k;
        if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SN) {
            uint32_t si = cp - HANGUL_S, t = HANGUL_T + si % HANGUL_TN;
            if (u32_push(w, HANGUL_L + si / HANGUL_NN) ||
                u32_push(w, HANGUL_V + (si % HANGUL_NN) / HANGUL_TN))
                return LC_FAIL;
            if (t != HANGUL_T && u32_push(w, t)) return LC_FAIL;
            continue;
        }
        const uni_decomp *d = cp < 0xC0 && !compat ? NULL : decomp_find(tab, tabn, cp);
        if (!d) {
            if (u32_push(w, cp)) return LC_FAIL;
        } else {
            for (uint32_t j = 0; j < d->len; j++)
                if (u32_push(w, data[d->offset + j])) return LC_FAIL;
        }
    }
    /* 2. canonical ordering (stable, within runs of non-starters) */
    if (GROW(w->cc, w->cccap, w->n + 1)) return LC_FAIL;
    for (size_t j = 0; j < w->n; j++) w->cc[j] = (uint8_t)uni_ccc(w->cp[j]);
    for (size_t j = 1; j < w->n; j++) {
        uint8_t c = w->cc[j];
        if (!c) continue;
        size_t m = j;
        while (m > 0 && w->cc[m - 1] > c) {
            uint32_t tcp = w->cp[m];
            w->cp[m] = w->cp[m - 1];
            w->cp[m - 1] = tcp;
            w->cc[m] = w->cc[m - 1];
            w->cc[m - 1] = c;
            m--;
        }
    }
    /* 3. canonical composition */
    size_t m = w->n;
    if ((form == NF_C || form == NF_KC) && m > 0) {
        size_t starter = 0, o = 1;
        int last = w->cc[0] ? 256 : 0;
        for (size_t j = 1; j < m; j++) {
            uint32_t cp = w->cp[j];
            int c = w->cc[j];
            uint32_t comp = uni_compose(w->cp[starter], cp);
            if (comp && (last < c || last == 0)) {
                w->cp[starter] = comp;
                continue;
            }
            if (c == 0) starter = o;
            last = c;
            w->cp[o] = cp;
            w->cc[o] = (uint8_t)c;
            o++;
        }
        m = o;
    }
    for (size_t j = 0; j < m; j++)
        if (sbuf_put_cp(out, w->cp[j])) return LC_FAIL;
    return LC_OK;
}

/* Lowercase, character by character (Rust's char::to_lowercase). */
static int uni_lowercase(const char *s, size_t n, sbuf *out) {
    for (size_t i = 0; i < n;) {
        int k;
        uint32_t cp = utf8_get((const unsigned char *)s + i, &k);
        const uni_decomp *d = NULL;
        if (cp < 0x80) {
            if (cp >= 'A' && cp <= 'Z') cp += 32;
        } else {
            d = decomp_find(uni_lower, uni_lower_count, cp);
        }
        if (d) {
            for (uint32_t j = 0; j < d->len; j++)
                if (sbuf_put_cp(out, uni_lower_data[d->offset + j])) return LC_FAIL;
        } else if (sbuf_put_cp(out, cp)) {
            return LC_FAIL;
        }
        i += (size_t)k;
    }
    return LC_OK;
}

/* ======================================================================
 * Hash maps: byte strings -> index, and 64-bit keys -> two ints
 * ====================================================================== */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* Open addressing; slots hold indices into the caller's (strs, lens). */
typedef struct {
    int32_t *slot;
    size_t mask;
} strmap;

static int strmap_init(strmap *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot) return LC_FAIL;
    for (size_t i = 0; i < cap; i++) m->slot[i] = -1;
    m->mask = cap - 1;
    return LC_OK;
}

static int strmap_find(const strmap *m, char *const *strs, const int *lens, const char *s,
                       size_t n) {
    if (!m->slot) return -1;
    for (size_t h = hash_bytes(s, n) & m->mask;; h = (h + 1) & m->mask) {
        int32_t v = m->slot[h];
        if (v < 0) return -1;
        if ((size_t)lens[v] == n && memcmp(strs[v], s, n) == 0) return v;
    }
}

/* Inserts idx; returns the index already holding the same string (kept),
 * or -1 when idx was inserted. */
static int strmap_insert(strmap *m, char *const *strs, const int *lens, int idx) {
    const char *s = strs[idx];
    size_t n = (size_t)lens[idx];
    for (size_t h = hash_bytes(s, n) & m->mask;; h = (h + 1) & m->mask) {
        int32_t v = m->slot[h];
        if (v < 0) {
            m->slot[h] = idx;
            return -1;
        }
        if ((size_t)lens[v] == n && memcmp(strs[v], s, n) == 0) return v;
    }
}

typedef struct {
    uint64_t *key;
    int32_t *a, *b;
    size_t mask, n;
} u64map;

#define U64_EMPTY UINT64_MAX

static int u64map_init(u64map *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    m->key = malloc(cap * sizeof *m->key);
    m->a = malloc(cap * sizeof *m->a);
    m->b = malloc(cap * sizeof *m->b);
    if (!m->key || !m->a || !m->b) return LC_FAIL;
    for (size_t i = 0; i < cap; i++) m->key[i] = U64_EMPTY;
    m->mask = cap - 1;
    m->n = 0;
    return LC_OK;
}

static void u64map_free(u64map *m) {
    free(m->key);
    free(m->a);
    free(m->b);
    memset(m, 0, sizeof *m);
}

static int u64map_find(const u64map *m, uint64_t k, int32_t *a, int32_t *b) {
    if (!m->key) return 0;
    for (size_t h = hash_u64(k) & m->mask;; h = (h + 1) & m->mask) {
        if (m->key[h] == k) {
            if (a) *a = m->a[h];
            if (b) *b = m->b[h];
            return 1;
        }
        if (m->key[h] == U64_EMPTY) return 0;
    }
}

/* Sets k -> (a, b), overwriting; grows when over half full. */
static int u64map_set(u64map *m, uint64_t k, int32_t a, int32_t b) {
    if (2 * (m->n + 1) > m->mask + 1) {
        u64map big;
        if (u64map_init(&big, m->mask + 1)) {
            u64map_free(&big);
            return LC_FAIL;
        }
        for (size_t i = 0; i <= m->mask; i++)
            if (m->key[i] != U64_EMPTY) u64map_set(&big, m->key[i], m->a[i], m->b[i]);
        u64map_free(m);
        *m = big;
    }
    size_t h = hash_u64(k) & m->mask;
    while (m->key[h] != U64_EMPTY && m->key[h] != k) h = (h + 1) & m->mask;
    if (m->key[h] == U64_EMPTY) m->n++;
    m->key[h] = k;
    m->a[h] = a;
    m->b[h] = b;
    return LC_OK;
}

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
static const char RX_GPT2_STR[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RX_LLAMA3_STR[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RX_QWEN2_STR[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

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

/* ---- trie of added tokens (leftmost-longest matching) -------------------- */

static int trie_add(trie *tr, const char *s, int len, int idx) {
    if (!tr->term) {
        if (u64map_init(&tr->edges, 64) || GROW(tr->term, tr->cap, 1)) return LC_FAIL;
        tr->term[0] = -1;
        tr->n = 1;
    }
    if (len <= 0) return LC_OK;
    size_t node = 0;
    for (int i = 0; i < len; i++) {
        uint64_t k = ((uint64_t)node << 8) | (unsigned char)s[i];
        int32_t child;
        if (!u64map_find(&tr->edges, k, &child, NULL)) {
            if (GROW(tr->term, tr->cap, tr->n + 1)) return LC_FAIL;
            child = (int32_t)tr->n;
            tr->term[tr->n++] = -1;
            if (u64map_set(&tr->edges, k, child, 0)) return LC_FAIL;
        }
        node = (size_t)child;
    }
    if (tr->term[node] < 0) tr->term[node] = idx; /* first of equal contents wins */
    tr->first[(unsigned char)s[0]] = 1;
    return LC_OK;
}

static void trie_free(trie *tr) {
    u64map_free(&tr->edges);
    free(tr->term);
    memset(tr, 0, sizeof *tr);
}

/* Longest token starting at s[i]: its added index and end, or -1. */
static int trie_longest(const trie *tr, const char *s, size_t n, size_t i, size_t *end) {
    if (!tr->term || !tr->first[(unsigned char)s[i]]) return -1;
    size_t node = 0;
    int best = -1;
    for (size_t j = i; j < n; j++) {
        int32_t child;
        if (!u64map_find(&tr->edges, ((uint64_t)node << 8) | (unsigned char)s[j], &child, NULL))
            break;
        node = (size_t)child;
        if (tr->term[node] >= 0) {
            best = tr->term[node];
            *end = j + 1;
        }
    }
    return best;
}

/* ---- id <-> token ------------------------------------------------------- */

static const char *id_token(const tokenizer *t, int id, int *len) {
    if (id < 0 || id >= t->n_ids) return NULL;
    int a = t->added_of_id[id];
    if (a >= 0) { /* HF's simple_id_to_token: the normalized form if any */
        const added_tok *tk = &t->added[a];
        if (tk->norm) {
            *len = tk->norm_len;
            return tk->norm;
        }
        *len = tk->len;
        return tk->content;
    }
    if (!t->id_str[id]) return NULL;
    *len = t->id_len[id];
    return t->id_str[id];
}

static int vocab_find(const tokenizer *t, const char *s, size_t n) {
    return strmap_find(&t->vocab, t->id_str, t->id_len, s, n);
}

/* ======================================================================
 * tokenizer.json parsing
 * ====================================================================== */

typedef struct {
    const char *file;
    lc_err *err;
} jctx;

__attribute__((format(printf, 3, 4))) static int jfail(jctx *c, const char *key,
                                                      const char *fmt, ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lc_errf(c->err, "%s: '%s': %s", c->file, key, msg);
}

/* snprintf for key paths (truncation of very long paths is fine). */
__attribute__((format(printf, 3, 4))) static void keyf(char *buf, size_t n, const char *fmt,
                                                      ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static int joom(jctx *c) { return lc_errf(c->err, "%s: out of memory", c->file); }

/* A short, printable rendering of a JSON value for messages. */
static void jshow(const cJSON *v, char *buf, size_t n) {
    if (cJSON_IsString(v)) {
        snprintf(buf, n, "'%.200s'", v->valuestring);
    } else {
        char *p = cJSON_PrintUnformatted(v);
        snprintf(buf, n, "%.200s", p ? p : "?");
        free(p);
    }
}

static int junsupported(jctx *c, const char *key, const cJSON *v, const char *supported) {
    char shown[256];
    jshow(v, shown, sizeof shown);
    return jfail(c, key, "unsupported value %s (supported: %s)", shown, supported);
}

static const cJSON *jget(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static int jnull(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* A string member; absent/null -> *out = NULL unless required. */
static int jstr(jctx *c, const cJSON *o, const char *k, const char *path, int required,
                const char **out) {
    char key[512];
    keyf(key, sizeof key, "%s%s%s", path, *path ? "." : "", k);
    const cJSON *v = jget(o, k);
    *out = NULL;
    if (jnull(v)) return required ? jfail(c, key, "missing, expected a string") : LC_OK;
    if (!cJSON_IsString(v)) return jfail(c, key, "expected a string");
    *out = v->valuestring;
    return LC_OK;
}

static int jbool(jctx *c, const cJSON *o, const char *k, const char *path, int def, int *out) {
    char key[512];
    keyf(key, sizeof key, "%s%s%s", path, *path ? "." : "", k);
    const cJSON *v = jget(o, k);
    *out = def;
    if (jnull(v)) return LC_OK;
    if (!cJSON_IsBool(v)) return jfail(c, key, "expected true or false");
    *out = cJSON_IsTrue(v);
    return LC_OK;
}

static int jint_value(jctx *c, const cJSON *v, const char *key, int lo, int hi, int *out) {
    if (!cJSON_IsNumber(v)) return jfail(c, key, "expected an integer");
    double d = v->valuedouble;
    /* range first: converting an out-of-range double to an integer is undefined */
    if (!(d >= lo && d <= hi) || d != floor(d))
        return jfail(c, key, "expected an integer in [%d, %d], found %g", lo, hi, d);
    *out = (int)d;
    return LC_OK;
}

static int jint(jctx *c, const cJSON *o, const char *k, const char *path, int def, int lo, int hi,
                int *out) {
    char key[512];
    keyf(key, sizeof key, "%s%s%s", path, *path ? "." : "", k);
    const cJSON *v = jget(o, k);
    *out = def;
    if (jnull(v)) return LC_OK;
    return jint_value(c, v, key, lo, hi, out);
}

/* Exactly one Unicode character. */
static int jchar(jctx *c, const cJSON *o, const char *k, const char *path, uint32_t def,
                 uint32_t *out) {
    const char *s;
    char key[512];
    keyf(key, sizeof key, "%s%s%s", path, *path ? "." : "", k);
    if (jstr(c, o, k, path, 0, &s)) return LC_FAIL;
    *out = def;
    if (!s) return LC_OK;
    size_t n = strlen(s);
    int len = 0;
    uint32_t cp = n && utf8_check(s, n) == n ? utf8_get((const unsigned char *)s, &len) : 0;
    if (n == 0 || (size_t)len != n)
        return jfail(c, key, "expected a single character, found '%.100s'", s);
    *out = cp;
    return LC_OK;
}

static char *dup_bytes(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* {"String": s} (or {"Regex": r} when allow_regex: *is_regex = 1). */
static int jpattern(jctx *c, const cJSON *o, const char *path, int allow_regex, int *is_regex,
                    const char **s) {
    char key[512];
    keyf(key, sizeof key, "%s.pattern", path);
    const cJSON *p = jget(o, "pattern");
    *is_regex = 0;
    *s = NULL;
    if (!cJSON_IsObject(p)) return jfail(c, key, "missing, expected {\"String\": ...} or {\"Regex\": ...}");
    const cJSON *v = jget(p, "String");
    if (cJSON_IsString(v)) {
        *s = v->valuestring;
        return LC_OK;
    }
    v = jget(p, "Regex");
    if (cJSON_IsString(v)) {
        if (!allow_regex) {
            keyf(key, sizeof key, "%s.pattern.Regex", path);
            return jfail(c, key, "unsupported: regex patterns are not supported here, only "
                         "{\"String\": ...}");
        }
        *is_regex = 1;
        *s = v->valuestring;
        return LC_OK;
    }
    return jfail(c, key, "expected {\"String\": \"...\"} or {\"Regex\": \"...\"}");
}

static const char *jtype(jctx *c, const cJSON *o, const char *path) {
    char key[512];
    keyf(key, sizeof key, "%s.type", path);
    const cJSON *v = jget(o, "type");
    if (!cJSON_IsString(v)) {
        jfail(c, key, "missing, expected a string");
        return NULL;
    }
    return v->valuestring;
}

/* ---- normalizers ---------------------------------------------------------- */

static int add_norm(tokenizer *t, jctx *c, const cJSON *o, const char *path, int depth) {
    if (depth > 8) return jfail(c, path, "nested too deeply");
    if (!cJSON_IsObject(o)) return jfail(c, path, "expected an object or null");
    const char *type = jtype(c, o, path);
    if (!type) return LC_FAIL;
    char key[512];
    if (!strcmp(type, "Sequence")) {
        keyf(key, sizeof key, "%s.normalizers", path);
        const cJSON *arr = jget(o, "normalizers");
        if (!cJSON_IsArray(arr)) return jfail(c, key, "missing, expected an array");
        int i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            keyf(key, sizeof key, "%s.normalizers[%d]", path, i);
            if (add_norm(t, c, e, key, depth + 1)) return LC_FAIL;
        }
        return LC_OK;
    }
    norm_step st;
    memset(&st, 0, sizeof st);
    if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") ||
        !strcmp(type, "NFKD")) {
        st.type = NORM_NF;
        st.form = !strcmp(type, "NFC") ? NF_C : !strcmp(type, "NFD") ? NF_D
                  : !strcmp(type, "NFKC") ? NF_KC : NF_KD;
    } else if (!strcmp(type, "Prepend")) {
        const char *s;
        if (jstr(c, o, "prepend", path, 1, &s)) return LC_FAIL;
        st.type = NORM_PREPEND;
        st.alen = strlen(s);
        if (!(st.a = dup_bytes(s, st.alen))) return joom(c);
    } else if (!strcmp(type, "Replace")) {
        const char *pat, *content;
        int is_rx;
        if (jpattern(c, o, path, 0, &is_rx, &pat) || jstr(c, o, "content", path, 1, &content))
            return LC_FAIL;
        if (!*pat) {
            keyf(key, sizeof key, "%s.pattern.String", path);
            return jfail(c, key, "must not be empty");
        }
        st.type = NORM_REPLACE;
        st.alen = strlen(pat);
        st.blen = strlen(content);
        st.a = dup_bytes(pat, st.alen);
        st.b = dup_bytes(content, st.blen);
        if (!st.a || !st.b) {
            free(st.a);
            free(st.b);
            return joom(c);
        }
    } else if (!strcmp(type, "Lowercase")) {
        st.type = NORM_LOWER;
    } else if (!strcmp(type, "Strip")) {
        st.type = NORM_STRIP;
        if (jbool(c, o, "strip_left", path, 1, &st.left) ||
            jbool(c, o, "strip_right", path, 1, &st.right))
            return LC_FAIL;
    } else {
        keyf(key, sizeof key, "%s.type", path);
        return junsupported(c, key, jget(o, "type"),
                            "Sequence, NFC, NFD, NFKC, NFKD, Prepend, Replace, Strip, Lowercase");
    }
    size_t cap = (size_t)t->n_norm;
    if (GROW(t->norm, cap, (size_t)t->n_norm + 1)) {
        free(st.a);
        free(st.b);
        return joom(c);
    }
    t->norm[t->n_norm++] = st;
    return LC_OK;
}

/* ---- pre-tokenizers ------------------------------------------------------- */

/* prepend_scheme (default "always"); the older add_prefix_space: false
 * means "never" and contradicts any other declared scheme (as in HF). */
static int parse_prepend_scheme(jctx *c, const cJSON *o, const char *path, int *out) {
    const char *s;
    char key[512];
    if (jstr(c, o, "prepend_scheme", path, 0, &s)) return LC_FAIL;
    *out = PREPEND_ALWAYS;
    if (s) {
        keyf(key, sizeof key, "%s.prepend_scheme", path);
        if (!strcmp(s, "always")) *out = PREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *out = PREPEND_FIRST;
        else if (!strcmp(s, "never")) *out = PREPEND_NEVER;
        else return junsupported(c, key, jget(o, "prepend_scheme"), "always, first, never");
    }
    int aps;
    if (jbool(c, o, "add_prefix_space", path, 1, &aps)) return LC_FAIL;
    if (!aps) {
        keyf(key, sizeof key, "%s.add_prefix_space", path);
        if (*out != PREPEND_NEVER)
            return jfail(c, key, "false does not match prepend_scheme (absent or not \"never\")");
        *out = PREPEND_NEVER;
    }
    return LC_OK;
}

static int add_pt(tokenizer *t, jctx *c, const cJSON *o, const char *path, int depth) {
    if (depth > 8) return jfail(c, path, "nested too deeply");
    if (!cJSON_IsObject(o)) return jfail(c, path, "expected an object or null");
    const char *type = jtype(c, o, path);
    if (!type) return LC_FAIL;
    char key[512];
    if (!strcmp(type, "Sequence")) {
        keyf(key, sizeof key, "%s.pretokenizers", path);
        const cJSON *arr = jget(o, "pretokenizers");
        if (!cJSON_IsArray(arr)) return jfail(c, key, "missing, expected an array");
        int i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            keyf(key, sizeof key, "%s.pretokenizers[%d]", path, i);
            if (add_pt(t, c, e, key, depth + 1)) return LC_FAIL;
        }
        return LC_OK;
    }
    pt_step st;
    memset(&st, 0, sizeof st);
    if (!strcmp(type, "Split")) {
        const char *pat, *beh;
        int is_rx;
        st.type = PT_SPLIT;
        if (jpattern(c, o, path, 1, &is_rx, &pat)) return LC_FAIL;
        if (jstr(c, o, "behavior", path, 1, &beh) || jbool(c, o, "invert", path, 0, &st.invert))
            return LC_FAIL;
        keyf(key, sizeof key, "%s.behavior", path);
        if (!strcmp(beh, "Removed")) st.behavior = SB_REMOVED;
        else if (!strcmp(beh, "Isolated")) st.behavior = SB_ISOLATED;
        else if (!strcmp(beh, "MergedWithPrevious")) st.behavior = SB_MERGED_PREV;
        else if (!strcmp(beh, "MergedWithNext")) st.behavior = SB_MERGED_NEXT;
        else if (!strcmp(beh, "Contiguous")) st.behavior = SB_CONTIGUOUS;
        else return junsupported(c, key, jget(o, "behavior"),
                                 "Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
        if (is_rx) {
            keyf(key, sizeof key, "%s.pattern.Regex", path);
            if (!strcmp(pat, RX_GPT2_STR)) st.rx = RX_GPT2;
            else if (!strcmp(pat, RX_LLAMA3_STR)) st.rx = RX_LLAMA3;
            else if (!strcmp(pat, RX_QWEN2_STR)) st.rx = RX_QWEN2;
            else return jfail(c, key, "unsupported regex '%.300s' (regexes are not run by a "
                              "regex engine; supported: the GPT-2, Llama 3 and Qwen2 "
                              "pre-tokenizer patterns)", pat);
        } else {
            if (!*pat) {
                keyf(key, sizeof key, "%s.pattern.String", path);
                return jfail(c, key, "must not be empty");
            }
            st.rx = -1;
            st.lit_len = strlen(pat);
            if (!(st.lit = dup_bytes(pat, st.lit_len))) return joom(c);
        }
    } else if (!strcmp(type, "ByteLevel")) {
        st.type = PT_BYTELEVEL;
        if (jbool(c, o, "add_prefix_space", path, 1, &st.add_prefix_space) ||
            jbool(c, o, "use_regex", path, 1, &st.use_regex))
            return LC_FAIL;
    } else if (!strcmp(type, "Metaspace")) {
        st.type = PT_METASPACE;
        if (jchar(c, o, "replacement", path, 0x2581, &st.repl) ||
            parse_prepend_scheme(c, o, path, &st.prepend) ||
            jbool(c, o, "split", path, 1, &st.split))
            return LC_FAIL;
    } else if (!strcmp(type, "Digits")) {
        st.type = PT_DIGITS;
        if (jbool(c, o, "individual_digits", path, 0, &st.individual)) return LC_FAIL;
    } else {
        keyf(key, sizeof key, "%s.type", path);
        return junsupported(c, key, jget(o, "type"),
                            "Sequence, Split, ByteLevel, Metaspace, Digits");
    }
    size_t cap = (size_t)t->n_pt;
    if (GROW(t->pt, cap, (size_t)t->n_pt + 1)) {
        free(st.lit);
        return joom(c);
    }
    t->pt[t->n_pt++] = st;
    return LC_OK;
}

/* ---- decoders ------------------------------------------------------------- */

static int add_dec(tokenizer *t, jctx *c, const cJSON *o, const char *path, int depth) {
    if (depth > 8) return jfail(c, path, "nested too deeply");
    if (!cJSON_IsObject(o)) return jfail(c, path, "expected an object or null");
    const char *type = jtype(c, o, path);
    if (!type) return LC_FAIL;
    char key[512];
    if (!strcmp(type, "Sequence")) {
        keyf(key, sizeof key, "%s.decoders", path);
        const cJSON *arr = jget(o, "decoders");
        if (!cJSON_IsArray(arr)) return jfail(c, key, "missing, expected an array");
        int i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            keyf(key, sizeof key, "%s.decoders[%d]", path, i);
            if (add_dec(t, c, e, key, depth + 1)) return LC_FAIL;
        }
        return LC_OK;
    }
    dec_step st;
    memset(&st, 0, sizeof st);
    if (!strcmp(type, "ByteLevel")) {
        st.type = DEC_BYTELEVEL;
    } else if (!strcmp(type, "Replace")) {
        const char *pat, *content;
        int is_rx;
        if (jpattern(c, o, path, 0, &is_rx, &pat) || jstr(c, o, "content", path, 1, &content))
            return LC_FAIL;
        if (!*pat) {
            keyf(key, sizeof key, "%s.pattern.String", path);
            return jfail(c, key, "must not be empty");
        }
        st.type = DEC_REPLACE;
        st.alen = strlen(pat);
        st.blen = strlen(content);
        st.a = dup_bytes(pat, st.alen);
        st.b = dup_bytes(content, st.blen);
        if (!st.a || !st.b) {
            free(st.a);
            free(st.b);
            return joom(c);
        }
    } else if (!strcmp(type, "ByteFallback")) {
        st.type = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        st.type = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        st.type = DEC_STRIP;
        if (jchar(c, o, "content", path, ' ', &st.cp) ||
            jint(c, o, "start", path, 0, 0, 1 << 30, &st.start) ||
            jint(c, o, "stop", path, 0, 0, 1 << 30, &st.stop))
            return LC_FAIL;
    } else if (!strcmp(type, "Metaspace")) {
        st.type = DEC_METASPACE;
        if (jchar(c, o, "replacement", path, 0x2581, &st.cp) ||
            parse_prepend_scheme(c, o, path, &st.prepend))
            return LC_FAIL;
    } else {
        keyf(key, sizeof key, "%s.type", path);
        return junsupported(c, key, jget(o, "type"),
                            "Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace");
    }
    size_t cap = (size_t)t->n_dec;
    if (GROW(t->dec, cap, (size_t)t->n_dec + 1)) {
        free(st.a);
        free(st.b);
        return joom(c);
    }
    t->dec[t->n_dec++] = st;
    return LC_OK;
}

/* ---- post-processors ------------------------------------------------------ */

static void tmpl_free(tmpl *p) {
    for (int i = 0; i < p->n; i++) free(p->items[i].ids);
    free(p->items);
    memset(p, 0, sizeof *p);
}

static int parse_template(tokenizer *t, jctx *c, const cJSON *o, const char *path) {
    char key[512];
    keyf(key, sizeof key, "%s.single", path);
    const cJSON *single = jget(o, "single");
    if (!cJSON_IsArray(single)) return jfail(c, key, "missing, expected an array");
    const cJSON *specials = jget(o, "special_tokens");
    tmpl tp = {0};
    int n = cJSON_GetArraySize(single);
    if (n > 0 && !(tp.items = calloc((size_t)n, sizeof *tp.items))) return joom(c);
    int i = 0;
    for (const cJSON *e = single->child; e; e = e->next, i++) {
        keyf(key, sizeof key, "%s.single[%d]", path, i);
        const cJSON *seq = jget(e, "Sequence"), *sp = jget(e, "SpecialToken");
        tmpl_item *it = &tp.items[tp.n++];
        if (cJSON_IsObject(seq)) {
            const cJSON *id = jget(seq, "id");
            if (!cJSON_IsString(id) || strcmp(id->valuestring, "A")) {
                tmpl_free(&tp);
                keyf(key, sizeof key, "%s.single[%d].Sequence.id", path, i);
                return jfail(c, key, "expected \"A\" in a single-sequence template");
            }
            it->is_seq = 1;
        } else if (cJSON_IsObject(sp)) {
            const cJSON *id = jget(sp, "id");
            if (!cJSON_IsString(id)) {
                tmpl_free(&tp);
                keyf(key, sizeof key, "%s.single[%d].SpecialToken.id", path, i);
                return jfail(c, key, "missing, expected a string");
            }
            const cJSON *def = cJSON_IsObject(specials) ? jget(specials, id->valuestring) : NULL;
            const cJSON *ids = def ? jget(def, "ids") : NULL;
            if (!cJSON_IsArray(ids)) {
                tmpl_free(&tp);
                keyf(key, sizeof key, "%s.special_tokens.%.200s.ids", path, id->valuestring);
                return jfail(c, key, "missing, expected the ids of special token '%.200s'",
                             id->valuestring);
            }
            int m = cJSON_GetArraySize(ids), j = 0;
            if (m > 0 && !(it->ids = malloc(sizeof(int) * (size_t)m))) {
                tmpl_free(&tp);
                return joom(c);
            }
            for (const cJSON *x = ids->child; x; x = x->next, j++) {
                keyf(key, sizeof key, "%s.special_tokens.%.200s.ids[%d]", path,
                         id->valuestring, j);
                if (jint_value(c, x, key, 0, MAX_TOKEN_ID, &it->ids[j])) {
                    tmpl_free(&tp);
                    return LC_FAIL;
                }
            }
            it->n = m;
        } else {
            tmpl_free(&tp);
            return jfail(c, key, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
        }
    }
    size_t cap = (size_t)t->n_post;
    if (GROW(t->post, cap, (size_t)t->n_post + 1)) {
        tmpl_free(&tp);
        return joom(c);
    }
    t->post[t->n_post++] = tp;
    return LC_OK;
}

static int add_post(tokenizer *t, jctx *c, const cJSON *o, const char *path, int depth) {
    if (depth > 8) return jfail(c, path, "nested too deeply");
    if (!cJSON_IsObject(o)) return jfail(c, path, "expected an object or null");
    const char *type = jtype(c, o, path);
    if (!type) return LC_FAIL;
    char key[512];
    if (!strcmp(type, "Sequence")) {
        keyf(key, sizeof key, "%s.processors", path);
        const cJSON *arr = jget(o, "processors");
        if (!cJSON_IsArray(arr)) return jfail(c, key, "missing, expected an array");
        int i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            keyf(key, sizeof key, "%s.processors[%d]", path, i);
            if (add_post(t, c, e, key, depth + 1)) return LC_FAIL;
        }
        return LC_OK;
    }
    if (!strcmp(type, "ByteLevel")) return LC_OK; /* offsets only */
    if (!strcmp(type, "TemplateProcessing")) return parse_template(t, c, o, path);
    keyf(key, sizeof key, "%s.type", path);
    return junsupported(c, key, jget(o, "type"), "Sequence, ByteLevel, TemplateProcessing");
}

/* ---- model ------------------------------------------------------------- */

static uint32_t first_char(const char *s, int n) {
    int k;
    if (n <= 0 || !utf8_valid_len((const unsigned char *)s, (size_t)n)) return UINT32_MAX;
    return utf8_get((const unsigned char *)s, &k);
}

static uint32_t last_char(const char *s, int n) {
    int q = n - 1, k;
    if (n <= 0) return UINT32_MAX;
    while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
    if (utf8_valid_len((const unsigned char *)s + q, (size_t)(n - q)) != n - q) return UINT32_MAX;
    return utf8_get((const unsigned char *)s + q, &k);
}

/* The junction set (see struct tokenizer); left empty when unsafe. */
static int build_junctions(tokenizer *t) {
    if (t->cont_prefix || t->eow_suffix) return LC_OK;
    t->first_cp = malloc(sizeof(uint32_t) * ((size_t)t->n_ids + 1));
    t->last_cp = malloc(sizeof(uint32_t) * ((size_t)t->n_ids + 1));
    if (!t->first_cp || !t->last_cp) return LC_FAIL;
    for (int id = 0; id < t->n_ids; id++) {
        t->first_cp[id] = first_char(t->id_str[id], t->id_str[id] ? t->id_len[id] : 0);
        t->last_cp[id] = last_char(t->id_str[id], t->id_str[id] ? t->id_len[id] : 0);
    }
    u64map j;
    if (u64map_init(&j, 1024)) {
        u64map_free(&j);
        return LC_FAIL;
    }
    for (size_t h = 0; h <= t->merges.mask; h++) {
        if (t->merges.key[h] == U64_EMPTY) continue;
        int a = (int)(t->merges.key[h] >> 32), b = (int)(uint32_t)t->merges.key[h];
        if (t->last_cp[a] == UINT32_MAX || t->first_cp[b] == UINT32_MAX) {
            u64map_free(&j); /* cannot reason about it: never split */
            return LC_OK;
        }
        if (u64map_set(&j, ((uint64_t)t->last_cp[a] << 32) | t->first_cp[b], 0, 0)) {
            u64map_free(&j);
            return LC_FAIL;
        }
    }
    t->junctions = j;
    return LC_OK;
}

static int parse_model(tokenizer *t, jctx *c, const cJSON *m) {
    if (!cJSON_IsObject(m)) return jfail(c, "model", "missing, expected an object");
    const cJSON *tv = jget(m, "type");
    if (!cJSON_IsString(tv)) return jfail(c, "model.type", "missing, expected \"BPE\"");
    if (strcmp(tv->valuestring, "BPE"))
        return junsupported(c, "model.type", tv, "BPE");
    const cJSON *dropout = jget(m, "dropout");
    if (!jnull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return junsupported(c, "model.dropout", dropout, "null (BPE dropout is random)");
    const char *unk, *pre, *suf;
    if (jstr(c, m, "unk_token", "model", 0, &unk) ||
        jstr(c, m, "continuing_subword_prefix", "model", 0, &pre) ||
        jstr(c, m, "end_of_word_suffix", "model", 0, &suf) ||
        jbool(c, m, "fuse_unk", "model", 0, &t->fuse_unk) ||
        jbool(c, m, "byte_fallback", "model", 0, &t->byte_fallback) ||
        jbool(c, m, "ignore_merges", "model", 0, &t->ignore_merges))
        return LC_FAIL;
    if (pre && *pre) {
        t->cont_prefix_len = strlen(pre);
        if (!(t->cont_prefix = dup_bytes(pre, t->cont_prefix_len))) return joom(c);
    }
    if (suf && *suf) {
        t->eow_suffix_len = strlen(suf);
        if (!(t->eow_suffix = dup_bytes(suf, t->eow_suffix_len))) return joom(c);
    }
    /* vocab */
    const cJSON *vocab = jget(m, "vocab");
    if (!cJSON_IsObject(vocab)) return jfail(c, "model.vocab", "missing, expected an object");
    size_t total = 0, count = 0;
    int max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        char key[512];
        keyf(key, sizeof key, "model.vocab.%.200s", e->string);
        int id = 0;
        if (jint_value(c, e, key, 0, MAX_TOKEN_ID, &id)) return LC_FAIL;
        if (id > max_id) max_id = id;
        total += strlen(e->string) + 1;
        count++;
    }
    t->n_ids = max_id + 1;
    t->vocab_count = (int)count;
    t->arena = malloc(total ? total : 1);
    t->id_str = calloc((size_t)t->n_ids + 1, sizeof *t->id_str);
    t->id_len = calloc((size_t)t->n_ids + 1, sizeof *t->id_len);
    if (!t->arena || !t->id_str || !t->id_len || strmap_init(&t->vocab, count)) return joom(c);
    char *p = t->arena;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int id = (int)e->valuedouble;
        size_t len = strlen(e->string);
        if (t->id_str[id]) {
            char key[512];
            keyf(key, sizeof key, "model.vocab.%.200s", e->string);
            return jfail(c, key, "id %d is also used by '%.200s'", id, t->id_str[id]);
        }
        memcpy(p, e->string, len + 1);
        t->id_str[id] = p;
        t->id_len[id] = (int)len;
        p += len + 1;
        if (strmap_insert(&t->vocab, t->id_str, t->id_len, id) >= 0) {
            char key[512];
            keyf(key, sizeof key, "model.vocab.%.200s", e->string);
            return jfail(c, key, "token listed twice");
        }
    }
    /* merges: "a b" strings or ["a", "b"] pairs; rank = position */
    const cJSON *merges = jget(m, "merges");
    if (jnull(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges))
        return jfail(c, "model.merges", "expected an array");
    if (u64map_init(&t->merges, merges ? (size_t)cJSON_GetArraySize(merges) : 0)) return joom(c);
    sbuf cat = {0};
    int rank = 0, i = 0, rc = LC_OK;
    for (const cJSON *e = merges ? merges->child : NULL; e && !rc; e = e->next, i++) {
        char key[512];
        keyf(key, sizeof key, "model.merges[%d]", i);
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(e)) {
            const char *s = e->valuestring;
            if (!strncmp(s, "#version", 8)) continue;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                rc = jfail(c, key, "expected \"a b\" (two tokens and one space), found '%.200s'", s);
                break;
            }
            a = s;
            alen = (size_t)(sp - s);
            b = sp + 1;
            blen = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            alen = strlen(a);
            b = e->child->next->valuestring;
            blen = strlen(b);
        } else {
            rc = jfail(c, key, "expected \"a b\" or [\"a\", \"b\"]");
            break;
        }
        int ia = vocab_find(t, a, alen), ib = vocab_find(t, b, blen);
        size_t skip = t->cont_prefix_len <= blen ? t->cont_prefix_len : blen;
        cat.n = 0;
        if (sbuf_put(&cat, a, alen) || sbuf_put(&cat, b + skip, blen - skip)) {
            rc = joom(c);
            break;
        }
        int inew = vocab_find(t, cat.p, cat.n);
        if (ia < 0 || ib < 0 || inew < 0) {
            const char *what = ia < 0 ? a : ib < 0 ? b : cat.p;
            int wl = ia < 0 ? (int)alen : ib < 0 ? (int)blen : (int)cat.n;
            rc = jfail(c, key, "token '%.*s' is not in model.vocab", wl > 200 ? 200 : wl, what);
            break;
        }
        if (rank >= (1 << 24)) {
            rc = jfail(c, key, "more than %d merges are not supported", 1 << 24);
            break;
        }
        if (u64map_set(&t->merges, ((uint64_t)ia << 32) | (uint32_t)ib, rank, inew)) rc = joom(c);
        rank++;
    }
    free(cat.p);
    if (rc) return rc;
    if (build_junctions(t)) return joom(c);
    t->unk_id = -1;
    if (unk) {
        t->unk_id = vocab_find(t, unk, strlen(unk));
        if (t->unk_id < 0)
            return jfail(c, "model.unk_token", "'%.200s' is not in model.vocab", unk);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = vocab_find(t, name, 6);
    }
    return LC_OK;
}

/* ---- added tokens ------------------------------------------------------- */

static int normalize_text(const tokenizer *t, const char *s, size_t n, sbuf *out, sbuf *tmp,
                          u32buf *w);

/* added_tokens, resolved like HF's AddedVocabulary::add_tokens: the ids
 * written in the file are NOT used (HF only warns when they differ): a
 * token takes the id of an earlier added token with the same content, else
 * its id in model.vocab, else the next id from the model's vocabulary size
 * (number of entries) on. A token identical to an earlier one is ignored;
 * the same content with other flags updates the flags. */
static int parse_added(tokenizer *t, jctx *c, const cJSON *arr) {
    if (jnull(arr)) return LC_OK;
    if (!cJSON_IsArray(arr)) return jfail(c, "added_tokens", "expected an array");
    int n = cJSON_GetArraySize(arr), i = 0;
    size_t n_index = (size_t)(t->n_ids > t->vocab_count + n ? t->n_ids : t->vocab_count + n) + 1;
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    t->added_str = calloc((size_t)n + 1, sizeof *t->added_str);
    t->added_len = calloc((size_t)n + 1, sizeof *t->added_len);
    int *index = malloc(sizeof(int) * n_index); /* id -> t->added index */
    if (!t->added || !t->added_str || !t->added_len || !index ||
        strmap_init(&t->added_map, (size_t)n)) {
        free(index);
        return joom(c);
    }
    for (size_t k = 0; k < n_index; k++) index[k] = -1;
    int next_id = t->vocab_count, rc = LC_OK;
    for (const cJSON *e = arr->child; e && !rc; e = e->next, i++) {
        char path[64];
        keyf(path, sizeof path, "added_tokens[%d]", i);
        if (!cJSON_IsObject(e)) {
            rc = jfail(c, path, "expected an object");
            break;
        }
        added_tok a;
        memset(&a, 0, sizeof a);
        const char *content;
        int file_id;
        if (jstr(c, e, "content", path, 1, &content) ||
            jint(c, e, "id", path, -1, 0, MAX_TOKEN_ID, &file_id) ||
            jbool(c, e, "special", path, 0, &a.special) ||
            jbool(c, e, "single_word", path, 0, &a.single_word) ||
            jbool(c, e, "lstrip", path, 0, &a.lstrip) ||
            jbool(c, e, "rstrip", path, 0, &a.rstrip) ||
            jbool(c, e, "normalized", path, !a.special, &a.normalized)) {
            rc = LC_FAIL;
            break;
        }
        a.len = (int)strlen(content);
        if (a.len == 0) continue;
        int prev = strmap_find(&t->added_map, t->added_str, t->added_len, content, (size_t)a.len);
        if (prev >= 0) {
            added_tok *p = &t->added[prev];
            if (p->special == a.special && p->single_word == a.single_word &&
                p->lstrip == a.lstrip && p->rstrip == a.rstrip && p->normalized == a.normalized)
                continue;
            /* same content, same id: new flags; the special set only grows */
            p->special_set |= a.special;
            p->special = a.special;
            p->single_word = a.single_word;
            p->lstrip = a.lstrip;
            p->rstrip = a.rstrip;
            p->normalized = a.normalized;
            continue;
        }
        int id = vocab_find(t, content, (size_t)a.len);
        if (id < 0) id = next_id++;
        if (!(a.content = dup_bytes(content, (size_t)a.len))) {
            rc = joom(c);
            break;
        }
        a.id = id;
        a.special_set = a.special;
        int slot = index[id];
        if (slot >= 0) { /* an id taken by another content (sparse vocab) */
            free(t->added[slot].content);
            t->added[slot] = a;
        } else {
            slot = t->n_added++;
            t->added[slot] = a;
            index[id] = slot;
        }
        t->added_str[slot] = t->added[slot].content;
        t->added_len[slot] = a.len;
        strmap_insert(&t->added_map, t->added_str, t->added_len, slot);
    }
    free(index);
    return rc;
}

/* After the model and the normalizer are known: ids, maps and tries. */
static int finish_added(tokenizer *t, jctx *c) {
    int n_ids = t->n_ids;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id >= n_ids) n_ids = t->added[i].id + 1;
    if (n_ids > t->n_ids) {
        char **s = realloc(t->id_str, sizeof *s * ((size_t)n_ids + 1));
        if (!s) return joom(c);
        t->id_str = s;
        int *l = realloc(t->id_len, sizeof *l * ((size_t)n_ids + 1));
        if (!l) return joom(c);
        t->id_len = l;
        for (int i = t->n_ids; i <= n_ids; i++) {
            t->id_str[i] = NULL;
            t->id_len[i] = 0;
        }
        t->n_ids = n_ids;
    }
    t->added_of_id = malloc(sizeof(int) * ((size_t)t->n_ids + 1));
    t->is_special = calloc((size_t)t->n_ids + 1, 1);
    if (!t->added_of_id || !t->is_special) return joom(c);
    if (!t->added_map.slot && strmap_init(&t->added_map, 0)) return joom(c);
    for (int i = 0; i < t->n_ids; i++) t->added_of_id[i] = -1;
    strmap specials;
    if (strmap_init(&specials, (size_t)t->n_added)) return joom(c);
    sbuf nb = {0}, tmp = {0};
    u32buf w = {0};
    int rc = LC_OK;
    for (int i = 0; i < t->n_added && !rc; i++) {
        added_tok *a = &t->added[i];
        t->added_of_id[a->id] = i;
        if (a->special_set) strmap_insert(&specials, t->added_str, t->added_len, i);
        if (a->normalized) { /* matched after normalization, in its normalized form */
            nb.n = 0;
            if (normalize_text(t, a->content, (size_t)a->len, &nb, &tmp, &w)) {
                rc = joom(c);
                break;
            }
            a->norm_len = (int)nb.n;
            if (!(a->norm = dup_bytes(nb.p ? nb.p : "", nb.n))) rc = joom(c);
            else if (a->norm_len && trie_add(&t->norm_trie, a->norm, a->norm_len, i)) rc = joom(c);
        } else if (trie_add(&t->raw_trie, a->content, a->len, i)) {
            rc = joom(c);
        }
    }
    for (int id = 0; id < t->n_ids && !rc; id++) {
        int len;
        const char *s = id_token(t, id, &len);
        if (s && strmap_find(&specials, t->added_str, t->added_len, s, (size_t)len) >= 0)
            t->is_special[id] = 1;
    }
    free(specials.slot);
    free(nb.p);
    free(tmp.p);
    free(w.cp);
    free(w.cc);
    return rc;
}

/* ---- BOS / EOS -------------------------------------------------------------- */

static int token_id_of(const tokenizer *t, const char *s) {
    size_t n = strlen(s);
    int a = strmap_find(&t->added_map, t->added_str, t->added_len, s, n);
    if (a >= 0) return t->added[a].id;
    return vocab_find(t, s, n);
}

/* bos_token / eos_token of a tokenizer_config.json beside the file, when
 * there is one; otherwise the template's first special token for BOS and
 * the usual names. */
static void find_bos_eos(tokenizer *t, const char *json_path) {
    t->bos = t->eos = -1;
    int have_cfg = 0;
    char cfg[4200];
    const char *slash = strrchr(json_path, '/');
    int dir_len = slash ? (int)(slash - json_path) + 1 : 0;
    if (snprintf(cfg, sizeof cfg, "%.*stokenizer_config.json", dir_len, json_path) <
        (int)sizeof cfg) {
        lc_err e2;
        size_t len;
        char *txt = lc_read_file(cfg, &len, &e2);
        cJSON *root = txt ? cJSON_ParseWithLength(txt, len) : NULL;
        if (cJSON_IsObject(root)) {
            have_cfg = 1;
            const char *names[2] = {"bos_token", "eos_token"};
            int *dst[2] = {&t->bos, &t->eos};
            char **text[2] = {&t->bos_text, &t->eos_text};
            for (int k = 0; k < 2; k++) {
                const cJSON *v = jget(root, names[k]);
                if (cJSON_IsObject(v)) v = jget(v, "content");
                if (cJSON_IsString(v)) {
                    *dst[k] = token_id_of(t, v->valuestring);
                    *text[k] = strdup(v->valuestring);
                }
            }
            /* a string, or a list of {"name", "template"} of which "default" */
            const cJSON *ct = jget(root, "chat_template"), *e;
            if (cJSON_IsArray(ct)) {
                const cJSON *found = NULL;
                cJSON_ArrayForEach(e, ct) {
                    const cJSON *nm = jget(e, "name");
                    if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default")) found = jget(e, "template");
                }
                ct = found;
            }
            if (cJSON_IsString(ct)) t->chat_template = strdup(ct->valuestring);
            t->cfg_path = strdup(cfg);
        }
        cJSON_Delete(root);
        free(txt);
    }
    if (have_cfg) return;
    for (int i = 0; i < t->n_post && t->bos < 0; i++)
        if (t->post[i].n > 1 && !t->post[i].items[0].is_seq && t->post[i].items[0].n == 1)
            t->bos = t->post[i].items[0].ids[0];
    static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", "<bos>"};
    static const char *const eos_names[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>"};
    for (size_t i = 0; i < sizeof bos_names / sizeof *bos_names && t->bos < 0; i++)
        t->bos = token_id_of(t, bos_names[i]);
    for (size_t i = 0; i < sizeof eos_names / sizeof *eos_names && t->eos < 0; i++)
        t->eos = token_id_of(t, eos_names[i]);
}

/* ---- the whole file ------------------------------------------------------- */

/* txt/len: the JSON text; path names it in errors and locates a
 * tokenizer_config.json (find_special = 1) for BOS/EOS. */
static int load_json_text(tokenizer *t, const char *txt, size_t len, const char *path,
                          int vocab_size, int find_special, lc_err *err) {
    jctx c = {path, err};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(txt, len, &end, 0);
    int rc = LC_FAIL;
    if (!root) {
        size_t off = end && end >= txt && end <= txt + len ? (size_t)(end - txt) : 0;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (txt[i] == '\n') line++, col = 1;
            else col++;
        }
        lc_errf(err, "%s: invalid JSON near line %d, column %d (byte %zu)", path, line, col, off);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        lc_errf(err, "%s: expected a JSON object (a tokenizer.json)", path);
        goto done;
    }
    const cJSON *v;
    if (!jnull(v = jget(root, "truncation"))) {
        junsupported(&c, "truncation", v, "null");
        goto done;
    }
    if (!jnull(v = jget(root, "padding"))) {
        junsupported(&c, "padding", v, "null");
        goto done;
    }
    if (parse_model(t, &c, jget(root, "model"))) goto done;
    if (!jnull(v = jget(root, "normalizer")) && add_norm(t, &c, v, "normalizer", 0)) goto done;
    if (!jnull(v = jget(root, "pre_tokenizer")) && add_pt(t, &c, v, "pre_tokenizer", 0)) goto done;
    if (!jnull(v = jget(root, "post_processor")) && add_post(t, &c, v, "post_processor", 0))
        goto done;
    t->has_decoder = !jnull(v = jget(root, "decoder"));
    if (t->has_decoder && add_dec(t, &c, v, "decoder", 0)) goto done;
    if (parse_added(t, &c, jget(root, "added_tokens")) || finish_added(t, &c)) goto done;
    for (int i = 0; i < t->n_post; i++)
        for (int j = 0; j < t->post[i].n; j++)
            for (int k = 0; k < t->post[i].items[j].n; k++)
                if (t->post[i].items[j].ids[k] >= t->n_ids) {
                    lc_errf(err, "%s: 'post_processor': special token id %d is past the "
                            "vocabulary (%d ids)", path, t->post[i].items[j].ids[k], t->n_ids);
                    goto done;
                }
    if (vocab_size > 0 && vocab_size < t->n_ids) {
        lc_errf(err, "%s: the tokenizer has ids up to %d but the model's vocab_size is %d", path,
                t->n_ids - 1, vocab_size);
        goto done;
    }
    if (find_special) find_bos_eos(t, path);
    rc = LC_OK;
done:
    cJSON_Delete(root);
    return rc;
}

static int load_json(tokenizer *t, const char *path, int vocab_size, lc_err *err) {
    size_t len;
    char *txt = lc_read_file(path, &len, err);
    if (!txt) return LC_FAIL;
    int rc = load_json_text(t, txt, len, path, vocab_size, 1, err);
    free(txt);
    return rc;
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    if (t->kind == KIND_L2C) l2c_tokenizer_free(&t->l2c);
    free(t->path);
    free(t->chat_template);
    free(t->bos_text);
    free(t->eos_text);
    free(t->cfg_path);
    free(t->id_str);
    free(t->id_len);
    free(t->arena);
    free(t->vocab.slot);
    u64map_free(&t->merges);
    u64map_free(&t->junctions);
    free(t->first_cp);
    free(t->last_cp);
    free(t->cont_prefix);
    free(t->eow_suffix);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].norm);
    }
    free(t->added);
    free(t->added_of_id);
    free(t->added_str);
    free(t->added_len);
    free(t->added_map.slot);
    trie_free(&t->raw_trie);
    trie_free(&t->norm_trie);
    free(t->is_special);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    free(t->norm);
    for (int i = 0; i < t->n_pt; i++) free(t->pt[i].lit);
    free(t->pt);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].a);
        free(t->dec[i].b);
    }
    free(t->dec);
    for (int i = 0; i < t->n_post; i++) tmpl_free(&t->post[i]);
    free(t->post);
    free(t);
}

static int has_json_ext(const char *p) {
    size_t n = strlen(p);
    return n >= 5 && !strcmp(p + n - 5, ".json");
}

int tokenizer_load(tokenizer **out, const char *path, int vocab_size, lc_err *err) {
    *out = NULL;
    if (!path) return lc_errf(err, "tokenizer_load: no path given");
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return oom(err);
    t->unk_id = t->bos = t->eos = -1;
    struct stat st;
    char *file = NULL;
    if (stat(path, &st) != 0) {
        lc_errf(err, "%s: cannot open: %s", path, strerror(errno));
        free(t);
        return LC_FAIL;
    }
    if (S_ISDIR(st.st_mode)) {
        size_t n = strlen(path) + 32;
        file = malloc(n);
        if (!file) {
            free(t);
            return oom(err);
        }
        snprintf(file, n, "%s/tokenizer.json", path);
        if (stat(file, &st) != 0) {
            lc_errf(err, "%s: directory without a tokenizer.json", path);
            free(file);
            free(t);
            return LC_FAIL;
        }
    } else {
        file = dup_bytes(path, strlen(path));
        if (!file) {
            free(t);
            return oom(err);
        }
    }
    t->path = file;
    int is_json = has_json_ext(file);
    size_t fl = strlen(file);
    if (fl >= 5 && !strcmp(file + fl - 5, ".gguf")) {
        tokenizer_free(t);
        return tokenizer_load_gguf(out, path, vocab_size, err);
    }
    if (!is_json) { /* sniff: a JSON object, GGUF, or a llama2.c file (int32 first) */
        FILE *f = fopen(file, "rb");
        if (f) {
            unsigned char head[64];
            size_t n = fread(head, 1, sizeof head, f);
            fclose(f);
            if (n >= 4 && !memcmp(head, "GGUF", 4)) {
                tokenizer_free(t);
                return tokenizer_load_gguf(out, path, vocab_size, err);
            }
            size_t i = 0;
            while (i < n && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t'))
                i++;
            if (i < n && head[i] == '{') {
                is_json = 1;
                if (i == 0 && n >= 4 && !head[1] && !head[2] && !head[3]) is_json = 0;
            }
        }
    }
    int rc;
    if (is_json) {
        t->kind = KIND_HF;
        rc = load_json(t, file, vocab_size, err);
    } else {
        t->kind = KIND_L2C;
        t->l2c_add_bos = 1;
        rc = l2c_tokenizer_load(&t->l2c, file, vocab_size, err);
        if (!rc) {
            t->n_ids = t->l2c.vocab_size;
            t->bos = t->l2c.bos_id;
            t->eos = t->l2c.eos_id;
        } else {
            memset(&t->l2c, 0, sizeof t->l2c);
        }
    }
    if (rc) {
        tokenizer_free(t);
        return LC_FAIL;
    }
    *out = t;
    return LC_OK;
}

int tokenizer_vocab_size(const tokenizer *t) { return t ? t->n_ids : 0; }
int tokenizer_bos(const tokenizer *t) { return t ? t->bos : -1; }
const char *tokenizer_chat_template(const tokenizer *t, const char **cfg_path) {
    if (cfg_path) *cfg_path = t ? t->cfg_path : NULL;
    return t ? t->chat_template : NULL;
}
const char *tokenizer_bos_text(const tokenizer *t) { return t ? t->bos_text : NULL; }
const char *tokenizer_eos_text(const tokenizer *t) { return t ? t->eos_text : NULL; }
int tokenizer_eos(const tokenizer *t) { return t ? t->eos : -1; }

int tokenizer_token_id(const tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    if (t->kind == KIND_L2C) {
        size_t n = strlen(piece);
        for (int i = 0; i < t->l2c.vocab_size; i++)
            if ((size_t)t->l2c.lens[i] == n && !memcmp(t->l2c.vocab[i], piece, n)) return i;
        return -1;
    }
    return token_id_of(t, piece);
}

/* ======================================================================
 * Encoding
 * ====================================================================== */

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

static int pieces_add(pieces *ps, const char *s, size_t n, int id, int first) {
    size_t off = ps->text.n;
    /* always put (even 0 bytes) so that the text buffer exists once a piece
     * does: text.p + off is then never arithmetic on a null pointer */
    if (sbuf_put(&ps->text, s, n)) return LC_FAIL;
    if (GROW(ps->p, ps->cap, ps->n + 1)) return LC_FAIL;
    ps->p[ps->n++] = (piece){off, n, id, first};
    return LC_OK;
}

static void pieces_clear(pieces *ps) {
    ps->text.n = 0;
    ps->n = 0;
}

static void pieces_free(pieces *ps) {
    free(ps->text.p);
    free(ps->p);
}

typedef struct {
    size_t s, e;
    int m;
} span;

typedef struct {
    int id, prev, next;
} bsym;

typedef struct {
    uint64_t key; /* HEAP_KEY(rank, position) */
    int id;
} bmerge;

enum { K_OTHER = 0, K_L = 1, K_N = 2, K_WS = 3 };

typedef struct {
    pieces pa, pb;
    sbuf n1, n2, tmp;
    u32buf w;
    uint32_t *cp;
    uint8_t *cls;
    size_t *off;
    size_t cpcap, clscap, offcap;
    span *sp, *sp2;
    size_t spcap, sp2cap, nsp;
    bsym *sym;
    size_t symcap;
    bmerge *heap;
    size_t heapn, heapcap;
} enc_ctx;

static void enc_ctx_free(enc_ctx *x) {
    pieces_free(&x->pa);
    pieces_free(&x->pb);
    free(x->n1.p);
    free(x->n2.p);
    free(x->tmp.p);
    free(x->w.cp);
    free(x->w.cc);
    free(x->cp);
    free(x->cls);
    free(x->off);
    free(x->sp);
    free(x->sp2);
    free(x->sym);
    free(x->heap);
}

/* ---- normalization -------------------------------------------------------- */

static int replace_all(sbuf *out, const char *s, size_t n, const char *a, size_t alen,
                       const char *b, size_t blen) {
    size_t i = 0, last = 0;
    while (i + alen <= n) {
        if (s[i] == a[0] && !memcmp(s + i, a, alen)) {
            if (sbuf_put(out, s + last, i - last) || sbuf_put(out, b, blen)) return LC_FAIL;
            i += alen;
            last = i;
        } else {
            i++;
        }
    }
    return sbuf_put(out, s + last, n - last);
}

/* Applies the normalizer steps to s[0..n) into out (out != tmp). */
static int normalize_text(const tokenizer *t, const char *s, size_t n, sbuf *out, sbuf *tmp,
                          u32buf *w) {
    out->n = 0;
    if (sbuf_put(out, s, n)) return LC_FAIL;
    for (int i = 0; i < t->n_norm; i++) {
        const norm_step *st = &t->norm[i];
        tmp->n = 0;
        int rc = LC_OK;
        switch (st->type) {
        case NORM_NF:
            rc = uni_normalize(st->form, out->p, out->n, tmp, w);
            break;
        case NORM_PREPEND:
            if (out->n == 0) continue;
            rc = sbuf_put(tmp, st->a, st->alen) || sbuf_put(tmp, out->p, out->n);
            break;
        case NORM_REPLACE:
            rc = replace_all(tmp, out->p, out->n, st->a, st->alen, st->b, st->blen);
            break;
        case NORM_LOWER:
            rc = uni_lowercase(out->p, out->n, tmp);
            break;
        case NORM_STRIP: {
            size_t a = 0, b = out->n;
            int k;
            if (st->left)
                while (a < b && uni_ws(utf8_get((const unsigned char *)out->p + a, &k))) a += (size_t)k;
            if (st->right)
                while (b > a) {
                    size_t q = b - 1;
                    while (q > a && ((unsigned char)out->p[q] & 0xC0) == 0x80) q--;
                    if (!uni_ws(utf8_get((const unsigned char *)out->p + q, &k))) break;
                    b = q;
                }
            rc = sbuf_put(tmp, out->p + a, b - a);
            break;
        }
        }
        if (rc) return LC_FAIL;
        sbuf sw = *out;
        *out = *tmp;
        *tmp = sw;
    }
    return LC_OK;
}

/* ---- added-token splitting ------------------------------------------------ */

/* \w of Rust's regex crate (single_word added tokens). */
static int is_word_char(uint32_t cp) {
    if (cp < 0x80) return cp == '_' || uni_cat(cp) != UNI_CAT_OTHER;
    return range_val(uni_word_ranges, uni_word_ranges_count, cp) != 0;
}

/* HF's AddedVocabulary::find_matches over s[0..n): spans covering s,
 * m = added index or -1. */
static int added_spans(const tokenizer *t, const trie *tr, const char *s, size_t n, enc_ctx *x) {
    x->nsp = 0;
    size_t start_off = 0, i = 0;
    while (i < n) {
        size_t end = 0;
        int a = trie_longest(tr, s, n, i, &end);
        if (a < 0) {
            i++;
            continue;
        }
        const added_tok *tk = &t->added[a];
        size_t ms = i, me = end;
        i = end;
        if (tk->single_word) {
            int k;
            int start_space = 1, stop_space = 1;
            if (ms > 0) {
                size_t q = ms - 1;
                while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
                start_space = !is_word_char(utf8_get((const unsigned char *)s + q, &k));
            }
            if (me < n) stop_space = !is_word_char(utf8_get((const unsigned char *)s + me, &k));
            if (!start_space || !stop_space) continue;
        }
        if (tk->lstrip) {
            size_t q = ms;
            while (q > 0) {
                size_t r = q - 1;
                int k;
                while (r > 0 && ((unsigned char)s[r] & 0xC0) == 0x80) r--;
                if (!uni_ws(utf8_get((const unsigned char *)s + r, &k))) break;
                q = r;
            }
            ms = q > start_off ? q : start_off;
        }
        if (tk->rstrip) {
            int k;
            while (me < n && uni_ws(utf8_get((const unsigned char *)s + me, &k))) me += (size_t)k;
            if (me > i) i = me;
        }
        if (ms < start_off) ms = start_off;
        if (GROW(x->sp, x->spcap, x->nsp + 2)) return LC_FAIL;
        if (ms > start_off) x->sp[x->nsp++] = (span){start_off, ms, -1};
        x->sp[x->nsp++] = (span){ms, me, a};
        start_off = me;
    }
    if (GROW(x->sp, x->spcap, x->nsp + 1)) return LC_FAIL;
    if (start_off < n) x->sp[x->nsp++] = (span){start_off, n, -1};
    return LC_OK;
}

/* ---- pre-tokenizers --------------------------------------------------------- */

/* Decodes the piece text into x->cp / x->cls / x->off (off[n] = len). */
static int decode_piece(enc_ctx *x, const char *s, size_t len, size_t *n_out) {
    if (GROW(x->cp, x->cpcap, len + 1) || GROW(x->cls, x->clscap, len + 1) ||
        GROW(x->off, x->offcap, len + 1))
        return LC_FAIL;
    size_t n = 0, i = 0;
    while (i < len) {
        int k;
        uint32_t cp = utf8_get((const unsigned char *)s + i, &k);
        x->cp[n] = cp;
        x->cls[n] = uni_ws(cp) ? K_WS : (uint8_t)uni_cat(cp);
        x->off[n] = i;
        n++;
        i += (size_t)k;
    }
    x->off[n] = len;
    *n_out = n;
    return LC_OK;
}

static uint32_t fold_ci(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's'; /* LATIN SMALL LETTER LONG S folds to s */
    return c;
}

/* End (in chars) of the regex match starting at char i (always > i). The
 * alternatives are tried in order, with the backtracking the regex engine
 * would do, see the comments. */
static size_t rx_match(int rx, const uint32_t *c, const uint8_t *k, size_t n, size_t i) {
    /* contractions: 's|'t|'re|'ve|'m|'ll|'d ((?i:...) except GPT-2) */
    if (c[i] == '\'' && i + 1 < n) {
        uint32_t a = c[i + 1], b = i + 2 < n ? c[i + 2] : 0;
        if (rx != RX_GPT2) {
            a = fold_ci(a);
            b = fold_ci(b);
        }
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return i + 3;
    }
    size_t j;
    if (rx == RX_GPT2) {
        /* ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+` */
        static const uint8_t order[3] = {K_L, K_N, K_OTHER};
        for (int q = 0; q < 3; q++) {
            int w = order[q];
            size_t s = i;
            if (c[i] == ' ' && i + 1 < n && k[i + 1] == w) s = i + 1;
            if (k[s] == w) {
                for (j = s; j < n && k[j] == w; j++) {}
                return j;
            }
        }
    } else {
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (k[i] == K_L) {
            for (j = i; j < n && k[j] == K_L; j++) {}
            return j;
        }
        if (k[i] != K_N && c[i] != '\r' && c[i] != '\n' && i + 1 < n && k[i + 1] == K_L) {
            for (j = i + 1; j < n && k[j] == K_L; j++) {}
            return j;
        }
        /* \p{N}{1,3} (Llama 3) or \p{N} (Qwen2) */
        if (k[i] == K_N) {
            size_t maxd = rx == RX_LLAMA3 ? 3 : 1;
            for (j = i; j < n && k[j] == K_N && j - i < maxd; j++) {}
            return j;
        }
        /* ` ?[^\s\p{L}\p{N}]+[\r\n]*` */
        size_t s = (c[i] == ' ' && i + 1 < n && k[i + 1] == K_OTHER) ? i + 1 : i;
        if (k[s] == K_OTHER) {
            for (j = s; j < n && k[j] == K_OTHER; j++) {}
            while (j < n && (c[j] == '\r' || c[j] == '\n')) j++;
            return j;
        }
        /* \s*[\r\n]+ : ends after the last \r or \n of the whitespace run */
        if (k[i] == K_WS) {
            size_t last = SIZE_MAX;
            for (j = i; j < n && k[j] == K_WS; j++)
                if (c[j] == '\r' || c[j] == '\n') last = j;
            if (last != SIZE_MAX) return last + 1;
        }
    }
    if (k[i] == K_WS) {
        /* \s+(?!\S): the run, minus its last char when a non-space follows;
         * else \s+ */
        for (j = i; j < n && k[j] == K_WS; j++) {}
        if (j == n) return j;
        return j - 1 > i ? j - 1 : j;
    }
    return i + 1; /* not reached: every char is L, N, whitespace or other */
}

/* Applies invert + behavior to the spans x->sp[0..nsp) (m = is match) and
 * appends the kept non-empty parts of piece p (text s) to out. */
static int split_emit(enc_ctx *x, pieces *out, const char *s, const piece *p, int behavior,
                      int invert) {
    span *in = x->sp;
    size_t n = x->nsp;
    if (GROW(x->sp2, x->sp2cap, n + 1)) return LC_FAIL;
    span *o = x->sp2;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (invert) in[i].m = !in[i].m;
    switch (behavior) {
    case SB_ISOLATED:
        for (size_t i = 0; i < n; i++) o[m++] = (span){in[i].s, in[i].e, 0};
        break;
    case SB_REMOVED:
        for (size_t i = 0; i < n; i++) o[m++] = in[i];
        break;
    case SB_CONTIGUOUS: {
        int prev = -1;
        for (size_t i = 0; i < n; i++) {
            if (prev == in[i].m && m > 0) o[m - 1].e = in[i].e;
            else o[m++] = (span){in[i].s, in[i].e, 0};
            prev = in[i].m;
        }
        break;
    }
    case SB_MERGED_PREV: {
        int prev = 0;
        for (size_t i = 0; i < n; i++) {
            if (in[i].m && !prev && m > 0) o[m - 1].e = in[i].e;
            else o[m++] = (span){in[i].s, in[i].e, 0};
            prev = in[i].m;
        }
        break;
    }
    case SB_MERGED_NEXT: {
        int prev = 0;
        for (size_t i = n; i-- > 0;) {
            if (in[i].m && !prev && m > 0) o[m - 1].s = in[i].s;
            else o[m++] = (span){in[i].s, in[i].e, 0};
            prev = in[i].m;
        }
        for (size_t a = 0, b = m ? m - 1 : 0; a < b; a++, b--) {
            span tsp = o[a];
            o[a] = o[b];
            o[b] = tsp;
        }
        break;
    }
    }
    for (size_t i = 0; i < m; i++) {
        if (o[i].m || o[i].e <= o[i].s) continue;
        if (pieces_add(out, s + o[i].s, o[i].e - o[i].s, -1, p->first && o[i].s == 0))
            return LC_FAIL;
    }
    return LC_OK;
}

static int span_push(enc_ctx *x, size_t s, size_t e, int m) {
    if (GROW(x->sp, x->spcap, x->nsp + 1)) return LC_FAIL;
    x->sp[x->nsp++] = (span){s, e, m};
    return LC_OK;
}

/* Regex matches over s[0..len) as spans (gaps m=0, matches m=1). */
static int regex_spans(enc_ctx *x, int rx, const char *s, size_t len) {
    size_t n;
    x->nsp = 0;
    if (decode_piece(x, s, len, &n)) return LC_FAIL;
    for (size_t i = 0; i < n;) {
        size_t j = rx_match(rx, x->cp, x->cls, n, i);
        if (span_push(x, x->off[i], x->off[j], 1)) return LC_FAIL;
        i = j;
    }
    return LC_OK;
}

/* Literal matches of a[0..alen) (non-overlapping, left to right). */
static int literal_spans(enc_ctx *x, const char *s, size_t len, const char *a, size_t alen) {
    x->nsp = 0;
    size_t i = 0, last = 0;
    while (i + alen <= len) {
        if (!memcmp(s + i, a, alen)) {
            if (i > last && span_push(x, last, i, 0)) return LC_FAIL;
            if (span_push(x, i, i + alen, 1)) return LC_FAIL;
            i += alen;
            last = i;
        } else {
            i++;
        }
    }
    if (last < len && span_push(x, last, len, 0)) return LC_FAIL;
    return LC_OK;
}

/* Each character satisfying pred is one match; the rest are gaps. */
static int char_spans(enc_ctx *x, const char *s, size_t len, int numeric, uint32_t want) {
    x->nsp = 0;
    size_t i = 0, last = 0;
    while (i < len) {
        int k;
        uint32_t cp = utf8_get((const unsigned char *)s + i, &k);
        int hit = numeric ? uni_cat(cp) == UNI_CAT_N : cp == want;
        if (hit) {
            if (i > last && span_push(x, last, i, 0)) return LC_FAIL;
            if (span_push(x, i, i + (size_t)k, 1)) return LC_FAIL;
            last = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (last < len && span_push(x, last, len, 0)) return LC_FAIL;
    return LC_OK;
}

/* GPT-2's byte <-> character map. */
static uint32_t byte_char(unsigned b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    if (b <= 32) return 256 + b;
    if (b <= 160) return 256 + 33 + (b - 127);
    return 256 + 33 + 34; /* 173 */
}

static int char_byte(uint32_t cp) {
    if (cp < 256) return ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || cp >= 174) ? (int)cp : -1;
    if (cp < 256 + 68) {
        uint32_t i = cp - 256;
        if (i <= 32) return (int)i;
        if (i <= 66) return (int)(127 + (i - 33));
        return 173;
    }
    return -1;
}

/* One pre-tokenizer step over one text piece p (text s) into out. */
static int pretok_piece(const pt_step *st, enc_ctx *x, pieces *out, const char *s,
                        const piece *p) {
    size_t len = p->len;
    switch (st->type) {
    case PT_SPLIT:
        if (st->rx >= 0 ? regex_spans(x, st->rx, s, len)
                        : literal_spans(x, s, len, st->lit, st->lit_len))
            return LC_FAIL;
        return split_emit(x, out, s, p, st->behavior, st->invert);
    case PT_DIGITS:
        if (char_spans(x, s, len, 1, 0)) return LC_FAIL;
        return split_emit(x, out, s, p, st->individual ? SB_ISOLATED : SB_CONTIGUOUS, 0);
    case PT_BYTELEVEL: {
        sbuf *t = &x->tmp;
        t->n = 0;
        if (st->add_prefix_space && (len == 0 || s[0] != ' ') && sbuf_put(t, " ", 1))
            return LC_FAIL;
        if (sbuf_put(t, s, len)) return LC_FAIL;
        /* split (maybe), then map every byte of every part */
        if (st->use_regex) {
            if (regex_spans(x, RX_GPT2, t->p, t->n)) return LC_FAIL;
        } else {
            x->nsp = 0;
            if (t->n && span_push(x, 0, t->n, 0)) return LC_FAIL;
        }
        for (size_t i = 0; i < x->nsp; i++) {
            size_t a = x->sp[i].s, b = x->sp[i].e;
            if (b <= a) continue;
            size_t off = out->text.n;
            for (size_t j = a; j < b; j++)
                if (sbuf_put_cp(&out->text, byte_char((unsigned char)t->p[j]))) return LC_FAIL;
            if (GROW(out->p, out->cap, out->n + 1)) return LC_FAIL;
            out->p[out->n++] = (piece){off, out->text.n - off, -1, p->first && a == 0};
        }
        return LC_OK;
    }
    case PT_METASPACE: {
        sbuf *t = &x->tmp;
        char rep[4];
        size_t rl = (size_t)utf8_put(rep, st->repl);
        t->n = 0;
        int starts = len > 0 && s[0] == ' '; /* becomes the replacement */
        if (!starts && len >= rl && !memcmp(s, rep, rl)) starts = 1;
        if (!starts && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && p->first)))
            if (sbuf_put(t, rep, rl)) return LC_FAIL;
        if (replace_all(t, s, len, " ", 1, rep, rl)) return LC_FAIL;
        piece q = *p;
        if (!st->split) {
            if (t->n) return pieces_add(out, t->p, t->n, -1, p->first);
            return LC_OK;
        }
        if (char_spans(x, t->p, t->n, 0, st->repl)) return LC_FAIL;
        q.len = t->n;
        return split_emit(x, out, t->p, &q, SB_MERGED_NEXT, 0);
    }
    }
    return LC_OK;
}

/* ---- BPE ------------------------------------------------------------------- */

/* A 4-ary min-heap of (rank, position) packed in one 64-bit key (rank in
 * the high 24 bits), which pops in the order of HF's Merge ordering. */
#define HEAP_KEY(rank, pos) (((uint64_t)(rank) << 40) | (uint64_t)(pos))

static int heap_push(enc_ctx *x, uint32_t rank, size_t pos, int id) {
    if (GROW(x->heap, x->heapcap, x->heapn + 1)) return LC_FAIL;
    bmerge m = {HEAP_KEY(rank, pos), id};
    size_t i = x->heapn++;
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (m.key >= x->heap[p].key) break;
        x->heap[i] = x->heap[p];
        i = p;
    }
    x->heap[i] = m;
    return LC_OK;
}

static bmerge heap_pop(enc_ctx *x) {
    bmerge top = x->heap[0], last = x->heap[--x->heapn];
    size_t i = 0, n = x->heapn;
    for (;;) {
        size_t c = 4 * i + 1, b = i;
        uint64_t best = last.key;
        size_t end = c + 4 < n ? c + 4 : n;
        for (size_t j = c; j < end; j++)
            if (x->heap[j].key < best) {
                best = x->heap[j].key;
                b = j;
            }
        if (b == i) break;
        x->heap[i] = x->heap[b];
        i = b;
    }
    if (n) x->heap[i] = last;
    return top;
}

static int pair_merge(const tokenizer *t, int a, int b, int32_t *rank, int32_t *id) {
    return u64map_find(&t->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, rank, id);
}

static int sym_push(enc_ctx *x, size_t *m, int id) {
    if (GROW(x->sym, x->symcap, *m + 1)) return LC_FAIL;
    x->sym[*m] = (bsym){id, (int)*m - 1, -1};
    if (*m > 0) x->sym[*m - 1].next = (int)*m;
    (*m)++;
    return LC_OK;
}

/* Whether some sequence of merges could join a symbol ending like token a
 * to one starting like token b: only if some merge (x, y) has x ending with
 * a's last character and y starting with b's first. */
static int may_join(const tokenizer *t, int a, int b) {
    if (!t->junctions.key) return 1;
    uint32_t l = t->last_cp[a], f = t->first_cp[b];
    if (l == UINT32_MAX || f == UINT32_MAX) return 1;
    return u64map_find(&t->junctions, ((uint64_t)l << 32) | f, NULL, NULL);
}

/* HF's Word::merge_all over the symbols [lo, hi) (linked, and not linked
 * outside the range): pops (rank, position) in order, skips stale entries
 * (the pair there no longer gives the entry's token), merges, pushes the
 * pairs formed with the neighbours. */
static int merge_range(const tokenizer *t, enc_ctx *x, size_t lo, size_t hi) {
    bsym *sy = x->sym;
    x->heapn = 0;
    for (size_t i = lo; i + 1 < hi; i++) {
        int32_t rank, nid;
        if (pair_merge(t, sy[i].id, sy[i + 1].id, &rank, &nid) &&
            heap_push(x, (uint32_t)rank, i, nid))
            return LC_FAIL;
    }
    while (x->heapn) {
        bmerge top = heap_pop(x);
        size_t pos = (size_t)(top.key & ((1ULL << 40) - 1));
        bsym *cur = &sy[pos];
        if (cur->id < 0 || cur->next < 0) continue;
        int nx = cur->next;
        int32_t rank, nid;
        if (!pair_merge(t, cur->id, sy[nx].id, &rank, &nid) || nid != top.id) continue;
        cur->id = top.id;
        cur->next = sy[nx].next;
        sy[nx].id = -1;
        if (cur->next >= 0) sy[cur->next].prev = (int)pos;
        if (cur->prev >= 0 && pair_merge(t, sy[cur->prev].id, cur->id, &rank, &nid) &&
            heap_push(x, (uint32_t)rank, (size_t)cur->prev, nid))
            return LC_FAIL;
        if (cur->next >= 0 && pair_merge(t, cur->id, sy[cur->next].id, &rank, &nid) &&
            heap_push(x, (uint32_t)rank, pos, nid))
            return LC_FAIL;
    }
    return LC_OK;
}

/* BPE of one piece, like HF's BPE::tokenize (merge_word + merge_all). */
static int bpe_piece(const tokenizer *t, enc_ctx *x, const char *w, size_t len, ivec *out) {
    if (len == 0) return LC_OK;
    if (t->ignore_merges) {
        int id = vocab_find(t, w, len);
        if (id >= 0) return ivec_push(out, id);
    }
    size_t m = 0;
    int unk_pending = 0;
    for (size_t i = 0; i < len;) {
        int k;
        utf8_get((const unsigned char *)w + i, &k);
        const char *s = w + i;
        size_t sl = (size_t)k;
        int is_first = i == 0, is_last = i + (size_t)k == len;
        if ((t->cont_prefix && !is_first) || (t->eow_suffix && is_last)) {
            sbuf *b = &x->tmp;
            b->n = 0;
            if ((t->cont_prefix && !is_first && sbuf_put(b, t->cont_prefix, t->cont_prefix_len)) ||
                sbuf_put(b, s, sl) ||
                (t->eow_suffix && is_last && sbuf_put(b, t->eow_suffix, t->eow_suffix_len)))
                return LC_FAIL;
            s = b->p;
            sl = b->n;
        }
        i += (size_t)k;
        int id = vocab_find(t, s, sl);
        if (id >= 0) {
            if (unk_pending) {
                if (sym_push(x, &m, t->unk_id)) return LC_FAIL;
                unk_pending = 0;
            }
            if (sym_push(x, &m, id)) return LC_FAIL;
            continue;
        }
        if (t->byte_fallback) {
            int all = 1;
            for (size_t j = 0; j < sl; j++)
                if (t->byte_id[(unsigned char)s[j]] < 0) all = 0;
            if (all) { /* (HF leaves a pending unk pending here too) */
                for (size_t j = 0; j < sl; j++)
                    if (sym_push(x, &m, t->byte_id[(unsigned char)s[j]])) return LC_FAIL;
                continue;
            }
        }
        if (t->unk_id >= 0) {
            if (unk_pending && !t->fuse_unk && sym_push(x, &m, t->unk_id)) return LC_FAIL;
            unk_pending = 1;
        }
    }
    if (unk_pending && sym_push(x, &m, t->unk_id)) return LC_FAIL;
    /* merge_all, run separately on the stretches between junctions no merge
     * can ever cross (same result, much smaller heaps for long words) */
    size_t lo = 0;
    for (size_t i = 0; i < m; i++) {
        if (i + 1 < m && may_join(t, x->sym[i].id, x->sym[i + 1].id)) continue;
        x->sym[i].next = -1;
        if (i + 1 < m) x->sym[i + 1].prev = -1;
        if (merge_range(t, x, lo, i + 1)) return LC_FAIL;
        lo = i + 1;
    }
    for (size_t i = 0; i < m; i++)
        if (x->sym[i].id >= 0 && ivec_push(out, x->sym[i].id)) return LC_FAIL;
    return LC_OK;
}

/* ---- the pipeline ---------------------------------------------------------- */

static int hf_encode(const tokenizer *t, const char *text, size_t len, int add_special, ivec *out,
                     enc_ctx *x) {
    pieces *P = &x->pa, *Q = &x->pb;
    /* 1. added tokens in the raw text; normalize the rest; added tokens in
     *    the normalized text */
    if (added_spans(t, &t->raw_trie, text, len, x)) return LC_FAIL;
    size_t nraw = x->nsp;
    span *raw = malloc(sizeof *raw * (nraw + 1));
    if (!raw) return LC_FAIL;
    memcpy(raw, x->sp, sizeof *raw * nraw);
    int rc = LC_OK;
    for (size_t r = 0; r < nraw && !rc; r++) {
        const span *sp = &raw[r];
        if (sp->m >= 0) {
            rc = pieces_add(P, NULL, 0, t->added[sp->m].id, 0);
            continue;
        }
        const char *s = text + sp->s;
        size_t n = sp->e - sp->s;
        if (t->n_norm) {
            if (normalize_text(t, s, n, &x->n1, &x->n2, &x->w)) {
                rc = LC_FAIL;
                break;
            }
            s = x->n1.p;
            n = x->n1.n;
        }
        if (n == 0) continue;
        if (!t->norm_trie.term) {
            rc = pieces_add(P, s, n, -1, sp->s == 0);
            continue;
        }
        if (added_spans(t, &t->norm_trie, s, n, x)) {
            rc = LC_FAIL;
            break;
        }
        for (size_t i = 0; i < x->nsp && !rc; i++) {
            if (x->sp[i].m >= 0) rc = pieces_add(P, NULL, 0, t->added[x->sp[i].m].id, 0);
            else rc = pieces_add(P, s + x->sp[i].s, x->sp[i].e - x->sp[i].s, -1,
                                 sp->s == 0 && x->sp[i].s == 0);
        }
    }
    free(raw);
    if (rc) return LC_FAIL;
    /* 2. pre-tokenizers */
    for (int k = 0; k < t->n_pt; k++) {
        pieces_clear(Q);
        for (size_t i = 0; i < P->n; i++) {
            const piece *p = &P->p[i];
            if (p->id >= 0) {
                if (pieces_add(Q, NULL, 0, p->id, 0)) return LC_FAIL;
                continue;
            }
            if (pretok_piece(&t->pt[k], x, Q, P->text.p + p->off, p)) return LC_FAIL;
        }
        pieces *sw = P;
        P = Q;
        Q = sw;
    }
    /* 3. the model; 4. the post-processor */
    ivec seq = {0};
    for (size_t i = 0; i < P->n && !rc; i++) {
        const piece *p = &P->p[i];
        rc = p->id >= 0 ? ivec_push(&seq, p->id) : bpe_piece(t, x, P->text.p + p->off, p->len, &seq);
    }
    if (rc) {
        free(seq.p);
        return LC_FAIL;
    }
    if (add_special) {
        for (int k = 0; k < t->n_post && !rc; k++) {
            ivec nx = {0};
            const tmpl *tp = &t->post[k];
            for (int j = 0; j < tp->n && !rc; j++) {
                if (tp->items[j].is_seq) {
                    for (size_t q = 0; q < seq.n && !rc; q++) rc = ivec_push(&nx, seq.p[q]);
                } else {
                    for (int q = 0; q < tp->items[j].n && !rc; q++)
                        rc = ivec_push(&nx, tp->items[j].ids[q]);
                }
            }
            free(seq.p);
            seq = nx;
        }
    }
    for (size_t i = 0; i < seq.n && !rc; i++) rc = ivec_push(out, seq.p[i]);
    free(seq.p);
    return rc;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_special, int **ids,
                     int *n, lc_err *err) {
    *ids = NULL;
    *n = 0;
    if (!t) return lc_errf(err, "tokenizer_encode: no tokenizer");
    if (!text && len) return lc_errf(err, "tokenizer_encode: NULL text");
    if (len > (size_t)INT32_MAX / 2)
        return lc_errf(err, "%s: encode: text of %zu bytes is too long", t->path, len);
    size_t bad = utf8_check(text, len);
    if (bad < len)
        return lc_errf(err, "%s: encode: the text is not valid UTF-8 (byte %zu: 0x%02X)", t->path,
                       bad, (unsigned char)text[bad]);
    if (t->kind == KIND_L2C) {
        if (memchr(text, 0, len))
            return lc_errf(err, "%s: encode: the llama2.c tokenizer cannot encode NUL bytes",
                           t->path);
        char *buf = malloc(len + 1);
        int *out = malloc(sizeof(int) * (len + 3));
        if (!buf || !out) {
            free(buf);
            free(out);
            return oom(err);
        }
        if (len) memcpy(buf, text, len);
        buf[len] = 0;
        int cnt = l2c_encode(&t->l2c, buf, add_special && t->l2c_add_bos,
                             add_special && t->l2c_add_eos, out);
        free(buf);
        *ids = out;
        *n = cnt;
        return LC_OK;
    }
    enc_ctx x;
    memset(&x, 0, sizeof x);
    ivec out = {0};
    int rc = hf_encode(t, len ? text : "", len, add_special, &out, &x);
    enc_ctx_free(&x);
    if (rc) {
        free(out.p);
        return oom(err);
    }
    if (!out.p && !(out.p = malloc(sizeof(int)))) return oom(err);
    *ids = out.p;
    *n = (int)out.n;
    return LC_OK;
}

/* ======================================================================
 * Decoding
 * ====================================================================== */

/* tokens: pieces with id unused. */
static int dec_step_apply(const dec_step *st, const pieces *in, pieces *out) {
    pieces_clear(out);
    switch (st->type) {
    case DEC_BYTELEVEL: {
        sbuf raw = {0};
        int rc = LC_OK;
        for (size_t i = 0; i < in->n && !rc; i++) {
            const unsigned char *s = (const unsigned char *)in->text.p + in->p[i].off;
            size_t n = in->p[i].len, start = raw.n, j = 0;
            int mapped = 1;
            while (j < n && mapped) {
                int k = utf8_valid_len(s + j, n - j), b;
                if (!k || (b = char_byte(utf8_get(s + j, &k))) < 0) {
                    mapped = 0;
                    break;
                }
                char cb = (char)b;
                rc = sbuf_put(&raw, &cb, 1);
                if (rc) break;
                j += (size_t)k;
            }
            if (!rc && !mapped) {
                raw.n = start;
                rc = sbuf_put(&raw, s, n);
            }
        }
        sbuf lossy = {0};
        if (!rc) rc = utf8_lossy(&lossy, raw.p ? raw.p : "", raw.n);
        if (!rc) rc = pieces_add(out, lossy.p ? lossy.p : "", lossy.n, -1, 0);
        free(raw.p);
        free(lossy.p);
        return rc;
    }
    case DEC_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            size_t off = out->text.n;
            if (replace_all(&out->text, in->text.p + in->p[i].off, in->p[i].len, st->a, st->alen,
                            st->b, st->blen) ||
                GROW(out->p, out->cap, out->n + 1))
                return LC_FAIL;
            out->p[out->n++] = (piece){off, out->text.n - off, -1, 0};
        }
        return LC_OK;
    case DEC_BYTEFALLBACK: {
        sbuf bytes = {0};
        int rc = LC_OK;
        for (size_t i = 0; i <= in->n && !rc; i++) {
            int byte = -1;
            const char *s = i < in->n ? in->text.p + in->p[i].off : NULL;
            if (s && in->p[i].len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
                /* u8::from_str_radix(&token[3..5], 16) */
                int v = 0, ok = 1, start = 3;
                if (s[3] == '+') start = 4;
                for (int q = start; q < 5 && ok; q++) {
                    char ch = s[q];
                    int d = ch >= '0' && ch <= '9' ? ch - '0'
                            : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                            : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
                    if (d < 0) ok = 0;
                    else v = v * 16 + d;
                }
                if (ok) byte = v;
            }
            if (byte >= 0) {
                char cb = (char)byte;
                rc = sbuf_put(&bytes, &cb, 1);
                continue;
            }
            if (bytes.n) {
                if (utf8_check(bytes.p, bytes.n) == bytes.n) {
                    rc = pieces_add(out, bytes.p, bytes.n, -1, 0);
                } else {
                    for (size_t q = 0; q < bytes.n && !rc; q++)
                        rc = pieces_add(out, "\xEF\xBF\xBD", 3, -1, 0);
                }
                bytes.n = 0;
            }
            if (s && !rc) rc = pieces_add(out, s, in->p[i].len, -1, 0);
        }
        free(bytes.p);
        return rc;
    }
    case DEC_FUSE: {
        size_t off = out->text.n;
        for (size_t i = 0; i < in->n; i++)
            if (sbuf_put(&out->text, in->text.p + in->p[i].off, in->p[i].len)) return LC_FAIL;
        if (GROW(out->p, out->cap, out->n + 1)) return LC_FAIL;
        out->p[out->n++] = (piece){off, out->text.n - off, -1, 0};
        return LC_OK;
    }
    case DEC_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const unsigned char *s = (const unsigned char *)in->text.p + in->p[i].off;
            size_t n = in->p[i].len, a = 0, b = n;
            int k;
            for (int q = 0; q < st->start && a < n; q++) {
                if (!utf8_valid_len(s + a, n - a) || utf8_get(s + a, &k) != st->cp) break;
                a += (size_t)k;
            }
            for (int q = 0; q < st->stop && b > a; q++) {
                size_t r = b - 1;
                while (r > a && (s[r] & 0xC0) == 0x80) r--;
                if (!utf8_valid_len(s + r, b - r) || utf8_get(s + r, &k) != st->cp) break;
                b = r;
            }
            if (pieces_add(out, (const char *)s + a, b - a, -1, 0)) return LC_FAIL;
        }
        return LC_OK;
    case DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            const unsigned char *s = (const unsigned char *)in->text.p + in->p[i].off;
            size_t n = in->p[i].len, j = 0, off = out->text.n;
            while (j < n) {
                int k = utf8_valid_len(s + j, n - j);
                if (!k) {
                    if (sbuf_put(&out->text, s + j, 1)) return LC_FAIL;
                    j++;
                    continue;
                }
                uint32_t cp = utf8_get(s + j, &k);
                if (cp == st->cp) {
                    if (!(i == 0 && st->prepend != PREPEND_NEVER) && sbuf_put(&out->text, " ", 1))
                        return LC_FAIL;
                } else if (sbuf_put(&out->text, s + j, (size_t)k)) {
                    return LC_FAIL;
                }
                j += (size_t)k;
            }
            if (GROW(out->p, out->cap, out->n + 1)) return LC_FAIL;
            out->p[out->n++] = (piece){off, out->text.n - off, -1, 0};
        }
        return LC_OK;
    }
    return LC_OK;
}

static char *l2c_decode_all(const tokenizer *t, const int *ids, int n, int skip_special) {
    sbuf raw = {0}, out = {0};
    int prev = -1, rc = LC_OK;
    for (int i = 0; i < n && !rc; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->l2c.vocab_size) continue;
        if (skip_special && (id == t->l2c.bos_id || id == t->l2c.eos_id)) {
            prev = id;
            continue;
        }
        char buf[2];
        int len;
        const char *p = l2c_decode(&t->l2c, prev, id, buf, &len);
        rc = sbuf_put(&raw, p, (size_t)len);
        prev = id;
    }
    if (!rc) rc = utf8_lossy(&out, raw.p ? raw.p : "", raw.n);
    if (!rc) rc = sbuf_put(&out, "", 0);
    free(raw.p);
    if (rc) {
        free(out.p);
        return NULL;
    }
    return out.p;
}

char *tokenizer_decode(const tokenizer *t, const int *ids, int n, int skip_special) {
    if (!t) return NULL;
    if (t->kind == KIND_L2C) return l2c_decode_all(t, ids, n, skip_special);
    pieces a = {0}, b = {0};
    pieces *P = &a, *Q = &b;
    sbuf out = {0};
    int rc = LC_OK;
    for (int i = 0; i < n && !rc; i++) {
        int len;
        const char *s = id_token(t, ids[i], &len);
        if (!s || (skip_special && t->is_special[ids[i]])) continue;
        rc = pieces_add(P, s, (size_t)len, -1, 0);
    }
    if (!t->has_decoder) {
        /* no decoder: the tokens joined with spaces */
        for (size_t i = 0; i < P->n && !rc; i++) {
            if (i) rc = sbuf_put(&Q->text, " ", 1);
            if (!rc) rc = sbuf_put(&Q->text, P->text.p + P->p[i].off, P->p[i].len);
        }
        if (!rc) rc = utf8_lossy(&out, Q->text.p ? Q->text.p : "", Q->text.n);
    } else {
        for (int k = 0; k < t->n_dec && !rc; k++) {
            rc = dec_step_apply(&t->dec[k], P, Q);
            pieces *sw = P;
            P = Q;
            Q = sw;
        }
        for (size_t i = 0; i < P->n && !rc; i++)
            rc = utf8_lossy(&out, P->text.p + P->p[i].off, P->p[i].len);
    }
    if (!rc) rc = sbuf_put(&out, "", 0);
    pieces_free(&a);
    pieces_free(&b);
    if (rc) {
        free(out.p);
        return NULL;
    }
    return out.p;
}

/* ======================================================================
 * Parts (GGUF tokenizer.ggml.*)
 * ====================================================================== */

static const char SP_SPACE[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's space */

/* s with every `a` replaced by `b` (malloc'd, *n its length). */
static char *replace_dup(const char *s, size_t len, const char *a, const char *b, int *n) {
    size_t al = strlen(a), bl = strlen(b), cnt = 0;
    for (size_t i = 0; i + al <= len;)
        if (!memcmp(s + i, a, al)) cnt++, i += al;
        else i++;
    size_t out_len = len + cnt * bl - cnt * al;
    char *o = malloc(out_len + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < len;) {
        if (i + al <= len && !memcmp(s + i, a, al)) {
            memcpy(q, b, bl);
            q += bl;
            i += al;
        } else {
            *q++ = s[i++];
        }
    }
    *q = 0;
    *n = (int)out_len;
    return o;
}

typedef struct {
    const char *s;
    int len, id;
} piece_ref_t;

static int cmp_ref_piece(const void *a, const void *b) {
    const piece_ref_t *x = a, *y = b;
    int n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->s, y->s, (size_t)n);
    if (r) return r;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int spm_from_parts(tokenizer *t, const tokenizer_parts *p, const char *src, lc_err *err) {
    l2c_tokenizer *l = &t->l2c;
    int V = p->n_tokens;
    if (!p->scores)
        return lc_errf(err, "%s: key 'tokenizer.ggml.scores': missing (a SentencePiece "
                       "vocabulary needs scores)", src);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int id = b + 3;
        if (id >= V || p->token_lens[id] != 6 || memcmp(p->tokens[id], name, 6))
            return lc_errf(err, "%s: key 'tokenizer.ggml.tokens': byte token %s must be id %d "
                           "(the SentencePiece layout <unk>, <s>, </s>, <0x00>..<0xFF>), found "
                           "'%.*s'", src, name, id, id < V ? (p->token_lens[id] > 40 ? 40 :
                           p->token_lens[id]) : 0, id < V ? p->tokens[id] : "");
    }
    l->vocab_size = V;
    l->vocab = calloc((size_t)V, sizeof *l->vocab);
    l->lens = calloc((size_t)V, sizeof *l->lens);
    l->scores = calloc((size_t)V, sizeof *l->scores);
    l->sorted = calloc((size_t)V, sizeof *l->sorted);
    if (!l->vocab || !l->lens || !l->scores || !l->sorted) return oom(err);
    /* l2c_tokenizer_free frees vocab[0] as the block of all pieces */
    size_t total = 0;
    int *lens = malloc(sizeof(int) * (size_t)V);
    char **tmp = calloc((size_t)V, sizeof *tmp);
    if (!lens || !tmp) {
        free(lens);
        free(tmp);
        return oom(err);
    }
    int rc = LC_OK;
    for (int i = 0; i < V && !rc; i++) {
        if (!(tmp[i] = replace_dup(p->tokens[i], (size_t)p->token_lens[i], SP_SPACE, " ", &lens[i])))
            rc = oom(err);
        else total += (size_t)lens[i] + 1;
    }
    char *block = rc ? NULL : malloc(total);
    if (!rc && !block) rc = oom(err);
    for (int i = 0; i < V && !rc; i++) {
        memcpy(block, tmp[i], (size_t)lens[i] + 1);
        l->vocab[i] = block;
        l->lens[i] = lens[i];
        l->scores[i] = p->scores[i];
        if (lens[i] > l->max_token_length) l->max_token_length = lens[i];
        block += lens[i] + 1;
        l->sorted[i] = i;
    }
    for (int i = 0; i < V; i++) free(tmp[i]);
    free(tmp);
    free(lens);
    if (rc) return rc;
    /* sorted: ids by piece bytes, as l2c_tokenizer_load orders them */
    piece_ref_t *refs = malloc(sizeof *refs * (size_t)V);
    if (!refs) return oom(err);
    for (int i = 0; i < V; i++) refs[i] = (piece_ref_t){l->vocab[i], l->lens[i], i};
    qsort(refs, (size_t)V, sizeof *refs, cmp_ref_piece);
    for (int i = 0; i < V; i++) l->sorted[i] = refs[i].id;
    free(refs);
    l->bos_id = p->bos;
    l->eos_id = p->eos;
    t->l2c_add_bos = p->add_bos;
    t->l2c_add_eos = p->add_eos;
    t->n_ids = V;
    return LC_OK;
}

/* The pre-tokenizer name -> the regex of its Split step (-1: GPT-2's
 * ByteLevel with use_regex). */
static int pre_regex(const char *pre) {
    if (!strcmp(pre, "gpt-2")) return -1;
    if (!strcmp(pre, "qwen2")) return RX_QWEN2;
    if (!strcmp(pre, "llama-bpe") || !strcmp(pre, "llama3")) return RX_LLAMA3;
    return -2;
}

static int bpe_from_parts(tokenizer *t, const tokenizer_parts *p, const char *src, lc_err *err) {
    const char *pre = p->pre ? p->pre : "gpt-2";
    int rx = pre_regex(pre);
    if (rx == -2)
        return lc_errf(err, "%s: key 'tokenizer.ggml.pre': pre-tokenizer '%s' is not supported "
                       "(supported: gpt-2, qwen2, llama-bpe)", src, pre);
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject(),
          *merges = cJSON_CreateArray(), *added = cJSON_CreateArray();
    int rc = LC_FAIL;
    char *txt = NULL;
    if (!root || !model || !vocab || !merges || !added) goto oom;
    cJSON_AddItemToObject(root, "added_tokens", added);
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddBoolToObject(model, "ignore_merges", rx == RX_LLAMA3);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    for (int i = 0; i < p->n_tokens; i++) {
        char *s = dup_bytes(p->tokens[i], (size_t)p->token_lens[i]);
        if (!s) goto oom;
        if (memchr(p->tokens[i], 0, (size_t)p->token_lens[i])) {
            free(s);
            lc_errf(err, "%s: key 'tokenizer.ggml.tokens': token %d holds a NUL byte", src, i);
            goto done;
        }
        if (cJSON_GetObjectItemCaseSensitive(vocab, s)) {
            lc_errf(err, "%s: key 'tokenizer.ggml.tokens': token %d '%.100s' appears twice", src,
                    i, s);
            free(s);
            goto done;
        }
        cJSON_AddNumberToObject(vocab, s, i);
        int ty = p->types ? p->types[i] : TOKTYPE_NORMAL;
        if (ty == TOKTYPE_CONTROL || ty == TOKTYPE_USER_DEFINED) {
            cJSON *a = cJSON_CreateObject();
            if (!a) {
                free(s);
                goto oom;
            }
            cJSON_AddNumberToObject(a, "id", i);
            cJSON_AddStringToObject(a, "content", s);
            cJSON_AddBoolToObject(a, "special", ty == TOKTYPE_CONTROL);
            cJSON_AddBoolToObject(a, "normalized", 0);
            cJSON_AddItemToArray(added, a);
        }
        free(s);
    }
    for (int i = 0; i < p->n_merges; i++) {
        cJSON *m = cJSON_CreateString(p->merges[i]);
        if (!m) goto oom;
        cJSON_AddItemToArray(merges, m);
    }
    cJSON *bl = cJSON_CreateObject();
    if (!bl) goto oom;
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
    cJSON_AddBoolToObject(bl, "use_regex", rx == -1);
    if (rx == -1) {
        cJSON_AddItemToObject(root, "pre_tokenizer", bl);
    } else {
        cJSON *seq = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *sp = cJSON_CreateObject(),
              *pat = cJSON_CreateObject();
        if (!seq || !arr || !sp || !pat) {
            cJSON_Delete(seq), cJSON_Delete(arr), cJSON_Delete(sp), cJSON_Delete(pat);
            cJSON_Delete(bl);
            goto oom;
        }
        cJSON_AddStringToObject(seq, "type", "Sequence");
        cJSON_AddItemToObject(seq, "pretokenizers", arr);
        cJSON_AddStringToObject(sp, "type", "Split");
        cJSON_AddStringToObject(pat, "Regex", rx == RX_QWEN2 ? RX_QWEN2_STR : RX_LLAMA3_STR);
        cJSON_AddItemToObject(sp, "pattern", pat);
        cJSON_AddStringToObject(sp, "behavior", "Isolated");
        cJSON_AddItemToArray(arr, sp);
        cJSON_AddItemToArray(arr, bl);
        cJSON_AddItemToObject(root, "pre_tokenizer", seq);
    }
    cJSON *dec = cJSON_CreateObject();
    if (!dec) goto oom;
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddItemToObject(root, "decoder", dec);
    if ((p->add_bos && p->bos >= 0) || (p->add_eos && p->eos >= 0)) {
        cJSON *post = cJSON_CreateObject(), *single = cJSON_CreateArray(),
              *specials = cJSON_CreateObject();
        if (!post || !single || !specials) {
            cJSON_Delete(post), cJSON_Delete(single), cJSON_Delete(specials);
            goto oom;
        }
        cJSON_AddStringToObject(post, "type", "TemplateProcessing");
        cJSON_AddItemToObject(post, "single", single);
        cJSON_AddItemToObject(post, "special_tokens", specials);
        for (int k = 0; k < 3; k++) {
            int id = k == 0 ? (p->add_bos ? p->bos : -1) : k == 2 ? (p->add_eos ? p->eos : -1) : 0;
            cJSON *item = cJSON_CreateObject(), *in = cJSON_CreateObject();
            if (!item || !in) {
                cJSON_Delete(item), cJSON_Delete(in);
                cJSON_Delete(post);
                goto oom;
            }
            if (k == 1) {
                cJSON_AddStringToObject(in, "id", "A");
                cJSON_AddItemToObject(item, "Sequence", in);
            } else if (id >= 0) {
                char key[16];
                snprintf(key, sizeof key, "t%d", id);
                cJSON_AddStringToObject(in, "id", key);
                cJSON_AddItemToObject(item, "SpecialToken", in);
                cJSON *def = cJSON_CreateObject(), *ids = cJSON_CreateArray();
                cJSON_AddItemToArray(ids, cJSON_CreateNumber(id));
                cJSON_AddItemToObject(def, "ids", ids);
                cJSON_AddItemToObject(specials, key, def);
            } else {
                cJSON_Delete(item), cJSON_Delete(in);
                continue;
            }
            cJSON_AddItemToArray(single, item);
        }
        cJSON_AddItemToObject(root, "post_processor", post);
    }
    txt = cJSON_PrintUnformatted(root);
    if (!txt) goto oom;
    rc = load_json_text(t, txt, strlen(txt), src, p->n_tokens, 0, err);
    if (!rc) {
        t->bos = p->bos;
        t->eos = p->eos;
    }
    goto done;
oom:
    rc = lc_errf(err, "%s: out of memory building the tokenizer", src);
done:
    free(txt);
    cJSON_Delete(root);
    if (!root) {
        cJSON_Delete(model), cJSON_Delete(vocab), cJSON_Delete(merges), cJSON_Delete(added);
    }
    return rc;
}

int tokenizer_from_parts(tokenizer **out, const tokenizer_parts *p, const char *src,
                         lc_err *err) {
    *out = NULL;
    if (p->n_tokens <= 0)
        return lc_errf(err, "%s: key 'tokenizer.ggml.tokens': empty", src);
    const char *names[3] = {"bos", "eos", "unknown"};
    int ids[3] = {p->bos, p->eos, p->unk};
    for (int k = 0; k < 3; k++)
        if (ids[k] < -1 || ids[k] >= p->n_tokens)
            return lc_errf(err, "%s: key 'tokenizer.ggml.%s_token_id': %d is outside the "
                           "vocabulary of %d tokens", src, names[k], ids[k], p->n_tokens);
    if (p->add_bos && p->bos < 0)
        return lc_errf(err, "%s: key 'tokenizer.ggml.add_bos_token': true, but there is no "
                       "bos_token_id", src);
    if (p->add_eos && p->eos < 0)
        return lc_errf(err, "%s: key 'tokenizer.ggml.add_eos_token': true, but there is no "
                       "eos_token_id", src);
    tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = dup_bytes(src, strlen(src)))) {
        free(t);
        return oom(err);
    }
    t->unk_id = t->bos = t->eos = -1;
    int rc;
    if (p->model == TOKENIZER_SPM) {
        t->kind = KIND_L2C;
        rc = spm_from_parts(t, p, src, err);
        t->bos = p->bos;
        t->eos = p->eos;
    } else if (p->model == TOKENIZER_BPE) {
        t->kind = KIND_HF;
        rc = bpe_from_parts(t, p, src, err);
    } else {
        rc = lc_errf(err, "%s: key 'tokenizer.ggml.model': unknown tokenizer model", src);
    }
    if (!rc && p->chat_template) {
        if (!(t->chat_template = dup_bytes(p->chat_template, strlen(p->chat_template))) ||
            !(t->cfg_path = dup_bytes(src, strlen(src))))
            rc = oom(err);
        char **text[2] = {&t->bos_text, &t->eos_text};
        int sid[2] = {p->bos, p->eos};
        for (int k = 0; k < 2 && !rc; k++) {
            int id = sid[k];
            if (id < 0 || !p->types || (p->types[id] != TOKTYPE_CONTROL && p->types[id] != TOKTYPE_USER_DEFINED))
                continue;
            if (!(*text[k] = dup_bytes(p->tokens[id], (size_t)p->token_lens[id]))) rc = oom(err);
        }
    }
    if (rc) {
        tokenizer_free(t);
        return LC_FAIL;
    }
    *out = t;
    return LC_OK;
}

void tokenizer_parts_free(tokenizer_parts *p) {
    if (!p) return;
    for (int i = 0; p->tokens && i < p->n_tokens; i++) free(p->tokens[i]);
    for (int i = 0; p->merges && i < p->n_merges; i++) free(p->merges[i]);
    free(p->tokens);
    free(p->token_lens);
    free(p->scores);
    free(p->types);
    free(p->merges);
    free(p->pre);
    free(p->chat_template);
    memset(p, 0, sizeof *p);
}

/* Does encoding with add_special put BOS first / EOS last? */
static void special_flags(const tokenizer *t, int *add_bos, int *add_eos) {
    int *a = NULL, *b = NULL, na = 0, nb = 0;
    lc_err e;
    *add_bos = *add_eos = 0;
    if (!tokenizer_encode(t, "a", 1, 1, &a, &na, &e) && !tokenizer_encode(t, "a", 1, 0, &b, &nb, &e)) {
        *add_bos = t->bos >= 0 && na > nb && a[0] == t->bos;
        *add_eos = t->eos >= 0 && na > nb && a[na - 1] == t->eos;
    }
    free(a);
    free(b);
}

static int cmp_rank(const void *x, const void *y) {
    const int64_t *a = x, *b = y;
    return a[0] < b[0] ? -1 : a[0] > b[0];
}

int tokenizer_to_parts(const tokenizer *t, tokenizer_parts *p, lc_err *err) {
    memset(p, 0, sizeof *p);
    int V = t->n_ids;
    p->n_tokens = V;
    p->tokens = calloc((size_t)V, sizeof *p->tokens);
    p->token_lens = calloc((size_t)V, sizeof *p->token_lens);
    p->types = calloc((size_t)V, sizeof *p->types);
    if (!p->tokens || !p->token_lens || !p->types) goto oom;
    if (t->chat_template && !(p->chat_template = dup_bytes(t->chat_template, strlen(t->chat_template))))
        goto oom;
    p->bos = t->bos;
    p->eos = t->eos;
    p->unk = -1;
    if (t->kind == KIND_L2C) {
        const l2c_tokenizer *l = &t->l2c;
        p->model = TOKENIZER_SPM;
        if (!(p->scores = malloc(sizeof(float) * (size_t)V))) goto oom;
        p->add_bos = t->l2c_add_bos;
        p->add_eos = t->l2c_add_eos;
        p->unk = V > 0 ? 0 : -1;
        for (int i = 0; i < V; i++) {
            const char *s = l->vocab[i];
            int n = l->lens[i];
            int ty = TOKTYPE_NORMAL;
            if (i == l->bos_id || i == l->eos_id) {
                /* llama2.c writes "\n<s>\n" and "\n</s>\n" for these */
                s = i == l->bos_id ? "<s>" : "</s>";
                n = (int)strlen(s);
                ty = TOKTYPE_CONTROL;
            } else if (i == 0) {
                ty = TOKTYPE_UNKNOWN;
            } else if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
                ty = TOKTYPE_BYTE;
            }
            p->scores[i] = l->scores[i];
            p->types[i] = ty;
            if (!(p->tokens[i] = replace_dup(s, (size_t)n, " ", SP_SPACE, &p->token_lens[i])))
                goto oom;
        }
        return LC_OK;
    }
    /* Hugging Face: byte-level BPE only */
    const char *why = NULL;
    if (t->byte_fallback || t->cont_prefix || t->eow_suffix) why = "it is not byte-level BPE";
    else if (t->n_pt == 1 && t->pt[0].type == PT_BYTELEVEL && t->pt[0].use_regex &&
             !t->pt[0].add_prefix_space)
        p->pre = strdup("gpt-2");
    else if (t->n_pt == 2 && t->pt[0].type == PT_SPLIT && t->pt[0].behavior == SB_ISOLATED &&
             !t->pt[0].invert && (t->pt[0].rx == RX_QWEN2 || t->pt[0].rx == RX_LLAMA3) &&
             t->pt[1].type == PT_BYTELEVEL && !t->pt[1].use_regex && !t->pt[1].add_prefix_space)
        p->pre = strdup(t->pt[0].rx == RX_QWEN2 ? "qwen2" : "llama-bpe");
    else why = "its pre-tokenizer is not GPT-2's, Qwen2's or Llama 3's byte-level split";
    for (int i = 0; i < t->n_norm && !why; i++)
        if (t->norm[i].type != NORM_NF) why = "it has a normalizer llama.cpp does not run";
    if (why) {
        tokenizer_parts_free(p);
        return lc_errf(err, "%s: cannot be written as a GGUF tokenizer: %s (supported: llama2.c "
                       "tokenizers and byte-level BPE tokenizer.json)", t->path, why);
    }
    if (!p->pre) goto oom;
    p->model = TOKENIZER_BPE;
    p->unk = t->unk_id;
    special_flags(t, &p->add_bos, &p->add_eos);
    for (int i = 0; i < V; i++) {
        int n;
        const char *s = id_token(t, i, &n);
        char pad[32];
        int ty = TOKTYPE_NORMAL;
        if (!s) { /* a hole: convert_hf_to_gguf.py's placeholder */
            n = snprintf(pad, sizeof pad, "[PAD%d]", i);
            s = pad;
            ty = TOKTYPE_UNUSED;
        } else if (t->added_of_id[i] >= 0) {
            ty = t->is_special[i] ? TOKTYPE_CONTROL : TOKTYPE_USER_DEFINED;
        }
        p->types[i] = ty;
        p->token_lens[i] = n;
        if (!(p->tokens[i] = dup_bytes(s, (size_t)n))) goto oom;
    }
    /* merges by rank */
    size_t nm = t->merges.n, k = 0;
    int64_t *order = malloc(sizeof(int64_t) * 2 * (nm + 1));
    p->merges = calloc(nm + 1, sizeof *p->merges);
    if (!order || !p->merges) {
        free(order);
        goto oom;
    }
    for (size_t h = 0; t->merges.key && h <= t->merges.mask; h++) {
        if (t->merges.key[h] == U64_EMPTY) continue;
        order[2 * k] = t->merges.a[h];
        order[2 * k + 1] = (int64_t)t->merges.key[h];
        k++;
    }
    qsort(order, k, 2 * sizeof(int64_t), cmp_rank);
    for (size_t i = 0; i < k; i++) {
        uint64_t key = (uint64_t)order[2 * i + 1];
        int a = (int)(key >> 32), b = (int)(uint32_t)key;
        sbuf m = {0};
        if (sbuf_put(&m, t->id_str[a], (size_t)t->id_len[a]) || sbuf_put(&m, " ", 1) ||
            sbuf_put(&m, t->id_str[b], (size_t)t->id_len[b])) {
            free(m.p);
            free(order);
            goto oom;
        }
        p->merges[p->n_merges++] = m.p;
    }
    free(order);
    return LC_OK;
oom:
    tokenizer_parts_free(p);
    return lc_errf(err, "%s: out of memory", t->path);
}
