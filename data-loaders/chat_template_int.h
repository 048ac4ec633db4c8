/* chat_template_int.h: what the chat-template parser (chat_template_parse.c:
 * lexer and parser to a syntax tree) and the evaluator (chat_template.c)
 * share. Not a public interface. */
#ifndef CHAT_TEMPLATE_INT_H
#define CHAT_TEMPLATE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "chat_template.h"

#define CT_MAX_SOURCE (1u << 20)      /* template bytes */
#define CT_MAX_DEPTH 128              /* nesting of expressions and blocks */
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

#endif
