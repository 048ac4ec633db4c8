/* chat_template.c: the chat-template evaluator: expressions (Python's
 * semantics for +, //, %, comparisons, slicing by code points), Jinja2's
 * tests and filters, string and dict methods, the globals, and statements.
 * Undefined values behave as Jinja2's: printing one gives "", using one in
 * arithmetic or looking into it is an error. The syntax tree comes from
 * chat_template_parse.c, the values from chat_template_value.c. */
#define _GNU_SOURCE /* memmem, localtime_r */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat_template_int.h"

/* A scope. Frames live on the C stack (no value refers to a frame), with
 * room for a few variables inline; more go to the arena. */
#define FRAME_INLINE 6
typedef struct frame frame;
struct frame {
    frame *parent;
    vdict vars;
    val kbuf[FRAME_INLINE], vbuf[FRAME_INLINE];
};
static void frame_init(frame *f, frame *parent) {
    f->parent = parent;
    f->vars.n = 0, f->vars.cap = FRAME_INLINE;
    f->vars.k = f->kbuf, f->vars.v = f->vbuf;
}

/* ---- expressions ---------------------------------------------------------- */

static val eval(rstate *R, frame *F, const ct_node *n);

static val lookup(rstate *R, frame *F, const ct_node *n) {
    for (frame *f = F; f; f = f->parent) {
        const val *v = ct_dict_gets(&f->vars, n->s);
        if (v) return *v;
    }
    static const struct {
        const char *name;
        int id;
    } builtins[] = {{"range", F_RANGE}, {"namespace", F_NAMESPACE}, {"dict", F_DICT},
                    {"raise_exception", F_RAISE}, {"strftime_now", F_STRFTIME}};
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++)
        if (!strcmp(n->s, builtins[i].name)) return (val){.t = V_FUNC, .i = builtins[i].id};
    size_t l = strlen(n->s) + 16;
    char *why = ct_ralloc(R, l, n->line);
    if (!why) return VFAIL;
    snprintf(why, l, "'%s' is undefined", n->s);
    return vundef(why);
}

static val missing(rstate *R, const val *obj, const char *what, size_t wn, int line) {
    size_t l = wn + 64;
    char *why = ct_ralloc(R, l, line);
    if (!why) return VFAIL;
    snprintf(why, l, "'%s object' has no attribute '%.*s'", ct_type_name(obj), (int)wn, what);
    return vundef(why);
}

static int norm_index(int64_t i, size_t n, size_t *out) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return 0;
    *out = (size_t)i;
    return 1;
}

static val get_item(rstate *R, const val *obj, const val *key, int line) {
    if (obj->t == V_UNDEF) return ct_undef_err(R, line, obj), VFAIL;
    if (obj->t == V_DICT || obj->t == V_NS) {
        const val *v = ct_dict_get(obj->d, key);
        if (v) return *v;
        if (key->t == V_STR) return missing(R, obj, key->s.p, key->s.n, line);
        return vundef("a dict key is missing");
    }
    if ((obj->t == V_LIST || obj->t == V_STR) && (key->t == V_INT || key->t == V_BOOL)) {
        size_t i;
        if (obj->t == V_LIST) {
            if (!norm_index(key->i, obj->l->n, &i)) return vundef("list index out of range");
            return obj->l->v[i];
        }
        if (!norm_index(key->i, ct_cp_len(obj->s.p, obj->s.n), &i)) return vundef("string index out of range");
        size_t a = ct_cp_off(obj->s.p, obj->s.n, i), b = ct_cp_off(obj->s.p, obj->s.n, i + 1);
        return vstr(obj->s.p + a, b - a);
    }
    if (key->t == V_STR) return missing(R, obj, key->s.p, key->s.n, line);
    return ct_rerr(R, line, "cannot index a %s with a %s", ct_type_name(obj), ct_type_name(key)), VFAIL;
}

static int is_method_name(const val *obj, const char *s) {
    static const char *const str_m[] = {"startswith", "endswith", "strip", "lstrip", "rstrip", "split",
                                        "rsplit", "upper", "lower", "title", "capitalize", "replace",
                                        "find", "rfind", "count", "join", "format", "splitlines",
                                        "isdigit", "isalpha", "isspace", "isupper", "islower", "index",
                                        "partition", "rpartition", "zfill", "center", "ljust", "rjust",
                                        "casefold", "swapcase", "encode", "expandtabs", "isalnum"};
    static const char *const dict_m[] = {"items", "keys", "values", "get", "pop", "update", "copy",
                                         "setdefault", "clear", "popitem"};
    static const char *const list_m[] = {"append", "extend", "insert", "pop", "remove", "index",
                                         "count", "sort", "reverse", "copy", "clear"};
    const char *const *m = obj->t == V_STR ? str_m : obj->t == V_DICT ? dict_m : obj->t == V_LIST ? list_m : NULL;
    size_t k = obj->t == V_STR ? sizeof str_m / sizeof *str_m : obj->t == V_DICT ? sizeof dict_m / sizeof *dict_m
             : sizeof list_m / sizeof *list_m;
    for (size_t i = 0; m && i < k; i++)
        if (!strcmp(m[i], s)) return 1;
    return 0;
}

static val get_attr(rstate *R, const val *obj, const char *name, int line) {
    if (obj->t == V_UNDEF) return ct_undef_err(R, line, obj), VFAIL;
    if (is_method_name(obj, name))
        return ct_rerr(R, line, "unsupported: the %s method '%s' used without a call", ct_type_name(obj), name), VFAIL;
    if (obj->t == V_DICT || obj->t == V_NS) {
        const val *v = ct_dict_gets(obj->d, name);
        return v ? *v : missing(R, obj, name, strlen(name), line);
    }
    if (obj->t == V_LOOP) {
        size_t i = obj->lp->i, n = obj->lp->n;
        if (!strcmp(name, "index")) return vint((int64_t)i + 1);
        if (!strcmp(name, "index0")) return vint((int64_t)i);
        if (!strcmp(name, "revindex")) return vint((int64_t)(n - i));
        if (!strcmp(name, "revindex0")) return vint((int64_t)(n - i - 1));
        if (!strcmp(name, "first")) return vbool(i == 0);
        if (!strcmp(name, "last")) return vbool(i + 1 == n);
        if (!strcmp(name, "length")) return vint((int64_t)n);
        if (!strcmp(name, "depth")) return vint(1);
        if (!strcmp(name, "depth0")) return vint(0);
        if (!strcmp(name, "previtem")) return i ? obj->lp->items->v[i - 1] : vundef("there is no previous item");
        if (!strcmp(name, "nextitem")) return i + 1 < n ? obj->lp->items->v[i + 1] : vundef("there is no next item");
        if (!strcmp(name, "cycle") || !strcmp(name, "changed"))
            return ct_rerr(R, line, "unsupported: loop.%s", name), VFAIL;
        return missing(R, obj, name, strlen(name), line);
    }
    return missing(R, obj, name, strlen(name), line);
}

/* Python slice indices (PySlice_AdjustIndices) */
static int slice_idx(rstate *R, const ct_node *n, frame *F, size_t len, int64_t *start, int64_t *stop,
                     int64_t *step) {
    val v[3];
    const ct_node *p[3] = {n->b, n->c, n->d};
    for (int k = 0; k < 3; k++) {
        v[k] = p[k] ? eval(R, F, p[k]) : V(V_NONE);
        if (FAILED(v[k])) return LC_FAIL;
        if (v[k].t != V_NONE && v[k].t != V_INT && v[k].t != V_BOOL)
            return ct_rerr(R, n->line, "slice indices must be integers or none, found %s", ct_type_name(&v[k]));
    }
    int64_t L = (int64_t)len;
    *step = v[2].t == V_NONE ? 1 : v[2].i;
    if (*step == 0) return ct_rerr(R, n->line, "slice step cannot be zero");
    if (v[0].t == V_NONE) *start = *step < 0 ? L - 1 : 0;
    else {
        *start = v[0].i;
        if (*start < 0) *start += L, *start = *start < 0 ? (*step < 0 ? -1 : 0) : *start;
        else if (*start >= L) *start = *step < 0 ? L - 1 : L;
    }
    if (v[1].t == V_NONE) *stop = *step < 0 ? -1 : L;
    else {
        *stop = v[1].i;
        if (*stop < 0) *stop += L, *stop = *stop < 0 ? (*step < 0 ? -1 : 0) : *stop;
        else if (*stop >= L) *stop = *step < 0 ? L - 1 : L;
    }
    return LC_OK;
}

