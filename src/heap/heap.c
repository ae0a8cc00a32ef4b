/*
 * The region heap's hot path: alloc, free, realloc and the free lists.
 * Layout and invariants: heap/heap.h and docs/design.md.
 *
 * Every operation here is O(1) in the number of chunks: finding a chunk
 * looks at one class list's first few entries and then at most two
 * bitmap words; freeing merges with at most two neighbours found through
 * boundary tags. Nothing walks a list or the chunks. What a header says
 * about a chunk's extent is checked against the block map, one word per
 * 512 bytes of the span (of the block freed, of what an alloc hands
 * out).
 */
#include "heap/heap.h"

#include <errno.h>
#include <string.h>

/* ---- free lists -------------------------------------------------------- */

static inline void class_mark_nonempty(brisk_heap *heap, size_t cls)
{
    /* The summary changes only when the word was empty (rarely: word 0
     * holds all the exact classes). */
    uint64_t word = heap->class_map[cls / 64];
    heap->class_map[cls / 64] = word | (uint64_t)1 << (cls % 64);
    if (word == 0)
        heap->class_summary |= (uint64_t)1 << (cls / 64);
}

static inline void class_mark_empty(brisk_heap *heap, size_t cls)
{
    heap->class_map[cls / 64] &= ~((uint64_t)1 << (cls % 64));
    if (heap->class_map[cls / 64] == 0)
        heap->class_summary &= ~((uint64_t)1 << (cls / 64));
}

/* Free-list protection (always on): a free chunk's links live in its
 * payload, where a write after free can reach them, and unlinking through
 * forged links writes wherever they point. So a listed chunk is checked
 * against what its list claims before it is taken off or linked next to:
 * inside the heap below the wilderness, where the block map says a
 * listed chunk starts, free (no unknown header bits), of a size in its
 * class, with a matching footer, and with links that point back at it
 * (safe unlinking). */
BRISK_INLINE bool heap_holds_chunk(const brisk_heap *heap, const heap_chunk *c)
{
    /* One compare covers both bounds: below base wraps to a huge offset. */
    size_t offset = (size_t)((uintptr_t)c - (uintptr_t)heap->base);
    return offset < (size_t)(heap->top - heap->base) && offset % GRANULE == 0;
}

/* Whether a link (read from a free chunk, so possibly forged) names a
 * listed chunk: inside the heap below the wilderness, and FREED in the
 * block map. A fake chunk written inside a live block, back pointer and
 * all, is not: its granule is 0. */
BRISK_INLINE bool link_target_sound(const brisk_heap *heap, const heap_chunk *t)
{
    return heap_holds_chunk(heap, t) && block_map_get(heap, chunk_granule(heap, t)) == BLOCK_MAP_FREED;
}

/* block_map_span_clear out of line: the long spans (what an alloc hands
 * out or splits off, 96 granules or more: past block_map_extent3_is),
 * kept off the fast paths' registers. */
static BRISK_NOINLINE bool span_clear_far(const brisk_heap *heap, size_t from, size_t to)
{
    return block_map_span_clear(heap, from, to);
}

/* Whether the block map says a listed chunk of exactly n granules
 * (n < 64: every exact class) starts at granule g, to be handed out
 * whole: FREED there, nothing inside, a used chunk's LIVE bit at g + n
 * (a listed chunk's right neighbour is always in use). One window for a
 * chunk under 512 bytes, two up to 1008. The map's spare word makes
 * reading granule g + n safe even at the region's end (the sentinel
 * reads 0: refused). */
BRISK_INLINE bool exact_extent_sound(const brisk_heap *heap, size_t g, size_t n)
{
    uint64_t low = block_map_window(heap, g);
    if (brisk_likely(n < BLOCK_MAP_PER_WORD)) {
        uint64_t next_live = (uint64_t)BLOCK_MAP_LIVE << (2 * n);
        return (low & (block_map_window_mask(n) | next_live)) == (BLOCK_MAP_FREED | next_live);
    }
    uint64_t next;
    return block_map_extent_is(heap, g, low, n, BLOCK_MAP_FREED, &next) &&
           (block_map_next_state(next, n) & BLOCK_MAP_LIVE) != 0;
}

/* Whether handing out the first `front` bytes of the listed chunk c, of
 * `size` bytes by its header (c + size within top, checked), is safe by
 * the block map: a listed chunk starts at c, and no chunk starts inside
 * what is handed out, nor where the rest would begin (front < size: the
 * rest goes back to the lists as a chunk of its own). Handed out whole
 * (front == size), the chunk must end where a used chunk starts, as a
 * listed chunk's right neighbour always is. The rest's own extent is
 * checked in turn when it is handed out or merged: no chunk is ever
 * handed out over a granule the map marks. */
BRISK_INLINE bool listed_front_sound(const brisk_heap *heap, const heap_chunk *c, size_t size, size_t front)
{
    size_t g = chunk_granule(heap, c);
    if (front >= size) {
        /* Handed out whole: exact_extent_sound, or for a chunk of 64
         * granules or more the same three facts, in three windows below
         * 96 granules and by word past that. */
        size_t n = size / GRANULE;
        if (brisk_likely(n < 2 * BLOCK_MAP_PER_WORD))
            return exact_extent_sound(heap, g, n);
        uint64_t next;
        if (n < 3 * BLOCK_MAP_PER_WORD)
            return block_map_extent3_is(heap, g, n, BLOCK_MAP_FREED, &next) &&
                   (block_map_next_state(next, n) & BLOCK_MAP_LIVE) != 0;
        return block_map_get(heap, g) == BLOCK_MAP_FREED && span_clear_far(heap, g + 1, g + n) &&
               (block_map_get(heap, g + n) & BLOCK_MAP_LIVE) != 0;
    }
    /* Split: FREED at g and nothing in g + 1 .. g + n - 1 (the last the
     * rest's start): a run of n granules. */
    size_t n = front / GRANULE + 1;
    if (brisk_likely(n <= 2 * BLOCK_MAP_PER_WORD))
        return block_map_run_is(heap, g, n, BLOCK_MAP_FREED);
    uint64_t unused;
    if (n < 3 * BLOCK_MAP_PER_WORD)
        return block_map_extent3_is(heap, g, n, BLOCK_MAP_FREED, &unused);
    return block_map_get(heap, g) == BLOCK_MAP_FREED && span_clear_far(heap, g + 1, g + n);
}

/* c, a free chunk of `size` bytes, is listed: its links must point back
 * at it, and a chunk without a prev must be its list's first entry. Its
 * class is only worked out then. The one links check of a listed chunk,
 * whether a list led to it or a merge found it as a neighbour. */
BRISK_INLINE bool free_links_intact(const brisk_heap *heap, const heap_chunk *c, size_t size)
{
    const heap_chunk *next = c->next, *prev = c->prev;
    if (next != NULL && (!link_target_sound(heap, next) || next->prev != c))
        return false;
    if (prev == NULL)
        return heap->heads[chunk_class_of(size)] == c;
    return link_target_sound(heap, prev) && prev->next == c;
}

/* Whether next, whose header reads free (USED clear) and `next_size`
 * bytes (inside the region: checked by the caller), is the listed chunk
 * it claims to be and not the wilderness: FREED in the block map (which
 * no write into the chunks reaches), then a footer that agrees and links
 * that point back at it. A footer and links alone can be forged inside a
 * live block. What a free, a deferral and the validation believe before
 * they take a free right neighbour's size. */
BRISK_INLINE bool next_listed_sound(const brisk_heap *heap, const heap_chunk *next, size_t next_size)
{
    return block_map_get(heap, chunk_granule(heap, next)) == BLOCK_MAP_FREED &&
           *chunk_footer((heap_chunk *)(uintptr_t)next, next_size) == next_size &&
           free_links_intact(heap, next, next_size);
}

/* The first half of the whole check of a list entry c that class cls's
 * list led to, all that walking a list needs before it reads an entry's
 * size and next link: inside the heap below the wilderness, on a chunk
 * boundary, and a header that reads `size | PREV_USED` for a size of the
 * class (a listed chunk's left neighbour is always in use), which rules
 * out a used chunk and damaged flag bits. */
