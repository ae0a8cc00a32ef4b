/*
 * Packed recordings: what `brisk-trace record` keeps after the program
 * ended (docs/trace.md, "Packed recordings"). The recorder's raw stream
 * holds every block's address, which costs the most bytes and says
 * nothing a report needs once blocks are followed (blocks.c); the packed
 * form refers to blocks instead, interns each allocation's (call, size,
 * alignment, stack), keeps time in ticks of PACK_TIME_NS (an entry when
 * the clock moved on, not a time per event, as heaptrack does), all in one
 * 'W' record at the end, apart from the events: a program's repeated
 * sequences of events then stay repeats for zstd, which compresses it:
 *
 *   file    = magic "BRISKPAK" version:u32 header_bytes:u32 pid:u64 0:u64
 *             zstd-frame(record*)
 *   record  = 'C' len text            the command line (NUL-separated)
 *           | 'M' len text            the maps
 *           | 'H' count tid*count     the threads
 *           | 'S' id count frame*     a stack (ids 1, 2, ... in order)
 *           | 'T' thread              the events that follow are that thread's
 *                                     (files before the 'R' record; read)
 *           | 'X' ref                 the next block takes block ref's address
 *                                     (the free of ref was not recorded)
 *           | 'K' ticks               the clock moved on by ticks of 0.1 ms
 *                                     (files before the 'W' record; read)
 *           | 'A' time count value*   an allocator sample (version 2), taken
 *                                     after the events before it
 *           | 'R' count gap*count thread*count
 *                                     the threads, after the last event:
 *                                     from the event gap[i] events after
 *                                     entry i - 1's (entry 0's: the first
 *                                     event) on, the events are thread[i]'s
 *           | 'W' tick count gap*count ticks*count
 *                                     the times, after the last event: at
 *                                     the event gap[i] events after entry
 *                                     i - 1's the clock moved on by
 *                                     ticks[i] of tick ns
 *                                     ('R' and 'W' replaced 'T' and 'K'; a
 *                                     reader from before them stops there:
 *                                     unknown record kind)
 *           | 'E' events flags        the end
 *           | event
 *   event   = kind[|0x80: the call failed] fields
 *     allocation kinds: info (0: a new info follows: size [alignment] stack)
 *     realloc kinds:    oldref new; new = 0 the old block was freed,
 *                       1 the call failed (size follows), 2 a new info
 *                       follows (size stack), n >= 3 info n - 3
 *     free kinds:       ref [size] [alignment] stack
 *   ref     = 0 none/NULL, 1 a block from before the recording, n >= 2
 *             the block made n - 2 blocks before the latest
 *
 * Reading it back gives a recording with made-up addresses (one per
 * block), in which a realloc's release comes right before its new block.
 */
#define _GNU_SOURCE
#include "trace.h"
#include "trace_format.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define PACK_MAGIC "BRISKPAK"
/* The tick of the 'K' records packed files had before the 'W' record:
 * still read. */
#define PACK_TICK_NS 100000u
/* The 'W' record's tick, written in it (a reader takes it from there). */
#define PACK_TIME_NS 1000000u
/* Level 5: the event stream is either repeats, which every level finds,
 * or noise (addresses' order, sizes), which higher levels only shave. */
#define PACK_LEVEL 5

int recording_finish(recording *r, char *err, size_t err_size);

int recording_is_packed(const unsigned char *data, size_t len)
{
    return len >= 8 && memcmp(data, PACK_MAGIC, 8) == 0;
}

/* ---- writing -------------------------------------------------------------- */

typedef struct packer {
    FILE *out;
    ZSTD_CCtx *z;
    int failed;
    unsigned char *buf;
    size_t used, cap;
    unsigned char *zbuf;
    size_t zcap;
} packer;

static void pack_drain(packer *p, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {p->buf, p->used, 0};
    for (;;) {
        ZSTD_outBuffer out = {p->zbuf, p->zcap, 0};
        size_t left = ZSTD_compressStream2(p->z, &out, &in, mode);
        if (ZSTD_isError(left)) {
            p->failed = 1;
            break;
        }
        if (out.pos && fwrite(p->zbuf, 1, out.pos, p->out) != out.pos)
            p->failed = 1;
        if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size)
            break;
    }
    p->used = 0;
}

static unsigned char *pack_room(packer *p, size_t need)
{
    if (p->used + need > p->cap)
        pack_drain(p, ZSTD_e_continue);
    return p->buf + p->used;
}

static void pack_done(packer *p, unsigned char *end) { p->used = (size_t)(end - p->buf); }

static void pack_text(packer *p, unsigned kind, const char *text, size_t len)
{
    unsigned char *q = pack_room(p, 16);
    *q++ = (unsigned char)kind;
    q = tf_put_varint(q, len);
    pack_done(p, q);
    while (len > 0) {
        size_t n = len < p->cap / 2 ? len : p->cap / 2;
        q = pack_room(p, n);
        memcpy(q, text, n);
        pack_done(p, q + n);
        text += n;
        len -= n;
    }
}

typedef struct info_key {
    uint64_t size, alignment;
    uint32_t stack;
    uint8_t kind;
} info_key;

typedef struct info_table {
    info_key *keys;
    uint32_t *index; /* 0: empty */
    size_t size, used;
} info_table;

