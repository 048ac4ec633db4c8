/* fuzz.h: what the libFuzzer harnesses in tests/fuzz/ share.
 *
 * Every harness is one file fuzz_<name>.c defining LLVMFuzzerTestOneInput:
 * it hands the input to one of our readers of outside bytes and checks
 * that the reader either succeeds or fails with a message, and never
 * crashes, leaks, hangs or runs into undefined behaviour (the sanitizers
 * stop on the first error). Built two ways (CMakeLists.txt):
 *   - with -DLC_FUZZ=ON and clang: a libFuzzer binary (scripts/fuzz.sh);
 *   - otherwise: the same harness over replay.c's main, which runs it on
 *     every file of the folders it is given; ctest replays the committed
 *     seed corpus and regression inputs (tests/fuzz/corpus/<name>,
 *     tests/fuzz/regress/<name>) with it, under ASan/UBSan in test.sh.
 *
 * Readers take paths, so a harness writes the input to files in a private
 * folder (fz_path). Inputs made of several files (a folder, a sharded
 * model) are split at the line FZ_SEP. */
#ifndef LC_FUZZ_H
#define LC_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#define FZ_SEP "\n--8<--\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The harness's private folder (made once, removed at exit) and
 * "<folder>/<name>" in a static buffer of FZ_PATH_MAX bytes per slot
 * (slots 0..7, so several paths can be live at once). */
#define FZ_PATH_MAX 512
const char *fz_dir(void);
const char *fz_path(int slot, const char *name);
/* Writes n bytes to fz_path(slot, name) and returns that path; aborts if
 * the file cannot be written (the harness, not the reader, failed). */
const char *fz_write(int slot, const char *name, const void *data, size_t n);
/* Removes a file of the folder (ignores a missing one). */
void fz_unlink(const char *name);
/* Splits data at FZ_SEP into at most max parts; returns how many. Part i
 * is parts[i], lens[i] bytes (not NUL-terminated). */
int fz_split(const uint8_t *data, size_t size, const uint8_t **parts, size_t *lens, int max);
/* A NUL-terminated copy (malloc'd). */
char *fz_strndup(const uint8_t *p, size_t n);



/* The small base the adapter and bundle harnesses and the seeds share:
 * llama, dim 32, 2 layers, 4 heads (2 KV heads) of 8, hidden 32, vocab 262
 * (the byte tokenizer's). */
#include "model.h"
#include "tokenizer.h"
void fz_tiny_config(model_config *c);
/* That base with fixed random weights, made once (owned by fuzzutil). */
model *fz_tiny_model(void);
/* A byte-level BPE tokenizer (the 256 bytes, a few merges, <s> and </s>),
 * made once (owned by fuzzutil). */
const tokenizer *fz_byte_tokenizer(void);
#endif
