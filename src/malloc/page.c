/*
 * Pages: carving blocks, collecting the local and cross-thread free lists,
 * the thread heap's page queues, and the malloc slow path.
 *
 * A thread heap keeps, per size class, a queue of pages that may have free
 * blocks; its first page is the "direct" page the fast path pops from.
 * Pages found with nothing free move to the class's full list; a local
 * free into a full page moves it back, and pages on the full list with
 * pending cross-thread frees are rescued (64 at a time, round robin)
 * before a new page is taken, so remote frees are reclaimed without any
 * notification.
 *
 * Invariants (checked by brisk_malloc_check):
 *   - a page in use is on exactly one list of its owner: the queue of its
 *     class (in_full 0) or the full list of its class (in_full 1)
 *   - direct[c] is the first page of queue c, or &empty_page when empty
 *   - blocks on free + local_free + used == capacity, each block on at
 *     most one list, and every listed block a carved block start
 */
#include "malloc/internal.h"

#include <errno.h>

/* Carves up to PAGE_EXTEND_BYTES worth of new blocks (at least one) onto
 * the free list, in address order, so a page touches memory gradually: a
 * thread using a class a little holds at most that much unused. Returns
 * false when, under wipe, the memory was found written after free and
 * reported (a handler returned; the blocks are carved, zeroed). */
#define PAGE_EXTEND_BYTES 4096
static bool page_extend(page *pg)
{
    uint32_t room = pg->reserved - pg->capacity;
    uint32_t count = (uint32_t)((size_t)PAGE_EXTEND_BYTES / pg->block_size);
    if (count == 0)
        count = 1;
    if (count > room)
        count = room;
    uintptr_t first = pg->start + (uintptr_t)pg->capacity * pg->block_size;
    bool clean = true;
    if (brisk_unlikely(harden_flags & (HARDEN_CANARY | HARDEN_WIPE)))
        clean = harden_blocks_carved(pg, first, count); /* canaries, wiped contents */
    uintptr_t b = first;
    for (uint32_t i = 0; i + 1 < count; i++) {
        uintptr_t next = b + pg->block_size;
        ((block *)b)->next_encoded = list_encode(pg, (block *)b, (block *)next);
#if BRISK_CHECKS
        ((block *)b)->free_mark = pg->free_mark;
#endif
        b = next;
    }
    ((block *)b)->next_encoded = list_encode(pg, (block *)b, pg->free);
#if BRISK_CHECKS
    ((block *)b)->free_mark = pg->free_mark;
#endif
    pg->free = (block *)first;
    pg->capacity += count;
    pg->carved = pg->capacity * pg->block_size;
    pg->block_limit = block_limit_of(pg->block_mul, pg->block_size, pg->capacity);
    return clean;
}

/* A carve found written memory and reported it, and the handler returned:
 * the malloc that carved does nothing more (the page is in place, its new
 * blocks zeroed and listed for the next call). */
static BRISK_NOINLINE void *carve_reported(void)
{
    errno = ENOMEM;
    return NULL;
}

void block_report_bad_free(page *pg, const void *p)
{
    uintptr_t off = (uintptr_t)p - pg->start;
    /* A page freed since keeps its start and block size until its slot is
     * reused: a block start there was freed with its page. */
    if (!pg->in_use && pg->block_size != 0 && off < pg->span && off % pg->block_size == 0)
        report_error(BRISK_ERROR_DOUBLE_FREE, "double free", p);
    else
        report_error(BRISK_ERROR_INVALID_POINTER,
                     "free of a pointer that is not the start of a live block", p);
}

/* Walks one list for b: whether the list holds it, lacks it, or cannot
 * tell: a link that does not name a carved block start of the page
 * carrying the free mark (written after free), or more links than the
 * page has blocks (a cycle). A walk that meets a bad link concludes
 * nothing: the blocks past it are unknown, b may be among them. */
static list_search list_find(const page *pg, const block *list, const block *b)
{
    for (uint32_t i = 0; list != NULL; i++) {
        if (i >= pg->capacity)
            return LIST_BROKEN;
        if (list == b)
            return LIST_HOLDS;
        uintptr_t off = (uintptr_t)list - pg->start;
        if (off >= pg->carved || !page_block_start(pg, off) || !block_looks_free(pg, list))
            return LIST_BROKEN;
        list = list_decode(pg, list, list->next_encoded);
    }
    return LIST_LACKS;
}

/* Owner only: whether b is on one of the page's free lists, O(blocks in
 * the page), run only when b's second word reads as the free mark. Holds
 * wins over broken (b was found before the bad link); broken over lacks. */
