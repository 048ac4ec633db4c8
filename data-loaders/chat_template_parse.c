/* chat_template_parse.c: the chat-template lexer and parser (to the syntax
 * tree of chat_template_int.h). The lexer follows Jinja2's (jinja2/lexer.py)
 * with trim_blocks and lstrip_blocks on, keep_trailing_newline off; the
 * parser follows jinja2/parser.py's grammar and precedence for the subset
 * in chat_template.h. Unsupported syntax is an error naming it and its
 * line. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template_int.h"
#include "lc_utf8.h"

/* ---- arena ---------------------------------------------------------------- */

struct ct_chunk {
    ct_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *ct_alloc(ct_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->limit && a->total + cap > a->limit) return NULL;
        ct_chunk *c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head, c->used = 0, c->cap = cap;
        a->head = c;
        a->total += cap;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

void ct_arena_free(ct_arena *a) {
    for (ct_chunk *c = a->head, *n; c; c = n) n = c->next, free(c);
    a->head = NULL;
    a->total = 0;
}

/* ---- Python whitespace ---------------------------------------------------- */

int ct_py_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decodes one UTF-8 char at s (n > 0 bytes left); *len its length. Invalid
 * bytes decode as themselves with length 1 (they are never whitespace).
 * Not lc_utf8: this only checks the lead/continuation pattern, so overlong
 * forms decode (C0 A0 is a space here and is trimmed by `-`, strip() and
 * split(); lc_utf8_valid_len rejects it), and templates are not validated
 * as UTF-8 before they get here. */
static uint32_t utf8_at(const unsigned char *s, size_t n, size_t *len) {
    unsigned c = s[0];
    int k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
    if (k <= 0 || (size_t)k >= n + 0) {
        *len = 1;
        return k == 0 ? c : 0xfffd0000u | c;
    }
    uint32_t cp = c & (0x3f >> k);
    for (int i = 1; i <= k; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *len = 1;
            return 0xfffd0000u | c;
        }
        cp = cp << 6 | (s[i] & 0x3f);
    }
    *len = (size_t)k + 1;
    return cp;
}

size_t ct_space_fwd(const char *s, size_t n) {
    size_t i = 0, l;
    while (i < n && ct_py_space(utf8_at((const unsigned char *)s + i, n - i, &l))) i += l;
    return i;
}

size_t ct_space_back(const char *s, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && end - st < 4 && ((unsigned char)s[st] & 0xc0) == 0x80) st--;
        size_t l;
        uint32_t cp = utf8_at((const unsigned char *)s + st, end - st, &l);
        if (st + l != end || !ct_py_space(cp)) break;
        end = st;
    }
    return n - end;
}

/* ---- lexer ---------------------------------------------------------------- */

enum { TK_EOF, TK_DATA, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END, TK_NAME,
       TK_STRING, TK_INT, TK_FLOAT, TK_OP };

typedef struct {
    int k, line;
    const char *s;
    size_t n;
    int64_t i;
    double f;
} token;

typedef struct {
    chat_template *t;
    lc_err *err;
    const char *src;
    size_t len;
    token *tk;
    int n_tk, cap_tk;
    int pos;   /* parser: current token */
    int depth; /* parser: recursion */
    int loops; /* parser: enclosing for loops (break/continue) */
    int failed;
} pstate;

/* a parse error (chat_template_int.h: ct_err_at) */
#define perr(P, line, ...) ct_err_at(&(P)->failed, (P)->err, (P)->t->name, (line), __VA_ARGS__)

static int push_tok(pstate *P, token t) {
    if (P->n_tk == P->cap_tk) {
        int cap = P->cap_tk ? 2 * P->cap_tk : 256;
        token *nt = realloc(P->tk, (size_t)cap * sizeof *nt);
        if (!nt) return perr(P, t.line, "out of memory");
        P->tk = nt, P->cap_tk = cap;
    }
    P->tk[P->n_tk++] = t;
    return LC_OK;
}

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A string literal at s (quote q) -> decoded bytes (Python's unicode-escape
 * rules, as Jinja applies them). Returns the bytes consumed, 0 on error. */
static size_t lex_string(pstate *P, const char *s, size_t n, int line, token *t) {
    char q = s[0];
    size_t i = 1;
    while (i < n && s[i] != q) i += s[i] == '\\' && i + 1 < n ? 2 : 1;
    if (i >= n) return perr(P, line, "unterminated string literal"), 0;
    char *out = ct_alloc(&P->t->arena, i + 1);
    if (!out) return perr(P, line, "out of memory"), 0;
    size_t o = 0;
    for (size_t j = 1; j < i; j++) {
        if (s[j] != '\\') {
            out[o++] = s[j];
            continue;
        }
        char c = s[++j];
        const char *simple = "\\\\''\"\"a\ab\bf\fn\nr\rt\tv\v";
        const char *m = NULL;
        for (const char *p = simple; *p; p += 2)
            if (*p == c) m = p;
        if (m) {
            out[o++] = m[1];
        } else if (c == '\n') {
            /* line continuation: nothing */
        } else if (c >= '0' && c <= '7') {
            uint32_t v = 0;
            int k = 0;
            while (k < 3 && j < i && s[j] >= '0' && s[j] <= '7') v = v * 8 + (uint32_t)(s[j++] - '0'), k++;
            j--;
            o += (size_t)lc_utf8_put(out + o, v);
        } else if (c == 'x' || c == 'u' || c == 'U') {
            int k = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t v = 0;
            for (int h = 0; h < k; h++) {
                int d = j + 1 + (size_t)h < i ? hexval(s[j + 1 + h]) : -1;
                if (d < 0) return perr(P, line, "bad \\%c escape in a string literal", c), 0;
                v = v * 16 + (uint32_t)d;
            }
            j += (size_t)k;
            if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
                return perr(P, line, "string literal escape \\%c%0*X is not a Unicode scalar value", c, k, v), 0;
            o += (size_t)lc_utf8_put(out + o, v);
        } else if (c == 'N') {
            return perr(P, line, "unsupported: \\N{...} escape in a string literal"), 0;
        } else {
            out[o++] = '\\';
            out[o++] = c;
        }
    }
    out[o] = 0;
    t->k = TK_STRING, t->s = out, t->n = o;
    return i + 1;
}

