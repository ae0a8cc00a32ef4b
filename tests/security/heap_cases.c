/*
 * Misuse cases for the region heap, one per run:
 *
 *     heap_cases <case> <level>
 *
 * <level> picks the heap's flags: "default" (none), "hardened"
 * (BRISK_HEAP_HARDENED), "canary" (BRISK_HEAP_CANARY), "wipe"
 * (BRISK_HEAP_WIPE_CHECK), "defer" (BRISK_HEAP_DEFER_MERGE, whose fast
 * paths differ: a freed small block is kept aside, not listed, so the
 * cases that forge a listed chunk's links do not apply to it).
 * security_expect runs each case in a child and
 * checks how it ended (see cases.h for the conventions: "target"
 * on stdout names the misused pointer; an unnoticed misuse exits 3; a
 * broken rule in a clean case exits 4).
 */
#define _GNU_SOURCE
#include "cases.h"
#include "brisk.h"
/* The bookkeeping cases (class 10) aim at the list heads, so they need to
 * know where those lie; every other case uses the public API only. */
#include "heap/heap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HEAP_BYTES (4u << 20)

static unsigned heap_flags;

static brisk_heap *make_heap(void)
{
    brisk_heap *heap = brisk_heap_create_ex(NULL, HEAP_BYTES, heap_flags);
    if (heap == NULL) {
        printf("set-up failed: brisk_heap_create_ex(flags 0x%x) failed\n", heap_flags);
        exit(5);
    }
    return heap;
}

static void *must_alloc(brisk_heap *heap, size_t size)
{
    void *p = brisk_heap_alloc(heap, size);
    if (p == NULL) {
        printf("set-up failed: brisk_heap_alloc(%zu) returned NULL\n", size);
        exit(5);
    }
    return p;
}

/* ---- double free ------------------------------------------------------ */

static void case_double_free(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 64);
    must_alloc(heap, 64);
    brisk_heap_free(heap, p);
    target(p);
    brisk_heap_free(heap, hide(p));
    unnoticed("second free");
}

static void case_double_free_interleaved(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 64);
    must_alloc(heap, 64);
    char *q = must_alloc(heap, 64);
    must_alloc(heap, 64);
    brisk_heap_free(heap, p);
    brisk_heap_free(heap, q);
    target(p);
    brisk_heap_free(heap, hide(p));
    unnoticed("second free after another free");
}

/* p's chunk merged with its freed neighbour: p now points into the middle
 * of a larger free chunk. */
static void case_double_free_after_merge(void)
{
    brisk_heap *heap = make_heap();
    char *a = must_alloc(heap, 64);
    char *p = must_alloc(heap, 64);
    must_alloc(heap, 64);
    brisk_heap_free(heap, p);
    brisk_heap_free(heap, a);
    target(p);
    brisk_heap_free(heap, hide(p));
    unnoticed("second free of a merged chunk");
}

/* Freed, then many blocks of the same size allocated: if one of them got
 * p's chunk back it is freed legitimately, so p is free at the end. */
static void case_double_free_churn(void)
{
    enum { COUNT = 5000 };
    brisk_heap *heap = make_heap();
    static char *blocks[COUNT];
    for (int i = 0; i < COUNT; i++)
        blocks[i] = must_alloc(heap, 40);
    char *p = blocks[COUNT / 2];
    brisk_heap_free(heap, p);
    for (int i = 0; i < COUNT; i += 2)
        if (i != COUNT / 2)
            brisk_heap_free(heap, blocks[i]);
    int reused = 0;
    for (int i = 0; i < COUNT; i += 2) {
        blocks[i] = must_alloc(heap, 40);
        if (blocks[i] == p)
            reused = 1;
    }
    if (reused)
        brisk_heap_free(heap, p);
    target(p);
    brisk_heap_free(heap, hide(p));
    unnoticed("double free after many allocations of the same size");
}

static void case_realloc_freed(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 64);
    must_alloc(heap, 64);
    brisk_heap_free(heap, p);
    target(p);
    void *q = brisk_heap_realloc(heap, hide(p), 200);
    (void)q;
    unnoticed("realloc of a freed block");
}

