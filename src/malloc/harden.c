/*
 * The process allocator's hardened level (BRISK_OPTIONS=hardened, or any
 * of canary, wipe, guard, delay): the checks the allocator's one path
 * calls when their parts are on. The default level (pointer validation through the segment
 * map, block-start checks, double-free detection, checked free lists) is
 * built into the allocator itself; this file adds what costs time on
 * every call and so is opt-in.
 * docs/security.md says what each part catches and what it does not, and
 * what it costs.
 *
 * malloc, free and realloc have one path (malloc.c) at every level: once
 * it knows the block's page, one predicted test of harden_flags (written
 * once when the options are read, before the first block is handed out,
 * and never again, so every block a hardened process sees was made under
 * the same rules) calls the hooks below for the parts that are on:
 * harden_hand_out (wipe: a block handed out is still zero),
 * harden_free_block (canary, wipe, delay) and harden_canaries_verify
 * (realloc). Page and large-block code calls the hooks further down when
 * pages are set up, carved and emptied.
 *
 *   canary  every slot of a page ends in a secret-derived canary word, and
 *           each page leaves its first slot unused so its first block has
 *           a canary in front too (layout in malloc/types.h). free and
 *           realloc check the canary after the block (overflow) and the
 *           one before it (underflow), in one test. usable size is the
 *           slot less 8.
 *   wipe    free zeroes the block but for its canary (the free-list link,
 *           or under delay the page's free mark, is written into its first
 *           word next, and the free mark into its second):
 *           with stores up to WIPE_STORE_MAX bytes, above that by
 *           reading it and writing only the 64-byte chunks that are not
 *           zero already (a part the program never touched stays
 *           untouched: not written, not made resident). malloc checks that
 *           a block it hands out (page_pop has zeroed the list's words)
 *           is still zero: the whole block up to WIPE_FULL_CHECK_MAX
 *           bytes, above that its first and last WIPE_SAMPLE_BYTES;
 *           calloc checks the whole block. So a write into freed memory is reported when the
 *           memory comes back, and no block shows a previous owner's
 *           bytes. A page whose blocks are all free is checked whole
 *           (every byte but the allocator's own words) before its slot
 *           goes back to its segment, and left zero; blocks carved again
 *           from a slot used before are checked to be still zero (see
 *           "recycling a page's slot"), so a write after free is found
 *           whichever class the memory goes to next. Large blocks kept in
 *           the cache are wiped at free and checked when taken from it,
 *           with the same loops (large.c). Spans from RESIDENCY_SPAN_MIN
 *           on, and large blocks, are read and written only on their
 *           resident pages (common/resident.c): the wipe costs what the
 *           program touched, not what it asked for.
 *   guard   large blocks get an inaccessible page right before and right
 *           after them (large.c), so running off either end faults at once;
 *           a freed guarded block is cached; reused for a request of its
 *           size class its guards stay where they are, refit to another
 *           its trailing guard moves to the new block's end.
 *   delay   every free of a page block, from whichever thread, puts the
 *           block in a random slot of the freeing thread's quarantine of
 *           QUARANTINE_SLOTS blocks, evicting the previous occupant to the
 *           real free (which, for a block of another thread's page, is the
 *           usual cross-thread free); so a freed block is never handed
 *           straight back, and reuse order is random. The quarantine's
 *           state (which blocks wait, and its generator) is out of line,
 *           with the thread heaps (between guards). A waiting
 *           block carries its page's free mark in its first two words, its
 *           check words: any free finds it suspect (the mark in its second
 *           word) and recognizes it as waiting (the mark in its first,
 *           where a listed block has its link), so a second free, from any
 *           thread, is reported at once. Both words are checked when the
 *           block leaves: anything else there was written after free
 *           (under wipe the rest of the block is checked as any wiped block
 *           is). They show nothing a free block does not show already.
 *           A thread's quarantine is emptied when the thread exits. Large
 *           blocks are delayed in large.c's cache instead.
 */
#include "malloc/internal.h"

#include <errno.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

unsigned harden_flags;

#define QUARANTINE_SLOTS 64u

/* A thread's quarantine. It is not a block of the allocator: quarantines
 * are carved from the thread heaps' guarded chunks (quarantine_create), so
 * no overflow of a block can rewrite which blocks wait, and no read past
 * one shows them. */
