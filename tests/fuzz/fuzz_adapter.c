/* fuzz_adapter.c: what users download as adapters and calibrations: a PEFT
 * folder (adapter_config.json + adapter_model.safetensors) through
 * lora_load, and a calibration in its safetensors form through calib_load,
 * both against the small base of fuzz.h. Input: adapter_config.json,
 * FZ_SEP, adapter_model.safetensors, FZ_SEP, calibration.safetensors. */
#include <string.h>

#include "fuzz.h"
#include "loaders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p[3];
    size_t n[3];
    int k = fz_split(data, size, p, n, 3);
    model_config c;
    fz_tiny_config(&c);
    lc_err err;
    fz_unlink("adapter_model.safetensors");
    fz_write(0, "adapter_config.json", p[0], n[0]);
    if (k > 1) fz_write(1, "adapter_model.safetensors", p[1], n[1]);
    lora l;
    memset(&l, 0, sizeof l);
    if (lora_load(&l, &c, fz_dir(), &err) == 0) lora_free(&l);
    if (k > 2) {
        calib cb;
        memset(&cb, 0, sizeof cb);
        const char *cp = fz_write(2, "calibration.safetensors", p[2], n[2]);
        if (calib_load(&cb, &c, cp, &err) == 0) calib_free(&cb);
    }
    return 0;
}
