/*
 * The process allocator's entry points: brisk_malloc and friends, also
 * defined under the standard names (malloc, free, ...) so that linking
 * libbrisk.a or preloading libbrisk.so replaces the system allocator.
 * Every standard name is an alias in this one object file, so a static
 * link that needs one of them gets all of them.
 *
 * One path for every level (all inline here; the hardened level's parts
 * are hooks, each behind one predicted test of harden_flags):
 *   malloc  canary? request + 8 -> TLS thread heap -> size class -> the
 *           class's current page -> pop its free list (the popped block
 *           checked to be a block of the page) -> wipe? checked still zero.
 *   free    segment map says the 4 MiB span is ours -> page from the
 *           address -> block start and free mark checked -> canary, wipe,
 *           delay? harden_free_block -> owner thread: push on local_free,
 *           else one CAS onto the page's thread_free.
 *
 * This file deliberately includes neither <stdlib.h> nor <malloc.h>: it
 * defines those names, and is built with -fno-builtin so the compiler
 * does not turn malloc + memset into a call to calloc.
 */
#include "malloc/internal.h"

#include <errno.h>

/* ---- allocation ------------------------------------------------------- */

static BRISK_NOINLINE void *malloc_slow(size_t size, size_t alignment, bool zero, const void *caller);

/* The return address of the public function the one path is inlined
 * into: where a profile sample's stack starts. */
#define CALLER __builtin_return_address(0)

/* A block p (NULL when none could be had) of a request of size bytes
 * made for caller (NULL: not sampled, realloc samples its result itself),
 * under profiling. */
static inline void *profile_hand_out(void *p, size_t size, const void *caller)
{
    if (p != NULL && caller != NULL)
        profile_on_alloc(p, size, caller);
    return p;
}

/* calloc's zeroing of the page block p: its whole usable size, not only
 * the bytes asked for, since malloc_usable_size tells the caller the rest
 * is its to use too and it must not show a previous owner's data (glibc
 * zeroes the whole chunk as well). The canary, if any, stays. */
static void block_zero(page *pg, void *p)
{
    memset(p, 0, pg->block_size - block_tail(harden_flags));
}

/* page_hand_out under wipe or profiling: the pop, then the hooks. */
static BRISK_NOINLINE void *page_hand_out_hooked(page *pg, size_t size, const void *caller)
{
    unsigned flags = harden_flags;
    void *p = page_pop(pg);
    if (flags & HARDEN_WIPE)
        p = harden_hand_out(pg, p, false);
    if (flags & PROFILE_ON)
        p = profile_hand_out(p, size, caller);
    return p;
}

/* Under profiling alone, whether a block of size bytes needs no hook:
 * the sampling countdown (profile_on_alloc's first test, made here so
 * that the common case takes no call) does not reach its next sample.
 * A block realloc makes (caller NULL) is counted by realloc. */
BRISK_INLINE bool profile_countdown_passes(thread_heap *h, unsigned flags, size_t size,
                                           const void *caller)
{
    if (flags & HARDEN_WIPE)
        return false;
    if (caller == NULL)
        return true;
    if (h->profile_countdown > size) {
        h->profile_countdown -= size;
        return true;
    }
    return false;
}

/* The class's current page has a free block: pop it. Counting requests
 * per class costs one increment on a line the thread heap owns;
 * malloc_generic counts the requests that reach it. Under wipe the block
 * is checked to be still zero, under profiling counted down.
 * The flags are tested before the pop: a test after it would keep them
 * (and the page) in saved registers across page_pop's call to report a
 * corrupted list, making every malloc save and restore them. */
BRISK_INLINE void *page_hand_out(thread_heap *h, page *pg, unsigned flags, size_t size,
                                 const void *caller)
{
    h->class_requests[pg->size_class]++;
    if (brisk_unlikely(flags & HAND_OUT_HOOKS) && !profile_countdown_passes(h, flags, size, caller))
        return page_hand_out_hooked(pg, size, caller);
    return page_pop(pg);
}

