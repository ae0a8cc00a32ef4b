/*
 * Misuse cases for the process allocator, one per run:
 *
 *     LD_PRELOAD=libbrisk.so [BRISK_OPTIONS=...] malloc_cases <case>
 *
 * The program uses only the standard names (malloc, free, realloc,
 * malloc_usable_size, ...) and is not linked against brisk, so it exercises
 * exactly what a preloaded program gets. security_expect runs each case in
 * a child and checks how it ended; tests/security/CMakeLists.txt lists the
 * expected ending of every case at every hardening level.
 *
 * The conventions every case follows are in cases.h.
 */
#define _GNU_SOURCE
#include "cases.h"
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SMALL 48
#define MEDIUM (24 * 1024)
#define LARGE (600 * 1024)
#define HUGE (48 * 1024 * 1024)

/* ---- double free ------------------------------------------------------ */

static void double_free_plain(size_t size)
{
    char *p = must_malloc(size);
    memset(p, 1, size);
    free(p);
    target(p);
    free(hide(p));
    unnoticed("second free");
}

static void case_double_free_small(void) { double_free_plain(SMALL); }
static void case_double_free_medium(void) { double_free_plain(MEDIUM); }
static void case_double_free_large(void) { double_free_plain(LARGE); }
static void case_double_free_huge(void) { double_free_plain(HUGE); }

/* free(p); free(q); free(p): the list head is q, not p, so a check that
 * only compares against the most recently freed block misses it. */
static void double_free_interleaved(size_t size)
{
    char *p = must_malloc(size);
    char *q = must_malloc(size);
    free(p);
    free(q);
    target(p);
    free(hide(p));
    unnoticed("second free after another free");
}

static void case_double_free_interleaved_small(void) { double_free_interleaved(SMALL); }
static void case_double_free_interleaved_medium(void) { double_free_interleaved(MEDIUM); }
static void case_double_free_interleaved_large(void) { double_free_interleaved(LARGE); }

/* Many blocks of one size, p freed among many other frees and
 * allocations of the same size. If one of the later allocations got p's
 * memory back, that block is freed once more legitimately, so at the end p
 * is free for certain and the last free(p) is a double free either way. */
static void double_free_churn(size_t size, size_t count)
{
    char **blocks = must_malloc(count * sizeof *blocks);
    for (size_t i = 0; i < count; i++)
        blocks[i] = must_malloc(size);
    char *p = blocks[count / 2];
    free(p);
    for (size_t i = 0; i < count; i += 2)
        if (i != count / 2)
            free(blocks[i]);
    int reused = 0;
    for (size_t i = 0; i < count; i += 2) {
        blocks[i] = must_malloc(size);
        if (blocks[i] == p)
            reused = 1;
    }
    for (size_t i = 1; i < count; i += 4)
        free(blocks[i]);
    if (reused)
        free(p);
    target(p);
    free(hide(p));
    unnoticed("double free after many frees and allocations of the same size");
}

static void case_double_free_churn_small(void) { double_free_churn(SMALL, 20000); }
static void case_double_free_churn_medium(void) { double_free_churn(MEDIUM, 200); }

/* Freed by another thread (the remote-free path), then again here. */
static void *free_in_thread(void *p)
{
    free(p);
    return NULL;
}

static void case_double_free_cross_thread(void)
{
    char *p = must_malloc(SMALL);
    char *keep = must_malloc(SMALL);
    pthread_t thread;
    if (pthread_create(&thread, NULL, free_in_thread, p) != 0)
        exit(5);
    pthread_join(thread, NULL);
    target(p);
    free(hide(p));
    /* The block waits on its page's cross-thread list: the second free
     * must find it there (or, at the latest, when the owner collects the
     * list, which these allocations of the size bring about). */
    for (int i = 0; i < 100000; i++)
        must_malloc(SMALL);
    (void)keep;
    unnoticed("double free across threads");
}

static void case_realloc_freed(void)
{
    char *p = must_malloc(SMALL);
    free(p);
    target(p);
    void *q = realloc(hide(p), SMALL * 2);
    (void)q;
    unnoticed("realloc of a freed block");
}

static void case_usable_size_freed(void)
{
    char *p = must_malloc(SMALL);
    free(p);
    target(p);
    size_t n = malloc_usable_size(hide(p));
    printf("usable size %zu\n", n);
    unnoticed("malloc_usable_size of a freed block");
}

/* ---- invalid pointers ------------------------------------------------- */

typedef enum call { CALL_FREE, CALL_REALLOC, CALL_USABLE } call;

static void misuse(call how, void *p)
{
    target(p);
    switch (how) {
    case CALL_FREE:
        free(hide(p));
        unnoticed("free of an invalid pointer");
    case CALL_REALLOC: {
        void *q = realloc(hide(p), 100);
        (void)q;
        unnoticed("realloc of an invalid pointer");
    }
    case CALL_USABLE: {
        size_t n = malloc_usable_size(hide(p));
        printf("usable size %zu\n", n);
        unnoticed("malloc_usable_size of an invalid pointer");
    }
    }
}

static void interior(call how, size_t size, size_t offset)
{
    char *p = must_malloc(size);
    misuse(how, p + offset);
}

static void case_free_interior_small(void) { interior(CALL_FREE, SMALL, 16); }
static void case_free_interior_unaligned_small(void) { interior(CALL_FREE, SMALL, 1); }
static void case_free_interior_medium(void) { interior(CALL_FREE, MEDIUM, 4096); }
static void case_free_interior_unaligned_medium(void) { interior(CALL_FREE, MEDIUM, 7); }
static void case_free_interior_large(void) { interior(CALL_FREE, LARGE, 64 * 1024); }
static void case_free_interior_unaligned_large(void) { interior(CALL_FREE, LARGE, 3); }
static void case_free_interior_huge(void) { interior(CALL_FREE, HUGE, 16 * 1024 * 1024); }
static void case_realloc_interior(void) { interior(CALL_REALLOC, SMALL, 16); }
static void case_usable_size_interior(void) { interior(CALL_USABLE, SMALL, 16); }

/* Interior of an over-aligned block: a multiple of the alignment inside. */
static void case_free_interior_aligned_alloc(void)
{
    char *p = aligned_alloc(4096, 3 * 4096);
    if (p == NULL)
        exit(5);
    misuse(CALL_FREE, p + 4096);
}

static void stack_address(call how)
{
    _Alignas(64) char local[256];
    memset(local, 0, sizeof local);
    misuse(how, local + 64);
}

static void case_free_stack(void) { stack_address(CALL_FREE); }
static void case_realloc_stack(void) { stack_address(CALL_REALLOC); }
static void case_usable_size_stack(void) { stack_address(CALL_USABLE); }

static _Alignas(64) char global_buffer[4096];

static void case_free_global(void) { misuse(CALL_FREE, global_buffer + 64); }

/* An address that was mapped once and is not any more. */
static void *unmapped_address(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        exit(5);
    munmap(m, 4 * page);
    return m + page + 16;
}

static void case_free_wild(void) { misuse(CALL_FREE, unmapped_address()); }
static void case_free_wild_low(void) { misuse(CALL_FREE, (void *)(uintptr_t)0x10010); }
static void case_free_wild_high(void) { misuse(CALL_FREE, (void *)(uintptr_t)0x7ff0deadbe00); }
static void case_realloc_wild(void) { misuse(CALL_REALLOC, unmapped_address()); }
static void case_usable_size_wild(void) { misuse(CALL_USABLE, unmapped_address()); }

/* Memory mapped by someone else (here: by us, with mmap directly), at the
 * start and inside, and at an alignment that looks like an allocator's. */
static void case_free_foreign_mmap(void)
{
    char *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        exit(5);
    misuse(CALL_FREE, m);
}

static void case_free_foreign_mmap_aligned(void)
{
    /* 64 MiB mapped, so a 32 MiB-aligned address lies inside; from there
     * up the memory is filled as an allocator's own region would be
     * (non-zero words), and a pointer a little way in is freed. */
    size_t span = (size_t)64 << 20;
    char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        exit(5);
    char *aligned = (char *)(((uintptr_t)m + ((size_t)32 << 20) - 1) & ~(uintptr_t)(((size_t)32 << 20) - 1));
    memset(aligned, 0x11, 1 << 20);
    misuse(CALL_FREE, aligned + 4096 + 64);
}

/* Memory mapped by someone else inside the 4 MiB span of a freed large
 * block of ours that is kept in the cache: the span past a mapping
 * smaller than 4 MiB is anyone's. Not a block of ours, not a double free
 * (it was reported as one). */
