/* Misuse of the region heap and damage to its metadata:
 *   - frees, reallocs and usable_size calls on pointers that are not live
 *     blocks (double, interior, foreign, forged) abort with a message
 *     naming what was wrong and the pointer, in a child process;
 *   - with an error handler that returns, the call does nothing and the
 *     heap stays consistent;
 *   - brisk_heap_check finds each kind of deliberate corruption and names
 *     the broken invariant. */
#include "heap_util.h"
#include "report.h"

#include "heap/heap.h"

#include <errno.h>

/* ---- misuse that must abort -------------------------------------------- */

static brisk_heap *misuse_heap;
static brisk_heap *other_heap;

static void free_twice(void *arg)
{
    brisk_heap_free(misuse_heap, arg);
    brisk_heap_free(misuse_heap, arg);
}

static void free_once(void *arg) { brisk_heap_free(misuse_heap, arg); }

static void realloc_once(void *arg) { brisk_heap_realloc(misuse_heap, arg, 100); }

static void free_then_realloc(void *arg)
{
    brisk_heap_free(misuse_heap, arg);
    brisk_heap_realloc(misuse_heap, arg, 100);
}

static void usable_size_once(void *arg) { brisk_heap_usable_size(misuse_heap, arg); }

static void free_stack_pointer(void *arg)
{
    (void)arg;
    char local[32];
    memset(local, 0, sizeof local);
    brisk_heap_free(misuse_heap, local + 16);
}

static void test_misuse_aborts(void)
{
    misuse_heap = brisk_heap_create(1 << 16);
    other_heap = brisk_heap_create(1 << 16);
    REQUIRE(misuse_heap != NULL && other_heap != NULL);
    char *a = brisk_heap_alloc(misuse_heap, 100);
    char *b = brisk_heap_alloc(misuse_heap, 100);
    REQUIRE(a && b);

    child_result r = run_in_child(free_twice, a);
    CHECK_ABORTS_WITH(r, report_for("double free", a));

    r = run_in_child(free_once, a + 16);
    CHECK_ABORTS_WITH(r, report_for("free of a pointer that is not a live block", a + 16));
    r = run_in_child(free_once, a + 1);
    CHECK_ABORTS_WITH(r, report_for("free of a pointer that is not a live block", a + 1));

    r = run_in_child(free_stack_pointer, NULL);
    CHECK_ABORTS_WITH(r, "brisk: free of a pointer that is not a live block (pointer 0x");

    void *foreign = brisk_heap_alloc(other_heap, 100);
    r = run_in_child(free_once, foreign);
    CHECK_ABORTS_WITH(r, report_for("free of a pointer that is not a live block", foreign));

    void *from_malloc = malloc(100);
    r = run_in_child(free_once, from_malloc);
    CHECK_ABORTS_WITH(r, report_for("free of a pointer that is not a live block", from_malloc));
    free(from_malloc);

    /* A header forged inside a block, as an attacker controlling the
     * block's contents would write it: the block map is not fooled. */
    char *big = brisk_heap_alloc(misuse_heap, 1000);
    REQUIRE(big != NULL);
    size_t fake_header = 64 | 3; /* size 64, USED, PREV_USED */
    memcpy(big + 256 - 8, &fake_header, sizeof fake_header);
    r = run_in_child(free_once, big + 256);
    CHECK_ABORTS_WITH(r, report_for("free of a pointer that is not a live block", big + 256));

    r = run_in_child(free_then_realloc, b);
    CHECK_ABORTS_WITH(r, report_for("realloc of a freed block", b));
    r = run_in_child(realloc_once, b + 32);
    CHECK_ABORTS_WITH(r, report_for("realloc of a pointer that is not a live block", b + 32));
    r = run_in_child(usable_size_once, foreign);
    CHECK_ABORTS_WITH(r, report_for("usable_size of a pointer that is not a live block", foreign));

    /* An overflow from a into b's header: b's tags no longer add up. */
    size_t saved;
    memcpy(&saved, b - 8, sizeof saved);
    memset(a, 0x41, 112); /* 8 bytes past a's usable end */
    r = run_in_child(free_once, b);
    CHECK_ABORTS_WITH(r, report_for("heap metadata corrupted", b));
    r = run_in_child(realloc_once, b);
    CHECK_ABORTS_WITH(r, report_for("heap metadata corrupted", b));
    memcpy(b - 8, &saved, sizeof saved);
    CHECK_EQ(brisk_heap_check(misuse_heap), 0);

    /* A free neighbour whose list links were overwritten (a use after
     * free): merging would unlink through them, so freeing either of its
     * neighbours reports corruption instead of writing through them. */
    char *left = brisk_heap_alloc(misuse_heap, 64);
    char *middle = brisk_heap_alloc(misuse_heap, 64);
    char *right = brisk_heap_alloc(misuse_heap, 64);
    REQUIRE(left && middle && right);
    brisk_heap_free(misuse_heap, middle);
    uintptr_t saved_link;
    memcpy(&saved_link, middle, sizeof saved_link);
    memset(middle, 0x41, sizeof saved_link);
    r = run_in_child(free_once, left);
    CHECK_ABORTS_WITH(r, report_for("heap metadata corrupted", left));
    r = run_in_child(free_once, right);
    CHECK_ABORTS_WITH(r, report_for("heap metadata corrupted", right));
    memcpy(middle, &saved_link, sizeof saved_link);
    CHECK_EQ(brisk_heap_check(misuse_heap), 0);

    /* The parent's heap was never touched by the children. */
    CHECK_EQ(brisk_heap_usable_size(misuse_heap, a), 104);
    brisk_heap_destroy(misuse_heap);
    brisk_heap_destroy(other_heap);
}