static size_t info_hash(const info_key *k, size_t size)
{
    uint64_t h = k->size * 0x9E3779B97F4A7C15ull ^ ((uint64_t)k->stack << 8 | k->kind) ^
                 k->alignment * 0xff51afd7ed558ccdull;
    h ^= h >> 29;
    return (size_t)(h * 0xbf58476d1ce4e5b9ull >> 20) & (size - 1);
}

/* The info's index (1-based), or 0 after adding it as new. -1: no memory. */
static long info_intern(info_table *t, const info_key *k)
{
    if ((t->used + 1) * 2 > t->size) {
        info_table bigger = {calloc(t->size * 2, sizeof *t->keys),
                             calloc(t->size * 2, sizeof *t->index), t->size * 2, t->used};
        if (bigger.keys == NULL || bigger.index == NULL) {
            free(bigger.keys);
            free(bigger.index);
            return -1;
        }
        for (size_t i = 0; i < t->size; i++) {
            if (t->index[i] == 0)
                continue;
            size_t s = info_hash(&t->keys[i], bigger.size);
            while (bigger.index[s] != 0)
                s = (s + 1) & (bigger.size - 1);
            bigger.keys[s] = t->keys[i];
            bigger.index[s] = t->index[i];
        }
        free(t->keys);
        free(t->index);
        *t = bigger;
    }
    size_t s = info_hash(k, t->size);
    while (t->index[s] != 0) {
        const info_key *o = &t->keys[s];
        if (o->size == k->size && o->alignment == k->alignment && o->stack == k->stack &&
            o->kind == k->kind)
            return t->index[s];
        s = (s + 1) & (t->size - 1);
    }
    t->keys[s] = *k;
    t->index[s] = (uint32_t)++t->used;
    return 0;
}

/* Block ordinals by address (the recording's addresses, followed as
 * blocks.c does). */
typedef struct live_map {
    uint64_t *keys; /* 0: empty */
    uint64_t *values;
    size_t size, used;
} live_map;

static size_t live_slot(const live_map *m, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (m->size - 1);
}

static int live_init(live_map *m, size_t size)
{
    m->keys = calloc(size, sizeof *m->keys);
    m->values = malloc(size * sizeof *m->values);
    m->size = size;
    m->used = 0;
    return m->keys && m->values ? 0 : -1;
}

static void live_free(live_map *m)
{
    free(m->keys);
    free(m->values);
}

static int live_put(live_map *m, uint64_t key, uint64_t value)
{
    if ((m->used + 1) * 2 > m->size) {
        live_map bigger;
        if (live_init(&bigger, m->size * 2) != 0) {
            live_free(&bigger);
            return -1;
        }
        for (size_t i = 0; i < m->size; i++)
            if (m->keys[i] != 0)
                live_put(&bigger, m->keys[i], m->values[i]);
        live_free(m);
        *m = bigger;
    }
    size_t i = live_slot(m, key);
    while (m->keys[i] != 0)
        i = (i + 1) & (m->size - 1);
    m->keys[i] = key;
    m->values[i] = value;
    m->used++;
    return 0;
}

/* Removes key, giving its value; -1 when it is not live. */
static int64_t live_take(live_map *m, uint64_t key)
{
    size_t hole = live_slot(m, key);
    while (m->keys[hole] != key) {
        if (m->keys[hole] == 0)
            return -1;
        hole = (hole + 1) & (m->size - 1);
    }
    int64_t value = (int64_t)m->values[hole];
    for (size_t i = hole;;) {
        i = (i + 1) & (m->size - 1);
        if (m->keys[i] == 0)
            break;
        size_t home = live_slot(m, m->keys[i]);
        int between = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!between) {
            m->keys[hole] = m->keys[i];
            m->values[hole] = m->values[i];
            hole = i;
        }
    }
    m->keys[hole] = 0;
    m->used--;
    return value;
}

/* A column of changes, written after the last event ('W', 'R'): entry i
 * says the value changed to (or, for the times, moved on by) value[i] at
 * the event gap[i] events after entry i - 1's (entry 0's: after the
 * first event). Apart from the events, a program's repeated sequences of
 * calls stay repeats for zstd; a column of like numbers compresses better
 * than numbers of two kinds mixed. */
typedef struct column {
    uint64_t *gap, *value, last_event;
    size_t count, cap;
} column;

static int column_add(column *c, uint64_t event, uint64_t value)
{
    if (c->count == c->cap) {
        size_t more = c->cap ? c->cap * 2 : 1024;
        uint64_t *gap = realloc(c->gap, more * sizeof *gap);
        if (gap != NULL)
            c->gap = gap;
        uint64_t *values = realloc(c->value, more * sizeof *values);
        if (values != NULL)
            c->value = values;
        if (gap == NULL || values == NULL)
            return -1;
        c->cap = more;
    }
    c->gap[c->count] = event - c->last_event;
    c->value[c->count++] = value;
    c->last_event = event;
    return 0;
}

static void column_free(column *c)
{
    free(c->gap);
    free(c->value);
}

#define REF_NONE 0u
#define REF_UNKNOWN 1u
#define PENDING_BLOCK (1ull << 63) /* a pending realloc's old block ordinal */