static void case_free_foreign_mmap_in_cached_span(void)
{
    char *p = malloc((size_t)1 << 20);
    if (p == NULL)
        exit(5);
    uintptr_t span = ((uintptr_t)p - 1) & ~(uintptr_t)(((size_t)4 << 20) - 1);
    free(p); /* cached: the span still says "large" */
    char *q = NULL;
    /* Any free page of the span past the block's end will do (other
     * mappings, brisk's guarded metadata among them, may take part of it). */
    uintptr_t past_block = (uintptr_t)p + ((size_t)1 << 20) - span;
    for (uintptr_t off = ((uintptr_t)4 << 20) - 4096; off >= past_block && q == NULL; off -= 4096) {
        void *m = mmap((void *)(span + off), 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (m != MAP_FAILED && m == (void *)(span + off))
            q = m;
        else if (m != MAP_FAILED)
            munmap(m, 4096); /* an old kernel placed it elsewhere */
    }
    if (q == NULL)
        exit(5); /* nothing free in the span: cannot set up */
    misuse(CALL_FREE, q);
}

/* A fake chunk forged inside user memory: words that look like a size
 * field with in-use bits, for every plausible header layout, around the
 * pointer freed ("house of spirit"). Out-of-line metadata means there is
 * nothing in the block to trust. */
static void forge_headers(char *area, size_t bytes)
{
    uintptr_t *words = (uintptr_t *)(void *)area;
    for (size_t i = 0; i < bytes / sizeof *words; i++)
        words[i] = (i % 2 == 0) ? 0x41 : (uintptr_t)(area + 64);
}

static void case_free_forged_header_small(void)
{
    char *p = must_malloc(512);
    forge_headers(p, 512);
    misuse(CALL_FREE, p + 64);
}

static void case_free_forged_header_large(void)
{
    char *p = must_malloc(LARGE);
    forge_headers(p, 8192);
    misuse(CALL_FREE, p + 4096);
}

static void case_free_forged_header_stack(void)
{
    _Alignas(4096) static char fake[3 * 4096];
    forge_headers(fake, sizeof fake);
    misuse(CALL_FREE, fake + 4096);
}

/* A forged copy of brisk's own metadata: the memory from the start of
 * the aligned region holding a real block up to just past the block is
 * copied, byte for byte, into a mapping at the same alignment, and the
 * copy of the block is freed. A check that trusts what it finds at the
 * aligned base of a pointer accepts it; a check against brisk's own
 * record of its regions does not. The alignment used is the largest power
 * of two from 64 KiB to 64 MiB whose region is readable up to the block
 * (for brisk: at least the whole segment), as cases.h's readable says. */

static void case_free_forged_region_copy(void)
{
    char *p = must_malloc(SMALL);
    size_t best = 0;
    for (size_t align = (size_t)1 << 16; align <= ((size_t)1 << 26); align <<= 1) {
        char *base = (char *)((uintptr_t)p & ~(uintptr_t)(align - 1));
        if (readable(base, (size_t)(p - base) + SMALL))
            best = align;
    }
    if (best == 0) {
        printf("set-up failed: no readable aligned region around a block\n");
        exit(5);
    }
    char *base = (char *)((uintptr_t)p & ~(uintptr_t)(best - 1));
    size_t offset = (size_t)(p - base);
    char *m = mmap(NULL, 2 * best, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        exit(5);
    char *copy = (char *)(((uintptr_t)m + best - 1) & ~(uintptr_t)(best - 1));
    memcpy(copy, base, offset + SMALL);
    printf("copied %zu bytes at alignment %zu\n", offset + SMALL, best);
    misuse(CALL_FREE, copy + offset);
}

/* ---- free-list protection --------------------------------------------- */

/* The churn that brings a freed block back: a pool of blocks allocated
 * before the misuse is freed one by one while new blocks are allocated and
 * kept. The frees push the misused block through any delayed-reuse
 * queue, the allocations take blocks off the free lists until it comes
 * back. */
typedef struct churn {
    char **pool;
    size_t pool_count;
    char **kept;
    size_t kept_count;
    size_t size;
} churn;

/* Every block the churn holds carries a tag in its second word naming its
 * own address, so a block handed out that overlaps (or is) one still held
 * is seen the moment malloc returns it. Tags are cleared before a free. */
#define TAG_KEY ((uintptr_t)0x5afe7a65afe7a6u)

static void tag_set(char *b) { ((uintptr_t *)(void *)b)[1] = TAG_KEY ^ (uintptr_t)b; }
static void tag_clear(char *b) { ((uintptr_t *)(void *)b)[1] = 0; }

static void check_no_overlap(const char *q, size_t size)
{
    /* A held block starting at or after q inside [q, q + size)... */
    for (size_t off = 0; off + 16 <= size; off += 16)
        if (((const uintptr_t *)(const void *)(q + off))[1] == (TAG_KEY ^ (uintptr_t)(q + off)))
            broken("malloc handed out memory of a block still in use");
    /* ...or one starting before q that reaches into it. */
    for (size_t back = 16; back < size; back += 16)
        if (((const uintptr_t *)(const void *)(q - back))[1] == (TAG_KEY ^ (uintptr_t)(q - back)))
            broken("malloc handed out memory of a block still in use");
}

static churn churn_prepare(size_t size, size_t pool_count, size_t rounds)
{
    churn c;
    c.pool = must_malloc(pool_count * sizeof *c.pool);
    c.kept = must_malloc(rounds * sizeof *c.kept);
    c.pool_count = pool_count;
    c.kept_count = 0;
    c.size = size;
    for (size_t i = 0; i < pool_count; i++) {
        c.pool[i] = must_malloc(size);
        tag_set(c.pool[i]);
    }
    return c;
}

static char *churn_step(churn *c, size_t size)
{
    if (c->kept_count < c->pool_count) {
        tag_clear(c->pool[c->kept_count]);
        free(c->pool[c->kept_count]);
    }
    char *q = must_malloc(size);
    check_no_overlap(q, size);
    tag_set(q);
    c->kept[c->kept_count++] = q;
    return q;
}

/* churn_step with calloc: the block comes back zeroed (and, under wipe,
 * checked whole). */
static char *churn_step_calloc(churn *c, size_t size)
{
    if (c->kept_count < c->pool_count) {
        tag_clear(c->pool[c->kept_count]);
        free(c->pool[c->kept_count]);
    }
    char *q = calloc(1, size);
    if (q == NULL) {
        printf("set-up failed: calloc(1, %zu) returned NULL\n", size);
        exit(5);
    }
    check_no_overlap(q, size);
    tag_set(q);
    c->kept[c->kept_count++] = q;
    return q;
}

static _Alignas(64) char attacker_area[4096];

static int in_attacker_area(const void *q)
{
    return (const char *)q >= attacker_area && (const char *)q < attacker_area + sizeof attacker_area;
}

/* Use after free: every word of a freed block is overwritten with an
 * address of the attacker's choice (wherever the allocator keeps its link,
 * it now says "attacker_area"). Later allocations of the size must never
 * return that address: brisk detects the bad link and aborts. */
static void steer(size_t size, size_t pool_count, size_t rounds)
{
    churn c = churn_prepare(size, pool_count, rounds);
    char *p = must_malloc(size);
    free(p);
    uintptr_t *words = (uintptr_t *)(void *)hide(p);
    for (size_t i = 0; i < size / sizeof *words; i++)
        words[i] = (uintptr_t)(attacker_area + 64);
    for (size_t i = 0; i < rounds; i++)
        if (in_attacker_area(churn_step(&c, size)))
            broken("malloc returned the address written into a freed block");
    unnoticed("a forged free-list link");
}

static void case_uaf_steer_small(void) { steer(SMALL, 4000, 60000); }
static void case_uaf_steer_medium(void) { steer(MEDIUM, 600, 2000); }

/* A partial overwrite: only the low byte of each word changes, which with
 * a plain pointer link moves it to a neighbouring (live) block. brisk
 * detects it; and no block may ever be handed out twice. */
static int compare_pointers(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void case_uaf_partial_overwrite(void)
{
    enum { POOL = 4000, ROUNDS = 20000 };
    churn c = churn_prepare(SMALL, POOL, ROUNDS);
    char *p = must_malloc(SMALL);
    free(p);
    unsigned char *bytes = hide(p);
    for (size_t i = 0; i < SMALL; i += sizeof(uintptr_t))
        bytes[i] = (unsigned char)(bytes[i] + 0x40);
    for (size_t i = 0; i < ROUNDS; i++)
        churn_step(&c, SMALL);
    qsort(c.kept, c.kept_count, sizeof *c.kept, compare_pointers);
    for (size_t i = 1; i < c.kept_count; i++)
        if ((size_t)(c.kept[i] - c.kept[i - 1]) < SMALL)
            broken("two live blocks overlap after a partial overwrite of a freed block");
    unnoticed("a partially overwritten free-list link");
}

/* A nudge: one bit in the middle of the stored link flipped (a relative
 * overwrite that needs no secret). With an encoding that only rotates and
 * adds, it moves the decoded pointer by a few granules inside the page,
 * onto a neighbouring block or between two. brisk must detect it, or at
 * least never hand out overlapping blocks. */
static void link_nudge(size_t size, int byte, unsigned char mask)
{
    enum { POOL = 4000, ROUNDS = 20000 };
    churn c = churn_prepare(size, POOL, ROUNDS);
    char *q = must_malloc(size);
    char *p = must_malloc(size);
    free(q);
    free(p); /* p's link names q: a block of the same page */
    unsigned char *bytes = hide(p);
    bytes[byte] ^= mask;
    for (size_t i = 0; i < ROUNDS; i++)
        churn_step(&c, size);
    qsort(c.kept, c.kept_count, sizeof *c.kept, compare_pointers);
    for (size_t i = 1; i < c.kept_count; i++)
        if ((size_t)(c.kept[i] - c.kept[i - 1]) < size)
            broken("two live blocks overlap after a nudged free-list link");
    unnoticed("a nudged free-list link");
}

static void case_uaf_link_nudge_16(void) { link_nudge(SMALL, 3, 0x10); }
static void case_uaf_link_nudge_64(void) { link_nudge(64, 3, 0x20); }

/* A write after free into a freed block's second word, where brisk keeps
 * the page's free mark (the double-free test reads it): reported when the
 * block would be handed out again, at every level that checks it. */
static void case_uaf_write_mark_word(void)
{
    churn c = churn_prepare(SMALL, 4000, 60000);
    char *p = must_malloc(SMALL);
    free(p);
    char *q = hide(p);
    scribble(&q[sizeof(uintptr_t)]);
    target(p);
    for (size_t i = 0; i < 60000; i++)
        if (churn_step(&c, SMALL) == p)
            break;
    unnoticed("write into a freed block's second word");
}

/* ---- calloc ------------------------------------------------------------ */

/* calloc hands out its block's whole usable size zeroed, not only the
 * bytes asked for: malloc_usable_size says the rest is the caller's to
 * use, so it must not show a previous owner's data (issue 14, class 7).
 * Blocks filled with old bytes over their usable size are freed, then
 * calloc asks for a little less than the block holds and gets that
 * memory back (the same blocks, at once or after the quarantine). */
static void calloc_check_usable(size_t size, size_t ask, int count)
{
    char *blocks[64];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < count; i++) {
            blocks[i] = must_malloc(size);
            memset(blocks[i], OLD_BYTE, malloc_usable_size(blocks[i]));
        }
        for (int i = 0; i < count; i++)
            free(blocks[i]);
        for (int i = 0; i < count; i++) {
            blocks[i] = calloc(1, ask);
            if (blocks[i] == NULL)
                broken("calloc failed");
            size_t usable = malloc_usable_size(blocks[i]);
            for (size_t at = 0; at < usable; at++) {
                if (blocks[i][at] != 0) {
                    printf("calloc(1, %zu): byte %zu of %zu usable is %#x\n", ask, at, usable,
                           (unsigned)(unsigned char)blocks[i][at]);
                    broken("calloc left part of the usable size unzeroed");
                }
            }
        }
        for (int i = 0; i < count; i++)
            free(blocks[i]);
    }
}

static void case_calloc_zeroes_usable_size(void)
{
    calloc_check_usable(48, 33, 64);
    calloc_check_usable(1000, 900, 64);
    calloc_check_usable(MEDIUM, MEDIUM - 1000, 16);
    calloc_check_usable(LARGE, LARGE - 3000, 2);
    printf("ok: calloc zeroed every usable byte\n");
}

/* ---- hardened level: canaries ----------------------------------------- */

static void overflow(size_t size, size_t past)
{
    char *p = must_malloc(size);
    size_t usable = malloc_usable_size(p);
    memset(p, 'a', usable);
    char *q = hide(p);
    q[usable + past - 1] = (char)~q[usable + past - 1]; /* certain to differ from the canary byte */
    target(p);
    free(p);
    unnoticed("write past the usable size");
}

static void case_canary_overflow_1(void) { overflow(SMALL, 1); }
static void case_canary_overflow_8(void) { overflow(SMALL, 8); }
static void case_canary_overflow_1_odd(void) { overflow(13, 1); }
static void case_canary_overflow_8_512(void) { overflow(500, 8); }

static void case_canary_underflow(void)
{
    char *keep = must_malloc(SMALL);
    char *p = must_malloc(SMALL);
    memset(p, 'a', SMALL);
    char *q = hide(p);
    q[-1] = (char)~q[-1]; /* certain to differ from the canary byte */
    target(p);
    free(p);
    (void)keep;
    unnoticed("write before the start of a block");
}

/* ---- hardened level: wipe on free ------------------------------------- */

static void case_wipe_no_old_bytes(void)
{
    static const size_t sizes[] = {16, 24, 48, 100, 256, 1000, 3000, 20000, 100000, LARGE, 3 << 20};
    enum { PER_SIZE = 64 };
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t size = sizes[s];
        char *blocks[PER_SIZE];
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < PER_SIZE; i++) {
                blocks[i] = must_malloc(size);
                if (shows_old_bytes((unsigned char *)blocks[i], malloc_usable_size(blocks[i])))
                    broken("malloc returned a block showing a previous owner's bytes");
                memset(blocks[i], OLD_BYTE, malloc_usable_size(blocks[i]));
            }
            for (int i = 0; i < PER_SIZE; i++)
                free(blocks[i]);
        }
        /* Nor may a smaller request that lands in the same memory. */
        char *r = must_malloc(size);
        memset(r, OLD_BYTE, malloc_usable_size(r));
        free(r);
        char *g = must_malloc(size / 2 + 1);
        if (shows_old_bytes((unsigned char *)g, malloc_usable_size(g)))
            broken("malloc returned a block showing a previous owner's bytes");
        free(g);
    }
    printf("ok: no old bytes seen\n");
}

