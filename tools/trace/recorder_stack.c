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
 * The table is src/common/stack_table.h, shared with libbrisk's sampled
 * profiler: lock-free, so threads never wait for one another here.
 */
#define _GNU_SOURCE
#include "recorder.h"

#include <link.h>
#include <string.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "common/stack_table.h"

#define TABLE_SLOTS ((size_t)1 << 21)
#define ARENA_WORDS ((size_t)1 << 25)

static stack_table stacks;
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
    uint64_t *table = rec_map(TABLE_SLOTS * sizeof *table);
    uint64_t *arena = rec_map(ARENA_WORDS * sizeof *arena);
    if (table == NULL || arena == NULL)
        return -1;
    stack_table_init(&stacks, table, TABLE_SLOTS, arena, ARENA_WORDS, 0);
    dl_iterate_phdr(find_own_code, (void *)(uintptr_t)&stack_init);
    unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
    return 0;
}

void stack_reset(void)
{
    rec_zero_pages(stacks.slots, TABLE_SLOTS * sizeof *stacks.slots);
    stack_table_init(&stacks, stacks.slots, TABLE_SLOTS, stacks.arena, ARENA_WORDS, 0);
}

int stack_table_full(void) { return __atomic_load_n(&stacks.full, __ATOMIC_RELAXED); }

typedef struct unwind_state {
    uint64_t *frames;
    unsigned count;
} unwind_state;

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
    return stack_table_intern(&stacks, frames, s.count, is_new);
}
