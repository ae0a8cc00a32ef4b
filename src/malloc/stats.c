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

#include <errno.h>
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

/* One snapshot of everything the summary and brisk_malloc_get_stats
 * report. */
typedef struct stats_snapshot {
    uint64_t requests[CLASS_COUNT];
    uint32_t pages[CLASS_COUNT];
    uint64_t live_blocks[CLASS_COUNT];
    uint64_t total, bytes, large;
    size_t large_count, large_bytes, cached;
    uint64_t segments, threads_live, threads_exited;
    abandon_stats abandon;
} stats_snapshot;

static void stats_take(stats_snapshot *st)
{
    memset(st, 0, sizeof *st);
    global_lock_take();
    st->bytes = merged_bytes_requested;
    st->large = merged_large_requests;
    for (unsigned i = 0; i < CLASS_COUNT; i++)
        st->requests[i] = merged_class_requests[i];
    for (thread_heap *h = thread_heap_list_first(); h != NULL; h = h->all_next) {
        for (unsigned i = 0; i < CLASS_COUNT; i++)
            st->requests[i] += h->class_requests[i];
        st->bytes += h->large_bytes_requested;
        st->large += h->large_requests;
        st->threads_live++;
    }
    st->threads_exited = thread_heap_exited_count();
    for (segment *seg = segment_list_first(); seg != NULL; seg = seg->all_next) {
        st->segments++;
        if (seg->fork_orphan)
            continue; /* not trusted until rebuilt (segment.c) */
        for (unsigned i = 1; i < seg->slot_count; i++) {
            page *pg = &seg->pages[i];
            if (__atomic_load_n(&pg->in_use, __ATOMIC_RELAXED)) {
                st->pages[pg->size_class]++;
                st->live_blocks[pg->size_class] += pg->used;
            }
        }
    }
    st->large_bytes = large_live_stats(&st->large_count);
    st->cached = large_cached_bytes();
    segment_abandon_stats(&st->abandon);
    global_lock_drop();
    st->total = st->large;
    for (unsigned i = 0; i < CLASS_COUNT; i++) {
        st->total += st->requests[i];
        st->bytes += st->requests[i] * class_block_size(i);
    }
}

int brisk_malloc_get_stats(struct brisk_malloc_stats *out, size_t size)
{
    if (out == NULL || size < sizeof(unsigned long long) || size % sizeof(unsigned long long) != 0) {
        errno = EINVAL;
        return -1;
    }
    stats_snapshot st;
    stats_take(&st);
    brisk_malloc_stats all;
    memset(&all, 0, sizeof all);
    all.size = size < sizeof all ? size : sizeof all;
    all.requests = st.total;
    all.large_requests = st.large;
    all.mapped_bytes = __atomic_load_n(&mapped_now, __ATOMIC_RELAXED);
    all.mapped_peak_bytes = __atomic_load_n(&mapped_peak, __ATOMIC_RELAXED);
    all.peak_resident_bytes = os_peak_rss();
    all.large_live_blocks = st.large_count;
    all.large_live_bytes = st.large_bytes;
    all.large_cached_bytes = st.cached;
    all.segments = st.segments;
    all.segments_cached = st.abandon.segments_cached_now;
    all.threads_live = st.threads_live;
    all.threads_exited = st.threads_exited;
    all.segments_abandoned = st.abandon.segments_abandoned;
    all.pages_abandoned = st.abandon.pages_abandoned;
    all.segments_adopted = st.abandon.segments_adopted;
    all.pages_adopted = st.abandon.pages_adopted;
    all.pages_swept = st.abandon.pages_swept;
    all.segments_swept_empty = st.abandon.segments_swept_empty;
    all.fork_orphans = st.abandon.fork_orphans;
    all.abandoned_segments = st.abandon.abandoned_segments_now;
    all.abandoned_pages = st.abandon.abandoned_pages_now;
    all.abandoned_page_bytes = st.abandon.abandoned_page_bytes_now;
    all.abandoned_live_bytes = st.abandon.abandoned_live_bytes_now;
    memset(out, 0, size);
    memcpy(out, &all, all.size);
    return 0;
}

void stats_print(void)
{
    stats_snapshot snapshot;
    stats_snapshot *st = &snapshot;
    stats_take(st);
    const uint64_t *requests = st->requests;
    uint64_t total = st->total, bytes = st->bytes, large = st->large;
    size_t large_count = st->large_count, large_bytes = st->large_bytes, cached = st->cached;
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
    out_str(&out, " bytes\n  segments        ");
    out_num(&out, st->segments, 14);
    out_str(&out, " mapped, ");
    out_num(&out, st->abandon.segments_cached_now, 0);
    out_str(&out, " cached\n  threads         ");
    out_num(&out, st->threads_live, 14);
    out_str(&out, " live, ");
    out_num(&out, st->threads_exited, 0);
    out_str(&out, " exited\n  abandoned       ");
    out_num(&out, st->abandon.segments_abandoned, 14);
    out_str(&out, " segments (");
    out_num(&out, st->abandon.pages_abandoned, 0);
    out_str(&out, " pages), of them by fork ");
    out_num(&out, st->abandon.fork_orphans, 0);
    out_str(&out, "\n  adopted         ");
    out_num(&out, st->abandon.segments_adopted, 14);
    out_str(&out, " segments (");
    out_num(&out, st->abandon.pages_adopted, 0);
    out_str(&out, " pages)\n  swept           ");
    out_num(&out, st->abandon.pages_swept, 14);
    out_str(&out, " pages given back, ");
    out_num(&out, st->abandon.segments_swept_empty, 0);
    out_str(&out, " segments emptied\n  exited threads' ");
    out_num(&out, st->abandon.abandoned_page_bytes_now, 14);
    out_str(&out, " bytes in ");
    out_num(&out, st->abandon.abandoned_pages_now, 0);
    out_str(&out, " pages of ");
    out_num(&out, st->abandon.abandoned_segments_now, 0);
    out_str(&out, " segments, ");
    out_num(&out, st->abandon.abandoned_live_bytes_now, 0);
    out_str(&out, " bytes live\n  class  block size      requests  pages  live blocks\n");
    for (unsigned i = 0; i < CLASS_COUNT; i++) {
        if (requests[i] == 0 && st->pages[i] == 0)
            continue;
        out_num(&out, i, 7);
        out_num(&out, class_block_size(i), 12);
        out_num(&out, requests[i], 14);
        out_num(&out, st->pages[i], 7);
        out_num(&out, st->live_blocks[i], 13);
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