/* A write into a freed block is found when the block is handed out
 * again; the churn brings it back. */
static void uaf_write(size_t size, size_t offset_from_end, size_t pool_count, size_t rounds)
{
    churn c = churn_prepare(size, pool_count, rounds);
    char *p = must_malloc(size);
    size_t usable = malloc_usable_size(p);
    free(p);
    char *q = hide(p);
    scribble(&q[usable - offset_from_end]);
    target(p);
    for (size_t i = 0; i < rounds; i++)
        if (churn_step(&c, size) == p)
            break;
    unnoticed("write into a freed block");
}

/* A write into the middle of a freed block over 1 KiB, which malloc's
 * sample does not read: calloc checks the whole block. */
static void calloc_middle(size_t size, size_t pool, size_t rounds)
{
    churn c = churn_prepare(size, pool, rounds);
    char *p = must_malloc(size);
    size_t usable = malloc_usable_size(p);
    free(p);
    char *q = hide(p);
    scribble(&q[usable / 2]);
    target(p);
    for (size_t i = 0; i < rounds; i++)
        if (churn_step_calloc(&c, size) == p)
            break;
    unnoticed("write into the middle of a freed block, handed out by calloc");
}

static void case_wipe_uaf_write_calloc_middle(void) { calloc_middle(MEDIUM, 600, 2000); }

/* The same in a medium block big enough that its wipe and its check read
 * only the pages that are resident (harden.c): the write after free made
 * its page resident, so it is read. */
static void case_wipe_uaf_write_calloc_middle_resident(void) { calloc_middle(160 * 1024, 300, 400); }

/* ---- hardened level: wipe of large blocks ------------------------------ *
 *
 * A freed large block goes to the cache of mappings (it stays mapped):
 * under wipe it is wiped at free, and checked when handed out again. */

/* A read after free of a cached large block sees zeros only. */
static void case_wipe_large_read_after_free(void)
{
    static const size_t sizes[] = {LARGE, 3 << 20};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        unsigned char *p = must_malloc(sizes[s]);
        size_t usable = malloc_usable_size(p);
        memset(p, OLD_BYTE, usable);
        free(p);
        volatile unsigned char *q = hide(p);
        size_t seen = 0;
        for (size_t i = 0; i < usable; i++)
            seen += q[i] != 0;
        if (seen != 0) {
            printf("%zu of %zu bytes of a freed %zu-byte block are not zero\n", seen, usable, sizes[s]);
            broken("a read after free saw a large block's old bytes");
        }
    }
    printf("ok: freed large blocks read as zeros\n");
}

/* A large block too big for the cache (over its 64 MiB budget) is
 * unmapped at free: a read after free faults. */
static void case_wipe_large_read_after_unmap(void)
{
    enum { SIZE = 80 << 20 };
    unsigned char *p = must_malloc(SIZE);
    memset(p, OLD_BYTE, 1 << 20);
    free(p);
    volatile unsigned char *q = hide(p);
    target(p);
    if (q[4096] == OLD_BYTE)
        broken("a read after free saw an unmapped large block's old bytes");
    unnoticed("a read after free of an unmapped large block did not fault");
}

/* calloc and realloc of large blocks taken from the wiped cache: calloc's
 * blocks are zero, realloc keeps the contents, nothing is reported. */
static void case_wipe_large_calloc_realloc(void)
{
    static const size_t sizes[] = {LARGE, 2 * LARGE, LARGE + 5000, 5 * LARGE, 3 * LARGE, LARGE / 2 + 4096};
    enum { ROUNDS = 60 };
    for (int round = 0; round < ROUNDS; round++) {
        size_t n = sizes[(size_t)round % (sizeof sizes / sizeof *sizes)];
        size_t grown = sizes[(size_t)(round + 1) % (sizeof sizes / sizeof *sizes)];
        unsigned char *p = calloc(1, n);
        if (p == NULL)
            exit(5);
        for (size_t i = 0; i < n; i++)
            if (p[i] != 0)
                broken("calloc returned a large block that is not zero");
        memset(p, OLD_BYTE, n);
        unsigned char *r = realloc(p, grown);
        if (r == NULL)
            exit(5);
        size_t kept = n < grown ? n : grown;
        for (size_t i = 0; i < kept; i++)
            if (r[i] != OLD_BYTE)
                broken("realloc of a large block lost its contents");
        memset(r, OLD_BYTE, malloc_usable_size(r));
        free(r);
    }
    printf("ok: calloc zero, realloc kept, nothing reported\n");
}

/* A write into a freed large block, at `offset` (from its start, or from
 * its end when negative), is reported when the block is handed out
 * again: by malloc, or by calloc when `use_calloc`. Under delay the
 * block comes back only after other large frees, so blocks of the same
 * size are allocated and freed until it does. */
static void large_uaf_write(long offset, int use_calloc)
{
    enum { ROUNDS = 400 };
    unsigned char *p = must_malloc(LARGE);
    size_t usable = malloc_usable_size(p);
    memset(p, 1, usable);
    free(p);
    volatile unsigned char *v = hide(p);
    scribble((volatile char *)&v[offset >= 0 ? (size_t)offset : usable - (size_t)-offset]);
    target(p);
    for (int i = 0; i < ROUNDS; i++) {
        unsigned char *q = use_calloc ? calloc(1, LARGE) : malloc(LARGE);
        if (q == NULL)
            exit(5);
        if (q == p)
            unnoticed("a large block written after free was handed out again");
        free(q);
    }
    unnoticed("the large block written after free never came back");
}

static void case_wipe_large_uaf_write_first(void) { large_uaf_write(0, 0); }
static void case_wipe_large_uaf_write_last(void) { large_uaf_write(-1, 0); }
static void case_wipe_large_uaf_write_calloc_middle(void) { large_uaf_write(LARGE / 2, 1); }

static void case_wipe_uaf_write_small(void) { uaf_write(SMALL, 1, 4000, 60000); }
/* The middle of a block of 1 KiB: checked whole since the wipe got cheaper. */
static void case_wipe_uaf_write_1k_middle(void) { uaf_write(1000, 500, 600, 4000); }
static void case_wipe_uaf_write_small_middle(void) { uaf_write(SMALL, SMALL / 2, 4000, 60000); }
static void case_wipe_uaf_write_medium(void) { uaf_write(MEDIUM, 100, 600, 2000); }

/* ---- hardened level: guard pages -------------------------------------- */

static void guard(size_t size, int before)
{
    char *p = must_malloc(size);
    size_t usable = malloc_usable_size(p);
    memset(p, 'a', usable);
    volatile char *q = hide(p);
    target(p);
    if (before)
        scribble(&q[-1]);
    else
        scribble(&q[usable]);
    unnoticed("ran off a large block without a fault");
}

/* realloc of guarded large blocks, growing and shrinking: every usable
 * byte stays writable (no guard page ends up inside a block), and the
 * last block still faults one byte past its end. */
static void case_guard_realloc(void)
{
    static const size_t sizes[] = {LARGE, 3 * LARGE, 2 * LARGE, 5 * LARGE, LARGE + 1, 4 * LARGE};
    char *p = NULL;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        p = realloc(p, sizes[i]);
        if (p == NULL)
            exit(5);
        memset(p, (int)i, malloc_usable_size(p));
    }
    size_t usable = malloc_usable_size(p);
    volatile char *q = hide(p);
    target(p);
    scribble(&q[usable]);
    unnoticed("ran off a reallocated large block without a fault");
}

/* A guarded large block freed and its mapping reused for a smaller
 * request (the large-block cache): the guards must still sit right
 * before and right after the new block. */
static void guard_reused(int before)
{
    /* Under delay a freed mapping is reused only after a few more large
     * frees: blocks too small to be picked for the request below are
     * freed after it (allocated before, so that without delay they do not
     * take it). */
    enum { FLUSH = 8 };
    char *flush[FLUSH];
    for (int i = 0; i < FLUSH; i++)
        flush[i] = must_malloc(LARGE / 2);
    char *p = must_malloc(4 * LARGE);
    memset(p, 1, malloc_usable_size(p));
    free(p);
    for (int i = 0; i < FLUSH; i++)
        free(flush[i]);
    char *q = must_malloc(3 * LARGE);
    if (q != p) {
        printf("set-up failed: the freed mapping was not reused (%p, then %p)\n", (void *)p,
               (void *)q);
        exit(5);
    }
    size_t usable = malloc_usable_size(q);
    memset(q, 2, usable);
    volatile char *v = hide(q);
    target(q);
    if (before)
        scribble(&v[-1]);
    else
        scribble(&v[usable]);
    unnoticed("ran off a reused large block without a fault");
}

