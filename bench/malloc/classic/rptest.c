/*
 * rptest: the producer/consumer pattern of rpmalloc's benchmark, from its
 * description: THREADS threads in a ring each keep a working set of
 * blocks of their own (16 B - 16 KiB, most of them small) that they
 * replace at random, and every round each allocates a batch of blocks,
 * hands it to the next thread, and frees the batch the previous thread
 * handed to it.
 *
 *   rptest [SCALE [THREADS]]      (THREADS default 2)
 */
#define _GNU_SOURCE
#include "classic.h"

enum { BATCH = 64, QUEUE = 4, WORKING = 2000, REPLACE = 64 };

typedef struct queue {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    unsigned char **batch[QUEUE];
    size_t head, count;
} queue;

typedef struct worker {
    queue *in, *out;
    unsigned index;
    size_t rounds;
    uint64_t sum;
} worker;

static void push(queue *q, unsigned char **batch)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == QUEUE)
        pthread_cond_wait(&q->changed, &q->lock);
    q->batch[(q->head + q->count) % QUEUE] = batch;
    q->count++;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

static unsigned char **pop(queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        pthread_cond_wait(&q->changed, &q->lock);
    unsigned char **batch = q->batch[q->head];
    q->head = (q->head + 1) % QUEUE;
    q->count--;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    return batch;
}

static size_t block_size(uint64_t *rng)
{
    return rng_next(rng) % 8 == 0 ? classic_log_size(rng, 10, 14) : classic_log_size(rng, 4, 10);
}

static void *run(void *arg)
{
    worker *w = arg;
    uint64_t rng = 0x5eed0000ULL + w->index, value = (uint64_t)w->index << 40;
    unsigned char **working = xcalloc(WORKING, sizeof *working);
    for (size_t r = 0; r < w->rounds; r++) {
        for (size_t i = 0; i < REPLACE; i++) {
            size_t s = rng_next(&rng) % WORKING;
            if (working[s] != NULL)
                w->sum += checked_free(working[s]);
            working[s] = checked_new(block_size(&rng), value++);
        }
        unsigned char **batch = xmalloc(BATCH * sizeof *batch);
        for (size_t i = 0; i < BATCH; i++)
            batch[i] = checked_new(block_size(&rng), value++);
        push(w->out, batch);
        batch = pop(w->in);
        for (size_t i = 0; i < BATCH; i++)
            w->sum += checked_free(batch[i]);
        free(batch);
    }
    for (size_t s = 0; s < WORKING; s++)
        if (working[s] != NULL)
            w->sum += checked_free(working[s]);
    free(working);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = classic_threads(classic_args(argc, argv, "rptest", " [THREADS]"), 2, 64);
    size_t rounds = classic_scaled(8000);
    queue *q = xcalloc(threads, sizeof *q);
    worker *w = xcalloc(threads, sizeof *w);
    pthread_t *tid = xcalloc(threads, sizeof *tid);
    for (unsigned t = 0; t < threads; t++) {
        pthread_mutex_init(&q[t].lock, NULL);
        pthread_cond_init(&q[t].changed, NULL);
    }
    for (unsigned t = 0; t < threads; t++) {
        w[t] = (worker){.in = &q[t], .out = &q[(t + 1) % threads], .index = t, .rounds = rounds};
        classic_thread(&tid[t], run, &w[t]);
    }
    uint64_t result = 0;
    for (unsigned t = 0; t < threads; t++) {
        classic_join(tid[t]);
        result += w[t].sum;
    }
    for (unsigned t = 0; t < threads; t++) {
        pthread_mutex_destroy(&q[t].lock);
        pthread_cond_destroy(&q[t].changed);
    }
    free(q);
    free(w);
    free(tid);
    classic_result(result);
    return 0;
}
