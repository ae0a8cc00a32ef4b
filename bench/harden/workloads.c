/*
 * Allocation workloads for measuring what hardening costs. The program
 * uses only the standard names and is not linked against brisk: the
 * driver (hardening_cost.py) runs it with LD_PRELOAD of the library under
 * test and BRISK_OPTIONS for the level, and it prints the seconds its
 * timed loop took:
 *
 *     workloads <name> [scale]   ->   "seconds 0.123 cpu 0.120 checksum N"
 *
 * seconds is wall time, cpu the process's CPU time (user + system, all
 * threads): on a loaded machine the CPU time is the steadier measure.
 *
 *   small    random sizes 8..512 B over 20,000 live slots (the common case)
 *   mixed    sizes 8 B..64 KiB, log-distributed, over 2,000 live slots
 *   fifo     100,000 blocks of 64 B allocated, then freed oldest first
 *   threads  two threads, each allocating blocks the other frees
 *   realloc  4,000 buffers grown by realloc from 1 B to 16 KiB
 *   sparse   blocks of 64 KiB to 4 MiB, log-distributed, over 4 live
 *            slots, of which one byte per 64 KiB is written (buffers
 *            sized for the worst case and partly used)
 *
 * Every block but sparse's is filled when allocated, as a program
 * initializes what it asks for, and its first and last bytes are read
 * before the free, so the allocator's placement and cache behaviour
 * count, not just its bookkeeping. A checksum is printed so the work
 * cannot be dropped.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_seconds(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t checksum;

static char *touch_alloc(size_t size, uint64_t tag)
{
    char *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "malloc(%zu) failed\n", size);
        exit(1);
    }
    memset(p, (int)(tag & 0xff), size);
    p[size - 1] = (char)(tag >> 8);
    return p;
}

static void touch_free(char *p, size_t size)
{
    checksum += (unsigned char)p[0] + (unsigned char)p[size - 1];
    free(p);
}

static void churn(size_t slots, uint64_t ops, size_t (*size_of)(uint64_t))
{
    char **live = calloc(slots, sizeof *live);
    size_t *sizes = calloc(slots, sizeof *sizes);
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t r = rng_next(&s);
        size_t slot = (size_t)(r % slots);
        if (live[slot] != NULL)
            touch_free(live[slot], sizes[slot]);
        sizes[slot] = size_of(r >> 20);
        live[slot] = touch_alloc(sizes[slot], r);
    }
    for (size_t i = 0; i < slots; i++)
        if (live[i] != NULL)
            touch_free(live[i], sizes[i]);
    free(live);
    free(sizes);
}

static size_t small_size(uint64_t r) { return 8 + (size_t)(r % 505); }

static size_t mixed_size(uint64_t r)
{
    unsigned bits = 3 + (unsigned)(r % 14); /* 8 B .. 64 KiB */
    return ((size_t)1 << bits) + (size_t)((r >> 8) % ((size_t)1 << bits));
}

static void run_small(double scale) { churn(20000, (uint64_t)(1000000 * scale), small_size); }
static void run_mixed(double scale) { churn(2000, (uint64_t)(200000 * scale), mixed_size); }

static void run_fifo(double scale)
{
    enum { N = 100000 };
    char **blocks = malloc(N * sizeof *blocks);
    for (uint64_t round = 0; round < (uint64_t)(5 * scale + 0.5); round++) {
        for (size_t i = 0; i < N; i++)
            blocks[i] = touch_alloc(64, i);
        for (size_t i = 0; i < N; i++)
            touch_free(blocks[i], 64);
    }
    free(blocks);
}

/* Two threads pass blocks through a ring each way: every block is freed
 * by the thread that did not allocate it. */
#define RING 4096
typedef struct mailbox {
    char *slots[RING];
    size_t sizes[RING];
    unsigned head, tail; /* producer writes head, consumer tail */
} mailbox;

typedef struct worker {
    mailbox *out, *in;
    uint64_t ops;
    uint64_t seed;
    uint64_t sum;
} worker;

static void *worker_run(void *arg)
{
    worker *w = arg;
    uint64_t s = w->seed;
    uint64_t sent = 0, received = 0;
    while (sent < w->ops || received < w->ops) {
        int progress = 0;
        unsigned head = __atomic_load_n(&w->out->head, __ATOMIC_RELAXED);
        unsigned tail = __atomic_load_n(&w->out->tail, __ATOMIC_ACQUIRE);
        if (sent < w->ops && head - tail < RING) {
            uint64_t r = rng_next(&s);
            size_t size = 16 + (size_t)(r % 1009);
            char *p = malloc(size);
            memset(p, (int)(r & 0xff), size);
            p[size - 1] = (char)(r >> 8);
            w->out->slots[head % RING] = p;
            w->out->sizes[head % RING] = size;
            __atomic_store_n(&w->out->head, head + 1, __ATOMIC_RELEASE);
            sent++;
            progress = 1;
        }
        unsigned in_head = __atomic_load_n(&w->in->head, __ATOMIC_ACQUIRE);
        unsigned in_tail = __atomic_load_n(&w->in->tail, __ATOMIC_RELAXED);
        if (in_tail != in_head) {
            char *p = w->in->slots[in_tail % RING];
            size_t size = w->in->sizes[in_tail % RING];
            w->sum += (unsigned char)p[0] + (unsigned char)p[size - 1];
            free(p);
            __atomic_store_n(&w->in->tail, in_tail + 1, __ATOMIC_RELEASE);
            received++;
            progress = 1;
        }
        /* Waiting on the other thread: give the core away rather than
         * spin, so CPU time measures the allocator, not the wait. */
        if (!progress)
            sched_yield();
    }
    return NULL;
}

