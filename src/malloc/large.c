/*
 * Large blocks (over 256 KiB, or aligned beyond what pages give): each is
 * its own mapping, starting at a 4 MiB boundary so that free finds and
 * validates it like a segment (see malloc/types.h):
 *
 *   H = 4 MiB aligned                       B = block               end
 *   +-------+------------------------------+------------------------+
 *   | guard | large_header at H+META_GUARD | the block (usable      |
 *   | NONE  | (the rest of `front`, or up  | bytes up to the        |
 *   |       | to the requested alignment)  | mapping's end)         |
 *   +-------+------------------------------+------------------------+
 *   (B - 1) rounded down to 4 MiB == H, always; B - H >= large_front().
 *
 * The guard stops an overflow from whatever lies below H. An underflow
 * from B reaches the header (it lies within a page of B), so nothing in
 * it is trusted unchecked: its fields are sealed with the process secret
 * (large_seal_of) and its live-list links are checked against their
 * neighbours before an unlink writes through them.
 *
 * Freed large blocks stay mapped in a cache (up to large_cache bytes) for
 * decay_ms, so a program that frees and reallocates big buffers in a loop
 * reuses them without new page faults; expired entries are unmapped.
 * Whether a mapping is live or cached is kept out of line too, in the
 * segment map (SEGMAP_LARGE, SEGMAP_LARGE_CACHED), changed under
 * global_lock: the sealed header says the same, but a copy of the live
 * header written back after the free would verify, and the map is what
 * free, realloc and malloc_usable_size believe.
 *
 * Hardened (docs/security.md):
 *   wipe   a block that goes into the cache is wiped at free (a block
 *          unmapped at free needs no wipe: its memory is gone, and a
 *          later mapping at the same address comes zeroed from the
 *          kernel). Taken from the cache, its first and last
 *          LARGE_WIPE_SAMPLE bytes are checked to be still zero before it
 *          is handed out (calloc: all of it), as page blocks over 1 KiB
 *          are.
 *   delay  a cached block is not reusable until a random number (1 to 4)
 *          of later large frees have happened, and among the reusable
 *          mappings that fit a request one is picked at random. The
 *          waiting blocks are in the cache, so they count against its
 *          budget and its slots: a block the budget evicts while it waits
 *          is unmapped, never reused.
 */
#include "malloc/internal.h"

#include <errno.h>

/* Freed large blocks kept mapped, in a small array so a lookup reads no
 * header (each would be a cache and TLB miss): newest last. */
#define LARGE_CACHE_SLOTS 64
typedef struct cached_large {
    large_header *hdr;
    size_t map_size;
    uint64_t freed_at_ms;
    uint64_t reusable_at;   /* reusable once large_free_count reaches this:
                               the count at its free, plus the delay */
    size_t usable;          /* its block's usable size: under guard, where
                               its trailing guard stands */
} cached_large;
static cached_large large_cache[LARGE_CACHE_SLOTS];
static size_t large_cache_count;
static size_t large_cache_total;
static uint64_t large_free_count; /* large blocks freed so far */
static uint64_t large_rng;       /* delay's draws (global_lock) */

/* Under delay, a freed large block waits LARGE_DELAY_MIN to
 * LARGE_DELAY_MIN + LARGE_DELAY_SPAN - 1 later large frees before it can
 * be reused (span a power of two). */
#define LARGE_DELAY_MIN 1u
#define LARGE_DELAY_SPAN 4u
/* What the wipe checks of a block taken from the cache by malloc: its
 * first and last bytes (harden.c's sample for blocks over 1 KiB). */
#define LARGE_WIPE_SAMPLE ((size_t)128)
static large_header *large_live;   /* live blocks */
static size_t large_live_total;
static size_t large_live_count;

/* Bytes from a mapping's base H to the first place a block can start:
 * the guard and the header, rounded up to whole pages (20 KiB with 4 KiB
 * pages, 32 KiB with 16 KiB pages). */
static size_t large_front(size_t page_bytes)
{
    return align_up_ptr(META_GUARD + sizeof(large_header), page_bytes);
}