typedef struct pack_state {
    packer p;
    info_table infos;
    live_map live;
    uint64_t blocks_made, last_tick, *pending; /* per thread: a realloc's old ref */
    column times;   /* the 'W' record's: ticks the clock moved on */
    column threads; /* the 'R' record's: the thread (index) */
    struct held_thread *held; /* several threads: their events, held */
    size_t num_held;
    int unordered; /* a thread's events out of order: packed the slow way */
    uint32_t thread;
    size_t events;
    const char *path;
    const rec_sample *samples; /* the recording's, in seq order */
    size_t num_samples, samples_written;
} pack_state;

/* Writes the allocator samples taken before the step numbered seq. */
static void pack_samples(pack_state *s, uint64_t seq)
{
    for (; s->samples_written < s->num_samples && s->samples[s->samples_written].seq <= seq;
         s->samples_written++) {
        const rec_sample *a = &s->samples[s->samples_written];
        unsigned char *q = pack_room(&s->p, 32 + 10 * TF_ALLOCATOR_FIELDS);
        *q++ = 'A';
        q = tf_put_varint(q, a->time_ns);
        q = tf_put_varint(q, TF_ALLOCATOR_FIELDS);
        for (int k = 0; k < TF_ALLOCATOR_FIELDS; k++)
            q = tf_put_varint(q, a->value[k]);
        pack_done(&s->p, q);
    }
}

static uint64_t ref_of(const pack_state *s, int64_t block)
{
    return block < 0 ? REF_UNKNOWN : s->blocks_made - 1 - (uint64_t)block + 2;
}

/* Writes everything but the events: the header, command, maps, threads
 * and stacks. */
static int pack_begin(void *context, const recording *r)
{
    pack_state *s = context;
    packer *p = &s->p;
    s->pending = calloc(r->num_threads ? r->num_threads : 1, sizeof *s->pending);
    if (s->pending == NULL)
        return -1;
    unsigned char header[TF_HEADER_BYTES];
    memcpy(header, PACK_MAGIC, 8);
    tf_put_u32(header + 8, TF_VERSION);
    tf_put_u32(header + 12, TF_HEADER_BYTES);
    tf_put_u64(header + 16, r->pid);
    tf_put_u64(header + 24, 0);
    if (fwrite(header, 1, sizeof header, p->out) != sizeof header)
        p->failed = 1;
    /* The command with NULs between its arguments again. */
    char *cmd = strdup(r->command ? r->command : "");
    if (cmd == NULL)
        return -1;
    size_t cmd_len = strlen(cmd);
    for (char *c = cmd; *c; c++)
        if (*c == ' ')
            *c = '\0';
    pack_text(p, 'C', cmd, cmd_len);
    free(cmd);
    pack_text(p, 'M', r->maps ? r->maps : "", r->maps ? strlen(r->maps) : 0);
    unsigned char *q = pack_room(p, 16);
    *q++ = 'H';
    pack_done(p, tf_put_varint(q, r->num_threads));
    for (size_t t = 0; t < r->num_threads; t++) {
        q = pack_room(p, 10);
        pack_done(p, tf_put_varint(q, r->thread_tids[t]));
    }
    for (size_t st = 1; st < r->num_stacks; st++) {
        q = pack_room(p, 32 + 10 * (size_t)r->stack_depth[st]);
        *q++ = 'S';
        q = tf_put_varint(q, st);
        q = tf_put_varint(q, r->stack_depth[st]);
        for (uint32_t k = 0; k < r->stack_depth[st]; k++)
            q = tf_put_varint(q, r->frames[r->stack_first[st] + k]);
        pack_done(p, q);
    }
    s->thread = REC_NONE;
    s->samples = r->samples;
    s->num_samples = r->num_samples;
    return p->failed ? -1 : 0;
}

/* One step of the heap (a realloc is two: role 0 lets go of the old
 * block, role 1 makes the new one and writes the record). */
