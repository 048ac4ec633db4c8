/* Helpers shared by the Criterion tests. */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stddef.h>

/* The project's source dir (LC_SOURCE_DIR). */
const char *tu_source_dir(void);
/* ../shared/assets beside the checkout, or NULL when absent. Tests that need
 * it call TU_REQUIRE_SHARED() which skips with a visible message. */
const char *tu_shared_assets(void);
#define TU_REQUIRE_SHARED()                                                   \
    do {                                                                      \
        if (!tu_shared_assets())                                              \
            cr_skip_test("SKIP: ../shared/assets not found next to the "      \
                         "checkout; this test needs the real assets");        \
    } while (0)

/* Path of a program built to <build>/bin (LC_BINARY_DIR). */
const char *tu_bin(const char *name);

/* A fresh temporary directory (removed by the OS; tests keep it small). */
const char *tu_tmpdir(void);
/* Writes bytes to path; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t n);
/* Runs a shell command, returns its exit status (-1 if it did not exit). */
int tu_system(const char *cmd);
/* Runs cmd, captures stdout into a malloc'd NUL-terminated string. */
char *tu_capture(const char *cmd, int *status);

/* A llama2.c tokenizer file with <unk>, <s>, </s> and the 256 byte tokens
 * <0x00>..<0xFF> (259 pieces, no merges); returns 0 on success. */
int tu_write_byte_tokenizer(const char *path);

/* Normwise relative error: max|a-b| / max(max|b|, 1e-30). */
double tu_rel_err_f32_f64(const float *a, const double *b, size_t n);
double tu_rel_err_f32(const float *a, const float *b, size_t n);

#endif
