/* fuzz_llama2c.c: a llama2.c checkpoint (header of seven int32, weights)
 * through model_load_llama2c, and a llama2.c tokenizer.bin through
 * l2c_tokenizer_load, encode and decode. Input: the checkpoint, FZ_SEP,
 * the tokenizer file, FZ_SEP, a text. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "loaders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p[3];
    size_t n[3];
    int k = fz_split(data, size, p, n, 3);
    lc_err err;
    model m = {0};
    const char *path = fz_write(0, "model.bin", p[0], n[0]);
    int vocab = 512;
    if (model_load_llama2c(&m, path, &err) == 0) {
        vocab = m.cfg.vocab_size;
        model_free(&m);
    }
    if (k < 2) return 0;
    const char *tpath = fz_write(1, "tokenizer.bin", p[1], n[1]);
    l2c_tokenizer t;
    if (vocab > (1 << 20) || l2c_tokenizer_load(&t, tpath, vocab, &err)) return 0;
    char *text = fz_strndup(k > 2 ? p[2] : (const uint8_t *)"Once upon a time", k > 2 ? n[2] : 16);
    int *ids = malloc((strlen(text) + 3) * sizeof *ids);
    int c = l2c_encode(&t, text, 1, 1, ids);
    for (int i = 0; i < c; i++) {
        if (ids[i] < 0 || ids[i] >= vocab) abort();
        char b[2];
        int len;
        (void)l2c_decode(&t, i ? ids[i - 1] : 1, ids[i], b, &len);
    }
    free(ids);
    free(text);
    l2c_tokenizer_free(&t);
    return 0;
}
