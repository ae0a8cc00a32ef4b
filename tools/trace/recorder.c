/*
 * libbrisk-record.so: preloaded into a program by `brisk-trace record`, it
 * records every call the program makes to malloc, calloc, realloc,
 * reallocarray, free, free_sized, free_aligned_sized and the aligned
 * allocations (posix_memalign, aligned_alloc, memalign, valloc, pvalloc;
 * C++ new and delete reach it through them): which call, its arguments
 * and result, the calling thread, the time, and the call stack
 * (recorder_stack.c). It writes the brisk-trace recording format
 * (trace_format.h) as it goes.
 *
 * Threads never wait for one another: each logs into a buffer of its own
 * and writes it to the file as one chunk (one write(2) on an O_APPEND
 * file) when it fills, when the thread ends and when the process exits.
 * The events' order comes from one atomic counter: a free takes its
 * number before the real free, an allocation after the real call
 * returned, and a realloc one before (for the old block) and one after
 * (for the new), so an address handed to another thread is always numbered
 * after its free.
 *
 * The recorder never allocates through the functions it records:
 *   - the real functions come from dlsym(RTLD_NEXT); dlsym itself may call
 *     calloc before we know the real one, and is served from a static
 *     bootstrap buffer;
 *   - buffers and tables are mmap'd; output goes out through write(2);
 *   - a thread-local guard passes through (unrecorded) any allocation
 *     made while the recorder itself runs on that thread: by libc inside
 *     the recorder, or by a signal handler that interrupted it.
 *
 * Environment (set by brisk-trace record):
 *   BRISK_RECORD_OUT          the recording of the first process
 *   BRISK_RECORD_ROOT_PID     the pid of that process; any other process
 *                             (a fork, or a program it execs) writes
 *                             OUT without its extension + ".PID" + extension
 *   BRISK_RECORD_FREE_STACKS  0: record frees without their stacks
 */
#define _GNU_SOURCE
#include "recorder.h"

#include "brisk.h" /* the stats' struct only: the recorder never links libbrisk */

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Not declared by every libc (glibc has them from 2.41). */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#define EXPORT __attribute__((visibility("default")))
#define LOG_BYTES ((size_t)1 << 16)
/* Room one record may take: a stack definition of TF_MAX_FRAMES frames. */
#define RECORD_ROOM (16 + 10 * (TF_MAX_FRAMES + 3))

/* ---- the real allocator -------------------------------------------------- */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void *(*real_reallocarray)(void *, size_t, size_t);
static void (*real_free)(void *);
static void (*real_free_sized)(void *, size_t);
static void (*real_free_aligned_sized)(void *, size_t, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);
static int (*real_dlclose)(void *);
/* libbrisk's statistics, when the program uses libbrisk (preloaded or
 * linked); NULL otherwise. Looked up by name, so the recorder works
 * without it. */
static int (*brisk_stats)(struct brisk_malloc_stats *, size_t);
static void (*real_exit_now)(int);
static void (*real_Exit)(int);

/* Serves dlsym's own calloc before the real one is known. Blocks carry
 * their size in a 16-byte prefix (for realloc); they are never freed. */
static _Alignas(16) unsigned char bootstrap[1 << 16];
static size_t bootstrap_used;

static int is_bootstrap(const void *p)
{
    return (const unsigned char *)p >= bootstrap &&
           (const unsigned char *)p < bootstrap + sizeof bootstrap;
}

static void *bootstrap_alloc(size_t size)
{
    size_t need = (size + 15) / 16 * 16 + 16;
    size_t at = __atomic_fetch_add(&bootstrap_used, need, __ATOMIC_RELAXED);
    if (size > sizeof bootstrap || at + need > sizeof bootstrap)
        return NULL;
    memcpy(bootstrap + at, &size, sizeof size);
    return bootstrap + at + 16;
}

static int resolving;
static int resolved;

#define RESOLVE(var, name) (var = (__typeof__(var))dlsym(RTLD_NEXT, name))

