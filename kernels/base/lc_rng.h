/* lc_rng.h: the project's one pseudo-random generator: xorshift64* seeded
 * through a multiplicative scramble, and SplitMix64 for stateless streams
 * (dropout masks, shuffles keyed by seed and epoch). Deterministic across
 * platforms: every draw is integer arithmetic. */
#ifndef LC_RNG_H
#define LC_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} lc_rng;

void lc_rng_seed(lc_rng *r, uint64_t seed);
uint32_t lc_rng_u32(lc_rng *r);
float lc_rng_uniform(lc_rng *r); /* [0, 1) */
float lc_rng_normal(lc_rng *r);  /* Box-Muller, one draw per call */

/* SplitMix64's output function: a stateless 64-bit mix of x. */
static inline uint64_t lc_splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

#endif
