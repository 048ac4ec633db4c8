/* lc_crc32 (kernels/base, the runtime's CRC-32) against zlib's crc32 on
 * random buffers of every length 0..300 and at every start alignment, on
 * large buffers, and chained over pieces; the table path and the CPU's
 * (PCLMULQDQ) path each. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

#include "lc_crc32.h"
#include "lc_rng.h"

static unsigned char *random_bytes(size_t n, uint64_t seed) {
    unsigned char *b = malloc(n ? n : 1);
    lc_rng r;
    lc_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)lc_rng_u32(&r);
    return b;
}

/* both paths: the tables alone, and the CPU's (PCLMULQDQ folding on
 * x86-64 from 64 bytes on) */
Test(crc32, equals_zlib_on_every_length_and_alignment) {
    unsigned char *b = random_bytes(320, 1);
    for (int table = 0; table < 2; table++) {
        lc_crc32_force_table(table);
        for (size_t off = 0; off < 8; off++)
            for (size_t n = 0; n + off <= 308; n++)
                cr_assert_eq(lc_crc32(0, b + off, n), (uint32_t)crc32(0L, b + off, (uInt)n),
                             "offset %zu length %zu (%s)", off, n, table ? "tables" : "CPU path");
    }
    lc_crc32_force_table(0);
    free(b);
}

Test(crc32, equals_zlib_on_large_buffers_and_chains) {
    const size_t n = (size_t)5 << 20;
    unsigned char *b = random_bytes(n, 2);
    uint32_t want = (uint32_t)crc32(0L, b, (uInt)n);
    cr_assert_eq(lc_crc32(0, b, n), want);
    lc_crc32_force_table(1);
    cr_assert_eq(lc_crc32(0, b, n), want, "the tables alone");
    lc_crc32_force_table(0);
    uint32_t c = 0;
    lc_rng r;
    lc_rng_seed(&r, 3);
    for (size_t at = 0; at < n;) {
        size_t k = 1 + lc_rng_u32(&r) % 100000;
        if (k > n - at) k = n - at;
        c = lc_crc32(c, b + at, k);
        at += k;
    }
    cr_assert_eq(c, want);
    cr_assert_eq(lc_crc32(0, "123456789", 9), 0xCBF43926u); /* the standard check value */
    free(b);
}
