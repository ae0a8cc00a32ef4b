/*
 * Sampled heap profiling, for production: BRISK_OPTIONS=profile (or
 * profile=RATE) samples allocations with their call stacks and writes a
 * profile that `brisk-trace report` reads (docs/trace.md, "Sampled
 * profiles"), at exit, on SIGUSR2 and on brisk_profile_dump.
 *
 * What is sampled. Each thread heap counts down the bytes until its next
 * sample, drawn from an exponential distribution of mean RATE: a sample
 * falls on each allocated byte with the same chance, whatever the sizes
 * around it (the countdown has no memory), so an allocation of s bytes is
 * sampled with chance p = 1 - exp(-s / RATE). Each sample stands for
 * 1/p allocations and s/p bytes, which makes every total an unbiased
 * estimate (jemalloc and tcmalloc weigh theirs so). The estimates are
 * kept in fixed point, so what a free takes off a site is exactly what
 * its allocation put on: a site's live figures return to zero.
 *
 * The cost when on. The public functions divert here only when
 * harden_flags has PROFILE_ON (one test they already make); an
 * allocation then pays a subtraction from its thread heap's countdown
 * (profile_on_alloc, inline), and a free one load of its page's
 * profile_samples count: only a free of a block on a page holding a
 * sample, or of a large block, looks further, at a count of live samples
 * by address hash (sampled_filter), and takes the lock to look the
 * sample table up only when that is not zero. A sample unwinds the stack (outside the
 * lock), then takes the lock to intern the stack and file the sample.
 *
 * Unwinding: a thread's first samples with glibc's backtrace() (libgcc's
 * unwinder: nothing per thread, but several times slower per sample),
 * the rest with libunwind's unw_backtrace, whose cache is per thread and
 * mapped at the thread's first use: a cost a thread that samples often
 * recovers, and one of many short-lived threads would not. libunwind is
 * loaded with dlopen at start-up (profile_start, a constructor, never
 * from inside an allocation: dlopen allocates and takes the loader's
 * lock), so libbrisk needs no libunwind to link or run; without it every
 * sample uses libgcc's unwinder. Both read the .eh_frame tables
 * every object carries: frame pointers are missing from most
 * distributions' libraries (tools/trace/recorder_stack.c says more).
 * Samples taken before the constructor ran (allocations of the dynamic
 * loader and of earlier constructors) have no stack. Each entry point
 * passes its return address, and a stack starts at that frame: the
 * allocator's own frames are left out the same way whether libbrisk is a
 * shared library or linked into the program.
 *
 * Re-entrancy: a thread-local guard makes an allocation made while this
 * code runs on the thread (by the unwinder, or by a signal handler that
 * interrupted it) pass unsampled, and such a free of a sampled block
 * leaves the sample in place (its address sampled again replaces it);
 * nothing here waits for a lock the interrupted code holds. Fork: the
 * lock is taken around fork (process.c) so the child's is free.
 *
 * SIGUSR2: installed only when profiling is on and the program has no
 * handler of its own. Writing a file takes locks and is not
 * async-signal-safe, so the handler only asks for a dump: it zeroes its
 * thread's countdown, and the next allocation of that thread (or the
 * next sample on any thread) writes it. A program that never allocates
 * again writes it at exit.
 *
 * Memory: the tables are mapped (never malloc'd) and grow by mapping
 * anew; the stacks are interned by src/common/stack_table.h, the
 * recorder's table, with each site's counters in its extra words.
 */
#include "malloc/internal.h"

#include "common/stack_table.h"
#include "common/trace_format.h"

#include <errno.h>
#include <signal.h>

#define PROFILE_RATE_DEFAULT ((uint64_t)512 << 10)
/* A count estimate's fixed point: 1/p in units of 2^-16. */
#define COUNT_ONE ((uint64_t)1 << 16)
#define PROFILE_FRAMES TF_MAX_FRAMES
#define STACK_SLOTS ((size_t)1 << 16)
#define STACK_ARENA_WORDS ((size_t)1 << 22)

/* The counters in each interned stack's extra words. */
enum { SITE_SAMPLES, SITE_LIVE_SAMPLES, SITE_ALLOC_COUNT, SITE_ALLOC_BYTES, SITE_LIVE_COUNT, SITE_LIVE_BYTES, SITE_WORDS };

