/* fuzz_gguf.c: a GGUF file (header, metadata of every value type, tensor
 * infos, alignment, data) through gguf_open, every tensor dequantized to
 * float32, the tokenizer it stores (tokenizer.ggml.*) and the base model
 * (model_load_gguf: architecture keys, the q/k permutation, types), also
 * opened in place (model_map_gguf: the stored matrices as views of the
 * mapping) with its weights' sampled CRC, the bundle check. */
#include <stdlib.h>

#include "bundle.h"
#include "fuzz.h"
#include "gguf.h"
#include "loaders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write(0, "model.gguf", data, size);
    gguf_file *f = NULL;
    lc_err err;
    if (gguf_open(&f, path, &err)) return 0;
    for (int i = 0; i < gguf_n_kv(f); i++) {
        (void)gguf_key_at(f, i);
        const gguf_value *v = gguf_value_at(f, i);
        for (uint64_t j = 0; v && j < v->n && j < 16; j++)
            if (v->raw) (void)gguf_arr_f64(v, j), (void)gguf_arr_i64(v, j);
    }
    for (int i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        int64_t n = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) n *= t->ne[d] > 0 ? t->ne[d] : 1;
        if (n <= 0 || n > (1 << 22)) continue;
        float *buf = malloc((size_t)n * sizeof *buf);
        if (!buf) abort();
        (void)gguf_tensor_read_f32(f, t, buf, &err);
        free(buf);
    }
    gguf_close(f);
    tokenizer *tok = NULL;
    if (tokenizer_load_gguf(&tok, path, 0, &err) == 0) {
        int *ids = NULL, m = 0;
        if (tokenizer_encode(tok, "Hello world", 11, 1, &ids, &m, &err) == 0)
            free(tokenizer_decode(tok, ids, m, 0));
        free(ids);
        tokenizer_free(tok);
    }
    model mdl = {0};
    if (model_load_gguf(&mdl, path, &err) == 0) model_free(&mdl);
    gguf_file *keep = NULL;
    if (model_map_gguf(&mdl, path, &keep, &err) == 0) {
        (void)model_weights_sample_crc32(&mdl);
        model_free(&mdl);
        gguf_close(keep);
    }
    return 0;
}
