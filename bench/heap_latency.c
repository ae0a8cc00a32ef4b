/* The worst single alloc of the region heap, with and without deferred
 * merging.
 *
 * Deferral (BRISK_HEAP_DEFER_MERGE) keeps freed small blocks aside
 * unmerged and, when an alloc finds no room, merges every one of them
 * before it tries again (or fails). That alloc does work proportional to
 * the number of kept blocks, bounded by the limit of 12 per size: still
 * a constant, but not the default heap's handful of bitmap and list
 * operations. This measures that alloc on the state that maximises it:
 *
 *   every size below 1 KiB (62 classes) holds its 12 kept blocks, in
 *   pairs of neighbours (so the flush merges every second one into the
 *   first), each pair pinned apart by a live 32-byte block:
 *
 *   | A | B | pin | A | B | pin | ... | the rest of the heap, allocated |
 *
 *   then one alloc of 4 KiB, which fits nowhere: the default heap fails at
 *   once (its freed pairs merged when they were freed, into chunks of at
 *   most 2 KiB); the deferring heap first merges all 744 kept blocks, then
 *   fails.
 *
 * Each run builds a fresh heap of each kind (alternating which goes
 * first) and times that one call on the monotonic clock. Printed: the
 * median, minimum and maximum of each, over all runs, in microseconds,
 * and for scale the median time of an alloc that succeeds from an exact
 * class in each heap, and of timing nothing at all (the clock's own
 * cost, which that small figure mostly is).
 *
 *   usage: heap_latency [runs]   (default 201)
 */
#define _POSIX_C_SOURCE 200809L
#include "brisk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define HEAP_BYTES ((size_t)8 << 20)
#define CLASSES 62     /* chunk sizes 32 .. 1008 */
#define KEPT_PER_CLASS 12
#define PAIRS (KEPT_PER_CLASS / 2)

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static void fail(const char *what)
{
    fprintf(stderr, "heap_latency: %s\n", what);
    exit(1);
}

/* Request size whose chunk is 32 + 16 * cls bytes (header 8 bytes). */
static size_t request_of_class(unsigned cls)
{
    return 24 + 16 * (size_t)cls;
}

/* Builds the state described at the top in a fresh heap and returns it;
 * *exact_us is set to the time of one alloc of an exact, non-empty class
 * taken in passing (the first pair's A block, freed then asked for again). */
static brisk_heap *build_state(unsigned flags, double *exact_us)
{
    brisk_heap *heap = brisk_heap_create_ex(NULL, HEAP_BYTES, flags);
    if (heap == NULL)
        fail("brisk_heap_create_ex failed");
    static void *blocks[CLASSES * KEPT_PER_CLASS];
    size_t n = 0;
    for (unsigned cls = 0; cls < CLASSES; cls++) {
        size_t request = request_of_class(cls);
        for (unsigned pair = 0; pair < PAIRS; pair++) {
            void *a = brisk_heap_alloc(heap, request);
            void *b = brisk_heap_alloc(heap, request);
            void *pin = brisk_heap_alloc(heap, 24);
            if (a == NULL || b == NULL || pin == NULL)
                fail("setup alloc failed");
            blocks[n++] = a;
            blocks[n++] = b;
        }
    }
    /* Everything else, in one block: the heap is then full. */
    brisk_heap_stats stats;
    brisk_heap_get_stats(heap, &stats);
    if (stats.largest_free > 0 && brisk_heap_alloc(heap, stats.largest_free) == NULL)
        fail("filling the heap failed");

    /* One exact-class alloc for scale: free a block of class 10 and ask
     * for its size again (a pop of the kept block when deferring; the
     * exact list, after the free merged nothing, in the default heap:
     * its neighbours are live). */
    size_t probe = (size_t)10 * KEPT_PER_CLASS + 1; /* a B block */
    brisk_heap_free(heap, blocks[probe]);
    double t0 = now_us();
    void *again = brisk_heap_alloc(heap, request_of_class(10));
    *exact_us = now_us() - t0;
    if (again == NULL)
        fail("exact alloc failed");
    blocks[probe] = again;

    for (size_t i = 0; i < n; i++)
        brisk_heap_free(heap, blocks[i]);
    if (brisk_heap_check(heap) != 0)
        fail("brisk_heap_check failed after setup");
    return heap;
}

