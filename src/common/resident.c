/*
 * Residency: which pages of a span of private anonymous memory can hold
 * data. Such a page that is not resident reads zero, as long as the
 * machine has no swap: the kernel has not given it memory since it was
 * mapped, or took that memory back (os_decommit). So a wipe of a freed
 * span, and the check that it is still zero, need only its resident
 * pages, which are those a program (or a write after free) touched: their
 * cost follows what was touched, not the span's size. Reading the other
 * pages would map the kernel's zero page into each, a page fault apiece.
 * With swap a page swapped out is not resident and still holds data:
 * then, and when mincore fails, the whole span is visited.
 *
 * Only for memory the library mapped itself (segments, large blocks,
 * mapped region heaps): a caller's buffer may be a file or shared mapping,
 * whose pages that are not resident hold data.
 */
#include "common/internal.h"

enum { RESIDENCY_UNKNOWN, RESIDENCY_TELLS_ZERO, RESIDENCY_SAYS_NOTHING };
static int residency_state;

/* Pages per mincore call (its answer lives on the stack): 4 MiB of 4 KiB
 * pages, so the wipe of a large block up to 4 MiB asks once. */
#define RESIDENCY_BATCH 1024u

static bool residency_tells_zero(void)
{
    int state = __atomic_load_n(&residency_state, __ATOMIC_RELAXED);
    if (brisk_unlikely(state == RESIDENCY_UNKNOWN)) {
        state = os_swap_configured() == 0 ? RESIDENCY_TELLS_ZERO : RESIDENCY_SAYS_NOTHING;
        __atomic_store_n(&residency_state, state, __ATOMIC_RELAXED);
    }
    return state == RESIDENCY_TELLS_ZERO;
}

bool resident_runs(uintptr_t from, uintptr_t to, resident_visit visit, void *context)
{
    if (!residency_tells_zero())
        return visit(from, to, context);
    size_t page_bytes = os_page_size();
    uintptr_t at = from & ~(uintptr_t)(page_bytes - 1);
    unsigned char resident[RESIDENCY_BATCH];
    while (at < to) {
        size_t pages = (to - at + page_bytes - 1) / page_bytes;
        if (pages > RESIDENCY_BATCH)
            pages = RESIDENCY_BATCH;
        if (os_resident((void *)at, pages * page_bytes, resident) != 0)
            return visit(at < from ? from : at, to, context);
        for (size_t i = 0; i < pages;) {
            if (!(resident[i] & 1)) {
                i++;
                continue;
            }
            size_t j = i + 1;
            while (j < pages && (resident[j] & 1))
                j++;
            uintptr_t run_from = at + i * page_bytes, run_to = at + j * page_bytes;
            if (!visit(run_from < from ? from : run_from, run_to > to ? to : run_to, context))
                return false;
            i = j;
        }
        at += pages * page_bytes;
    }
    return true;
}
