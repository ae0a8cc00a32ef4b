/*
 * Internals of the process-wide allocator (malloc and friends).
 *
 * Memory comes from the OS in 4 MiB segments aligned to 4 MiB, so the
 * segment of any block is found by masking its address. A segment is cut
 * into equal pages; slot 0 holds the segment's metadata (never user data),
 * so no block ever starts at a segment boundary and metadata is never next
 * to a block header an overflow could reach (there are no block headers).
 *
 *   small segment (blocks <= 8 KiB): 64 slots of 64 KiB
 *
 *   B (4 MiB aligned)
 *   0     16K       ~28K        64K       128K                       4M
 *   +------+---------+-----------+---------+-----------  ...  --------+
 *   |guard | segment | (unused)  | page 1  | page 2          page 63  |
 *   |NONE  | header  |           | blocks  | blocks                   |
 *   +------+---------+-----------+---------+-----------  ...  --------+
 *   \________ slot 0 ___________/
 *            |
 *            +-- struct segment at B + META_GUARD: owner heap, free slot
 *                mask and the page descriptors (struct page) of every
 *                slot (about 12 KiB; the rest of slot 0 is never touched).
 *
 *   medium segment (8 KiB < blocks <= 256 KiB): 8 slots of 512 KiB, same
 *   slot-0 layout (guard, then the header).
 *
 *   large block (> 256 KiB, or an alignment the pages cannot give): its
 *   own mapping, starting at a 4 MiB boundary B, with the same guard and
 *   a large_header right after it:
 *
 *   B (4 MiB aligned)                    B + offset          B + map_size
 *   +-------+--------------+------------+------------------------------+
 *   | guard | large_header | (rest of   | the block (offset >= front,  |
 *   | NONE  | at B + GUARD |  its page) |  aligned), up to the end     |
 *   +-------+--------------+------------+------------------------------+
 *
 * Why the guard: whatever lies just below a 4 MiB boundary belongs to
 * someone else, and may be a block of ours (a large block whose mapping
 * ends there, or the last page of another segment). An overflow running
 * up from there faults on the guard's first byte instead of rewriting
 * page descriptors (free-list heads, link keys, free marks) or a large
 * header. META_GUARD is 16 KiB so that it is whole pages with 4 KiB and
 * 16 KiB pages; with larger pages (64 KiB) it cannot be protected alone,
 * and is left accessible and unused (meta_guard_bytes is 0; the layout
 * stays the same, so the fast paths do not depend on the page size).
 *
 * What the guard does not cover: an underflow from slot 1's first block
 * down through the unused end of slot 0 (64 KiB - META_GUARD -
 * sizeof(segment), about 36 KiB in a small segment) into the header, and
 * an underflow of a large block of up to one page (its header lies in the
 * page before the block): large_free checks the header's seal and list
 * links before trusting them (large.c).
 *
 * A block start p always has its metadata region B at (p - 1) rounded
 * down to 4 MiB: for pages the segment at B + META_GUARD, for large
 * blocks the header at B + META_GUARD (a large block aligned to >= 4 MiB
 * starts exactly one segment past B). Code never casts B itself:
 * segment_of_meta, large_header_of_meta and segment_base convert.
 *
 * The segment map is one byte per 4 MiB of the 48-bit address space
 * (64 MiB reserved, touched only where we own memory), saying what, if
 * anything, of ours starts there. free() validates every pointer against
 * it before reading any metadata.
 *
 * Each page keeps three free lists (as in mimalloc's sharded free lists):
 *   free        blocks malloc pops from (owner only, no lock, no atomic)
 *   local_free  blocks the owner freed (owner only)
 *   thread_free blocks other threads freed, pushed with one CAS; the owner
 *               takes the whole list with one exchange when `free` and
 *               `local_free` run dry.
 * Next pointers inside free blocks are encoded with a per-page secret
 * and every link is validated (NULL, or inside the carved part of its
 * page, 16-byte aligned) before the block holding it is handed out.
 *
 * A free block (on any of the three lists, or carved and never handed
 * out) carries its page's free mark, a per-page secret, in its second
 * word; malloc checks the mark is still there when it hands the block out
 * (anything else was written after free) and zeroes both words:
 *
 *   free block   | link (encoded) | free_mark | ... (program's old bytes)
 *   live block   | 0              | 0         | ... (then the program's)
 *
 * Double free, in O(1): a free block's second word is its page's mark,
 * and a live block's is only if the program wrote exactly that value,
 * which it cannot know without reading freed memory. So free compares
 * one word: if it is not the mark the free proceeds; if it is, the owner
 * confirms by walking the page's lists (bounded by the page's block
 * count) and another thread reports at once.
 *
 * Block starts are checked with one multiply and one compare (a
 * divisibility test by multiplication, as in Lemire, Kaser and Kurz,
 * "Faster remainder by direct computation"): with m = floor(2^64 / d) + 1
 * for block size d <= 2^18, so that m * d = 2^64 + e with 1 <= e <= d,
 * and any 32-bit offset n:
 *   n = k * d        ->  n * m mod 2^64 = k * e          (< 2^32)
 *   n = k * d + r    ->  n * m mod 2^64 >= m > 2^46      (0 < r < d)
 * so n is the start of one of the first `capacity` blocks iff
 * n * m mod 2^64 < capacity * e, the page's block_limit (0 while the page
 * is not in use). An offset from below the page's start (the hardened
 * canary pad) is a 32-bit value near 2^32: a non-multiple, or a multiple
 * with k >= capacity, rejected alike. tests/test_block_start.c checks
 * the test against division for every class.
 */