typedef struct quarantine {
    void *slots[QUARANTINE_SLOTS];
    uint64_t rng;
    struct quarantine *pool_next; /* in quarantine_pool, while unused */
} quarantine;

static _Thread_local quarantine *tls_quarantine __attribute__((tls_model("initial-exec")));

/* ---- options -------------------------------------------------------------- */

bool harden_option(const char *name, size_t len)
{
    static const struct {
        const char *name;
        unsigned flags;
    } parts[] = {
        {"hardened", HARDEN_ALL}, {"canary", HARDEN_CANARY}, {"wipe", HARDEN_WIPE},
        {"guard", HARDEN_GUARD},  {"delay", HARDEN_DELAY},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (strlen(parts[i].name) == len && memcmp(parts[i].name, name, len) == 0) {
            harden_flags |= parts[i].flags;
            return true;
        }
    }
    return false;
}

/* ---- secrets ---------------------------------------------------------------- */

/* The canary stored at address `at` (the last word of a slot, or of a
 * page's pad): the address xor the kernel-random process secret, one
 * operation, as these run on every malloc and free. An overflow that
 * does not know the secret rewrites it intact with probability 2^-64 (a
 * partial overwrite of n bytes: 2^-8n). A program that can read one
 * canary and knows its address learns the secret, and so every canary;
 * canaries are against blind overflows, not against an attacker who
 * already reads past blocks (docs/security.md). */
static inline uint64_t canary_at(uintptr_t at)
{
    return (uint64_t)at ^ (uint64_t)process_secret;
}

/* The process allocator is built with -fno-builtin (it defines malloc),
 * so plain memcpy would be a call: the builtin is named. */
static inline uint64_t load_word(uintptr_t at)
{
    uint64_t w;
    __builtin_memcpy(&w, (const void *)at, sizeof w);
    return w;
}

static inline void store_word(uintptr_t at, uint64_t w)
{
    __builtin_memcpy((void *)at, &w, sizeof w);
}

/* ---- clearing and checking memory ----------------------------------------- *
 *
 * What the wipe clears and checks is a block's body, [p, end): the block
 * but its canary (end = p + block size - canary). p is 16-aligned and
 * block sizes are multiples of 16, so end is 16-aligned without a canary
 * and 8 past a multiple of 16 with one:
 *
 *   p                                     end&~15  end
 *   | 16-byte chunks ...                  | word?  |C|
 *
 * The words the free lists use are cleared with the rest on free (the
 * free-list link, or the quarantine's check words, are written right
 * after) and are zero when page_pop hands the block out, so they are
 * checked with the rest.
 *
 * Chunks are SSE2 loads and stores on x86-64 (where SSE2 is always
 * there), two words elsewhere. The allocator is built with -fno-builtin,
 * and these loops must not turn into calls to memset: CHUNK_OPAQUE hides
 * the address from the loop pattern matcher (it costs no instruction). */
#define CHUNK_OPAQUE(at) __asm__("" : "+r"(at))

#if defined(__SSE2__)
typedef __m128i chunk_acc;
static inline chunk_acc acc_empty(void) { return _mm_setzero_si128(); }
static inline chunk_acc acc_add(chunk_acc acc, uintptr_t at)
{
    return _mm_or_si128(acc, _mm_load_si128((const __m128i *)at));
}
static inline bool acc_is_zero(chunk_acc acc)
{
    return _mm_movemask_epi8(_mm_cmpeq_epi8(acc, _mm_setzero_si128())) == 0xffff;
}
static inline void chunk_clear(uintptr_t at) { _mm_store_si128((__m128i *)at, _mm_setzero_si128()); }
#else
typedef uint64_t chunk_acc;
static inline chunk_acc acc_empty(void) { return 0; }
static inline chunk_acc acc_add(chunk_acc acc, uintptr_t at)
{
    return acc | load_word(at) | load_word(at + 8);
}
static inline bool acc_is_zero(chunk_acc acc) { return acc == 0; }
static inline void chunk_clear(uintptr_t at)
{
    store_word(at, 0);
    store_word(at + 8, 0);
}
#endif

