/*
 * brisk: a memory allocator library.
 *
 * This header is the whole public API. Every function states its contract:
 * what it returns, when it fails and what errno then says. Anything not
 * declared here is internal and may change.
 *
 * Three allocators share one error-reporting path:
 *
 *   brisk_arena_*   bump allocation over one region, freed all at once.
 *   brisk_heap_*    a heap of boundary-tagged chunks over one region, with
 *                   O(1) alloc and free and a self-check.
 *   brisk_malloc*   the process-wide allocator; libbrisk.so also exports it
 *                   under the standard names (malloc, free, ...).
 *
 * Misuse (freeing a pointer that is not a live block, a corrupted header)
 * is never silent: it is reported through the error handler below.
 *
 * An arena or heap argument must be one its create function returned and
 * that has not been destroyed since. NULL is accepted only where a
 * contract says so: by the destroy functions (they do nothing) and the
 * check functions (they report "no arena" / "no heap" and return -1).
 */
#ifndef BRISK_H
#define BRISK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BRISK_VERSION_MAJOR 0
#define BRISK_VERSION_MINOR 1
#define BRISK_VERSION_PATCH 0

/* Function attributes a compiler uses to check callers and to reason
 * about the memory returned: BRISK_ALLOCATOR marks a function returning a
 * new block no other pointer aliases, BRISK_ALLOC_SIZE(i) / (i, j) names
 * the parameter(s) whose value (or product) is the block's size, and
 * BRISK_ALLOC_ALIGN(i) the parameter giving its alignment (the compiler
 * then knows the usable bytes for its bounds warnings and
 * __builtin_object_size). BRISK_NODISCARD warns when a result that must
 * be kept (a block, a heap, a status) is dropped. Empty on compilers
 * without them.
 *
 * The usable_size functions let a program use every usable byte of a
 * block, which may be more than it asked for; a compiler that trusts
 * alloc_size (-fsanitize=object-size, _FORTIFY_SOURCE=3) reports such a
 * use as out of bounds. A program that relies on the usable size defines
 * BRISK_NO_ALLOC_SIZE before including this header. BRISK_NO_ALLOC_ALIGN
 * drops alloc_align likewise, for code that passes constant alignments no
 * block can have (clang 14 crashes compiling a call with 1 << 62). */
#if defined(__has_attribute)
#define BRISK_HAS_ATTRIBUTE_(name) __has_attribute(name)
#else
#define BRISK_HAS_ATTRIBUTE_(name) 0
#endif
#if BRISK_HAS_ATTRIBUTE_(malloc)
#define BRISK_ALLOCATOR __attribute__((malloc))
#else
#define BRISK_ALLOCATOR
#endif
#if BRISK_HAS_ATTRIBUTE_(alloc_size) && !defined(BRISK_NO_ALLOC_SIZE)
#define BRISK_ALLOC_SIZE(...) __attribute__((alloc_size(__VA_ARGS__)))
#else
#define BRISK_ALLOC_SIZE(...)
#endif
#if BRISK_HAS_ATTRIBUTE_(alloc_align) && !defined(BRISK_NO_ALLOC_ALIGN)
#define BRISK_ALLOC_ALIGN(i) __attribute__((alloc_align(i)))
#else
#define BRISK_ALLOC_ALIGN(i)
#endif
#if BRISK_HAS_ATTRIBUTE_(warn_unused_result)
#define BRISK_NODISCARD __attribute__((warn_unused_result))
#else
#define BRISK_NODISCARD
#endif

/* Every block any brisk allocator hands out is aligned to at least this
 * many bytes, which equals alignof(max_align_t) on the platforms we build
 * for (x86-64, AArch64). */
#define BRISK_ALIGNMENT 16

/* ------------------------------------------------------------------------ */
/* Errors                                                                     */
/* ------------------------------------------------------------------------ */

/* What was wrong, as passed to the error handler. */
typedef enum brisk_error {
    BRISK_ERROR_INVALID_POINTER = 1, /* not a block of this allocator, or not
                                        its start (interior, foreign, wild) */
    BRISK_ERROR_DOUBLE_FREE,         /* the block is already free */
    BRISK_ERROR_CORRUPTION,          /* allocator metadata was overwritten */
    BRISK_ERROR_OVERFLOW,            /* a write ran past a block's end */
    BRISK_ERROR_USE_AFTER_FREE,      /* a freed block was written to */
    BRISK_ERROR_INVALID_ARGUMENT     /* a misuse of the API that can be told
                                        apart from a bad pointer */
} brisk_error;

