/*
 * Thread churn: a process that keeps starting short-lived threads, each
 * of which leaves one small block alive for another thread to free later
 * (a thread-per-connection server handing its result on, a pool that
 * grows and shrinks). Memory should be set by what is live, not by the
 * number of threads ever started.
 *
 *   thread_churn [THREADS [AT_ONCE [LAG]]]
 *
 * THREADS (default 100,000) threads run AT_ONCE (default 4) at a time;
 * each allocates one 128-byte block, fills it with a pattern of its
 * number, and exits handing it to the main thread, which frees it LAG
 * (default 1,000) threads later after checking the pattern. It prints
 * one line:
 *
 *   thread_churn threads=N rss_first_kib=A rss_last_kib=B peak_kib=C seconds=S check=X
 *
 * A: resident set (/proc/self/statm) after the first 10% of the threads;
 * B: after the last thread (its block still live, like the LAG before
 * it); C: the peak resident set, the larger of the kernel's high-water
 * mark (getrusage, updated lazily) and the resident set read after every
 * AT_ONCE threads; X: the sum of
 * every block's bytes as read back, the same under every allocator.
 * Standard names only: run under each allocator with LD_PRELOAD
 * (bench/malloc/thread_churn.sh). Not a test: nothing is asserted here.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { BLOCK = 128, AT_ONCE_MAX = 64 };

static long resident_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long total = 0, resident = 0;
    if (f == NULL || fscanf(f, "%ld %ld", &total, &resident) != 2) {
        fprintf(stderr, "thread_churn: cannot read /proc/self/statm\n");
        exit(2);
    }
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void *leave_one_block(void *arg)
{
    unsigned char *p = malloc(BLOCK);
    if (p != NULL)
        memset(p, (int)((uintptr_t)arg % 251), BLOCK);
    return p;
}

static long parse(const char *text, const char *what, long min, long max)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "thread_churn: %s must be an integer in [%ld, %ld], not \"%s\"\n", what, min, max,
                text);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long threads = argc > 1 ? parse(argv[1], "THREADS", 10, 100000000) : 100000;
    long at_once = argc > 2 ? parse(argv[2], "AT_ONCE", 1, AT_ONCE_MAX) : 4;
    long lag = argc > 3 ? parse(argv[3], "LAG", 1, 1000000) : 1000;
    unsigned char **ring = calloc((size_t)lag, sizeof *ring);
    long *ring_id = calloc((size_t)lag, sizeof *ring_id);
    if (ring == NULL || ring_id == NULL) {
        fprintf(stderr, "thread_churn: out of memory for the ring\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long first_at = threads / 10, rss_first = 0, peak = resident_kib();
    uint64_t check = 0;
    for (long i = 0; i < threads; i += at_once) {
        pthread_t t[AT_ONCE_MAX];
        long n = threads - i < at_once ? threads - i : at_once;
        for (long j = 0; j < n; j++) {
            if (pthread_create(&t[j], NULL, leave_one_block, (void *)(uintptr_t)(i + j)) != 0) {
                fprintf(stderr, "thread_churn: pthread_create failed at thread %ld\n", i + j);
                return 1;
            }
        }
        for (long j = 0; j < n; j++) {
            void *block = NULL;
            pthread_join(t[j], &block);
            if (block == NULL) {
                fprintf(stderr, "thread_churn: thread %ld got no block\n", i + j);
                return 1;
            }
            long slot = (i + j) % lag;
            if (ring[slot] != NULL) {
                for (int k = 0; k < BLOCK; k++) {
                    if (ring[slot][k] != (unsigned char)(ring_id[slot] % 251)) {
                        fprintf(stderr, "thread_churn: block of thread %ld was changed\n", ring_id[slot]);
                        return 1;
                    }
                    check += ring[slot][k];
                }
                free(ring[slot]);
            }
            ring[slot] = block;
            ring_id[slot] = i + j;
        }
        long now = resident_kib();
        if (now > peak)
            peak = now;
        if (i < first_at && i + n >= first_at)
            rss_first = now;
    }
    long rss_last = resident_kib();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (long s = 0; s < lag; s++) {
        if (ring[s] != NULL) {
            for (int k = 0; k < BLOCK; k++)
                check += ring[s][k];
            free(ring[s]);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (ru.ru_maxrss > peak)
        peak = ru.ru_maxrss;
    printf("thread_churn threads=%ld rss_first_kib=%ld rss_last_kib=%ld peak_kib=%ld seconds=%.3f check=%llu\n",
           threads, rss_first, rss_last, peak,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9,
           (unsigned long long)check);
    free(ring);
    free(ring_id);
    return 0;
}
