/*
 * Internals of the region heap, shared by heap.c (alloc, free, realloc:
 * the hot path), heap_create.c (building and destroying heaps) and
 * heap_check.c (the self-check, walk and statistics). See docs/design.md.
 *
 * The region:
 *
 *   region start (16-aligned)                                        region end
 *   | struct brisk_heap | list heads | block map | deferred |G|F| chunks |S|
 *                                                              ^base  ^end
 *
 *   The deferred stacks and counts (BRISK_HEAP_DEFER_MERGE only, so that
 *   other heaps do not pay their 6 KiB) end the bookkeeping.
 *
 *   G, the guard: in a mapped heap the bookkeeping is padded to a page
 *   and followed by one inaccessible page, so an underflow running down
 *   from the first block faults before it reaches any bookkeeping. (The
 *   mapping has an inaccessible page before the region start and after
 *   its end as well: heap_create_mapped.) A
 *   heap in a caller's buffer has none (it makes no system call, and the
 *   buffer's pages are the caller's): nothing there.
 *
 *   F, the fence: the 8 bytes right below the first chunk's header hold
 *   heap->fence, checked on entry to every call (heap_fence_intact): a
 *   linear underflow from the first block must overwrite it before it
 *   reaches the bookkeeping of a heap without a guard, and the next call
 *   then refuses to believe the bookkeeping (heap_create.c says what the
 *   value is made of).
 *
 *   Chunks tile [base, end) exactly. base and end are 8 mod 16, so every
 *   payload (a chunk's start + 8) is 16-aligned. S is an 8-byte sentinel
 *   header at `end`: marked USED, its PREV_USED bit tells whether the last
 *   chunk is in use, so the last chunk needs no special case.
 *
 * A chunk (sizes are multiples of 16, at least 32):
 *
 *   used chunk                         free chunk
 *   +---------------------------+      +---------------------------+
 *   | size | PREV_USED | USED=1 |  8   | size | PREV_USED | USED=0 |  8
 *   +---------------------------+ <-p  +---------------------------+
 *   |                           |      | next in its size class    |  8
 *   | payload: size - 8 usable  |      | prev in its size class    |  8
 *   | bytes, running up to the  |      | (unused)                  |
 *   | next chunk's header       |      +---------------------------+
 *   |                           |      | footer: size              |  8
 *   +---------------------------+      +---------------------------+
 *
 *   A used chunk has no footer: its neighbour's PREV_USED bit says it is
 *   in use, and only free chunks are ever looked up from their right
 *   neighbour (to merge), through their footer.
 *
 * The wilderness: the free chunk that ends at `end` (the untouched rest of
 * the region) is not kept in any list. It starts at `top` (top == end when
 * it is empty), has a header but no links and no footer, and is carved
 * only when no listed chunk fits, so the heap stays packed towards low
 * addresses.
 */
#ifndef BRISK_HEAP_INTERNAL_H
#define BRISK_HEAP_INTERNAL_H

#include "common/internal.h"

#include <pthread.h>

/* ---- chunk layout ------------------------------------------------------ */

#define CHUNK_USED ((size_t)1)      /* this chunk is a live block */
#define CHUNK_PREV_USED ((size_t)2) /* the chunk before this one is live
                                       (or this is the first chunk) */
#define CHUNK_FLAGS ((size_t)15)    /* sizes are multiples of 16 */
#define CHUNK_UNKNOWN_FLAGS ((size_t)12) /* always clear; set means damage */
#define CHUNK_HEADER_SIZE ((size_t)8)
#define CHUNK_MIN_SIZE ((size_t)32) /* header + two links + footer */
#define GRANULE ((size_t)16)

typedef struct heap_chunk {
    size_t head;             /* size | CHUNK_PREV_USED | CHUNK_USED */
    struct heap_chunk *next; /* free chunks only: list links */
    struct heap_chunk *prev;
} heap_chunk;