#ifndef BRISK_MALLOC_INTERNAL_H
#define BRISK_MALLOC_INTERNAL_H

#include "common/internal.h"

#include <pthread.h>
#include <string.h>

/* Hardening checks (pointer validation, double-free detection, free-list
 * encoding). On unless built with -DBRISK_CHECKS=0 for comparison. */
#ifndef BRISK_CHECKS
#define BRISK_CHECKS 1
#endif

/* ---- geometry ------------------------------------------------------- */

#define SEGMENT_SHIFT 22
#define SEGMENT_SIZE ((size_t)1 << SEGMENT_SHIFT)
#define SEGMENT_MASK (SEGMENT_SIZE - 1)
#define SMALL_PAGE_SHIFT 16  /* 64 KiB pages */
#define MEDIUM_PAGE_SHIFT 19 /* 512 KiB pages */
#define SEGMENT_SLOTS_MAX 64
#define ADDRESS_BITS 48
#define SEGMAP_ENTRIES ((size_t)1 << (ADDRESS_BITS - SEGMENT_SHIFT))

/* Inaccessible bytes at the start of every 4 MiB metadata region (see
 * the top); the segment or large header follows them. A compile-time
 * constant, so the fast paths fold it into their addressing. */
#ifndef META_GUARD
#define META_GUARD ((size_t)16384)
#endif
_Static_assert(META_GUARD % 64 == 0, "the segment header must stay cache-line aligned");

/* Size classes: 16..128 by 16, then 8 classes per doubling up to 256 KiB,
 * so no class is more than 12.5% larger than the one below it (above
 * 128 bytes). Classes 0..SMALL_CLASS_LAST live in small pages. */
#define CLASS_COUNT 96
#define SMALL_CLASS_LAST 55 /* 8 KiB */
#define SMALL_SIZE_MAX ((size_t)8192)
#define MEDIUM_SIZE_MAX ((size_t)256 * 1024)

/* The largest request we even try to map: more than the address space. */
#define REQUEST_MAX (((size_t)1 << 47) - 2 * SEGMENT_SIZE)

/* What the segment map says about a 4 MiB slot of address space. */
enum {
    SEGMAP_NONE = 0,
    SEGMAP_PAGES = 1,       /* a small or medium segment starts here */
    SEGMAP_LARGE = 2,       /* the header of a live or cached large block */
    SEGMAP_LARGE_FREED = 3  /* a large block we freed and unmapped */
};

