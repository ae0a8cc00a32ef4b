/*
 * A recording's call-site views for the heap map page (html.c puts them
 * in its trace's data as "sites"): live bytes over time stacked by the
 * top call sites, the bytes live by stack at each moment (the page's
 * flame graph), the leaks, the live blocks by libbrisk size class, and a
 * libbrisk process's allocator samples. Everything is aggregated here, never one
 * entry per event, so a recording of millions of calls gives a page of a
 * few MiB:
 *
 *   {"command", "pid", "events", "steps", "duration_ns",
 *    "moments": [step, ...]      the moments sampled, "after step N":
 *                                steps evenly spaced in heap traffic, and
 *                                the peak's (plan_moments says why)
 *    "traffic": [...]            bytes allocated and freed up to each
 *    "time_us": [...]            each moment's time from the start
 *    "live": [...]               requested bytes live at each moment
 *    "peak": index of the peak's moment,
 *    "series": [{"name", "bytes": [per moment]}, ...]  the top sites
 *                                (merged by function, as report does), by
 *                                the most they held at any moment, and
 *                                last "other": all the rest
 *    "flame": [[stack, bytes, stack, bytes, ...] per moment]  the stacks
 *                                holding the most at that moment
 *    "flame_rest": [...]         bytes of the stacks left out
 *    "names": [...]              function names frames refer to
 *    "stacks": [[name, ...], ...] frames of each stack "flame" and
 *                                "leaks" name, innermost first
 *    "leaks": {"bytes", "count", "sites": number of leaking stacks,
 *              "top": [{"stack", "bytes", "count", "where"}, ...]},
 *    "classes": {"block": [block size of each libbrisk size class, 0 for
 *              large], "count", "requested", "held": [[per class] per
 *              moment]}  the live blocks as libbrisk's classes would hold
 *              them (write_classes)
 *    "allocator": null, or for a program using libbrisk its samples
 *              (TF_ALLOCATOR; at most 2000, evenly thinned):
 *              {"time_us", "traffic" and "live" (the timeline's x and the
 *               requested bytes live when each was taken), "resident",
 *               "mapped", "large_live", "large_cached", "segments",
 *               "segments_cached", "abandoned", "threads": [...],
 *               "samples": how many the recording has}}
 *
 * The moments are steps of the recording (blocks.c); html.c gives the
 * replay's snapshots their step too, so the page can show the heap map of
 * the moment picked.
 */
#define _GNU_SOURCE
#include "sites.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define SITE_MOMENTS 300        /* moments sampled, evenly in heap traffic (plus the peak) */
#define SITE_SERIES 10          /* call sites stacked by name; the rest is "other" */
#define FLAME_STACKS 300        /* stacks the flame graph keeps per moment */
#define FLAME_MAX_STACKS 20000u /* distinct stacks the page may name in all */
#define LEAK_SITES 100          /* leaking stacks listed */
#define ALLOCATOR_SAMPLES 2000  /* allocator samples kept, evenly thinned past this */

/* libbrisk's size classes (docs/process.md, "Size classes"): 16 to 128
 * bytes in steps of 16, then 8 classes per doubling up to 256 KiB; blocks
 * above are large (mapped on their own, in whole pages). The browser test
 * checks this grid against libbrisk's brisk_malloc_usable_size. */
#define BRISK_CLASSES 96
#define BRISK_LARGE_CLASS BRISK_CLASSES /* the index of "large" */
#define BRISK_SMALL_MAX 128u
#define BRISK_CLASS_MAX 262144u
#define BRISK_PAGE_ALIGN 65536u         /* alignments classes can give */
#define BRISK_LARGE_ROUND 4096u

/* Function names interned by pointer and text (the symbolizer's strings
 * outlive the analysis). */
typedef struct name_table {
    const char **slots; /* open addressing; NULL empty */
    uint32_t *index;
    size_t size;
    const char **names; /* in the order first seen */
    size_t count;
} name_table;

