/*
 * The region heap's cold side: the self-check (the one function that
 * checks every structural invariant), the chunk walk and the statistics.
 *
 * The invariants, numbered as in docs/design.md:
 *
 *   1. Geometry: base and end are 8 mod 16, base < end, top lies in
 *      [base, end] and is 8 mod 16, high_water <= capacity.
 *   2. Chunks tile [base, end) exactly: walking from base by each chunk's
 *      size lands on end, and no chunk runs past it.
 *   3. Every chunk's size is a multiple of 16 and at least 32: the header's
 *      bits 2 and 3 (below 16, not flags) are clear.
 *   4. Every chunk's PREV_USED bit (and the sentinel's) equals the USED
 *      bit of the chunk before it; the first chunk's is set; the sentinel
 *      is marked USED.
 *   5. No two free chunks are adjacent.
 *   6. The wilderness: the free chunk ending at end starts at top, and
 *      top == end exactly when the last chunk is used.
 *   7. Every listed free chunk's footer equals its size.
 *   8. Every free chunk but the wilderness is in exactly one list, the
 *      one of its size class, and the lists are well linked (first
 *      entry's prev is NULL, next->prev == self); no list holds anything
 *      else (entries are counted and their addresses summed against the
 *      chunk walk).
 *   9. The class bitmap has bit c set exactly when list c is non-empty,
 *      and the summary word has bit w set exactly when word w is
 *      non-zero; no class at or above class_count is used.
 *  10. The block map marks exactly the chunk starts but the
 *      wilderness's: LIVE at the used chunks, FREED at the listed free
 *      chunks, and nothing else (inside chunks, at and past top); no
 *      granule is both LIVE and FREED (that is DEFERRED, which only a
 *      heap with BRISK_HEAP_DEFER_MERGE has: see 15).
 *  11. The counters (used chunks, listed chunks and bytes) agree with a
 *      recount, and so does the allocated-bytes figure derived from them
 *      (heap_allocated).
 *  12. high_water reaches at least the end of every used chunk.
 *  (13 and 14 belong to the hardening flags; see below.)
 *  15. Deferred blocks (BRISK_HEAP_DEFER_MERGE): every used chunk marked
 *      DEFERRED in the block map is in the deferred stack of its exact
 *      class, once, and those stacks hold nothing else, at most
 *      DEFER_PER_CLASS entries each; the totals agree; a heap without the
 *      flag has none.
 *  16. The fence in the 8 bytes below the first chunk holds the heap's
 *      fence value (heap/heap.h): checked first, since an underflow that
 *      broke it may have reached the rest of the bookkeeping.
 */
#include "heap/heap.h"

#include <string.h>

/* Writes "brisk_heap_check: invariant <n>: <what> (at <address>)". */
static int heap_check_fail(unsigned invariant, const char *what, const void *where)
{
    return check_report("brisk_heap_check", invariant, what, where);
}

/* Whether p could be a listed chunk: inside [base, top) on a chunk
 * boundary. The check follows list links only after this holds, so
 * damaged links are reported, never dereferenced. */
static bool chunk_address_plausible(const brisk_heap *heap, const void *p)
{
    const char *c = p;
    return c >= heap->base && c < heap->top && ((uintptr_t)c % GRANULE) == CHUNK_HEADER_SIZE;
}