static val eval_slice(rstate *R, frame *F, const ct_node *n) {
    val obj = eval(R, F, n->a);
    if (FAILED(obj)) return obj;
    if (obj.t == V_UNDEF) return ct_undef_err(R, n->line, &obj), VFAIL;
    if (obj.t != V_LIST && obj.t != V_STR) return ct_rerr(R, n->line, "cannot slice a %s", ct_type_name(&obj)), VFAIL;
    size_t len = obj.t == V_LIST ? obj.l->n : ct_cp_len(obj.s.p, obj.s.n);
    int64_t a = 0, b = 0, st = 1;
    if (slice_idx(R, n, F, len, &a, &b, &st)) return VFAIL;
    size_t cnt = 0;
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st) cnt++;
    if (obj.t == V_LIST) {
        val l = ct_mklist(R, cnt, n->line);
        if (FAILED(l)) return l;
        l.l->tuple = obj.l->tuple;
        size_t k = 0;
        for (int64_t i = a; st > 0 ? i < b : i > b; i += st) l.l->v[k++] = obj.l->v[i];
        return l;
    }
    sb s = {R, NULL, 0, 0, n->line};
    if (ct_sb_add(&s, "", 0)) return VFAIL;
    for (int64_t i = a; st > 0 ? i < b : i > b; i += st) {
        size_t x = ct_cp_off(obj.s.p, obj.s.n, (size_t)i), y = ct_cp_off(obj.s.p, obj.s.n, (size_t)i + 1);
        if (ct_sb_add(&s, obj.s.p + x, y - x)) return VFAIL;
    }
    return vstr(s.p, s.n);
}

static val to_string_val(rstate *R, const val *v, int line) {
    if (v->t == V_STR) return *v;
    sb b = {R, NULL, 0, 0, line};
    if (ct_sb_add(&b, "", 0) || ct_put_str(&b, v, 0)) return VFAIL;
    return vstr(b.p, b.n);
}

static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}

static val binop(rstate *R, int op, val a, val b, int line) {
    static const char *const names[] = {"", "+", "-", "*", "/", "//", "%", "**"};
    if (a.t == V_UNDEF) return ct_undef_err(R, line, &a), VFAIL;
    if (b.t == V_UNDEF) return ct_undef_err(R, line, &b), VFAIL;
    if (op == CT_OP_ADD && a.t == V_STR && b.t == V_STR) return ct_mkstr(R, a.s.p, a.s.n, b.s.p, b.s.n, line);
    if (op == CT_OP_ADD && a.t == V_LIST && b.t == V_LIST && a.l->tuple == b.l->tuple) {
        val l = ct_mklist(R, a.l->n + b.l->n, line);
        if (FAILED(l)) return l;
        l.l->tuple = a.l->tuple;
        if (a.l->n) memcpy(l.l->v, a.l->v, a.l->n * sizeof(val));
        if (b.l->n) memcpy(l.l->v + a.l->n, b.l->v, b.l->n * sizeof(val));
        return l;
    }
    if (op == CT_OP_MUL && ((a.t == V_STR && (b.t == V_INT || b.t == V_BOOL)) ||
                            (b.t == V_STR && (a.t == V_INT || a.t == V_BOOL)))) {
        val s = a.t == V_STR ? a : b;
        int64_t k = a.t == V_STR ? b.i : a.i;
        sb o = {R, NULL, 0, 0, line};
        if (ct_sb_add(&o, "", 0)) return VFAIL;
        for (int64_t i = 0; i < k; i++)
            if (ct_sb_add(&o, s.s.p, s.s.n)) return VFAIL;
        return vstr(o.p, o.n);
    }
    if (op == CT_OP_MOD && a.t == V_STR) return ct_rerr(R, line, "unsupported: %% string formatting"), VFAIL;
    if (!is_num(&a) || !is_num(&b))
        return ct_rerr(R, line, "unsupported operand types for %s: '%s' and '%s'", names[op], ct_type_name(&a),
                    ct_type_name(&b)), VFAIL;
    int ints = a.t != V_FLOAT && b.t != V_FLOAT;
    if (ints) {
        int64_t x = a.i, y = b.i, r;
        switch (op) {
        case CT_OP_ADD: if (__builtin_add_overflow(x, y, &r)) goto ovf; return vint(r);
        case CT_OP_SUB: if (__builtin_sub_overflow(x, y, &r)) goto ovf; return vint(r);
        case CT_OP_MUL: if (__builtin_mul_overflow(x, y, &r)) goto ovf; return vint(r);
        case CT_OP_DIV: if (!y) goto zero; return vfloat((double)x / (double)y);
        case CT_OP_FLOORDIV: if (!y) goto zero; if (x == INT64_MIN && y == -1) goto ovf; return vint(floordiv(x, y));
        case CT_OP_MOD: if (!y) goto zero; if (y == -1) return vint(0); return vint(x - floordiv(x, y) * y);
        case CT_OP_POW: {
            if (y < 0) return vfloat(pow((double)x, (double)y));
            r = 1;
            for (int64_t i = 0; i < y; i++)
                if (__builtin_mul_overflow(r, x, &r)) goto ovf;
            return vint(r);
        }
        }
    }
    double x = num(&a), y = num(&b);
    switch (op) {
    case CT_OP_ADD: return vfloat(x + y);
    case CT_OP_SUB: return vfloat(x - y);
    case CT_OP_MUL: return vfloat(x * y);
    case CT_OP_DIV: if (y == 0) goto zero; return vfloat(x / y);
    case CT_OP_FLOORDIV: if (y == 0) goto zero; return vfloat(floor(x / y));
    case CT_OP_MOD: {
        if (y == 0) goto zero;
        double m = fmod(x, y);
        if (m != 0 && ((m < 0) != (y < 0))) m += y;
        return vfloat(m);
    }
    case CT_OP_POW: return vfloat(pow(x, y));
    }
    return ct_rerr(R, line, "internal: bad operator"), VFAIL;
ovf:
    return ct_rerr(R, line, "unsupported: integer result past 64 bits"), VFAIL;
zero:
    return ct_rerr(R, line, "division by zero"), VFAIL;
}

static int contains(rstate *R, const val *hay, const val *x, int line, int *out) {
    if (hay->t == V_STR) {
        if (x->t != V_STR)
            return ct_rerr(R, line, "'in <string>' requires a string as left operand, not %s", ct_type_name(x));
        *out = x->s.n == 0 || (x->s.n <= hay->s.n && memmem(hay->s.p, hay->s.n, x->s.p, x->s.n));
        return LC_OK;
    }
    if (hay->t == V_LIST) {
        *out = 0;
        for (size_t i = 0; i < hay->l->n && !*out; i++) *out = ct_val_eq(&hay->l->v[i], x);
        return LC_OK;
    }
    if (hay->t == V_DICT) {
        *out = ct_dict_get(hay->d, x) != NULL;
        return LC_OK;
    }
    if (hay->t == V_UNDEF) {
        *out = 0;
        return LC_OK;
    }
    return ct_rerr(R, line, "argument of type '%s' is not iterable", ct_type_name(hay));
}