/* ---- an error handler that returns -------------------------------------- */

/* report_log and record_report: heap_util.h. */

static void test_handler_returns(void)
{
    report_log log;
    memset(&log, 0, sizeof log);
    brisk_set_error_handler(record_report, &log);

    brisk_heap *heap = brisk_heap_create(1 << 16);
    REQUIRE(heap != NULL);
    char *a = brisk_heap_alloc(heap, 100);
    char *b = brisk_heap_alloc(heap, 200);
    char *c = brisk_heap_alloc(heap, 300);
    REQUIRE(a && b && c);
    brisk_heap_free(heap, b);
    memset(a, 0x11, 100);
    brisk_heap_stats before = stats_of(heap);
    layout lb = layout_of(heap);

    brisk_heap_free(heap, b);
    CHECK_EQ(log.count, 1);
    CHECK_EQ(log.last_error, BRISK_ERROR_DOUBLE_FREE);
    CHECK(strcmp(log.last_message, "double free") == 0);
    CHECK(log.last_ptr == b);

    brisk_heap_free(heap, a + 48);
    CHECK_EQ(log.count, 2);
    CHECK_EQ(log.last_error, BRISK_ERROR_INVALID_POINTER);
    CHECK(strcmp(log.last_message, "free of a pointer that is not a live block") == 0);

    errno = 0;
    CHECK(brisk_heap_realloc(heap, b, 500) == NULL);
    CHECK_EQ(log.count, 3);
    CHECK(strcmp(log.last_message, "realloc of a freed block") == 0);
    CHECK(brisk_heap_realloc(heap, c + 16, 5) == NULL);
    CHECK_EQ(log.count, 4);
    CHECK_EQ(brisk_heap_usable_size(heap, c - 16), 0);
    CHECK_EQ(log.count, 5);
    int local;
    brisk_heap_free(heap, &local);
    CHECK_EQ(log.count, 6);

    /* Corruption: reported, nothing freed, the damage left for check. */
    size_t saved;
    memcpy(&saved, c - 8, sizeof saved);
    size_t bogus = saved + 4096;
    memcpy(c - 8, &bogus, sizeof bogus);
    brisk_heap_free(heap, c);
    CHECK_EQ(log.count, 7);
    CHECK_EQ(log.last_error, BRISK_ERROR_CORRUPTION);
    CHECK(strcmp(log.last_message, "heap metadata corrupted") == 0);
    memcpy(c - 8, &saved, sizeof saved);

    brisk_heap_stats after = stats_of(heap);
    layout la = layout_of(heap);
    CHECK(stats_equal(&before, &after));
    CHECK(layout_equal(&la, &lb));
    CHECK_EQ(brisk_heap_check(heap), 0);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(a[i], 0x11);
    /* And the heap goes on working. */
    brisk_heap_free(heap, a);
    brisk_heap_free(heap, c);
    CHECK_EQ(stats_of(heap).used_chunks, 0);
    CHECK_EQ(log.count, 7);
    CHECK_EQ(brisk_heap_check(heap), 0);
    brisk_heap_destroy(heap);
    brisk_set_error_handler(NULL, NULL);
}

/* Damage found while doing a valid call, with a handler that returns:
 * nothing is lost and the heap is whole again once the damage is undone. */
