/*
 * The bump arena: the first allocator of the design notes, kept because it
 * is the fastest possible one when every block dies at the same time.
 *
 *   region start                                                region end
 *   | struct brisk_arena | block | pad | block | ...   |      unused       |
 *                        ^base                          ^base + offset
 *                        |<------------- capacity ------------------------>|
 *
 * Invariant: 0 <= offset <= capacity. Every block lies in [base, base +
 * offset); alloc only ever moves offset forward, reset and restore only
 * backward.
 */
#include "internal.h"

#include <errno.h>

struct brisk_arena {
    char *base;        /* first byte blocks may use, BRISK_ALIGNMENT aligned */
    size_t capacity;   /* bytes from base to the region's end */
    size_t offset;     /* bytes handed out so far */
    size_t map_size;   /* whole mapping, or 0 when the memory is the caller's */
};

#define ARENA_HEADER_SIZE \
    ((sizeof(struct brisk_arena) + BRISK_ALIGNMENT - 1) & ~(size_t)(BRISK_ALIGNMENT - 1))

/* Lays an arena over [mem, mem + size); mem is suitably aligned for the
 * struct. Returns NULL (EINVAL) when no aligned byte would be left. */
static brisk_arena *arena_init(void *mem, size_t size, size_t map_size)
{
    uintptr_t start = (uintptr_t)mem;
    uintptr_t header_end = align_up_ptr(start, _Alignof(struct brisk_arena));
    if (header_end - start > size || size - (header_end - start) < sizeof(struct brisk_arena)) {
        errno = EINVAL;
        return NULL;
    }
    uintptr_t base = align_up_ptr(header_end + sizeof(struct brisk_arena), BRISK_ALIGNMENT);
    if (base - start >= size) {
        errno = EINVAL;
        return NULL;
    }
    brisk_arena *arena = (brisk_arena *)header_end;
    arena->base = (char *)base;
    arena->capacity = size - (size_t)(base - start);
    arena->offset = 0;
    arena->map_size = map_size;
    return arena;
}

brisk_arena *brisk_arena_create(size_t capacity)
{
    if (capacity == 0) {
        errno = EINVAL;
        return NULL;
    }
    size_t map_size;
    if (capacity > SIZE_MAX - ARENA_HEADER_SIZE ||
        !align_up_checked(capacity + ARENA_HEADER_SIZE, os_page_size(), &map_size)) {
        errno = ENOMEM;
        return NULL;
    }
    void *mem = os_map(map_size);
    if (mem == NULL)
        return NULL;
    return arena_init(mem, map_size, map_size);
}

brisk_arena *brisk_arena_create_in(void *mem, size_t size)
{
    if (mem == NULL) {
        errno = EINVAL;
        return NULL;
    }
    return arena_init(mem, size, 0);
}

void brisk_arena_destroy(brisk_arena *arena)
{
    if (arena == NULL || arena->map_size == 0)
        return;
    /* The mapping starts at the arena itself: os_map returns page-aligned
     * memory, which already suits the struct. */
    os_unmap(arena, arena->map_size);
}

void *brisk_arena_alloc_aligned(brisk_arena *arena, size_t alignment, size_t size)
{
    if (!is_power_of_two(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment < BRISK_ALIGNMENT)
        alignment = BRISK_ALIGNMENT;
    if (size == 0)
        size = 1; /* a unique pointer for every call */

    uintptr_t top = (uintptr_t)arena->base + arena->offset;
    uintptr_t end = (uintptr_t)arena->base + arena->capacity;
    /* Padding up to the alignment, computed without forming an address
     * past the region (which could wrap). */
    size_t pad = (size_t)(-top & (alignment - 1));
    if (pad > end - top || size > end - top - pad) {
        errno = ENOMEM;
        return NULL;
    }
    uintptr_t start = top + pad;
    arena->offset = (size_t)(start + size - (uintptr_t)arena->base);
    return (void *)start;
}

void *brisk_arena_alloc(brisk_arena *arena, size_t size)
{
    return brisk_arena_alloc_aligned(arena, BRISK_ALIGNMENT, size);
}

void brisk_arena_reset(brisk_arena *arena)
{
    arena->offset = 0;
}

brisk_arena_mark brisk_arena_save(const brisk_arena *arena)
{
    brisk_arena_mark mark = {arena->offset};
    return mark;
}

int brisk_arena_restore(brisk_arena *arena, brisk_arena_mark mark)
{
    if (mark.offset > arena->offset) {
        errno = EINVAL;
        return -1;
    }
    arena->offset = mark.offset;
    return 0;
}

size_t brisk_arena_used(const brisk_arena *arena)
{
    return arena->offset;
}

size_t brisk_arena_capacity(const brisk_arena *arena)
{
    return arena->capacity;
}
