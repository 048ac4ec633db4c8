/* metrics.c: ROUGE (rouge-score conventions), chrF/chrF++ (sacreBLEU
 * conventions), weighted ROUGE and corpus aggregation. Formulas and sources:
 * calibrate/METRICS.md. The Porter stemmer lives in porter.c.
 *
 * Layout: UTF-8 decoding -> tokenisers (rouge-score's and the Latin variant)
 * -> interning of tokens to integer ids -> n-gram overlap and LCS over id
 * sequences -> ROUGE / chrF scores -> corpus aggregation. */
#include "metrics.h"
#include "lc_utf8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------- */

static void *xmalloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    size_t total = count * size;
    return malloc(total ? total : 1);
}

static void *xcalloc(size_t count, size_t size) {
    return calloc(count ? count : 1, size ? size : 1);
}

static prf prf_nan(void) {
    prf x = {NAN, NAN, NAN};
    return x;
}

/* rouge-score's scoring.fmeasure: 2pr/(p+r), 0 when p+r = 0. */
static double fmeasure(double p, double r) {
    return (p + r > 0) ? 2 * p * r / (p + r) : 0.0;
}

/* ---- UTF-8 --------------------------------------------------------------- */

/* Code points >= CP_BAD stand for one invalid input byte each (CP_BAD + byte),
 * so invalid bytes are distinct symbols that never equal a real character. */
#define CP_BAD 0x110000u

/* Decodes text into a new array of code points (count in *n); each byte
 * that does not start a valid sequence becomes CP_BAD + byte. */
static uint32_t *utf8_decode(const char *text, size_t *n) {
    size_t len = strlen(text);
    uint32_t *cps = xmalloc(len + 1, sizeof *cps);
    if (!cps) return NULL;
    const unsigned char *s = (const unsigned char *)text;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        int l = lc_utf8_valid_len(s + i, len - i);
        if (l) {
            cps[k++] = lc_utf8_get(s + i, &l);
            i += (size_t)l;
        } else {
            cps[k++] = CP_BAD + s[i++];
        }
    }
    *n = k;
    return cps;
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp >= CP_BAD) {
        out[0] = (char)(cp - CP_BAD);
        return 1;
    }
    return (size_t)lc_utf8_put(out, cp);
}

/* Python's str.isspace() (what str.split() splits on). */
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 ||
           c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* ---- Latin case mapping -------------------------------------------------- */

/* Simple case folding (CaseFolding.txt, status C and S) of U+0000-U+017F,
 * plus İ (U+0130) -> i. Other code points are returned unchanged. */
static uint32_t latin_fold(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0 || c > 0x17F) return c;
    if (c <= 0xDE) return c == 0xD7 ? c : c + 32;
    if (c < 0x100) return c;
    if (c == 0x130) return 'i';
    if (c == 0x178) return 0xFF;
    if (c == 0x17F) return 's';
    if ((c <= 0x137 || (c >= 0x14A && c <= 0x177)) && c % 2 == 0) return c + 1;
    if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && c % 2 == 1)
        return c + 1;
    return c;
}

/* Python's str.lower() on U+0000-U+017F (İ -> "i" U+0307, two code points),
 * plus U+212A KELVIN SIGN -> k and U+212B ANGSTROM SIGN -> å. Writes 1 or 2
 * code points to out and returns the count. Other code points unchanged. */
