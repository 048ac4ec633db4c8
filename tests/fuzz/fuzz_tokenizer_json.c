/* fuzz_tokenizer_json.c: a Hugging Face tokenizer.json (models, normalizers,
 * pre-tokenizers, decoders, post-processors, added tokens) through
 * tokenizer_load, then encode and decode. Input: the tokenizer.json,
 * FZ_SEP, a text to encode (and its ids decoded). */
#include <stdlib.h>

#include "fuzz.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p[2];
    size_t n[2];
    int k = fz_split(data, size, p, n, 2);
    const char *path = fz_write(0, "tokenizer.json", p[0], n[0]);
    tokenizer *t = NULL;
    lc_err err;
    if (tokenizer_load(&t, path, 0, &err)) return 0;
    (void)tokenizer_bos(t), (void)tokenizer_eos(t);
    const int V = tokenizer_vocab_size(t);
    const char *text = k > 1 ? (const char *)p[1] : "Hello world, hi!";
    size_t len = k > 1 ? n[1] : 16;
    for (int special = 0; special < 2; special++) {
        int *ids = NULL, m = 0;
        if (tokenizer_encode(t, text, len, special, &ids, &m, &err) == 0) {
            for (int i = 0; i < m; i++)
                if (ids[i] < 0 || ids[i] >= V) abort(); /* an id outside the vocabulary */
            free(tokenizer_decode(t, ids, m, special));
        }
        free(ids);
    }
    /* ids the input picks (bytes as ids): decode must take any id in range */
    int ids[64], m = 0;
    for (size_t i = 0; i < len && m < 64 && V > 0; i += 2)
        ids[m++] = (int)(((unsigned char)text[i] | (i + 1 < len ? (unsigned char)text[i + 1] << 8 : 0)) % V);
    free(tokenizer_decode(t, ids, m, 0));
    free(tokenizer_decode(t, ids, m, 1));
    tokenizer_free(t);
    return 0;
}