BRISK_INLINE size_t chunk_size(const heap_chunk *c) { return c->head & ~CHUNK_FLAGS; }
BRISK_INLINE bool chunk_is_used(const heap_chunk *c) { return (c->head & CHUNK_USED) != 0; }
BRISK_INLINE bool chunk_prev_used(const heap_chunk *c) { return (c->head & CHUNK_PREV_USED) != 0; }
BRISK_INLINE heap_chunk *chunk_at(const void *p, size_t offset)
{
    return (heap_chunk *)((char *)(uintptr_t)p + offset);
}
BRISK_INLINE heap_chunk *chunk_of_payload(const void *p)
{
    return (heap_chunk *)((char *)(uintptr_t)p - CHUNK_HEADER_SIZE);
}
BRISK_INLINE void *chunk_payload(heap_chunk *c) { return (char *)c + CHUNK_HEADER_SIZE; }
/* The footer of a free chunk of `size` bytes: its last word. */
BRISK_INLINE size_t *chunk_footer(heap_chunk *c, size_t size)
{
    return (size_t *)((char *)c + size - sizeof(size_t));
}

/* The chunk size serving a request of n bytes, n known not to overflow
 * the arithmetic (the fast paths' requests, at most EXACT_REQUEST_MAX). */
BRISK_INLINE size_t chunk_size_for_small(size_t n)
{
    brisk_assert(n <= SIZE_MAX - (CHUNK_HEADER_SIZE + GRANULE - 1),
                 "chunk_size_for_small: the request overflows the rounding");
    size_t size = (n + CHUNK_HEADER_SIZE + GRANULE - 1) & ~(GRANULE - 1);
    return size < CHUNK_MIN_SIZE ? CHUNK_MIN_SIZE : size;
}

/* The chunk size serving a request of n bytes: header + n rounded up to
 * the granule, at least the minimum. false when n is too large to
 * represent. */
BRISK_INLINE bool chunk_size_for_request(size_t n, size_t *out)
{
    if (n > SIZE_MAX - (CHUNK_HEADER_SIZE + GRANULE - 1))
        return false;
    *out = chunk_size_for_small(n);
    return true;
}

/* ---- size classes ------------------------------------------------------ */

/* Sizes below SMALL_LIMIT have one exact class per 16 bytes: any chunk in
 * the request's own class fits. From SMALL_LIMIT up, each power of two is
 * split into 16 ranges (TLSF's two-level scheme). */
#define SMALL_LIMIT ((size_t)1024)
#define SMALL_CLASSES (SMALL_LIMIT / GRANULE - 2) /* 32 .. 1008: 62 classes */
#define RANGE_SPLIT_BITS 4
#define RANGE_SPLIT (1u << RANGE_SPLIT_BITS)
#define SMALL_LIMIT_LOG2 10
#define CLASS_COUNT_MAX (SMALL_CLASSES + (64 - SMALL_LIMIT_LOG2) * RANGE_SPLIT)
#define CLASS_WORDS ((CLASS_COUNT_MAX + 63) / 64)
#define CLASS_NONE ((size_t)-1)
/* The largest request an exact class serves: its chunk is below
 * SMALL_LIMIT. */
#define EXACT_REQUEST_MAX (SMALL_LIMIT - GRANULE - CHUNK_HEADER_SIZE)

/* How many entries of a ranged class (where a chunk may be too small) an
 * alloc looks at before moving to the next non-empty class. */
#define RANGED_CLASS_PROBES 8

BRISK_INLINE unsigned log2_floor(size_t x) { return 63u - (unsigned)__builtin_clzll((unsigned long long)x); }

/* The class of a chunk of `size` bytes (a multiple of 16, >= 32). */
BRISK_INLINE size_t chunk_class_of(size_t size)
{
    brisk_assert(size >= CHUNK_MIN_SIZE && size % GRANULE == 0,
                 "chunk_class_of: not a chunk size (a multiple of 16, at least the minimum)");
    if (size < SMALL_LIMIT)
        return size / GRANULE - 2;
    unsigned level = log2_floor(size);
    size_t sub = (size >> (level - RANGE_SPLIT_BITS)) & (RANGE_SPLIT - 1);
    return SMALL_CLASSES + (size_t)(level - SMALL_LIMIT_LOG2) * RANGE_SPLIT + sub;
}

