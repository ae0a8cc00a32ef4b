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
 *
 * Marks. A mark is valid until the arena is reset or moved back below the
 * mark's position. The positions of valid marks are the arena's open
 * levels (arena/arena.h): marks saved at the same position share one
 * level and its stamp. Restoring a mark closes the levels above it and
 * keeps its own; reset closes all. A mark whose level is in the ring is
 * checked exactly, in O(1): its slot must be within the ring's open part
 * and hold the same stamp and position. Everything else is misuse, except
 * a mark of a level the ring dropped when it overflowed, which can only be
 * checked to be this arena's and within the bounds kept on dropped levels.
 */
#include "arena/arena.h"

#include <errno.h>

#define ARENA_HEADER_SIZE \
    ((sizeof(struct brisk_arena) + BRISK_ALIGNMENT - 1) & ~(size_t)(BRISK_ALIGNMENT - 1))

/* Arenas created so far in this process: each one's serials start at a
 * base drawn from this count, a random-looking point of [1, 2^60), so two
 * arenas' ranges of serials do not meet in practice and a mark restored
 * into the wrong arena is recognised as foreign. No system call:
 * create_in promises none. */
static uint64_t arena_births;

/* A serial base in [1, 2^60): the counter's 2^60 values above it can never
 * overflow the stamp's 61 bits of serial. */
static uint64_t arena_serial_base(void)
{
    uint64_t birth = __atomic_fetch_add(&arena_births, 1, __ATOMIC_RELAXED);
    return (mix64(birth * 0x9e3779b97f4a7c15u + 0x632be59bd9b4e019u) >> 4) | 1u;
}

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
    arena->first_serial = arena_serial_base();
    arena->next_serial = arena->first_serial;
    arena->top = 0;
    arena->known = 0;
    arena->dropped = false;
    arena->dropped_stamp_end = 0;
    arena->dropped_position_max = 0;
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
    arena->known = 0; /* every level closes: every mark is stale */
    arena->dropped = false;
}

brisk_arena_mark brisk_arena_save(brisk_arena *arena)
{
    arena_level *top = &arena->levels[arena->top];
    brisk_arena_mark mark;
    mark.offset = arena->offset;
    /* Nothing allocated since the innermost level opened: this mark is the
     * same point, so it joins the level (and a save in a loop that
     * restores each time keeps using one level). top->position <=
     * offset always holds, so otherwise a new, higher level opens. */
    if (arena->known > 0 && top->position == arena->offset) {
        mark.stamp = top->stamp;
        return mark;
    }
    unsigned slot = (arena->top + 1u) & ARENA_SLOT_MASK;
    if (arena->known == ARENA_LEVELS) {
        /* The slot holds the lowest level: drop it, keeping bounds on it.
         * Levels are dropped oldest first, so the latest one dropped has
         * the largest stamp and position of the open dropped levels. */
        const arena_level *lowest = &arena->levels[slot];
        arena->dropped = true;
        arena->dropped_stamp_end = lowest->stamp + 1u;
        arena->dropped_position_max = lowest->position;
    } else {
        arena->known++;
    }
    uint64_t stamp = (arena->next_serial++ << ARENA_SLOT_BITS) | slot;
    arena->levels[slot].position = arena->offset;
    arena->levels[slot].stamp = stamp;
    arena->top = slot;
    mark.stamp = stamp;
    return mark;
}

/* The open levels the ring holds, lowest first: slot of the i-th. */
static unsigned ring_slot(const brisk_arena *arena, unsigned i)
{
    return (arena->top - arena->known + 1u + i) & ARENA_SLOT_MASK;
}

/* Reports why `mark` cannot be restored; returns -1 with errno EINVAL (the
 * arena unchanged) if the handler returns. */
static BRISK_NOINLINE int restore_refuse(brisk_arena *arena, const char *why)
{
    report_error(BRISK_ERROR_INVALID_ARGUMENT, why, arena);
    errno = EINVAL;
    return -1;
}

/* The slow path: the mark's level is not open in the ring. Either the
 * ring dropped it (accepted after the checks that remain possible), or the
 * mark is misuse. */
static BRISK_NOINLINE int restore_unringed(brisk_arena *arena, brisk_arena_mark mark)
{
    uint64_t stamp = mark.stamp;
    uint64_t serial = stamp >> ARENA_SLOT_BITS;
    unsigned slot = (unsigned)(stamp & ARENA_SLOT_MASK);
    if (serial < arena->first_serial || serial >= arena->next_serial)
        return restore_refuse(arena, "restore of an arena mark that this arena never saved "
                                     "(from another arena, or garbage)");
    if (((arena->top - slot) & ARENA_SLOT_MASK) < arena->known &&
        arena->levels[slot].stamp == stamp)
        return restore_refuse(arena, "restore of an arena mark whose offset was changed "
                                     "after it was saved");
    if (mark.offset > arena->offset)
        return restore_refuse(arena, "restore of a stale arena mark: it lies beyond the "
                                     "arena's current position");
    if (arena->dropped && stamp < arena->dropped_stamp_end &&
        mark.offset <= arena->dropped_position_max) {
        /* Possibly an open dropped level: every such level passes this,
         * and a closed one that passes cannot be told apart (the one limit
         * of the check, stated in brisk.h). Levels above the mark close:
         * the ring keeps at most its lowest level, when that is at the
         * mark's own position, and open dropped levels now lie at or below
         * it. */
        if (arena->known > 0) {
            unsigned lowest = ring_slot(arena, 0);
            if (arena->levels[lowest].position == mark.offset) {
                arena->top = lowest;
                arena->known = 1;
            } else {
                arena->known = 0;
            }
        }
        arena->dropped_position_max = mark.offset;
        arena->offset = mark.offset;
        return 0;
    }
    return restore_refuse(arena, "restore of a stale arena mark: the arena was reset, or "
                                 "restored to an earlier mark, since it was saved");
}

