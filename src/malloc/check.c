/*
 * brisk_malloc_check: the one place that states and checks every
 * structural invariant of the process allocator. It never aborts and
 * never calls the error handler; it names the first broken invariant on
 * stderr and returns -1.
 *
 * Checked for every segment the calling thread owns (others' change under
 * their owners without locks):
 *   S1 its map entry is SEGMAP_PAGES, it lies META_GUARD past a 4 MiB
 *      boundary, and its magic and geometry are right
 *   S2 free_slots has exactly the slots whose page is not in use
 *   S3 pages_in_use counts the pages in use
 *   H3 under wipe, every free slot reads zero (harden.c, "recycling a
 *      page's slot"): a byte that is not was written after free
 * and for every page in use in them:
 *   P1 start, block size, reserved blocks and span agree with its class
 *   P2 free and local_free hold carved block starts of the page, each
 *      carrying the page's free mark, no block twice, without cycles
 *   P3 free + local_free + used == capacity; carved == capacity * size,
 *      and the block-start test's limit and the link test's carved / 16
 *      follow carved
 *   H2 under canaries no page has 16-byte blocks (their canary would be
 *      the second word, where a free block keeps its free mark)
 *   P4 it is on exactly one of the thread heap's lists: its class queue or
 *      the full list, as in_full says; direct[c] is the queue's first page
 * and for abandonment (segment.c, "Abandonment"), over every segment:
 *   A1 a segment abandoned, swept or cached has no owner, and a cached
 *      one no page in use; the cache holds as many as are counted
 *   A2 the abandoned list links agree both ways and hold exactly the
 *      segments whose state is SEGMENT_ABANDONED
 *   A3 an abandoned segment (no thread writes it while it is on the
 *      list) passes S1-S3 and P1-P3, and its pages are on no list; a
 *      fork_orphan is exempt until it is rebuilt
 * and for large blocks (large_check): place past the guard, magic, seal,
 * map entry, bounds, live-list links both ways, totals, the delay of
 * cached blocks, and under wipe that cached blocks still read as zero
 * where malloc checks them.
 */
#include "malloc/internal.h"

static int malloc_check_fail(const char *what, const void *where)
{
    text_line line = {.len = 0};
    line_add_str(&line, "brisk_malloc_check: ");
    line_add_str(&line, what);
    line_add_str(&line, " at ");
    line_add_hex(&line, (uintptr_t)where);
    line_write(&line);
    return -1;
}

/* Walks one free list (P2), marking blocks in `seen` (one bit per block
 * index); returns its length or -1. */
static long check_free_list(const page *pg, const block *b, uint64_t *seen)
{
    long count = 0;
    while (b != NULL) {
        uintptr_t off = (uintptr_t)b - pg->start;
        if (off >= pg->carved || !page_block_start(pg, off))
            return malloc_check_fail("P2: a free list leaves its page or misses a block start", b), -1;
        size_t index = off / pg->block_size;
        if ((seen[index / 64] >> (index % 64)) & 1)
            return malloc_check_fail("P2: a block is on the free lists twice (or a list has a cycle)", b), -1;
        seen[index / 64] |= (uint64_t)1 << (index % 64);
#if BRISK_CHECKS
        if (!block_looks_free(pg, b))
            return malloc_check_fail("P2: a listed block lost its free mark (written after free)", b), -1;
#endif
        count++;
        b = list_decode(pg, b, b->next_encoded);
    }
    return count;
}