/* Guarded mappings reused for other sizes: a smaller block (the trailing
 * guard moves in), a much smaller one (what is past the guard is given
 * back), then larger ones (the mapping grows where it is, or a fresh one
 * is mapped): every usable byte of every block stays writable, freed or
 * not, and the last block still faults one byte past its end. */
static void case_guard_reused_resized(void)
{
    static const size_t sizes[] = {4 * LARGE, 3 * LARGE, 20 * LARGE, LARGE, 2 * LARGE, 6 * LARGE, 5 * LARGE, 9 * LARGE};
    char *p = NULL;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        free(p);
        p = must_malloc(sizes[i]);
        memset(p, (int)i, malloc_usable_size(p));
    }
    size_t usable = malloc_usable_size(p);
    volatile char *q = hide(p);
    target(p);
    scribble(&q[usable]);
    unnoticed("ran off a resized reused large block without a fault");
}

static void case_guard_reused_overflow(void) { guard_reused(0); }
static void case_guard_reused_underflow(void) { guard_reused(1); }

static void case_guard_large_overflow(void) { guard(LARGE, 0); }
static void case_guard_large_underflow(void) { guard(LARGE, 1); }
static void case_guard_huge_overflow(void) { guard(HUGE, 0); }
static void case_guard_odd_size_overflow(void) { guard(LARGE + 123, 0); }

/* ---- hardened level: delayed and randomized reuse --------------------- */

static void case_reuse_delayed(void)
{
    static const size_t sizes[] = {16, 48, 128, 1000, 20000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        char *keep[16];
        for (int i = 0; i < 16; i++)
            keep[i] = must_malloc(sizes[s]);
        for (int i = 0; i < 1000; i++) {
            char *p = must_malloc(sizes[s]);
            free(p);
            char *q = must_malloc(sizes[s]);
            if (q == p)
                broken("a freed block was handed straight back to the next request");
            free(q);
        }
        for (int i = 0; i < 16; i++)
            free(keep[i]);
    }
    printf("ok: no immediate reuse\n");
}

/* A freed large block is not handed straight back either: its mapping
 * waits in the cache for a few more large frees. */
static void case_reuse_delayed_large(void)
{
    static const size_t sizes[] = {LARGE, 3 << 20};
    static const int tries[] = {1000, 200};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (int i = 0; i < tries[s]; i++) {
            char *p = must_malloc(sizes[s]);
            p[0] = 1;
            free(p);
            char *q = must_malloc(sizes[s]);
            if (q == p)
                broken("a freed large block was handed straight back to the next request");
            free(q);
        }
    }
    /* Blocks not kept in the cache (over its 64 MiB budget, or aligned
     * beyond a page) are given back to the kernel at free, which would
     * map the same range again for the next request of the size: their
     * range is held for a while instead. */
    for (int i = 0; i < 40; i++) {
        char *p = must_malloc((size_t)100 << 20);
        p[0] = 1;
        free(p);
        char *q = must_malloc((size_t)100 << 20);
        if (q == p)
            broken("a freed 100 MiB block (unmapped at free) was handed straight back");
        free(q);
        void *a = NULL, *b = NULL;
        if (posix_memalign(&a, (size_t)1 << 20, (size_t)1 << 20) != 0)
            broken("posix_memalign failed");
        free(a);
        if (posix_memalign(&b, (size_t)1 << 20, (size_t)1 << 20) != 0)
            broken("posix_memalign failed");
        if (a == b)
            broken("a freed 1 MiB-aligned block was handed straight back");
        free(b);
    }
    printf("ok: no immediate reuse of large blocks\n");
}

/* Frees N blocks in order, then allocates until all N came back (or
 * enough to go through several pages); records the order in which the
 * freed blocks were handed out again (-1: not seen). */
static void reuse_order(size_t size, int *order, int n)
{
    enum { FLUSH = 4096, ALLOCS = 16384 };
    char **old = must_malloc((size_t)n * sizeof *old);
    char **flush = must_malloc(FLUSH * sizeof *flush);
    for (int i = 0; i < FLUSH; i++)
        flush[i] = must_malloc(24);
    for (int i = 0; i < n; i++)
        old[i] = must_malloc(size);
    for (int i = 0; i < n; i++)
        free(old[i]);
    /* Frees of another size push the blocks out of any delayed-reuse
     * queue and back onto their free list. */
    for (int i = 0; i < FLUSH; i++)
        free(flush[i]);
    int found = 0;
    for (int i = 0; i < n; i++)
        order[i] = -1;
    for (int k = 0; k < ALLOCS && found < n; k++) {
        char *q = must_malloc(size);
        for (int j = 0; j < n; j++)
            if (old[j] == q)
                order[found++] = j;
    }
}

static void case_reuse_order_child(void)
{
    enum { N = 32, SIZES = 3 };
    static const size_t sizes[SIZES] = {32, 64, 160};
    for (int s = 0; s < SIZES; s++) {
        int order[N];
        reuse_order(sizes[s], order, N);
        printf("size %zu:", sizes[s]);
        for (int i = 0; i < N; i++)
            printf(" %d", order[i]);
        printf("\n");
    }
}

/* Runs the same experiment in two fresh processes (this program again,
 * same environment): a deterministic allocator reuses the freed blocks
 * in the same order in both, whatever the addresses; randomized reuse
 * does not. */
static void run_self(const char *case_name, char *out, size_t size)
{
    char command[4200];
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        exit(5);
    exe[n] = '\0';
    snprintf(command, sizeof command, "'%s' %s", exe, case_name);
    FILE *child = popen(command, "r");
    if (child == NULL)
        exit(5);
    size_t used = fread(out, 1, size - 1, child);
    out[used] = '\0';
    if (pclose(child) != 0) {
        printf("set-up failed: the child run failed\n");
        exit(5);
    }
}

/* Runs the case `child` twice (each a process of its own, so each gets
 * its own secrets) and fails if both printed the same reuse order. */
static void reuse_orders_differ(const char *child, const char *what)
{
    static char first[8192], second[8192];
    run_self(child, first, sizeof first);
    run_self(child, second, sizeof second);
    printf("first run:\n%ssecond run:\n%s", first, second);
    if (strcmp(first, second) == 0) {
        printf("two runs reused freed %s in the same order\n", what);
        broken("not randomized");
    }
    printf("ok: %s reuse order differs between runs\n", what);
}

static void case_reuse_randomized(void) { reuse_orders_differ("reuse_order_child", "blocks"); }

/* Large blocks: frees N of the same size, then allocates as many again
 * and prints which freed block each one reused (-1: a fresh mapping).
 * Without delay the cache hands them back in a fixed order. */
static void case_reuse_order_large_child(void)
{
    enum { N = 16 };
    char *old[N];
    for (int i = 0; i < N; i++)
        old[i] = must_malloc(LARGE);
    for (int i = 0; i < N; i++)
        free(old[i]);
    printf("large:");
    for (int k = 0; k < N; k++) {
        char *q = must_malloc(LARGE);
        int found = -1;
        for (int j = 0; j < N; j++)
            if (old[j] == q)
                found = j;
        printf(" %d", found);
    }
    printf("\n");
}

static void case_reuse_randomized_large(void)
{
    reuse_orders_differ("reuse_order_large_child", "large blocks");
}

/* ---- hardened level: the quarantine (delay) ----------------------------- *
 *
 * Every free goes through the freeing thread's quarantine, a cross-thread
 * one too; a waiting block's first two words are check words, verified
 * when it leaves; and nothing a program can read in a waiting block
 * tells it a secret. */

/* A partner thread that frees the blocks it is handed, one per round, and
 * never allocates: its frees are all cross-thread ones. */
enum { HANDOFF_ROUNDS = 2000 };
static pthread_barrier_t handoff_given, handoff_freed;
static void *volatile handoff_block;

static void *handoff_partner(void *arg)
{
    int rounds = (int)(intptr_t)arg;
    for (int i = 0; i < rounds; i++) {
        pthread_barrier_wait(&handoff_given);
        free(handoff_block);
        pthread_barrier_wait(&handoff_freed);
    }
    return NULL;
}

static pthread_t handoff_start(int rounds)
{
    pthread_barrier_init(&handoff_given, NULL, 2);
    pthread_barrier_init(&handoff_freed, NULL, 2);
    pthread_t partner;
    if (pthread_create(&partner, NULL, handoff_partner, (void *)(intptr_t)rounds) != 0)
        exit(5);
    return partner;
}

/* Has the partner free p, and waits until it did. */
static void handoff_free(void *p)
{
    handoff_block = p;
    pthread_barrier_wait(&handoff_given);
    pthread_barrier_wait(&handoff_freed);
}

/* A block freed by another thread than the one that allocated it is not
 * handed straight back by the next malloc of its size either. Without the
 * quarantine it waits on its page's cross-thread list, which the owner
 * collects when the page's own list runs dry: for blocks of which a page
 * holds a few, at once. The blocks handed out stay live, so the pages
 * fill and their lists run dry often. A last round, of free(NULL), holds
 * the partner until the last malloc is made: its exit empties its
 * quarantine, which may free the last block at once (rightly), and the
 * malloc could then find it. */
static void case_reuse_delayed_cross_thread(void)
{
    static const size_t sizes[] = {48, 1000, MEDIUM};
    pthread_t partner = handoff_start(HANDOFF_ROUNDS * 3 + 1);
    int back = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        for (int i = 0; i < HANDOFF_ROUNDS; i++) {
            char *p = must_malloc(sizes[s]);
            handoff_free(p);
            if (must_malloc(sizes[s]) == p)
                back++;
        }
    }
    handoff_free(NULL);
    pthread_join(partner, NULL);
    if (back != 0) {
        printf("%d of %d blocks freed by another thread came straight back\n", back, 3 * HANDOFF_ROUNDS);
        broken("a block freed by another thread was handed straight back to the next request");
    }
    printf("ok: no immediate reuse of blocks freed by another thread\n");
}

/* Frees blocks allocated beforehand, of another size, so that a block
 * waiting in this thread's quarantine leaves it (each stays with
 * probability (63/64)^4096); none of them is written after free. */
static void quarantine_push_out(char **blocks, int count)
{
    for (int i = 0; i < count; i++)
        free(blocks[i]);
}

/* A write into one byte of the word at `offset` (0: the first word, 8:
 * the second) of a block while it waits in the quarantine is reported
 * when it leaves, naming the block. The second word is where the page's
 * free mark is written when the block is listed again: it would hide the
 * write. */