static int pack_step(pack_state *s, const rec_event *e, uint32_t role)
{
    int is_realloc = e->kind == TF_REALLOC || e->kind == TF_REALLOCARRAY;
    int is_free = e->kind >= TF_FREE && e->kind <= TF_FREE_ALIGNED_SIZED;
    pack_samples(s, is_realloc && role == 0 ? e->seq_release : e->seq);
    if (is_realloc && role == 0) {
        uint64_t *pending = &s->pending[e->thread];
        if (e->old_addr == 0) {
            *pending = REF_NONE;
        } else {
            int64_t b = live_take(&s->live, e->old_addr);
            /* A failed realloc keeps its block. */
            if (b >= 0 && e->addr == 0 && e->size != 0 &&
                live_put(&s->live, e->old_addr, (uint64_t)b) != 0)
                return -1;
            *pending = b < 0 ? REF_UNKNOWN : (uint64_t)b | PENDING_BLOCK;
        }
        return 0;
    }
    packer *p = &s->p;
    unsigned char *q = pack_room(p, 128);
    if (e->thread != s->thread) {
        if (column_add(&s->threads, s->events, e->thread) != 0)
            return -1;
        s->thread = e->thread;
    }
    uint64_t tick = e->time_ns / PACK_TIME_NS;
    if (tick > s->last_tick) {
        if (column_add(&s->times, s->events, tick - s->last_tick) != 0)
            return -1;
        s->last_tick = tick;
    }
    int makes = !is_free && e->addr != 0;
    if (makes) {
        int64_t stale = live_take(&s->live, e->addr);
        if (stale >= 0) { /* its free went unrecorded */
            *q++ = 'X';
            q = tf_put_varint(q, ref_of(s, stale));
        }
    }
    int failed = !is_realloc && !is_free && e->addr == 0;
    *q++ = (unsigned char)(e->kind | (failed ? 0x80 : 0));
    if (is_free) {
        q = tf_put_varint(q, ref_of(s, live_take(&s->live, e->addr)));
        if (e->kind != TF_FREE)
            q = tf_put_varint(q, e->size);
        if (tf_kind_has_alignment(e->kind))
            q = tf_put_varint(q, e->alignment);
        q = tf_put_varint(q, e->stack);
    } else {
        if (is_realloc) {
            /* The old block, let go of at the release step. */
            uint64_t pending = s->pending[e->thread];
            if (pending & PENDING_BLOCK)
                pending = ref_of(s, (int64_t)(pending & ~PENDING_BLOCK));
            q = tf_put_varint(q, pending);
        }
        if (is_realloc && e->addr == 0) {
            q = tf_put_varint(q, e->size == 0 ? 0 : 1);
            if (e->size != 0)
                q = tf_put_varint(q, e->size);
        } else {
            info_key k = {e->size, e->alignment, e->stack, e->kind};
            long index = info_intern(&s->infos, &k);
            if (index < 0)
                return -1;
            q = tf_put_varint(q, (uint64_t)index + (is_realloc ? 2 : 0));
            if (index == 0) {
                q = tf_put_varint(q, e->size);
                if (tf_kind_has_alignment(e->kind))
                    q = tf_put_varint(q, e->alignment);
                q = tf_put_varint(q, e->stack);
            }
        }
    }
    pack_done(p, q);
    if (makes && live_put(&s->live, e->addr, s->blocks_made++) != 0)
        return -1;
    s->events++;
    return 0;
}

static int pack_sink(void *context, rec_event *e)
{
    pack_state *s = context;
    if ((e->kind == TF_REALLOC || e->kind == TF_REALLOCARRAY) && pack_step(s, e, 0) != 0)
        return -1;
    return pack_step(s, e, 1);
}

/* ---- several threads ------------------------------------------------------ */

/* An event held for the merge: what pack_step reads of a rec_event, in
 * fewer bytes (old_addr and alignment never both: a realloc has none). */
typedef struct held_event {
    uint64_t seq, seq_release, time_ns, addr, size;
    uint64_t extra; /* realloc: old_addr; otherwise alignment */
    uint32_t stack;
    uint8_t kind;
} held_event;

/* One thread's events, in its order (the raw stream's: a thread's chunks
 * come in order, and its events in each), and the merge's place in them. */
typedef struct held_thread {
    held_event *events;
    size_t count, cap, next;
    int released; /* the next event is a realloc whose release step is done */
} held_thread;

static int is_realloc_kind(unsigned kind) { return kind == TF_REALLOC || kind == TF_REALLOCARRAY; }

/* Holds e for the merge; notes a thread whose steps are not in order
 * (a damaged file), which the merge cannot take. */
static int hold_sink(void *context, rec_event *e)
{
    pack_state *s = context;
    if (e->thread >= s->num_held)
        return -1;
    held_thread *t = &s->held[e->thread];
    if (t->count == t->cap) {
        size_t more = t->cap ? t->cap * 2 : 4096;
        held_event *grown = realloc(t->events, more * sizeof *grown);
        if (grown == NULL)
            return -1;
        t->events = grown;
        t->cap = more;
    }
    uint64_t first = is_realloc_kind(e->kind) ? e->seq_release : e->seq;
    if ((t->count > 0 && first <= t->events[t->count - 1].seq) || first > e->seq)
        s->unordered = 1;
    t->events[t->count++] = (held_event){e->seq, e->seq_release, e->time_ns, e->addr, e->size,
                                         is_realloc_kind(e->kind) ? e->old_addr : e->alignment,
                                         e->stack, e->kind};
    return 0;
}

/* The seq of thread t's next step. */
static uint64_t held_key(const held_thread *t)
{
    const held_event *h = &t->events[t->next];
    return is_realloc_kind(h->kind) && !t->released ? h->seq_release : h->seq;
}

static void heap_down(size_t *heap, size_t n, const held_thread *threads, size_t k)
{
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= n)
            break;
        if (c + 1 < n && held_key(&threads[heap[c + 1]]) < held_key(&threads[heap[c]]))
            c++;
        if (held_key(&threads[heap[k]]) <= held_key(&threads[heap[c]]))
            break;
        size_t x = heap[k];
        heap[k] = heap[c];
        heap[c] = x;
        k = c;
    }
}

/* Packs the held events' steps in seq order: a k-way merge of the
 * threads' (each in order, as hold_sink checked), with a min-heap of
 * threads by their next step. 1 when two steps share a seq (a damaged
 * file: the slow way reports it). */
