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
 *     most one list, and every listed block a carved block start whose
 *     state bits say free; every other carved block's say live
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
        b = next;
    }
    ((block *)b)->next_encoded = list_encode(pg, (block *)b, pg->free);
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

/* Appends list (linked with the page's encoding) to *dest; walks *dest to
 * its tail only when both are non-empty. The walk reads links a write
 * after free may have changed: it stops only at a NULL link, and a link
 * that does not decode to a block of the page (or a list longer than the
 * page) is reported and nothing is written, so a forged link can neither
 * make it write into a live block nor splice a live block into a list. */
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
        if (count > pg->used) {
            /* A block freed twice (by the owner and another thread at
             * once: block_free_owner) made the count one too low. The
             * list taken is not believed, nor are the page's others. */
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

/* Every carved block of pg live by its bits but those whose bit is set in
 * `keep` (by block index; NULL: none). Blocks other threads freed keep
 * their remote bits, and read as freed when popped. */
void page_mark_live_unless(page *pg, const uint64_t *keep)
{
    page_bits *bits = page_bits_of(pg);
    for (uint32_t w = 0; w * 64 < pg->capacity; w++) {
        uint32_t in_word = pg->capacity - w * 64;
        uint64_t carved = in_word >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << in_word) - 1;
        uint64_t live = __atomic_load_n(&bits->live[w], __ATOMIC_RELAXED);
        uint64_t kept = keep != NULL ? keep[w] : 0;
        __atomic_store_n(&bits->live[w], (live & kept) | (carved & ~kept), __ATOMIC_RELAXED);
    }
}

void page_give_up_lists(page *pg)
{
    pg->free = pg->local_free = NULL;
    page_mark_live_unless(pg, NULL);
    pg->used = pg->capacity;
}

/* The pop of b, the head of pg's free list, whose link or state bits the
 * fast test refused. A block another thread freed (live and remote bits
 * both set) is free: its remote bit is taken back (other threads set
 * theirs in the same word: an atomic) and it is handed out. A block with
 * its remote bit alone was freed by its owner and by another thread at
 * the same moment (block_free_owner): on two lists, it is reported as the
 * double free it is. Anything else means the list points somewhere no
 * free block can be: a link written after free, or forged to name a live
 * block. Either way the page gives up its lists (page_give_up_lists), and
 * b is not handed out. */
void *page_pop_checked(page *pg, block *b)
{
    block *next = list_decode(pg, b, b->next_encoded);
    page_bits *bits = page_bits_of(pg);
    block_bit at = block_bit_of(pg, b);
    uint64_t live = __atomic_load_n(&bits->live[at.word], __ATOMIC_RELAXED);
    uint64_t remote = __atomic_load_n(&bits->remote[at.word], __ATOMIC_RELAXED);
    if ((next == NULL || page_link_in_range(pg, (uintptr_t)next - pg->start)) && at.start &&
        (live & remote & at.mask) != 0) {
        __atomic_fetch_and(&bits->remote[at.word], ~at.mask, __ATOMIC_RELAXED);
        pg->free = next;
        b->next_encoded = 0;
        pg->used++;
        return b;
    }
    if (at.start && (remote & ~live & at.mask) != 0)
        report_error(BRISK_ERROR_DOUBLE_FREE,
                     "double free (by two threads at once, found when the block was about to be reused)", b);
    else
        report_error(BRISK_ERROR_CORRUPTION, "free list corrupted (a freed block was written to)", b);
    page_give_up_lists(pg);
    errno = ENOMEM;
    return NULL;
}

uintptr_t page_first_unfree(const page *pg)
{
    const page_bits *bits = page_bits_of(pg);
    uint32_t words = (pg->capacity + 63) / 64;
    for (uint32_t w = 0; w < words; w++) {
        uint64_t live = __atomic_load_n(&bits->live[w], __ATOMIC_RELAXED);
        uint64_t remote = __atomic_load_n(&bits->remote[w], __ATOMIC_RELAXED);
        if (live != remote) {
            uint32_t index = w * 64 + (uint32_t)__builtin_ctzll(live ^ remote);
            return pg->start + (uintptr_t)index * pg->block_size;
        }
    }
    return 0;
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
