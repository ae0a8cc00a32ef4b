/* A randomized differential test of the region heap against a model of
 * what it should hold: thousands of alloc, calloc, realloc, aligned alloc
 * and free operations, each made through heap_checked.h (brisk_heap_check
 * of the whole heap after every call), followed by a check of every live
 * block's contents and of the statistics against the model.
 *
 * The model predicts exactly when a plain alloc fails: iff the request is
 * larger than stats.largest_free. Under BRISK_HEAP_DEFER_MERGE
 * largest_free is a lower bound (it does not see deferred blocks, which
 * a pop hands out and a failing alloc merges), so there an alloc must
 * succeed at or below it and may succeed above it; when it fails, every
 * deferred block has been merged, largest_free is exact again, and the
 * request must exceed it. A failed call may then have merged deferred
 * blocks, so it must leave the live blocks and the byte counts as they
 * were, not the chunk count.
 *
 * Reproduce a failure with its seed:
 *     ./test_heap_random SEED        or    BRISK_SEED=SEED ./test_heap_random
 * Without one the fixed seed runs, then one from the clock. */
#include "heap_checked.h"
#include "heap_util.h"
#include "pattern.h"
#include "xorshift.h"

#include <errno.h>
#include <stdbool.h>
#include <time.h>

#define SLOTS 160
#define STEPS 12000

typedef struct slot {
    unsigned char *ptr;
    size_t size;      /* bytes asked for, all filled with the pattern */
    unsigned id;
    unsigned char *shadow; /* what ptr's `size` bytes must hold, kept
                              outside the heap (system malloc), so that
                              checking every live block after every step
                              is one memcmp per block */
    size_t shadow_capacity;
} slot;

static uint64_t rng_state;

static size_t rng_below(size_t n) { return (size_t)(rng_next(&rng_state) % n); }

/* Mostly small sizes, some medium, a few large (as programs allocate). */
static size_t random_size(void)
{
    size_t kind = rng_below(100);
    if (kind < 60)
        return rng_below(128);
    if (kind < 90)
        return rng_below(2048);
    if (kind < 99)
        return rng_below(32768);
    return rng_below(200000);
}

typedef struct model {
    slot slots[SLOTS];
    size_t live;
    size_t usable_sum;
    unsigned next_id;
    unsigned failures_predicted;
    unsigned failures_seen;
    unsigned above_bound; /* allocs above largest_free that succeeded */
} model;

/* Fills the block p of slot s (now `size` bytes for id s->id) with its
 * pattern, and the slot's shadow with the same bytes. */
static void slot_fill(slot *s, unsigned char *p, size_t size)
{
    if (s->shadow_capacity < size) {
        unsigned char *grown = realloc(s->shadow, size);
        REQUIRE(grown != NULL);
        s->shadow = grown;
        s->shadow_capacity = size;
    }
    fill(s->shadow, size, s->id);
    if (size != 0)
        memcpy(p, s->shadow, size);
}

static int check_slot(const brisk_heap *heap, const slot *s, size_t step)
{
    size_t bad = s->size == 0 || memcmp(s->ptr, s->shadow, s->size) == 0
                     ? 0
                     : pattern_mismatch(s->ptr, s->size, s->id); /* where */
    CHECK_MSG(bad == 0, "step %zu: block %u (size %zu) damaged at byte %zu", step, s->id, s->size, bad - 1);
    CHECK_MSG(brisk_heap_usable_size(heap, s->ptr) >= s->size, "step %zu: usable size shrank", step);
    return bad == 0;
}

/* Every live block appears in the walk as a used chunk, and the used
 * chunks are exactly the live blocks (so none overlap another). */
typedef struct walk_match {
    const model *m;
    size_t used_seen;
    size_t unmatched;
} walk_match;

static int match_visit(const brisk_heap_chunk *chunk, void *context)
{
    walk_match *w = context;
    if (!chunk->used)
        return 0;
    w->used_seen++;
    for (size_t i = 0; i < SLOTS; i++)
        if (w->m->slots[i].ptr == chunk->payload)
            return 0;
    w->unmatched++;
    return 0;
}

/* What a failed call may change: nothing, or under BRISK_HEAP_DEFER_MERGE
 * the deferred blocks it merged (fewer free chunks, a larger largest
 * free; nothing else). */
static bool failure_kept_heap(const brisk_heap_stats *before, const brisk_heap_stats *after, unsigned flags)
{
    if (!(flags & BRISK_HEAP_DEFER_MERGE))
        return stats_equal(before, after);
    return before->capacity == after->capacity && before->allocated == after->allocated &&
           before->free_bytes == after->free_bytes && before->high_water == after->high_water &&
           before->used_chunks == after->used_chunks && after->free_chunks <= before->free_chunks &&
           after->largest_free >= before->largest_free;
}

