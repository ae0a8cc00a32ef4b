/*
 * xmalloc-test: allocating threads and freeing threads, after Lever and
 * Boreham's benchmark: half of THREADS threads allocate blocks of
 * 16-512 B, write them and pass them on in batches; the other half take
 * the batches and free the blocks, so no block is freed by the thread
 * that allocated it.
 *
 *   xmalloc_test [SCALE [THREADS]]      (THREADS default 2, at least 2)
 */
#define _GNU_SOURCE
#include "classic.h"

enum { BATCH = 256, MAX_PENDING = 64 };

typedef struct batch {
    struct batch *next;
    unsigned char *block[BATCH];
} batch;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static batch *pending;
static size_t pending_count, producers_left;

typedef struct worker {
    unsigned index;
    size_t batches;
    uint64_t sum;
} worker;

static void *allocate(void *arg)
{
    worker *w = arg;
    uint64_t rng = 0x3a110cULL + w->index, value = (uint64_t)w->index << 40;
    for (size_t i = 0; i < w->batches; i++) {
        batch *b = xmalloc(sizeof *b);
        for (size_t k = 0; k < BATCH; k++)
            b->block[k] = checked_new(rng_range(&rng, CHECKED_MIN, 512), value++);
        pthread_mutex_lock(&lock);
        while (pending_count >= MAX_PENDING)
            pthread_cond_wait(&changed, &lock);
        b->next = pending;
        pending = b;
        pending_count++;
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_lock(&lock);
    producers_left--;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *release(void *arg)
{
    worker *w = arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (pending == NULL && producers_left > 0)
            pthread_cond_wait(&changed, &lock);
        batch *b = pending;
        if (b != NULL) {
            pending = b->next;
            pending_count--;
            pthread_cond_broadcast(&changed);
        }
        pthread_mutex_unlock(&lock);
        if (b == NULL)
            return NULL;
        for (size_t k = 0; k < BATCH; k++)
            w->sum += checked_free(b->block[k]);
        free(b);
    }
}

int main(int argc, char **argv)
{
    unsigned threads = classic_threads(classic_args(argc, argv, "xmalloc_test", " [THREADS]"), 2, 64);
    if (threads < 2) {
        fprintf(stderr, "xmalloc_test: THREADS must be at least 2 (allocators and freers)\n");
        return 2;
    }
    unsigned producers = threads / 2;
    size_t batches = classic_scaled(16000) / producers + 1;
    producers_left = producers;
    worker *w = xcalloc(threads, sizeof *w);
    pthread_t *tid = xcalloc(threads, sizeof *tid);
    for (unsigned t = 0; t < threads; t++) {
        w[t] = (worker){.index = t, .batches = batches};
        classic_thread(&tid[t], t < producers ? allocate : release, &w[t]);
    }
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