/* The first accessible byte of a mapping: past the guard when it is
 * protected. Resizing the mapping in place (mremap) starts here, as mremap
 * cannot grow a range spanning the guard's separate mapping. */
static uintptr_t large_rw_start(const large_header *hdr)
{
    return large_base(hdr) + meta_guard_bytes;
}

/* The seal: every field free, realloc and the cache trust, and the
 * header's own address (so a header copied elsewhere does not verify),
 * mixed with the process secret. A program that cannot read the secret
 * cannot write a header that verifies; one changed field breaks it
 * (mix64 spreads every bit). Updated wherever large.c changes a field. */
static uint64_t large_seal_of(const large_header *hdr)
{
    uint64_t s = mix64((uint64_t)process_secret ^ (uint64_t)(uintptr_t)hdr);
    s = mix64(s ^ (((uint64_t)hdr->magic << 32) | hdr->cached));
    s = mix64(s ^ (uint64_t)hdr->block);
    s = mix64(s ^ (uint64_t)hdr->map_size);
    return mix64(s ^ (uint64_t)hdr->usable);
}

static void large_seal(large_header *hdr)
{
    hdr->seal = large_seal_of(hdr);
}

bool large_header_intact(const large_header *hdr)
{
    return hdr->magic == LARGE_MAGIC && hdr->seal == large_seal_of(hdr);
}

/* Whether x can be a large header: META_GUARD past a 4 MiB boundary the
 * segment map gives to a large block. A link naming anything else was
 * forged. */
static bool is_large_header(const large_header *x)
{
    uintptr_t at = (uintptr_t)x;
    return (at & SEGMENT_MASK) == META_GUARD && segmap_kind(at & ~(uintptr_t)SEGMENT_MASK) == SEGMAP_LARGE;
}

static void live_link(large_header *hdr)
{
    hdr->prev = NULL;
    hdr->next = large_live;
    if (large_live != NULL)
        large_live->prev = hdr;
    large_live = hdr;
    large_live_total += hdr->map_size;
    large_live_count++;
}

/* Takes hdr off the live list, global_lock held, after checking the
 * links it is about to write through: each neighbour must be a large
 * header that links back to hdr (the list head for the first). The links
 * are not sealed (neighbours change them), and the header lies within a
 * page of its block, where an underflow can rewrite them: unchecked, the
 * two writes below would store a value of the program's choice at an
 * address of its choice. False, with nothing written, when they do not
 * hold. */
static bool live_unlink(large_header *hdr)
{
    large_header *prev = hdr->prev, *next = hdr->next;
    if (prev == NULL ? large_live != hdr : !is_large_header(prev) || prev->next != hdr)
        return false;
    if (next != NULL && (!is_large_header(next) || next->prev != hdr))
        return false;
    if (prev != NULL)
        prev->next = next;
    else
        large_live = next;
    if (next != NULL)
        next->prev = prev;
    hdr->next = hdr->prev = NULL;
    return true;
}

size_t large_live_stats(size_t *count)
{
    *count = large_live_count;
    return large_live_total;
}

size_t large_cached_bytes(void)
{
    return large_cache_total;
}

static large_header *large_cache_remove(size_t index)
{
    large_header *hdr = large_cache[index].hdr;
    large_cache_total -= large_cache[index].map_size;
    large_cache_count--;
    memmove(&large_cache[index], &large_cache[index + 1],
            (large_cache_count - index) * sizeof large_cache[0]);
    return hdr;
}

/* Under delay, the address ranges of the last LARGE_HOLD_SLOTS large
 * mappings given up are held: their memory goes back to the kernel, but
 * the range stays reserved and inaccessible, so the next large mapping
 * cannot land on a block just freed (the kernel would otherwise hand the
 * same range straight back), and any access through a dangling pointer
 * faults at once. The oldest range is unmapped when a newer one needs its
 * slot. A FIFO ring, under global_lock. */
#define LARGE_HOLD_SLOTS 8
static struct held_range {
    uintptr_t base;
    size_t size;
} large_held[LARGE_HOLD_SLOTS];
static unsigned large_held_next;