/* free first: dlsym reports a missing name (free_sized, in libcs without
 * it) through a message it allocates and frees. */
static void resolve_real_functions(void)
{
    if (__atomic_load_n(&resolved, __ATOMIC_ACQUIRE))
        return;
    resolving = 1;
    RESOLVE(real_free, "free");
    RESOLVE(real_malloc, "malloc");
    RESOLVE(real_calloc, "calloc");
    RESOLVE(real_realloc, "realloc");
    RESOLVE(real_reallocarray, "reallocarray");
    RESOLVE(real_posix_memalign, "posix_memalign");
    RESOLVE(real_aligned_alloc, "aligned_alloc");
    RESOLVE(real_memalign, "memalign");
    RESOLVE(real_valloc, "valloc");
    RESOLVE(real_pvalloc, "pvalloc");
    RESOLVE(real_dlclose, "dlclose");
    RESOLVE(real_exit_now, "_exit");
    RESOLVE(real_Exit, "_Exit");
    RESOLVE(real_free_sized, "free_sized");
    RESOLVE(real_free_aligned_sized, "free_aligned_sized");
    brisk_stats = (__typeof__(brisk_stats))dlsym(RTLD_DEFAULT, "brisk_malloc_get_stats");
    resolving = 0;
    if (real_malloc == NULL || real_calloc == NULL || real_realloc == NULL || real_free == NULL) {
        rec_say("brisk-record: cannot find the real malloc (dlsym RTLD_NEXT failed)\n");
        abort();
    }
    __atomic_store_n(&resolved, 1, __ATOMIC_RELEASE);
}

/* ---- per-thread logs ------------------------------------------------------ */

enum { LOG_IDLE, LOG_WRITING, LOG_CLAIMED };

typedef struct thread_log {
    struct thread_log *next; /* every log, for the flush at exit */
    int state;               /* LOG_IDLE, LOG_WRITING (its thread), LOG_CLAIMED */
    int in_use;              /* owned by a live thread */
    uint32_t tid;
    size_t used;             /* bytes in data, the chunk header included */
    uint64_t last_seq, last_time;
    uint64_t events, stacks; /* records written through this log */
    unsigned char data[LOG_BYTES];
} thread_log;

static __thread thread_log *my_log __attribute__((tls_model("initial-exec")));
static __thread int in_recorder __attribute__((tls_model("initial-exec")));

static int recording;     /* logging events (cleared at exit) */
static int finished;
static int out_fd = -1;
static int free_stacks = 1;
static uint64_t next_seq = 1;
static uint64_t start_ns;
static thread_log *all_logs;
static pthread_key_t log_key;
static uint64_t dropped_events, dropped_stacks; /* in logs that could not be written */
static long root_pid;
/* The process whose memory this state is: a vfork child shares it (and
 * runs no atfork handler), so it must not write or stop the recording. */
static long owner_pid;
static char out_path[4096];
static int write_failed;

static void log_reset(thread_log *l)
{
    l->used = TF_CHUNK_HEADER_BYTES;
    l->last_seq = 0;
    l->last_time = start_ns;
}

/* Writes the log's records as one chunk. */
static void log_flush(thread_log *l)
{
    if (l->used == TF_CHUNK_HEADER_BYTES)
        return;
    tf_put_u32(l->data, TF_CHUNK_MAGIC);
    tf_put_u32(l->data + 4, (uint32_t)(l->used - TF_CHUNK_HEADER_BYTES));
    tf_put_u32(l->data + 8, l->tid);
    tf_put_u32(l->data + 12, 0);
    if (out_fd < 0 || rec_write_all(out_fd, l->data, l->used) != 0) {
        __atomic_store_n(&write_failed, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&dropped_events, l->events, __ATOMIC_RELAXED);
        __atomic_fetch_add(&dropped_stacks, l->stacks, __ATOMIC_RELAXED);
        l->events = l->stacks = 0;
    }
    log_reset(l);
}

