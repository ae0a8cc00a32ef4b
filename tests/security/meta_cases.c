/*
 * Cases for the process allocator's own metadata, one per run:
 *
 *     LD_PRELOAD=libbrisk.so [BRISK_OPTIONS=...] meta_cases <case>
 *
 * Like malloc_cases.c, the program calls only the standard names and is
 * not linked against brisk. Unlike it, it includes brisk's private header,
 * to learn where the metadata is (META_GUARD, SEGMENT_MASK, the layout of
 * struct segment and struct large_header): the cases aim at that memory
 * the way an overflow or underflow of a block would reach it.
 *
 *   meta_guard_layout        (exit) the first META_GUARD bytes of the
 *                            region of a small, a medium, a large and a
 *                            4 MiB-aligned block are inaccessible, the
 *                            header right after them is readable and
 *                            intact, also after the region went through
 *                            the cache, a purge and an in-place realloc.
 *   meta_guard_read_*        (fault) reading the guard byte just below the
 *                            header of a small, medium or large block.
 *   meta_adjacent_overflow   (fault) a large block whose mapping ends
 *                            where one of our segments starts (made
 *                            certain under the bottom-up mmap layout) is
 *                            overflowed with bytes that would steer malloc
 *                            to an address of the attacker's choice.
 *   large_unlink_forged      (abort) a live large block's header links are
 *                            pointed at memory the attacker controls,
 *                            then the block is freed.
 *   large_header_underflow   (abort) a plain underflow of a large block
 *                            runs back over its header, then the block is
 *                            freed (under guard, the hardened level, it
 *                            faults on the guard page before the block).
 *   large_size_forged        (abort) only the header's map size is
 *                            changed (a free would unmap memory not its
 *                            own), then the block is freed.
 *   large_usable_forged      (abort) only its usable size is changed, then
 *                            malloc_usable_size is asked.
 *   large_cached_header_forged (abort) the header of a freed, cached large
 *                            block is changed, then a malloc would reuse
 *                            its mapping.
 *   meta_map_guarded         (exit) the segment map and the chunk holding
 *                            the thread's heap each lie between two
 *                            inaccessible mappings of brisk's own, so
 *                            nothing can be mapped or grown next to them.
 *   meta_map_overflow        (fault) a large block below the segment map is
 *                            grown in place by realloc as far as it goes
 *                            towards the map, then overflowed linearly up
 *                            to the map entry of a span the attacker
 *                            mapped, to mark it as a segment.
 *   large_header_replayed    (abort) a copy of a live large block's header
 *                            (and of its list neighbours' links to it),
 *                            taken before its free, is written back after
 *                            it, then the block is freed again: the second
 *                            free must be reported, and two live mallocs
 *                            must never return the same address.
 *   page_release_count_wrong (abort) a page that another thread freed
 *                            into has its count of live blocks lowered by
 *                            one, then every block but one is freed: the
 *                            page must not be given back with that block
 *                            live (issue 14, class 1).
 *
 * Conventions (target, unnoticed, broken) are in cases.h. A case that
 * cannot be set up on this system (a page size that does not divide
 * META_GUARD, where the guard is off by design; a kernel that refuses the
 * bottom-up layout) exits with SKIPPED, which security_expect passes on
 * and ctest reports as skipped.
 */
#define _GNU_SOURCE
#include "cases.h"

#include "malloc/internal.h"

#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>

#define SKIPPED 77

#define SMALL 48
#define MEDIUM (24 * 1024)
#define LARGE (600 * 1024)

static char **saved_argv;

static _Noreturn void skip(const char *why)
{
    printf("skipped: %s\n", why);
    fflush(stdout);
    exit(SKIPPED);
}

static void need_guard(void)
{
    if (META_GUARD % (size_t)sysconf(_SC_PAGESIZE) != 0)
        skip("the page size does not divide META_GUARD: the guard is off by design");
}

/* The 4 MiB-aligned base of the metadata region of the block p. */
static uintptr_t region_of(const void *p)
{
    return ((uintptr_t)p - 1) & ~(uintptr_t)SEGMENT_MASK;
}

/* The region of p has its guard (every page unreadable) and a readable
 * header carrying `magic` right after it. */
