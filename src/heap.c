/*
 * The region heap's hot path: alloc, free, realloc and the free lists.
 * Layout and invariants: heap_internal.h and docs/design.md.
 *
 * Every operation here is O(1): finding a chunk looks at one class list's
 * first few entries and then at most two bitmap words; freeing merges
 * with at most two neighbours found through boundary tags. Nothing walks
 * a list or the chunks.
 */
#include "heap_internal.h"

#include <errno.h>
#include <string.h>

/* ---- free lists -------------------------------------------------------- */

static inline void class_mark_nonempty(brisk_heap *heap, size_t cls)
{
    heap->class_map[cls / 64] |= (uint64_t)1 << (cls % 64);
    heap->class_summary |= (uint64_t)1 << (cls / 64);
}

static inline void class_mark_empty(brisk_heap *heap, size_t cls)
{
    heap->class_map[cls / 64] &= ~((uint64_t)1 << (cls % 64));
    if (heap->class_map[cls / 64] == 0)
        heap->class_summary &= ~((uint64_t)1 << (cls / 64));
}

/* Adds the free chunk c (header already written) to its class list and
 * writes its footer. Allocation takes the first entry, so a chunk lower
 * than the first goes in front and a higher one right behind it: O(1),
 * and the lowest of the recently freed chunks of a class is reused first,
 * which keeps the heap's reach (high_water) down. */
static inline void bin_insert(brisk_heap *heap, heap_chunk *c, size_t size)
{
    size_t cls = size_class_of(size);
    heap_chunk *first = heap->heads[cls];
    if (first != NULL && first < c) {
        c->prev = first;
        c->next = first->next;
        if (first->next != NULL)
            first->next->prev = c;
        first->next = c;
    } else {
        c->next = first;
        c->prev = NULL;
        if (first != NULL)
            first->prev = c;
        else
            class_mark_nonempty(heap, cls);
        heap->heads[cls] = c;
    }
    *chunk_footer(c, size) = size;
    heap->binned_count++;
    heap->binned_bytes += size;
}

static inline void bin_remove(brisk_heap *heap, heap_chunk *c, size_t size)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        size_t cls = size_class_of(size);
        heap->heads[cls] = c->next;
        if (c->next == NULL)
            class_mark_empty(heap, cls);
    }
    if (c->next != NULL)
        c->next->prev = c->prev;
    heap->binned_count--;
    heap->binned_bytes -= size;
}

/* Under BRISK_HEAP_WIPE every byte of a free chunk other than its own
 * header, links and footer is zero. When a listed chunk is absorbed into
 * another free chunk its metadata words become interior bytes, so they
 * are zeroed here. */
static inline void wipe_chunk_metadata(const brisk_heap *heap, heap_chunk *c, size_t size)
{
    if (heap->flags & BRISK_HEAP_WIPE) {
        memset(c, 0, sizeof(heap_chunk));
        *chunk_footer(c, size) = 0;
    }
}

/* ---- the block map ------------------------------------------------------ */

static inline void mark_live(brisk_heap *heap, heap_chunk *c, size_t size)
{
    block_map_set(heap, chunk_granule(heap, c), BLOCK_MAP_LIVE);
    heap->used_count++;
    heap->allocated += size - CHUNK_HEADER_SIZE;
}

static inline void mark_freed(brisk_heap *heap, heap_chunk *c, size_t size)
{
    block_map_set(heap, chunk_granule(heap, c), BLOCK_MAP_FREED);
    heap->used_count--;
    heap->allocated -= size - CHUNK_HEADER_SIZE;
}

static inline void note_high_water(brisk_heap *heap, const char *chunk_end)
{
    size_t reach = (size_t)(chunk_end - heap->base);
    if (reach > heap->high_water)
        heap->high_water = reach;
}

/* Makes [r, r + size) a free chunk: the rest of a free chunk that was
 * split, so its left neighbour is live and its right neighbour already
 * has PREV_USED clear (it followed a free chunk; nothing to write there).
 * When `wild` it becomes the wilderness instead of being listed. */
