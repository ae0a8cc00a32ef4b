/* xorshift64*: the small, fast generator the tests and the malloc
 * benchmarks share, one state per thread or per run. The state must not
 * be zero: rng_seed(seed) makes one from any seed, 0 included. */
#ifndef BRISK_TESTS_XORSHIFT_H
#define BRISK_TESTS_XORSHIFT_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A state for seed: splitmix64 of it (never zero), so that nearby seeds
 * start far apart. */
static inline uint64_t rng_seed(uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z != 0 ? z : 1;
}

/* Uniform enough in [low, high] for workloads. */
static inline size_t rng_range(uint64_t *state, size_t low, size_t high)
{
    return low + (size_t)(rng_next(state) % (uint64_t)(high - low + 1));
}

#endif /* BRISK_TESTS_XORSHIFT_H */
