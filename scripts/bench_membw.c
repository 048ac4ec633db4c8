/* bench_membw: the machine's memory read bandwidth, the cap of a
 * memory-bound decode (scripts/bench_decode.sh divides by it).
 *   bench_membw [MIB] [REPS]    default 1024 MiB, 7 repetitions
 * Sums a buffer far larger than the caches with OMP_NUM_THREADS threads
 * (the compiler vectorises a float sum over 64 accumulators, so the adds
 * are never the limit), prints the best repetition in GB/s (10^9 bytes). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lc_time.h"

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    if (!mib || reps < 1) return fprintf(stderr, "usage: bench_membw [MIB] [REPS]\n"), 2;
    size_t n = mib * 1048576 / sizeof(float);
    float *a = aligned_alloc(64, n * sizeof(float));
    if (!a) return fprintf(stderr, "bench_membw: cannot allocate %zu MiB\n", mib), 1;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023) * 1e-3f;
    double best = 1e30, sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = lc_now_s(), total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
        for (size_t b = 0; b < n / 4096; b++) {
            float acc[64] = {0}; /* 8 independent vector sums: the adds keep up with the loads */
            const float *p = a + b * 4096;
            for (int i = 0; i < 4096; i += 64)
                for (int k = 0; k < 64; k++) acc[k] += p[i + k];
            for (int k = 0; k < 64; k++) total += acc[k];
        }
        double t = lc_now_s() - t0;
        if (t < best) best = t;
        sink += total;
    }
    printf("read bandwidth: %.2f GB/s (%zu MiB, best of %d, %d threads; checksum %g)\n",
           (double)n * sizeof(float) / best * 1e-9, mib, reps, omp_get_max_threads(), sink);
    free(a);
    return 0;
}