static void test_handler_returns_after_damage(void)
{
    report_log log;
    static const unsigned flag_sets[] = {0, BRISK_HEAP_WIPE, BRISK_HEAP_HARDENED};
    for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++) {
        /* A write after free into the first entry of a list: freeing a
         * valid block of that class (higher up, so it would be linked
         * behind that entry, through the damaged link) frees the block
         * all the same and reports the damage. */
        memset(&log, 0, sizeof log);
        brisk_set_error_handler(record_report, &log);
        brisk_heap *heap = brisk_heap_create_ex(NULL, 1 << 16, flag_sets[f]);
        REQUIRE(heap != NULL);
        char *a = brisk_heap_alloc(heap, 100);
        brisk_heap_alloc(heap, 40);
        char *b = brisk_heap_alloc(heap, 100);
        brisk_heap_alloc(heap, 40);
        REQUIRE(a && b);
        brisk_heap_free(heap, a);
        void *saved;
        memcpy(&saved, a, sizeof saved);
        void *forged = (char *)b + 64;
        memcpy(a, &forged, sizeof forged);
        brisk_heap_free(heap, b);
        CHECK_EQ(log.count, 1);
        CHECK_EQ(log.last_error, BRISK_ERROR_CORRUPTION);
        CHECK(strcmp(log.last_message, "heap free list corrupted (a freed block was written to)") == 0);
        CHECK_EQ(stats_of(heap).free_chunks, 3); /* a, b and the wilderness */
        CHECK_EQ(brisk_heap_check(heap), -1);    /* the forged link is still there */
        memcpy(a, &saved, sizeof saved);
        CHECK_EQ(brisk_heap_check(heap), 0);
        CHECK_EQ(stats_of(heap).used_chunks, 2);
        /* Both come back, b first (it went in front). */
        CHECK(brisk_heap_alloc(heap, 100) == b);
        CHECK(brisk_heap_alloc(heap, 100) == a);
        CHECK_EQ(log.count, 1);
        CHECK_EQ(brisk_heap_check(heap), 0);
        brisk_heap_destroy(heap);
    }

    /* BRISK_HEAP_WIPE_CHECK finds a freed block written to when handing
     * it out: the alloc fails, the chunk is retired (live, never handed
     * out), and the heap passes its check. */
    memset(&log, 0, sizeof log);
    brisk_heap *heap = brisk_heap_create_ex(NULL, 1 << 16, BRISK_HEAP_HARDENED);
    REQUIRE(heap != NULL);
    char *p = brisk_heap_alloc(heap, 200);
    brisk_heap_alloc(heap, 40);
    REQUIRE(p != NULL);
    brisk_heap_free(heap, p);
    p[50] = 'X';
    errno = 0;
    CHECK(brisk_heap_alloc(heap, 200) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(log.count, 1);
    CHECK_EQ(log.last_error, BRISK_ERROR_USE_AFTER_FREE);
    CHECK(log.last_ptr == p);
    CHECK_EQ(brisk_heap_check(heap), 0);
    CHECK_EQ(stats_of(heap).used_chunks, 2);
    char *q = brisk_heap_alloc(heap, 200);
    CHECK(q != NULL && q != p);
    CHECK_EQ(log.count, 1);
    brisk_heap_destroy(heap);

    /* A realloc that would grow over such memory (the free right
     * neighbour, or the free left one it would slide into) fails with the
     * block untouched; once the stray byte is undone it succeeds. */
    for (int slide = 0; slide < 2; slide++) {
        memset(&log, 0, sizeof log);
        heap = brisk_heap_create_ex(NULL, 1 << 16, BRISK_HEAP_HARDENED);
        REQUIRE(heap != NULL);
        char *left = brisk_heap_alloc(heap, 200);
        char *block = brisk_heap_alloc(heap, 100);
        char *right = brisk_heap_alloc(heap, 200);
        brisk_heap_alloc(heap, 40);
        REQUIRE(left && block && right);
        memset(block, 'b', 100);
        char *freed = slide ? left : right;
        brisk_heap_free(heap, freed);
        freed[40] = 'X'; /* inside what the block would grow over */
        brisk_heap_stats before = stats_of(heap);
        errno = 0;
        CHECK(brisk_heap_realloc(heap, block, 250) == NULL);
        CHECK_EQ(errno, ENOMEM);
        CHECK_EQ(log.count, 1);
        CHECK_EQ(log.last_error, BRISK_ERROR_USE_AFTER_FREE);
        CHECK(log.last_ptr == block);
        brisk_heap_stats after = stats_of(heap);
        CHECK(stats_equal(&before, &after));
        for (int i = 0; i < 100; i++)
            CHECK_EQ(block[i], 'b');
        CHECK_EQ(brisk_heap_check(heap), -1); /* the stray byte, in a free chunk */
        freed[40] = 0;
        CHECK_EQ(brisk_heap_check(heap), 0);
        char *grown = brisk_heap_realloc(heap, block, 250);
        CHECK(grown == (slide ? left : block));
        for (int i = 0; i < 100; i++)
            CHECK_EQ(grown[i], 'b');
        CHECK_EQ(log.count, 1);
        CHECK_EQ(brisk_heap_check(heap), 0);
        brisk_heap_destroy(heap);
    }
    brisk_set_error_handler(NULL, NULL);
}

