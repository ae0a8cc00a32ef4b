/*
 * `brisk-trace report RECORDING`: the peak (when, how many bytes, the
 * sites holding it by stack and by function), allocations and temporary
 * allocations by site, and leaks (blocks live at exit) by site, as a
 * table or as JSON (--json; the fields are documented in docs/trace.md).
 */
#define _GNU_SOURCE
#include "sites.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char report_usage[] =
    "usage: brisk-trace report [--json] [--top N] [--frames N] RECORDING\n"
    "\n"
    "Reads a recording (or a malloc-lab text trace, which has no stacks) and\n"
    "prints: the peak of live bytes, when it was reached and the call sites\n"
    "holding it (by stack and merged by function); allocation calls and\n"
    "temporary allocations (freed by their thread before it allocated again)\n"
    "by site; and the blocks still live at exit (leaks) by site. Given a\n"
    "sampled profile (libbrisk's BRISK_OPTIONS=profile), it prints the\n"
    "estimated bytes live at the dump and allocated since start-up by site.\n"
    "\n"
    "options:\n"
    "  --json       print JSON (fields in docs/trace.md) instead of tables\n"
    "  --top N      sites per list (default 10; 0: all)\n"
    "  --frames N   frames shown per site in the tables (default 4)\n"
    "  -h, --help   show this help\n";

static const char *const kind_names[TF_EVENT_KINDS_END] = {
    [TF_MALLOC] = "malloc",   [TF_CALLOC] = "calloc",
    [TF_VALLOC] = "valloc",   [TF_PVALLOC] = "pvalloc",
    [TF_POSIX_MEMALIGN] = "posix_memalign", [TF_ALIGNED_ALLOC] = "aligned_alloc",
    [TF_MEMALIGN] = "memalign", [TF_REALLOC] = "realloc",
    [TF_REALLOCARRAY] = "reallocarray", [TF_FREE] = "free",
    [TF_FREE_SIZED] = "free_sized", [TF_FREE_ALIGNED_SIZED] = "free_aligned_sized"};

typedef enum list_kind { LIST_PEAK, LIST_ALLOC, LIST_TEMPORARY, LIST_LEAK } list_kind;

static uint64_t list_bytes(const site_stats *s, list_kind k)
{
    return k == LIST_PEAK        ? s->peak_bytes
           : k == LIST_LEAK      ? s->leak_bytes
           : k == LIST_TEMPORARY ? s->temporary_bytes
                                 : s->bytes;
}

static uint64_t list_count(const site_stats *s, list_kind k)
{
    return k == LIST_PEAK    ? s->peak_count
           : k == LIST_LEAK  ? s->leak_count
           : k == LIST_ALLOC ? s->count
                             : s->temporary;
}

static const site_stats *sort_stats;
static list_kind sort_kind;

/* Biggest first: bytes, then count, then index (a stable order). For the
 * temporary list, count first. */
static int cmp_sites(const void *x, const void *y)
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    const site_stats *a = &sort_stats[i], *b = &sort_stats[j];
    uint64_t ka = sort_kind == LIST_TEMPORARY ? list_count(a, sort_kind) : list_bytes(a, sort_kind);
    uint64_t kb = sort_kind == LIST_TEMPORARY ? list_count(b, sort_kind) : list_bytes(b, sort_kind);
    if (ka != kb)
        return ka > kb ? -1 : 1;
    ka = list_count(a, sort_kind);
    kb = list_count(b, sort_kind);
    if (ka != kb)
        return ka > kb ? -1 : 1;
    return i < j ? -1 : i > j;
}

/* The indices of stats[0..n) that have something in list k, sorted;
 * returns how many (at most top unless top is 0). */
static size_t ranked(const site_stats *stats, size_t n, list_kind k, size_t top, uint32_t *out)
{
    size_t m = 0;
    for (uint32_t i = 0; i < n; i++)
        if (list_count(&stats[i], k) > 0)
            out[m++] = i;
    sort_stats = stats;
    sort_kind = k;
    qsort(out, m, sizeof *out, cmp_sites);
    return top && m > top ? top : m;
}

/* ---- JSON ---------------------------------------------------------------- */

void sites_location_text(const frame_info *f, char *buf, size_t size)
{
    if (f->file != NULL)
        snprintf(buf, size, "%s (%s:%d)", f->function, f->file, f->line);
    else if (!f->unknown)
        snprintf(buf, size, "%s (%s+0x%" PRIx64 ")", f->function, f->module, f->offset);
    else
        snprintf(buf, size, "%s", f->function);
}

