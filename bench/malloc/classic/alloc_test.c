/*
 * alloc-test: random sizes and random lifetimes, per thread, after the
 * alloc-test benchmark's description: each of THREADS threads replaces
 * or empties random slots of a working set of its own, with sizes drawn
 * mostly small (8-128 B), some medium (128 B - 1 KiB) and a few up to
 * 8 KiB, every block written; each thread does the same work, so with
 * THREADS above 1 it measures how the allocator scales.
 *
 *   alloc_test [SCALE [THREADS]]      (THREADS default 1)
 */
#define _GNU_SOURCE
#include "classic.h"

enum { SLOTS = 20000 };

typedef struct worker {
    unsigned index;
    size_t ops;
    uint64_t sum;
} worker;

static size_t block_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 100;
    if (r < 80)
        return rng_range(rng, 8, 128);
    if (r < 95)
        return rng_range(rng, 129, 1024);
    return rng_range(rng, 1025, 8192);
}

static void *run(void *arg)
{
    worker *w = arg;
    uint64_t rng = 0xa110c000ULL + w->index, sum = 0;
    unsigned char **slot = xcalloc(SLOTS, sizeof *slot);
    size_t *size = xcalloc(SLOTS, sizeof *size);
    for (size_t i = 0; i < w->ops; i++) {
        size_t s = rng_next(&rng) % SLOTS;
        if (slot[s] != NULL) {
            sum = sum * 31 + slot[s][0] + slot[s][size[s] - 1];
            free(slot[s]);
            slot[s] = NULL;
        }
        if (rng_next(&rng) % 4 != 0) { /* a quarter of the slots stay empty a while */
            size[s] = block_size(&rng);
            slot[s] = xmalloc(size[s]);
            memset(slot[s], (int)(i & 0xff), size[s]);
            slot[s][size[s] - 1] = (unsigned char)size[s];
        }
    }
    for (size_t s = 0; s < SLOTS; s++)
        free(slot[s]);
    free(slot);
    free(size);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = classic_threads(classic_args(argc, argv, "alloc_test", " [THREADS]"), 1, 64);
    worker *w = xcalloc(threads, sizeof *w);
    pthread_t *tid = xcalloc(threads, sizeof *tid);
    for (unsigned t = 0; t < threads; t++) {
        w[t] = (worker){.index = t, .ops = classic_scaled(3e6)};
        classic_thread(&tid[t], run, &w[t]);
    }
    uint64_t result = 0;
    for (unsigned t = 0; t < threads; t++) {
        classic_join(tid[t]);
        result = result * 1000003 + w[t].sum;
    }
    free(w);
    free(tid);
    classic_result(result);
    return 0;
}
