/*
 * Building and destroying region heaps: lays the bookkeeping and the first
 * (wilderness) chunk over a mapped region or a caller's buffer.
 */
#include "heap/heap.h"

#include <errno.h>
#include <string.h>

#define HEAP_STRUCT_SIZE ((sizeof(struct brisk_heap) + GRANULE - 1) & ~(GRANULE - 1))

/* Bytes of bookkeeping in front of the chunks. The list heads and the
 * granule maps are sized for the largest capacity the region could give
 * (the whole region), which overestimates by a few words at most. */
size_t heap_bookkeeping_size(size_t region_size, unsigned flags)
{
    size_t largest_chunk = region_size < CHUNK_MIN_SIZE ? CHUNK_MIN_SIZE : region_size & ~(GRANULE - 1);
    size_t classes = chunk_class_of(largest_chunk) + 1;
    size_t granules = region_size / GRANULE;
    /* One spare word at the end: block_map_window reads the word after a
     * granule's own. */
    size_t map_words = (granules + BLOCK_MAP_PER_WORD - 1) / BLOCK_MAP_PER_WORD + 1;
    size_t bytes = HEAP_STRUCT_SIZE + classes * sizeof(heap_chunk *) + map_words * sizeof(uint64_t);
    if (flags & BRISK_HEAP_DEFER_MERGE)
        bytes += DEFERRED_SIZE; /* at the end: heap_deferred_slots */
    return (bytes + GRANULE - 1) & ~(GRANULE - 1);
}

/* Bytes in front of the chunk area: the bookkeeping, and with a guard
 * (a mapped heap: `guard` is the page size) the bookkeeping padded to a
 * page and the inaccessible guard page after it. The chunk area then
 * starts on a page boundary, with the fence in its first 8 bytes. */
static size_t heap_front_size(size_t region_size, unsigned flags, size_t guard)
{
    size_t bookkeeping = heap_bookkeeping_size(region_size, flags);
    if (guard == 0)
        return bookkeeping;
    return ((bookkeeping + guard - 1) & ~(guard - 1)) + guard;
}

/* The fence's value (heap.h). With a secret drawn for the heap anyway
 * (BRISK_HEAP_CANARY) it is derived from it: an underflow can get past
 * it only by writing those 8 bytes exactly, which takes reading them. A
 * heap in a caller's buffer without the canary may make no system call,
 * so its fence is the heap's address and a process-wide count, mixed:
 * it stops an underflow that does not aim at it (a string, a fill),
 * not one forged by a program that knows the heap's address and this
 * code. A mapped heap has the guard page in front of its bookkeeping
 * besides. */
static uint64_t heap_fence_value(const brisk_heap *heap)
{
    static uint64_t count;
    uint64_t n = __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    uint64_t key = (heap->flags & BRISK_HEAP_CANARY) ? heap->canary_key : 0;
    return mix64(key ^ (uint64_t)(uintptr_t)heap->base ^ mix64(n * 0x9e3779b97f4a7c15ull));
}

/* Lays a heap over [mem, mem + size) (mem 16-aligned). NULL with EINVAL
 * when there is no room for the bookkeeping and one minimal chunk, ENOMEM
 * when the guard page of a mapped heap (map_base set) cannot be made. */
static brisk_heap *heap_init(void *mem, size_t size, unsigned flags, void *map_base, size_t map_size)
{
    size_t bookkeeping = heap_bookkeeping_size(size, flags);
    size_t guard = map_base != NULL ? os_page_size() : 0;
    size_t front = heap_front_size(size, flags, guard);
    /* Chunks from region + front + 8 (payloads 16-aligned; the fence in
     * the 8 bytes below) to the sentinel in the region's last 8 bytes. */
    size_t usable_end = size & ~(GRANULE - 1);
    if (front > usable_end || usable_end - front < CHUNK_HEADER_SIZE + CHUNK_MIN_SIZE + CHUNK_HEADER_SIZE) {
        errno = EINVAL;
        return NULL;
    }
    if (guard != 0 && os_protect_none((char *)mem + front - guard, guard) != 0) {
        errno = ENOMEM;
        return NULL;
    }
    char *region = mem;
    brisk_heap *heap = mem;
    /* A fresh mapping reads as zero already; touching its bookkeeping
     * pages here would only fault them in (4 MiB for a 256 MiB heap). */
    if (map_base == NULL)
        memset(heap, 0, bookkeeping);
    size_t classes = chunk_class_of(usable_end & ~(GRANULE - 1)) + 1;
    heap->heads = (heap_chunk **)(region + HEAP_STRUCT_SIZE);
    heap->block_map = (uint64_t *)(region + HEAP_STRUCT_SIZE + classes * sizeof(heap_chunk *));
    heap->base = region + front + CHUNK_HEADER_SIZE;
    if (flags & BRISK_HEAP_DEFER_MERGE)
        heap->deferred = region + bookkeeping - DEFERRED_SIZE;
    heap->end = region + usable_end - CHUNK_HEADER_SIZE;
    heap->top = heap->base;
    heap->class_count = chunk_class_of(heap_capacity(heap)) + 1;
    /* A request above the capacity fails in the search; the exact-class
     * path must not index list heads the heap does not have. */
    heap->exact_request_max = (uint32_t)(heap->class_count >= SMALL_CLASSES
                                             ? EXACT_REQUEST_MAX
                                             : chunk_class_floor(heap->class_count - 1) - CHUNK_HEADER_SIZE);
    heap->granule_count = heap_capacity(heap) / GRANULE;
    heap->flags = flags;
    if (flags & BRISK_HEAP_CANARY)
        heap->canary_key = heap_canary_key_new(heap);
    heap->map_base = map_base;
    heap->map_size = map_size;
    if ((flags & BRISK_HEAP_WIPE) && map_base == NULL) {
        /* A caller's buffer may hold anything; a wiped heap hands out
         * zeroed blocks, so it starts from zero. (A fresh mapping is
         * zero already.) */
        memset(heap->base, 0, heap_capacity(heap));
    }
    if ((flags & BRISK_HEAP_THREADSAFE) && pthread_mutex_init(&heap->lock, NULL) != 0) {
        errno = ENOMEM;
        return NULL;
    }
    heap->fence = heap_fence_value(heap);
    *(uint64_t *)(void *)(heap->base - CHUNK_HEADER_SIZE) = heap->fence;
    /* One free chunk, the wilderness, then the sentinel. */
    ((heap_chunk *)heap->top)->head = heap_capacity(heap) | CHUNK_PREV_USED;
    ((heap_chunk *)heap->end)->head = CHUNK_USED;
    return heap;
}