static int check_locked(const brisk_heap *heap)
{
    const char *base = heap->base, *end = heap->end, *top = heap->top;
    /* 16, before anything the bookkeeping says is followed. */
    if (!heap_fence_intact(heap))
        return heap_check_fail(16, "the fence below the first chunk was overwritten (an underflow)",
                               base - CHUNK_HEADER_SIZE);
    /* 1 */
    if (((uintptr_t)base % GRANULE) != CHUNK_HEADER_SIZE || ((uintptr_t)end % GRANULE) != CHUNK_HEADER_SIZE ||
        base >= end)
        return heap_check_fail(1, "region bounds misaligned or empty", base);
    if (top < base || top > end || ((uintptr_t)top % GRANULE) != CHUNK_HEADER_SIZE)
        return heap_check_fail(1, "wilderness start outside the region", top);
    if (heap->high_water > heap_capacity(heap))
        return heap_check_fail(1, "high_water beyond the capacity", base);
    size_t exact_max = heap->class_count >= SMALL_CLASSES
                           ? EXACT_REQUEST_MAX
                           : chunk_class_floor(heap->class_count - 1) - CHUNK_HEADER_SIZE;
    if (heap->class_count != chunk_class_of(heap_capacity(heap)) + 1 ||
        heap->granule_count != heap_capacity(heap) / GRANULE || heap->exact_request_max != exact_max)
        return heap_check_fail(1, "class or granule count inconsistent", base);

    /* 2-7, 10-12, 15: walk the chunks. */
    size_t used = 0, allocated = 0, listed = 0, listed_bytes = 0;
    size_t deferred = 0, deferred_bytes = 0;
    uintptr_t listed_sum = 0, deferred_sum = 0;
    bool prev_used = true;
    const char *last_used_end = base;
    const heap_chunk *c = (const heap_chunk *)base;
    while ((const char *)c < end) {
        size_t size = chunk_size(c);
        size_t room = (size_t)(end - (const char *)c);
        if ((c->head & CHUNK_UNKNOWN_FLAGS) != 0 || size < CHUNK_MIN_SIZE)
            return heap_check_fail(3, "chunk size not a multiple of 16 of at least 32", c);
        if (size > room)
            return heap_check_fail(2, "chunk runs past the region's end", c);
        if (chunk_prev_used(c) != prev_used)
            return heap_check_fail(4, "PREV_USED bit disagrees with the previous chunk", c);
        size_t g = chunk_granule(heap, c);
        unsigned state = block_map_get(heap, g);
        bool live = state == BLOCK_MAP_LIVE;
        if (chunk_is_used(c) && state == BLOCK_MAP_DEFERRED) {
            if (!(heap->flags & BRISK_HEAP_DEFER_MERGE))
                return heap_check_fail(10, "granule both live and freed", c);
            if (size >= SMALL_LIMIT)
                return heap_check_fail(15, "deferred block too large to be deferred", c);
            deferred++;
            deferred_bytes += size;
            deferred_sum += (uintptr_t)c;
            last_used_end = (const char *)c + size;
            prev_used = true;
        } else if (chunk_is_used(c)) {
            if (!live)
                return heap_check_fail(10, "used chunk not LIVE in the block map", c);
            if ((heap->flags & BRISK_HEAP_CANARY) && !heap_canary_intact(heap, c))
                return heap_check_fail(13, "live block's canary overwritten (buffer overflow)", c);
            used++;
            allocated += chunk_usable(heap, size);
            last_used_end = (const char *)c + size;
            prev_used = true;
        } else {
            if (!prev_used)
                return heap_check_fail(5, "two free chunks are adjacent", c);
            if (state & BLOCK_MAP_LIVE)
                return heap_check_fail(10, "free chunk LIVE in the block map", c);
            bool ends_region = size == room;
            if (ends_region != ((const char *)c == top))
                return heap_check_fail(6, "the chunk at the region's end and the wilderness disagree", c);
            if (state != (ends_region ? 0u : BLOCK_MAP_FREED))
                return heap_check_fail(10, ends_region ? "the wilderness is marked in the block map"
                                                       : "listed free chunk not FREED in the block map",
                                       c);
            if (!ends_region) {
                if (*chunk_footer((heap_chunk *)(uintptr_t)c, size) != size)
                    return heap_check_fail(7, "free chunk's footer differs from its size", c);
                /* 8: linked into the list of its class. */
                size_t cls = chunk_class_of(size);
                if (cls >= heap->class_count)
                    return heap_check_fail(8, "free chunk's class beyond the heap's classes", c);
                if ((c->prev != NULL && !chunk_address_plausible(heap, c->prev)) ||
                    (c->next != NULL && !chunk_address_plausible(heap, c->next)))
                    return heap_check_fail(8, "free chunk's list link points outside the chunks", c);
                if (c->prev == NULL ? heap->heads[cls] != c : c->prev->next != c)
                    return heap_check_fail(8, "free chunk not linked from its class list", c);
                if (c->next != NULL && c->next->prev != c)
                    return heap_check_fail(8, "free chunk's next does not link back", c);
                /* 14: a wiped free chunk is zero but for its metadata. */
                if ((heap->flags & BRISK_HEAP_WIPE_CHECK) &&
                    heap_wipe_first_dirty(heap, (const char *)c + sizeof(heap_chunk),
                                          size - sizeof(heap_chunk) - sizeof(size_t)) != NULL)
                    return heap_check_fail(14, "freed memory written after free (not wiped)", c);
                listed++;
                listed_bytes += size;
                listed_sum += (uintptr_t)c;
            }
            prev_used = false;
        }
        c = chunk_at(c, size);
    }
    if ((const char *)c != end)
        return heap_check_fail(2, "chunks do not end at the region's end", c);
    const heap_chunk *sentinel = (const heap_chunk *)end;
    if (!chunk_is_used(sentinel) || chunk_prev_used(sentinel) != prev_used)
        return heap_check_fail(4, "sentinel's bits disagree with the last chunk", end);
    if (prev_used != (top == end))
        return heap_check_fail(6, "wilderness empty but the last chunk is free", top);

    /* 8, 9: the lists themselves. */
    size_t seen = 0, seen_bytes = 0;
    uintptr_t seen_sum = 0;
    for (size_t cls = 0; cls < CLASS_COUNT_MAX; cls++) {
        bool bit = (heap->class_map[cls / 64] >> (cls % 64)) & 1u;
        const heap_chunk *first = cls < heap->class_count ? heap->heads[cls] : NULL;
        if (bit != (first != NULL))
            return heap_check_fail(9, "class bit disagrees with its list", first);
        for (const heap_chunk *e = first; e != NULL; e = e->next) {
            if (seen++ >= listed)
                return heap_check_fail(8, "lists hold more entries than there are free chunks", e);
            if (!chunk_address_plausible(heap, e))
                return heap_check_fail(8, "list entry outside the chunks", e);
            if (e == first && first->prev != NULL)
                return heap_check_fail(8, "list's first entry has a prev link", first);
            if (chunk_is_used(e) || chunk_class_of(chunk_size(e)) != cls)
                return heap_check_fail(8, "list entry is used or in the wrong class", e);
            seen_bytes += chunk_size(e);
            seen_sum += (uintptr_t)e;
        }
    }
    if (seen != listed || seen_sum != listed_sum || seen_bytes != listed_bytes)
        return heap_check_fail(8, "lists and free chunks differ", base);
    for (size_t word = 0; word < CLASS_WORDS; word++) {
        bool bit = (heap->class_summary >> word) & 1u;
        if (bit != (heap->class_map[word] != 0))
            return heap_check_fail(9, "summary bit disagrees with its class word", base);
    }
    if (heap->class_summary >> CLASS_WORDS != 0)
        return heap_check_fail(9, "summary bit beyond the class words", base);

    /* 15: the deferred stacks. */
    size_t deferred_seen = 0, deferred_seen_bytes = 0;
    uintptr_t deferred_seen_sum = 0;
    size_t deferring_classes = (heap->flags & BRISK_HEAP_DEFER_MERGE) ? SMALL_CLASSES : 0;
    for (size_t cls = 0; cls < deferring_classes; cls++) {
        size_t size = chunk_class_floor(cls);
        size_t count = heap_deferred_counts(heap)[cls];
        heap_chunk *const *slots = heap_deferred_slots(heap, cls);
        if (count > DEFER_PER_CLASS)
            return heap_check_fail(15, "deferred count above the per-class limit", slots);
        for (size_t i = 0; i < count; i++) {
            const heap_chunk *e = slots[i];
            if (!chunk_address_plausible(heap, e) ||
                block_map_get(heap, chunk_granule(heap, e)) != BLOCK_MAP_DEFERRED)
                return heap_check_fail(15, "deferred slot not a deferred block", e);
            if (chunk_size(e) != size)
                return heap_check_fail(15, "deferred block in the wrong class", e);
            deferred_seen++;
            deferred_seen_bytes += size;
            deferred_seen_sum += (uintptr_t)e;
        }
    }
    if (deferred_seen != deferred || deferred_seen_sum != deferred_sum || deferred_seen_bytes != deferred_bytes)
        return heap_check_fail(15, "deferred stacks and deferred blocks differ", base);
    size_t counted_bytes;
    if (deferred != heap_deferred(heap, &counted_bytes) || deferred_bytes != counted_bytes)
        return heap_check_fail(15, "deferred counts differ from a recount", base);

    /* 10, 15: as many LIVE granules as used chunks, and as many DEFERRED
     * (both bits) as deferred blocks. */
    size_t words = (heap->granule_count + BLOCK_MAP_PER_WORD - 1) / BLOCK_MAP_PER_WORD;
    size_t live_bits = 0, deferred_bits = 0, freed_bits = 0;
    for (size_t w = 0; w < words; w++) {
        uint64_t word = heap->block_map[w];
        if (word == 0)
            continue; /* most of a large heap's map */
        uint64_t both = word & (word >> 1) & BLOCK_MAP_LIVE_MASK;
        live_bits += (size_t)__builtin_popcountll(word & ~(word >> 1) & BLOCK_MAP_LIVE_MASK);
        freed_bits += (size_t)__builtin_popcountll((word >> 1) & ~word & BLOCK_MAP_LIVE_MASK);
        deferred_bits += (size_t)__builtin_popcountll(both);
    }
    if (live_bits != used)
        return heap_check_fail(10, "block map marks LIVE a granule that is not a used chunk", base);
    /* Every listed chunk was seen FREED in the walk: as many FREED
     * granules as listed chunks leaves none elsewhere. */
    if (freed_bits != listed)
        return heap_check_fail(10, "block map marks FREED a granule that is not a listed free chunk", base);
    if (deferred_bits != 0 && !(heap->flags & BRISK_HEAP_DEFER_MERGE))
        return heap_check_fail(10, "granule both live and freed", base);
    if (deferred_bits != deferred)
        return heap_check_fail(15, "block map marks DEFERRED a granule that is not a deferred block", base);

    /* 11 */
    if (used + deferred != heap->used_count || allocated != heap_allocated(heap))
        return heap_check_fail(11, "used-chunk counters differ from a recount", base);
    if (listed != heap->binned_count || listed_bytes != heap->binned_bytes)
        return heap_check_fail(11, "free-chunk counters differ from a recount", base);

    /* 12 */
    if ((size_t)(last_used_end - base) > heap->high_water)
        return heap_check_fail(12, "a used chunk lies beyond high_water", last_used_end);
    return 0;
}

