/* xorshift64*: the small, fast generator the stress test and the malloc
 * benchmarks share, one state per thread (seed it non-zero). */
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

/* Uniform enough in [low, high] for workloads. */
static inline size_t rng_range(uint64_t *state, size_t low, size_t high)
{
    return low + (size_t)(rng_next(state) % (uint64_t)(high - low + 1));
}

#endif /* BRISK_TESTS_XORSHIFT_H */
