/*
 * Thread churn: memory of a process that keeps starting short-lived
 * threads stays flat, set by what is live.
 *
 * 20,000 threads, four at a time, each allocate one 128-byte block, write
 * it, hand it to the main thread and exit; the main thread frees each
 * block 512 threads later (a cross-thread free into the memory of a
 * thread that is gone). Resident memory (/proc/self/statm) after the last
 * thread may exceed that after the first 2,000 by at most 4 MiB: what is
 * live never exceeds 512 blocks. An allocator that leaves each exited
 * thread's page behind grows by one page per thread (hundreds of MiB).
 *
 * It calls only the standard names: linked with libbrisk.a here, and the
 * same source runs under any allocator (LD_PRELOAD) for comparison.
 */
#include "check.h"

#include <pthread.h>

enum {
    THREADS = 20000,
    AT_ONCE = 4,
    LAG = 512,
    WARM_UP = 2000,
    BLOCK = 128,
};
#define GROWTH_MAX ((long)4 << 20)

static long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    REQUIRE(f != NULL);
    long pages_total = 0, pages_resident = 0;
    int n = fscanf(f, "%ld %ld", &pages_total, &pages_resident);
    fclose(f);
    REQUIRE(n == 2);
    return pages_resident * sysconf(_SC_PAGESIZE);
}

static void *leave_one_block(void *arg)
{
    unsigned char *p = malloc(BLOCK);
    if (p != NULL)
        memset(p, (int)((uintptr_t)arg & 0xff), BLOCK);
    return p;
}

int main(void)
{
    static unsigned char *ring[LAG];
    long after_warm_up = 0, peak = 0;
    unsigned long bad = 0;
    for (unsigned i = 0; i < THREADS; i += AT_ONCE) {
        pthread_t t[AT_ONCE];
        for (unsigned j = 0; j < AT_ONCE; j++)
            REQUIRE(pthread_create(&t[j], NULL, leave_one_block, (void *)(uintptr_t)(i + j)) == 0);
        for (unsigned j = 0; j < AT_ONCE; j++) {
            void *block = NULL;
            REQUIRE(pthread_join(t[j], &block) == 0);
            REQUIRE(block != NULL);
            unsigned slot = (i + j) % LAG;
            if (ring[slot] != NULL) {
                /* still what its thread wrote */
                unsigned char expect = (unsigned char)((i + j - LAG) & 0xff);
                for (unsigned k = 0; k < BLOCK; k++)
                    bad += ring[slot][k] != expect;
                free(ring[slot]);
            }
            ring[slot] = block;
        }
        long now = resident_bytes();
        if (i + AT_ONCE == WARM_UP)
            after_warm_up = now;
        if (i + AT_ONCE > WARM_UP && now > peak)
            peak = now;
    }
    long last = resident_bytes();
    for (unsigned i = 0; i < LAG; i++)
        free(ring[i]);
    printf("resident after %d threads: %ld KiB; peak after: %ld KiB; after the last (%d): %ld KiB\n",
           WARM_UP, after_warm_up >> 10, peak >> 10, THREADS, last >> 10);
    CHECK_EQ(bad, 0);
    CHECK_MSG(peak - after_warm_up <= GROWTH_MAX,
              "resident memory grew by %ld KiB over %d short-lived threads (at most %ld KiB)",
              (peak - after_warm_up) >> 10, THREADS - WARM_UP, GROWTH_MAX >> 10);
    return check_finish("test_thread_churn");
}