static void quarantine_write(size_t offset)
{
    enum { PUSH = 4096 };
    static char *push[PUSH];
    for (int i = 0; i < PUSH; i++)
        push[i] = must_malloc(16);
    char *p = must_malloc(SMALL);
    memset(p, 1, SMALL);
    free(p);
    volatile char *q = hide(p);
    scribble(&q[offset + 3]);
    target(p);
    quarantine_push_out(push, PUSH);
    /* Without a check when it leaves, it is listed again: bring it back. */
    for (int i = 0; i < 100000; i++)
        if (must_malloc(SMALL) == p)
            unnoticed("a block written after free while in the quarantine was handed out again");
    unnoticed("a write into a block waiting in the quarantine");
}

static void case_quarantine_write_first_word(void) { quarantine_write(0); }
static void case_quarantine_write_second_word(void) { quarantine_write(8); }

/* The same for a block freed by another thread, which waits in that
 * thread's quarantine: its second word is written while it waits, and
 * then the partner's exit empties its quarantine (a second round, of
 * free(NULL), holds the partner until the write is done). */
static void case_quarantine_write_cross_thread(void)
{
    pthread_t partner = handoff_start(2);
    char *keep = must_malloc(SMALL);
    char *p = must_malloc(SMALL);
    memset(p, 1, SMALL);
    handoff_free(p);
    volatile char *q = hide(p);
    scribble(&q[8 + 3]);
    target(p);
    handoff_free(NULL);
    pthread_join(partner, NULL);
    for (int i = 0; i < 100000; i++)
        if (must_malloc(SMALL) == p)
            unnoticed("a block written after its cross-thread free was handed out again");
    (void)keep;
    unnoticed("a write into a block freed by another thread");
}

/* Nothing in a waiting block tells the process secret that keys the
 * canaries: the attacker reads the first two words of a block in the
 * quarantine (a read after free, which nothing reports), derives every
 * candidate secret a cheap mix of them with the block's address would
 * give (each word, xor the address or not, rotated by 0 to 63 bits), and
 * forges with each the canary after a live block (a canary is its address
 * xor the secret) while overflowing it. Every forged canary must be found
 * at free: a handler counts the reports that name the canary after the
 * block (the block's canary in front may be one a previous round forged,
 * which is reported too, but as the one before), and returns. */
enum { ERROR_OVERFLOW = 4 }; /* BRISK_ERROR_OVERFLOW in brisk.h */
typedef void (*report_handler)(int error, const char *message, const void *ptr, void *context);
/* volatile: written by the handler, from inside free, which the compiler
 * may assume leaves this file's statics alone. */
static volatile int canary_after_reports, other_reports;

static void handler_count_overflow(int error, const char *message, const void *ptr, void *context)
{
    (void)ptr;
    (void)context;
    if (error == ERROR_OVERFLOW && strstr(message, "canary after the block") != NULL)
        canary_after_reports++;
    else if (error != ERROR_OVERFLOW)
        other_reports++;
}

static uint64_t rotate_right(uint64_t x, unsigned r) { return r == 0 ? x : (x >> r) | (x << (64 - r)); }

static void case_quarantine_reveals_no_secret(void)
{
    void *set = dlsym(RTLD_DEFAULT, "brisk_set_error_handler");
    if (set == NULL) {
        printf("set-up failed: brisk_set_error_handler not found (not preloaded?)\n");
        exit(5);
    }
    report_handler (*set_handler)(report_handler, void *);
    memcpy(&set_handler, &set, sizeof set_handler);
    char *x = must_malloc(SMALL);
    free(x);
    const volatile uint64_t *seen = hide(x);
    uint64_t words[2] = {seen[0], seen[1]};
    set_handler(handler_count_overflow, NULL);
    int tried = 0;
    for (int w = 0; w < 2; w++) {
        for (int with_address = 0; with_address < 2; with_address++) {
            for (unsigned r = 0; r < 64; r++) {
                uint64_t secret = rotate_right(words[w] ^ (with_address ? (uint64_t)(uintptr_t)x : 0), r);
                char *p = must_malloc(SMALL);
                size_t usable = malloc_usable_size(p);
                uintptr_t at = (uintptr_t)p + usable;
                uint64_t forged = (uint64_t)at ^ secret;
                memset(p, 'a', usable);
                memcpy(hide((char *)at), &forged, sizeof forged); /* the overflow */
                int before = canary_after_reports;
                free(p);
                tried++;
                if (canary_after_reports == before) {
                    set_handler(NULL, NULL);
                    printf("word %d%s rotated right by %u gave the secret\n", w, with_address ? " xor its address" : "", r);
                    broken("a canary forged from a quarantined block's words was not noticed");
                }
            }
        }
    }
    set_handler(NULL, NULL);
    if (other_reports != 0)
        broken("a report of another kind than an overflow");
    printf("ok: %d canaries forged from the words of a quarantined block, all reported\n", tried);
}

/* After a fork the child and the parent must not reuse freed blocks in
 * the same order: both start from the same quarantine, and a generator
 * left as it was would evict alike in both, so a child that shows its
 * order (a server's worker, say) would show the parent's next one. Each
 * side frees the same blocks and records which of them come back in
 * which order; the child sends its record through a pipe. */
enum { FORK_BLOCKS = 512 };

static void fork_reuse_order(char **blocks, int *order)
{
    for (int i = 0; i < FORK_BLOCKS; i++)
        free(blocks[i]);
    for (int k = 0; k < FORK_BLOCKS; k++) {
        char *q = must_malloc(64);
        order[k] = -1;
        for (int i = 0; i < FORK_BLOCKS; i++)
            if (blocks[i] == q)
                order[k] = i;
    }
}

static void case_reuse_randomized_fork(void)
{
    static char *blocks[FORK_BLOCKS];
    static int mine[FORK_BLOCKS], childs[FORK_BLOCKS];
    for (int i = 0; i < FORK_BLOCKS; i++)
        blocks[i] = must_malloc(64);
    free(must_malloc(1000)); /* the quarantine exists when the process forks */
    int fds[2];
    if (pipe(fds) != 0)
        exit(5);
    fflush(stdout);
    pid_t child = fork();
    if (child < 0)
        exit(5);
    if (child == 0) {
        fork_reuse_order(blocks, childs);
        ssize_t n = write(fds[1], childs, sizeof childs);
        _exit(n == (ssize_t)sizeof childs ? 0 : 1);
    }
    fork_reuse_order(blocks, mine);
    size_t got = 0;
    while (got < sizeof childs) {
        ssize_t n = read(fds[0], (char *)childs + got, sizeof childs - got);
        if (n <= 0)
            exit(5);
        got += (size_t)n;
    }
    int reused = 0;
    for (int k = 0; k < FORK_BLOCKS; k++)
        reused += mine[k] >= 0;
    if (reused < FORK_BLOCKS / 2) {
        printf("set-up failed: only %d of %d freed blocks came back\n", reused, FORK_BLOCKS);
        exit(5);
    }
    if (memcmp(mine, childs, sizeof mine) == 0)
        broken("a forked child reused freed blocks in the same order as its parent");
    printf("ok: parent and child reuse in different orders (%d blocks came back)\n", reused);
}

/* ---- a clean workload: hardening must not report valid programs ------- */

static void case_valid_workload(void)
{
    enum { SLOTS = 4096 };
    static char *slots[SLOTS];
    static size_t sizes[SLOTS];
    uint64_t state = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < 200000; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        size_t slot = (size_t)(state % SLOTS);
        size_t size = (size_t)((state >> 20) % 4) == 0 ? (size_t)((state >> 24) % 70000)
                                                        : (size_t)((state >> 24) % 600);
        if (slots[slot] != NULL) {
            for (size_t b = 0; b < sizes[slot]; b++)
                if ((unsigned char)slots[slot][b] != (unsigned char)(slot + b))
                    broken("a live block's contents changed");
            if ((state >> 40) % 3 == 0) {
                size_t usable = malloc_usable_size(slots[slot]);
                if (usable < sizes[slot])
                    broken("usable size below the request");
                char *r = realloc(slots[slot], size + 1);
                if (r == NULL)
                    exit(5);
                slots[slot] = r;
                size_t keep = sizes[slot] < size + 1 ? sizes[slot] : size + 1;
                for (size_t b = 0; b < keep; b++)
                    if ((unsigned char)r[b] != (unsigned char)(slot + b))
                        broken("realloc lost contents");
                sizes[slot] = size + 1;
                for (size_t b = 0; b < sizes[slot]; b++)
                    r[b] = (char)(slot + b);
                continue;
            }
            free(slots[slot]);
            slots[slot] = NULL;
        }
        if ((state >> 50) % 16 == 0) {
            void *a = NULL;
            if (posix_memalign(&a, (size_t)64 << ((state >> 54) % 7), size + 1) != 0)
                exit(5);
            slots[slot] = a;
        } else {
            slots[slot] = must_malloc(size + 1);
        }
        sizes[slot] = size + 1;
        for (size_t b = 0; b < sizes[slot]; b++)
            slots[slot][b] = (char)(slot + b);
    }
    for (size_t i = 0; i < SLOTS; i++)
        free(slots[i]);
    char *c = calloc(1000, 8);
    for (size_t b = 0; b < 8000; b++)
        if (c == NULL || c[b] != 0)
            broken("calloc returned non-zero bytes");
    free(c);
    printf("ok: clean workload ran\n");
}

/* Threads that free blocks and exit: their quarantines (under delay) are
 * emptied, the blocks in them freed as any (wiped under wipe), so later
 * allocations of the sizes around the threads' are handed out clean. Each
 * thread keeps a few blocks of one size alive, so its page is left to
 * other threads when it exits, and this thread adopts it. */
enum { EXIT_THREADS = 4, EXIT_KEPT = 8 };
static char *exit_kept[8][EXIT_THREADS * EXIT_KEPT];

static void *short_lived(void *arg)
{
    char **kept = arg;
    for (int i = 0; i < EXIT_KEPT; i++)
        kept[i] = must_malloc(520);
    for (int i = 0; i < 200; i++)
        free(must_malloc((size_t)(16 + i * 5)));
    return NULL;
}

/* A thread whose very first allocation is just under the largest page
 * block size: under the hardened parts the canary's extra bytes must not
 * turn it into a block of another kind behind the hardening's back. */
static void *first_alloc_near_page_max(void *arg)
{
    size_t size = (size_t)(uintptr_t)arg;
    unsigned char *p = arg == NULL ? NULL : (size & 1 ? calloc(1, size) : malloc(size));
    if (p == NULL)
        exit(5);
    memset(p, 0x5a, size);
    free(hide(p));
    return NULL;
}

