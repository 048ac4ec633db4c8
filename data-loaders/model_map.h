/* model_map.h: a base model opened for inference with its weights used in
 * place from the file where the stored type is the kernels' (float32
 * safetensors, little-endian host): the mapping is shared with the page
 * cache, so several processes or models cost the weights once. A GGUF
 * whose matrices share one stored type the kernels read (Q8_0, Q4_0, ...)
 * is used in place the same way (llama's q/k rows are copied, reordered).
 * Other stored types (F16, BF16 safetensors) are converted into one owned block; llama2.c
 * checkpoints are read into memory (their q/k rows are stored in another
 * order than the kernels'); a project HDF5 file goes through model_load.
 * The model is read-only: nothing may write its weights. */
#ifndef MODEL_MAP_H
#define MODEL_MAP_H

#include <stddef.h>

#include "lc_err.h"
#include "model.h"

typedef struct model_map model_map;

/* Opens path (as model_load dispatches: Hugging Face folder, llama2.c
 * checkpoint, HDF5) into *m; *out keeps the mapping alive. copy = 1 reads
 * every format into one owned block (2 MB pages where the kernel gives
 * them) instead of mapping it. */
int model_map_open(model_map **out, model *m, const char *path, int copy, lc_err *err);
/* Frees m's tables and the mapping or copy behind it. */
void model_map_close(model_map *mm, model *m);
/* After model_quantize has moved every weight of m into memory m owns
 * (nothing points into the file any more): closes the mapping and the
 * conversion block, and counts m's own bytes. */
void model_map_detach(model_map *mm, const model *m);
/* Bytes of weights used in place from the file, and bytes held in memory. */
void model_map_stats(const model_map *mm, size_t *mapped_bytes, size_t *owned_bytes);

#endif
