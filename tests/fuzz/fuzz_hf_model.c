/* fuzz_hf_model.c: a Hugging Face model folder (config.json +
 * model.safetensors) through model_load_hf: the sizes config.json claims
 * against the tensors the file holds. Input: config.json, FZ_SEP,
 * model.safetensors. */
#include "fuzz.h"
#include "loaders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p[2];
    size_t n[2];
    int k = fz_split(data, size, p, n, 2);
    fz_unlink("model.safetensors");
    fz_write(0, "config.json", p[0], n[0]);
    if (k > 1) fz_write(1, "model.safetensors", p[1], n[1]);
    model m = {0};
    lc_err err;
    if (model_load_hf(&m, fz_dir(), &err) == 0) model_free(&m);
    return 0;
}