/* Called on detected misuse. `message` says what was wrong in words
 * ("double free", "free of a pointer that is not a live block", ...),
 * `ptr` is the address the caller passed, `context` is the pointer given
 * to brisk_set_error_handler.
 *
 * Without a handler brisk writes one line to stderr,
 *     brisk: <message> (pointer <address>)
 * and calls abort(). If an installed handler returns, the call that
 * detected the misuse does nothing more: it frees nothing, returns what
 * its contract gives for failure (NULL, 0, or -1 for
 * brisk_arena_restore), and leaves the allocator consistent.
 * Two exceptions, where the damage is found in other memory while a
 * valid block is being freed, which is then freed all the same, so no
 * memory is lost: damage in a free list (a write after free into another
 * free block; the damaged entry is reported again when it is next used),
 * and, under BRISK_OPTIONS=wipe, a write after free into another block of
 * a page the free empties (the written bytes are zeroed).
 * The handler must not call back into the allocator that reported. */
typedef void (*brisk_error_handler)(brisk_error error, const char *message,
                                    const void *ptr, void *context);

/* Installs `handler` (NULL restores the default: print and abort) for
 * every brisk allocator in the process. Returns the previous handler
 * (NULL for the default). Thread-safe; takes effect for reports that
 * start after it returns. */
brisk_error_handler brisk_set_error_handler(brisk_error_handler handler,
                                            void *context);

/* ------------------------------------------------------------------------ */
/* The bump arena                                                             */
/* ------------------------------------------------------------------------ */

/* An arena hands out memory by bumping a pointer through one region. There
 * is no per-block free: brisk_arena_reset frees everything at once, and a
 * mark taken with brisk_arena_save can be restored to free everything
 * allocated after it (scratch memory). The arena's own bookkeeping (a
 * little over 200 bytes, most of it the record of positions marks were
 * saved at) lives at the start of its region. Not thread-safe: one arena
 * per thread, or lock around it. */
typedef struct brisk_arena brisk_arena;

/* A position in an arena, from brisk_arena_save: 16 bytes, meant to be
 * kept and passed by value. Do not build or edit one; brisk_arena_restore
 * recognises marks it did not issue. */
typedef struct brisk_arena_mark {
    size_t offset;            /* brisk_arena_used when the mark was saved:
                                 restoring frees every byte from here on */
    unsigned long long stamp; /* which arena saved it and at which of its
                                 open positions (docs/design.md); never 0 */
} brisk_arena_mark;

/* Maps a fresh region with room for at least `capacity` bytes of blocks.
 * Returns NULL with errno EINVAL when capacity is 0, ENOMEM when the
 * region cannot be mapped or capacity overflows. */
BRISK_NODISCARD brisk_arena *brisk_arena_create(size_t capacity);

/* Builds an arena inside the caller's buffer [mem, mem + size); makes no
 * system call and never frees the buffer. Returns NULL with errno EINVAL
 * when mem is NULL or size leaves no room for the bookkeeping and at least
 * one aligned byte. */
BRISK_NODISCARD brisk_arena *brisk_arena_create_in(void *mem, size_t size);

/* Unmaps an arena made by brisk_arena_create; for one made by
 * brisk_arena_create_in it only forgets the arena (the buffer is the
 * caller's). NULL does nothing. Every block is invalid afterwards. */
void brisk_arena_destroy(brisk_arena *arena);

/* Returns `size` bytes aligned to BRISK_ALIGNMENT. size 0 yields a unique
 * valid pointer (1 byte is reserved). Returns NULL with errno ENOMEM when
 * the rest of the arena is too small; the arena is unchanged and stays
 * usable. Sizes near SIZE_MAX never wrap. */
/* Not BRISK_NODISCARD: a dropped arena block leaks nothing (reset and
 * restore take it back), and advancing the arena is a use. */
BRISK_ALLOCATOR BRISK_ALLOC_SIZE(2)
void *brisk_arena_alloc(brisk_arena *arena, size_t size);

