/*
 * The segment map: one byte per 4 MiB of the 48-bit address space saying
 * what of ours, if anything, starts there (SEGMAP_* in malloc/types.h).
 * free() validates every pointer against it before reading any metadata.
 * Reserved once at start-up (64 MiB of address space, touched only where
 * we own memory) and never unmapped.
 *
 * Between guards (META_GUARD each, or a page where pages are larger): an
 * entry saying SEGMAP_PAGES makes free believe a segment header at that
 * address, so a linear overflow from whatever is mapped right below or
 * above the map (a large block, grown there in place by realloc, say)
 * could mark the attacker's own span as a segment. With the guards
 * reserved with the map, nothing else can be mapped or grown next to it,
 * and such an overflow faults on the guard's first byte.
 */
#include "malloc/internal.h"

uint8_t *segment_map;
uintptr_t segmap_entries;

void segmap_init(void)
{
    segment_map = os_map_guarded(SEGMAP_ENTRIES, metadata_guard_size());
    if (segment_map == NULL) {
        static const char msg[] = "brisk: cannot reserve the segment map\n";
        os_write_stderr(msg, sizeof msg - 1);
        os_abort();
    }
    /* After the map: a free that sees the entries sees the map. */
    __atomic_store_n(&segmap_entries, SEGMAP_ENTRIES, __ATOMIC_RELEASE);
}

void segmap_set(uintptr_t base, uint8_t kind)
{
    __atomic_store_n(&segment_map[base >> SEGMENT_SHIFT], kind, __ATOMIC_RELAXED);
}
