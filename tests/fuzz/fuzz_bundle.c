/* fuzz_bundle.c: an on-device bundle (export/BUNDLE.md: header, manifest
 * JSON, tensor table, CRCs, f16/i8 tensors with scales) through
 * bundle_open, its base check and every task loaded on the small base of
 * fuzz.h (merges, calibrations, learned coefficients). */
#include <stdlib.h>

#include "bundle.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write(0, "b.lcb", data, size);
    bundle *b = NULL;
    lc_err err;
    if (bundle_open(&b, path, &err)) return 0;
    model *base = fz_tiny_model();
    (void)bundle_check_base_quick(b, base, &err);
    int n = 0;
    const char **names = bundle_task_names(b, &n);
    for (int i = 0; names && i < n; i++) {
        bundle_task t;
        if (bundle_task_load_checked(b, base, names[i], &t, &err) == 0) bundle_task_free(&t);
    }
    free(names);
    bundle_close(b);
    return 0;
}
