/*
 * Recordings and malloc-lab traces, both ways, and `brisk-trace convert`.
 *
 * A recording becomes a trace of its blocks (blocks.c): every allocation
 * a fresh id, a realloc an `r` of its block's id, frees of blocks from
 * before the recording left out, and a block whose free went unrecorded
 * freed where its address was handed out again. The call stacks, threads
 * and times have no place in the text format and are dropped.
 *
 * A trace becomes a recording with one thread, no stacks, op i at i ns,
 * and block `id` at the made-up address (id + 1) * 16.
 */
#define _GNU_SOURCE
#include "trace.h"
#include "trace_format.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ASSUMED_PAGE 4096u

/* The alignment glibc honours for an aligned call, as the text records it
 * (0: the default). */
static uint32_t honoured_alignment(const rec_event *e)
{
    uint64_t want = e->kind == TF_VALLOC || e->kind == TF_PVALLOC ? ASSUMED_PAGE : e->alignment;
    uint64_t a = 16;
    while (a < want && a < ((uint64_t)1 << 30))
        a *= 2;
    return a > 16 ? (uint32_t)a : 0;
}

int recording_to_trace(const recording *r, trace *out, char *err, size_t err_size)
{
    if (r->profile_rate != 0) {
        snprintf(err, err_size,
                 "%s: a sampled profile (libbrisk's BRISK_OPTIONS=profile) holds no calls to "
                 "replay or convert: read it with `brisk-trace report`",
                 r->path);
        return -1;
    }
    rec_blocks b;
    if (recording_blocks(r, &b, err, err_size) != 0)
        return -1;
    uint32_t *id = malloc((b.count ? b.count : 1) * sizeof *id);
    unsigned char *continued = calloc(b.count ? b.count : 1, 1);
    trace_op *ops = malloc((2 * r->num_steps + 1) * sizeof *ops);
    if (id == NULL || continued == NULL || ops == NULL) {
        free(id);
        free(continued);
        free(ops);
        rec_blocks_free(&b);
        snprintf(err, err_size, "%s: out of memory converting %zu events", r->path,
                 r->num_events);
        return -1;
    }
    for (size_t i = 0; i < b.count; i++)
        if (b.blocks[i].prev != REC_NONE)
            continued[b.blocks[i].prev] = 1;
    uint32_t next_id = 0;
    size_t n = 0;
    for (size_t i = 0; i < r->num_steps; i++) {
        uint32_t ended = b.step_ended[i], made = b.step_made[i];
        if (ended != REC_NONE && !continued[ended])
            ops[n++] = (trace_op){0, id[ended], 0, (uint32_t)(i + 1), OP_FREE};
        if (made != REC_NONE) {
            const rec_block *blk = &b.blocks[made];
            const rec_event *e = &r->events[blk->event];
            uint64_t size = blk->size;
            if (e->kind == TF_PVALLOC)
                size = size == 0 ? ASSUMED_PAGE : (size + ASSUMED_PAGE - 1) / ASSUMED_PAGE * ASSUMED_PAGE;
            if (size > TRACE_MAX_BYTES)
                size = TRACE_MAX_BYTES;
            if (blk->prev != REC_NONE) {
                id[made] = id[blk->prev];
                ops[n++] = (trace_op){size, id[made], 0, (uint32_t)(i + 1), OP_REALLOC};
            } else {
                id[made] = next_id++;
                ops[n++] = (trace_op){size, id[made], honoured_alignment(e), (uint32_t)(i + 1),
                                      OP_ALLOC};
            }
        }
    }
    memset(out, 0, sizeof *out);
    out->suggested_heap_size = b.peak_bytes;
    out->num_ids = next_id;
    out->num_ops = n;
    out->weight = 1;
    out->ops = ops;
    out->path = strdup(r->path);
    const char *base = strrchr(r->path, '/');
    base = base ? base + 1 : r->path;
    const char *dot = strrchr(base, '.');
    out->name = strndup(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
    free(id);
    free(continued);
    rec_blocks_free(&b);
    if (out->path == NULL || out->name == NULL || next_id > TRACE_MAX_IDS) {
        trace_free(out);
        snprintf(err, err_size, "%s: %s", r->path,
                 next_id > TRACE_MAX_IDS ? "more blocks than a malloc-lab trace may hold"
                                         : "out of memory");
        return -1;
    }
    return 0;
}

int recording_finish(recording *r, char *err, size_t err_size);

int recording_from_trace(const trace *t, recording *out, char *err, size_t err_size)
{
    recording *r = out;
    memset(r, 0, sizeof *r);
    r->path = strdup(t->path);
    r->command = strdup("");
    r->maps = strdup("");
    r->events = malloc((t->num_ops ? t->num_ops : 1) * sizeof *r->events);
    r->stack_first = calloc(1, sizeof *r->stack_first);
    r->stack_depth = calloc(1, sizeof *r->stack_depth);
    r->frames = malloc(sizeof *r->frames);
    r->thread_tids = calloc(1, sizeof *r->thread_tids);
    if (!r->path || !r->command || !r->maps || !r->events || !r->stack_first ||
        !r->stack_depth || !r->frames || !r->thread_tids) {
        recording_free(r);
        snprintf(err, err_size, "%s: out of memory", t->path);
        return -1;
    }
    r->num_stacks = 1;
    r->num_threads = 1;
    for (size_t i = 0; i < t->num_ops; i++) {
        const trace_op *op = &t->ops[i];
        rec_event *e = &r->events[i];
        memset(e, 0, sizeof *e);
        e->seq = 2 * (uint64_t)i + 2;
        e->time_ns = i;
        uint64_t addr = ((uint64_t)op->id + 1) * 16;
        if (op->kind == OP_ALLOC) {
            e->kind = op->alignment ? TF_POSIX_MEMALIGN : TF_MALLOC;
            e->alignment = op->alignment;
            e->addr = addr;
            e->size = op->size;
        } else if (op->kind == OP_REALLOC) {
            e->kind = TF_REALLOC;
            e->seq_release = e->seq - 1;
            e->old_addr = e->addr = addr;
            e->size = op->size;
        } else {
            e->kind = TF_FREE;
            e->addr = addr;
        }
    }
    r->num_events = t->num_ops;
    if (recording_finish(r, err, err_size) != 0) {
        recording_free(r);
        return -1;
    }
    return 0;
}

int trace_write_text(FILE *out, const trace *t)
{
    fprintf(out, "%llu\n%u\n%zu\n%llu\n", (unsigned long long)t->suggested_heap_size, t->num_ids,
            t->num_ops, (unsigned long long)t->weight);
    for (size_t i = 0; i < t->num_ops; i++) {
        const trace_op *op = &t->ops[i];
        if (op->kind == OP_FREE)
            fprintf(out, "f %u\n", op->id);
        else if (op->kind == OP_ALLOC && op->alignment)
            fprintf(out, "a %u %llu %u\n", op->id, (unsigned long long)op->size, op->alignment);
        else
            fprintf(out, "%c %u %llu\n", op->kind, op->id, (unsigned long long)op->size);
    }
    return ferror(out) ? -1 : 0;
}

static const char convert_usage[] =
    "usage: brisk-trace convert [--to text | recording | raw] [--max-ops N] IN OUT\n"
    "\n"
    "Converts a recording (what `record` writes) to a malloc-lab text trace,\n"
    "or a text trace to a recording (without stacks or threads); `raw` writes\n"
    "a recording unpacked, as the recorder streams it. Without --to, IN is\n"
    "converted to the other format (text or recording). --max-ops N keeps the\n"
    "first N ops of a text trace written (a prefix is a valid trace).\n";

int convert_main(int argc, char **argv)
{
    const char *to = NULL, *in = NULL, *outp = NULL;
    unsigned long long max_ops = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(convert_usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--to") == 0) {
            if (i + 1 >= argc || (strcmp(argv[i + 1], "text") != 0 &&
                                  strcmp(argv[i + 1], "recording") != 0 &&
                                  strcmp(argv[i + 1], "raw") != 0)) {
                fprintf(stderr, "brisk-trace: convert: --to needs 'text', 'recording' or 'raw'\n\n%s",
                        convert_usage);
                return 2;
            }
            to = argv[++i];
        } else if (strcmp(argv[i], "--max-ops") == 0) {
            char *end;
            const char *v = i + 1 < argc ? argv[i + 1] : "";
            max_ops = strtoull(v, &end, 10);
            if (*v < '1' || *v > '9' || *end != '\0') {
                fprintf(stderr, "brisk-trace: convert: --max-ops needs a positive number, got '%s'\n\n%s",
                        v, convert_usage);
                return 2;
            }
            i++;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "brisk-trace: convert: unknown option '%s'\n\n%s", argv[i],
                    convert_usage);
            return 2;
        } else if (in == NULL) {
            in = argv[i];
        } else if (outp == NULL) {
            outp = argv[i];
        } else {
            fprintf(stderr, "brisk-trace: convert: unexpected '%s' (one IN and one OUT)\n\n%s",
                    argv[i], convert_usage);
            return 2;
        }
    }
    if (in == NULL || outp == NULL) {
        fprintf(stderr, "brisk-trace: convert: needs IN and OUT\n\n%s", convert_usage);
        return 2;
    }
    char err[1024] = "";
    recording r;
    if (recording_load(in, &r, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    unsigned char magic[TF_MAGIC_BYTES] = {0};
    size_t got = trace_read_head(in, magic, sizeof magic);
    int in_binary = recording_is_binary(magic, got) || recording_is_packed(magic, got);
    int to_text = to ? strcmp(to, "text") == 0 : in_binary;
    FILE *out = fopen(outp, "wb");
    if (out == NULL) {
        fprintf(stderr, "brisk-trace convert: cannot write %s: %s\n", outp, strerror(errno));
        recording_free(&r);
        return 1;
    }
    int rc = 0;
    if (to_text) {
        trace t;
        if (recording_to_trace(&r, &t, err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            rc = 1;
        } else {
            if (max_ops != 0 && t.num_ops > max_ops) {
                /* A prefix: ids run in allocation order, so the ids it
                 * uses are those below the first one it does not. */
                t.num_ops = (size_t)max_ops;
                uint32_t ids = 0;
                for (size_t i = 0; i < t.num_ops; i++)
                    if (t.ops[i].kind == OP_ALLOC && t.ops[i].id + 1 > ids)
                        ids = t.ops[i].id + 1;
                t.num_ids = ids;
            }
            rc = trace_write_text(out, &t) != 0;
            if (rc == 0)
                fprintf(stderr, "brisk-trace: wrote %zu ops (%u ids) to %s\n", t.num_ops,
                        t.num_ids, outp);
            trace_free(&t);
        }
    } else if (to != NULL && strcmp(to, "raw") == 0) {
        rc = recording_write(out, &r) != 0;
        if (rc == 0)
            fprintf(stderr, "brisk-trace: wrote a raw recording of %zu events to %s\n",
                    r.num_events, outp);
    } else if (r.profile_rate != 0) {
        snprintf(err, sizeof err,
                 "%s: a sampled profile cannot be packed (packed recordings hold no profile "
                 "records): convert --to raw copies it",
                 in);
        fprintf(stderr, "%s\n", err);
        rc = 1;
    } else {
        rc = recording_pack(out, &r, err, sizeof err) != 0;
        if (rc == 0)
            fprintf(stderr, "brisk-trace: wrote a recording of %zu events to %s\n",
                    r.num_events, outp);
    }
    if (fclose(out) != 0)
        rc = 1;
    if (rc != 0 && strstr(err, in) == NULL)
        fprintf(stderr, "brisk-trace convert: cannot write %s: %s\n", outp, strerror(errno));
    recording_free(&r);
    return rc;
}