/* Whether [from, to) is all zero: from 16-aligned, to 8-aligned. */
BRISK_INLINE bool chunks_zero(uintptr_t from, uintptr_t to)
{
    uintptr_t stop = to & ~(uintptr_t)15;
    uint64_t word = (to & 8) ? load_word(stop) : 0;
    chunk_acc acc = acc_empty();
    uintptr_t at = from;
    for (; at + 32 <= stop; at += 32) {
        CHUNK_OPAQUE(at);
        acc = acc_add(acc_add(acc, at), at + 16);
    }
    if (at < stop)
        acc = acc_add(acc, at);
    return word == 0 && acc_is_zero(acc);
}

/* Zeroes [from, to) with stores: from 16-aligned, to 8-aligned. For
 * blocks of up to WIPE_STORE_MAX bytes, which the program has usually
 * just used (so they are in the cache and mostly written). */
BRISK_INLINE void chunks_clear(uintptr_t from, uintptr_t to)
{
    uintptr_t stop = to & ~(uintptr_t)15;
    if (to & 8)
        store_word(stop, 0);
    uintptr_t at = from;
    for (; at + 32 <= stop; at += 32) {
        CHUNK_OPAQUE(at);
        chunk_clear(at);
        chunk_clear(at + 16);
    }
    if (at < stop)
        chunk_clear(at);
}

/* Zeroes [from, to) (from 16-aligned, to 8-aligned) by reading it and
 * writing only the 64-byte stretches that are not zero: for larger
 * blocks, of which programs often touch a part. What was never written
 * since it was last cleared (or since the OS gave it) is only read: it is
 * not dirtied in the cache, and pages never touched map the kernel's
 * shared zero page instead of taking memory of their own. */
static void chunks_clear_dirty(uintptr_t from, uintptr_t to)
{
    uintptr_t stop = to & ~(uintptr_t)15;
    if (to & 8)
        store_word(stop, 0);
    uintptr_t at = from;
    for (; at + 64 <= stop; at += 64) {
        CHUNK_OPAQUE(at);
        chunk_acc acc = acc_add(acc_add(acc_add(acc_add(acc_empty(), at), at + 16), at + 32), at + 48);
        if (!acc_is_zero(acc)) {
            chunk_clear(at);
            chunk_clear(at + 16);
            chunk_clear(at + 32);
            chunk_clear(at + 48);
        }
    }
    for (; at < stop; at += 16) {
        CHUNK_OPAQUE(at);
        chunk_clear(at);
    }
}

/* ---- spans of whole pages: wiped and checked where resident -------------- *
 *
 * From RESIDENCY_SPAN_MIN on, a span is wiped and checked only on its
 * resident pages (common/resident.c says why that is enough, and when it
 * is not and every page is read). */

static bool visit_clear(uintptr_t from, uintptr_t to, void *unused)
{
    (void)unused;
    chunks_clear_dirty(from, to);
    return true;
}

static bool visit_zero(uintptr_t from, uintptr_t to, void *unused)
{
    (void)unused;
    return chunks_zero(from, to);
}

/* Spans from this size on are wiped and checked by residency: below it,
 * reading the span costs less than asking the kernel which of its pages
 * are resident (bench/harden, docs/benchmarks.md). */
#define RESIDENCY_SPAN_MIN ((size_t)64 * 1024)

/* Zeroes [from, to) (from 16-aligned, to 8-aligned), reading and writing
 * only its resident pages when it is large. */
static void span_clear(uintptr_t from, uintptr_t to)
{
    if (to - from < RESIDENCY_SPAN_MIN)
        chunks_clear_dirty(from, to);
    else
        resident_runs(from, to, visit_clear, NULL);
}

/* Whether [from, to) is all zero, reading only its resident pages when
 * it is large. */
static bool span_zero(uintptr_t from, uintptr_t to)
{
    if (to - from < RESIDENCY_SPAN_MIN)
        return chunks_zero(from, to);
    return resident_runs(from, to, visit_zero, NULL);
}

/* Blocks whose body is up to this many bytes are wiped with plain
 * stores; larger ones by chunks_clear_dirty. From WIPE_MEMSET_MIN on the
 * stores are the C library's memset, which picks the widest stores the
 * processor has (chunks_clear's are SSE2's 16 bytes, all that x86-64
 * guarantees); below it the call and memset's dispatch cost more than
 * they save. */