static void check_region(const void *p, uint32_t magic, const char *what)
{
    uintptr_t base = region_of(p);
    size_t page_bytes = (size_t)sysconf(_SC_PAGESIZE);
    for (uintptr_t at = base; at < base + META_GUARD; at += page_bytes) {
        if (readable((const void *)at, 1)) {
            printf("%s: guard byte %#lx (region %#lx) is readable\n", what, (unsigned long)at,
                   (unsigned long)base);
            broken("the metadata guard is not inaccessible");
        }
    }
    if (!readable((const void *)(base + META_GUARD), 1) ||
        *(const volatile uint32_t *)(base + META_GUARD) != magic) {
        printf("%s: no header with magic %#x at %#lx\n", what, magic, (unsigned long)(base + META_GUARD));
        broken("the header does not lie right after the guard");
    }
}

static void case_meta_guard_layout(void)
{
    need_guard();
    char *small = must_malloc(SMALL), *medium = must_malloc(MEDIUM), *large = must_malloc(LARGE);
    check_region(small, SEGMENT_MAGIC, "small block");
    check_region(medium, SEGMENT_MAGIC, "medium block");
    check_region(large, LARGE_MAGIC, "large block");
    /* A large block aligned to 4 MiB starts one segment past its base. */
    void *aligned = NULL;
    if (posix_memalign(&aligned, SEGMENT_SIZE, LARGE) != 0)
        broken("posix_memalign(4 MiB) failed");
    if ((uintptr_t)aligned != region_of(aligned) + SEGMENT_SIZE)
        broken("a 4 MiB-aligned block is not one segment past its region");
    check_region(aligned, LARGE_MAGIC, "4 MiB-aligned block");
    memset(large, 1, LARGE);
    memset(aligned, 1, LARGE);

    /* In-place growth of a large mapping (unguarded level only: guarded
     * blocks move) keeps the guard: the remap starts past it. */
    uintptr_t first_large_region = region_of(large);
    char *grown = realloc(large, 8 * LARGE);
    if (grown == NULL)
        broken("realloc failed");
    check_region(grown, LARGE_MAGIC, "large block after realloc");

    /* Through the caches and back: the regions are reused as they are.
     * Under delay a freed large mapping is reused only after up to four
     * more large frees: blocks too small to be picked for LARGE (and
     * allocated first, so that without delay they do not take it) are
     * freed after it. */
    enum { FLUSH = 4 };
    char *flush[FLUSH];
    for (int i = 0; i < FLUSH; i++)
        flush[i] = must_malloc(260 * 1024);
    uintptr_t small_region = region_of(small), large_region = region_of(grown);
    free(small);
    free(medium);
    free(grown);
    free(aligned);
    for (int i = 0; i < FLUSH; i++)
        free(flush[i]);
    small = must_malloc(SMALL);
    large = must_malloc(LARGE);
    check_region(small, SEGMENT_MAGIC, "small block after the segment cache");
    check_region(large, LARGE_MAGIC, "large block after the large cache");
    if (region_of(small) != small_region ||
        (region_of(large) != large_region && region_of(large) != first_large_region))
        broken("the caches did not hand a region back: the case no longer covers reuse");

    /* A purge decommits free slots and unmaps what the caches hold; new
     * regions mapped after it are guarded too. */
    free(small);
    free(large);
    malloc_trim(0);
    char *blocks[64];
    for (int i = 0; i < 64; i++)
        blocks[i] = must_malloc(i % 2 == 0 ? MEDIUM : SMALL);
    for (int i = 0; i < 64; i++)
        check_region(blocks[i], SEGMENT_MAGIC, "block after a purge");
    large = must_malloc(3 * LARGE);
    check_region(large, LARGE_MAGIC, "large block after a purge");
    for (int i = 0; i < 64; i++)
        free(blocks[i]);
    free(large);
    printf("ok: every region has its guard, and its header right after it\n");
}

/* Reads the guard byte just below the header of the block of `size`. */
static void guard_read(size_t size)
{
    need_guard();
    char *p = must_malloc(size);
    memset(p, 1, size);
    /* The header past the guard is untouched by all this: the allocator
     * still works. */
    free(must_malloc(size));
    const volatile char *below = (const volatile char *)(region_of(p) + META_GUARD - 1);
    target((const void *)below);
    char c = *below;
    printf("read %d\n", c);
    unnoticed("the guard byte below the header was readable");
}

static void case_meta_guard_read_small(void) { guard_read(SMALL); }
static void case_meta_guard_read_medium(void) { guard_read(MEDIUM); }
static void case_meta_guard_read_large(void) { guard_read(LARGE); }

/* ---- the adjacency attack (issue #5) -------------------------------------- */

