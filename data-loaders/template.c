/* template.c: see template.h. */
#include "template.h"

#include <stdlib.h>
#include <string.h>

#include "lc_sbuf.h"


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
    lc_sbuf lit = {0};
    size_t i = 0, n = strlen(src);
    const char *why = NULL, *hint = "";
    size_t at = 0;
    while (i < n && !why) {
        char c = src[i];
        if (c == '{' && src[i + 1] == '{') {
            if (lc_sbuf_put(&lit, "{", 1)) goto oom;
            i += 2;
        } else if (c == '}' && src[i + 1] == '}') {
            if (lc_sbuf_put(&lit, "}", 1)) goto oom;
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
            if (lc_sbuf_put(&lit, &src[i], 1)) goto oom;
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
    lc_sbuf b = {0};
    int rc = lc_sbuf_put(&b, "", 0);
    for (int i = 0; i < t.n && rc == LC_OK; i++)
        rc = t.seg[i].is_field ? lc_sbuf_put(&b, value, strlen(value)) : lc_sbuf_put(&b, t.seg[i].s, t.seg[i].len);
    tmpl_free(&t);
    if (rc) {
        free(b.p);
        return lc_errf(err, "out of memory");
    }
    *out = b.p;
    return LC_OK;
}
