/*
 * The heap map as one self-contained HTML page: the page itself
 * (heapmap.html, embedded at build time) with the replay's snapshots as
 * JSON where its DATA marker is. Per trace the data is:
 *
 *   {"name", "ops", "header": bytes before a payload, "peak": index of the
 *    snapshot at peak use,
 *    "snapshots": [{"op", "live", "hw", "base": the first chunk's address
 *                   in hex (the region's addresses in that replay),
 *                   "c": [chunk sizes in address order, negative = free],
 *                   "id": [trace ids of the live chunks, in order]}],
 *    "curve": [[op, live payload, high water], ...]}
 *
 * Offsets are not stored: the chunks tile the region, so each offset is
 * the sum of the sizes before it.
 */
#define _GNU_SOURCE
#include "trace.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

extern const unsigned char heapmap_page[];
extern const size_t heapmap_page_size;

/* Above this many chunk entries in all, snapshots are thinned (every
 * k-th kept, and always the peak) so the page stays quick to load. */
#define HTML_MAX_CHUNK_ENTRIES 4000000u

static void json_name(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        /* '<' escaped so no "</script" can end the data block early. */
        if (c == '"' || c == '\\' || c == '<' || c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* The header size to draw: what live chunks show (they all share one in
 * brisk's heap); free chunks have the same header. */
static uint32_t header_of(const replay_result *r)
{
    for (size_t s = 0; s < r->num_snapshots; s++)
        for (size_t i = 0; i < r->snapshots[s].num_chunks; i++)
            if (r->snapshots[s].chunks[i].used && r->snapshots[s].chunks[i].header > 0)
                return r->snapshots[s].chunks[i].header;
    return 0;
}

static void write_trace_data(FILE *out, const trace_report *rep, size_t stride)
{
    const replay_result *r = &rep->result;
    fprintf(out, "{\"name\": ");
    json_name(out, rep->t->name);
    fprintf(out, ", \"ops\": %zu, \"header\": %u, \"snapshots\": [", rep->t->num_ops,
            header_of(r));
    size_t written = 0, peak_at = 0;
    for (size_t s = 0; s < r->num_snapshots; s++) {
        if (s % stride != 0 && s != r->peak_snapshot && s != r->num_snapshots - 1)
            continue;
        if (s == r->peak_snapshot)
            peak_at = written;
        const heap_snapshot *snap = &r->snapshots[s];
        fprintf(out,
                "%s\n{\"op\": %zu, \"live\": %" PRIu64 ", \"hw\": %" PRIu64
                ", \"base\": \"%" PRIx64 "\", \"c\": [",
                written ? "," : "", snap->op_index, snap->live_payload, snap->high_water,
                snap->base);
        for (size_t i = 0; i < snap->num_chunks; i++)
            fprintf(out, "%s%s%" PRIu64, i ? "," : "", snap->chunks[i].used ? "" : "-",
                    snap->chunks[i].size);
        fprintf(out, "], \"id\": [");
        int first = 1;
        for (size_t i = 0; i < snap->num_chunks; i++)
            if (snap->chunks[i].used) {
                fprintf(out, "%s%lld", first ? "" : ",", (long long)snap->chunks[i].id);
                first = 0;
            }
        fprintf(out, "]}");
        written++;
    }
    fprintf(out, "],\n\"peak\": %zu, \"curve\": [", peak_at);
    for (size_t i = 0; i < r->num_curve; i++)
        fprintf(out, "%s[%zu,%" PRIu64 ",%" PRIu64 "]", i ? "," : "", r->curve[i].op_index,
                r->curve[i].live_payload, r->curve[i].high_water);
    fprintf(out, "]}");
}

int html_write(FILE *out, const trace_report *reports, size_t count)
{
    static const char marker[] = "/*@DATA@*/";
    const char *page = (const char *)heapmap_page;
    const char *at = memmem(page, heapmap_page_size, marker, sizeof marker - 1);
    if (at == NULL) {
        errno = EINVAL;
        return -1;
    }
    size_t entries = 0;
    for (size_t i = 0; i < count; i++)
        for (size_t s = 0; s < reports[i].result.num_snapshots; s++)
            entries += reports[i].result.snapshots[s].num_chunks;
    size_t stride = entries / HTML_MAX_CHUNK_ENTRIES + 1;

    fwrite(page, 1, (size_t)(at - page), out);
    fprintf(out, "{\"traces\": [");
    size_t written = 0;
    for (size_t i = 0; i < count; i++) {
        if (!reports[i].ok || reports[i].result.num_snapshots == 0)
            continue;
        fprintf(out, "%s\n", written++ ? "," : "");
        write_trace_data(out, &reports[i], stride);
    }
    fprintf(out, "]}");
    const char *rest = at + sizeof marker - 1;
    fwrite(rest, 1, heapmap_page_size - (size_t)(rest - page), out);
    if (ferror(out)) {
        if (errno == 0)
            errno = EIO;
        return -1;
    }
    return 0;
}
