/*
 * Segments: 4 MiB-aligned spans of OS memory cut into pages (see the
 * layout in malloc/types.h), the segment map that says which spans are
 * ours, the cache of empty segments, abandoned segments of exited
 * threads, and the decay that returns unused memory to the OS.
 *
 * Decay (hysteresis): a page slot that empties, an empty segment, and a
 * freed large block are kept as they are for decay_ms (default 1 s)
 * before their memory is returned (madvise for slots, munmap for cached
 * segments and large blocks). A program that frees and reallocates the
 * same amount in a loop therefore reuses resident memory and takes no
 * page faults, while memory left unused after a peak goes back to the OS.
 * Purges run from allocation slow paths (rate-limited) and malloc_trim.
 *
 * Locking: a segment is touched only by its owner thread, except its
 * pages' thread_free lists (atomic). The cache, the abandoned list and the
 * list of all segments are under global_lock.
 */
#include "malloc/internal.h"

#include <errno.h>

static segment *segment_cache;  /* empty segments, newest first */
static segment *abandoned;      /* segments of exited threads */
static segment *all_segments;   /* every mapped segment */
static size_t segments_mapped;  /* count, for statistics */

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
    if (seg != NULL)
        segment_cache = seg->next;
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
static void segment_release(thread_heap *h, segment *seg)
{
    thread_heap_segment_unlink(h, seg);
    __atomic_store_n(&seg->owner, NULL, __ATOMIC_RELEASE);
    uint64_t now = os_now_ms();
    seg->freed_at_ms = now;
    global_lock_take();
    seg->next = segment_cache;
    segment_cache = seg;
    global_lock_drop();
    segment_cache_purge(now, false);
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
    pg->carved_units = 0;
    pg->reserved = (uint32_t)(page_size / bsize);
    pg->span = (uint32_t)(pg->reserved * bsize);
    if (brisk_unlikely(harden_flags & HARDEN_CANARY))
        harden_page_setup(pg); /* a canary pad in front of the first block */
    pg->capacity = 0;
    pg->used = 0;
    pg->size_class = (uint16_t)cls;
    pg->link_key = random_next(&h->rng);
    pg->free_mark = random_next(&h->rng) | 1u; /* never 0: a live block's */
    pg->in_full = 0;
    pg->fresh = used_before ? 0 : 1;
    pg->next = pg->prev = NULL;
    __atomic_store_n(&pg->in_use, 1, __ATOMIC_RELEASE);
    return pg;
}

/* Takes one abandoned segment, if any, and adopts its pages into h. */
static bool thread_heap_adopt_one(thread_heap *h)
{
    if (__atomic_load_n(&abandoned, __ATOMIC_RELAXED) == NULL)
        return false;
    global_lock_take();
    segment *seg = abandoned;
    if (seg != NULL)
        abandoned = seg->next;
    global_lock_drop();
    if (seg == NULL)
        return false;
    __atomic_store_n(&seg->owner, h, __ATOMIC_RELEASE);
    seg->prev = NULL;
    seg->next = h->segments;
    if (h->segments != NULL)
        h->segments->prev = seg;
    h->segments = seg;
    thread_heap_adopt_pages(h, seg);
    return true;
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
        if (!thread_heap_adopt_one(h))
            break;
    }
    segment *seg = segment_acquire(h, shift);
    if (seg == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    return segment_take_slot(h, seg, cls);
}

/* Returns an empty page's slot to its segment; the memory stays resident
 * until decay. The caller has taken the page off every thread heap list. */
void segment_page_free(thread_heap *h, page *pg)
{
    brisk_assert(pg->in_use && pg->used == 0, "segment_page_free: the page still holds live blocks");
    segment *seg = page_segment(pg);
    uint64_t bit = (uint64_t)1 << pg->slot;
    if (brisk_unlikely(harden_flags & HARDEN_WIPE))
        harden_page_emptied(pg); /* checked for writes after free, left zero */
    __atomic_store_n(&pg->in_use, 0, __ATOMIC_RELEASE);
    pg->free = NULL;
    pg->local_free = NULL;
    pg->capacity = 0;
    pg->carved = 0;
    pg->carved_units = 0;
    pg->block_limit = 0; /* no block start any more: a free is reported */
    pg->freed_at_ms = os_now_ms();
    seg->free_slots |= bit;
    seg->dirty_slots |= bit;
    seg->pages_in_use--;
    if (seg->pages_in_use == 0)
        segment_release(h, seg);
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

/* Returns the memory of free slots unused for decay_ms (all of them when
 * forced), and the caches' expired entries. */
bool thread_heap_purge(thread_heap *h, bool force)
{
    bool any = false;
    thread_heap_retire_empty_pages(h);
    uint64_t now = os_now_ms();
    h->last_purge_ms = now;
    for (segment *seg = h->segments; seg != NULL; seg = seg->next) {
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
    }
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
        seg->next = abandoned;
        abandoned = seg;
        global_lock_drop();
    }
    for (unsigned cls = 0; cls < CLASS_COUNT; cls++) {
        h->queues[cls].first = h->queues[cls].last = NULL;
        h->full[cls].first = h->full[cls].last = NULL;
    }
}
