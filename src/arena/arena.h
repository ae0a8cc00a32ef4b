/*
 * The bump arena's bookkeeping, shared by src/arena/arena.c and the tests that
 * damage it on purpose to see brisk_arena_check notice. Nothing here is
 * public; docs/design.md ("The bump arena") explains the scheme.
 *
 *   region start                                                region end
 *   | struct brisk_arena | block | pad | block | ...   |      unused       |
 *                        ^base                          ^base + offset
 *                        |<------------- capacity ------------------------>|
 *
 * Open levels. Every position at which a still-valid mark was saved is an
 * open level. Their positions strictly increase with their age, so they
 * form a stack; the arena keeps the innermost ARENA_LEVELS of them in a
 * ring, each with a stamp unique to that level:
 *
 *   levels[]   slot:  0     1     2     3     4     5     6     7
 *                    [L5 ] [L6 ] [L7 ] [ - ] [ - ] [L2 ] [L3 ] [L4 ]
 *                                  ^top                ^lowest
 *                    known = 6: L2 (oldest, lowest position) .. L7 (top)
 *
 * When a new level needs the slot of the lowest one, that level is dropped
 * from the ring (it may still be open). Dropped levels are older than, and
 * at or below, every level in the ring; dropped_stamp_end and
 * dropped_position_max bound them so that a mark of one can still be
 * checked against those bounds.
 *
 * A level's stamp is (serial << ARENA_SLOT_BITS) | slot: the serial comes
 * from a counter that only grows and starts at a base drawn per arena, so
 * stamps are never reused within an arena and do not overlap another
 * arena's; the low bits name the ring slot, so restore finds a mark's
 * level in O(1).
 */
#ifndef BRISK_ARENA_INTERNAL_H
#define BRISK_ARENA_INTERNAL_H

#include "common/internal.h"

#define ARENA_SLOT_BITS 3u
#define ARENA_LEVELS (1u << ARENA_SLOT_BITS) /* ring slots, a power of two */
#define ARENA_SLOT_MASK (ARENA_LEVELS - 1u)

typedef struct arena_level {
    size_t position; /* the offset every mark of this level holds */
    uint64_t stamp;  /* (serial << ARENA_SLOT_BITS) | its slot */
} arena_level;

struct brisk_arena {
    char *base;             /* first byte blocks may use, BRISK_ALIGNMENT aligned */
    size_t capacity;        /* bytes from base to the region's end */
    size_t offset;          /* bytes handed out so far */
    size_t map_size;        /* whole mapping, or 0 when the memory is the caller's */
    uint64_t first_serial;  /* serial of the first level this arena opened */
    uint64_t next_serial;   /* serial the next level gets */
    unsigned top;           /* slot of the innermost open level (when known > 0) */
    unsigned known;         /* open levels in the ring, 0..ARENA_LEVELS */
    bool dropped;           /* the ring overflowed since the last reset: open
                               levels may exist that it no longer holds */
    uint64_t dropped_stamp_end;    /* when dropped: every dropped level's
                                      stamp is below this */
    size_t dropped_position_max;   /* when dropped: no open dropped level
                                      lies above this position */
    arena_level levels[ARENA_LEVELS];
};

#endif /* BRISK_ARENA_INTERNAL_H */
