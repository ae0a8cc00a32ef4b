/*
 * The process allocator's internal interface: prototypes grouped by the
 * file that defines them, and the inline helpers of the fast paths. Types
 * and geometry are in malloc/types.h; docs/process.md explains the design.
 *
 * Map of src/malloc:
 *   malloc.c   the public entry points and the fast paths
 *   page.c     page free lists and the malloc slow path
 *   segment.c  segments: pages in and out, abandonment, purge and decay
 *   large.c    blocks over 256 KiB, each its own mapping; the large cache
 *   segmap.c   the segment map that validates every freed pointer
 *   process.c  start-up, the global lock, the process secret, fork
 *   thread.c   thread heaps: creation and thread exit
 *   harden.c   the hardened level's parts (canary, wipe, guard, delay)
 *   options.c  BRISK_OPTIONS;  stats.c statistics;  check.c the self-check
 *   profile.c  sampled heap profiling (BRISK_OPTIONS=profile)
 *
 * Where each design choice is explained (docs/process.md): the metadata
 * region of a block and the segment map ("Memory layout"), the three free
 * lists of a page, the encoded links and the free mark ("Fast paths",
 * "What is checked"), the double-free test ("What is checked").
 */
#ifndef BRISK_MALLOC_INTERNAL_H
#define BRISK_MALLOC_INTERNAL_H

#include "malloc/types.h"

#include <pthread.h>
#include <string.h>

BRISK_HIDDEN extern brisk_options malloc_options;
BRISK_HIDDEN void options_read(void);

/* ---- hardened level (harden.c) ----------------------------------------- */

BRISK_HIDDEN extern unsigned harden_flags;

/* Parses one BRISK_OPTIONS item naming a hardening part ("hardened",
 * "canary", "wipe", "guard", "delay"); false when it is not one. */
BRISK_HIDDEN bool harden_option(const char *name, size_t len);

/* ---- the hooks of the one path ----------------------------------------
 *
 * malloc, free and realloc have one path (malloc.c). Once it knows the
 * block's page, one predicted test of harden_flags calls the parts that
 * are on; each part is named here once and switched on in one place:
 *   canary  canary_request (the bytes a request asks of the pages) at the
 *           start of malloc; harden_free_block and harden_canaries_verify
 *           (realloc) check the canaries;
 *   wipe    harden_free_block wipes, harden_hand_out checks a block
 *           handed out is still zero;
 *   delay   harden_free_block puts the block in the thread's quarantine;
 *   guard   large blocks only (large.c).
 * Large blocks' parts are large.c's, behind the same flags. */

/* The bytes after a page block's usable size: its canary, if any. */
static inline size_t block_tail(unsigned flags)
{
    return (flags & HARDEN_CANARY) ? HARDEN_CANARY_SIZE : 0;
}

/* The bytes to ask of the pages for a request of `size` under canary:
 * the canary added. The canary must not be a block's second word, which
 * the free lists use while the block is free (the free mark): canaried
 * requests get 32-byte blocks at least. A request past MEDIUM_SIZE_MAX is
 * a large block, which carries no canary. */
static inline size_t canary_request(size_t size)
{
    if (size > MEDIUM_SIZE_MAX)
        return size;
    return size + HARDEN_CANARY_SIZE <= 16 ? 17 : size + HARDEN_CANARY_SIZE;
}

/* Under wipe, the page block p of pg on its way out (p NULL: its pop
 * found the list corrupted, reported): checks that it is still zero (its
 * whole body for calloc, `whole`, else as much as WIPE_FULL_CHECK_MAX
 * says). Returns p, or NULL (errno ENOMEM) after reporting. */
BRISK_HIDDEN void *harden_hand_out(page *pg, void *p, bool whole);
/* Under canary, wipe or delay, the free of the live, validated block p
 * of pg: its canaries checked (a broken one reported, and the block left
 * live), its body wiped, then the block put in the thread's quarantine
 * (delay) or on its page's lists. */
BRISK_HIDDEN void harden_free_block(page *pg, void *p);
/* Under canary: whether both canaries of the live block p of pg are
 * intact; false after reporting which is not. */
BRISK_HIDDEN bool harden_canaries_verify(const page *pg, const void *p);
/* free's last step, for harden_free_block and blocks leaving the
 * quarantine: puts the live, validated block p of pg on its page's lists
 * (malloc.c). */
