/*
 * Allocator benchmarks that call only the standard malloc names, so one
 * binary measures any allocator put in front of libc with LD_PRELOAD.
 *
 *   malloc_bench NAME [SCALE]
 *
 * runs benchmark NAME once with its work multiplied by SCALE (default 1,
 * sized to take roughly 0.3 to 2 s with glibc on the project's machine;
 * the ctest smoke run uses 0.01). It prints one line:
 *
 *   NAME seconds=<wall time of the work> maxrss_kib=<peak RSS> check=<n>
 *        cpu_seconds=<user + system time of all threads during the work>
 *
 * (on one line). CPU time is less disturbed than wall time when other
 * processes compete for the cores; both are reported.
 * `check` is a value computed from the work (it must not depend on the
 * allocator; the driver compares it across allocators), which also keeps
 * the compiler from removing the work. bench/malloc/run.sh runs each
 * benchmark several times under each allocator and tabulates the medians.
 *
 * Benchmarks:
 *   small_churn        one thread replacing random slots with 16-128 B blocks
 *   mixed_sizes        one thread, sizes log-uniform from 8 B to 64 KiB
 *   realloc_growth     buffers grown a little at a time by realloc
 *   large_blocks       256 KiB - 8 MiB blocks allocated, touched, freed
 *   producer_consumer  2 threads allocate, 2 others free (cross-thread)
 *   many_threads       16 threads of small churn on (typically) 2 cores
 *   larson             4 threads replacing random slots of one shared array
 *   binary_trees       build, walk and drop binary trees (GC-bench style)
 *   string_hash        a chained hash map of strdup'ed keys: insert,
 *                      look up, delete half, grow the table
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "xorshift.h"

static double scale = 1.0;

static size_t scaled(double n)
{
    double v = n * scale;
    return v < 1.0 ? 1 : (size_t)v;
}

static void *xmalloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "malloc_bench: malloc(%zu) failed\n", size);
        exit(1);
    }
    return p;
}


/* Log-uniform size in [low, high]: as many blocks of 8-16 B as of
 * 32-64 KiB, the shape of real programs' size histograms. */
static size_t rng_log_size(uint64_t *state, unsigned low_shift, unsigned high_shift)
{
    unsigned shift = (unsigned)rng_range(state, low_shift, high_shift - 1);
    size_t base = (size_t)1 << shift;
    return base + (size_t)(rng_next(state) % base);
}

/* ---- single-threaded ------------------------------------------------------- */

static uint64_t bench_small_churn(void)
{
    enum { SLOTS = 20000 };
    unsigned char **slot = calloc(SLOTS, sizeof *slot);
    uint64_t rng = 1, check = 0;
    size_t ops = scaled(2.4e7);
    for (size_t i = 0; i < ops; i++) {
        size_t s = rng_next(&rng) % SLOTS;
        if (slot[s] != NULL) {
            check += slot[s][0];
            free(slot[s]);
        }
        size_t size = rng_range(&rng, 16, 128);
        slot[s] = xmalloc(size);
        slot[s][0] = (unsigned char)size;
    }
    for (size_t s = 0; s < SLOTS; s++)
        free(slot[s]);
    free(slot);
    return check;
}

static uint64_t bench_mixed_sizes(void)
{
    enum { SLOTS = 8192 };
    unsigned char **slot = calloc(SLOTS, sizeof *slot);
    size_t *sizes = calloc(SLOTS, sizeof *sizes);
    uint64_t rng = 2, check = 0;
    size_t ops = scaled(4e6);
    for (size_t i = 0; i < ops; i++) {
        size_t s = rng_next(&rng) % SLOTS;
        if (slot[s] != NULL) {
            check += slot[s][sizes[s] - 1];
            free(slot[s]);
        }
        size_t size = rng_log_size(&rng, 3, 16);
        slot[s] = xmalloc(size);
        sizes[s] = size;
        slot[s][0] = 1;
        slot[s][size - 1] = (unsigned char)size;
    }
    for (size_t s = 0; s < SLOTS; s++)
        free(slot[s]);
    free(slot);
    free(sizes);
    return check;
}