/* As brisk_arena_alloc, aligned to `alignment` (a power of two; values
 * below BRISK_ALIGNMENT are raised to it). Returns NULL with errno EINVAL
 * when alignment is not a power of two, ENOMEM when there is no room. */
BRISK_ALLOCATOR BRISK_ALLOC_ALIGN(2) BRISK_ALLOC_SIZE(3)
void *brisk_arena_alloc_aligned(brisk_arena *arena, size_t alignment,
                                size_t size);

/* Frees every block at once; the whole capacity is available again. Every
 * mark saved before becomes stale. */
void brisk_arena_reset(brisk_arena *arena);

/* The current position: restoring it later frees everything allocated
 * after this call and nothing before. O(1); records the position in the
 * arena's bookkeeping, hence the non-const arena.
 *
 * Which marks are valid: a mark stays valid until the arena is reset or
 * restored to a position below the mark's (by restoring a mark saved
 * earlier, with blocks allocated between the two). So restoring a mark
 * invalidates every mark saved after it at a higher position, and leaves
 * itself and every mark saved before it valid: nested marks A, B can be
 * restored B then A, or A directly (B is then stale), and one mark can be
 * restored any number of times. Marks saved at the same position, with
 * nothing allocated between them, are the same point: restoring either
 * frees the same blocks, and neither makes the other stale. */
brisk_arena_mark brisk_arena_save(brisk_arena *arena);

/* Frees every block allocated since `mark` was saved and returns 0. O(1)
 * for a valid mark.
 *
 * Restoring a mark that is not valid (stale by the rule above, saved from
 * another arena, or never returned by brisk_arena_save) is misuse: it is
 * reported through the error handler as BRISK_ERROR_INVALID_ARGUMENT with
 * the arena as the pointer, and the message says which it was ("restore of
 * a stale arena mark: ...", "restore of an arena mark that this arena
 * never saved ..."). If the handler returns, restore returns -1 with errno
 * EINVAL and the arena is unchanged.
 *
 * Limits of the check. A valid mark is never refused. The arena records
 * its 8 innermost open positions (positions where valid marks were saved)
 * exactly, and marks of those are checked exactly. When a 9th opens, the
 * oldest is dropped from the record; a mark of a dropped position is then
 * only checked to be this arena's, no newer than the last position dropped
 * and no higher than any dropped position still open can be, so a stale
 * one that passes those checks is restored. A foreign or made-up mark is
 * told apart by its 64-bit stamp: it would have to match a stamp the
 * arena issued, which does not happen by accident. */
int brisk_arena_restore(brisk_arena *arena, brisk_arena_mark mark);

/* Checks the arena's structural invariants (docs/design.md): geometry and
 * the bookkeeping of its open positions. Returns 0 when all hold;
 * otherwise writes the first broken one to stderr and returns -1. O(1);
 * never aborts and never calls the error handler. */
int brisk_arena_check(const brisk_arena *arena);

/* Bytes handed out so far (including alignment padding), and bytes the
 * arena can hand out in total. */
size_t brisk_arena_used(const brisk_arena *arena);
size_t brisk_arena_capacity(const brisk_arena *arena);

/* ------------------------------------------------------------------------ */
/* The region heap                                                            */
/* ------------------------------------------------------------------------ */

/* A region heap manages one region (mapped for it, or the caller's buffer)
 * as a sequence of chunks, each with a header, that tile the region with
 * no gaps. Free chunks sit in segregated free lists found through bitmaps,
 * so alloc and free take O(1) time whatever the number of chunks; freed
 * chunks merge with free neighbours at once. The heap never grows beyond
 * its region. See docs/design.md for the layout and invariants. */
typedef struct brisk_heap brisk_heap;

/* Options for brisk_heap_create_ex, or-ed together. */
#define BRISK_HEAP_WIPE 0x1u       /* fill freed payloads with zero bytes
                                      before they rejoin the free lists
                                      (the heap then writes its list links
                                      and size into the first 16 and last
                                      8 bytes of the free chunk), and hand
                                      out only zeroed blocks */
#define BRISK_HEAP_THREADSAFE 0x2u /* every call takes a lock, so threads
                                      may share the heap */
/* Hardening (docs/security.md). Each costs time on every call; the
 * canary also costs 8 bytes per block (the chunk then takes size + 16
 * bytes rounded up to 16). Misuse they find is reported through the error
 * handler like any other. */