static int compare(rstate *R, int op, const val *a, const val *b, int line, int *out) {
    if (op == CT_OP_EQ || op == CT_OP_NE) {
        *out = ct_val_eq(a, b) == (op == CT_OP_EQ);
        return LC_OK;
    }
    if (op == CT_OP_IN || op == CT_OP_NOTIN) {
        if (contains(R, b, a, line, out)) return LC_FAIL;
        if (op == CT_OP_NOTIN) *out = !*out;
        return LC_OK;
    }
    int c;
    if (is_num(a) && is_num(b)) {
        if (a->t != V_FLOAT && b->t != V_FLOAT) c = (a->i > b->i) - (a->i < b->i);
        else c = (num(a) > num(b)) - (num(a) < num(b));
        if (a->t == V_FLOAT || b->t == V_FLOAT) {
            if (isnan(num(a)) || isnan(num(b))) {
                *out = 0;
                return LC_OK;
            }
        }
    } else if (a->t == V_STR && b->t == V_STR) {
        c = ct_str_cmp(a, b);
    } else {
        static const char *const names[] = {"", "", "", "", "", "", "", "", "==", "!=", "<", "<=", ">", ">="};
        if (a->t == V_UNDEF) return ct_undef_err(R, line, a);
        if (b->t == V_UNDEF) return ct_undef_err(R, line, b);
        return ct_rerr(R, line, "'%s' not supported between instances of '%s' and '%s'", names[op], ct_type_name(a),
                    ct_type_name(b));
    }
    *out = op == CT_OP_LT ? c < 0 : op == CT_OP_LE ? c <= 0 : op == CT_OP_GT ? c > 0 : c >= 0;
    return LC_OK;
}

/* evaluated arguments of a call / filter / test */
typedef struct {
    val *pos, *kw;
    const char **names;
    int n_pos, n_kw;
} args;

static int eval_args(rstate *R, frame *F, const ct_node *n, args *a, int n_lead, const val *lead) {
    a->n_pos = n->n_body + n_lead, a->n_kw = n->n_alt, a->names = n->names;
    a->pos = ct_ralloc(R, sizeof(val) * (size_t)(a->n_pos + 1), n->line);
    a->kw = ct_ralloc(R, sizeof(val) * (size_t)(a->n_kw + 1), n->line);
    if (!a->pos || !a->kw) return LC_FAIL;
    for (int i = 0; i < n_lead; i++) a->pos[i] = lead[i];
    for (int i = 0; i < n->n_body; i++)
        if (FAILED(a->pos[n_lead + i] = eval(R, F, n->body[i]))) return LC_FAIL;
    for (int i = 0; i < n->n_alt; i++)
        if (FAILED(a->kw[i] = eval(R, F, n->alt[i]))) return LC_FAIL;
    return LC_OK;
}

/* binds args to a signature: names[i] (positional order), out[i] (V_UNDEF
 * = not given). Unknown keywords or too many positionals are errors. */
static int bind(rstate *R, const args *a, const char *fname, const char *const *names, int n, val *out, int line) {
    for (int i = 0; i < n; i++) out[i] = vundef(NULL);
    if (a->n_pos > n) return ct_rerr(R, line, "%s takes at most %d argument%s (%d given)", fname, n, n == 1 ? "" : "s", a->n_pos);
    for (int i = 0; i < a->n_pos; i++) out[i] = a->pos[i];
    for (int k = 0; k < a->n_kw; k++) {
        int found = 0;
        for (int i = 0; i < n && !found; i++)
            if (!strcmp(names[i], a->names[k])) {
                if (i < a->n_pos) return ct_rerr(R, line, "%s got multiple values for argument '%s'", fname, names[i]);
                out[i] = a->kw[k], found = 1;
            }
        if (!found) return ct_rerr(R, line, "%s got an unexpected keyword argument '%s'", fname, a->names[k]);
    }
    return LC_OK;
}

static int need_str(rstate *R, const val *v, const char *what, int line) {
    if (v->t == V_STR) return LC_OK;
    if (v->t == V_UNDEF && v->why) return ct_undef_err(R, line, v);
    return ct_rerr(R, line, "%s must be a string, not %s", what, ct_type_name(v));
}

static int is_given(const val *v) { return !(v->t == V_UNDEF && !v->why); }

/* str.strip family: side 1 = left, 2 = right, 3 = both */
static val do_strip(rstate *R, val s, const val *chars, int side, int line) {
    const char *p = s.s.p;
    size_t n = s.s.n;
    if (chars && is_given(chars) && chars->t != V_NONE) {
        if (need_str(R, chars, "strip characters", line)) return VFAIL;
        if (ct_has_non_ascii(chars->s.p, chars->s.n))
            return ct_rerr(R, line, "unsupported: strip() with non-ASCII characters"), VFAIL;
        if (side & 1) while (n && memchr(chars->s.p, p[0], chars->s.n) && chars->s.n) p++, n--;
        if (side & 2) while (n && memchr(chars->s.p, p[n - 1], chars->s.n) && chars->s.n) n--;
        return vstr(p, n);
    }
    if (side & 1) {
        size_t w = ct_space_fwd(p, n);
        p += w, n -= w;
    }
    if (side & 2) n -= ct_space_back(p, n);
    return vstr(p, n);
}

static val case_map(rstate *R, val s, int mode, int line) { /* 0 upper 1 lower 2 title 3 capitalize */
    static const char *const names[] = {"upper", "lower", "title", "capitalize"};
    if (ct_has_non_ascii(s.s.p, s.s.n))
        return ct_rerr(R, line, "unsupported: %s() of non-ASCII text (Unicode case mapping)", names[mode]), VFAIL;
    char *o = ct_ralloc(R, s.s.n + 1, line);
    if (!o) return VFAIL;
    int prev_alpha = 0;
    for (size_t i = 0; i < s.s.n; i++) {
        char c = s.s.p[i];
        int up = mode == 0 || (mode == 2 && !prev_alpha) || (mode == 3 && i == 0);
        if (up && c >= 'a' && c <= 'z') c = (char)(c - 32);
        else if (!up && c >= 'A' && c <= 'Z') c = (char)(c + 32);
        o[i] = c;
        prev_alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    }
    return vstr(o, s.s.n);
}

static val do_split(rstate *R, val s, const val *sep, const val *maxsplit, int line) {
    int64_t max = is_given(maxsplit) ? maxsplit->i : -1;
    if (is_given(maxsplit) && maxsplit->t != V_INT) return ct_rerr(R, line, "split: maxsplit must be an integer"), VFAIL;
    val parts[2048];
    size_t np = 0;
    const char *p = s.s.p, *e = s.s.p + s.s.n;
    if (!is_given(sep) || sep->t == V_NONE) {
        for (;;) {
            size_t w = ct_space_fwd(p, (size_t)(e - p));
            p += w;
            if (p >= e) break;
            if (max >= 0 && (int64_t)np == max) {
                size_t tail = (size_t)(e - p);
                parts[np++] = vstr(p, tail - ct_space_back(p, tail));
                break;
            }
            const char *q = p;
            while (q < e && !ct_space_fwd(q, (size_t)(e - q))) q++;
            if (np == 2048) return ct_rerr(R, line, "unsupported: split() into more than 2048 parts"), VFAIL;
            parts[np++] = vstr(p, (size_t)(q - p));
            p = q;
        }
    } else {
        if (need_str(R, sep, "split separator", line)) return VFAIL;
        if (!sep->s.n) return ct_rerr(R, line, "split: empty separator"), VFAIL;
        for (;;) {
            const char *q = (max >= 0 && (int64_t)np == max) ? NULL : memmem(p, (size_t)(e - p), sep->s.p, sep->s.n);
            if (np == 2048) return ct_rerr(R, line, "unsupported: split() into more than 2048 parts"), VFAIL;
            if (!q) {
                parts[np++] = vstr(p, (size_t)(e - p));
                break;
            }
            parts[np++] = vstr(p, (size_t)(q - p));
            p = q + sep->s.n;
        }
    }
    val l = ct_mklist(R, np, line);
    if (FAILED(l)) return l;
    if (np) memcpy(l.l->v, parts, np * sizeof(val));
    return l;
}

static val do_replace(rstate *R, val s, const val *old, const val *nw, const val *count, int line) {
    if (need_str(R, old, "replace: old", line) || need_str(R, nw, "replace: new", line)) return VFAIL;
    int64_t max = is_given(count) && count->t != V_NONE ? count->i : -1;
    if (!old->s.n) return ct_rerr(R, line, "unsupported: replace() with an empty search string"), VFAIL;
    sb o = {R, NULL, 0, 0, line};
    if (ct_sb_add(&o, "", 0)) return VFAIL;
    const char *p = s.s.p, *e = s.s.p + s.s.n;
    int64_t done = 0;
    for (;;) {
        const char *q = max >= 0 && done >= max ? NULL : memmem(p, (size_t)(e - p), old->s.p, old->s.n);
        if (!q) break;
        if (ct_sb_add(&o, p, (size_t)(q - p)) || ct_sb_add(&o, nw->s.p, nw->s.n)) return VFAIL;
        p = q + old->s.n, done++;
    }
    if (ct_sb_add(&o, p, (size_t)(e - p))) return VFAIL;
    return vstr(o.p, o.n);
}