static size_t digits(const char *s, size_t n) { /* (\d+_)*\d+ */
    size_t i = 0;
    while (i < n && (isdigit((unsigned char)s[i]) || (s[i] == '_' && i > 0 && i + 1 < n && isdigit((unsigned char)s[i + 1])))) i++;
    return i;
}

static size_t lex_number(pstate *P, const char *s, size_t n, int line, token *t) {
    size_t i = digits(s, n), j = i;
    int is_float = 0;
    if (j + 1 < n && s[j] == '.' && isdigit((unsigned char)s[j + 1])) j += 1 + digits(s + j + 1, n - j - 1), is_float = 1;
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < n && (s[k] == '+' || s[k] == '-')) k++;
        size_t d = k < n ? digits(s + k, n - k) : 0;
        if (d) j = k + d, is_float = 1;
    }
    char buf[128];
    size_t b = 0;
    for (size_t k = 0; k < j && b + 1 < sizeof buf; k++)
        if (s[k] != '_') buf[b++] = s[k];
    buf[b] = 0;
    if (!is_float && (i > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'b' || s[1] == 'o' || s[1] == 'X')))
        return perr(P, line, "unsupported: non-decimal integer literal"), 0;
    if (!is_float && i < n && (s[i] == 'x' || s[i] == 'X' || s[i] == 'b' || s[i] == 'o') && s[0] == '0' && i == 1)
        return perr(P, line, "unsupported: non-decimal integer literal"), 0;
    if (is_float) {
        t->k = TK_FLOAT, t->f = strtod(buf, NULL);
    } else {
        if (b > 18) return perr(P, line, "integer literal %s is too large", buf), 0;
        t->k = TK_INT, t->i = strtoll(buf, NULL, 10);
    }
    return j;
}

static int count_nl(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += s[i] == '\n';
    return c;
}

