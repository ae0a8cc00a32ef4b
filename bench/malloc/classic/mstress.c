/*
 * mstress: the stress pattern of mimalloc's stress test, from its
 * description: in each of a series of rounds, THREADS threads are started
 * that allocate blocks of many sizes (mostly 16 B - 1 KiB, one in 100 of
 * 1-64 KiB, one in 5,000 of 256 KiB - 1 MiB), free random ones of their
 * own, and swap blocks through a shared transfer array, freeing what they
 * take out, which other threads allocated; a share of each thread's
 * blocks outlives it into the next round.
 *
 *   mstress [SCALE [THREADS]]      (THREADS default 4)
 */
#define _GNU_SOURCE
#include <stdatomic.h>

#include "classic.h"

enum { TRANSFERS = 1000, LOCAL = 4000, OPS = 20000, KEEP = 1000 };

static _Atomic(unsigned char *) transfer[TRANSFERS];

typedef struct worker {
    unsigned index;
    size_t round;
    uint64_t sum;                 /* the values of the blocks this slot's threads freed */
    unsigned char *kept[KEEP];    /* blocks left for the next round's thread */
} worker;

static size_t block_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 5000;
    if (r == 0)
        return classic_log_size(rng, 18, 20);
    if (r < 50)
        return classic_log_size(rng, 10, 16);
    return classic_log_size(rng, 4, 10);
}

static void *run(void *arg)
{
    worker *w = arg;
    uint64_t rng = (w->round + 1) * 0x9e3779b97f4a7c15ULL + w->index;
    uint64_t value = ((uint64_t)w->round << 40) | ((uint64_t)w->index << 32);
    unsigned char **local = xcalloc(LOCAL, sizeof *local);
    for (size_t s = 0; s < KEEP; s++) { /* take over the last round's blocks */
        local[s] = w->kept[s];
        w->kept[s] = NULL;
    }
    for (size_t i = 0; i < OPS; i++) {
        size_t s = rng_next(&rng) % LOCAL;
        uint64_t r = rng_next(&rng) % 8;
        if (local[s] != NULL && r < 3) {
            w->sum += checked_free(local[s]);
            local[s] = NULL;
        } else if (local[s] != NULL && r == 3) {
            /* hand it over; free whatever another thread left there */
            size_t t = rng_next(&rng) % TRANSFERS;
            unsigned char *taken = atomic_exchange(&transfer[t], local[s]);
            local[s] = NULL;
            if (taken != NULL)
                w->sum += checked_free(taken);
        } else if (local[s] == NULL) {
            local[s] = checked_new(block_size(&rng), value++);
        }
    }
    for (size_t s = 0; s < LOCAL; s++) {
        if (s < KEEP)
            w->kept[s] = local[s];
        else if (local[s] != NULL)
            w->sum += checked_free(local[s]);
    }
    free(local);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = classic_threads(classic_args(argc, argv, "mstress", " [THREADS]"), 4, 64);
    size_t rounds = classic_scaled(40);
    worker *w = xcalloc(threads, sizeof *w);
    pthread_t *tid = xcalloc(threads, sizeof *tid);
    for (size_t r = 0; r < rounds; r++) {
        for (unsigned t = 0; t < threads; t++) {
            w[t].index = t;
            w[t].round = r;
            classic_thread(&tid[t], run, &w[t]);
        }
        for (unsigned t = 0; t < threads; t++)
            classic_join(tid[t]);
    }
    uint64_t result = 0;
    for (unsigned t = 0; t < threads; t++) {
        for (size_t s = 0; s < KEEP; s++)
            if (w[t].kept[s] != NULL)
                w[t].sum += checked_free(w[t].kept[s]);
        result += w[t].sum;
    }
    for (size_t t = 0; t < TRANSFERS; t++) {
        unsigned char *p = atomic_exchange(&transfer[t], NULL);
        if (p != NULL)
            result += checked_free(p);
    }
    free(w);
    free(tid);
    classic_result(result);
    return 0;
}