/* ---- brisk_heap_check against deliberate corruption --------------------- */

/* A heap with used and free chunks of several classes:
 *   [a 112][b free 208][c 48][d free 1040][e 32][wilderness] */
typedef struct sample {
    brisk_heap *heap;
    char *a, *b, *c, *d, *e;
} sample;

static sample sample_make(void)
{
    sample s;
    s.heap = brisk_heap_create(1 << 16);
    REQUIRE(s.heap != NULL);
    s.a = brisk_heap_alloc(s.heap, 100);
    s.b = brisk_heap_alloc(s.heap, 200);
    s.c = brisk_heap_alloc(s.heap, 40);
    s.d = brisk_heap_alloc(s.heap, 1030);
    s.e = brisk_heap_alloc(s.heap, 8);
    REQUIRE(s.a && s.b && s.c && s.d && s.e);
    brisk_heap_free(s.heap, s.b);
    brisk_heap_free(s.heap, s.d);
    CHECK_LAYOUT(s.heap, 112, -208, 48, -1040, 32);
    CHECK_EQ(brisk_heap_check(s.heap), 0);
    return s;
}

static size_t *word_at(char *p, ptrdiff_t offset) { return (size_t *)(void *)(p + offset); }

typedef void (*corruption)(sample *s);

static void corrupt_used_size(sample *s) { *word_at(s->a, -8) += 16; }
static void corrupt_used_size_unaligned(sample *s) { *word_at(s->c, -8) += 8; }
static void corrupt_prev_used_bit(sample *s) { *word_at(s->c, -8) ^= 2; }
static void corrupt_free_footer(sample *s) { *word_at(s->b, 208 - 16) = 224; }
static void corrupt_free_next_link(sample *s) { *(char **)(void *)s->d = s->c - 8; }
static void corrupt_free_prev_link(sample *s) { *(char **)(void *)(s->b + 8) = s->a - 8; }
static void corrupt_used_bit_cleared(sample *s) { *word_at(s->e, -8) &= ~(size_t)1; }
static void corrupt_free_marked_used(sample *s) { *word_at(s->b, -8) |= 1; }
static void corrupt_class_bit(sample *s)
{
    s->heap->class_map[0] ^= (uint64_t)1 << 5;
}
static void corrupt_counter(sample *s) { s->heap->used_count += 1; }
static void corrupt_live_map(sample *s)
{
    block_map_set(s->heap, chunk_granule(s->heap, chunk_of_payload(s->b)), BLOCK_MAP_LIVE);
}
static void corrupt_map_both(sample *s)
{
    block_map_set(s->heap, chunk_granule(s->heap, chunk_of_payload(s->a)), BLOCK_MAP_LIVE | BLOCK_MAP_FREED);
}
/* The map marks every listed chunk FREED and nothing inside chunks. */
static void corrupt_freed_mark_cleared(sample *s)
{
    block_map_set(s->heap, chunk_granule(s->heap, chunk_of_payload(s->d)), 0);
}
static void corrupt_freed_mark_inside(sample *s)
{
    block_map_set(s->heap, chunk_granule(s->heap, chunk_of_payload(s->d + 64)), BLOCK_MAP_FREED);
}
static void corrupt_freed_mark_wilderness(sample *s)
{
    block_map_set(s->heap, chunk_granule(s->heap, (const heap_chunk *)(const void *)s->heap->top), BLOCK_MAP_FREED);
}
/* An underflow from the first block over the fence below it. */
static void corrupt_fence(sample *s) { *word_at(s->a, -16) ^= 1; }
static void corrupt_high_water(sample *s) { s->heap->high_water = 16; }
static void corrupt_wilderness(sample *s) { s->heap->top += 16; }
static void corrupt_list_head(sample *s)
{
    size_t cls = chunk_class_of(208);
    s->heap->heads[cls] = NULL;
}
/* Links overwritten with addresses outside the heap (a use after free):
 * the check must report them, not follow them. */
