/*
 * The heap map as one self-contained HTML page: the page itself
 * (heapmap.html, embedded at build time) with the replay's snapshots as
 * JSON where its DATA marker is. Per trace the data is:
 *
 *   {"name", "ops", "header": bytes before a payload, "peak": index of the
 *    snapshot at peak use, "granule": the unit chunk sizes are counted in,
 *    "snapshots": [{"op", "live", "hw", "base": the first chunk's address
 *                   in hex (the region's addresses in that replay),
 *                   "n": chunks, "c": the chunks, packed (below)}],
 *    "curve": [[op, live payload, high water], ...]}
 *
 * A snapshot's chunks are what makes a page big (a heap of 100,000 blocks
 * at 40 moments is 4 million chunks), so they are not JSON numbers but
 * base64 of unsigned LEB128 varints, in address order: per chunk
 * (size / granule) * 2 + 1 for a free chunk, + 0 for a live one, and for
 * a live one then its trace id as the zigzag-coded difference from the
 * previous live chunk's id (the first from -1): most chunks take 3 to 5
 * characters, where JSON numbers would take 10 to 14. Offsets are not stored: the chunks tile
 * the region, so each offset is the sum of the sizes before it.
 * html_sites.c adds a recording's call-site views to its trace.
 */
#define _GNU_SOURCE
#include "sites.h"
#include "trace.h"
#include "trace_format.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

extern const unsigned char heapmap_page[];
extern const size_t heapmap_page_size;

/* Above this many chunk entries in all, snapshots are thinned (every
 * k-th kept, and always the peak and the last) so the page stays quick to
 * load: at about 4 characters a chunk, some 8 MiB of snapshots at most. */
#define HTML_MAX_CHUNK_ENTRIES 2000000u

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

/* The largest power of two up to 16 that divides every chunk size. */
static uint64_t granule_of(const replay_result *r)
{
    uint64_t all = 16;
    for (size_t s = 0; s < r->num_snapshots; s++)
        for (size_t i = 0; i < r->snapshots[s].num_chunks; i++)
            all |= r->snapshots[s].chunks[i].size;
    return all & (~all + 1);
}

/* Base64 written as bytes come, three bytes to four characters. */
typedef struct base64_out {
    FILE *out;
    unsigned char held[3];
    int num_held;
} base64_out;

static void base64_flush(base64_out *b)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (b->num_held == 0)
        return;
    unsigned char x = b->held[0], y = b->num_held > 1 ? b->held[1] : 0,
                  z = b->num_held > 2 ? b->held[2] : 0;
    char text[4] = {digits[x >> 2], digits[(x & 3) << 4 | y >> 4],
                    b->num_held > 1 ? digits[(y & 15) << 2 | z >> 6] : '=',
                    b->num_held > 2 ? digits[z & 63] : '='};
    fwrite(text, 1, 4, b->out);
    b->num_held = 0;
}

static void base64_varint(base64_out *b, uint64_t v)
{
    unsigned char bytes[10];
    unsigned char *end = tf_put_varint(bytes, v);
    for (unsigned char *p = bytes; p < end; p++) {
        b->held[b->num_held++] = *p;
        if (b->num_held == 3)
            base64_flush(b);
    }
}

static uint64_t zigzag(int64_t v) { return v < 0 ? ((uint64_t)(-(v + 1)) << 1) | 1 : (uint64_t)v << 1; }

static void write_chunks(FILE *out, const heap_snapshot *snap, uint64_t granule)
{
    base64_out b = {out, {0, 0, 0}, 0};
    int64_t last_id = -1;
    for (size_t i = 0; i < snap->num_chunks; i++) {
        const map_chunk *c = &snap->chunks[i];
        base64_varint(&b, c->size / granule * 2 + (c->used ? 0 : 1));
        if (c->used) {
            base64_varint(&b, zigzag(c->id - last_id));
            last_id = c->id;
        }
    }
    base64_flush(&b);
}

static int write_trace_data(FILE *out, const trace_report *rep, size_t stride)
{
    const replay_result *r = &rep->result;
    uint64_t granule = granule_of(r);
    fprintf(out, "{\"name\": ");
    json_string(out, rep->t->name);
    fprintf(out, ", \"ops\": %zu, \"header\": %u, \"granule\": %" PRIu64 ", \"snapshots\": [",
            rep->t->num_ops, header_of(r), granule);
    size_t written = 0, peak_at = 0;
    for (size_t s = 0; s < r->num_snapshots; s++) {
        if (s % stride != 0 && s != r->peak_snapshot && s != r->num_snapshots - 1)
            continue;
        if (s == r->peak_snapshot)
            peak_at = written;
        const heap_snapshot *snap = &r->snapshots[s];
        fprintf(out, "%s\n{", written ? "," : "");
        /* A recording's ops are its steps (convert.c numbers them by
         * step), so the page can match snapshots with its moments. */
        if (rep->sites != NULL)
            fprintf(out, "\"step\": %" PRIu32 ", ", rep->t->ops[snap->op_index].line - 1);
        fprintf(out,
                "\"op\": %zu, \"live\": %" PRIu64 ", \"hw\": %" PRIu64
                ", \"base\": \"%" PRIx64 "\", \"n\": %zu, \"c\": \"",
                snap->op_index, snap->live_payload, snap->high_water, snap->base,
                snap->num_chunks);
        write_chunks(out, snap, granule);
        fprintf(out, "\"}");
        written++;
    }
    fprintf(out, "],\n\"peak\": %zu, \"curve\": [", peak_at);
    for (size_t i = 0; i < r->num_curve; i++)
        fprintf(out, "%s[%zu,%" PRIu64 ",%" PRIu64 "]", i ? "," : "", r->curve[i].op_index,
                r->curve[i].live_payload, r->curve[i].high_water);
    fprintf(out, "]");
    if (rep->sites != NULL) {
        fprintf(out, ",\n\"sites\": ");
        if (html_write_sites(out, rep->sites) != 0)
            return -1;
    }
    fprintf(out, "}");
    return 0;
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
        if (write_trace_data(out, &reports[i], stride) != 0)
            return -1;
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