/* The class's current page is empty: malloc_generic finds a block
 * (NULL when none can be had), checked under wipe as page_hand_out's.
 * Out of line, so the fast paths that call it keep nothing across the
 * call. */
static BRISK_NOINLINE void *generic_hand_out(thread_heap *h, unsigned cls, size_t size,
                                             const void *caller)
{
    void *p = malloc_generic(h, cls);
    unsigned flags = harden_flags;
    if (brisk_unlikely(flags & HAND_OUT_HOOKS) && p != NULL) {
        if (flags & HARDEN_WIPE)
            p = harden_hand_out(page_of(segment_of_meta(meta_of(p)), p), p, false);
        if (flags & PROFILE_ON)
            p = profile_hand_out(p, size, caller);
    }
    return p;
}

/* A block of class cls for a request of size bytes. */
BRISK_INLINE void *malloc_class(thread_heap *h, unsigned cls, unsigned flags, size_t size,
                                const void *caller)
{
    page *pg = h->direct[cls];
    if (brisk_likely(pg->free != NULL))
        return page_hand_out(h, pg, flags, size, caller);
    return generic_hand_out(h, cls, size, caller);
}

/* A block of class cls for calloc (zeroed, or under wipe checked to be
 * zero whole) or for an aligned request. */
static void *malloc_class_slow(thread_heap *h, unsigned cls, unsigned flags, bool zero, size_t size,
                               const void *caller)
{
    if (!zero)
        return malloc_class(h, cls, flags, size, caller);
    page *pg = h->direct[cls];
    void *p;
    if (pg->free != NULL) {
        h->class_requests[cls]++;
        p = page_pop(pg);
    } else {
        p = malloc_generic(h, cls);
    }
    if (p == NULL)
        return NULL;
    pg = page_of(segment_of_meta(meta_of(p)), p);
    if (flags & HARDEN_WIPE)
        p = harden_hand_out(pg, p, true);
    else
        block_zero(pg, p);
    if (flags & PROFILE_ON)
        p = profile_hand_out(p, size, caller);
    return p;
}

/* The one malloc path:
 *   canary? -> the canary added to the request (canary_request)
 *   TLS thread heap -> size class -> the class's current page -> pop its
 *   free list -> wipe? -> checked still zero (harden_hand_out) ->
 *   profile? the sampling countdown (profile_on_alloc).
 * caller: the public function's caller (CALLER), or NULL for the block
 * realloc makes, which realloc samples itself. */
BRISK_INLINE void *malloc_inline(size_t size, const void *caller)
{
    thread_heap *h = tls_thread_heap;
    unsigned flags = harden_flags;
    size_t want = brisk_unlikely(flags & HARDEN_CANARY) ? canary_request(size) : size;
    if (brisk_likely(h != NULL && want <= DIRECT_SMALL_MAX)) {
        page *pg = h->direct_small[(want + 15) >> 4];
        if (brisk_likely(pg->free != NULL))
            return page_hand_out(h, pg, flags, size, caller);
        return generic_hand_out(h, size_class_of(want), size, caller);
    }
    if (brisk_likely(h != NULL && want <= MEDIUM_SIZE_MAX))
        return malloc_class(h, size_class_of(want), flags, size, caller);
    return malloc_slow(size, 0, false, caller);
}