typedef struct block {
    uintptr_t next_encoded;
    uintptr_t free_mark;    /* the page's free_mark while free, 0 when
                               handed out (see the top) */
} block;

struct heap;

typedef struct page {
    /* line 1: fixed while the page is in use (carved grows when blocks
     * are carved); read by every malloc and by frees from any thread */
    uintptr_t start;        /* first block (the slot's start) */
    uint64_t block_mul;     /* floor(2^64 / block_size) + 1 */
    uint64_t block_limit;   /* capacity * (block_mul * block_size - 2^64):
                               see the top; 0 while not in use */
    uintptr_t link_key;     /* free-list encoding secret */
    uintptr_t free_mark;    /* second word of every free block */
    uint32_t carved;        /* capacity * block_size: offsets below are
                               blocks; 0 while the slot is not in use */
    uint32_t carved_units;  /* carved / 16, for the link range test */
    uint32_t block_size;
    uint16_t size_class;
    uint8_t in_use;         /* slot holds a page of blocks */
    uint8_t fresh;          /* the slot's memory was never used since
                               it was mapped when the page was set up:
                               blocks carved from it are zero without a
                               look. Under wipe every other slot is
                               checked to be zero as it is carved (a
                               slot returned to the OS reads zero too,
                               unless written after free since) */
    uint32_t slot;          /* index in its segment */
    /* line 2: written by the owner thread only */
    block *free __attribute__((aligned(64)));
    block *local_free;
    uint32_t used;          /* blocks handed out and not yet back on the
                               owner's lists (includes thread_free ones) */
    uint8_t in_full;        /* on the heap's full list of its class */
    uint32_t span;          /* reserved * block_size */
    uint32_t capacity;      /* blocks carved so far */
    uint32_t reserved;      /* blocks that fit */
    struct page *next, *prev; /* heap queue or full list */
    uint64_t freed_at_ms;   /* when the slot was freed (for decay) */
    /* line 3: pushed to by other threads (one CAS per remote free), so
     * their frees never take the owner's line 2 away from it. The word
     * holds the list's head (48 bits) and its length (16 bits): the owner
     * takes the list with one exchange and never walks it. */
    uintptr_t thread_free __attribute__((aligned(64)));
    /* Under wipe, the layout of the slot's last page when it emptied
     * (harden.c): a write after free found when the slot is carved again
     * is reported with the start of the block it hit. Written and read
     * only then; kept across uses of the slot, lost when its segment is
     * formatted again. */
    uintptr_t emptied_start;      /* its first block */
    uint32_t emptied_carved;      /* bytes carved from emptied_start */
    uint32_t emptied_block_size;  /* 0: nothing known */
} __attribute__((aligned(64))) page; /* three whole cache lines */

_Static_assert(offsetof(page, free) == 64, "page line 1 outgrew its cache line");

typedef struct segment {
    uint32_t magic;         /* SEGMENT_MAGIC (large_header has LARGE_MAGIC
                               at the same place) */
    uint32_t page_shift;
    uint32_t slot_count;    /* slots including slot 0 (the header) */
    uint32_t pages_in_use;
    struct heap *owner;     /* atomic; NULL while abandoned or cached */
    uint64_t free_slots;    /* bit i: slot i is free (bit 0 never) */
    uint64_t dirty_slots;   /* free slots whose memory may be resident
                               (not yet returned by a purge) */
    uint64_t returned_slots; /* free slots returned by a purge since
                               they were last used: they read zero, but
                               a write after free can make them resident
                               again, so the wipe checks them too */
    struct segment *next, *prev;         /* owner's list, abandoned list
                                            or the segment cache */
    struct segment *all_next, *all_prev; /* every live segment */
    uint64_t freed_at_ms;   /* when it entered the cache */
    page pages[SEGMENT_SLOTS_MAX];
} segment;