/* The smallest chunk size in class `cls`. */
BRISK_INLINE size_t chunk_class_floor(size_t cls)
{
    if (cls < SMALL_CLASSES)
        return (cls + 2) * GRANULE;
    size_t ranged = cls - SMALL_CLASSES;
    unsigned level = (unsigned)(ranged / RANGE_SPLIT) + SMALL_LIMIT_LOG2;
    size_t sub = ranged % RANGE_SPLIT;
    return (RANGE_SPLIT + sub) << (level - RANGE_SPLIT_BITS);
}

/* ---- the heap ---------------------------------------------------------- */

struct brisk_heap {
    char *base;              /* first chunk; 8 mod 16 */
    char *end;               /* the sentinel header; chunks tile [base, end) */
    char *top;               /* the wilderness chunk, or end when empty */
    heap_chunk **heads;      /* class_count list heads (in the bookkeeping) */
    uint64_t *block_map;     /* 2 bits per granule g, the chunk starting
                                at base + 16 g: BLOCK_MAP_LIVE when a live
                                block starts there, BLOCK_MAP_FREED when a
                                listed free chunk does (so a free of it is
                                a double free), BLOCK_MAP_DEFERRED for a
                                deferred block, else 0 (inside a chunk, or
                                at or past top: the wilderness). Every
                                chunk start but the wilderness's is marked,
                                so the map, which no write into the chunks
                                reaches, says where chunks really begin and
                                end: sizes and links read from the chunks
                                are checked against it. */
    size_t class_count;      /* classes a chunk of this heap can fall in */
    uint64_t class_map[CLASS_WORDS]; /* bit c: list c is non-empty */
    uint64_t class_summary;  /* bit w: class_map[w] != 0 */
    /* The three counters the hot path updates are kept apart (not
     * adjacent): side by side, gcc turns their updates into vector
     * loads, shuffles and stores, several instructions more than plain
     * adds. */
    size_t binned_count;     /* free chunks in lists (the wilderness is not) */
    size_t high_water;       /* furthest chunk end handed out, from base */
    size_t binned_bytes;
    size_t granule_count;    /* (end - base) / 16 */
    size_t used_count;       /* used chunks: live blocks, and deferred
                                ones (BRISK_HEAP_DEFER_MERGE) */
    unsigned flags;          /* BRISK_HEAP_* */
    uint32_t exact_request_max; /* the largest request whose exact class
                                   has a list head: EXACT_REQUEST_MAX, or
                                   less in a heap too small for every
                                   exact class (heads[] has class_count
                                   entries) */
    uint64_t canary_key;     /* BRISK_HEAP_CANARY: the secret canaries are
                                derived from (heap_harden.c) */
    uint64_t fence;          /* what the 8 bytes below base must hold */
    char *deferred;          /* the deferred stacks and counts
                                (BRISK_HEAP_DEFER_MERGE), else NULL */
    void *map_base;          /* the mapping to unmap, or NULL */
    size_t map_size;
    pthread_mutex_t lock;    /* taken when flags has BRISK_HEAP_THREADSAFE */
};

BRISK_INLINE void heap_lock(const brisk_heap *heap)
{
    if (heap->flags & BRISK_HEAP_THREADSAFE)
        pthread_mutex_lock((pthread_mutex_t *)(uintptr_t)&heap->lock);
}

BRISK_INLINE void heap_unlock(const brisk_heap *heap)
{
    if (heap->flags & BRISK_HEAP_THREADSAFE)
        pthread_mutex_unlock((pthread_mutex_t *)(uintptr_t)&heap->lock);
}

/* ---- hardening (heap_harden.c, docs/security.md) ------------------------
 *
 * Under BRISK_HEAP_CANARY a used chunk ends in an 8-byte canary that is
 * not the caller's:
 *
 *   | head | payload: usable bytes ...          | canary |
 *   ^c     ^p                                   ^c + size - 8
 *
 * The canary is derived from the heap's secret, the chunk's address and
 * its whole header (size and flags), so a write past the usable bytes
 * (overflow) and a write into the header in front of p (underflow, or
 * an overflow from the chunk before) both make it disagree.
 * It is written whenever a chunk is handed out or resized and checked on
 * free and realloc (and by brisk_heap_check for every live block).
 *
 * Under BRISK_HEAP_WIPE_CHECK (which implies BRISK_HEAP_WIPE) the bytes of
 * a free chunk other than its header, links and footer are zero, and every
 * byte handed out again is checked to still be zero: a write into freed
 * memory is reported when that memory is next handed out. */