static uint64_t bench_realloc_growth(void)
{
    /* 64 buffers grow in small steps (as a string builder or a vector
     * growing one element at a time without its own doubling would) to
     * 1-256 KiB, then are dropped and started again. */
    enum { BUFFERS = 64 };
    unsigned char *buf[BUFFERS] = {0};
    size_t len[BUFFERS] = {0}, limit[BUFFERS] = {0};
    uint64_t rng = 3, check = 0;
    size_t ops = scaled(1.6e6);
    for (size_t i = 0; i < ops; i++) {
        size_t b = rng_next(&rng) % BUFFERS;
        if (buf[b] == NULL)
            limit[b] = rng_log_size(&rng, 10, 18);
        size_t grow = rng_range(&rng, 1, 64);
        unsigned char *p = realloc(buf[b], len[b] + grow);
        if (p == NULL) {
            fprintf(stderr, "malloc_bench: realloc failed\n");
            exit(1);
        }
        memset(p + len[b], (int)(len[b] & 0xff), grow);
        buf[b] = p;
        len[b] += grow;
        if (len[b] >= limit[b]) {
            check += buf[b][len[b] / 2] + len[b];
            free(buf[b]);
            buf[b] = NULL;
            len[b] = 0;
        }
    }
    for (size_t b = 0; b < BUFFERS; b++)
        free(buf[b]);
    return check;
}

static uint64_t bench_large_blocks(void)
{
    /* Up to 8 live blocks of 256 KiB - 8 MiB, every page written: the cost
     * of getting memory from the OS and giving it back. */
    enum { LIVE = 8 };
    unsigned char *live[LIVE] = {0};
    size_t sizes[LIVE] = {0};
    uint64_t rng = 4, check = 0;
    size_t ops = scaled(4000);
    for (size_t i = 0; i < ops; i++) {
        size_t s = rng_next(&rng) % LIVE;
        if (live[s] != NULL) {
            check += live[s][sizes[s] - 1];
            free(live[s]);
        }
        size_t size = rng_log_size(&rng, 18, 23);
        unsigned char *p = xmalloc(size);
        for (size_t off = 0; off < size; off += 4096)
            p[off] = (unsigned char)off;
        p[size - 1] = (unsigned char)i;
        live[s] = p;
        sizes[s] = size;
    }
    for (size_t s = 0; s < LIVE; s++)
        free(live[s]);
    return check;
}

/* ---- multi-threaded --------------------------------------------------------- */

/* A bounded queue of batches of blocks, producers to consumers. */
enum { BATCH = 64, QUEUE_BATCHES = 64 };

typedef struct batch_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    unsigned char **items[QUEUE_BATCHES];
    size_t head, count;
    size_t producers_left;
} batch_queue;

static void queue_push(batch_queue *q, unsigned char **batch)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == QUEUE_BATCHES)
        pthread_cond_wait(&q->not_full, &q->lock);
    q->items[(q->head + q->count) % QUEUE_BATCHES] = batch;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

/* Returns NULL once every producer is done and the queue is empty. */
static unsigned char **queue_pop(batch_queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0 && q->producers_left > 0)
        pthread_cond_wait(&q->not_empty, &q->lock);
    unsigned char **batch = NULL;
    if (q->count > 0) {
        batch = q->items[q->head];
        q->head = (q->head + 1) % QUEUE_BATCHES;
        q->count--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->lock);
    return batch;
}

typedef struct pc_arg {
    batch_queue *queue;
    uint64_t seed;
    size_t batches;
    uint64_t check;
} pc_arg;

static void *producer_main(void *p)
{
    pc_arg *a = p;
    uint64_t rng = a->seed;
    for (size_t i = 0; i < a->batches; i++) {
        unsigned char **batch = xmalloc(BATCH * sizeof *batch);
        for (size_t j = 0; j < BATCH; j++) {
            size_t size = rng_log_size(&rng, 4, 10);
            batch[j] = xmalloc(size);
            batch[j][0] = (unsigned char)size;
        }
        queue_push(a->queue, batch);
    }
    pthread_mutex_lock(&a->queue->lock);
    a->queue->producers_left--;
    pthread_cond_broadcast(&a->queue->not_empty);
    pthread_mutex_unlock(&a->queue->lock);
    return NULL;
}

static void *consumer_main(void *p)
{
    pc_arg *a = p;
    unsigned char **batch;
    while ((batch = queue_pop(a->queue)) != NULL) {
        for (size_t j = 0; j < BATCH; j++) {
            a->check += batch[j][0];
            free(batch[j]);
        }
        free(batch);
    }
    return NULL;
}

static void start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(t, NULL, fn, arg);
    if (rc != 0) {
        fprintf(stderr, "malloc_bench: pthread_create: %s\n", strerror(rc));
        exit(1);
    }
}

static uint64_t bench_producer_consumer(void)
{
    enum { PRODUCERS = 2, CONSUMERS = 2 };
    batch_queue q;
    memset(&q, 0, sizeof q);
    pthread_mutex_init(&q.lock, NULL);
    pthread_cond_init(&q.not_empty, NULL);
    pthread_cond_init(&q.not_full, NULL);
    q.producers_left = PRODUCERS;
    pc_arg prod[PRODUCERS], cons[CONSUMERS];
    pthread_t threads[PRODUCERS + CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        cons[i] = (pc_arg){.queue = &q};
        start(&threads[PRODUCERS + i], consumer_main, &cons[i]);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        prod[i] = (pc_arg){.queue = &q, .seed = 100 + (uint64_t)i, .batches = scaled(35000)};
        start(&threads[i], producer_main, &prod[i]);
    }
    uint64_t check = 0;
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < CONSUMERS; i++)
        check += cons[i].check;
    return check;
}

