/* fuzz_safetensors_index.c: a sharded model as Hugging Face writes it:
 * model.safetensors.index.json naming shards, here two files a.safetensors
 * and b.safetensors. Input: index JSON, FZ_SEP, shard a, FZ_SEP, shard b. */
#include <stdlib.h>

#include "fuzz.h"
#include "tensor_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p[3];
    size_t n[3];
    int k = fz_split(data, size, p, n, 3);
    fz_unlink("a.safetensors");
    fz_unlink("b.safetensors");
    if (k > 1) fz_write(1, "a.safetensors", p[1], n[1]);
    if (k > 2) fz_write(2, "b.safetensors", p[2], n[2]);
    const char *path = fz_write(0, "model.safetensors.index.json", p[0], n[0]);
    tensor_file *tf = NULL;
    lc_err err;
    if (tensor_file_open(&tf, path, &err)) return 0;
    for (int i = 0; i < tensor_file_count(tf); i++) {
        const tensor_info *ti = tensor_file_at(tf, i);
        (void)tensor_file_path_of(tf, ti);
        if (ti->numel > (1 << 22)) continue;
        float *buf = malloc(((size_t)ti->numel + 1) * sizeof *buf);
        if (!buf) abort();
        (void)tensor_file_read_f32(tf, ti->name, 0, NULL, buf, &err);
        free(buf);
    }
    tensor_file_free(tf);
    return 0;
}