int brisk_arena_restore(brisk_arena *arena, brisk_arena_mark mark)
{
    uint64_t stamp = mark.stamp;
    unsigned slot = (unsigned)(stamp & ARENA_SLOT_MASK);
    /* How many ring slots the mark's level sits below the top: it is open
     * exactly when that is inside the ring's open part and the slot still
     * holds its stamp (stamps are never reused) and position. */
    unsigned below_top = (arena->top - slot) & ARENA_SLOT_MASK;
    const arena_level *level = &arena->levels[slot];
    if (brisk_likely(below_top < arena->known && level->stamp == stamp &&
                     level->position == mark.offset)) {
        arena->known -= below_top; /* the levels above close; this one stays */
        arena->top = slot;
        arena->offset = mark.offset;
        return 0;
    }
    return restore_unringed(arena, mark);
}

size_t brisk_arena_used(const brisk_arena *arena)
{
    return arena->offset;
}

size_t brisk_arena_capacity(const brisk_arena *arena)
{
    return arena->capacity;
}

/* Writes "brisk_arena_check: invariant <n>: <what> (at <address>)". */
static int arena_check_fail(unsigned invariant, const char *what, const void *where)
{
    return check_report("brisk_arena_check", invariant, what, where);
}

/* The invariants, numbered as in docs/design.md:
 *   1. Geometry: base is BRISK_ALIGNMENT aligned and past the struct,
 *      offset <= capacity.
 *   2. Ring bookkeeping: known <= ARENA_LEVELS, top < ARENA_LEVELS, and
 *      the serial counter lies in [first_serial, 2^61), first_serial != 0.
 *   3. Every ringed level's stamp names its own slot and a serial this
 *      arena issued.
 *   4. From the lowest ringed level to the top, stamps and positions
 *      strictly increase, and the top's position is <= offset (so every
 *      open level can be restored).
 *   5. When levels were dropped: the bounds on them name a stamp this arena
 *      issued and a position <= offset, and the ring's lowest level is not
 *      older nor lower than them. */
int brisk_arena_check(const brisk_arena *arena)
{
    if (arena == NULL)
        return arena_check_fail(1, "no arena", NULL);
    if (((uintptr_t)arena->base & (BRISK_ALIGNMENT - 1)) != 0 ||
        arena->base < (const char *)(arena + 1))
        return arena_check_fail(1, "base is misaligned or overlaps the arena's bookkeeping",
                                arena->base);
    if (arena->offset > arena->capacity)
        return arena_check_fail(1, "offset is past the capacity", arena);
    if (arena->known > ARENA_LEVELS || arena->top >= ARENA_LEVELS)
        return arena_check_fail(2, "the level ring's count or top is out of range", arena);
    if (arena->first_serial == 0 || arena->next_serial < arena->first_serial ||
        arena->next_serial >= ((uint64_t)1 << (64 - ARENA_SLOT_BITS)))
        return arena_check_fail(2, "the level serial counter is out of range", arena);
    for (unsigned i = 0; i < arena->known; i++) {
        unsigned slot = ring_slot(arena, i);
        const arena_level *level = &arena->levels[slot];
        uint64_t serial = level->stamp >> ARENA_SLOT_BITS;
        if ((level->stamp & ARENA_SLOT_MASK) != slot || serial < arena->first_serial ||
            serial >= arena->next_serial)
            return arena_check_fail(3, "a level's stamp names another slot or a serial "
                                       "this arena never issued", level);
        if (i > 0) {
            const arena_level *below = &arena->levels[ring_slot(arena, i - 1)];
            if (level->stamp <= below->stamp || level->position <= below->position)
                return arena_check_fail(4, "a level is not newer and higher than the one "
                                           "below it", level);
        }
    }
    if (arena->known > 0 && arena->levels[arena->top].position > arena->offset)
        return arena_check_fail(4, "the innermost level lies beyond the current position",
                                &arena->levels[arena->top]);
    if (arena->dropped) {
        uint64_t last_serial = (arena->dropped_stamp_end - 1u) >> ARENA_SLOT_BITS;
        if (arena->dropped_stamp_end == 0 || last_serial < arena->first_serial ||
            last_serial >= arena->next_serial || arena->dropped_position_max > arena->offset)
            return arena_check_fail(5, "the bounds on dropped levels are out of range", arena);
        if (arena->known > 0) {
            const arena_level *lowest = &arena->levels[ring_slot(arena, 0)];
            if (lowest->stamp < arena->dropped_stamp_end ||
                lowest->position < arena->dropped_position_max)
                return arena_check_fail(5, "a ringed level is older or lower than a dropped "
                                           "one", lowest);
        }
    }
    return 0;
}