static void json_site(FILE *out, site_analysis *a, uint32_t st, list_kind k)
{
    const site_stats *s = &a->by_stack[st];
    fprintf(out, "{\"function\": ");
    json_string(out, a->function[st] ? a->function[st] : "(no stack)");
    fprintf(out, ", \"frames\": [");
    uint32_t depth = a->r->stack_depth[st];
    for (uint32_t f = 0; f < depth; f++) {
        if (f)
            fputs(", ", out);
        json_string(out, sites_frame(a, st, f)->function);
    }
    fprintf(out, "], \"locations\": [");
    for (uint32_t f = 0; f < depth; f++) {
        char text[8400];
        sites_location_text(sites_frame(a, st, f), text, sizeof text);
        if (f)
            fputs(", ", out);
        json_string(out, text);
    }
    fprintf(out, "], \"bytes\": %" PRIu64 ", \"count\": %" PRIu64, list_bytes(s, k),
            list_count(s, k));
    if (a->r->profile_rate != 0)
        fprintf(out, ", \"samples\": %" PRIu64, k == LIST_LEAK ? s->live_samples : s->samples);
    else if (k == LIST_ALLOC)
        fprintf(out, ", \"temporary\": %" PRIu64, s->temporary);
    fputc('}', out);
}

static void json_sites(FILE *out, site_analysis *a, list_kind k, size_t top, uint32_t *order)
{
    size_t n = ranked(a->by_stack, a->num_sites, k, top, order);
    fputs("[", out);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ",\n      " : "\n      ", out);
        json_site(out, a, order[i], k);
    }
    fputs(n ? "\n    ]" : "]", out);
}

static void json_functions(FILE *out, site_analysis *a, list_kind k, size_t top, uint32_t *order)
{
    size_t n = ranked(a->by_function, a->num_functions, k, top, order);
    fputs("[", out);
    for (size_t i = 0; i < n; i++) {
        const site_stats *s = &a->by_function[order[i]];
        fputs(i ? ",\n      " : "\n      ", out);
        fputs("{\"function\": ", out);
        json_string(out, a->function_name[order[i]]);
        fprintf(out, ", \"bytes\": %" PRIu64 ", \"count\": %" PRIu64, list_bytes(s, k),
                list_count(s, k));
        if (a->r->profile_rate != 0)
            fprintf(out, ", \"samples\": %" PRIu64, k == LIST_LEAK ? s->live_samples : s->samples);
        else if (k == LIST_ALLOC)
            fprintf(out, ", \"temporary\": %" PRIu64, s->temporary);
        fputc('}', out);
    }
    fputs(n ? "\n    ]" : "]", out);
}

/* A list's sites, then its functions: "sites": [...], "functions": [...]
 * (the caller has written "sites": ). */
static void json_site_lists(FILE *out, site_analysis *a, list_kind list, size_t top, uint32_t *order)
{
    json_sites(out, a, list, top, order);
    fputs(",\n    \"functions\": ", out);
    json_functions(out, a, list, top, order);
}

