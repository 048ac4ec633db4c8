/* quant_check.c: a standalone check of kernels/quant.c on whatever CPU it
 * is built for. tests/test_quant.c builds it twice, natively and with
 * aarch64-linux-gnu-gcc (run under qemu-aarch64), together with the
 * kernel sources only.
 *
 * For every type it
 *   - checks that the SIMD path (AVX2 or NEON) gives the reference's
 *     matvec bit for bit, for single x and batches (exit 1 otherwise), and
 *   - prints FNV-1a hashes of the quantized bytes, the dequantized floats
 *     and the reference matvec of fixed inputs, so that the test can
 *     compare the two architectures line by line (the x86 bytes are
 *     themselves checked against llama.cpp by test_quant).
 * Inputs come from an integer generator and exact float arithmetic, so
 * they are the same on every machine. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* roughly normal: a sum of four uniforms in [-0.5, 0.5), exact in float */
static float gauss(void) {
    float s = 0.0f;
    for (int i = 0; i < 4; i++) s += (float)(rnd() & 0xFFFFFF) / 16777216.0f - 0.5f;
    return s;
}

static uint64_t fnv(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

int main(void) {
    static const int types[] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K};
    const int64_t rows = 37, cols = 512;
    const int nb = 3;
    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * nb * cols);
    float *deq = malloc(sizeof(float) * rows * cols);
    float *y_ref = malloc(sizeof(float) * nb * rows), *y_simd = malloc(sizeof(float) * nb * rows);
    float *y_one = malloc(sizeof(float) * rows);
    if (!w || !x || !deq || !y_ref || !y_simd || !y_one) return 2;
    int bad = 0;
    const char *path = quant_path();
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        const int type = types[t];
        for (int64_t i = 0; i < rows * cols; i++) w[i] = gauss() * (1.0f + (float)(i % 7));
        for (int64_t i = 0; i < nb * cols; i++) x[i] = gauss();
        w[5] = -0.0f, w[cols] = 0.0f;
        for (int i = 0; i < 256; i++) w[2 * cols + i] = 0.0f; /* an all-zero super-block */
        qmat m;
        lc_err err;
        if (qmat_from_f32(&m, type, w, rows, cols, &err) || qmat_to_f32(&m, deq, &err)) {
            fprintf(stderr, "quant_check: %s: %s\n", qtype_name(type), err.msg);
            return 2;
        }
        quant_force_ref(1);
        if (qmat_matvec_batch(&m, x, nb, NULL, y_ref, 0, &err)) return 2;
        quant_force_ref(0);
        if (qmat_matvec_batch(&m, x, nb, NULL, y_simd, 0, &err)) return 2;
        if (memcmp(y_ref, y_simd, sizeof(float) * nb * rows)) {
            fprintf(stderr, "quant_check: %s: %s matvec differs from the reference\n",
                    qtype_name(type), path);
            bad = 1;
        }
        for (int b = 0; b < nb; b++) {
            if (qmat_matvec(&m, x + b * cols, NULL, y_one, 0, &err)) return 2;
            if (memcmp(y_one, y_simd + b * rows, sizeof(float) * rows)) {
                fprintf(stderr, "quant_check: %s: batch row %d differs from a single matvec\n",
                        qtype_name(type), b);
                bad = 1;
            }
        }
        printf("%s bytes %016llx f32 %016llx matvec %016llx\n", qtype_name(type),
               (unsigned long long)fnv(m.data, qmat_bytes(&m)),
               (unsigned long long)fnv(deq, sizeof(float) * rows * cols),
               (unsigned long long)fnv(y_ref, sizeof(float) * nb * rows));
        qmat_free(&m);
    }
    printf("path %s: %s\n", path, bad ? "MISMATCH" : "simd == reference");
    free(w), free(x), free(deq), free(y_ref), free(y_simd), free(y_one);
    return bad;
}
