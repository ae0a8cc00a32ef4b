/*
 * The process allocator's hardened level (BRISK_OPTIONS=hardened, or any
 * of canary, wipe, guard, delay): checks layered around the unhardened
 * allocator. The default level (pointer validation through the segment
 * map, block-start checks, double frees found from a freed block's own
 * encoded link, checked free lists) is built into the allocator itself;
 * this file adds what costs time on every call and so is opt-in.
 * docs/security.md says what each part catches and what it does not, and
 * what it costs.
 *
 * The public functions divert here with one test of harden_flags (for the
 * parts that work on every block: canary, wipe, delay), which is written
 * once when the options are read (before the first block is handed out)
 * and never again, so every block a hardened process sees was made under
 * the same rules.
 *
 *   canary  every slot of a page ends in a secret-derived canary word, and
 *           each page leaves its first slot unused so its first block has
 *           a canary in front too (layout in malloc_internal.h). free and
 *           realloc check the canary after the block (overflow) and the
 *           one before it (underflow). usable size is the slot less 8.
 *   wipe    free zeroes the block (all but its canary); malloc checks that
 *           a block it hands out is still zero, but for its free-list link,
 *           in its first and last WIPE_SAMPLE_BYTES, so a write into freed
 *           memory there is reported when the memory comes back, and no
 *           block ever shows a previous owner's bytes. Blocks carved from
 *           a slot that may hold old data are zeroed as they are carved
 *           (a fresh slot is zero already); large blocks taken from the
 *           cache are zeroed whole.
 *   guard   large blocks get an inaccessible page right before and right
 *           after them (large.c), so running off either end faults at once;
 *           a freed guarded block is cached and reused only as it is.
 *   delay   a freed block goes into a random slot of its thread's
 *           quarantine of QUARANTINE_SLOTS blocks, evicting the previous
 *           occupant to the real free; so a freed block is never handed
 *           straight back, and reuse order is random. (A block freed by a
 *           thread other than its page's owner skips the quarantine: it
 *           waits on the page's cross-thread list anyway.) A quarantined
 *           block carries a secret-derived marker in its first word: a
 *           second free (from any thread) finds it and is reported at once,
 *           and a marker found overwritten at eviction is a write after
 *           free. A thread's quarantine is emptied when the thread exits.
 */
#include "malloc_internal.h"

#include <errno.h>

unsigned harden_flags;

#define QUARANTINE_SLOTS 64u

