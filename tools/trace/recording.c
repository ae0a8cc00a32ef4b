/*
 * Reading and writing the recording format (trace_format.h, described in
 * docs/trace.md): every check a report relies on is made here, once, and
 * each error names the file and the byte where it went wrong.
 */
#define _GNU_SOURCE
#include "trace.h"
#include "trace_format.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t err_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t err_size, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_size, format, args);
    va_end(args);
    return -1;
}

int recording_is_binary(const unsigned char *data, size_t len)
{
    return len >= TF_MAGIC_BYTES && memcmp(data, TF_MAGIC, TF_MAGIC_BYTES) == 0;
}

/* Grows *array (of `item` bytes each) to hold at least `need` items. */
static int grow(void *array, size_t *cap, size_t need, size_t item)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    void *p = realloc(*(void **)array, n * item);
    if (p == NULL)
        return -1;
    *(void **)array = p;
    *cap = n;
    return 0;
}

typedef struct raw_stack {
    uint64_t id;
    uint32_t first, depth;
} raw_stack;

typedef struct parse_state {
    recording *r;
    size_t events_cap, frames_cap, stacks_cap, threads_cap, maps_cap, samples_cap, sites_cap;
    raw_stack *stacks;
    size_t num_raw_stacks, num_frames;
    /* maps records in file order */
    const unsigned char **maps_text;
    size_t *maps_len;
    size_t num_maps, maps_list_cap, maps_len_cap;
    /* Streaming (recording_stream): pass 1 counts events, pass 2 hands
     * them to the sink; nothing is stored. */
    int mode;
    rec_event_sink sink;
    void *sink_context;
    uint32_t event_thread; /* a thread with events; REC_NONE when several */
    int have_event_thread;
} parse_state;

enum { MODE_STORE, MODE_COUNT, MODE_STREAM };

