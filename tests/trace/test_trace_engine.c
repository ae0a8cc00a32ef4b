/*
 * Tests of brisk-trace's engine: the parser on valid input, the checked
 * replay through brisk's heap and the system malloc, and, above all, that
 * the replay checks catch a broken allocator (overlapping blocks, a
 * corrupted byte, misalignment, a realloc that drops contents, a failing
 * self-check, a walk whose chunks do not tile).
 */
#include "check.h"

#include "trace.h"
#include "brisk.h"

#include <stdlib.h>
#include <string.h>

/* ---- a deliberately broken allocator -------------------------------------
 * A bump allocator over a static buffer, so the test controls addresses;
 * `broken_mode` selects one fault. */
enum {
    FAULT_NONE,
    FAULT_OVERLAP,        /* the second block overlaps the first */
    FAULT_CORRUPT,        /* a free scribbles one byte into another block */
    FAULT_MISALIGN,       /* blocks 8 bytes off alignment */
    FAULT_REALLOC_NOCOPY, /* realloc moves without copying */
    FAULT_BAD_CHECK,      /* the self-check reports damage */
    FAULT_BAD_WALK,       /* the walk reports a gap between chunks */
};

static int broken_mode;
static _Alignas(64) unsigned char broken_buffer[1 << 20];
static size_t broken_used;
static unsigned broken_allocs;
static unsigned char *broken_last[2]; /* the two latest blocks */
static size_t broken_last_size;

static void *broken_create(size_t capacity, char *err, size_t err_size)
{
    (void)capacity;
    (void)err;
    (void)err_size;
    memset(broken_buffer, 0, sizeof broken_buffer); /* no leftovers of a former run */
    broken_used = 0;
    broken_allocs = 0;
    broken_last[0] = broken_last[1] = NULL;
    return broken_buffer;
}

static void broken_destroy(void *state) { (void)state; }

static void *broken_alloc(void *state, size_t size, size_t alignment)
{
    (void)state;
    size_t align = alignment > 16 ? alignment : 16;
    size_t at = (broken_used + align - 1) / align * align;
    if (at + size + 64 > sizeof broken_buffer)
        return NULL;
    unsigned char *p = broken_buffer + at;
    broken_used = at + (size ? size : 1);
    broken_allocs++;
    if (broken_mode == FAULT_OVERLAP && broken_allocs == 2 && broken_last[0] != NULL)
        p = broken_last[0] + 16; /* inside the previous block */
    if (broken_mode == FAULT_MISALIGN)
        p += 8;
    broken_last[1] = broken_last[0];
    broken_last[0] = p;
    broken_last_size = size;
    return p;
}

static void *broken_realloc(void *state, void *ptr, size_t size)
{
    unsigned char *q = broken_alloc(state, size, 0);
    if (q == NULL || broken_mode == FAULT_REALLOC_NOCOPY)
        return q;
    /* Blocks only move up, so the old block lies within [ptr, q). */
    size_t room = (size_t)(q - (unsigned char *)ptr);
    memmove(q, ptr, size < room ? size : room);
    return q;
}

static void broken_free(void *state, void *ptr)
{
    (void)state;
    (void)ptr;
    if (broken_mode == FAULT_CORRUPT && broken_last[0] != NULL && broken_last[0] != ptr &&
        broken_last_size > 3)
        broken_last[0][3] ^= 0x5a;
}

static int broken_check(void *state)
{
    (void)state;
    return broken_mode == FAULT_BAD_CHECK ? -1 : 0;
}

static uint64_t broken_high_water(void *state)
{
    (void)state;
    return broken_used;
}

static int broken_walk(void *state, chunk_sink sink, void *context)
{
    (void)state;
    /* One used chunk for everything handed out, then the rest free; the
     * bad walk leaves a gap. */
    sink(context, 0, broken_used, 0, 1, NULL);
    uint64_t next = broken_used + (broken_mode == FAULT_BAD_WALK ? 16 : 0);
    sink(context, next, sizeof broken_buffer - next, 0, 0, NULL);
    return 0;
}

static const replay_allocator backend_broken = {
    .name = "broken",
    .create = broken_create,
    .destroy = broken_destroy,
    .alloc = broken_alloc,
    .realloc = broken_realloc,
    .free = broken_free,
    .check = broken_check,
    .high_water = broken_high_water,
    .walk = broken_walk,
    .free_leftovers = 0,
};