BRISK_HIDDEN void free_block_to_page(page *pg, void *p);

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
/* segment.c, in a forked child: an in-use page of a thread the fork left
 * behind, just rebuilt, gets back what that thread may have been halfway
 * through writing: its canaries, and under wipe a zero uncarved part. */
BRISK_HIDDEN void harden_orphan_page_rebuilt(page *pg);
/* thread.c, under delay: the thread's quarantine is emptied (its blocks
 * freed) while its thread heap still exists. */
BRISK_HIDDEN void harden_thread_exit(void);
/* process.c's fork child handler, under delay, global_lock held: the
 * quarantine that survived the fork gets a generator of its own. */
BRISK_HIDDEN void harden_fork_child(void);
/* large.c: zeroes [from, to) (writing only what is not zero already),
 * and whether [from, to) is all zero; from 16-aligned, to 8-aligned. */
BRISK_HIDDEN void harden_wipe_span(uintptr_t from, uintptr_t to);
BRISK_HIDDEN bool harden_span_zero(uintptr_t from, uintptr_t to);
/* check.c: every carved slot's canary (and the pad's) intact. */
BRISK_HIDDEN int harden_check_page(const page *pg);
/* check.c, under wipe: 0 when the free slot `slot` of seg reads
 * zero, else the address of its first byte that does not (for the
 * report: the program's stale pointer is near it). */
BRISK_HIDDEN uintptr_t harden_free_slot_dirty(const segment *seg, unsigned slot);

/* Bytes at the front of a page's slot left unused (the canary pad). */
static inline size_t harden_page_front(size_t block_size)
{
    return (harden_flags & HARDEN_CANARY) ? block_size : 0;
}

/* ---- process-wide state (process.c) ------------------------------------ */

BRISK_HIDDEN extern pthread_mutex_t global_lock;
BRISK_HIDDEN extern uintptr_t process_secret;
/* Start-up, at the first allocation of any thread: options, the segment
 * map, the secret. Returns at once once done. */
BRISK_HIDDEN void process_init_once(void);
BRISK_HIDDEN void global_lock_take(void);
BRISK_HIDDEN void global_lock_drop(void);

/* ---- the segment map (segmap.c) ----------------------------------------- */

BRISK_HIDDEN extern uint8_t *segment_map;
BRISK_HIDDEN extern uintptr_t segmap_entries; /* 0 until segment_map is mapped */
BRISK_HIDDEN void segmap_init(void);
/* Says what of ours starts at the 4 MiB aligned base (SEGMAP_*). */
BRISK_HIDDEN void segmap_set(uintptr_t base, uint8_t kind);

/* ---- thread heaps (thread.c) -------------------------------------------- */

BRISK_HIDDEN extern page empty_page;
BRISK_HIDDEN extern _Thread_local thread_heap *tls_thread_heap
    __attribute__((tls_model("initial-exec")));

BRISK_HIDDEN thread_heap *thread_heap_init_slow(void);
/* size bytes (64-aligned, never given back) of the guarded chunks thread
 * heaps are carved from, global_lock held; NULL when no memory can be
 * mapped. For other per-thread metadata (harden.c's quarantines). */
BRISK_HIDDEN void *metadata_carve(size_t size);
/* process.c, at start-up: the key whose destructor runs thread_heap_exit. */
BRISK_HIDDEN void thread_heap_key_init(void);
/* Every live thread heap (under global_lock), for statistics and checking. */
BRISK_HIDDEN thread_heap *thread_heap_list_first(void);
/* process.c's fork child handler, global_lock held: the thread heaps of
 * the threads that did not survive go back to the pool, their segments
 * are abandoned. */
BRISK_HIDDEN void thread_heap_fork_child(void);
/* Threads whose heaps exited (thread exits and fork), under global_lock. */
BRISK_HIDDEN uint64_t thread_heap_exited_count(void);

/* ---- size classes ------------------------------------------------------ */

static inline unsigned size_class_of(size_t size)
{
    brisk_assert(size <= MEDIUM_SIZE_MAX, "size_class_of: a large request has no class");
    if (size <= 128)
        return size == 0 ? 0 : (unsigned)((size - 1) >> 4);
    size_t s = size - 1;
    unsigned k = 63u - (unsigned)__builtin_clzll((unsigned long long)s);
    return 8u + (k - 7u) * 8u + (unsigned)((s >> (k - 3u)) & 7u);
}