static void case_usable_size_freed(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 64);
    must_alloc(heap, 64);
    brisk_heap_free(heap, p);
    target(p);
    printf("usable size %zu\n", brisk_heap_usable_size(heap, hide(p)));
    unnoticed("usable size of a freed block");
}

/* ---- invalid pointers ------------------------------------------------- */

typedef enum call { CALL_FREE, CALL_REALLOC, CALL_USABLE } call;

static void misuse(brisk_heap *heap, call how, void *p)
{
    target(p);
    switch (how) {
    case CALL_FREE:
        brisk_heap_free(heap, hide(p));
        unnoticed("free of an invalid pointer");
    case CALL_REALLOC: {
        void *q = brisk_heap_realloc(heap, hide(p), 100);
        (void)q;
        unnoticed("realloc of an invalid pointer");
    }
    case CALL_USABLE:
        printf("usable size %zu\n", brisk_heap_usable_size(heap, hide(p)));
        unnoticed("usable size of an invalid pointer");
    }
}

static void case_free_interior(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 256);
    misuse(heap, CALL_FREE, p + 32);
}

static void case_free_interior_unaligned(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 256);
    misuse(heap, CALL_FREE, p + 3);
}

static void case_realloc_interior(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 256);
    misuse(heap, CALL_REALLOC, p + 32);
}

static void case_usable_size_interior(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 256);
    misuse(heap, CALL_USABLE, p + 32);
}

static void case_free_stack(void)
{
    brisk_heap *heap = make_heap();
    _Alignas(64) char local[256];
    memset(local, 0, sizeof local);
    misuse(heap, CALL_FREE, local + 64);
}

static void case_free_wild(void)
{
    brisk_heap *heap = make_heap();
    misuse(heap, CALL_FREE, (void *)(uintptr_t)0x7ff0deadbe00);
}

/* Inside the heap's region but never handed out: past every chunk in use,
 * in the middle of the big free chunk. */
static void case_free_never_allocated(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 64);
    misuse(heap, CALL_FREE, p + (1u << 20));
}

static void case_free_foreign_heap(void)
{
    brisk_heap *heap = make_heap();
    brisk_heap *other = make_heap();
    char *p = must_alloc(other, 64);
    must_alloc(heap, 64);
    misuse(heap, CALL_FREE, p);
}

static void case_free_foreign_malloc(void)
{
    brisk_heap *heap = make_heap();
    char *p = malloc(64);
    if (p == NULL)
        exit(5);
    misuse(heap, CALL_FREE, p);
}

/* A fake chunk forged inside a block: every word says "chunk of 64 bytes,
 * in use" or points back into the block. */
static void case_free_forged_header(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 1024);
    uintptr_t *words = (uintptr_t *)(void *)p;
    for (size_t i = 0; i < 1024 / sizeof *words; i++)
        words[i] = (i % 2 == 0) ? 0x41 : (uintptr_t)(p + 128);
    misuse(heap, CALL_FREE, p + 128);
}

/* ---- free-list protection --------------------------------------------- */

static _Alignas(64) char attacker_area[4096];

/* A freed chunk's links (in its payload) are overwritten with an address
 * of the attacker's choice; the next allocations of its size must not
 * return it, nor write through it: brisk checks the links first. Blocks
 * of `size` bytes: 64 (the one-window fast path) or 600 (an exact class
 * of 512 bytes or more, whose fast path reads two map windows). */
static void uaf_steer(size_t size)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, size);
    char *p = must_alloc(heap, size);
    must_alloc(heap, size);
    brisk_heap_free(heap, p);
    uintptr_t *words = (uintptr_t *)hide(p);
    words[0] = (uintptr_t)(attacker_area + 64);
    words[1] = (uintptr_t)(attacker_area + 64);
    target(p);
    for (int i = 0; i < 3; i++) {
        char *q = brisk_heap_alloc(heap, size);
        if (q >= attacker_area && q < attacker_area + sizeof attacker_area)
            broken("the heap returned the address written into a freed block");
    }
    unnoticed("forged free-list links");
}

static void case_uaf_steer(void) { uaf_steer(64); }
static void case_uaf_steer_wide(void) { uaf_steer(600); }

/* The same, freeing the chunk's neighbour: merging unlinks the freed
 * chunk through its forged links. */