static void case_thread_first_alloc_near_page_max(void)
{
    for (size_t size = 256 * 1024 - 16; size <= 256 * 1024; size++) {
        pthread_t t;
        if (pthread_create(&t, NULL, first_alloc_near_page_max, (void *)(uintptr_t)size) != 0)
            exit(5);
        pthread_join(t, NULL);
    }
    printf("ok: first allocations near the page-block limit ran clean\n");
}

static void case_threads_exit_clean(void)
{
    for (int round = 0; round < 8; round++) {
        pthread_t threads[EXIT_THREADS];
        for (int t = 0; t < EXIT_THREADS; t++)
            if (pthread_create(&threads[t], NULL, short_lived, &exit_kept[round][t * EXIT_KEPT]) != 0)
                exit(5);
        for (int t = 0; t < EXIT_THREADS; t++)
            pthread_join(threads[t], NULL);
    }
    /* Enough blocks of the sizes around the kept ones that this thread
     * runs out of its own pages and adopts the exited threads' ones. */
    enum { KEEP = 30000 };
    static char *kept[KEEP];
    for (size_t size = 512; size <= 544; size += 16) {
        for (int i = 0; i < KEEP; i++)
            kept[i] = must_malloc(size);
        for (int i = 0; i < KEEP; i++)
            free(kept[i]);
    }
    for (int round = 0; round < 8; round++)
        for (int i = 0; i < EXIT_THREADS * EXIT_KEPT; i++)
            free(exit_kept[round][i]);
    printf("ok: allocations after thread exits ran clean\n");
}

/* brisk_malloc_check, looked up at run time (this program is not linked
 * against brisk; under LD_PRELOAD the symbol is there). */
static int malloc_check(void)
{
    int (*check)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "brisk_malloc_check");
    if (check == NULL) {
        printf("set-up failed: brisk_malloc_check not found (not preloaded?)\n");
        exit(5);
    }
    return check();
}

/* After a workload the invariants hold, the hardened ones included (every
 * carved slot's canary intact under canary). */
static void case_check_after_workload(void)
{
    enum { SLOTS = 2048 };
    static char *slots[SLOTS];
    uint64_t state = 0x12345u;
    for (int i = 0; i < 100000; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        size_t slot = (size_t)(state % SLOTS);
        free(slots[slot]);
        size_t size = 1 + (size_t)((state >> 20) % 3000);
        slots[slot] = must_malloc(size);
        memset(slots[slot], 0x5a, size);
    }
    if (malloc_check() != 0)
        broken("brisk_malloc_check failed after a clean workload");
    for (size_t i = 0; i < SLOTS; i++)
        free(slots[i]);
    if (malloc_check() != 0)
        broken("brisk_malloc_check failed after freeing everything");
    printf("ok: invariants hold\n");
}

/* An overflow into the canary of a block that is never freed is still
 * found by the invariant check, which reads every carved slot's canary. */
static void case_check_finds_overflow(void)
{
    char *p = must_malloc(SMALL);
    char *q = hide(p);
    q[malloc_usable_size(p)] = (char)~q[malloc_usable_size(p)]; /* certain to differ from the canary byte */
    if (malloc_check() == 0)
        broken("brisk_malloc_check missed an overwritten canary");
    printf("ok: brisk_malloc_check reported the overwritten canary\n");
}

/* The invariant check finds a write into a cached large block. */
static void case_check_finds_large_write_after_free(void)
{
    unsigned char *p = must_malloc(LARGE);
    memset(p, 1, LARGE);
    free(p);
    if (malloc_check() != 0)
        broken("brisk_malloc_check failed with a cleanly freed large block");
    volatile unsigned char *v = hide(p);
    scribble((volatile char *)&v[7]);
    if (malloc_check() == 0)
        broken("brisk_malloc_check missed a write into a cached large block");
    printf("ok: brisk_malloc_check reported the write after free\n");
}

/* ---- hardened level: wipe, a page's slot carved again ------------------- *
 *
 * Pages of SMALL blocks (or MEDIUM ones) are emptied by freeing most of
 * RECYCLE_COUNT blocks; their slots go back to their segment and are
 * carved again for another class. A write after free into one of the
 * emptied blocks must be reported (naming that block), whether it
 * happened before its page emptied, after, or after the slot went back to
 * the OS; and with no write after free the other class's blocks must show
 * none of the old bytes. */

enum { RECYCLE_COUNT = 4000, RECYCLE_FREED = 3900, RECYCLE_TARGET = 101, RECYCLE_OFFSET = 20 };

typedef struct recycle_set {
    size_t size;        /* of the blocks whose pages empty */
    size_t count, freed; /* allocated; the first `freed` are freed */
    size_t other;       /* the size allocated afterwards, another class */
    size_t rounds;      /* blocks of `other` to allocate: enough to carve
                           every emptied slot again */
} recycle_set;

static const recycle_set recycle_small = {SMALL, RECYCLE_COUNT, RECYCLE_FREED, 64, 20000};
static const recycle_set recycle_medium = {MEDIUM, 200, 190, 40 * 1024, 300};

static char *recycle_blocks[RECYCLE_COUNT];

/* Under delay freed blocks wait in a quarantine of 64 and their pages
 * empty only when they leave it: enough frees of another size push every
 * one out (each stays with probability (63/64)^4096, about 1e-28). The
 * blocks freed are allocated beforehand (flush_prepare): allocating them
 * in between would carve the emptied slots. */
enum { FLUSH_BLOCKS = 4096 };
static char *flush_blocks[FLUSH_BLOCKS];

static void flush_prepare(void)
{
    for (int i = 0; i < FLUSH_BLOCKS; i++)
        flush_blocks[i] = must_malloc(16);
}

static void quarantine_flush(void)
{
    for (int i = 0; i < FLUSH_BLOCKS; i++)
        free(flush_blocks[i]);
}

/* Allocates the set's blocks (stdout's buffer first, so no printf
 * allocates between the frees and the checks). */
static void recycle_fill(const recycle_set *s)
{
    printf("blocks of %zu bytes, then of %zu\n", s->size, s->other);
    fflush(stdout);
    flush_prepare();
    for (size_t i = 0; i < s->count; i++)
        recycle_blocks[i] = must_malloc(s->size);
}

static void recycle_free(const recycle_set *s, size_t from, size_t to)
{
    for (size_t i = from; i < to && i < s->freed; i++)
        free(recycle_blocks[i]);
}

/* Allocates the other class's blocks over the emptied slots: a block
 * covering the byte written at `written` is handed out unreported. */
static _Noreturn void recycle_reuse(const recycle_set *s, const char *written, const char *what)
{
    for (size_t k = 0; k < s->rounds; k++) {
        char *q = must_malloc(s->other);
        if (q <= written && written < q + malloc_usable_size(q)) {
            printf("block %p covers the byte written at %p, reading %#x\n", (void *)q,
                   (const void *)written, (unsigned)(unsigned char)*written);
            unnoticed(what);
        }
    }
    unnoticed(what);
}

/* The audit's reproducer: the write lands after the page emptied; found
 * when its slot is carved again for the other class. */
static void recycled_write(const recycle_set *s)
{
    recycle_fill(s);
    recycle_free(s, 0, s->freed);
    quarantine_flush();
    char *p = recycle_blocks[RECYCLE_TARGET];
    char *q = hide(p);
    scribble(&q[RECYCLE_OFFSET]);
    target(p);
    recycle_reuse(s, q + RECYCLE_OFFSET, "write into a block of a page that emptied, slot carved again");
}

static void case_wipe_uaf_write_recycled_small(void) { recycled_write(&recycle_small); }
static void case_wipe_uaf_write_recycled_medium(void) { recycled_write(&recycle_medium); }

/* The write lands while the page still has live blocks; found when the
 * page empties. In a medium block, in its middle: the part malloc's
 * sample does not read, but the page's check does. */
static void page_emptied_write(const recycle_set *s, int middle)
{
    recycle_fill(s);
    char *p = recycle_blocks[RECYCLE_TARGET];
    size_t offset = middle ? malloc_usable_size(p) / 2 : RECYCLE_OFFSET;
    recycle_free(s, RECYCLE_TARGET, RECYCLE_TARGET + 1);
    char *q = hide(p);
    scribble(&q[offset]);
    target(p);
    recycle_free(s, 0, RECYCLE_TARGET);
    recycle_free(s, RECYCLE_TARGET + 1, s->freed);
    quarantine_flush();
    recycle_reuse(s, q + offset, "write into a freed block, then its page emptied");
}

static void case_wipe_uaf_write_page_emptied(void) { page_emptied_write(&recycle_small, 0); }
static void case_wipe_uaf_write_page_emptied_medium_middle(void) { page_emptied_write(&recycle_medium, 1); }

/* The slot went back to the OS (malloc_trim purges at once) before the
 * write: the write makes it resident again, holding the byte. */
static void case_wipe_uaf_write_returned(void)
{
    const recycle_set *s = &recycle_small;
    recycle_fill(s);
    recycle_free(s, 0, s->freed);
    quarantine_flush();
    malloc_trim(0);
    char *p = recycle_blocks[RECYCLE_TARGET];
    /* Or this case would test a slot still resident, as the one above. */
    size_t os_page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char resident = 1;
    if (mincore((void *)((uintptr_t)p & ~(uintptr_t)(os_page - 1)), 1, &resident) != 0 || (resident & 1))
        broken("malloc_trim did not return the emptied page's memory to the OS");
    char *q = hide(p);
    scribble(&q[RECYCLE_OFFSET]);
    target(p);
    recycle_reuse(s, q + RECYCLE_OFFSET, "write into a block of a page returned to the OS");
}

/* brisk_malloc_check finds the write in the free slot before any reuse. */
static void case_check_finds_recycled_write(void)
{
    const recycle_set *s = &recycle_small;
    recycle_fill(s);
    recycle_free(s, 0, s->freed);
    quarantine_flush();
    if (malloc_check() != 0)
        broken("brisk_malloc_check failed before the write");
    char *q = hide(recycle_blocks[RECYCLE_TARGET]);
    scribble(&q[RECYCLE_OFFSET]);
    if (malloc_check() == 0)
        broken("brisk_malloc_check missed a write into a free slot");
    printf("ok: brisk_malloc_check reported the write into a free slot\n");
}

/* No write after free: pages of one class filled with old bytes, emptied,
 * their slots carved for another class, in both directions and in both
 * page sizes. The new blocks must show no old byte, nothing may be
 * reported, the invariants (free slots read zero) must hold, and the
 * memory must really have been reused, or the test proves nothing. */