static inline void place_remainder(brisk_heap *heap, heap_chunk *r, size_t size, bool wild)
{
    r->head = size | CHUNK_PREV_USED;
    if (wild)
        heap->top = (char *)r;
    else
        bin_insert(heap, r, size);
}

/* ---- allocation -------------------------------------------------------- */

/* Bytes between the free chunk c and the chunk an allocation of `need`
 * bytes aligned to `alignment` would start at inside it, or SIZE_MAX when
 * it does not fit in c's `size` bytes. The gap is 0 or at least a minimal
 * chunk (it goes back to the lists as a free chunk of its own). */
static inline size_t fit_lead(const heap_chunk *c, size_t size, size_t need, size_t alignment)
{
    size_t lead = 0;
    if (alignment > BRISK_ALIGNMENT) {
        uintptr_t payload = (uintptr_t)c + CHUNK_HEADER_SIZE;
        lead = (size_t)(-payload & (alignment - 1));
        if (lead != 0 && lead < CHUNK_MIN_SIZE) {
            if (lead > SIZE_MAX - alignment)
                return SIZE_MAX;
            lead += alignment;
        }
    }
    if (lead > size || need > size - lead)
        return SIZE_MAX;
    return lead;
}

/* Hands out the front of the free chunk c (already off its list, or the
 * wilderness when `wild`), `lead` bytes in: returns the payload. */
static void *carve(brisk_heap *heap, heap_chunk *c, size_t size, size_t need, size_t lead, bool wild)
{
    size_t prev_used = c->head & CHUNK_PREV_USED;
    if (lead != 0) {
        /* The skipped front: its left neighbour is live (no two free
         * chunks touch), so it is listed without merging. */
        c->head = lead | prev_used;
        bin_insert(heap, c, lead);
        c = chunk_at(c, lead);
        size -= lead;
        prev_used = 0;
    }
    size_t rest = size - need;
    if (rest >= CHUNK_MIN_SIZE) {
        place_remainder(heap, chunk_at(c, need), rest, wild);
        size = need;
    } else {
        chunk_at(c, size)->head |= CHUNK_PREV_USED;
        if (wild)
            heap->top = heap->end;
    }
    c->head = size | CHUNK_USED | prev_used;
    if (heap->flags & BRISK_HEAP_WIPE) {
        /* Links and footer were the only non-zero bytes (see
         * wipe_chunk_metadata). */
        memset(chunk_payload(c), 0, 2 * sizeof(void *));
        *chunk_footer(c, size) = 0;
    }
    mark_live(heap, c, size);
    note_high_water(heap, (char *)c + size);
    return chunk_payload(c);
}

/* Finds and carves a chunk of `need` bytes (a chunk size) aligned to
 * `alignment`; `search` bytes is a size every chunk of a larger class is
 * sure to fit (need, plus room for the alignment gap). NULL when nothing
 * fits. */