/* ---- helpers ------------------------------------------------------------------ */

static const char sample_text[] =
    "4096\n"
    "4\n"
    "9\n"
    "1\n"
    "a 0 100\n"
    "a 1 2000\n"
    "a 2 48 64\n"
    "f 1\n"
    "r 0 3000\n"
    "a 3 10\n"
    "r 2 8\n"
    "f 0\n"
    "a 1 0\n";

static void parse_sample(trace *t)
{
    char err[512];
    int rc = trace_parse_text("sample.rep", sample_text, sizeof sample_text - 1, t, err,
                              sizeof err);
    if (rc != 0)
        fprintf(stderr, "unexpected parse error: %s\n", err);
    REQUIRE(rc == 0);
}

static void test_parse_valid(void)
{
    trace t;
    parse_sample(&t);
    CHECK_EQ(t.suggested_heap_size, 4096);
    CHECK_EQ(t.num_ids, 4);
    CHECK_EQ(t.num_ops, 9);
    CHECK_EQ(t.weight, 1);
    CHECK(strcmp(t.name, "sample") == 0);
    CHECK_EQ(t.ops[0].kind, 'a');
    CHECK_EQ(t.ops[0].size, 100);
    CHECK_EQ(t.ops[0].line, 5);
    CHECK_EQ(t.ops[2].alignment, 64);
    CHECK_EQ(t.ops[3].kind, 'f');
    CHECK_EQ(t.ops[3].id, 1);
    CHECK_EQ(t.ops[4].kind, 'r');
    CHECK_EQ(t.ops[4].size, 3000);
    CHECK_EQ(t.ops[8].size, 0);
    trace_free(&t);

    /* Blank lines and CRLF endings are accepted; lines still count. */
    const char crlf[] = "0\r\n1\r\n\r\n2\r\n1\r\na 0 5\r\n\r\nf 0\r\n";
    char err[512];
    CHECK_EQ(trace_parse_text("crlf.rep", crlf, sizeof crlf - 1, &t, err, sizeof err), 0);
    CHECK_EQ(t.num_ops, 2);
    CHECK_EQ(t.ops[1].line, 8);
    trace_free(&t);

    /* A message names the file and line. */
    const char bad[] = "0\n1\n1\n1\nx 0 5\n";
    CHECK_EQ(trace_parse_text("bad.rep", bad, sizeof bad - 1, &t, err, sizeof err), -1);
    CHECK_MSG(strcmp(err, "bad.rep:5: unknown op 'x' (expected a, r or f)") == 0, "got %s", err);
}