static uint64_t text_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int name_table_init(name_table *t, size_t expected)
{
    t->size = 64;
    while (t->size < expected * 2)
        t->size *= 2;
    t->slots = calloc(t->size, sizeof *t->slots);
    t->index = calloc(t->size, sizeof *t->index);
    t->names = calloc(t->size / 2, sizeof *t->names);
    t->count = 0;
    return t->slots && t->index && t->names ? 0 : -1;
}

static void name_table_free(name_table *t)
{
    free(t->slots);
    free(t->index);
    free(t->names);
}

/* The index of name, added when new; UINT32_MAX when the table is full
 * (it was sized for every frame, so only on a bad estimate). */
static uint32_t name_index(name_table *t, const char *name)
{
    size_t k = (size_t)text_hash(name) & (t->size - 1);
    while (t->slots[k] != NULL) {
        if (t->slots[k] == name || strcmp(t->slots[k], name) == 0)
            return t->index[k];
        k = (k + 1) & (t->size - 1);
    }
    if (t->count >= t->size / 2)
        return UINT32_MAX;
    t->slots[k] = name;
    t->index[k] = (uint32_t)t->count;
    t->names[t->count++] = name;
    return t->index[k];
}

typedef struct site_views {
    site_analysis *a;
    size_t num_moments;
    size_t *moments;           /* steps */
    uint64_t *traffic;         /* per moment: bytes allocated and freed so far */
    size_t peak_moment;
    uint32_t *function_of;     /* per stack: index into a->function_name */
    uint64_t *stack_live;      /* per stack, during a sweep */
    uint64_t *function_live;   /* per function, during a sweep */
    uint64_t total_live;
    uint32_t series[SITE_SERIES];
    size_t num_series;
    uint64_t *series_bytes;    /* num_moments x (num_series + 1), "other" last */
    uint64_t *live;            /* per moment */
    uint32_t *local_stack;     /* per stack: its index in "stacks", or UINT32_MAX */
    uint32_t *stacks_named;    /* local index -> stack */
    uint32_t num_named;
    uint32_t *order;           /* scratch: stacks or functions to rank */
    uint64_t *rank;            /* scratch: what they are ranked by */
    uint64_t *rest;            /* per moment: bytes of the stacks the flame graph leaves out */
    size_t num_kept_samples;   /* allocator samples the page gets */
    size_t *kept_sample;       /* which */
    uint64_t *sample_traffic;  /* per kept sample: heap traffic and */
    uint64_t *sample_live;     /* requested bytes live when it was taken */
    /* During a sweep, the live blocks by libbrisk size class (large
     * last): how many, their requested bytes, the bytes they would take. */
    uint64_t class_count[BRISK_CLASSES + 1], class_requested[BRISK_CLASSES + 1],
        class_held[BRISK_CLASSES + 1];
    uint64_t *by_class;        /* per moment: those three, BRISK_CLASSES + 1 each */
} site_views;

static int cmp_function_name(const void *key, const void *item)
{
    return strcmp(key, *(const char *const *)item);
}

/* The class block size for a request: the size rounded up to the grid
 * (an aligned request's first to a multiple of its alignment). */
static uint64_t class_block_size(uint64_t size)
{
    if (size <= BRISK_SMALL_MAX)
        return size <= 16 ? 16 : (size + 15) / 16 * 16;
    uint64_t doubling = BRISK_SMALL_MAX;
    while (doubling * 2 < size)
        doubling *= 2;
    uint64_t step = doubling / 8;
    return (size + step - 1) / step * step;
}

static unsigned class_index(uint64_t block)
{
    if (block <= BRISK_SMALL_MAX)
        return (unsigned)(block / 16 - 1);
    unsigned index = 8;
    uint64_t doubling = BRISK_SMALL_MAX;
    while (doubling * 2 < block) {
        doubling *= 2;
        index += 8;
    }
    return index + (unsigned)((block - doubling) / (doubling / 8)) - 1;
}

/* Where libbrisk would keep block blk: its class (BRISK_LARGE_CLASS when
 * large), and the bytes it would take there. */