static size_t latin_lower(uint32_t c, uint32_t *out) {
    if (c == 0x130) {
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    if (c == 0x212A) c = 'k';
    else if (c == 0x212B) c = 0xE5;
    else if (c != 0x17F) c = latin_fold(c);
    out[0] = c;
    return 1;
}

/* ---- tokenisers ---------------------------------------------------------- */

/* NFC compositions base letter + combining mark whose result lies in
 * U+00C0-U+017F (generated from Python's unicodedata.normalize("NFC")). */
static const struct {
    char base;
    uint16_t mark, composed;
} nfc_pairs[] = {
    {'A', 0x300, 0x0C0}, {'A', 0x301, 0x0C1}, {'A', 0x302, 0x0C2},
    {'A', 0x303, 0x0C3}, {'A', 0x304, 0x100}, {'A', 0x306, 0x102},
    {'A', 0x308, 0x0C4}, {'A', 0x30A, 0x0C5}, {'A', 0x328, 0x104},
    {'C', 0x301, 0x106}, {'C', 0x302, 0x108}, {'C', 0x307, 0x10A},
    {'C', 0x30C, 0x10C}, {'C', 0x327, 0x0C7}, {'D', 0x30C, 0x10E},
    {'E', 0x300, 0x0C8}, {'E', 0x301, 0x0C9}, {'E', 0x302, 0x0CA},
    {'E', 0x304, 0x112}, {'E', 0x306, 0x114}, {'E', 0x307, 0x116},
    {'E', 0x308, 0x0CB}, {'E', 0x30C, 0x11A}, {'E', 0x328, 0x118},
    {'G', 0x302, 0x11C}, {'G', 0x306, 0x11E}, {'G', 0x307, 0x120},
    {'G', 0x327, 0x122}, {'H', 0x302, 0x124}, {'I', 0x300, 0x0CC},
    {'I', 0x301, 0x0CD}, {'I', 0x302, 0x0CE}, {'I', 0x303, 0x128},
    {'I', 0x304, 0x12A}, {'I', 0x306, 0x12C}, {'I', 0x307, 0x130},
    {'I', 0x308, 0x0CF}, {'I', 0x328, 0x12E}, {'J', 0x302, 0x134},
    {'K', 0x327, 0x136}, {'L', 0x301, 0x139}, {'L', 0x30C, 0x13D},
    {'L', 0x327, 0x13B}, {'N', 0x301, 0x143}, {'N', 0x303, 0x0D1},
    {'N', 0x30C, 0x147}, {'N', 0x327, 0x145}, {'O', 0x300, 0x0D2},
    {'O', 0x301, 0x0D3}, {'O', 0x302, 0x0D4}, {'O', 0x303, 0x0D5},
    {'O', 0x304, 0x14C}, {'O', 0x306, 0x14E}, {'O', 0x308, 0x0D6},
    {'O', 0x30B, 0x150}, {'R', 0x301, 0x154}, {'R', 0x30C, 0x158},
    {'R', 0x327, 0x156}, {'S', 0x301, 0x15A}, {'S', 0x302, 0x15C},
    {'S', 0x30C, 0x160}, {'S', 0x327, 0x15E}, {'T', 0x30C, 0x164},
    {'T', 0x327, 0x162}, {'U', 0x300, 0x0D9}, {'U', 0x301, 0x0DA},
    {'U', 0x302, 0x0DB}, {'U', 0x303, 0x168}, {'U', 0x304, 0x16A},
    {'U', 0x306, 0x16C}, {'U', 0x308, 0x0DC}, {'U', 0x30A, 0x16E},
    {'U', 0x30B, 0x170}, {'U', 0x328, 0x172}, {'W', 0x302, 0x174},
    {'Y', 0x301, 0x0DD}, {'Y', 0x302, 0x176}, {'Y', 0x308, 0x178},
    {'Z', 0x301, 0x179}, {'Z', 0x307, 0x17B}, {'Z', 0x30C, 0x17D},
    {'a', 0x300, 0x0E0}, {'a', 0x301, 0x0E1}, {'a', 0x302, 0x0E2},
    {'a', 0x303, 0x0E3}, {'a', 0x304, 0x101}, {'a', 0x306, 0x103},
    {'a', 0x308, 0x0E4}, {'a', 0x30A, 0x0E5}, {'a', 0x328, 0x105},
    {'c', 0x301, 0x107}, {'c', 0x302, 0x109}, {'c', 0x307, 0x10B},
    {'c', 0x30C, 0x10D}, {'c', 0x327, 0x0E7}, {'d', 0x30C, 0x10F},
    {'e', 0x300, 0x0E8}, {'e', 0x301, 0x0E9}, {'e', 0x302, 0x0EA},
    {'e', 0x304, 0x113}, {'e', 0x306, 0x115}, {'e', 0x307, 0x117},
    {'e', 0x308, 0x0EB}, {'e', 0x30C, 0x11B}, {'e', 0x328, 0x119},
    {'g', 0x302, 0x11D}, {'g', 0x306, 0x11F}, {'g', 0x307, 0x121},
    {'g', 0x327, 0x123}, {'h', 0x302, 0x125}, {'i', 0x300, 0x0EC},
    {'i', 0x301, 0x0ED}, {'i', 0x302, 0x0EE}, {'i', 0x303, 0x129},
    {'i', 0x304, 0x12B}, {'i', 0x306, 0x12D}, {'i', 0x308, 0x0EF},
    {'i', 0x328, 0x12F}, {'j', 0x302, 0x135}, {'k', 0x327, 0x137},
    {'l', 0x301, 0x13A}, {'l', 0x30C, 0x13E}, {'l', 0x327, 0x13C},
    {'n', 0x301, 0x144}, {'n', 0x303, 0x0F1}, {'n', 0x30C, 0x148},
    {'n', 0x327, 0x146}, {'o', 0x300, 0x0F2}, {'o', 0x301, 0x0F3},
    {'o', 0x302, 0x0F4}, {'o', 0x303, 0x0F5}, {'o', 0x304, 0x14D},
    {'o', 0x306, 0x14F}, {'o', 0x308, 0x0F6}, {'o', 0x30B, 0x151},
    {'r', 0x301, 0x155}, {'r', 0x30C, 0x159}, {'r', 0x327, 0x157},
    {'s', 0x301, 0x15B}, {'s', 0x302, 0x15D}, {'s', 0x30C, 0x161},
    {'s', 0x327, 0x15F}, {'t', 0x30C, 0x165}, {'t', 0x327, 0x163},
    {'u', 0x300, 0x0F9}, {'u', 0x301, 0x0FA}, {'u', 0x302, 0x0FB},
    {'u', 0x303, 0x169}, {'u', 0x304, 0x16B}, {'u', 0x306, 0x16D},
    {'u', 0x308, 0x0FC}, {'u', 0x30A, 0x16F}, {'u', 0x30B, 0x171},
    {'u', 0x328, 0x173}, {'w', 0x302, 0x175}, {'y', 0x301, 0x0FD},
    {'y', 0x302, 0x177}, {'y', 0x308, 0x0FF}, {'z', 0x301, 0x17A},
    {'z', 0x307, 0x17C}, {'z', 0x30C, 0x17E},
};

static uint32_t nfc_compose(uint32_t base, uint32_t mark) {
    if (base >= 0x80) return 0;
    for (size_t i = 0; i < sizeof nfc_pairs / sizeof nfc_pairs[0]; i++)
        if ((uint32_t)(unsigned char)nfc_pairs[i].base == base &&
            nfc_pairs[i].mark == mark)
            return nfc_pairs[i].composed;
    return 0;
}

/* Word characters of ROUGE_TOK_LATIN (after folding). */
static int latin_word_char(uint32_t c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == 0xAA ||
           c == 0xBA || (c >= 0xDF && c <= 0xFF && c != 0xF7) ||
           (c >= 0x100 && c <= 0x17F);
}

/* Maps text to a sequence of folded code points where 0 marks a separator,
 * implementing ROUGE_TOK_LATIN. Returns the count in *n. */
static uint32_t *latin_normalise(const char *text, size_t *n) {
    size_t k;
    uint32_t *cp = utf8_decode(text, &k);
    if (!cp) return NULL;
    /* singletons, then composition with the preceding ASCII letter; other
     * combining marks (U+0300-U+036F) are dropped */
    size_t m = 0;
    for (size_t i = 0; i < k; i++) {
        uint32_t c = cp[i];
        if (c == 0x212A) c = 'K';
        else if (c == 0x212B) c = 0xC5;
        else if (c == 0x340) c = 0x300;
        else if (c == 0x341) c = 0x301;
        if (c >= 0x300 && c <= 0x36F) {
            uint32_t comp = m > 0 ? nfc_compose(cp[m - 1], c) : 0;
            if (comp) cp[m - 1] = comp;
            continue;
        }
        cp[m++] = c;
    }
    for (size_t i = 0; i < m; i++) cp[i] = latin_fold(cp[i]);
    /* classify; U+00B7 MIDDLE DOT stays inside a word between l and l
     * (Catalan "col·lecció") */
    for (size_t i = 0; i < m; i++) {
        uint32_t c = cp[i];
        if (c == 0xB7)
            cp[i] = (i > 0 && i + 1 < m && cp[i - 1] == 'l' && cp[i + 1] == 'l')
                        ? c : 0;
        else if (!latin_word_char(c))
            cp[i] = 0;
    }
    *n = m;
    return cp;
}

/* rouge-score: str.lower(), then [^a-z0-9]+ -> separator. The only non-ASCII
 * code points whose Python lower() contains [a-z0-9] are U+0130 (lowered to
 * "i" + U+0307, i.e. "i" then a separator) and U+212A KELVIN SIGN ("k"). */
static uint32_t *rouge_score_normalise(const char *text, size_t *n) {
    size_t k;
    uint32_t *cp = utf8_decode(text, &k);
    if (!cp) return NULL;
    uint32_t *out = xmalloc(k > SIZE_MAX / 2 ? SIZE_MAX : 2 * k + 1, sizeof *out);
    if (!out) {
        free(cp);
        return NULL;
    }
    size_t m = 0;
    for (size_t i = 0; i < k; i++) {
        uint32_t c = cp[i];
        if (c >= 'A' && c <= 'Z') c += 32;
        else if (c == 0x212A) c = 'k';
        else if (c == 0x130) {
            out[m++] = 'i';
            c = 0;
        }
        out[m++] = ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) ? c : 0;
    }
    free(cp);
    *n = m;
    return out;
}

