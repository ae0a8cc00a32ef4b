/*
 * Segments: 4 MiB-aligned spans of OS memory cut into pages (see the
 * layout in malloc/types.h), the segment map that says which spans are
 * ours, the cache of empty segments, abandoned segments of exited
 * threads, and the decay that returns unused memory to the OS.
 *
 * Decay (hysteresis): a page slot that empties, an empty segment, and a
 * freed large block are kept as they are for decay_ms (default 30 ms)
 * before their memory is returned (madvise for slots, munmap for cached
 * segments and large blocks). A program that frees and reallocates the
 * same amount in a loop therefore reuses resident memory and takes no
 * page faults, while memory left unused after a peak goes back to the OS.
 * Purges run from allocation slow paths (rate-limited) and malloc_trim.
 *
 * Locking: a segment is touched only by its owner thread, except its
 * pages' thread_free lists (atomic). The cache, the abandoned list and the
 * list of all segments are under global_lock.
 *
 * Abandonment. A thread that exits gives its empty pages back and hands
 * the segments still holding live blocks to the others: their owner
 * becomes NULL and they go on the abandoned list. From there a segment is
 *   - adopted by a thread that needs a page (of the class it is after,
 *     first: thread_heap_adopt_page; or any slot: segment_page_alloc;
 *     and one every 64 slow-path calls), which becomes its owner;
 *   - swept by a thread whose cross-thread free is the last live block of
 *     a page (segment_abandoned_free): it collects every page, gives the
 *     empty ones back, and puts the segment back on the list, or in the
 *     cache once it is empty, without becoming its owner;
 *   - in a forked child, every segment of a thread that did not survive
 *     the fork is abandoned too (segment_fork_child), marked fork_orphan:
 *     its pages are rebuilt from what can be proved before use.
 *
 * The protocol, and why a cross-thread free racing with an adopter or a
 * sweeper is safe:
 *   1. Whoever holds a segment (its owner, or the one thread that took
 *      it off the abandoned list under global_lock, its state saying
 *      which) is the only writer of its header and of its pages' owner
 *      lines (free, local_free, used, queue links). An abandoned segment
 *      on the list has no writer but the thread_free CASes.
 *   2. owner is written only by the thread it names or names no more:
 *      set by a thread acquiring or adopting for itself, cleared by the
 *      owner abandoning or releasing; so a thread that reads owner == its
 *      own heap is right, and any other thread takes the thread_free path
 *      (a heap reused from the pool is handed over under global_lock,
 *      after its old thread's last store to owner).
 *   3. A block is live until its free's CAS onto thread_free succeeds,
 *      and `used` counts it until a holder takes that list: so its page
 *      stays in use, and its segment out of the cache, until then. A
 *      cross-thread free reads the page and the segment only before its
 *      CAS, never after.
 *   4. Taking a page's thread_free is one exchange; a free that lands
 *      after it is on the list for the next holder's collection.
 * Invariant: every carved block of a page in use is exactly one of
 * handed out (counted in used), on free or local_free, or on thread_free
 * (still counted in used, and in the list word's count); a segment is on
 * the abandoned list exactly when its state is SEGMENT_ABANDONED, and
 * then its owner is NULL and its pages are on no thread heap's list
 * (brisk_malloc_check, A1-A3).
 */
#include "malloc/internal.h"

#include <errno.h>

static segment *segment_cache;  /* empty segments, newest first */
static segment *abandoned;      /* segments of exited threads, newest
                                   first, linked both ways by next/prev */
static segment *all_segments;   /* every mapped segment */
static size_t segments_mapped;  /* count, for statistics */
static size_t segments_cached;  /* in segment_cache */
static abandon_stats abandon_totals; /* the totals; the "now" figures are
                                        counted when asked */

segment *abandoned_list_first(void)
{
    return abandoned;
}

/* global_lock held: the abandoned list's head and both-way links. */
static void abandoned_push(segment *seg)
{
    seg->prev = NULL;
    seg->next = abandoned;
    if (abandoned != NULL)
        abandoned->prev = seg;
    abandoned = seg;
    seg->state = SEGMENT_ABANDONED;
}

static void abandoned_unlink(segment *seg)
{
    brisk_assert(seg->state == SEGMENT_ABANDONED, "abandoned_unlink: the segment is not abandoned");
    if (seg->prev != NULL)
        seg->prev->next = seg->next;
    else
        abandoned = seg->next;
    if (seg->next != NULL)
        seg->next->prev = seg->prev;
    seg->next = seg->prev = NULL;
}