static void recycle_clean(size_t size, size_t other, size_t count)
{
    enum { MAX = 20000 };
    static char *blocks[MAX];
    if (count > MAX)
        count = MAX;
    uintptr_t low = UINTPTR_MAX, high = 0;
    flush_prepare();
    for (size_t i = 0; i < count; i++) {
        blocks[i] = must_malloc(size);
        memset(blocks[i], OLD_BYTE, malloc_usable_size(blocks[i]));
        if ((uintptr_t)blocks[i] < low)
            low = (uintptr_t)blocks[i];
        if ((uintptr_t)blocks[i] + size > high)
            high = (uintptr_t)blocks[i] + size;
    }
    for (size_t i = 0; i < count; i++)
        free(blocks[i]);
    quarantine_flush();
    if (malloc_check() != 0)
        broken("brisk_malloc_check failed after pages emptied");
    size_t reused = 0;
    size_t other_count = count * size / other;
    if (other_count > MAX)
        other_count = MAX;
    for (size_t i = 0; i < other_count; i++) {
        blocks[i] = must_malloc(other);
        size_t usable = malloc_usable_size(blocks[i]);
        if (shows_old_bytes((unsigned char *)blocks[i], usable))
            broken("a block carved from a recycled slot shows a previous owner's bytes");
        if ((uintptr_t)blocks[i] < high && (uintptr_t)blocks[i] + usable > low)
            reused++;
        memset(blocks[i], OLD_BYTE, usable);
    }
    if (reused == 0)
        broken("no block of the other class reused the emptied pages' memory");
    flush_prepare();
    for (size_t i = 0; i < other_count; i++)
        free(blocks[i]);
    quarantine_flush();
    if (malloc_check() != 0)
        broken("brisk_malloc_check failed after the other class's pages emptied");
    printf("%zu -> %zu: %zu of %zu blocks in recycled memory, no old bytes\n", size, other, reused,
           other_count);
}

static void case_wipe_recycle_no_old_bytes(void)
{
    recycle_clean(48, 64, 8000);
    recycle_clean(64, 48, 8000);
    recycle_clean(16, 1000, 20000);
    recycle_clean(1000, 24, 400);
    recycle_clean(MEDIUM, 40 * 1024, 200);
    recycle_clean(40 * 1024, 9000, 120);
    malloc_trim(0); /* free slots back to the OS: checked as carved again too */
    recycle_clean(48, 80, 8000);
    printf("ok: recycled slots showed no old bytes\n");
}

/* With an error handler that returns: the write found when its page
 * empties is reported once, from the free that emptied it, which still
 * frees; the write found when the slot is carved again is reported once,
 * and the malloc that carved returns NULL (small pages, then medium). Either way the memory is
 * zeroed: no block handed out afterwards holds the written byte, and the
 * invariants hold. */
typedef void (*error_handler)(int error, const char *message, const void *ptr, void *context);
enum { ERROR_USE_AFTER_FREE = 5 }; /* BRISK_ERROR_USE_AFTER_FREE in brisk.h */

/* Installs handler through the preloaded library's
 * brisk_set_error_handler (looked up: this program is not linked with
 * brisk). */
static void install_handler(error_handler handler)
{
    void *set = dlsym(RTLD_DEFAULT, "brisk_set_error_handler");
    if (set == NULL) {
        printf("set-up failed: brisk_set_error_handler not found (not preloaded?)\n");
        exit(5);
    }
    error_handler (*set_handler)(error_handler, void *);
    memcpy(&set_handler, &set, sizeof set_handler);
    set_handler(handler, NULL);
}

static int handler_reports;
static const void *handler_last;

static void handler_record(int error, const char *message, const void *ptr, void *context)
{
    (void)message;
    (void)context;
    if (error != ERROR_USE_AFTER_FREE)
        broken("a report of another kind than use after free");
    handler_reports++;
    handler_last = ptr;
}

/* Allocates the other class's blocks over the emptied slots; returns how
 * many mallocs returned NULL, and fails if a block shows the written byte. */
static size_t reuse_after_report(const recycle_set *s, const char *written)
{
    size_t failed = 0;
    for (size_t k = 0; k < s->rounds; k++) {
        char *q = malloc(s->other);
        if (q == NULL) {
            failed++;
            continue;
        }
        if (q <= written && written < q + malloc_usable_size(q) && *written != 0)
            broken("a block handed out after the report holds the byte written after free");
    }
    return failed;
}

static void case_wipe_recycled_handler_returns(void)
{
    install_handler(handler_record);
    const recycle_set *s = &recycle_small;

    /* Found when the page empties. */
    recycle_fill(s);
    char *p = recycle_blocks[RECYCLE_TARGET];
    recycle_free(s, RECYCLE_TARGET, RECYCLE_TARGET + 1);
    char *w = hide(p);
    scribble(&w[RECYCLE_OFFSET]);
    recycle_free(s, 0, RECYCLE_TARGET);
    recycle_free(s, RECYCLE_TARGET + 1, s->freed);
    quarantine_flush();
    if (handler_reports != 1 || handler_last != p)
        broken("the write found when its page emptied was not reported once, naming its block");
    if (reuse_after_report(s, w + RECYCLE_OFFSET) != 0)
        broken("a malloc failed after the page's report");
    if (malloc_check() != 0)
        broken("brisk_malloc_check failed after the page's report");

    /* Found when the slot is carved again: in medium pages, of which the
     * first part left none behind (its small pages still hold live
     * blocks, so the target's page might not empty). */
    handler_reports = 0;
    s = &recycle_medium;
    recycle_fill(s);
    p = recycle_blocks[RECYCLE_TARGET];
    recycle_free(s, 0, s->freed);
    quarantine_flush();
    w = hide(p);
    scribble(&w[RECYCLE_OFFSET]);
    size_t failed = reuse_after_report(s, w + RECYCLE_OFFSET);
    if (handler_reports != 1 || handler_last != p)
        broken("the write found when its slot was carved again was not reported once, naming its block");
    if (failed != 1)
        broken("the malloc that found the write did not fail, or others did");
    if (malloc_check() != 0)
        broken("brisk_malloc_check failed after the carving's report");
    install_handler(NULL);
    printf("ok: each write reported once, memory zeroed, invariants hold\n");
}

/* Two threads free the same large block at once, with a handler that
 * returns: one free frees it, the other is a double free and must be
 * reported, whichever way the race goes; never a crash. Run with
 * decay_ms=0, so that nothing is cached: the winning free unmaps the block
 * while the loser may already have found it in the segment map (a
 * reviewer's reproducer: the loser read the unmapped header and died of
 * SIGSEGV, in most runs of 20,000 rounds). */
enum { ERROR_DOUBLE_FREE = 2, RACE_ROUNDS = 20000 }; /* BRISK_ERROR_DOUBLE_FREE */
static void *volatile race_block;
static pthread_barrier_t race_start, race_done;
static int race_reports, race_other_reports;

static void handler_race(int error, const char *message, const void *ptr, void *context)
{
    (void)message;
    (void)ptr;
    (void)context;
    if (error == ERROR_DOUBLE_FREE)
        __atomic_fetch_add(&race_reports, 1, __ATOMIC_RELAXED);
    else
        __atomic_fetch_add(&race_other_reports, 1, __ATOMIC_RELAXED);
}

static void *race_partner(void *arg)
{
    (void)arg;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        pthread_barrier_wait(&race_start);
        free(race_block);
        pthread_barrier_wait(&race_done);
    }
    return NULL;
}

static void case_large_double_free_race(void)
{
    install_handler(handler_race);
    pthread_barrier_init(&race_start, NULL, 2);
    pthread_barrier_init(&race_done, NULL, 2);
    pthread_t partner;
    if (pthread_create(&partner, NULL, race_partner, NULL) != 0)
        broken("pthread_create failed");
    for (int i = 0; i < RACE_ROUNDS; i++) {
        race_block = malloc((size_t)300 << 10); /* run with decay_ms=0: not cached */
        if (race_block == NULL)
            broken("malloc(300 KiB) failed");
        pthread_barrier_wait(&race_start);
        free(race_block);
        pthread_barrier_wait(&race_done);
    }
    pthread_join(partner, NULL);
    if (race_reports != RACE_ROUNDS || race_other_reports != 0) {
        printf("double free reports %d of %d, other reports %d\n", race_reports, RACE_ROUNDS,
               race_other_reports);
        broken("a racing double free of a large block was not reported exactly once per round");
    }
    if (malloc_check() != 0)
        broken("brisk_malloc_check failed after the races");
    printf("ok: %d racing double frees, each reported once\n", race_reports);
}

/* ---- heap metadata integrity (issue 14, classes 1 to 3) ----------------- */

/* Class 1: a double free found behind a free-list link a write after free
 * broke. b is freed first, so it lies deepest on its page's lists, behind
 * blocks freed after it, whose links are then damaged (their low byte
 * changed: the usual write after free). Confirming the second free of b
 * by walking the lists, the walk met a damaged link before b, concluded
 * b was not free and freed it again, so the page's count went one too
 * low: the page was then given back with a block live and the block
 * handed out again to a malloc of another size. The second free must be
 * reported as a double free, naming b. (quarantine_flush moves blocks out
 * of the delay quarantine, so that the hardened level's lists hold them
 * too; the quarantine's marker would report b at once otherwise.) */
enum { BEHIND = 64 };

static void case_double_free_behind_bad_link(void)
{
    char *others[BEHIND];
    flush_prepare();
    char *b = must_malloc(SMALL);
    for (int i = 0; i < BEHIND; i++)
        others[i] = must_malloc(SMALL);
    free(b);
    quarantine_flush();
    flush_prepare();
    for (int i = 0; i < BEHIND; i++)
        free(others[i]);
    quarantine_flush();
    for (int i = 0; i < BEHIND; i++) {
        volatile unsigned char *link = hide(others[i]);
        link[0] = (unsigned char)(link[0] + 0x40);
    }
    target(b);
    free(hide(b));
    unnoticed("a double free behind a damaged free-list link");
}

/* Class 2: two threads free the same small block at the same moment, with
 * a handler that returns, many times over. Both pass the mark test before
 * either writes the mark, and the block goes on two lists at once, its
 * page's count one too low; its page was then given back with a block
 * live, or its lists left inconsistent. The two frees start together:
 * both threads spin on the round number (a barrier's wake-up would leave
 * them microseconds apart, far more than the moment the frees can overlap
 * in).
 *
 * double_free_race_small: the blocks belong to a thread that has exited,
 * so that both frees are cross-thread frees (the main thread allocates
 * nothing during the rounds, so it adopts nothing).
 * double_free_race_owner: the main thread (the owner) frees its block
 * against one other thread.
 * A round is reported at the free (the second free found the first's
 * mark) or later: when the block would be handed out a second time (its
 * mark gone: free list corrupted), when its page's cross-thread list is
 * taken (longer than its live blocks), or when the page would be given
 * back (its lists lack a block); under the hardened level also when the
 * owner's free leaves the quarantine (the other free's wipe changed its
 * marker: a use after free). Every report must be one of those; no
 * malloc may hand out a block twice (the blocks
 * handed out after the rounds are checked against each other); and for
 * cross-thread frees, whose lists stay whole, brisk_malloc_check must
 * pass after (the page gave up its lists where one was found
 * corrupted). */