/* A live sampled block. addr 0: empty; TOMBSTONE: freed. */
typedef struct sampled_block {
    uintptr_t addr;
    uint64_t site;       /* its stack's offset in the stack table */
    uint64_t count_est;  /* COUNT_ONE / p */
    uint64_t bytes_est;  /* size / p */
} sampled_block;

#define TOMBSTONE ((uintptr_t)1)

static pthread_mutex_t profile_lock = PTHREAD_MUTEX_INITIALIZER;
static stack_table stacks;
static uint64_t no_stack_site;      /* the empty stack: samples without one */
static sampled_block *samples;
static size_t sample_slots;         /* a power of two, 0 until the first */
static size_t sample_filled;        /* slots live or tombstones */
static size_t samples_live;
static uint64_t samples_taken;
static uint64_t profile_start_ns;
static int tables_ready;            /* atomic: stacks mapped */
static int dump_requested;          /* atomic: SIGUSR2 asked for a dump */
/* The unwinders: libgcc's through glibc's backtrace() (plain), and
 * libunwind's unw_backtrace (cached: NULL when it is not installed). */
static int (*unwind_plain)(void **ips, int max);
static int (*unwind_cached)(void **ips, int max);
/* libunwind keeps a cache per thread, mapped at the thread's first
 * unwind: worth it for a thread that samples often, a waste for one of
 * many short-lived threads. So a thread's first samples use libgcc's
 * unwinder, the rest libunwind's. */
#define CACHED_UNWIND_AFTER 256

/* How many live samples' addresses hash to each slot: a free on a page
 * holding a sample takes the lock only when its own slot is not zero, so
 * a long-lived sample does not send every free of its page to the lock.
 * Read without the lock: a sample's count is raised before its malloc
 * returns, so a free of that block sees it. */
#define FILTER_BITS 16
static uint16_t sampled_filter[(size_t)1 << FILTER_BITS];

static size_t filter_slot(uintptr_t addr)
{
    return (size_t)(((uint64_t)addr * 0x9E3779B97F4A7C15ull) >> (64 - FILTER_BITS));
}

static void filter_add(uintptr_t addr, int delta)
{
    uint16_t *slot = &sampled_filter[filter_slot(addr)];
    __atomic_store_n(slot, (uint16_t)(__atomic_load_n(slot, __ATOMIC_RELAXED) + delta),
                     __ATOMIC_RELAXED);
}

static _Thread_local int profile_busy __attribute__((tls_model("initial-exec")));
static _Thread_local uint32_t thread_samples __attribute__((tls_model("initial-exec")));

/* ---- options ------------------------------------------------------------ */

bool profile_option(const char *item, size_t len)
{
    const char *eq = memchr(item, '=', len);
    size_t name_len = eq != NULL ? (size_t)(eq - item) : len;
    if (name_len == 12 && memcmp(item, "profile_path", 12) == 0) {
        size_t value_len = eq != NULL ? len - name_len - 1 : 0;
        if (value_len == 0)
            options_warn("profile_path needs a file name, ignoring", item, len);
        else if (value_len >= sizeof malloc_options.profile_path)
            options_warn("profile_path is longer than 255 bytes, ignoring", item, len);
        else {
            memcpy(malloc_options.profile_path, eq + 1, value_len);
            malloc_options.profile_path[value_len] = '\0';
        }
        return true;
    }
    if (name_len != 7 || memcmp(item, "profile", 7) != 0)
        return false;
    uint64_t rate = PROFILE_RATE_DEFAULT;
    if (eq != NULL && !options_parse_number(eq + 1, len - name_len - 1, &rate)) {
        options_warn("profile=RATE needs a number of bytes, ignoring", item, len);
        return true;
    }
    if (rate > ((uint64_t)1 << 40)) {
        options_warn("profile=RATE is more than 1 TiB, ignoring", item, len);
        return true;
    }
    malloc_options.profile_rate = rate;
    if (rate != 0)
        harden_flags |= PROFILE_ON;
    else
        harden_flags &= ~PROFILE_ON;
    return true;
}

/* ---- arithmetic without libm ------------------------------------------- */