segment *segment_list_first(void)
{
    return all_segments;
}

size_t segment_mapped_bytes(void)
{
    return __atomic_load_n(&segments_mapped, __ATOMIC_RELAXED) * SEGMENT_SIZE;
}

/* A new segment's memory, its guard protected (malloc/types.h). The
 * guard stays for the segment's whole life: the cache keeps segments
 * mapped as they are, a purge decommits slots 1.. only (slot 0 is never
 * free), and reformatting writes the header past the guard. A guard that
 * cannot be protected (the kernel's mapping count exhausted) fails the
 * allocation rather than hand out an unguarded header. */
static segment *segment_map_fresh(void)
{
    char *start = os_map_aligned(SEGMENT_SIZE, SEGMENT_SIZE);
    if (start == NULL)
        return NULL;
    if (((uintptr_t)start >> ADDRESS_BITS) != 0 ||
        (meta_guard_bytes != 0 && os_protect_none(start, meta_guard_bytes) != 0)) {
        os_unmap(start, SEGMENT_SIZE);
        errno = ENOMEM;
        return NULL;
    }
    stats_note_mapped(SEGMENT_SIZE, true);
    verbose_note("mapped a segment", SEGMENT_SIZE);
    return segment_of_meta((uintptr_t)start);
}

static void segment_unmap(segment *seg)
{
    /* global_lock held by the caller */
    if (seg->all_prev != NULL)
        seg->all_prev->all_next = seg->all_next;
    else
        all_segments = seg->all_next;
    if (seg->all_next != NULL)
        seg->all_next->all_prev = seg->all_prev;
    segmap_set(segment_base(seg), SEGMAP_NONE);
    segments_mapped--;
}

/* Which slots of the new geometry overlap a resident (dirty) slot of the
 * old one: those are the ones worth reusing first. */
static uint64_t dirty_slots_regeometry(uint64_t old_dirty, unsigned old_shift, unsigned new_shift)
{
    if (old_shift == new_shift)
        return old_dirty;
    uint64_t result = 0;
    while (old_dirty != 0) {
        unsigned i = (unsigned)__builtin_ctzll(old_dirty);
        old_dirty &= old_dirty - 1;
        size_t first = ((size_t)i << old_shift) >> new_shift;
        size_t last = ((((size_t)i + 1) << old_shift) - 1) >> new_shift;
        for (size_t j = first; j <= last; j++)
            result |= (uint64_t)1 << j;
    }
    return result;
}

/* Lays out the header for pages of 1 << page_shift bytes. A segment from
 * the cache keeps knowing which slots are still resident. */
static void segment_format(segment *seg, unsigned page_shift, bool fresh)
{
    uint64_t old_dirty = fresh ? 0 : seg->dirty_slots & seg->free_slots;
    uint64_t old_returned = fresh ? 0 : seg->returned_slots & seg->free_slots;
    unsigned old_shift = fresh ? page_shift : seg->page_shift;
    /* Slot 0 holds the header and is never free, so its bit is masked
     * above; but when pages shrink, the old slot 0's page area becomes
     * new slots 1.. and may hold old blocks: count it as dirty. */
    if (!fresh && old_shift > page_shift)
        old_dirty |= 1;
    unsigned slots = 1u << (SEGMENT_SHIFT - page_shift);
    seg->magic = SEGMENT_MAGIC;
    seg->page_shift = page_shift;
    seg->slot_count = slots;
    seg->pages_in_use = 0;
    seg->owner = NULL;
    uint64_t all = slots == 64 ? ~(uint64_t)0 : (((uint64_t)1 << slots) - 1);
    seg->free_slots = all & ~(uint64_t)1;
    seg->dirty_slots = dirty_slots_regeometry(old_dirty, old_shift, page_shift) & seg->free_slots;
    seg->returned_slots =
        dirty_slots_regeometry(old_returned, old_shift, page_shift) & seg->free_slots & ~seg->dirty_slots;
    for (unsigned i = 0; i < slots; i++) {
        page *pg = &seg->pages[i];
        /* Under wipe a slot remembers its last page's layout, to name the
         * block a write after free hit (harden.c); it still holds in the
         * same geometry. */
        uintptr_t emptied_start = pg->emptied_start;
        uint32_t emptied_carved = pg->emptied_carved, emptied_block_size = pg->emptied_block_size;
        memset(pg, 0, sizeof *pg);
        pg->slot = i;
        if (!fresh && old_shift == page_shift) {
            pg->emptied_start = emptied_start;
            pg->emptied_carved = emptied_carved;
            pg->emptied_block_size = emptied_block_size;
        }
    }
}

