/*
 * The process allocator's types and geometry: what its memory looks like.
 * The prototypes and inline helpers are in malloc/internal.h; the design,
 * with why each choice was made, in docs/process.md ("Memory layout",
 * "Fast paths", "What is checked").
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
 *            +-- struct segment at B + META_GUARD: owning thread heap, free
 *                slot mask and the page descriptors (struct page) of every
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
 */
#ifndef BRISK_MALLOC_TYPES_H
#define BRISK_MALLOC_TYPES_H

#include "common/internal.h"

/* Hardening checks (pointer validation, double-free detection, free-list
 * encoding). On unless built with -DBRISK_CHECKS=0 for comparison: that
 * build (bench/harden's libbrisk_unchecked.so) exists to measure what the
 * checks cost, and validates no pointer at any level, the hardened
 * level's hooks included. */
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

/* Inaccessible bytes at the start of every 4 MiB metadata region (the
 * guard, above); the segment or large header follows them. A compile-time
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
    SEGMAP_LARGE = 2,       /* the header of a live large block */
    SEGMAP_LARGE_FREED = 3, /* a large block we freed and unmapped */
    SEGMAP_LARGE_CACHED = 4 /* a freed large block kept mapped in the cache:
                               the state free trusts, out of line, where
                               a copy of the header written back after
                               the free cannot change it */
};

typedef struct block {
    uintptr_t next_encoded;
    uintptr_t free_mark;    /* the page's free_mark while free, 0 when
                               handed out: see block_looks_free) */
} block;

struct thread_heap;

typedef struct page {
    /* line 1: fixed while the page is in use (carved grows when blocks
     * are carved); read by every malloc and by frees from any thread.
     * What only the owner or slow paths read is on line 2. */
    uintptr_t start;        /* first block (the slot's start) */
    uint64_t block_mul;     /* floor(2^64 / block_size) + 1 */
    uint64_t block_limit;   /* capacity * (block_mul * block_size - 2^64):
                               see page_block_start; 0 while not in use */
    uintptr_t link_key;     /* free-list encoding secrets (list_encode): */
    uintptr_t link_mul;     /* a key, an odd multiplier, and */
    uintptr_t link_unmul;   /* its inverse mod 2^64 */
    uintptr_t free_mark;    /* second word of every free block */
    uint32_t carved;        /* capacity * block_size: offsets below are
                               blocks; 0 while the slot is not in use */
    uint32_t block_size;
    /* line 2: written by the owner thread only */
    block *free __attribute__((aligned(64)));
    block *local_free;
    uint32_t used;          /* blocks handed out and not yet back on the
                               owner's lists (includes thread_free ones) */
    uint8_t in_full;        /* on the thread heap's full list of its class */
    uint8_t remote_freed;   /* other threads freed blocks into it since it
                               was set up: only then can its count be
                               wrong (a race of the owner's free with
                               another's), and its release walks its lists */
    uint16_t size_class;
    uint32_t span;          /* reserved * block_size */
    uint32_t capacity;      /* blocks carved so far */
    uint32_t reserved;      /* blocks that fit */
    uint32_t slot;          /* index in its segment */
    uint8_t in_use;         /* slot holds a page of blocks */
    uint8_t fresh;          /* the slot's memory was never used since
                               it was mapped when the page was set up:
                               blocks carved from it are zero without a
                               look. Under wipe every other slot is
                               checked to be zero as it is carved (a
                               slot returned to the OS reads zero too,
                               unless written after free since) */
    struct page *next, *prev; /* thread heap queue or full list */
    /* line 3: pushed to by other threads (one CAS per remote free), so
     * their frees never take the owner's line 2 away from it. The word
     * holds the list's head (48 bits) and its length (16 bits): the owner
     * takes the list with one exchange and never walks it. */
    uintptr_t thread_free __attribute__((aligned(64)));
    uint64_t freed_at_ms;   /* when the slot was freed (for decay) */
    /* Under wipe, the layout of the slot's last page when it emptied
     * (harden.c): a write after free found when the slot is carved again
     * is reported with the start of the block it hit. Written and read
     * only then; kept across uses of the slot, lost when its segment is
     * formatted again. */
    uintptr_t emptied_start;      /* its first block */
    uint32_t emptied_carved;      /* bytes carved from emptied_start */
    uint32_t emptied_block_size;  /* 0: nothing known */
    /* Blocks of this page in the profiler's sample table (profile.c,
     * atomic), so a free looks further only on a page holding a sample;
     * a page holds at most 4096 blocks. On this line, not line 2, since
     * a free from another thread reads it: line 2 is the owner's, and
     * another thread's read of it would take it away from the owner's
     * frees and mallocs. */
    uint16_t profile_samples;
} __attribute__((aligned(64))) page; /* three whole cache lines */