static void case_uaf_steer_merge(void)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, 64);
    char *p = must_alloc(heap, 64);
    char *q = must_alloc(heap, 64);
    must_alloc(heap, 64);
    brisk_heap_free(heap, p);
    uintptr_t *words = (uintptr_t *)hide(p);
    words[0] = (uintptr_t)(attacker_area + 64);
    words[1] = (uintptr_t)(attacker_area + 128);
    target(q);
    brisk_heap_free(heap, q);
    unnoticed("forged free-list links used by a merge");
}


/* ---- heap metadata integrity (issue 14, classes 8-10) -------------------
 *
 * Chunk headers, footers and links live where the program's own bugs
 * reach: an overflow from the block before, a write after free. None of
 * them may make the heap hand out memory of a live block, or an address
 * of the attacker's choice. Sizes are found through brisk_heap_walk (the
 * chunk of each block), so the cases hold at every level. */

typedef struct chunk_find {
    const void *payload;
    size_t size;
} chunk_find;

static int find_visit(const brisk_heap_chunk *chunk, void *context)
{
    chunk_find *f = context;
    if (chunk->used && chunk->payload == f->payload) {
        f->size = chunk->size;
        return 1;
    }
    return 0;
}

/* The size of the chunk holding the live block p (its header's size). */
static size_t chunk_size_of(brisk_heap *heap, const void *p)
{
    chunk_find f = {p, 0};
    if (brisk_heap_walk(heap, find_visit, &f) != 1) {
        printf("set-up failed: no chunk for %p\n", p);
        exit(5);
    }
    return f.size;
}

static void put_word(void *at, uintptr_t value) { memcpy(hide(at), &value, sizeof value); }

/* Whether [q, q + n) and [p, p + m) share a byte. */
static int overlaps(const char *q, size_t n, const char *p, size_t m) { return q < p + m && p < q + n; }

/* Class 8: an overflow from a into b's header makes b's chunk swallow the
 * live block c after it. Freeing b must not believe the size: the next
 * alloc of that size would return memory overlapping c. b holds b_request
 * bytes: 64, or 520 (33 granules, so that c starts in the second map
 * window the fast path reads for a chunk of 512 bytes or more). */
static void size_forged_over_live(size_t b_request)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, 64);
    char *a = must_alloc(heap, 64);
    char *b = must_alloc(heap, b_request);
    char *c = must_alloc(heap, 64);
    must_alloc(heap, 64);
    size_t b_size = chunk_size_of(heap, b), c_size = chunk_size_of(heap, c);
    size_t c_usable = brisk_heap_usable_size(heap, c);
    memset(c, 'C', c_usable);
    (void)a;
    /* The overflow: b's header (the 8 bytes after a's chunk) now claims
     * b and c together, still USED and PREV_USED. */
    put_word(b - 8, (b_size + c_size) | 3u);
    target(b);
    brisk_heap_free(heap, b);
    size_t want = b_size + c_size - 32;
    char *q = brisk_heap_alloc(heap, want);
    if (q != NULL && overlaps(q, want, c, c_usable))
        broken("the heap handed out memory of a live block (a size forged in a header was believed)");
    unnoticed("a chunk size forged over a live block");
}

static void case_size_forged_over_live(void) { size_forged_over_live(64); }
static void case_size_forged_over_live_wide(void) { size_forged_over_live(520); }
/* b of 66 granules, past the windows of the exact classes: the span
 * check loops over map words, and c's start lies in the third. */
static void case_size_forged_over_live_far(void) { size_forged_over_live(1040); }
/* b of 126 granules: a longer loop, with whole words between the ends. */
static void case_size_forged_over_live_long(void) { size_forged_over_live(2000); }

/* Class 8 met by an alloc: an overflow from the block before the listed
 * free chunk f enlarges f's header over the live block c after it, to a
 * size of the same class, and writes the footer that size implies (in
 * c's bytes, which the attacker may own). Handing f out must not believe
 * the size. f is of 64 granules, and claims 66: the map is read in three
 * windows, c's start in the third. */
