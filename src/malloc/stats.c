/*
 * Statistics of the process allocator: counters, the summary printed at
 * exit (BRISK_OPTIONS=stats) or by malloc_stats, verbose notes and
 * mallinfo2. Everything is formatted by hand and written with
 * os_write_stderr: stdio may allocate, and this runs inside malloc.
 *
 * Request counters live in each thread heap (owner-only, so the fast path pays
 * one increment and no atomic) and are merged into the totals here when a
 * thread exits; a summary adds the live heaps' counters (read without
 * synchronisation: a summary is a snapshot).
 */
#define _GNU_SOURCE
#include "malloc/internal.h"

#include <malloc.h>

static uint64_t merged_class_requests[CLASS_COUNT];
static uint64_t merged_bytes_requested;
static uint64_t merged_large_requests;
static size_t mapped_now, mapped_peak;

void stats_merge_thread_heap(const thread_heap *h)
{
    for (unsigned i = 0; i < CLASS_COUNT; i++)
        merged_class_requests[i] += h->class_requests[i];
    merged_bytes_requested += h->large_bytes_requested;
    merged_large_requests += h->large_requests;
}

void stats_note_mapped(size_t bytes, bool mapped)
{
    if (mapped) {
        size_t now = __atomic_add_fetch(&mapped_now, bytes, __ATOMIC_RELAXED);
        size_t peak = __atomic_load_n(&mapped_peak, __ATOMIC_RELAXED);
        while (now > peak &&
               !__atomic_compare_exchange_n(&mapped_peak, &peak, now, true,
                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            ;
    } else {
        __atomic_sub_fetch(&mapped_now, bytes, __ATOMIC_RELAXED);
    }
}

/* A small line buffer flushed to stderr. */
typedef struct out_buffer {
    char text[512];
    size_t len;
} out_buffer;

static void out_flush(out_buffer *out)
{
    os_write_fd(malloc_options.stats_fd >= 0 ? malloc_options.stats_fd : 2, out->text, out->len);
    out->len = 0;
}

static void out_str(out_buffer *out, const char *s)
{
    size_t n = strlen(s);
    if (out->len + n > sizeof out->text)
        out_flush(out);
    if (n > sizeof out->text)
        n = sizeof out->text;
    memcpy(out->text + out->len, s, n);
    out->len += n;
}

/* value right-aligned in `width` columns */
static void out_num(out_buffer *out, uint64_t value, size_t width)
{
    char digits[24];
    size_t n = format_decimal(digits, value);
    if (out->len + n + width > sizeof out->text)
        out_flush(out);
    while (width > n) {
        out->text[out->len++] = ' ';
        width--;
    }
    memcpy(out->text + out->len, digits, n);
    out->len += n;
}

void verbose_note(const char *what, size_t bytes)
{
    if (!malloc_options.verbose)
        return;
    out_buffer out = {.len = 0};
    out_str(&out, "brisk: ");
    out_str(&out, what);
    out_str(&out, " (");
    out_num(&out, bytes, 0);
    out_str(&out, " bytes)\n");
    out_flush(&out);
}

void stats_print(void)
{
    uint64_t requests[CLASS_COUNT];
    uint32_t pages[CLASS_COUNT];
    uint64_t live_blocks[CLASS_COUNT];
    memset(pages, 0, sizeof pages);
    memset(live_blocks, 0, sizeof live_blocks);
    global_lock_take();
    uint64_t bytes = merged_bytes_requested;
    uint64_t large = merged_large_requests;
    for (unsigned i = 0; i < CLASS_COUNT; i++)
        requests[i] = merged_class_requests[i];
    for (thread_heap *h = thread_heap_list_first(); h != NULL; h = h->all_next) {
        for (unsigned i = 0; i < CLASS_COUNT; i++)
            requests[i] += h->class_requests[i];
        bytes += h->large_bytes_requested;
        large += h->large_requests;
    }
    for (segment *seg = segment_list_first(); seg != NULL; seg = seg->all_next) {
        for (unsigned i = 1; i < seg->slot_count; i++) {
            page *pg = &seg->pages[i];
            if (__atomic_load_n(&pg->in_use, __ATOMIC_RELAXED)) {
                pages[pg->size_class]++;
                live_blocks[pg->size_class] += pg->used;
            }
        }
    }
    size_t large_count;
    size_t large_bytes = large_live_stats(&large_count);
    size_t cached = large_cached_bytes();
    global_lock_drop();

    uint64_t total = large;
    for (unsigned i = 0; i < CLASS_COUNT; i++) {
        total += requests[i];
        bytes += requests[i] * class_block_size(i);
    }
    out_buffer out = {.len = 0};
    out_str(&out, "brisk: statistics\n  requests        ");
    out_num(&out, total, 14);
    out_str(&out, "\n  bytes handed out");
    out_num(&out, bytes, 14);
    out_str(&out, "\n  large requests  ");
    out_num(&out, large, 14);
    out_str(&out, "\n  mapped now      ");
    out_num(&out, __atomic_load_n(&mapped_now, __ATOMIC_RELAXED), 14);
    out_str(&out, " bytes\n  mapped peak     ");
    out_num(&out, __atomic_load_n(&mapped_peak, __ATOMIC_RELAXED), 14);
    out_str(&out, " bytes\n  peak resident   ");
    out_num(&out, os_peak_rss(), 14);
    out_str(&out, " bytes (whole process)\n  large live      ");
    out_num(&out, large_count, 14);
    out_str(&out, " blocks, ");
    out_num(&out, large_bytes, 0);
    out_str(&out, " bytes; cached ");
    out_num(&out, cached, 0);
    out_str(&out, " bytes\n  class  block size      requests  pages  live blocks\n");
    for (unsigned i = 0; i < CLASS_COUNT; i++) {
        if (requests[i] == 0 && pages[i] == 0)
            continue;
        out_num(&out, i, 7);
        out_num(&out, class_block_size(i), 12);
        out_num(&out, requests[i], 14);
        out_num(&out, pages[i], 7);
        out_num(&out, live_blocks[i], 13);
        out_str(&out, "\n");
    }
    out_flush(&out);
}

/* mallinfo2 from a walk of every segment: arena is what is mapped, the
 * in-use figure counts handed-out blocks at their block size. */
struct mallinfo2 mallinfo2(void)
{
    struct mallinfo2 info;
    memset(&info, 0, sizeof info);
    size_t in_use = 0, free_slots = 0, page_free = 0;
    global_lock_take();
    for (segment *seg = segment_list_first(); seg != NULL; seg = seg->all_next) {
        for (unsigned i = 1; i < seg->slot_count; i++) {
            page *pg = &seg->pages[i];
            if (__atomic_load_n(&pg->in_use, __ATOMIC_RELAXED)) {
                size_t used = pg->used;
                in_use += used * pg->block_size;
                page_free += ((size_t)1 << seg->page_shift) - used * pg->block_size;
            } else {
                free_slots++;
            }
        }
    }
    size_t large_count;
    size_t large_bytes = large_live_stats(&large_count);
    size_t cached = large_cached_bytes();
    global_lock_drop();
    info.arena = segment_mapped_bytes() + cached;
    info.ordblks = free_slots;
    info.hblks = large_count;
    info.hblkhd = large_bytes;
    info.uordblks = in_use;
    info.fordblks = page_free + cached;
    info.usmblks = __atomic_load_n(&mapped_peak, __ATOMIC_RELAXED);
    info.keepcost = 0;
    return info;
}

/* The old int-sized mallinfo: the same figures, clamped. */
static int clamp_int(size_t value)
{
    return value > (size_t)__INT_MAX__ ? __INT_MAX__ : (int)value;
}

struct mallinfo mallinfo(void)
{
    struct mallinfo2 wide = mallinfo2();
    struct mallinfo info;
    memset(&info, 0, sizeof info);
    info.arena = clamp_int(wide.arena);
    info.ordblks = clamp_int(wide.ordblks);
    info.hblks = clamp_int(wide.hblks);
    info.hblkhd = clamp_int(wide.hblkhd);
    info.usmblks = clamp_int(wide.usmblks);
    info.uordblks = clamp_int(wide.uordblks);
    info.fordblks = clamp_int(wide.fordblks);
    info.keepcost = clamp_int(wide.keepcost);
    return info;
}

/* glibc prints its statistics to stderr; so do we. */
void malloc_stats(void)
{
    if (tls_thread_heap == NULL)
        thread_heap_init_slow();
    stats_print();
}