_Static_assert(offsetof(page, free) == 64, "page line 1 outgrew its cache line");
_Static_assert(offsetof(page, thread_free) == 128, "page line 2 outgrew its cache line");

typedef struct segment {
    uint32_t magic;         /* SEGMENT_MAGIC (large_header has LARGE_MAGIC
                               at the same place) */
    uint32_t page_shift;
    uint32_t slot_count;    /* slots including slot 0 (the header) */
    uint32_t pages_in_use;
    struct thread_heap *owner;     /* atomic; NULL while abandoned or cached */
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
    uint8_t state;          /* SEGMENT_OWNED, _ABANDONED, _SWEEPING or
                               _CACHED: written under global_lock, except
                               by an owner that holds it (segment.c) */
    uint8_t fork_orphan;    /* abandoned in a forked child by a thread that
                               did not survive the fork: its pages' owner
                               lines may be half-written, and are rebuilt
                               before anyone uses them (segment.c) */
    page pages[SEGMENT_SLOTS_MAX];
} segment;

/* The life of a segment (segment.c, "Abandonment"). */
enum {
    SEGMENT_OWNED = 0,     /* owner is its thread heap (or it is being
                              acquired or adopted by one) */
    SEGMENT_ABANDONED = 1, /* owner NULL, on the abandoned list: its
                              thread exited with blocks still live */
    SEGMENT_SWEEPING = 2,  /* owner NULL, taken off the abandoned list by
                              a thread that collects its pages and puts
                              it back (or in the cache once empty) */
    SEGMENT_CACHED = 3     /* owner NULL, empty, in the segment cache */
};

/* The guard and the header must fit in slot 0 of a small segment (the
 * smallest slot 0), and slot 1 must start on a page boundary past them. */
_Static_assert(META_GUARD + sizeof(segment) <= ((size_t)1 << SMALL_PAGE_SHIFT),
               "segment guard and header do not fit in slot 0");

typedef struct large_header {
    uint32_t magic;
    uint32_t cached;        /* 1 while in the cache, 0 while live (the
                               segment map says the same, out of line:
                               free believes the map) */
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

typedef struct thread_heap {
    page *direct_small[DIRECT_SMALL_COUNT]; /* by (size + 15) / 16 */
    page *direct[CLASS_COUNT]; /* current page per class */
    page_queue queues[CLASS_COUNT];
    page_queue full[CLASS_COUNT]; /* pages with no free block when last
                                     seen, per class */
    segment *segments;         /* segments this thread heap owns */
    uint32_t purge_tick;
    uint64_t last_purge_ms;
    uint64_t rng;              /* page keys come from here */
    struct thread_heap *pool_next;    /* free heaps, or every live thread_heap */
    struct thread_heap *all_next, *all_prev;
    /* statistics, owner-only counters */
    uint64_t class_requests[CLASS_COUNT];
    uint64_t large_bytes_requested;
    uint64_t large_requests;
    /* sampled profiling (profile.c), owner-only: bytes still to allocate
     * before the next sample (0 also when a dump was asked for by a
     * signal), whether it was drawn yet, and the generator drawing it */
    uint64_t profile_countdown;
    uint64_t profile_rng;
    uint8_t profile_started;
} thread_heap;

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
    uint64_t profile_rate; /* profile: mean bytes between samples (0: off) */
    char profile_path[256]; /* profile_path: where the dumps go ("": the
                               default, brisk-profile.<pid>.btr) */
} brisk_options;

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
/* The parts that work on every page block (free's hook, harden_free_block,
 * is called for these; guard pages are large.c's alone). */
#define HARDEN_BLOCK_PARTS (HARDEN_CANARY | HARDEN_WIPE | HARDEN_DELAY)
#define HARDEN_CANARY_SIZE ((size_t)8)

/* Sampled heap profiling (BRISK_OPTIONS=profile, profile.c), a bit of
 * the same flags word, so that the one path's tests of it (malloc.c)
 * cover profiling too: with profiling off the default path pays nothing
 * more. The hooks after a block is found, and those of a free: */
#define PROFILE_ON 0x10u
#define HAND_OUT_HOOKS (HARDEN_WIPE | PROFILE_ON)
#define FREE_HOOKS (HARDEN_BLOCK_PARTS | PROFILE_ON)

#endif /* BRISK_MALLOC_TYPES_H */