list_search page_find_free_block(page *pg, const block *b)
{
    const block *lists[3] = {pg->free, pg->local_free,
                             thread_free_head(__atomic_load_n(&pg->thread_free, __ATOMIC_ACQUIRE))};
    list_search result = LIST_LACKS;
    for (int l = 0; l < 3; l++) {
        list_search found = list_find(pg, lists[l], b);
        if (found == LIST_HOLDS)
            return LIST_HOLDS;
        if (found == LIST_BROKEN)
            result = LIST_BROKEN;
    }
    return result;
}

/* A block start whose second word reads as the free mark (a freed block,
 * or a live one whose data happen to read so) is confirmed free: by its
 * check words when it waits in a quarantine, else by its page's owner
 * walking the page's lists, which must all read whole for the block to
 * count as live. Another thread cannot walk the owner's lists and counts
 * it freed (the word is the mark only if the block is free, barring a
 * program that wrote a value it can only have read from freed memory). */
bool block_suspect_is_live(page *pg, const block *b, const char *freed, const char *broken)
{
    thread_heap *h = tls_thread_heap;
    bool local = h != NULL && __atomic_load_n(&page_segment(pg)->owner, __ATOMIC_RELAXED) == h;
    if (local && !block_waits_in_quarantine(pg, b)) {
        list_search found = page_find_free_block(pg, b);
        if (found == LIST_LACKS)
            return true;
        if (found == LIST_BROKEN) {
            report_error(BRISK_ERROR_DOUBLE_FREE, broken, b);
            return false;
        }
    }
    report_error(BRISK_ERROR_DOUBLE_FREE, freed, b);
    return false;
}

void page_give_up_lists(page *pg)
{
    pg->free = pg->local_free = NULL;
    pg->used = pg->capacity;
}

long page_mark_listed(const page *pg, uint64_t *seen, uintptr_t *bad)
{
    memset(seen, 0, PAGE_SEEN_WORDS * sizeof *seen);
    long listed = 0;
    const block *lists[2] = {pg->free, pg->local_free};
    for (int l = 0; l < 2; l++) {
        for (const block *b = lists[l]; b != NULL; b = list_decode(pg, b, b->next_encoded)) {
            uintptr_t off = (uintptr_t)b - pg->start;
            bool looks_free = true;
#if BRISK_CHECKS
            looks_free = block_looks_free(pg, b); /* the unchecked build writes no mark */
#endif
            if (off >= pg->carved || !page_block_start(pg, off) || !looks_free) {
                *bad = (uintptr_t)b;
                return -1;
            }
            /* off / block_size, without a division: the high half of the
             * product whose low half page_block_start tested (block_mul is
             * ceil(2^64 / block_size), exact for every 32-bit offset). */
            __extension__ typedef unsigned __int128 u128;
            size_t index = (size_t)(((u128)(uint32_t)off * pg->block_mul) >> 64);
            if ((seen[index / 64] >> (index % 64)) & 1) {
                *bad = (uintptr_t)b; /* listed twice, or a cycle */
                return -1;
            }
            seen[index / 64] |= (uint64_t)1 << (index % 64);
            listed++;
        }
    }
    return listed;
}

uintptr_t page_first_unlisted(const page *pg)
{
    uintptr_t waiting = __atomic_load_n(&pg->thread_free, __ATOMIC_ACQUIRE);
    if (waiting != 0)
        return (uintptr_t)thread_free_head(waiting); /* beyond the count */
    uint64_t seen[PAGE_SEEN_WORDS];
    uintptr_t bad = 0;
    long listed = page_mark_listed(pg, seen, &bad);
    if (listed < 0)
        return bad;
    if ((uint32_t)listed == pg->capacity)
        return 0;
    for (uint32_t i = 0; i < pg->capacity; i++)
        if (((seen[i / 64] >> (i % 64)) & 1) == 0)
            return pg->start + (uintptr_t)i * pg->block_size; /* live */
    return pg->start;
}

/* Appends list (linked with the page's encoding) to *dest; walks *dest to
 * its tail only when both are non-empty. The walk reads links a write
 * after free may have changed: it stops only at a NULL link, and a link
 * that does not decode to a block of the page (or a list longer than the
 * page) is reported and nothing is written, so a forged link can neither
 * make it write into a live block nor splice a live block into a list;
 * the page then gives up its lists. */
static void list_splice(page *pg, block **dest, block *list)
{
    if (*dest == NULL) {
        *dest = list;
        return;
    }
    block *tail = *dest;
    for (uint32_t i = 0; i < pg->capacity; i++) {
        block *next = list_decode(pg, tail, tail->next_encoded);
        if (next == NULL) {
            tail->next_encoded = list_encode(pg, tail, list);
            return;
        }
        if (!page_link_in_range(pg, (uintptr_t)next - pg->start))
            break;
        tail = next;
    }
    report_error(BRISK_ERROR_CORRUPTION, "free list corrupted (a freed block was written to)", tail);
    page_give_up_lists(pg); /* the list taken is counted out of used already */
}

