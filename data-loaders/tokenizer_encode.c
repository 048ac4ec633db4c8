/* tokenizer_encode.c: text to ids: added tokens, normalization, pre-tokenization, BPE, post-processing (files: tokenizer_int.h). */
#include "tokenizer_int.h"


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
    tok_pieces_free(&x->pa);
    tok_pieces_free(&x->pb);
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

int tok_replace_all(sbuf *out, const char *s, size_t n, const char *a, size_t alen,
                    const char *b, size_t blen) {
    size_t i = 0, last = 0;
    while (i + alen <= n) {
        if (s[i] == a[0] && !memcmp(s + i, a, alen)) {
            if (lc_sbuf_put(out, s + last, i - last) || lc_sbuf_put(out, b, blen)) return LC_FAIL;
            i += alen;
            last = i;
        } else {
            i++;
        }
    }
    return lc_sbuf_put(out, s + last, n - last);
}

/* Applies the normalizer steps to s[0..n) into out (out != tmp). */
int tok_normalize_text(const tokenizer *t, const char *s, size_t n, sbuf *out, sbuf *tmp,
                       u32buf *w) {
    out->n = 0;
    if (lc_sbuf_put(out, s, n)) return LC_FAIL;
    for (int i = 0; i < t->n_norm; i++) {
        const norm_step *st = &t->norm[i];
        tmp->n = 0;
        int rc = LC_OK;
        switch (st->type) {
        case NORM_NF:
            rc = tok_uni_normalize(st->form, out->p, out->n, tmp, w);
            break;
        case NORM_PREPEND:
            if (out->n == 0) continue;
            rc = lc_sbuf_put(tmp, st->a, st->alen) || lc_sbuf_put(tmp, out->p, out->n);
            break;
        case NORM_REPLACE:
            rc = tok_replace_all(tmp, out->p, out->n, st->a, st->alen, st->b, st->blen);
            break;
        case NORM_LOWER:
            rc = tok_uni_lowercase(out->p, out->n, tmp);
            break;
        case NORM_STRIP: {
            size_t a = 0, b = out->n;
            int k;
            if (st->left)
                while (a < b && tok_uni_ws(lc_utf8_get((const unsigned char *)out->p + a, &k))) a += (size_t)k;
            if (st->right)
                while (b > a) {
                    size_t q = b - 1;
                    while (q > a && ((unsigned char)out->p[q] & 0xC0) == 0x80) q--;
                    if (!tok_uni_ws(lc_utf8_get((const unsigned char *)out->p + q, &k))) break;
                    b = q;
                }
            rc = lc_sbuf_put(tmp, out->p + a, b - a);
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
    if (cp < 0x80) return cp == '_' || tok_uni_cat(cp) != UNI_CAT_OTHER;
    return tok_range_val(uni_word_ranges, uni_word_ranges_count, cp) != 0;
}

/* HF's AddedVocabulary::find_matches over s[0..n): spans covering s,
 * m = added index or -1. */
static int added_spans(const tokenizer *t, const trie *tr, const char *s, size_t n, enc_ctx *x) {
    x->nsp = 0;
    size_t start_off = 0, i = 0;
    while (i < n) {
        size_t end = 0;
        int a = tok_trie_longest(tr, s, n, i, &end);
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
                start_space = !is_word_char(lc_utf8_get((const unsigned char *)s + q, &k));
            }
            if (me < n) stop_space = !is_word_char(lc_utf8_get((const unsigned char *)s + me, &k));
            if (!start_space || !stop_space) continue;
        }
        if (tk->lstrip) {
            size_t q = ms;
            while (q > 0) {
                size_t r = q - 1;
                int k;
                while (r > 0 && ((unsigned char)s[r] & 0xC0) == 0x80) r--;
                if (!tok_uni_ws(lc_utf8_get((const unsigned char *)s + r, &k))) break;
                q = r;
            }
            ms = q > start_off ? q : start_off;
        }
        if (tk->rstrip) {
            int k;
            while (me < n && tok_uni_ws(lc_utf8_get((const unsigned char *)s + me, &k))) me += (size_t)k;
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
        uint32_t cp = lc_utf8_get((const unsigned char *)s + i, &k);
        x->cp[n] = cp;
        x->cls[n] = tok_uni_ws(cp) ? K_WS : (uint8_t)tok_uni_cat(cp);
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
        if (tok_pieces_add(out, s + o[i].s, o[i].e - o[i].s, -1, p->first && o[i].s == 0))
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
        uint32_t cp = lc_utf8_get((const unsigned char *)s + i, &k);
        int hit = numeric ? tok_uni_cat(cp) == UNI_CAT_N : cp == want;
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

int tok_char_byte(uint32_t cp) {
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
        if (st->add_prefix_space && (len == 0 || s[0] != ' ') && lc_sbuf_put(t, " ", 1))
            return LC_FAIL;
        if (lc_sbuf_put(t, s, len)) return LC_FAIL;
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
                if (tok_sbuf_put_cp(&out->text, byte_char((unsigned char)t->p[j]))) return LC_FAIL;
            if (tok_pieces_end(out, off, p->first && a == 0)) return LC_FAIL;
        }
        return LC_OK;
    }
    case PT_METASPACE: {
        sbuf *t = &x->tmp;
        char rep[4];
        size_t rl = (size_t)lc_utf8_put(rep, st->repl);
        t->n = 0;
        int starts = len > 0 && s[0] == ' '; /* becomes the replacement */
        if (!starts && len >= rl && !memcmp(s, rep, rl)) starts = 1;
        if (!starts && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && p->first)))
            if (lc_sbuf_put(t, rep, rl)) return LC_FAIL;
        if (tok_replace_all(t, s, len, " ", 1, rep, rl)) return LC_FAIL;
        piece q = *p;
        if (!st->split) {
            if (t->n) return tok_pieces_add(out, t->p, t->n, -1, p->first);
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
    return tok_u64map_find(&t->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, rank, id);
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
    return tok_u64map_find(&t->junctions, ((uint64_t)l << 32) | f, NULL, NULL);
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
        int id = tok_vocab_find(t, w, len);
        if (id >= 0) return ivec_push(out, id);
    }
    size_t m = 0;
    int unk_pending = 0;
    for (size_t i = 0; i < len;) {
        int k;
        lc_utf8_get((const unsigned char *)w + i, &k);
        const char *s = w + i;
        size_t sl = (size_t)k;
        int is_first = i == 0, is_last = i + (size_t)k == len;
        if ((t->cont_prefix && !is_first) || (t->eow_suffix && is_last)) {
            sbuf *b = &x->tmp;
            b->n = 0;
            if ((t->cont_prefix && !is_first && lc_sbuf_put(b, t->cont_prefix, t->cont_prefix_len)) ||
                lc_sbuf_put(b, s, sl) ||
                (t->eow_suffix && is_last && lc_sbuf_put(b, t->eow_suffix, t->eow_suffix_len)))
                return LC_FAIL;
            s = b->p;
            sl = b->n;
        }
        i += (size_t)k;
        int id = tok_vocab_find(t, s, sl);
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
            rc = tok_pieces_add(P, NULL, 0, t->added[sp->m].id, 0);
            continue;
        }
        const char *s = text + sp->s;
        size_t n = sp->e - sp->s;
        if (t->n_norm) {
            if (tok_normalize_text(t, s, n, &x->n1, &x->n2, &x->w)) {
                rc = LC_FAIL;
                break;
            }
            s = x->n1.p;
            n = x->n1.n;
        }
        if (n == 0) continue;
        if (!t->norm_trie.term) {
            rc = tok_pieces_add(P, s, n, -1, sp->s == 0);
            continue;
        }
        if (added_spans(t, &t->norm_trie, s, n, x)) {
            rc = LC_FAIL;
            break;
        }
        for (size_t i = 0; i < x->nsp && !rc; i++) {
            if (x->sp[i].m >= 0) rc = tok_pieces_add(P, NULL, 0, t->added[x->sp[i].m].id, 0);
            else rc = tok_pieces_add(P, s + x->sp[i].s, x->sp[i].e - x->sp[i].s, -1,
                                 sp->s == 0 && x->sp[i].s == 0);
        }
    }
    free(raw);
    if (rc) return LC_FAIL;
    /* 2. pre-tokenizers */
    for (int k = 0; k < t->n_pt; k++) {
        tok_pieces_clear(Q);
        for (size_t i = 0; i < P->n; i++) {
            const piece *p = &P->p[i];
            if (p->id >= 0) {
                if (tok_pieces_add(Q, NULL, 0, p->id, 0)) return LC_FAIL;
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
    size_t bad = lc_utf8_check(text, len);
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

