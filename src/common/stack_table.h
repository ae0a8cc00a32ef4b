/*
 * Interning call stacks: each distinct stack stored once, named by its
 * offset in a frame arena. Shared by the brisk-trace recorder
 * (tools/trace/recorder_stack.c) and libbrisk's sampled profiler
 * (src/malloc/profile.c), so both name stacks the same way and a fix to
 * one is a fix to both. Header-only and allocation-free: the caller maps
 * the table and the arena and hands them over.
 *
 * The table: open addressing over 64-bit slots, each (hash << 32 | the
 * stack's offset in the frame arena). A new stack reserves room in the
 * arena (an atomic add), writes its frames, then publishes its slot with
 * a compare-and-swap; a thread losing the race to an identical stack
 * takes the winner's (its own reservation is left unused). So the table
 * needs no lock (the recorder takes none); a caller holding its own lock
 * pays two uncontended atomics.
 *
 * An arena entry is: the frame count, the frames (innermost first), then
 * `extra` words the caller owns (zero when the stack is new): the
 * profiler keeps its per-site counters there, next to the frames.
 */
#ifndef BRISK_COMMON_STACK_TABLE_H
#define BRISK_COMMON_STACK_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct stack_table {
    uint64_t *slots;     /* slot_count slots, zero when empty */
    uint64_t *arena;     /* arena_words words, zero where never used */
    size_t slot_count;   /* a power of two */
    size_t arena_words;
    size_t extra;        /* caller's words after each stack's frames */
    size_t arena_used;   /* atomic; starts at 1: offset 0 is "no stack" */
    size_t slots_used;   /* atomic */
    int full;            /* atomic: a stack did not fit */
} stack_table;

/* Sets t up over mapped, zeroed memory. */
static inline void stack_table_init(stack_table *t, uint64_t *slots, size_t slot_count,
                                    uint64_t *arena, size_t arena_words, size_t extra)
{
    t->slots = slots;
    t->arena = arena;
    t->slot_count = slot_count;
    t->arena_words = arena_words;
    t->extra = extra;
    t->arena_used = 1;
    t->slots_used = 0;
    t->full = 0;
}

static inline uint64_t stack_table_hash(const uint64_t *frames, unsigned count)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ count;
    for (unsigned i = 0; i < count; i++) {
        h ^= frames[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h;
}

static inline int stack_table_same(const stack_table *t, uint64_t offset, const uint64_t *frames,
                                   unsigned count)
{
    return t->arena[offset] == count &&
           memcmp(&t->arena[offset + 1], frames, count * sizeof *frames) == 0;
}

/* The stack's offset in the arena (its id), interning it when new
 * (*is_new then set); 0 when the table or the arena is full, from then
 * on for every new stack. The table is kept at most three quarters full
 * so that probes stay short. */
static inline uint64_t stack_table_intern(stack_table *t, const uint64_t *frames, unsigned count,
                                          int *is_new)
{
    *is_new = 0;
    uint64_t h = stack_table_hash(frames, count);
    uint64_t tag = h >> 32;
    size_t mask = t->slot_count - 1;
    size_t i = (size_t)h & mask;
    size_t words = (size_t)count + 1 + t->extra;
    uint64_t mine = 0; /* our reservation in the arena, once made */
    for (;;) {
        uint64_t slot = __atomic_load_n(&t->slots[i], __ATOMIC_ACQUIRE);
        if (slot == 0) {
            if (mine == 0) {
                if (__atomic_load_n(&t->slots_used, __ATOMIC_RELAXED) >= t->slot_count / 4 * 3)
                    goto full;
                mine = __atomic_fetch_add(&t->arena_used, words, __ATOMIC_RELAXED);
                if (mine + words > t->arena_words || mine > UINT32_MAX)
                    goto full;
                t->arena[mine] = count;
                memcpy(&t->arena[mine + 1], frames, count * sizeof *frames);
            }
            uint64_t value = tag << 32 | mine;
            if (__atomic_compare_exchange_n(&t->slots[i], &slot, value, 0, __ATOMIC_RELEASE,
                                            __ATOMIC_ACQUIRE)) {
                __atomic_fetch_add(&t->slots_used, 1, __ATOMIC_RELAXED);
                *is_new = 1;
                return mine;
            }
            /* Another thread took this slot: look at what it put there. */
        }
        if (slot >> 32 == tag && stack_table_same(t, slot & 0xffffffffu, frames, count))
            return slot & 0xffffffffu;
        i = (i + 1) & mask;
    }
full:
    __atomic_store_n(&t->full, 1, __ATOMIC_RELAXED);
    return 0;
}

/* The extra words of the stack at offset. */
static inline uint64_t *stack_table_extra(const stack_table *t, uint64_t offset)
{
    return &t->arena[offset + 1 + t->arena[offset]];
}

#endif /* BRISK_COMMON_STACK_TABLE_H */
