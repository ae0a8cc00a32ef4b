/*
 * libbrisk-record.so: preloaded into a program by `brisk-trace record`, it
 * records every malloc, calloc, realloc, reallocarray, free and aligned
 * allocation (posix_memalign, aligned_alloc, memalign, valloc, pvalloc)
 * the program makes, and writes them as a malloc-lab trace when the
 * process ends.
 *
 * The recorder must never allocate through the functions it records:
 *   - the real functions come from dlsym(RTLD_NEXT); dlsym itself may call
 *     calloc before we know the real one, and is served from a static
 *     bootstrap buffer;
 *   - the pointer -> id table and the op log live in mmap'd memory;
 *   - output goes out through open/write, never stdio;
 *   - a thread-local flag passes through any allocation made while the
 *     recorder itself is running (from libc internals it calls).
 *
 * Environment (set by brisk-trace record):
 *   BRISK_RECORD_OUT       the trace file of the first process
 *   BRISK_RECORD_ROOT_PID  the pid of that process; any other process
 *                          (a fork, or a program it execs) writes
 *                          OUT-without-.rep + ".PID.rep"
 *   BRISK_RECORD_MAX_OPS   the op cap (default RECORD_DEFAULT_MAX_OPS)
 *
 * Threads are serialized by one lock: each op is logged while it holds it.
 * A free is logged before the real free (and a realloc under the lock), so
 * an address reused by another thread is always logged after its free.
 * Pointers the recorder never saw allocated (made before it started) are
 * passed through and not logged; so is everything after the op cap.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define RECORD_DEFAULT_MAX_OPS 2000000u
#define RECORD_LIMIT_MAX_OPS 200000000u
#define DEFAULT_ALIGNMENT 16

/* ---- the recorder's OS section ------------------------------------------
 * The project keeps system calls in src/common/os.c, but the recorder is not part
 * of the library: it is a separate shared object that wraps another
 * library's allocator from inside an arbitrary program, and must not
 * depend on libbrisk. Its system calls (map, unmap, open, write, close,
 * rename, unlink, getpid, the page size) are here, in one place; the real
 * _exit and _Exit are reached through dlsym below. */

static void *rec_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void rec_unmap(void *p, size_t size) { munmap(p, size); }

static int rec_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int rec_create(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

static int rec_close(int fd) { return close(fd); }
static int rec_rename(const char *from, const char *to) { return rename(from, to); }
static void rec_unlink(const char *path) { unlink(path); }
static long rec_pid(void) { return (long)getpid(); }
static size_t rec_page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static void rec_say(const char *text) { rec_write_all(STDERR_FILENO, text, strlen(text)); }

/* ---- the real allocator -------------------------------------------------- */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void *(*real_reallocarray)(void *, size_t, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);
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

static void resolve_real_functions(void)
{
    if (__atomic_load_n(&real_free, __ATOMIC_ACQUIRE) != NULL)
        return;
    resolving = 1;
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_reallocarray = (void *(*)(void *, size_t, size_t))dlsym(RTLD_NEXT, "reallocarray");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    real_valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
    real_pvalloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "pvalloc");
    real_exit_now = (void (*)(int))dlsym(RTLD_NEXT, "_exit");
    real_Exit = (void (*)(int))dlsym(RTLD_NEXT, "_Exit");
    void (*f)(void *) = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    __atomic_store_n(&real_free, f, __ATOMIC_RELEASE);
    resolving = 0;
    if (real_malloc == NULL || real_calloc == NULL || real_realloc == NULL || f == NULL) {
        rec_say("brisk-record: cannot find the real malloc (dlsym RTLD_NEXT failed)\n");
        abort();
    }
}

/* ---- recorder state ------------------------------------------------------ */

typedef struct rec_op {
    uint64_t size;
    uint32_t id;
    uint32_t alignment;
    char kind;
} rec_op;

typedef struct rec_slot {
    uintptr_t key; /* block address; 0 = empty */
    uint64_t size;
    uint32_t id;
} rec_slot;

static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int in_recorder __attribute__((tls_model("initial-exec")));
static int recording;          /* logging ops (cleared at the cap and at exit) */
static int cap_hit;
static int written;
static rec_op *ops;
static size_t ops_count, ops_cap;
static rec_slot *table;        /* open addressing, linear probing */
static size_t table_size, table_used; /* size a power of two */
static uint32_t next_id;
static uint64_t live_bytes, peak_bytes;
static long root_pid;
/* The process whose memory this state is: a vfork child shares it (and
 * runs no atfork handler), so it must not write or stop the trace. */
static long owner_pid;
static char out_path[4096];