static int lex(pstate *P) {
    const char *src = P->src;
    size_t len = P->len, pos = 0;
    int line = 1, line_starting = 1;
    while (pos < len) {
        const char *tag = NULL;
        for (const char *p = memchr(src + pos, '{', len - pos); p; p = memchr(p + 1, '{', (size_t)(src + len - p - 1)))
            if (p + 1 < src + len && (p[1] == '{' || p[1] == '%' || p[1] == '#')) {
                tag = p;
                break;
            } else if (p + 1 >= src + len) break;
        size_t tpos = tag ? (size_t)(tag - src) : len, dn = tpos - pos;
        char kind = tag ? tag[1] : 0;
        char sign = tag && tpos + 2 < len && (tag[2] == '-' || tag[2] == '+') ? tag[2] : 0;
        const char *text = src + pos;
        if (sign == '-') {
            dn -= ct_space_back(text, dn);
        } else if (tag && sign != '+' && kind != '{') { /* lstrip_blocks */
            size_t l_pos = dn;
            while (l_pos > 0 && text[l_pos - 1] != '\n') l_pos--;
            if ((l_pos > 0 || line_starting) && dn > l_pos && ct_space_fwd(text + l_pos, dn - l_pos) == dn - l_pos)
                dn = l_pos;
        }
        if (dn && push_tok(P, (token){.k = TK_DATA, .line = line, .s = text, .n = dn})) return LC_FAIL;
        line += count_nl(text, tpos - pos);
        if (!tag) break;
        size_t p = tpos + 2 + (sign ? 1 : 0);
        int tline = line;
        if (kind == '#') {
            size_t e = p, end = 0;
            for (; e + 1 < len; e++) {
                if ((src[e] == '+' || src[e] == '-') && e + 2 < len && src[e + 1] == '#' && src[e + 2] == '}') {
                    end = e + 3;
                    if (src[e] == '-') end += ct_space_fwd(src + end, len - end);
                    break;
                }
                if (src[e] == '#' && src[e + 1] == '}') {
                    end = e + 2;
                    if (end < len && src[end] == '\n') end++;
                    break;
                }
            }
            if (!end) return perr(P, tline, "missing end of comment tag '#}'");
            line += count_nl(src + p, end - p);
            line_starting = src[end - 1] == '\n';
            pos = end;
            continue;
        }
        if (kind == '%') { /* {% raw %} is outside the subset */
            size_t q = p + ct_space_fwd(src + p, len - p);
            if (len - q >= 3 && !memcmp(src + q, "raw", 3) && (q + 3 == len || !isalnum((unsigned char)src[q + 3]) ))
                if (q + 3 == len || src[q + 3] != '_') return perr(P, tline, "unsupported: {%% raw %%} block");
        }
        if (push_tok(P, (token){.k = kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, .line = line})) return LC_FAIL;
        int balance = 0;
        char stack[CT_MAX_DEPTH];
        for (;;) {
            if (p >= len)
                return perr(P, tline, "unexpected end of template: '%s' is not closed",
                            kind == '%' ? "{%" : "{{");
            const char *s = src + p;
            size_t rest = len - p, end = 0;
            if (!balance) {
                if (kind == '%') {
                    if (rest >= 3 && s[0] == '+' && s[1] == '%' && s[2] == '}') end = 3;
                    else if (rest >= 3 && s[0] == '-' && s[1] == '%' && s[2] == '}')
                        end = 3 + ct_space_fwd(s + 3, rest - 3);
                    else if (rest >= 2 && s[0] == '%' && s[1] == '}') end = 2 + (rest > 2 && s[2] == '\n');
                } else {
                    if (rest >= 3 && s[0] == '-' && s[1] == '}' && s[2] == '}')
                        end = 3 + ct_space_fwd(s + 3, rest - 3);
                    else if (rest >= 2 && s[0] == '}' && s[1] == '}') end = 2;
                }
            }
            if (end) {
                if (push_tok(P, (token){.k = kind == '%' ? TK_BLOCK_END : TK_VAR_END, .line = line})) return LC_FAIL;
                line += count_nl(s, end);
                line_starting = s[end - 1] == '\n';
                pos = p + end;
                break;
            }
            size_t w = ct_space_fwd(s, rest);
            if (w) {
                line += count_nl(s, w);
                p += w;
                continue;
            }
            token t = {.line = line};
            size_t used = 0;
            unsigned char c = (unsigned char)s[0];
            if (isdigit(c)) {
                used = lex_number(P, s, rest, line, &t);
            } else if (isalpha(c) || c == '_') {
                while (used < rest && (isalnum((unsigned char)s[used]) || s[used] == '_')) used++;
                t.k = TK_NAME, t.s = s, t.n = used;
            } else if (c == '\'' || c == '"') {
                used = lex_string(P, s, rest, line, &t);
                line += count_nl(s, used);
            } else {
                static const char *const ops2[] = {"//", "**", "==", "!=", ">=", "<="};
                for (int k = 0; k < 6 && !used; k++)
                    if (rest >= 2 && s[0] == ops2[k][0] && s[1] == ops2[k][1]) used = 2;
                if (!used && strchr("+-/*%~[](){}=<>.:|,;", c) && c) used = 1;
                if (!used) {
                    if (c >= 0x80) return perr(P, line, "unexpected character in a tag (non-ASCII names are not supported)");
                    return perr(P, line, "unexpected character '%c' in a tag", c);
                }
                t.k = TK_OP, t.s = s, t.n = used;
                if (used == 1 && (c == '(' || c == '[' || c == '{')) {
                    if (balance == CT_MAX_DEPTH) return perr(P, line, "brackets nested deeper than %d", CT_MAX_DEPTH);
                    stack[balance++] = c == '(' ? ')' : c == '[' ? ']' : '}';
                } else if (used == 1 && (c == ')' || c == ']' || c == '}')) {
                    if (!balance) return perr(P, line, "unexpected '%c'", c);
                    if (stack[--balance] != c) return perr(P, line, "unexpected '%c', expected '%c'", c, stack[balance]);
                }
            }
            if (!used) return LC_FAIL;
            if (push_tok(P, t)) return LC_FAIL;
            p += used;
        }
    }
    return push_tok(P, (token){.k = TK_EOF, .line = line});
}

/* ---- parser --------------------------------------------------------------- */

static token *cur(pstate *P) { return &P->tk[P->pos]; }
static token *peek(pstate *P, int k) {
    int i = P->pos + k;
    return &P->tk[i < P->n_tk ? i : P->n_tk - 1];
}
static int is_op(const token *t, const char *op) {
    return t->k == TK_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n);
}
static int is_name(const token *t, const char *nm) {
    return t->k == TK_NAME && t->n == strlen(nm) && !memcmp(t->s, nm, t->n);
}

static const char *describe(const token *t, char *buf, size_t cap) {
    switch (t->k) {
    case TK_EOF: return "end of template";
    case TK_DATA: return "template text";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_VAR_END: return "'}}'";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_BLOCK_END: return "'%}'";
    case TK_STRING: return "a string";
    case TK_INT: case TK_FLOAT: return "a number";
    default: snprintf(buf, cap, "'%.*s'", (int)(t->n < 40 ? t->n : 40), t->s); return buf;
    }
}

static int expect_op(pstate *P, const char *op) {
    if (is_op(cur(P), op)) {
        P->pos++;
        return LC_OK;
    }
    char b[64];
    return perr(P, cur(P)->line, "expected '%s', found %s", op, describe(cur(P), b, sizeof b));
}

static int expect_kind(pstate *P, int k, const char *what) {
    if (cur(P)->k == k) {
        P->pos++;
        return LC_OK;
    }
    char b[64];
    return perr(P, cur(P)->line, "expected %s, found %s", what, describe(cur(P), b, sizeof b));
}

static ct_node *mk(pstate *P, int kind, int line) {
    ct_node *n = ct_alloc(&P->t->arena, sizeof *n);
    if (!n) {
        perr(P, line, "out of memory");
        return NULL;
    }
    n->kind = kind, n->line = line;
    return n;
}

static const char *dup_name(pstate *P, const token *t) {
    char *s = ct_alloc(&P->t->arena, t->n + 1);
    if (!s) return perr(P, t->line, "out of memory"), NULL;
    memcpy(s, t->s, t->n);
    return s;
}