static void test_replay_brisk_and_system(void)
{
    trace t;
    parse_sample(&t);
    char err[512];
    replay_options opt = {1 << 20, 1, 5, 50};
    replay_result r;
    int rc = replay_checked(&t, &backend_brisk, &opt, &r, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        /* Live payload after each op, by hand: 100, 2100, 2148, 148,
         * 3048, 3058 (the peak, op 5), 3018, 18, 18. */
        CHECK_EQ(r.peak_live_payload, 3058);
        CHECK_EQ(r.peak_op_index, 5);
        CHECK(r.high_water >= 3058);
        /* The footprint adds the bookkeeping a heap of that reach needs. */
        CHECK_EQ(r.footprint, brisk_heap_region_size((size_t)r.high_water, 0));
        CHECK(r.footprint > r.high_water);
        CHECK(r.checks_run >= 9);
        CHECK(r.num_snapshots >= 5);
        CHECK_EQ(r.snapshots[r.peak_snapshot].op_index, 5);
        CHECK_EQ(r.snapshots[r.peak_snapshot].live_payload, 3058);
        CHECK_EQ(r.num_curve, 50);
        /* The snapshot at the peak holds exactly the three live blocks. */
        const heap_snapshot *s = &r.snapshots[r.peak_snapshot];
        size_t used = 0;
        int saw_id3 = 0;
        for (size_t i = 0; i < s->num_chunks; i++) {
            used += s->chunks[i].used;
            if (s->chunks[i].used && s->chunks[i].id == 3)
                saw_id3 = 1;
        }
        CHECK_EQ(used, 3);
        CHECK(saw_id3);

        FILE *svg = tmpfile();
        REQUIRE(svg != NULL);
        trace_report rep;
        memset(&rep, 0, sizeof rep);
        rep.t = &t;
        rep.result = r;
        rep.ok = 1;
        CHECK_EQ(svg_write(svg, &rep), (long)s->num_chunks);
        fclose(svg);
        FILE *html = tmpfile();
        REQUIRE(html != NULL);
        CHECK_EQ(html_write(html, &rep, 1), 0);
        CHECK(ftell(html) > 1000);
        fclose(html);
        replay_result_free(&r);
    }
    replay_options plain = {0, 0, 0, 0};
    rc = replay_checked(&t, &backend_system, &plain, &r, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    replay_result_free(&r);

    CHECK(replay_timed(&t, &backend_brisk, 1 << 20, err, sizeof err) > 0);
    CHECK(replay_timed(&t, &backend_system, 0, err, sizeof err) > 0);
    trace_free(&t);
}

/* Runs the sample through the broken allocator in `mode`; returns the
 * replay's message ("" when it passed). */
static const char *replay_broken(int mode)
{
    static char err[512];
    trace t;
    parse_sample(&t);
    broken_mode = mode;
    replay_options opt = {1 << 20, 1, mode == FAULT_BAD_WALK ? 3 : 0, 0};
    replay_result r;
    err[0] = '\0';
    if (replay_checked(&t, &backend_broken, &opt, &r, err, sizeof err) == 0)
        replay_result_free(&r);
    trace_free(&t);
    return err;
}

static void test_checks_catch_broken_allocators(void)
{
    const char *msg = replay_broken(FAULT_NONE);
    CHECK_MSG(msg[0] == '\0', "the sound bump allocator failed: %s", msg);

    msg = replay_broken(FAULT_OVERLAP);
    CHECK_MSG(strstr(msg, "sample.rep:6: alloc for id 1") && strstr(msg, "overlaps live id 0") &&
                  strstr(msg, "(allocator broken)"),
              "got \"%s\"", msg);

    msg = replay_broken(FAULT_CORRUPT);
    CHECK_MSG(strstr(msg, "contents of id 2 changed") && strstr(msg, "byte 3 of 48"),
              "got \"%s\"", msg);

    msg = replay_broken(FAULT_MISALIGN);
    CHECK_MSG(strstr(msg, "sample.rep:5: alloc for id 0") && strstr(msg, "not aligned to 16"),
              "got \"%s\"", msg);

    msg = replay_broken(FAULT_REALLOC_NOCOPY);
    CHECK_MSG(strstr(msg, "sample.rep:9: realloc of id 0 from 100 to 3000 bytes lost its contents"),
              "got \"%s\"", msg);

    msg = replay_broken(FAULT_BAD_CHECK);
    CHECK_MSG(strstr(msg, "sample.rep:5: the allocator's self-check failed after this op"),
              "got \"%s\"", msg);

    msg = replay_broken(FAULT_BAD_WALK);
    CHECK_MSG(strstr(msg, "heap walk: chunk 1 starts at offset"), "got \"%s\"", msg);
}

/* The brisk heap running out of room is a clear failure, not a crash. */
static void test_out_of_capacity(void)
{
    const char text[] = "0\n2\n2\n1\na 0 100000\na 1 100000\n";
    trace t;
    char err[512];
    REQUIRE(trace_parse_text("big.rep", text, sizeof text - 1, &t, err, sizeof err) == 0);
    replay_options opt = {64 * 1024, 0, 0, 0};
    replay_result r;
    int rc = replay_checked(&t, &backend_brisk, &opt, &r, err, sizeof err);
    CHECK_EQ(rc, -1);
    CHECK_MSG(strstr(err, "big.rep:5: alloc of 100000 bytes for id 0 returned NULL") &&
                  strstr(err, "raise --capacity"),
              "got \"%s\"", err);
    CHECK(replay_timed(&t, &backend_brisk, 64 * 1024, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "big.rep:5:") != NULL, "got \"%s\"", err);
    trace_free(&t);
}

int main(void)
{
    test_parse_valid();
    test_replay_brisk_and_system();
    test_checks_catch_broken_allocators();
    test_out_of_capacity();
    return check_finish("test_trace_engine");
}
