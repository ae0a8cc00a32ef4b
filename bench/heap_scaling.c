/* Does the region heap's cost grow with the number of chunks?
 *
 * Two heaps run the same churn (free a random block of a fixed working
 * set, allocate a new one in its place) with blocks of 1-8 KiB:
 *
 *   clean       a heap with nothing else in it;
 *   fragmented  a heap that first holds FRAGMENTS small free chunks (48 to
 *               528 bytes, spread over 32 size classes) that cannot merge,
 *               each pinned apart by a live 32-byte block. Every churn
 *               block is too large for any of them, so an allocator that
 *               searched its free chunks would wade through them all.
 *
 * Runs alternate between the two heaps (so drift in the machine's speed
 * hits both), each run a fresh pair of heaps. Printed: each run's rates,
 * the median rate of each heap, the median of the per-run ratios
 * fragmented/clean and their spread (min, max). The bar: ratio >= 0.8.
 * Rates are per second of the thread's CPU time.
 *
 *   usage: heap_scaling [runs [ops_per_run [fragments]]]
 *          (defaults 7, 2000000, 100000)
 */
#define _POSIX_C_SOURCE 200809L
#include "brisk.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WORKING_SET 512

/* CPU time of this thread: the machine is shared, and time spent waiting
 * for a core is not the heap's cost. */
static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Leaves `fragments` free chunks of 48..528 bytes in the heap, each
 * between two live 32-byte blocks. Returns how many free chunks the heap
 * then holds (check: fragments + the wilderness). */
static size_t fragment(brisk_heap *heap, size_t fragments)
{
    void **holes = malloc(fragments * sizeof *holes);
    if (holes == NULL)
        abort();
    for (size_t i = 0; i < fragments; i++) {
        if (brisk_heap_alloc(heap, 1) == NULL) /* the pin */
            abort();
        holes[i] = brisk_heap_alloc(heap, 40 + 16 * (i % 32));
        if (holes[i] == NULL)
            abort();
    }
    if (brisk_heap_alloc(heap, 1) == NULL) /* the last pin */
        abort();
    for (size_t i = 0; i < fragments; i++)
        brisk_heap_free(heap, holes[i]);
    free(holes);
    brisk_heap_stats stats;
    brisk_heap_get_stats(heap, &stats);
    return stats.free_chunks;
}

/* The churn: `ops` times, free a random block of the working set and
 * allocate 1-8 KiB in its place. Returns operations (alloc + free) per
 * second. */
static double churn(brisk_heap *heap, size_t ops, uint64_t seed)
{
    void *blocks[WORKING_SET];
    rng_state = seed;
    for (size_t i = 0; i < WORKING_SET; i++) {
        blocks[i] = brisk_heap_alloc(heap, 1024 + (rng_next() % 7168));
        if (blocks[i] == NULL)
            abort();
    }
    double start = now_seconds();
    for (size_t i = 0; i < ops; i++) {
        uint64_t r = rng_next();
        size_t slot = r % WORKING_SET;
        brisk_heap_free(heap, blocks[slot]);
        blocks[slot] = brisk_heap_alloc(heap, 1024 + ((r >> 20) % 7168));
        if (blocks[slot] == NULL)
            abort();
        *(volatile char *)blocks[slot] = 1;
    }
    double elapsed = now_seconds() - start;
    if (brisk_heap_check(heap) != 0)
        abort();
    return 2.0 * (double)ops / elapsed;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, size_t n)
{
    qsort(values, n, sizeof *values, compare_double);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    size_t runs = argc > 1 ? strtoul(argv[1], NULL, 0) : 7;
    size_t ops = argc > 2 ? strtoul(argv[2], NULL, 0) : 2000000;
    size_t fragments = argc > 3 ? strtoul(argv[3], NULL, 0) : 100000;
    if (runs == 0 || runs > 100 || ops == 0) {
        fprintf(stderr, "usage: heap_scaling [runs (1-100) [ops_per_run [fragments]]]\n");
        return 2;
    }
    /* Room for the working set (at most 512 * 8 KiB live, plus the
     * fragmentation the churn itself causes) and for the fragments. */
    size_t churn_room = (size_t)64 << 20;
    size_t fragment_room = fragments * (32 + 48 + 16 * 32);

    double clean[100], fragmented[100], ratio[100];
    printf("heap_scaling: %zu runs of %zu churn ops (1-8 KiB blocks, working set %d), %zu fragments\n",
           runs, ops, WORKING_SET, fragments);
    printf("run  clean ops/s   fragmented ops/s  ratio\n");
    for (size_t run = 0; run < runs; run++) {
        uint64_t seed = 1000 + run;
        brisk_heap *a = brisk_heap_create(churn_room + fragment_room);
        brisk_heap *b = brisk_heap_create(churn_room + fragment_room);
        if (a == NULL || b == NULL) {
            perror("brisk_heap_create");
            return 1;
        }
        size_t free_chunks = fragment(b, fragments);
        if (free_chunks != fragments + 1) {
            fprintf(stderr, "expected %zu free chunks, the heap holds %zu\n", fragments + 1, free_chunks);
            return 1;
        }
        /* Alternate which heap goes first. */
        if (run % 2 == 0) {
            clean[run] = churn(a, ops, seed);
            fragmented[run] = churn(b, ops, seed);
        } else {
            fragmented[run] = churn(b, ops, seed);
            clean[run] = churn(a, ops, seed);
        }
        ratio[run] = fragmented[run] / clean[run];
        printf("%3zu  %12.0f  %16.0f  %5.3f\n", run + 1, clean[run], fragmented[run], ratio[run]);
        brisk_heap_destroy(a);
        brisk_heap_destroy(b);
    }
    double clean_median = median(clean, runs);
    double fragmented_median = median(fragmented, runs);
    double ratio_median = median(ratio, runs);
    printf("median: clean %.0f ops/s, fragmented %.0f ops/s (clean spread %.0f-%.0f, fragmented %.0f-%.0f)\n",
           clean_median, fragmented_median, clean[0], clean[runs - 1], fragmented[0], fragmented[runs - 1]);
    printf("ratio fragmented/clean: median %.3f, spread %.3f-%.3f over %zu runs (bar: >= 0.8)\n", ratio_median,
           ratio[0], ratio[runs - 1], runs);
    return ratio_median >= 0.8 ? 0 : 3;
}
