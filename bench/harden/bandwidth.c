/* How fast this machine streams memory: the floor under any wipe that
 * must read or write every freed byte (docs/security.md, "Why the
 * hardened budget cannot be met on this suite").
 *
 * Over a buffer larger than the caches (64 MiB by default), each run
 * reads it whole (8-byte loads OR-ed together, as the wipe's check does)
 * and writes it whole (memset, as a wipe of blocks the program dirtied
 * does), 8 passes each. Printed: every run's GB/s and the medians.
 *
 *   usage: bandwidth [runs [MiB]]   (defaults 7, 64)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PASSES 8

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    size_t runs = argc > 1 ? strtoul(argv[1], NULL, 10) : 7;
    size_t bytes = (argc > 2 ? strtoul(argv[2], NULL, 10) : 64) << 20;
    if (runs == 0 || runs > 1000 || bytes == 0) {
        fprintf(stderr, "usage: bandwidth [runs (1-1000) [MiB]]\n");
        return 2;
    }
    unsigned char *buffer = aligned_alloc(64, bytes);
    double *reads = calloc(runs, sizeof *reads), *writes = calloc(runs, sizeof *writes);
    if (buffer == NULL || reads == NULL || writes == NULL) {
        fprintf(stderr, "bandwidth: out of memory\n");
        return 1;
    }
    memset(buffer, 0, bytes); /* resident before the first timed pass */
    int sink = 0;
    for (size_t r = 0; r < runs; r++) {
        double start = now_seconds();
        uint64_t acc = 0;
        const uint64_t *words = (const uint64_t *)(const void *)buffer;
        for (int pass = 0; pass < PASSES; pass++) {
            /* Four chains, so the loads, not the ORs, set the pace. */
            uint64_t a = 0, b = 0, c = 0, d = 0;
            for (size_t i = 0; i < bytes / 8; i += 4) {
                a |= words[i];
                b |= words[i + 1];
                c |= words[i + 2];
                d |= words[i + 3];
            }
            acc |= a | b | c | d;
            __asm__ volatile("" : "+r"(acc)); /* keep every pass */
        }
        sink |= (int)(acc & 1);
        reads[r] = PASSES * (double)bytes / (now_seconds() - start) / 1e9;
        start = now_seconds();
        for (int pass = 0; pass < PASSES; pass++) {
            memset(buffer, pass, bytes);
            __asm__ volatile("" : : "r"(buffer) : "memory"); /* keep every pass */
        }
        writes[r] = PASSES * (double)bytes / (now_seconds() - start) / 1e9;
        printf("run %zu: read %.1f GB/s, memset %.1f GB/s\n", r + 1, reads[r], writes[r]);
    }
    qsort(reads, runs, sizeof *reads, compare_double);
    qsort(writes, runs, sizeof *writes, compare_double);
    printf("%zu MiB buffer, %zu runs: median read %.1f GB/s [%.1f..%.1f], median memset %.1f GB/s "
           "[%.1f..%.1f]\n",
           bytes >> 20, runs, reads[runs / 2], reads[0], reads[runs - 1], writes[runs / 2], writes[0],
           writes[runs - 1]);
    if (sink < 0)
        puts("unreachable"); /* uses sink: the reads cannot be dropped */
    free(buffer);
    free(reads);
    free(writes);
    return 0;
}