/* The guard and the header must fit in slot 0 of a small segment (the
 * smallest slot 0), and slot 1 must start on a page boundary past them. */
_Static_assert(META_GUARD + sizeof(segment) <= ((size_t)1 << SMALL_PAGE_SHIFT),
               "segment guard and header do not fit in slot 0");

typedef struct large_header {
    uint32_t magic;
    uint32_t cached;        /* 1 while in the cache, 0 while live */
    uintptr_t block;        /* what malloc returned */
    size_t map_size;        /* bytes mapped from the region's base (the
                               guard) on */
    size_t usable;          /* bytes the program may use from block on */
    uint64_t seal;          /* large_seal_of: magic..usable and the
                               header's address, keyed by the process
                               secret; checked before any of them is
                               trusted (an underflow can reach them) */
    struct large_header *next, *prev; /* live list (safe-unlinked) */
} large_header;

_Static_assert(offsetof(segment, magic) == offsetof(large_header, magic),
               "the magic is read before the kind of header is known");

#define LARGE_MAGIC 0x6c617267u
#define SEGMENT_MAGIC 0x7365676du

typedef struct page_queue {
    page *first, *last;
} page_queue;

/* Requests up to this size find their page in one lookup by size. */
#define DIRECT_SMALL_MAX ((size_t)1024)
#define DIRECT_SMALL_COUNT (DIRECT_SMALL_MAX / 16 + 1)

typedef struct heap {
    page *direct_small[DIRECT_SMALL_COUNT]; /* by (size + 15) / 16 */
    page *direct[CLASS_COUNT]; /* current page per class */
    page_queue queues[CLASS_COUNT];
    page_queue full[CLASS_COUNT]; /* pages with no free block when last
                                     seen, per class */
    segment *segments;         /* segments this heap owns */
    uint32_t purge_tick;
    uint64_t last_purge_ms;
    uintptr_t rng;             /* page keys come from here */
    struct heap *pool_next;    /* free heaps, or every live heap */
    struct heap *all_next, *all_prev;
    /* statistics, owner-only counters */
    uint64_t class_requests[CLASS_COUNT];
    uint64_t large_bytes_requested;
    uint64_t large_requests;
} heap;

/* ---- options (options.c) ---------------------------------------------- */

typedef struct brisk_options {
    int stats;          /* print statistics at exit */
    int stats_fd;       /* where: a copy of stderr taken when the options
                           were read, since programs such as coreutils
                           close fd 2 in their own exit handlers; -1 for
                           fd 2 itself */
    int verbose;        /* report OS memory events on stderr */
    uint64_t decay_ms;  /* unused memory kept this long before release */
    size_t large_cache; /* bytes of freed large blocks kept for reuse */
} brisk_options;

BRISK_HIDDEN extern brisk_options malloc_options;
BRISK_HIDDEN void options_read(void);

/* ---- hardened level (harden.c, docs/security.md) ----------------------- *
 *
 * BRISK_OPTIONS=hardened turns on every part; each is also selectable
 * alone (canary, wipe, guard, delay). harden_flags is written once, while
 * options are read at the first allocation, and never again: the default
 * path pays one well-predicted test of it per call.
 *
 * Canary layout of a page (every slot, free or live, always ends in the
 * canary of its own last word's address; the page's first slot is left
 * unused as a pad so that the first block also has a canary in front):
 *
 *   slot base   start                                  start + span
 *   | pad   |C| block 0          |C| block 1          |C| ...
 *             ^ usable = block_size - 8 ^
 *
 *   A write past a block's usable bytes breaks the canary after it; one
 *   before its start breaks the canary in front (the previous slot's, or
 *   the pad's). Both are checked when the block is freed. */