static void case_listed_size_forged_far(void)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, 64);
    must_alloc(heap, 64);
    char *f = must_alloc(heap, 1008);
    char *c = must_alloc(heap, 24);
    must_alloc(heap, 64);
    size_t f_size = chunk_size_of(heap, f), c_size = chunk_size_of(heap, c);
    size_t c_usable = brisk_heap_usable_size(heap, c);
    brisk_heap_free(heap, f); /* both neighbours live: listed as it is */
    size_t forged = f_size + c_size;
    put_word(f - 8, forged | 2u);                  /* free, PREV_USED */
    put_word(f - 8 + forged - 8, forged);          /* its footer, in c */
    target(f);
    size_t want = forged - 16;
    char *q = brisk_heap_alloc(heap, want);
    if (q != NULL && overlaps(q, want, c, c_usable))
        broken("the heap handed out memory of a live block (a size forged in a free chunk's header was believed)");
    unnoticed("a free chunk's size forged over a live block");
}

/* The same forged size met by realloc (a shrink would free the tail of
 * the claimed span, c's memory) and by usable_size (which would promise
 * the program c's bytes). */
static char *forge_size_over_next(brisk_heap *heap, char **c_out, size_t *c_usable)
{
    must_alloc(heap, 64);
    must_alloc(heap, 64);
    char *b = must_alloc(heap, 64);
    char *c = must_alloc(heap, 64);
    must_alloc(heap, 64);
    size_t b_size = chunk_size_of(heap, b), c_size = chunk_size_of(heap, c);
    *c_usable = brisk_heap_usable_size(heap, c);
    memset(c, 'C', *c_usable);
    put_word(b - 8, (b_size + c_size) | 3u);
    *c_out = c;
    return b;
}

static void case_size_forged_realloc(void)
{
    brisk_heap *heap = make_heap();
    char *c;
    size_t c_usable;
    char *b = forge_size_over_next(heap, &c, &c_usable);
    target(b);
    char *r = brisk_heap_realloc(heap, b, 16);
    for (int i = 0; i < 4; i++) {
        char *q = brisk_heap_alloc(heap, 40);
        if (q != NULL && overlaps(q, 40, c, c_usable))
            broken("the heap handed out memory of a live block (realloc believed a forged size)");
    }
    (void)r;
    unnoticed("realloc of a block whose size was forged over a live block");
}

static void case_size_forged_usable_size(void)
{
    brisk_heap *heap = make_heap();
    char *c;
    size_t c_usable;
    char *b = forge_size_over_next(heap, &c, &c_usable);
    target(b);
    size_t usable = brisk_heap_usable_size(heap, b);
    if (overlaps(b, usable, c, c_usable))
        broken("usable_size promised the bytes of a live block (a forged size)");
    unnoticed("usable_size of a block whose size was forged over a live block");
}

/* Class 8: a one-byte overflow from a clears b's PREV_USED bit, and a
 * fake footer and a fake free chunk (with links that agree) sit inside
 * the live block a. Freeing b must not merge backwards into a. */
static void case_prev_used_cleared(void)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, 64);
    char *a = must_alloc(heap, 512);
    char *b = must_alloc(heap, 64);
    must_alloc(heap, 64);
    size_t a_size = chunk_size_of(heap, a);
    char *a_chunk = a - 8, *b_chunk = b - 8;
    /* a's contents: zero (so a wiped heap's check sees nothing), but for
     * the fake chunk f at a + 120 (a chunk start, 8 mod 16) and a fake
     * list neighbour g at a + 56 whose next points at f. */
    size_t a_usable = brisk_heap_usable_size(heap, a);
    memset(a, 0, a_usable);
    char *f = a + 120, *g = a + 56;
    size_t fake_size = (size_t)(b_chunk - f);
    put_word(f, fake_size | 2u);         /* free, PREV_USED */
    put_word(f + 8, 0);                  /* next: none */
    put_word(f + 16, (uintptr_t)g);      /* prev: g */
    put_word(g + 8, (uintptr_t)f);       /* g's next: f */
    put_word(b_chunk - 8, fake_size);    /* the footer in a's last word */
    /* The one-byte overflow: b's header's low byte, PREV_USED cleared. */
    unsigned char *low = hide(b_chunk);
    *low = (unsigned char)(*low & ~2u);
    (void)a_size;
    (void)a_chunk;
    /* A request whose chunk is exactly the merged one (16 covers the
     * header and, hardened, the canary). */
    size_t want = fake_size + chunk_size_of(heap, b) - 16;
    target(b);
    brisk_heap_free(heap, b);
    char *q = brisk_heap_alloc(heap, want);
    if (q != NULL && overlaps(q, want, a, a_usable))
        broken("the heap handed out memory of a live block (a free merged backwards into it)");
    unnoticed("a cleared PREV_USED bit and a fake footer");
}