/* h: the page's owner, or NULL when its segment is abandoned. */
static int check_page(const thread_heap *h, const segment *seg, const page *pg)
{
    unsigned cls = pg->size_class;
    size_t page_size = (size_t)1 << seg->page_shift;
    if (cls >= CLASS_COUNT || pg->block_size != class_block_size(cls) ||
        pg->start != segment_base(seg) + ((uintptr_t)pg->slot << seg->page_shift) +
                         harden_page_front(pg->block_size) ||
        pg->reserved != (page_size - harden_page_front(pg->block_size)) / pg->block_size ||
        pg->span != pg->reserved * pg->block_size || pg->capacity > pg->reserved ||
        pg->carved != pg->capacity * pg->block_size ||
        pg->block_mul != block_mul_of(pg->block_size) ||
        pg->block_limit != block_limit_of(pg->block_mul, pg->block_size, pg->capacity) ||
        (cls <= SMALL_CLASS_LAST) != (seg->page_shift == SMALL_PAGE_SHIFT))
        return malloc_check_fail("P1/P3: page geometry disagrees with its size class", pg);
    if ((harden_flags & HARDEN_CANARY) && pg->block_size < 32)
        return malloc_check_fail("H2: a page of 16-byte blocks under canaries", pg);
    if (harden_check_page(pg) != 0)
        return malloc_check_fail("H1: a canary of a carved block (or the page's pad) was overwritten", pg);
    uint64_t seen[PAGE_SEEN_WORDS];
    memset(seen, 0, sizeof seen);
    long nfree = check_free_list(pg, pg->free, seen);
    if (nfree < 0)
        return -1;
    long nlocal = check_free_list(pg, pg->local_free, seen);
    if (nlocal < 0)
        return -1;
    if ((uint64_t)nfree + (uint64_t)nlocal + pg->used != pg->capacity)
        return malloc_check_fail("P3: free + local_free + used != capacity", pg);
    if (h == NULL) {
        /* abandoned (A3): on no thread heap's list */
        if (pg->next != NULL || pg->prev != NULL || pg->in_full)
            return malloc_check_fail("A3: a page of an abandoned segment is still on a list", pg);
        return 0;
    }
    /* P4: on exactly the list in_full names */
    const page_queue *q = pg->in_full ? &h->full[cls] : &h->queues[cls];
    bool found = false;
    for (const page *it = q->first; it != NULL; it = it->next) {
        if (it == pg) {
            found = true;
            break;
        }
    }
    if (!found)
        return malloc_check_fail("P4: a page in use is not on the list in_full names", pg);
    return 0;
}

static int check_heap_lists(const thread_heap *h)
{
    size_t pages = 0;
    for (unsigned cls = 0; cls < CLASS_COUNT; cls++) {
        const page_queue *q = &h->queues[cls];
        const page *expected_direct = q->first != NULL ? q->first : &empty_page;
        if (h->direct[cls] != expected_direct)
            return malloc_check_fail("P4: direct page is not its queue's first", h->direct[cls]);
        const page *prev = NULL;
        for (const page *pg = q->first; pg != NULL; pg = pg->next) {
            if (pg->prev != prev || !pg->in_use || pg->in_full || pg->size_class != cls ||
                page_segment(pg)->owner != h)
                return malloc_check_fail("P4: a class queue holds a page that does not belong", pg);
            prev = pg;
            pages++;
        }
        if (q->last != prev)
            return malloc_check_fail("P4: a class queue's last link is wrong", q);
    }
    for (unsigned cls = 0; cls < CLASS_COUNT; cls++) {
        const page *prev = NULL;
        for (const page *pg = h->full[cls].first; pg != NULL; pg = pg->next) {
            if (pg->prev != prev || !pg->in_use || !pg->in_full || pg->size_class != cls ||
                page_segment(pg)->owner != h)
                return malloc_check_fail("P4: a full list holds a page that does not belong", pg);
            prev = pg;
            pages++;
        }
        if (h->full[cls].last != prev)
            return malloc_check_fail("P4: a full list's last link is wrong", &h->full[cls]);
    }
    size_t in_use = 0;
    for (const segment *seg = h->segments; seg != NULL; seg = seg->next)
        in_use += seg->pages_in_use;
    if (pages != in_use)
        return malloc_check_fail("P4: pages on the thread heap's lists != its pages in use", h);
    return 0;
}

/* S1-S3 (and H3) for seg, and check_page for its pages; h is its owner,
 * or NULL for an abandoned segment. */