/* Makes the blocks other threads freed available: the whole thread_free
 * list is taken with one exchange, its length comes with it, and it is
 * used as it is (its links are already in the page's encoding; every
 * block is validated when malloc pops it). Then free gets local_free if
 * it is empty. Returns whether free has a block. The remote blocks'
 * memory is not touched here: walking a list whose blocks were last
 * written on other cores was a cache miss per block. */
bool page_collect(page *pg)
{
    if (pg->free == NULL && pg->local_free != NULL) {
        pg->free = pg->local_free;
        pg->local_free = NULL;
    }
    if (__atomic_load_n(&pg->thread_free, __ATOMIC_RELAXED) != 0) {
        uintptr_t word = __atomic_exchange_n(&pg->thread_free, 0, __ATOMIC_ACQUIRE);
        uint32_t count = thread_free_count(word);
        pg->remote_freed = 1;
        if (count > pg->used) {
            /* A block freed twice (by the owner and another thread at
             * once) made the count too low: neither this list nor the
             * page's others are believed. */
            report_error(BRISK_ERROR_CORRUPTION,
                         "cross-thread free list corrupted (more blocks than are live)",
                         thread_free_head(word));
            page_give_up_lists(pg);
        } else {
            pg->used -= count;
            list_splice(pg, pg->free == NULL ? &pg->free : &pg->local_free,
                        thread_free_head(word));
        }
    }
    return pg->free != NULL;
}

void page_queue_remove(page_queue *q, page *pg)
{
    brisk_assert(pg->prev != NULL ? pg->prev->next == pg : q->first == pg,
                 "page_queue_remove: the page is not on this queue");
    if (pg->prev != NULL)
        pg->prev->next = pg->next;
    else
        q->first = pg->next;
    if (pg->next != NULL)
        pg->next->prev = pg->prev;
    else
        q->last = pg->prev;
    pg->next = pg->prev = NULL;
}

void page_queue_push_back(page_queue *q, page *pg)
{
    brisk_assert(q->first != pg && q->last != pg,
                 "page_queue_push_back: the page is already at an end of this queue");
    pg->next = NULL;
    pg->prev = q->last;
    if (q->last != NULL)
        q->last->next = pg;
    else
        q->first = pg;
    q->last = pg;
}

static void page_queue_push_front(page_queue *q, page *pg)
{
    pg->prev = NULL;
    pg->next = q->first;
    if (q->first != NULL)
        q->first->prev = pg;
    else
        q->last = pg;
    q->first = pg;
}

static void thread_heap_update_direct(thread_heap *h, unsigned cls)
{
    page *first = h->queues[cls].first;
    thread_heap_set_direct(h, cls, first != NULL ? first : &empty_page);
}

/* Adoption of an abandoned segment: every page in use is collected; empty
 * ones are freed, the others join h's queues. */
void thread_heap_adopt_pages(thread_heap *h, segment *seg)
{
    for (unsigned i = 1; i < seg->slot_count; i++) {
        page *pg = &seg->pages[i];
        if (!pg->in_use)
            continue;
        page_collect(pg);
        pg->in_full = 0;
        pg->next = pg->prev = NULL;
        if (pg->used == 0) {
            bool last = seg->pages_in_use == 1;
            if (segment_page_free(h, pg) && last)
                return; /* the segment went to the cache */
            continue;
        }
        page_queue_push_back(&h->queues[pg->size_class], pg);
        thread_heap_update_direct(h, pg->size_class);
    }
}

/* A pop found the free list pointing somewhere no free block can be: a
 * freed block was overwritten, or one block was freed twice at once and
 * listed twice. The page's lists are given up (page_give_up_lists). */
void *page_pop_corrupt(page *pg, block *b)
{
    page_give_up_lists(pg);
    report_error(BRISK_ERROR_CORRUPTION, "free list corrupted (a freed block was written to)", b);
    errno = ENOMEM;
    return NULL;
}

/* Looks at up to `limit` pages of the class's full list and moves those that
 * other threads freed blocks into back to the class queue (empty ones are
 * freed). The pages looked at and kept are rotated to the list's end in
 * O(1), so successive rescues go round the whole list. Returns whether
 * any page came back. */