BRISK_INLINE bool listed_entry_plausible(const brisk_heap *heap, const heap_chunk *c, size_t floor,
                                         size_t ceiling)
{
    if (!heap_holds_chunk(heap, c))
        return false;
    size_t head = c->head, size = head & ~CHUNK_FLAGS;
    /* [floor, ceiling): the sizes of the class. */
    return (head & CHUNK_FLAGS) == CHUNK_PREV_USED && size <= (size_t)(heap->top - (const char *)c) &&
           size >= floor && size < ceiling;
}

/* The second half, for the entry chosen once listed_entry_plausible said
 * yes (so `size`, its header's, is of its class and within top): a
 * footer that agrees and links that point back at it. */
BRISK_INLINE bool listed_entry_sound(const brisk_heap *heap, const heap_chunk *c, size_t size)
{
    return *chunk_footer((heap_chunk *)(uintptr_t)c, size) == size && free_links_intact(heap, c, size);
}

/* Both halves of the whole check for the first entry of a list, which
 * heads[] led to: it must have no prev. For an exact class the caller passes the class's
 * chunk size and the header must read exactly `exact | PREV_USED`; for a
 * ranged class `exact` is 0 and the size must fall in class cls. */
BRISK_INLINE bool list_head_sound(const brisk_heap *heap, const heap_chunk *c, size_t cls, size_t exact)
{
    size_t offset = (size_t)((uintptr_t)c - (uintptr_t)heap->base);
    size_t reach = (size_t)(heap->top - heap->base);
    if (offset >= reach || offset % GRANULE != 0)
        return false;
    size_t head = c->head, size = head & ~CHUNK_FLAGS;
    if (exact != 0) {
        if (head != (exact | CHUNK_PREV_USED))
            return false;
    } else if ((head & CHUNK_FLAGS) != CHUNK_PREV_USED || size < SMALL_LIMIT || chunk_class_of(size) != cls) {
        return false;
    }
    if (size > reach - offset || *chunk_footer((heap_chunk *)(uintptr_t)c, size) != size ||
        c->prev != NULL)
        return false;
    const heap_chunk *next = c->next;
    return next == NULL || (link_target_sound(heap, next) && next->prev == c);
}

/* Reported under the heap's lock: the handler must not call back into the
 * heap, and the caller then returns without using the list. */
static BRISK_NOINLINE void report_list_corrupted(const heap_chunk *c)
{
    report_error(BRISK_ERROR_CORRUPTION, "heap free list corrupted (a freed block was written to)",
                 (const char *)c + CHUNK_HEADER_SIZE);
}

/* The fence below the first chunk was overwritten (heap/heap.h): an
 * underflow from the first block ran into the bookkeeping, or towards
 * it. Nothing in the bookkeeping is believed any more; the call does
 * nothing. Named after the first block, the underflow's source. Returns
 * NULL, for the callers' tail calls: the fast paths then save no
 * registers for it. */
static BRISK_NOINLINE void *report_fence_broken(const brisk_heap *heap)
{
    report_error(BRISK_ERROR_CORRUPTION,
                 "heap bookkeeping corrupted (the fence below the first block was overwritten: an underflow)",
                 heap->base + CHUNK_HEADER_SIZE);
    errno = ENOMEM;
    return NULL;
}

/* Adds the free chunk c of class cls (header already written) to its list
 * and writes its footer. Allocation takes the first entry, so a chunk
 * lower than the first goes in front and a higher one right behind it:
 * O(1), and the lowest of the recently freed chunks of a class is reused
 * first, which keeps the heap's reach (high_water) down.
 *
 * Linking writes through at most one pointer a program could have
 * forged: the first entry's address comes from heads[] (bookkeeping, not
 * user memory), but its `next` lies in its payload, where a use after
 * free can write. So that one is checked (inside the heap, and pointing
 * back) before c is linked in front of it; the rest of the first entry
 * (header, footer) is checked when it is taken or merged with. */
/* Whether c can be linked into class cls's list, whose first entry is
 * `first`: true when c goes in front (or the list is empty), or when
 * first's next link, which c would be linked through, is sound. */
BRISK_INLINE bool bin_link_safe(const brisk_heap *heap, const heap_chunk *c, const heap_chunk *first)
{
    if (first == NULL || first > c)
        return true;
    const heap_chunk *second = first->next;
    return second == NULL || (link_target_sound(heap, second) && second->prev == first);
}

/* The linking itself, once bin_link_safe said yes, or with `front` set
 * when it said no: c then goes in front of first whatever their
 * addresses, which writes only into c and into first itself (whose
 * address comes from heads[], not from user memory), never through
 * first's links. */
BRISK_INLINE void bin_link(brisk_heap *heap, heap_chunk *c, size_t size, size_t cls, heap_chunk *first,
                           bool front)
{
    *chunk_footer(c, size) = size;
    heap->binned_count++;
    heap->binned_bytes += size;
    if (first == NULL) {
        c->next = NULL;
        c->prev = NULL;
        class_mark_nonempty(heap, cls);
        heap->heads[cls] = c;
    } else if (front || first > c) {
        c->next = first;
        c->prev = NULL;
        first->prev = c;
        heap->heads[cls] = c;
    } else {
        heap_chunk *second = first->next;
        c->prev = first;
        c->next = second;
        if (second != NULL)
            second->prev = c;
        first->next = c;
    }
}

static inline void block_map_mark(brisk_heap *heap, const heap_chunk *c, unsigned state);

/* Lists the free chunk c, already FREED in the block map (the split and
 * merge paths flip its state themselves, from the one they proved). */
BRISK_INLINE void bin_insert_marked(brisk_heap *heap, heap_chunk *c, size_t size, size_t cls)
{
    brisk_assert(block_map_get(heap, chunk_granule(heap, c)) == BLOCK_MAP_FREED,
                 "bin_insert_marked: a listed chunk is FREED in the block map");
    heap_chunk *first = heap->heads[cls];
    if (brisk_unlikely(!bin_link_safe(heap, c, first))) {
        /* first's next link was overwritten (a write after free). c goes
         * in front instead, which writes nothing through that link, so c
         * is never lost and the heap stays whole around the damage; then
         * the damage is reported. An error handler that returns finds
         * every chunk listed, and the damaged entry is reported again
         * when it is taken (and by brisk_heap_check). */
        bin_link(heap, c, size, cls, first, true);
        report_list_corrupted(first);
        return;
    }
    bin_link(heap, c, size, cls, first, false);
}

/* Lists the free chunk c and marks it FREED in the block map (whatever
 * its granule said: 0 for a chunk made by a split or a merge, LIVE for a
 * block just freed). */
BRISK_INLINE void bin_insert_class(brisk_heap *heap, heap_chunk *c, size_t size, size_t cls)
{
    block_map_mark(heap, c, BLOCK_MAP_FREED);
    bin_insert_marked(heap, c, size, cls);
}

BRISK_INLINE void bin_insert(brisk_heap *heap, heap_chunk *c, size_t size)
{
    bin_insert_class(heap, c, size, chunk_class_of(size));
}

/* Takes c (of `size` bytes, already checked) off its list, leaving its
 * block-map state to the caller. The class is only needed when c is the
 * first entry. */
BRISK_INLINE void bin_unlink(brisk_heap *heap, heap_chunk *c, size_t size)
{
    brisk_assert(!chunk_is_used(c) && chunk_size(c) == size,
                 "bin_remove: only a free chunk of this size is on a list");
    brisk_assert(heap->binned_count > 0 && heap->binned_bytes >= size,
                 "bin_remove: the list counts miss this chunk");
    heap_chunk *next = c->next, *prev = c->prev;
    if (prev != NULL) {
        prev->next = next;
    } else {
        size_t cls = chunk_class_of(size);
        heap->heads[cls] = next;
        if (next == NULL)
            class_mark_empty(heap, cls);
    }
    if (next != NULL)
        next->prev = prev;
    heap->binned_count--;
    heap->binned_bytes -= size;
}

/* bin_unlink, and c's FREED mark goes: it is handed out or merged, and
 * marked again by the caller. */