/* iterable -> list of items (dict: keys, string: characters) */
static val to_list(rstate *R, const val *v, int line) {
    if (v->t == V_LIST) return *v;
    if (v->t == V_UNDEF) return ct_mklist(R, 0, line);
    if (v->t == V_DICT) {
        val l = ct_mklist(R, v->d->n, line);
        if (!FAILED(l) && v->d->n) memcpy(l.l->v, v->d->k, v->d->n * sizeof(val));
        return l;
    }
    if (v->t == V_STR) {
        size_t n = ct_cp_len(v->s.p, v->s.n);
        val l = ct_mklist(R, n, line);
        if (FAILED(l)) return l;
        for (size_t i = 0, off = 0; i < n; i++) {
            size_t nx = ct_cp_off(v->s.p + off, v->s.n - off, 1);
            l.l->v[i] = vstr(v->s.p + off, nx);
            off += nx;
        }
        return l;
    }
    return ct_rerr(R, line, "'%s' object is not iterable", ct_type_name(v)), VFAIL;
}

static val join(rstate *R, const val *seq, const val *sepv, const val *attr, int line) {
    val l = to_list(R, seq, line);
    if (FAILED(l)) return l;
    const char *sep = "";
    size_t sn = 0;
    if (is_given(sepv)) {
        if (need_str(R, sepv, "join separator", line)) return VFAIL;
        sep = sepv->s.p, sn = sepv->s.n;
    }
    sb o = {R, NULL, 0, 0, line};
    if (ct_sb_add(&o, "", 0)) return VFAIL;
    for (size_t i = 0; i < l.l->n; i++) {
        val x = l.l->v[i];
        if (attr && is_given(attr)) {
            if (need_str(R, attr, "join attribute", line)) return VFAIL;
            x = get_item(R, &x, attr, line);
            if (FAILED(x)) return x;
        }
        if ((i && ct_sb_add(&o, sep, sn)) || ct_put_str(&o, &x, 0)) return VFAIL;
    }
    return vstr(o.p, o.n);
}

static int run_test(rstate *R, const char *name, const val *x, const args *a, int line, int *out);

static val call_method(rstate *R, val obj, const char *m, const args *a, int line) {
    val p[4];
    if (obj.t == V_UNDEF) return ct_undef_err(R, line, &obj), VFAIL;
    if (obj.t == V_STR) {
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            static const char *const nm[] = {"prefix"};
            if (bind(R, a, m, nm, 1, p, line)) return VFAIL;
            val cands = p[0];
            if (cands.t == V_STR) {
                cands = ct_mklist(R, 1, line);
                if (FAILED(cands)) return cands;
                cands.l->v[0] = p[0];
            } else if (cands.t != V_LIST) {
                return ct_rerr(R, line, "%s: the argument must be a string or a tuple of strings", m), VFAIL;
            }
            int end = m[0] == 'e', hit = 0;
            for (size_t i = 0; i < cands.l->n && !hit; i++) {
                const val *c = &cands.l->v[i];
                if (need_str(R, c, m, line)) return VFAIL;
                hit = c->s.n <= obj.s.n &&
                      !memcmp(obj.s.p + (end ? obj.s.n - c->s.n : 0), c->s.p, c->s.n);
            }
            return vbool(hit);
        }
        if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
            static const char *const nm[] = {"chars"};
            if (bind(R, a, m, nm, 1, p, line)) return VFAIL;
            return do_strip(R, obj, &p[0], m[0] == 'l' ? 1 : m[0] == 'r' ? 2 : 3, line);
        }
        if (!strcmp(m, "split")) {
            static const char *const nm[] = {"sep", "maxsplit"};
            if (bind(R, a, m, nm, 2, p, line)) return VFAIL;
            return do_split(R, obj, &p[0], &p[1], line);
        }
        int cm = !strcmp(m, "upper") ? 0 : !strcmp(m, "lower") ? 1 : !strcmp(m, "title") ? 2
               : !strcmp(m, "capitalize") ? 3 : -1;
        if (cm >= 0) {
            if (bind(R, a, m, NULL, 0, p, line)) return VFAIL;
            return case_map(R, obj, cm, line);
        }
        if (!strcmp(m, "replace")) {
            static const char *const nm[] = {"old", "new", "count"};
            if (bind(R, a, m, nm, 3, p, line)) return VFAIL;
            return do_replace(R, obj, &p[0], &p[1], &p[2], line);
        }
        if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "count")) {
            static const char *const nm[] = {"sub"};
            if (bind(R, a, m, nm, 1, p, line) || need_str(R, &p[0], m, line)) return VFAIL;
            const char *hs = obj.s.p, *e = obj.s.p + obj.s.n;
            if (m[0] == 'c') {
                if (!p[0].s.n) return vint((int64_t)ct_cp_len(obj.s.p, obj.s.n) + 1);
                int64_t c = 0;
                for (const char *q; (q = memmem(hs, (size_t)(e - hs), p[0].s.p, p[0].s.n)); hs = q + p[0].s.n) c++;
                return vint(c);
            }
            const char *found = NULL;
            for (const char *q = hs; q <= e - p[0].s.n; q++) {
                if (!memcmp(q, p[0].s.p, p[0].s.n)) {
                    found = q;
                    if (m[0] == 'f') break;
                }
                if (q == e) break;
            }
            return vint(found ? (int64_t)ct_cp_len(obj.s.p, (size_t)(found - obj.s.p)) : -1);
        }
        if (!strcmp(m, "join")) {
            static const char *const nm[] = {"iterable"};
            if (bind(R, a, m, nm, 1, p, line)) return VFAIL;
            return join(R, &p[0], &obj, NULL, line);
        }
        return ct_rerr(R, line, "unsupported string method '%s'", m), VFAIL;
    }
    if (obj.t == V_DICT) {
        if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
            if (bind(R, a, m, NULL, 0, p, line)) return VFAIL;
            val l = ct_mklist(R, obj.d->n, line);
            if (FAILED(l)) return l;
            for (size_t i = 0; i < obj.d->n; i++) {
                if (m[0] == 'k') l.l->v[i] = obj.d->k[i];
                else if (m[0] == 'v') l.l->v[i] = obj.d->v[i];
                else {
                    val t = ct_mklist(R, 2, line);
                    if (FAILED(t)) return t;
                    t.l->tuple = 1, t.l->v[0] = obj.d->k[i], t.l->v[1] = obj.d->v[i];
                    l.l->v[i] = t;
                }
            }
            return l;
        }
        if (!strcmp(m, "get")) {
            static const char *const nm[] = {"key", "default"};
            if (bind(R, a, m, nm, 2, p, line)) return VFAIL;
            const val *v = ct_dict_get(obj.d, &p[0]);
            return v ? *v : is_given(&p[1]) ? p[1] : V(V_NONE);
        }
        return ct_rerr(R, line, "unsupported dict method '%s'", m), VFAIL;
    }
    if (obj.t == V_LIST) return ct_rerr(R, line, "unsupported list method '%s' (the sandbox forbids changing lists)", m), VFAIL;
    return ct_rerr(R, line, "'%s' object has no method '%s'", ct_type_name(&obj), m), VFAIL;
}