typedef struct churn_arg {
    uint64_t seed;
    size_t ops;
    uint64_t check;
} churn_arg;

static void *churn_main(void *p)
{
    churn_arg *a = p;
    enum { SLOTS = 1000 };
    unsigned char *slot[SLOTS] = {0};
    uint64_t rng = a->seed;
    for (size_t i = 0; i < a->ops; i++) {
        size_t s = rng_next(&rng) % SLOTS;
        if (slot[s] != NULL) {
            a->check += slot[s][0];
            free(slot[s]);
        }
        size_t size = rng_log_size(&rng, 3, 11);
        slot[s] = xmalloc(size);
        slot[s][0] = (unsigned char)size;
    }
    for (size_t s = 0; s < SLOTS; s++)
        free(slot[s]);
    return NULL;
}

static uint64_t bench_many_threads(void)
{
    enum { THREADS = 16 };
    churn_arg args[THREADS];
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (churn_arg){.seed = 200 + (uint64_t)i, .ops = scaled(1.5e6)};
        start(&threads[i], churn_main, &args[i]);
    }
    uint64_t check = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        check += args[i].check;
    }
    return check;
}

/* Larson-style server: threads replace random slots of one shared array,
 * so most frees are of blocks another thread allocated. */
enum { LARSON_SLOTS = 20000 };
static _Atomic(unsigned char *) larson_slot[LARSON_SLOTS];

static void *larson_main(void *p)
{
    churn_arg *a = p;
    uint64_t rng = a->seed;
    for (size_t i = 0; i < a->ops; i++) {
        size_t s = rng_next(&rng) % LARSON_SLOTS;
        size_t size = rng_range(&rng, 16, 1024);
        unsigned char *fresh = xmalloc(size);
        fresh[0] = (unsigned char)size;
        unsigned char *old = atomic_exchange_explicit(&larson_slot[s], fresh,
                                                      memory_order_acq_rel);
        if (old != NULL) {
            a->check += old[0];
            free(old);
        }
    }
    return NULL;
}

static uint64_t bench_larson(void)
{
    enum { THREADS = 4 };
    churn_arg args[THREADS];
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (churn_arg){.seed = 300 + (uint64_t)i, .ops = scaled(3e6)};
        start(&threads[i], larson_main, &args[i]);
    }
    uint64_t check = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        check += args[i].check;
    }
    for (size_t s = 0; s < LARSON_SLOTS; s++) {
        unsigned char *p = atomic_load(&larson_slot[s]);
        if (p != NULL) {
            check += p[0];
            free(p);
        }
        atomic_store(&larson_slot[s], NULL);
    }
    /* Which thread's block ends in which slot depends on scheduling, so
     * the sum of what was freed does too: report only that it ran. */
    return check > 0;
}

/* ---- workloads -------------------------------------------------------------- */

typedef struct tree_node {
    struct tree_node *left, *right;
    long value;
} tree_node;

static tree_node *tree_build(int depth, long value)
{
    tree_node *n = xmalloc(sizeof *n);
    n->value = value;
    if (depth > 0) {
        n->left = tree_build(depth - 1, 2 * value);
        n->right = tree_build(depth - 1, 2 * value + 1);
    } else {
        n->left = n->right = NULL;
    }
    return n;
}

static long tree_check(const tree_node *n)
{
    return n->left == NULL ? n->value % 7 : 1 + tree_check(n->left) + tree_check(n->right);
}

static void tree_free(tree_node *n)
{
    if (n->left != NULL) {
        tree_free(n->left);
        tree_free(n->right);
    }
    free(n);
}

static uint64_t bench_binary_trees(void)
{
    /* A long-lived tree stays while many short-lived trees of every depth
     * are built, checked and dropped, as in the benchmarks game. */
    const int max_depth = 16;
    tree_node *long_lived = tree_build(max_depth, 1);
    uint64_t check = 0;
    for (int depth = 4; depth <= max_depth; depth += 2) {
        size_t iterations = scaled((double)((size_t)1 << (max_depth - depth + 6)));
        for (size_t i = 0; i < iterations; i++) {
            tree_node *t = tree_build(depth, (long)i);
            check += (uint64_t)tree_check(t);
            tree_free(t);
        }
    }
    check += (uint64_t)tree_check(long_lived);
    tree_free(long_lived);
    return check;
}

typedef struct hash_entry {
    struct hash_entry *next;
    char *key;
    size_t value;
} hash_entry;

