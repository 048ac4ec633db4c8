/* template.c: see template.h. */
#include "template.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *p;
    size_t n, cap;
} tbuf;

static int tbuf_add(tbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return LC_FAIL;
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return LC_OK;
}

void tmpl_free(tmpl *t) {
    for (int i = 0; i < t->n; i++) free(t->seg[i].s);
    free(t->seg);
    t->seg = NULL;
    t->n = 0;
}

static int tmpl_push(tmpl *t, int is_field, const char *s, size_t len, lc_err *err) {
    tseg *ns = realloc(t->seg, (size_t)(t->n + 1) * sizeof *ns);
    if (!ns) return lc_errf(err, "out of memory");
    t->seg = ns;
    char *c = malloc(len + 1);
    if (!c) return lc_errf(err, "out of memory");
    memcpy(c, s, len);
    c[len] = 0;
    t->seg[t->n++] = (tseg){is_field, c, len};
    return LC_OK;
}

/* "{field}" placeholders; "{{" and "}}" are literal braces; a lone "}",
 * an unclosed "{", "{}" and a "{" inside a placeholder are errors. */
int tmpl_parse(tmpl *t, const char *src, const char *which, lc_err *err) {
    memset(t, 0, sizeof *t);
    if (!src) return lc_errf(err, "%s: missing (NULL)", which);
    tbuf lit = {0};
    size_t i = 0, n = strlen(src);
    const char *why = NULL, *hint = "";
    size_t at = 0;
    while (i < n && !why) {
        char c = src[i];
        if (c == '{' && src[i + 1] == '{') {
            if (tbuf_add(&lit, "{", 1)) goto oom;
            i += 2;
        } else if (c == '}' && src[i + 1] == '}') {
            if (tbuf_add(&lit, "}", 1)) goto oom;
            i += 2;
        } else if (c == '}') {
            why = "unmatched '}'";
            hint = " (write '}}' for a literal brace)";
            at = i;
        } else if (c == '{') {
            size_t j = i + 1;
            while (j < n && src[j] != '}' && src[j] != '{') j++;
            if (j >= n || src[j] == '{') {
                why = "unclosed '{'";
                hint = " (write '{{' for a literal brace)";
                at = i;
            } else if (j == i + 1) {
                why = "empty placeholder '{}'";
                at = i;
            } else {
                if (lit.n && tmpl_push(t, 0, lit.p, lit.n, err)) goto fail;
                lit.n = 0;
                if (tmpl_push(t, 1, src + i + 1, j - i - 1, err)) goto fail;
                i = j + 1;
            }
        } else {
            if (tbuf_add(&lit, &src[i], 1)) goto oom;
            i++;
        }
    }
    if (why) {
        lc_errf(err, "%s \"%s\": %s at byte %zu%s", which, src, why, at, hint);
        goto fail;
    }
    if (lit.n && tmpl_push(t, 0, lit.p, lit.n, err)) goto fail;
    free(lit.p);
    return LC_OK;
oom:
    lc_errf(err, "out of memory");
fail:
    free(lit.p);
    tmpl_free(t);
    return LC_FAIL;
}

int tmpl_fill_one(const char *src, const char *value, const char *which, char **out, lc_err *err) {
    *out = NULL;
    tmpl t;
    if (tmpl_parse(&t, src, which, err)) return LC_FAIL;
    const char *field = NULL;
    for (int i = 0; i < t.n; i++) {
        if (!t.seg[i].is_field) continue;
        if (field && strcmp(field, t.seg[i].s)) {
            lc_errf(err, "%s \"%s\" has two fields, '%s' and '%s': one text cannot fill it", which, src,
                    field, t.seg[i].s);
            tmpl_free(&t);
            return LC_FAIL;
        }
        field = t.seg[i].s;
    }
    tbuf b = {0};
    int rc = tbuf_add(&b, "", 0);
    for (int i = 0; i < t.n && rc == LC_OK; i++)
        rc = t.seg[i].is_field ? tbuf_add(&b, value, strlen(value)) : tbuf_add(&b, t.seg[i].s, t.seg[i].len);
    tmpl_free(&t);
    if (rc) {
        free(b.p);
        return lc_errf(err, "out of memory");
    }
    *out = b.p;
    return LC_OK;
}