static int is_ascii_token(const char *t, size_t len) {
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)t[i] >= 0x80) return 0;
    return 1;
}

int rouge_tokenize(const char *text, const rouge_opts *o, rouge_tokens *out,
                   lc_err *err) {
    memset(out, 0, sizeof *out);
    if (!text) return lc_errf(err, "rouge_tokenize: NULL text");
    rouge_tok mode = o ? o->tok : ROUGE_TOK_ROUGE_SCORE;
    int stem = o ? o->stem : 0;
    if (mode != ROUGE_TOK_ROUGE_SCORE && mode != ROUGE_TOK_LATIN)
        return lc_errf(err, "rouge_tokenize: unknown tokenisation mode %d",
                       (int)mode);
    size_t n;
    uint32_t *cp = mode == ROUGE_TOK_LATIN ? latin_normalise(text, &n)
                                           : rouge_score_normalise(text, &n);
    if (!cp) return lc_errf(err, "rouge_tokenize: out of memory");
    /* each code point takes at most 4 bytes, plus a NUL per token */
    size_t ntok = 0;
    for (size_t i = 0; i < n; i++)
        if (cp[i] && (i == 0 || !cp[i - 1])) ntok++;
    char *buf = xmalloc(n > SIZE_MAX / 5 ? SIZE_MAX : 4 * n + ntok + 1, 1);
    char **tokens = xmalloc(ntok, sizeof *tokens);
    size_t *lens = xmalloc(ntok, sizeof *lens);
    if (!buf || !tokens || !lens) {
        free(cp);
        free(buf);
        free(tokens);
        free(lens);
        return lc_errf(err, "rouge_tokenize: out of memory");
    }
    size_t pos = 0, t = 0;
    for (size_t i = 0; i < n;) {
        if (!cp[i]) { i++; continue; }
        char *start = buf + pos;
        size_t len = 0;
        for (; i < n && cp[i]; i++) len += utf8_put(cp[i], start + len);
        /* rouge-score stems tokens longer than 3 characters; the stemmer is
         * English and is applied to ASCII tokens only */
        if (stem && is_ascii_token(start, len) && len > 3)
            len = porter_stem(start, len);
        start[len] = 0;
        pos += len + 1;
        if (len == 0) continue; /* dropped like rouge-score's final filter */
        tokens[t] = start;
        lens[t] = len;
        t++;
    }
    free(cp);
    out->tokens = tokens;
    out->lens = lens;
    out->n = t;
    out->buf_ = buf;
    return LC_OK;
}