static void log_release(void *arg)
{
    thread_log *l = arg;
    int idle = LOG_IDLE;
    if (l == NULL || !__atomic_compare_exchange_n(&l->state, &idle, LOG_CLAIMED, 0,
                                                  __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return;
    log_flush(l);
    my_log = NULL;
    __atomic_store_n(&l->state, LOG_IDLE, __ATOMIC_RELEASE);
    __atomic_store_n(&l->in_use, 0, __ATOMIC_RELEASE);
}

static thread_log *log_acquire(void)
{
    thread_log *l;
    for (l = __atomic_load_n(&all_logs, __ATOMIC_ACQUIRE); l != NULL; l = l->next) {
        int unused = 0;
        if (__atomic_load_n(&l->in_use, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(&l->in_use, &unused, 1, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            break;
    }
    if (l == NULL) {
        l = rec_map(sizeof *l);
        if (l == NULL)
            return NULL;
        l->in_use = 1;
        l->next = __atomic_load_n(&all_logs, __ATOMIC_RELAXED);
        while (!__atomic_compare_exchange_n(&all_logs, &l->next, l, 1, __ATOMIC_RELEASE,
                                            __ATOMIC_RELAXED))
            ;
    }
    l->tid = rec_tid();
    log_reset(l);
    my_log = l;
    pthread_setspecific(log_key, l); /* flushed and released when the thread ends */
    return l;
}

/* Starts a record on this thread's log; NULL when the event is not to be
 * recorded (recording off, or the recorder already running here). */
static thread_log *log_begin(void)
{
    if (in_recorder || !__atomic_load_n(&recording, __ATOMIC_RELAXED))
        return NULL;
    in_recorder = 1;
    thread_log *l = my_log;
    if (l == NULL && (l = log_acquire()) == NULL) {
        in_recorder = 0;
        return NULL;
    }
    int idle = LOG_IDLE;
    if (!__atomic_compare_exchange_n(&l->state, &idle, LOG_WRITING, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
        in_recorder = 0; /* claimed by the exit flush */
        return NULL;
    }
    if (l->used + 2 * RECORD_ROOM > LOG_BYTES)
        log_flush(l);
    return l;
}

static void log_end(thread_log *l)
{
    __atomic_store_n(&l->state, LOG_IDLE, __ATOMIC_RELEASE);
    in_recorder = 0;
}

static uint64_t take_seq(void) { return __atomic_fetch_add(&next_seq, 1, __ATOMIC_RELAXED); }

/* The event's kind, sequence and time deltas; `seq` is taken by the
 * caller (before or after the real call, see the top). */
static unsigned char *put_event_head(thread_log *l, unsigned kind, uint64_t seq)
{
    unsigned char *p = l->data + l->used;
    uint64_t now = rec_now_ns();
    if (now < l->last_time)
        now = l->last_time;
    *p++ = (unsigned char)kind;
    p = tf_put_varint(p, seq - l->last_seq);
    p = tf_put_varint(p, now - l->last_time);
    l->last_seq = seq;
    l->last_time = now;
    return p;
}

/* The caller's stack id, writing its definition first when it is new. */
static uint64_t put_stack(thread_log *l)
{
    uint64_t frames[TF_MAX_FRAMES];
    unsigned count;
    int is_new;
    uint64_t id = stack_capture(frames, &count, &is_new);
    if (is_new) {
        unsigned char *p = l->data + l->used;
        *p++ = TF_STACK;
        p = tf_put_varint(p, id);
        p = tf_put_varint(p, count);
        for (unsigned i = 0; i < count; i++)
            p = tf_put_varint(p, frames[i]);
        l->used = (size_t)(p - l->data);
        l->stacks++;
    }
    return id;
}

/* Allocator samples (TF_ALLOCATOR) are taken this often, by the first
 * thread to log an event once one is due; but never more than one
 * SAMPLE_COST_SHARE-th of the time: brisk_malloc_get_stats walks every
 * segment, so its cost grows with the heap, and at a fixed rate it would
 * slow a program with a big heap by a large share (docs/trace.md). */
#define SAMPLE_EVERY_NS 1000000u /* 1 ms */
#define SAMPLE_COST_SHARE 50u    /* at most 2% of the time */
/* The cost is the thread's CPU time, so a sample the scheduler
 * interrupted does not count as dear; and one dear sample spaces the
 * next by at most this. */
#define SAMPLE_MOST_SPACING_NS 100000000u /* 100 ms */
static uint64_t next_sample_ns;

/* A sample of libbrisk's state after the event just logged, when one is
 * due. brisk_malloc_get_stats takes libbrisk's global lock, so it is
 * taken only after an allocation, which may take that lock itself: a
 * signal handler that allocates while its thread holds the lock would
 * deadlock in libbrisk with or without the recorder, and a free (which
 * in libbrisk mostly does not lock) never samples. Fits in the room log_begin left: an event and its stack take at
 * most RECORD_ROOM, a sample 1 + 10 * (3 + TF_ALLOCATOR_FIELDS) bytes. */
static unsigned char *put_allocator_sample(thread_log *l, unsigned char *p)
{
    uint64_t due = __atomic_load_n(&next_sample_ns, __ATOMIC_RELAXED);
    if (brisk_stats == NULL || l->last_time < due ||
        !__atomic_compare_exchange_n(&next_sample_ns, &due, l->last_time + SAMPLE_EVERY_NS, 0,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return p;
    struct brisk_malloc_stats st;
    memset(&st, 0, sizeof st);
    uint64_t before = rec_thread_cpu_ns();
    if (brisk_stats(&st, sizeof st) != 0)
        return p;
    uint64_t spacing = (rec_thread_cpu_ns() - before) * SAMPLE_COST_SHARE;
    if (spacing > SAMPLE_MOST_SPACING_NS)
        spacing = SAMPLE_MOST_SPACING_NS;
    if (spacing > SAMPLE_EVERY_NS)
        __atomic_store_n(&next_sample_ns, l->last_time + spacing, __ATOMIC_RELAXED);
    uint64_t value[TF_ALLOCATOR_FIELDS] = {
        [TF_AL_RESIDENT] = rec_resident_bytes(),
        [TF_AL_MAPPED] = st.mapped_bytes,
        [TF_AL_LARGE_LIVE] = st.large_live_bytes,
        [TF_AL_LARGE_CACHED] = st.large_cached_bytes,
        [TF_AL_SEGMENTS] = st.segments,
        [TF_AL_SEGMENTS_CACHED] = st.segments_cached,
        [TF_AL_ABANDONED] = st.abandoned_page_bytes,
        [TF_AL_THREADS] = st.threads_live,
    };
    *p++ = TF_ALLOCATOR;
    p = tf_put_varint(p, __atomic_load_n(&next_seq, __ATOMIC_RELAXED));
    p = tf_put_varint(p, l->last_time - start_ns);
    p = tf_put_varint(p, TF_ALLOCATOR_FIELDS);
    for (int k = 0; k < TF_ALLOCATOR_FIELDS; k++)
        p = tf_put_varint(p, value[k]);
    return p;
}

/* sample: whether the call has happened already (an allocation; a free
 * is logged before the real free), so that a sample taken now shows the
 * state after every call numbered below it, as the format says. */
static void finish_event(thread_log *l, unsigned char *end, int sample)
{
    if (sample)
        end = put_allocator_sample(l, end);
    l->used = (size_t)(end - l->data);
    l->events++;
    log_end(l);
}

/* An allocation that returned p (NULL when it failed). */
static void note_alloc(unsigned kind, void *p, uint64_t size, uint64_t alignment)
{
    thread_log *l = log_begin();
    if (l == NULL)
        return;
    uint64_t stack = put_stack(l);
    unsigned char *e = put_event_head(l, kind, take_seq());
    e = tf_put_varint(e, (uintptr_t)p);
    e = tf_put_varint(e, size);
    if (tf_kind_has_alignment(kind))
        e = tf_put_varint(e, alignment);
    e = tf_put_varint(e, stack);
    finish_event(l, e, 1);
}

/* A free of p, logged before the real free. */
static void note_free(unsigned kind, void *p, uint64_t size, uint64_t alignment)
{
    thread_log *l = log_begin();
    if (l == NULL)
        return;
    uint64_t stack = free_stacks ? put_stack(l) : 0;
    unsigned char *e = put_event_head(l, kind, take_seq());
    e = tf_put_varint(e, (uintptr_t)p);
    if (kind != TF_FREE)
        e = tf_put_varint(e, size);
    if (tf_kind_has_alignment(kind))
        e = tf_put_varint(e, alignment);
    e = tf_put_varint(e, stack);
    finish_event(l, e, 0);
}

/* A realloc of old to new; seq_before was taken before the real call.
 * The record carries the later number and the gap back to the earlier. */
static void note_realloc(unsigned kind, uint64_t seq_before, void *old, void *new_block,
                         uint64_t size)
{
    thread_log *l = log_begin();
    if (l == NULL)
        return;
    uint64_t stack = put_stack(l);
    uint64_t seq = take_seq();
    unsigned char *e = put_event_head(l, kind, seq);
    e = tf_put_varint(e, seq - seq_before);
    e = tf_put_varint(e, (uintptr_t)old);
    e = tf_put_varint(e, (uintptr_t)new_block);
    e = tf_put_varint(e, size);
    e = tf_put_varint(e, stack);
    finish_event(l, e, 1);
}

/* ---- the file --------------------------------------------------------------- */

/* Digits of v into buf (at least 21 bytes), NUL-ended. */
static char *format_u64(char *buf, uint64_t v)
{
    char *p = buf + 20;
    *p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return p;
}

/* The file this process writes: OUT for the first process, otherwise OUT
 * with ".PID" before its extension (or at its end when it has none). */
static void recording_path(char *buf, size_t size)
{
    size_t n = strlen(out_path);
    long pid = rec_pid();
    memcpy(buf, out_path, n + 1);
    if (pid == root_pid || n + 32 > size)
        return;
    const char *slash = strrchr(buf, '/');
    char *dot = strrchr(buf, '.');
    size_t stem = dot != NULL && (slash == NULL || dot > slash) ? (size_t)(dot - buf) : n;
    char ext[4096];
    memcpy(ext, buf + stem, n - stem + 1);
    char digits[21];
    const char *d = format_u64(digits, (uint64_t)pid);
    size_t dn = strlen(d);
    buf[stem] = '.';
    memcpy(buf + stem + 1, d, dn);
    memcpy(buf + stem + 1 + dn, ext, n - stem + 1);
}

/* Writes one chunk of the calling thread holding `kind bytes text`. */
static void write_text_chunk(unsigned kind, const char *text, size_t len)
{
    size_t room = TF_CHUNK_HEADER_BYTES + 1 + 10 + len;
    size_t mapped = (room + 4095) / 4096 * 4096;
    unsigned char *chunk = rec_map(mapped);
    if (chunk == NULL) {
        write_failed = 1;
        return;
    }
    unsigned char *p = chunk + TF_CHUNK_HEADER_BYTES;
    *p++ = (unsigned char)kind;
    p = tf_put_varint(p, len);
    memcpy(p, text, len);
    p += len;
    tf_put_u32(chunk, TF_CHUNK_MAGIC);
    tf_put_u32(chunk + 4, (uint32_t)(p - chunk - TF_CHUNK_HEADER_BYTES));
    tf_put_u32(chunk + 8, rec_tid());
    tf_put_u32(chunk + 12, 0);
    if (out_fd < 0 || rec_write_all(out_fd, chunk, (size_t)(p - chunk)) != 0)
        write_failed = 1;
    rec_unmap(chunk, mapped);
}

/* The file mappings of /proc/self/maps, for the symbols. */
static void write_maps(void)
{
    size_t size = (size_t)8 << 20;
    char *maps = rec_map(size);
    if (maps == NULL)
        return;
    size_t len = rec_read_file("/proc/self/maps", maps, size);
    write_text_chunk(TF_MAPS, maps, tf_maps_keep_files(maps, len));
    rec_unmap(maps, size);
}

static void write_command(void)
{
    size_t size = (size_t)1 << 20;
    char *cmd = rec_map(size);
    if (cmd == NULL)
        return;
    size_t len = rec_read_file("/proc/self/cmdline", cmd, size);
    write_text_chunk(TF_COMMAND, cmd, len);
    rec_unmap(cmd, size);
}

/* Creates this process's file and writes its header and command line. */
static int start_file(void)
{
    char path[4200];
    recording_path(path, sizeof path);
    out_fd = rec_create(path);
    if (out_fd < 0) {
        rec_say("brisk-record: cannot create ");
        rec_say(path);
        rec_say(": ");
        rec_say(strerror(errno));
        rec_say("; not recording\n");
        return -1;
    }
    unsigned char header[TF_HEADER_BYTES];
    memcpy(header, TF_MAGIC, TF_MAGIC_BYTES);
    tf_put_u32(header + 8, TF_VERSION);
    tf_put_u32(header + 12, TF_HEADER_BYTES);
    tf_put_u64(header + 16, (uint64_t)rec_pid());
    tf_put_u64(header + 24, start_ns);
    if (rec_write_all(out_fd, header, sizeof header) != 0)
        write_failed = 1;
    write_command();
    return 0;
}

/* Flushes every thread's log and writes the maps and the end record. */
static void finish(void)
{
    if (in_recorder || rec_pid() != owner_pid ||
        __atomic_exchange_n(&finished, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    in_recorder = 1;
    __atomic_store_n(&recording, 0, __ATOMIC_RELEASE);
    uint64_t events = 0, stacks = 0;
    for (thread_log *l = __atomic_load_n(&all_logs, __ATOMIC_ACQUIRE); l != NULL; l = l->next) {
        /* A thread in the middle of a record finishes it in a moment. */
        int claimed = 0;
        for (int tries = 0; tries < 100000 && !claimed; tries++) {
            int idle = LOG_IDLE;
            claimed = __atomic_compare_exchange_n(&l->state, &idle, LOG_CLAIMED, 0,
                                                  __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
            if (!claimed)
                rec_yield();
        }
        if (!claimed)
            continue; /* its records are left out; the end record's counts say so */
        log_flush(l);
        events += l->events;
        stacks += l->stacks;
    }
    if (out_fd < 0)
        return;
    write_maps();
    unsigned char end[32], *p = end;
    *p++ = TF_END;
    p = tf_put_varint(p, events);
    p = tf_put_varint(p, stacks);
    p = tf_put_varint(p, (stack_table_full() ? TF_END_STACKS_FULL : 0) |
                             (free_stacks ? 0 : TF_END_NO_FREE_STACKS));
    unsigned char chunk[TF_CHUNK_HEADER_BYTES + sizeof end];
    tf_put_u32(chunk, TF_CHUNK_MAGIC);
    tf_put_u32(chunk + 4, (uint32_t)(p - end));
    tf_put_u32(chunk + 8, rec_tid());
    tf_put_u32(chunk + 12, 0);
    memcpy(chunk + TF_CHUNK_HEADER_BYTES, end, (size_t)(p - end));
    if (rec_write_all(out_fd, chunk, TF_CHUNK_HEADER_BYTES + (size_t)(p - end)) != 0)
        write_failed = 1;
    if (rec_close(out_fd) != 0)
        write_failed = 1;
    out_fd = -1;
    if (write_failed) {
        char path[4200];
        recording_path(path, sizeof path);
        rec_say("brisk-record: cannot write all of ");
        rec_say(path);
        rec_say("; it is incomplete\n");
    }
}

/* ---- fork, start, exit ---------------------------------------------------- */

/* The child starts a recording of its own: its blocks from before the fork
 * are "before the recorder started" for it, and the parent writes the
 * records its logs held. */
static void after_fork_child(void)
{
    if (!recording)
        return;
    owner_pid = rec_pid();
    out_fd = -1;
    stack_reset();
    for (thread_log *l = all_logs; l != NULL; l = l->next) {
        l->state = LOG_IDLE;
        l->in_use = l == my_log;
        l->events = l->stacks = 0;
        l->tid = rec_tid();
        log_reset(l);
    }
    dropped_events = dropped_stacks = 0;
    write_failed = 0;
    if (start_file() != 0)
        recording = 0;
}

static uint64_t parse_env_u64(const char *name, uint64_t fallback)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return fallback;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > UINT64_MAX / 10 - 9)
            return fallback;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    return v;
}

__attribute__((constructor)) static void recorder_start(void)
{
    in_recorder = 1;
    resolve_real_functions();
    const char *out = getenv("BRISK_RECORD_OUT");
    if (out == NULL || strlen(out) >= sizeof out_path) {
        rec_say("brisk-record: BRISK_RECORD_OUT is not set (use brisk-trace record); "
                "not recording\n");
        in_recorder = 0;
        return;
    }
    memcpy(out_path, out, strlen(out) + 1);
    root_pid = (long)parse_env_u64("BRISK_RECORD_ROOT_PID", 0);
    if (root_pid == 0)
        root_pid = rec_pid();
    owner_pid = rec_pid();
    free_stacks = parse_env_u64("BRISK_RECORD_FREE_STACKS", 1) != 0;
    start_ns = rec_now_ns();
    if (stack_init() != 0 || pthread_key_create(&log_key, log_release) != 0) {
        rec_say("brisk-record: cannot map the stack table; not recording\n");
        in_recorder = 0;
        return;
    }
    if (start_file() != 0) {
        in_recorder = 0;
        return;
    }
    pthread_atfork(NULL, NULL, after_fork_child);
    __atomic_store_n(&recording, 1, __ATOMIC_RELEASE);
    in_recorder = 0;
}

__attribute__((destructor)) static void recorder_stop(void) { finish(); }

/* ---- the interposed functions ---------------------------------------------- */

EXPORT void *malloc(size_t size)
{
    if (real_malloc == NULL) {
        if (resolving)
            return bootstrap_alloc(size);
        resolve_real_functions();
    }
    void *p = real_malloc(size);
    note_alloc(TF_MALLOC, p, size, 0);
    return p;
}

EXPORT void *calloc(size_t count, size_t size)
{
    if (real_calloc == NULL) {
        if (resolving)
            return (count != 0 && size > SIZE_MAX / count) ? NULL : bootstrap_alloc(count * size);
        resolve_real_functions();
    }
    void *p = real_calloc(count, size);
    note_alloc(TF_CALLOC, p, (uint64_t)count * size, 0);
    return p;
}

EXPORT void free(void *ptr)
{
    if (ptr == NULL || is_bootstrap(ptr))
        return;
    if (real_free == NULL)
        resolve_real_functions();
    note_free(TF_FREE, ptr, 0, 0);
    real_free(ptr);
}

EXPORT void free_sized(void *ptr, size_t size)
{
    if (ptr == NULL || is_bootstrap(ptr))
        return;
    if (real_free == NULL)
        resolve_real_functions();
    note_free(TF_FREE_SIZED, ptr, size, 0);
    if (real_free_sized != NULL)
        real_free_sized(ptr, size);
    else
        real_free(ptr);
}

EXPORT void free_aligned_sized(void *ptr, size_t alignment, size_t size)
{
    if (ptr == NULL || is_bootstrap(ptr))
        return;
    if (real_free == NULL)
        resolve_real_functions();
    note_free(TF_FREE_ALIGNED_SIZED, ptr, size, alignment);
    if (real_free_aligned_sized != NULL)
        real_free_aligned_sized(ptr, alignment, size);
    else
        real_free(ptr);
}

static void *resize(unsigned kind, void *ptr, size_t count, size_t size)
{
    uint64_t seq_before = take_seq();
    void *q = kind == TF_REALLOCARRAY ? real_reallocarray(ptr, count, size)
                                      : real_realloc(ptr, size);
    uint64_t bytes = (uint64_t)count * size;
    /* realloc(p, 0) frees p in glibc and returns NULL. */
    if (q != NULL || bytes == 0)
        note_realloc(kind, seq_before, ptr, q, q != NULL ? bytes : 0);
    else
        note_realloc(kind, seq_before, ptr, NULL, bytes); /* failed: p is kept */
    return q;
}

EXPORT void *realloc(void *ptr, size_t size)
{
    if (real_realloc == NULL)
        resolve_real_functions();
    if (ptr != NULL && is_bootstrap(ptr)) {
        size_t old;
        memcpy(&old, (unsigned char *)ptr - 16, sizeof old);
        void *q = malloc(size);
        if (q != NULL)
            memcpy(q, ptr, old < size ? old : size);
        return q;
    }
    return resize(TF_REALLOC, ptr, 1, size);
}

EXPORT void *reallocarray(void *ptr, size_t count, size_t size)
{
    if (real_reallocarray == NULL)
        resolve_real_functions();
    if (count != 0 && size > SIZE_MAX / count) {
        errno = ENOMEM;
        return NULL;
    }
    if (ptr != NULL && is_bootstrap(ptr))
        return realloc(ptr, count * size);
    return resize(TF_REALLOCARRAY, ptr, count, size);
}

EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (real_posix_memalign == NULL)
        resolve_real_functions();
    int rc = real_posix_memalign(out, alignment, size);
    note_alloc(TF_POSIX_MEMALIGN, rc == 0 ? *out : NULL, size, alignment);
    return rc;
}

EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    if (real_aligned_alloc == NULL)
        resolve_real_functions();
    void *p = real_aligned_alloc(alignment, size);
    note_alloc(TF_ALIGNED_ALLOC, p, size, alignment);
    return p;
}

EXPORT void *memalign(size_t alignment, size_t size)
{
    if (real_memalign == NULL)
        resolve_real_functions();
    void *p = real_memalign(alignment, size);
    note_alloc(TF_MEMALIGN, p, size, alignment);
    return p;
}

EXPORT void *valloc(size_t size)
{
    if (real_valloc == NULL)
        resolve_real_functions();
    void *p = real_valloc(size);
    note_alloc(TF_VALLOC, p, size, 0);
    return p;
}

EXPORT void *pvalloc(size_t size)
{
    if (real_pvalloc == NULL)
        resolve_real_functions();
    void *p = real_pvalloc(size);
    note_alloc(TF_PVALLOC, p, size, 0);
    return p;
}

/* The unloaded library's frames must still resolve: its mapping goes into
 * the recording first. */
EXPORT int dlclose(void *handle)
{
    if (real_dlclose == NULL)
        resolve_real_functions();
    if (!in_recorder && __atomic_load_n(&recording, __ATOMIC_RELAXED) &&
        rec_pid() == owner_pid) {
        in_recorder = 1;
        write_maps();
        in_recorder = 0;
    }
    return real_dlclose(handle);
}

/* A process that leaves through _exit (forked children usually do) runs
 * no destructors: write the recording first. */
EXPORT _Noreturn void _exit(int status)
{
    if (real_exit_now == NULL)
        resolve_real_functions();
    finish();
    real_exit_now(status);
    __builtin_unreachable();
}

EXPORT _Noreturn void _Exit(int status)
{
    if (real_Exit == NULL)
        resolve_real_functions();
    finish();
    real_Exit(status);
    __builtin_unreachable();
}