static int check_segment(const thread_heap *h, const segment *seg)
{
    if (segment_map[segment_base(seg) >> SEGMENT_SHIFT] != SEGMAP_PAGES ||
        (segment_base(seg) & SEGMENT_MASK) != 0 ||
        seg->magic != SEGMENT_MAGIC ||
        (seg->page_shift != SMALL_PAGE_SHIFT && seg->page_shift != MEDIUM_PAGE_SHIFT) ||
        seg->slot_count != 1u << (SEGMENT_SHIFT - seg->page_shift))
        return malloc_check_fail("S1: segment header or map entry is wrong", seg);
    uint32_t in_use = 0;
    for (unsigned i = 1; i < seg->slot_count; i++) {
        const page *pg = &seg->pages[i];
        bool slot_free = (seg->free_slots >> i) & 1;
        if (slot_free == (pg->in_use != 0))
            return malloc_check_fail("S2: free slot mask disagrees with a page", pg);
        if (pg->in_use) {
            in_use++;
            if (check_page(h, seg, pg) != 0)
                return -1;
        } else if (harden_flags & HARDEN_WIPE) {
            uintptr_t dirty = harden_free_slot_dirty(seg, i);
            if (dirty != 0)
                return malloc_check_fail("H3: a free slot was written to (after free)", (const void *)dirty);
        }
    }
    if ((seg->free_slots & 1) != 0)
        return malloc_check_fail("S2: the header slot is marked free", seg);
    if (in_use != seg->pages_in_use)
        return malloc_check_fail("S3: pages_in_use is wrong", seg);
    return 0;
}

/* A1, A2 (global_lock held). */
static int check_abandonment(void)
{
    size_t abandoned_states = 0, cached_states = 0;
    for (const segment *seg = segment_list_first(); seg != NULL; seg = seg->all_next) {
        unsigned state = seg->state;
        if (state > SEGMENT_CACHED)
            return malloc_check_fail("A1: a segment's state is not one of its four", seg);
        if (state != SEGMENT_OWNED && __atomic_load_n(&seg->owner, __ATOMIC_RELAXED) != NULL)
            return malloc_check_fail("A1: an abandoned, swept or cached segment has an owner", seg);
        if (state == SEGMENT_CACHED && seg->pages_in_use != 0)
            return malloc_check_fail("A1: a cached segment has pages in use", seg);
        abandoned_states += state == SEGMENT_ABANDONED;
        cached_states += state == SEGMENT_CACHED;
    }
    size_t listed = 0;
    const segment *prev = NULL;
    for (const segment *seg = abandoned_list_first(); seg != NULL; seg = seg->next) {
        if (seg->state != SEGMENT_ABANDONED || seg->prev != prev)
            return malloc_check_fail("A2: the abandoned list holds a segment not abandoned, or its links disagree", seg);
        if (++listed > abandoned_states)
            return malloc_check_fail("A2: the abandoned list is longer than the abandoned segments (a cycle?)", seg);
        prev = seg;
    }
    if (listed != abandoned_states)
        return malloc_check_fail("A2: an abandoned segment is not on the abandoned list", NULL);
    abandon_stats st;
    segment_abandon_stats(&st);
    if (st.segments_cached_now != cached_states)
        return malloc_check_fail("A1: the cache count disagrees with the cached segments", NULL);
    return 0;
}

int brisk_malloc_check(void)
{
    thread_heap *me = tls_thread_heap;
    if (segment_map == NULL)
        return 0; /* nothing allocated yet */
    int result = 0;
    global_lock_take();
    for (segment *seg = segment_list_first(); seg != NULL && result == 0; seg = seg->all_next) {
        if (me != NULL && __atomic_load_n(&seg->owner, __ATOMIC_ACQUIRE) == me)
            result = check_segment(me, seg);
        else if (seg->state == SEGMENT_ABANDONED && !seg->fork_orphan)
            result = check_segment(NULL, seg); /* A3 */
    }
    if (result == 0)
        result = check_abandonment();
    if (result == 0 && me != NULL)
        result = check_heap_lists(me);
    int large = result == 0 ? large_check() : 0;
    if (large == -4)
        result = malloc_check_fail("L: a cached large block was written after its free (wipe)", NULL);
    else if (large != 0)
        result = malloc_check_fail("L: a large block header, its map entry or the totals are wrong", NULL);
    global_lock_drop();
    return result;
}