#define WIPE_STORE_MAX ((size_t)1024)
#define WIPE_MEMSET_MIN ((size_t)256)

/* Wipes the body [p, end) of the block p. */
BRISK_INLINE void body_wipe(uintptr_t p, uintptr_t end)
{
    if (end - p < WIPE_MEMSET_MIN)
        chunks_clear(p, end);
    else if (brisk_likely(end - p <= WIPE_STORE_MAX))
        memset((void *)p, 0, end - p);
    else
        span_clear(p, end);
}

/* A block handed out under wipe is checked to be still zero whole up to
 * WIPE_FULL_CHECK_MAX bytes, above that in a sample: its first and its
 * last WIPE_SAMPLE_BYTES before the canary. Two cache lines at each end:
 * a write after free usually lands on an object's header or on its last
 * fields (a length, a pointer, a vtable, a reference count). The free
 * still wipes every byte, so a block shows a previous owner's bytes only
 * where a write after free put them outside the sample
 * (docs/security.md). */
#define WIPE_FULL_CHECK_MAX ((size_t)1024)
#define WIPE_SAMPLE_BYTES ((size_t)128)

/* Whether the checked part of the body [p, end) of the block p is zero. */
BRISK_INLINE bool body_wiped(uintptr_t p, uintptr_t end)
{
    if (brisk_likely(end - p <= WIPE_FULL_CHECK_MAX))
        return chunks_zero(p, end);
    /* end - 128 is 8 past a multiple of 16 when end is: one more word. */
    uintptr_t last = (end - WIPE_SAMPLE_BYTES) & ~(uintptr_t)15;
    return chunks_zero(p, p + WIPE_SAMPLE_BYTES) && chunks_zero(last, end);
}

/* For large.c: a large block's wipe at free and its checks when handed
 * out again, by residency whatever their size: even the check of a
 * block's last 128 bytes would otherwise fault in a page the program
 * never touched. */
void harden_wipe_span(uintptr_t from, uintptr_t to)
{
    resident_runs(from, to, visit_clear, NULL);
}

bool harden_span_zero(uintptr_t from, uintptr_t to)
{
    return resident_runs(from, to, visit_zero, NULL);
}

/* ---- page hooks ------------------------------------------------------------ */

void harden_page_setup(page *pg)
{
    /* Slot 0 of the page becomes the pad; its last word guards the front
     * of the first block. Every class leaves at least one block (the
     * largest medium class fits twice in a medium page). */
    size_t bsize = pg->block_size;
    size_t page_size = (size_t)1 << page_segment(pg)->page_shift;
    pg->start += bsize;
    pg->reserved = (uint32_t)((page_size - bsize) / bsize);
    pg->span = (uint32_t)(pg->reserved * bsize);
    store_word(pg->start - HARDEN_CANARY_SIZE, canary_at(pg->start - HARDEN_CANARY_SIZE));
}

/* The lost thread may have been carving this page (canaries written past
 * capacity), or emptying it (its pad's and blocks' canaries zeroed, its
 * body being zeroed) when the fork copied it. The rebuild kept only the
 * blocks it could prove free; here the canaries of the carved blocks and
 * the pad are written again, and under wipe the part not carved is made
 * zero again, so the child's checks find the page as its rules say. A
 * canary a real overflow had broken before the fork in that thread's
 * page is lost with it: nothing in the page tells the two apart. */
void harden_orphan_page_rebuilt(page *pg)
{
    size_t bsize = pg->block_size;
    if (harden_flags & HARDEN_CANARY) {
        uintptr_t at = pg->start - HARDEN_CANARY_SIZE;
        store_word(at, canary_at(at));
        for (uint32_t i = 0; i < pg->capacity; i++) {
            at = pg->start + (uintptr_t)(i + 1) * bsize - HARDEN_CANARY_SIZE;
            store_word(at, canary_at(at));
        }
    }
    if (harden_flags & HARDEN_WIPE) {
        uintptr_t slot = pg->start - harden_page_front(bsize);
        uintptr_t slot_end = slot + ((uintptr_t)1 << page_segment(pg)->page_shift);
        if (pg->capacity == 0 && (harden_flags & HARDEN_CANARY))
            span_clear(slot, pg->start - HARDEN_CANARY_SIZE);
        span_clear(pg->start + pg->carved, slot_end);
    }
}