/* First allocation of a thread, large blocks, aligned blocks, calloc. */
static BRISK_NOINLINE void *malloc_slow(size_t size, size_t alignment, bool zero, const void *caller)
{
    thread_heap *h = tls_thread_heap;
    if (h == NULL) {
        /* The options are read here at the process's first allocation,
         * before any block is handed out: every block a hardened process
         * sees is made under its rules. */
        h = thread_heap_init_slow();
        if (h == NULL) {
            errno = ENOMEM;
            return NULL;
        }
    }
    unsigned flags = harden_flags;
    size_t want = (flags & HARDEN_CANARY) ? canary_request(size) : size;
    if (alignment <= BRISK_ALIGNMENT) {
        if (want <= MEDIUM_SIZE_MAX)
            return malloc_class_slow(h, size_class_of(want), flags, zero, size, caller);
    } else if (want <= MEDIUM_SIZE_MAX && alignment <= MEDIUM_SIZE_MAX) {
        /* A class whose block size is a multiple of the alignment, in
         * pages aligned to at least 64 KiB, gives aligned blocks: the
         * rounded size is on the class grid, so its class has exactly
         * that block size (see size_class_of). */
        size_t rounded = want <= alignment ? alignment : (want + alignment - 1) & ~(alignment - 1);
        if (rounded <= MEDIUM_SIZE_MAX)
            return malloc_class_slow(h, size_class_of(rounded), flags, zero, size, caller);
    }
    /* Large blocks carry no canary; their wipe and guards are large.c's. */
    h->large_requests++;
    h->large_bytes_requested += size;
    thread_heap_purge_tick(h);
    void *p = large_alloc(size, alignment, zero);
    if (flags & PROFILE_ON)
        p = profile_hand_out(p, size, caller);
    return p;
}

void *brisk_malloc(size_t size)
{
    return malloc_inline(size, CALLER);
}

void *brisk_calloc(size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return malloc_slow(total, 0, true, CALLER);
}

/* ---- freeing --------------------------------------------------------------- */

/* One CAS (retried only under contention) pushes b and bumps the count.
 * Into a segment whose thread exited, the free that empties a page sweeps
 * the segment instead (segment.c, "Abandonment"). */