/* An empty segment from the cache or the OS, formatted and owned by h. */
static segment *segment_acquire(thread_heap *h, unsigned page_shift)
{
    global_lock_take();
    segment *seg = segment_cache;
    if (seg != NULL) {
        segment_cache = seg->next;
        segments_cached--;
        seg->state = SEGMENT_OWNED;
    }
    global_lock_drop();
    bool fresh = false;
    if (seg == NULL) {
        seg = segment_map_fresh();
        if (seg == NULL)
            return NULL;
        fresh = true;
        global_lock_take();
        seg->all_prev = NULL;
        seg->all_next = all_segments;
        if (all_segments != NULL)
            all_segments->all_prev = seg;
        all_segments = seg;
        segments_mapped++;
        global_lock_drop();
    }
    segment_format(seg, page_shift, fresh);
    seg->state = SEGMENT_OWNED;
    seg->fork_orphan = 0;
    __atomic_store_n(&seg->owner, h, __ATOMIC_RELEASE);
    seg->prev = NULL;
    seg->next = h->segments;
    if (h->segments != NULL)
        h->segments->prev = seg;
    h->segments = seg;
    segmap_set(segment_base(seg), SEGMAP_PAGES);
    return seg;
}

static void thread_heap_segment_unlink(thread_heap *h, segment *seg)
{
    if (seg->prev != NULL)
        seg->prev->next = seg->next;
    else
        h->segments = seg->next;
    if (seg->next != NULL)
        seg->next->prev = seg->prev;
    seg->next = seg->prev = NULL;
}

/* An empty segment goes to the cache (still mapped, its map entry still
 * SEGMAP_PAGES so a stale free is recognised) until decay unmaps it. */
static void segment_to_cache(segment *seg)
{
    uint64_t now = os_now_ms();
    seg->freed_at_ms = now;
    global_lock_take();
    seg->next = segment_cache;
    seg->prev = NULL;
    segment_cache = seg;
    segments_cached++;
    seg->state = SEGMENT_CACHED;
    global_lock_drop();
    segment_cache_purge(now, false);
}

static void segment_release(thread_heap *h, segment *seg)
{
    thread_heap_segment_unlink(h, seg);
    __atomic_store_n(&seg->owner, NULL, __ATOMIC_RELEASE);
    segment_to_cache(seg);
}

bool segment_cache_purge(uint64_t now, bool force)
{
    segment *victims = NULL;
    global_lock_take();
    segment **link = &segment_cache;
    while (*link != NULL) {
        segment *seg = *link;
        if (force || now - seg->freed_at_ms >= malloc_options.decay_ms) {
            *link = seg->next;
            segments_cached--;
            segment_unmap(seg);
            seg->next = victims;
            victims = seg;
        } else {
            link = &seg->next;
        }
    }
    global_lock_drop();
    bool any = victims != NULL;
    while (victims != NULL) {
        segment *next = victims->next;
        os_unmap((void *)segment_base(victims), SEGMENT_SIZE);
        stats_note_mapped(SEGMENT_SIZE, false);
        verbose_note("unmapped a cached segment", SEGMENT_SIZE);
        victims = next;
    }
    return any;
}

/* The inverse of the odd a mod 2^64, by Newton's iteration x <- x(2 - ax):
 * a is its own inverse mod 8, and each step doubles the bits that are
 * right (3, 6, 12, 24, 48, 96). */
static uintptr_t odd_inverse(uintptr_t a)
{
    uintptr_t x = a;
    for (int i = 0; i < 5; i++)
        x *= 2 - a * x;
    return x;
}