static void write_json(FILE *out, site_analysis *a, size_t top, uint32_t *order)
{
    const recording *r = a->r;
    const rec_blocks *b = &a->blocks;
    fputs("{\n  \"recording\": ", out);
    json_string(out, r->path);
    fputs(",\n  \"command\": ", out);
    json_string(out, r->command);
    fprintf(out, ",\n  \"pid\": %" PRIu64 ",\n  \"threads\": %zu,\n  \"events\": %zu,\n"
                 "  \"duration_ns\": %" PRIu64 ",\n  \"stacks\": %zu,\n  \"symbols_note\": ",
            r->pid, r->num_threads, r->num_events, r->duration_ns,
            r->num_stacks ? r->num_stacks - 1 : 0);
    json_string(out, symbols_note(a->symbols));
    fputs(",\n  \"calls\": {", out);
    for (int k = TF_MALLOC; k < TF_EVENT_KINDS_END; k++)
        fprintf(out, "%s\"%s\": %" PRIu64, k == TF_MALLOC ? "" : ", ", kind_names[k], a->calls[k]);
    fprintf(out, "},\n  \"unknown_frees\": %zu,\n", b->unknown_frees);
    uint64_t most_mapped = 0, most_resident = 0;
    for (size_t i = 0; i < r->num_samples; i++) {
        if (r->samples[i].value[TF_AL_MAPPED] > most_mapped)
            most_mapped = r->samples[i].value[TF_AL_MAPPED];
        if (r->samples[i].value[TF_AL_RESIDENT] > most_resident)
            most_resident = r->samples[i].value[TF_AL_RESIDENT];
    }
    fprintf(out, "  \"allocator\": {\"samples\": %zu, \"mapped_bytes_most\": %" PRIu64
                 ", \"resident_bytes_most\": %" PRIu64 "},\n",
            r->num_samples, most_mapped, most_resident);
    fprintf(out, "  \"peak\": {\"bytes\": %" PRIu64 ", \"blocks\": %" PRIu64
                 ", \"time_ns\": %" PRIu64 ", \"step\": %zu,\n    \"sites\": ",
            b->peak_bytes, a->peak_blocks, b->peak_time_ns, b->peak_step);
    json_site_lists(out, a, LIST_PEAK, top, order);
    fprintf(out, "},\n  \"allocations\": {\"count\": %" PRIu64 ", \"bytes\": %" PRIu64
                 ", \"temporary\": %" PRIu64 ",\n    \"sites\": ",
            a->total_count, a->total_bytes, a->temporary);
    json_site_lists(out, a, LIST_ALLOC, top, order);
    fprintf(out, "},\n  \"temporary\": {\"count\": %" PRIu64 ",\n    \"sites\": ", a->temporary);
    json_sites(out, a, LIST_TEMPORARY, top, order);
    fprintf(out, "},\n  \"leaks\": {\"bytes\": %" PRIu64 ", \"count\": %" PRIu64
                 ",\n    \"sites\": ",
            a->leak_bytes, a->leak_count);
    json_site_lists(out, a, LIST_LEAK, top, order);
    fputs("}\n}\n", out);
}

/* A sampled profile (libbrisk's BRISK_OPTIONS=profile): what was live at
 * its dump and what was allocated since start-up, by site and function,
 * every figure an estimate from the samples. */
static void write_profile_json(FILE *out, site_analysis *a, size_t top, uint32_t *order)
{
    const recording *r = a->r;
    fputs("{\n  \"recording\": ", out);
    json_string(out, r->path);
    fputs(",\n  \"command\": ", out);
    json_string(out, r->command);
    fprintf(out, ",\n  \"pid\": %" PRIu64 ",\n  \"stacks\": %zu,\n  \"symbols_note\": ", r->pid,
            r->num_stacks ? r->num_stacks - 1 : 0);
    json_string(out, symbols_note(a->symbols));
    fprintf(out, ",\n  \"profile\": {\"sampled\": true, \"rate\": %" PRIu64 ", \"samples\": %" PRIu64
                 ", \"live_samples\": %" PRIu64 ", \"time_ns\": %" PRIu64
                 ", \"stacks_full\": %s},\n",
            r->profile_rate, r->profile_samples, r->profile_live_samples, r->profile_time_ns,
            (r->flags & TF_END_STACKS_FULL) ? "true" : "false");
    fprintf(out, "  \"live\": {\"bytes\": %" PRIu64 ", \"count\": %" PRIu64 ",\n    \"sites\": ",
            a->leak_bytes, a->leak_count);
    json_site_lists(out, a, LIST_LEAK, top, order);
    fprintf(out, "},\n  \"allocated\": {\"bytes\": %" PRIu64 ", \"count\": %" PRIu64
                 ",\n    \"sites\": ",
            a->total_bytes, a->total_count);
    json_site_lists(out, a, LIST_ALLOC, top, order);
    fputs("}\n}\n", out);
}

/* ---- the tables --------------------------------------------------------------- */