#define HARDEN_CANARY 0x1u /* canaries after (and so before) page blocks */
#define HARDEN_WIPE 0x2u   /* wipe on free, check still wiped on reuse */
#define HARDEN_GUARD 0x4u  /* guard pages around large blocks */
#define HARDEN_DELAY 0x8u  /* delayed, randomized reuse of freed blocks */
#define HARDEN_ALL (HARDEN_CANARY | HARDEN_WIPE | HARDEN_GUARD | HARDEN_DELAY)
/* The parts that work on every block (malloc.c diverts to harden.c only
 * for these; guard pages are large.c's alone). */
#define HARDEN_BLOCK_PARTS (HARDEN_CANARY | HARDEN_WIPE | HARDEN_DELAY)
#define HARDEN_CANARY_SIZE ((size_t)8)

BRISK_HIDDEN extern unsigned harden_flags;

/* Parses one BRISK_OPTIONS item naming a hardening part ("hardened",
 * "canary", "wipe", "guard", "delay"); false when it is not one. */
BRISK_HIDDEN bool harden_option(const char *name, size_t len);

/* The entry points the public functions divert to when harden_flags has
 * a HARDEN_BLOCK_PARTS bit (malloc.c). They add the checks around the unhardened allocator. */
BRISK_HIDDEN void *harden_alloc(size_t size, size_t alignment, bool zero);
BRISK_HIDDEN void harden_free(void *p);
BRISK_HIDDEN void *harden_realloc(void *p, size_t size);
BRISK_HIDDEN size_t harden_usable_size(const void *p);

/* The unhardened allocator, for harden.c (malloc.c). */
BRISK_HIDDEN void *malloc_raw(size_t size, size_t alignment, bool zero);
/* malloc_raw for the common case (no alignment, no zeroing): the
 * unhardened fast path, without malloc_raw's tests. */
BRISK_HIDDEN void *malloc_fast_raw(size_t size);
BRISK_HIDDEN void free_raw(void *p);
/* Frees the block p of page pg, already validated as a live block. */
BRISK_HIDDEN void free_validated(page *pg, void *p);
BRISK_HIDDEN size_t usable_raw(const void *p);

/* Hooks in the page and large-block code, each called only when its flag
 * is set. */
BRISK_HIDDEN void harden_page_setup(page *pg);       /* segment.c: pad */
/* page.c: canaries of new blocks; under wipe, a slot used before checked
 * to be zero. false: written after free, reported, zeroed (the handler
 * returned), and the malloc that carved fails. */
BRISK_HIDDEN bool harden_blocks_carved(page *pg, uintptr_t first, uint32_t count);
/* segment.c, under wipe: a page that emptied is checked for writes after
 * free and left wholly zero before its slot goes back to its segment. */
BRISK_HIDDEN void harden_page_emptied(page *pg);
BRISK_HIDDEN void harden_thread_exit(void);          /* thread.c */
/* large.c: zeroes [from, to) (writing only what is not zero already),
 * and whether [from, to) is all zero; from 16-aligned, to 8-aligned. */
BRISK_HIDDEN void harden_wipe_span(uintptr_t from, uintptr_t to);
BRISK_HIDDEN bool harden_span_zero(uintptr_t from, uintptr_t to);
/* malloc_check.c: every carved slot's canary (and the pad's) intact. */
BRISK_HIDDEN int harden_check_page(const page *pg);
/* malloc_check.c, under wipe: 0 when the free slot `slot` of seg reads
 * zero, else the address of its first byte that does not (for the
 * report: the program's stale pointer is near it). */
BRISK_HIDDEN uintptr_t harden_free_slot_dirty(const segment *seg, unsigned slot);

/* Bytes at the front of a page's slot left unused (the canary pad). */
static inline size_t harden_page_front(size_t block_size)
{
    return (harden_flags & HARDEN_CANARY) ? block_size : 0;
}

/* ---- global state (thread.c) ------------------------------------------ */

BRISK_HIDDEN extern uint8_t *segment_map;
BRISK_HIDDEN extern uintptr_t segmap_entries; /* 0 until segment_map is mapped */
BRISK_HIDDEN extern pthread_mutex_t global_lock;
BRISK_HIDDEN extern uintptr_t process_secret;
BRISK_HIDDEN extern page empty_page;
BRISK_HIDDEN extern _Thread_local heap *tls_heap
    __attribute__((tls_model("initial-exec")));