/* ---- recycling a page's slot under wipe ------------------------------------ *
 *
 * A page's slot outlives the page: when every block is free the slot goes
 * back to its segment and may be carved again for any class, so a write
 * after free into a block of a page that emptied would be handed out in
 * another class's block, at any offset. The wipe keeps one invariant for
 * this: every free slot (and the part of a slot in use not yet carved)
 * reads zero. It is established when a page empties, whose blocks are
 * all free and whose layout is known:
 *
 *   pad (canary only)     block 0                         block 1
 *   | 0 ...          |C|  |link|mark| 0 ...          |C|  |link|mark| 0 ...
 *                         <----------- block_size ------->
 *
 * the words the allocator wrote into free blocks (link, free mark,
 * canaries) must read as the allocator left them, every other byte must
 * still be zero; then those words are zeroed, so the slot reads zero
 * whole. When a slot is carved again, the carved blocks (and, with the
 * first blocks, the pad) must read zero: whatever is not was written
 * after free, after the page emptied, through a dangling pointer. Only a
 * slot never used since it was mapped (`fresh`) is carved without a
 * look; a slot the purge returned to the OS reads zero too, but a write
 * after free would have made it resident with the byte in it, so it is
 * checked like the others (segment.c's returned_slots).
 *
 * Either check reports the first misused block: the old block's start
 * (the slot remembers the layout of its last page), or the first written
 * byte when no remembered page covers it. If the handler returns, the
 * memory is zeroed and used: no block is handed out showing the written
 * bytes. The call that found it does nothing more: a malloc that carved
 * returns NULL (its blocks wait, zeroed, for the next call); a page
 * emptied by a free, or by a malloc's slow path collecting pages, was
 * freed as asked, as when damage is found in a free list (brisk.h). */

/* The address of the first byte of [from, to) that is not zero (from
 * and to 8-aligned), or `to`. Run only after a check failed. */
static uintptr_t first_nonzero(uintptr_t from, uintptr_t to)
{
    for (uintptr_t at = from; at < to; at += 8) {
        if (load_word(at) == 0)
            continue;
        for (unsigned i = 0;; i++) {
            if (((const volatile unsigned char *)at)[i] != 0)
                return at + i;
        }
    }
    return to;
}

/* Whether the words the allocator wrote into the free block b of pg
 * read as it wrote them: a link of the page's lists (NULL, or 16-byte
 * aligned in the carved part), the free mark (with checks), the canary
 * (under canary). */
static inline bool free_words_intact(const page *pg, uintptr_t b, uintptr_t canary)
{
    block *next = list_decode(pg, (const block *)b, load_word(b));
    bool intact = next == NULL || page_link_in_range(pg, (uintptr_t)next - pg->start);
#if BRISK_CHECKS
    intact &= load_word(b + 8) == pg->free_mark;
#endif
    if (canary != 0)
        intact &= load_word(canary) == canary_at(canary);
    return intact;
}

void harden_page_emptied(page *pg)
{
    size_t bsize = pg->block_size;
    uintptr_t start = pg->start;
    uintptr_t end = start + pg->carved;
    uintptr_t from = start;
    bool canary = (harden_flags & HARDEN_CANARY) != 0;
    uintptr_t bad = 0;
    if (canary) {
        from = start - bsize; /* the pad */
        uintptr_t at = start - HARDEN_CANARY_SIZE;
        if (load_word(at) != canary_at(at))
            bad = at;
        store_word(at, 0);
    }
    for (uintptr_t b = start; b < end; b += bsize) {
        uintptr_t at = canary ? b + bsize - HARDEN_CANARY_SIZE : 0;
        if (brisk_unlikely(!free_words_intact(pg, b, at)) && bad == 0)
            bad = b;
        store_word(b, 0);
#if BRISK_CHECKS
        store_word(b + 8, 0); /* the unchecked build leaves it zero */
#endif
        if (canary)
            store_word(at, 0);
    }
    if (bad == 0 && brisk_unlikely(!span_zero(from, end))) {
        bad = first_nonzero(from, end);
        if (bad >= start)
            bad -= (bad - start) % bsize;
    }
    pg->emptied_start = start;
    pg->emptied_carved = pg->carved;
    pg->emptied_block_size = (uint32_t)bsize;
    if (brisk_likely(bad == 0))
        return;
    report_error(BRISK_ERROR_USE_AFTER_FREE,
                 "use after free: a freed block was written to (found when its page was emptied)",
                 (void *)bad);
    chunks_clear_dirty(from, end); /* a handler returned: the slot is zero again */
}

