/*
 * A program of known allocation mix, for test_profile.py: three sites
 * allocate about 50%, 30% and 20% of the bytes, in sizes that differ
 * within and between sites (small blocks, medium ones, large ones), and
 * free part of them (some from another thread, some through realloc).
 * It prints the exact bytes each site allocated and holds live at the
 * dump, as JSON, for the test to compare with the sampled profile.
 *
 * usage: profile_mix MODE [PATH]
 *   mix PATH     the mix, then brisk_profile_dump(PATH)
 *   signal PATH  the mix, then SIGUSR2; allocates until the profile the
 *                signal asks for appears at PATH (profile_path=PATH),
 *                then renames it to PATH.signal
 *   errors PATH  brisk_profile_dump's errors (PATH: a file in a missing
 *                directory)
 *   small        a few allocations only (the exit dump's test)
 */
#define _GNU_SOURCE
#include <brisk.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

typedef struct kept {
    void *p;
    size_t size;
    int site;
} kept;

/* The bookkeeping is static: its own allocations would count at the
 * sites' functions and blur the exact figures. */
#define KEPT_MAX 200000
#define REMOTE_MAX 400000
static kept live[KEPT_MAX];
static size_t live_count;
static void *remote[REMOTE_MAX]; /* site a's blocks freed by another thread */
static size_t remote_count;
static uint64_t allocated[3], live_bytes[3];

static void keep(void *p, size_t size, int site)
{
    if (live_count == KEPT_MAX)
        abort();
    live[live_count++] = (kept){p, size, site};
    live_bytes[site] += size;
}

static void fill(void *p, size_t size)
{
    if (p == NULL)
        abort();
    memset(p, 0x5a, size < 64 ? size : 64);
}

/* 16 to 256 bytes; 9 in 10 freed, half of those by another thread. */
static NOINLINE void site_small(void)
{
    size_t size = 16 + (size_t)(next_random() % 241);
    void *p = malloc(size);
    fill(p, size);
    allocated[0] += size;
    uint64_t r = next_random() % 20;
    if (r < 9) {
        free(p);
    } else if (r < 18) {
        if (remote_count == REMOTE_MAX)
            abort();
        remote[remote_count++] = p;
    } else {
        keep(p, size, 0);
    }
}

/* 1 to 16 KiB; a third grown by realloc (a free of the old size and an
 * allocation of the new one); half kept. */
static NOINLINE void site_medium(void)
{
    size_t size = 1024 + (size_t)(next_random() % (15 * 1024));
    void *p = malloc(size);
    fill(p, size);
    allocated[1] += size;
    if (next_random() % 3 == 0) {
        size_t grown = size + size / 2;
        p = realloc(p, grown);
        fill(p, grown);
        allocated[1] += grown;
        size = grown;
    }
    if (next_random() % 2)
        free(p);
    else
        keep(p, size, 1);
}

/* 128 KiB to 640 KiB: medium and large blocks; a quarter kept. */
static NOINLINE void site_large(void)
{
    size_t size = (128 << 10) + (size_t)(next_random() % (512 << 10));
    void *p = calloc(1, size);
    fill(p, size);
    allocated[2] += size;
    if (next_random() % 4)
        free(p);
    else
        keep(p, size, 2);
}

static void *free_remote(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < remote_count; i++)
        free(remote[i]);
    return NULL;
}

/* About 50/30/20% of the bytes: per step, small calls make ~136 bytes,
 * medium ~10 KiB, large ~384 KiB on average. */
static void mix(uint64_t total)
{
    const double target[3] = {0.5, 0.3, 0.2};
    uint64_t sum = 0;
    while (sum < total) {
        /* the site furthest behind its share goes next */
        int site = 0;
        double worst = 1e300;
        for (int s = 0; s < 3; s++) {
            double share = sum ? (double)allocated[s] / (double)sum : 0.0;
            if (share - target[s] < worst) {
                worst = share - target[s];
                site = s;
            }
        }
        if (site == 0)
            site_small();
        else if (site == 1)
            site_medium();
        else
            site_large();
        sum = allocated[0] + allocated[1] + allocated[2];
    }
    pthread_t t;
    if (pthread_create(&t, NULL, free_remote, NULL) != 0 || pthread_join(t, NULL) != 0)
        abort();
}

static void print_exact(void)
{
    printf("{\"allocated\": [%llu, %llu, %llu], \"live\": [%llu, %llu, %llu]}\n",
           (unsigned long long)allocated[0], (unsigned long long)allocated[1],
           (unsigned long long)allocated[2], (unsigned long long)live_bytes[0],
           (unsigned long long)live_bytes[1], (unsigned long long)live_bytes[2]);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    const char *path = argc > 2 ? argv[2] : NULL;
    if (strcmp(mode, "mix") == 0 && path != NULL) {
        mix((uint64_t)96 << 20);
        int rc = brisk_profile_dump(path);
        if (rc != 0) {
            fprintf(stderr, "brisk_profile_dump(%s): %s\n", path, strerror(rc));
            return 1;
        }
        print_exact();
        return 0;
    }
    if (strcmp(mode, "signal") == 0 && path != NULL) {
        mix((uint64_t)32 << 20);
        print_exact();
        fflush(stdout);
        raise(SIGUSR2);
        for (int i = 0; i < 1000000 && access(path, F_OK) != 0; i++)
            free(malloc(64));
        char moved[4096];
        snprintf(moved, sizeof moved, "%s.signal", path);
        if (rename(path, moved) != 0) {
            fprintf(stderr, "no profile at %s after SIGUSR2\n", path);
            return 1;
        }
        return 0;
    }
    if (strcmp(mode, "errors") == 0 && path != NULL) {
        printf("{\"empty\": %d, \"missing_dir\": %d, \"einval\": %d, \"enoent\": %d, "
               "\"enotsup\": %d}\n",
               brisk_profile_dump(""), brisk_profile_dump(path), EINVAL, ENOENT, ENOTSUP);
        return 0;
    }
    if (strcmp(mode, "small") == 0) {
        for (int i = 0; i < 1000; i++)
            free(malloc(1000));
        printf("{\"dump\": %d, \"enotsup\": %d}\n", brisk_profile_dump(NULL), ENOTSUP);
        return 0;
    }
    fprintf(stderr, "usage: profile_mix mix|signal|errors PATH, or profile_mix small\n");
    return 2;
}