static void *alloc_chunk(brisk_heap *heap, size_t need, size_t search, size_t alignment)
{
    if (need < SMALL_LIMIT && alignment <= BRISK_ALIGNMENT) {
        /* The common case: an exact class with a chunk of exactly `need`
         * bytes. Unlink the first and hand it out whole; it lies below
         * the wilderness, so high_water cannot move. */
        size_t cls = size_class_of(need);
        heap_chunk *c = heap->heads[cls];
        if (brisk_likely(c != NULL)) {
            heap_chunk *next = c->next;
            heap->heads[cls] = next;
            if (next != NULL)
                next->prev = NULL;
            else
                class_mark_empty(heap, cls);
            heap->binned_count--;
            heap->binned_bytes -= need;
            c->head = need | CHUNK_USED | CHUNK_PREV_USED;
            chunk_at(c, need)->head |= CHUNK_PREV_USED;
            if (heap->flags & BRISK_HEAP_WIPE) {
                memset(chunk_payload(c), 0, 2 * sizeof(void *));
                *chunk_footer(c, need) = 0;
            }
            mark_live(heap, c, need);
            return chunk_payload(c);
        }
    }
    if (search <= heap_capacity(heap)) {
        size_t cls = size_class_of(search);
        heap_chunk *found = NULL;
        size_t found_size = 0, found_lead = 0;
        /* An unaligned request of an exact class found it empty above.
         * Otherwise the own class may hold chunks too small for the
         * request (a ranged class holds sizes on both sides of it; an
         * aligned request may need a gap): look at a few entries for the
         * tightest fit, lowest address on ties. TLSF would skip this
         * class entirely. */
        if (cls >= SMALL_CLASSES || alignment > BRISK_ALIGNMENT) {
            heap_chunk *c = heap->heads[cls];
            for (unsigned probes = 0; c != NULL && probes < RANGED_CLASS_PROBES; probes++, c = c->next) {
                size_t size = chunk_size(c);
                size_t lead = fit_lead(c, size, need, alignment);
                if (lead == SIZE_MAX)
                    continue;
                if (found == NULL || size < found_size || (size == found_size && c < found)) {
                    found = c;
                    found_size = size;
                    found_lead = lead;
                }
            }
        }
        if (found == NULL) {
            /* Every chunk of a larger class fits: the smallest such class
             * is the good fit. */
            size_t next = class_find_from(heap, cls + 1);
            if (next != CLASS_NONE) {
                found = heap->heads[next];
                found_size = chunk_size(found);
                found_lead = fit_lead(found, found_size, need, alignment);
            }
        }
        if (found != NULL) {
            bin_remove(heap, found, found_size);
            return carve(heap, found, found_size, need, found_lead, false);
        }
    }
    /* Last resort: the wilderness, so the heap's reach grows only when it
     * must. */
    size_t wild_size = heap_wild_size(heap);
    if (wild_size != 0) {
        heap_chunk *wild = (heap_chunk *)heap->top;
        size_t lead = fit_lead(wild, wild_size, need, alignment);
        if (lead != SIZE_MAX)
            return carve(heap, wild, wild_size, need, lead, true);
    }
    return NULL;
}

static void *heap_alloc_locked(brisk_heap *heap, size_t size)
{
    size_t need;
    if (!chunk_size_for_request(size, &need))
        return NULL;
    return alloc_chunk(heap, need, need, BRISK_ALIGNMENT);
}

void *brisk_heap_alloc(brisk_heap *heap, size_t size)
{
    heap_lock(heap);
    void *p = heap_alloc_locked(heap, size);
    heap_unlock(heap);
    if (brisk_unlikely(p == NULL))
        errno = ENOMEM;
    return p;
}