static void run(uint64_t seed, unsigned flags, size_t heap_size)
{
    rng_state = rng_seed(seed);
    char note[96];
    snprintf(note, sizeof note, "seed %llu flags %#x heap %zu: rerun with ./test_heap_random %llu",
             (unsigned long long)seed, flags, heap_size, (unsigned long long)seed);
    checked_note = note;
    unsigned long calls_before = checked_calls;
    brisk_heap *heap = checked_create_ex(NULL, heap_size, flags);
    REQUIRE(heap != NULL);
    static model m;
    memset(&m, 0, sizeof m);
    size_t failed_before = check_failed_count;

    for (size_t step = 0; step < STEPS && check_failed_count == failed_before; step++) {
        checked_step = step;
        slot *s = &m.slots[rng_below(SLOTS)];
        size_t op = rng_below(10);
        brisk_heap_stats before = stats_of(heap);
        if (s->ptr != NULL && op < 4) {
            /* free */
            check_slot(heap, s, step);
            m.usable_sum -= brisk_heap_usable_size(heap, s->ptr);
            checked_free(heap, s->ptr);
            s->ptr = NULL;
            m.live--;
        } else if (s->ptr != NULL) {
            /* realloc, keeping the pattern up to the smaller size */
            check_slot(heap, s, step);
            size_t size = random_size();
            size_t old_usable = brisk_heap_usable_size(heap, s->ptr);
            errno = 0;
            unsigned char *p = checked_realloc(heap, s->ptr, size);
            if (size == 0) {
                CHECK(p == NULL);
                m.usable_sum -= old_usable;
                s->ptr = NULL;
                m.live--;
            } else if (p == NULL) {
                CHECK_EQ(errno, ENOMEM);
                m.failures_seen++;
                brisk_heap_stats after = stats_of(heap);
                CHECK_MSG(failure_kept_heap(&before, &after, flags), "step %zu: failed realloc changed the heap",
                          step);
            } else {
                size_t keep = size < s->size ? size : s->size;
                CHECK_MSG(pattern_mismatch(p, keep, s->id) == 0, "step %zu: realloc lost contents", step);
                m.usable_sum = m.usable_sum - old_usable + brisk_heap_usable_size(heap, p);
                s->ptr = p;
                s->size = size;
                slot_fill(s, p, size);
            }
        } else {
            size_t size = random_size();
            size_t alignment = 16;
            unsigned char *p;
            errno = 0;
            if (op < 5) {
                p = checked_calloc(heap, 1, size);
                if (p != NULL) {
                    size_t usable = brisk_heap_usable_size(heap, p);
                    for (size_t i = 0; i < usable; i++)
                        if (p[i] != 0) {
                            CHECK_MSG(0, "step %zu: calloc byte %zu not zero", step, i);
                            break;
                        }
                }
            } else if (op < 7) {
                alignment = (size_t)1 << (4 + rng_below(9)); /* 16 .. 4096 */
                p = checked_alloc_aligned(heap, alignment, size);
            } else {
                p = checked_alloc(heap, size);
                /* The model: a plain alloc fails exactly when the request
                 * exceeds largest_free (a lower bound when deferring:
                 * then it must succeed at or below it, and if it fails,
                 * the request exceeds largest_free once the failure has
                 * merged every deferred block). */
                /* largest_free is 0 when no free chunk fits anything,
                 * not even a request of 0 bytes. */
                bool predicted = before.largest_free != 0 && size <= before.largest_free;
                if (!(flags & BRISK_HEAP_DEFER_MERGE)) {
                    CHECK_MSG(predicted == (p != NULL), "step %zu: alloc(%zu) %s but largest_free is %zu", step,
                              size, p ? "succeeded" : "failed", before.largest_free);
                } else if (predicted) {
                    CHECK_MSG(p != NULL, "step %zu: alloc(%zu) failed but largest_free is %zu", step, size,
                              before.largest_free);
                } else if (p != NULL) {
                    m.above_bound++;
                } else {
                    brisk_heap_stats merged = stats_of(heap);
                    CHECK_MSG(merged.largest_free == 0 || size > merged.largest_free,
                              "step %zu: alloc(%zu) failed but after merging largest_free is %zu", step, size,
                              merged.largest_free);
                }
                m.failures_predicted += !predicted && p == NULL;
            }
            if (p == NULL) {
                CHECK_EQ(errno, ENOMEM);
                m.failures_seen++;
                brisk_heap_stats after = stats_of(heap);
                CHECK_MSG(failure_kept_heap(&before, &after, flags), "step %zu: failed alloc changed the heap",
                          step);
            } else {
                CHECK_MSG(((uintptr_t)p & (alignment - 1)) == 0, "step %zu: misaligned", step);
                if (flags & BRISK_HEAP_WIPE) {
                    size_t usable = brisk_heap_usable_size(heap, p);
                    for (size_t i = 0; i < usable; i++)
                        if (p[i] != 0) {
                            CHECK_MSG(0, "step %zu: wiped heap handed out byte %zu non-zero", step, i);
                            break;
                        }
                }
                s->ptr = p;
                s->size = size;
                s->id = ++m.next_id;
                slot_fill(s, p, size);
                m.usable_sum += brisk_heap_usable_size(heap, p);
                m.live++;
            }
        }

        brisk_heap_stats now = stats_of(heap);
        CHECK_MSG(now.used_chunks == m.live && now.allocated == m.usable_sum,
                  "step %zu: stats %zu blocks %zu bytes, model %zu blocks %zu bytes", step, now.used_chunks,
                  now.allocated, m.live, m.usable_sum);
        CHECK(now.allocated + now.free_bytes + 8 * now.used_chunks == now.capacity);
        /* Every live block's contents, after every step: a write that
         * lands in the wrong block shows at the step that made it. */
        for (size_t i = 0; i < SLOTS; i++)
            if (m.slots[i].ptr != NULL)
                check_slot(heap, &m.slots[i], step);
        if (step % 16 == 0) {
            walk_match w = {&m, 0, 0};
            brisk_heap_walk(heap, match_visit, &w);
            CHECK_EQ(w.used_seen, m.live);
            CHECK_EQ(w.unmatched, 0);
        }
    }
    checked_step = STEPS;
    for (size_t i = 0; i < SLOTS; i++) {
        if (m.slots[i].ptr != NULL) {
            check_slot(heap, &m.slots[i], STEPS);
            checked_free(heap, m.slots[i].ptr);
        }
        free(m.slots[i].shadow);
    }
    brisk_heap_stats end = stats_of(heap);
    CHECK_EQ(end.used_chunks, 0);
    CHECK_EQ(end.free_bytes, end.capacity);
    if (flags & BRISK_HEAP_DEFER_MERGE) {
        /* Freed small blocks may still be deferred: one request of the
         * whole capacity merges them all. */
        void *whole = checked_alloc(heap, end.capacity - 8);
        CHECK_MSG(whole != NULL, "seed %llu: the whole capacity not served after freeing everything",
                  (unsigned long long)seed);
        checked_free(heap, whole);
        end = stats_of(heap);
    }
    CHECK_EQ(end.free_chunks, 1);
    printf("seed %llu flags %u heap %zu: %u allocation failures (%u predicted by largest_free, %u allocs above it "
           "succeeded), high_water %zu, %lu calls each followed by brisk_heap_check\n",
           (unsigned long long)seed, flags, heap_size, m.failures_seen, m.failures_predicted, m.above_bound,
           end.high_water, checked_calls - calls_before);
    checked_note = NULL;
    if (check_failed_count != failed_before)
        printf("FAILED with seed %llu: rerun with ./test_heap_random %llu\n", (unsigned long long)seed,
               (unsigned long long)seed);
    brisk_heap_destroy(heap);
}

