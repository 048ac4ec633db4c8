/* template.h: the prompt and target templates of data sets and tasks:
 * "{field}" placeholders, "{{" and "}}" for literal braces. Parsed here once
 * for the data set loader (dataset.c) and the task prompts of bundles
 * (generate, the on-device runtime), so both apply the same rule. */
#ifndef TEMPLATE_H
#define TEMPLATE_H

#include <stddef.h>

#include "lc_err.h"

typedef struct {
    int is_field; /* 1: s is a field name; 0: s is literal text */
    char *s;
    size_t len;
} tseg;

typedef struct {
    tseg *seg;
    int n;
} tmpl;

/* Parses src; a lone "}", an unclosed "{", "{}" and a "{" inside a
 * placeholder are errors naming `which` and the byte. */
int tmpl_parse(tmpl *t, const char *src, const char *which, lc_err *err);
void tmpl_free(tmpl *t);

/* A task's prompt: src with every placeholder replaced by value. The
 * placeholders must all name one field (a template with two different
 * fields cannot be filled from one text: the error says so). *out is
 * malloc'd. */
int tmpl_fill_one(const char *src, const char *value, const char *which, char **out, lc_err *err);

#endif