/* Runs the rest of the case under the bottom-up mmap layout, where the
 * kernel places each new mapping in the lowest hole that fits: a segment
 * mapped right after a large block then starts where the block's mapping
 * ends. Re-executes this program once with the personality flag set (as
 * `setarch -L` does); the environment (LD_PRELOAD, BRISK_OPTIONS) goes
 * with it. */
static void ensure_bottom_up_layout(void)
{
    int current = personality(0xffffffff);
    if (current != -1 && (current & ADDR_COMPAT_LAYOUT) != 0)
        return;
    if (current == -1 || personality((unsigned long)current | ADDR_COMPAT_LAYOUT) == -1)
        skip("the kernel refuses the bottom-up mmap layout (personality)");
    fflush(stdout);
    execv("/proc/self/exe", saved_argv);
    skip("cannot re-execute /proc/self/exe");
}

static uint64_t steer_target[8] __attribute__((aligned(64)));

static void case_meta_adjacent_overflow(void)
{
    need_guard();
    ensure_bottom_up_layout();
    /* How far into its region a large block starts, learnt from one; a
     * block of SEGMENT_SIZE minus that fills its region exactly, so its
     * mapping ends on the next 4 MiB boundary. */
    char *probe = must_malloc(LARGE);
    size_t front = (size_t)((uintptr_t)probe - region_of(probe));
    size_t large_size = SEGMENT_SIZE - front;
    /* Then medium blocks until one lands in a segment mapped right after
     * a large block. Each medium segment holds 14 blocks of 256 KiB; a
     * few tries are needed at most (earlier holes fill first). */
    char *large = NULL, *victim = NULL;
    for (int attempt = 0; attempt < 16 && victim == NULL; attempt++) {
        char *candidate = must_malloc(large_size);
        uintptr_t end = (uintptr_t)candidate + malloc_usable_size(candidate);
        if ((end & SEGMENT_MASK) != 0)
            broken("a large block of 4 MiB minus its front does not end on a 4 MiB boundary");
        for (int i = 0; i < 32 && victim == NULL; i++) {
            char *p = must_malloc(256 * 1024);
            if (region_of(p) == end) {
                large = candidate;
                victim = p;
            }
        }
    }
    if (victim == NULL) {
        printf("set-up failed: no segment was mapped right after a large block\n");
        exit(5);
    }
    printf("large block %p ends at %#lx, where the segment of %p starts\n", (void *)large,
           (unsigned long)region_of(victim), (void *)victim);

    /* The overflow: from the block's end up to the page descriptor of the
     * victim's slot, keeping every byte as it was except the descriptor's
     * free-list head, link key and free mark, which would make the next
     * malloc of the victim's size return steer_target. Written in one
     * pass, byte by byte, as a runaway copy would. */
    uintptr_t base = region_of(victim);
    size_t slot = ((uintptr_t)victim - base) >> MEDIUM_PAGE_SHIFT;
    size_t desc = META_GUARD + offsetof(segment, pages) + slot * sizeof(page);
    static unsigned char payload[META_GUARD + sizeof(segment)];
    unsigned char *over = (unsigned char *)large + malloc_usable_size(large);
    target(over);
    for (size_t i = 0; i < desc + sizeof(page); i++)
        payload[i] = over[i]; /* reading past the end already faults */
    page *forged = (page *)(void *)(payload + desc);
    steer_target[0] = 0; /* a link that decodes to NULL with key 0 */
    steer_target[1] = 0x1235;
    forged->link_key = 0;
    forged->free_mark = 0x1235;
    forged->free = (block *)(void *)steer_target;
    for (size_t i = 0; i < desc + sizeof(page); i++)
        over[i] = payload[i];
    void *got = hide(malloc(256 * 1024)); /* hidden: malloc's result may not be compared with a
                                             static address by a compiler that knows malloc */
    printf("malloc returned %p, the attacker's address is %p\n", got, (void *)steer_target);
    unnoticed(got == (void *)steer_target ? "malloc was steered to the attacker's address"
                                          : "an overflow rewrote a segment's page descriptor");
}

/* ---- the segment map and the thread heaps (issue 14, class 5) ------------ */

/* A line of /proc/self/maps: [start, end) and its permissions. */
typedef struct mapping {
    uintptr_t start, end;
    char perms[5];
} mapping;