typedef struct quarantine {
    void *slots[QUARANTINE_SLOTS];
    uint64_t rng;
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
 * already reads the heap (docs/security.md). */
static inline uint64_t canary_at(uintptr_t at)
{
    return (uint64_t)at ^ (uint64_t)process_secret;
}

/* The marker a quarantined block at p carries in its first word. */
static inline uint64_t quarantine_marker(const void *p)
{
    return (((uint64_t)(uintptr_t)p ^ (uint64_t)process_secret) * 0xd6e8feb86659fd93u) ^
           0x71756172616eu;
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

/* Whether [from, from + len) is all zero; from and len multiples of 8.
 * Or-reduces 64 bytes at a time and stops at
 * the first dirty chunk. */
static bool words_zero(uintptr_t from, size_t len)
{
    const uint64_t *w = (const uint64_t *)from;
    size_t n = len / sizeof(uint64_t);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t acc = w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
        if (acc != 0)
            return false;
    }
    uint64_t acc = 0;
    for (; i < n; i++)
        acc |= w[i];
    return acc == 0;
}

static inline size_t tail_bytes(void)
{
    return (harden_flags & HARDEN_CANARY) ? HARDEN_CANARY_SIZE : 0;
}

/* Zeroes [from, from + len) (multiples of 8) with inline stores: small
 * blocks are the common case, and a call into libc's memset (this file
 * cannot use the builtin: the allocator is built with -fno-builtin) costs
 * more than the stores. The loop must not be turned back into that call. */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_LOOP_TO_MEMSET __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NO_LOOP_TO_MEMSET /* clang leaves loops alone under -fno-builtin */
#endif
NO_LOOP_TO_MEMSET
static void words_clear(uintptr_t from, size_t len)
{
    if (len > 512) {
        memset((void *)from, 0, len);
        return;
    }
    uint64_t *w = (uint64_t *)from;
    size_t n = len / sizeof(uint64_t);
    for (size_t i = 0; i < n; i++)
        w[i] = 0;
}

/* A block handed out under wipe is checked to be still zero only in a
 * sample: its first WIPE_SAMPLE_BYTES (less the free-list link in the
 * first word) and its last WIPE_SAMPLE_BYTES before the canary, which is
 * all of any block of up to 2 * WIPE_SAMPLE_BYTES. Two cache lines at
 * each end: a write after free usually lands on an object's header or
 * on its last fields (a length, a pointer, a vtable, a reference count).
 * Reading the whole block back cost as much as wiping it; the free still
 * wipes every byte, so a block shows a previous owner's bytes only where
 * a write after free put them outside the sample (docs/security.md). */
#define WIPE_SAMPLE_BYTES ((size_t)128)

/* Whether the sampled words of a block of `body` bytes (its size less
 * the canary) at p are zero, but for the first word. */
static inline bool wiped_sample_zero(uintptr_t p, size_t body)
{
    if (body <= 2 * WIPE_SAMPLE_BYTES)
        return words_zero(p + sizeof(uint64_t), body - sizeof(uint64_t));
    return words_zero(p + sizeof(uint64_t), WIPE_SAMPLE_BYTES - sizeof(uint64_t)) &&
           words_zero(p + body - WIPE_SAMPLE_BYTES, WIPE_SAMPLE_BYTES);
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

void harden_blocks_carved(page *pg, uintptr_t first, uint32_t count)
{
    size_t bsize = pg->block_size;
    if ((harden_flags & HARDEN_WIPE) && !pg->fresh) {
        /* A slot used before by another class may hold its old links and
         * canaries; freshly carved blocks must read as wiped. A fresh
         * slot (mapped or decommitted since last used, and never carved
         * beyond `first` since) is zero already: zeroing it again would
         * only touch its memory early. */
        memset((void *)first, 0, (size_t)count * bsize);
    }
    if (harden_flags & HARDEN_CANARY) {
        for (uint32_t i = 0; i < count; i++) {
            uintptr_t at = first + (uintptr_t)(i + 1) * bsize - HARDEN_CANARY_SIZE;
            store_word(at, canary_at(at));
        }
    }
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

/* ---- looking blocks up -------------------------------------------------- */

/* The page of p when p is the start of a carved block of a page in use,
 * else NULL (a large block, or a pointer the unhardened code reports). */
BRISK_INLINE page *page_block_of(const void *p)
{
    uintptr_t meta = meta_of(p);
    if (segmap_kind(meta) != SEGMAP_PAGES)
        return NULL;
    page *pg = page_of((segment *)meta, p);
    if (!page_block_start(pg, (uintptr_t)p - pg->start))
        return NULL;
    return pg;
}

/* As page_block_of, and the block does not look free (its first word is
 * not a free-list link of its page): a block whose first word does is
 * left to the unhardened free, which confirms and reports the double
 * free, or frees it when it was live after all. */
BRISK_INLINE page *live_page_block(const void *p)
{
    page *pg = page_block_of(p);
    if (pg == NULL || block_looks_free(pg, p))
        return NULL;
    return pg;
}

static inline bool is_quarantined(const void *p)
{
    return (harden_flags & HARDEN_DELAY) && load_word((uintptr_t)p) == quarantine_marker(p);
}

/* Checks the canaries after and before the live block p of pg; reports
 * and returns false when one was overwritten. */
static bool canaries_intact(const page *pg, const void *p)
{
    uintptr_t after = (uintptr_t)p + pg->block_size - HARDEN_CANARY_SIZE;
    if (load_word(after) != canary_at(after)) {
        report_error(BRISK_ERROR_OVERFLOW,
                     "heap buffer overflow: the canary after the block was overwritten", p);
        return false;
    }
    uintptr_t before = (uintptr_t)p - HARDEN_CANARY_SIZE;
    if (load_word(before) != canary_at(before)) {
        report_error(BRISK_ERROR_OVERFLOW,
                     "heap buffer underflow: the canary before the block was overwritten "
                     "(or the block before it overflowed)",
                     p);
        return false;
    }
    return true;
}

/* ---- delayed reuse ------------------------------------------------------- */

static quarantine *quarantine_get(void)
{
    quarantine *q = tls_quarantine;
    if (brisk_likely(q != NULL))
        return q;
    q = malloc_raw(sizeof *q, 0, true);
    if (q == NULL)
        return NULL;
    q->rng = mix64((uint64_t)process_secret ^ (uint64_t)(uintptr_t)q ^ os_now_ms()) | 1u;
    tls_quarantine = q;
    return q;
}

static inline uint64_t quarantine_random(quarantine *q)
{
    /* xorshift64*: plenty for picking slots, and seeded from the secret. */
    q->rng ^= q->rng >> 12;
    q->rng ^= q->rng << 25;
    q->rng ^= q->rng >> 27;
    return q->rng * 0x2545f4914f6cdd1du;
}

/* Hands a block leaving the quarantine to the real free, after checking
 * its marker: anything else in its first word was written after free. */
static void quarantine_release(void *p)
{
    if (load_word((uintptr_t)p) != quarantine_marker(p)) {
        report_error(BRISK_ERROR_USE_AFTER_FREE,
                     "use after free: a freed block was written to (found leaving the quarantine)", p);
        return; /* the block stays out of reach: lost, never reused */
    }
    store_word((uintptr_t)p, 0);
    /* Validated when it was freed, and live (off every list) since. */
    uintptr_t meta = meta_of(p);
    free_validated(page_of((segment *)meta, p), p);
}

static void quarantine_put(void *p)
{
    quarantine *q = quarantine_get();
    if (q == NULL) {
        free_raw(p); /* no memory for a quarantine: free at once */
        return;
    }
    store_word((uintptr_t)p, quarantine_marker(p));
    uint32_t slot = (uint32_t)(quarantine_random(q) >> 58) & (QUARANTINE_SLOTS - 1);
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
        if (q->slots[i] != NULL)
            quarantine_release(q->slots[i]);
    }
    /* The quarantine is a block of the allocator like any other: under
     * wipe it must go back wiped (it holds pointers), or the next malloc
     * of its size would find it "written after free". */
    page *pg = page_of((segment *)meta_of(q), q);
    if (harden_flags & HARDEN_WIPE)
        words_clear((uintptr_t)q + sizeof(uint64_t), pg->block_size - sizeof(uint64_t) - tail_bytes());
    free_validated(pg, q);
}

/* ---- the hardened entry points --------------------------------------------- */

void *harden_alloc(size_t size, size_t alignment, bool zero)
{
    size_t tail = tail_bytes();
    if (size > REQUEST_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    /* A thread's first allocation: set its heap up here, or the raw call
     * below would do it and divert into harden_alloc a second time, adding
     * a second tail (and for sizes just under MEDIUM_SIZE_MAX turning the
     * block into a large one that the page lookup below would misread). */
    if (brisk_unlikely(tls_heap == NULL) && heap_init_slow() == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = alignment == 0 && !zero ? malloc_fast_raw(size + tail)
                                      : malloc_raw(size + tail, alignment, zero);
    if (p == NULL)
        return NULL;
    page *pg;
    if (alignment <= BRISK_ALIGNMENT && size + tail <= MEDIUM_SIZE_MAX) {
        pg = page_of((segment *)meta_of(p), p); /* a page block for sure */
    } else {
        pg = page_block_of(p);
        if (pg == NULL)
            return p; /* a large block: guard pages and zeroing are large.c's */
    }
    size_t bsize = pg->block_size;
    if (harden_flags & HARDEN_WIPE) {
        /* Wiped on free but for the first word (the free-list link);
         * checked in a sample (WIPE_SAMPLE_BYTES). */
        if (!wiped_sample_zero((uintptr_t)p, bsize - tail)) {
            report_error(BRISK_ERROR_USE_AFTER_FREE,
                         "use after free: a freed block was written to (found when handed out again)", p);
            errno = ENOMEM;
            return NULL; /* the block stays live: lost, never reused */
        }
        store_word((uintptr_t)p, 0);
    }
    if (tail != 0 && zero) {
        /* The canary is written when the slot is carved and stays; only
         * calloc's zeroing may have reached it. */
        uintptr_t at = (uintptr_t)p + bsize - HARDEN_CANARY_SIZE;
        store_word(at, canary_at(at));
    }
    return p;
}

void harden_free(void *p)
{
    if (p == NULL)
        return;
    page *pg = live_page_block(p);
    if (pg == NULL) {
        free_raw(p); /* a large block, or misuse the unhardened code reports */
        return;
    }
    if (is_quarantined(p)) {
        report_error(BRISK_ERROR_DOUBLE_FREE, "double free", p);
        return;
    }
    heap *h = tls_heap;
    bool local = h != NULL && __atomic_load_n(&page_segment(pg)->owner, __ATOMIC_RELAXED) == h;
    if ((harden_flags & HARDEN_CANARY) && !canaries_intact(pg, p))
        return;
    /* The first word is left for the free-list link or the quarantine
     * marker; malloc zeroes it when it hands the block out. */
    if (harden_flags & HARDEN_WIPE)
        words_clear((uintptr_t)p + sizeof(uint64_t), pg->block_size - sizeof(uint64_t) - tail_bytes());
    if ((harden_flags & HARDEN_DELAY) && local) {
        /* Cross-thread frees skip the quarantine: they wait on the page's
         * cross-thread list until the owner collects them anyway. */
        quarantine_put(p);
        return;
    }
    free_validated(pg, p);
}

size_t harden_usable_size(const void *p)
{
    if (p == NULL)
        return 0;
    page *pg = live_page_block(p);
    if (pg == NULL)
        return usable_raw(p);
    if (is_quarantined(p)) {
        report_error(BRISK_ERROR_DOUBLE_FREE, "use of a freed block", p);
        return 0;
    }
    return pg->block_size - tail_bytes();
}

void *harden_realloc(void *p, size_t size)
{
    if (p == NULL)
        return harden_alloc(size, 0, false);
    if (size == 0) {
        harden_free(p);
        return NULL;
    }
    size_t old;
    page *pg = live_page_block(p);
    if (pg != NULL) {
        if (is_quarantined(p)) {
            report_error(BRISK_ERROR_DOUBLE_FREE, "realloc of a freed block", p);
            return NULL;
        }
        if ((harden_flags & HARDEN_CANARY) && !canaries_intact(pg, p))
            return NULL;
        old = pg->block_size - tail_bytes();
        if (size <= old && (size >= old / 2 || old <= 128))
            return p; /* same block, same canaries */
    } else {
        old = usable_raw(p); /* reports misuse; 0 when a handler returned */
        if (old == 0)
            return NULL;
        /* A live large block: resized in place when its mapping allows
         * (not under guard, whose pages must stay at the block's ends). */
        if (size > MEDIUM_SIZE_MAX && !(harden_flags & HARDEN_GUARD) &&
            large_try_resize((large_header *)meta_of(p), size))
            return p;
    }
    /* As malloc.c's realloc: a block that must move to grow by a little
     * gets half as much again, so growing in small steps copies O(log n)
     * times. */
    size_t target = size;
    if (size > old && size - old < old / 2 && old <= MEDIUM_SIZE_MAX / 2)
        target = old + old / 2;
    void *fresh = harden_alloc(target, 0, false);
    if (fresh == NULL)
        return NULL; /* errno is ENOMEM; the old block is untouched */
    memcpy(fresh, p, size < old ? size : old);
    harden_free(p);
    return fresh;
}
