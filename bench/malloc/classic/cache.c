/*
 * cache_scratch and cache_thrash: false sharing, after the Hoard
 * benchmarks of those names. Each of THREADS threads, many times over,
 * allocates an 8-byte object, writes each of its bytes over and over, and
 * frees it; the work is split between the threads, so an allocator
 * without false sharing runs it THREADS times faster on as many cores.
 *   - cache_thrash (active false sharing): an allocator that hands
 *     different threads objects in one cache line makes their writes
 *     fight over the line.
 *   - cache_scratch (passive false sharing): the main thread first
 *     allocates one object per thread, side by side, and each thread
 *     starts by freeing the one it was given: an allocator that reuses
 *     freed memory for the thread that freed it (not for the thread that
 *     allocated it) puts the threads' objects in one line.
 * The program built from this file takes its pattern from its name.
 *
 *   cache_scratch [SCALE [THREADS]]      (THREADS default 1)
 *   cache_thrash  [SCALE [THREADS]]
 */
#define _GNU_SOURCE
#include "classic.h"

#ifndef CACHE_SCRATCH
#error "build with -DCACHE_SCRATCH=1 (cache_scratch) or -DCACHE_SCRATCH=0 (cache_thrash)"
#endif

enum { OBJECT = 8, WRITES = 20000 };

typedef struct worker {
    unsigned char *given; /* cache_scratch: the object to free first */
    size_t iterations;
    uint64_t sum;
} worker;

static void *run(void *arg)
{
    worker *w = arg;
    free(w->given);
    uint64_t sum = 0;
    for (size_t i = 0; i < w->iterations; i++) {
        volatile unsigned char *p = xmalloc(OBJECT);
        for (size_t b = 0; b < OBJECT; b++)
            p[b] = (unsigned char)(i + b);
        for (size_t r = 0; r < WRITES; r++)
            for (size_t b = 0; b < OBJECT; b++)
                p[b] = (unsigned char)(p[b] + 1);
        for (size_t b = 0; b < OBJECT; b++)
            sum += p[b];
        free((void *)p);
    }
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    const char *name = CACHE_SCRATCH ? "cache_scratch" : "cache_thrash";
    unsigned threads = classic_threads(classic_args(argc, argv, name, " [THREADS]"), 1, 64);
    size_t iterations = classic_scaled(3000);
    worker *w = xcalloc(threads, sizeof *w);
    pthread_t *tid = xcalloc(threads, sizeof *tid);
    for (unsigned t = 0; t < threads; t++) {
        w[t].iterations = iterations / threads + (t < iterations % threads);
        if (CACHE_SCRATCH) {
            w[t].given = xmalloc(OBJECT);
            memset(w[t].given, (int)t, OBJECT);
        }
    }
    for (unsigned t = 0; t < threads; t++)
        classic_thread(&tid[t], run, &w[t]);
    uint64_t result = 0;
    for (unsigned t = 0; t < threads; t++) {
        classic_join(tid[t]);
        result += w[t].sum;
    }
    free(w);
    free(tid);
    classic_result(result);
    return 0;
}