/* growable node list */
typedef struct {
    ct_node **v;
    int n, cap;
    const char **names;
} nlist;
static int nl_add(pstate *P, nlist *l, ct_node *x, const char *name) {
    if (!x) return LC_FAIL;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 8;
        ct_node **nv = ct_alloc(&P->t->arena, (size_t)cap * sizeof *nv);
        const char **nn = ct_alloc(&P->t->arena, (size_t)cap * sizeof *nn);
        if (!nv || !nn) return perr(P, x->line, "out of memory");
        if (l->n) memcpy(nv, l->v, (size_t)l->n * sizeof *nv), memcpy(nn, l->names, (size_t)l->n * sizeof *nn);
        l->v = nv, l->names = nn, l->cap = cap;
    }
    l->names[l->n] = name;
    l->v[l->n++] = x;
    return LC_OK;
}

static ct_node *parse_expression(pstate *P, int with_condexpr);
static ct_node *parse_tuple(pstate *P, int with_condexpr, int explicit_parens);
static ct_node *parse_unary(pstate *P, int with_filter);
static ct_node *parse_postfix(pstate *P, ct_node *node);

#define ENTER(P, line)                                                                    \
    do {                                                                                  \
        if (++(P)->depth > CT_MAX_DEPTH) {                                                \
            perr(P, line, "expression or blocks nested deeper than %d", CT_MAX_DEPTH);   \
            return NULL;                                                                  \
        }                                                                                 \
    } while (0)
#define LEAVE(P, x) return (P)->depth--, (x)

/* (args) after a callee, filter or test: positional then name=value */
static int parse_args(pstate *P, ct_node *n) {
    nlist pos = {0}, kw = {0};
    if (expect_op(P, "(")) return LC_FAIL;
    while (!is_op(cur(P), ")")) {
        if (pos.n + kw.n && expect_op(P, ",")) return LC_FAIL;
        if (is_op(cur(P), ")")) break; /* trailing comma */
        if (is_op(cur(P), "*") || is_op(cur(P), "**"))
            return perr(P, cur(P)->line, "unsupported: *args / **kwargs in a call");
        if (cur(P)->k == TK_NAME && is_op(peek(P, 1), "=")) {
            const char *nm = dup_name(P, cur(P));
            P->pos += 2;
            if (!nm || nl_add(P, &kw, parse_expression(P, 1), nm)) return LC_FAIL;
        } else {
            if (kw.n) return perr(P, cur(P)->line, "positional argument after a keyword argument");
            if (nl_add(P, &pos, parse_expression(P, 1), NULL)) return LC_FAIL;
        }
    }
    P->pos++;
    n->body = pos.v, n->n_body = pos.n;
    n->alt = kw.v, n->n_alt = kw.n, n->names = kw.names, n->n_names = kw.n;
    return LC_OK;
}

static ct_node *parse_primary(pstate *P) {
    token *t = cur(P);
    int line = t->line;
    ENTER(P, line);
    ct_node *n = NULL;
    if (t->k == TK_NAME) {
        static const char *const consts[] = {"true", "True", "false", "False", "none", "None"};
        for (int k = 0; k < 6; k++)
            if (is_name(t, consts[k])) {
                if (!(n = mk(P, N_CONST, line))) LEAVE(P, NULL);
                n->k = k < 4 ? CT_K_BOOL : CT_K_NONE;
                n->i = k < 2;
            }
        if (!n) {
            if (!(n = mk(P, N_NAME, line)) || !(n->s = dup_name(P, t))) LEAVE(P, NULL);
        }
        P->pos++;
    } else if (t->k == TK_STRING) {
        size_t total = 0;
        int k = 0;
        while (peek(P, k)->k == TK_STRING) total += peek(P, k++)->n;
        char *s = ct_alloc(&P->t->arena, total + 1);
        if (!s || !(n = mk(P, N_CONST, line))) LEAVE(P, (perr(P, line, "out of memory"), NULL));
        size_t o = 0;
        while (cur(P)->k == TK_STRING) memcpy(s + o, cur(P)->s, cur(P)->n), o += cur(P)->n, P->pos++;
        n->k = CT_K_STR, n->s = s, n->sn = o;
    } else if (t->k == TK_INT || t->k == TK_FLOAT) {
        if (!(n = mk(P, N_CONST, line))) LEAVE(P, NULL);
        n->k = t->k == TK_INT ? CT_K_INT : CT_K_FLOAT, n->i = t->i, n->f = t->f;
        P->pos++;
    } else if (is_op(t, "(")) {
        P->pos++;
        n = parse_tuple(P, 1, 1);
        if (!n || expect_op(P, ")")) LEAVE(P, NULL);
    } else if (is_op(t, "[") || is_op(t, "{")) {
        int dict = is_op(t, "{");
        const char *close = dict ? "}" : "]";
        nlist items = {0}, vals = {0};
        P->pos++;
        while (!is_op(cur(P), close)) {
            if (items.n && expect_op(P, ",")) LEAVE(P, NULL);
            if (is_op(cur(P), close)) break;
            if (nl_add(P, &items, parse_expression(P, 1), NULL)) LEAVE(P, NULL);
            if (dict && (expect_op(P, ":") || nl_add(P, &vals, parse_expression(P, 1), NULL))) LEAVE(P, NULL);
        }
        P->pos++;
        if (!(n = mk(P, dict ? N_DICT : N_LIST, line))) LEAVE(P, NULL);
        n->body = items.v, n->n_body = items.n, n->alt = vals.v, n->n_alt = vals.n;
    } else {
        char b[64];
        perr(P, line, "unexpected %s", describe(t, b, sizeof b));
        LEAVE(P, NULL);
    }
    LEAVE(P, n);
}

