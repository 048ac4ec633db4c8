/* bench_quant: single-thread qmat_matvec throughput per storage type on
 * the matrices of the stories15M and stories110M shapes (random weights),
 * as GB/s of weight bytes read, beside this machine's read bandwidth
 * measured here by a streaming sum over a buffer far larger than the
 * caches. A benchmark, not a test: numbers move with the machine's load.
 *
 *   bench_quant [seconds_per_case (default 0.2)] [ref]
 * "ref" times the reference path instead of the SIMD one. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "lc_time.h"
#include "quant.h"

/* best of 5 passes of a 64-bit integer sum over 512 MiB */
static double read_bandwidth(void) {
    const size_t n = (size_t)512 << 20 >> 3;
    uint64_t *buf = malloc(n * 8);
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        const double t0 = lc_now_s();
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i < n; i += 4) s0 += buf[i], s1 += buf[i + 1], s2 += buf[i + 2], s3 += buf[i + 3];
        const double dt = lc_now_s() - t0;
        sink += s0 + s1 + s2 + s3;
        if (n * 8 / dt > best) best = n * 8 / dt;
    }
    (void)sink;
    free(buf);
    return best / 1e9;
}

int main(int argc, char **argv) {
    const double secs = argc > 1 ? atof(argv[1]) : 0.2;
    if (argc > 2 && !strcmp(argv[2], "ref")) quant_force_ref(1);
    omp_set_num_threads(1);
    const double bw = read_bandwidth();
    printf("read bandwidth (1 thread, streaming sum over 512 MiB): %.1f GB/s; path %s\n", bw, quant_path());
    struct { const char *model, *name; int rows, cols; } shapes[] = {
        {"15M", "wq 288x288", 288, 288},       {"15M", "w1 768x288", 768, 288},
        {"15M", "w2 288x768", 288, 768},       {"15M", "lm 32000x288", 32000, 288},
        {"110M", "wq 768x768", 768, 768},      {"110M", "w1 2048x768", 2048, 768},
        {"110M", "w2 768x2048", 768, 2048},    {"110M", "lm 32000x768", 32000, 768},
    };
    static const int types[] = {QT_F32, QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_K, QT_Q6_K};
    printf("%-5s %-13s", "model", "matrix");
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) printf(" %9s", qtype_name(types[t]));
    printf("   (GB/s of weights; share of read bandwidth for the lm head)\n");
    lc_rng rng;
    lc_rng_seed(&rng, 1);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int rows = shapes[s].rows, cols = shapes[s].cols;
        float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * cols);
        float *y = malloc(sizeof(float) * rows);
        for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = 0.02f * lc_rng_normal(&rng);
        for (int i = 0; i < cols; i++) x[i] = lc_rng_normal(&rng);
        printf("%-5s %-13s", shapes[s].model, shapes[s].name);
        double share[8] = {0};
        for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
            qmat m;
            lc_err err;
            if (qrow_check(types[t], cols, NULL) || qmat_from_f32(&m, types[t], w, rows, cols, &err)) {
                printf(" %9s", "-");
                continue;
            }
            int reps = 0;
            const double t0 = lc_now_s();
            double dt;
            do {
                qmat_matvec(&m, x, NULL, y, 0, &err);
                reps++;
            } while ((dt = lc_now_s() - t0) < secs);
            const double gbs = (double)qmat_bytes(&m) * reps / dt / 1e9;
            share[t] = gbs / bw;
            printf(" %9.1f", gbs);
            qmat_free(&m);
        }
        if (rows == 32000) {
            printf("   ");
            for (size_t t = 0; t < sizeof types / sizeof *types; t++)
                if (share[t] > 0) printf(" %s %.0f%%", qtype_name(types[t]), 100 * share[t]);
        }
        printf("\n");
        free(w), free(x), free(y);
    }
    return 0;
}
