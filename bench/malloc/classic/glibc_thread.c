/*
 * glibc_thread: the pattern of glibc's bench-malloc-thread: each of
 * THREADS threads replaces random blocks of a working set of 1,024 with
 * blocks of random size, drawn so that small ones are the most frequent
 * (a size's share falls as 1/size, from 4 B to 32 KiB), and writes each.
 * Each thread does the same work.
 *
 *   glibc_thread [SCALE [THREADS]]      (THREADS default 4)
 */
#define _GNU_SOURCE
#include <math.h>

#include "classic.h"

enum { WORKING = 1024, MIN_SIZE = 4, MAX_SIZE = 32768 };

typedef struct worker {
    unsigned index;
    size_t ops;
    uint64_t sum;
} worker;

static void *run(void *arg)
{
    worker *w = arg;
    uint64_t rng = 0x91bcULL + w->index, sum = 0;
    unsigned char **slot = xcalloc(WORKING, sizeof *slot);
    size_t *size = xcalloc(WORKING, sizeof *size);
    for (size_t i = 0; i < w->ops; i++) {
        size_t s = rng_next(&rng) % WORKING;
        if (slot[s] != NULL) {
            sum += slot[s][size[s] - 1];
            free(slot[s]);
        }
        /* density 1/x on [MIN_SIZE, MAX_SIZE]: exp of a uniform log */
        double u = (double)(rng_next(&rng) >> 11) / (double)(1ULL << 53);
        size[s] = (size_t)(MIN_SIZE * exp(u * log((double)MAX_SIZE / MIN_SIZE)));
        slot[s] = xmalloc(size[s]);
        memset(slot[s], (int)(i & 0xff), size[s]);
    }
    for (size_t s = 0; s < WORKING; s++)
        free(slot[s]);
    free(slot);
    free(size);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = classic_threads(classic_args(argc, argv, "glibc_thread", " [THREADS]"), 4, 64);
    worker *w = xcalloc(threads, sizeof *w);
    pthread_t *tid = xcalloc(threads, sizeof *tid);
    for (unsigned t = 0; t < threads; t++) {
        w[t] = (worker){.index = t, .ops = classic_scaled(5e5)};
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
