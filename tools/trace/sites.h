/*
 * Allocation sites of a recording (sites.c): what each distinct call
 * stack allocated, held at the peak, and left live at exit, and the same
 * merged by the function that made the call. `report` prints them
 * (report_sites.c).
 */
#ifndef BRISK_TRACE_SITES_H
#define BRISK_TRACE_SITES_H

#include "symbols.h"
#include "trace.h"
#include "trace_format.h"

typedef struct site_stats {
    uint64_t count, bytes;           /* allocations made (calls that made a block) */
    uint64_t temporary;              /* of them, temporary (blocks.c) */
    uint64_t temporary_bytes;
    uint64_t peak_count, peak_bytes; /* live at the peak */
    uint64_t leak_count, leak_bytes; /* live at exit (a profile: at its dump) */
    uint64_t samples, live_samples;  /* a profile's samples at the site, and
                                        of them live at the dump */
} site_stats;

typedef struct site_analysis {
    const recording *r;
    rec_blocks blocks;
    symbolizer *symbols;
    size_t num_sites;        /* one per stack index of r */
    site_stats *by_stack;
    const char **function;   /* per stack: the function that called the allocator */
    size_t num_functions;
    site_stats *by_function; /* merged by function name */
    const char **function_name;
    uint64_t calls[TF_EVENT_KINDS_END];
    uint64_t peak_blocks, leak_bytes, leak_count, total_count, total_bytes, temporary;
} site_analysis;

/* Analyses r (which must outlive a). Returns 0, or -1 with a message.
 * For a sampled profile (r->profile_rate), whose sites come with
 * estimates instead of events: count and bytes are the estimated
 * allocations, leak_count and leak_bytes the estimated live blocks at
 * the dump. */
int sites_analyse(const recording *r, site_analysis *a, char *err, size_t err_size);
void sites_free(site_analysis *a);

/* The frames of stack s, innermost first, resolved. */
const frame_info *sites_frame(site_analysis *a, uint32_t stack, uint32_t k);

/* A frame as "function (file:line)", "function (module+0xOFFSET)" without
 * line information, or the function alone when unknown. */
void sites_location_text(const frame_info *f, char *buf, size_t size);

/* Whether a function name is an allocation wrapper (operator new, the
 * C++ library): sites are named by the first frame that is not. */
int sites_is_wrapper(const char *function);

/* Writes a's call-site views for the heap map page, as one JSON object
 * (html_sites.c documents its fields). Returns 0, or -1 with errno set. */
int html_write_sites(FILE *out, site_analysis *a);

#endif /* BRISK_TRACE_SITES_H */
