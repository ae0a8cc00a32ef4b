/*
 * larson: the server simulation of Larson and Krishnan's benchmark, from
 * its published description. THREADS chains of threads; each thread of a
 * chain replaces blocks of 16 B - 1 KiB in random slots of its chain's
 * array, then exits, and a new thread takes the array over: most blocks
 * a thread frees were allocated by threads that have exited.
 *
 *   larson [SCALE [THREADS]]      (THREADS default 2)
 */
#define _GNU_SOURCE
#include "classic.h"

enum { SLOTS = 1000, OPS_PER_THREAD = 10000 };

typedef struct chain {
    unsigned char *slot[SLOTS];
    uint64_t rng, sum, next_value;
} chain;

static void *generation(void *arg)
{
    chain *c = arg;
    for (size_t i = 0; i < OPS_PER_THREAD; i++) {
        size_t s = rng_next(&c->rng) % SLOTS;
        if (c->slot[s] != NULL)
            c->sum += checked_free(c->slot[s]);
        size_t size = rng_range(&c->rng, CHECKED_MIN, 1024);
        c->slot[s] = checked_new(size, c->next_value++);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = classic_threads(classic_args(argc, argv, "larson", " [THREADS]"), 2, 64);
    size_t generations = classic_scaled(300);
    chain *chains = xcalloc(threads, sizeof *chains);
    pthread_t *tid = xcalloc(threads, sizeof *tid);
    for (unsigned t = 0; t < threads; t++) {
        chains[t].rng = 0x9e3779b97f4a7c15ULL * (t + 1);
        chains[t].next_value = (uint64_t)t << 40;
    }
    for (size_t g = 0; g < generations; g++) {
        for (unsigned t = 0; t < threads; t++)
            classic_thread(&tid[t], generation, &chains[t]);
        for (unsigned t = 0; t < threads; t++)
            classic_join(tid[t]);
    }
    uint64_t result = 0;
    for (unsigned t = 0; t < threads; t++) {
        for (size_t s = 0; s < SLOTS; s++)
            if (chains[t].slot[s] != NULL)
                chains[t].sum += checked_free(chains[t].slot[s]);
        result += chains[t].sum;
    }
    free(chains);
    free(tid);
    classic_result(result);
    return 0;
}