/* The dense index of raw stack id (stacks sorted), or 0 when undefined. */
static uint32_t dense_stack(const parse_state *s, uint64_t id)
{
    size_t lo = 0, hi = s->num_raw_stacks;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->stacks[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->num_raw_stacks && s->stacks[lo].id == id ? (uint32_t)lo + 1 : 0;
}

static int thread_index(parse_state *s, uint32_t tid, uint32_t *out)
{
    recording *r = s->r;
    for (size_t i = r->num_threads; i-- > 0;)
        if (r->thread_tids[i] == tid) {
            *out = (uint32_t)i;
            return 0;
        }
    if (grow(&r->thread_tids, &s->threads_cap, r->num_threads + 1, sizeof *r->thread_tids))
        return -1;
    r->thread_tids[r->num_threads] = tid;
    *out = (uint32_t)r->num_threads++;
    return 0;
}

static int cmp_raw_stack(const void *a, const void *b)
{
    uint64_t x = ((const raw_stack *)a)->id, y = ((const raw_stack *)b)->id;
    return x < y ? -1 : x > y;
}

static int cmp_event_seq(const void *a, const void *b)
{
    uint64_t x = ((const rec_event *)a)->seq, y = ((const rec_event *)b)->seq;
    return x < y ? -1 : x > y;
}

static int cmp_step_seq(const void *a, const void *b)
{
    uint64_t x = ((const rec_step *)a)->seq, y = ((const rec_step *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Threads write their samples in their own chunks: ordered on reading. */
static int cmp_sample_seq(const void *a, const void *b)
{
    uint64_t x = ((const rec_sample *)a)->seq, y = ((const rec_sample *)b)->seq;
    return x < y ? -1 : x > y;
}

_Static_assert(sizeof ((rec_sample *)0)->value == TF_ALLOCATOR_FIELDS * sizeof(uint64_t),
               "rec_sample holds every allocator field");

/* Orders the events and builds the steps; shared with convert.c through
 * recording_finish. */
int recording_finish(recording *r, char *err, size_t err_size);

/* Whether items of `size` bytes at a are in order (they usually are: one
 * thread's events come in order, and so do a single-threaded program's). */
static int sorted(const void *a, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    const char *p = a;
    for (size_t i = 1; i < n; i++)
        if (cmp(p + (i - 1) * size, p + i * size) > 0)
            return 0;
    return 1;
}

/* Puts the events in seq order by merging each thread's (already in
 * order: a thread's chunks come in order, and its events in each).
 * Returns -1 when out of memory. */
static int merge_threads(recording *r)
{
    size_t n = r->num_events, threads = r->num_threads ? r->num_threads : 1;
    rec_event *by_thread = malloc(n * sizeof *by_thread);
    size_t *start = calloc(threads + 1, sizeof *start), *next = calloc(threads, sizeof *next);
    size_t *heap = malloc(threads * sizeof *heap);
    if (by_thread == NULL || start == NULL || next == NULL || heap == NULL) {
        free(by_thread);
        free(start);
        free(next);
        free(heap);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        start[r->events[i].thread + 1]++;
    for (size_t t = 0; t < threads; t++)
        start[t + 1] += start[t];
    for (size_t t = 0; t < threads; t++)
        next[t] = start[t];
    for (size_t i = 0; i < n; i++)
        by_thread[next[r->events[i].thread]++] = r->events[i];
    /* A min-heap of threads by their next event's seq. */
    size_t h = 0;
    for (size_t t = 0; t < threads; t++) {
        next[t] = start[t];
        if (start[t] < start[t + 1])
            heap[h++] = t;
    }
#define KEY(t) (by_thread[next[t]].seq)
    for (size_t i = h / 2; i-- > 0;) {
        for (size_t k = i;;) {
            size_t c = 2 * k + 1;
            if (c >= h)
                break;
            if (c + 1 < h && KEY(heap[c + 1]) < KEY(heap[c]))
                c++;
            if (KEY(heap[k]) <= KEY(heap[c]))
                break;
            size_t x = heap[k];
            heap[k] = heap[c];
            heap[c] = x;
            k = c;
        }
    }
    for (size_t i = 0; i < n; i++) {
        size_t t = heap[0];
        r->events[i] = by_thread[next[t]++];
        if (next[t] == start[t + 1])
            heap[0] = heap[--h];
        for (size_t k = 0;;) {
            size_t c = 2 * k + 1;
            if (c >= h)
                break;
            if (c + 1 < h && KEY(heap[c + 1]) < KEY(heap[c]))
                c++;
            if (KEY(heap[k]) <= KEY(heap[c]))
                break;
            size_t x = heap[k];
            heap[k] = heap[c];
            heap[c] = x;
            k = c;
        }
    }
#undef KEY
    free(by_thread);
    free(start);
    free(next);
    free(heap);
    return 0;
}

int recording_finish(recording *r, char *err, size_t err_size)
{
    if (!sorted(r->events, r->num_events, sizeof *r->events, cmp_event_seq)) {
        if (merge_threads(r) != 0)
            return fail(err, err_size, "%s: out of memory ordering %zu events", r->path,
                        r->num_events);
        /* A thread whose own events were out of order (a damaged file). */
        if (!sorted(r->events, r->num_events, sizeof *r->events, cmp_event_seq))
            qsort(r->events, r->num_events, sizeof *r->events, cmp_event_seq);
    }
    size_t steps = 0;
    for (size_t i = 0; i < r->num_events; i++) {
        const rec_event *e = &r->events[i];
        if (i > 0 && e->seq == e[-1].seq)
            return fail(err, err_size, "%s: two events are numbered %llu (a damaged recording)",
                        r->path, (unsigned long long)e->seq);
        steps += (e->kind == TF_REALLOC || e->kind == TF_REALLOCARRAY) ? 2 : 1;
        if (e->time_ns > r->duration_ns)
            r->duration_ns = e->time_ns;
    }
    r->steps = malloc((steps ? steps : 1) * sizeof *r->steps);
    if (r->steps == NULL)
        return fail(err, err_size, "%s: out of memory for %zu steps", r->path, steps);
    size_t n = 0;
    for (size_t i = 0; i < r->num_events; i++) {
        const rec_event *e = &r->events[i];
        if (e->kind == TF_REALLOC || e->kind == TF_REALLOCARRAY)
            r->steps[n++] = (rec_step){e->seq_release, (uint32_t)i, 0};
        r->steps[n++] = (rec_step){e->seq, (uint32_t)i, 1};
    }
    r->num_steps = n;
    if (!sorted(r->steps, n, sizeof *r->steps, cmp_step_seq))
        qsort(r->steps, n, sizeof *r->steps, cmp_step_seq);
    for (size_t i = 1; i < n; i++)
        if (r->steps[i].seq == r->steps[i - 1].seq)
            return fail(err, err_size,
                        "%s: a realloc's release is numbered %llu like another event "
                        "(a damaged recording)",
                        r->path, (unsigned long long)r->steps[i].seq);
    return 0;
}

/* One chunk's records. */
static int parse_chunk(parse_state *s, const unsigned char *base, size_t chunk_at,
                       const unsigned char *p, const unsigned char *end, uint32_t thread,
                       uint64_t start_ns, int *ended, uint64_t end_counts[3], char *err,
                       size_t err_size)
{
    recording *r = s->r;
    uint64_t seq = 0, time = start_ns;
    while (p < end) {
        size_t at = (size_t)(p - base);
        if (*ended)
            return fail(err, err_size, "%s: byte %zu: a record after the end record", r->path,
                        at);
        unsigned kind = *p++;
        uint64_t v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int bad = 0;
#define FIELD(i) (bad |= tf_get_varint(&p, end, &v[i]))
        if (kind >= TF_MALLOC && kind < TF_EVENT_KINDS_END) {
            rec_event e;
            memset(&e, 0, sizeof e);
            e.kind = (uint8_t)kind;
            e.thread = thread;
            FIELD(0);
            FIELD(1);
            uint64_t stack = 0;
            if (kind == TF_REALLOC || kind == TF_REALLOCARRAY) {
                FIELD(2), FIELD(3), FIELD(4), FIELD(5), FIELD(6);
                e.old_addr = v[3];
                e.addr = v[4];
                e.size = v[5];
                stack = v[6];
            } else if (kind == TF_FREE) {
                FIELD(2), FIELD(3);
                e.addr = v[2];
                stack = v[3];
            } else {
                FIELD(2), FIELD(3);
                e.addr = v[2];
                e.size = v[3];
                int k = 4;
                if (tf_kind_has_alignment(kind)) {
                    FIELD(4);
                    e.alignment = v[4];
                    k = 5;
                }
                FIELD(k);
                stack = v[k];
            }
            if (bad)
                return fail(err, err_size,
                            "%s: byte %zu: the event runs past the end of its chunk (at byte %zu)",
                            r->path, at, chunk_at);
            seq += v[0];
            time += v[1];
            e.seq = seq;
            e.time_ns = time - start_ns;
            if (kind == TF_REALLOC || kind == TF_REALLOCARRAY) {
                if (v[2] == 0 || v[2] > seq)
                    return fail(err, err_size,
                                "%s: byte %zu: a realloc released its block at number %llu, "
                                "not before its own %llu",
                                r->path, at, (unsigned long long)(seq - v[2]),
                                (unsigned long long)seq);
                e.seq_release = seq - v[2];
            }
            if (stack > UINT32_MAX)
                return fail(err, err_size, "%s: byte %zu: stack id %llu out of range", r->path, at,
                            (unsigned long long)stack);
            e.stack = (uint32_t)stack;
            if (s->mode == MODE_COUNT) {
                if (!s->have_event_thread)
                    s->event_thread = thread, s->have_event_thread = 1;
                else if (s->event_thread != thread)
                    s->event_thread = REC_NONE;
                r->num_events++;
                continue;
            }
            if (s->mode == MODE_STREAM) {
                if (stack != 0 && (e.stack = dense_stack(s, stack)) == 0)
                    return fail(err, err_size,
                                "%s: byte %zu: the event uses stack id %llu, which no stack "
                                "record defines",
                                r->path, at, (unsigned long long)stack);
                if (s->sink(s->sink_context, &e) != 0)
                    return fail(err, err_size, "%s: out of memory at byte %zu", r->path, at);
                r->num_events++;
                continue;
            }
            if (grow(&r->events, &s->events_cap, r->num_events + 1, sizeof *r->events))
                return fail(err, err_size, "%s: out of memory after %zu events", r->path,
                            r->num_events);
            r->events[r->num_events++] = e;
        } else if (kind == TF_STACK) {
            FIELD(0);
            FIELD(1);
            if (bad || v[1] > TF_MAX_FRAMES || v[0] == 0 || v[0] > UINT32_MAX)
                return fail(err, err_size,
                            "%s: byte %zu: bad stack record (id %llu, %llu frames; at most %d)",
                            r->path, at, bad ? 0ull : (unsigned long long)v[0],
                            bad ? 0ull : (unsigned long long)v[1], TF_MAX_FRAMES);
            if (s->mode == MODE_STREAM) { /* defined in pass 1 */
                for (uint64_t i = 0; i < v[1]; i++)
                    if (tf_get_varint(&p, end, &v[2]) != 0)
                        return fail(err, err_size, "%s: byte %zu: bad stack record", r->path, at);
                continue;
            }
            size_t first = s->num_frames;
            if (grow(&r->frames, &s->frames_cap, first + v[1], sizeof *r->frames) ||
                grow(&s->stacks, &s->stacks_cap, s->num_raw_stacks + 1, sizeof *s->stacks))
                return fail(err, err_size, "%s: out of memory for the stacks", r->path);
            for (uint64_t i = 0; i < v[1]; i++)
                if (tf_get_varint(&p, end, &r->frames[first + i]) != 0)
                    return fail(err, err_size,
                                "%s: byte %zu: the stack record runs past the end of its chunk",
                                r->path, at);
            s->stacks[s->num_raw_stacks++] = (raw_stack){v[0], (uint32_t)first, (uint32_t)v[1]};
            s->num_frames += v[1];
        } else if (kind == TF_MAPS || kind == TF_COMMAND) {
            FIELD(0);
            if (bad || v[0] > (uint64_t)(end - p))
                return fail(err, err_size, "%s: byte %zu: the %s record runs past its chunk",
                            r->path, at, kind == TF_MAPS ? "maps" : "command");
            if (kind == TF_COMMAND) {
                free(r->command);
                r->command = malloc((size_t)v[0] + 1);
                if (r->command != NULL) {
                    memcpy(r->command, p, (size_t)v[0]);
                    r->command[v[0]] = '\0';
                }
                if (r->command == NULL)
                    return fail(err, err_size, "%s: out of memory", r->path);
                for (size_t i = 0; i < v[0]; i++)
                    if (r->command[i] == '\0')
                        r->command[i] = ' ';
                for (size_t n = (size_t)v[0]; n > 0 && r->command[n - 1] == ' '; n--)
                    r->command[n - 1] = '\0';
            } else if (s->mode != MODE_STREAM) {
                if (grow(&s->maps_text, &s->maps_list_cap, s->num_maps + 1, sizeof *s->maps_text) ||
                    grow(&s->maps_len, &s->maps_len_cap, s->num_maps + 1, sizeof *s->maps_len))
                    return fail(err, err_size, "%s: out of memory", r->path);
                s->maps_text[s->num_maps] = p;
                s->maps_len[s->num_maps++] = (size_t)v[0];
            }
            p += v[0];
        } else if (kind == TF_ALLOCATOR) {
            FIELD(0);
            FIELD(1);
            FIELD(2);
            if (bad || v[2] > (uint64_t)(end - p))
                return fail(err, err_size,
                            "%s: byte %zu: the allocator sample runs past the end of its chunk",
                            r->path, at);
            rec_sample sample = {v[0], v[1], {0}};
            for (uint64_t i = 0; i < v[2]; i++) {
                uint64_t value;
                if (tf_get_varint(&p, end, &value) != 0)
                    return fail(err, err_size,
                                "%s: byte %zu: the allocator sample runs past the end of its "
                                "chunk",
                                r->path, at);
                if (i < TF_ALLOCATOR_FIELDS)
                    sample.value[i] = value;
            }
            if (s->mode == MODE_STREAM) /* kept in pass 1 */
                continue;
            if (grow(&r->samples, &s->samples_cap, r->num_samples + 1, sizeof *r->samples))
                return fail(err, err_size, "%s: out of memory for the allocator samples",
                            r->path);
            r->samples[r->num_samples++] = sample;
        } else if (kind == TF_PROFILE) {
            for (int i = 0; i < 5; i++)
                FIELD(i);
            if (bad)
                return fail(err, err_size, "%s: byte %zu: the profile record runs past its chunk",
                            r->path, at);
            if (v[0] == 0)
                return fail(err, err_size, "%s: byte %zu: the profile record says rate 0",
                            r->path, at);
            r->profile_rate = v[0];
            r->profile_samples = v[1];
            r->profile_live_samples = v[2];
            r->profile_time_ns = v[3];
        } else if (kind == TF_PROFILE_SITE) {
            for (int i = 0; i < 7; i++)
                FIELD(i);
            if (bad || v[0] == 0 || v[0] > UINT32_MAX)
                return fail(err, err_size, "%s: byte %zu: bad profile site record (stack id %llu)",
                            r->path, at, bad ? 0ull : (unsigned long long)v[0]);
            if (s->mode != MODE_STORE)
                continue;
            if (grow(&r->profile_sites, &s->sites_cap, r->num_profile_sites + 1,
                     sizeof *r->profile_sites))
                return fail(err, err_size, "%s: out of memory for the profile's sites", r->path);
            r->profile_sites[r->num_profile_sites++] =
                (rec_profile_site){(uint32_t)v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
        } else if (kind == TF_END) {
            FIELD(0);
            FIELD(1);
            FIELD(2);
            if (bad)
                return fail(err, err_size, "%s: byte %zu: the end record runs past its chunk",
                            r->path, at);
            end_counts[0] = v[0];
            end_counts[1] = v[1];
            end_counts[2] = v[2];
            *ended = 1;
        } else {
            return fail(err, err_size,
                        "%s: byte %zu: unknown record kind 0x%02x in the chunk at byte %zu",
                        r->path, at, kind, chunk_at);
        }
#undef FIELD
    }
    return 0;
}

/* Reads the chunks: all of a recording (MODE_STORE), or its stacks, maps
 * and command with the events counted (MODE_COUNT) and then handed to a
 * sink (MODE_STREAM, the same parse_state again). */
static int scan(const char *path, const unsigned char *data, size_t len, recording *out,
                parse_state *sp, char *err, size_t err_size)
{
    if (!recording_is_binary(data, len)) {
        char got[40] = "";
        for (size_t i = 0; i < len && i < 8; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%02x", i ? " " : "",
                     data[i]);
        return fail(err, err_size,
                    "%s: not a brisk-trace recording: it starts with bytes %s, a recording "
                    "with \"" TF_MAGIC "\" or \"BRISKPAK\"",
                    path, len ? got : "(none: the file is empty)");
    }
    if (len < TF_HEADER_BYTES)
        return fail(err, err_size,
                    "%s: truncated: the file ends inside its %u-byte header (it has %zu bytes)",
                    path, TF_HEADER_BYTES, len);
    uint32_t version = tf_get_u32(data + 8), header_bytes = tf_get_u32(data + 12);
    if (version < TF_VERSION_OLDEST || version > TF_VERSION)
        return fail(err, err_size,
                    "%s: recording format version %u; this brisk-trace reads versions %u to %u",
                    path, version, TF_VERSION_OLDEST, TF_VERSION);
    if (header_bytes < TF_HEADER_BYTES || header_bytes > len)
        return fail(err, err_size, "%s: bad header: it declares %u header bytes (file: %zu)",
                    path, header_bytes, len);

    recording *r = out;
    parse_state s_, *s = sp;
    if (s->mode != MODE_STREAM) {
        memset(r, 0, sizeof *r);
        r->path = strdup(path);
        if (r->path == NULL)
            return fail(err, err_size, "%s: out of memory", path);
    }
    r->num_events = 0;
    r->pid = tf_get_u64(data + 16);
    uint64_t start_ns = tf_get_u64(data + 24);
    (void)s_;
    /* An event takes 6 bytes or more: room for them all at once. */
    if (s->mode == MODE_STORE &&
        grow(&r->events, &s->events_cap, len / 6 + 1, sizeof *r->events) != 0) {
        free(r->path);
        return fail(err, err_size, "%s: out of memory for %zu bytes of events", path, len);
    }
    int ended = 0, rc = 0;
    uint64_t end_counts[3] = {0, 0, 0};
    size_t at = header_bytes;
    while (at < len && rc == 0) {
        if (len - at < TF_CHUNK_HEADER_BYTES) {
            rc = fail(err, err_size,
                      "%s: truncated: the file ends inside a chunk header at byte %zu", path, at);
            break;
        }
        if (tf_get_u32(data + at) != TF_CHUNK_MAGIC) {
            rc = fail(err, err_size, "%s: byte %zu: expected a chunk (\"CHNK\"), found %02x %02x %02x %02x",
                      path, at, data[at], data[at + 1], data[at + 2], data[at + 3]);
            break;
        }
        uint32_t payload = tf_get_u32(data + at + 4);
        if (payload > len - at - TF_CHUNK_HEADER_BYTES) {
            rc = fail(err, err_size,
                      "%s: truncated: the chunk at byte %zu declares %u bytes, the file ends "
                      "%zu bytes into it",
                      path, at, payload, len - at - TF_CHUNK_HEADER_BYTES);
            break;
        }
        uint32_t thread;
        if (thread_index(s, tf_get_u32(data + at + 8), &thread) != 0) {
            rc = fail(err, err_size, "%s: out of memory", path);
            break;
        }
        const unsigned char *p = data + at + TF_CHUNK_HEADER_BYTES;
        rc = parse_chunk(s, data, at, p, p + payload, thread, start_ns, &ended, end_counts, err,
                         err_size);
        at += TF_CHUNK_HEADER_BYTES + payload;
    }
    if (rc == 0 && !ended)
        rc = fail(err, err_size,
                  "%s: truncated: no end record after %zu bytes (was the recorded process "
                  "killed, or is it still running?)",
                  path, len);
    if (rc == 0 && (end_counts[0] != r->num_events || end_counts[1] != s->num_raw_stacks))
        rc = fail(err, err_size,
                  "%s: incomplete: the end record counts %llu events and %llu stacks, the file "
                  "holds %zu and %zu (a thread's log was lost)",
                  path, (unsigned long long)end_counts[0], (unsigned long long)end_counts[1],
                  r->num_events, s->num_raw_stacks);
    r->flags = (unsigned)end_counts[2];
    if (s->mode == MODE_STREAM)
        return rc;
    /* Dense stack indices: 1 + position in id order. */
    if (rc == 0) {
        if (s->num_raw_stacks > 0) /* qsort of NULL is undefined, even for 0 elements */
            qsort(s->stacks, s->num_raw_stacks, sizeof *s->stacks, cmp_raw_stack);
        r->num_stacks = s->num_raw_stacks + 1;
        r->stack_first = calloc(r->num_stacks, sizeof *r->stack_first);
        r->stack_depth = calloc(r->num_stacks, sizeof *r->stack_depth);
        if (r->stack_first == NULL || r->stack_depth == NULL)
            rc = fail(err, err_size, "%s: out of memory", path);
        for (size_t i = 0; rc == 0 && i < s->num_raw_stacks; i++) {
            if (i > 0 && s->stacks[i].id == s->stacks[i - 1].id)
                rc = fail(err, err_size, "%s: stack id %llu is defined twice", path,
                          (unsigned long long)s->stacks[i].id);
            r->stack_first[i + 1] = s->stacks[i].first;
            r->stack_depth[i + 1] = s->stacks[i].depth;
        }
        for (size_t i = 0; rc == 0 && i < r->num_events && s->mode == MODE_STORE; i++) {
            rec_event *e = &r->events[i];
            if (e->stack == 0)
                continue;
            uint32_t dense = dense_stack(s, e->stack);
            if (dense == 0)
                rc = fail(err, err_size,
                          "%s: an event (number %llu) uses stack id %u, which no stack record "
                          "defines",
                          path, (unsigned long long)e->seq, e->stack);
            e->stack = dense;
        }
    }
    for (size_t i = 0; rc == 0 && i < r->num_profile_sites; i++) {
        rec_profile_site *site = &r->profile_sites[i];
        uint32_t dense = dense_stack(s, site->stack);
        if (dense == 0)
            rc = fail(err, err_size,
                      "%s: a profile site uses stack id %u, which no stack record defines", path,
                      site->stack);
        site->stack = dense;
    }
    if (rc == 0 && r->num_profile_sites > 0 && r->profile_rate == 0)
        rc = fail(err, err_size, "%s: profile sites without a profile record", path);
    /* The maps, latest first: a later record describes the address space
     * last seen. */
    size_t maps_total = 1;
    for (size_t i = 0; i < s->num_maps; i++)
        maps_total += s->maps_len[i] + 1;
    if (rc == 0 && (r->maps = malloc(maps_total)) == NULL)
        rc = fail(err, err_size, "%s: out of memory", path);
    if (rc == 0) {
        size_t n = 0;
        for (size_t i = s->num_maps; i-- > 0;) {
            memcpy(r->maps + n, s->maps_text[i], s->maps_len[i]);
            n += s->maps_len[i];
            if (n > 0 && r->maps[n - 1] != '\n')
                r->maps[n++] = '\n';
        }
        r->maps[n] = '\0';
    }
    if (rc == 0 && r->command == NULL)
        r->command = strdup("");
    if (rc == 0 && !sorted(r->samples, r->num_samples, sizeof *r->samples, cmp_sample_seq))
        qsort(r->samples, r->num_samples, sizeof *r->samples, cmp_sample_seq);
    if (rc == 0 && s->mode == MODE_STORE)
        rc = recording_finish(r, err, err_size);
    free(s->maps_text);
    free(s->maps_len);
    s->maps_text = NULL;
    s->maps_len = NULL;
    if (rc != 0 || s->mode == MODE_STORE) {
        free(s->stacks);
        s->stacks = NULL;
    }
    if (rc != 0)
        recording_free(r);
    return rc;
}

int recording_parse(const char *path, const unsigned char *data, size_t len, recording *out,
                    char *err, size_t err_size)
{
    parse_state s;
    memset(&s, 0, sizeof s);
    s.r = out;
    s.mode = MODE_STORE;
    return scan(path, data, len, out, &s, err, err_size);
}

int recording_stream(const char *path, const unsigned char *data, size_t len, recording *meta,
                     rec_event_sink sink, int (*begin)(void *context, const recording *meta),
                     void *context, int any_order, char *err, size_t err_size)
{
    parse_state s;
    memset(&s, 0, sizeof s);
    s.r = meta;
    s.mode = MODE_COUNT;
    int rc = scan(path, data, len, meta, &s, err, err_size);
    if (rc != 0)
        return -1;
    if (!any_order && s.have_event_thread && s.event_thread == REC_NONE) {
        free(s.stacks);
        return 1; /* several threads: their events need sorting */
    }
    rc = begin(context, meta);
    if (rc == 0) {
        s.mode = MODE_STREAM;
        s.sink = sink;
        s.sink_context = context;
        s.r = meta;
        rc = scan(path, data, len, meta, &s, err, err_size);
    } else {
        snprintf(err, err_size, "%s: cannot write the packed recording", path);
        rc = -1;
    }
    free(s.stacks);
    return rc;
}

int recording_counts(const char *path, const unsigned char *data, size_t len, size_t counts[2],
                     char *err, size_t err_size)
{
    parse_state s;
    recording meta;
    memset(&s, 0, sizeof s);
    s.r = &meta;
    s.mode = MODE_COUNT;
    if (scan(path, data, len, &meta, &s, err, err_size) != 0)
        return -1;
    counts[0] = meta.num_events;
    counts[1] = meta.num_stacks ? meta.num_stacks - 1 : 0;
    free(s.stacks);
    recording_free(&meta);
    return 0;
}

size_t trace_read_head(const char *path, unsigned char *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    return got;
}

/* Reads a whole file. */
unsigned char *trace_read_file(const char *path, size_t *len, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fail(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *data = malloc(cap);
    while (data != NULL) {
        if (n == cap) {
            unsigned char *grown = realloc(data, cap * 2);
            if (grown == NULL) {
                free(data);
                data = NULL;
                break;
            }
            data = grown;
            cap *= 2;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int read_error = ferror(f);
    int saved = errno;
    fclose(f);
    if (data == NULL) {
        fail(err, err_size, "%s: out of memory reading the file", path);
        return NULL;
    }
    if (read_error) {
        free(data);
        fail(err, err_size, "%s: cannot read: %s", path, strerror(saved));
        return NULL;
    }
    *len = n;
    return data;
}

int recording_load(const char *path, recording *out, char *err, size_t err_size)
{
    size_t len;
    unsigned char *data = trace_read_file(path, &len, err, err_size);
    if (data == NULL)
        return -1;
    int rc = recording_parse_any(path, data, len, out, err, err_size);
    free(data);
    return rc;
}

int recording_parse_any(const char *path, const unsigned char *data, size_t len,
                        recording *out, char *err, size_t err_size)
{
    if (recording_is_packed(data, len))
        return recording_unpack(path, data, len, out, err, err_size);
    if (recording_is_binary(data, len) || memchr(data, '\0', len) != NULL)
        return recording_parse(path, data, len, out, err, err_size);
    trace t;
    int rc = trace_parse_text(path, (const char *)data, len, &t, err, err_size);
    if (rc == 0) {
        rc = recording_from_trace(&t, out, err, err_size);
        trace_free(&t);
    }
    return rc;
}

void recording_free(recording *r)
{
    free(r->path);
    free(r->command);
    free(r->events);
    free(r->steps);
    free(r->stack_first);
    free(r->stack_depth);
    free(r->frames);
    free(r->thread_tids);
    free(r->maps);
    free(r->samples);
    free(r->profile_sites);
    memset(r, 0, sizeof *r);
}

/* ---- writing -------------------------------------------------------------- */

typedef struct chunk_writer {
    FILE *out;
    int failed;
    uint32_t tid;
    size_t used;
    uint64_t last_seq, last_time;
    unsigned char data[1 << 16];
} chunk_writer;

static void chunk_flush(chunk_writer *w)
{
    if (w->used == TF_CHUNK_HEADER_BYTES)
        return;
    tf_put_u32(w->data, TF_CHUNK_MAGIC);
    tf_put_u32(w->data + 4, (uint32_t)(w->used - TF_CHUNK_HEADER_BYTES));
    tf_put_u32(w->data + 8, w->tid);
    tf_put_u32(w->data + 12, 0);
    if (fwrite(w->data, 1, w->used, w->out) != w->used)
        w->failed = 1;
    w->used = TF_CHUNK_HEADER_BYTES;
    w->last_seq = 0;
    w->last_time = 0;
}

/* Room for one record of up to `need` bytes. */
static unsigned char *chunk_room(chunk_writer *w, size_t need)
{
    if (w->used + need > sizeof w->data)
        chunk_flush(w);
    return w->data + w->used;
}

static void chunk_text(chunk_writer *w, unsigned kind, const char *text, size_t len)
{
    chunk_flush(w);
    unsigned char head[16], *p = head;
    *p++ = (unsigned char)kind;
    p = tf_put_varint(p, len);
    size_t payload = (size_t)(p - head) + len;
    unsigned char h[TF_CHUNK_HEADER_BYTES];
    tf_put_u32(h, TF_CHUNK_MAGIC);
    tf_put_u32(h + 4, (uint32_t)payload);
    tf_put_u32(h + 8, w->tid);
    tf_put_u32(h + 12, 0);
    if (fwrite(h, 1, sizeof h, w->out) != sizeof h ||
        fwrite(head, 1, (size_t)(p - head), w->out) != (size_t)(p - head) ||
        fwrite(text, 1, len, w->out) != len)
        w->failed = 1;
}

int recording_write(FILE *out, const recording *r)
{
    chunk_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -1;
    w->out = out;
    w->used = TF_CHUNK_HEADER_BYTES;
    unsigned char header[TF_HEADER_BYTES];
    memcpy(header, TF_MAGIC, TF_MAGIC_BYTES);
    tf_put_u32(header + 8, TF_VERSION);
    tf_put_u32(header + 12, TF_HEADER_BYTES);
    tf_put_u64(header + 16, r->pid);
    tf_put_u64(header + 24, 0);
    if (fwrite(header, 1, sizeof header, out) != sizeof header)
        w->failed = 1;
    w->tid = r->num_threads ? r->thread_tids[0] : 0;
    /* The command, NUL-separated as the recorder writes it. */
    char *cmd = strdup(r->command ? r->command : "");
    if (cmd == NULL) {
        free(w);
        return -1;
    }
    for (char *c = cmd; *c; c++)
        if (*c == ' ')
            *c = '\0';
    chunk_text(w, TF_COMMAND, cmd, strlen(r->command ? r->command : ""));
    free(cmd);
    /* The stacks, with their dense index as id. */
    for (size_t i = 1; i < r->num_stacks; i++) {
        unsigned char *p = chunk_room(w, 32 + 10 * (size_t)r->stack_depth[i]);
        unsigned char *start = p;
        *p++ = TF_STACK;
        p = tf_put_varint(p, i);
        p = tf_put_varint(p, r->stack_depth[i]);
        for (uint32_t k = 0; k < r->stack_depth[i]; k++)
            p = tf_put_varint(p, r->frames[r->stack_first[i] + k]);
        w->used += (size_t)(p - start);
    }
    chunk_flush(w);
    /* The events, thread by thread, each thread's in order. */
    for (size_t t = 0; t < r->num_threads || (t == 0 && r->num_events > 0); t++) {
        w->tid = r->num_threads ? r->thread_tids[t] : 0;
        for (size_t i = 0; i < r->num_events; i++) {
            const rec_event *e = &r->events[i];
            if (e->thread != t)
                continue;
            unsigned char *p = chunk_room(w, 100), *start = p;
            *p++ = e->kind;
            p = tf_put_varint(p, e->seq - w->last_seq);
            p = tf_put_varint(p, e->time_ns - w->last_time);
            w->last_seq = e->seq;
            w->last_time = e->time_ns;
            if (e->kind == TF_REALLOC || e->kind == TF_REALLOCARRAY) {
                p = tf_put_varint(p, e->seq - e->seq_release);
                p = tf_put_varint(p, e->old_addr);
                p = tf_put_varint(p, e->addr);
                p = tf_put_varint(p, e->size);
            } else {
                p = tf_put_varint(p, e->addr);
                if (e->kind != TF_FREE)
                    p = tf_put_varint(p, e->size);
                if (tf_kind_has_alignment(e->kind))
                    p = tf_put_varint(p, e->alignment);
            }
            p = tf_put_varint(p, e->stack);
            w->used += (size_t)(p - start);
        }
        chunk_flush(w);
    }
    w->tid = r->num_threads ? r->thread_tids[0] : 0;
    for (size_t i = 0; i < r->num_samples; i++) {
        const rec_sample *a = &r->samples[i];
        unsigned char *p = chunk_room(w, 32 + 10 * TF_ALLOCATOR_FIELDS), *start = p;
        *p++ = TF_ALLOCATOR;
        p = tf_put_varint(p, a->seq);
        p = tf_put_varint(p, a->time_ns);
        p = tf_put_varint(p, TF_ALLOCATOR_FIELDS);
        for (int k = 0; k < TF_ALLOCATOR_FIELDS; k++)
            p = tf_put_varint(p, a->value[k]);
        w->used += (size_t)(p - start);
    }
    if (r->profile_rate != 0) {
        unsigned char *p = chunk_room(w, 60), *start = p;
        *p++ = TF_PROFILE;
        p = tf_put_varint(p, r->profile_rate);
        p = tf_put_varint(p, r->profile_samples);
        p = tf_put_varint(p, r->profile_live_samples);
        p = tf_put_varint(p, r->profile_time_ns);
        p = tf_put_varint(p, r->flags & TF_END_STACKS_FULL);
        w->used += (size_t)(p - start);
    }
    for (size_t i = 0; i < r->num_profile_sites; i++) {
        const rec_profile_site *site = &r->profile_sites[i];
        unsigned char *p = chunk_room(w, 80), *start = p;
        *p++ = TF_PROFILE_SITE;
        p = tf_put_varint(p, site->stack);
        p = tf_put_varint(p, site->samples);
        p = tf_put_varint(p, site->live_samples);
        p = tf_put_varint(p, site->alloc_count);
        p = tf_put_varint(p, site->alloc_bytes);
        p = tf_put_varint(p, site->live_count);
        p = tf_put_varint(p, site->live_bytes);
        w->used += (size_t)(p - start);
    }
    chunk_flush(w);
    if (r->maps != NULL && r->maps[0] != '\0')
        chunk_text(w, TF_MAPS, r->maps, strlen(r->maps));
    unsigned char *p = chunk_room(w, 40), *start = p;
    *p++ = TF_END;
    p = tf_put_varint(p, r->num_events);
    p = tf_put_varint(p, r->num_stacks ? r->num_stacks - 1 : 0);
    p = tf_put_varint(p, r->flags);
    w->used += (size_t)(p - start);
    chunk_flush(w);
    int failed = w->failed;
    free(w);
    return failed ? -1 : 0;
}
