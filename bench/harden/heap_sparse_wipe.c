/*
 * What BRISK_HEAP_WIPE_CHECK costs the region heap on big blocks that the
 * program touches sparsely (buffers sized for the worst case, one byte
 * written per 64 KiB): eight live blocks of 64 KiB to 1 MiB in a mapped
 * 64 MiB heap, 4,000 steps each freeing one and allocating another. A
 * heap without options and a WIPE_CHECK heap take turns, RUNS times
 * (default 7); it prints each one's median and range, in milliseconds of
 * the thread's CPU time, and the ratio of the medians (docs/benchmarks.md,
 * "Hardening cost").
 *
 *   ./build/bench/harden/heap_sparse_wipe [RUNS]
 */
#define _GNU_SOURCE
#include "brisk.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { LIVE = 8, STEPS = 4000, RUNS_MAX = 99 };
#define STRIDE ((size_t)64 * 1024)

static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* One run over a fresh heap with `flags`; returns its CPU milliseconds,
 * and adds what it read back to *check (the same under both heaps). */
static double run_once(unsigned flags, unsigned long long *check)
{
    brisk_heap *heap = brisk_heap_create_ex(NULL, (size_t)64 << 20, flags);
    if (heap == NULL) {
        fprintf(stderr, "heap_sparse_wipe: brisk_heap_create_ex(flags 0x%x) failed\n", flags);
        exit(1);
    }
    unsigned char *block[LIVE] = {0};
    size_t size[LIVE] = {0};
    unsigned long long rng = 0x5eed;
    double start = cpu_ms();
    for (int i = 0; i < STEPS; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        unsigned s = (unsigned)(rng >> 61);
        if (block[s] != NULL) {
            for (size_t off = 0; off < size[s]; off += STRIDE)
                *check += block[s][off];
            brisk_heap_free(heap, block[s]);
        }
        size[s] = STRIDE << ((rng >> 40) % 5);
        block[s] = brisk_heap_alloc(heap, size[s]);
        if (block[s] == NULL) {
            fprintf(stderr, "heap_sparse_wipe: an allocation of %zu bytes failed at step %d\n", size[s], i);
            exit(1);
        }
        for (size_t off = 0; off < size[s]; off += STRIDE)
            block[s][off] = (unsigned char)(i + (int)(off / STRIDE));
    }
    double ms = cpu_ms() - start;
    brisk_heap_destroy(heap);
    return ms;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    if (runs < 1 || runs > RUNS_MAX) {
        fprintf(stderr, "usage: %s [RUNS, 1 to %d]\n", argv[0], RUNS_MAX);
        return 2;
    }
    double plain[RUNS_MAX], wiped[RUNS_MAX];
    unsigned long long check_plain = 0, check_wiped = 0;
    for (int r = 0; r < runs; r++) {
        /* Taking turns, and alternating which goes first. */
        if (r % 2 == 0) {
            plain[r] = run_once(0, &check_plain);
            wiped[r] = run_once(BRISK_HEAP_WIPE_CHECK, &check_wiped);
        } else {
            wiped[r] = run_once(BRISK_HEAP_WIPE_CHECK, &check_wiped);
            plain[r] = run_once(0, &check_plain);
        }
    }
    if (check_plain != check_wiped) {
        fprintf(stderr, "heap_sparse_wipe: the two heaps read back different bytes\n");
        return 1;
    }
    qsort(plain, (size_t)runs, sizeof *plain, by_value);
    qsort(wiped, (size_t)runs, sizeof *wiped, by_value);
    printf("heap_sparse_wipe: %d runs, CPU ms, median (min-max)\n", runs);
    printf("  no options    %8.2f (%.2f-%.2f)\n", plain[runs / 2], plain[0], plain[runs - 1]);
    printf("  WIPE_CHECK    %8.2f (%.2f-%.2f)\n", wiped[runs / 2], wiped[0], wiped[runs - 1]);
    printf("  ratio         %8.2fx\n", wiped[runs / 2] / plain[runs / 2]);
    return 0;
}