static void table_sites(FILE *out, site_analysis *a, list_kind k, size_t top, unsigned frames,
                        uint32_t *order)
{
    size_t n = ranked(a->by_stack, a->num_sites, k, top, order);
    if (n == 0) {
        fputs("  (none)\n", out);
        return;
    }
    int profile = a->r->profile_rate != 0;
    uint64_t total = k == LIST_LEAK ? a->leak_bytes : a->total_bytes;
    if (profile)
        fprintf(out, "  %12s %10s %9s %6s  site (innermost frame first)\n", "~bytes",
                k == LIST_ALLOC ? "~calls" : "~blocks", "samples", "share");
    else
        fprintf(out, "  %12s %10s%s  site (innermost frame first)\n", "bytes",
                k == LIST_ALLOC ? "calls" : "blocks", k == LIST_ALLOC ? "  temporary" : "");
    for (size_t i = 0; i < n; i++) {
        uint32_t st = order[i];
        const site_stats *s = &a->by_stack[st];
        char bytes[32];
        format_bytes(bytes, sizeof bytes, list_bytes(s, k));
        fprintf(out, "  %12s %10" PRIu64, bytes, list_count(s, k));
        if (profile)
            fprintf(out, " %9" PRIu64 " %5.1f%%", k == LIST_LEAK ? s->live_samples : s->samples,
                    total ? 100.0 * (double)list_bytes(s, k) / (double)total : 0.0);
        else if (k == LIST_ALLOC)
            fprintf(out, "  %9" PRIu64, s->temporary);
        uint32_t depth = a->r->stack_depth[st];
        if (depth == 0)
            fputs("  (no stack)\n", out);
        for (uint32_t f = 0; f < depth && f < frames; f++) {
            char text[8400];
            sites_location_text(sites_frame(a, st, f), text, sizeof text);
            if (f == 0)
                fprintf(out, "  %s\n", text);
            else
                fprintf(out, "  %*s    <- %s\n", profile ? 40 : k == LIST_ALLOC ? 34 : 23, "", text);
        }
    }
}

static void table_functions(FILE *out, site_analysis *a, list_kind k, size_t top, uint32_t *order)
{
    size_t n = ranked(a->by_function, a->num_functions, k, top, order);
    for (size_t i = 0; i < n; i++) {
        const site_stats *s = &a->by_function[order[i]];
        char bytes[32];
        format_bytes(bytes, sizeof bytes, list_bytes(s, k));
        fprintf(out, "  %12s %10" PRIu64 "  %s\n", bytes, list_count(s, k),
                a->function_name[order[i]]);
    }
}

/* A list's sites, then (when `functions`) the same merged by function. */
static void table_site_lists(FILE *out, site_analysis *a, list_kind k, size_t top, unsigned frames,
                             uint32_t *order, bool functions)
{
    table_sites(out, a, k, top, frames, order);
    if (functions) {
        fputs("  by function:\n", out);
        table_functions(out, a, k, top, order);
    }
}

static void write_table(FILE *out, site_analysis *a, size_t top, unsigned frames, uint32_t *order)
{
    const recording *r = a->r;
    const rec_blocks *b = &a->blocks;
    char bytes[32];
    fprintf(out, "brisk-trace report: %s\n", r->path);
    if (r->command[0] != '\0')
        fprintf(out, "  command: %s (pid %" PRIu64 ")\n", r->command, r->pid);
    fprintf(out, "  %zu events from %zu thread%s over %.3f s; %zu distinct stacks\n", r->num_events,
            r->num_threads, r->num_threads == 1 ? "" : "s", (double)r->duration_ns / 1e9,
            r->num_stacks ? r->num_stacks - 1 : 0);
    fputs("  calls:", out);
    for (int k = TF_MALLOC; k < TF_EVENT_KINDS_END; k++)
        if (a->calls[k])
            fprintf(out, " %s %" PRIu64, kind_names[k], a->calls[k]);
    fputc('\n', out);
    if (b->unknown_frees)
        fprintf(out, "  %zu frees of blocks from before the recording started (ignored)\n",
                b->unknown_frees);
    if (symbols_note(a->symbols)[0] != '\0')
        fprintf(out, "  symbols: %s\n", symbols_note(a->symbols));

    format_bytes(bytes, sizeof bytes, b->peak_bytes);
    fprintf(out, "\nPEAK: %s live in %" PRIu64 " blocks at %.3f s (step %zu of %zu)\n", bytes,
            a->peak_blocks, (double)b->peak_time_ns / 1e9, b->peak_step, r->num_steps);
    table_site_lists(out, a, LIST_PEAK, top, frames, order, true);

    format_bytes(bytes, sizeof bytes, a->total_bytes);
    fprintf(out, "\nALLOCATIONS: %" PRIu64 " calls, %s; %" PRIu64 " temporary (%.1f%%)\n",
            a->total_count, bytes, a->temporary,
            a->total_count ? 100.0 * (double)a->temporary / (double)a->total_count : 0.0);
    table_sites(out, a, LIST_ALLOC, top, frames, order);

    fprintf(out, "\nTEMPORARY: %" PRIu64 " allocations freed before their thread allocated "
                 "again\n",
            a->temporary);
    table_sites(out, a, LIST_TEMPORARY, top, frames, order);

    format_bytes(bytes, sizeof bytes, a->leak_bytes);
    fprintf(out, "\nLEAKS: %s in %" PRIu64 " blocks live at exit\n", bytes, a->leak_count);
    table_site_lists(out, a, LIST_LEAK, top, frames, order, a->leak_count != 0);
}