static val call_builtin(rstate *R, int id, const args *a, int line) {
    if (id == F_RAISE) {
        if (a->n_pos < 1 || a->n_kw) return ct_rerr(R, line, "raise_exception takes one message"), VFAIL;
        val msg = to_string_val(R, &a->pos[0], line);
        if (FAILED(msg)) return msg;
        return ct_rerr(R, line, "the template raised an error: %.*s", (int)(msg.s.n < 700 ? msg.s.n : 700), msg.s.p), VFAIL;
    }
    if (id == F_NAMESPACE || id == F_DICT) {
        if (a->n_pos > 1 || (a->n_pos == 1 && a->pos[0].t != V_DICT))
            return ct_rerr(R, line, "unsupported: %s() with positional arguments other than one dict",
                        id == F_DICT ? "dict" : "namespace"), VFAIL;
        vdict *d = ct_ralloc(R, sizeof *d, line);
        if (!d) return VFAIL;
        if (a->n_pos)
            for (size_t i = 0; i < a->pos[0].d->n; i++)
                if (ct_dict_set(R, d, a->pos[0].d->k[i], a->pos[0].d->v[i], line)) return VFAIL;
        for (int k = 0; k < a->n_kw; k++)
            if (ct_dict_set(R, d, vstr(a->names[k], strlen(a->names[k])), a->kw[k], line)) return VFAIL;
        return (val){.t = id == F_DICT ? V_DICT : V_NS, .d = d};
    }
    if (id == F_RANGE) {
        if (a->n_kw || a->n_pos < 1 || a->n_pos > 3) return ct_rerr(R, line, "range takes 1 to 3 integers"), VFAIL;
        int64_t v[3] = {0, 0, 1};
        for (int i = 0; i < a->n_pos; i++) {
            if (a->pos[i].t != V_INT && a->pos[i].t != V_BOOL)
                return ct_rerr(R, line, "range: '%s' object cannot be interpreted as an integer", ct_type_name(&a->pos[i])), VFAIL;
            v[a->n_pos == 1 ? 1 : i] = a->pos[i].i;
        }
        if (!v[2]) return ct_rerr(R, line, "range() arg 3 must not be zero"), VFAIL;
        int64_t cnt = v[2] > 0 ? (v[1] > v[0] ? (v[1] - v[0] + v[2] - 1) / v[2] : 0)
                               : (v[0] > v[1] ? (v[0] - v[1] - v[2] - 1) / -v[2] : 0);
        if (cnt > CT_MAX_RANGE) return ct_rerr(R, line, "range too big (%lld items; the limit is %d)", (long long)cnt, CT_MAX_RANGE), VFAIL;
        val l = ct_mklist(R, (size_t)cnt, line);
        if (FAILED(l)) return l;
        for (int64_t i = 0; i < cnt; i++) l.l->v[i] = vint(v[0] + i * v[2]);
        return l;
    }
    if (id == F_STRFTIME) {
        if (a->n_pos != 1 || a->n_kw || need_str(R, &a->pos[0], "strftime_now format", line))
            return ct_rerr(R, line, "strftime_now takes one format string"), VFAIL;
        char fmt[256], buf[512];
        if (a->pos[0].s.n >= sizeof fmt) return ct_rerr(R, line, "strftime_now: format too long"), VFAIL;
        memcpy(fmt, a->pos[0].s.p, a->pos[0].s.n);
        fmt[a->pos[0].s.n] = 0;
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        size_t n = strftime(buf, sizeof buf, fmt, &tmv);
        return ct_mkstr(R, buf, n, "", 0, line);
    }
    return ct_rerr(R, line, "internal: bad builtin"), VFAIL;
}

static val apply_filter(rstate *R, const char *f, val x, const args *a, int line);

static val eval_call(rstate *R, frame *F, const ct_node *n) {
    args a;
    if (n->a->kind == N_ATTR) {
        val obj = eval(R, F, n->a->a);
        if (FAILED(obj)) return obj;
        if (obj.t == V_STR || obj.t == V_DICT || obj.t == V_LIST) {
            if (eval_args(R, F, n, &a, 0, NULL)) return VFAIL;
            return call_method(R, obj, n->a->s, &a, n->line);
        }
        if (obj.t == V_UNDEF) return ct_undef_err(R, n->line, &obj), VFAIL;
    }
    val fn = eval(R, F, n->a);
    if (FAILED(fn)) return fn;
    if (fn.t == V_UNDEF) return ct_undef_err(R, n->line, &fn), VFAIL;
    if (fn.t != V_FUNC) return ct_rerr(R, n->line, "'%s' object is not callable", ct_type_name(&fn)), VFAIL;
    if (eval_args(R, F, n, &a, 0, NULL)) return VFAIL;
    return call_builtin(R, (int)fn.i, &a, n->line);
}

static val eval_node(rstate *R, frame *F, const ct_node *n);

/* Chains (a + b + ..., x.a.b..., x|f|g...) are parsed by loops into deep
 * trees; their evaluation recurses, so it is bounded. */
static val eval(rstate *R, frame *F, const ct_node *n) {
    if (R->depth >= CT_MAX_EVAL_DEPTH)
        return ct_rerr(R, n->line, "an expression nested deeper than %d", CT_MAX_EVAL_DEPTH), VFAIL;
    R->depth++;
    val v = eval_node(R, F, n);
    R->depth--;
    return v;
}