/* Class 8, a real free chunk enlarged, merged into the wilderness: the
 * listed chunk f (right below the live block a) has its size enlarged
 * over a, a's last word forged as f's footer, and the PREV_USED bit of
 * c (the last chunk before the wilderness) cleared. c's free would take
 * f and a with it into the wilderness, which is carved without reading
 * the block map: the next large alloc would overlap a. The free must
 * check that nothing starts between f and c when it merges into the
 * wilderness. */
static void case_prev_enlarged_into_wilderness(void)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, 64);
    char *f = must_alloc(heap, 2100);
    char *a = must_alloc(heap, 24);
    char *c = must_alloc(heap, 64);
    size_t a_usable = brisk_heap_usable_size(heap, a);
    size_t f_size = chunk_size_of(heap, f), a_size = chunk_size_of(heap, a);
    brisk_heap_free(heap, f);
    memset(a, 0, a_usable);
    char *f_chunk = f - 8, *c_chunk = c - 8;
    put_word(f_chunk, (f_size + a_size) | 2u); /* an overflow into f's header */
    put_word(c_chunk - 8, f_size + a_size);    /* a's last word: the footer */
    unsigned char *low = hide(c_chunk);        /* an overflow from a */
    *low = (unsigned char)(*low & ~2u);
    target(c);
    brisk_heap_free(heap, c);
    char *q = brisk_heap_alloc(heap, 4000);
    if (q != NULL && overlaps(q, 4000, a, a_usable))
        broken("the heap handed out memory of a live block (a free merged an enlarged chunk into the wilderness)");
    unnoticed("an enlarged free chunk merged into the wilderness");
}

/* Class 8, the canary's part: the canary covers the header's flag bits,
 * so a PREV_USED bit set by an overflow (b's left neighbour is free: b's
 * free would then not merge with it, leaving two free chunks side by
 * side) breaks b's canary. The block map cannot see this one: nothing
 * overlaps, only the layout's promise that free chunks never touch is
 * broken. */
static void case_prev_used_set(void)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, 64);
    char *a = must_alloc(heap, 64);
    char *b = must_alloc(heap, 64);
    must_alloc(heap, 64);
    brisk_heap_free(heap, a);
    unsigned char *low = hide(b - 8);
    *low = (unsigned char)(*low | 2u);
    target(b);
    brisk_heap_free(heap, b);
    unnoticed("a PREV_USED bit set by an overflow");
}

/* Class 9: a write after free points a freed chunk's next link at a fake
 * chunk inside the live block l, whose back pointer is written there to
 * match. The allocs of that size must not hand out l's memory. Blocks of
 * `size` bytes, 64 or 600 (see uaf_steer). */
static void link_into_live(size_t size)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, size);
    char *p = must_alloc(heap, size);
    must_alloc(heap, size);
    char *l = must_alloc(heap, 512);
    must_alloc(heap, 64);
    size_t chunk = chunk_size_of(heap, p);
    size_t l_usable = brisk_heap_usable_size(heap, l);
    memset(l, 0, l_usable);
    char *fake = l + 120; /* a chunk start: 8 mod 16 */
    put_word(fake, chunk | 2u);
    put_word(fake + 8, 0);                      /* its next: none */
    put_word(fake + 16, (uintptr_t)(p - 8));    /* its prev: p's chunk */
    brisk_heap_free(heap, p);
    put_word(p, (uintptr_t)fake); /* the write after free: p's next link */
    target(p);
    for (int i = 0; i < 3; i++) {
        char *q = brisk_heap_alloc(heap, size);
        if (q != NULL && overlaps(q, size, l, l_usable))
            broken("the heap handed out memory of a live block through a forged link");
    }
    unnoticed("a free-list link pointed into a live block");
}

static void case_link_into_live(void) { link_into_live(64); }
static void case_link_into_live_wide(void) { link_into_live(600); }