/* The start of the block of the slot's last page that held `at`, or at
 * itself when no remembered page covers it. */
static uintptr_t emptied_block_of(const page *pg, uintptr_t at)
{
    uintptr_t off = at - pg->emptied_start;
    if (pg->emptied_block_size == 0 || at < pg->emptied_start || off >= pg->emptied_carved)
        return at;
    return at - off % pg->emptied_block_size;
}

/* Blocks [first, end) about to be carved from a slot used before (and
 * [pad, first - canary) with the page's first blocks under canary) were
 * found not zero: written after free. Reports the first such block and,
 * if the handler returns, zeroes them. */
static BRISK_NOINLINE void report_recycled_dirty(page *pg, uintptr_t pad, uintptr_t first, uintptr_t end)
{
    uintptr_t pad_end = pad == first ? first : first - HARDEN_CANARY_SIZE;
    uintptr_t at = first_nonzero(pad, pad_end);
    if (at == pad_end)
        at = first_nonzero(first, end);
    report_error(BRISK_ERROR_USE_AFTER_FREE,
                 "use after free: a freed block was written to (found when its page was reused)",
                 (void *)emptied_block_of(pg, at));
    chunks_clear_dirty(pad, pad_end);
    chunks_clear_dirty(first, end);
}

bool harden_blocks_carved(page *pg, uintptr_t first, uint32_t count)
{
    size_t bsize = pg->block_size;
    bool clean = true;
    if ((harden_flags & HARDEN_WIPE) && !pg->fresh) {
        /* Must read zero (see above); the pad's canary was written as the
         * page was set up. Reads what the wipe's clearing used to read,
         * and writes nothing. */
        uintptr_t end = first + (uintptr_t)count * bsize;
        uintptr_t pad = first;
        clean = span_zero(first, end);
        if ((harden_flags & HARDEN_CANARY) && pg->capacity == 0) {
            pad = first - bsize;
            clean &= span_zero(pad, first - HARDEN_CANARY_SIZE);
        }
        if (brisk_unlikely(!clean))
            report_recycled_dirty(pg, pad, first, end);
    }
    if (harden_flags & HARDEN_CANARY) {
        for (uint32_t i = 0; i < count; i++) {
            uintptr_t at = first + (uintptr_t)(i + 1) * bsize - HARDEN_CANARY_SIZE;
            store_word(at, canary_at(at));
        }
    }
    return clean;
}

uintptr_t harden_free_slot_dirty(const segment *seg, unsigned slot)
{
    uintptr_t base = segment_base(seg) + ((uintptr_t)slot << seg->page_shift);
    uintptr_t end = base + ((uintptr_t)1 << seg->page_shift);
    return span_zero(base, end) ? 0 : first_nonzero(base, end);
}

int harden_check_page(const page *pg)
{
    if (!(harden_flags & HARDEN_CANARY))
        return 0;
    uintptr_t at = pg->start - HARDEN_CANARY_SIZE;
    if (load_word(at) != canary_at(at))
        return -1;
    for (uint32_t i = 0; i < pg->capacity; i++) {
        at = pg->start + (uintptr_t)(i + 1) * pg->block_size - HARDEN_CANARY_SIZE;
        if (load_word(at) != canary_at(at))
            return -1;
    }
    return 0;
}

/* ---- canaries --------------------------------------------------------------- */