static size_t slot_of(uintptr_t key)
{
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (table_size - 1);
}

static int table_init(size_t size)
{
    table = rec_map(size * sizeof *table);
    table_size = table ? size : 0;
    table_used = 0;
    return table ? 0 : -1;
}

static void table_put(uintptr_t key, uint32_t id, uint64_t size);

/* Doubles the table when it is half full; on failure the recorder stops. */
static int table_grow(void)
{
    rec_slot *old = table;
    size_t old_size = table_size;
    if (table_init(old_size * 2) != 0) {
        table = old;
        table_size = old_size;
        return -1;
    }
    for (size_t i = 0; i < old_size; i++)
        if (old[i].key != 0)
            table_put(old[i].key, old[i].id, old[i].size);
    rec_unmap(old, old_size * sizeof *old);
    return 0;
}

static void table_put(uintptr_t key, uint32_t id, uint64_t size)
{
    size_t i = slot_of(key);
    while (table[i].key != 0)
        i = (i + 1) & (table_size - 1);
    table[i].key = key;
    table[i].id = id;
    table[i].size = size;
    table_used++;
}

static rec_slot *table_find(uintptr_t key)
{
    for (size_t i = slot_of(key);; i = (i + 1) & (table_size - 1)) {
        if (table[i].key == key)
            return &table[i];
        if (table[i].key == 0)
            return NULL;
    }
}

/* Removes a slot, shifting later members of its probe run back so that
 * lookups never stop early at the hole. */
static void table_remove(rec_slot *slot)
{
    size_t hole = (size_t)(slot - table);
    size_t i = hole;
    for (;;) {
        i = (i + 1) & (table_size - 1);
        if (table[i].key == 0)
            break;
        size_t home = slot_of(table[i].key);
        /* Move i into the hole when its home is not in (hole, i]. */
        int home_between = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!home_between) {
            table[hole] = table[i];
            hole = i;
        }
    }
    table[hole].key = 0;
    table_used--;
}

/* Appends an op; false (and recording stops) at the cap. */
static int log_op(char kind, uint32_t id, uint64_t size, uint32_t alignment)
{
    if (ops_count == ops_cap) {
        recording = 0;
        cap_hit = 1;
        return 0;
    }
    rec_op *op = &ops[ops_count++];
    op->kind = kind;
    op->id = id;
    op->size = size;
    op->alignment = alignment;
    return 1;
}

static void note_alloc(void *p, size_t size, size_t alignment)
{
    if (p == NULL || in_recorder || !__atomic_load_n(&recording, __ATOMIC_RELAXED))
        return;
    in_recorder = 1;
    pthread_mutex_lock(&rec_lock);
    if (recording) {
        rec_slot *stale = table_find((uintptr_t)p);
        /* An alloc and, for a block whose free we missed, its free. */
        if (ops_cap - ops_count < 2) {
            recording = 0;
            cap_hit = 1;
        } else if (table_used + 1 > table_size / 2 && table_grow() != 0) {
            recording = 0;
            rec_say("brisk-record: out of memory for the pointer table; recording stopped\n");
        } else {
            if (stale != NULL) {
                stale = table_find((uintptr_t)p); /* the table may have moved */
                log_op('f', stale->id, 0, 0);
                live_bytes -= stale->size;
                table_remove(stale);
            }
            uint32_t id = next_id++;
            table_put((uintptr_t)p, id, size);
            /* memalign accepts any alignment and rounds it up to a power
             * of two; the trace records what was honoured. */
            size_t honoured = DEFAULT_ALIGNMENT;
            while (honoured < alignment && honoured < ((size_t)1 << 30))
                honoured *= 2;
            log_op('a', id, size, honoured > DEFAULT_ALIGNMENT ? (uint32_t)honoured : 0);
            live_bytes += size;
            if (live_bytes > peak_bytes)
                peak_bytes = live_bytes;
        }
    }
    pthread_mutex_unlock(&rec_lock);
    in_recorder = 0;
}

/* Logs the free of p if it is a block we know. */
static void note_free(void *p)
{
    if (p == NULL || in_recorder || !__atomic_load_n(&recording, __ATOMIC_RELAXED))
        return;
    in_recorder = 1;
    pthread_mutex_lock(&rec_lock);
    if (recording) {
        rec_slot *slot = table_find((uintptr_t)p);
        if (slot != NULL && log_op('f', slot->id, 0, 0)) {
            live_bytes -= slot->size;
            table_remove(slot);
        }
    }
    pthread_mutex_unlock(&rec_lock);
    in_recorder = 0;
}

