/* tokenizer_text.c: UTF-8, Unicode, hash maps, the added-token trie, piece lists (files: tokenizer_int.h). */
#include "tokenizer_int.h"

const char RX_GPT2_STR[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char RX_LLAMA3_STR[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char RX_QWEN2_STR[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ======================================================================
 * UTF-8 (the codec is kernels/base/lc_utf8.c)
 * ====================================================================== */

int tok_sbuf_put_cp(sbuf *b, uint32_t cp) {
    char u[4];
    return lc_sbuf_put(b, u, (size_t)lc_utf8_put(u, cp));
}

/* Appends s to out with invalid sequences replaced by U+FFFD. */
int tok_utf8_lossy(sbuf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n) {
            if (u[j] < 0x80) {
                j++;
                continue;
            }
            int k = lc_utf8_valid_len(u + j, n - j);
            if (!k) break;
            j += (size_t)k;
        }
        if (lc_sbuf_put(out, s + i, j - i)) return LC_FAIL;
        if (j < n) {
            if (lc_sbuf_put(out, "\xEF\xBF\xBD", 3)) return LC_FAIL;
            j += lc_utf8_bad_len(u + j, n - j);
        }
        i = j;
    }
    return LC_OK;
}

/* ======================================================================
 * Unicode properties and normalization (tables: unicode_tables.c)
 * ====================================================================== */

uint32_t tok_range_val(const uni_range *r, int n, uint32_t cp) {
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
int tok_uni_cat(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return UNI_CAT_L;
        if (cp >= '0' && cp <= '9') return UNI_CAT_N;
        return UNI_CAT_OTHER;
    }
    return (int)tok_range_val(uni_cat_ranges, uni_cat_ranges_count, cp);
}

/* The White_Space property (= \s in Oniguruma, char::is_whitespace). */
int tok_uni_ws(uint32_t cp) {
    if (cp < 0x80) return (cp >= 9 && cp <= 13) || cp == ' ';
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static int uni_ccc(uint32_t cp) {
    if (cp < 0x300) return 0;
    return (int)tok_range_val(uni_ccc_ranges, uni_ccc_ranges_count, cp);
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


static int u32_push(u32buf *b, uint32_t cp) {
    if (GROW(b->cp, b->cap, b->n + 1)) return LC_FAIL;
    b->cp[b->n++] = cp;
    return LC_OK;
}


/* Unicode normalization form `form` of s[0..n) (valid UTF-8) into out. */
int tok_uni_normalize(int form, const char *s, size_t n, sbuf *out, u32buf *w) {
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    if (i == n) return lc_sbuf_put(out, s, n); /* ASCII is invariant */
    const int compat = form == NF_KD || form == NF_KC;
    const uni_decomp *tab = compat ? uni_nfkd : uni_nfd;
    const int tabn = compat ? uni_nfkd_count : uni_nfd_count;
    const uint32_t *data = compat ? uni_nfkd_data : uni_nfd_data;
    /* 1. full decomposition */
    w->n = 0;
    for (i = 0; i < n;) {
        int k;
        uint32_t cp = lc_utf8_get((const unsigned char *)s + i, &k);
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
        if (tok_sbuf_put_cp(out, w->cp[j])) return LC_FAIL;
    return LC_OK;
}

/* Lowercase, character by character (Rust's char::to_lowercase). */
int tok_uni_lowercase(const char *s, size_t n, sbuf *out) {
    for (size_t i = 0; i < n;) {
        int k;
        uint32_t cp = lc_utf8_get((const unsigned char *)s + i, &k);
        const uni_decomp *d = NULL;
        if (cp < 0x80) {
            if (cp >= 'A' && cp <= 'Z') cp += 32;
        } else {
            d = decomp_find(uni_lower, uni_lower_count, cp);
        }
        if (d) {
            for (uint32_t j = 0; j < d->len; j++)
                if (tok_sbuf_put_cp(out, uni_lower_data[d->offset + j])) return LC_FAIL;
        } else if (tok_sbuf_put_cp(out, cp)) {
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



int tok_strmap_init(strmap *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot) return LC_FAIL;
    for (size_t i = 0; i < cap; i++) m->slot[i] = -1;
    m->mask = cap - 1;
    return LC_OK;
}

int tok_strmap_find(const strmap *m, char *const *strs, const int *lens, const char *s,
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
int tok_strmap_insert(strmap *m, char *const *strs, const int *lens, int idx) {
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



int tok_u64map_init(u64map *m, size_t n) {
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

void tok_u64map_free(u64map *m) {
    free(m->key);
    free(m->a);
    free(m->b);
    memset(m, 0, sizeof *m);
}

int tok_u64map_find(const u64map *m, uint64_t k, int32_t *a, int32_t *b) {
    if (!m->key) return 0;
    for (size_t h = lc_splitmix64(k) & m->mask;; h = (h + 1) & m->mask) {
        if (m->key[h] == k) {
            if (a) *a = m->a[h];
            if (b) *b = m->b[h];
            return 1;
        }
        if (m->key[h] == U64_EMPTY) return 0;
    }
}

/* Sets k -> (a, b), overwriting; grows when over half full. */
int tok_u64map_set(u64map *m, uint64_t k, int32_t a, int32_t b) {
    if (2 * (m->n + 1) > m->mask + 1) {
        u64map big;
        if (tok_u64map_init(&big, m->mask + 1)) {
            tok_u64map_free(&big);
            return LC_FAIL;
        }
        for (size_t i = 0; i <= m->mask; i++)
            if (m->key[i] != U64_EMPTY) tok_u64map_set(&big, m->key[i], m->a[i], m->b[i]);
        tok_u64map_free(m);
        *m = big;
    }
    size_t h = lc_splitmix64(k) & m->mask;
    while (m->key[h] != U64_EMPTY && m->key[h] != k) h = (h + 1) & m->mask;
    if (m->key[h] == U64_EMPTY) m->n++;
    m->key[h] = k;
    m->a[h] = a;
    m->b[h] = b;
    return LC_OK;
}


/* ---- trie of added tokens (leftmost-longest matching) -------------------- */

int tok_trie_add(trie *tr, const char *s, int len, int idx) {
    if (!tr->term) {
        if (tok_u64map_init(&tr->edges, 64) || GROW(tr->term, tr->cap, 1)) return LC_FAIL;
        tr->term[0] = -1;
        tr->n = 1;
    }
    if (len <= 0) return LC_OK;
    size_t node = 0;
    for (int i = 0; i < len; i++) {
        uint64_t k = ((uint64_t)node << 8) | (unsigned char)s[i];
        int32_t child;
        if (!tok_u64map_find(&tr->edges, k, &child, NULL)) {
            if (GROW(tr->term, tr->cap, tr->n + 1)) return LC_FAIL;
            child = (int32_t)tr->n;
            tr->term[tr->n++] = -1;
            if (tok_u64map_set(&tr->edges, k, child, 0)) return LC_FAIL;
        }
        node = (size_t)child;
    }
    if (tr->term[node] < 0) tr->term[node] = idx; /* first of equal contents wins */
    tr->first[(unsigned char)s[0]] = 1;
    return LC_OK;
}

void tok_trie_free(trie *tr) {
    tok_u64map_free(&tr->edges);
    free(tr->term);
    memset(tr, 0, sizeof *tr);
}

/* Longest token starting at s[i]: its added index and end, or -1. */
int tok_trie_longest(const trie *tr, const char *s, size_t n, size_t i, size_t *end) {
    if (!tr->term || !tr->first[(unsigned char)s[i]]) return -1;
    size_t node = 0;
    int best = -1;
    for (size_t j = i; j < n; j++) {
        int32_t child;
        if (!tok_u64map_find(&tr->edges, ((uint64_t)node << 8) | (unsigned char)s[j], &child, NULL))
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

const char *tok_id_token(const tokenizer *t, int id, int *len) {
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

int tok_vocab_find(const tokenizer *t, const char *s, size_t n) {
    return tok_strmap_find(&t->vocab, t->id_str, t->id_len, s, n);
}


/* ---- piece lists ---------------------------------------------------------- */

int tok_pieces_add(pieces *ps, const char *s, size_t n, int id, int first) {
    size_t off = ps->text.n;
    /* always put (even 0 bytes) so that the text buffer exists once a piece
     * does: text.p + off is then never arithmetic on a null pointer */
    if (lc_sbuf_put(&ps->text, s, n)) return LC_FAIL;
    if (GROW(ps->p, ps->cap, ps->n + 1)) return LC_FAIL;
    ps->p[ps->n++] = (piece){off, n, id, first};
    return LC_OK;
}

int tok_pieces_end(pieces *ps, size_t off, int first) {
    if (lc_sbuf_put(&ps->text, "", 0) || GROW(ps->p, ps->cap, ps->n + 1)) return LC_FAIL;
    ps->p[ps->n++] = (piece){off, ps->text.n - off, -1, first};
    return LC_OK;
}

void tok_pieces_clear(pieces *ps) {
    ps->text.n = 0;
    ps->n = 0;
}

void tok_pieces_free(pieces *ps) {
/* ======================================================================
 * Encoding
 * ====================================================================== */


    free(ps->text.p);
    free(ps->p);
}