static int pack_held(pack_state *s)
{
    size_t *heap = malloc((s->num_held ? s->num_held : 1) * sizeof *heap), n = 0;
    if (heap == NULL)
        return -1;
    for (size_t t = 0; t < s->num_held; t++)
        if (s->held[t].count > 0)
            heap[n++] = t;
    for (size_t i = n / 2; i-- > 0;)
        heap_down(heap, n, s->held, i);
    uint64_t last = 0;
    int rc = 0, started = 0;
    while (n > 0 && rc == 0) {
        held_thread *t = &s->held[heap[0]];
        uint64_t key = held_key(t);
        if (started && key <= last) {
            rc = 1;
            break;
        }
        started = 1;
        last = key;
        const held_event *h = &t->events[t->next];
        int realloc_kind = is_realloc_kind(h->kind);
        rec_event e = {h->seq, h->seq_release, h->time_ns, h->addr,
                       realloc_kind ? h->extra : 0, h->size, realloc_kind ? 0 : h->extra,
                       h->stack, (uint32_t)heap[0], h->kind};
        uint32_t role = realloc_kind && !t->released ? 0 : 1;
        rc = pack_step(s, &e, role);
        if (role == 0) {
            t->released = 1;
        } else {
            t->released = 0;
            if (++t->next == t->count)
                heap[0] = heap[--n];
        }
        heap_down(heap, n, s->held, 0);
    }
    free(heap);
    return rc;
}

/* pack_begin, and for several threads room to hold their events. */
static int pack_begin_raw(void *context, const recording *r)
{
    pack_state *s = context;
    if (r->num_threads > 1) {
        s->held = calloc(r->num_threads, sizeof *s->held);
        if (s->held == NULL)
            return -1;
        s->num_held = r->num_threads;
    }
    return pack_begin(context, r);
}

static int pack_raw_sink(void *context, rec_event *e)
{
    pack_state *s = context;
    return s->held != NULL ? hold_sink(context, e) : pack_sink(context, e);
}

/* A column record: kind [tick] count gap*count value*count. */
static void pack_column(packer *p, unsigned kind, uint64_t tick, const column *c)
{
    unsigned char *q = pack_room(p, 32);
    *q++ = (unsigned char)kind;
    if (tick != 0)
        q = tf_put_varint(q, tick);
    pack_done(p, tf_put_varint(q, c->count));
    for (size_t i = 0; i < c->count; i++) {
        q = pack_room(p, 10);
        pack_done(p, tf_put_varint(q, c->gap[i]));
    }
    for (size_t i = 0; i < c->count; i++) {
        q = pack_room(p, 10);
        pack_done(p, tf_put_varint(q, c->value[i]));
    }
}

static int pack_end(pack_state *s, const recording *r)
{
    pack_samples(s, UINT64_MAX);
    pack_column(&s->p, 'R', 0, &s->threads);
    pack_column(&s->p, 'W', PACK_TIME_NS, &s->times);
    unsigned char *q = pack_room(&s->p, 32);
    *q++ = 'E';
    q = tf_put_varint(q, s->events);
    q = tf_put_varint(q, r->flags);
    pack_done(&s->p, q);
    pack_drain(&s->p, ZSTD_e_end);
    return s->p.failed ? -1 : 0;
}

static int pack_init(pack_state *s, FILE *out, const char *path)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->p = (packer){out, ZSTD_createCCtx(), 0, malloc(1 << 17), 0, 1 << 17, NULL, 0};
    s->p.zcap = ZSTD_CStreamOutSize();
    s->p.zbuf = malloc(s->p.zcap);
    s->infos = (info_table){calloc(1024, sizeof(info_key)), calloc(1024, sizeof(uint32_t)), 1024, 0};
    if (!s->p.z || !s->p.buf || !s->p.zbuf || !s->infos.keys || !s->infos.index ||
        live_init(&s->live, 1024) != 0)
        return -1;
    ZSTD_CCtx_setParameter(s->p.z, ZSTD_c_compressionLevel, PACK_LEVEL);
    return 0;
}

static void pack_fini(pack_state *s)
{
    ZSTD_freeCCtx(s->p.z);
    free(s->p.buf);
    free(s->p.zbuf);
    free(s->infos.keys);
    free(s->infos.index);
    live_free(&s->live);
    free(s->pending);
    column_free(&s->times);
    column_free(&s->threads);
    for (size_t t = 0; t < s->num_held; t++)
        free(s->held[t].events);
    free(s->held);
}

int recording_pack(FILE *out, const recording *r, char *err, size_t err_size)
{
    pack_state s;
    int rc = pack_init(&s, out, r->path) == 0 && pack_begin(&s, r) == 0 ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < r->num_steps; i++)
        rc = pack_step(&s, &r->events[r->steps[i].event], r->steps[i].role);
    if (rc == 0)
        rc = pack_end(&s, r);
    pack_fini(&s);
    if (rc != 0)
        snprintf(err, err_size, "%s: cannot write the packed recording (out of memory or a write "
                                "error)", r->path);
    return rc;
}