int main(int argc, char **argv)
{
    const char *given = argc > 1 ? argv[1] : getenv("BRISK_SEED");
    if (given != NULL) {
        uint64_t seed = strtoull(given, NULL, 0);
        run(seed, 0, 1 << 19);
        run(seed, BRISK_HEAP_WIPE, 1 << 19);
        run(seed, BRISK_HEAP_DEFER_MERGE, 1 << 19);
        run(seed, BRISK_HEAP_DEFER_MERGE, 1 << 16);
        run(seed, BRISK_HEAP_DEFER_MERGE | BRISK_HEAP_THREADSAFE, 1 << 19);
    } else {
        run(1, 0, 1 << 19);
        run(2, BRISK_HEAP_WIPE, 1 << 19);
        run(3, BRISK_HEAP_DEFER_MERGE, 1 << 19);
        /* A small heap, full most of the time: deferred blocks are popped
         * above largest_free and flushed by failing allocs. */
        run(5, BRISK_HEAP_DEFER_MERGE, 1 << 16);
        run(4, BRISK_HEAP_DEFER_MERGE | BRISK_HEAP_THREADSAFE, 1 << 19);
        uint64_t now = (uint64_t)time(NULL);
        run(now, 0, 1 << 19);
        run(now, BRISK_HEAP_DEFER_MERGE, 1 << 16);
    }
    return check_finish("test_heap_random");
}