static ct_node *parse_subscript(pstate *P, ct_node *obj) {
    token *t = cur(P);
    int line = t->line;
    ct_node *n;
    if (is_op(t, ".")) {
        P->pos++;
        token *a = cur(P);
        if (a->k == TK_NAME) {
            if (!(n = mk(P, N_ATTR, line)) || !(n->s = dup_name(P, a))) return NULL;
            n->a = obj;
        } else if (a->k == TK_INT) {
            ct_node *k = mk(P, N_CONST, line);
            if (!k || !(n = mk(P, N_ITEM, line))) return NULL;
            k->k = CT_K_INT, k->i = a->i;
            n->a = obj, n->b = k;
        } else {
            char b[64];
            perr(P, line, "expected an attribute name after '.', found %s", describe(a, b, sizeof b));
            return NULL;
        }
        P->pos++;
        return n;
    }
    P->pos++; /* '[' */
    ct_node *part[3] = {0};
    int is_slice = 0;
    if (!is_op(cur(P), ":")) {
        if (!(part[0] = parse_expression(P, 1))) return NULL;
    }
    if (is_op(cur(P), ":")) {
        is_slice = 1;
        P->pos++;
        if (!is_op(cur(P), "]") && !is_op(cur(P), ":") && !is_op(cur(P), ",") && !(part[1] = parse_expression(P, 1)))
            return NULL;
        if (is_op(cur(P), ":")) {
            P->pos++;
            if (!is_op(cur(P), "]") && !is_op(cur(P), ",") && !(part[2] = parse_expression(P, 1))) return NULL;
        }
    }
    if (is_op(cur(P), ",")) {
        perr(P, cur(P)->line, "unsupported: a tuple of subscripts");
        return NULL;
    }
    if (expect_op(P, "]")) return NULL;
    if (!(n = mk(P, is_slice ? N_SLICE : N_ITEM, line))) return NULL;
    n->a = obj, n->b = part[0], n->c = part[1], n->d = part[2];
    return n;
}

static ct_node *parse_call(pstate *P, ct_node *fn) {
    ct_node *n = mk(P, N_CALL, cur(P)->line);
    if (!n) return NULL;
    n->a = fn;
    if (parse_args(P, n)) return NULL;
    return n;
}

static ct_node *parse_postfix(pstate *P, ct_node *node) {
    while (node) {
        if (is_op(cur(P), ".") || is_op(cur(P), "[")) node = parse_subscript(P, node);
        else if (is_op(cur(P), "(")) node = parse_call(P, node);
        else break;
    }
    return node;
}

static const char *dotted_name(pstate *P) {
    if (cur(P)->k != TK_NAME) {
        char b[64];
        perr(P, cur(P)->line, "expected a name, found %s", describe(cur(P), b, sizeof b));
        return NULL;
    }
    const char *nm = dup_name(P, cur(P));
    P->pos++;
    if (is_op(cur(P), ".")) {
        perr(P, cur(P)->line, "unsupported: dotted filter or test name '%s.'", nm ? nm : "");
        return NULL;
    }
    return nm;
}

static ct_node *parse_filter_expr(pstate *P, ct_node *node) {
    while (node) {
        token *t = cur(P);
        if (is_op(t, "|")) {
            P->pos++;
            ct_node *f = mk(P, N_FILTER, t->line);
            if (!f || !(f->s = dotted_name(P))) return NULL;
            f->a = node;
            if (is_op(cur(P), "(") && parse_args(P, f)) return NULL;
            node = f;
        } else if (is_name(t, "is")) {
            P->pos++;
            int neg = 0;
            if (is_name(cur(P), "not")) neg = 1, P->pos++;
            ct_node *x = mk(P, N_TEST, t->line);
            if (!x || !(x->s = dotted_name(P))) return NULL;
            x->a = node, x->op = neg;
            token *c = cur(P);
            if (is_op(c, "(")) {
                if (parse_args(P, x)) return NULL;
            } else if ((c->k == TK_NAME || c->k == TK_STRING || c->k == TK_INT || c->k == TK_FLOAT ||
                        is_op(c, "(") || is_op(c, "[") || is_op(c, "{")) &&
                       !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
                ct_node *arg = parse_postfix(P, parse_primary(P));
                if (!arg) return NULL;
                x->body = ct_alloc(&P->t->arena, sizeof *x->body);
                if (!x->body) return perr(P, t->line, "out of memory"), NULL;
                x->body[0] = arg, x->n_body = 1;
            }
            node = x;
        } else if (is_op(t, "(")) {
            node = parse_call(P, node);
        } else {
            break;
        }
    }
    return node;
}

static ct_node *parse_unary(pstate *P, int with_filter) {
    token *t = cur(P);
    ENTER(P, t->line);
    ct_node *node;
    if (is_op(t, "-") || is_op(t, "+")) {
        P->pos++;
        node = mk(P, is_op(t, "-") ? N_NEG : N_POS, t->line);
        if (!node || !(node->a = parse_unary(P, 0))) LEAVE(P, NULL);
    } else {
        node = parse_primary(P);
    }
    node = parse_postfix(P, node);
    if (with_filter) node = parse_filter_expr(P, node);
    LEAVE(P, node);
}

static ct_node *binary(pstate *P, int op, ct_node *l, ct_node *r, int line) {
    if (!l || !r) return NULL;
    ct_node *n = mk(P, N_BIN, line);
    if (n) n->op = op, n->a = l, n->b = r;
    return n;
}

static ct_node *parse_pow(pstate *P) {
    ct_node *l = parse_unary(P, 1);
    while (l && is_op(cur(P), "**")) {
        int line = cur(P)->line;
        P->pos++;
        l = binary(P, CT_OP_POW, l, parse_unary(P, 1), line);
    }
    return l;
}