BRISK_HIDDEN heap *heap_init_slow(void);
BRISK_HIDDEN uintptr_t random_next(uintptr_t *state);
BRISK_HIDDEN void global_lock_take(void);
BRISK_HIDDEN void global_lock_drop(void);
/* Every live heap (under global_lock), for statistics and checking. */
BRISK_HIDDEN heap *heap_list_first(void);

/* ---- size classes ------------------------------------------------------ */

static inline unsigned size_class_of(size_t size)
{
    if (size <= 128)
        return size == 0 ? 0 : (unsigned)((size - 1) >> 4);
    size_t s = size - 1;
    unsigned k = 63u - (unsigned)__builtin_clzll((unsigned long long)s);
    return 8u + (k - 7u) * 8u + (unsigned)((s >> (k - 3u)) & 7u);
}

static inline size_t class_block_size(unsigned cls)
{
    if (cls < 8)
        return ((size_t)cls + 1) * 16;
    unsigned k = 7u + (cls - 8u) / 8u;
    unsigned i = (cls - 8u) % 8u;
    return ((size_t)1 << k) + ((size_t)(i + 1) << (k - 3u));
}

/* Installs pg (or &empty_page) as the current page of class cls, in both
 * lookup tables. */
static inline void heap_direct_set(heap *h, unsigned cls, page *pg)
{
    h->direct[cls] = pg;
    size_t bsize = class_block_size(cls);
    if (bsize <= DIRECT_SMALL_MAX) {
        size_t first = cls == 0 ? 0 : class_block_size(cls - 1) / 16 + 1;
        for (size_t i = first; i <= bsize / 16; i++)
            h->direct_small[i] = pg;
    }
}

/* ---- free-list encoding -------------------------------------------------- */

static inline uintptr_t rotl_word(uintptr_t x, unsigned r)
{
    r &= 63u;
    return r == 0 ? x : (x << r) | (x >> (64u - r));
}

static inline uintptr_t rotr_word(uintptr_t x, unsigned r)
{
    r &= 63u;
    return r == 0 ? x : (x >> r) | (x << (64u - r));
}

/* stored = rotl(next ^ link_key, 23): without the page's key a written
 * value decodes to an unpredictable address, and every decoded pointer
 * is validated on pop anyway (inside the page's carved part, 16-byte
 * aligned), so even a forged one can only name an address in the same
 * page. The rotation moves a partial overwrite of the stored word's low
 * bytes (the usual use-after-free write) into the decoded pointer's high
 * bits, where the validation catches it. Two one-cycle operations. */
#define LIST_ROTATE 23u

static inline uintptr_t list_encode(const page *pg, const block *next)
{
#if BRISK_CHECKS
    return rotl_word((uintptr_t)next ^ pg->link_key, LIST_ROTATE);
#else
    (void)pg;
    return (uintptr_t)next;
#endif
}

static inline block *list_decode(const page *pg, uintptr_t stored)
{
#if BRISK_CHECKS
    return (block *)(rotr_word(stored, LIST_ROTATE) ^ pg->link_key);
#else
    (void)pg;
    return (block *)stored;
#endif
}

/* ---- segments and pages ------------------------------------------------- */

/* The base B of the metadata region of a block starting at p (see the
 * top): 4 MiB aligned, its first META_GUARD bytes the guard. */
static inline uintptr_t meta_of(const void *p)
{
    return ((uintptr_t)p - 1) & ~(uintptr_t)SEGMENT_MASK;
}

/* The segment header, or the large header, of the region based at meta:
 * past the guard. */
static inline segment *segment_of_meta(uintptr_t meta)
{
    return (segment *)(meta + META_GUARD);
}

static inline large_header *large_header_of_meta(uintptr_t meta)
{
    return (large_header *)(meta + META_GUARD);
}