static val eval_node(rstate *R, frame *F, const ct_node *n) {
    switch (n->kind) {
    case N_CONST:
        switch (n->k) {
        case CT_K_NONE: return V(V_NONE);
        case CT_K_BOOL: return vbool((int)n->i);
        case CT_K_INT: return vint(n->i);
        case CT_K_FLOAT: return vfloat(n->f);
        default: return vstr(n->s, n->sn);
        }
    case N_NAME: return lookup(R, F, n);
    case N_ATTR: {
        val o = eval(R, F, n->a);
        return FAILED(o) ? o : get_attr(R, &o, n->s, n->line);
    }
    case N_ITEM: {
        val o = eval(R, F, n->a);
        if (FAILED(o)) return o;
        val k = eval(R, F, n->b);
        return FAILED(k) ? k : get_item(R, &o, &k, n->line);
    }
    case N_SLICE: return eval_slice(R, F, n);
    case N_CALL: return eval_call(R, F, n);
    case N_FILTER: {
        val x = eval(R, F, n->a);
        if (FAILED(x)) return x;
        args a;
        if (eval_args(R, F, n, &a, 0, NULL)) return VFAIL;
        return apply_filter(R, n->s, x, &a, n->line);
    }
    case N_TEST: {
        val x = eval(R, F, n->a);
        if (FAILED(x)) return x;
        args a;
        int r;
        if (eval_args(R, F, n, &a, 0, NULL) || run_test(R, n->s, &x, &a, n->line, &r)) return VFAIL;
        return vbool(n->op ? !r : r);
    }
    case N_NEG: case N_POS: {
        val x = eval(R, F, n->a);
        if (FAILED(x)) return x;
        if (x.t == V_UNDEF) return ct_undef_err(R, n->line, &x), VFAIL;
        if (!is_num(&x)) return ct_rerr(R, n->line, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+', ct_type_name(&x)), VFAIL;
        if (n->kind == N_POS) return x.t == V_BOOL ? vint(x.i) : x;
        if (x.t == V_FLOAT) return vfloat(-x.f);
        if (x.i == INT64_MIN) return ct_rerr(R, n->line, "unsupported: integer result past 64 bits"), VFAIL;
        return vint(-x.i);
    }
    case N_NOT: {
        val x = eval(R, F, n->a);
        return FAILED(x) ? x : vbool(!ct_truthy(&x));
    }
    case N_AND: case N_OR: {
        val x = eval(R, F, n->a);
        if (FAILED(x)) return x;
        if (ct_truthy(&x) == (n->kind == N_OR)) return x;
        return eval(R, F, n->b);
    }
    case N_BIN: {
        val x = eval(R, F, n->a);
        if (FAILED(x)) return x;
        val y = eval(R, F, n->b);
        return FAILED(y) ? y : binop(R, n->op, x, y, n->line);
    }
    case N_COMPARE: {
        val x = eval(R, F, n->a);
        if (FAILED(x)) return x;
        for (int i = 0; i < n->n_body; i++) {
            val y = eval(R, F, n->body[i]);
            int r;
            if (FAILED(y) || compare(R, n->ops[i], &x, &y, n->line, &r)) return VFAIL;
            if (!r) return vbool(0);
            x = y;
        }
        return vbool(1);
    }
    case N_COND: {
        val c = eval(R, F, n->a);
        if (FAILED(c)) return c;
        if (ct_truthy(&c)) return eval(R, F, n->b);
        return n->c ? eval(R, F, n->c) : vundef("the conditional expression has no else branch");
    }
    case N_LIST: case N_TUPLE: {
        val l = ct_mklist(R, (size_t)n->n_body, n->line);
        if (FAILED(l)) return l;
        l.l->tuple = n->kind == N_TUPLE;
        for (int i = 0; i < n->n_body; i++)
            if (FAILED(l.l->v[i] = eval(R, F, n->body[i]))) return VFAIL;
        return l;
    }
    case N_DICT: {
        vdict *d = ct_ralloc(R, sizeof *d, n->line);
        if (!d) return VFAIL;
        for (int i = 0; i < n->n_body; i++) {
            val k = eval(R, F, n->body[i]), v;
            if (FAILED(k) || FAILED(v = eval(R, F, n->alt[i]))) return VFAIL;
            if (k.t != V_STR && k.t != V_INT && k.t != V_BOOL && k.t != V_NONE && k.t != V_FLOAT)
                return ct_rerr(R, n->line, "unsupported: a dict key of type %s", ct_type_name(&k)), VFAIL;
            int dup = 0;
            for (size_t j = 0; j < d->n && !dup; j++)
                if (ct_val_eq(&d->k[j], &k)) d->v[j] = v, dup = 1;
            if (!dup && ct_dict_set(R, d, k, v, n->line)) return VFAIL;
        }
        return (val){.t = V_DICT, .d = d};
    }
    case N_CONCAT: {
        sb o = {R, NULL, 0, 0, n->line};
        if (ct_sb_add(&o, "", 0)) return VFAIL;
        for (int i = 0; i < n->n_body; i++) {
            val x = eval(R, F, n->body[i]);
            if (FAILED(x) || ct_put_str(&o, &x, 0)) return VFAIL;
        }
        return vstr(o.p, o.n);
    }
    }
    return ct_rerr(R, n->line, "internal: unknown expression"), VFAIL;
}

/* ---- tests -------------------------------------------------------------------- */

static int run_test(rstate *R, const char *name, const val *x, const args *a, int line, int *out) {
    const val *arg = a->n_pos ? &a->pos[0] : NULL;
    if (a->n_kw) return ct_rerr(R, line, "test '%s' takes no keyword arguments", name);
    int np = a->n_pos;
#define NOARG() do { if (np) return ct_rerr(R, line, "test '%s' takes no argument", name); } while (0)
#define ONEARG() do { if (np != 1) return ct_rerr(R, line, "test '%s' takes one argument", name); } while (0)
    if (!strcmp(name, "defined")) { NOARG(); *out = x->t != V_UNDEF; }
    else if (!strcmp(name, "undefined")) { NOARG(); *out = x->t == V_UNDEF; }
    else if (!strcmp(name, "none")) { NOARG(); *out = x->t == V_NONE; }
    else if (!strcmp(name, "string")) { NOARG(); *out = x->t == V_STR; }
    else if (!strcmp(name, "number")) { NOARG(); *out = is_num(x); }
    else if (!strcmp(name, "integer")) { NOARG(); *out = x->t == V_INT; }
    else if (!strcmp(name, "float")) { NOARG(); *out = x->t == V_FLOAT; }
    else if (!strcmp(name, "boolean")) { NOARG(); *out = x->t == V_BOOL; }
    else if (!strcmp(name, "true")) { NOARG(); *out = x->t == V_BOOL && x->i; }
    else if (!strcmp(name, "false")) { NOARG(); *out = x->t == V_BOOL && !x->i; }
    else if (!strcmp(name, "mapping")) { NOARG(); *out = x->t == V_DICT; }
    else if (!strcmp(name, "iterable")) { NOARG(); *out = x->t == V_STR || x->t == V_LIST || x->t == V_DICT || x->t == V_UNDEF; }
    else if (!strcmp(name, "sequence")) { NOARG(); *out = x->t == V_STR || x->t == V_LIST || x->t == V_DICT; }
    else if (!strcmp(name, "callable")) { NOARG(); *out = x->t == V_FUNC; }
    else if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        int64_t d = 2;
        if (name[0] == 'd') {
            ONEARG();
            if (arg->t != V_INT) return ct_rerr(R, line, "test 'divisibleby' needs an integer");
            d = arg->i;
            if (!d) return ct_rerr(R, line, "integer division or modulo by zero");
        } else NOARG();
        if (x->t != V_INT && x->t != V_BOOL) return ct_rerr(R, line, "test '%s' needs an integer, not %s", name, ct_type_name(x));
        int64_t m = x->i % d;
        *out = name[0] == 'o' ? m != 0 : m == 0;
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        NOARG();
        val s = to_string_val(R, x, line);
        if (FAILED(s)) return LC_FAIL;
        if (ct_has_non_ascii(s.s.p, s.s.n)) return ct_rerr(R, line, "unsupported: test '%s' on non-ASCII text", name);
        int cased = 0, ok = 1;
        for (size_t i = 0; i < s.s.n; i++) {
            char c = s.s.p[i];
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) cased = 1;
            if (name[0] == 'l' ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z')) ok = 0;
        }
        *out = cased && ok;
    } else if (!strcmp(name, "in")) {
        ONEARG();
        return contains(R, arg, x, line, out);
    } else if (!strcmp(name, "sameas")) {
        ONEARG();
        if (!(arg->t == V_NONE || arg->t == V_BOOL)) return ct_rerr(R, line, "unsupported: test 'sameas' other than with true, false or none");
        *out = x->t == arg->t && (x->t == V_NONE || x->i == arg->i);
    } else {
        static const struct {
            const char *n;
            int op;
        } cmp[] = {{"eq", CT_OP_EQ}, {"equalto", CT_OP_EQ}, {"==", CT_OP_EQ}, {"ne", CT_OP_NE}, {"!=", CT_OP_NE},
                   {"lt", CT_OP_LT}, {"lessthan", CT_OP_LT}, {"le", CT_OP_LE}, {"gt", CT_OP_GT},
                   {"greaterthan", CT_OP_GT}, {"ge", CT_OP_GE}};
        for (size_t i = 0; i < sizeof cmp / sizeof *cmp; i++)
            if (!strcmp(name, cmp[i].n)) {
                ONEARG();
                return compare(R, cmp[i].op, x, arg, line, out);
            }
        return ct_rerr(R, line, "unsupported test '%s'", name);
    }
    return LC_OK;
#undef NOARG
#undef ONEARG
}

/* ---- filters ------------------------------------------------------------------- */

static val select_items(rstate *R, val x, const args *a, int line, int attr, int reject) {
    val l = to_list(R, &x, line);
    if (FAILED(l)) return l;
    if (a->n_kw) return ct_rerr(R, line, "unsupported: keyword arguments to select/reject filters"), VFAIL;
    int k = 0;
    val key = V(V_NONE);
    if (attr) {
        if (a->n_pos < 1 || need_str(R, &a->pos[0], "the attribute", line)) return ct_rerr(R, line, "%sattr needs an attribute name", reject ? "reject" : "select"), VFAIL;
        key = a->pos[k++];
    }
    const char *test = NULL;
    char tbuf[64];
    if (k < a->n_pos) {
        if (need_str(R, &a->pos[k], "the test name", line)) return VFAIL;
        snprintf(tbuf, sizeof tbuf, "%.*s", (int)a->pos[k].s.n, a->pos[k].s.p);
        test = tbuf, k++;
    }
    args ta = {a->pos + k, NULL, NULL, a->n_pos - k, 0};
    val out = ct_mklist(R, l.l->n, line);
    if (FAILED(out)) return out;
    size_t m = 0;
    for (size_t i = 0; i < l.l->n; i++) {
        val v = l.l->v[i];
        if (attr) {
            v = get_item(R, &v, &key, line);
            if (FAILED(v)) return v;
        }
        int r;
        if (test) {
            if (run_test(R, test, &v, &ta, line, &r)) return VFAIL;
        } else {
            r = ct_truthy(&v);
        }
        if (r != reject) out.l->v[m++] = l.l->v[i];
    }
    out.l->n = m;
    return out;
}