int recording_pack_raw(FILE *out, const char *path, const unsigned char *data, size_t len,
                       size_t counts[2], char *err, size_t err_size)
{
    pack_state s;
    recording meta;
    memset(&meta, 0, sizeof meta);
    if (err_size > 0)
        err[0] = '\0';
    if (pack_init(&s, out, path) != 0) {
        pack_fini(&s);
        snprintf(err, err_size, "%s: out of memory packing", path);
        return -1;
    }
    int rc = recording_stream(path, data, len, &meta, pack_raw_sink, pack_begin_raw, &s, 1, err,
                              err_size);
    if (rc == 0 && s.held != NULL)
        rc = s.unordered ? 1 : pack_held(&s);
    if (rc == 1) {
        /* Steps out of order or sharing a seq (a damaged file): start
         * again, for the loading path to order them or say what is wrong. */
        if (fflush(out) != 0 || fseek(out, 0, SEEK_SET) != 0 || ftruncate(fileno(out), 0) != 0)
            rc = -1;
    }
    if (rc == 0 && pack_end(&s, &meta) != 0)
        rc = -1;
    if (rc < 0 && err[0] == '\0')
        snprintf(err, err_size, "%s: cannot write the packed recording", path);
    counts[0] = meta.num_events;
    counts[1] = meta.num_stacks ? meta.num_stacks - 1 : 0;
    pack_fini(&s);
    recording_free(&meta);
    return rc;
}

/* ---- reading -------------------------------------------------------------- */

static int bad(char *err, size_t err_size, const char *path, size_t at, const char *what)
{
    snprintf(err, err_size, "%s: packed byte %zu: %s", path, at, what);
    return -1;
}

/* Made-up addresses: block n at (n + 1) * 16; a block from before the
 * recording at 8, which no block has. */
#define BLOCK_ADDR(n) (((uint64_t)(n) + 1) * 16)
#define UNKNOWN_ADDR 8u

/* Reads a column of count entries at *p (pack_column) and gives the
 * events their times, ticks of `tick` ns, or (tick 0) their threads.
 * NULL, or what is wrong. */
static const char *apply_column(const unsigned char **p, const unsigned char *end,
                                uint64_t count, recording *r, uint64_t tick)
{
    if (count > (uint64_t)(end - *p) / 2)
        return "a column runs past the end";
    const unsigned char *gaps = *p;
    uint64_t gap = 0, value = 0, event = 0, now = 0;
    for (uint64_t i = 0; i < count; i++) /* *p past the gaps, to the values */
        if (tf_get_varint(p, end, &gap) != 0)
            return "a column runs past the end";
    size_t next = 0;
    for (uint64_t i = 0; i <= count; i++) {
        if (i < count) {
            if (tf_get_varint(&gaps, end, &gap) != 0 || tf_get_varint(p, end, &value) != 0)
                return "a column runs past the end";
            if (gap > r->num_events - event)
                return "a column runs past the events";
            event += gap;
        } else {
            event = r->num_events;
        }
        for (; next < event; next++) {
            if (tick != 0)
                r->events[next].time_ns = now * tick;
            else
                r->events[next].thread = (uint32_t)now;
        }
        if (i == count)
            break;
        if (tick != 0) {
            if (value > UINT64_MAX / tick - now)
                return "the time runs past its range";
            now += value;
        } else {
            if (value >= r->num_threads)
                return "thread index out of range";
            now = value;
        }
    }
    return NULL;
}