/* Gives up the mapping [base, base + size): unmapped, or held (see
 * above) under delay. */
static void large_give_back(uintptr_t base, size_t size)
{
    if ((harden_flags & HARDEN_DELAY) && os_release_keep_range((void *)base, size) == 0) {
        global_lock_take();
        struct held_range oldest = large_held[large_held_next];
        large_held[large_held_next].base = base;
        large_held[large_held_next].size = size;
        large_held_next = (large_held_next + 1) % LARGE_HOLD_SLOTS;
        global_lock_drop();
        if (oldest.size != 0)
            os_unmap((void *)oldest.base, oldest.size);
        return;
    }
    os_unmap((void *)base, size);
}

/* Unmaps (or, under delay, holds) every mapping on the list (linked
 * through `next`). A header whose seal broke while it was cached (a write
 * after free reaching back from its block) is reported and its mapping
 * left alone: its size is not to be believed. */
static void large_unmap_list(large_header *victims)
{
    while (victims != NULL) {
        large_header *next = victims->next;
        if (!large_header_intact(victims)) {
            report_error(BRISK_ERROR_CORRUPTION, "large block header corrupted", (void *)victims->block);
            victims = next;
            continue;
        }
        size_t size = victims->map_size;
        large_give_back(large_base(victims), size);
        stats_note_mapped(size, false);
        verbose_note("unmapped a large block", size);
        victims = next;
    }
}

/* The cached mapping to reuse for `room_needed` bytes past the front,
 * global_lock held: the smallest that holds them, else the largest that
 * holds at least half (it is grown in place). Reusing resident memory
 * saves the page faults, which cost far more than the mremap that fits
 * the mapping. */
static large_header *large_cache_take(size_t room_needed, size_t usable)
{
    size_t front = large_front(os_page_size());
    size_t fit = SIZE_MAX, under = SIZE_MAX;
    /* Under guard, a mapping whose guard already stands at the end of
     * `usable` bytes (large_guarded_usable's classes) is taken first:
     * reusing it moves no guard. Under delay one of them at random. */
    if (harden_flags & HARDEN_GUARD) {
        size_t same[LARGE_CACHE_SLOTS];
        size_t same_count = 0;
        for (size_t i = 0; i < large_cache_count; i++)
            if (large_cache[i].usable == usable && large_cache[i].reusable_at <= large_free_count)
                same[same_count++] = i;
        if (same_count != 0) {
            size_t pick = same[0];
            if ((harden_flags & HARDEN_DELAY) && same_count > 1)
                pick = same[random_next(&large_rng) % same_count];
            return large_cache_remove(pick);
        }
    }
    /* Under delay: the reusable mappings that fit and are at most twice
     * the room asked for, of which one is picked at random (a wider
     * choice would refit mappings more often: each refit gives resident
     * pages back or faults new ones in). */
    size_t snug[LARGE_CACHE_SLOTS];
    size_t snug_count = 0;
    for (size_t i = 0; i < large_cache_count; i++) {
        if (large_cache[i].reusable_at > large_free_count)
            continue; /* still waiting (delay) */
        size_t room = large_cache[i].map_size - front;
        if (room >= room_needed) {
            if (fit == SIZE_MAX || large_cache[i].map_size < large_cache[fit].map_size)
                fit = i;
            if (room / 2 <= room_needed)
                snug[snug_count++] = i;
        } else if (room >= room_needed / 2) {
            if (under == SIZE_MAX || large_cache[i].map_size > large_cache[under].map_size)
                under = i;
        }
    }
    size_t pick = fit != SIZE_MAX ? fit : under;
    if ((harden_flags & HARDEN_DELAY) && snug_count > 1)
        pick = snug[random_next(&large_rng) % snug_count];
    return pick == SIZE_MAX ? NULL : large_cache_remove(pick);
}

/* Wipes the freed block of hdr (kept mapped in the cache) under wipe. */
static void large_wipe(const large_header *hdr)
{
    harden_wipe_span(hdr->block, hdr->block + hdr->usable);
}