static ct_node *parse_math2(pstate *P) {
    ct_node *l = parse_pow(P);
    for (;;) {
        token *t = cur(P);
        int op = is_op(t, "*") ? CT_OP_MUL : is_op(t, "/") ? CT_OP_DIV : is_op(t, "//") ? CT_OP_FLOORDIV
               : is_op(t, "%") ? CT_OP_MOD : 0;
        if (!op || !l) return l;
        P->pos++;
        l = binary(P, op, l, parse_pow(P), t->line);
    }
}

static ct_node *parse_concat(pstate *P) {
    ct_node *first = parse_math2(P);
    if (!first || !is_op(cur(P), "~")) return first;
    nlist items = {0};
    int line = cur(P)->line;
    if (nl_add(P, &items, first, NULL)) return NULL;
    while (is_op(cur(P), "~")) {
        P->pos++;
        if (nl_add(P, &items, parse_math2(P), NULL)) return NULL;
    }
    ct_node *n = mk(P, N_CONCAT, line);
    if (n) n->body = items.v, n->n_body = items.n;
    return n;
}

static ct_node *parse_math1(pstate *P) {
    ct_node *l = parse_concat(P);
    for (;;) {
        token *t = cur(P);
        int op = is_op(t, "+") ? CT_OP_ADD : is_op(t, "-") ? CT_OP_SUB : 0;
        if (!op || !l) return l;
        P->pos++;
        l = binary(P, op, l, parse_concat(P), t->line);
    }
}

static ct_node *parse_compare(pstate *P) {
    int line = cur(P)->line;
    ct_node *expr = parse_math1(P);
    nlist rhs = {0};
    int ops[64], nops = 0;
    while (expr) {
        token *t = cur(P);
        int op = is_op(t, "==") ? CT_OP_EQ : is_op(t, "!=") ? CT_OP_NE : is_op(t, "<") ? CT_OP_LT
               : is_op(t, "<=") ? CT_OP_LE : is_op(t, ">") ? CT_OP_GT : is_op(t, ">=") ? CT_OP_GE
               : is_name(t, "in") ? CT_OP_IN : 0;
        if (!op && is_name(t, "not") && is_name(peek(P, 1), "in")) op = CT_OP_NOTIN, P->pos++;
        if (!op) break;
        if (nops == 64) return perr(P, t->line, "more than 64 chained comparisons"), NULL;
        P->pos++;
        ops[nops++] = op;
        if (nl_add(P, &rhs, parse_math1(P), NULL)) return NULL;
    }
    if (!expr || !nops) return expr;
    ct_node *n = mk(P, N_COMPARE, line);
    if (!n || !(n->ops = ct_alloc(&P->t->arena, sizeof(int) * (size_t)nops))) return NULL;
    memcpy(n->ops, ops, sizeof(int) * (size_t)nops);
    n->a = expr, n->body = rhs.v, n->n_body = rhs.n;
    return n;
}

static ct_node *parse_not(pstate *P) {
    if (is_name(cur(P), "not")) {
        int line = cur(P)->line;
        ENTER(P, line);
        P->pos++;
        ct_node *n = mk(P, N_NOT, line);
        if (!n || !(n->a = parse_not(P))) LEAVE(P, NULL);
        LEAVE(P, n);
    }
    return parse_compare(P);
}

static ct_node *parse_and(pstate *P) {
    ct_node *l = parse_not(P);
    while (l && is_name(cur(P), "and")) {
        ct_node *n = mk(P, N_AND, cur(P)->line);
        P->pos++;
        if (!n || !(n->b = parse_not(P))) return NULL;
        n->a = l, l = n;
    }
    return l;
}

static ct_node *parse_or(pstate *P) {
    ct_node *l = parse_and(P);
    while (l && is_name(cur(P), "or")) {
        ct_node *n = mk(P, N_OR, cur(P)->line);
        P->pos++;
        if (!n || !(n->b = parse_and(P))) return NULL;
        n->a = l, l = n;
    }
    return l;
}

static ct_node *parse_condexpr(pstate *P) {
    int line = cur(P)->line;
    ENTER(P, line);
    ct_node *e1 = parse_or(P);
    while (e1 && is_name(cur(P), "if")) {
        P->pos++;
        ct_node *n = mk(P, N_COND, line);
        if (!n || !(n->a = parse_or(P))) LEAVE(P, NULL);
        n->b = e1;
        if (is_name(cur(P), "else")) {
            P->pos++;
            if (!(n->c = parse_condexpr(P))) LEAVE(P, NULL);
        }
        e1 = n;
    }
    LEAVE(P, e1);
}

static ct_node *parse_expression(pstate *P, int with_condexpr) {
    return with_condexpr ? parse_condexpr(P) : parse_or(P);
}

/* expr (, expr)* -> one expression or a tuple; stops before the tokens that
 * end a tuple (Jinja's parse_tuple) */
static int tuple_end(pstate *P, int explicit_parens) {
    token *t = cur(P);
    if (t->k == TK_VAR_END || t->k == TK_BLOCK_END || t->k == TK_EOF) return 1;
    if (explicit_parens && is_op(t, ")")) return 1;
    return 0;
}

static ct_node *parse_tuple(pstate *P, int with_condexpr, int explicit_parens) {
    int line = cur(P)->line;
    nlist items = {0};
    int is_tuple = 0;
    for (;;) {
        if (items.n) {
            if (!is_op(cur(P), ",")) break;
            P->pos++;
            is_tuple = 1;
        }
        if (tuple_end(P, explicit_parens) || (!with_condexpr && is_name(cur(P), "if"))) break;
        if (nl_add(P, &items, parse_expression(P, with_condexpr), NULL)) return NULL;
    }
    if (!is_tuple && items.n == 1) return items.v[0];
    if (!items.n && !explicit_parens) {
        char b[64];
        return perr(P, line, "expected an expression, found %s", describe(cur(P), b, sizeof b)), NULL;
    }
    ct_node *n = mk(P, N_TUPLE, line);
    if (n) n->body = items.v, n->n_body = items.n;
    return n;
}