#define BRISK_HEAP_CANARY 0x4u     /* a secret-derived canary after each
                                      block's usable bytes, mixed with the
                                      block's address and header: checked
                                      on free, realloc and usable_size, a
                                      write past the end or into the header
                                      before the start is reported as a
                                      heap buffer overflow */
#define BRISK_HEAP_WIPE_CHECK 0x8u /* BRISK_HEAP_WIPE, and memory handed
                                      out again is checked to still be
                                      wiped: a write into a freed block is
                                      reported as a use after free. If the
                                      handler returns, the alloc returns
                                      NULL (errno ENOMEM) and that chunk is
                                      retired: kept out of use for the
                                      heap's life; a realloc that would
                                      grow over such memory fails with the
                                      block untouched */
#define BRISK_HEAP_HARDENED (BRISK_HEAP_WIPE | BRISK_HEAP_CANARY | BRISK_HEAP_WIPE_CHECK)
/* Speed over immediate merging (docs/design.md, "Deferred merging"): a
 * freed block of under 1 KiB (chunk size) is not merged at once but kept
 * aside, up to 12 per size, and handed straight back to the next request
 * of its size, as glibc's tcache does. Programs that free and allocate
 * the same small sizes in turn then skip a merge and a split each time,
 * so they run faster; programs whose churn is of blocks over 1 KiB may
 * run slower, as the kept blocks change where those land
 * (docs/benchmarks.md measures both on recorded traces). The price is a
 * little fragmentation: up to 12 blocks of each small size stay unmerged, and
 * 6 KiB more bookkeeping. A deferred block is free for every purpose but
 * merging: a second free of it, realloc or usable_size of it are
 * reported as for any freed block; brisk_heap_walk reports it free; the
 * statistics count it as a free chunk. The heap keeps them in its own
 * bookkeeping, so nothing written into a freed block can change what an
 * alloc returns. When an alloc finds no room, every deferred block is
 * merged and the alloc tried again, so the heap's capacity is never lost
 * to deferral (largest_free is then a lower bound: merging may let a
 * larger request succeed). Cannot be combined with BRISK_HEAP_WIPE,
 * _CANARY or _WIPE_CHECK (EINVAL): those act when a block is freed, and
 * deferral would postpone them. */
#define BRISK_HEAP_DEFER_MERGE 0x10u

typedef struct brisk_heap_stats {
    size_t capacity;     /* bytes the chunks tile (the region less the
                            heap's own bookkeeping) */
    size_t allocated;    /* usable bytes of live blocks (as
                            brisk_heap_usable_size reports them) */
    size_t free_bytes;   /* bytes in free chunks, headers included
                            (deferred blocks too) */
    size_t high_water;   /* furthest offset from the first chunk's start
                            that any chunk handed out has reached: the
                            chunks a heap growing on demand would need.
                            Its bookkeeping is not counted here (a heap's
                            is sized for its whole region): with it, that
                            heap's footprint is brisk_heap_region_size(
                            high_water, flags) */
    size_t largest_free; /* largest request one alloc would satisfy now
                            (exactly: one byte more fails), or 0 when no
                            request would, not even one of 0 bytes; a
                            lower bound under BRISK_HEAP_DEFER_MERGE */
    size_t used_chunks;  /* number of live blocks */
    size_t free_chunks;  /* number of free chunks (deferred blocks
                            included) */
} brisk_heap_stats;

/* One chunk, as brisk_heap_walk reports it. */
typedef struct brisk_heap_chunk {
    const void *address; /* start of the chunk (its header) */
    size_t size;         /* whole chunk, header included */
    const void *payload; /* what alloc returned for it (used chunks) */
    size_t usable;       /* usable payload bytes */
    int used;            /* 1 for a live block, 0 for a free chunk */
} brisk_heap_chunk;

/* Called once per chunk in address order; a non-zero return stops the
 * walk and becomes brisk_heap_walk's result. */
typedef int (*brisk_heap_visitor)(const brisk_heap_chunk *chunk,
                                  void *context);

/* Maps a region and builds a heap able to hold at least `capacity` bytes
 * of chunks. Returns NULL with errno EINVAL when capacity is 0, ENOMEM
 * when it cannot be mapped or is too large. */