static inline size_t class_block_size(unsigned cls)
{
    brisk_assert(cls < CLASS_COUNT, "class_block_size: no such class");
    if (cls < 8)
        return ((size_t)cls + 1) * 16;
    unsigned k = 7u + (cls - 8u) / 8u;
    unsigned i = (cls - 8u) % 8u;
    return ((size_t)1 << k) + ((size_t)(i + 1) << (k - 3u));
}

/* Installs pg (or &empty_page) as the current page of class cls, in both
 * lookup tables. */
static inline void thread_heap_set_direct(thread_heap *h, unsigned cls, page *pg)
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

/* stored = (next ^ holder * link_key) * link_mul, where holder is the
 * block the link is stored in and link_key and link_mul (odd) are secrets
 * of the page; decoding multiplies by link_mul's inverse. Without the
 * secrets a written value decodes to an unpredictable address, and a
 * partial overwrite of the stored word (the usual use-after-free write)
 * changes every decoded bit above it: the pop's range test refuses it
 * with probability 1 - carved / 2^48. And one freed block read does not
 * give what forging needs: its stored word is its next, masked by its own
 * address times a secret, multiplied by another; encoding another next,
 * even into the same block, needs the multiplier (a single-secret mix
 * such as next ^ key gives the key away from one word whose next is
 * known). Every decoded pointer is validated on pop anyway
 * (inside the page's carved part, 16-byte aligned), so even a forged one
 * can only name an address in the same page. The holder's product does
 * not wait for the load of the stored word. */
static inline uintptr_t list_encode(const page *pg, const block *holder, const block *next)
{
#if BRISK_CHECKS
    return ((uintptr_t)next ^ (uintptr_t)holder * pg->link_key) * pg->link_mul;
#else
    (void)pg;
    (void)holder;
    return (uintptr_t)next;
#endif
}

static inline block *list_decode(const page *pg, const block *holder, uintptr_t stored)
{
#if BRISK_CHECKS
    return (block *)((stored * pg->link_unmul) ^ (uintptr_t)holder * pg->link_key);
#else
    (void)pg;
    (void)holder;
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
 * uses): set once at start-up, before the first segment (process.c). */
BRISK_HIDDEN extern size_t meta_guard_bytes;

/* The guards on each side of the metadata that lives in mappings of its
 * own (the segment map, the thread heaps' chunks): META_GUARD in whole
 * pages, so one page at least where pages are larger. */
static inline size_t metadata_guard_size(void)
{
    return align_up_ptr(META_GUARD, os_page_size());
}

/* segmap_entries is 0 until the map exists (segmap.c), then
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
 * start of a carved block: one multiply and one compare (a divisibility
 * test by multiplication, as in Lemire, Kaser and Kurz,
 * "Faster remainder by direct computation"): with m = floor(2^64 / d) + 1
 * for block size d <= 2^18, so that m * d = 2^64 + e with 1 <= e <= d,
 * and any 32-bit offset n:
 *   n = k * d        ->  n * m mod 2^64 = k * e          (< 2^32)
 *   n = k * d + r    ->  n * m mod 2^64 >= m > 2^46      (0 < r < d)
 * so n is the start of one of the first `capacity` blocks iff
 * n * m mod 2^64 < capacity * e, the page's block_limit (0 while the page
 * is not in use). An offset from below the page's start (the hardened
 * canary pad) is a 32-bit value near 2^32: a non-multiple, or a multiple
 * with k >= capacity, rejected alike. tests/malloc/test_block_start.c checks
 * the test against division for every class.
 *
 * Only the low 32 bits of off are used, so a p outside the slot can
 * alias a block start: callers holding such a pointer test it against
 * the slot (or carved) first. */
static inline bool page_block_start(const page *pg, uintptr_t off)
{
    return (uint64_t)(uint32_t)off * pg->block_mul < pg->block_limit;
}

/* block_mul and the block_limit of `capacity` blocks, for block size d
 * (segment.c, page.c, check.c). */
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
    return rotr_word(off, 4) < (uintptr_t)(pg->carved >> 4);
}

/* Whether a block's second word is its page's free mark: the double-free
 * test (docs/process.md, "What is checked"). */
static inline bool block_looks_free(const page *pg, const block *b)
{
    return __atomic_load_n(&b->free_mark, __ATOMIC_RELAXED) == pg->free_mark;
}

/* Whether the block start b of pg, which reads as free
 * (block_looks_free), waits in a quarantine (some thread's, under delay:
 * harden.c): its first word is the mark too, where a listed block has its
 * encoded link (equal to the mark one time in 2^64). A live block reads
 * so only if the program wrote the mark twice, which it can only have
 * read from freed memory. */