/* ---- statements --------------------------------------------------------------- */

static int parse_body(pstate *P, const char *const *ends, int n_ends, nlist *out, int *which, int open_line,
                      const char *open_tag);

static ct_node *parse_stmt_body(pstate *P, ct_node *n, const char *const *ends, int n_ends, int *which,
                                const char *tag) {
    nlist body = {0};
    if (parse_body(P, ends, n_ends, &body, which, n->line, tag)) return NULL;
    n->body = body.v, n->n_body = body.n;
    return n;
}

/* names of an assignment / loop target: a, or a, b (optionally in parens) */
static int parse_targets(pstate *P, ct_node *n, const char *stmt) {
    nlist dummy = {0};
    int paren = is_op(cur(P), "(");
    if (paren) P->pos++;
    do {
        if (dummy.n) P->pos++;
        if (cur(P)->k != TK_NAME) {
            char b[64];
            return perr(P, cur(P)->line, "%s: expected a variable name, found %s", stmt,
                        describe(cur(P), b, sizeof b));
        }
        const char *nm = dup_name(P, cur(P));
        if (!nm) return LC_FAIL;
        static const char *const reserved[] = {"true", "false", "none", "True", "False", "None"};
        for (int k = 0; k < 6; k++)
            if (!strcmp(nm, reserved[k])) return perr(P, cur(P)->line, "%s: cannot assign to '%s'", stmt, nm);
        P->pos++;
        if (nl_add(P, &dummy, n, nm)) return LC_FAIL;
    } while (is_op(cur(P), ","));
    if (paren && expect_op(P, ")")) return LC_FAIL;
    n->names = dummy.names, n->n_names = dummy.n;
    return LC_OK;
}

static ct_node *parse_if(pstate *P, int line) {
    ct_node *n = mk(P, N_IF, line);
    if (!n || !(n->a = parse_tuple(P, 1, 0)) || expect_kind(P, TK_BLOCK_END, "'%}'")) return NULL;
    static const char *const ends[] = {"elif", "else", "endif"};
    int which;
    if (!parse_stmt_body(P, n, ends, 3, &which, "if")) return NULL;
    if (which == 0) { /* elif: a nested if as the else branch */
        ct_node *e = parse_if(P, peek(P, -1)->line);
        if (!e || !(n->alt = ct_alloc(&P->t->arena, sizeof *n->alt))) return NULL;
        n->alt[0] = e, n->n_alt = 1;
        return n;
    }
    if (which == 1) {
        if (expect_kind(P, TK_BLOCK_END, "'%}'")) return NULL;
        nlist alt = {0};
        static const char *const ends2[] = {"endif"};
        if (parse_body(P, ends2, 1, &alt, &which, line, "if")) return NULL;
        n->alt = alt.v, n->n_alt = alt.n;
    }
    if (expect_kind(P, TK_BLOCK_END, "'%}'")) return NULL;
    return n;
}

static ct_node *parse_for(pstate *P, int line) {
    ct_node *n = mk(P, N_FOR, line);
    if (!n || parse_targets(P, n, "for")) return NULL;
    if (!is_name(cur(P), "in")) {
        char b[64];
        perr(P, cur(P)->line, "for: expected 'in', found %s", describe(cur(P), b, sizeof b));
        return NULL;
    }
    P->pos++;
    if (!(n->a = parse_tuple(P, 0, 0))) return NULL;
    if (is_name(cur(P), "if")) {
        P->pos++;
        if (!(n->b = parse_expression(P, 1))) return NULL;
    }
    if (is_name(cur(P), "recursive")) return perr(P, cur(P)->line, "unsupported: recursive for loops"), NULL;
    if (expect_kind(P, TK_BLOCK_END, "'%}'")) return NULL;
    static const char *const ends[] = {"else", "endfor"};
    int which;
    P->loops++;
    if (!parse_stmt_body(P, n, ends, 2, &which, "for")) return NULL;
    P->loops--;
    if (which == 0) {
        if (expect_kind(P, TK_BLOCK_END, "'%}'")) return NULL;
        nlist alt = {0};
        static const char *const ends2[] = {"endfor"};
        if (parse_body(P, ends2, 1, &alt, &which, line, "for")) return NULL;
        n->alt = alt.v, n->n_alt = alt.n;
    }
    if (expect_kind(P, TK_BLOCK_END, "'%}'")) return NULL;
    return n;
}

static ct_node *parse_set(pstate *P, int line) {
    if (cur(P)->k == TK_NAME && is_op(peek(P, 1), ".") && peek(P, 2)->k == TK_NAME) {
        ct_node *n = mk(P, N_SET_ATTR, line);
        if (!n || !(n->s = dup_name(P, cur(P))) || !(n->s2 = dup_name(P, peek(P, 2)))) return NULL;
        P->pos += 3;
        if (expect_op(P, "=") || !(n->a = parse_tuple(P, 1, 0)) || expect_kind(P, TK_BLOCK_END, "'%}'"))
            return NULL;
        return n;
    }
    ct_node *n = mk(P, N_SET, line);
    if (!n || parse_targets(P, n, "set")) return NULL;
    if (!is_op(cur(P), "=")) {
        if (cur(P)->k == TK_BLOCK_END || is_op(cur(P), "|"))
            return perr(P, line, "unsupported: block assignment {%% set %s %%}...{%% endset %%}", n->names[0]), NULL;
        char b[64];
        return perr(P, cur(P)->line, "set: expected '=', found %s", describe(cur(P), b, sizeof b)), NULL;
    }
    P->pos++;
    if (!(n->a = parse_tuple(P, 1, 0)) || expect_kind(P, TK_BLOCK_END, "'%}'")) return NULL;
    return n;
}

