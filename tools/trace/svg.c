/*
 * The heap map as SVG: the region at the moment of peak use.
 *
 *   0 KiB   |hdr|used......|hdr|free....|h|u|h|u|hdr|used.............|
 *   64 KiB  |...used (cont.)|h|free......................|hdr|used.....|
 *   128 KiB |hdr|used...| h|free..........:   untouched (above the     |
 *                                         ^    high-water mark)        |
 *                                    high water
 *
 * The region folds into rows of a fixed number of bytes (a power of two,
 * chosen so there are at most MAX_ROWS rows), linear within a row, so
 * distances are true. A chunk that runs past a row's end continues on the
 * next. Chunks too small for a pixel are still drawn one pixel wide (a
 * hairline), so none disappears; dense stretches of tiny chunks read as a
 * band of hairlines. Each chunk is one <path> (class "chunk used", "chunk
 * used alt" for every other live block, or "chunk free") whose subpaths
 * are its pieces on each row; headers are drawn on top, darker, in one
 * <path class="headers">.
 */
#define _GNU_SOURCE
#include "trace.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define MAX_ROWS 32
#define ROW_WIDTH 1024.0
#define ROW_HEIGHT 20.0
#define ROW_GAP 8.0
#define LEFT 84.0
#define TOP 96.0

typedef struct map_layout {
    uint64_t row_bytes;
    uint64_t rows;
    uint64_t extent; /* rows * row_bytes */
    double scale;    /* pixels per byte */
} map_layout;

static map_layout layout_for(uint64_t high_water)
{
    map_layout l;
    uint64_t need = high_water ? high_water : 1;
    l.row_bytes = 256;
    while (l.row_bytes * MAX_ROWS < need)
        l.row_bytes *= 2;
    l.rows = (need + l.row_bytes - 1) / l.row_bytes;
    l.extent = l.rows * l.row_bytes;
    l.scale = ROW_WIDTH / (double)l.row_bytes;
    return l;
}

/* Appends the subpaths covering [from, to) (clipped to the layout) to
 * out, each piece at least `min_px` wide. */
static void path_pieces(FILE *out, const map_layout *l, uint64_t from, uint64_t to,
                        double min_px, double inset)
{
    if (to > l->extent)
        to = l->extent;
    while (from < to) {
        uint64_t row = from / l->row_bytes;
        uint64_t row_end = (row + 1) * l->row_bytes;
        uint64_t piece_end = to < row_end ? to : row_end;
        double x = LEFT + (double)(from - row * l->row_bytes) * l->scale;
        double w = (double)(piece_end - from) * l->scale;
        if (w < min_px)
            w = min_px;
        double y = TOP + (double)row * (ROW_HEIGHT + ROW_GAP) + inset;
        fprintf(out, "M%.2f %.1fh%.2fv%.1fh%.2fz", x, y, w, ROW_HEIGHT - 2 * inset, -w);
        from = piece_end;
    }
}

