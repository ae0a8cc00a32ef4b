/*
 * The process allocator's entry points: brisk_malloc and friends, also
 * defined under the standard names (malloc, free, ...) so that linking
 * libbrisk.a or preloading libbrisk.so replaces the system allocator.
 * Every standard name is an alias in this one object file, so a static
 * link that needs one of them gets all of them.
 *
 * Fast paths (all inline here):
 *   malloc  TLS thread heap -> size class -> the class's current page -> pop its
 *           free list (the popped block checked to be a block of the page).
 *   free    segment map says the 4 MiB span is ours -> page from the
 *           address -> block start and free mark checked -> owner thread:
 *           push on local_free, else one CAS onto the page's thread_free.
 *
 * This file deliberately includes neither <stdlib.h> nor <malloc.h>: it
 * defines those names, and is built with -fno-builtin so the compiler
 * does not turn malloc + memset into a call to calloc.
 */
#include "malloc/internal.h"

#include <errno.h>

/* ---- allocation ------------------------------------------------------- */

static BRISK_NOINLINE void *malloc_slow(size_t size, size_t alignment, bool zero);

/* Counting requests per class costs one increment on a line the thread heap
 * owns; malloc_generic counts the requests that reach it. */
BRISK_INLINE void *malloc_class(thread_heap *h, unsigned cls)
{
    page *pg = h->direct[cls];
    if (brisk_likely(pg->free != NULL)) {
        h->class_requests[cls]++;
        return page_pop(pg);
    }
    return malloc_generic(h, cls);
}

BRISK_INLINE void *malloc_inline(size_t size)
{
    thread_heap *h = tls_thread_heap;
    if (brisk_likely(h != NULL && size <= DIRECT_SMALL_MAX)) {
        page *pg = h->direct_small[(size + 15) >> 4];
        if (brisk_likely(pg->free != NULL)) {
            h->class_requests[pg->size_class]++;
            return page_pop(pg);
        }
        return malloc_generic(h, size_class_of(size));
    }
    if (brisk_likely(h != NULL && size <= MEDIUM_SIZE_MAX))
        return malloc_class(h, size_class_of(size));
    return malloc_slow(size, 0, false);
}

/* calloc's zeroing of the page block p: its whole usable size, not only
 * the bytes asked for, since malloc_usable_size tells the caller the rest
 * is its to use too and it must not show a previous owner's data (glibc
 * zeroes the whole chunk as well). The usable size is the block less its
 * canary when harden.c asks for a zeroed block under canaries. */
static void block_zero(void *p)
{
    page *pg = page_of(segment_of_meta(meta_of(p)), p);
    size_t canary = (harden_flags & HARDEN_CANARY) ? HARDEN_CANARY_SIZE : 0;
    memset(p, 0, pg->block_size - canary);
}

