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

/* Tools the tests compare against, which scripts/setup.sh installs and CI
 * has: a missing one FAILS the test (it never skips), naming the tool and
 * what provides it. Only ../shared may be absent (TU_REQUIRE_SHARED).
 *   tu_require(probe, what, provider): probe is a shell command that exits 0
 *     when the tool is there (its output is discarded);
 *   tu_require_python("torch, numpy", "python3-torch python3-numpy"):
 *     /usr/bin/python3 can import the modules (Debian packages named);
 *   tu_require_npm("js-rouge"): node runs and tests/js/node_modules/<package>
 *     is installed (npm ci in tests/js). */
void tu_require(const char *probe, const char *what, const char *provider);
void tu_require_python(const char *modules, const char *debian_packages);
void tu_require_npm(const char *package);

/* Path of a program built to <build>/bin (LC_BINARY_DIR). */
const char *tu_bin(const char *name);

/* A fixture folder made once and reused by every test of a binary
 * (Criterion forks one process per test) and by later runs:
 * <build>/test-cache/<name>-<key>, where key is an FNV-1a hash of cmd and of
 * the bytes of the files in `inputs` (NULL-terminated; a missing file hashes
 * as missing, so the key also changes when a tool is removed). When absent it
 * runs `cmd '<new folder>'` (stdout and stderr to <build>/test-cache/<name>.log),
 * renames the folder into place only on success, and removes older
 * <name>-* folders. A failing cmd fails the test, naming the log and
 * `provider` (what the generator needs). Returns the folder. */
const char *tu_cached_fixture(const char *name, const char *const *inputs, const char *cmd,
                              const char *provider);

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
/* The same byte tokens, then V - 259 merge pieces (" t", "he", ...) with
 * falling scores: a llama2.c tokenizer of V entries. 0 on success. */
int tu_write_merge_tokenizer(const char *path, int V);

/* Normwise relative error: max|a-b| / max(max|b|, 1e-30). */
double tu_rel_err_f32_f64(const float *a, const double *b, size_t n);
double tu_rel_err_f32(const float *a, const float *b, size_t n);

#endif