static BRISK_NOINLINE void free_remote(page *pg, block *b)
{
    if (brisk_unlikely(__atomic_load_n(&page_segment(pg)->owner, __ATOMIC_RELAXED) == NULL) &&
        segment_abandoned_free(pg, b))
        return;
    uintptr_t word = __atomic_load_n(&pg->thread_free, __ATOMIC_RELAXED);
    uintptr_t next;
    /* A plain store, like the owner's: two frees of b at the same moment
     * can both pass the mark test (free_inline) before either writes it.
     * Writing it with an atomic exchange, so that one would find the
     * other's, puts a second atomic on every cross-thread free
     * (CHANGELOG.md has what it cost). The block is
     * then listed twice and its page's count too low: the second pop
     * finds its mark gone, a collection finds more blocks than are live,
     * or the page's release finds its lists lack a block (a page other
     * threads freed into is checked before it is given back), and the
     * page gives up its lists; it is never handed out twice. */
#if BRISK_CHECKS
    b->free_mark = pg->free_mark;
#endif
    do {
        b->next_encoded = list_encode(pg, b, thread_free_head(word));
        next = (uintptr_t)b |
               ((uintptr_t)(thread_free_count(word) + 1) << THREAD_FREE_COUNT_SHIFT);
    } while (!__atomic_compare_exchange_n(&pg->thread_free, &word, next, true,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

/* Not a small or medium block: a large block, or not ours at all. */
static BRISK_NOINLINE void free_other(void *p, unsigned kind)
{
    if (harden_flags & PROFILE_ON)
        profile_on_free(p); /* a large block's sample, if it has one */
    if (kind == SEGMAP_LARGE || kind == SEGMAP_LARGE_CACHED) {
        large_free(large_header_of_meta(meta_of(p)), p); /* validates the header */
        return;
    }
    if (kind == SEGMAP_LARGE_FREED)
        report_error(BRISK_ERROR_DOUBLE_FREE, "double free (of a large block already unmapped, or a pointer into memory mapped since at its address)", p);
    else
        report_error(BRISK_ERROR_INVALID_POINTER,
                     "free of a pointer that is not a block of this allocator", p);
}

/* Puts the validated block b on its page's lists: the owner's local
 * list, or the page's cross-thread list. */
BRISK_INLINE void free_to_page(segment *seg, page *pg, block *b)
{
    thread_heap *h = tls_thread_heap;
    if (brisk_likely(__atomic_load_n(&seg->owner, __ATOMIC_RELAXED) == h && h != NULL)) {
        b->next_encoded = list_encode(pg, b, pg->local_free);
#if BRISK_CHECKS
        b->free_mark = pg->free_mark;
#endif
        pg->local_free = b;
        if (brisk_unlikely(--pg->used == 0 || pg->in_full))
            page_free_slow(pg, h);
        return;
    }
    free_remote(pg, b);
}

void free_block_to_page(page *pg, void *p)
{
    free_to_page(page_segment(pg), pg, p);
}

/* free_live under canary, wipe, delay or profiling: the block's sample
 * dropped (before the free: once freed, the address may be another
 * thread's new block, sampled anew), then the hardening hook, which puts
 * the block on its page's lists (or in the quarantine) itself. */
static BRISK_NOINLINE void free_hooked(page *pg, block *b)
{
    unsigned flags = harden_flags;
    if (flags & PROFILE_ON)
        profile_on_page_free(pg, b);
    if (flags & HARDEN_BLOCK_PARTS)
        harden_free_block(pg, b);
    else
        free_to_page(page_segment(pg), pg, b);
}

/* The free of b, a live block of pg validated as one: the page's lists,
 * or the hooks, out of line and by a tail call, so the fast path keeps
 * nothing across a call. */
BRISK_INLINE void free_live(segment *seg, page *pg, block *b)
{
    unsigned flags = harden_flags;
    /* Under profiling alone, a page holding no sample needs no hook:
     * profile_on_page_free's test, made here so the common case takes no
     * call. */
    if (brisk_unlikely(flags & FREE_HOOKS) &&
        ((flags & HARDEN_BLOCK_PARTS) || __atomic_load_n(&pg->profile_samples, __ATOMIC_RELAXED) != 0)) {
        free_hooked(pg, b);
        return;
    }
    free_to_page(seg, pg, b);
}

#if BRISK_CHECKS
static BRISK_NOINLINE void free_invalid(page *pg, void *p)
{
    block_report_bad_free(pg, p);
}

/* A free of a block that reads as free: freed only if it is live after
 * all. */
static BRISK_NOINLINE void free_suspect(segment *seg, page *pg, block *b)
{
    if (block_suspect_is_live(pg, b, "double free",
                              "double free (or a free list corrupted: a freed block was written to)"))
        free_live(seg, pg, b);
}
#endif

/* The one free path:
 *   segment map says the 4 MiB span is ours -> page from the address ->
 *   block start and free mark checked -> canary, wipe, delay? ->
 *   owner thread: push on local_free, else one CAS onto the page's
 *   thread_free. */
BRISK_INLINE void free_inline(void *p)
{
    if (brisk_unlikely(p == NULL))
        return;
    uintptr_t meta = meta_of(p);
#if BRISK_CHECKS
    unsigned kind = segmap_kind(meta);
    if (brisk_unlikely(kind != SEGMAP_PAGES)) {
        free_other(p, kind);
        return;
    }
#else
    if (brisk_unlikely(segment_of_meta(meta)->magic != SEGMENT_MAGIC)) {
        free_other(p, SEGMAP_LARGE);
        return;
    }
#endif
    segment *seg = segment_of_meta(meta);
    page *pg = page_of(seg, p);
    block *b = p;
#if BRISK_CHECKS
    /* A carved block start of a page in use (carved is 0 otherwise; the
     * header slot's page is never in use)... */
    if (brisk_unlikely(!page_block_start(pg, (uintptr_t)p - pg->start))) {
        free_invalid(pg, p);
        return;
    }
    /* ...that does not already look free (block_looks_free). */
    if (brisk_unlikely(block_looks_free(pg, b))) {
        free_suspect(seg, pg, b);
        return;
    }
#endif
    free_live(seg, pg, b);
}

void brisk_free(void *ptr)
{
    free_inline(ptr);
}

void brisk_free_sized(void *ptr, size_t size)
{
    (void)size;
    brisk_free(ptr);
}

void brisk_free_aligned_sized(void *ptr, size_t alignment, size_t size)
{
    (void)alignment;
    (void)size;
    brisk_free(ptr);
}

/* ---- looking blocks up ------------------------------------------------- */

/* The usable size of the live block at p, or 0 after reporting p as not
 * one (when an error handler returns): `freed` names the use of a freed
 * block in the report. *large_out is set for large blocks. */
static size_t block_usable(const void *p, const char *freed, large_header **large_out)
{
    uintptr_t meta = meta_of(p);
    unsigned kind = segmap_kind(meta);
    *large_out = NULL;
    if (kind == SEGMAP_PAGES) {
        segment *seg = segment_of_meta(meta);
        page *pg = page_of(seg, p);
        uintptr_t off = (uintptr_t)p - pg->start;
        if (page_block_start(pg, off)) {
#if BRISK_CHECKS
            if (block_looks_free(pg, p) && !block_suspect_is_live(pg, p, freed, freed))
                return 0;
#endif
            return pg->block_size - block_tail(harden_flags);
        }
        if (!pg->in_use && pg->block_size != 0 && off < pg->span && (off % pg->block_size) == 0)
            report_error(BRISK_ERROR_DOUBLE_FREE, freed, p);
        else
            report_error(BRISK_ERROR_INVALID_POINTER, "pointer is not the start of a live block", p);
        return 0;
    }
    if (kind == SEGMAP_LARGE) {
        large_header *hdr = large_header_of_meta(meta);
        if (!large_header_intact(hdr)) {
            report_error(BRISK_ERROR_CORRUPTION, "large block header corrupted", p);
            return 0;
        }
        if (!hdr->cached && hdr->block == (uintptr_t)p) {
            *large_out = hdr;
            return hdr->usable;
        }
    }
    report_error(BRISK_ERROR_INVALID_POINTER, "pointer is not a live block of this allocator", p);
    return 0;
}

size_t brisk_malloc_usable_size(const void *ptr)
{
    if (ptr == NULL)
        return 0;
    large_header *hdr;
    return block_usable(ptr, "use of a freed block", &hdr);
}

/* A block that must move to grow by a little gets half as much again, so
 * a buffer grown in small steps is copied O(log n) times, not once per
 * size class (8 per doubling). */
static size_t realloc_target(size_t old, size_t size)
{
    if (size > old && size - old < old / 2 && old <= MEDIUM_SIZE_MAX / 2)
        return old + old / 2;
    return size;
}

/* Whether a block of `old` usable bytes keeps serving `size`. */
static inline bool realloc_fits(size_t old, size_t size)
{
    return size <= old && (size >= old / 2 || old <= 128);
}

static BRISK_NOINLINE void *realloc_slow(void *ptr, size_t size);

/* realloc but for profiling: the blocks it makes are not sampled here. */
BRISK_INLINE void *realloc_inline(void *ptr, size_t size)
{
    if (ptr == NULL)
        return malloc_inline(size, NULL);
    if (size == 0) {
        /* glibc's behaviour, which Linux programs rely on */
        free_inline(ptr);
        return NULL;
    }
    /* Fast path: a live small or medium block (checked as free checks). */
    uintptr_t meta = meta_of(ptr);
    if (brisk_likely(segmap_kind(meta) == SEGMAP_PAGES)) {
        segment *seg = segment_of_meta(meta);
        page *pg = page_of(seg, ptr);
#if BRISK_CHECKS
        bool live = page_block_start(pg, (uintptr_t)ptr - pg->start) &&
                    !block_looks_free(pg, (block *)ptr);
#else
        bool live = true;
#endif
        if (brisk_likely(live)) {
            unsigned flags = harden_flags;
            if (brisk_unlikely(flags & HARDEN_CANARY) && !harden_canaries_verify(pg, ptr))
                return NULL;
            size_t old = pg->block_size - block_tail(flags);
            if (realloc_fits(old, size))
                return ptr; /* same block, same canaries */
            void *fresh = malloc_inline(realloc_target(old, size), NULL);
            if (fresh == NULL)
                return NULL; /* errno is ENOMEM; the old block is untouched */
            memcpy(fresh, ptr, size < old ? size : old);
            free_live(seg, pg, ptr);
            return fresh;
        }
    }
    return realloc_slow(ptr, size);
}

/* Under profiling a realloc counts as the free of the old block and the
 * allocation of the new one (as heaptrack and jemalloc count it), even
 * when the block stays in place; a realloc that fails has dropped its
 * block's sample. */
static BRISK_NOINLINE void *realloc_profiled(void *ptr, size_t size, const void *caller)
{
    profile_on_free(ptr);
    return profile_hand_out(realloc_inline(ptr, size), size, caller);
}

void *brisk_realloc(void *ptr, size_t size)
{
    if (brisk_unlikely(harden_flags & PROFILE_ON))
        return realloc_profiled(ptr, size, CALLER);
    return realloc_inline(ptr, size);
}

/* Large blocks, and pointers the fast path doubts (reported here). */
static BRISK_NOINLINE void *realloc_slow(void *ptr, size_t size)
{
    large_header *hdr;
    size_t old = block_usable(ptr, "realloc of a freed block", &hdr);
    if (old == 0)
        return NULL; /* reported; the handler returned */
    if (hdr != NULL) {
        if (large_try_resize(hdr, size))
            return ptr;
    } else {
        /* A live block that read as free (its data happen to be the
         * mark): the fast path's work, with its canary check. */
        page *pg = page_of(segment_of_meta(meta_of(ptr)), ptr);
        if ((harden_flags & HARDEN_CANARY) && !harden_canaries_verify(pg, ptr))
            return NULL;
        if (realloc_fits(old, size))
            return ptr;
    }
    void *fresh = malloc_inline(realloc_target(old, size), NULL);
    if (fresh == NULL)
        return NULL; /* errno is ENOMEM; the old block is untouched */
    memcpy(fresh, ptr, size < old ? size : old);
    free_inline(ptr);
    return fresh;
}

void *brisk_reallocarray(void *ptr, size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (brisk_unlikely(harden_flags & PROFILE_ON))
        return realloc_profiled(ptr, total, CALLER);
    return realloc_inline(ptr, total);
}

/* ---- aligned allocation ------------------------------------------------------ */

BRISK_INLINE void *aligned_alloc_checked(size_t alignment, size_t size, const void *caller)
{
    if (size > REQUEST_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    return malloc_slow(size, alignment, false, caller);
}

int brisk_posix_memalign(void **out, size_t alignment, size_t size)
{
    if (!is_power_of_two(alignment) || alignment < sizeof(void *))
        return EINVAL;
    int saved = errno;
    void *p = aligned_alloc_checked(alignment, size, CALLER);
    if (p == NULL) {
        errno = saved;
        return ENOMEM;
    }
    *out = p;
    return 0;
}

void *brisk_aligned_alloc(size_t alignment, size_t size)
{
    if (!is_power_of_two(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    return aligned_alloc_checked(alignment, size, CALLER);
}

/* glibc's memalign rounds an alignment that is not a power of two up to
 * one, and refuses only alignments too large to round. */
void *brisk_memalign(size_t alignment, size_t size)
{
    if (alignment > REQUEST_MAX) {
        errno = EINVAL;
        return NULL;
    }
    size_t a = BRISK_ALIGNMENT;
    while (a < alignment)
        a <<= 1;
    return aligned_alloc_checked(a, size, CALLER);
}

void *brisk_valloc(size_t size)
{
    return aligned_alloc_checked(os_page_size(), size, CALLER);
}

void *brisk_pvalloc(size_t size)
{
    size_t page_bytes = os_page_size();
    size_t rounded;
    if (!align_up_checked(size == 0 ? 1 : size, page_bytes, &rounded)) {
        errno = ENOMEM;
        return NULL;
    }
    return aligned_alloc_checked(page_bytes, rounded, CALLER);
}

/* ---- glibc extras -------------------------------------------------------- */

int malloc_trim(size_t pad);
int malloc_trim(size_t pad)
{
    (void)pad;
    thread_heap *h = tls_thread_heap;
    if (h != NULL)
        return thread_heap_purge(h, true) ? 1 : 0;
    uint64_t now = os_now_ms();
    bool any = segment_cache_purge(now, true);
    any |= large_cache_purge(now, true);
    return any ? 1 : 0;
}

/* Accepts glibc's tuning parameters (returning 1, success, as glibc
 * does) without acting on them: brisk's own settings come from
 * BRISK_OPTIONS. Unknown parameters return 0. */
int mallopt(int param, int value);
int mallopt(int param, int value)
{
    (void)value;
    switch (param) {
    case 1:  /* M_MXFAST */
    case -1: /* M_TRIM_THRESHOLD */
    case -2: /* M_TOP_PAD */
    case -3: /* M_MMAP_THRESHOLD */
    case -4: /* M_MMAP_MAX */
    case -5: /* M_CHECK_ACTION */
    case -6: /* M_PERTURB */
    case -7: /* M_ARENA_TEST */
    case -8: /* M_ARENA_MAX */
        return 1;
    default:
        return 0;
    }
}

/* ---- the standard names ---------------------------------------------------- */

/* Each standard name is an alias of its brisk_ function and carries the
 * same attributes (brisk.h): the compiler checks that they agree. */
#define BRISK_ALIAS(name) __attribute__((alias(#name), used))

BRISK_ALLOCATOR BRISK_ALLOC_SIZE(1) void *malloc(size_t size) BRISK_ALIAS(brisk_malloc);
BRISK_ALLOCATOR BRISK_ALLOC_SIZE(1, 2) void *calloc(size_t count, size_t size) BRISK_ALIAS(brisk_calloc);
BRISK_ALLOC_SIZE(2) void *realloc(void *ptr, size_t size) BRISK_ALIAS(brisk_realloc);
BRISK_ALLOC_SIZE(2, 3)
void *reallocarray(void *ptr, size_t count, size_t size) BRISK_ALIAS(brisk_reallocarray);
void free(void *ptr) BRISK_ALIAS(brisk_free);
void free_sized(void *ptr, size_t size) BRISK_ALIAS(brisk_free_sized);
void free_aligned_sized(void *ptr, size_t alignment, size_t size)
    BRISK_ALIAS(brisk_free_aligned_sized);
int posix_memalign(void **out, size_t alignment, size_t size) BRISK_ALIAS(brisk_posix_memalign);
BRISK_ALLOCATOR BRISK_ALLOC_ALIGN(1) BRISK_ALLOC_SIZE(2)
void *aligned_alloc(size_t alignment, size_t size) BRISK_ALIAS(brisk_aligned_alloc);
BRISK_ALLOCATOR BRISK_ALLOC_ALIGN(1) BRISK_ALLOC_SIZE(2)
void *memalign(size_t alignment, size_t size) BRISK_ALIAS(brisk_memalign);
BRISK_ALLOCATOR BRISK_ALLOC_SIZE(1) void *valloc(size_t size) BRISK_ALIAS(brisk_valloc);
BRISK_ALLOCATOR void *pvalloc(size_t size) BRISK_ALIAS(brisk_pvalloc);
size_t malloc_usable_size(void *ptr) BRISK_ALIAS(brisk_malloc_usable_size);