typedef struct hash_map {
    hash_entry **buckets;
    size_t nbuckets, count;
} hash_map;

static uint64_t hash_string(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void map_grow(hash_map *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 64;
    hash_entry **b = calloc(n, sizeof *b);
    if (b == NULL)
        exit(1);
    for (size_t i = 0; i < m->nbuckets; i++)
        for (hash_entry *e = m->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            size_t j = hash_string(e->key) & (n - 1);
            e->next = b[j];
            b[j] = e;
        }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

static hash_entry **map_find(hash_map *m, const char *key)
{
    hash_entry **e = &m->buckets[hash_string(key) & (m->nbuckets - 1)];
    while (*e != NULL && strcmp((*e)->key, key) != 0)
        e = &(*e)->next;
    return e;
}

static uint64_t bench_string_hash(void)
{
    hash_map m = {0};
    map_grow(&m);
    uint64_t check = 0;
    size_t keys = scaled(600000);
    char key[64];
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < keys; i++) {
            snprintf(key, sizeof key, "key-%zu-%zu", i * 2654435761u % keys, i % 97);
            hash_entry **slot = map_find(&m, key);
            if (*slot != NULL) {
                (*slot)->value++;
                continue;
            }
            hash_entry *e = xmalloc(sizeof *e);
            e->key = strdup(key);
            e->value = i;
            e->next = NULL;
            *slot = e;
            if (++m.count > m.nbuckets)
                map_grow(&m);
        }
        /* Delete about half, so the next round reallocates them. */
        for (size_t i = 0; i < m.nbuckets; i++)
            for (hash_entry **e = &m.buckets[i]; *e != NULL;) {
                if (((*e)->value + (size_t)round) % 2 == 0) {
                    hash_entry *dead = *e;
                    *e = dead->next;
                    check += dead->value;
                    free(dead->key);
                    free(dead);
                    m.count--;
                } else {
                    e = &(*e)->next;
                }
            }
    }
    for (size_t i = 0; i < m.nbuckets; i++)
        for (hash_entry *e = m.buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            check += e->value;
            free(e->key);
            free(e);
        }
    free(m.buckets);
    return check;
}

/* ---- main ------------------------------------------------------------------- */

static const struct {
    const char *name;
    uint64_t (*run)(void);
} benchmarks[] = {
    {"small_churn", bench_small_churn},
    {"mixed_sizes", bench_mixed_sizes},
    {"realloc_growth", bench_realloc_growth},
    {"large_blocks", bench_large_blocks},
    {"producer_consumer", bench_producer_consumer},
    {"many_threads", bench_many_threads},
    {"larson", bench_larson},
    {"binary_trees", bench_binary_trees},
    {"string_hash", bench_string_hash},
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* User and system time of the whole process (all threads) so far. */
static double cpu_seconds_so_far(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

static void usage(void)
{
    fprintf(stderr, "usage: malloc_bench NAME [SCALE]\nbenchmarks:");
    for (size_t i = 0; i < sizeof benchmarks / sizeof benchmarks[0]; i++)
        fprintf(stderr, " %s", benchmarks[i].name);
    fprintf(stderr, "\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        usage();
        return 2;
    }
    if (argc == 3) {
        char *end = NULL;
        errno = 0;
        scale = strtod(argv[2], &end);
        if (errno != 0 || *end != '\0' || !(scale > 0.0) || scale > 1000.0) {
            fprintf(stderr, "malloc_bench: SCALE must be a number in (0, 1000], not \"%s\"\n",
                    argv[2]);
            return 2;
        }
    }
    if (strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < sizeof benchmarks / sizeof benchmarks[0]; i++)
            printf("%s\n", benchmarks[i].name);
        return 0;
    }
    for (size_t i = 0; i < sizeof benchmarks / sizeof benchmarks[0]; i++) {
        if (strcmp(argv[1], benchmarks[i].name) != 0)
            continue;
        double cpu_before = cpu_seconds_so_far();
        double t0 = now_seconds();
        uint64_t check = benchmarks[i].run();
        double elapsed = now_seconds() - t0;
        struct rusage usage_now;
        getrusage(RUSAGE_SELF, &usage_now);
        double cpu = (double)(usage_now.ru_utime.tv_sec + usage_now.ru_stime.tv_sec) +
                     (double)(usage_now.ru_utime.tv_usec + usage_now.ru_stime.tv_usec) * 1e-6 -
                     cpu_before;
        printf("%s seconds=%.4f maxrss_kib=%ld check=%llu cpu_seconds=%.4f\n",
               benchmarks[i].name, elapsed, usage_now.ru_maxrss, (unsigned long long)check,
               cpu);
        return 0;
    }
    fprintf(stderr, "malloc_bench: no benchmark named \"%s\"\n", argv[1]);
    usage();
    return 2;
}