#define CHUNK_CANARY_SIZE ((size_t)8)

/* Bytes at the end of a used chunk that are not the caller's. */
BRISK_INLINE size_t chunk_tail(const brisk_heap *heap)
{
    return (heap->flags & BRISK_HEAP_CANARY) ? CHUNK_CANARY_SIZE : 0;
}

/* ---- deferred merging (BRISK_HEAP_DEFER_MERGE) ---------------------------
 *
 * A freed chunk of an exact class (under SMALL_LIMIT) is kept as it is,
 * its header still USED so that no neighbour merges with it, and pushed
 * on its class's stack of deferred chunks while the stack holds fewer
 * than DEFER_PER_CLASS; the block map marks it DEFERRED. An alloc of that
 * exact size pops the most recent one. When an alloc finds no room, every
 * deferred chunk is released (merged) and the search runs again.
 *
 *   bookkeeping, just below base:
 *   | slots[0][0..11] | slots[1][0..11] | ... | slots[61][0..11] | counts[62] |
 *     chunk addresses, LIFO, counts[cls] of them valid
 *
 * The stacks live in the bookkeeping, not in the chunks: nothing a
 * program writes into a freed block can change which block an alloc gets
 * (no link to forge, nothing to check on the way out). */
/* 12: measured against 8 and 16 (docs/benchmarks.md). 8 left perl's
 * trace, which frees bursts of 10-byte blocks, at glibc's speed; 16 took
 * python3's utilization below 90%. */
#define DEFER_PER_CLASS 12u

/* The stacks and counts, at the bookkeeping's end (heap_bookkeeping_size
 * reserves them for a deferring heap only). */
#define DEFERRED_SIZE (SMALL_CLASSES * DEFER_PER_CLASS * sizeof(heap_chunk *) + \
                       ((SMALL_CLASSES + GRANULE - 1) & ~(GRANULE - 1)))
/* The DEFER_PER_CLASS slots of class cls. */
BRISK_INLINE heap_chunk **heap_deferred_slots(const brisk_heap *heap, size_t cls)
{
    return (heap_chunk **)(uintptr_t)heap->deferred + cls * DEFER_PER_CLASS;
}
BRISK_INLINE uint8_t *heap_deferred_counts(const brisk_heap *heap)
{
    return (uint8_t *)(uintptr_t)heap->deferred + SMALL_CLASSES * DEFER_PER_CLASS * sizeof(heap_chunk *);
}

/* Usable bytes of a used chunk of `size` bytes. */
BRISK_INLINE size_t chunk_usable(const brisk_heap *heap, size_t size)
{
    return size - CHUNK_HEADER_SIZE - chunk_tail(heap);
}

/* The chunk size serving a request of n bytes in this heap (room for the
 * canary included); false when it cannot be represented. */
BRISK_INLINE bool heap_chunk_size_for(const brisk_heap *heap, size_t n, size_t *out)
{
    size_t tail = chunk_tail(heap);
    if (n > SIZE_MAX - tail)
        return false;
    return chunk_size_for_request(n + tail, out);
}

/* Writes the canary of the used chunk c (its header already final). */
BRISK_HIDDEN void heap_canary_write(const brisk_heap *heap, heap_chunk *c);
/* Whether the used chunk c's canary still matches its header. */
BRISK_HIDDEN bool heap_canary_intact(const brisk_heap *heap, const heap_chunk *c);
/* The used chunk c's header just changed from old_head (its PREV_USED
 * bit, as its left neighbour was freed or handed out): rewrites its
 * canary for the new header, only if it matched the old one. */
BRISK_HIDDEN void heap_canary_refresh(const brisk_heap *heap, heap_chunk *c, size_t old_head);
/* The first non-zero byte in [from, from + len) of heap's region, or
 * NULL when all are zero. In a heap brisk mapped, spans from
 * HEAP_RESIDENCY_SPAN_MIN on are read only on their resident pages (the
 * others read zero: common/resident.c). */
BRISK_HIDDEN const void *heap_wipe_first_dirty(const brisk_heap *heap, const void *from, size_t len);
/* Zeroes [from, from + len) of heap's region (BRISK_HEAP_WIPE at free),
 * by the same rule: writing only resident pages of long spans. */