static val apply_filter(rstate *R, const char *f, val x, const args *a, int line) {
    val p[4];
#define BIND(...)                                                                  \
    do {                                                                           \
        static const char *const nm_[] = {__VA_ARGS__};                            \
        if (bind(R, a, f, nm_, (int)(sizeof nm_ / sizeof *nm_), p, line)) return VFAIL; \
    } while (0)
#define BIND0() do { if (bind(R, a, f, NULL, 0, p, line)) return VFAIL; } while (0)
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        BIND("default_value", "boolean");
        int use = x.t == V_UNDEF || (is_given(&p[1]) && ct_truthy(&p[1]) && !ct_truthy(&x));
        if (!use) return x;
        return is_given(&p[0]) ? p[0] : vstr("", 0);
    }
    if (!strcmp(f, "tojson")) {
        BIND("ensure_ascii", "indent", "separators", "sort_keys");
        json_opts o = {is_given(&p[0]) && ct_truthy(&p[0]), -1, is_given(&p[3]) && ct_truthy(&p[3]), ", ", ": "};
        if (is_given(&p[1]) && p[1].t != V_NONE) {
            if (p[1].t != V_INT) return ct_rerr(R, line, "unsupported: tojson indent other than an integer"), VFAIL;
            o.indent = p[1].i < 0 ? 0 : (int)(p[1].i > 64 ? 64 : p[1].i);
            o.item_sep = ",";
        }
        if (is_given(&p[2]) && p[2].t != V_NONE) {
            if (p[2].t != V_LIST || p[2].l->n != 2 || p[2].l->v[0].t != V_STR || p[2].l->v[1].t != V_STR)
                return ct_rerr(R, line, "tojson: separators must be a pair of strings"), VFAIL;
            val s0 = ct_mkstr(R, p[2].l->v[0].s.p, p[2].l->v[0].s.n, "", 0, line);
            val s1 = ct_mkstr(R, p[2].l->v[1].s.p, p[2].l->v[1].s.n, "", 0, line);
            if (FAILED(s0) || FAILED(s1)) return VFAIL;
            o.item_sep = s0.s.p, o.key_sep = s1.s.p;
        }
        sb b = {R, NULL, 0, 0, line};
        if (ct_sb_add(&b, "", 0) || ct_put_json(&b, &x, &o, 0)) return VFAIL;
        return vstr(b.p, b.n);
    }
    if (!strcmp(f, "safe") || !strcmp(f, "string")) {
        BIND0();
        return to_string_val(R, &x, line);
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        BIND0();
        switch (x.t) {
        case V_UNDEF: return vint(0);
        case V_STR: return vint((int64_t)ct_cp_len(x.s.p, x.s.n));
        case V_LIST: return vint((int64_t)x.l->n);
        case V_DICT: return vint((int64_t)x.d->n);
        default: return ct_rerr(R, line, "object of type '%s' has no len()", ct_type_name(&x)), VFAIL;
        }
    }
    if (!strcmp(f, "list")) {
        BIND0();
        val l = to_list(R, &x, line);
        if (FAILED(l) || l.t != V_LIST || !l.l->tuple) return l;
        val c = ct_mklist(R, l.l->n, line);
        if (!FAILED(c) && l.l->n) memcpy(c.l->v, l.l->v, l.l->n * sizeof(val));
        return c;
    }
    if (!strcmp(f, "items")) {
        BIND0();
        if (x.t == V_UNDEF) return ct_mklist(R, 0, line);
        if (x.t != V_DICT) return ct_rerr(R, line, "items: can only get item pairs from a mapping, not %s", ct_type_name(&x)), VFAIL;
        args none = {0};
        return call_method(R, x, "items", &none, line);
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        BIND0();
        val l = to_list(R, &x, line);
        if (FAILED(l)) return l;
        if (!l.l->n) return vundef(f[0] == 'f' ? "first: empty sequence" : "last: empty sequence");
        return l.l->v[f[0] == 'f' ? 0 : l.l->n - 1];
    }
    if (!strcmp(f, "reverse")) {
        BIND0();
        if (x.t == V_STR) {
            val l = to_list(R, &x, line);
            if (FAILED(l)) return l;
            sb b = {R, NULL, 0, 0, line};
            if (ct_sb_add(&b, "", 0)) return VFAIL;
            for (size_t i = l.l->n; i-- > 0;)
                if (ct_sb_add(&b, l.l->v[i].s.p, l.l->v[i].s.n)) return VFAIL;
            return vstr(b.p, b.n);
        }
        val l = to_list(R, &x, line);
        if (FAILED(l)) return l;
        val r = ct_mklist(R, l.l->n, line);
        if (FAILED(r)) return r;
        for (size_t i = 0; i < l.l->n; i++) r.l->v[i] = l.l->v[l.l->n - 1 - i];
        return r;
    }
    if (!strcmp(f, "join")) {
        BIND("d", "attribute");
        return join(R, &x, &p[0], &p[1], line);
    }
    if (!strcmp(f, "abs")) {
        BIND0();
        if (x.t == V_FLOAT) return vfloat(fabs(x.f));
        if (x.t == V_INT || x.t == V_BOOL) {
            if (x.i == INT64_MIN) return ct_rerr(R, line, "unsupported: integer result past 64 bits"), VFAIL;
            return vint(x.i < 0 ? -x.i : x.i);
        }
        return ct_rerr(R, line, "bad operand type for abs(): '%s'", ct_type_name(&x)), VFAIL;
    }
    if (!strcmp(f, "int")) {
        BIND("default", "base");
        if (is_given(&p[1])) return ct_rerr(R, line, "unsupported: int filter with a base"), VFAIL;
        if (x.t == V_INT || x.t == V_BOOL) return vint(x.i);
        if (x.t == V_FLOAT) return isfinite(x.f) && fabs(x.f) < 9.2e18 ? vint((int64_t)x.f) : vint(0);
        if (x.t == V_STR) {
            char buf[64];
            val s = do_strip(R, x, NULL, 3, line);
            if (s.s.n && s.s.n < sizeof buf) {
                memcpy(buf, s.s.p, s.s.n);
                buf[s.s.n] = 0;
                char *e;
                long long v = strtoll(buf, &e, 10);
                if (*e == 0 && strchr("+-0123456789", buf[0])) return vint(v);
            }
            return ct_rerr(R, line, "unsupported: int filter of a string that is not a plain decimal integer"), VFAIL;
        }
        return is_given(&p[0]) ? p[0] : vint(0);
    }
    if (!strcmp(f, "trim")) {
        BIND("chars");
        val s = to_string_val(R, &x, line);
        return FAILED(s) ? s : do_strip(R, s, &p[0], 3, line);
    }
    int cm = !strcmp(f, "upper") ? 0 : !strcmp(f, "lower") ? 1 : !strcmp(f, "title") ? 2 : !strcmp(f, "capitalize") ? 3 : -1;
    if (cm >= 0) {
        BIND0();
        val s = to_string_val(R, &x, line);
        if (FAILED(s)) return s;
        if (cm == 2) return ct_rerr(R, line, "unsupported: the title filter (Jinja's word rules)"), VFAIL;
        return case_map(R, s, cm, line);
    }
    if (!strcmp(f, "replace")) {
        BIND("old", "new", "count");
        val s = to_string_val(R, &x, line);
        return FAILED(s) ? s : do_replace(R, s, &p[0], &p[1], &p[2], line);
    }
    if (!strcmp(f, "map")) {
        val l = to_list(R, &x, line);
        if (FAILED(l)) return l;
        if (a->n_pos == 0 && a->n_kw >= 1 && !strcmp(a->names[0], "attribute")) {
            val dflt = vundef(NULL);
            for (int k = 1; k < a->n_kw; k++) {
                if (strcmp(a->names[k], "default")) return ct_rerr(R, line, "map: unexpected keyword argument '%s'", a->names[k]), VFAIL;
                dflt = a->kw[k];
            }
            val out = ct_mklist(R, l.l->n, line);
            if (FAILED(out)) return out;
            for (size_t i = 0; i < l.l->n; i++) {
                val v = get_item(R, &l.l->v[i], &a->kw[0], line);
                if (FAILED(v)) return v;
                out.l->v[i] = v.t == V_UNDEF && is_given(&dflt) ? dflt : v;
            }
            return out;
        }
        if (a->n_pos >= 1 && a->pos[0].t == V_STR) {
            char fname[64];
            snprintf(fname, sizeof fname, "%.*s", (int)a->pos[0].s.n, a->pos[0].s.p);
            args rest = {a->pos + 1, a->kw, a->names, a->n_pos - 1, a->n_kw};
            val out = ct_mklist(R, l.l->n, line);
            if (FAILED(out)) return out;
            for (size_t i = 0; i < l.l->n; i++)
                if (FAILED(out.l->v[i] = apply_filter(R, fname, l.l->v[i], &rest, line))) return VFAIL;
            return out;
        }
        return ct_rerr(R, line, "unsupported: map filter other than map(attribute=...) or map('filter')"), VFAIL;
    }
    if (!strcmp(f, "select")) return select_items(R, x, a, line, 0, 0);
    if (!strcmp(f, "reject")) return select_items(R, x, a, line, 0, 1);
    if (!strcmp(f, "selectattr")) return select_items(R, x, a, line, 1, 0);
    if (!strcmp(f, "rejectattr")) return select_items(R, x, a, line, 1, 1);
    return ct_rerr(R, line, "unsupported filter '%s'", f), VFAIL;