/* realloc and reallocarray of a known block: the real call runs under the
 * lock so that the old address cannot be logged as reused before the
 * resize is. `array` selects reallocarray(p, count, size). */
static void *resize_block(void *p, size_t count, size_t size, int array)
{
    void *q;
    if (in_recorder || !__atomic_load_n(&recording, __ATOMIC_RELAXED))
        return array ? real_reallocarray(p, count, size) : real_realloc(p, size);
    in_recorder = 1;
    pthread_mutex_lock(&rec_lock);
    rec_slot *slot = recording ? table_find((uintptr_t)p) : NULL;
    q = array ? real_reallocarray(p, count, size) : real_realloc(p, size);
    if (slot != NULL && q != NULL) {
        uint64_t bytes = array ? (uint64_t)count * size : size;
        uint32_t id = slot->id;
        if (log_op('r', id, bytes, 0)) {
            live_bytes = live_bytes - slot->size + bytes;
            if (live_bytes > peak_bytes)
                peak_bytes = live_bytes;
            table_remove(slot);
            rec_slot *stale = table_find((uintptr_t)q);
            if (stale != NULL) {
                /* A block at q whose free we missed. The table is never
                 * more than half full, so this free needs no growth; the
                 * cap reserve is checked here too. */
                if (!log_op('f', stale->id, 0, 0)) {
                    pthread_mutex_unlock(&rec_lock);
                    in_recorder = 0;
                    return q;
                }
                live_bytes -= stale->size;
                table_remove(stale);
            }
            table_put((uintptr_t)q, id, bytes);
        }
    }
    pthread_mutex_unlock(&rec_lock);
    in_recorder = 0;
    return q;
}

/* ---- writing the trace ---------------------------------------------------- */

typedef struct out_buffer {
    int fd;
    int failed;
    size_t used;
    char data[1 << 16];
} out_buffer;

static out_buffer out_buf;

static void out_flush(out_buffer *b)
{
    if (!b->failed && b->used > 0 && rec_write_all(b->fd, b->data, b->used) != 0)
        b->failed = 1;
    b->used = 0;
}

static void out_text(out_buffer *b, const char *text)
{
    size_t n = strlen(text);
    if (b->used + n > sizeof b->data)
        out_flush(b);
    memcpy(b->data + b->used, text, n);
    b->used += n;
}

/* Decimal digits of v into buf (at least 21 bytes), NUL-ended. */
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

static void out_number(out_buffer *b, uint64_t v)
{
    char digits[21];
    out_text(b, format_u64(digits, v));
}

/* The file this process writes: OUT for the first process, otherwise
 * OUT without ".rep", then ".PID.rep". */
static void trace_path(char *buf, size_t size)
{
    size_t n = strlen(out_path);
    long pid = rec_pid();
    if (pid == root_pid || n + 32 > size) {
        memcpy(buf, out_path, n + 1);
        return;
    }
    memcpy(buf, out_path, n + 1);
    if (n > 4 && strcmp(buf + n - 4, ".rep") == 0)
        n -= 4;
    char digits[21];
    buf[n++] = '.';
    const char *d = format_u64(digits, (uint64_t)pid);
    size_t dn = strlen(d);
    memcpy(buf + n, d, dn);
    n += dn;
    memcpy(buf + n, ".rep", 5);
}

static void write_trace(void)
{
    if (written || ops == NULL)
        return;
    written = 1;
    recording = 0;
    char path[4200], temp[4300];
    trace_path(path, sizeof path);
    size_t n = strlen(path);
    memcpy(temp, path, n);
    memcpy(temp + n, ".tmp", 5);
    out_buffer *b = &out_buf;
    b->fd = rec_create(temp);
    b->failed = b->fd < 0;
    b->used = 0;
    if (b->fd >= 0) {
        /* Header: suggested heap size (the peak of live requested bytes),
         * ids, ops, weight. */
        out_number(b, peak_bytes);
        out_text(b, "\n");
        out_number(b, next_id);
        out_text(b, "\n");
        out_number(b, ops_count);
        out_text(b, "\n1\n");
        for (size_t i = 0; i < ops_count; i++) {
            const rec_op *op = &ops[i];
            char line[80] = {op->kind, ' ', '\0'};
            out_text(b, line);
            out_number(b, op->id);
            if (op->kind != 'f') {
                out_text(b, " ");
                out_number(b, op->size);
                if (op->alignment != 0) {
                    out_text(b, " ");
                    out_number(b, op->alignment);
                }
            }
            out_text(b, "\n");
        }
        out_flush(b);
        if (rec_close(b->fd) != 0)
            b->failed = 1;
    }
    if (b->failed || rec_rename(temp, path) != 0) {
        rec_say("brisk-record: cannot write the trace ");
        rec_say(path);
        rec_say(": ");
        rec_say(strerror(errno));
        rec_say("\n");
        rec_unlink(temp);
        return;
    }
    if (cap_hit) {
        char digits[21];
        rec_say("brisk-record: the op cap (");
        rec_say(format_u64(digits, ops_cap));
        rec_say(" ops) was reached; ");
        rec_say(path);
        rec_say(" holds the ops up to it (raise it with brisk-trace record --max-ops N)\n");
    }
}