/* Class 10: a linear underflow from the heap's first block, running down
 * over the bookkeeping, writes an address of the attacker's choice into
 * every word down to the list heads. In a mapped heap it must fault on
 * the guard before it reaches them; in a caller's buffer (no guard can be
 * made there) the next call must refuse the heads, not hand out what they
 * name. */
static _Alignas(4096) char heap_buffer[4u << 20];

static void underflow_to_heads(brisk_heap *heap, int guarded)
{
    char *first = must_alloc(heap, 64);
    if (first != (char *)heap->base + CHUNK_HEADER_SIZE)
        exit(5); /* set-up: not the first block */
    size_t cls = chunk_class_of(chunk_size_of(heap, first));
    target(first);
    /* From just below the block's header down to its class's head. */
    for (uintptr_t *w = (uintptr_t *)(void *)(first - 16); w >= (uintptr_t *)(void *)&heap->heads[cls]; w--)
        put_word(w, (uintptr_t)(attacker_area + 64));
    if (guarded)
        unnoticed("an underflow ran over a mapped heap's bookkeeping without a fault");
    for (int i = 0; i < 3; i++) {
        char *q = brisk_heap_alloc(heap, 64);
        if (q >= attacker_area && q < attacker_area + sizeof attacker_area)
            broken("the heap handed out the address an underflow wrote into its list heads");
    }
    unnoticed("an underflow into the heap's bookkeeping");
}

/* A mapped heap's guards, from outside: the page before its region (its
 * struct is at the start), the page between its bookkeeping and its
 * chunks, and the page after its region are inaccessible; the fence's
 * page and the struct's are not. */
static void case_mapped_guards_layout(void)
{
    brisk_heap *heap = make_heap();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const char *region = (const char *)heap, *region_end = (const char *)heap->end + CHUNK_HEADER_SIZE;
    const char *chunks = (const char *)heap->base - CHUNK_HEADER_SIZE; /* the fence, page-aligned */
    if (!readable(region, 1) || !readable(chunks, 1) || !readable(region_end - 1, 1))
        broken("the heap's own pages are not readable");
    if (((uintptr_t)region | (uintptr_t)chunks | (uintptr_t)region_end) % page != 0)
        broken("the region, its chunk area or its end is not page-aligned");
    if (readable(region - 1, 1))
        broken("the page before a mapped heap's region is accessible (its struct is not guarded)");
    if (readable(chunks - 1, 1))
        broken("the page before a mapped heap's chunks is accessible (its bookkeeping is not guarded)");
    if (readable(region_end, 1))
        broken("the page after a mapped heap's region is accessible");
    printf("ok: guarded before the region, before the chunks and after the region\n");
}

static void case_underflow_bookkeeping_mapped(void) { underflow_to_heads(make_heap(), 1); }

static void case_underflow_bookkeeping_buffer(void)
{
    brisk_heap *heap = brisk_heap_create_ex(heap_buffer, sizeof heap_buffer, heap_flags);
    if (heap == NULL)
        exit(5);
    underflow_to_heads(heap, 0);
}

/* ---- hardened: canaries ----------------------------------------------- */

static void overflow(size_t size, size_t past)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, size);
    must_alloc(heap, 64);
    size_t usable = brisk_heap_usable_size(heap, p);
    memset(p, 'a', usable);
    char *q = hide(p);
    q[usable + past - 1] = (char)~q[usable + past - 1]; /* certain to differ from the canary byte */
    target(p);
    brisk_heap_free(heap, p);
    unnoticed("write past the usable size");
}

static void case_canary_overflow_1(void) { overflow(40, 1); }
static void case_canary_overflow_8(void) { overflow(40, 8); }
static void case_canary_overflow_1_odd(void) { overflow(13, 1); }
static void case_canary_overflow_8_large(void) { overflow(5000, 8); }

static void case_canary_underflow(void)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, 64);
    char *p = must_alloc(heap, 64);
    must_alloc(heap, 64);
    char *q = hide(p);
    q[-1] = (char)~q[-1]; /* certain to differ from the canary byte */
    target(p);
    brisk_heap_free(heap, p);
    unnoticed("write before the start of a block");
}

