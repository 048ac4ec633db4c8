/* chat_template_value.c: the values chat templates compute with, with
 * Python's semantics where a template can see them: str() and repr(),
 * truthiness, ==, code-point lengths, json.dumps for tojson, and JSON
 * variables turned into values. Used by the evaluator (chat_template.c). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template_int.h"

int ct_err_at(int *failed, lc_err *err, const char *name, int line, const char *fmt, ...) {
    if (*failed) return LC_FAIL;
    char what[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    *failed = 1;
    return lc_errf(err, "%s: line %d: %s", name, line, what);
}

void *ct_ralloc(rstate *R, size_t n, int line) {
    void *p = ct_alloc(&R->A, n);
    if (!p) ct_rerr(R, line, "rendering needs more than %u MB of memory", CT_MAX_MEMORY >> 20);
    return p;
}

const char *ct_type_name(const val *v) {
    switch (v->t) {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST: return v->l->tuple ? "tuple" : "list";
    case V_DICT: return "dict";
    case V_NS: return "Namespace";
    case V_LOOP: return "LoopContext";
    default: return "function";
    }
}

int ct_undef_err(rstate *R, int line, const val *v) {
    return ct_rerr(R, line, "%s", v->why ? v->why : "undefined value");
}

val ct_mkstr(rstate *R, const char *a, size_t na, const char *b, size_t nb, int line) {
    char *p = ct_ralloc(R, na + nb + 1, line);
    if (!p) return VFAIL;
    if (na) memcpy(p, a, na);
    if (nb) memcpy(p + na, b, nb);
    return vstr(p, na + nb);
}

val ct_mklist(rstate *R, size_t n, int line) {
    vlist *l = ct_ralloc(R, sizeof *l, line);
    val *v = ct_ralloc(R, (n ? n : 1) * sizeof *v, line);
    if (!l || !v) return VFAIL;
    l->n = n, l->v = v;
    return (val){.t = V_LIST, .l = l};
}

int ct_dict_set(rstate *R, vdict *d, val k, val v, int line) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == V_STR && k.t == V_STR && d->k[i].s.n == k.s.n && !memcmp(d->k[i].s.p, k.s.p, k.s.n)) {
            d->v[i] = v;
            return LC_OK;
        }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        val *nk = ct_ralloc(R, cap * sizeof *nk, line), *nv = ct_ralloc(R, cap * sizeof *nv, line);
        if (!nk || !nv) return LC_FAIL;
        if (d->n) memcpy(nk, d->k, d->n * sizeof *nk), memcpy(nv, d->v, d->n * sizeof *nv);
        d->k = nk, d->v = nv, d->cap = cap;
    }
    d->k[d->n] = k, d->v[d->n++] = v;
    return LC_OK;
}

const val *ct_dict_get(const vdict *d, const val *k) {
    for (size_t i = 0; i < d->n; i++)
        if (ct_val_eq(&d->k[i], k)) return &d->v[i];
    return NULL;
}

const val *ct_dict_gets(const vdict *d, const char *k) {
    val kv = vstr(k, strlen(k));
    return ct_dict_get(d, &kv);
}


int ct_val_eq(const val *a, const val *b) {
    if (is_num(a) && is_num(b)) {
        if (a->t != V_FLOAT && b->t != V_FLOAT) return a->i == b->i;
        return num(a) == num(b);
    }
    if (a->t != b->t) {
        if ((a->t == V_LIST && b->t == V_LIST)) return 0;
        return 0;
    }
    switch (a->t) {
    case V_UNDEF: case V_NONE: return 1;
    case V_STR: return a->s.n == b->s.n && !memcmp(a->s.p, b->s.p, a->s.n);
    case V_LIST:
        if (a->l->n != b->l->n || a->l->tuple != b->l->tuple) return 0;
        for (size_t i = 0; i < a->l->n; i++)
            if (!ct_val_eq(&a->l->v[i], &b->l->v[i])) return 0;
        return 1;
    case V_DICT:
        if (a->d->n != b->d->n) return 0;
        for (size_t i = 0; i < a->d->n; i++) {
            const val *o = ct_dict_get(b->d, &a->d->k[i]);
            if (!o || !ct_val_eq(&a->d->v[i], o)) return 0;
        }
        return 1;
    case V_NS: return a->d == b->d;
    case V_LOOP: return a->lp == b->lp;
    case V_FUNC: return a->i == b->i;
    }
    return 0;
}

int ct_truthy(const val *v) {
    switch (v->t) {
    case V_BOOL: case V_INT: return v->i != 0;
    case V_FLOAT: return v->f != 0;
    case V_STR: return v->s.n != 0;
    case V_LIST: return v->l->n != 0;
    case V_DICT: return v->d->n != 0;
    case V_NS: case V_FUNC: case V_LOOP: return 1;
    default: return 0;
    }
}

/* ---- UTF-8 code points ------------------------------------------------------ */