static inline bool block_waits_in_quarantine(const page *pg, const block *b)
{
    uintptr_t first;
    __builtin_memcpy(&first, b, sizeof first);
    return (harden_flags & HARDEN_DELAY) && first == pg->free_mark;
}

/* Page descriptors lie inside their segment's header, in the region's
 * first 64 KiB: masking finds the base. */
static inline segment *page_segment(const page *pg)
{
    return segment_of_meta((uintptr_t)pg & ~(uintptr_t)SEGMENT_MASK);
}

/* page.c */
BRISK_HIDDEN void *page_pop_corrupt(page *pg, block *b);
/* What walking a page's free lists for a block found (page.c). */
typedef enum list_search {
    LIST_LACKS,  /* every list read whole, the block on none */
    LIST_HOLDS,  /* the block is on one */
    LIST_BROKEN  /* a link a write after free broke, or a cycle: unknown */
} list_search;
BRISK_HIDDEN list_search page_find_free_block(page *pg, const block *b);
/* The block start b of pg reads as free (block_looks_free): whether it
 * is live after all (a live block whose data happen to read as free);
 * false after reporting `freed` (the block is free) or `broken` (a list
 * walk met a bad link, so whether it is free is unknown). */
BRISK_HIDDEN bool block_suspect_is_live(page *pg, const block *b, const char *freed,
                                        const char *broken);
/* A page found corrupted gives up its free lists: every carved block is
 * counted live (leaked, never handed out again until the program frees
 * it), so its invariants hold and nothing it lists is believed. Blocks
 * waiting on thread_free stay there, counted. */
BRISK_HIDDEN void page_give_up_lists(page *pg);
/* Before a page whose count reached zero is given back: 0 when its lists
 * hold every carved block once, each a block start carrying the mark, and
 * nothing waits on thread_free; else the address of the first block that
 * is not so (a block still live, one listed twice, a bad link). A count
 * can be wrong (a double free no check saw): the slot would be carved
 * again with the block live. */
BRISK_HIDDEN uintptr_t page_first_unlisted(const page *pg);
#define PAGE_SEEN_WORDS (65536 / 16 / 64) /* a bit per block of any page */
/* Sets in seen (PAGE_SEEN_WORDS words) the bit of every block on pg's
 * free and local_free lists and returns how many there are; -1, with
 * *bad naming it, at the first link that is not a carved block start
 * carrying the free mark or names a block listed already (a cycle). */
BRISK_HIDDEN long page_mark_listed(const page *pg, uint64_t *seen, uintptr_t *bad);
BRISK_HIDDEN void *malloc_generic(thread_heap *h, unsigned cls);
BRISK_HIDDEN void page_free_slow(page *pg, thread_heap *h);
BRISK_HIDDEN bool page_collect(page *pg);
BRISK_HIDDEN void page_queue_remove(page_queue *q, page *pg);
BRISK_HIDDEN void page_queue_push_back(page_queue *q, page *pg);
BRISK_HIDDEN void thread_heap_adopt_pages(thread_heap *h, segment *seg);
BRISK_HIDDEN void block_report_bad_free(page *pg, const void *p);

/* segment.c */
BRISK_HIDDEN page *segment_page_alloc(thread_heap *h, unsigned cls);
/* Gives an empty page back to its segment (the segment to the cache once
 * empty); false when its lists lack a block (page_first_unlisted):
 * reported, and the page kept on h's full list of its class. */
BRISK_HIDDEN bool segment_page_free(thread_heap *h, page *pg);
BRISK_HIDDEN bool thread_heap_purge(thread_heap *h, bool force);
BRISK_HIDDEN void thread_heap_purge_tick(thread_heap *h);
BRISK_HIDDEN void thread_heap_abandon_segments(thread_heap *h);
/* An abandoned segment's page of class cls with a free block or room,
 * adopted into h (on its class queue), or NULL. */
BRISK_HIDDEN page *thread_heap_adopt_page(thread_heap *h, unsigned cls);
/* malloc.c's cross-thread free, when the segment's owner reads NULL:
 * true when it took b (the segment swept), false to push b as usual. */
BRISK_HIDDEN bool segment_abandoned_free(page *pg, block *b);
/* process.c's fork child handler, global_lock held. */
BRISK_HIDDEN void segment_fork_child(const thread_heap *me);
BRISK_HIDDEN segment *abandoned_list_first(void);