/* ---- hardened: wipe on free, checked on reuse -------------------------- */

static void case_wipe_no_old_bytes(void)
{
    brisk_heap *heap = make_heap();
    static const size_t sizes[] = {1, 16, 40, 100, 1000, 5000, 70000};
    enum { PER = 32 };
    char *blocks[PER];
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < PER; i++) {
                blocks[i] = must_alloc(heap, sizes[s] + (size_t)round * 8);
                size_t usable = brisk_heap_usable_size(heap, blocks[i]);
                if (shows_old_bytes((unsigned char *)blocks[i], usable))
                    broken("an allocation showed a previous owner's bytes");
                memset(blocks[i], OLD_BYTE, usable);
            }
            for (int i = 0; i < PER; i += 2)
                brisk_heap_free(heap, blocks[i]);
            for (int i = 1; i < PER; i += 2)
                blocks[i] = brisk_heap_realloc(heap, blocks[i], sizes[s] * 3 + 1);
            for (int i = 1; i < PER; i += 2)
                brisk_heap_free(heap, blocks[i]);
        }
    }
    if (brisk_heap_check(heap) != 0)
        broken("the heap's self-check failed");
    printf("ok: no old bytes seen\n");
}

/* A byte written into a freed block is found when that memory is handed
 * out again (allocations of the same size take it back). */
static void uaf_write(size_t size, size_t offset)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, 64);
    char *p = must_alloc(heap, size);
    must_alloc(heap, 64);
    brisk_heap_free(heap, p);
    char *q = hide(p);
    scribble(&q[offset]);
    target(p);
    for (int i = 0; i < 100; i++)
        if (brisk_heap_alloc(heap, size) == NULL)
            break;
    unnoticed("write into a freed block");
}

static void case_wipe_uaf_write(void) { uaf_write(256, 100); }
static void case_wipe_uaf_write_end(void) { uaf_write(256, 255); }
/* In a block big enough that the wipe and its check read only resident
 * pages (heap_harden.c): the write made its page resident, so it is
 * read. */
static void case_wipe_uaf_write_resident(void) { uaf_write(200000, 100000); }

/* brisk_heap_check reads every live block's canary (invariant 13) and
 * every listed free chunk's wiped bytes (14): misuse of blocks that are
 * never freed or never reused is found there too. */
static void case_check_finds_overflow(void)
{
    brisk_heap *heap = make_heap();
    char *p = must_alloc(heap, 40);
    must_alloc(heap, 40);
    char *q = hide(p);
    q[brisk_heap_usable_size(heap, p)] = (char)~q[brisk_heap_usable_size(heap, p)]; /* certain to differ from the canary byte */
    if (brisk_heap_check(heap) == 0)
        broken("brisk_heap_check missed an overwritten canary");
    printf("ok: brisk_heap_check reported the overwritten canary\n");
}

static void case_check_finds_write_after_free(void)
{
    brisk_heap *heap = make_heap();
    must_alloc(heap, 64);
    char *p = must_alloc(heap, 256);
    must_alloc(heap, 64);
    brisk_heap_free(heap, p);
    char *q = hide(p);
    scribble(&q[100]);
    if (brisk_heap_check(heap) == 0)
        broken("brisk_heap_check missed a write into a freed chunk");
    printf("ok: brisk_heap_check reported the write after free\n");
}

/* ---- a clean workload ------------------------------------------------- */