BRISK_INLINE void bin_remove(brisk_heap *heap, heap_chunk *c, size_t size)
{
    bin_unlink(heap, c, size);
    block_map_mark(heap, c, 0);
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

static inline void block_map_mark(brisk_heap *heap, const heap_chunk *c, unsigned state)
{
    block_map_set(heap, chunk_granule(heap, c), state);
}

/* c (a listed chunk just taken, FREED, or a chunk carved inside a free
 * one, 0) becomes a live block. */
static inline void mark_live(brisk_heap *heap, heap_chunk *c)
{
    brisk_assert(!(block_map_get(heap, chunk_granule(heap, c)) & BLOCK_MAP_LIVE),
                 "mark_live: the chunk is already live");
    block_map_set(heap, chunk_granule(heap, c), BLOCK_MAP_LIVE);
    heap->used_count++;
}

/* The live block c is freed: its mark goes (release_chunk lists it as
 * FREED, or it merges into a chunk that starts elsewhere). */
static inline void mark_freed(brisk_heap *heap, heap_chunk *c)
{
    brisk_assert(block_map_get(heap, chunk_granule(heap, c)) == BLOCK_MAP_LIVE && heap->used_count > 0,
                 "mark_freed: only a live chunk is freed");
    block_map_set(heap, chunk_granule(heap, c), 0);
    heap->used_count--;
}

/* Sets PREV_USED in the header of n, the chunk after one just made used
 * (or clears it, after one just freed). Under BRISK_HEAP_CANARY a used
 * n's canary covers its flags and is rewritten (heap_canary_refresh).
 * The general paths only: the plain fast paths write the bit
 * themselves, and take_exact's callers refresh in hand_out. */
static inline void set_prev_used(brisk_heap *heap, heap_chunk *n, bool used)
{
    size_t old = n->head;
    n->head = used ? old | CHUNK_PREV_USED : old & ~CHUNK_PREV_USED;
    if ((heap->flags & BRISK_HEAP_CANARY) && (char *)n != heap->end && (old & CHUNK_USED))
        heap_canary_refresh(heap, n, old);
}

static inline void note_high_water(brisk_heap *heap, const char *chunk_end)
{
    size_t reach = (size_t)(chunk_end - heap->base);
    if (reach > heap->high_water)
        heap->high_water = reach;
}

/* ---- deferred merging (heap/heap.h) ---------------------------------- */

/* Sets the two-bit state of granule g from LIVE to DEFERRED or back: both
 * differ in the FREED bit only. */
static inline void block_map_toggle_freed(brisk_heap *heap, size_t g)
{
    heap->block_map[g / BLOCK_MAP_PER_WORD] ^= (uint64_t)BLOCK_MAP_FREED << (2 * (g % BLOCK_MAP_PER_WORD));
}

/* Whether prev, found from the footer in front of the used chunk c
 * (prev_size bytes back, inside the heap), is the free chunk a merge may
 * take: the block map says a listed chunk starts there (a footer and a
 * free header forged inside a live block in front, with PREV_USED
 * cleared by an overflow, would merge the free into that block: their
 * granule is 0), its header agrees with the footer and its links point
 * back at it. Whether anything starts between prev and c is read only
 * when the merge goes into the wilderness (into_wild), which is carved
 * without reading the map: otherwise (a map word per 512 bytes of prev,
 * at every merge) if prev's header was enlarged too, the merged chunk's
 * extent is checked where every listed extent is, when any of it is
 * handed out. */
BRISK_INLINE bool prev_chunk_sound(const brisk_heap *heap, const heap_chunk *prev, size_t prev_size,
                                   const heap_chunk *c, bool into_wild)
{
    return block_map_get(heap, chunk_granule(heap, prev)) == BLOCK_MAP_FREED &&
           prev->head == (prev_size | CHUNK_PREV_USED) && free_links_intact(heap, prev, prev_size) &&
           (!into_wild || block_map_span_clear(heap, chunk_granule(heap, prev) + 1, chunk_granule(heap, c)));
}

/* Whether a used chunk whose header says it ends at `next` (whose header
 * reads next_head, with PREV_USED set) really ends there: next is the
 * sentinel, the wilderness, a used chunk the block map knows (which no
 * write into the chunks can fake), or a listed free chunk (footer and
 * list links agree). What a deferral must know before it believes a
 * block's size: it touches neither neighbour, but an overflow into the
 * block's header must not make it deferred, and handed out later, at a
 * forged size. The same evidence the release path accepts: a footer
 * alone can be forged inside a live block. */
BRISK_INLINE bool chunk_end_sound(const brisk_heap *heap, const heap_chunk *next, size_t next_head)
{
    if (next_head & CHUNK_USED) /* the map marks exactly the used chunks' starts */
        return (const char *)next == heap->end ||
               (block_map_get(heap, chunk_granule(heap, next)) & BLOCK_MAP_LIVE) != 0;
    if ((const char *)next == heap->top)
        return true;
    size_t next_size = next_head & ~CHUNK_FLAGS;
    return (next_head & CHUNK_UNKNOWN_FLAGS) == 0 && next_size >= CHUNK_MIN_SIZE &&
           next_size <= (size_t)(heap->end - (const char *)next) && next_listed_sound(heap, next, next_size);
}

/* Keeps the live chunk c of `size` bytes aside instead of releasing it,
 * when it is of an exact class and its class's stack has room: pushed,
 * and DEFERRED in the block map; its header, and its neighbours, are left
 * as they are. Returns whether it did. `next` and `next_head` are where
 * c's header says it ends, to be checked (chunk_end_sound) before its
 * size is believed; NULL when the caller has validated the block whole.
 * The class's room is looked at first: when it is full (a program
 * freeing many blocks of one size) the free goes on at the cost of two
 * loads. */
BRISK_INLINE bool defer_try(brisk_heap *heap, heap_chunk *c, size_t size, const heap_chunk *next,
                            size_t next_head)
{
    if (size >= SMALL_LIMIT)
        return false;
    size_t cls = size / GRANULE - 2;
    uint8_t *counts = heap_deferred_counts(heap);
    unsigned n = counts[cls];
    if (n >= DEFER_PER_CLASS || (next != NULL && !chunk_end_sound(heap, next, next_head)))
        return false;
    heap_deferred_slots(heap, cls)[n] = c;
    counts[cls] = (uint8_t)(n + 1);
    block_map_toggle_freed(heap, chunk_granule(heap, c)); /* LIVE -> DEFERRED */
    return true;
}

/* What take_exact returns when the entry it found failed its check (the
 * corruption is reported; the caller returns NULL). */
#define TAKE_CORRUPT ((heap_chunk *)(uintptr_t)1)

/* Pops the most recently deferred chunk of class `need` (an exact chunk
 * size) and makes it live again, unchanged: NULL when there is none.
 * Nothing is read from the chunk: the stack is bookkeeping. */
BRISK_INLINE heap_chunk *deferred_take(brisk_heap *heap, size_t need)
{
    size_t cls = need / GRANULE - 2;
    uint8_t *counts = heap_deferred_counts(heap);
    unsigned n = counts[cls];
    if (n == 0)
        return NULL;
    counts[cls] = (uint8_t)(n - 1);
    heap_chunk *d = heap_deferred_slots(heap, cls)[n - 1];
    block_map_toggle_freed(heap, chunk_granule(heap, d)); /* DEFERRED -> LIVE */
    return d;
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

/* Finishes handing out the chunk c of `size` bytes (its header and its
 * right neighbour's PREV_USED already written): wiping, the block map,
 * the hardening options. Returns the payload, or NULL when WIPE_CHECK
 * found the memory written after it was freed. */
static inline void *hand_out(brisk_heap *heap, heap_chunk *c, size_t size)
{
    if (heap->flags & BRISK_HEAP_WIPE) {
        /* Links and footer were the only non-zero bytes (see
         * wipe_chunk_metadata). */
        memset(chunk_payload(c), 0, 2 * sizeof(void *));
        *chunk_footer(c, size) = 0;
    }
    mark_live(heap, c);
    if (brisk_unlikely(heap->flags & (BRISK_HEAP_WIPE_CHECK | BRISK_HEAP_CANARY))) {
        /* The chunk after c, when used, just had its PREV_USED set (c was
         * free), which its canary covers. */
        heap_chunk *n = chunk_at(c, size);
        if ((heap->flags & BRISK_HEAP_CANARY) && (char *)n != heap->end && chunk_is_used(n))
            heap_canary_refresh(heap, n, n->head & ~CHUNK_PREV_USED);
        /* Every byte handed out must still be wiped (the metadata words
         * were just zeroed above; they are guarded by the list checks). */
        bool dirty = (heap->flags & BRISK_HEAP_WIPE_CHECK) &&
                     heap_wipe_first_dirty(heap, chunk_payload(c), size - CHUNK_HEADER_SIZE) != NULL;
        /* Written before a report too: a chunk kept out of use is still a
         * live block, whose canary brisk_heap_check verifies. */
        if (heap->flags & BRISK_HEAP_CANARY)
            heap_canary_write(heap, c);
        if (dirty) {
            /* The chunk stays live and is never handed out: memory a
             * stray pointer still writes to is retired, not reused. */
            heap_report_write_after_free(chunk_payload(c));
            return NULL;
        }
    }
    return chunk_payload(c);
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
    note_high_water(heap, (char *)c + size);
    return hand_out(heap, c, size);
}

/* The common case: the request's exact class (need < SMALL_LIMIT) has a
 * chunk of exactly `need` bytes. Unlinks the first entry and writes it as
 * used (header and the next chunk's PREV_USED), ready for hand_out; it is
 * handed out whole and lies below the wilderness, so high_water cannot
 * move. NULL when the class is empty.
 *
 * What is checked is what a program could have forged. c comes from
 * heads[], which only ever names checked chunks, but the bookkeeping is
 * checked too before it is believed: c must lie in the heap, and the
 * block map must say a listed chunk of exactly `need` bytes starts there
 * (exact_extent_sound: one or two map windows, so every exact class stays
 * on the fast path), so the size comes from the map, never from c's
 * header. c's next link lies in its payload, where a use after free can
 * write, and it is about to be written through and become the list's
 * head: it must name a listed chunk (the map again: a fake chunk inside
 * a live block is not one) that points back at c. */
BRISK_INLINE heap_chunk *take_exact(brisk_heap *heap, size_t need, bool report)
{
    size_t cls = need / GRANULE - 2;
    heap_chunk *c = heap->heads[cls];
    if (c == NULL)
        return NULL;
    size_t offset = (size_t)((uintptr_t)c - (uintptr_t)heap->base);
    size_t reach = (size_t)(heap->top - heap->base);
    if (brisk_unlikely(offset >= reach || offset % GRANULE != 0 || need > reach - offset ||
                       !exact_extent_sound(heap, offset / GRANULE, need / GRANULE))) {
        if (report)
            report_list_corrupted(c);
        return TAKE_CORRUPT;
    }
    heap_chunk *next = c->next;
    if (brisk_unlikely(next != NULL && (!link_target_sound(heap, next) || next->prev != c))) {
        if (report)
            report_list_corrupted(c);
        return TAKE_CORRUPT;
    }
    heap->heads[cls] = next;
    if (next != NULL)
        next->prev = NULL;
    else
        class_mark_empty(heap, cls);
    heap->binned_count--;
    heap->binned_bytes -= need;
    c->head = need | CHUNK_USED | CHUNK_PREV_USED;
    chunk_at(c, need)->head |= CHUNK_PREV_USED;
    return c;
}

/* Hands out the front `need` bytes of the listed chunk c of `size` bytes
 * (need <= size), just unlinked, for an unaligned request: the rest, when
 * it can be a chunk, is listed on its own. c was checked whole (header,
 * footer, links) and by listed_front_sound for this front, which read the
 * map from c's granule g on: FREED at g, and for a split 0 up to and
 * including the rest's granule, so both changes below are a flip from a
 * state just read. A listed chunk's left neighbour is in use, and it lies
 * below high_water (every listed chunk is memory once handed out, or the
 * gap in front of a chunk carved behind it), so high_water cannot move.
 * `plain`: the heap has no options (no wipe or hardening to apply on the
 * way out). */
BRISK_INLINE void *hand_out_front(brisk_heap *heap, heap_chunk *c, size_t size, size_t need, bool plain)
{
    size_t g = chunk_granule(heap, c);
    size_t rest = size - need;
    if (rest >= CHUNK_MIN_SIZE) {
        heap_chunk *r = chunk_at(c, need);
        r->head = rest | CHUNK_PREV_USED;
        block_map_flip(heap, g + need / GRANULE, 0, BLOCK_MAP_FREED);
        bin_insert_marked(heap, r, rest, chunk_class_of(rest));
        size = need;
    } else {
        chunk_at(c, size)->head |= CHUNK_PREV_USED;
    }
    c->head = size | CHUNK_USED | CHUNK_PREV_USED;
    if (plain) { /* a heap without options: nothing to wipe or check */
        block_map_flip(heap, g, BLOCK_MAP_FREED, BLOCK_MAP_LIVE);
        heap->used_count++;
        return chunk_payload(c);
    }
    return hand_out(heap, c, size);
}

/* The common way a chunk is split (most of a compiler's allocations): the
 * first entry of the larger class `cls`, which fits whatever its size,
 * for an unaligned chunk of `need` bytes. Checked like every list head,
 * unlinked, and its front handed out by hand_out_front. */
BRISK_INLINE void *take_split(brisk_heap *heap, size_t cls, size_t need, bool plain)
{
    heap_chunk *c = heap->heads[cls];
    if (brisk_unlikely(!list_head_sound(heap, c, cls, cls < SMALL_CLASSES ? chunk_class_floor(cls) : 0))) {
        report_list_corrupted(c);
        return NULL;
    }
    size_t size = chunk_size(c);
    if (brisk_unlikely(!listed_front_sound(heap, c, size, size - need >= CHUNK_MIN_SIZE ? need : size))) {
        report_list_corrupted(c);
        return NULL;
    }
    heap_chunk *second = c->next;
    heap->heads[cls] = second;
    if (second != NULL)
        second->prev = NULL;
    else
        class_mark_empty(heap, cls);
    heap->binned_count--;
    heap->binned_bytes -= size;
    return hand_out_front(heap, c, size, need, plain);
}

static void *alloc_search(brisk_heap *heap, size_t need, size_t search, size_t alignment);

/* Finds and carves a chunk of `need` bytes (a chunk size) aligned to
 * `alignment`; `search` bytes is a size every chunk of a larger class is
 * sure to fit (need, plus room for the alignment gap). NULL when nothing
 * fits. */
BRISK_INLINE void *alloc_chunk(brisk_heap *heap, size_t need, size_t search, size_t alignment)
{
    if (need < SMALL_LIMIT && alignment <= BRISK_ALIGNMENT) {
        if (heap->flags & BRISK_HEAP_DEFER_MERGE) {
            heap_chunk *d = deferred_take(heap, need);
            if (d != NULL)
                return chunk_payload(d);
        }
        if (need - CHUNK_HEADER_SIZE <= heap->exact_request_max) {
            heap_chunk *c = take_exact(heap, need, true);
            if (c != NULL)
                return c == TAKE_CORRUPT ? NULL : hand_out(heap, c, need);
        }
    }
    return alloc_search(heap, need, search, alignment);
}

/* alloc_chunk past the exact-class fast path (which found nothing, or did
 * not apply): the own class when it may hold a fit, the next non-empty
 * class, the wilderness. Out of line: the fast paths inline the rest.
 * Sets errno to ENOMEM when it returns NULL. */
BRISK_INLINE void *alloc_search_inline(brisk_heap *heap, size_t need, size_t search, size_t alignment)
{
    if (search <= heap_capacity(heap)) {
        size_t cls = chunk_class_of(search);
        heap_chunk *found = NULL;
        size_t found_size = 0, found_lead = 0;
        bool found_as_head = false; /* list_head_sound read it whole */
        /* An unaligned request of an exact class found it empty above.
         * Otherwise the own class may hold chunks too small for the
         * request (a ranged class holds sizes on both sides of it; an
         * aligned request may need a gap): look at a few entries for the
         * tightest fit, lowest address on ties. TLSF would skip this
         * class entirely. */
        if (cls >= SMALL_CLASSES || alignment > BRISK_ALIGNMENT) {
            /* Walking the list reads each entry's header and next link, so
             * an entry must lie in the heap and carry a free header of
             * this class before it is read further; the entry chosen gets
             * the whole check (footer, both links) before it is unlinked. */
            heap_chunk *c = heap->heads[cls];
            size_t floor = chunk_class_floor(cls);
            size_t ceiling = cls + 1 < CLASS_COUNT_MAX ? chunk_class_floor(cls + 1) : SIZE_MAX;
            for (unsigned probes = 0; c != NULL && probes < RANGED_CLASS_PROBES; probes++, c = c->next) {
                if (brisk_unlikely(!listed_entry_plausible(heap, c, floor, ceiling))) {
                    report_list_corrupted(c);
                    return NULL;
                }
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
            if (next != CLASS_NONE && alignment <= BRISK_ALIGNMENT)
                return take_split(heap, next, need, false);
            if (next != CLASS_NONE) {
                found = heap->heads[next];
                if (brisk_unlikely(!list_head_sound(heap, found, next,
                                                    next < SMALL_CLASSES ? chunk_class_floor(next) : 0))) {
                    report_list_corrupted(found);
                    return NULL;
                }
                found_size = chunk_size(found);
                found_lead = fit_lead(found, found_size, need, alignment);
                found_as_head = true;
            }
        }
        if (found != NULL) {
            /* The whole check: list_head_sound made it; the walk made its
             * first half (listed_entry_plausible). */
            size_t front = found_lead + need;
            if (brisk_unlikely((!found_as_head && !listed_entry_sound(heap, found, found_size)) ||
                               !listed_front_sound(heap, found, found_size,
                                                   found_size - front >= CHUNK_MIN_SIZE ? front : found_size))) {
                report_list_corrupted(found);
                return NULL;
            }
            if (alignment <= BRISK_ALIGNMENT) { /* no gap: fit_lead gave 0 */
                bin_unlink(heap, found, found_size);
                return hand_out_front(heap, found, found_size, need, false);
            }
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

static bool deferred_flush(brisk_heap *heap);

static BRISK_NOINLINE void *alloc_search(brisk_heap *heap, size_t need, size_t search, size_t alignment)
{
    /* Two copies: unaligned requests (nearly all) need no gap arithmetic. */
    void *p = alignment <= BRISK_ALIGNMENT ? alloc_search_inline(heap, need, search, BRISK_ALIGNMENT)
                                           : alloc_search_inline(heap, need, search, alignment);
    /* A request larger than the whole chunk area fits nowhere, merged or
     * not: no reason to give up the kept blocks for it. */
    if (p == NULL && (heap->flags & BRISK_HEAP_DEFER_MERGE) && need <= heap_capacity(heap) &&
        deferred_flush(heap)) {
        /* Deferral must never cost capacity: everything kept aside was
         * merged; look again, from the request's own exact class (the
         * merges may have made a chunk of exactly its size). Nothing is
         * left to flush, so this comes back here at most once. */
        p = alloc_chunk(heap, need, search, alignment);
    }
    if (p == NULL)
        errno = ENOMEM;
    return p;
}

/* brisk_heap_alloc on a plain heap (no flags, or only DEFER_MERGE) when
 * the exact class (need < SMALL_LIMIT) is empty: the next non-empty class
 * is split, as alloc_search would, without its generic preamble. */
_Static_assert(SMALL_CLASSES < 64, "the exact classes fit the class map's first word");

static BRISK_NOINLINE void *alloc_plain_miss(brisk_heap *heap, size_t need)
{
    /* need < SMALL_LIMIT: the next class up, at most SMALL_CLASSES, lies
     * in the class map's first word; the search goes on from the second
     * word only when the first has nothing at or above it. */
    size_t from = need / GRANULE - 1;
    uint64_t bits = heap->class_map[0] & (~(uint64_t)0 << from);
    size_t next = bits != 0 ? (size_t)__builtin_ctzll(bits) : class_find_from(heap, 64);
    if (next == CLASS_NONE)
        return alloc_search(heap, need, need, BRISK_ALIGNMENT); /* sets errno */
    void *p = take_split(heap, next, need, true);
    if (p == NULL)
        errno = ENOMEM;
    return p;
}

static void *heap_alloc_locked(brisk_heap *heap, size_t size)
{
    size_t need;
    if (!heap_chunk_size_for(heap, size, &need))
        return NULL;
    return alloc_chunk(heap, need, need, BRISK_ALIGNMENT);
}

/* brisk_heap_alloc for a heap with flags, or a request the exact classes
 * do not serve. */
static BRISK_NOINLINE void *heap_alloc_general(brisk_heap *heap, size_t size)
{
    heap_lock(heap);
    void *p = heap_alloc_locked(heap, size);
    heap_unlock(heap);
    if (brisk_unlikely(p == NULL))
        errno = ENOMEM;
    return p;
}

/* alloc_plain's exact-class case: the class's first chunk, or the miss
 * path when the class is empty; a damaged entry goes the general way,
 * which finds and reports it. Inlined into both alloc_plain and
 * alloc_plain_wide. */
BRISK_INLINE void *alloc_plain_exact(brisk_heap *heap, size_t size, size_t need)
{
    heap_chunk *c = take_exact(heap, need, false);
    if (brisk_likely(c != NULL && c != TAKE_CORRUPT)) {
        mark_live(heap, c);
        return chunk_payload(c);
    }
    if (c == NULL)
        return alloc_plain_miss(heap, need);
    return heap_alloc_general(heap, size);
}

/* alloc_plain for an exact class of 512 bytes or more (requests of 497 to
 * 1000 bytes): the same take_exact, whose extent check reads a second
 * map window for these, out of line so that the smaller classes keep
 * their registers: a tail call, not the general path. */
static BRISK_NOINLINE void *alloc_plain_wide(brisk_heap *heap, size_t size, size_t need)
{
    return alloc_plain_exact(heap, size, need);
}

/* brisk_heap_alloc on a plain heap (no flags, or only DEFER_MERGE).
 * Exact-class requests take their class's first chunk; everything else,
 * and every rare case, is out of line. Every call below is a tail call,
 * so the fast path saves no registers. */
BRISK_INLINE void *alloc_plain(brisk_heap *heap, size_t size)
{
    if (brisk_likely(size <= heap->exact_request_max)) {
        size_t need = chunk_size_for_small(size);
        if (brisk_unlikely(need / GRANULE >= BLOCK_MAP_PER_WORD))
            return alloc_plain_wide(heap, size, need);
        return alloc_plain_exact(heap, size, need);
    }
    /* A ranged request: straight to the search (which sets errno). */
    size_t need;
    if (chunk_size_for_request(size, &need))
        return alloc_search(heap, need, need, BRISK_ALIGNMENT);
    return heap_alloc_general(heap, size);
}

/* brisk_heap_alloc on a heap whose only flag is BRISK_HEAP_DEFER_MERGE:
 * a deferred block of the request's exact size first. Out of line, so
 * that a heap without options pays nothing for the option. */
static BRISK_NOINLINE BRISK_CACHE_ALIGNED void *alloc_deferring(brisk_heap *heap, size_t size)
{
    if (size <= EXACT_REQUEST_MAX) {
        size_t need = chunk_size_for_small(size);
        heap_chunk *d = deferred_take(heap, need);
        if (brisk_likely(d != NULL))
            return chunk_payload(d);
    }
    return alloc_plain(heap, size);
}

BRISK_CACHE_ALIGNED void *brisk_heap_alloc(brisk_heap *heap, size_t size)
{
    if (brisk_unlikely(!heap_fence_intact(heap)))
        return report_fence_broken(heap);
    /* One test of the flags word picks the fast path of a heap without
     * options (no lock, wipe, hardening or deferral). */
    if (brisk_likely(heap->flags == 0))
        return alloc_plain(heap, size);
    if (heap->flags == BRISK_HEAP_DEFER_MERGE)
        return alloc_deferring(heap, size);
    return heap_alloc_general(heap, size);
}

void *brisk_heap_calloc(brisk_heap *heap, size_t count, size_t size)
{
    if (brisk_unlikely(!heap_fence_intact(heap)))
        return report_fence_broken(heap);
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    heap_lock(heap);
    void *p = heap_alloc_locked(heap, total);
    /* Read under the lock: a neighbour's free may be rewriting the
     * header's PREV_USED bit in another thread. */
    size_t usable = p != NULL ? chunk_usable(heap, chunk_size(chunk_of_payload(p))) : 0;
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
    if (brisk_unlikely(!heap_fence_intact(heap)))
        return report_fence_broken(heap);
    size_t need;
    if (!heap_chunk_size_for(heap, size, &need) || need > SIZE_MAX - alignment - CHUNK_MIN_SIZE) {
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
    BLOCK_CORRUPT,   /* a live block whose tags do not add up */
    BLOCK_OVERFLOW   /* a live block whose canary or header was
                        overwritten (BRISK_HEAP_CANARY) */
} block_status;

/* Decides whether p is a live block of this heap without trusting any
 * byte a program could have written: the block map, kept outside the
 * chunks, says whether a live block starts there; only then are its
 * header and its neighbours' tags read, and checked against each other. */
BRISK_INLINE block_status block_validate_inline(const brisk_heap *heap, const void *p, bool canary)
{
    uintptr_t addr = (uintptr_t)p;
    uintptr_t first = (uintptr_t)heap->base + CHUNK_HEADER_SIZE;
    if (addr < first || addr >= (uintptr_t)heap->end || (addr - first) % GRANULE != 0)
        return BLOCK_INVALID;
    heap_chunk *c = chunk_of_payload(p);
    unsigned state = block_map_get(heap, chunk_granule(heap, c));
    if (state != BLOCK_MAP_LIVE) /* FREED or DEFERRED: freed */
        return (state & BLOCK_MAP_FREED) ? BLOCK_FREED : BLOCK_INVALID;

    size_t size = chunk_size(c);
    size_t room = (size_t)(heap->end - (char *)c);
    size_t g = chunk_granule(heap, c);
    /* A used chunk lies below top, and no chunk starts inside it: the
     * size in its header is then its real one (the map marks where the
     * next chunk starts, which a header overwritten by an overflow cannot
     * move). */
    if (!chunk_is_used(c) || (c->head & CHUNK_UNKNOWN_FLAGS) != 0 || size < CHUNK_MIN_SIZE ||
        size > (size_t)(heap->top - (char *)c) || !block_map_span_clear(heap, g + 1, g + size / GRANULE))
        return BLOCK_CORRUPT;
    heap_chunk *next = chunk_at(c, size);
    if (!chunk_prev_used(next))
        return BLOCK_CORRUPT;
    if ((char *)next != heap->end) {
        size_t next_size = chunk_size(next);
        if (next_size < CHUNK_MIN_SIZE || next_size > room - size)
            return BLOCK_CORRUPT;
        if (chunk_is_used(next)) { /* LIVE, or DEFERRED (a used chunk kept aside) */
            if (!(block_map_get(heap, chunk_granule(heap, next)) & BLOCK_MAP_LIVE))
                return BLOCK_CORRUPT;
        } else if ((char *)next != heap->top && !next_listed_sound(heap, next, next_size)) {
            return BLOCK_CORRUPT;
        }
    }
    if (!chunk_prev_used(c)) {
        size_t prev_size = *(const size_t *)((const char *)c - sizeof(size_t));
        if (prev_size < CHUNK_MIN_SIZE || prev_size % GRANULE != 0 ||
            prev_size > (size_t)((char *)c - heap->base))
            return BLOCK_CORRUPT;
        const heap_chunk *prev = (const heap_chunk *)((const char *)c - prev_size);
        if (!prev_chunk_sound(heap, prev, prev_size, c, (char *)next == heap->top))
            return BLOCK_CORRUPT;
    }
    if (canary && !heap_canary_intact(heap, c))
        return BLOCK_OVERFLOW;
    return BLOCK_LIVE;
}

static BRISK_NOINLINE block_status block_validate(const brisk_heap *heap, const void *p)
{
    return block_validate_inline(heap, p, (heap->flags & BRISK_HEAP_CANARY) != 0);
}

/* Which call found the bad pointer, for the message. */
typedef enum block_call { CALL_FREE, CALL_REALLOC, CALL_USABLE_SIZE } block_call;

/* Reports a failed validation of p. Fixed messages (no formatting: a
 * report may come from inside an allocator), one per call and status. */
static BRISK_NOINLINE void report_block(block_status status, block_call call, const void *p)
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
    case BLOCK_OVERFLOW:
        report_error(BRISK_ERROR_OVERFLOW,
                     "heap buffer overflow: the canary after the block or its header was overwritten", p);
        break;
    case BLOCK_LIVE:
        break;
    }
}

/* ---- freeing ----------------------------------------------------------- */

/* Returns [c, c + size) to the heap: c's header is valid except for its
 * size and USED bit, its body held user data. Merges with free
 * neighbours, then lists the result or makes it the wilderness. */
BRISK_INLINE void release_chunk_inline(brisk_heap *heap, heap_chunk *c, size_t size, bool wipe)
{
    if (wipe)
        heap_wipe_span(heap, chunk_payload(c), size - CHUNK_HEADER_SIZE);
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
        if (wipe)
            wipe_chunk_metadata(heap, next, next_size);
        size += next_size;
        next = chunk_at(c, size);
    }
    c->head = size | CHUNK_PREV_USED;
    set_prev_used(heap, next, false);
    bin_insert(heap, c, size);
}

static BRISK_NOINLINE void release_chunk(brisk_heap *heap, heap_chunk *c, size_t size)
{
    release_chunk_inline(heap, c, size, (heap->flags & BRISK_HEAP_WIPE) != 0);
}

/* Validates ptr as a live block and frees it (deferring it when
 * `may_defer` and the heap defers merging), under the heap's lock.
 * Returns what the validation found. */
static block_status heap_free_locked(brisk_heap *heap, void *ptr, bool may_defer)
{
    block_status status = block_validate(heap, ptr);
    if (brisk_likely(status == BLOCK_LIVE)) {
        heap_chunk *c = chunk_of_payload(ptr);
        size_t size = chunk_size(c);
        if (may_defer && (heap->flags & BRISK_HEAP_DEFER_MERGE) && defer_try(heap, c, size, NULL, 0))
            return status;
        mark_freed(heap, c);
        release_chunk(heap, c, size);
    }
    return status;
}

/* brisk_heap_free for a heap with flags (lock, wipe, hardening), and
 * the plain fast paths' way out when something is not as it is for a
 * live block. The fence was read once, by brisk_heap_free, before any of
 * them: every caller comes from there having found it intact. */
static BRISK_NOINLINE void heap_free_general(brisk_heap *heap, void *ptr)
{
    heap_lock(heap);
    block_status status = heap_free_locked(heap, ptr, true);
    heap_unlock(heap);
    if (status != BLOCK_LIVE)
        report_block(status, CALL_FREE, ptr);
}

/* Releases every deferred chunk, merging it with its free neighbours, as
 * a free without deferral would have: each is made live again and freed
 * through the general path's checks. Returns whether it released
 * anything. Under the heap's lock. */
static BRISK_NOINLINE bool deferred_flush(brisk_heap *heap)
{
    bool released = false;
    for (size_t cls = 0; cls < SMALL_CLASSES; cls++) {
        heap_chunk *d;
        while ((d = deferred_take(heap, chunk_class_floor(cls))) != NULL) {
            block_status status = heap_free_locked(heap, chunk_payload(d), false);
            if (status != BLOCK_LIVE) {
                /* Its header or its neighbours' tags were damaged:
                 * reported, and the block stays live (held by no one)
                 * rather than merge across the damage. */
                report_block(status, CALL_FREE, chunk_payload(d));
                break;
            }
            released = true;
        }
    }
    return released;
}

/* brisk_heap_free on a plain heap (no lock, wipe or hardening), done in
 * one pass that shares what the checks read (the block-map word, the
 * offsets, both headers) with the release. The same checks as
 * block_validate and the same release as release_chunk; it returns
 * false, having changed nothing, as soon as anything is not as it is for
 * a live block, and the general path then validates again and reports.
 *
 * Split in two: free_plain_unmerged, inlined, takes the most common case
 * (both neighbours in use: nothing merges) and checks what every free
 * needs; free_plain_merge, out of line, the rest. */

/* c is LIVE in the map, its header is sound (USED, known bits, a size
 * below top) and nothing starts inside it; `next` is its right neighbour
 * (or the sentinel) with PREV_USED set. Checks and merges the free
 * neighbours. */
BRISK_INLINE bool free_plain_merge_checked(brisk_heap *heap, heap_chunk *c, size_t head, heap_chunk *next,
                                           size_t next_head)
{
    size_t size = head & ~CHUNK_FLAGS;
    size_t offset = (size_t)((char *)c - heap->base);
    size_t room = heap_capacity(heap) - offset;
    size_t next_size = next_head & ~CHUNK_FLAGS;
    char *top = heap->top;
    bool merge_next = false;
    if (size != room) { /* next is a chunk, not the sentinel */
        if (next_size < CHUNK_MIN_SIZE || next_size > room - size)
            return false;
        if (next_head & CHUNK_USED) {
            size_t next_g = (offset + size) / GRANULE;
            if (!(block_map_get(heap, next_g) & BLOCK_MAP_LIVE)) /* LIVE or DEFERRED */
                return false;
        } else if ((char *)next != top) {
            if (!next_listed_sound(heap, next, next_size))
                return false;
            merge_next = true;
        }
    }
    heap_chunk *prev = NULL;
    size_t prev_size = 0;
    if (!(head & CHUNK_PREV_USED)) {
        prev_size = *(const size_t *)((const char *)c - sizeof(size_t));
        if (prev_size < CHUNK_MIN_SIZE || prev_size % GRANULE != 0 || prev_size > offset)
            return false;
        prev = (heap_chunk *)((char *)c - prev_size);
        if (!prev_chunk_sound(heap, prev, prev_size, c, (char *)next == top))
            return false;
    }

    /* Every state changed below was read above: LIVE at c (free_plain),
     * FREED at prev (prev_chunk_sound) and at a listed next
     * (next_listed_sound). A merged chunk starts at prev, which keeps its
     * FREED mark unless it becomes the wilderness (which has none); c's
     * mark goes, or becomes FREED when c starts the merged chunk. */
    size_t g = offset / GRANULE;
    bool wild = (char *)next == top;
    heap->used_count--;
    if (prev != NULL) {
        block_map_flip(heap, g, BLOCK_MAP_LIVE, 0);
        if (wild)
            block_map_flip(heap, g - prev_size / GRANULE, BLOCK_MAP_FREED, 0);
        bin_unlink(heap, prev, prev_size);
        c = prev;
        size += prev_size;
    } else {
        block_map_flip(heap, g, BLOCK_MAP_LIVE, wild ? 0 : BLOCK_MAP_FREED);
    }
    if (wild) {
        /* Into the wilderness (or c becomes it: next is the sentinel). */
        heap->top = (char *)c;
        c->head = heap_wild_size(heap) | CHUNK_PREV_USED;
        ((heap_chunk *)heap->end)->head &= ~CHUNK_PREV_USED;
        return true;
    }
    if (merge_next) {
        block_map_flip(heap, (offset + (head & ~CHUNK_FLAGS)) / GRANULE, BLOCK_MAP_FREED, 0);
        bin_unlink(heap, next, next_size);
        size += next_size;
        next = chunk_at(c, size);
    }
    c->head = size | CHUNK_PREV_USED;
    next->head &= ~CHUNK_PREV_USED;
    bin_insert_marked(heap, c, size, chunk_class_of(size));
    return true;
}

static BRISK_NOINLINE void free_plain_merge(brisk_heap *heap, heap_chunk *c, size_t head, heap_chunk *next,
                                            size_t next_head)
{
    if (!free_plain_merge_checked(heap, c, head, next, next_head))
        heap_free_general(heap, chunk_payload(c));
}

/* The rest of free_plain, once c's extent is known (nothing starts inside
 * it): the next chunk's state in the map is in `next_states` from bit
 * `next_shift` on (a window read with c's own, or the state alone).
 * Inlined twice: into free_plain for blocks under 512 bytes, and into
 * free_plain_wide for the larger ones, whose span check reads a second
 * window or loops (kept off the small blocks' registers). */
BRISK_INLINE void free_plain_finish(brisk_heap *heap, heap_chunk *c, size_t head, heap_chunk *next, size_t next_head,
                                    uint64_t next_states, unsigned next_shift, bool deferring)
{
    size_t size = head & ~CHUNK_FLAGS;
    if (deferring && defer_try(heap, c, size, next, next_head))
        return;
    if (!(head & CHUNK_PREV_USED) || !(next_head & CHUNK_USED) || (char *)next == heap->end) {
        free_plain_merge(heap, c, head, next, next_head);
        return;
    }
    /* Both neighbours in use (next is a chunk, not the sentinel): it must
     * be LIVE in the map too, and then nothing merges. */
    size_t next_size = next_head & ~CHUNK_FLAGS;
    size_t cls = chunk_class_of(size);
    heap_chunk *first = heap->heads[cls];
    if (brisk_unlikely(next_size < CHUNK_MIN_SIZE || next_size > (size_t)(heap->end - (char *)next) ||
                       !((next_states >> next_shift) & BLOCK_MAP_LIVE) ||
                       !bin_link_safe(heap, c, first))) {
        heap_free_general(heap, chunk_payload(c));
        return;
    }
    /* LIVE -> FREED (01 -> 10): one xor. */
    size_t g = chunk_granule(heap, c);
    heap->block_map[g / BLOCK_MAP_PER_WORD] ^= (uint64_t)3 << (2 * (g % BLOCK_MAP_PER_WORD));
    heap->used_count--;
    c->head = size | CHUNK_PREV_USED;
    next->head = next_head & ~CHUNK_PREV_USED;
    bin_link(heap, c, size, cls, first, false);
}

/* free_plain for a block of 512 bytes or more, whose header free_plain
 * has checked as far as its size (LIVE at c in the map, USED and known
 * flag bits, a size below top, next with PREV_USED set): nothing may
 * start inside it. Up to 63 granules (the exact classes) that is a
 * second map window, which holds the next chunk's state too; a chunk of
 * 1 KiB or more loops over its map words. Then the same finish. Out of
 * line so that the blocks under 512 bytes, most frees, keep their
 * registers: a tail call, not a second validation. */
static BRISK_NOINLINE void free_plain_wide(brisk_heap *heap, heap_chunk *c, size_t head, heap_chunk *next,
                                           size_t next_head, bool deferring)
{
    size_t g = chunk_granule(heap, c), n = (head & ~CHUNK_FLAGS) / GRANULE;
    if (n < 2 * BLOCK_MAP_PER_WORD) {
        uint64_t next_window;
        if (brisk_unlikely(!block_map_extent_is(heap, g, block_map_window(heap, g), n, BLOCK_MAP_LIVE,
                                                &next_window))) {
            heap_free_general(heap, chunk_payload(c));
            return;
        }
        free_plain_finish(heap, c, head, next, next_head, next_window, (2 * n) % 64, deferring);
        return;
    }
    /* The word loop, inlined here: three windows (block_map_extent3_is)
     * read more instructions than it for a chunk of 64 to 95 granules. */
    if (brisk_unlikely(!block_map_span_clear(heap, g + 1, g + n))) {
        heap_free_general(heap, chunk_payload(c));
        return;
    }
    free_plain_finish(heap, c, head, next, next_head, block_map_get(heap, g + n), 0, deferring);
}

/* brisk_heap_free on a plain heap (no flags, or only DEFER_MERGE), ptr
 * not NULL. Every way out other than success is a tail call: to
 * free_plain_merge or free_plain_wide, or, having changed nothing, to
 * the general path, which validates again and reports what it finds.
 * `deferring`: the heap has BRISK_HEAP_DEFER_MERGE, and a block found
 * live is kept aside when its class has room. */
BRISK_INLINE void free_plain(brisk_heap *heap, void *ptr, bool deferring)
{
    heap_chunk *c = chunk_of_payload(ptr);
    size_t offset = (size_t)((uintptr_t)c - (uintptr_t)heap->base); /* huge when below base */
    if (brisk_unlikely(offset >= heap_capacity(heap) || offset % GRANULE != 0))
        goto general;
    uint64_t window = block_map_window(heap, offset / GRANULE);
    if (brisk_unlikely((window & 3u) != BLOCK_MAP_LIVE))
        goto general;
    /* c lies in the chunk area, so its header can be read; it is believed
     * only because the map says a live block starts here, and its size
     * only when no chunk starts inside it (a used chunk lies below top). */
    size_t head = c->head, size = head & ~CHUNK_FLAGS;
    if (brisk_unlikely((head & (CHUNK_USED | CHUNK_UNKNOWN_FLAGS)) != CHUNK_USED || size < CHUNK_MIN_SIZE ||
                       size > (size_t)(heap->top - (char *)c)))
        goto general;
    heap_chunk *next = chunk_at(c, size);
    size_t next_head = next->head;
    if (brisk_unlikely(!(next_head & CHUNK_PREV_USED)))
        goto general;
    /* Nothing may start inside c: one window for a chunk under 512 bytes
     * (it holds the next chunk's state too); a larger one is checked out
     * of line. */
    if (brisk_unlikely(size / GRANULE >= BLOCK_MAP_PER_WORD)) {
        free_plain_wide(heap, c, head, next, next_head, deferring);
        return;
    }
    if (brisk_unlikely((window & block_map_window_mask(size / GRANULE)) != BLOCK_MAP_LIVE))
        goto general;
    free_plain_finish(heap, c, head, next, next_head, window, 2 * (unsigned)(size / GRANULE), deferring);
    return;
general:
    heap_free_general(heap, chunk_payload(c));
}

/* brisk_heap_free past its two fast paths: a heap with options, or a
 * broken fence (`fence` false, as brisk_heap_free read it), reported
 * here so that brisk_heap_free's own code stays as short as its fast
 * paths need. */
static BRISK_NOINLINE void heap_free_flagged(brisk_heap *heap, void *ptr, bool fence)
{
    if (brisk_unlikely(!fence)) {
        (void)report_fence_broken(heap);
        return;
    }
    heap_free_general(heap, ptr);
}

/* brisk_heap_free on a heap whose only flag is BRISK_HEAP_DEFER_MERGE.
 * Out of line, so that a heap without options pays nothing for it.
 * Cache-aligned, as alloc_deferring: left where the linker put them, an
 * unrelated change elsewhere in this file moved the sqlite3 trace from
 * 1.02x glibc's speed to 0.92x with the same instructions. */
static BRISK_NOINLINE BRISK_CACHE_ALIGNED void free_deferring(brisk_heap *heap, void *ptr)
{
    free_plain(heap, ptr, true);
}

BRISK_CACHE_ALIGNED void brisk_heap_free(brisk_heap *heap, void *ptr)
{
    if (ptr == NULL)
        return;
    /* One test of the flags word picks the fast path of a heap without
     * options. The fence is read here only: every path below believes the
     * bookkeeping, and heap_free_flagged reports a broken one. */
    bool fence = heap_fence_intact(heap);
    if (brisk_likely(heap->flags == 0 && fence)) {
        free_plain(heap, ptr, false);
        return;
    }
    if (heap->flags == BRISK_HEAP_DEFER_MERGE && fence) {
        free_deferring(heap, ptr);
        return;
    }
    heap_free_flagged(heap, ptr, fence);
}

size_t brisk_heap_usable_size(const brisk_heap *heap, const void *ptr)
{
    if (ptr == NULL)
        return 0;
    if (brisk_unlikely(!heap_fence_intact(heap))) {
        (void)report_fence_broken(heap);
        return 0;
    }
    heap_lock(heap);
    block_status status = block_validate(heap, ptr);
    size_t usable = status == BLOCK_LIVE ? chunk_usable(heap, chunk_size(chunk_of_payload(ptr))) : 0;
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
    heap_chunk *tail = chunk_at(c, need);
    tail->head = rest | CHUNK_PREV_USED;
    release_chunk(heap, tail, rest);
}

/* Under BRISK_HEAP_WIPE_CHECK: whether the first `len` bytes of the free
 * chunk f (of `size` bytes; the wilderness when `wild`) hold a non-zero
 * byte other than f's own metadata (header, and for a listed chunk its
 * links and footer): something written after that memory was freed.
 * Reads only; called before a resize changes anything. */
static bool free_chunk_dirty(const brisk_heap *heap, const heap_chunk *f, size_t size, size_t len, bool wild)
{
    const char *from = (const char *)f + (wild ? CHUNK_HEADER_SIZE : sizeof(heap_chunk));
    const char *end = (const char *)f + len;
    const char *footer = (const char *)f + size - sizeof(size_t);
    if (!wild && footer < end) {
        if (from < footer && heap_wipe_first_dirty(heap, from, (size_t)(footer - from)) != NULL)
            return true;
        from = footer + sizeof(size_t);
    }
    return from < end && heap_wipe_first_dirty(heap, from, (size_t)(end - from)) != NULL;
}

/* What resize_in_place returns when WIPE_CHECK found the memory the block
 * would take over written after it was freed, or the block map disowned
 * the free neighbour it would take, and the error handler returned: the
 * realloc fails and nothing has changed. */
#define RESIZE_REFUSED ((void *)(uintptr_t)1)

/* Tries to resize the live block at ptr without moving it, or by sliding
 * it down into a free left neighbour. Returns the new payload, NULL when
 * the neighbours leave no room (the caller moves the block), or
 * RESIZE_REFUSED. */
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
    bool wipe_check = (heap->flags & BRISK_HEAP_WIPE_CHECK) != 0;

    if (next_free != 0 && next_free >= need - size) {
        /* Grow into the right neighbour, once it is known to be clean and
         * (a listed one) to span what the block takes of it. */
        size_t rest = size + next_free - need;
        if (brisk_unlikely(!next_is_wild &&
                           !listed_front_sound(heap, next, next_free, rest >= CHUNK_MIN_SIZE ? need - size : next_free))) {
            report_block(BLOCK_CORRUPT, CALL_REALLOC, ptr);
            return RESIZE_REFUSED;
        }
        if (brisk_unlikely(wipe_check && free_chunk_dirty(heap, next, next_free, need - size, next_is_wild))) {
            heap_report_write_after_free(ptr);
            return RESIZE_REFUSED;
        }
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
            set_prev_used(heap, chunk_at(c, grown), true);
            if (next_is_wild)
                heap->top = heap->end;
        }
        c->head = grown | (c->head & CHUNK_FLAGS);
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
            /* Both are taken whole: prev (block_validate checked its
             * start) must end at c, a listed right neighbour where the
             * chunk after it starts. */
            if (brisk_unlikely(!listed_front_sound(heap, prev, prev_size, prev_size) ||
                               (right != 0 && !listed_front_sound(heap, next, right, right)))) {
                report_block(BLOCK_CORRUPT, CALL_REALLOC, ptr);
                return RESIZE_REFUSED;
            }
            if (brisk_unlikely(wipe_check && (free_chunk_dirty(heap, prev, prev_size, prev_size, false) ||
                                              (right != 0 && free_chunk_dirty(heap, next, right, right, false))))) {
                heap_report_write_after_free(ptr);
                return RESIZE_REFUSED;
            }
            bin_remove(heap, prev, prev_size);
            if (right != 0) {
                bin_remove(heap, next, right);
                wipe_chunk_metadata(heap, next, right);
            }
            mark_freed(heap, c);
            size_t total = prev_size + size + right;
            prev->head = total | CHUNK_USED | (prev->head & CHUNK_PREV_USED);
            set_prev_used(heap, chunk_at(prev, total), true);
            memmove(chunk_payload(prev), ptr, keep);
            mark_live(heap, prev);
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
    if (brisk_unlikely(!heap_fence_intact(heap)))
        return report_fence_broken(heap);
    heap_lock(heap);
    block_status status = block_validate(heap, ptr);
    if (status != BLOCK_LIVE) {
        heap_unlock(heap);
        report_block(status, CALL_REALLOC, ptr);
        return NULL;
    }
    size_t need;
    if (!heap_chunk_size_for(heap, size, &need)) {
        heap_unlock(heap);
        errno = ENOMEM;
        return NULL;
    }
    heap_chunk *c = chunk_of_payload(ptr);
    size_t usable = chunk_usable(heap, chunk_size(c));
    size_t keep = usable < size ? usable : size;
    void *result = resize_in_place(heap, ptr, need, keep);
    bool moved = false;
    if (result == NULL) {
        result = alloc_chunk(heap, need, need, BRISK_ALIGNMENT);
        moved = result != NULL;
        if (result == NULL && (heap->flags & BRISK_HEAP_DEFER_MERGE)) {
            /* The failed alloc merged every deferred block first: a
             * neighbour that was deferred may now leave room in place. */
            result = resize_in_place(heap, ptr, need, keep);
        }
    }
    if (result == RESIZE_REFUSED) {
        result = NULL;
    } else if (moved) {
        memcpy(result, ptr, keep);
        size_t old_size = chunk_size(c);
        mark_freed(heap, c);
        release_chunk(heap, c, old_size);
    } else if (result != NULL && (heap->flags & BRISK_HEAP_CANARY)) {
        heap_canary_write(heap, chunk_of_payload(result)); /* resized in place */
    }
    heap_unlock(heap);
    if (result == NULL)
        errno = ENOMEM;
    return result;
}
