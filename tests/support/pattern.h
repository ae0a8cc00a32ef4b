/* Pattern fills: a test fills a block with bytes derived from a seed and
 * its offset, and later asks whether they are all still there; a write
 * into the wrong block, a lost or shifted copy shows as a mismatch. The
 * byte at offset i is seed * 131 + i * 7 + i / 256 (mod 256), so two
 * seeds differ everywhere and a copy shifted by any distance (256 and its
 * multiples too) does not match. */
#ifndef BRISK_TESTS_PATTERN_H
#define BRISK_TESTS_PATTERN_H

#include <stddef.h>

static inline unsigned char pattern_byte(unsigned seed, size_t i)
{
    return (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}

/* Writes the pattern of `seed` into p[0, n). */
static inline void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *bytes = p;
    for (size_t i = 0; i < n; i++)
        bytes[i] = pattern_byte(seed, i);
}

/* 0 when p[from, n) holds what fill(p, n, seed) wrote there; otherwise
 * one more than the offset of the first byte that differs. */
static inline size_t pattern_mismatch_from(const void *p, size_t from, size_t n, unsigned seed)
{
    const unsigned char *bytes = p;
    for (size_t i = from; i < n; i++)
        if (bytes[i] != pattern_byte(seed, i))
            return i + 1;
    return 0;
}

static inline size_t pattern_mismatch(const void *p, size_t n, unsigned seed)
{
    return pattern_mismatch_from(p, 0, n, seed);
}

/* Whether p[from, n) / p[0, n) still hold the pattern of `seed`. */
static inline int filled_from(const void *p, size_t from, size_t n, unsigned seed)
{
    return pattern_mismatch_from(p, from, n, seed) == 0;
}

static inline int filled(const void *p, size_t n, unsigned seed) { return pattern_mismatch(p, n, seed) == 0; }

/* Whether p[0, n) is all zero. */
static inline int all_zero(const void *p, size_t n)
{
    const unsigned char *bytes = p;
    for (size_t i = 0; i < n; i++)
        if (bytes[i] != 0)
            return 0;
    return 1;
}

#endif /* BRISK_TESTS_PATTERN_H */