BRISK_HIDDEN void heap_wipe_span(const brisk_heap *heap, void *from, size_t len);
/* Below this, reading or zeroing a span costs less than asking the kernel
 * which of its pages are resident. */
#define HEAP_RESIDENCY_SPAN_MIN ((size_t)64 * 1024)
/* Reports a write into freed memory found when handing out the block at
 * payload (under the heap's lock: the handler must not call back into the
 * heap anyway). */
BRISK_HIDDEN void heap_report_write_after_free(const void *payload);
/* A fresh canary secret for a heap. */
BRISK_HIDDEN uint64_t heap_canary_key_new(const void *heap);

BRISK_INLINE size_t heap_capacity(const brisk_heap *heap) { return (size_t)(heap->end - heap->base); }
BRISK_INLINE size_t heap_wild_size(const brisk_heap *heap) { return (size_t)(heap->end - heap->top); }

/* The number of deferred blocks, and their bytes in *bytes. Summed over
 * the classes when asked (statistics, the self-check): the hot paths keep
 * only the per-class counts. */
BRISK_INLINE size_t heap_deferred(const brisk_heap *heap, size_t *bytes)
{
    size_t count = 0, sum = 0;
    if (heap->flags & BRISK_HEAP_DEFER_MERGE) {
        const uint8_t *counts = heap_deferred_counts(heap);
        for (size_t cls = 0; cls < SMALL_CLASSES; cls++) {
            count += counts[cls];
            sum += counts[cls] * chunk_class_floor(cls);
        }
    }
    *bytes = sum;
    return count;
}

/* Usable bytes of the live blocks. Not a counter the hot path keeps up:
 * every byte of [base, end) lies in a used chunk, a listed free chunk or
 * the wilderness, and a used chunk's usable bytes are its size less the
 * header (and the canary). */
BRISK_INLINE size_t heap_allocated(const brisk_heap *heap)
{
    size_t deferred_bytes;
    size_t live = heap->used_count - heap_deferred(heap, &deferred_bytes);
    return heap_capacity(heap) - heap_wild_size(heap) - heap->binned_bytes - deferred_bytes -
           live * (CHUNK_HEADER_SIZE + chunk_tail(heap));
}

/* The granule index of the block whose chunk starts at c. */
BRISK_INLINE size_t chunk_granule(const brisk_heap *heap, const heap_chunk *c)
{
    return (size_t)((const char *)c - heap->base) / GRANULE;
}

#define BLOCK_MAP_LIVE 1u
/* A listed free chunk starts here. A block freed and then merged into
 * its left neighbour or the wilderness leaves no mark: a second free of
 * it is refused as not a live block. */
#define BLOCK_MAP_FREED 2u
/* Freed, and kept aside unmerged (BRISK_HEAP_DEFER_MERGE). Both bits:
 * the LIVE bit says "a used chunk starts here" to the neighbours' checks
 * (its header keeps USED), the FREED bit says "not the caller's" to
 * free, realloc and usable_size. */
#define BLOCK_MAP_DEFERRED 3u
#define BLOCK_MAP_PER_WORD 32u
/* The live bits of a block-map word. */
#define BLOCK_MAP_LIVE_MASK UINT64_C(0x5555555555555555)

BRISK_INLINE unsigned block_map_get(const brisk_heap *heap, size_t g)
{
    return (unsigned)(heap->block_map[g / BLOCK_MAP_PER_WORD] >> (2 * (g % BLOCK_MAP_PER_WORD))) & 3u;
}

/* Whether no chunk starts at a granule in [from, to): every state there
 * is 0. The block map marks every chunk start but the wilderness's (a
 * used chunk LIVE, a deferred one DEFERRED, a listed free chunk FREED),
 * so a size read from a header is believed only when no start lies
 * inside the span it claims: what no write into the chunks can fake. A
 * loop over the map words the span covers (one per 512 bytes). */