static void run_threads(double scale)
{
    static mailbox a_to_b, b_to_a;
    uint64_t ops = (uint64_t)(300000 * scale);
    worker a = {&a_to_b, &b_to_a, ops, 0x1234567u, 0};
    worker b = {&b_to_a, &a_to_b, ops, 0x7654321u, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, worker_run, &a);
    pthread_create(&tb, NULL, worker_run, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    checksum += a.sum + b.sum;
}

static void run_realloc(double scale)
{
    enum { BUFFERS = 4000 };
    static char *bufs[BUFFERS];
    static size_t lens[BUFFERS];
    for (uint64_t round = 0; round < (uint64_t)(2 * scale + 0.5); round++) {
        for (size_t i = 0; i < BUFFERS; i++) {
            bufs[i] = NULL;
            lens[i] = 0;
        }
        uint64_t s = 0xabcdef12345u + round;
        for (size_t step = 0; step < 40; step++) {
            for (size_t i = 0; i < BUFFERS; i++) {
                size_t grow = 1 + (size_t)(rng_next(&s) % (lens[i] / 4 + 16));
                if (lens[i] + grow > 16384)
                    continue;
                char *r = realloc(bufs[i], lens[i] + grow);
                if (r == NULL)
                    exit(1);
                memset(r + lens[i], (int)i, grow);
                bufs[i] = r;
                lens[i] += grow;
            }
        }
        for (size_t i = 0; i < BUFFERS; i++) {
            checksum += lens[i] != 0 ? (unsigned char)bufs[i][lens[i] - 1] : 0;
            free(bufs[i]);
        }
    }
}

/* One byte written per 64 KiB, and the last: what a program that sizes
 * its buffers for the worst case touches of them. */
static void run_sparse(double scale)
{
    enum { SLOTS = 4, STRIDE = 64 * 1024 };
    static char *live[SLOTS];
    static size_t sizes[SLOTS];
    uint64_t s = 0x5eed5eed1234u;
    uint64_t ops = (uint64_t)(20000 * scale);
    for (uint64_t i = 0; i < ops + SLOTS; i++) {
        size_t slot = (size_t)(i % SLOTS);
        if (live[slot] != NULL) {
            checksum += (unsigned char)live[slot][0] + (unsigned char)live[slot][sizes[slot] - 1];
            free(live[slot]);
            live[slot] = NULL;
        }
        if (i >= ops)
            continue;
        uint64_t r = rng_next(&s);
        unsigned bits = 16 + (unsigned)(r % 6); /* 64 KiB .. 4 MiB */
        size_t size = ((size_t)1 << bits) + (size_t)((r >> 8) % ((size_t)1 << bits));
        if (size > ((size_t)4 << 20))
            size = (size_t)4 << 20;
        char *p = malloc(size);
        if (p == NULL) {
            fprintf(stderr, "malloc(%zu) failed\n", size);
            exit(1);
        }
        for (size_t at = 0; at < size; at += STRIDE)
            p[at] = (char)(r >> (at % 61));
        p[size - 1] = (char)r;
        live[slot] = p;
        sizes[slot] = size;
    }
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*run)(double);
    } workloads[] = {
        {"small", run_small}, {"mixed", run_mixed},     {"fifo", run_fifo},
        {"threads", run_threads}, {"realloc", run_realloc}, {"sparse", run_sparse},
    };
    if (argc < 2) {
        fprintf(stderr, "usage: %s small|mixed|fifo|threads|realloc|sparse [scale]\n", argv[0]);
        return 2;
    }
    double scale = argc > 2 ? strtod(argv[2], NULL) : 1.0;
    if (!(scale > 0.0 && scale <= 1000.0)) {
        fprintf(stderr, "%s: scale must be in (0, 1000]\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++) {
        if (strcmp(argv[1], workloads[i].name) == 0) {
            double start = clock_seconds(CLOCK_MONOTONIC);
            double cpu_start = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
            workloads[i].run(scale);
            double seconds = clock_seconds(CLOCK_MONOTONIC) - start;
            double cpu = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
            printf("seconds %.6f cpu %.6f checksum %llu\n", seconds, cpu,
                   (unsigned long long)checksum);
            return 0;
        }
    }
    fprintf(stderr, "%s: no workload named %s\n", argv[0], argv[1]);
    return 2;
}