void rouge_tokens_free(rouge_tokens *t) {
    if (!t) return;
    free(t->tokens);
    free(t->lens);
    free(t->buf_);
    memset(t, 0, sizeof *t);
}

/* ---- interning: byte strings -> dense ids -------------------------------- */

static uint64_t fnv1a(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

typedef struct {
    const void *key;
    size_t len;
    uint32_t id;
} intern_slot;

typedef struct {
    intern_slot *slots;
    size_t cap; /* power of two */
    uint32_t next_id;
} intern_table;

static int intern_init(intern_table *t, size_t max_keys) {
    size_t cap = 16;
    while (cap < 2 * max_keys + 2) {
        if (cap > SIZE_MAX / 4) return LC_FAIL;
        cap *= 2;
    }
    t->slots = xcalloc(cap, sizeof *t->slots);
    t->cap = cap;
    t->next_id = 0;
    return t->slots ? LC_OK : LC_FAIL;
}

/* Id of the byte string key[0..len) (key must outlive the table). */
static uint32_t intern_get(intern_table *t, const void *key, size_t len) {
    size_t i = (size_t)fnv1a(key, len) & (t->cap - 1);
    for (;;) {
        intern_slot *s = &t->slots[i];
        if (!s->key) {
            s->key = key;
            s->len = len;
            s->id = t->next_id++;
            return s->id;
        }
        if (s->len == len && memcmp(s->key, key, len) == 0) return s->id;
        i = (i + 1) & (t->cap - 1);
    }
}

/* ---- n-gram overlap and LCS over id sequences ----------------------------- */

typedef struct {
    const uint32_t *key; /* n ids; NULL = empty slot */
    size_t ca, cb;
} gram_slot;

static uint64_t hash_ids(const uint32_t *k, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i < n; i++) {
        h ^= k[i];
        h *= 0xFF51AFD7ED558CCDull;
        h ^= h >> 33;
    }
    return h;
}

/* Counts the n-grams of a (*ga) and b (*gb) and their clipped overlap
 * sum_g min(count_a(g), count_b(g)) (*match). */
