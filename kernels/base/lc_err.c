#include "lc_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int lc_errf(lc_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return LC_FAIL;
}

int lc_err_prefix(lc_err *err, const char *fmt, ...) {
    if (!err) return LC_FAIL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t np = strlen(prefix), cap = sizeof err->msg - 1;
    if (np > cap) np = cap;
    memcpy(err->msg, prefix, np);
    size_t no = strnlen(old, sizeof old - 1);
    if (no > cap - np) no = cap - np;
    memcpy(err->msg + np, old, no);
    err->msg[np + no] = 0;
    return LC_FAIL;
}

void *lc_malloc(size_t n, lc_err *err) {
    void *p = malloc(n ? n : 1);
    if (!p) lc_errf(err, "out of memory allocating %zu bytes", n);
    return p;
}

void *lc_calloc(size_t count, size_t size, lc_err *err) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) lc_errf(err, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

/* Blocks under 2 MB come from calloc; larger ones are 2 MB aligned (at most
 * one huge page partly unused), advised
 * for transparent huge pages and zeroed here: filling a 60 MB model
 * (stories15M) took 16k page faults and 0.3 s on a 2-core VM with 4 kB
 * pages, and a page fault costs more again where the VM is nested; the
 * kernels stream these blocks, so fewer TLB misses help there too. The
 * 8 MB of a 110M-shape GGUF's copied q/k rows took 15 ms to fill in 4 kB
 * pages there (populated first) and 4 ms in huge pages. */
void *lc_calloc_big(size_t count, size_t size, lc_err *err) {
    const size_t huge = (size_t)2 << 20;
    if (size && count > ((size_t)-1 - huge) / size) {
        lc_errf(err, "out of memory allocating %zu x %zu bytes", count, size);
        return NULL;
    }
    const size_t bytes = count * size;
    if (bytes < huge) return lc_calloc(count, size, err);
    const size_t rounded = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, rounded);
    if (!p) {
        lc_errf(err, "out of memory allocating %zu bytes", rounded);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE); /* advice only: failure is harmless */
#endif
    memset(p, 0, bytes);
    return p;
}