/* The region's base (the guard's start, what is mapped and unmapped, and
 * what slot offsets count from) of a segment or large header. */
static inline uintptr_t segment_base(const segment *seg)
{
    return (uintptr_t)seg - META_GUARD;
}

static inline uintptr_t large_base(const large_header *hdr)
{
    return (uintptr_t)hdr - META_GUARD;
}

/* META_GUARD when the page size divides it and the guard is protected,
 * else 0 (the guard bytes are then ordinary accessible memory no one
 * uses): set once at start-up, before the first segment (thread.c). */
BRISK_HIDDEN extern size_t meta_guard_bytes;

/* segmap_entries is 0 until the map exists (thread.c), then
 * SEGMAP_ENTRIES: one compare rejects both an address above the 48-bit
 * space and any free before the first allocation (of a foreign pointer,
 * to be reported, not followed). */
static inline unsigned segmap_kind(uintptr_t meta)
{
    uintptr_t index = meta >> SEGMENT_SHIFT;
    if (brisk_unlikely(index >= __atomic_load_n(&segmap_entries, __ATOMIC_ACQUIRE)))
        return SEGMAP_NONE;
    return __atomic_load_n(&segment_map[index], __ATOMIC_RELAXED);
}

/* The page descriptor of the slot holding p: slots count from the
 * region's base, not from the header past the guard. */
static inline page *page_of(segment *seg, const void *p)
{
    size_t slot = ((uintptr_t)p - segment_base(seg)) >> seg->page_shift;
    return &seg->pages[slot];
}

/* thread_free word: head pointer and list length. */
#define THREAD_FREE_COUNT_SHIFT ADDRESS_BITS
static inline block *thread_free_head(uintptr_t word)
{
    return (block *)(word & (((uintptr_t)1 << THREAD_FREE_COUNT_SHIFT) - 1));
}

static inline uint32_t thread_free_count(uintptr_t word)
{
    return (uint32_t)(word >> THREAD_FREE_COUNT_SHIFT);
}

/* Whether off = p - pg->start, for a p inside the page's slot, is the
 * start of a carved block: one multiply and one compare (see the top).
 * Only the low 32 bits of off are used, so a p outside the slot can
 * alias a block start: callers holding such a pointer test it against
 * the slot (or carved) first. */
static inline bool page_block_start(const page *pg, uintptr_t off)
{
    return (uint64_t)(uint32_t)off * pg->block_mul < pg->block_limit;
}

/* block_mul and the block_limit of `capacity` blocks, for block size d
 * (segment.c, page.c, malloc_check.c). */
static inline uint64_t block_mul_of(size_t d)
{
    uint64_t q = UINT64_MAX / d;
    if (UINT64_MAX % d == d - 1)
        q++; /* d divides 2^64 */
    return q + 1;
}

static inline uint64_t block_limit_of(uint64_t mul, size_t d, uint32_t capacity)
{
    return (uint64_t)capacity * (mul * (uint64_t)d); /* e = m * d mod 2^64 */
}

/* Whether off (from the page's start) is 16-byte aligned and inside the
 * carved part, in one compare: rotating right by 4 moves any of the low
 * four bits to the top, making the value larger than any carved / 16. */
static inline bool page_link_in_range(const page *pg, uintptr_t off)
{
    return rotr_word(off, 4) < (uintptr_t)pg->carved_units;
}

/* Whether a block's second word is its page's free mark (see the top). */
static inline bool block_looks_free(const page *pg, const block *b)
{
    return __atomic_load_n(&b->free_mark, __ATOMIC_RELAXED) == pg->free_mark;
}

/* Page descriptors lie inside their segment's header, in the region's
 * first 64 KiB: masking finds the base. */
static inline segment *page_segment(const page *pg)
{
    return segment_of_meta((uintptr_t)pg & ~(uintptr_t)SEGMENT_MASK);
}

