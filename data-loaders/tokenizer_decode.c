/* tokenizer_decode.c: ids to text: the decoder chain (files: tokenizer_int.h). */
#include "tokenizer_int.h"

/* ======================================================================
 * Decoding
 * ====================================================================== */

/* tokens: pieces with id unused. */
static int dec_step_apply(const dec_step *st, const pieces *in, pieces *out) {
    tok_pieces_clear(out);
    switch (st->type) {
    case DEC_BYTELEVEL: {
        sbuf raw = {0};
        int rc = LC_OK;
        for (size_t i = 0; i < in->n && !rc; i++) {
            const unsigned char *s = (const unsigned char *)in->text.p + in->p[i].off;
            size_t n = in->p[i].len, start = raw.n, j = 0;
            int mapped = 1;
            while (j < n && mapped) {
                int k = lc_utf8_valid_len(s + j, n - j), b;
                if (!k || (b = tok_char_byte(lc_utf8_get(s + j, &k))) < 0) {
                    mapped = 0;
                    break;
                }
                char cb = (char)b;
                rc = lc_sbuf_put(&raw, &cb, 1);
                if (rc) break;
                j += (size_t)k;
            }
            if (!rc && !mapped) {
                raw.n = start;
                rc = lc_sbuf_put(&raw, s, n);
            }
        }
        sbuf lossy = {0};
        if (!rc) rc = tok_utf8_lossy(&lossy, raw.p ? raw.p : "", raw.n);
        if (!rc) rc = tok_pieces_add(out, lossy.p ? lossy.p : "", lossy.n, -1, 0);
        free(raw.p);
        free(lossy.p);
        return rc;
    }
    case DEC_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            size_t off = out->text.n;
            if (tok_replace_all(&out->text, in->text.p + in->p[i].off, in->p[i].len, st->a, st->alen,
                            st->b, st->blen) ||
                tok_pieces_end(out, off, 0))
                return LC_FAIL;
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
                rc = lc_sbuf_put(&bytes, &cb, 1);
                continue;
            }
            if (bytes.n) {
                if (lc_utf8_check(bytes.p, bytes.n) == bytes.n) {
                    rc = tok_pieces_add(out, bytes.p, bytes.n, -1, 0);
                } else {
                    for (size_t q = 0; q < bytes.n && !rc; q++)
                        rc = tok_pieces_add(out, "\xEF\xBF\xBD", 3, -1, 0);
                }
                bytes.n = 0;
            }
            if (s && !rc) rc = tok_pieces_add(out, s, in->p[i].len, -1, 0);
        }
        free(bytes.p);
        return rc;
    }
    case DEC_FUSE: {
        size_t off = out->text.n;
        for (size_t i = 0; i < in->n; i++)
            if (lc_sbuf_put(&out->text, in->text.p + in->p[i].off, in->p[i].len)) return LC_FAIL;
        return tok_pieces_end(out, off, 0);
    }
    case DEC_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const unsigned char *s = (const unsigned char *)in->text.p + in->p[i].off;
            size_t n = in->p[i].len, a = 0, b = n;
            int k;
            for (int q = 0; q < st->start && a < n; q++) {
                if (!lc_utf8_valid_len(s + a, n - a) || lc_utf8_get(s + a, &k) != st->cp) break;
                a += (size_t)k;
            }
            for (int q = 0; q < st->stop && b > a; q++) {
                size_t r = b - 1;
                while (r > a && (s[r] & 0xC0) == 0x80) r--;
                if (!lc_utf8_valid_len(s + r, b - r) || lc_utf8_get(s + r, &k) != st->cp) break;
                b = r;
            }
            if (tok_pieces_add(out, (const char *)s + a, b - a, -1, 0)) return LC_FAIL;
        }
        return LC_OK;
    case DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            const unsigned char *s = (const unsigned char *)in->text.p + in->p[i].off;
            size_t n = in->p[i].len, j = 0, off = out->text.n;
            while (j < n) {
                int k = lc_utf8_valid_len(s + j, n - j);
                if (!k) {
                    if (lc_sbuf_put(&out->text, s + j, 1)) return LC_FAIL;
                    j++;
                    continue;
                }
                uint32_t cp = lc_utf8_get(s + j, &k);
                if (cp == st->cp) {
                    if (!(i == 0 && st->prepend != PREPEND_NEVER) && lc_sbuf_put(&out->text, " ", 1))
                        return LC_FAIL;
                } else if (lc_sbuf_put(&out->text, s + j, (size_t)k)) {
                    return LC_FAIL;
                }
                j += (size_t)k;
            }
            if (tok_pieces_end(out, off, 0)) return LC_FAIL;
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
        rc = lc_sbuf_put(&raw, p, (size_t)len);
        prev = id;
    }
    if (!rc) rc = tok_utf8_lossy(&out, raw.p ? raw.p : "", raw.n);
    if (!rc) rc = lc_sbuf_put(&out, "", 0);
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
        const char *s = tok_id_token(t, ids[i], &len);
        if (!s || (skip_special && t->is_special[ids[i]])) continue;
        rc = tok_pieces_add(P, s, (size_t)len, -1, 0);
    }
    if (!t->has_decoder) {
        /* no decoder: the tokens joined with spaces */
        for (size_t i = 0; i < P->n && !rc; i++) {
            if (i) rc = lc_sbuf_put(&Q->text, " ", 1);
            if (!rc) rc = lc_sbuf_put(&Q->text, P->text.p + P->p[i].off, P->p[i].len);
        }
        if (!rc) rc = tok_utf8_lossy(&out, Q->text.p ? Q->text.p : "", Q->text.n);
    } else {
        for (int k = 0; k < t->n_dec && !rc; k++) {
            rc = dec_step_apply(&t->dec[k], P, Q);
            pieces *sw = P;
            P = Q;
            Q = sw;
        }
        for (size_t i = 0; i < P->n && !rc; i++)
            rc = tok_utf8_lossy(&out, P->text.p + P->p[i].off, P->p[i].len);
    }
    if (!rc) rc = lc_sbuf_put(&out, "", 0);
    tok_pieces_free(&a);
    tok_pieces_free(&b);
    if (rc) {
        free(out.p);
        return NULL;
    }
    return out.p;
}

