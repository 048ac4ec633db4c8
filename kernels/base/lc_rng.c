/* lc_rng.c: see lc_rng.h. */
#include "lc_rng.h"

#include <math.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

void lc_rng_seed(lc_rng *r, uint64_t seed) {
    r->state = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!r->state) r->state = 1;
}

uint32_t lc_rng_u32(lc_rng *r) { /* xorshift64* */
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return (uint32_t)((r->state * 0x2545F4914F6CDD1Dull) >> 32);
}

float lc_rng_uniform(lc_rng *r) { return (lc_rng_u32(r) >> 8) / 16777216.0f; }

float lc_rng_normal(lc_rng *r) {
    float u1 = lc_rng_uniform(r), u2 = lc_rng_uniform(r);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(2.0f * (float)M_PI * u2);
}
