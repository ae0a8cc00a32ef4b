/*
 * Call stacks for the recorder: unwound with libunwind's unw_backtrace
 * (which reads the .eh_frame unwind tables every object has, and caches
 * what it learned per thread), and interned in one lock-free table, so
 * each distinct stack is written once.
 *
 * Why not a frame-pointer walk: Debian and most distributions build
 * glibc, libstdc++ and their packages without frame pointers, so a walk
 * through a libc frame (qsort's comparator, a C++ allocation) or through
 * any program built with plain -O2 would follow a register holding data,
 * giving wrong stacks. The unwind tables are always there (C++ exceptions
 * need them). Why not libgcc's _Unwind_Backtrace: it interprets the
 * tables afresh for every frame of every call, many times slower than
 * libunwind with its cache (the measurement is in CHANGELOG.md).
 * libunwind allocates nothing through malloc (its caches are mmap'd) and
 * the recorder's guard passes through whatever a signal handler
 * allocates while it unwinds.
 *
 * The table: open addressing over 64-bit slots, each (hash << 32 | the
 * stack's offset in the frame arena). A new stack reserves room in the
 * arena (an atomic add), writes its frames, then publishes its slot with
 * a compare-and-swap; a thread losing the race to an identical stack
 * takes the winner's (its own reservation is left unused).
 */
#define _GNU_SOURCE
#include "recorder.h"

#include <link.h>
#include <string.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#define TABLE_SLOTS ((size_t)1 << 21)
#define TABLE_FULL (TABLE_SLOTS / 4 * 3)
#define ARENA_WORDS ((size_t)1 << 25)

static uint64_t *table;
static uint64_t *arena;
static size_t arena_used = 1; /* offset 0 is "no stack" */
static size_t table_used;
static int table_full;
static uintptr_t own_start, own_end; /* the recorder's code */

static int find_own_code(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    uintptr_t probe = (uintptr_t)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_X) == 0)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (probe >= start && probe < start + ph->p_memsz) {
            own_start = start;
            own_end = start + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

int stack_init(void)
{
    table = rec_map(TABLE_SLOTS * sizeof *table);
    arena = rec_map(ARENA_WORDS * sizeof *arena);
    if (table == NULL || arena == NULL)
        return -1;
    dl_iterate_phdr(find_own_code, (void *)(uintptr_t)&stack_init);
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    return 0;
}

void stack_reset(void)
{
    rec_zero_pages(table, TABLE_SLOTS * sizeof *table);
    arena_used = 1;
    table_used = 0;
    table_full = 0;
}

int stack_table_full(void) { return __atomic_load_n(&table_full, __ATOMIC_RELAXED); }

typedef struct unwind_state {
    uint64_t *frames;
    unsigned count;
} unwind_state;

static uint64_t hash_frames(const uint64_t *frames, unsigned count)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ count;
    for (unsigned i = 0; i < count; i++) {
        h ^= frames[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h;
}

static int same_stack(uint64_t offset, const uint64_t *frames, unsigned count)
{
    return arena[offset] == count && memcmp(&arena[offset + 1], frames, count * sizeof *frames) == 0;
}

uint64_t stack_capture(uint64_t *frames, unsigned *count, int *is_new)
{
    void *ips[TF_MAX_FRAMES + 8];
    int n = unw_backtrace(ips, TF_MAX_FRAMES + 8);
    unwind_state s = {frames, 0};
    for (int k = 0; k < n && s.count < TF_MAX_FRAMES; k++) {
        uintptr_t ip = (uintptr_t)ips[k];
        if (s.count == 0 && ip >= own_start && ip < own_end)
            continue;
        frames[s.count++] = ip;
    }
    *count = s.count;
    *is_new = 0;
    uint64_t h = hash_frames(frames, s.count);
    uint64_t tag = h >> 32;
    size_t i = (size_t)h & (TABLE_SLOTS - 1);
    uint64_t mine = 0; /* our reservation in the arena, once made */
    for (;;) {
        uint64_t slot = __atomic_load_n(&table[i], __ATOMIC_ACQUIRE);
        if (slot == 0) {
            if (mine == 0) {
                if (__atomic_load_n(&table_used, __ATOMIC_RELAXED) >= TABLE_FULL)
                    goto full;
                mine = __atomic_fetch_add(&arena_used, (size_t)s.count + 1, __ATOMIC_RELAXED);
                if (mine + s.count + 1 > ARENA_WORDS || mine > UINT32_MAX)
                    goto full;
                arena[mine] = s.count;
                memcpy(&arena[mine + 1], frames, s.count * sizeof *frames);
            }
            uint64_t value = tag << 32 | mine;
            if (__atomic_compare_exchange_n(&table[i], &slot, value, 0, __ATOMIC_RELEASE,
                                            __ATOMIC_ACQUIRE)) {
                __atomic_fetch_add(&table_used, 1, __ATOMIC_RELAXED);
                *is_new = 1;
                return mine;
            }
            /* Another thread took this slot: look at what it put there. */
        }
        if (slot >> 32 == tag && same_stack(slot & 0xffffffffu, frames, s.count))
            return slot & 0xffffffffu;
        i = (i + 1) & (TABLE_SLOTS - 1);
    }
full:
    __atomic_store_n(&table_full, 1, __ATOMIC_RELAXED);
    return 0;
}