int brisk_heap_check(const brisk_heap *heap)
{
    if (heap == NULL)
        return heap_check_fail(1, "no heap", NULL);
    heap_lock(heap);
    int result = check_locked(heap);
    heap_unlock(heap);
    return result;
}

int brisk_heap_walk(const brisk_heap *heap, brisk_heap_visitor visitor, void *context)
{
    heap_lock(heap);
    int result = 0;
    const heap_chunk *c = (const heap_chunk *)heap->base;
    while ((const char *)c < heap->end) {
        brisk_heap_chunk info;
        memset(&info, 0, sizeof info); /* no stale padding: callers may memcmp */
        info.address = c;
        info.size = chunk_size(c);
        /* A deferred block is free to the caller (its header still says
         * used, to keep its neighbours from merging with it). */
        info.used = chunk_is_used(c) && block_map_get(heap, chunk_granule(heap, c)) != BLOCK_MAP_DEFERRED;
        info.payload = info.used ? (const char *)c + CHUNK_HEADER_SIZE : NULL;
        info.usable = info.used ? chunk_usable(heap, info.size) : 0;
        if (info.size < CHUNK_MIN_SIZE || info.size > (size_t)(heap->end - (const char *)c))
            break; /* a corrupted size: stop rather than leave the region
                      (brisk_heap_check says what is wrong) */
        result = visitor(&info, context);
        if (result != 0)
            break;
        c = chunk_at(c, info.size);
    }
    heap_unlock(heap);
    return result;
}