#undef BIND
#undef BIND0
}

/* ---- statements ---------------------------------------------------------------- */

enum { EX_OK = 0, EX_FAIL = -1, EX_BREAK = 1, EX_CONTINUE = 2 };

static int emit(rstate *R, const char *s, size_t n, int line) {
    if (R->n_out + n > CT_MAX_OUTPUT) return ct_rerr(R, line, "the rendered prompt is longer than %u MB", CT_MAX_OUTPUT >> 20);
    if (R->n_out + n + 1 > R->cap_out) {
        size_t cap = R->cap_out ? R->cap_out : 4096;
        while (cap < R->n_out + n + 1) cap *= 2;
        char *np = realloc(R->out, cap);
        if (!np) return ct_rerr(R, line, "out of memory");
        R->out = np, R->cap_out = cap;
    }
    memcpy(R->out + R->n_out, s, n);
    R->n_out += n;
    R->out[R->n_out] = 0;
    return LC_OK;
}

static int step(rstate *R, int line) {
    if (++R->steps > CT_MAX_STEPS) return ct_rerr(R, line, "the template runs more than %ld steps", CT_MAX_STEPS);
    return LC_OK;
}

static int exec_body(rstate *R, frame *F, ct_node **body, int n);

static int assign(rstate *R, frame *F, const ct_node *n, val v) {
    if (n->n_names == 1) return ct_dict_set(R, &F->vars, vstr(n->names[0], strlen(n->names[0])), v, n->line);
    val l = to_list(R, &v, n->line);
    if (FAILED(l)) return LC_FAIL;
    if (l.l->n != (size_t)n->n_names)
        return ct_rerr(R, n->line, "cannot unpack %zu values into %d names", l.l->n, n->n_names);
    for (int i = 0; i < n->n_names; i++)
        if (ct_dict_set(R, &F->vars, vstr(n->names[i], strlen(n->names[i])), l.l->v[i], n->line)) return LC_FAIL;
    return LC_OK;
}

static int exec_for(rstate *R, frame *F, const ct_node *n) {
    val it = eval(R, F, n->a);
    if (FAILED(it)) return EX_FAIL;
    val l = to_list(R, &it, n->line);
    if (FAILED(l)) return EX_FAIL;
    /* the `if` filter runs first, in a frame of its own per item */
    size_t m = l.l->n;
    val items = l;
    if (n->b) {
        items = ct_mklist(R, l.l->n, n->line);
        if (FAILED(items)) return EX_FAIL;
        m = 0;
        for (size_t i = 0; i < l.l->n; i++) {
            if (step(R, n->line)) return EX_FAIL;
            frame f;
            frame_init(&f, F);
            if (assign(R, &f, n, l.l->v[i])) return EX_FAIL;
            val c = eval(R, &f, n->b);
            if (FAILED(c)) return EX_FAIL;
            if (ct_truthy(&c)) items.l->v[m++] = l.l->v[i];
        }
        items.l->n = m;
    }
    if (!m) return exec_body(R, F, n->alt, n->n_alt); /* a break here belongs to an outer loop */
    for (size_t i = 0; i < m; i++) {
        if (step(R, n->line)) return EX_FAIL;
        frame f;
        frame_init(&f, F);
        vloop *lp = ct_ralloc(R, sizeof *lp, n->line);
        if (!lp) return EX_FAIL;
        lp->i = i, lp->n = m, lp->items = items.l;
        if (ct_dict_set(R, &f.vars, vstr("loop", 4), (val){.t = V_LOOP, .lp = lp}, n->line) ||
            assign(R, &f, n, items.l->v[i]))
            return EX_FAIL;
        int rc = exec_body(R, &f, n->body, n->n_body);
        if (rc == EX_FAIL) return EX_FAIL;
        if (rc == EX_BREAK) break;
    }
    return EX_OK;
}

static int exec_body(rstate *R, frame *F, ct_node **body, int nb) {
    for (int i = 0; i < nb; i++) {
        const ct_node *n = body[i];
        if (step(R, n->line)) return EX_FAIL;
        switch (n->kind) {
        case N_DATA:
            if (emit(R, n->s, n->sn, n->line)) return EX_FAIL;
            break;
        case N_PRINT: {
            val v = eval(R, F, n->a);
            if (FAILED(v)) return EX_FAIL;
            if (v.t == V_STR) {
                if (emit(R, v.s.p, v.s.n, n->line)) return EX_FAIL;
            } else {
                sb b = {R, NULL, 0, 0, n->line};
                if (ct_sb_add(&b, "", 0) || ct_put_str(&b, &v, 0) || emit(R, b.p, b.n, n->line)) return EX_FAIL;
            }
            break;
        }
        case N_IF: {
            val c = eval(R, F, n->a);
            if (FAILED(c)) return EX_FAIL;
            int rc = ct_truthy(&c) ? exec_body(R, F, n->body, n->n_body) : exec_body(R, F, n->alt, n->n_alt);
            if (rc) return rc;
            break;
        }
        case N_FOR: {
            int rc = exec_for(R, F, n);
            if (rc) return rc;
            break;
        }
        case N_SET: {
            val v = eval(R, F, n->a);
            if (FAILED(v) || assign(R, F, n, v)) return EX_FAIL;
            break;
        }
        case N_SET_ATTR: {
            ct_node nm = {.kind = N_NAME, .line = n->line, .s = n->s};
            val ns = lookup(R, F, &nm);
            if (FAILED(ns)) return EX_FAIL;
            if (ns.t != V_NS) return ct_rerr(R, n->line, "cannot assign attribute on non-namespace object '%s'", n->s);
            val v = eval(R, F, n->a);
            if (FAILED(v) || ct_dict_set(R, ns.d, vstr(n->s2, strlen(n->s2)), v, n->line)) return EX_FAIL;
            break;
        }
        case N_BREAK: return EX_BREAK;
        case N_CONTINUE: return EX_CONTINUE;
        default: return ct_rerr(R, n->line, "internal: unknown statement");
        }
    }
    return EX_OK;
}

int chat_template_render(const chat_template *t, const cJSON *vars, char **out, size_t *len, lc_err *err) {
    *out = NULL;
    if (len) *len = 0;
    if (vars && !cJSON_IsObject(vars)) return lc_errf(err, "%s: the variables must be a JSON object", t->name);
    rstate R = {.t = t, .err = err};
    R.A.limit = CT_MAX_MEMORY;
    frame G;
    frame_init(&G, NULL);
    int rc = emit(&R, "", 0, 0);
    const cJSON *e;
    if (!rc && vars) cJSON_ArrayForEach(e, vars) {
        val v = ct_from_json(&R, e, 0);
        if (FAILED(v) || ct_dict_set(&R, &G.vars, vstr(e->string, strlen(e->string)), v, 0)) {
            rc = LC_FAIL;
            break;
        }
    }
    if (!rc) rc = exec_body(&R, &G, t->body, t->n_body) == EX_FAIL ? LC_FAIL : LC_OK;
    ct_arena_free(&R.A);
    if (rc) {
        free(R.out);
        return LC_FAIL;
    }
    *out = R.out;
    if (len) *len = R.n_out;
    return LC_OK;
}
