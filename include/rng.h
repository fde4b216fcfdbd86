/* rng.h: explicit, keyed random streams.
 *
 * Every random draw in the trainer comes from a stream keyed by (seed, purpose,
 * a, b): for instance (seed, RNG_DROPOUT, epoch, global sample index). The draws a
 * sample gets therefore do not depend on how many ranks or threads ran it, nor on
 * the order in which samples were processed. There is no global generator.
 */
#ifndef CONVNET_RNG_H
#define CONVNET_RNG_H

#include <stdint.h>

enum RngPurpose {
    RNG_INIT = 1,    /* (layer index, 0): weight initialisation */
    RNG_SHUFFLE = 2, /* (epoch, 0): the epoch's permutation */
    RNG_DROPOUT = 3, /* (epoch * 2^20 + layer index, global sample index) */
    RNG_AUGMENT = 4, /* (epoch * 2^20 + layer index, global sample index) */
    RNG_SPLIT = 5    /* (0, 0): validation split shuffles */
};

typedef struct {
    uint64_t s;
} Rng;

static inline uint64_t rng_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline Rng rng_keyed(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b) {
    Rng r;
    r.s = rng_mix(rng_mix(rng_mix(seed ^ 0x9e3779b97f4a7c15ULL) ^ purpose) +
                  a * 0x9e3779b97f4a7c15ULL);
    r.s = rng_mix(r.s ^ (b + 0x632be59bd9b4e019ULL));
    return r;
}

/* splitmix64 step */
static inline uint64_t rng_u64(Rng *r) {
    r->s += 0x9e3779b97f4a7c15ULL;
    return rng_mix(r->s);
}

/* Uniform float in [0, 1) with 24 random bits. */
static inline float rng_uniform(Rng *r) { return (float)(rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

/* Uniform integer in [0, n) (n > 0), without modulo bias worth caring about for n < 2^32. */
static inline uint64_t rng_below(Rng *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)rng_u64(r) * n) >> 64);
}

#endif