/* Whether the wiped block of hdr, taken from the cache, still reads as
 * zero where malloc checks it: its first and last LARGE_WIPE_SAMPLE
 * bytes (usable is a whole number of pages). */
static bool large_still_wiped(const large_header *hdr)
{
    uintptr_t end = hdr->block + hdr->usable;
    return harden_span_zero(hdr->block, hdr->block + LARGE_WIPE_SAMPLE) &&
           harden_span_zero(end - LARGE_WIPE_SAMPLE, end);
}

/* A block taken from the cache under wipe was written after its free:
 * reported, then unmapped (never handed out). */
static BRISK_NOINLINE void *large_report_unwiped(large_header *hdr)
{
    report_error(BRISK_ERROR_USE_AFTER_FREE,
                 "use after free: a freed block was written to (found when handed out again)",
                 (void *)hdr->block);
    global_lock_take();
    segmap_set(large_base(hdr), SEGMAP_LARGE_FREED);
    global_lock_drop();
    hdr->next = NULL;
    large_unmap_list(hdr);
    errno = ENOMEM;
    return NULL;
}

/* Grows or shrinks hdr's mapping in place to new_map bytes from its base
 * (the caller updates map_size). Only the accessible part is remapped:
 * the guard is a mapping of its own, and mremap cannot grow a range that
 * spans two. */
static int large_remap(const large_header *hdr, size_t new_map)
{
    uintptr_t start = large_rw_start(hdr);
    size_t skipped = (size_t)(start - large_base(hdr));
    return os_remap_in_place((void *)start, hdr->map_size - skipped, new_map - skipped);
}

/* Fits a mapping taken from the cache to the request: grows it in place
 * when too small; when more than four times too big, shrinks it to twice
 * the request (shrinking gives resident pages back, which a later growth
 * would fault in again, so it is kept for gross misfits). False when it
 * cannot grow (the caller unmaps it and maps afresh). */
static bool large_fit_mapping(large_header *hdr, size_t room_needed)
{
    size_t front = large_front(os_page_size());
    size_t room = hdr->map_size - front;
    size_t want = front + room_needed;
    if (room >= room_needed && room / 4 <= room_needed)
        return true;
    if (room > room_needed)
        want = front + 2 * room_needed;
    if (large_remap(hdr, want) != 0)
        return false;
    if (want > hdr->map_size)
        stats_note_mapped(want - hdr->map_size, true);
    else
        stats_note_mapped(hdr->map_size - want, false);
    hdr->map_size = want;
    large_seal(hdr);
    return true;
}

/* Fits a cached guarded mapping to `usable` bytes (global_lock not
 * held). Its layout, from the base H, with g the guard size:
 *
 *   H   H+front  block = H+front+g    block+usable       H+map_size
 *   |...| guard  | the block            | guard | slack (RW) |
 *
 * The trailing guard moves to the new end of the block (the old one is
 * made accessible again, so the slack is always one accessible stretch
 * after the guard); the mapping grows in place when too small (mremap)
 * and gives back everything past the guard when more than four times too
 * big. Moving a guard is two mprotect calls, where mapping afresh would
 * fault every page in again. False when it cannot (the caller unmaps it
 * and maps afresh). */
static bool large_fit_guarded(large_header *hdr, size_t usable, size_t guard)
{
    uintptr_t base = large_base(hdr);
    uintptr_t start = base + large_front(os_page_size()) + guard;
    uintptr_t old_guard = start + hdr->usable;
    uintptr_t new_guard = start + usable;
    uintptr_t end = base + hdr->map_size;
    if (new_guard == old_guard)
        return true;
    if (os_protect_rw((void *)old_guard, guard) != 0)
        return false;
    if (new_guard + guard > end) {
        /* [start, end) is one accessible mapping again: grow it. */
        size_t grown = (size_t)(new_guard + guard - base);
        if (os_remap_in_place((void *)start, (size_t)(end - start), (size_t)(new_guard + guard - start)) != 0)
            return false;
        stats_note_mapped(grown - hdr->map_size, true);
        hdr->map_size = grown;
        large_seal(hdr);
    } else if ((size_t)(end - start) / 4 > usable) {
        size_t kept = (size_t)(new_guard + guard - base);
        if (os_unmap((void *)(new_guard + guard), (size_t)(end - new_guard - guard)) != 0)
            return false;
        stats_note_mapped(hdr->map_size - kept, false);
        hdr->map_size = kept;
        large_seal(hdr);
    }
    return os_protect_none((void *)new_guard, guard) == 0;
}