/* Reports which canary of the live block p of pg was overwritten. */
static BRISK_NOINLINE void report_canary(const page *pg, const void *p)
{
    uintptr_t after = (uintptr_t)p + pg->block_size - HARDEN_CANARY_SIZE;
    if (load_word(after) != canary_at(after))
        report_error(BRISK_ERROR_OVERFLOW,
                     "heap buffer overflow: the canary after the block was overwritten", p);
    else
        report_error(BRISK_ERROR_OVERFLOW,
                     "heap buffer underflow: the canary before the block was overwritten "
                     "(or the block before it overflowed)",
                     p);
}

/* Whether the canaries after and before the live block p of pg are
 * intact, in one test (both are the address xor the secret). */
BRISK_INLINE bool canaries_intact(const page *pg, const void *p)
{
    uintptr_t after = (uintptr_t)p + pg->block_size - HARDEN_CANARY_SIZE;
    uintptr_t before = (uintptr_t)p - HARDEN_CANARY_SIZE;
    uint64_t secret = (uint64_t)process_secret;
    return ((load_word(after) ^ after ^ secret) | (load_word(before) ^ before ^ secret)) == 0;
}

bool harden_canaries_verify(const page *pg, const void *p)
{
    if (brisk_likely(canaries_intact(pg, p)))
        return true;
    report_canary(pg, p);
    return false;
}

/* ---- delayed reuse ------------------------------------------------------- *
 *
 * Quarantines are carved from the guarded chunks thread heaps come from
 * (metadata_carve), and go back to quarantine_pool when their thread
 * exits, empty: nothing of them lies next to a block. A quarantine needs
 * its thread's heap, whose exit (the pthread key's destructor) empties
 * it: a thread that frees before it ever allocated gets one here. A
 * forked child keeps the quarantine of the thread that forked (with a
 * generator reseeded: harden_fork_child); those of the threads that did
 * not survive the fork are never emptied, and their blocks stay out of
 * reach. */
static quarantine *quarantine_pool; /* under global_lock */

/* A fresh generator state for q: the sequence of slots is what a program
 * sees as the reuse order, so it is drawn from the kernel, leading back
 * to no secret, and differing between processes (a forked child's
 * quarantine would otherwise start where its parent's stands). */
static uint64_t quarantine_seed(const quarantine *q)
{
    return random_secret(q);
}

static BRISK_NOINLINE quarantine *quarantine_create(void)
{
    if (tls_thread_heap == NULL && thread_heap_init_slow() == NULL)
        return NULL;
    global_lock_take();
    quarantine *q = quarantine_pool;
    if (q != NULL)
        quarantine_pool = q->pool_next; /* emptied when its thread exited */
    else
        q = metadata_carve(sizeof *q); /* fresh memory: every slot empty */
    global_lock_drop();
    if (q == NULL)
        return NULL;
    q->pool_next = NULL;
    q->rng = quarantine_seed(q);
    tls_quarantine = q;
    return q;
}

/* A slot index from the quarantine's generator: a 64-bit LCG, whose top
 * bits are the good ones, seeded from the kernel (quarantine_seed). */
static inline uint32_t quarantine_pick(quarantine *q)
{
    q->rng = q->rng * 0x5851f42d4c957f2du + 0x14057b7ef767814fu;
    return (uint32_t)(q->rng >> 58) & (QUARANTINE_SLOTS - 1);
}

/* A block found leaving the quarantine with a check word changed. */
static BRISK_NOINLINE void report_quarantine_written(const void *p)
{
    report_error(BRISK_ERROR_USE_AFTER_FREE,
                 "use after free: a freed block was written to (found leaving the quarantine)", p);
}

/* Hands the block p, leaving the quarantine, to the real free (the
 * owner's lists, or its page's cross-thread list), after checking both
 * its check words: anything else there was written after free. */
BRISK_INLINE void quarantine_release(void *p)
{
    page *pg = page_of(segment_of_meta(meta_of(p)), p);
    uintptr_t mark = pg->free_mark;
    if (brisk_unlikely(((load_word((uintptr_t)p) ^ mark) | (load_word((uintptr_t)p + 8) ^ mark)) != 0)) {
        report_quarantine_written(p);
        return; /* the block stays out of reach: lost, never reused */
    }
    /* The free writes the link and (with checks) the mark next; the
     * unchecked build writes no mark, and its blocks must read zero
     * there, as the wipe left them. */
    store_word((uintptr_t)p + 8, 0);
    /* Validated when it was freed, and live (off every list) since. */
    free_block_to_page(pg, p);
}