/* Times the alloc that finds no room. */
static double time_failing_alloc(unsigned flags, double *exact_us)
{
    brisk_heap *heap = build_state(flags, exact_us);
    brisk_heap_stats before;
    brisk_heap_get_stats(heap, &before);
    errno = 0;
    double t0 = now_us();
    void *p = brisk_heap_alloc(heap, 4096);
    double elapsed = now_us() - t0;
    if (p != NULL || errno != ENOMEM)
        fail("the 4 KiB alloc was expected to fail with ENOMEM");
    brisk_heap_stats after;
    brisk_heap_get_stats(heap, &after);
    if (brisk_heap_check(heap) != 0)
        fail("brisk_heap_check failed after the failing alloc");
    /* The deferring heap must have merged its kept blocks: fewer, larger
     * free chunks than before, the same free bytes. */
    if (flags & BRISK_HEAP_DEFER_MERGE) {
        if (after.free_chunks >= before.free_chunks || after.free_bytes != before.free_bytes)
            fail("the failing alloc did not merge the kept blocks");
    } else if (after.free_chunks != before.free_chunks) {
        fail("the default heap's free chunks changed on a failing alloc");
    }
    brisk_heap_destroy(heap);
    return elapsed;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, size_t n)
{
    qsort(v, n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    size_t runs = argc > 1 ? strtoul(argv[1], NULL, 10) : 201;
    if (runs == 0)
        fail("runs must be at least 1");
    double *fail_default = calloc(runs, sizeof(double));
    double *fail_defer = calloc(runs, sizeof(double));
    double *exact_default = calloc(runs, sizeof(double));
    double *exact_defer = calloc(runs, sizeof(double));
    if (!fail_default || !fail_defer || !exact_default || !exact_defer)
        fail("out of memory");
    for (size_t r = 0; r < runs; r++) {
        if (r % 2 == 0) {
            fail_default[r] = time_failing_alloc(0, &exact_default[r]);
            fail_defer[r] = time_failing_alloc(BRISK_HEAP_DEFER_MERGE, &exact_defer[r]);
        } else {
            fail_defer[r] = time_failing_alloc(BRISK_HEAP_DEFER_MERGE, &exact_defer[r]);
            fail_default[r] = time_failing_alloc(0, &exact_default[r]);
        }
    }
    double *empty = calloc(runs, sizeof(double));
    if (empty == NULL)
        fail("out of memory");
    for (size_t r = 0; r < runs; r++) {
        double t0 = now_us();
        empty[r] = now_us() - t0;
    }
    printf("region heap, the alloc that finds no room (%d sizes x %d kept blocks when deferring), "
           "%zu runs, microseconds\n",
           CLASSES, KEPT_PER_CLASS, runs);
    printf("%-28s %10s %10s %10s %16s\n", "heap", "median", "min", "max", "exact-hit median");
    struct {
        const char *name;
        double *fails, *exact;
    } rows[] = {{"default", fail_default, exact_default},
                {"BRISK_HEAP_DEFER_MERGE", fail_defer, exact_defer}};
    for (size_t i = 0; i < 2; i++) {
        double med = median_of(rows[i].fails, runs); /* sorts */
        printf("%-28s %10.2f %10.2f %10.2f %16.3f\n", rows[i].name, med, rows[i].fails[0],
               rows[i].fails[runs - 1], median_of(rows[i].exact, runs));
    }
    printf("the clock timing nothing: median %.3f us\n", median_of(empty, runs));
    free(empty);
    free(fail_default);
    free(fail_defer);
    free(exact_default);
    free(exact_defer);
    return 0;
}