static unsigned class_of_block(const site_views *v, const rec_block *blk, uint64_t *held)
{
    const rec_event *e = &v->a->r->events[blk->event];
    uint64_t size = blk->size, alignment = e->alignment;
    if (e->kind == TF_VALLOC || e->kind == TF_PVALLOC)
        alignment = BRISK_LARGE_ROUND;
    if (e->kind == TF_REALLOC || e->kind == TF_REALLOCARRAY)
        alignment = 0;
    if (alignment > 16 && alignment <= BRISK_PAGE_ALIGN)
        size = (size + alignment - 1) / alignment * alignment;
    if (alignment > BRISK_PAGE_ALIGN || size > BRISK_CLASS_MAX) {
        *held = (size + BRISK_LARGE_ROUND - 1) / BRISK_LARGE_ROUND * BRISK_LARGE_ROUND;
        return BRISK_LARGE_CLASS;
    }
    *held = class_block_size(size);
    return class_index(*held);
}

static void count_in_class(site_views *v, const rec_block *blk, int sign)
{
    uint64_t held;
    unsigned c = class_of_block(v, blk, &held);
    v->class_count[c] += (uint64_t)sign;
    v->class_requested[c] += (uint64_t)sign * blk->size;
    v->class_held[c] += (uint64_t)sign * held;
}

/* Applies step i of the recording to the live bytes by stack and by
 * function. */
static void apply_step(site_views *v, size_t i)
{
    const rec_blocks *b = &v->a->blocks;
    const recording *r = v->a->r;
    uint32_t ended = b->step_ended[i], made = b->step_made[i];
    if (ended != REC_NONE) {
        const rec_block *blk = &b->blocks[ended];
        uint32_t st = r->events[blk->event].stack;
        v->stack_live[st] -= blk->size;
        v->function_live[v->function_of[st]] -= blk->size;
        v->total_live -= blk->size;
        count_in_class(v, blk, -1);
    }
    if (made != REC_NONE) {
        const rec_block *blk = &b->blocks[made];
        uint32_t st = r->events[blk->event].stack;
        v->stack_live[st] += blk->size;
        v->function_live[v->function_of[st]] += blk->size;
        v->total_live += blk->size;
        count_in_class(v, blk, 1);
    }
}

static void sweep_reset(site_views *v)
{
    memset(v->stack_live, 0, v->a->num_sites * sizeof *v->stack_live);
    memset(v->function_live, 0, (v->a->num_functions + 1) * sizeof *v->function_live);
    v->total_live = 0;
    memset(v->class_count, 0, sizeof v->class_count);
    memset(v->class_requested, 0, sizeof v->class_requested);
    memset(v->class_held, 0, sizeof v->class_held);
}

/* Bytes step i allocated or freed. */
static uint64_t step_traffic(const site_views *v, size_t i)
{
    const rec_blocks *b = &v->a->blocks;
    uint64_t bytes = 0;
    if (b->step_ended[i] != REC_NONE)
        bytes += b->blocks[b->step_ended[i]].size;
    if (b->step_made[i] != REC_NONE)
        bytes += b->blocks[b->step_made[i]].size;
    return bytes;
}

/* The moments: SITE_MOMENTS steps evenly spaced in heap traffic (bytes
 * allocated and freed so far), the first step and the last among them,
 * and the peak's step. Traffic, not calls or time, because a phase that
 * builds up a big heap in a few calls (or in a few microseconds) is what
 * the views are for, and evenly spaced calls or seconds would give it a
 * pixel. */
static void plan_moments(site_views *v)
{
    size_t steps = v->a->r->num_steps, peak = v->a->blocks.peak_step;
    int place_peak = v->a->blocks.peak_bytes > 0 && peak < steps;
    uint64_t total = 0, so_far = 0;
    for (size_t i = 0; i < steps; i++)
        total += step_traffic(v, i);
    v->num_moments = 0;
    size_t k = 0;
    for (size_t i = 0; i < steps; i++) {
        so_far += step_traffic(v, i);
        /* Step i is a moment when the traffic after it reaches the next
         * mark (several marks at once in a big step), and it is the last. */
        int due = i == 0 || i == steps - 1;
        while (k < SITE_MOMENTS && (double)so_far >= (double)total * (double)k / (SITE_MOMENTS - 1)) {
            due = 1;
            k++;
        }
        if (place_peak && i == peak) {
            v->peak_moment = v->num_moments;
            due = 1;
            place_peak = 0;
        }
        if (due) {
            v->traffic[v->num_moments] = so_far;
            v->moments[v->num_moments++] = i;
        }
    }
}

