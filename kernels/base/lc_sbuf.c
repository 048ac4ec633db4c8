/* lc_sbuf.c: see lc_sbuf.h. */
#include "lc_sbuf.h"

#include <stdlib.h>
#include <string.h>

#include "lc_err.h"

int lc_sbuf_put(lc_sbuf *b, const void *d, size_t n) {
    if (n > (size_t)-1 / 2 - b->n) return LC_FAIL;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return LC_FAIL;
        b->p = p, b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
    return LC_OK;
}