static page *segment_take_slot(thread_heap *h, segment *seg, unsigned cls)
{
    uint64_t candidates = seg->free_slots & seg->dirty_slots;
    if (candidates == 0)
        candidates = seg->free_slots; /* prefer slots still resident */
    unsigned slot = (unsigned)__builtin_ctzll(candidates);
    uint64_t bit = (uint64_t)1 << slot;
    bool dirty = (seg->dirty_slots & bit) != 0;
    bool used_before = dirty || (seg->returned_slots & bit) != 0;
    seg->free_slots &= ~bit;
    seg->dirty_slots &= ~bit;
    seg->returned_slots &= ~bit;
    seg->pages_in_use++;

    page *pg = &seg->pages[slot];
    size_t bsize = class_block_size(cls);
    size_t page_size = (size_t)1 << seg->page_shift;
    pg->free = NULL;
    pg->local_free = NULL;
    __atomic_store_n(&pg->thread_free, 0, __ATOMIC_RELAXED);
    pg->start = segment_base(seg) + ((uintptr_t)slot << seg->page_shift);
    pg->block_size = (uint32_t)bsize;
    pg->block_mul = block_mul_of(bsize);
    pg->block_limit = 0;
    pg->carved = 0;
    pg->reserved = (uint32_t)(page_size / bsize);
    pg->span = (uint32_t)(pg->reserved * bsize);
    if (brisk_unlikely(harden_flags & HARDEN_CANARY))
        harden_page_setup(pg); /* a canary pad in front of the first block */
    pg->capacity = 0;
    pg->used = 0;
    pg->size_class = (uint16_t)cls;
    pg->link_key = random_next(&h->rng);
    pg->link_mul = random_next(&h->rng) | 1u; /* odd: invertible mod 2^64 */
    pg->link_unmul = odd_inverse(pg->link_mul);
    pg->free_mark = random_next(&h->rng) | 1u; /* never 0: a live block's */
    pg->in_full = 0;
    pg->remote_freed = 0;
    pg->fresh = used_before ? 0 : 1;
    pg->next = pg->prev = NULL;
    __atomic_store_n(&pg->in_use, 1, __ATOMIC_RELEASE);
    return pg;
}

/* A fork_orphan's pages (segment_fork_child) were last written by a
 * thread that the fork left behind, possibly in the middle of an update:
 * only what can be proved is kept. Geometry is recomputed from the class;
 * a page's free and local_free lists are kept when every link is a
 * carved block start carrying the free mark, no block twice, and its
 * live count is then what is on neither list (its thread_free list, one
 * atomic word, is intact and stays counted); otherwise every carved block
 * counts as live: a block half-freed or half-handed out by the lost
 * thread is leaked, never handed out twice. Free slots count as dirty (a
 * slot half given back may hold old data). The segment is held (taken
 * off the abandoned list) by the caller. */
static bool segment_purge_slots(segment *seg, uint64_t now, bool force);

static void segment_rebuild_orphan(segment *seg)
{
    bool geometry = seg->magic == SEGMENT_MAGIC &&
                    (seg->page_shift == SMALL_PAGE_SHIFT || seg->page_shift == MEDIUM_PAGE_SHIFT) &&
                    seg->slot_count == 1u << (SEGMENT_SHIFT - seg->page_shift);
    /* A segment a lost thread had just mapped may lack its map entry. */
    segmap_set(segment_base(seg), SEGMAP_PAGES);
    if (!geometry) {
        /* Half-formatted: it held no live block yet. */
        seg->magic = SEGMENT_MAGIC;
        seg->page_shift = SMALL_PAGE_SHIFT;
        seg->slot_count = 1u << (SEGMENT_SHIFT - SMALL_PAGE_SHIFT);
        for (unsigned i = 0; i < seg->slot_count; i++) {
            memset(&seg->pages[i], 0, sizeof seg->pages[i]);
            seg->pages[i].slot = i;
        }
    }
    uint64_t free_slots = 0;
    uint32_t in_use = 0;
    size_t page_size = (size_t)1 << seg->page_shift;
    for (unsigned i = 1; i < seg->slot_count; i++) {
        page *pg = &seg->pages[i];
        unsigned cls = pg->size_class;
        bool small = cls <= SMALL_CLASS_LAST;
        pg->slot = i;
        pg->next = pg->prev = NULL;
        pg->in_full = 0;
        if (pg->in_use && (cls >= CLASS_COUNT || small != (seg->page_shift == SMALL_PAGE_SHIFT)))
            pg->in_use = 0; /* cannot be: the class is set before in_use */
        if (!pg->in_use) {
            pg->free = pg->local_free = NULL;
            pg->carved = 0;
            pg->capacity = 0;
            pg->block_limit = 0;
            pg->emptied_block_size = 0;
            free_slots |= (uint64_t)1 << i;
            continue;
        }
        in_use++;
        size_t bsize = class_block_size(cls);
        size_t front = harden_page_front(bsize);
        pg->block_size = (uint32_t)bsize;
        pg->block_mul = block_mul_of(bsize);
        pg->start = segment_base(seg) + ((uintptr_t)i << seg->page_shift) + front;
        pg->reserved = (uint32_t)((page_size - front) / bsize);
        pg->span = (uint32_t)(pg->reserved * bsize);
        if (pg->capacity > pg->reserved)
            pg->capacity = pg->reserved;
        pg->carved = (uint32_t)(pg->capacity * bsize);
        pg->block_limit = block_limit_of(pg->block_mul, bsize, pg->capacity);
        uint64_t seen[PAGE_SEEN_WORDS];
        uintptr_t bad = 0;
        long listed = page_mark_listed(pg, seen, &bad);
        if (listed < 0) {
            pg->free = pg->local_free = NULL;
            listed = 0;
        }
        pg->used = pg->capacity - (uint32_t)listed;
        pg->remote_freed = 1; /* rebuilt: its release walks its lists */
        if (harden_flags & (HARDEN_CANARY | HARDEN_WIPE))
            harden_orphan_page_rebuilt(pg);
    }
    seg->free_slots = free_slots;
    seg->dirty_slots = free_slots;
    seg->returned_slots = 0;
    seg->pages_in_use = in_use;
    seg->fork_orphan = 0;
    /* Under wipe every free slot must read zero (harden.c, "recycling a
     * page's slot"), and one the lost thread was setting up or emptying
     * need not: they all go back to the OS, which hands out zero pages. */
    if (harden_flags & HARDEN_WIPE)
        segment_purge_slots(seg, 0, true);
}