/* Abandonment figures (segment.c; stats.c and brisk_malloc_get_stats). */
typedef struct abandon_stats {
    uint64_t segments_abandoned;   /* totals since start: by thread exits */
    uint64_t pages_abandoned;      /*   and forks, pages in use in them */
    uint64_t segments_adopted;     /* taken over by a living thread */
    uint64_t pages_adopted;
    uint64_t pages_swept;          /* given back by a cross-thread free's sweep */
    uint64_t segments_swept_empty; /* sent to the cache by a sweep */
    uint64_t fork_orphans;         /* segments of threads a fork left behind */
    uint64_t abandoned_segments_now;
    uint64_t abandoned_pages_now;
    uint64_t abandoned_page_bytes_now;
    uint64_t abandoned_live_bytes_now;
    uint64_t segments_cached_now;
} abandon_stats;
BRISK_HIDDEN void segment_abandon_stats(abandon_stats *out); /* global_lock held */
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
BRISK_HIDDEN void stats_merge_thread_heap(const thread_heap *h);
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
    brisk_assert(b != NULL && pg->in_use, "page_pop: the page has no free block");
#if BRISK_CHECKS
    block *next = list_decode(pg, b, b->next_encoded);
    /* In range first: the end of a list (NULL) is the rare case. */
    if (brisk_unlikely((!page_link_in_range(pg, (uintptr_t)next - pg->start) && next != NULL) ||
                       b->free_mark != pg->free_mark))
        return page_pop_corrupt(pg, b);
    pg->free = next;
    b->next_encoded = 0;
    b->free_mark = 0;
#else
    pg->free = list_decode(pg, b, b->next_encoded);
#endif
    pg->used++;
    return b;
}

/* ---- sampled profiling (profile.c) ------------------------------------- *
 *
 * The one path calls profile_on_alloc after an allocation and
 * profile_on_page_free or profile_on_free before a free, only when
 * harden_flags has PROFILE_ON (malloc.c: profile_hand_out, free_hooked,
 * free_other, realloc_profiled). */

/* Parses a BRISK_OPTIONS item profile, profile=RATE or profile_path=P;
 * false when it is not one of them. */
BRISK_HIDDEN bool profile_option(const char *item, size_t len);
/* At start-up, after the options: the profile's clock starts. */
BRISK_HIDDEN void profile_init(void);
/* The sample (or the countdown's first draw) of the block p of size
 * bytes that caller (the entry point's return address) asked for. */
BRISK_HIDDEN void profile_sample(thread_heap *h, void *p, size_t size, const void *caller);
/* Drops p's sample, if it has one; pg is its page (NULL: large). */
BRISK_HIDDEN void profile_forget(void *p, page *pg);
/* process.c, around fork: the profile's lock. */
BRISK_HIDDEN void profile_fork_prepare(void);
BRISK_HIDDEN void profile_fork_release(void);

/* options.c, for profile.c's options. */
BRISK_HIDDEN void options_warn(const char *what, const char *item, size_t len);
BRISK_HIDDEN bool options_parse_number(const char *s, size_t len, uint64_t *out);

/* The cost of profiling on an allocation: one subtraction, unless this
 * allocation reaches the thread's next sample. */
BRISK_INLINE void profile_on_alloc(void *p, size_t size, const void *caller)
{
    thread_heap *h = tls_thread_heap;
    if (brisk_likely(h != NULL && h->profile_countdown > size)) {
        h->profile_countdown -= size;
        return;
    }
    profile_sample(h, p, size, caller);
}

/* On a free of the block p of page pg, once p is known to be one: the
 * sample table is consulted only when the page holds a sample. */
BRISK_INLINE void profile_on_page_free(page *pg, void *p)
{
    if (brisk_unlikely(__atomic_load_n(&pg->profile_samples, __ATOMIC_RELAXED) != 0))
        profile_forget(p, pg);
}

/* The same for any pointer (large blocks: the table is consulted while
 * any sample is live). */
BRISK_INLINE void profile_on_free(void *p)
{
    if (p == NULL)
        return;
    uintptr_t meta = meta_of(p);
    unsigned kind = segmap_kind(meta);
    if (kind == SEGMAP_PAGES) {
        page *pg = page_of(segment_of_meta(meta), p);
        if (brisk_likely(__atomic_load_n(&pg->profile_samples, __ATOMIC_RELAXED) == 0))
            return;
        profile_forget(p, pg);
    } else if (kind == SEGMAP_LARGE) {
        profile_forget(p, NULL);
    }
}

#endif /* BRISK_MALLOC_INTERNAL_H */