/* The smallest multiple of `unit` (a power of two, at least GRANULE)
 * whose region, with the bookkeeping it needs, holds `capacity` bytes of
 * chunks; 0 when none is representable. The bookkeeping grows with the
 * region (by about 1/64 of what is added, the block map), so the region
 * grows by what is still missing until nothing is: each round's shortfall
 * is about 1/64 of the last one's, so a few rounds whatever the capacity.
 * (Stepping one unit at a time took about capacity / 2^24 rounds: minutes
 * for a capacity of 2^60, before the mapping failed anyway.) Then it
 * steps back while a smaller region still holds the capacity, since the
 * last round may overshoot by a unit or two. */
static size_t region_size_for(size_t capacity, unsigned flags, size_t unit, size_t guard)
{
    /* The header in front of the first chunk and the sentinel's header
     * (heap_init: capacity = region - bookkeeping - 16 for a region that
     * is a whole number of granules, as every region here is). */
    size_t slack = 2 * CHUNK_HEADER_SIZE;
    size_t region;
    if (capacity > SIZE_MAX / 2 ||
        !align_up_checked(capacity + heap_front_size(capacity, flags, guard) + slack, unit, &region))
        return 0;
    for (;;) {
        size_t overhead = heap_front_size(region, flags, guard) + slack;
        size_t chunks = region > overhead ? region - overhead : 0;
        if (chunks >= capacity)
            break;
        if (region > SIZE_MAX - (capacity - chunks) ||
            !align_up_checked(region + (capacity - chunks), unit, &region))
            return 0;
    }
    while (region > unit) {
        size_t smaller = region - unit, overhead = heap_front_size(smaller, flags, guard) + slack;
        if (smaller < overhead || smaller - overhead < capacity)
            break;
        region = smaller;
    }
    return region;
}

size_t brisk_heap_region_size(size_t capacity, unsigned flags)
{
    if (flags & BRISK_HEAP_WIPE_CHECK)
        flags |= BRISK_HEAP_WIPE;
    if (capacity < CHUNK_MIN_SIZE)
        capacity = CHUNK_MIN_SIZE; /* one minimal chunk, as heap_init needs */
    return region_size_for(capacity, flags, GRANULE, 0);
}

static brisk_heap *heap_create_mapped(size_t capacity, unsigned flags)
{
    if (capacity == 0) {
        errno = EINVAL;
        return NULL;
    }
    size_t region = region_size_for(capacity, flags, os_page_size(), os_page_size());
    if (region == 0) {
        errno = ENOMEM;
        return NULL;
    }
    /* Between two inaccessible pages of its own: whatever is mapped next
     * to the region cannot overflow into its struct (at the start), and an
     * overflow past its last chunk faults instead of reaching a
     * neighbour. */
    size_t page = os_page_size();
    char *mem = os_map_guarded(region, page);
    if (mem == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    brisk_heap *heap = heap_init(mem, region, flags, mem - page, region + 2 * page);
    if (heap == NULL) {
        int saved = errno;
        os_unmap(mem - page, region + 2 * page);
        errno = saved;
    }
    return heap;
}

static brisk_heap *heap_create_in(void *mem, size_t size, unsigned flags)
{
    if (mem == NULL || ((uintptr_t)mem & (BRISK_ALIGNMENT - 1)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    return heap_init(mem, size, flags, NULL, 0);
}

brisk_heap *brisk_heap_create(size_t capacity)
{
    return heap_create_mapped(capacity, 0);
}

brisk_heap *brisk_heap_create_in(void *mem, size_t size)
{
    return heap_create_in(mem, size, 0);
}

brisk_heap *brisk_heap_create_ex(void *mem, size_t size, unsigned flags)
{
    if ((flags & ~(unsigned)(BRISK_HEAP_WIPE | BRISK_HEAP_THREADSAFE | BRISK_HEAP_CANARY |
                             BRISK_HEAP_WIPE_CHECK | BRISK_HEAP_DEFER_MERGE)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    /* Wiping and canaries act when a block is freed; a deferred block is
     * freed later, or never (it is handed straight back). */
    if ((flags & BRISK_HEAP_DEFER_MERGE) && (flags & BRISK_HEAP_HARDENED)) {
        errno = EINVAL;
        return NULL;
    }
    if (flags & BRISK_HEAP_WIPE_CHECK)
        flags |= BRISK_HEAP_WIPE; /* checking the wipe needs the wipe */
    if (mem == NULL)
        return heap_create_mapped(size, flags);
    return heap_create_in(mem, size, flags);
}

void brisk_heap_destroy(brisk_heap *heap)
{
    if (heap == NULL)
        return;
    if (heap->flags & BRISK_HEAP_THREADSAFE)
        pthread_mutex_destroy(&heap->lock);
    if (heap->map_base != NULL)
        os_unmap(heap->map_base, heap->map_size);
}