static void write_profile_table(FILE *out, site_analysis *a, size_t top, unsigned frames,
                                uint32_t *order)
{
    const recording *r = a->r;
    char bytes[32], rate[32];
    fprintf(out, "brisk-trace report: %s\n", r->path);
    format_bytes(rate, sizeof rate, r->profile_rate);
    fprintf(out, "  SAMPLED PROFILE (libbrisk, BRISK_OPTIONS=profile): one sample per %s allocated "
                 "on average\n",
            rate);
    if (r->command[0] != '\0')
        fprintf(out, "  command: %s (pid %" PRIu64 ")\n", r->command, r->pid);
    fprintf(out, "  %" PRIu64 " samples since start-up, %" PRIu64 " of them live at the dump (%.3f s "
                 "after start-up); %zu distinct stacks\n",
            r->profile_samples, r->profile_live_samples, (double)r->profile_time_ns / 1e9,
            r->num_stacks ? r->num_stacks - 1 : 0);
    fputs("  Every figure marked ~ is an estimate from the samples (each weighted by its chance\n"
          "  to be sampled), not a count: small sites may be missing or off by a lot.\n",
          out);
    if (r->flags & TF_END_STACKS_FULL)
        fputs("  the profiler's stack table filled up: later samples are under (no stack)\n", out);
    if (symbols_note(a->symbols)[0] != '\0')
        fprintf(out, "  symbols: %s\n", symbols_note(a->symbols));

    format_bytes(bytes, sizeof bytes, a->leak_bytes);
    fprintf(out, "\nLIVE at the dump: ~%s in ~%" PRIu64 " blocks\n", bytes, a->leak_count);
    table_site_lists(out, a, LIST_LEAK, top, frames, order, a->leak_count != 0);
    format_bytes(bytes, sizeof bytes, a->total_bytes);
    fprintf(out, "\nALLOCATED since start-up: ~%s in ~%" PRIu64 " calls\n", bytes, a->total_count);
    table_site_lists(out, a, LIST_ALLOC, top, frames, order, a->total_count != 0);
}

int report_main(int argc, char **argv)
{
    int json = 0;
    unsigned long top = 10, frames = 4;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(report_usage, stdout);
            return 0;
        } else if (strcmp(arg, "--json") == 0) {
            json = 1;
        } else if (strcmp(arg, "--top") == 0 || strcmp(arg, "--frames") == 0) {
            char *end;
            const char *v = i + 1 < argc ? argv[i + 1] : "";
            unsigned long n = strtoul(v, &end, 10);
            if (*v < '0' || *v > '9' || *end != '\0' || n > 1000000) {
                fprintf(stderr, "brisk-trace: report: %s needs a number (0 to 1000000), got '%s'\n\n%s",
                        arg, v, report_usage);
                return 2;
            }
            *(arg[2] == 't' ? &top : &frames) = n;
            i++;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, "brisk-trace: report: unknown option '%s'\n\n%s", arg, report_usage);
            return 2;
        } else if (path == NULL) {
            path = arg;
        } else {
            fprintf(stderr, "brisk-trace: report: one recording at a time ('%s' and '%s')\n\n%s",
                    path, arg, report_usage);
            return 2;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "brisk-trace: report: no recording given\n\n%s", report_usage);
        return 2;
    }
    char err[1024];
    recording r;
    if (recording_load(path, &r, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    site_analysis a;
    if (sites_analyse(&r, &a, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        recording_free(&r);
        return 1;
    }
    uint32_t *order = malloc((r.num_stacks + 1) * sizeof *order);
    if (order == NULL) {
        fprintf(stderr, "%s: out of memory\n", path);
        sites_free(&a);
        recording_free(&r);
        return 1;
    }
    if (r.profile_rate != 0 && json)
        write_profile_json(stdout, &a, top, order);
    else if (r.profile_rate != 0)
        write_profile_table(stdout, &a, top, (unsigned)frames, order);
    else if (json)
        write_json(stdout, &a, top, order);
    else
        write_table(stdout, &a, top, (unsigned)frames, order);
    free(order);
    sites_free(&a);
    recording_free(&r);
    return fflush(stdout) == 0 ? 0 : 1;
}