BRISK_NODISCARD brisk_heap *brisk_heap_create(size_t capacity);

/* Builds a heap inside the caller's buffer [mem, mem + size); makes no
 * system call. Returns NULL with errno EINVAL when mem is NULL, not
 * aligned to BRISK_ALIGNMENT, or size is too small for the bookkeeping
 * and one minimal chunk. */
BRISK_NODISCARD brisk_heap *brisk_heap_create_in(void *mem, size_t size);

/* Either of the above with options: mem NULL maps a region of `size`
 * bytes of capacity, otherwise the heap is built in [mem, mem + size).
 * flags is a combination of BRISK_HEAP_*; unknown bits, and
 * BRISK_HEAP_DEFER_MERGE with any of BRISK_HEAP_WIPE, _CANARY or
 * _WIPE_CHECK, give EINVAL. */
BRISK_NODISCARD brisk_heap *brisk_heap_create_ex(void *mem, size_t size, unsigned flags);

/* The size of the smallest buffer (a multiple of 16) in which
 * brisk_heap_create_ex(buffer, size, flags) builds a heap of at least
 * `capacity` bytes of chunks: capacity plus the heap's bookkeeping (about
 * 1/64 of it, and 6 KiB more with BRISK_HEAP_DEFER_MERGE). A capacity
 * below one minimal chunk (32 bytes) counts as one. Returns 0 when no
 * size is representable. Pure arithmetic: no system call, no heap. */
size_t brisk_heap_region_size(size_t capacity, unsigned flags);

/* Unmaps a mapped heap's region; for one built in a caller's buffer it
 * only forgets the heap. NULL does nothing. */
void brisk_heap_destroy(brisk_heap *heap);

/* Returns a block of at least `size` usable bytes aligned to
 * BRISK_ALIGNMENT; the block takes size + 8 bytes rounded up to 16, at
 * least 32. size 0 yields a unique minimal block. Returns NULL with errno
 * ENOMEM when no free chunk is large enough (or size is too large to
 * represent); the heap is then unchanged, but for BRISK_HEAP_DEFER_MERGE:
 * there a failing request no larger than the capacity first merges every
 * kept block (the layout changes, no live block does). To stay O(1) an
 * alloc looks at only the first 8 free chunks of the request's own size
 * range (above 1 KiB, where ranges hold several sizes), so a fitting chunk
 * further down that list may go unused; brisk_heap_stats.largest_free is
 * exactly the largest size that succeeds. Contents are unspecified (zero when
 * BRISK_HEAP_WIPE is set). */
BRISK_NODISCARD BRISK_ALLOCATOR BRISK_ALLOC_SIZE(2)
void *brisk_heap_alloc(brisk_heap *heap, size_t size);

/* A zeroed block of count * size bytes. Returns NULL with errno ENOMEM
 * when the product overflows or there is no room. */
BRISK_NODISCARD BRISK_ALLOCATOR BRISK_ALLOC_SIZE(2, 3)
void *brisk_heap_calloc(brisk_heap *heap, size_t count, size_t size);

/* Resizes the block at ptr to `size` bytes, keeping its contents up to
 * the smaller of the two sizes. Grows or shrinks in place when the next
 * chunk allows, otherwise moves. ptr NULL acts as alloc; size 0 frees ptr
 * and returns NULL. On failure returns NULL with errno ENOMEM and the old
 * block is untouched. An invalid ptr is reported as misuse. */
BRISK_NODISCARD BRISK_ALLOC_SIZE(3)
void *brisk_heap_realloc(brisk_heap *heap, void *ptr, size_t size);

/* As brisk_heap_alloc, aligned to `alignment`, a power of two (values
 * below BRISK_ALIGNMENT are raised to it). Returns NULL with errno EINVAL
 * when alignment is not a power of two, ENOMEM when there is no room. */
BRISK_NODISCARD BRISK_ALLOCATOR BRISK_ALLOC_ALIGN(2) BRISK_ALLOC_SIZE(3)
void *brisk_heap_alloc_aligned(brisk_heap *heap, size_t alignment,
                               size_t size);