/* First allocation of a thread, large blocks, aligned blocks, calloc. */
static BRISK_NOINLINE void *malloc_slow(size_t size, size_t alignment, bool zero)
{
    thread_heap *h = tls_thread_heap;
    if (h == NULL) {
        h = thread_heap_init_slow();
        if (h == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        /* The options were just read: a hardened process hands out no
         * block that was not made under its rules. */
        if (brisk_unlikely(harden_flags & HARDEN_BLOCK_PARTS))
            return harden_alloc(size, alignment, zero);
    }
    void *p;
    if (alignment <= BRISK_ALIGNMENT) {
        if (size <= MEDIUM_SIZE_MAX) {
            p = malloc_class(h, size_class_of(size));
            if (zero && p != NULL)
                block_zero(p);
            return p;
        }
    } else if (size <= MEDIUM_SIZE_MAX && alignment <= MEDIUM_SIZE_MAX) {
        /* A class whose block size is a multiple of the alignment, in
         * pages aligned to at least 64 KiB, gives aligned blocks: the
         * rounded size is on the class grid, so its class has exactly
         * that block size (see size_class_of). */
        size_t rounded = size <= alignment ? alignment : (size + alignment - 1) & ~(alignment - 1);
        if (rounded <= MEDIUM_SIZE_MAX) {
            p = malloc_class(h, size_class_of(rounded));
            if (zero && p != NULL)
                block_zero(p);
            return p;
        }
    }
    h->large_requests++;
    h->large_bytes_requested += size;
    thread_heap_purge_tick(h);
    return large_alloc(size, alignment, zero);
}

/* ---- hooked entries: hardening and profiling ---------------------------- *
 *
 * The public functions come here when harden_flags has any of
 * HOOKED_PARTS (their one test of it): the hardened level's parts
 * (harden.c) and sampled profiling (profile.c). The profiling hooks are
 * the calls marked PROFILE HOOK, each under its own test of PROFILE_ON:
 * after an allocation (with the entry point's return address, where the
 * sample's stack starts) and before a free (once freed, the address may
 * be another thread's new block, sampled anew). */

static BRISK_NOINLINE void *alloc_hooked(size_t size, size_t alignment, bool zero,
                                         const void *caller)
{
    void *p;
    if (harden_flags & HARDEN_BLOCK_PARTS)
        p = harden_alloc(size, alignment, zero);
    else if (alignment == 0 && !zero)
        p = malloc_inline(size);
    else
        p = malloc_slow(size, alignment, zero);
    if ((harden_flags & PROFILE_ON) && p != NULL)
        profile_on_alloc(p, size, caller); /* PROFILE HOOK */
    return p;
}

static void *realloc_plain(void *ptr, size_t size);

/* A realloc counts as the free of the old block and the allocation of
 * the new one (as heaptrack and jemalloc count it), even when the block
 * stays in place. A realloc that fails has dropped its block's sample. */
static BRISK_NOINLINE void *realloc_hooked(void *ptr, size_t size, const void *caller)
{
    bool profiling = harden_flags & PROFILE_ON;
    if (profiling)
        profile_on_free(ptr); /* PROFILE HOOK */
    void *p = (harden_flags & HARDEN_BLOCK_PARTS) ? harden_realloc(ptr, size)
                                                   : realloc_plain(ptr, size);
    if (profiling && p != NULL)
        profile_on_alloc(p, size, caller); /* PROFILE HOOK */
    return p;
}

#define CALLER __builtin_return_address(0)

void *brisk_malloc(size_t size)
{
    if (brisk_unlikely(harden_flags & HOOKED_PARTS))
        return alloc_hooked(size, 0, false, CALLER);
    return malloc_inline(size);
}

/* Under canaries every block ends in its canary: a 16-byte block's would
 * be its second word, where a free block keeps its free mark (see
 * malloc/types.h). Hardened requests (which include the canary) get
 * 32-byte blocks at least. */
static inline size_t harden_request(size_t size)
{
    return size <= 16 && (harden_flags & HARDEN_CANARY) ? 17 : size;
}

/* The unhardened allocator, for harden.c. */
void *malloc_raw(size_t size, size_t alignment, bool zero)
{
    return malloc_slow(harden_request(size), alignment, zero);
}

void *malloc_fast_raw(size_t size)
{
    return malloc_inline(harden_request(size));
}

void *brisk_calloc(size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (brisk_unlikely(harden_flags & HOOKED_PARTS))
        return alloc_hooked(total, 0, true, CALLER);
    return malloc_slow(total, 0, true);
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

#if BRISK_CHECKS
static BRISK_NOINLINE void free_invalid(page *pg, void *p)
{
    block_report_bad_free(pg, p);
}
#endif

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

/* profiling: free_hooked saw PROFILE_ON; everywhere else a constant
 * false, so the default path is what it was. */
BRISK_INLINE void free_block(void *p, bool profiling)
{
    if (brisk_unlikely(p == NULL))
        return;
    uintptr_t meta = meta_of(p);
#if BRISK_CHECKS
    unsigned kind = segmap_kind(meta);
    if (brisk_unlikely(kind != SEGMAP_PAGES)) {
        if (profiling)
            profile_on_free(p); /* PROFILE HOOK (a large block) */
        free_other(p, kind);
        return;
    }
#else
    if (brisk_unlikely(segment_of_meta(meta)->magic != SEGMENT_MAGIC)) {
        if (profiling)
            profile_on_free(p); /* PROFILE HOOK (a large block) */
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
        free_suspect(pg, b);
        return;
    }
#endif
    if (profiling)
        profile_on_page_free(pg, p); /* PROFILE HOOK */
    free_to_page(seg, pg, b);
}

BRISK_INLINE void free_inline(void *p)
{
    free_block(p, false);
}

/* See "hooked entries" above. */
static BRISK_NOINLINE void free_hooked(void *ptr)
{
    if (!(harden_flags & HARDEN_BLOCK_PARTS)) {
        free_block(ptr, true); /* profiling: its hooks are in there */
        return;
    }
    if (harden_flags & PROFILE_ON)
        profile_on_free(ptr); /* PROFILE HOOK */
    harden_free(ptr);
}

void brisk_free(void *ptr)
{
    if (brisk_unlikely(harden_flags & HOOKED_PARTS)) {
        free_hooked(ptr);
        return;
    }
    free_inline(ptr);
}

void free_raw(void *p)
{
    free_inline(p);
}

/* For harden.c, whose blocks leaving the quarantine have had their check
 * words verified there. */
void free_validated(page *pg, void *p)
{
    free_to_page(page_segment(pg), pg, p);
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
 * one (when an error handler returns). *large_out is set for large
 * blocks. */
static size_t block_usable(const void *p, large_header **large_out)
{
    uintptr_t meta = meta_of(p);
    unsigned kind = segmap_kind(meta);
    *large_out = NULL;
    if (kind == SEGMAP_PAGES) {
        segment *seg = segment_of_meta(meta);
        page *pg = page_of(seg, p);
        uintptr_t off = (uintptr_t)p - pg->start;
        bool start = page_block_start(pg, off);
#if BRISK_CHECKS
        bool looks_free = start && block_looks_free(pg, p);
        /* Only the owner may walk the page's lists to clear a suspect; a
         * thread with no thread heap must not claim an abandoned segment's pages,
         * which another thread may be adopting. */
        if (looks_free && tls_thread_heap != NULL &&
            __atomic_load_n(&seg->owner, __ATOMIC_RELAXED) == tls_thread_heap &&
            !page_has_free_block(pg, p))
            looks_free = false;
#else
        bool looks_free = false;
#endif
        if (start && !looks_free)
            return pg->block_size;
        if (looks_free || (!pg->in_use && pg->block_size != 0 && off < pg->span &&
                           (off % pg->block_size) == 0))
            report_error(BRISK_ERROR_DOUBLE_FREE, "use of a freed block", p);
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
    if (brisk_unlikely(harden_flags & HARDEN_BLOCK_PARTS))
        return harden_usable_size(ptr);
    large_header *hdr;
    return block_usable(ptr, &hdr);
}

size_t usable_raw(const void *p)
{
    large_header *hdr;
    return block_usable(p, &hdr);
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

static BRISK_NOINLINE void *realloc_slow(void *ptr, size_t size);

BRISK_INLINE void *realloc_entry(void *ptr, size_t size, const void *caller)
{
    if (brisk_unlikely(harden_flags & HOOKED_PARTS))
        return realloc_hooked(ptr, size, caller);
    return realloc_plain(ptr, size);
}

void *brisk_realloc(void *ptr, size_t size)
{
    return realloc_entry(ptr, size, CALLER);
}

/* The unhardened, unprofiled realloc. */
static void *realloc_plain(void *ptr, size_t size)
{
    if (ptr == NULL)
        return malloc_inline(size);
    if (size == 0) {
        /* glibc's behaviour, which Linux programs rely on */
        free_inline(ptr);
        return NULL;
    }
    /* Fast path: a live small or medium block (checked as free checks). */
    uintptr_t meta = meta_of(ptr);
    if (brisk_likely(segmap_kind(meta) == SEGMAP_PAGES)) {
        page *pg = page_of(segment_of_meta(meta), ptr);
#if BRISK_CHECKS
        bool live = page_block_start(pg, (uintptr_t)ptr - pg->start) &&
                    !block_looks_free(pg, (block *)ptr);
#else
        bool live = true;
#endif
        if (brisk_likely(live)) {
            size_t old = pg->block_size;
            if (size <= old && (size >= old / 2 || old <= 128))
                return ptr;
            void *fresh = malloc_inline(realloc_target(old, size));
            if (fresh == NULL)
                return NULL; /* errno is ENOMEM; the old block is untouched */
            memcpy(fresh, ptr, size < old ? size : old);
            free_inline(ptr);
            return fresh;
        }
    }
    return realloc_slow(ptr, size);
}

/* Large blocks, and pointers the fast path doubts (reported here). */
static BRISK_NOINLINE void *realloc_slow(void *ptr, size_t size)
{
    large_header *hdr;
    size_t old = block_usable(ptr, &hdr);
    if (old == 0)
        return NULL; /* reported; the handler returned */
    if (hdr != NULL) {
        if (large_try_resize(hdr, size))
            return ptr;
    } else if (size <= old && (size >= old / 2 || old <= 128)) {
        return ptr;
    }
    void *fresh = malloc_inline(size);
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
    return realloc_entry(ptr, total, CALLER);
}

/* ---- aligned allocation ------------------------------------------------------ */

BRISK_INLINE void *aligned_alloc_checked(size_t alignment, size_t size, const void *caller)
{
    if (size > REQUEST_MAX) {
        errno = ENOMEM;
        return NULL;
    }
    if (brisk_unlikely(harden_flags & HOOKED_PARTS))
        return alloc_hooked(size, alignment, false, caller);
    return malloc_slow(size, alignment, false);
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