static int parse_body(pstate *P, const char *const *ends, int n_ends, nlist *out, int *which, int open_line,
                      const char *open_tag) {
    if (++P->depth > CT_MAX_DEPTH) return perr(P, open_line, "blocks nested deeper than %d", CT_MAX_DEPTH);
    for (;;) {
        token *t = cur(P);
        if (t->k == TK_EOF) {
            if (!n_ends) break;
            return perr(P, open_line, "{%% %s %%} is not closed (missing {%% %s %%})", open_tag, ends[n_ends - 1]);
        }
        if (t->k == TK_DATA) {
            ct_node *n = mk(P, N_DATA, t->line);
            if (!n) return LC_FAIL;
            n->s = t->s, n->sn = t->n;
            P->pos++;
            if (nl_add(P, out, n, NULL)) return LC_FAIL;
            continue;
        }
        if (t->k == TK_VAR_BEGIN) {
            P->pos++;
            ct_node *n = mk(P, N_PRINT, t->line);
            if (!n || !(n->a = parse_tuple(P, 1, 0)) || expect_kind(P, TK_VAR_END, "'}}'")) return LC_FAIL;
            if (nl_add(P, out, n, NULL)) return LC_FAIL;
            continue;
        }
        if (t->k != TK_BLOCK_BEGIN) {
            char b[64];
            return perr(P, t->line, "unexpected %s", describe(t, b, sizeof b));
        }
        token *nm = peek(P, 1);
        if (nm->k != TK_NAME) {
            char b[64];
            return perr(P, nm->line, "expected a statement name after '{%%', found %s", describe(nm, b, sizeof b));
        }
        int line = nm->line;
        for (int k = 0; k < n_ends; k++)
            if (is_name(nm, ends[k])) {
                *which = k;
                P->pos += 2;
                P->depth--;
                return LC_OK;
            }
        P->pos += 2;
        ct_node *n = NULL;
        if (is_name(nm, "if")) n = parse_if(P, line);
        else if (is_name(nm, "for")) n = parse_for(P, line);
        else if (is_name(nm, "set")) n = parse_set(P, line);
        else if (is_name(nm, "break") || is_name(nm, "continue")) {
            if (!P->loops) return perr(P, line, "'%.*s' outside a for loop", (int)nm->n, nm->s);
            if (!(n = mk(P, is_name(nm, "break") ? N_BREAK : N_CONTINUE, line)) ||
                expect_kind(P, TK_BLOCK_END, "'%}'"))
                return LC_FAIL;
        } else {
            static const char *const known[] = {"macro", "call", "filter", "include", "import", "from",
                                                "extends", "block", "with", "autoescape", "raw", "do",
                                                "generation", "trans"};
            for (size_t k = 0; k < sizeof known / sizeof *known; k++)
                if (is_name(nm, known[k]))
                    return perr(P, line, "unsupported statement {%% %s %%}", known[k]);
            if (nm->n > 3 && !memcmp(nm->s, "end", 3))
                return perr(P, line, "unexpected {%% %.*s %%}%s%s", (int)nm->n, nm->s,
                            n_ends ? " inside {% " : "", n_ends ? open_tag : "");
            if (n_ends && (is_name(nm, "elif") || is_name(nm, "else")))
                return perr(P, line, "unexpected {%% %.*s %%} inside {%% %s %%}", (int)nm->n, nm->s, open_tag);
            return perr(P, line, "unknown statement {%% %.*s %%}", (int)nm->n, nm->s);
        }
        if (!n || nl_add(P, out, n, NULL)) return LC_FAIL;
    }
    P->depth--;
    return LC_OK;
}

int chat_template_parse(chat_template **out, const char *src, const char *name, lc_err *err) {
    *out = NULL;
    size_t n = strlen(src);
    if (n > CT_MAX_SOURCE)
        return lc_errf(err, "%s: chat template of %zu bytes is larger than the %u-byte limit", name, n, CT_MAX_SOURCE);
    chat_template *t = calloc(1, sizeof *t);
    if (!t) return lc_errf(err, "%s: out of memory", name);
    snprintf(t->name, sizeof t->name, "%s", name);
    pstate P = {.t = t, .err = err};
    /* newlines normalised to \n, one trailing newline dropped (Jinja's
     * defaults); the text lives in the arena and tokens point into it */
    char *s = ct_alloc(&t->arena, n + 1);
    if (!s) {
        free(t);
        return lc_errf(err, "%s: out of memory", name);
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            s[o++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n') i++;
        } else {
            s[o++] = src[i];
        }
    }
    if (o && s[o - 1] == '\n') o--;
    s[o] = 0;
    P.src = s, P.len = o;
    nlist body = {0};
    int which = 0;
    int rc = lex(&P);
    if (!rc) rc = parse_body(&P, NULL, 0, &body, &which, 1, "");
    free(P.tk);
    if (rc) {
        chat_template_free(t);
        return LC_FAIL;
    }
    t->body = body.v, t->n_body = body.n;
    *out = t;
    return LC_OK;
}

void chat_template_free(chat_template *t) {
    if (!t) return;
    ct_arena_free(&t->arena);
    free(t);
}