/* Every mapping of the process, in address order; the count. */
static size_t read_mappings(mapping *out, size_t max)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        skip("cannot read /proc/self/maps");
    char line[512];
    size_t n = 0;
    while (n < max && fgets(line, sizeof line, f) != NULL) {
        unsigned long start, end;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) == 3) {
            out[n].start = start;
            out[n].end = end;
            memcpy(out[n].perms, perms, 5);
            n++;
        }
    }
    fclose(f);
    return n;
}

static mapping maps[4096];

/* The index of the mapping holding `at`, or -1. */
static long mapping_of(size_t n, uintptr_t at)
{
    for (size_t i = 0; i < n; i++)
        if (maps[i].start <= at && at < maps[i].end)
            return (long)i;
    return -1;
}

/* The segment map: the one readable and writable mapping of exactly
 * SEGMAP_ENTRIES bytes (one byte per 4 MiB of the address space). */
static long segmap_mapping(size_t n)
{
    long found = -1;
    for (size_t i = 0; i < n; i++) {
        if (maps[i].end - maps[i].start == SEGMAP_ENTRIES && strncmp(maps[i].perms, "rw", 2) == 0) {
            if (found != -1)
                skip("two mappings of the segment map's size: cannot tell which is the map");
            found = (long)i;
        }
    }
    if (found == -1)
        broken("no mapping of the segment map's size");
    return found;
}

/* Mapping i has an inaccessible mapping right below and right above it. */
static void check_guarded(size_t n, long i, const char *what)
{
    bool below = i > 0 && maps[i - 1].end == maps[i].start && strncmp(maps[i - 1].perms, "---", 3) == 0;
    bool above = (size_t)i + 1 < n && maps[i + 1].start == maps[i].end &&
                 strncmp(maps[i + 1].perms, "---", 3) == 0;
    printf("%s: %#lx-%#lx, guard below %s, above %s\n", what, (unsigned long)maps[i].start,
           (unsigned long)maps[i].end, below ? "yes" : "no", above ? "yes" : "no");
    if (!below || !above)
        broken("metadata in a mapping of its own has no guard on each side");
}

static void case_meta_map_guarded(void)
{
    char *small = must_malloc(SMALL);
    thread_heap *h = ((segment *)(region_of(small) + META_GUARD))->owner;
    size_t n = read_mappings(maps, sizeof maps / sizeof *maps);
    check_guarded(n, segmap_mapping(n), "segment map");
    long heap = mapping_of(n, (uintptr_t)h);
    if (heap == -1)
        broken("the thread heap named by its segment is not mapped");
    check_guarded(n, heap, "thread heap chunk");
    printf("ok: the segment map and the thread heaps are guarded\n");
}

