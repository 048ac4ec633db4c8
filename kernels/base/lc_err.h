/* lc_err.h: the error convention shared by the whole project.
 *
 * Every function that can fail returns LC_OK (0) or LC_FAIL (-1) and, on
 * failure, fills an lc_err with one line naming the file, the tensor or key
 * path, and what was expected versus what was found. Programs print it on
 * stderr and exit non-zero. Nothing aborts on user input. */
#ifndef LC_ERR_H
#define LC_ERR_H

#include <stddef.h>

#define LC_OK 0
#define LC_FAIL (-1)

typedef struct {
    char msg[1024];
} lc_err;

/* Formats into err->msg (if err is non-NULL) and returns LC_FAIL, so that
 * `return lc_errf(err, "...")` reads naturally. */
int lc_errf(lc_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefixes the existing message with more context ("file.json: " + msg). */
int lc_err_prefix(lc_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Allocation helpers that report through lc_err instead of crashing. */
void *lc_malloc(size_t n, lc_err *err);
void *lc_calloc(size_t count, size_t size, lc_err *err);
/* lc_calloc for a tensor block (weights, a LoRA, gradients): from 2 MB on,
 * 2 MB aligned and advised for huge pages (far fewer page faults when it
 * is filled). Released with free(). */
void *lc_calloc_big(size_t count, size_t size, lc_err *err);

#endif