void brisk_heap_get_stats(const brisk_heap *heap, brisk_heap_stats *out)
{
    heap_lock(heap);
    size_t wild = heap_wild_size(heap);
    out->capacity = heap_capacity(heap);
    out->allocated = heap_allocated(heap);
    size_t deferred_bytes, deferred = heap_deferred(heap, &deferred_bytes);
    out->free_bytes = heap->binned_bytes + deferred_bytes + wild;
    out->high_water = heap->high_water;
    out->used_chunks = heap->used_count - deferred;
    out->free_chunks = heap->binned_count + deferred + (wild != 0);

    /* Exactly what alloc would find: the wilderness, any chunk of a class
     * below the highest non-empty one, and in the highest the entries an
     * alloc looks at. */
    size_t largest = wild;
    size_t cls = class_find_highest(heap);
    if (cls != CLASS_NONE) {
        const heap_chunk *c = heap->heads[cls];
        unsigned probes = cls < SMALL_CLASSES ? 1 : RANGED_CLASS_PROBES;
        /* Damaged entries end the look rather than being followed: the
         * next alloc reports them, and statistics must not crash first. */
        for (unsigned i = 0; c != NULL && i < probes && chunk_address_plausible(heap, c) &&
                             !chunk_is_used(c) && chunk_size(c) <= (size_t)(heap->top - (const char *)c);
             i++, c = c->next) {
            if (chunk_size(c) > largest)
                largest = chunk_size(c);
        }
    }
    out->largest_free = largest >= CHUNK_MIN_SIZE ? chunk_usable(heap, largest) : 0;
    heap_unlock(heap);
}