#define LN2 0.69314718055994530942

/* -ln(u) for u in (0, 1]: u = m 2^e with m in [1, 2), and
 * ln m = 2 atanh((m - 1) / (m + 1)), whose series converges fast there. */
static double neg_log(double u)
{
    int e = 0;
    while (u < 1.0) {
        u *= 2.0;
        e--;
    }
    double t = (u - 1.0) / (u + 1.0), t2 = t * t, term = t, sum = 0.0;
    for (int k = 1; k < 40; k += 2) {
        sum += term / k;
        term *= t2;
    }
    return -((double)e * LN2 + 2.0 * sum);
}

/* 1 - exp(-x) for x >= 0, without cancellation for small x. */
static double sample_chance(double x)
{
    if (x < 0.5) {
        double term = x, sum = 0.0;
        for (int k = 1; k < 30; k++) {
            sum += term;
            term *= -x / (double)(k + 1);
        }
        return sum;
    }
    if (x > 700.0)
        return 1.0;
    int k = (int)(x / LN2);
    double r = x - k * LN2, term = 1.0, e = 0.0;
    for (int i = 1; i < 30; i++) {
        e += term;
        term *= -r / (double)i;
    }
    while (k-- > 0)
        e *= 0.5;
    return 1.0 - e;
}

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Bytes until the thread's next sample: exponential of mean rate. */
static uint64_t countdown_draw(thread_heap *h)
{
    double u = (double)((rng_next(&h->profile_rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
    double bytes = neg_log(u) * (double)malloc_options.profile_rate;
    if (bytes < 1.0)
        return 1;
    if (bytes > 4e18)
        return (uint64_t)4e18;
    return (uint64_t)bytes + 1;
}

/* ---- tables ---------------------------------------------------------------- */

/* The stack table, mapped at the first sample (under the lock). */
static bool tables_map(void)
{
    if (tables_ready)
        return true;
    uint64_t *slots = os_map(STACK_SLOTS * sizeof *slots);
    uint64_t *arena = os_map(STACK_ARENA_WORDS * sizeof *arena);
    if (slots == NULL || arena == NULL) {
        if (slots != NULL)
            os_unmap(slots, STACK_SLOTS * sizeof *slots);
        if (arena != NULL)
            os_unmap(arena, STACK_ARENA_WORDS * sizeof *arena);
        return false;
    }
    stack_table_init(&stacks, slots, STACK_SLOTS, arena, STACK_ARENA_WORDS, SITE_WORDS);
    int is_new;
    uint64_t none[1] = {0};
    no_stack_site = stack_table_intern(&stacks, none, 0, &is_new);
    __atomic_store_n(&tables_ready, 1, __ATOMIC_RELEASE);
    return true;
}

static size_t sample_home(uintptr_t addr, size_t mask)
{
    uint64_t h = (uint64_t)addr * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & mask;
}

/* The slot of addr in the sample table, or NULL. */
static sampled_block *sample_find(uintptr_t addr)
{
    if (sample_slots == 0)
        return NULL;
    size_t mask = sample_slots - 1;
    for (size_t i = sample_home(addr, mask);; i = (i + 1) & mask) {
        if (samples[i].addr == addr)
            return &samples[i];
        if (samples[i].addr == 0)
            return NULL;
    }
}

/* Doubles the table (or rebuilds it without its tombstones) when it is
 * half full. false when no memory can be mapped. */
static bool samples_make_room(void)
{
    if (sample_slots != 0 && (sample_filled + 1) * 2 <= sample_slots)
        return true;
    size_t slots = sample_slots == 0 ? 4096 : samples_live * 4 > sample_slots ? sample_slots * 2 : sample_slots;
    sampled_block *fresh = os_map(slots * sizeof *fresh);
    if (fresh == NULL)
        return false;
    size_t mask = slots - 1;
    for (size_t i = 0; i < sample_slots; i++) {
        if (samples[i].addr <= TOMBSTONE)
            continue;
        size_t j = sample_home(samples[i].addr, mask);
        while (fresh[j].addr != 0)
            j = (j + 1) & mask;
        fresh[j] = samples[i];
    }
    if (samples != NULL)
        os_unmap(samples, sample_slots * sizeof *samples);
    samples = fresh;
    sample_slots = slots;
    sample_filled = samples_live;
    return true;
}

static void site_add(uint64_t site, const sampled_block *s, int sign)
{
    uint64_t *c = stack_table_extra(&stacks, site);
    if (sign > 0) {
        c[SITE_SAMPLES]++;
        c[SITE_LIVE_SAMPLES]++;
        c[SITE_ALLOC_COUNT] += s->count_est;
        c[SITE_ALLOC_BYTES] += s->bytes_est;
        c[SITE_LIVE_COUNT] += s->count_est;
        c[SITE_LIVE_BYTES] += s->bytes_est;
    } else {
        c[SITE_LIVE_SAMPLES]--;
        c[SITE_LIVE_COUNT] -= s->count_est;
        c[SITE_LIVE_BYTES] -= s->bytes_est;
    }
}

/* The page of a block, NULL for a large one. */
static page *sample_page(void *p)
{
    uintptr_t meta = meta_of(p);
    if (segmap_kind(meta) != SEGMAP_PAGES)
        return NULL;
    return page_of(segment_of_meta(meta), p);
}

/* ---- sampling ------------------------------------------------------------- */

/* The calling stack from caller's frame (the program's) on, into frames. */
static unsigned stack_from(uint64_t *frames, const void *caller)
{
    void *ips[PROFILE_FRAMES + 16];
    int (*fn)(void **, int) = __atomic_load_n(&unwind_plain, __ATOMIC_ACQUIRE);
    if (thread_samples >= CACHED_UNWIND_AFTER && unwind_cached != NULL)
        fn = unwind_cached;
    else
        thread_samples++;
    int n = fn != NULL ? fn(ips, PROFILE_FRAMES + 16) : 0;
    int from = 0;
    while (from < n && ips[from] != caller)
        from++;
    if (from == n)
        from = 0; /* not found (a tail call?): keep every frame */
    unsigned count = 0;
    for (int k = from; k < n && count < PROFILE_FRAMES; k++)
        frames[count++] = (uint64_t)(uintptr_t)ips[k];
    return count;
}

static void profile_warn(const char *what, int error)
{
    text_line line = {.len = 0};
    line_add_str(&line, "brisk: BRISK_OPTIONS=profile: ");
    line_add_str(&line, what);
    line_add_str(&line, " (errno ");
    line_add_decimal(&line, (uint64_t)error);
    line_add_str(&line, ")");
    line_write(&line);
}

static void profile_dump_if_asked(void)
{
    if (__atomic_load_n(&dump_requested, __ATOMIC_RELAXED) &&
        __atomic_exchange_n(&dump_requested, 0, __ATOMIC_ACQ_REL)) {
        int rc = brisk_profile_dump(NULL);
        if (rc != 0)
            profile_warn("could not write the profile SIGUSR2 asked for", rc);
    }
}

void profile_sample(thread_heap *h, void *p, size_t size, const void *caller)
{
    if (h == NULL || profile_busy)
        return;
    profile_busy = 1;
    if (!h->profile_started) {
        h->profile_started = 1;
        h->profile_rng = h->rng ^ (uintptr_t)h ^ os_now_ns();
        h->profile_countdown = countdown_draw(h);
        if (h->profile_countdown > size) {
            h->profile_countdown -= size;
            profile_busy = 0;
            return;
        }
    } else if (h->profile_countdown == 0) {
        /* Zeroed by the SIGUSR2 handler: not a sample. The countdown has
         * no memory, so drawing it anew keeps the sampling fair. */
        h->profile_countdown = countdown_draw(h);
        profile_dump_if_asked();
        profile_busy = 0;
        return;
    }
    h->profile_countdown = countdown_draw(h);

    double chance = sample_chance((double)size / (double)malloc_options.profile_rate);
    sampled_block s = {(uintptr_t)p, 0, (uint64_t)((double)COUNT_ONE / chance + 0.5),
                        (uint64_t)((double)size / chance + 0.5)};
    uint64_t frames[PROFILE_FRAMES];
    unsigned count = stack_from(frames, caller);
    page *pg = sample_page(p);

    pthread_mutex_lock(&profile_lock);
    if (tables_map()) {
        int is_new;
        s.site = stack_table_intern(&stacks, frames, count, &is_new);
        if (s.site == 0)
            s.site = no_stack_site; /* the table is full (the dump says so) */
        samples_taken++;
        site_add(s.site, &s, +1);
        sampled_block *old = sample_find(s.addr);
        if (old != NULL) {
            /* A sample whose free went unseen (made inside a signal
             * handler that interrupted this code): its block is gone,
             * and this one holds its page's count already. */
            site_add(old->site, old, -1);
            *old = s;
        } else if (samples_make_room()) {
            size_t mask = sample_slots - 1, i = sample_home(s.addr, mask);
            while (samples[i].addr > TOMBSTONE)
                i = (i + 1) & mask;
            if (samples[i].addr == 0)
                sample_filled++;
            samples[i] = s;
            filter_add(s.addr, +1);
            samples_live++;
            if (pg != NULL)
                __atomic_store_n(&pg->profile_samples,
                                 (uint16_t)(__atomic_load_n(&pg->profile_samples, __ATOMIC_RELAXED) + 1),
                                 __ATOMIC_RELAXED);
        } else {
            /* No memory for the table: counted as allocated, not live. */
            site_add(s.site, &s, -1);
        }
    }
    pthread_mutex_unlock(&profile_lock);
    profile_dump_if_asked();
    profile_busy = 0;
}

void profile_forget(void *p, page *pg)
{
    if (profile_busy)
        return;
    if (__atomic_load_n(&sampled_filter[filter_slot((uintptr_t)p)], __ATOMIC_RELAXED) == 0)
        return;
    pthread_mutex_lock(&profile_lock);
    sampled_block *s = sample_find((uintptr_t)p);
    if (s != NULL) {
        site_add(s->site, s, -1);
        filter_add(s->addr, -1);
        s->addr = TOMBSTONE;
        samples_live--;
        if (pg != NULL)
            __atomic_store_n(&pg->profile_samples,
                             (uint16_t)(__atomic_load_n(&pg->profile_samples, __ATOMIC_RELAXED) - 1),
                             __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&profile_lock);
}

void profile_fork_prepare(void)
{
    pthread_mutex_lock(&profile_lock);
}

void profile_fork_release(void)
{
    pthread_mutex_unlock(&profile_lock);
}

/* ---- the dump -------------------------------------------------------------- */

/* A growing mapped buffer (never malloc: this runs inside the allocator). */
typedef struct dump_buffer {
    unsigned char *data;
    size_t len, cap;
    bool failed;
} dump_buffer;

static unsigned char *dump_room(dump_buffer *b, size_t need)
{
    if (b->failed)
        return NULL;
    if (b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap : (size_t)1 << 16;
        while (cap < b->len + need)
            cap *= 2;
        unsigned char *fresh = os_map(cap);
        if (fresh == NULL) {
            b->failed = true;
            return NULL;
        }
        if (b->data != NULL) {
            memcpy(fresh, b->data, b->len);
            os_unmap(b->data, b->cap);
        }
        b->data = fresh;
        b->cap = cap;
    }
    return b->data + b->len;
}

static void dump_varints(dump_buffer *b, unsigned kind, const uint64_t *values, unsigned n)
{
    unsigned char *p = dump_room(b, 1 + 10 * (size_t)n), *start = p;
    if (p == NULL)
        return;
    *p++ = (unsigned char)kind;
    for (unsigned i = 0; i < n; i++)
        p = tf_put_varint(p, values[i]);
    b->len += (size_t)(p - start);
}

static void dump_text(dump_buffer *b, unsigned kind, const char *text, size_t len)
{
    unsigned char *p = dump_room(b, 11 + len), *start = p;
    if (p == NULL)
        return;
    *p++ = (unsigned char)kind;
    p = tf_put_varint(p, len);
    memcpy(p, text, len);
    b->len += (size_t)(p - start) + len;
}

/* A /proc file whole, into a mapped buffer that grows until it holds it. */
static char *proc_file(const char *path, size_t *len, size_t *mapped)
{
    for (size_t size = (size_t)1 << 16; size <= (size_t)1 << 28; size *= 4) {
        char *buf = os_map(size);
        if (buf == NULL)
            return NULL;
        size_t n = os_read_file(path, buf, size);
        if (n < size) {
            *len = n;
            *mapped = size;
            return buf;
        }
        os_unmap(buf, size);
    }
    return NULL;
}


/* The profile, as a recording of version 3 with no events. */
static bool profile_serialize(dump_buffer *b)
{
    unsigned char *header = dump_room(b, TF_HEADER_BYTES + TF_CHUNK_HEADER_BYTES);
    if (header == NULL)
        return false;
    memcpy(header, TF_MAGIC, TF_MAGIC_BYTES);
    tf_put_u32(header + 8, TF_VERSION);
    tf_put_u32(header + 12, TF_HEADER_BYTES);
    tf_put_u64(header + 16, os_pid());
    tf_put_u64(header + 24, profile_start_ns);
    b->len += TF_HEADER_BYTES + TF_CHUNK_HEADER_BYTES;
    size_t chunk_at = TF_HEADER_BYTES;

    size_t len, mapped;
    char *text = proc_file("/proc/self/cmdline", &len, &mapped);
    if (text != NULL) {
        dump_text(b, TF_COMMAND, text, len);
        os_unmap(text, mapped);
    }
    char *maps = proc_file("/proc/self/maps", &len, &mapped);
    size_t maps_len = maps != NULL ? tf_maps_keep_files(maps, len) : 0;

    uint64_t stack_records = 0;
    pthread_mutex_lock(&profile_lock);
    uint64_t now = os_now_ns();
    uint64_t head[5] = {malloc_options.profile_rate, samples_taken, samples_live,
                        now > profile_start_ns ? now - profile_start_ns : 0,
                        tables_ready && stacks.full ? TF_END_STACKS_FULL : 0};
    dump_varints(b, TF_PROFILE, head, 5);
    for (size_t i = 0; tables_ready && i < stacks.slot_count; i++) {
        uint64_t slot = stacks.slots[i];
        if (slot == 0)
            continue;
        uint64_t site = slot & 0xffffffffu;
        const uint64_t *c = stack_table_extra(&stacks, site);
        if (c[SITE_SAMPLES] == 0)
            continue;
        unsigned depth = (unsigned)stacks.arena[site];
        uint64_t stack[2 + PROFILE_FRAMES];
        stack[0] = site;
        stack[1] = depth;
        memcpy(&stack[2], &stacks.arena[site + 1], depth * sizeof *stack);
        dump_varints(b, TF_STACK, stack, 2 + depth);
        stack_records++;
        uint64_t fields[7] = {site,
                              c[SITE_SAMPLES],
                              c[SITE_LIVE_SAMPLES],
                              (c[SITE_ALLOC_COUNT] + COUNT_ONE / 2) / COUNT_ONE,
                              c[SITE_ALLOC_BYTES],
                              (c[SITE_LIVE_COUNT] + COUNT_ONE / 2) / COUNT_ONE,
                              c[SITE_LIVE_BYTES]};
        dump_varints(b, TF_PROFILE_SITE, fields, 7);
    }
    int full = tables_ready && stacks.full;
    pthread_mutex_unlock(&profile_lock);

    if (maps != NULL) {
        dump_text(b, TF_MAPS, maps, maps_len);
        os_unmap(maps, mapped);
    }
    uint64_t end[3] = {0, stack_records, TF_END_PROFILE | (full ? TF_END_STACKS_FULL : 0)};
    dump_varints(b, TF_END, end, 3);
    if (b->failed)
        return false;
    unsigned char *chunk = b->data + chunk_at;
    tf_put_u32(chunk, TF_CHUNK_MAGIC);
    tf_put_u32(chunk + 4, (uint32_t)(b->len - chunk_at - TF_CHUNK_HEADER_BYTES));
    tf_put_u32(chunk + 8, (uint32_t)os_pid());
    tf_put_u32(chunk + 12, 0);
    return true;
}

/* The default path: profile_path (or brisk-profile.%p.btr) with each %p
 * the process id, so a forked child writes its own. */
static bool default_path(char *out, size_t size)
{
    const char *pattern = malloc_options.profile_path[0] ? malloc_options.profile_path
                                                         : "brisk-profile.%p.btr";
    text_line pid = {.len = 0};
    line_add_decimal(&pid, os_pid());
    size_t n = 0;
    for (const char *s = pattern; *s; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            if (n + pid.len >= size)
                return false;
            memcpy(out + n, pid.text, pid.len);
            n += pid.len;
            s++;
        } else {
            if (n + 1 >= size)
                return false;
            out[n++] = *s;
        }
    }
    out[n] = '\0';
    return true;
}

int brisk_profile_dump(const char *path)
{
    if (!(harden_flags & PROFILE_ON))
        return ENOTSUP;
    if (path != NULL && path[0] == '\0')
        return EINVAL;
    char expanded[4096];
    if (path == NULL) {
        if (!default_path(expanded, sizeof expanded))
            return ENAMETOOLONG;
        path = expanded;
    } else if (memchr(path, 0, 4096) == NULL) {
        return ENAMETOOLONG;
    }
    int was_busy = profile_busy;
    profile_busy = 1;
    dump_buffer b = {NULL, 0, 0, false};
    int rc = 0;
    if (!profile_serialize(&b)) {
        rc = ENOMEM;
    } else {
        int fd = os_create_file(path);
        if (fd < 0) {
            rc = -fd;
        } else {
            rc = os_write_all(fd, b.data, b.len);
            int closed = os_close(fd);
            if (rc == 0)
                rc = closed;
        }
    }
    if (b.data != NULL)
        os_unmap(b.data, b.cap);
    profile_busy = was_busy;
    return rc;
}

/* ---- start-up and exit ----------------------------------------------------- */

static void profile_signal(int sig)
{
    (void)sig;
    __atomic_store_n(&dump_requested, 1, __ATOMIC_RELAXED);
    thread_heap *h = tls_thread_heap;
    if (h != NULL)
        h->profile_countdown = 0;
}

#if defined(__x86_64__)
#define UNWIND_PREFIX "_ULx86_64_"
#elif defined(__aarch64__)
#define UNWIND_PREFIX "_ULaarch64_"
#endif

/* Runs once libc is up (a constructor, not at the first allocation, which
 * may come from inside the dynamic loader): loads the unwinder and sets
 * up SIGUSR2. */
static void profile_start(void) __attribute__((constructor));
static void profile_start(void)
{
    process_init_once(); /* the options, if nothing allocated yet */
    if (!(harden_flags & PROFILE_ON))
        return;
    profile_busy = 1;
    void *found = os_library_symbol("libunwind.so.8", "unw_backtrace");
#ifdef UNWIND_PREFIX
    /* libunwind's default cache is global, behind a lock; one per
     * thread takes none (the recorder sets the same). */
    void *policy = os_library_symbol("libunwind.so.8", UNWIND_PREFIX "set_caching_policy");
    void **space = os_library_symbol("libunwind.so.8", UNWIND_PREFIX "local_addr_space");
    if (found != NULL && policy != NULL && space != NULL) {
        int (*set_policy)(void *, int);
        memcpy(&set_policy, &policy, sizeof set_policy);
        set_policy(*space, 2 /* UNW_CACHE_PER_THREAD */);
    }
#endif
    if (found != NULL) {
        int (*fn)(void **, int);
        memcpy(&fn, &found, sizeof fn);
        unwind_cached = fn;
    }
    void *ips[4];
    os_backtrace(ips, 4); /* loads libgcc's unwinder now, not mid-allocation */
    __atomic_store_n(&unwind_plain, os_backtrace, __ATOMIC_RELEASE);
    os_signal_install_if_default(SIGUSR2, profile_signal);
    profile_busy = 0;
}

static void profile_exit(void) __attribute__((destructor));
static void profile_exit(void)
{
    if (!(harden_flags & PROFILE_ON))
        return;
    char path[4096];
    int rc = default_path(path, sizeof path) ? brisk_profile_dump(path) : ENAMETOOLONG;
    if (rc != 0) {
        profile_warn("could not write the profile at exit", rc);
    } else if (malloc_options.verbose) {
        text_line line = {.len = 0};
        line_add_str(&line, "brisk: profile written to ");
        line_add_str(&line, path);
        line_write(&line);
    }
}

void profile_init(void)
{
    profile_start_ns = os_now_ns();
}