static void case_valid_workload(void)
{
    enum { SLOTS = 1024 };
    brisk_heap *heap = make_heap();
    static char *slots[SLOTS];
    static size_t sizes[SLOTS];
    uint64_t state = 0x2545f4914f6cdd1du;
    for (int i = 0; i < 100000; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        size_t slot = (size_t)(state % SLOTS);
        size_t size = (size_t)((state >> 24) % 2000) + 1;
        if (slots[slot] != NULL) {
            for (size_t b = 0; b < sizes[slot]; b++)
                if ((unsigned char)slots[slot][b] != (unsigned char)(slot + b))
                    broken("a live block's contents changed");
            if ((state >> 40) % 3 == 0) {
                char *r = brisk_heap_realloc(heap, slots[slot], size);
                if (r == NULL)
                    continue;
                size_t keep = sizes[slot] < size ? sizes[slot] : size;
                for (size_t b = 0; b < keep; b++)
                    if ((unsigned char)r[b] != (unsigned char)(slot + b))
                        broken("realloc lost contents");
                slots[slot] = r;
                sizes[slot] = size;
                for (size_t b = 0; b < size; b++)
                    r[b] = (char)(slot + b);
                continue;
            }
            brisk_heap_free(heap, slots[slot]);
            slots[slot] = NULL;
            continue;
        }
        if ((state >> 50) % 8 == 0)
            slots[slot] = brisk_heap_alloc_aligned(heap, (size_t)32 << ((state >> 54) % 6), size);
        else if ((state >> 50) % 8 == 1)
            slots[slot] = brisk_heap_calloc(heap, 1, size);
        else
            slots[slot] = brisk_heap_alloc(heap, size);
        if (slots[slot] == NULL)
            continue;
        sizes[slot] = size;
        for (size_t b = 0; b < size; b++)
            slots[slot][b] = (char)(slot + b);
    }
    if (brisk_heap_check(heap) != 0)
        broken("the heap's self-check failed");
    for (size_t i = 0; i < SLOTS; i++)
        brisk_heap_free(heap, slots[i]);
    if (brisk_heap_check(heap) != 0)
        broken("the heap's self-check failed after freeing everything");
    brisk_heap_destroy(heap);
    printf("ok: clean workload ran\n");
}

/* ---- the case table --------------------------------------------------- */

static const security_case cases[] = {
    CASE(double_free),
    CASE(double_free_interleaved),
    CASE(double_free_after_merge),
    CASE(double_free_churn),
    CASE(realloc_freed),
    CASE(usable_size_freed),
    CASE(free_interior),
    CASE(free_interior_unaligned),
    CASE(realloc_interior),
    CASE(usable_size_interior),
    CASE(free_stack),
    CASE(free_wild),
    CASE(free_never_allocated),
    CASE(free_foreign_heap),
    CASE(free_foreign_malloc),
    CASE(free_forged_header),
    CASE(uaf_steer),
    CASE(uaf_steer_wide),
    CASE(uaf_steer_merge),
    CASE(size_forged_over_live),
    CASE(size_forged_over_live_wide),
    CASE(size_forged_over_live_far),
    CASE(size_forged_over_live_long),
    CASE(listed_size_forged_far),
    CASE(size_forged_realloc),
    CASE(size_forged_usable_size),
    CASE(prev_used_cleared),
    CASE(prev_enlarged_into_wilderness),
    CASE(prev_used_set),
    CASE(link_into_live),
    CASE(link_into_live_wide),
    CASE(underflow_bookkeeping_mapped),
    CASE(mapped_guards_layout),
    CASE(underflow_bookkeeping_buffer),
    CASE(canary_overflow_1),
    CASE(canary_overflow_8),
    CASE(canary_overflow_1_odd),
    CASE(canary_overflow_8_large),
    CASE(canary_underflow),
    CASE(wipe_no_old_bytes),
    CASE(wipe_uaf_write),
    CASE(wipe_uaf_write_end),
    CASE(wipe_uaf_write_resident),
    CASE(valid_workload),
    CASE(check_finds_overflow),
    CASE(check_finds_write_after_free),
};

static int parse_level(const char *level)
{
    if (strcmp(level, "default") == 0)
        heap_flags = 0;
    else if (strcmp(level, "hardened") == 0)
        heap_flags = BRISK_HEAP_HARDENED;
    else if (strcmp(level, "canary") == 0)
        heap_flags = BRISK_HEAP_CANARY;
    else if (strcmp(level, "wipe") == 0)
        heap_flags = BRISK_HEAP_WIPE_CHECK;
    else if (strcmp(level, "defer") == 0)
        heap_flags = BRISK_HEAP_DEFER_MERGE;
    else
        return 0;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0)
        return run_case(cases, sizeof cases / sizeof *cases, argv[0], argv[1]);
    if (argc != 3 || !parse_level(argv[2])) {
        fprintf(stderr, "usage: %s CASE default|hardened|canary|wipe|defer (or --list)\n", argv[0]);
        return 2;
    }
    return run_case(cases, sizeof cases / sizeof *cases, argv[0], argv[1]);
}