BRISK_INLINE bool block_map_span_clear(const brisk_heap *heap, size_t from, size_t to)
{
    if (from >= to)
        return true;
    size_t w = from / BLOCK_MAP_PER_WORD, last = (to - 1) / BLOCK_MAP_PER_WORD;
    uint64_t low = ~(uint64_t)0 << (2 * (from % BLOCK_MAP_PER_WORD));
    uint64_t high = ~(uint64_t)0 >> (2 * (BLOCK_MAP_PER_WORD - 1 - (to - 1) % BLOCK_MAP_PER_WORD));
    if (w == last)
        return (heap->block_map[w] & low & high) == 0;
    /* The whole words between, or-ed together without an exit per word
     * (the compiler may use vector loads): a sound heap reads them all. */
    uint64_t any = (heap->block_map[w] & low) | (heap->block_map[last] & high);
    for (size_t i = w + 1; i < last; i++)
        any |= heap->block_map[i];
    return any == 0;
}

/* The states of granules g, g + 1, ... g + 31 as one word, granule g's
 * in the low two bits, wherever g falls in its map word: the checks of a
 * chunk under 512 bytes (its own state, nothing starting inside it, the
 * state of the chunk after it) are then one mask and compare. The map
 * has a spare word at its end, so the word after g's can always be read. */
BRISK_INLINE uint64_t block_map_window(const brisk_heap *heap, size_t g)
{
    const uint64_t *word = &heap->block_map[g / BLOCK_MAP_PER_WORD];
    unsigned shift = 2 * (unsigned)(g % BLOCK_MAP_PER_WORD);
    /* (x << 1) << (63 - shift): x << (64 - shift), and 0 for shift 0. */
    return (word[0] >> shift) | ((word[1] << 1) << (63 - shift));
}

/* A mask of the states of the first n granules of a window (1 <= n <= 32). */
BRISK_INLINE uint64_t block_map_window_mask(size_t n) { return ~(uint64_t)0 >> (64 - 2 * n); }

/* Whether granule g's state is `first` and the n - 1 after it are 0
 * (1 <= n <= 64, g + n at most the granule count): a chunk's own state
 * and nothing starting inside it, in one or two windows. */
BRISK_INLINE bool block_map_run_is(const brisk_heap *heap, size_t g, size_t n, uint64_t first)
{
    uint64_t low = block_map_window(heap, g);
    if (n <= BLOCK_MAP_PER_WORD)
        return (low & block_map_window_mask(n)) == first;
    return low == first && (block_map_window(heap, g + BLOCK_MAP_PER_WORD) &
                            block_map_window_mask(n - BLOCK_MAP_PER_WORD)) == 0;
}

/* block_map_run_is for a chunk of 1 <= n < 64 granules whose first window
 * the caller holds (low = block_map_window(heap, g)); `next` gets the
 * window that holds the state of granule g + n, the chunk after it, for
 * block_map_next_state: the run and the neighbour's state from the same
 * one or two windows. g + n is at most the granule count, so the second
 * window (at g + 32 <= g + n) is readable. Every exact class (chunks
 * under SMALL_LIMIT, at most 63 granules) is checked this way. */
BRISK_INLINE bool block_map_extent_is(const brisk_heap *heap, size_t g, uint64_t low, size_t n, uint64_t first,
                                      uint64_t *next)
{
    brisk_assert(n >= 1 && n < 2 * BLOCK_MAP_PER_WORD, "block_map_extent_is: 1 to 63 granules");
    if (n < BLOCK_MAP_PER_WORD) {
        *next = low;
        return (low & block_map_window_mask(n)) == first;
    }
    /* The second window: granules g + 32 .. g + 63, of which the first
     * n - 32 lie inside the chunk (none when n is 32). */
    uint64_t high = block_map_window(heap, g + BLOCK_MAP_PER_WORD);
    *next = high;
    return low == first && (high & (((uint64_t)1 << (2 * (n - BLOCK_MAP_PER_WORD))) - 1)) == 0;
}

/* block_map_extent_is for a chunk of 64 <= n < 96 granules (1 KiB up to
 * 1.5 KiB), in three windows instead of a loop over map words: `first`
 * at g, 0 in the 63 granules after it (the first two windows whole) and
 * in the first n - 64 of the third, which holds the state of granule
 * g + n for block_map_next_state. g + n is at most the granule count,
 * so the third window (at g + 64 <= g + n) is readable, as the second
 * is for block_map_extent_is. */
