/* A tour of brisk's arena and region heap: each step makes a call and
 * prints what happened, including the heap's chunks as brisk_heap_walk
 * reports them. Build and run:  cmake --build build --target tour-run
 *
 * Addresses are printed as offsets from the heap's first chunk, so the
 * output is the same on every run. */
#include "brisk.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *first_chunk;

static int print_chunk(const brisk_heap_chunk *chunk, void *context)
{
    (void)context;
    long offset = (long)((const char *)chunk->address - first_chunk);
    if (chunk->used)
        printf("    @%-6ld %6zu bytes  used  (%zu usable, payload @%ld)\n", offset, chunk->size,
               chunk->usable, (long)((const char *)chunk->payload - first_chunk));
    else
        printf("    @%-6ld %6zu bytes  free\n", offset, chunk->size);
    return 0;
}

static int find_first(const brisk_heap_chunk *chunk, void *context)
{
    *(const char **)context = chunk->address;
    return 1;
}

static void show(const brisk_heap *heap, const char *what)
{
    printf("  %s\n", what);
    brisk_heap_walk(heap, print_chunk, NULL);
}

static void show_stats(const brisk_heap *heap)
{
    brisk_heap_stats s;
    brisk_heap_get_stats(heap, &s);
    printf("  stats: capacity %zu, allocated %zu, free %zu in %zu chunks, %zu live blocks,\n"
           "         largest request that fits %zu, high water %zu\n",
           s.capacity, s.allocated, s.free_bytes, s.free_chunks, s.used_chunks, s.largest_free,
           s.high_water);
}

static long off(const void *p) { return (long)((const char *)p - first_chunk); }

static void arena_tour(void)
{
    printf("== The bump arena: allocation is a pointer bump, freeing is all at once\n");
    brisk_arena *arena = brisk_arena_create(4096);
    if (arena == NULL)
        return;
    char *a = brisk_arena_alloc(arena, 5);
    char *b = brisk_arena_alloc(arena, 20);
    printf("  alloc(5) and alloc(20): blocks %ld bytes apart (16-byte alignment), %zu of %zu bytes used\n",
           (long)(b - a), brisk_arena_used(arena), brisk_arena_capacity(arena));
    brisk_arena_mark mark = brisk_arena_save(arena);
    brisk_arena_alloc(arena, 1000);
    printf("  saved a mark, alloc(1000): %zu bytes used\n", brisk_arena_used(arena));
    brisk_arena_restore(arena, mark);
    printf("  restored the mark: %zu bytes used; the 1000 bytes are free again\n", brisk_arena_used(arena));
    brisk_arena_reset(arena);
    printf("  reset: %zu bytes used\n\n", brisk_arena_used(arena));
    brisk_arena_destroy(arena);
}

static void heap_tour(void)
{
    printf("== The region heap: chunks with 8-byte headers, free chunks merge at once\n");
    brisk_heap *heap = brisk_heap_create(2048);
    if (heap == NULL)
        return;
    brisk_heap_walk(heap, find_first, &first_chunk);
    show(heap, "a new heap is one free chunk (the wilderness):");

    char *a = brisk_heap_alloc(heap, 100);
    char *b = brisk_heap_alloc(heap, 5);
    char *c = brisk_heap_alloc(heap, 200);
    printf("\n  alloc(100) -> @%ld, alloc(5) -> @%ld, alloc(200) -> @%ld\n", off(a), off(b), off(c));
    printf("  a 5-byte request takes a 32-byte chunk: 8 header bytes + 24 usable (usable_size %zu)\n",
           brisk_heap_usable_size(heap, b));
    show(heap, "the chunks:");

    brisk_heap_free(heap, a);
    printf("\n  free(@%ld): its neighbours are in use, so it just joins a free list\n", off(a));
    show(heap, "the chunks:");

    char *d = brisk_heap_alloc(heap, 40);
    printf("\n  alloc(40) -> @%ld: the free chunk is split, its front used, its rest still free\n", off(d));
    show(heap, "the chunks:");

    brisk_heap_free(heap, b);
    printf("\n  free(@%ld): merges with the free chunk on its left at once\n", off(b));
    show(heap, "the chunks:");

    brisk_heap_free(heap, d);
    printf("\n  free(@%ld): merges with the free chunk on its right too\n", off(d));
    show(heap, "the chunks:");

    char *e = brisk_heap_realloc(heap, c, 400);
    printf("\n  realloc(@%ld, 400) -> @%ld: grew in place into the wilderness\n", off(c), off(e));
    show_stats(heap);
    printf("  brisk_heap_check: %d (0: every invariant holds)\n", brisk_heap_check(heap));
    brisk_heap_free(heap, e);
    printf("\n");
    show(heap, "after freeing the last block everything is one free chunk again:");
    brisk_heap_destroy(heap);
}

int main(void)
{
    arena_tour();
    heap_tour();
    return 0;
}