size_t ct_cp_len(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* byte offset of code point k (k <= count) */
size_t ct_cp_off(const char *s, size_t n, size_t k) {
    size_t i = 0;
    while (i < n && k) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80) i++;
        k--;
    }
    return i;
}

int ct_has_non_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 1;
    return 0;
}

/* ---- str(), repr(), json.dumps -------------------------------------------- */


int ct_sb_add(sb *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        if (cap > CT_MAX_OUTPUT + (size_t)64)
            return ct_rerr(b->R, b->line, "a string longer than %u MB", CT_MAX_OUTPUT >> 20);
        char *np = ct_ralloc(b->R, cap, b->line);
        if (!np) return LC_FAIL;
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return LC_OK;
}
int ct_sb_puts(sb *b, const char *s) { return ct_sb_add(b, s, strlen(s)); }

/* Python's repr(float) */
static void py_float(double x, char *buf, size_t cap) {
    if (isnan(x)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(x)) {
        snprintf(buf, cap, x < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    /* e = [-]d[.ddd]e[+-]XX */
    char dig[24];
    int nd = 0, neg = e[0] == '-';
    const char *q = e + neg;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') dig[nd++] = *q;
    int ex = atoi(q + 1);
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    dig[nd] = 0;
    size_t o = 0;
    if (neg) buf[o++] = '-';
    if (ex >= -5 && ex < 16) { /* Python: repr uses 'r' -> fixed when -4 <= exp10 < 16 */
        if (ex < -4) goto sci;
        if (ex < 0) {
            o += (size_t)snprintf(buf + o, cap - o, "0.");
            for (int i = 0; i < -ex - 1; i++) buf[o++] = '0';
            o += (size_t)snprintf(buf + o, cap - o, "%s", dig);
        } else {
            for (int i = 0; i <= ex; i++) buf[o++] = i < nd ? dig[i] : '0';
            buf[o++] = '.';
            if (nd > ex + 1) o += (size_t)snprintf(buf + o, cap - o, "%s", dig + ex + 1);
            else buf[o++] = '0';
        }
        buf[o] = 0;
        return;
    }
sci:
    buf[o++] = dig[0];
    if (nd > 1) {
        buf[o++] = '.';
        o += (size_t)snprintf(buf + o, cap - o, "%s", dig + 1);
    }
    snprintf(buf + o, cap - o, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
}

static int put_repr(sb *b, const val *v, int depth);

/* str(v) appended to b */
int ct_put_str(sb *b, const val *v, int depth) {
    char buf[64];
    switch (v->t) {
    case V_UNDEF: return LC_OK;
    case V_NONE: return ct_sb_puts(b, "None");
    case V_BOOL: return ct_sb_puts(b, v->i ? "True" : "False");
    case V_INT: snprintf(buf, sizeof buf, "%lld", (long long)v->i); return ct_sb_puts(b, buf);
    case V_FLOAT: py_float(v->f, buf, sizeof buf); return ct_sb_puts(b, buf);
    case V_STR: return ct_sb_add(b, v->s.p, v->s.n);
    case V_LIST: case V_DICT: return put_repr(b, v, depth);
    case V_NS: case V_LOOP: return ct_rerr(b->R, b->line, "unsupported: converting a %s to a string", ct_type_name(v));
    default: return ct_rerr(b->R, b->line, "unsupported: converting a function to a string");
    }
}

static int put_repr(sb *b, const val *v, int depth) {
    if (depth > CT_MAX_DEPTH) return ct_rerr(b->R, b->line, "a value nested deeper than %d", CT_MAX_DEPTH);
    if (v->t == V_STR) {
        if (ct_has_non_ascii(v->s.p, v->s.n))
            return ct_rerr(b->R, b->line, "unsupported: Python repr() of a string with non-ASCII text "
                        "(printing a list or dict that holds one; use tojson)");
        int dq = memchr(v->s.p, '\'', v->s.n) && !memchr(v->s.p, '"', v->s.n);
        char q = dq ? '"' : '\'';
        if (ct_sb_add(b, &q, 1)) return LC_FAIL;
        for (size_t i = 0; i < v->s.n; i++) {
            unsigned char c = (unsigned char)v->s.p[i];
            char e[8];
            if (c == '\\' || c == (unsigned char)q) snprintf(e, sizeof e, "\\%c", c);
            else if (c == '\n') snprintf(e, sizeof e, "\\n");
            else if (c == '\r') snprintf(e, sizeof e, "\\r");
            else if (c == '\t') snprintf(e, sizeof e, "\\t");
            else if (c < 0x20 || c == 0x7f) snprintf(e, sizeof e, "\\x%02x", c);
            else e[0] = (char)c, e[1] = 0;
            if (ct_sb_puts(b, e)) return LC_FAIL;
        }
        return ct_sb_add(b, &q, 1);
    }
    if (v->t == V_LIST) {
        if (ct_sb_puts(b, v->l->tuple ? "(" : "[")) return LC_FAIL;
        for (size_t i = 0; i < v->l->n; i++)
            if ((i && ct_sb_puts(b, ", ")) || put_repr(b, &v->l->v[i], depth + 1)) return LC_FAIL;
        if (v->l->tuple && v->l->n == 1 && ct_sb_puts(b, ",")) return LC_FAIL;
        return ct_sb_puts(b, v->l->tuple ? ")" : "]");
    }
    if (v->t == V_DICT) {
        if (ct_sb_puts(b, "{")) return LC_FAIL;
        for (size_t i = 0; i < v->d->n; i++)
            if ((i && ct_sb_puts(b, ", ")) || put_repr(b, &v->d->k[i], depth + 1) || ct_sb_puts(b, ": ") ||
                put_repr(b, &v->d->v[i], depth + 1))
                return LC_FAIL;
        return ct_sb_puts(b, "}");
    }
    if (v->t == V_UNDEF) return ct_sb_puts(b, "Undefined");
    return ct_put_str(b, v, depth);
}


static int put_json_str(sb *b, const char *s, size_t n, int ensure_ascii) {
    if (ct_sb_puts(b, "\"")) return LC_FAIL;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        char e[16];
        if (c == '"' || c == '\\') snprintf(e, sizeof e, "\\%c", c);
        else if (c == '\n') snprintf(e, sizeof e, "\\n");
        else if (c == '\r') snprintf(e, sizeof e, "\\r");
        else if (c == '\t') snprintf(e, sizeof e, "\\t");
        else if (c == '\b') snprintf(e, sizeof e, "\\b");
        else if (c == '\f') snprintf(e, sizeof e, "\\f");
        else if (c < 0x20) snprintf(e, sizeof e, "\\u%04x", c);
        else if (c >= 0x80 && ensure_ascii) {
            int k = (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : 3;
            uint32_t cp = c & (0x3f >> k);
            for (int j = 1; j <= k && i + (size_t)j < n; j++) cp = cp << 6 | ((unsigned char)s[i + j] & 0x3f);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else {
                snprintf(e, sizeof e, "\\u%04x", cp);
            }
            i += (size_t)k + 1;
            if (ct_sb_puts(b, e)) return LC_FAIL;
            continue;
        } else {
            e[0] = (char)c, e[1] = 0;
        }
        if (ct_sb_puts(b, e)) return LC_FAIL;
        i++;
    }
    return ct_sb_puts(b, "\"");
}

static int json_nl(sb *b, const json_opts *o, int level) {
    if (o->indent < 0) return LC_OK;
    if (ct_sb_puts(b, "\n")) return LC_FAIL;
    for (int i = 0; i < o->indent * level; i++)
        if (ct_sb_puts(b, " ")) return LC_FAIL;
    return LC_OK;
}

int ct_str_cmp(const val *a, const val *b) {
    size_t n = a->s.n < b->s.n ? a->s.n : b->s.n;
    int c = memcmp(a->s.p, b->s.p, n);
    return c ? c : (a->s.n > b->s.n) - (a->s.n < b->s.n);
}

int ct_put_json(sb *b, const val *v, const json_opts *o, int level) {
    char buf[64];
    if (level > CT_MAX_DEPTH) return ct_rerr(b->R, b->line, "tojson: a value nested deeper than %d", CT_MAX_DEPTH);
    switch (v->t) {
    case V_NONE: return ct_sb_puts(b, "null");
    case V_BOOL: return ct_sb_puts(b, v->i ? "true" : "false");
    case V_INT: snprintf(buf, sizeof buf, "%lld", (long long)v->i); return ct_sb_puts(b, buf);
    case V_FLOAT:
        if (isnan(v->f)) return ct_sb_puts(b, "NaN");
        if (isinf(v->f)) return ct_sb_puts(b, v->f < 0 ? "-Infinity" : "Infinity");
        py_float(v->f, buf, sizeof buf);
        return ct_sb_puts(b, buf);
    case V_STR: return put_json_str(b, v->s.p, v->s.n, o->ensure_ascii);
    case V_LIST:
        if (!v->l->n) return ct_sb_puts(b, "[]");
        if (ct_sb_puts(b, "[")) return LC_FAIL;
        for (size_t i = 0; i < v->l->n; i++)
            if ((i && ct_sb_puts(b, o->item_sep)) || json_nl(b, o, level + 1) || ct_put_json(b, &v->l->v[i], o, level + 1))
                return LC_FAIL;
        if (json_nl(b, o, level)) return LC_FAIL;
        return ct_sb_puts(b, "]");
    case V_DICT: {
        if (!v->d->n) return ct_sb_puts(b, "{}");
        size_t n = v->d->n, *ord = ct_ralloc(b->R, n * sizeof *ord, b->line);
        if (!ord) return LC_FAIL;
        for (size_t i = 0; i < n; i++) {
            if (v->d->k[i].t != V_STR)
                return ct_rerr(b->R, b->line, "unsupported: tojson of a dict with a %s key", ct_type_name(&v->d->k[i]));
            ord[i] = i;
        }
        if (o->sort_keys)
            for (size_t i = 1; i < n; i++) /* insertion sort: stable, small dicts */
                for (size_t j = i; j > 0 && ct_str_cmp(&v->d->k[ord[j - 1]], &v->d->k[ord[j]]) > 0; j--) {
                    size_t t = ord[j];
                    ord[j] = ord[j - 1], ord[j - 1] = t;
                }
        if (ct_sb_puts(b, "{")) return LC_FAIL;
        for (size_t i = 0; i < n; i++) {
            const val *k = &v->d->k[ord[i]];
            if ((i && ct_sb_puts(b, o->item_sep)) || json_nl(b, o, level + 1) ||
                put_json_str(b, k->s.p, k->s.n, o->ensure_ascii) || ct_sb_puts(b, o->key_sep) ||
                ct_put_json(b, &v->d->v[ord[i]], o, level + 1))
                return LC_FAIL;
        }
        if (json_nl(b, o, level)) return LC_FAIL;
        return ct_sb_puts(b, "}");
    }
    default: return ct_rerr(b->R, b->line, "tojson: Object of type %s is not JSON serializable", ct_type_name(v));
    }
}

/* ---- cJSON -> values ---------------------------------------------------------- */

val ct_from_json(rstate *R, const cJSON *j, int depth) {
    if (depth > CT_MAX_DEPTH) return ct_rerr(R, 0, "a variable nested deeper than %d", CT_MAX_DEPTH), VFAIL;
    if (cJSON_IsNull(j)) return V(V_NONE);
    if (cJSON_IsBool(j)) return vbool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) return vint((int64_t)d);
        return vfloat(d);
    }
    if (cJSON_IsString(j)) return vstr(j->valuestring, strlen(j->valuestring));
    if (cJSON_IsArray(j)) {
        val l = ct_mklist(R, (size_t)cJSON_GetArraySize(j), 0);
        if (FAILED(l)) return l;
        size_t i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, j) {
            l.l->v[i] = ct_from_json(R, e, depth + 1);
            if (FAILED(l.l->v[i++])) return VFAIL;
        }
        return l;
    }
    if (cJSON_IsObject(j)) {
        vdict *d = ct_ralloc(R, sizeof *d, 0);
        if (!d) return VFAIL;
        const cJSON *e;
        cJSON_ArrayForEach(e, j) {
            val v = ct_from_json(R, e, depth + 1);
            if (FAILED(v) || ct_dict_set(R, d, vstr(e->string, strlen(e->string)), v, 0)) return VFAIL;
        }
        return (val){.t = V_DICT, .d = d};
    }
    return ct_rerr(R, 0, "unsupported JSON value in the variables"), VFAIL;
}