static void finish(void)
{
    if (in_recorder || rec_pid() != owner_pid)
        return;
    in_recorder = 1;
    pthread_mutex_lock(&rec_lock);
    write_trace();
    pthread_mutex_unlock(&rec_lock);
    in_recorder = 0;
}

/* ---- fork ------------------------------------------------------------------ */

static void before_fork(void) { pthread_mutex_lock(&rec_lock); }
static void after_fork_parent(void) { pthread_mutex_unlock(&rec_lock); }

/* The child starts a trace of its own: its blocks from before the fork
 * are "before the recorder started" for it. */
static void after_fork_child(void)
{
    pthread_mutex_unlock(&rec_lock);
    if (ops == NULL)
        return;
    owner_pid = rec_pid();
    rec_unmap(table, table_size * sizeof *table);
    if (table_init(1 << 12) != 0) {
        recording = 0;
        written = 1;
        return;
    }
    ops_count = 0;
    next_id = 0;
    live_bytes = peak_bytes = 0;
    cap_hit = 0;
    written = 0;
    recording = 1;
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
    uint64_t cap = parse_env_u64("BRISK_RECORD_MAX_OPS", RECORD_DEFAULT_MAX_OPS);
    if (cap < 2 || cap > RECORD_LIMIT_MAX_OPS)
        cap = RECORD_DEFAULT_MAX_OPS;
    ops = rec_map((size_t)cap * sizeof *ops);
    if (ops == NULL || table_init(1 << 12) != 0) {
        rec_say("brisk-record: cannot map the op log; not recording\n");
        ops = NULL;
        in_recorder = 0;
        return;
    }
    ops_cap = (size_t)cap;
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
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
    note_alloc(p, size, 0);
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
    note_alloc(p, count * size, 0);
    return p;
}

EXPORT void free(void *ptr)
{
    if (ptr == NULL || is_bootstrap(ptr))
        return;
    if (real_free == NULL)
        resolve_real_functions();
    note_free(ptr);
    real_free(ptr);
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
    if (ptr == NULL) {
        void *p = real_realloc(NULL, size);
        note_alloc(p, size, 0);
        return p;
    }
    if (size == 0) {
        /* glibc frees the block and returns NULL. */
        note_free(ptr);
        return real_realloc(ptr, 0);
    }
    return resize_block(ptr, 1, size, 0);
}

EXPORT void *reallocarray(void *ptr, size_t count, size_t size)
{
    if (real_reallocarray == NULL)
        resolve_real_functions();
    if (count != 0 && size > SIZE_MAX / count) {
        errno = ENOMEM;
        return NULL;
    }
    if (ptr == NULL || is_bootstrap(ptr) || count * size == 0)
        return realloc(ptr, count * size);
    return resize_block(ptr, count, size, 1);
}

EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (real_posix_memalign == NULL)
        resolve_real_functions();
    int rc = real_posix_memalign(out, alignment, size);
    if (rc == 0)
        note_alloc(*out, size, alignment);
    return rc;
}

EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    if (real_aligned_alloc == NULL)
        resolve_real_functions();
    void *p = real_aligned_alloc(alignment, size);
    note_alloc(p, size, alignment);
    return p;
}

EXPORT void *memalign(size_t alignment, size_t size)
{
    if (real_memalign == NULL)
        resolve_real_functions();
    void *p = real_memalign(alignment, size);
    note_alloc(p, size, alignment);
    return p;
}

EXPORT void *valloc(size_t size)
{
    if (real_valloc == NULL)
        resolve_real_functions();
    void *p = real_valloc(size);
    note_alloc(p, size, rec_page_size());
    return p;
}

EXPORT void *pvalloc(size_t size)
{
    if (real_pvalloc == NULL)
        resolve_real_functions();
    size_t page = rec_page_size();
    void *p = real_pvalloc(size);
    note_alloc(p, size == 0 ? page : (size + page - 1) / page * page, page);
    return p;
}

/* A process that leaves through _exit (forked children usually do) runs
 * no destructors: write the trace first. */
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