static int ngram_overlap(const uint32_t *a, size_t na, const uint32_t *b,
                         size_t nb, size_t n, size_t *ga, size_t *gb,
                         size_t *match) {
    size_t ka = na >= n ? na - n + 1 : 0, kb = nb >= n ? nb - n + 1 : 0;
    *ga = ka;
    *gb = kb;
    *match = 0;
    if (ka == 0 || kb == 0) return LC_OK;
    size_t cap = 16;
    while (cap < 2 * (ka + kb)) {
        if (cap > SIZE_MAX / 4) return LC_FAIL;
        cap *= 2;
    }
    gram_slot *slots = xcalloc(cap, sizeof *slots);
    if (!slots) return LC_FAIL;
    for (int side = 0; side < 2; side++) {
        const uint32_t *seq = side ? a : b;
        size_t k = side ? ka : kb;
        for (size_t g = 0; g < k; g++) {
            const uint32_t *key = seq + g;
            size_t i = (size_t)hash_ids(key, n) & (cap - 1);
            while (slots[i].key &&
                   memcmp(slots[i].key, key, n * sizeof *key) != 0)
                i = (i + 1) & (cap - 1);
            if (!slots[i].key) slots[i].key = key;
            if (side) slots[i].ca++;
            else slots[i].cb++;
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < cap; i++)
        m += slots[i].ca < slots[i].cb ? slots[i].ca : slots[i].cb;
    free(slots);
    *match = m;
    return LC_OK;
}

/* Length of the longest common subsequence of a and b (two DP rows). */
static int lcs_length(const uint32_t *a, size_t na, const uint32_t *b,
                      size_t nb, size_t *out) {
    size_t *prev = xcalloc(nb + 1, sizeof *prev);
    size_t *cur = xcalloc(nb + 1, sizeof *cur);
    if (!prev || !cur) {
        free(prev);
        free(cur);
        return LC_FAIL;
    }
    for (size_t i = 1; i <= na; i++) {
        cur[0] = 0;
        for (size_t j = 1; j <= nb; j++) {
            if (a[i - 1] == b[j - 1]) cur[j] = prev[j - 1] + 1;
            else cur[j] = prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
        }
        size_t *t = prev;
        prev = cur;
        cur = t;
    }
    *out = prev[nb];
    free(prev);
    free(cur);
    return LC_OK;
}

/* ---- ROUGE --------------------------------------------------------------- */

/* Both texts as id sequences over a shared vocabulary. */
typedef struct {
    rouge_tokens tc, tr;
    uint32_t *ic, *ir;
} rouge_pair;

static void rouge_pair_free(rouge_pair *p) {
    rouge_tokens_free(&p->tc);
    rouge_tokens_free(&p->tr);
    free(p->ic);
    free(p->ir);
}

static int rouge_pair_init(rouge_pair *p, const char *cand, const char *ref,
                           const rouge_opts *o, lc_err *err) {
    memset(p, 0, sizeof *p);
    if (!cand || !ref) return lc_errf(err, "rouge: NULL text");
    if (rouge_tokenize(cand, o, &p->tc, err) ||
        rouge_tokenize(ref, o, &p->tr, err)) {
        rouge_pair_free(p);
        return LC_FAIL;
    }
    intern_table t;
    p->ic = xmalloc(p->tc.n, sizeof *p->ic);
    p->ir = xmalloc(p->tr.n, sizeof *p->ir);
    if (!p->ic || !p->ir || intern_init(&t, p->tc.n + p->tr.n)) {
        rouge_pair_free(p);
        return lc_errf(err, "rouge: out of memory");
    }
    for (size_t i = 0; i < p->tc.n; i++)
        p->ic[i] = intern_get(&t, p->tc.tokens[i], p->tc.lens[i]);
    for (size_t i = 0; i < p->tr.n; i++)
        p->ir[i] = intern_get(&t, p->tr.tokens[i], p->tr.lens[i]);
    free(t.slots);
    return LC_OK;
}

/* rouge-score _score_ngrams: divides by max(count, 1). */
static int pair_rouge_n(const rouge_pair *p, size_t n, prf *out) {
    size_t gc, gr, m;
    if (ngram_overlap(p->ic, p->tc.n, p->ir, p->tr.n, n, &gc, &gr, &m))
        return LC_FAIL;
    out->p = (double)m / (double)(gc > 0 ? gc : 1);
    out->r = (double)m / (double)(gr > 0 ? gr : 1);
    out->f = fmeasure(out->p, out->r);
    return LC_OK;
}

/* rouge-score _score_lcs: zero scores when either side has no tokens. */
static int pair_rouge_l(const rouge_pair *p, prf *out) {
    if (p->tc.n == 0 || p->tr.n == 0) {
        out->p = out->r = out->f = 0;
        return LC_OK;
    }
    size_t l;
    if (lcs_length(p->ir, p->tr.n, p->ic, p->tc.n, &l)) return LC_FAIL;
    out->p = (double)l / (double)p->tc.n;
    out->r = (double)l / (double)p->tr.n;
    out->f = fmeasure(out->p, out->r);
    return LC_OK;
}

prf rouge_n(const char *cand, const char *ref, int n, const rouge_opts *o) {
    if (n < 1) return prf_nan();
    rouge_pair p;
    prf out;
    if (rouge_pair_init(&p, cand, ref, o, NULL)) return prf_nan();
    int rc = pair_rouge_n(&p, (size_t)n, &out);
    rouge_pair_free(&p);
    return rc ? prf_nan() : out;
}

prf rouge_l(const char *cand, const char *ref, const rouge_opts *o) {
    rouge_pair p;
    prf out;
    if (rouge_pair_init(&p, cand, ref, o, NULL)) return prf_nan();
    int rc = pair_rouge_l(&p, &out);
    rouge_pair_free(&p);
    return rc ? prf_nan() : out;
}

static double weighted_from(const rouge_scores *s) {
    return s->r1.f / 6 + s->r2.f / 3 + s->r3.f / 2;
}

int rouge_score_all(const char *cand, const char *ref, const rouge_opts *o,
                    rouge_scores *out, lc_err *err) {
    rouge_pair p;
    out->r1 = out->r2 = out->r3 = out->rl = prf_nan();
    out->weighted = NAN;
    if (rouge_pair_init(&p, cand, ref, o, err)) return LC_FAIL;
    int rc = pair_rouge_n(&p, 1, &out->r1) || pair_rouge_n(&p, 2, &out->r2) ||
             pair_rouge_n(&p, 3, &out->r3) || pair_rouge_l(&p, &out->rl);
    rouge_pair_free(&p);
    if (rc) {
        out->r1 = out->r2 = out->r3 = out->rl = prf_nan();
        return lc_errf(err, "rouge: out of memory");
    }
    out->weighted = weighted_from(out);
    return LC_OK;
}

double weighted_rouge(const char *cand, const char *ref, const rouge_opts *o) {
    rouge_scores s;
    if (rouge_score_all(cand, ref, o, &s, NULL)) return NAN;
    return s.weighted;
}

double rouge_mean_12l(const char *cand, const char *ref, const rouge_opts *o) {
    rouge_scores s;
    if (rouge_score_all(cand, ref, o, &s, NULL)) return NAN;
    return (s.r1.f + s.r2.f + s.rl.f) / 3;
}

/* ---- chrF ---------------------------------------------------------------- */

chrf_opts chrf_opts_default(void) {
    chrf_opts o = {6, 0, 2.0, 0, 0, 0};
    return o;
}

static int chrf_opts_valid(const chrf_opts *o) {
    return o->char_order >= 0 && o->word_order >= 0 &&
           o->char_order + o->word_order >= 1 &&
           o->char_order + o->word_order <= CHRF_MAX_ORDER && o->beta >= 0 &&
           isfinite(o->beta);
}

void chrf_stats_init(chrf_stats *s, const chrf_opts *o) {
    chrf_opts d = chrf_opts_default();
    if (!o) o = &d;
    memset(s, 0, sizeof *s);
    s->order = o->char_order + o->word_order;
    if (s->order < 0 || s->order > CHRF_MAX_ORDER) s->order = 0;
}

/* One segment: code points after optional lowercasing. */
typedef struct {
    uint32_t *cp;
    size_t n;
} cp_text;

static int chrf_prepare(const char *text, int lowercase, cp_text *out) {
    size_t n;
    uint32_t *cp = utf8_decode(text, &n);
    if (!cp) return LC_FAIL;
    if (lowercase) {
        uint32_t *lo = xmalloc(2 * n + 1, sizeof *lo);
        if (!lo) {
            free(cp);
            return LC_FAIL;
        }
        size_t m = 0;
        for (size_t i = 0; i < n; i++) m += latin_lower(cp[i], lo + m);
        free(cp);
        cp = lo;
        n = m;
    }
    out->cp = cp;
    out->n = n;
    return LC_OK;
}

/* extract_all_char_ngrams: the characters, whitespace removed unless kept. */
static size_t chrf_chars(const cp_text *t, int whitespace, uint32_t *out) {
    size_t m = 0;
    for (size_t i = 0; i < t->n; i++)
        if (whitespace || !py_isspace(t->cp[i])) out[m++] = t->cp[i];
    return m;
}

static int is_punct(uint32_t c) {
    return c != 0 && c < 0x80 &&
           strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", (int)c) != NULL;
}

/* sacreBLEU CHRF._remove_punctuation: split on whitespace; a word longer
 * than one character loses a trailing punctuation mark, or else a leading
 * one, as a separate word. Words are written as (start, len) pairs. */
static size_t chrf_words(const cp_text *t, size_t *start, size_t *len) {
    size_t nw = 0;
    for (size_t i = 0; i < t->n;) {
        if (py_isspace(t->cp[i])) { i++; continue; }
        size_t s = i;
        while (i < t->n && !py_isspace(t->cp[i])) i++;
        size_t l = i - s;
        if (l > 1 && is_punct(t->cp[s + l - 1])) {
            start[nw] = s; len[nw++] = l - 1;
            start[nw] = s + l - 1; len[nw++] = 1;
        } else if (l > 1 && is_punct(t->cp[s])) {
            start[nw] = s; len[nw++] = 1;
            start[nw] = s + 1; len[nw++] = l - 1;
        } else {
            start[nw] = s; len[nw++] = l;
        }
    }
    return nw;
}

int chrf_stats_add(chrf_stats *acc, const char *hyp, const char *ref,
                   const chrf_opts *o, lc_err *err) {
    chrf_opts d = chrf_opts_default();
    if (!o) o = &d;
    if (!hyp || !ref) return lc_errf(err, "chrf: NULL text");
    if (!chrf_opts_valid(o) || acc->order != o->char_order + o->word_order)
        return lc_errf(err, "chrf: invalid options (char_order %d, word_order "
                            "%d, beta %g; at most %d orders in total)",
                       o->char_order, o->word_order, o->beta, CHRF_MAX_ORDER);
    cp_text th = {0}, tr = {0};
    uint32_t *ch = NULL, *cr = NULL, *wh = NULL, *wr = NULL;
    size_t *ws = NULL, *wl = NULL;
    intern_table it = {0};
    int rc = LC_FAIL;
    if (chrf_prepare(hyp, o->lowercase, &th) ||
        chrf_prepare(ref, o->lowercase, &tr))
        goto done;
    ch = xmalloc(th.n + 1, sizeof *ch);
    cr = xmalloc(tr.n + 1, sizeof *cr);
    if (!ch || !cr) goto done;
    size_t nch = chrf_chars(&th, o->whitespace, ch);
    size_t ncr = chrf_chars(&tr, o->whitespace, cr);
    double st[3 * CHRF_MAX_ORDER];
    int k = 0;
    for (int n = 1; n <= o->char_order; n++, k++) {
        size_t gh, gr, m;
        if (ngram_overlap(ch, nch, cr, ncr, (size_t)n, &gh, &gr, &m)) goto done;
        /* hyp count is 0 when the reference has no n-gram of this order */
        st[3 * k] = gr > 0 ? (double)gh : 0.0;
        st[3 * k + 1] = (double)gr;
        st[3 * k + 2] = (double)m;
    }
    if (o->word_order > 0) {
        size_t maxw = 2 * (th.n > tr.n ? th.n : tr.n) + 1;
        ws = xmalloc(maxw, sizeof *ws);
        wl = xmalloc(maxw, sizeof *wl);
        wh = xmalloc(maxw, sizeof *wh);
        wr = xmalloc(maxw, sizeof *wr);
        if (!ws || !wl || !wh || !wr || intern_init(&it, 2 * (th.n + tr.n) + 2))
            goto done;
        size_t nwh = chrf_words(&th, ws, wl);
        for (size_t i = 0; i < nwh; i++)
            wh[i] = intern_get(&it, th.cp + ws[i], wl[i] * sizeof(uint32_t));
        size_t nwr = chrf_words(&tr, ws, wl);
        for (size_t i = 0; i < nwr; i++)
            wr[i] = intern_get(&it, tr.cp + ws[i], wl[i] * sizeof(uint32_t));
        for (int n = 1; n <= o->word_order; n++, k++) {
            size_t gh, gr, m;
            if (ngram_overlap(wh, nwh, wr, nwr, (size_t)n, &gh, &gr, &m))
                goto done;
            st[3 * k] = gr > 0 ? (double)gh : 0.0;
            st[3 * k + 1] = (double)gr;
            st[3 * k + 2] = (double)m;
        }
    }
    for (int i = 0; i < 3 * k; i++) acc->stats[i] += st[i];
    rc = LC_OK;
done:
    free(th.cp);
    free(tr.cp);
    free(ch);
    free(cr);
    free(wh);
    free(wr);
    free(ws);
    free(wl);
    free(it.slots);
    if (rc) lc_errf(err, "chrf: out of memory");
    return rc;
}

/* sacreBLEU CHRF._compute_f_score, operation for operation. */
double chrf_from_stats(const chrf_stats *s, const chrf_opts *o) {
    chrf_opts d = chrf_opts_default();
    if (!o) o = &d;
    if (!chrf_opts_valid(o) || s->order != o->char_order + o->word_order)
        return NAN;
    const double eps = 1e-16;
    double factor = o->beta * o->beta;
    double score = 0.0, avg_prec = 0.0, avg_rec = 0.0;
    int effective_order = 0;
    for (int i = 0; i < s->order; i++) {
        double n_hyp = s->stats[3 * i], n_ref = s->stats[3 * i + 1],
               n_match = s->stats[3 * i + 2];
        double prec = n_hyp > 0 ? n_match / n_hyp : eps;
        double rec = n_ref > 0 ? n_match / n_ref : eps;
        double denom = factor * prec + rec;
        score += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
        if (n_hyp > 0 && n_ref > 0) {
            avg_prec += prec;
            avg_rec += rec;
            effective_order++;
        }
    }
    if (o->eps_smoothing) return 100 * score / s->order;
    if (effective_order == 0) {
        avg_prec = avg_rec = 0.0;
    } else {
        avg_prec /= effective_order;
        avg_rec /= effective_order;
    }
    if (avg_prec + avg_rec != 0) {
        score = (1 + factor) * avg_prec * avg_rec;
        score /= (factor * avg_prec) + avg_rec;
        return 100 * score;
    }
    return 0.0;
}

double chrf(const char *hyp, const char *ref, const chrf_opts *o) {
    chrf_stats s;
    chrf_stats_init(&s, o);
    if (chrf_stats_add(&s, hyp, ref, o, NULL)) return NAN;
    return chrf_from_stats(&s, o);
}

/* ---- corpus -------------------------------------------------------------- */

static void prf_add(prf *acc, prf x) {
    acc->p += x.p;
    acc->r += x.r;
    acc->f += x.f;
}

static prf prf_div(prf x, double n) {
    prf y = {x.p / n, x.r / n, x.f / n};
    return y;
}

int metrics_corpus_eval(const char *const *cands, const char *const *refs,
                        size_t n, const rouge_opts *ro, const chrf_opts *co,
                        metrics_corpus *out, lc_err *err) {
    memset(out, 0, sizeof *out);
    chrf_opts d = chrf_opts_default();
    if (!co) co = &d;
    if (n > 0 && (!cands || !refs))
        return lc_errf(err, "metrics_corpus_eval: NULL candidate/reference list");
    if (!chrf_opts_valid(co))
        return lc_errf(err, "metrics_corpus_eval: invalid chrF options");
    out->examples = xcalloc(n, sizeof *out->examples);
    if (!out->examples)
        return lc_errf(err, "metrics_corpus_eval: out of memory for %zu examples",
                       n);
    out->n = n;
    chrf_stats corpus;
    chrf_stats_init(&corpus, co);
    prf z = {0, 0, 0};
    prf s1 = z, s2 = z, s3 = z, sl = z;
    double sw = 0, sc = 0;
    for (size_t i = 0; i < n; i++) {
        metrics_example *e = &out->examples[i];
        if (rouge_score_all(cands[i], refs[i], ro, &e->rouge, err)) {
            lc_err_prefix(err, "example %zu: ", i);
            metrics_corpus_free(out);
            return LC_FAIL;
        }
        chrf_stats seg;
        chrf_stats_init(&seg, co);
        if (chrf_stats_add(&seg, cands[i], refs[i], co, err)) {
            lc_err_prefix(err, "example %zu: ", i);
            metrics_corpus_free(out);
            return LC_FAIL;
        }
        for (int k = 0; k < 3 * seg.order; k++) corpus.stats[k] += seg.stats[k];
        e->chrf = chrf_from_stats(&seg, co);
        prf_add(&s1, e->rouge.r1);
        prf_add(&s2, e->rouge.r2);
        prf_add(&s3, e->rouge.r3);
        prf_add(&sl, e->rouge.rl);
        sw += e->rouge.weighted;
        sc += e->chrf;
    }
    double dn = n > 0 ? (double)n : NAN;
    out->r1 = prf_div(s1, dn);
    out->r2 = prf_div(s2, dn);
    out->r3 = prf_div(s3, dn);
    out->rl = prf_div(sl, dn);
    out->weighted = sw / dn;
    out->chrf_mean = sc / dn;
    out->chrf_corpus = n > 0 ? chrf_from_stats(&corpus, co) : NAN;
    return LC_OK;
}

void metrics_corpus_free(metrics_corpus *c) {
    if (!c) return;
    free(c->examples);
    memset(c, 0, sizeof *c);
}
