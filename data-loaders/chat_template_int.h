/* chat_template_int.h: what the chat-template parser (chat_template_parse.c:
 * lexer and parser to a syntax tree), the values (chat_template_value.c)
 * and the evaluator (chat_template.c) share. Not a public interface. */
#ifndef CHAT_TEMPLATE_INT_H
#define CHAT_TEMPLATE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "chat_template.h"

#define CT_MAX_SOURCE (1u << 20)      /* template bytes */
#define CT_MAX_DEPTH 128              /* nesting of expressions and blocks */
#define CT_MAX_EVAL_DEPTH 1024        /* expression trees (a+b+c... chains) */
#define CT_MAX_STEPS 1000000L         /* loop iterations plus statements run */
#define CT_MAX_OUTPUT (16u << 20)     /* rendered bytes */
#define CT_MAX_MEMORY (256u << 20)    /* values made while rendering */
#define CT_MAX_RANGE 100000           /* range() length, as Jinja's sandbox */

/* ---- an arena: everything of one parse or one render ------------------- */
typedef struct ct_chunk ct_chunk;
typedef struct {
    ct_chunk *head;
    size_t total, limit;
} ct_arena;
void *ct_alloc(ct_arena *a, size_t n); /* zeroed; NULL past the limit or on OOM */
void ct_arena_free(ct_arena *a);

/* Python's str.isspace() for one code point (also Python re's \s). */
int ct_py_space(uint32_t cp);
/* Bytes of whitespace at the start / end of s[0..n) (whole UTF-8 chars). */
size_t ct_space_fwd(const char *s, size_t n);
size_t ct_space_back(const char *s, size_t n);

/* ---- syntax tree ---------------------------------------------------------- */
enum {
    /* statements */
    N_DATA = 1, /* s, sn: literal text */
    N_PRINT,    /* a */
    N_IF,       /* a = test, body = then, alt = else */
    N_FOR,      /* names = targets, a = iterable, b = filter or NULL, body, alt = else */
    N_SET,      /* names = targets (one, or a tuple); a = value */
    N_SET_ATTR, /* s = namespace variable, s2 = attribute, a = value */
    N_BREAK,
    N_CONTINUE,
    /* expressions */
    N_CONST,  /* v_* below */
    N_NAME,   /* s */
    N_ATTR,   /* a.s */
    N_ITEM,   /* a[b] */
    N_SLICE,  /* a[b:c:d], each may be NULL */
    N_CALL,   /* a(body..., names[i]=alt[i]...) */
    N_FILTER, /* a | s(body..., names=alt...) */
    N_TEST,   /* a is [not] s(body...); op = 1 when negated */
    N_NEG,
    N_POS,
    N_NOT,
    N_AND,
    N_OR,
    N_BIN,     /* a op b, op one of the CT_OP_ below */
    N_COMPARE, /* a, then body[i] with ops[i] (chained) */
    N_COND,    /* b if a else c (c may be NULL: undefined) */
    N_LIST,    /* body */
    N_TUPLE,   /* body */
    N_DICT,    /* body = keys, alt = values */
    N_CONCAT,  /* body joined with ~ */
};
enum {
    CT_OP_ADD = 1, CT_OP_SUB, CT_OP_MUL, CT_OP_DIV, CT_OP_FLOORDIV, CT_OP_MOD, CT_OP_POW,
    CT_OP_EQ, CT_OP_NE, CT_OP_LT, CT_OP_LE, CT_OP_GT, CT_OP_GE, CT_OP_IN, CT_OP_NOTIN,
};
enum { CT_K_NONE = 0, CT_K_BOOL, CT_K_INT, CT_K_FLOAT, CT_K_STR }; /* N_CONST kinds */

typedef struct ct_node ct_node;
struct ct_node {
    int kind, line, op;
    ct_node *a, *b, *c, *d;
    ct_node **body, **alt;
    int n_body, n_alt;
    const char **names; /* for / set targets, kwarg names */
    int n_names;
    int *ops;           /* N_COMPARE */
    const char *s, *s2;
    size_t sn;
    int k;              /* N_CONST kind */
    int64_t i;
    double f;
};

struct chat_template {
    ct_arena arena;
    ct_node **body;
    int n_body;
    char name[512];
};