/* Makes seg, just taken off the abandoned list by this thread, h's. */
static void segment_adopt(thread_heap *h, segment *seg)
{
    if (seg->fork_orphan)
        segment_rebuild_orphan(seg);
    seg->state = SEGMENT_OWNED;
    __atomic_store_n(&seg->owner, h, __ATOMIC_RELEASE);
    seg->prev = NULL;
    seg->next = h->segments;
    if (h->segments != NULL)
        h->segments->prev = seg;
    h->segments = seg;
    thread_heap_adopt_pages(h, seg);
}

/* Takes the newest abandoned segment off the list (NULL if there is
 * none); the caller holds it. */
static segment *abandoned_take(void)
{
    if (__atomic_load_n(&abandoned, __ATOMIC_RELAXED) == NULL)
        return NULL;
    global_lock_take();
    segment *seg = abandoned;
    if (seg != NULL) {
        abandoned_unlink(seg);
        seg->state = SEGMENT_OWNED;
        abandon_totals.segments_adopted++;
        abandon_totals.pages_adopted += seg->pages_in_use;
    }
    global_lock_drop();
    return seg;
}

/* Takes one abandoned segment, if any, and adopts its pages into h.
 * Returns the segment, or NULL when there was none or it turned out
 * empty (and went to the cache). */
static segment *thread_heap_adopt_one(thread_heap *h)
{
    segment *seg = abandoned_take();
    if (seg == NULL)
        return NULL;
    segment_adopt(h, seg);
    /* Emptied by the adoption, it went to the cache, where it may have
     * been unmapped already: it is not read again. The adoption put it
     * first on h's list and can only have taken it off. */
    return h->segments == seg ? seg : NULL;
}

/* How many abandoned segments one malloc slow path may adopt looking for
 * a page of its class. */
#define ADOPT_FOR_CLASS_MAX 4

page *thread_heap_adopt_page(thread_heap *h, unsigned cls)
{
    for (int i = 0; i < ADOPT_FOR_CLASS_MAX; i++) {
        if (__atomic_load_n(&abandoned, __ATOMIC_RELAXED) == NULL)
            return NULL;
        segment *seg = thread_heap_adopt_one(h);
        if (seg == NULL)
            continue;
        for (unsigned s = 1; s < seg->slot_count; s++) {
            page *pg = &seg->pages[s];
            if (pg->in_use && pg->size_class == cls &&
                (pg->free != NULL || pg->local_free != NULL || pg->capacity < pg->reserved))
                return pg;
        }
    }
    return NULL;
}

