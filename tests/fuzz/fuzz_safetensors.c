/* fuzz_safetensors.c: a .safetensors file (header JSON, offsets, dtypes,
 * metadata) through tensor_file_open, then every tensor read as float32,
 * float64 and int32 where its dtype allows. */
#include <stdlib.h>

#include "fuzz.h"
#include "tensor_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write(0, "model.safetensors", data, size);
    tensor_file *tf = NULL;
    lc_err err;
    if (tensor_file_open(&tf, path, &err)) return 0;
    (void)tensor_file_meta(tf, "format");
    for (int i = 0; i < tensor_file_count(tf); i++) {
        const tensor_info *ti = tensor_file_at(tf, i);
        if (ti->numel > (1 << 22)) continue; /* the file holds them; the harness need not copy */
        void *buf = malloc(((size_t)ti->numel + 1) * 8);
        if (!buf) abort();
        (void)tensor_file_read_f32(tf, ti->name, 0, NULL, buf, &err);
        (void)tensor_file_read_f64(tf, ti->name, 0, NULL, buf, &err);
        (void)tensor_file_read_i32(tf, ti->name, 0, NULL, buf, &err);
        (void)tensor_file_data(tf, ti);
        free(buf);
    }
    tensor_file_free(tf);
    return 0;
}
