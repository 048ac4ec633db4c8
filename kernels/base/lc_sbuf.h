/* lc_sbuf.h: the one growable text buffer (data sets, prompt templates,
 * tokenizers). The text stays NUL-terminated; the buffer is freed with
 * free(b.p). A zero-initialised lc_sbuf is empty. */
#ifndef LC_SBUF_H
#define LC_SBUF_H

#include <stddef.h>

typedef struct {
    char *p;
    size_t n, cap; /* n bytes of text, cap bytes allocated (> n once used) */
} lc_sbuf;

/* Appends d[0..n) (n may be 0: p is then allocated and "" at least).
 * Returns LC_OK, or LC_FAIL when out of memory (the buffer is unchanged). */
int lc_sbuf_put(lc_sbuf *b, const void *d, size_t n);

#endif