/* ---- values (chat_template_value.c) ----------------------------------------- */

enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_FUNC, V_LOOP };
enum { F_RANGE = 1, F_NAMESPACE, F_DICT, F_RAISE, F_STRFTIME };

typedef struct vlist vlist;
typedef struct vdict vdict;
typedef struct vloop vloop;
typedef struct {
    int t;
    union {
        int64_t i; /* bool, int, func id */
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        vlist *l;
        vdict *d;
        vloop *lp;
    };
    const char *why; /* V_UNDEF: what is undefined, for errors */
} val;
struct vlist {
    size_t n;
    val *v;
    int tuple;
};
struct vdict {
    size_t n, cap;
    val *k, *v;
};
struct vloop { /* the `loop` of a for loop, iteration i of n */
    size_t i, n;
    const vlist *items;
};

/* one render: its output, arena, step count and first error */
typedef struct {
    const chat_template *t;
    lc_err *err;
    ct_arena A;
    char *out;
    size_t n_out, cap_out;
    long steps;
    int depth; /* of nested expression evaluations */
    int failed;
} rstate;

static inline val V(int t) { return (val){.t = t}; }
static inline val vbool(int b) { return (val){.t = V_BOOL, .i = !!b}; }
static inline val vint(int64_t i) { return (val){.t = V_INT, .i = i}; }
static inline val vfloat(double f) { return (val){.t = V_FLOAT, .f = f}; }
static inline val vstr(const char *p, size_t n) { return (val){.t = V_STR, .s = {p, n}}; }
static inline val vundef(const char *why) { return (val){.t = V_UNDEF, .why = why}; }
/* a failed evaluation (the error is in the rstate) */
#define VFAIL ((val){.t = -1})
#define FAILED(v) ((v).t < 0)
static inline int is_num(const val *v) { return v->t == V_BOOL || v->t == V_INT || v->t == V_FLOAT; }
static inline double num(const val *v) { return v->t == V_FLOAT ? v->f : (double)v->i; }

typedef struct {
    rstate *R;
    char *p;
    size_t n, cap;
    int line;
} sb;

typedef struct {
    int ensure_ascii, indent, sort_keys; /* indent < 0: none */
    const char *item_sep, *key_sep;
} json_opts;

/* errors "<template>: line N: <what>", the one error rule of the parser and
 * the renderer: only the first error of a parse or a render is kept
 * (*failed is then set); returns LC_FAIL. ct_rerr(R, line, fmt, ...) is it
 * for a render (rstate), the parser's perr for a parse (pstate). */
int ct_err_at(int *failed, lc_err *err, const char *name, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define ct_rerr(R, line, ...) ct_err_at(&(R)->failed, (R)->err, (R)->t->name, (line), __VA_ARGS__)
/* allocation from the render's arena, an error past its limit */
void *ct_ralloc(rstate *R, size_t n, int line);
const char *ct_type_name(const val *v); /* Python's type names */
int ct_undef_err(rstate *R, int line, const val *v);
val ct_mkstr(rstate *R, const char *a, size_t na, const char *b, size_t nb, int line); /* a + b, copied */
val ct_mklist(rstate *R, size_t n, int line);
int ct_dict_set(rstate *R, vdict *d, val k, val v, int line);
const val *ct_dict_get(const vdict *d, const val *k);
const val *ct_dict_gets(const vdict *d, const char *k);
int ct_val_eq(const val *a, const val *b); /* Python's == */
int ct_truthy(const val *v);               /* Python's bool() */
size_t ct_cp_len(const char *s, size_t n); /* code points */
size_t ct_cp_off(const char *s, size_t n, size_t k);
int ct_has_non_ascii(const char *s, size_t n);
int ct_str_cmp(const val *a, const val *b);
/* growable strings in the arena */
int ct_sb_add(sb *b, const char *s, size_t n);
int ct_sb_puts(sb *b, const char *s);
int ct_put_str(sb *b, const val *v, int depth); /* Python's str() */
int ct_put_json(sb *b, const val *v, const json_opts *o, int level); /* json.dumps */
val ct_from_json(rstate *R, const cJSON *j, int depth);

#endif