void *brisk_heap_calloc(brisk_heap *heap, size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    heap_lock(heap);
    void *p = heap_alloc_locked(heap, total);
    /* Read under the lock: a neighbour's free may be rewriting the
     * header's PREV_USED bit in another thread. */
    size_t usable = p != NULL ? chunk_size(chunk_of_payload(p)) - CHUNK_HEADER_SIZE : 0;
    heap_unlock(heap);
    if (p == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    /* The whole usable size, not just count * size: usable_size promises
     * those bytes to the caller, and they must not show old data. A wiped
     * heap hands out zeroed chunks already. */
    if (!(heap->flags & BRISK_HEAP_WIPE))
        memset(p, 0, usable);
    return p;
}

void *brisk_heap_alloc_aligned(brisk_heap *heap, size_t alignment, size_t size)
{
    if (!is_power_of_two(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment <= BRISK_ALIGNMENT)
        return brisk_heap_alloc(heap, size);
    size_t need;
    if (!chunk_size_for_request(size, &need) || need > SIZE_MAX - alignment - CHUNK_MIN_SIZE) {
        errno = ENOMEM;
        return NULL;
    }
    heap_lock(heap);
    void *p = alloc_chunk(heap, need, need + alignment + CHUNK_MIN_SIZE, alignment);
    heap_unlock(heap);
    if (p == NULL)
        errno = ENOMEM;
    return p;
}

/* ---- validation -------------------------------------------------------- */

typedef enum block_status {
    BLOCK_LIVE = 0,
    BLOCK_FREED,     /* was handed out and freed since */
    BLOCK_INVALID,   /* never a block start of this heap */
    BLOCK_CORRUPT    /* a live block whose tags do not add up */
} block_status;

/* Whether the free chunk c of `size` bytes, a merge candidate, is linked
 * into its list both ways: merging unlinks it, and unlinking through
 * overwritten links would write wherever they point. The lines read here
 * are the ones the unlinking writes anyway. */
static inline bool listed_chunk_linked(const brisk_heap *heap, const heap_chunk *c, size_t size)
{
    const heap_chunk *prev = c->prev, *next = c->next;
    if (prev == NULL) {
        if (heap->heads[size_class_of(size)] != c)
            return false;
    } else if ((const char *)prev < heap->base || (const char *)prev >= heap->top ||
               (uintptr_t)prev % GRANULE != CHUNK_HEADER_SIZE || prev->next != c) {
        return false;
    }
    if (next != NULL && ((const char *)next < heap->base || (const char *)next >= heap->top ||
                         (uintptr_t)next % GRANULE != CHUNK_HEADER_SIZE || next->prev != c))
        return false;
    return true;
}

/* Decides whether p is a live block of this heap without trusting any
 * byte a program could have written: the block map, kept outside the
 * chunks, says whether a live block starts there; only then are its
 * header and its neighbours' tags read, and checked against each other. */
static block_status block_validate(const brisk_heap *heap, const void *p)
{
    uintptr_t addr = (uintptr_t)p;
    uintptr_t first = (uintptr_t)heap->base + CHUNK_HEADER_SIZE;
    if (addr < first || addr >= (uintptr_t)heap->end || (addr - first) % GRANULE != 0)
        return BLOCK_INVALID;
    heap_chunk *c = chunk_of_payload(p);
    unsigned state = block_map_get(heap, chunk_granule(heap, c));
    if (state != BLOCK_MAP_LIVE)
        return state == BLOCK_MAP_FREED ? BLOCK_FREED : BLOCK_INVALID;

    size_t size = chunk_size(c);
    size_t room = (size_t)(heap->end - (char *)c);
    if (!chunk_is_used(c) || (c->head & CHUNK_UNKNOWN_FLAGS) != 0 || size < CHUNK_MIN_SIZE || size > room)
        return BLOCK_CORRUPT;
    heap_chunk *next = chunk_at(c, size);
    if (!chunk_prev_used(next))
        return BLOCK_CORRUPT;
    if ((char *)next != heap->end) {
        size_t next_size = chunk_size(next);
        if (next_size < CHUNK_MIN_SIZE || next_size > room - size)
            return BLOCK_CORRUPT;
        if (chunk_is_used(next)) {
            if (block_map_get(heap, chunk_granule(heap, next)) != BLOCK_MAP_LIVE)
                return BLOCK_CORRUPT;
        } else if ((char *)next != heap->top && !listed_chunk_linked(heap, next, next_size)) {
            return BLOCK_CORRUPT;
        }
    }
    if (!chunk_prev_used(c)) {
        size_t prev_size = *(const size_t *)((const char *)c - sizeof(size_t));
        if (prev_size < CHUNK_MIN_SIZE || prev_size % GRANULE != 0 ||
            prev_size > (size_t)((char *)c - heap->base))
            return BLOCK_CORRUPT;
        const heap_chunk *prev = (const heap_chunk *)((const char *)c - prev_size);
        if (prev->head != (prev_size | CHUNK_PREV_USED) || !listed_chunk_linked(heap, prev, prev_size))
            return BLOCK_CORRUPT;
    }
    return BLOCK_LIVE;
}

/* Which call found the bad pointer, for the message. */
typedef enum block_call { CALL_FREE, CALL_REALLOC, CALL_USABLE_SIZE } block_call;

/* Reports a failed validation of p. Fixed messages (no formatting: a
 * report may come from inside an allocator), one per call and status. */
static void report_block(block_status status, block_call call, const void *p)
{
    static const char *const freed_messages[] = {
        "double free", "realloc of a freed block", "usable_size of a freed block"};
    static const char *const invalid_messages[] = {
        "free of a pointer that is not a live block",
        "realloc of a pointer that is not a live block",
        "usable_size of a pointer that is not a live block"};
    switch (status) {
    case BLOCK_FREED:
        report_error(call == CALL_FREE ? BRISK_ERROR_DOUBLE_FREE : BRISK_ERROR_INVALID_POINTER,
                     freed_messages[call], p);
        break;
    case BLOCK_INVALID:
        report_error(BRISK_ERROR_INVALID_POINTER, invalid_messages[call], p);
        break;
    case BLOCK_CORRUPT:
        report_error(BRISK_ERROR_CORRUPTION, "heap metadata corrupted", p);
        break;
    case BLOCK_LIVE:
        break;
    }
}

/* ---- freeing ----------------------------------------------------------- */

/* Returns [c, c + size) to the heap: c's header is valid except for its
 * size and USED bit, its body held user data. Merges with free
 * neighbours, then lists the result or makes it the wilderness. */
static void release_chunk(brisk_heap *heap, heap_chunk *c, size_t size)
{
    bool wipe = (heap->flags & BRISK_HEAP_WIPE) != 0;
    if (wipe)
        memset(chunk_payload(c), 0, size - CHUNK_HEADER_SIZE);
    if (!chunk_prev_used(c)) {
        size_t prev_size = *(size_t *)((char *)c - sizeof(size_t));
        heap_chunk *prev = (heap_chunk *)((char *)c - prev_size);
        bin_remove(heap, prev, prev_size);
        if (wipe) {
            memset(chunk_payload(prev), 0, 2 * sizeof(void *));
            *chunk_footer(prev, prev_size) = 0;
            c->head = 0;
        }
        c = prev;
        size += prev_size;
    }
    heap_chunk *next = chunk_at(c, size);
    if ((char *)next == heap->top) {
        /* Merging into the wilderness (or becoming it when it is empty:
         * then next is the sentinel). */
        if (wipe && heap->top != heap->end)
            next->head = 0;
        heap->top = (char *)c;
        c->head = heap_wild_size(heap) | CHUNK_PREV_USED;
        ((heap_chunk *)heap->end)->head &= ~CHUNK_PREV_USED;
        return;
    }
    if (!chunk_is_used(next)) {
        size_t next_size = chunk_size(next);
        bin_remove(heap, next, next_size);
        wipe_chunk_metadata(heap, next, next_size);
        size += next_size;
        next = chunk_at(c, size);
    }
    c->head = size | CHUNK_PREV_USED;
    next->head &= ~CHUNK_PREV_USED;
    bin_insert(heap, c, size);
}

void brisk_heap_free(brisk_heap *heap, void *ptr)
{
    if (ptr == NULL)
        return;
    heap_lock(heap);
    block_status status = block_validate(heap, ptr);
    if (brisk_likely(status == BLOCK_LIVE)) {
        heap_chunk *c = chunk_of_payload(ptr);
        size_t size = chunk_size(c);
        mark_freed(heap, c, size);
        release_chunk(heap, c, size);
    }
    heap_unlock(heap);
    if (status != BLOCK_LIVE)
        report_block(status, CALL_FREE, ptr);
}

size_t brisk_heap_usable_size(const brisk_heap *heap, const void *ptr)
{
    if (ptr == NULL)
        return 0;
    heap_lock(heap);
    block_status status = block_validate(heap, ptr);
    size_t usable = status == BLOCK_LIVE ? chunk_size(chunk_of_payload(ptr)) - CHUNK_HEADER_SIZE : 0;
    heap_unlock(heap);
    if (status != BLOCK_LIVE)
        report_block(status, CALL_USABLE_SIZE, ptr);
    return usable;
}

/* ---- realloc ----------------------------------------------------------- */

/* Cuts the live chunk c (of `size` bytes) down to `need` bytes when the
 * rest can be a chunk of its own, and frees the rest. */
static void shrink_live_chunk(brisk_heap *heap, heap_chunk *c, size_t size, size_t need)
{
    size_t rest = size - need;
    if (rest < CHUNK_MIN_SIZE)
        return;
    c->head = need | (c->head & CHUNK_FLAGS);
    heap->allocated -= rest;
    heap_chunk *tail = chunk_at(c, need);
    tail->head = rest | CHUNK_PREV_USED;
    release_chunk(heap, tail, rest);
}

/* Tries to resize the live block at ptr without moving it, or by sliding
 * it down into a free left neighbour. Returns the new payload or NULL. */
static void *resize_in_place(brisk_heap *heap, void *ptr, size_t need, size_t keep)
{
    heap_chunk *c = chunk_of_payload(ptr);
    size_t size = chunk_size(c);
    if (need <= size) {
        shrink_live_chunk(heap, c, size, need);
        return ptr;
    }
    heap_chunk *next = chunk_at(c, size);
    bool next_is_wild = (char *)next == heap->top && heap->top != heap->end;
    size_t next_free = 0;
    if (next_is_wild)
        next_free = heap_wild_size(heap);
    else if ((char *)next != heap->end && !chunk_is_used(next))
        next_free = chunk_size(next);

    if (next_free != 0 && next_free >= need - size) {
        /* Grow into the right neighbour. */
        size_t rest = size + next_free - need;
        if (next_is_wild) {
            if (heap->flags & BRISK_HEAP_WIPE)
                next->head = 0;
        } else {
            bin_remove(heap, next, next_free);
            wipe_chunk_metadata(heap, next, next_free);
        }
        size_t grown = need;
        if (rest >= CHUNK_MIN_SIZE) {
            place_remainder(heap, chunk_at(c, need), rest, next_is_wild);
        } else {
            grown = size + next_free;
            chunk_at(c, grown)->head |= CHUNK_PREV_USED;
            if (next_is_wild)
                heap->top = heap->end;
        }
        c->head = grown | (c->head & CHUNK_FLAGS);
        heap->allocated += grown - size;
        note_high_water(heap, (char *)c + grown);
        return ptr;
    }

    if (!chunk_prev_used(c)) {
        /* Slide down into the free left neighbour (with a listed right
         * neighbour too if needed): the block moves, but to lower
         * addresses, and no other chunk is needed. TLSF moves such a block
         * elsewhere and leaves the hole behind. */
        size_t prev_size = *(size_t *)((char *)c - sizeof(size_t));
        size_t right = next_is_wild ? 0 : next_free;
        if (prev_size + size + right >= need) {
            heap_chunk *prev = (heap_chunk *)((char *)c - prev_size);
            bin_remove(heap, prev, prev_size);
            if (right != 0)
                bin_remove(heap, next, right);
            mark_freed(heap, c, size);
            size_t total = prev_size + size + right;
            prev->head = total | CHUNK_USED | (prev->head & CHUNK_PREV_USED);
            chunk_at(prev, total)->head |= CHUNK_PREV_USED;
            memmove(chunk_payload(prev), ptr, keep);
            mark_live(heap, prev, total);
            shrink_live_chunk(heap, prev, total, need);
            return chunk_payload(prev);
        }
    }
    return NULL;
}

void *brisk_heap_realloc(brisk_heap *heap, void *ptr, size_t size)
{
    if (ptr == NULL)
        return brisk_heap_alloc(heap, size);
    if (size == 0) {
        brisk_heap_free(heap, ptr);
        return NULL;
    }
    heap_lock(heap);
    block_status status = block_validate(heap, ptr);
    if (status != BLOCK_LIVE) {
        heap_unlock(heap);
        report_block(status, CALL_REALLOC, ptr);
        return NULL;
    }
    size_t need;
    if (!chunk_size_for_request(size, &need)) {
        heap_unlock(heap);
        errno = ENOMEM;
        return NULL;
    }
    heap_chunk *c = chunk_of_payload(ptr);
    size_t usable = chunk_size(c) - CHUNK_HEADER_SIZE;
    size_t keep = usable < size ? usable : size;
    void *result = resize_in_place(heap, ptr, need, keep);
    if (result == NULL) {
        result = alloc_chunk(heap, need, need, BRISK_ALIGNMENT);
        if (result != NULL) {
            memcpy(result, ptr, keep);
            size_t old_size = chunk_size(c);
            mark_freed(heap, c, old_size);
            release_chunk(heap, c, old_size);
        }
    }
    heap_unlock(heap);
    if (result == NULL)
        errno = ENOMEM;
    return result;
}