/* page.c */
BRISK_HIDDEN void *page_pop_corrupt(page *pg, block *b);
BRISK_HIDDEN bool page_has_free_block(page *pg, const block *b);
BRISK_HIDDEN void free_suspect(page *pg, block *b);
BRISK_HIDDEN void *malloc_generic(heap *h, unsigned cls);
BRISK_HIDDEN void page_free_slow(page *pg, heap *h);
BRISK_HIDDEN bool page_collect(page *pg);
BRISK_HIDDEN void page_queue_remove(page_queue *q, page *pg);
BRISK_HIDDEN void page_queue_push_back(page_queue *q, page *pg);
BRISK_HIDDEN void heap_adopt_pages(heap *h, segment *seg);
BRISK_HIDDEN void block_report_bad_free(page *pg, const void *p);

/* segment.c */
BRISK_HIDDEN page *segment_page_alloc(heap *h, unsigned cls);
BRISK_HIDDEN void segment_page_free(heap *h, page *pg);
BRISK_HIDDEN bool heap_purge(heap *h, bool force);
BRISK_HIDDEN void heap_purge_tick(heap *h);
BRISK_HIDDEN void heap_abandon_segments(heap *h);
BRISK_HIDDEN bool segment_cache_purge(uint64_t now, bool force);
BRISK_HIDDEN segment *segment_list_first(void);
BRISK_HIDDEN size_t segment_mapped_bytes(void);

/* large.c */
BRISK_HIDDEN void *large_alloc(size_t size, size_t alignment, bool zero);
BRISK_HIDDEN void large_free(large_header *hdr, const void *p);
/* The header's magic and seal are right: none of its fields was written
 * by anyone but large.c (global_lock held, or the block live and owned
 * by the caller). */
BRISK_HIDDEN bool large_header_intact(const large_header *hdr);
BRISK_HIDDEN bool large_cache_purge(uint64_t now, bool force);
BRISK_HIDDEN bool large_try_resize(large_header *hdr, size_t size);
BRISK_HIDDEN size_t large_live_stats(size_t *count);
BRISK_HIDDEN size_t large_cached_bytes(void);
BRISK_HIDDEN int large_check(void);

/* stats.c */
BRISK_HIDDEN void stats_merge_heap(const heap *h);
BRISK_HIDDEN void stats_note_mapped(size_t bytes, bool mapped);
BRISK_HIDDEN void stats_print(void);
BRISK_HIDDEN void verbose_note(const char *what, size_t bytes);

/* formatting without stdio (stats.c) */

/* Pops the first block of a page whose free list is not empty: the
 * malloc fast path. With checks, the popped block must still carry the
 * free mark, and its link must read as a free block's (NULL, or 16-byte
 * aligned in the carved part), before the block is handed out. A link
 * nudged by a write after free (flipping a bit needs no secret) names the
 * middle of a block or a live neighbour, where the words found are user
 * data (or a live block's zeroed words): that block's pop is refused
 * before its memory is handed out, for want of the mark, and its link
 * decodes outside the page with probability 1 - carved / 2^48 anyway.
 *
 * The block b itself needs no range check: every value pg->free takes
 * was checked before. It is a `next` checked by the previous pop, the
 * head of local_free or thread_free (a block free validated), or a block
 * page_extend just carved (see page.c). Both words are then zeroed, so a
 * live block never looks free to the double-free check and shows no
 * link. */
BRISK_INLINE void *page_pop(page *pg)
{
    block *b = pg->free;
#if BRISK_CHECKS
    block *next = list_decode(pg, b->next_encoded);
    /* In range first: the end of a list (NULL) is the rare case. */
    if (brisk_unlikely((!page_link_in_range(pg, (uintptr_t)next - pg->start) && next != NULL) ||
                       b->free_mark != pg->free_mark))
        return page_pop_corrupt(pg, b);
    pg->free = next;
    b->next_encoded = 0;
    b->free_mark = 0;
#else
    pg->free = list_decode(pg, b->next_encoded);
#endif
    pg->used++;
    return b;
}

#endif /* BRISK_MALLOC_INTERNAL_H */