long svg_write(FILE *out, const trace_report *report)
{
    const replay_result *res = &report->result;
    if (res->num_snapshots == 0) {
        errno = EINVAL;
        return -1;
    }
    const heap_snapshot *snap = &res->snapshots[res->peak_snapshot];
    map_layout l = layout_for(snap->high_water);
    double height = TOP + (double)l.rows * (ROW_HEIGHT + ROW_GAP) + 40;
    double width = LEFT + ROW_WIDTH + 24;
    char a[32], b[32], c[32], d[32];

    uint64_t used_chunks = 0, free_chunks = 0, free_below = 0, largest_free = 0;
    for (size_t i = 0; i < snap->num_chunks; i++) {
        const map_chunk *ch = &snap->chunks[i];
        if (ch->used) {
            used_chunks++;
        } else {
            free_chunks++;
            if (ch->offset < snap->high_water) {
                uint64_t end = ch->offset + ch->size;
                uint64_t below = (end < snap->high_water ? end : snap->high_water) - ch->offset;
                free_below += below;
                if (below > largest_free)
                    largest_free = below;
            }
        }
    }

    fprintf(out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
            width, height, width, height);
    fprintf(out, "<title>brisk heap map of %s at peak use</title>\n", report->t->name);
    fprintf(out,
            "<style>\n"
            " .chunk.used { fill: #4e79a7; }\n"
            " .chunk.used.alt { fill: #6b93bd; }\n"
            " .chunk.free { fill: #f2b447; }\n"
            " .headers { fill: #14213d; }\n"
            " .untouched { fill: url(#hatch); }\n"
            " .label { fill: #333; font-size: 11px; }\n"
            " .title { fill: #111; font-size: 16px; font-weight: bold; }\n"
            " .stats { fill: #333; font-size: 12px; }\n"
            " .hw { stroke: #d62828; stroke-width: 2; }\n"
            "</style>\n"
            "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
            "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#eef0f3\"/>"
            "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#c9ced6\" stroke-width=\"2\"/>"
            "</pattern></defs>\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n");
    fprintf(out,
            "<text class=\"title\" x=\"%.0f\" y=\"24\">%s: the heap at peak use "
            "(after op %zu of %zu)</text>\n",
            LEFT, report->t->name, snap->op_index + 1, report->t->num_ops);
    fprintf(out,
            "<text class=\"stats\" x=\"%.0f\" y=\"44\">live payload %s in %" PRIu64
            " blocks; %" PRIu64 " free chunks (%s below the high-water mark, largest %s); "
            "high water %s; utilization %.1f%%</text>\n",
            LEFT, format_bytes(a, sizeof a, snap->live_payload), used_chunks, free_chunks,
            format_bytes(b, sizeof b, free_below), format_bytes(c, sizeof c, largest_free),
            format_bytes(d, sizeof d, snap->high_water),
            snap->high_water ? 100.0 * (double)snap->live_payload / (double)snap->high_water
                             : 0.0);
    /* Legend. */
    double lx = LEFT;
    const char *const names[4] = {"live block", "free chunk", "chunk header",
                                  "untouched (above high water)"};
    const char *const fills[4] = {"#4e79a7", "#f2b447", "#14213d", "url(#hatch)"};
    for (int i = 0; i < 4; i++) {
        fprintf(out, "<rect x=\"%.0f\" y=\"58\" width=\"14\" height=\"14\" fill=\"%s\" "
                     "stroke=\"#999\" stroke-width=\"0.5\"/><text class=\"label\" x=\"%.0f\" "
                     "y=\"69\">%s</text>\n",
                lx, fills[i], lx + 19, names[i]);
        lx += 19 + 7.0 * (double)strlen(names[i]) + 24;
    }
    fprintf(out, "<text class=\"label\" x=\"%.0f\" y=\"69\">one row = %s</text>\n", lx,
            format_bytes(a, sizeof a, l.row_bytes));
    for (uint64_t row = 0; row < l.rows; row++) {
        double y = TOP + (double)row * (ROW_HEIGHT + ROW_GAP);
        fprintf(out,
                "<text class=\"label\" x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                LEFT - 8, y + ROW_HEIGHT / 2 + 4, format_bytes(a, sizeof a, row * l.row_bytes));
        fprintf(out, "<rect x=\"%.0f\" y=\"%.1f\" width=\"%.0f\" height=\"%.0f\" fill=\"#f7f7f7\"/>\n",
                LEFT, y, ROW_WIDTH, ROW_HEIGHT);
    }

    /* The chunks: one path each. */
    /* Neighbouring live blocks alternate two blues ("alt"), so where one
     * ends and the next begins shows even where headers are hairlines. */
    long shapes = 0, used_seen = 0;
    fprintf(out, "<g id=\"chunks\">\n");
    for (size_t i = 0; i < snap->num_chunks; i++) {
        const map_chunk *ch = &snap->chunks[i];
        if (ch->offset >= l.extent)
            continue;
        fprintf(out, "<path class=\"chunk %s\" d=\"",
                !ch->used ? "free" : used_seen++ % 2 ? "used alt" : "used");
        path_pieces(out, &l, ch->offset, ch->offset + ch->size, 1.0, 0);
        fprintf(out, "\"><title>%s chunk at offset %" PRIu64 " (0x%" PRIx64 "), %s",
                ch->used ? "live" : "free", ch->offset, ch->offset,
                format_bytes(a, sizeof a, ch->size));
        if (ch->used && ch->id >= 0)
            fprintf(out, ", trace id %lld", (long long)ch->id);
        fprintf(out, "</title></path>\n");
        shapes++;
    }
    fprintf(out, "</g>\n<path class=\"headers\" d=\"");
    for (size_t i = 0; i < snap->num_chunks; i++) {
        const map_chunk *ch = &snap->chunks[i];
        if (ch->offset < l.extent && ch->header > 0)
            path_pieces(out, &l, ch->offset, ch->offset + ch->header, 0.4, 0);
    }
    fprintf(out, "\"/>\n");
    /* Above the high-water mark: never handed out. */
    if (snap->high_water < l.extent) {
        fprintf(out, "<path class=\"untouched\" d=\"");
        path_pieces(out, &l, snap->high_water, l.extent, 0, 0);
        fprintf(out, "\"/>\n");
    }
    uint64_t hw_row = snap->high_water / l.row_bytes;
    if (hw_row >= l.rows)
        hw_row = l.rows - 1;
    double hx = LEFT + (double)(snap->high_water - hw_row * l.row_bytes) * l.scale;
    double hy = TOP + (double)hw_row * (ROW_HEIGHT + ROW_GAP);
    fprintf(out, "<line class=\"hw\" x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\"/>\n", hx,
            hy - 4, hx, hy + ROW_HEIGHT + 4);
    fprintf(out, "<text class=\"label\" x=\"%.2f\" y=\"%.1f\" fill=\"#d62828\" "
                 "text-anchor=\"%s\">high water %s</text>\n",
            hx, hy + ROW_HEIGHT + 16, hx > LEFT + ROW_WIDTH - 120 ? "end" : "start",
            format_bytes(a, sizeof a, snap->high_water));
    fprintf(out, "</svg>\n");
    if (ferror(out)) {
        if (errno == 0)
            errno = EIO;
        return -1;
    }
    return shapes;
}