page *segment_page_alloc(thread_heap *h, unsigned cls)
{
    unsigned shift = cls <= SMALL_CLASS_LAST ? SMALL_PAGE_SHIFT : MEDIUM_PAGE_SHIFT;
    for (int attempt = 0; attempt < 4; attempt++) {
        /* A slot still resident (freed, not yet purged) in any segment
         * before a fresh one: taking fresh slots while resident ones sit
         * in another segment grew a build-and-free loop's memory until
         * every slot of every segment had been touched. */
        segment *fallback = NULL;
        for (segment *seg = h->segments; seg != NULL; seg = seg->next) {
            if (seg->page_shift != shift || seg->free_slots == 0)
                continue;
            if ((seg->free_slots & seg->dirty_slots) != 0)
                return segment_take_slot(h, seg, cls);
            if (fallback == NULL)
                fallback = seg;
        }
        if (fallback != NULL)
            return segment_take_slot(h, fallback, cls);
        /* Before mapping more, take over what exited threads left. */
        if (__atomic_load_n(&abandoned, __ATOMIC_RELAXED) == NULL)
            break;
        thread_heap_adopt_one(h);
    }
    segment *seg = segment_acquire(h, shift);
    if (seg == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    return segment_take_slot(h, seg, cls);
}

#if BRISK_CHECKS
/* A page whose count of live blocks reached zero while its lists do not
 * hold every block (live_block, the first one they lack, or the first bad
 * or twice-listed one). It is not given back (its memory would be carved
 * again, for any size, with a block live): reported, and kept with every
 * block counted live and its lists dropped. */
static BRISK_NOINLINE void page_keep_unreleasable(page *pg, uintptr_t live_block)
{
    report_error(BRISK_ERROR_CORRUPTION,
                 "heap corrupted: a page's count of live blocks reached zero with a block still live "
                 "(freed twice, or the count overwritten)",
                 (void *)live_block);
    page_give_up_lists(pg);
}
#endif

/* Returns an empty page's slot to its segment; the memory stays resident
 * until decay. The caller has taken the page off every thread heap list.
 * A page is given back on what its lists hold, not on its count alone:
 * false when they lack a block (page_keep_unreleasable). */
static bool slot_free(page *pg)
{
    brisk_assert(pg->in_use && pg->used == 0, "slot_free: the page still holds live blocks");
#if BRISK_CHECKS
    /* Frees by the owner alone leave the count exact (a double free is
     * told by the mark and the walk that confirms it): the lists are
     * walked only for a page other threads freed into. */
    bool remote = pg->remote_freed || __atomic_load_n(&pg->thread_free, __ATOMIC_RELAXED) != 0;
    uintptr_t live_block = remote ? page_first_unlisted(pg) : 0;
    if (brisk_unlikely(live_block != 0)) {
        page_keep_unreleasable(pg, live_block);
        return false;
    }
#endif
    segment *seg = page_segment(pg);
    uint64_t bit = (uint64_t)1 << pg->slot;
    if (brisk_unlikely(harden_flags & HARDEN_WIPE))
        harden_page_emptied(pg); /* checked for writes after free, left zero */
    __atomic_store_n(&pg->in_use, 0, __ATOMIC_RELEASE);
    pg->free = NULL;
    pg->local_free = NULL;
    pg->capacity = 0;
    pg->carved = 0;
    pg->block_limit = 0; /* no block start any more: a free is reported */
    pg->freed_at_ms = os_now_ms();
    seg->free_slots |= bit;
    seg->dirty_slots |= bit;
    seg->pages_in_use--;
    return true;
}

bool segment_page_free(thread_heap *h, page *pg)
{
    if (brisk_unlikely(!slot_free(pg))) {
        /* Kept, with no free block: on its class's full list. */
        pg->in_full = 1;
        page_queue_push_back(&h->full[pg->size_class], pg);
        return false;
    }
    segment *seg = page_segment(pg);
    if (seg->pages_in_use == 0)
        segment_release(h, seg);
    return true;
}

/* Collects every page of q from `from` on and gives back those that turn
 * out empty. With remote_only, pages no other thread freed into are
 * skipped: their count of live blocks cannot have dropped. */
static void queue_release_empty(thread_heap *h, page_queue *q, page *from, bool remote_only)
{
    page *pg = from;
    while (pg != NULL) {
        page *next = pg->next;
        if (!remote_only || __atomic_load_n(&pg->thread_free, __ATOMIC_RELAXED) != 0) {
            page_collect(pg);
            if (pg->used == 0) {
                page_queue_remove(q, pg);
                pg->in_full = 0;
                segment_page_free(h, pg);
            }
        }
        pg = next;
    }
}

/* Pages that other threads emptied are only noticed when collected: give
 * back every such page except each class's current one. */
static void thread_heap_retire_empty_pages(thread_heap *h)
{
    for (unsigned cls = 0; cls < CLASS_COUNT; cls++) {
        page_queue *q = &h->queues[cls];
        queue_release_empty(h, q, q->first != NULL ? q->first->next : NULL, false);
        queue_release_empty(h, &h->full[cls], h->full[cls].first, true);
    }
}

/* Returns the memory of seg's free slots unused for decay_ms (all of
 * them when forced); the caller holds seg. */
static bool segment_purge_slots(segment *seg, uint64_t now, bool force)
{
    bool any = false;
    uint64_t dirty = seg->dirty_slots & seg->free_slots;
    while (dirty != 0) {
        unsigned slot = (unsigned)__builtin_ctzll(dirty);
        dirty &= dirty - 1;
        page *pg = &seg->pages[slot];
        if (!force && now - pg->freed_at_ms < malloc_options.decay_ms)
            continue;
        size_t size = (size_t)1 << seg->page_shift;
        /* A slot not dirty reads as zero (the wipe checks it, as
         * returned, when it is carved again), so it stays dirty if
         * the OS refused. */
        if (os_decommit((void *)(segment_base(seg) + ((uintptr_t)slot << seg->page_shift)), size) != 0)
            continue;
        seg->dirty_slots &= ~((uint64_t)1 << slot);
        seg->returned_slots |= (uint64_t)1 << slot;
        any = true;
        verbose_note("returned a free page to the OS", size);
    }
    return any;
}

/* Returns the memory of free slots unused for decay_ms (all of them when
 * forced), and the caches' expired entries. */
bool thread_heap_purge(thread_heap *h, bool force)
{
    bool any = false;
    thread_heap_retire_empty_pages(h);
    uint64_t now = os_now_ms();
    h->last_purge_ms = now;
    for (segment *seg = h->segments; seg != NULL; seg = seg->next)
        any |= segment_purge_slots(seg, now, force);
    any |= segment_cache_purge(now, force);
    any |= large_cache_purge(now, force);
    return any;
}

/* Called from slow paths; once every 64 calls it adopts one abandoned
 * segment if there is any (so memory of exited threads, freed by others
 * since, is reclaimed even by a thread that never runs out of pages),
 * and looks at the clock, purging at most four times per decay period. */
void thread_heap_purge_tick(thread_heap *h)
{
    if ((++h->purge_tick & 63u) != 0)
        return;
    thread_heap_adopt_one(h);
    uint64_t now = os_now_ms();
    uint64_t period = malloc_options.decay_ms / 4;
    if (now - h->last_purge_ms >= period)
        thread_heap_purge(h, false);
}

/* Thread exit: pages are collected and empty ones returned; segments that
 * still hold live blocks are abandoned (owner NULL, so every free into
 * them takes the thread_free path) until another thread adopts them. */
void thread_heap_abandon_segments(thread_heap *h)
{
    for (unsigned cls = 0; cls < CLASS_COUNT; cls++) {
        queue_release_empty(h, &h->queues[cls], h->queues[cls].first, false);
        thread_heap_set_direct(h, cls, &empty_page);
        queue_release_empty(h, &h->full[cls], h->full[cls].first, false);
    }
    thread_heap_purge(h, false);
    while (h->segments != NULL) {
        segment *seg = h->segments;
        thread_heap_segment_unlink(h, seg);
        for (unsigned i = 1; i < seg->slot_count; i++) {
            seg->pages[i].next = seg->pages[i].prev = NULL;
            seg->pages[i].in_full = 0;
        }
        __atomic_store_n(&seg->owner, NULL, __ATOMIC_RELEASE);
        global_lock_take();
        abandoned_push(seg);
        abandon_totals.segments_abandoned++;
        abandon_totals.pages_abandoned += seg->pages_in_use;
        global_lock_drop();
    }
    for (unsigned cls = 0; cls < CLASS_COUNT; cls++) {
        h->queues[cls].first = h->queues[cls].last = NULL;
        h->full[cls].first = h->full[cls].last = NULL;
    }
}

/* A cross-thread free of b into pg, whose segment's owner was read as
 * NULL. When b is, as far as can be seen, the last live block of its page
 * (the count of live blocks, which no one writes while the segment is
 * abandoned, is one more than what waits on thread_free), the freeing
 * thread sweeps the segment: it takes it off the abandoned list, frees b
 * into the page, collects every page, gives the empty ones back, and
 * returns the segment to the list, or to the cache once empty. Memory of
 * exited threads thus comes back as soon as others free it, without
 * waiting for a thread to adopt it. Returns false, having done nothing,
 * when b is not the last or the segment is not on the list (adopted,
 * swept, or still being abandoned: rule 3 above keeps the plain
 * thread_free push right then). Never reads the segment after pushing b
 * anywhere but into a page it holds. */
bool segment_abandoned_free(page *pg, block *b)
{
    segment *seg = page_segment(pg);
    uintptr_t word = __atomic_load_n(&pg->thread_free, __ATOMIC_RELAXED);
    if (__atomic_load_n(&pg->used, __ATOMIC_RELAXED) != thread_free_count(word) + 1)
        return false;
    global_lock_take();
    if (seg->state != SEGMENT_ABANDONED) {
        global_lock_drop();
        return false;
    }
    abandoned_unlink(seg);
    seg->state = SEGMENT_SWEEPING;
    global_lock_drop();
    if (seg->fork_orphan)
        segment_rebuild_orphan(seg);
    /* seg is held: b goes on its page as the owner's free would. */
    b->next_encoded = list_encode(pg, b, pg->local_free);
#if BRISK_CHECKS
    b->free_mark = pg->free_mark;
#endif
    pg->local_free = b;
    pg->used--;
    pg->remote_freed = 1;
    uint32_t freed = 0;
    for (unsigned i = 1; i < seg->slot_count; i++) {
        page *p = &seg->pages[i];
        if (!p->in_use)
            continue;
        page_collect(p);
        if (p->used == 0 && slot_free(p))
            freed++;
    }
    if (seg->pages_in_use == 0) {
        global_lock_take();
        abandon_totals.segments_swept_empty++;
        abandon_totals.pages_swept += freed;
        global_lock_drop();
        segment_to_cache(seg);
        return true;
    }
    segment_purge_slots(seg, os_now_ms(), false);
    global_lock_take();
    abandoned_push(seg);
    abandon_totals.pages_swept += freed;
    global_lock_drop();
    return true;
}

/* In a forked child (global_lock held, one thread): every segment not
 * owned by the surviving thread heap `me`, not cached and not abandoned
 * already, belonged to a thread that did not survive the fork, and is
 * abandoned as a fork_orphan. The list of every segment is intact (it is
 * only changed under the lock, which the fork held). */
void segment_fork_child(const thread_heap *me)
{
    for (segment *seg = all_segments; seg != NULL; seg = seg->all_next) {
        if (seg->state == SEGMENT_CACHED || seg->state == SEGMENT_ABANDONED)
            continue;
        if (seg->state == SEGMENT_OWNED && me != NULL &&
            __atomic_load_n(&seg->owner, __ATOMIC_RELAXED) == me)
            continue;
        /* Owned by a lost thread, or held by one (adopting, sweeping,
         * acquiring): its header may be half-written. */
        __atomic_store_n(&seg->owner, NULL, __ATOMIC_RELAXED);
        seg->fork_orphan = 1;
        abandoned_push(seg);
        abandon_totals.segments_abandoned++;
        abandon_totals.fork_orphans++;
        abandon_totals.pages_abandoned += seg->pages_in_use;
    }
}

/* global_lock held. The live figures walk the abandoned list; a page's
 * live bytes are its count of live blocks less those waiting on its
 * thread_free list (a snapshot: other threads free as it is read). */
void segment_abandon_stats(abandon_stats *out)
{
    *out = abandon_totals;
    out->segments_cached_now = segments_cached;
    for (segment *seg = abandoned; seg != NULL; seg = seg->next) {
        out->abandoned_segments_now++;
        if (seg->fork_orphan)
            continue; /* its pages are not trusted until rebuilt */
        for (unsigned i = 1; i < seg->slot_count; i++) {
            const page *pg = &seg->pages[i];
            if (!pg->in_use)
                continue;
            uint32_t waiting = thread_free_count(__atomic_load_n(&pg->thread_free, __ATOMIC_RELAXED));
            uint32_t live = pg->used > waiting ? pg->used - waiting : 0;
            out->abandoned_pages_now++;
            out->abandoned_page_bytes_now += (uint64_t)1 << seg->page_shift;
            out->abandoned_live_bytes_now += (uint64_t)live * pg->block_size;
        }
    }
}
