/* Helpers shared by the region heap's tests: the chunk list as an array
 * (through brisk_heap_walk), comparisons of layouts and statistics, and
 * threads churning one heap. */
#ifndef BRISK_TESTS_HEAP_UTIL_H
#define BRISK_TESTS_HEAP_UTIL_H

#include "check.h"
#include "heap_checked.h"
#include "pattern.h"
#include "xorshift.h"

#include "brisk.h"

#include <pthread.h>

#define LAYOUT_MAX 64

typedef struct layout {
    size_t count;
    brisk_heap_chunk chunks[LAYOUT_MAX];
} layout;

static inline int layout_visit(const brisk_heap_chunk *chunk, void *context)
{
    layout *out = context;
    if (out->count == LAYOUT_MAX)
        return 1;
    out->chunks[out->count++] = *chunk;
    return 0;
}

static inline layout layout_of(const brisk_heap *heap)
{
    layout out;
    memset(&out, 0, sizeof out);
    int result = brisk_heap_walk(heap, layout_visit, &out);
    CHECK_EQ(result, 0);
    return out;
}

/* Expected layout: sizes in order, negative for a free chunk; 0 ends the
 * list and means "and then the rest is one free chunk" when the walk has
 * one more chunk (the wilderness), which must be free. */
#define CHECK_LAYOUT(heap, ...)                                                \
    do {                                                                       \
        long expected_[] = {__VA_ARGS__, 0};                                   \
        check_layout_at(__FILE__, __LINE__, (heap), expected_);               \
    } while (0)

static inline void layout_print(const layout *l)
{
    for (size_t i = 0; i < l->count; i++)
        fprintf(stderr, " %s%zu", l->chunks[i].used ? "" : "-", l->chunks[i].size);
    fputc('\n', stderr);
}

static inline void check_layout_at(const char *file, int line, const brisk_heap *heap,
                                   const long *expected)
{
    layout l = layout_of(heap);
    size_t n = 0;
    while (expected[n] != 0)
        n++;
    int ok = l.count == n || (l.count == n + 1 && !l.chunks[n].used);
    for (size_t i = 0; ok && i < n; i++) {
        long want = expected[i];
        size_t size = (size_t)(want < 0 ? -want : want);
        ok = l.chunks[i].size == size && l.chunks[i].used == (want > 0);
        if (ok && i > 0)
            ok = (const char *)l.chunks[i].address ==
                 (const char *)l.chunks[i - 1].address + l.chunks[i - 1].size;
    }
    if (ok) {
        check_passed_count++;
        return;
    }
    check_failed_count++;
    fprintf(stderr, "%s:%d: layout differs; expected:", file, line);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %ld", expected[i]);
    fprintf(stderr, " [+ free rest]\n  got:");
    layout_print(&l);
}

static inline int layout_equal(const layout *a, const layout *b)
{
    if (a->count != b->count)
        return 0;
    for (size_t i = 0; i < a->count; i++) {
        const brisk_heap_chunk *x = &a->chunks[i], *y = &b->chunks[i];
        if (x->address != y->address || x->size != y->size || x->payload != y->payload ||
            x->usable != y->usable || x->used != y->used)
            return 0;
    }
    return 1;
}

static inline brisk_heap_stats stats_of(const brisk_heap *heap)
{
    brisk_heap_stats stats;
    memset(&stats, 0, sizeof stats);
    brisk_heap_get_stats(heap, &stats);
    return stats;
}

static inline int stats_equal(const brisk_heap_stats *a, const brisk_heap_stats *b)
{
    return a->capacity == b->capacity && a->allocated == b->allocated &&
           a->free_bytes == b->free_bytes && a->high_water == b->high_water &&
           a->largest_free == b->largest_free && a->used_chunks == b->used_chunks &&
           a->free_chunks == b->free_chunks;
}

/* ---- threads sharing one BRISK_HEAP_THREADSAFE heap -------------------- */

typedef struct churn_job {
    brisk_heap *heap;
    uint64_t seed;
    size_t (*size_of)(uint64_t *rng); /* the size of each request */
    size_t bad;                       /* blocks found changed */
    unsigned failed;                  /* allocs refused */
} churn_job;

/* One thread's churn: 20000 random steps over 32 slots, each freeing a
 * slot's block (after checking its pattern) or allocating one of
 * size_of's size and filling it; every call through heap_checked.h. */
static inline void *churn_thread(void *arg)
{
    churn_job *job = arg;
    char *blocks[32] = {0};
    size_t sizes[32] = {0};
    uint64_t rng = rng_seed(job->seed);
    for (size_t step = 0; step < 20000; step++) {
        checked_step = step;
        size_t slot = rng_range(&rng, 0, 31);
        unsigned id = (unsigned)(job->seed * 32 + slot);
        if (blocks[slot] != NULL) {
            job->bad += !filled(blocks[slot], sizes[slot], id);
            checked_free(job->heap, blocks[slot]);
            blocks[slot] = NULL;
        } else {
            sizes[slot] = job->size_of(&rng);
            blocks[slot] = checked_alloc(job->heap, sizes[slot]);
            if (blocks[slot] != NULL)
                fill(blocks[slot], sizes[slot], id);
            else
                job->failed++;
        }
    }
    for (size_t slot = 0; slot < 32; slot++)
        checked_free(job->heap, blocks[slot]);
    return NULL;
}

/* Runs churn_thread in four threads on heap (BRISK_HEAP_THREADSAFE),
 * checks that no block was changed by another thread, and returns how
 * many allocs were refused in all. */
static inline unsigned heap_churn_threads(brisk_heap *heap, size_t (*size_of)(uint64_t *rng))
{
    pthread_t threads[4];
    churn_job jobs[4];
    for (unsigned t = 0; t < 4; t++) {
        jobs[t] = (churn_job){heap, 17 + t * 40, size_of, 0, 0};
        REQUIRE(pthread_create(&threads[t], NULL, churn_thread, &jobs[t]) == 0);
    }
    unsigned failed = 0;
    for (unsigned t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        CHECK_MSG(jobs[t].bad == 0, "thread %u: %zu blocks changed while live", t, jobs[t].bad);
        failed += jobs[t].failed;
    }
    return failed;
}

#endif /* BRISK_TESTS_HEAP_UTIL_H */