int recording_unpack(const char *path, const unsigned char *data, size_t len, recording *out,
                     char *err, size_t err_size)
{
    if (len < TF_HEADER_BYTES) {
        snprintf(err, err_size,
                 "%s: truncated: the file ends inside its %u-byte header (it has %zu bytes)", path,
                 TF_HEADER_BYTES, len);
        return -1;
    }
    if (tf_get_u32(data + 8) < TF_VERSION_OLDEST || tf_get_u32(data + 8) > TF_VERSION) {
        snprintf(err, err_size,
                 "%s: recording format version %u; this brisk-trace reads versions %u to %u",
                 path, tf_get_u32(data + 8), TF_VERSION_OLDEST, TF_VERSION);
        return -1;
    }
    /* Decompress it all. */
    ZSTD_DCtx *z = ZSTD_createDCtx();
    size_t cap = len * 4 + 4096, n = 0;
    unsigned char *text = malloc(cap);
    ZSTD_inBuffer in = {data + TF_HEADER_BYTES, len - TF_HEADER_BYTES, 0};
    size_t left = 1;
    while (z != NULL && text != NULL) {
        if (n == cap) {
            unsigned char *grown = realloc(text, cap * 2);
            if (grown == NULL)
                break;
            text = grown;
            cap *= 2;
        }
        ZSTD_outBuffer o = {text + n, cap - n, 0};
        left = ZSTD_decompressStream(z, &o, &in);
        n += o.pos;
        if (ZSTD_isError(left) || (left == 0 && in.pos == in.size) ||
            (in.pos == in.size && o.pos < o.size))
            break;
    }
    ZSTD_freeDCtx(z);
    if (text == NULL || z == NULL) {
        free(text);
        snprintf(err, err_size, "%s: out of memory unpacking", path);
        return -1;
    }
    if (ZSTD_isError(left) || left != 0) {
        free(text);
        snprintf(err, err_size, "%s: %s", path,
                 ZSTD_isError(left) ? ZSTD_getErrorName(left)
                                    : "truncated: the compressed data ends early");
        return -1;
    }
    recording *r = out;
    memset(r, 0, sizeof *r);
    r->path = strdup(path);
    r->pid = tf_get_u64(data + 16);
    size_t events_cap = 1024, frames_cap = 1024, stacks_cap = 64, depth_cap = 64, infos_cap = 256;
    size_t samples_cap = 0;
    size_t num_frames = 0;
    r->events = malloc(events_cap * sizeof *r->events);
    r->frames = malloc(frames_cap * sizeof *r->frames);
    r->stack_first = calloc(stacks_cap, sizeof *r->stack_first);
    r->stack_depth = calloc(stacks_cap, sizeof *r->stack_depth);
    r->num_stacks = 1;
    info_key *infos = malloc(infos_cap * sizeof *infos);
    size_t num_infos = 0;
    uint64_t *block_addr = NULL;
    size_t blocks_cap = 0, blocks = 0;
    uint64_t next_addr_override = 0, seq = 0, tick = 0;
    uint32_t thread = 0;
    int rc = -1, ended = 0;
    const unsigned char *p = text, *end = text + n;
    if (!r->path || !r->events || !r->frames || !r->stack_first || !r->stack_depth || !infos)
        goto oom;
#define GET(v)                                                                                    \
    do {                                                                                          \
        if (tf_get_varint(&p, end, &(v)) != 0) {                                                  \
            bad(err, err_size, path, (size_t)(p - text), "a record runs past the end");           \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)
#define GROW(arr, capv, need)                                                                     \
    do {                                                                                          \
        while ((need) > (capv)) {                                                                 \
            void *g_ = realloc((arr), (capv) * 2 * sizeof *(arr));                                \
            if (g_ == NULL)                                                                       \
                goto oom;                                                                         \
            (arr) = g_;                                                                           \
            (capv) *= 2;                                                                          \
        }                                                                                         \
    } while (0)
    while (p < end && !ended) {
        size_t at = (size_t)(p - text);
        unsigned kind = *p++;
        uint64_t v, w, x;
        if (kind == 'C' || kind == 'M') {
            GET(v);
            if (v > (uint64_t)(end - p)) {
                bad(err, err_size, path, at, "a text record runs past the end");
                goto fail;
            }
            char *s = malloc((size_t)v + 1);
            if (s == NULL)
                goto oom;
            memcpy(s, p, (size_t)v);
            s[v] = '\0';
            if (kind == 'C') {
                for (size_t i = 0; i < v; i++)
                    if (s[i] == '\0')
                        s[i] = ' ';
                while (v > 0 && s[v - 1] == ' ')
                    s[--v] = '\0';
                free(r->command);
                r->command = s;
            } else {
                free(r->maps);
                r->maps = s;
            }
            p += v;
        } else if (kind == 'H') {
            GET(v);
            if (v > (uint64_t)(end - p)) {
                bad(err, err_size, path, at, "bad thread table");
                goto fail;
            }
            r->thread_tids = malloc(((size_t)v + 1) * sizeof *r->thread_tids);
            if (r->thread_tids == NULL)
                goto oom;
            for (uint64_t i = 0; i < v; i++) {
                GET(w);
                r->thread_tids[i] = (uint32_t)w;
            }
            r->num_threads = (size_t)v;
        } else if (kind == 'S') {
            GET(v);
            GET(w);
            if (v != r->num_stacks || w > TF_MAX_FRAMES) {
                bad(err, err_size, path, at, "bad stack record");
                goto fail;
            }
            GROW(r->stack_first, stacks_cap, r->num_stacks + 1);
            GROW(r->stack_depth, depth_cap, r->num_stacks + 1);
            GROW(r->frames, frames_cap, num_frames + w);
            r->stack_first[r->num_stacks] = (uint32_t)num_frames;
            r->stack_depth[r->num_stacks] = (uint32_t)w;
            for (uint64_t i = 0; i < w; i++)
                GET(r->frames[num_frames++]);
            r->num_stacks++;
        } else if (kind == 'T') {
            GET(v);
            if (v >= r->num_threads) {
                bad(err, err_size, path, at, "thread index out of range");
                goto fail;
            }
            thread = (uint32_t)v;
        } else if (kind == 'X') {
            GET(v);
            if (v < 2 || v - 2 >= blocks) {
                bad(err, err_size, path, at, "bad block reference");
                goto fail;
            }
            next_addr_override = block_addr[blocks - 1 - (v - 2)];
        } else if (kind == 'K') {
            GET(v);
            tick += v;
        } else if (kind == 'W' || kind == 'R') {
            /* After the last event: the events' times (replacing the 'K'
             * records' ticks, which a file with 'W' has none of) or
             * threads (likewise 'T'). */
            v = 0;
            if (kind == 'W')
                GET(v); /* the tick, in ns */
            GET(w);     /* the entries */
            const char *why = kind == 'W' && v == 0 ? "bad time record"
                              : apply_column(&p, end, w, r, kind == 'W' ? v : 0);
            if (why != NULL) {
                bad(err, err_size, path, at, why);
                goto fail;
            }
        } else if (kind == 'A') {
            GET(v);
            GET(w);
            if (w > (uint64_t)(end - p)) {
                bad(err, err_size, path, at, "bad allocator sample");
                goto fail;
            }
            if (r->num_samples == samples_cap) {
                size_t more = samples_cap ? samples_cap * 2 : 64;
                rec_sample *grown = realloc(r->samples, more * sizeof *grown);
                if (grown == NULL)
                    goto oom;
                r->samples = grown;
                samples_cap = more;
            }
            rec_sample *a = &r->samples[r->num_samples++];
            memset(a, 0, sizeof *a);
            /* After the last event (seq), before the next (seq + 2, its
             * realloc release seq + 1). */
            a->seq = seq + 1;
            a->time_ns = v;
            for (uint64_t i = 0; i < w; i++) {
                GET(x);
                if (i < TF_ALLOCATOR_FIELDS)
                    a->value[i] = x;
            }
        } else if (kind == 'E') {
            GET(v);
            GET(w);
            if (v != r->num_events) {
                bad(err, err_size, path, at, "the end record's event count does not match");
                goto fail;
            }
            r->flags = (unsigned)w;
            ended = 1;
        } else if ((kind & 0x7f) >= TF_MALLOC && (kind & 0x7f) < TF_EVENT_KINDS_END) {
            unsigned k = kind & 0x7f;
            int failed = (kind & 0x80) != 0;
            GROW(r->events, events_cap, r->num_events + 1);
            rec_event *e = &r->events[r->num_events];
            memset(e, 0, sizeof *e);
            e->kind = (uint8_t)k;
            e->thread = thread;
            e->time_ns = tick * PACK_TICK_NS;
            seq += 2;
            e->seq = seq;
            int is_realloc = k == TF_REALLOC || k == TF_REALLOCARRAY;
            int is_free = k >= TF_FREE && k <= TF_FREE_ALIGNED_SIZED;
            uint64_t info = 0;
            int makes = 0;
            if (is_free || is_realloc) {
                GET(v); /* the ref */
                uint64_t addr = v == 0 ? 0 : v == 1 ? UNKNOWN_ADDR : 0;
                if (v >= 2) {
                    if (v - 2 >= blocks) {
                        bad(err, err_size, path, at, "bad block reference");
                        goto fail;
                    }
                    addr = block_addr[blocks - 1 - (v - 2)];
                }
                if (is_free) {
                    e->addr = addr;
                    if (k != TF_FREE)
                        GET(e->size);
                    if (tf_kind_has_alignment(k))
                        GET(e->alignment);
                    GET(v);
                    e->stack = (uint32_t)v;
                } else {
                    e->old_addr = addr;
                    e->seq_release = seq - 1;
                    GET(w);
                    if (w == 0) {
                        e->size = 0;
                    } else if (w == 1) {
                        GET(e->size);
                    } else {
                        info = w - 2;
                        makes = 1;
                    }
                }
            } else {
                GET(info);
                makes = !failed; /* a failed call still names its info */
            }
            if ((!is_free && !is_realloc) || (is_realloc && makes)) {
                if (info == 0) {
                    GROW(infos, infos_cap, num_infos + 1);
                    info_key *nk = &infos[num_infos++];
                    nk->kind = (uint8_t)k;
                    GET(nk->size);
                    nk->alignment = 0;
                    if (tf_kind_has_alignment(k))
                        GET(nk->alignment);
                    GET(x);
                    nk->stack = (uint32_t)x;
                    info = num_infos;
                }
                if (info > num_infos) {
                    bad(err, err_size, path, at, "allocation info out of range");
                    goto fail;
                }
                const info_key *ik = &infos[info - 1];
                e->size = ik->size;
                e->alignment = ik->alignment;
                e->stack = ik->stack;
            }
            if (makes) {
                if (blocks == blocks_cap) {
                    size_t nc = blocks_cap ? blocks_cap * 2 : 1024;
                    uint64_t *g = realloc(block_addr, nc * sizeof *g);
                    if (g == NULL)
                        goto oom;
                    block_addr = g;
                    blocks_cap = nc;
                }
                uint64_t addr = next_addr_override ? next_addr_override : BLOCK_ADDR(blocks);
                next_addr_override = 0;
                block_addr[blocks++] = addr;
                e->addr = addr;
            }
            if (e->stack >= r->num_stacks) {
                bad(err, err_size, path, at, "stack out of range");
                goto fail;
            }
            r->num_events++;
        } else {
            bad(err, err_size, path, at, "unknown record kind");
            goto fail;
        }
    }
    if (!ended) {
        snprintf(err, err_size, "%s: truncated: the packed recording has no end record", path);
        goto fail;
    }
    if (r->command == NULL)
        r->command = strdup("");
    if (r->maps == NULL)
        r->maps = strdup("");
    if (r->thread_tids == NULL) {
        r->thread_tids = calloc(1, sizeof *r->thread_tids);
        r->num_threads = 1;
    }
    if (!r->command || !r->maps || !r->thread_tids)
        goto oom;
    rc = recording_finish(r, err, err_size);
    goto done;
oom:
    snprintf(err, err_size, "%s: out of memory unpacking", path);
fail:
    rc = -1;
done:
#undef GET
#undef GROW
    free(text);
    free(infos);
    free(block_addr);
    if (rc != 0)
        recording_free(r);
    return rc;
}
