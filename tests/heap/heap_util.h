/* Helpers shared by the region heap's tests: the chunk list as an array
 * (through brisk_heap_walk) and comparisons of layouts. */
#ifndef BRISK_TESTS_HEAP_UTIL_H
#define BRISK_TESTS_HEAP_UTIL_H

#include "check.h"

#include "brisk.h"

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

/* An error handler that returns, recording the reports: install it with
 * brisk_set_error_handler(record_report, &log). */
typedef struct report_log {
    int count;
    brisk_error last_error;
    const void *last_ptr;
    char last_message[128];
} report_log;

static inline void record_report(brisk_error error, const char *message, const void *ptr, void *context)
{
    report_log *log = context;
    log->count++;
    log->last_error = error;
    log->last_ptr = ptr;
    snprintf(log->last_message, sizeof log->last_message, "%s", message);
}

#endif /* BRISK_TESTS_HEAP_UTIL_H */