static const uint64_t *rank_values;

/* Biggest first, then by index, for a stable order. */
static int cmp_ranked(const void *x, const void *y)
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    if (rank_values[i] != rank_values[j])
        return rank_values[i] > rank_values[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* The top sites: functions by the most they held live at a moment. */
static void choose_series(site_views *v)
{
    size_t nf = v->a->num_functions + 1;
    uint64_t *most = v->rank;
    memset(most, 0, nf * sizeof *most);
    sweep_reset(v);
    size_t m = 0;
    for (size_t i = 0; i < v->a->r->num_steps && m < v->num_moments; i++) {
        apply_step(v, i);
        if (i != v->moments[m])
            continue;
        for (size_t f = 0; f < nf; f++)
            if (v->function_live[f] > most[f])
                most[f] = v->function_live[f];
        m++;
    }
    size_t used = 0;
    for (uint32_t f = 0; f < nf; f++)
        if (most[f] > 0)
            v->order[used++] = f;
    rank_values = most;
    qsort(v->order, used, sizeof *v->order, cmp_ranked);
    v->num_series = used < SITE_SERIES ? used : SITE_SERIES;
    memcpy(v->series, v->order, v->num_series * sizeof *v->series);
}

static uint32_t name_stack(site_views *v, uint32_t st)
{
    if (v->local_stack[st] == UINT32_MAX && v->num_named < FLAME_MAX_STACKS) {
        v->local_stack[st] = v->num_named;
        v->stacks_named[v->num_named++] = st;
    }
    return v->local_stack[st];
}

/* The second sweep: the series and the flame graph's stacks per moment,
 * written as it goes. */
static void write_flame(FILE *out, site_views *v)
{
    const site_analysis *a = v->a;
    size_t cols = v->num_series + 1, m = 0;
    uint64_t *rest = v->rest;
    sweep_reset(v);
    fputs(",\n \"flame\": [", out);
    for (size_t i = 0; i < a->r->num_steps && m < v->num_moments; i++) {
        apply_step(v, i);
        if (i != v->moments[m])
            continue;
        v->live[m] = v->total_live;
        uint64_t *classes = v->by_class + m * 3 * (BRISK_CLASSES + 1);
        memcpy(classes, v->class_count, sizeof v->class_count);
        memcpy(classes + BRISK_CLASSES + 1, v->class_requested, sizeof v->class_requested);
        memcpy(classes + 2 * (BRISK_CLASSES + 1), v->class_held, sizeof v->class_held);
        uint64_t named = 0;
        for (size_t k = 0; k < v->num_series; k++) {
            v->series_bytes[m * cols + k] = v->function_live[v->series[k]];
            named += v->function_live[v->series[k]];
        }
        v->series_bytes[m * cols + v->num_series] = v->total_live - named;
        size_t live_stacks = 0;
        for (uint32_t st = 0; st < a->num_sites; st++)
            if (v->stack_live[st] > 0)
                v->order[live_stacks++] = st;
        rank_values = v->stack_live;
        qsort(v->order, live_stacks, sizeof *v->order, cmp_ranked);
        fputs(m ? ",\n  [" : "\n  [", out);
        uint64_t kept = 0;
        size_t written = 0;
        for (size_t k = 0; k < live_stacks && written < FLAME_STACKS; k++) {
            uint32_t local = name_stack(v, v->order[k]);
            if (local == UINT32_MAX)
                continue;
            fprintf(out, "%s%" PRIu32 ",%" PRIu64, written ? "," : "", local,
                    v->stack_live[v->order[k]]);
            kept += v->stack_live[v->order[k]];
            written++;
        }
        fputc(']', out);
        rest[m] = v->total_live - kept;
        m++;
    }
    fputs("],\n \"flame_rest\": [", out);
    for (size_t k = 0; k < v->num_moments; k++)
        fprintf(out, "%s%" PRIu64, k ? "," : "", rest[k]);
    fputc(']', out);
}

static void write_numbers(FILE *out, const char *name, const uint64_t *values, size_t n,
                          size_t stride)
{
    fprintf(out, ",\n \"%s\": [", name);
    for (size_t k = 0; k < n; k++)
        fprintf(out, "%s%" PRIu64, k ? "," : "", values[k * stride]);
    fputc(']', out);
}

static void location_of(site_analysis *a, uint32_t st, char *buf, size_t size)
{
    const frame_info *where = NULL;
    for (uint32_t k = 0; k < a->r->stack_depth[st]; k++) {
        where = sites_frame(a, st, k);
        if (!sites_is_wrapper(where->function))
            break;
    }
    if (where == NULL)
        snprintf(buf, size, "(no stack)");
    else
        sites_location_text(where, buf, size);
}

static void write_leaks(FILE *out, site_views *v)
{
    site_analysis *a = v->a;
    size_t leaking = 0;
    for (uint32_t st = 0; st < a->num_sites; st++)
        if (a->by_stack[st].leak_count > 0)
            v->order[leaking++] = st;
    for (uint32_t st = 0; st < a->num_sites; st++)
        v->rank[st] = a->by_stack[st].leak_bytes;
    rank_values = v->rank;
    qsort(v->order, leaking, sizeof *v->order, cmp_ranked);
    fprintf(out, ",\n \"leaks\": {\"bytes\": %" PRIu64 ", \"count\": %" PRIu64
                 ", \"sites\": %zu, \"top\": [",
            a->leak_bytes, a->leak_count, leaking);
    size_t written = 0;
    for (size_t k = 0; k < leaking && written < LEAK_SITES; k++) {
        uint32_t st = v->order[k], local = name_stack(v, st);
        if (local == UINT32_MAX)
            break;
        char where[8400];
        location_of(a, st, where, sizeof where);
        fprintf(out, "%s\n  {\"stack\": %" PRIu32 ", \"bytes\": %" PRIu64 ", \"count\": %" PRIu64
                     ", \"where\": ",
                written ? "," : "", local, a->by_stack[st].leak_bytes, a->by_stack[st].leak_count);
        json_string(out, where);
        fputc('}', out);
        written++;
    }
    fputs("]}", out);
}

static int write_stacks(FILE *out, site_views *v)
{
    site_analysis *a = v->a;
    size_t frames = 1;
    for (uint32_t i = 0; i < v->num_named; i++)
        frames += a->r->stack_depth[v->stacks_named[i]];
    name_table names;
    if (name_table_init(&names, frames) != 0) {
        name_table_free(&names);
        return -1;
    }
    fputs(",\n \"stacks\": [", out);
    for (uint32_t i = 0; i < v->num_named; i++) {
        uint32_t st = v->stacks_named[i];
        fputs(i ? ",[" : "[", out);
        for (uint32_t k = 0; k < a->r->stack_depth[st]; k++)
            fprintf(out, "%s%" PRIu32, k ? "," : "",
                    name_index(&names, sites_frame(a, st, k)->function));
        fputc(']', out);
    }
    fputs("],\n \"names\": [", out);
    for (size_t i = 0; i < names.count; i++) {
        if (i)
            fputc(',', out);
        json_string(out, names.names[i]);
    }
    fputc(']', out);
    name_table_free(&names);
    return 0;
}

/* The live blocks by size class at each moment: the classes' block sizes
 * (0 for large), then per moment and class the blocks, their requested
 * bytes and the bytes libbrisk would hold for them. */
static void write_classes(FILE *out, site_views *v)
{
    fputs(",\n \"classes\": {\"block\": [", out);
    for (unsigned c = 0, block = 16; c <= BRISK_CLASSES; c++) {
        fprintf(out, "%s%u", c ? "," : "", c == BRISK_LARGE_CLASS ? 0 : block);
        block = (unsigned)class_block_size(block + 1);
    }
    static const char *const names[3] = {"count", "requested", "held"};
    for (int k = 0; k < 3; k++) {
        fprintf(out, "],\n  \"%s\": [", names[k]);
        for (size_t m = 0; m < v->num_moments; m++) {
            const uint64_t *row = v->by_class + (m * 3 + (size_t)k) * (BRISK_CLASSES + 1);
            fputs(m ? ",[" : "[", out);
            for (unsigned c = 0; c <= BRISK_CLASSES; c++)
                fprintf(out, "%s%" PRIu64, c ? "," : "", row[c]);
            fputc(']', out);
        }
    }
    fputs("]}", out);
}

/* The process allocator's samples (a recording of a program using
 * libbrisk), each placed on the timeline: the heap traffic and the
 * requested bytes live when it was taken. */
static void write_allocator(FILE *out, site_views *v)
{
    const recording *r = v->a->r;
    size_t keep = v->num_kept_samples;
    fputs(",\n \"allocator\": ", out);
    if (keep == 0) {
        fputs("null", out);
        return;
    }
    for (size_t k = 0; k < keep; k++)
        v->kept_sample[k] = keep == 1 ? r->num_samples - 1 : (r->num_samples - 1) * k / (keep - 1);
    sweep_reset(v);
    uint64_t so_far = 0;
    size_t k = 0;
    for (size_t i = 0; i <= r->num_steps && k < keep; i++) {
        /* Samples taken before step i see the heap as the steps before
         * it left it. */
        while (k < keep &&
               (i == r->num_steps || r->samples[v->kept_sample[k]].seq <= r->steps[i].seq)) {
            v->sample_traffic[k] = so_far;
            v->sample_live[k] = v->total_live;
            k++;
        }
        if (i < r->num_steps) {
            so_far += step_traffic(v, i);
            apply_step(v, i);
        }
    }
    fputs("{\"time_us\": [", out);
    for (k = 0; k < keep; k++)
        fprintf(out, "%s%" PRIu64, k ? "," : "", r->samples[v->kept_sample[k]].time_ns / 1000);
    fputc(']', out);
    write_numbers(out, "traffic", v->sample_traffic, keep, 1);
    write_numbers(out, "live", v->sample_live, keep, 1);
    static const char *const field_names[TF_ALLOCATOR_FIELDS] = {
        [TF_AL_RESIDENT] = "resident", [TF_AL_MAPPED] = "mapped",
        [TF_AL_LARGE_LIVE] = "large_live", [TF_AL_LARGE_CACHED] = "large_cached",
        [TF_AL_SEGMENTS] = "segments", [TF_AL_SEGMENTS_CACHED] = "segments_cached",
        [TF_AL_ABANDONED] = "abandoned", [TF_AL_THREADS] = "threads"};
    for (int f = 0; f < TF_ALLOCATOR_FIELDS; f++) {
        fprintf(out, ",\n  \"%s\": [", field_names[f]);
        for (k = 0; k < keep; k++)
            fprintf(out, "%s%" PRIu64, k ? "," : "", r->samples[v->kept_sample[k]].value[f]);
        fputc(']', out);
    }
    fprintf(out, ", \"samples\": %zu}", r->num_samples);
}

int html_write_sites(FILE *out, site_analysis *a)
{
    const recording *r = a->r;
    site_views v;
    memset(&v, 0, sizeof v);
    v.a = a;
    size_t ns = a->num_sites ? a->num_sites : 1;
    /* A moment per mark, plus the first step, the last and the peak's. */
    v.moments = calloc(SITE_MOMENTS + 3, sizeof *v.moments);
    v.traffic = calloc(SITE_MOMENTS + 3, sizeof *v.traffic);
    v.function_of = calloc(ns, sizeof *v.function_of);
    v.stack_live = calloc(ns, sizeof *v.stack_live);
    v.function_live = calloc(a->num_functions + 1, sizeof *v.function_live);
    v.live = calloc(SITE_MOMENTS + 3, sizeof *v.live);
    v.series_bytes = calloc((SITE_MOMENTS + 3) * (SITE_SERIES + 1), sizeof *v.series_bytes);
    v.local_stack = malloc(ns * sizeof *v.local_stack);
    v.stacks_named = calloc(FLAME_MAX_STACKS, sizeof *v.stacks_named);
    size_t ranked = ns > a->num_functions + 1 ? ns : a->num_functions + 1;
    v.order = calloc(ranked, sizeof *v.order);
    v.rank = calloc(ranked, sizeof *v.rank);
    v.rest = calloc(SITE_MOMENTS + 3, sizeof *v.rest);
    v.by_class = calloc((SITE_MOMENTS + 3) * 3 * (BRISK_CLASSES + 1), sizeof *v.by_class);
    v.num_kept_samples = r->num_samples < ALLOCATOR_SAMPLES ? r->num_samples : ALLOCATOR_SAMPLES;
    v.kept_sample = calloc(v.num_kept_samples + 1, sizeof *v.kept_sample);
    v.sample_traffic = calloc(v.num_kept_samples + 1, sizeof *v.sample_traffic);
    v.sample_live = calloc(v.num_kept_samples + 1, sizeof *v.sample_live);
    int rc = -1;
    if (v.moments == NULL || v.traffic == NULL || v.function_of == NULL || v.stack_live == NULL ||
        v.function_live == NULL || v.live == NULL || v.series_bytes == NULL ||
        v.local_stack == NULL || v.stacks_named == NULL || v.order == NULL || v.rank == NULL ||
        v.rest == NULL || v.kept_sample == NULL || v.sample_traffic == NULL ||
        v.sample_live == NULL || v.by_class == NULL) {
        errno = ENOMEM;
        goto out;
    }
    memset(v.local_stack, 0xff, ns * sizeof *v.local_stack);
    /* Stacks that made no block hold nothing; they count at the spare
     * function slot past the last. */
    for (uint32_t st = 0; st < a->num_sites; st++) {
        const char *const *f = a->function[st] == NULL
                                   ? NULL
                                   : bsearch(a->function[st], a->function_name, a->num_functions,
                                             sizeof *a->function_name, cmp_function_name);
        v.function_of[st] = f ? (uint32_t)(f - a->function_name) : (uint32_t)a->num_functions;
    }
    if (r->num_steps > 0)
        plan_moments(&v);
    choose_series(&v);

    fputs("{\"command\": ", out);
    json_string(out, r->command);
    fprintf(out, ", \"pid\": %" PRIu64 ", \"events\": %zu, \"steps\": %zu, \"duration_ns\": %" PRIu64
                 ", \"peak\": %zu",
            r->pid, r->num_events, r->num_steps, r->duration_ns, v.peak_moment);
    write_flame(out, &v);
    fputs(",\n \"moments\": [", out);
    for (size_t k = 0; k < v.num_moments; k++)
        fprintf(out, "%s%zu", k ? "," : "", v.moments[k]);
    fputs("],\n \"time_us\": [", out);
    for (size_t k = 0; k < v.num_moments; k++)
        fprintf(out, "%s%" PRIu64, k ? "," : "",
                r->events[r->steps[v.moments[k]].event].time_ns / 1000);
    fputc(']', out);
    write_numbers(out, "live", v.live, v.num_moments, 1);
    write_numbers(out, "traffic", v.traffic, v.num_moments, 1);
    fputs(",\n \"series\": [", out);
    for (size_t k = 0; k <= v.num_series; k++) {
        fputs(k ? ",\n  {\"name\": " : "\n  {\"name\": ", out);
        json_string(out, k < v.num_series ? (v.series[k] < a->num_functions
                                                       ? a->function_name[v.series[k]]
                                                       : "(no block)")
                                               : "other");
        write_numbers(out, "bytes", v.series_bytes + k, v.num_moments, v.num_series + 1);
        fputc('}', out);
    }
    fputc(']', out);
    write_leaks(out, &v);
    write_classes(out, &v);
    write_allocator(out, &v);
    if (write_stacks(out, &v) != 0) {
        errno = ENOMEM;
        goto out;
    }
    fputc('}', out);
    rc = 0;
out:
    free(v.moments);
    free(v.traffic);
    free(v.function_of);
    free(v.stack_live);
    free(v.function_live);
    free(v.live);
    free(v.series_bytes);
    free(v.local_stack);
    free(v.stacks_named);
    free(v.order);
    free(v.rank);
    free(v.rest);
    free(v.by_class);
    free(v.kept_sample);
    free(v.sample_traffic);
    free(v.sample_live);
    return rc;
}