enum { SMALL_RACE_ROUNDS = 20000 };
static char *small_race_blocks[SMALL_RACE_ROUNDS];
static int small_race_reports, small_race_other_reports;
static const char *volatile small_race_other_message;
static const void *volatile small_race_other_pointer;
static volatile int small_race_round, small_race_finished;

enum { ERROR_CORRUPTION = 3 }; /* BRISK_ERROR_CORRUPTION */

static void handler_small_race(int error, const char *message, const void *ptr, void *context)
{
    (void)context;
    /* A race both frees passed is found by what it leaves behind; under
     * wipe and delay also as the other free's wipe of a quarantined
     * block's marker. */
    if (error == ERROR_DOUBLE_FREE || error == ERROR_CORRUPTION || error == ERROR_USE_AFTER_FREE) {
        __atomic_fetch_add(&small_race_reports, 1, __ATOMIC_RELAXED);
    } else if (__atomic_fetch_add(&small_race_other_reports, 1, __ATOMIC_RELAXED) == 0) {
        small_race_other_message = message;
        small_race_other_pointer = ptr;
    }
}

static void *small_race_partner(void *arg)
{
    (void)arg;
    for (int i = 1; i <= SMALL_RACE_ROUNDS; i++) {
        while (__atomic_load_n(&small_race_round, __ATOMIC_ACQUIRE) != i)
            ;
        free(small_race_blocks[i - 1]);
        __atomic_store_n(&small_race_finished, i, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *small_race_allocate(void *arg)
{
    (void)arg;
    for (int i = 0; i < SMALL_RACE_ROUNDS; i++)
        small_race_blocks[i] = must_malloc(SMALL);
    return NULL;
}

/* owner_allocates: the main thread allocates each round's block (and
 * owns it); otherwise a thread that exits before the rounds does. */
static void small_race(int owner_allocates)
{
    install_handler(handler_small_race);
    pthread_t thread;
    if (!owner_allocates) {
        if (pthread_create(&thread, NULL, small_race_allocate, NULL) != 0)
            broken("pthread_create failed");
        pthread_join(thread, NULL);
    } else {
        small_race_allocate(NULL);
    }
    if (pthread_create(&thread, NULL, small_race_partner, NULL) != 0)
        broken("pthread_create failed");
    for (int i = 1; i <= SMALL_RACE_ROUNDS; i++) {
        __atomic_store_n(&small_race_round, i, __ATOMIC_RELEASE);
        free(small_race_blocks[i - 1]);
        while (__atomic_load_n(&small_race_finished, __ATOMIC_ACQUIRE) != i)
            ;
    }
    pthread_join(thread, NULL);
    /* Under delay the owner's free may have gone into the quarantine
     * before the other free took the block: reported when it leaves. */
    flush_prepare();
    quarantine_flush();
    /* The blocks come back: each must be handed out once. A malloc that
     * meets a block both frees passed reports it and returns NULL. */
    char **again = must_malloc(SMALL_RACE_ROUNDS * sizeof *again);
    int got = 0;
    for (int i = 0; i < SMALL_RACE_ROUNDS; i++) {
        char *q = malloc(SMALL);
        if (q != NULL)
            again[got++] = q;
    }
    qsort(again, (size_t)got, sizeof *again, compare_pointers);
    for (int i = 1; i < got; i++)
        if ((size_t)(again[i] - again[i - 1]) < SMALL)
            broken("malloc handed out a block twice after the races");
    if (small_race_other_reports != 0) {
        printf("other reports: %d, the first: %s (pointer %p)\n", small_race_other_reports,
               small_race_other_message, small_race_other_pointer);
        broken("a racing double free was reported as something else");
    }
    if (small_race_reports == 0)
        broken("no racing double free was reported");
    /* The owner's race can leave lists entangled (the other free rewrote
     * the block's link after the owner listed it) until a pop or a
     * collection finds it: what must hold then is only that no block is
     * handed out twice (above). */
    if (!owner_allocates && malloc_check() != 0)
        broken("brisk_malloc_check failed after the races");
    printf("ok: %d racing double frees, %d reports\n", SMALL_RACE_ROUNDS, small_race_reports);
}

static void case_double_free_race_small(void) { small_race(0); }
static void case_double_free_race_owner(void) { small_race(1); }

/* Class 3: one read of a freed block was enough to forge a link. The
 * free list's encoding was stored = rotl(next ^ key, 23) with one key per
 * page, and a free block's second word was the page's free mark: reading
 * the freed block x, whose next block (y, freed just before it) the
 * program knows, gives the key and the mark. The attack writes the mark
 * into its own live block l (with the encoding of the list's end as its
 * link) and into x's link the encoding of l: malloc then handed out x and
 * next l, live. Now the link mixes x's own address and a second secret:
 * the link forged that way is reported when x is popped. */
static void case_forge_link_from_one_read(void)
{
    char *y = must_malloc(SMALL);
    char *x = must_malloc(SMALL);
    char *l = must_malloc(SMALL);
    memset(l, 'L', SMALL);
    free(y);
    free(x); /* x's link names y */
    const uintptr_t *read = hide(x);
    uintptr_t stored = read[0], second = read[1];
    uintptr_t key = ((stored >> 23) | (stored << 41)) ^ (uintptr_t)y;
    uintptr_t forged = (((uintptr_t)l ^ key) << 23) | (((uintptr_t)l ^ key) >> 41);
    ((uintptr_t *)(void *)l)[0] = (key << 23) | (key >> 41); /* the end of the list */
    ((uintptr_t *)(void *)l)[1] = second;
    ((uintptr_t *)hide(x))[0] = forged;
    target(x);
    /* x is handed out once the blocks carved ahead of it are. */
    for (int i = 0; i < 10000; i++) {
        char *q = must_malloc(SMALL);
        if (q == l)
            broken("malloc handed out a live block through a link forged from one read");
    }
    unnoticed("a link forged from one read of a freed block");
}

/* ---- the case table --------------------------------------------------- */

static const security_case cases[] = {
    CASE(double_free_small),
    CASE(double_free_medium),
    CASE(double_free_large),
    CASE(double_free_huge),
    CASE(double_free_interleaved_small),
    CASE(double_free_interleaved_medium),
    CASE(double_free_interleaved_large),
    CASE(double_free_churn_small),
    CASE(double_free_churn_medium),
    CASE(double_free_cross_thread),
    CASE(realloc_freed),
    CASE(usable_size_freed),
    CASE(free_interior_small),
    CASE(free_interior_unaligned_small),
    CASE(free_interior_medium),
    CASE(free_interior_unaligned_medium),
    CASE(free_interior_large),
    CASE(free_interior_unaligned_large),
    CASE(free_interior_huge),
    CASE(free_interior_aligned_alloc),
    CASE(realloc_interior),
    CASE(usable_size_interior),
    CASE(free_stack),
    CASE(realloc_stack),
    CASE(usable_size_stack),
    CASE(free_global),
    CASE(free_wild),
    CASE(free_wild_low),
    CASE(free_wild_high),
    CASE(realloc_wild),
    CASE(usable_size_wild),
    CASE(free_foreign_mmap),
    CASE(free_foreign_mmap_aligned),
    CASE(free_foreign_mmap_in_cached_span),
    CASE(free_forged_header_small),
    CASE(free_forged_header_large),
    CASE(free_forged_header_stack),
    CASE(free_forged_region_copy),
    CASE(uaf_steer_small),
    CASE(uaf_steer_medium),
    CASE(uaf_partial_overwrite),
    CASE(uaf_write_mark_word),
    CASE(calloc_zeroes_usable_size),
    CASE(double_free_behind_bad_link),
    CASE(double_free_race_small),
    CASE(double_free_race_owner),
    CASE(forge_link_from_one_read),
    CASE(uaf_link_nudge_16),
    CASE(uaf_link_nudge_64),
    CASE(canary_overflow_1),
    CASE(canary_overflow_8),
    CASE(canary_overflow_1_odd),
    CASE(canary_overflow_8_512),
    CASE(canary_underflow),
    CASE(wipe_no_old_bytes),
    CASE(wipe_uaf_write_small),
    CASE(wipe_uaf_write_small_middle),
    CASE(wipe_uaf_write_medium),
    CASE(wipe_uaf_write_1k_middle),
    CASE(wipe_uaf_write_calloc_middle),
    CASE(wipe_uaf_write_calloc_middle_resident),
    CASE(wipe_large_read_after_free),
    CASE(wipe_large_read_after_unmap),
    CASE(wipe_large_calloc_realloc),
    CASE(wipe_large_uaf_write_first),
    CASE(wipe_large_uaf_write_last),
    CASE(wipe_large_uaf_write_calloc_middle),
    CASE(check_finds_large_write_after_free),
    CASE(guard_large_overflow),
    CASE(guard_large_underflow),
    CASE(guard_huge_overflow),
    CASE(guard_odd_size_overflow),
    CASE(guard_realloc),
    CASE(guard_reused_overflow),
    CASE(guard_reused_underflow),
    CASE(guard_reused_resized),
    CASE(reuse_delayed),
    CASE(reuse_delayed_large),
    CASE(reuse_randomized),
    CASE(reuse_order_child),
    CASE(reuse_order_large_child),
    CASE(reuse_randomized_large),
    CASE(reuse_delayed_cross_thread),
    CASE(quarantine_write_first_word),
    CASE(quarantine_write_second_word),
    CASE(quarantine_write_cross_thread),
    CASE(quarantine_reveals_no_secret),
    CASE(reuse_randomized_fork),
    CASE(valid_workload),
    CASE(threads_exit_clean),
    CASE(thread_first_alloc_near_page_max),
    CASE(check_after_workload),
    CASE(check_finds_overflow),
    CASE(wipe_uaf_write_recycled_small),
    CASE(wipe_uaf_write_recycled_medium),
    CASE(wipe_uaf_write_page_emptied),
    CASE(wipe_uaf_write_page_emptied_medium_middle),
    CASE(wipe_uaf_write_returned),
    CASE(check_finds_recycled_write),
    CASE(wipe_recycle_no_old_bytes),
    CASE(wipe_recycled_handler_returns),
    CASE(large_double_free_race),
};

int main(int argc, char **argv) { return case_main(cases, sizeof cases / sizeof *cases, argc, argv); }