static bool thread_heap_rescue_full(thread_heap *h, unsigned cls, int limit)
{
    page_queue *full = &h->full[cls];
    page *pg = full->first;
    page *last_kept = NULL;
    bool rescued = false;
    for (int i = 0; i < limit && pg != NULL; i++) {
        page *next = pg->next;
        if (__atomic_load_n(&pg->thread_free, __ATOMIC_RELAXED) != 0 || pg->local_free != NULL) {
            page_queue_remove(full, pg);
            page_collect(pg);
            pg->in_full = 0;
            if (pg->used == 0) {
                segment_page_free(h, pg);
            } else {
                page_queue_push_back(&h->queues[cls], pg);
                rescued = true;
            }
        } else {
            last_kept = pg;
        }
        pg = next;
    }
    if (last_kept != NULL && last_kept->next != NULL) {
        page *head = full->first;
        page *rest = last_kept->next;
        full->first = rest;
        rest->prev = NULL;
        full->last->next = head;
        head->prev = full->last;
        last_kept->next = NULL;
        full->last = last_kept;
    }
    thread_heap_update_direct(h, cls);
    return rescued;
}

/* The malloc slow path: the class's current page has no free block.
 * Blocks already carved are preferred to carving new ones (which touches
 * new memory): first any page of the queue with blocks freed since (local
 * or remote), then pages rescued from the full list, then carving more of
 * a page that has room, and only then a fresh page. */
void *malloc_generic(thread_heap *h, unsigned cls)
{
    h->class_requests[cls]++;
    thread_heap_purge_tick(h);
    page_queue *q = &h->queues[cls];
    page *extendable = NULL;
    /* A few full pages every time: the current page alone receives only
     * its share of other threads' frees, and without this the others'
     * would wait until it received none at all. */
    if (h->full[cls].first != NULL)
        thread_heap_rescue_full(h, cls, 8);
    /* Round robin over the queue: the page that just ran dry goes to the
     * back, so every page's returned blocks get collected in turn (the
     * dry page alone would keep collecting its own trickle while the
     * others' piled up). */
    page *dry = q->first;
    if (dry != NULL && dry->next != NULL) {
        page_queue_remove(q, dry);
        page_queue_push_back(q, dry);
    }
    for (int pass = 0; pass < 2; pass++) {
        page *pg = q->first;
        for (int visited = 0; pg != NULL && visited < 8; visited++) {
            page *next = pg->next;
            if (page_collect(pg)) {
                if (pg != q->first) {
                    page_queue_remove(q, pg);
                    page_queue_push_front(q, pg);
                }
                thread_heap_set_direct(h, cls, pg);
                return page_pop(pg);
            }
            if (pg->capacity < pg->reserved) {
                if (extendable == NULL)
                    extendable = pg;
            } else {
                page_queue_remove(q, pg);
                pg->in_full = 1;
                page_queue_push_back(&h->full[cls], pg);
            }
            pg = next;
        }
        thread_heap_update_direct(h, cls);
        if (pass != 0 || h->full[cls].first == NULL || !thread_heap_rescue_full(h, cls, 64))
            break;
    }
    /* What exited threads left (segment.c) before carving new memory. */
    page *adopted = thread_heap_adopt_page(h, cls);
    if (adopted != NULL) {
        if (page_collect(adopted)) {
            if (adopted != q->first) {
                page_queue_remove(q, adopted);
                page_queue_push_front(q, adopted);
            }
            thread_heap_set_direct(h, cls, adopted);
            return page_pop(adopted);
        }
        extendable = adopted;
    }
    if (extendable != NULL) {
        bool clean = page_extend(extendable);
        if (extendable != q->first) {
            page_queue_remove(q, extendable);
            page_queue_push_front(q, extendable);
        }
        thread_heap_set_direct(h, cls, extendable);
        return brisk_likely(clean) ? page_pop(extendable) : carve_reported();
    }
    page *pg = segment_page_alloc(h, cls);
    if (pg == NULL)
        return NULL;
    bool clean = page_extend(pg);
    page_queue_push_front(q, pg);
    thread_heap_set_direct(h, cls, pg);
    return brisk_likely(clean) ? page_pop(pg) : carve_reported();
}

/* The local free that emptied a page, or freed into a page on the full
 * list. A full page goes back to its queue; an empty page is kept if it
 * is the class's current page (so a loop freeing and allocating one block
 * does not churn pages) and otherwise goes back to its segment. */
void page_free_slow(page *pg, thread_heap *h)
{
    unsigned cls = pg->size_class;
    page_queue *q = &h->queues[cls];
    if (pg->in_full) {
        page_queue_remove(&h->full[cls], pg);
        pg->in_full = 0;
        page_queue_push_back(q, pg);
        thread_heap_update_direct(h, cls);
    }
    if (pg->used == 0 && q->first != pg) {
        page_queue_remove(q, pg);
        segment_page_free(h, pg);
        thread_heap_purge_tick(h);
    }
}