static void case_meta_map_overflow(void)
{
    /* A large block whose mapping lies below the map with only brisk's
     * metadata in between, all of it contiguous: guards, the thread heap
     * chunk, the map (the kernel's top-down layout places later mappings
     * right below earlier ones, so the first large blocks land there). */
    uintptr_t heap = 0;
    char *p = NULL;
    uintptr_t limit = 0, map_start = 0;
    for (int attempt = 0; attempt < 8 && p == NULL; attempt++) {
        char *candidate = must_malloc(LARGE);
        if (heap == 0) {
            /* After the first large block, whose place it would take. */
            char *small = must_malloc(SMALL);
            heap = (uintptr_t)((segment *)(region_of(small) + META_GUARD))->owner;
        }
        size_t n = read_mappings(maps, sizeof maps / sizeof *maps);
        long map = segmap_mapping(n);
        long own = mapping_of(n, (uintptr_t)candidate);
        if (own == -1)
            broken("a large block is not mapped");
        map_start = maps[map].start;
        bool metadata_only = own < map && maps[own + 1].start > maps[own].end &&
                             maps[own + 1].start - maps[own].end <= 64 * SEGMENT_SIZE;
        for (long k = own + 1; metadata_only && k < map; k++) {
            bool guard = strncmp(maps[k].perms, "---", 3) == 0;
            bool chunk = maps[k].start <= heap && heap < maps[k].end;
            metadata_only = (guard || chunk) && maps[k].end == maps[k + 1].start;
        }
        if (metadata_only) {
            p = candidate;
            limit = maps[own + 1].start; /* growth in place stops there */
        }
    }
    if (p == NULL)
        skip("no large block was mapped right below the segment map");
    char *q = realloc(p, (size_t)(limit - (uintptr_t)p));
    if (q != p) {
        printf("set-up failed: realloc did not grow %p in place up to %#lx\n", (void *)p, (unsigned long)limit);
        exit(5);
    }
    unsigned char *over = (unsigned char *)q + malloc_usable_size(q);
    printf("large block %p grown to end at %p; the segment map starts at %#lx\n", (void *)q, (void *)over,
           (unsigned long)map_start);
    /* The attacker's span: a 4 MiB-aligned range of its own mapping. */
    char *raw = mmap(NULL, 2 * SEGMENT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        exit(5);
    uintptr_t span = ((uintptr_t)raw + SEGMENT_MASK) & ~(uintptr_t)SEGMENT_MASK;
    unsigned char *entry = (unsigned char *)(map_start + (span >> SEGMENT_SHIFT));
    target(over);
    /* A runaway copy: every byte rewritten as it was, up to the entry. */
    for (volatile unsigned char *at = over; at < entry; at++)
        *at = *at;
    *(volatile unsigned char *)entry = SEGMAP_PAGES;
    printf("the map entry of %#lx now says %u\n", (unsigned long)span, *entry);
    unnoticed("a linear overflow from a large block marked the attacker's span as a segment");
}

/* ---- large headers ------------------------------------------------------- */

/* Two more large blocks around it, so its header has list neighbours. */
static char *large_with_neighbours(void)
{
    must_malloc(LARGE);
    char *p = must_malloc(LARGE);
    must_malloc(LARGE);
    memset(p, 1, LARGE);
    return p;
}

static large_header *header_of(const void *p)
{
    return (large_header *)(region_of(p) + META_GUARD);
}

static void *fake_links[16];

static void case_large_unlink_forged(void)
{
    char *p = large_with_neighbours();
    large_header *hdr = header_of(p);
    /* The classic unlink write: prev->next = next and next->prev = prev,
     * each pointed at memory the attacker reads back. */
    hdr->prev = (large_header *)(void *)&fake_links[0];
    hdr->next = (large_header *)(void *)&fake_links[8];
    target(p);
    free(hide(p));
    unnoticed("a large header's forged links were followed");
}

static void case_large_header_underflow(void)
{
    char *p = large_with_neighbours();
    uintptr_t hdr = (uintptr_t)header_of(p);
    /* From the block's start back over the header: the length of a
     * negative-index write that runs one page down. */
    target(p);
    for (uintptr_t at = (uintptr_t)hide(p) - 1; at >= hdr; at--)
        *(volatile unsigned char *)at = 0x41;
    free(hide(p));
    unnoticed("a large block whose header was overwritten was freed");
}

static void case_large_size_forged(void)
{
    char *p = large_with_neighbours();
    large_header *hdr = header_of(p);
    hdr->map_size += 16 * SEGMENT_SIZE;
    target(p);
    free(hide(p));
    unnoticed("a large header's forged map size was believed");
}

/* The usable size is what a program trusts to bound its writes: a forged
 * one would turn malloc_usable_size into an overflow. */
static void case_large_usable_forged(void)
{
    char *p = large_with_neighbours();
    header_of(p)->usable += SEGMENT_SIZE;
    target(p);
    size_t n = malloc_usable_size(hide(p));
    printf("malloc_usable_size returned %zu\n", n);
    unnoticed("a large header's forged usable size was believed");
}

/* A write after free reaching back from a freed (cached) large block into
 * its header: reported when the cache would hand the mapping out again,
 * rather than resized or unmapped by the forged size. */
static void case_large_cached_header_forged(void)
{
    char *p = large_with_neighbours();
    large_header *hdr = header_of(p);
    free(p);
    hdr->map_size += 16 * SEGMENT_SIZE;
    target(p);
    /* Under delay the mapping is reused only after a few more large
     * frees: blocks of the same size come and go until it is. */
    for (int i = 0; i < 400; i++) {
        char *q = must_malloc(LARGE);
        if (q == p) {
            printf("malloc returned %p\n", (void *)q);
            break;
        }
        free(q);
    }
    unnoticed("a cached large header's forged map size was believed");
}

/* A header replayed: everything large.c seals and links, as it was while
 * the block was live, written back after its free (an attacker who reads
 * and writes the heap at will could; one who only copies a header back is
 * the case here). */
static void case_large_header_replayed(void)
{
    enum { FLUSH = 8, TAKEN = 16 };
    char *flush[FLUSH];
    for (int i = 0; i < FLUSH; i++)
        flush[i] = must_malloc(2 * LARGE);
    char *p = large_with_neighbours();
    large_header *hdr = header_of(p);
    large_header copy = *hdr;
    if (copy.prev == NULL || copy.next == NULL)
        broken("a large block allocated between two others has no list neighbours");
    free(p);
    *hdr = copy;
    copy.prev->next = hdr;
    copy.next->prev = hdr;
    target(p);
    free(hide(p));
    /* Under delay a cached mapping is reused only after a few more large
     * frees; then every cached mapping is taken, and kept live. */
    for (int i = 0; i < FLUSH; i++)
        free(flush[i]);
    char *taken[TAKEN];
    for (int i = 0; i < TAKEN; i++) {
        taken[i] = must_malloc(LARGE);
        for (int j = 0; j < i; j++) {
            if (taken[j] == taken[i]) {
                printf("malloc returned %p twice\n", (void *)taken[i]);
                unnoticed("two live mallocs returned the same large block");
            }
        }
    }
    unnoticed("the second free of a large block whose header was replayed was accepted");
}

/* ---- page release (issue 14, class 1) ----------------------------------- */

/* The page descriptor of the page block p. */
static page *page_holding(const void *p)
{
    return page_of(segment_of_meta(region_of(p)), p);
}

/* Frees blocks enough to push every block out of the hardened level's
 * delay quarantine onto its page's lists (a no-op elsewhere). */
static void quarantine_push_out(void)
{
    enum { FLUSH = 4096 };
    static char *flush[FLUSH];
    for (int i = 0; i < FLUSH; i++)
        flush[i] = must_malloc(16);
    for (int i = 0; i < FLUSH; i++)
        free(flush[i]);
}

#define RELEASE_SIZE 112
#define RELEASE_MAX 4096

/* Class 1: a page must not be given back on its count alone. A page that
 * another thread freed a block into has its count of live blocks made one
 * too low (what a double free the old list walk missed left behind, or
 * the owner's free racing with another thread's; here written directly),
 * then every block of the page but one, l, is freed: the count reaches
 * zero with l live. The page was given back, its slot carved again for
 * another size, and l's memory handed out again. Its release must be
 * refused and reported as corruption, naming l. */
static void *free_block_in_thread(void *p)
{
    free(p);
    return NULL;
}

static void case_page_release_count_wrong(void)
{
    static char *blocks[RELEASE_MAX];
    size_t count = 0;
    blocks[count++] = must_malloc(RELEASE_SIZE);
    page *pg = page_holding(blocks[0]);
    /* Fill the page, so that the class moves on to another one and this
     * page is not kept as the class's current page when it empties. */
    for (;;) {
        char *p = must_malloc(RELEASE_SIZE);
        if (page_holding(p) != pg) {
            free(p);
            break;
        }
        if (count == RELEASE_MAX)
            broken("a page holds more blocks than it can");
        blocks[count++] = p;
    }
    char *l = blocks[1];
    memset(l, 'L', RELEASE_SIZE);
    pthread_t thread;
    if (pthread_create(&thread, NULL, free_block_in_thread, blocks[2]) != 0)
        broken("pthread_create failed");
    pthread_join(thread, NULL);
    pg->used--;
    target(l);
    for (size_t i = 0; i < count; i++)
        if (blocks[i] != l && i != 2)
            free(blocks[i]);
    quarantine_push_out();
    for (int i = 0; i < 2000; i++) {
        char *q = must_malloc(2000);
        memset(q, 'M', 2000);
        if (q < l + RELEASE_SIZE && l < q + 2000)
            broken("a live block's memory was handed out again");
    }
    for (size_t i = 0; i < RELEASE_SIZE; i++)
        if (l[i] != 'L')
            broken("a live block was overwritten by another's owner");
    unnoticed("a page given back on its count with a block live");
}

static const security_case cases[] = {
    CASE(meta_guard_layout),
    CASE(meta_guard_read_small),
    CASE(meta_guard_read_medium),
    CASE(meta_guard_read_large),
    CASE(meta_adjacent_overflow),
    CASE(large_unlink_forged),
    CASE(large_header_underflow),
    CASE(large_size_forged),
    CASE(large_usable_forged),
    CASE(large_cached_header_forged),
    CASE(large_header_replayed),
    CASE(meta_map_guarded),
    CASE(meta_map_overflow),
    CASE(page_release_count_wrong),
};

int main(int argc, char **argv)
{
    saved_argv = argv;
    return case_main(cases, sizeof cases / sizeof *cases, argc, argv);
}
