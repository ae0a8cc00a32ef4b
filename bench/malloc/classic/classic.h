/*
 * What the classic-pattern programs share (bench/malloc/classic/README.md):
 * the command line, an allocation that fails loudly, blocks that carry a
 * check of their own contents, and the one line each program prints.
 *
 * Every program is run as
 *
 *   PROGRAM [SCALE [THREADS]]
 *
 * SCALE (default 1) multiplies its work (the runner's smoke test uses a
 * tiny one); THREADS is the number of threads of the programs that take
 * one. It prints one line, `PROGRAM result=<n>`, where n is computed from
 * the work and does not depend on the allocator or on how threads
 * interleave, so the runner can compare it across allocators. A block
 * found changed behind the program's back ends it with exit status 1.
 */
#ifndef BRISK_BENCH_CLASSIC_H
#define BRISK_BENCH_CLASSIC_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xorshift.h"

static const char *classic_program = "classic";
static double classic_scale = 1.0;

static inline void classic_usage(const char *extra)
{
    fprintf(stderr, "usage: %s [SCALE%s]\n  SCALE: a number in (0, 100] that multiplies the work\n",
            classic_program, extra);
    exit(2);
}

/* Parses SCALE; returns argv[2] (or NULL), the program's own argument. */
static inline const char *classic_args(int argc, char **argv, const char *name, const char *extra)
{
    classic_program = name;
    if (argc > 3 || (argc == 3 && extra[0] == '\0'))
        classic_usage(extra);
    if (argc >= 2) {
        char *end = NULL;
        errno = 0;
        classic_scale = strtod(argv[1], &end);
        if (errno != 0 || end == argv[1] || *end != '\0' || !(classic_scale > 0.0) ||
            classic_scale > 100.0) {
            fprintf(stderr, "%s: SCALE must be a number in (0, 100], not \"%s\"\n", name,
                    argv[1]);
            exit(2);
        }
    }
    return argc == 3 ? argv[2] : NULL;
}

/* THREADS: argument arg (may be NULL: the default), 1 to max. */
static inline unsigned classic_threads(const char *arg, unsigned fallback, unsigned max)
{
    if (arg == NULL)
        return fallback;
    char *end = NULL;
    errno = 0;
    unsigned long n = strtoul(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || n < 1 || n > max) {
        fprintf(stderr, "%s: THREADS must be a whole number from 1 to %u, not \"%s\"\n",
                classic_program, max, arg);
        exit(2);
    }
    return (unsigned)n;
}

/* n times SCALE, at least 1. */
static inline size_t classic_scaled(double n)
{
    double v = n * classic_scale;
    return v < 1.0 ? 1 : (size_t)v;
}

static inline void *xmalloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "%s: malloc(%zu) failed\n", classic_program, size);
        exit(1);
    }
    return p;
}

static inline void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        fprintf(stderr, "%s: calloc(%zu, %zu) failed\n", classic_program, n, size);
        exit(1);
    }
    return p;
}

static inline void *xrealloc(void *old, size_t size)
{
    void *p = realloc(old, size);
    if (p == NULL) {
        fprintf(stderr, "%s: realloc(%zu) failed\n", classic_program, size);
        exit(1);
    }
    return p;
}

static inline void classic_thread(pthread_t *thread, void *(*run)(void *), void *arg)
{
    int rc = pthread_create(thread, NULL, run, arg);
    if (rc != 0) {
        fprintf(stderr, "%s: pthread_create failed: %s\n", classic_program, strerror(rc));
        exit(1);
    }
}

static inline void classic_join(pthread_t thread)
{
    int rc = pthread_join(thread, NULL);
    if (rc != 0) {
        fprintf(stderr, "%s: pthread_join failed: %s\n", classic_program, strerror(rc));
        exit(1);
    }
}

/* Log-uniform in [2^low, 2^high): as many blocks of each power of two. */
static inline size_t classic_log_size(uint64_t *rng, unsigned low, unsigned high)
{
    unsigned shift = (unsigned)rng_range(rng, low, high - 1);
    size_t base = (size_t)1 << shift;
    return base + (size_t)(rng_next(rng) % base);
}

/*
 * A checked block: its first 8 bytes hold a value, the next 8 its size,
 * every other byte the value's low byte. The programs whose blocks cross
 * threads add up the values of the blocks they free: each block is freed
 * once, so the total is the sum of what was allocated, whoever freed it.
 * Sizes are at least CHECKED_MIN.
 */
enum { CHECKED_MIN = 16 };

static inline unsigned char *checked_new(size_t size, uint64_t value)
{
    unsigned char *p = xmalloc(size);
    memcpy(p, &value, 8);
    memcpy(p + 8, &size, 8);
    memset(p + 16, (int)(value & 0xff), size - 16);
    return p;
}

/* Frees a checked block, after checking its size word and a few of its
 * bytes, and returns its value mixed with its size. */
static inline uint64_t checked_free(unsigned char *p)
{
    uint64_t value;
    size_t size;
    memcpy(&value, p, 8);
    memcpy(&size, p + 8, 8);
    unsigned char fill = (unsigned char)(value & 0xff);
    if (size < CHECKED_MIN || size > ((size_t)1 << 32) ||
        (size > 16 && (p[16] != fill || p[size - 1] != fill || p[16 + (size - 16) / 2] != fill))) {
        fprintf(stderr, "%s: block %p (value %llu, size word %zu) was changed behind the program's back\n",
                classic_program, (void *)p, (unsigned long long)value, size);
        exit(1);
    }
    free(p);
    return value + (uint64_t)size * 0x9e3779b97f4a7c15ULL;
}

static inline void classic_result(uint64_t result)
{
    printf("%s result=%llu\n", classic_program, (unsigned long long)result);
}

#endif /* BRISK_BENCH_CLASSIC_H */