BRISK_INLINE bool block_map_extent3_is(const brisk_heap *heap, size_t g, size_t n, uint64_t first,
                                       uint64_t *next)
{
    brisk_assert(n >= 2 * BLOCK_MAP_PER_WORD && n < 3 * BLOCK_MAP_PER_WORD, "block_map_extent3_is: 64 to 95 granules");
    uint64_t high = block_map_window(heap, g + 2 * BLOCK_MAP_PER_WORD);
    *next = high;
    return block_map_window(heap, g) == first && block_map_window(heap, g + BLOCK_MAP_PER_WORD) == 0 &&
           (high & (((uint64_t)1 << (2 * (n - 2 * BLOCK_MAP_PER_WORD))) - 1)) == 0;
}

/* The state of granule g + n from the window block_map_extent_is handed
 * back for a chunk of n granules at g: at bit 2 (n mod 32) of either
 * window (the mod is free: a 64-bit shift count is taken mod 64). */
BRISK_INLINE unsigned block_map_next_state(uint64_t next, size_t n)
{
    return (unsigned)(next >> ((2 * n) % 64)) & 3u;
}

BRISK_INLINE void block_map_set(brisk_heap *heap, size_t g, unsigned state)
{
    brisk_assert(g < (size_t)(heap->end - heap->base) / GRANULE,
                 "block_map_set: granule outside the region");
    uint64_t *word = &heap->block_map[g / BLOCK_MAP_PER_WORD];
    unsigned shift = 2 * (unsigned)(g % BLOCK_MAP_PER_WORD);
    *word = (*word & ~((uint64_t)3 << shift)) | ((uint64_t)state << shift);
}

/* Changes granule g's state from `from`, which the caller has just read
 * or proved (the assertion restates it), to `to`: one xor of the map
 * word, without the mask-and-set of block_map_set. What the split and
 * merge paths use, where every state they change was checked first. */
BRISK_INLINE void block_map_flip(brisk_heap *heap, size_t g, unsigned from, unsigned to)
{
    brisk_assert(g < (size_t)(heap->end - heap->base) / GRANULE && block_map_get(heap, g) == from,
                 "block_map_flip: the granule's state is not the one the caller proved");
    heap->block_map[g / BLOCK_MAP_PER_WORD] ^= (uint64_t)(from ^ to) << (2 * (g % BLOCK_MAP_PER_WORD));
}

/* The first non-empty class at or above cls, or CLASS_NONE. O(1): one
 * word of the class map, then the summary word. */
BRISK_INLINE size_t class_find_from(const brisk_heap *heap, size_t cls)
{
    if (cls >= CLASS_COUNT_MAX)
        return CLASS_NONE;
    size_t word = cls / 64;
    uint64_t bits = heap->class_map[word] & (~(uint64_t)0 << (cls % 64));
    if (bits != 0)
        return word * 64 + (size_t)__builtin_ctzll(bits);
    uint64_t words = word + 1 < 64 ? heap->class_summary & (~(uint64_t)0 << (word + 1)) : 0;
    if (words == 0)
        return CLASS_NONE;
    word = (size_t)__builtin_ctzll(words);
    return word * 64 + (size_t)__builtin_ctzll(heap->class_map[word]);
}

/* The highest non-empty class, or CLASS_NONE. */
BRISK_INLINE size_t class_find_highest(const brisk_heap *heap)
{
    if (heap->class_summary == 0)
        return CLASS_NONE;
    size_t word = 63u - (size_t)__builtin_clzll(heap->class_summary);
    return word * 64 + 63u - (size_t)__builtin_clzll(heap->class_map[word]);
}

/* Bytes of bookkeeping (struct, list heads, the block map, the deferred
 * lists when `flags` has BRISK_HEAP_DEFER_MERGE) that a region of
 * `region_size` bytes needs in front of its chunks. A multiple of 16. */
BRISK_HIDDEN size_t heap_bookkeeping_size(size_t region_size, unsigned flags);

/* Whether the fence below the first chunk still holds its value: checked
 * before a call believes anything in the bookkeeping. */
BRISK_INLINE bool heap_fence_intact(const brisk_heap *heap)
{
    return *(const uint64_t *)(const void *)(heap->base - CHUNK_HEADER_SIZE) == heap->fence;
}

#endif /* BRISK_HEAP_INTERNAL_H */
