/* bench_lora_gguf: a GGUF LoRA adapter with random weights for llama.cpp's
 * side of scripts/bench_decode.sh and bench_runtime.sh (a benchmark input,
 * not a test): rank R on all seven modules of every layer of the model at
 * MODEL (any base we read), A and B ~ 0.02 N(0, 1), alpha = R (scale 1),
 * as `export` writes GGUF LoRAs (gguf_write_lora). Rank 20 is the work of
 * lcmt_bench's task t1 (two rank-8 LoRAs concatenated plus LC++ rank 4: the
 * same products as one rank-20 LoRA).
 *
 *   bench_lora_gguf MODEL RANK OUT.gguf */
#include <stdio.h>
#include <stdlib.h>

#include "interop.h"
#include "lc_rng.h"
#include "loaders.h"

int main(int argc, char **argv) {
    if (argc != 4) return fprintf(stderr, "usage: bench_lora_gguf MODEL RANK OUT.gguf\n"), 2;
    const int rank = atoi(argv[2]);
    if (rank < 1) return fprintf(stderr, "bench_lora_gguf: RANK must be a positive integer, found '%s'\n", argv[2]), 2;
    lc_err err;
    model m;
    if (model_load(&m, argv[1], &err)) return fprintf(stderr, "bench_lora_gguf: %s\n", err.msg), 1;
    lora l;
    if (lora_init(&l, &m.cfg, rank, (float)rank, 0, MOD_MASK_ALL, NULL, &err))
        return fprintf(stderr, "bench_lora_gguf: %s\n", err.msg), 1;
    lc_rng r;
    lc_rng_seed(&r, 7);
    for (size_t i = 0; i < l.n_params; i++) l.data[i] = 0.02f * lc_rng_normal(&r);
    const int rc = gguf_write_lora(&l, &m.cfg, argv[3], 0, &err);
    if (rc) fprintf(stderr, "bench_lora_gguf: %s\n", err.msg);
    else fprintf(stderr, "bench_lora_gguf: wrote %s (rank %d, %zu parameters)\n", argv[3], rank, l.n_params);
    lora_free(&l);
    model_free(&m);
    return rc ? 1 : 0;
}
