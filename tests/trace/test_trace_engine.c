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

/* ---- packing several threads' raw recording --------------------------- */

typedef struct raw_buf {
    unsigned char bytes[1 << 18];
    size_t len, chunk; /* chunk: where the open chunk's header is */
} raw_buf;

static void raw_varint(raw_buf *b, uint64_t v)
{
    while (v >= 0x80) {
        b->bytes[b->len++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    b->bytes[b->len++] = (unsigned char)v;
}

static void raw_u32(raw_buf *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b->bytes[b->len++] = (unsigned char)(v >> (8 * i));
}

static void raw_chunk(raw_buf *b, uint32_t tid)
{
    b->chunk = b->len;
    memcpy(b->bytes + b->len, "CHNK", 4);
    b->len += 4;
    raw_u32(b, 0); /* the payload's length, set by raw_chunk_end */
    raw_u32(b, tid);
    raw_u32(b, 0);
}

static void raw_chunk_end(raw_buf *b)
{
    uint32_t payload = (uint32_t)(b->len - b->chunk - 16);
    for (int i = 0; i < 4; i++)
        b->bytes[b->chunk + 4 + i] = (unsigned char)(payload >> (8 * i));
}

/* A raw recording of two threads, chunks A B A; `damaged`: A's second
 * chunk numbers its free like an earlier event. Thread A: malloc (seq 1),
 * realloc released at 2 and done at 4, free (6); thread B: malloc at 3 of
 * the address A's realloc let go at 2, free (5). */
static size_t two_threads(raw_buf *b, int damaged)
{
    memset(b, 0, sizeof *b);
    memcpy(b->bytes, "BRISKTRC", 8);
    b->len = 8;
    raw_u32(b, 2);
    raw_u32(b, 32);
    memset(b->bytes + b->len, 0, 16); /* pid, start_ns */
    b->len += 16;
    raw_chunk(b, 1);
    b->bytes[b->len++] = 0x40; /* a stack: id, frames, frame */
    raw_varint(b, 7), raw_varint(b, 1), raw_varint(b, 0x401234);
    /* Events: kind, seq delta, time delta, fields. */
    b->bytes[b->len++] = 1; /* malloc: addr size stack */
    raw_varint(b, 1), raw_varint(b, 1000), raw_varint(b, 0x100), raw_varint(b, 10), raw_varint(b, 7);
    b->bytes[b->len++] = 8; /* realloc: release-gap old new size stack */
    raw_varint(b, 3), raw_varint(b, 3000000), raw_varint(b, 2), raw_varint(b, 0x100);
    raw_varint(b, 0x300), raw_varint(b, 30), raw_varint(b, 0);
    raw_chunk_end(b);
    raw_chunk(b, 2);
    b->bytes[b->len++] = 1;
    raw_varint(b, 3), raw_varint(b, 2000000), raw_varint(b, 0x100), raw_varint(b, 20), raw_varint(b, 0);
    b->bytes[b->len++] = 10; /* free: addr stack */
    raw_varint(b, 2), raw_varint(b, 3000000), raw_varint(b, 0x100), raw_varint(b, 0);
    raw_chunk_end(b);
    raw_chunk(b, 1);
    b->bytes[b->len++] = 10;
    raw_varint(b, damaged ? 3 : 6), raw_varint(b, 6000000), raw_varint(b, 0x300), raw_varint(b, 0);
    b->bytes[b->len++] = 0x43; /* the end: events stacks flags */
    raw_varint(b, 5), raw_varint(b, 1), raw_varint(b, 0);
    raw_chunk_end(b);
    return b->len;
}

static unsigned char *file_bytes(FILE *f, size_t *len)
{
    fflush(f);
    long n = ftell(f);
    unsigned char *data = malloc(n > 0 ? (size_t)n : 1);
    rewind(f);
    *len = n > 0 ? fread(data, 1, (size_t)n, f) : 0;
    return data;
}

/* One thread's 12,000 events, packed as they are read. */
static size_t one_thread(raw_buf *b)
{
    memset(b, 0, sizeof *b);
    memcpy(b->bytes, "BRISKTRC", 8);
    b->len = 8;
    raw_u32(b, 2);
    raw_u32(b, 32);
    b->len += 16;
    raw_chunk(b, 9);
    b->bytes[b->len++] = 0x40; /* a stack (none would leave recording.c a NULL to sort) */
    raw_varint(b, 3), raw_varint(b, 1), raw_varint(b, 0x401234);
    for (unsigned i = 0; i < 6000; i++) {
        b->bytes[b->len++] = 1;
        raw_varint(b, 1), raw_varint(b, 40000), raw_varint(b, 0x1000 + (i % 50) * 0x100);
        raw_varint(b, i % 300 + 1), raw_varint(b, 0);
        b->bytes[b->len++] = 10;
        raw_varint(b, 1), raw_varint(b, 1000), raw_varint(b, 0x1000 + (i % 50) * 0x100);
        raw_varint(b, 0);
    }
    b->bytes[b->len++] = 0x43;
    raw_varint(b, 12000), raw_varint(b, 1), raw_varint(b, 0);
    raw_chunk_end(b);
    return b->len;
}

static int same_packing(const raw_buf *b, size_t len)
{
    char err[512];
    size_t counts[2];
    FILE *direct = tmpfile(), *loaded = tmpfile();
    recording r;
    int same = direct != NULL && loaded != NULL &&
               recording_pack_raw(direct, "x.btr", b->bytes, len, counts, err, sizeof err) == 0 &&
               recording_parse("x.btr", b->bytes, len, &r, err, sizeof err) == 0;
    if (same) {
        same = recording_pack(loaded, &r, err, sizeof err) == 0;
        recording_free(&r);
    }
    if (same) {
        size_t n_direct, n_loaded;
        unsigned char *x = file_bytes(direct, &n_direct), *y = file_bytes(loaded, &n_loaded);
        same = n_direct == n_loaded && memcmp(x, y, n_direct) == 0;
        free(x);
        free(y);
    }
    if (direct != NULL)
        fclose(direct);
    if (loaded != NULL)
        fclose(loaded);
    return same;
}

static void test_pack_several_threads(void)
{
    static raw_buf b;
    char err[512];
    size_t len = two_threads(&b, 0), counts[2];
    /* Packed straight from the bytes (merging the threads' events) and
     * from the loaded recording: the same file. */
    FILE *direct = tmpfile(), *loaded = tmpfile();
    REQUIRE(direct != NULL && loaded != NULL);
    int rc = recording_pack_raw(direct, "two.btr", b.bytes, len, counts, err, sizeof err);
    CHECK_MSG(rc == 0 && counts[0] == 5, "packs two threads: %d %s", rc, err);
    recording r;
    REQUIRE(recording_parse("two.btr", b.bytes, len, &r, err, sizeof err) == 0);
    CHECK(recording_pack(loaded, &r, err, sizeof err) == 0);
    size_t n_direct, n_loaded;
    unsigned char *a = file_bytes(direct, &n_direct), *c = file_bytes(loaded, &n_loaded);
    CHECK_MSG(n_direct == n_loaded && memcmp(a, c, n_direct) == 0,
              "the merge packs as the loaded recording does (%zu and %zu bytes)", n_direct,
              n_loaded);
    recording back;
    CHECK_MSG(recording_unpack("two.btr", a, n_direct, &back, err, sizeof err) == 0, "%s", err);
    static const uint8_t kinds[5] = {1, 1, 8, 10, 10};
    static const uint32_t threads[5] = {0, 1, 0, 1, 0};
    static const uint64_t times_ms[5] = {0, 2, 3, 5, 6};
    CHECK_EQ(back.num_events, 5);
    for (size_t i = 0; i < 5 && i < back.num_events; i++) {
        const rec_event *e = &back.events[i];
        CHECK_MSG(e->kind == kinds[i] && e->thread == threads[i] &&
                      e->size == r.events[i].size && e->stack == (i == 0 ? 1u : 0u) && e->time_ns == times_ms[i] * 1000000,
                  "event %zu: kind %u thread %u size %llu time %llu", i, e->kind, e->thread,
                  (unsigned long long)e->size, (unsigned long long)e->time_ns);
    }
    /* B's malloc took the address A's realloc had let go: a block of its
     * own, which B frees; A's realloc resized A's first block. */
    if (back.num_events == 5)
        CHECK(back.events[2].old_addr == back.events[0].addr &&
              back.events[3].addr == back.events[1].addr &&
              back.events[4].addr == back.events[2].addr &&
              back.events[1].addr != back.events[0].addr);
    recording_free(&back);
    recording_free(&r);
    free(a);
    free(c);
    fclose(direct);
    fclose(loaded);

    /* Out of order: nothing packed (1), the output left empty for the
     * loading path, which says what is wrong. */
    len = two_threads(&b, 1);
    FILE *f = tmpfile();
    REQUIRE(f != NULL);
    rc = recording_pack_raw(f, "bad.btr", b.bytes, len, counts, err, sizeof err);
    fflush(f);
    fseek(f, 0, SEEK_END);
    CHECK_MSG(rc == 1 && ftell(f) == 0, "a damaged order is left to the loading path: %d", rc);
    fclose(f);
    CHECK(recording_parse("bad.btr", b.bytes, len, &r, err, sizeof err) != 0 &&
          strstr(err, "two events are numbered") != NULL);

    /* One thread, packed as it is read: the same file as from the loaded
     * recording. */
    len = one_thread(&b);
    CHECK_MSG(same_packing(&b, len), "one thread packs as the loaded recording does");
}

int main(void)
{
    test_parse_valid();
    test_replay_brisk_and_system();
    test_checks_catch_broken_allocators();
    test_out_of_capacity();
    test_pack_several_threads();
    return check_finish("test_trace_engine");
}