/* Under guard, usable sizes come in four classes per doubling (page
 * multiples): a cached mapping taken for a request of its own class has
 * its trailing guard in place already, so reuse makes no mprotect call
 * (a guard moves only when a mapping is refit to another class). The
 * rounding costs address space, at most a quarter more, not memory: the
 * pages past what the program touches are never made resident, and the
 * wipe and its checks read only resident pages. */
static size_t large_guarded_usable(size_t usable, size_t page_bytes)
{
    unsigned shift = 63u - (unsigned)__builtin_clzll((unsigned long long)usable);
    size_t step = (size_t)1 << (shift - 2);
    size_t rounded = (usable + step - 1) & ~(step - 1);
    return align_up_ptr(rounded, page_bytes);
}

void *large_alloc(size_t size, size_t alignment, bool zero)
{
    size_t page_bytes = os_page_size();
    size_t front = large_front(page_bytes);
    size_t align = alignment < BRISK_ALIGNMENT ? BRISK_ALIGNMENT : alignment;
    size_t usable;
    if (size > REQUEST_MAX || align > REQUEST_MAX || !align_up_checked(size == 0 ? 1 : size, page_bytes, &usable)) {
        errno = ENOMEM;
        return NULL;
    }
    /* Hardened: guard pages around the block (see the drawing below) and
     * wiping (a cached block was wiped at free: checked here). A
     * guarded mapping is cached like any other; reused, its trailing guard
     * moves to the new block's end (large_fit_guarded). The metadata
     * guard below the header is never touched here: it stays from the
     * mapping's creation to its unmapping. */
    size_t guard = (harden_flags & HARDEN_GUARD) ? page_bytes : 0;
    bool wipe = (harden_flags & HARDEN_WIPE) != 0;
    if (guard != 0)
        usable = large_guarded_usable(usable, page_bytes);
    if (align <= page_bytes) {
        size_t want = usable + 2 * guard; /* room after the front */
        global_lock_take();
        large_header *hdr = large_cache_take(want, usable);
        global_lock_drop();
        if (hdr != NULL && !large_header_intact(hdr)) {
            /* Written after its block was freed (reaching back from the
             * block): its sizes cannot be believed, so the mapping is left
             * as it is, out of every list. */
            report_error(BRISK_ERROR_CORRUPTION, "large block header corrupted", (void *)hdr->block);
            hdr = NULL;
        }
        /* The old block's extent, checked before the fit moves its end. */
        uintptr_t old_end = hdr == NULL ? 0 : large_base(hdr) + hdr->map_size;
        if (hdr != NULL && wipe && !large_still_wiped(hdr))
            return large_report_unwiped(hdr);
        bool fits = hdr == NULL ||
                    (guard != 0 ? large_fit_guarded(hdr, usable, guard) : large_fit_mapping(hdr, want));
        if (!fits) {
            global_lock_take();
            segmap_set(large_base(hdr), SEGMAP_LARGE_FREED);
            global_lock_drop();
            hdr->next = NULL;
            large_unmap_list(hdr);
            hdr = NULL;
        }
        if (hdr != NULL) {
            hdr->cached = 0;
            /* Unguarded, the block takes all the room; guarded, it ends at
             * its guard. */
            hdr->usable = guard != 0 ? usable : hdr->map_size - front;
            hdr->block = large_base(hdr) + front + guard;
            large_seal(hdr);
            if (wipe) {
                /* Wiped at free. calloc reads all of what was mapped
                 * before instead of zeroing it (what the mapping grew by
                 * is fresh from the kernel). */
                uintptr_t end = hdr->block + hdr->usable;
                if (zero && !harden_span_zero(hdr->block, end < old_end ? end : old_end))
                    return large_report_unwiped(hdr);
            } else if (zero) {
                /* The whole usable size, which malloc_usable_size hands
                 * the caller: what the mapping grew by past old_end is
                 * fresh from the kernel, zero already. */
                uintptr_t end = hdr->block + hdr->usable;
                memset((void *)hdr->block, 0, (end < old_end ? end : old_end) - hdr->block);
            }
            global_lock_take();
            live_link(hdr);
            segmap_set(large_base(hdr), SEGMAP_LARGE);
            global_lock_drop();
            return (void *)hdr->block;
        }
    }
    /* Map enough to place H on a 4 MiB boundary with the block aligned
     * after the front, then give back the slack at both ends. With guard
     * pages:
     *
     *   H       H + front      B - page      B                  B + usable
     *   | front |   ...        | guard |     | the block        | guard |
     */
    size_t raw_size = SEGMENT_SIZE + front + (align > page_bytes ? align : 0) + usable + 2 * guard;
    char *raw = os_map_accounted(raw_size);
    if (raw == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    uintptr_t first_h = align_up_ptr((uintptr_t)raw, SEGMENT_SIZE);
    uintptr_t b = align_up_ptr(first_h + front + guard, align);
    uintptr_t h = (b - 1) & ~(uintptr_t)SEGMENT_MASK;
    uintptr_t end = b + usable + guard;
    uintptr_t raw_end = (uintptr_t)raw + raw_size;
    if (h > (uintptr_t)raw)
        os_unmap(raw, h - (uintptr_t)raw);
    if (raw_end > end)
        os_unmap((void *)end, raw_end - end);
    /* The metadata guard first (one mprotect per new mapping; a failure,
     * the kernel's mapping count exhausted, fails the allocation rather
     * than leave the header unguarded), then the hardened ones. */
    if ((end >> ADDRESS_BITS) != 0 ||
        (meta_guard_bytes != 0 && os_protect_none((void *)h, meta_guard_bytes) != 0) ||
        (guard != 0 && (os_protect_none((void *)(b - guard), guard) != 0 ||
                        os_protect_none((void *)(b + usable), guard) != 0))) {
        os_unmap((void *)h, end - h);
        errno = ENOMEM;
        return NULL;
    }
    large_header *hdr = large_header_of_meta(h);
    hdr->magic = LARGE_MAGIC;
    hdr->cached = 0;
    hdr->block = b;
    hdr->map_size = end - h;
    hdr->usable = usable;
    large_seal(hdr);
    stats_note_mapped(hdr->map_size, true);
    verbose_note("mapped a large block", hdr->map_size);
    global_lock_take();
    live_link(hdr);
    segmap_set(h, SEGMAP_LARGE);
    global_lock_drop();
    return (void *)b; /* fresh mappings read as zero */
}

/* Frees the large block p whose region's header is hdr (the segment map
 * says SEGMAP_LARGE, or SEGMAP_LARGE_CACHED: a double free, or a pointer
 * into a cached block's span). Nothing in the header is believed before its seal
 * is checked, and no link is written through before it is checked: a
 * header the program overwrote is reported, and nothing is changed. */
void large_free(large_header *hdr, const void *p)
{
    size_t front = large_front(os_page_size());
    large_header *victims = NULL;
    global_lock_take();
    /* The caller read the segment map without the lock. Another thread
     * freeing the same block may have unmapped it since: the map says
     * LARGE_FREED (or, remapped, something else) before any unmap, under
     * this lock, so look again before reading the header, which may be
     * gone. */
    unsigned kind = segmap_kind(large_base(hdr));
    if (brisk_unlikely(kind == SEGMAP_LARGE_CACHED)) {
        /* In the cache, whatever its header says (a copy of the live one
         * may have been written back): mapped while the map says so, so
         * the header can be read, under the lock, to tell the block's own
         * start from any other pointer into its span. */
        bool own = large_header_intact(hdr) && hdr->block == (uintptr_t)p;
        global_lock_drop();
        if (own)
            report_error(BRISK_ERROR_DOUBLE_FREE, "double free (of a large block in the cache)", p);
        else
            report_error(BRISK_ERROR_INVALID_POINTER,
                         "free of a pointer that is not the start of a live block", p);
        return;
    }
    if (brisk_unlikely(kind != SEGMAP_LARGE)) {
        global_lock_drop();
        report_error(BRISK_ERROR_DOUBLE_FREE, "double free (of a large block already unmapped, or a pointer into memory mapped since at its address)", p);
        return;
    }
    bool intact = large_header_intact(hdr);
    if (!intact || hdr->cached || hdr->block != (uintptr_t)p) {
        /* Only the block's own start is a double free: any other pointer
         * into its 4 MiB span (the span past a smaller mapping may hold
         * someone else's) is not a block of ours. */
        bool cached = intact && hdr->cached != 0 && hdr->block == (uintptr_t)p;
        global_lock_drop();
        if (!intact)
            report_error(BRISK_ERROR_CORRUPTION, "large block header corrupted", p);
        else if (cached)
            report_error(BRISK_ERROR_DOUBLE_FREE, "double free", p);
        else
            report_error(BRISK_ERROR_INVALID_POINTER,
                         "free of a pointer that is not the start of a live block", p);
        return;
    }
    if (!live_unlink(hdr)) {
        global_lock_drop();
        report_error(BRISK_ERROR_CORRUPTION, "large block header corrupted (its list links)", p);
        return;
    }
    large_live_total -= hdr->map_size;
    large_live_count--;
    large_free_count++;
    size_t guard = (harden_flags & HARDEN_GUARD) ? os_page_size() : 0;
    bool cacheable = hdr->block == large_base(hdr) + front + guard &&
                     malloc_options.decay_ms != 0 && hdr->map_size <= malloc_options.large_cache;
    if (cacheable) {
        hdr->cached = 1; /* from here a second free is a double free */
        large_seal(hdr);
        segmap_set(large_base(hdr), SEGMAP_LARGE_CACHED);
        if (harden_flags & HARDEN_WIPE) {
            /* Wiped without the lock: the block is on neither list, and
             * `cached` already refuses it to free, realloc and
             * usable_size. (Unmapped blocks, below, need no wipe.) */
            global_lock_drop();
            large_wipe(hdr);
            global_lock_take();
        }
        uint64_t delay = 0;
        if (harden_flags & HARDEN_DELAY) {
            if (large_rng == 0)
                large_rng = (uintptr_t)mix64((uint64_t)process_secret ^ (uint64_t)(uintptr_t)hdr);
            delay = LARGE_DELAY_MIN + (random_next(&large_rng) & (LARGE_DELAY_SPAN - 1));
        }
        /* over budget or out of slots: the oldest go */
        while (large_cache_count > 0 &&
               (large_cache_count == LARGE_CACHE_SLOTS ||
                large_cache_total + hdr->map_size > malloc_options.large_cache)) {
            large_header *oldest = large_cache_remove(0);
            segmap_set(large_base(oldest), SEGMAP_LARGE_FREED);
            oldest->next = victims;
            victims = oldest;
        }
        large_cache[large_cache_count].hdr = hdr;
        large_cache[large_cache_count].map_size = hdr->map_size;
        large_cache[large_cache_count].freed_at_ms = os_now_ms();
        large_cache[large_cache_count].reusable_at = large_free_count + delay;
        large_cache[large_cache_count].usable = hdr->usable;
        large_cache_count++;
        large_cache_total += hdr->map_size;
    } else {
        segmap_set(large_base(hdr), SEGMAP_LARGE_FREED);
        hdr->next = NULL;
        victims = hdr;
    }
    global_lock_drop();
    large_unmap_list(victims);
}

bool large_cache_purge(uint64_t now, bool force)
{
    large_header *victims = NULL;
    global_lock_take();
    size_t i = 0;
    while (i < large_cache_count) {
        if (force || now - large_cache[i].freed_at_ms >= malloc_options.decay_ms) {
            large_header *hdr = large_cache_remove(i);
            segmap_set(large_base(hdr), SEGMAP_LARGE_FREED);
            hdr->next = victims;
            victims = hdr;
        } else {
            i++;
        }
    }
    global_lock_drop();
    bool any = victims != NULL;
    large_unmap_list(victims);
    return any;
}

/* realloc in place: any size that fits the mapping and keeps at least
 * half of it in use; otherwise grow or shrink the mapping where it is
 * (mremap without moving), which needs no copy. hdr was validated by the
 * caller (block_usable). */
bool large_try_resize(large_header *hdr, size_t size)
{
    if (harden_flags & HARDEN_GUARD)
        return false; /* a guarded block moves: its guard pages stay at its ends */
    size_t offset = hdr->block - large_base(hdr);
    size_t capacity = hdr->map_size - offset;
    if (size <= capacity && size >= capacity / 2)
        return true;
    if (size <= MEDIUM_SIZE_MAX)
        return false; /* small enough for pages: move it there */
    size_t page_bytes = os_page_size();
    size_t new_usable;
    if (size > REQUEST_MAX || !align_up_checked(size, page_bytes, &new_usable))
        return false;
    size_t new_map = offset + new_usable;
    if ((large_base(hdr) + new_map) >> ADDRESS_BITS != 0)
        return false;
    if (large_remap(hdr, new_map) != 0)
        return false;
    size_t old_map = hdr->map_size;
    /* The header changes under the lock: brisk_malloc_check reads live
     * headers with it held and must not see a map size the total lacks. */
    global_lock_take();
    large_live_total = large_live_total - old_map + new_map;
    hdr->map_size = new_map;
    hdr->usable = new_usable;
    large_seal(hdr);
    global_lock_drop();
    if (new_map > old_map)
        stats_note_mapped(new_map - old_map, true);
    else
        stats_note_mapped(old_map - new_map, false);
    return true;
}

/* Large-block invariants, global_lock held: every header lies META_GUARD
 * past its 4 MiB boundary with its magic and seal right, its block past
 * the front and inside its mapping with (block - 1) in the header's 4 MiB
 * slot, its map entry SEGMAP_LARGE (SEGMAP_LARGE_CACHED in the cache); the
 * live list's links agree both ways;
 * the totals agree with the lists; a cached block waits at most the
 * longest delay and, under wipe, still reads as zero where malloc will
 * check it (-4). */
int large_check(void)
{
    size_t live = 0, live_count = 0, cached = 0;
    size_t front = large_front(os_page_size());
    const large_header *prev = NULL;
    for (large_header *hdr = large_live; hdr != NULL; hdr = hdr->next) {
        uintptr_t base = large_base(hdr);
        if ((base & SEGMENT_MASK) != 0 || !large_header_intact(hdr) || hdr->cached != 0 ||
            hdr->prev != prev || meta_of((void *)hdr->block) != base ||
            hdr->block < base + front ||
            hdr->block + hdr->usable > base + hdr->map_size ||
            segment_map[base >> SEGMENT_SHIFT] != SEGMAP_LARGE)
            return -1;
        live += hdr->map_size;
        live_count++;
        prev = hdr;
    }
    for (size_t i = 0; i < large_cache_count; i++) {
        const large_header *hdr = large_cache[i].hdr;
        uintptr_t base = large_base(hdr);
        if ((base & SEGMENT_MASK) != 0 || !large_header_intact(hdr) || hdr->cached != 1 ||
            hdr->map_size != large_cache[i].map_size ||
            segment_map[base >> SEGMENT_SHIFT] != SEGMAP_LARGE_CACHED ||
            large_cache[i].reusable_at > large_free_count + LARGE_DELAY_MIN + LARGE_DELAY_SPAN - 1)
            return -2;
        /* Under wipe a cached block was wiped whole at its free. */
        if ((harden_flags & HARDEN_WIPE) && !large_still_wiped(hdr))
            return -4;
        cached += hdr->map_size;
    }
    if (live != large_live_total || live_count != large_live_count || cached != large_cache_total)
        return -3;
    return 0;
}