static void corrupt_free_next_wild(sample *s) { *(uintptr_t *)(void *)s->d = (uintptr_t)0xdeadbeef0; }
static void corrupt_free_prev_wild(sample *s) { *(uintptr_t *)(void *)(s->b + 8) = (uintptr_t)0x10; }
static void corrupt_list_head_wild(sample *s)
{
    s->heap->heads[chunk_class_of(1040)] = (heap_chunk *)(uintptr_t)0xdead0008;
}

static const struct {
    const char *name;
    corruption apply;
    const char *expected;
} corruptions[] = {
    {"used size grown", corrupt_used_size, "invariant "},
    {"size not a multiple of 16", corrupt_used_size_unaligned, "invariant 3:"},
    {"PREV_USED flipped", corrupt_prev_used_bit, "invariant 4:"},
    {"free footer", corrupt_free_footer, "invariant 7:"},
    {"free next link", corrupt_free_next_link, "invariant 8:"},
    {"free prev link", corrupt_free_prev_link, "invariant 8:"},
    {"used chunk looks free", corrupt_used_bit_cleared, "invariant "},
    {"free chunk looks used", corrupt_free_marked_used, "invariant "},
    {"class bit", corrupt_class_bit, "invariant 9:"},
    {"used-chunk counter", corrupt_counter, "invariant 11:"},
    {"live map", corrupt_live_map, "invariant 10:"},
    {"block both live and freed", corrupt_map_both, "invariant 10:"},
    {"FREED mark of a listed chunk cleared", corrupt_freed_mark_cleared, "invariant 10:"},
    {"FREED mark inside a free chunk", corrupt_freed_mark_inside, "invariant 10:"},
    {"FREED mark on the wilderness", corrupt_freed_mark_wilderness, "invariant 10:"},
    {"fence below the first chunk", corrupt_fence, "invariant 16:"},
    {"high water", corrupt_high_water, "invariant 12:"},
    {"wilderness start", corrupt_wilderness, "invariant "},
    {"list head", corrupt_list_head, "invariant 8:"},
    {"free next link outside the heap", corrupt_free_next_wild, "invariant 8:"},
    {"free prev link outside the heap", corrupt_free_prev_wild, "invariant 8:"},
    {"list head outside the heap", corrupt_list_head_wild, "invariant 8:"},
};

static void corrupt_and_check(void *arg)
{
    size_t i = (size_t)(uintptr_t)arg;
    sample s = sample_make();
    corruptions[i].apply(&s);
    int result = brisk_heap_check(s.heap);
    /* Statistics read the highest list's first entries: damage there must
     * not crash them either. */
    brisk_heap_stats stats;
    brisk_heap_get_stats(s.heap, &stats);
    fflush(NULL);
    _exit(result == -1 ? 0 : 1);
}

static void test_check_finds_corruption(void)
{
    for (size_t i = 0; i < sizeof corruptions / sizeof corruptions[0]; i++) {
        child_result r = run_in_child(corrupt_and_check, (void *)(uintptr_t)i);
        CHECK_MSG(r.exited && r.exit_code == 0, "%s: check did not return -1 (exited=%d code=%d signal=%d)",
                  corruptions[i].name, r.exited, r.exit_code, r.signal);
        CHECK_MSG(strstr(r.output, "brisk_heap_check: ") != NULL &&
                      strstr(r.output, corruptions[i].expected) != NULL,
                  "%s: expected \"%s\", got \"%s\"", corruptions[i].name, corruptions[i].expected,
                  r.output);
    }
    /* And in this process: restoring the damage makes the heap whole. */
    sample s = sample_make();
    size_t saved = *word_at(s.b, 208 - 16);
    corrupt_free_footer(&s);
    CHECK_EQ(brisk_heap_check(s.heap), -1);
    *word_at(s.b, 208 - 16) = saved;
    CHECK_EQ(brisk_heap_check(s.heap), 0);
    brisk_heap_destroy(s.heap);
}

int main(void)
{
    test_misuse_aborts();
    test_handler_returns();
    test_handler_returns_after_damage();
    test_check_finds_corruption();
    return check_finish("test_heap_misuse");
}