/* Returns the block at ptr to the heap, merging it with free neighbours.
 * ptr NULL does nothing. A ptr that is not a live block of this heap is
 * reported as misuse and the heap is left as it was: "double free"
 * (BRISK_ERROR_DOUBLE_FREE) for a block freed before and still a free
 * chunk of its own, "free of a pointer that is not a live block"
 * (BRISK_ERROR_INVALID_POINTER) for an interior or foreign pointer, or a
 * freed block since merged with a free neighbour, "heap metadata
 * corrupted" (BRISK_ERROR_CORRUPTION) when the block's boundary tags or
 * its neighbours' were overwritten. Every call of the heap first checks
 * the fence below its first block: "heap bookkeeping corrupted ..."
 * (BRISK_ERROR_CORRUPTION, naming the first block) when an underflow
 * overwrote it; the call then does nothing (NULL, ENOMEM). */
void brisk_heap_free(brisk_heap *heap, void *ptr);

/* Usable bytes of the live block at ptr (at least what was asked for);
 * 0 for NULL. An invalid ptr is reported as misuse (0 if the handler
 * returns). */
size_t brisk_heap_usable_size(const brisk_heap *heap, const void *ptr);

/* Checks every structural invariant of the heap (listed in
 * docs/design.md). Returns 0 when all hold; otherwise writes the first
 * broken invariant and where to stderr and returns -1. Takes O(chunks)
 * time; never aborts and never calls the error handler. */
int brisk_heap_check(const brisk_heap *heap);

/* Fills *out with the heap's current statistics. O(1). */
void brisk_heap_get_stats(const brisk_heap *heap, brisk_heap_stats *out);

/* Visits every chunk in address order. Returns 0 after a full walk, or the
 * first non-zero value a visitor returned. The visitor must not allocate
 * from or free into this heap. */
int brisk_heap_walk(const brisk_heap *heap, brisk_heap_visitor visitor,
                    void *context);

/* ------------------------------------------------------------------------ */
/* The process-wide allocator                                                 */
/* ------------------------------------------------------------------------ */

/* These follow the C and POSIX contracts of the functions they are named
 * after; libbrisk.so (and libbrisk.a, when linked ahead of libc) also
 * provides them under the standard names. See README.md for the
 * BRISK_OPTIONS environment variable. */
BRISK_NODISCARD BRISK_ALLOCATOR BRISK_ALLOC_SIZE(1) void *brisk_malloc(size_t size);
BRISK_NODISCARD BRISK_ALLOCATOR BRISK_ALLOC_SIZE(1, 2) void *brisk_calloc(size_t count, size_t size);
/* realloc may return ptr itself: not BRISK_ALLOCATOR. */
BRISK_NODISCARD BRISK_ALLOC_SIZE(2) void *brisk_realloc(void *ptr, size_t size);
BRISK_NODISCARD BRISK_ALLOC_SIZE(2, 3) void *brisk_reallocarray(void *ptr, size_t count, size_t size);
void brisk_free(void *ptr);
void brisk_free_sized(void *ptr, size_t size);
void brisk_free_aligned_sized(void *ptr, size_t alignment, size_t size);
BRISK_NODISCARD int brisk_posix_memalign(void **out, size_t alignment, size_t size);
BRISK_NODISCARD BRISK_ALLOCATOR BRISK_ALLOC_ALIGN(1) BRISK_ALLOC_SIZE(2)
void *brisk_aligned_alloc(size_t alignment, size_t size);
BRISK_NODISCARD BRISK_ALLOCATOR BRISK_ALLOC_ALIGN(1) BRISK_ALLOC_SIZE(2)
void *brisk_memalign(size_t alignment, size_t size);
BRISK_NODISCARD BRISK_ALLOCATOR BRISK_ALLOC_SIZE(1) void *brisk_valloc(size_t size);
BRISK_NODISCARD BRISK_ALLOCATOR void *brisk_pvalloc(size_t size);
size_t brisk_malloc_usable_size(const void *ptr);

/* Checks the process allocator's structural invariants (listed in
 * src/malloc/check.c and docs/process.md) over the memory the calling
 * thread owns: segment headers and slot accounting, every page's free
 * lists, counts and list membership; and the large blocks.
 * Returns 0 when all hold; otherwise writes the first broken invariant to
 * stderr and returns -1. Never aborts; takes the allocator's global lock
 * and O(memory the thread owns) time. */
int brisk_malloc_check(void);