/* Puts the validated, wiped block p of pg in a random slot of the
 * thread's quarantine and frees the block that was there. Its check
 * words are its page's free mark: a value every free block of the page
 * shows already, so a waiting block reveals nothing more (a marker made of
 * the address and the canaries' secret would give that secret away to
 * one read after free). */
static BRISK_NOINLINE void quarantine_put(page *pg, void *p)
{
    quarantine *q = tls_quarantine;
    if (brisk_unlikely(q == NULL)) {
        q = quarantine_create();
        if (q == NULL) {
            free_block_to_page(pg, p); /* no memory for a quarantine: free at once */
            return;
        }
    }
    store_word((uintptr_t)p, pg->free_mark);
    /* Atomic: another thread's free of p may be reading it (a double
     * free, which this makes it see as a suspect). */
    __atomic_store_n(&((block *)p)->free_mark, pg->free_mark, __ATOMIC_RELAXED);
    uint32_t slot = quarantine_pick(q);
    void *evicted = q->slots[slot];
    q->slots[slot] = p;
    if (evicted != NULL)
        quarantine_release(evicted);
}

void harden_thread_exit(void)
{
    quarantine *q = tls_quarantine;
    if (q == NULL)
        return;
    tls_quarantine = NULL;
    for (uint32_t i = 0; i < QUARANTINE_SLOTS; i++) {
        void *p = q->slots[i];
        q->slots[i] = NULL;
        if (p != NULL)
            quarantine_release(p);
    }
    global_lock_take();
    q->pool_next = quarantine_pool;
    quarantine_pool = q;
    global_lock_drop();
}

void harden_fork_child(void)
{
    quarantine *q = tls_quarantine;
    if (q != NULL)
        q->rng = quarantine_seed(q);
}

/* ---- the hooks of the one path --------------------------------------------- *
 *
 * malloc.c calls these once it knows the block's page, each behind one
 * predicted test of harden_flags; they end in tail calls only (the
 * reports, the quarantine, the page's own free), so they save no
 * registers. */

/* A block found not wiped when handed out (or a pop that found its list
 * corrupted: p NULL, reported already). */
static BRISK_NOINLINE void *hand_out_unwiped(void *p)
{
    if (p != NULL)
        report_error(BRISK_ERROR_USE_AFTER_FREE,
                     "use after free: a freed block was written to (found when handed out again)", p);
    errno = ENOMEM;
    return NULL; /* the block stays live: lost, never reused */
}

void *harden_hand_out(page *pg, void *p, bool whole)
{
    if (brisk_unlikely(p == NULL))
        return NULL;
    /* Wiped on free, and the words the free lists use zeroed by
     * page_pop. calloc reads the whole body instead of zeroing it: the
     * same cost, and a full check. */
#if !BRISK_CHECKS
    store_word((uintptr_t)p, 0); /* page_pop zeroes it only with checks */
#endif
    uintptr_t end = (uintptr_t)p + pg->block_size - block_tail(harden_flags);
    bool clean = whole ? span_zero((uintptr_t)p, end) : body_wiped((uintptr_t)p, end);
    if (brisk_likely(clean))
        return p;
    return hand_out_unwiped(p);
}

void harden_free_block(page *pg, void *p)
{
    unsigned flags = harden_flags;
    uintptr_t end = (uintptr_t)p + pg->block_size;
    if (flags & HARDEN_CANARY) {
        if (brisk_unlikely(!canaries_intact(pg, p))) {
            report_canary(pg, p);
            return; /* left live: never reused */
        }
        end -= HARDEN_CANARY_SIZE;
    }
    /* The words the free lists use are wiped too: the free-list link (or
     * the quarantine's check words) is written next. */
    if (flags & HARDEN_WIPE)
        body_wipe((uintptr_t)p, end);
    /* Every free waits, a cross-thread one too: its page's owner would
     * otherwise hand it out again as soon as it collects the page's
     * cross-thread list, which may be at its next malloc. */
    if (flags & HARDEN_DELAY) {
        quarantine_put(pg, p);
        return;
    }
    free_block_to_page(pg, p);
}
