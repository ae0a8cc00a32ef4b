/*
 * brisk's region heap as a replay backend. Each replay gets a fresh heap
 * of the requested capacity (mapped; untouched pages cost nothing), and
 * leftovers go with the region when it is destroyed.
 */
#define _GNU_SOURCE
#include "trace.h"

#include "brisk.h"

#include <errno.h>
#include <string.h>

static void *heap_backend_create(size_t capacity, char *err, size_t err_size)
{
    brisk_heap *heap = brisk_heap_create(capacity);
    if (heap == NULL)
        snprintf(err, err_size, "brisk_heap_create(%zu) failed: %s", capacity, strerror(errno));
    return heap;
}

/* The same heap with BRISK_HEAP_DEFER_MERGE (replay --defer-merge). */
static void *heap_backend_create_deferred(size_t capacity, char *err, size_t err_size)
{
    brisk_heap *heap = brisk_heap_create_ex(NULL, capacity, BRISK_HEAP_DEFER_MERGE);
    if (heap == NULL)
        snprintf(err, err_size, "brisk_heap_create_ex(%zu, BRISK_HEAP_DEFER_MERGE) failed: %s", capacity,
                 strerror(errno));
    return heap;
}

/* The same heap with BRISK_HEAP_HARDENED (replay --hardened). */
static void *heap_backend_create_hardened(size_t capacity, char *err, size_t err_size)
{
    brisk_heap *heap = brisk_heap_create_ex(NULL, capacity, BRISK_HEAP_HARDENED);
    if (heap == NULL)
        snprintf(err, err_size, "brisk_heap_create_ex(%zu, BRISK_HEAP_HARDENED) failed: %s", capacity,
                 strerror(errno));
    return heap;
}

static void heap_backend_destroy(void *state) { brisk_heap_destroy(state); }

static void *heap_backend_alloc(void *state, size_t size, size_t alignment)
{
    if (alignment > BRISK_ALIGNMENT)
        return brisk_heap_alloc_aligned(state, alignment, size);
    return brisk_heap_alloc(state, size);
}

static void *heap_backend_realloc(void *state, void *ptr, size_t size)
{
    return brisk_heap_realloc(state, ptr, size);
}

static void heap_backend_free(void *state, void *ptr) { brisk_heap_free(state, ptr); }

static int heap_backend_check(void *state) { return brisk_heap_check(state); }

static uint64_t heap_backend_high_water(void *state)
{
    brisk_heap_stats stats;
    brisk_heap_get_stats(state, &stats);
    return stats.high_water;
}

typedef struct walk_context {
    chunk_sink sink;
    void *context;
    const char *first; /* the first chunk's address: offsets count from it */
} walk_context;

static int heap_backend_visit(const brisk_heap_chunk *chunk, void *context)
{
    walk_context *w = context;
    const char *address = chunk->address;
    if (w->first == NULL)
        w->first = address;
    uint32_t header = 0;
    if (chunk->used && chunk->payload != NULL)
        header = (uint32_t)((const char *)chunk->payload - address);
    w->sink(w->context, (uint64_t)(address - w->first), chunk->size, header, chunk->used,
            chunk->used ? chunk->payload : NULL);
    return 0;
}

static int heap_backend_walk(void *state, chunk_sink sink, void *context)
{
    walk_context w = {sink, context, NULL};
    return brisk_heap_walk(state, heap_backend_visit, &w);
}

/* A heap grown on demand to chunks reaching high_water would have needed
 * its bookkeeping too (brisk_heap_stats.high_water counts chunks only). */
static uint64_t heap_backend_footprint(uint64_t high_water)
{
    return brisk_heap_region_size((size_t)high_water, 0);
}

static uint64_t heap_backend_footprint_deferred(uint64_t high_water)
{
    return brisk_heap_region_size((size_t)high_water, BRISK_HEAP_DEFER_MERGE);
}

static uint64_t heap_backend_footprint_hardened(uint64_t high_water)
{
    return brisk_heap_region_size((size_t)high_water, BRISK_HEAP_HARDENED);
}

/* The brisk backends differ only in how the heap is created. */
#define HEAP_BACKEND(label, create_heap, footprint_of)                                                      \
    {                                                                                                        \
        .name = label, .create = create_heap, .destroy = heap_backend_destroy, .alloc = heap_backend_alloc, \
        .realloc = heap_backend_realloc, .free = heap_backend_free, .check = heap_backend_check,            \
        .high_water = heap_backend_high_water, .footprint = footprint_of, .walk = heap_backend_walk,        \
        .free_leftovers = 0,                                                                                 \
    }

const replay_allocator backend_brisk = HEAP_BACKEND("brisk", heap_backend_create, heap_backend_footprint);
const replay_allocator backend_brisk_deferred =
    HEAP_BACKEND("brisk (deferred merging)", heap_backend_create_deferred, heap_backend_footprint_deferred);
const replay_allocator backend_brisk_hardened =
    HEAP_BACKEND("brisk (hardened)", heap_backend_create_hardened, heap_backend_footprint_hardened);