/* Statistics of the process allocator, as BRISK_OPTIONS=stats prints
 * them at exit. Every field is an unsigned long long; fields are only
 * ever added at the end, so the struct's size is its version. Figures
 * marked "now" are a snapshot (other threads allocate and free as they
 * are read); the others count since start-up. */
typedef struct brisk_malloc_stats {
    unsigned long long size;          /* set by brisk_malloc_get_stats:
                                         the bytes of this struct the
                                         library knows and filled */
    unsigned long long requests;      /* malloc-family requests, all sizes */
    unsigned long long large_requests; /* of them, over 256 KiB (or an
                                         alignment pages cannot give) */
    unsigned long long mapped_bytes;  /* now: segments and large mappings */
    unsigned long long mapped_peak_bytes;
    unsigned long long peak_resident_bytes; /* the whole process's peak
                                         resident set (not only brisk's) */
    unsigned long long large_live_blocks;  /* now */
    unsigned long long large_live_bytes;   /* now */
    unsigned long long large_cached_bytes; /* now: freed, kept mapped */
    unsigned long long segments;       /* now: 4 MiB segments mapped */
    unsigned long long segments_cached; /* now: of them, empty and kept
                                         until decay_ms passes */
    unsigned long long threads_live;   /* now: threads with a thread heap */
    unsigned long long threads_exited; /* thread heaps retired: by thread
                                         exits, and in a forked child the
                                         threads the fork left behind */
    /* Memory of exited threads. A thread that exits while blocks of its
     * pages are still live abandons the segments holding them; a living
     * thread adopts an abandoned segment (becoming its owner and reusing
     * its free blocks), or a free by another thread that empties one of
     * its pages sweeps it (its empty pages go back at once). */
    unsigned long long segments_abandoned; /* by thread exits and forks */
    unsigned long long pages_abandoned;    /* pages in use in them */
    unsigned long long segments_adopted;
    unsigned long long pages_adopted;      /* pages in use in them */
    unsigned long long pages_swept;        /* emptied pages a sweep gave back */
    unsigned long long segments_swept_empty; /* segments a sweep emptied
                                         (sent to the segment cache) */
    unsigned long long fork_orphans;   /* segments abandoned in a forked
                                         child: their threads did not
                                         survive the fork */
    unsigned long long abandoned_segments;   /* now: waiting for adoption */
    unsigned long long abandoned_pages;      /* now: pages in use in them */
    unsigned long long abandoned_page_bytes; /* now: those pages' bytes, the
                                         memory exited threads hold */
    unsigned long long abandoned_live_bytes; /* now: the bytes of their live
                                         blocks (at block size) */
} brisk_malloc_stats;

/* Fills *out with the statistics above. size is sizeof(*out) as the
 * caller was compiled: a multiple of 8 and at least 8. The first size
 * bytes are written: fields this library does not know read 0, and
 * out->size says how many bytes it knows (at most size). Returns 0, or
 * -1 with errno EINVAL (nothing written) when out is NULL or size is not
 * a whole number of fields. Takes the allocator's global lock; walks
 * every segment (O(memory mapped)). */
int brisk_malloc_get_stats(struct brisk_malloc_stats *out, size_t size);

/* Writes the sampled heap profile of a process started with
 * BRISK_OPTIONS=profile (or profile=RATE) to the file at path, replacing
 * it; path NULL means the default (the profile_path option, each %p the
 * process id, or brisk-profile.<pid>.btr in the working directory). The
 * file is the one written at exit and on SIGUSR2: the sites sampled
 * since start-up, with estimates of the bytes and blocks each allocated
 * and has live now, which `brisk-trace report` shows (docs/trace.md,
 * "Sampled profiles"). Returns 0, or an errno value (errno itself is
 * left alone): ENOTSUP when profiling is not on, EINVAL when path is "",
 * ENAMETOOLONG for a path of 4096 bytes or more, ENOMEM when the profile
 * cannot be built, or the error of creating or writing the file (EACCES,
 * ENOENT, ENOSPC, ...). Safe to call from any thread while others
 * allocate (it takes the profiler's lock while it copies the sites);
 * not from a signal handler (send SIGUSR2 instead). */
int brisk_profile_dump(const char *path);

#ifdef __cplusplus
}
#endif

#endif /* BRISK_H */
