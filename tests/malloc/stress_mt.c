/*
 * Multi-threaded stress test of whatever malloc the process has.
 *
 * It calls only the standard names (malloc, calloc, realloc, free,
 * posix_memalign, aligned_alloc, memalign, malloc_usable_size), so the same
 * binary tests the system allocator, brisk through LD_PRELOAD, or brisk
 * linked statically ahead of libc (stress_mt_static).
 *
 * What runs at once:
 *
 *   16 workers      each keeps a table of slots; every step picks a slot and
 *                   allocates into it (malloc/calloc/aligned, tiny to
 *                   several MiB), reallocs it, frees it, or hands its block
 *                   to another worker's mailbox (a cross-thread free; a
 *                   quarter of received blocks are first reallocated).
 *   short-lived     the main thread keeps spawning threads that allocate,
 *   threads         free some, and exit with the rest still live: those go
 *                   to an orphan pool and to mailboxes, and workers free
 *                   them after the allocating thread is gone.
 *   forks           at evenly spaced moments the main thread forks while the
 *                   workers run. The child frees the orphans (blocks of
 *                   threads that do not exist in it), churns on its own and
 *                   in new threads, checks everything and must exit 0.
 *
 * Every block is filled with a pattern computed from a unique id and its
 * offset, and its whole contents are checked before every free and after
 * every realloc (the prefix that must survive), so a block handed out
 * twice, a lost write or a wrong copy shows up as a mismatch naming the
 * block, offset and size.
 *
 * Duration: argv[1] or STRESS_SECONDS (default 3). Long soak, opt-in:
 *     STRESS_SECONDS=600 ./build/tests/malloc/stress_mt
 *     STRESS_SECONDS=600 LD_PRELOAD=./build/libbrisk.so ./build/tests/malloc/stress_mt
 * STRESS_THREADS sets the number of workers (default 16).
 * STRESS_WEAK_SMALL_ALIGNMENT=1 accepts blocks under 16 bytes aligned only
 * to their size (as jemalloc and tcmalloc give them).
 * STRESS_REQUIRE_MALLOC_FROM=<text>: fail unless the object that defines
 * malloc (as dladdr names it) contains <text>; ctest uses it to prove the
 * preloaded or statically linked brisk is the malloc under test.
 */
#define _GNU_SOURCE
#include "check.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "xorshift.h"

enum {
    MAX_WORKERS = 256,
    SLOTS_PER_WORKER = 128,
    SHORT_LIVED_PER_ROUND = 4,
    MAX_REPORTED_FAILURES = 20,
};

/* ---- failure reporting, shared by all threads -------------------------- */

static atomic_ulong failures;

static void failure(const char *format, ...)
{
    unsigned long n = atomic_fetch_add(&failures, 1);
    if (n >= MAX_REPORTED_FAILURES)
        return;
    char line[512];
    va_list args;
    va_start(args, format);
    int len = vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (len < 0)
        return;
    size_t used = (size_t)len < sizeof line - 2 ? (size_t)len : sizeof line - 2;
    line[used++] = '\n';
    /* write(2), not stdio: may run in a forked child of a threaded parent. */
    if (write(STDERR_FILENO, line, used) < 0)
        return;
}

/* ---- blocks and their patterns ----------------------------------------- */

/* One live block as the test tracks it. `id` is unique in the run and
 * determines every byte: byte i of the block is byte (i % 8) of
 * pattern_word(id, i / 8). */
typedef struct block {
    unsigned char *ptr;
    size_t size;
    size_t alignment; /* what the block was allocated with (16 = plain) */
    uint64_t id;
} block;

static atomic_ullong next_block_id = 1;
static atomic_ullong blocks_allocated;
static atomic_ullong blocks_freed;
static atomic_ullong bytes_checked;

static uint64_t pattern_word(uint64_t id, size_t word)
{
    uint64_t x = id * 0x9E3779B97F4A7C15ULL + (uint64_t)word * 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 31;
    return x | 1; /* never an all-zero word: catches a block zeroed by mistake */
}

static unsigned char pattern_byte(uint64_t id, size_t offset)
{
    return (unsigned char)(pattern_word(id, offset / 8) >> (8 * (offset % 8)));
}

/* Writes the pattern over [from, to). Blocks are at least 8-aligned, so
 * offsets that are multiples of 8 are word-aligned addresses. */
static void pattern_fill(const block *b, size_t from, size_t to)
{
    size_t i = from;
    for (; i < to && i % 8 != 0; i++)
        b->ptr[i] = pattern_byte(b->id, i);
    for (; i + 8 <= to; i += 8) {
        uint64_t w = pattern_word(b->id, i / 8);
        memcpy(b->ptr + i, &w, 8);
    }
    for (; i < to; i++)
        b->ptr[i] = pattern_byte(b->id, i);
}

/* Checks [from, to) against the pattern; reports the first difference. */
static bool pattern_check(const block *b, size_t from, size_t to, const char *when)
{
    size_t i = from;
    size_t bad = SIZE_MAX;
    for (; i < to && i % 8 != 0; i++)
        if (b->ptr[i] != pattern_byte(b->id, i)) {
            bad = i;
            goto mismatch;
        }
    for (; i + 8 <= to; i += 8) {
        uint64_t w;
        memcpy(&w, b->ptr + i, 8);
        if (w != pattern_word(b->id, i / 8)) {
            for (bad = i; b->ptr[bad] == pattern_byte(b->id, bad); bad++)
                ;
            goto mismatch;
        }
    }
    for (; i < to; i++)
        if (b->ptr[i] != pattern_byte(b->id, i)) {
            bad = i;
            goto mismatch;
        }
    atomic_fetch_add_explicit(&bytes_checked, to - from, memory_order_relaxed);
    return true;
mismatch:
    failure("%s: block %p (id %llu, size %zu, alignment %zu) differs at offset %zu: "
            "0x%02x, expected 0x%02x",
            when, (void *)b->ptr, (unsigned long long)b->id, b->size, b->alignment, bad,
            b->ptr[bad], pattern_byte(b->id, bad));
    return false;
}

/* Sizes: mostly tiny and small, some medium, a few of several MiB. */
static size_t random_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 1000;
    if (r < 550)
        return rng_range(rng, 1, 64);
    if (r < 800)
        return rng_range(rng, 65, 512);
    if (r < 930)
        return rng_range(rng, 513, 8192);
    if (r < 985)
        return rng_range(rng, 8193, 256 << 10);
    if (r < 997)
        return rng_range(rng, (256 << 10) + 1, 1 << 20);
    return rng_range(rng, (1 << 20) + 1, 6 << 20);
}

static bool check_usable_size(const block *b)
{
    size_t usable = malloc_usable_size(b->ptr);
    if (usable < b->size) {
        failure("malloc_usable_size(%p) = %zu, less than the %zu bytes asked for",
                (void *)b->ptr, usable, b->size);
        return false;
    }
    return true;
}

/* glibc and brisk align every block to 16 bytes. jemalloc and tcmalloc
 * align blocks under 16 bytes only to the largest power of two not above
 * their size, which C17 allows (a block too small for a 16-byte type need
 * not be aligned for one); STRESS_WEAK_SMALL_ALIGNMENT=1 accepts that, to
 * run this test against them. */
static bool weak_small_alignment;

static size_t largest_power_of_two_in(size_t size)
{
    size_t p = 1;
    while (p * 2 <= size)
        p *= 2;
    return p;
}

/* Allocates a new block of a random size and kind into *b and fills it.
 * Returns false (having reported why) if the allocator misbehaved. */
static bool block_alloc(block *b, uint64_t *rng)
{
    size_t size = random_size(rng);
    uint64_t kind = rng_next(rng) % 100;
    b->id = atomic_fetch_add_explicit(&next_block_id, 1, memory_order_relaxed);
    b->size = size;
    b->alignment = 16;
    b->ptr = NULL;
    if (kind < 10) {
        /* Aligned: 16 B .. 4 KiB usually, 64 KiB sometimes. */
        size_t alignment = (size_t)1 << rng_range(rng, 4, 12);
        if (rng_next(rng) % 50 == 0)
            alignment = 64 << 10;
        void *p = NULL;
        const char *function = "memalign";
        switch (rng_next(rng) % 3) {
        case 0: {
            function = "posix_memalign";
            int rc = posix_memalign(&p, alignment, size);
            if (rc != 0) {
                failure("posix_memalign(%zu, %zu) failed: %s", alignment, size, strerror(rc));
                return false;
            }
            break;
        }
        case 1:
            /* aligned_alloc's size must be a multiple of the alignment. */
            function = "aligned_alloc";
            size = (size + alignment - 1) & ~(alignment - 1);
            b->size = size;
            p = aligned_alloc(alignment, size);
            break;
        default:
            p = memalign(alignment, size);
            break;
        }
        if (p == NULL) {
            failure("%s(%zu, %zu) failed", function, alignment, size);
            return false;
        }
        if ((uintptr_t)p % alignment != 0) {
            failure("%s(%zu, %zu) = %p is not aligned to %zu", function, alignment, size, p,
                    alignment);
            free(p);
            return false;
        }
        b->ptr = p;
        b->alignment = alignment;
    } else if (kind < 15) {
        size_t count = size >= 16 && size % 4 == 0 ? size / 4 : size;
        size_t each = count == size ? 1 : 4;
        unsigned char *p = calloc(count, each);
        if (p == NULL) {
            failure("calloc(%zu, %zu) failed", count, each);
            return false;
        }
        for (size_t i = 0; i < size; i++)
            if (p[i] != 0) {
                failure("calloc(%zu, %zu) = %p has a non-zero byte at offset %zu", count,
                        each, (void *)p, i);
                free(p);
                return false;
            }
        b->ptr = p;
    } else {
        b->ptr = malloc(size);
        if (b->ptr == NULL) {
            failure("malloc(%zu) failed", size);
            return false;
        }
    }
    size_t required = weak_small_alignment && size < 16 ? largest_power_of_two_in(size) : 16;
    if ((uintptr_t)b->ptr % required != 0) {
        failure("block %p of %zu bytes is not %zu-byte aligned", (void *)b->ptr, size,
                required);
        free(b->ptr);
        b->ptr = NULL;
        return false;
    }
    bool ok = check_usable_size(b);
    pattern_fill(b, 0, b->size);
    atomic_fetch_add_explicit(&blocks_allocated, 1, memory_order_relaxed);
    return ok;
}

static void block_free(block *b, const char *when)
{
    pattern_check(b, 0, b->size, when);
    check_usable_size(b);
    free(b->ptr);
    b->ptr = NULL;
    atomic_fetch_add_explicit(&blocks_freed, 1, memory_order_relaxed);
}

/* Resizes to a random new size (growing by half as often as not, the
 * common pattern of a growing buffer); the common prefix must survive. */
static void block_realloc(block *b, uint64_t *rng)
{
    if (!pattern_check(b, 0, b->size, "before realloc"))
        return;
    size_t new_size = rng_next(rng) % 2 ? b->size + b->size / 2 + 1 : random_size(rng);
    if (new_size > (8 << 20))
        new_size = random_size(rng);
    unsigned char *p = realloc(b->ptr, new_size);
    if (p == NULL) {
        failure("realloc(%p, %zu) failed", (void *)b->ptr, new_size);
        return;
    }
    size_t old_size = b->size;
    b->ptr = p;
    b->size = new_size;
    b->alignment = 16;
    size_t kept = old_size < new_size ? old_size : new_size;
    pattern_check(b, 0, kept, "after realloc");
    if (new_size > old_size)
        pattern_fill(b, old_size, new_size);
    check_usable_size(b);
}

/* ---- hand-off between threads ------------------------------------------- */

/* A block in transit: queued in a mailbox or the orphan pool. The node
 * itself is malloc'ed, by the sender, and freed by the receiver: one more
 * cross-thread free per hand-off. */
typedef struct handoff {
    struct handoff *next;
    block b;
} handoff;

typedef struct mailbox {
    pthread_mutex_t lock;
    handoff *head;
    char pad[64];
} mailbox;

static mailbox mailboxes[MAX_WORKERS];
static mailbox orphans; /* blocks whose allocating thread has exited */
static unsigned worker_count = 16;
static atomic_int stopping;

static void send_block(mailbox *to, const block *b)
{
    handoff *node = malloc(sizeof *node);
    if (node == NULL) {
        failure("malloc of a %zu-byte hand-off node failed", sizeof *node);
        return;
    }
    node->b = *b;
    pthread_mutex_lock(&to->lock);
    node->next = to->head;
    to->head = node;
    pthread_mutex_unlock(&to->lock);
}

static handoff *take_all(mailbox *from)
{
    pthread_mutex_lock(&from->lock);
    handoff *list = from->head;
    from->head = NULL;
    pthread_mutex_unlock(&from->lock);
    return list;
}

static handoff *take_one(mailbox *from)
{
    pthread_mutex_lock(&from->lock);
    handoff *node = from->head;
    if (node != NULL) {
        from->head = node->next;
        node->next = NULL; /* a list of one */
    }
    pthread_mutex_unlock(&from->lock);
    return node;
}

static size_t free_list_of_handoffs(handoff *list, const char *when)
{
    size_t n = 0;
    while (list != NULL) {
        handoff *next = list->next;
        block_free(&list->b, when);
        free(list);
        list = next;
        n++;
    }
    return n;
}

/* ---- workers ------------------------------------------------------------- */

typedef struct worker {
    pthread_t thread;
    unsigned index;
    uint64_t rng;
    unsigned long long steps;
    block slots[SLOTS_PER_WORKER];
} worker;

/* One step on a random slot of `slots`: allocate into an empty slot, or
 * free, realloc or send away (when `can_send`) a full one. */
static void churn_step(block *slots, size_t nslots, uint64_t *rng, bool can_send,
                       unsigned self)
{
    block *b = &slots[rng_next(rng) % nslots];
    if (b->ptr == NULL) {
        block_alloc(b, rng);
        return;
    }
    uint64_t what = rng_next(rng) % 100;
    if (what < 15) {
        block_realloc(b, rng);
    } else if (what < 35 && can_send) {
        unsigned to = (unsigned)(rng_next(rng) % worker_count);
        if (to == self)
            to = (to + 1) % worker_count;
        if (pattern_check(b, 0, b->size, "before sending to another thread"))
            send_block(&mailboxes[to], b);
        else
            free(b->ptr);
        b->ptr = NULL;
    } else {
        block_free(b, "before free");
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
        for (int i = 0; i < 64; i++)
            churn_step(w->slots, SLOTS_PER_WORKER, &w->rng, true, w->index);
        w->steps += 64;
        /* Free what others sent us: blocks allocated by other threads,
         * a quarter of them first resized here (a cross-thread realloc). */
        for (handoff *h = take_all(&mailboxes[w->index]), *next; h != NULL; h = next) {
            next = h->next;
            if (rng_next(&w->rng) % 4 == 0)
                block_realloc(&h->b, &w->rng);
            block_free(&h->b, "before freeing a block from another thread");
            free(h);
        }
        /* And now and then one left behind by an exited thread. */
        if (rng_next(&w->rng) % 4 == 0)
            free_list_of_handoffs(take_one(&orphans),
                                  "before freeing a block of an exited thread");
    }
    for (size_t i = 0; i < SLOTS_PER_WORKER; i++)
        if (w->slots[i].ptr != NULL)
            block_free(&w->slots[i], "before free at worker exit");
    return NULL;
}

/* ---- short-lived threads -------------------------------------------------- */

typedef struct short_lived {
    pthread_t thread;
    uint64_t rng;
} short_lived;

static void *short_lived_main(void *arg)
{
    short_lived *s = arg;
    enum { N = 48 };
    block blocks[N];
    memset(blocks, 0, sizeof blocks);
    for (int i = 0; i < N; i++)
        block_alloc(&blocks[i], &s->rng);
    for (int round = 0; round < 200; round++)
        churn_step(blocks, N, &s->rng, false, 0);
    /* Exit with live blocks: a third freed here, a third left as orphans,
     * a third mailed to workers. */
    for (int i = 0; i < N; i++) {
        if (blocks[i].ptr == NULL)
            continue;
        switch (i % 3) {
        case 0:
            block_free(&blocks[i], "before free in a short-lived thread");
            break;
        case 1:
            send_block(&orphans, &blocks[i]);
            break;
        default:
            send_block(&mailboxes[rng_next(&s->rng) % worker_count], &blocks[i]);
            break;
        }
    }
    return NULL;
}

/* ---- the forked child ------------------------------------------------------ */

typedef struct child_worker {
    pthread_t thread;
    uint64_t rng;
    block slots[32];
} child_worker;

static void *child_worker_main(void *arg)
{
    child_worker *c = arg;
    for (int i = 0; i < 3000; i++)
        churn_step(c->slots, 32, &c->rng, false, 0);
    for (size_t i = 0; i < 32; i++)
        if (c->slots[i].ptr != NULL)
            block_free(&c->slots[i], "before free in the child's thread");
    return NULL;
}

/* Runs in the child of a fork taken while the workers were running. Only
 * this thread exists here; the workers' mutexes may be held forever, so it
 * touches the orphan pool only if trylock succeeds. */
static int child_main(uint64_t seed)
{
    atomic_store(&failures, 0);
    uint64_t rng = seed;
    size_t orphans_freed = 0;
    if (pthread_mutex_trylock(&orphans.lock) == 0) {
        handoff *list = orphans.head;
        orphans.head = NULL;
        pthread_mutex_unlock(&orphans.lock);
        orphans_freed = free_list_of_handoffs(list, "in the child, before freeing an orphan");
    }
    block slots[64];
    memset(slots, 0, sizeof slots);
    for (int i = 0; i < 5000; i++)
        churn_step(slots, 64, &rng, false, 0);
    child_worker helpers[4];
    memset(helpers, 0, sizeof helpers);
    for (int i = 0; i < 4; i++) {
        helpers[i].rng = rng_next(&rng) | 1;
        if (pthread_create(&helpers[i].thread, NULL, child_worker_main, &helpers[i]) != 0) {
            failure("the child could not create a thread");
            return 1;
        }
    }
    for (int i = 0; i < 4; i++)
        pthread_join(helpers[i].thread, NULL);
    for (size_t i = 0; i < 64; i++)
        if (slots[i].ptr != NULL)
            block_free(&slots[i], "in the child, before free");
    (void)orphans_freed;
    return atomic_load(&failures) == 0 ? 0 : 1;
}

/* Forks; the child runs child_main and exits with its result. Returns the
 * child's wait status, or -1 if fork failed or the child hung: a child
 * that has not ended after CHILD_TIMEOUT_SECONDS is deadlocked (typically
 * on an allocator lock some parent thread held at the fork) and is killed. */
enum { CHILD_TIMEOUT_SECONDS = 60 };

static int fork_and_check(uint64_t seed)
{
    pid_t pid = fork();
    if (pid < 0) {
        failure("fork failed: %s", strerror(errno));
        return -1;
    }
    if (pid == 0)
        _exit(child_main(seed));
    int status = 0;
    for (int waited_ms = 0;; waited_ms += 10) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            return status;
        if (done < 0 && errno != EINTR) {
            failure("waitpid failed: %s", strerror(errno));
            return -1;
        }
        if (waited_ms >= CHILD_TIMEOUT_SECONDS * 1000) {
            failure("the forked child %d did not end within %d s: deadlocked after fork? "
                    "killing it",
                    (int)pid, CHILD_TIMEOUT_SECONDS);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
}

static void fork_while_workers_run(unsigned number, uint64_t seed)
{
    int status = fork_and_check(seed);
    CHECK_MSG(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "forked child %u ended with status 0x%x (exit %d, signal %d)", number, status,
              WIFEXITED(status) ? WEXITSTATUS(status) : -1,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* ---- main ---------------------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static unsigned long env_or(const char *name, const char *arg, unsigned long fallback)
{
    const char *text = arg != NULL ? arg : getenv(name);
    if (text == NULL || *text == '\0')
        return fallback;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0) {
        fprintf(stderr, "stress_mt: %s must be a positive integer, not \"%s\"\n", name, text);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv);

/* Proves which malloc is under test when the caller says which it must be:
 * STRESS_REQUIRE_MALLOC_FROM names the defining object (a substring of its
 * path), or is "main-program" for a malloc linked into the executable. */
static void check_malloc_provider(void)
{
    Dl_info malloc_info, main_info;
    void *(*malloc_fn)(size_t) = malloc;
    int (*main_fn)(int, char **) = main;
    const char *provider = "(unknown)";
    bool in_main_program = false;
    if (dladdr((void *)(uintptr_t)malloc_fn, &malloc_info) != 0) {
        if (malloc_info.dli_fname != NULL)
            provider = malloc_info.dli_fname;
        in_main_program = dladdr((void *)(uintptr_t)main_fn, &main_info) != 0 &&
                          main_info.dli_fbase == malloc_info.dli_fbase;
    }
    printf("stress_mt: malloc comes from %s\n",
           in_main_program ? "the main program" : provider);
    const char *required = getenv("STRESS_REQUIRE_MALLOC_FROM");
    if (required == NULL || *required == '\0')
        return;
    if (strcmp(required, "main-program") == 0)
        CHECK_MSG(in_main_program, "malloc comes from %s, not from the main program",
                  provider);
    else
        CHECK_MSG(!in_main_program && strstr(provider, required) != NULL,
                  "malloc comes from %s, not from an object named like \"%s\"",
                  in_main_program ? "the main program" : provider, required);
}

int main(int argc, char **argv)
{
    unsigned long seconds = env_or("STRESS_SECONDS", argc > 1 ? argv[1] : NULL, 3);
    worker_count = (unsigned)env_or("STRESS_THREADS", NULL, 16);
    if (worker_count < 2 || worker_count > MAX_WORKERS) {
        fprintf(stderr, "stress_mt: STRESS_THREADS must be 2..%d\n", MAX_WORKERS);
        return 2;
    }
    unsigned forks_planned = seconds < 3 ? 1 : (unsigned)(seconds < 60 ? 2 : seconds / 30);
    const char *weak = getenv("STRESS_WEAK_SMALL_ALIGNMENT");
    weak_small_alignment = weak != NULL && strcmp(weak, "1") == 0;
    check_malloc_provider();
    printf("stress_mt: %u workers, %lu s, %u forks\n", worker_count, seconds, forks_planned);
    fflush(stdout);

    for (unsigned i = 0; i < MAX_WORKERS; i++)
        pthread_mutex_init(&mailboxes[i].lock, NULL);
    pthread_mutex_init(&orphans.lock, NULL);

    worker *workers = calloc(worker_count, sizeof *workers);
    REQUIRE(workers != NULL);
    uint64_t seed = 0x5eed5eed1234ULL ^ (uint64_t)time(NULL);
    printf("stress_mt: seed %llu\n", (unsigned long long)seed);
    for (unsigned i = 0; i < worker_count; i++) {
        workers[i].index = i;
        workers[i].rng = rng_next(&seed) | 1;
        REQUIRE(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) == 0);
    }

    double start = now_seconds();
    double deadline = start + (double)seconds;
    unsigned forks_done = 0;
    unsigned long short_lived_threads = 0;
    while (now_seconds() < deadline) {
        short_lived round[SHORT_LIVED_PER_ROUND];
        for (int i = 0; i < SHORT_LIVED_PER_ROUND; i++) {
            round[i].rng = rng_next(&seed) | 1;
            REQUIRE(pthread_create(&round[i].thread, NULL, short_lived_main, &round[i]) == 0);
        }
        for (int i = 0; i < SHORT_LIVED_PER_ROUND; i++)
            REQUIRE(pthread_join(round[i].thread, NULL) == 0);
        short_lived_threads += SHORT_LIVED_PER_ROUND;

        double fork_at = start + (double)seconds * (forks_done + 1) / (forks_planned + 1);
        if (forks_done < forks_planned && now_seconds() >= fork_at)
            fork_while_workers_run(++forks_done, rng_next(&seed));
    }
    /* On a loaded machine a round can outlast the last fork's moment: the
     * remaining forks still happen with the workers running. */
    while (forks_done < forks_planned)
        fork_while_workers_run(++forks_done, rng_next(&seed));
    atomic_store(&stopping, 1);
    unsigned long long steps = 0;
    for (unsigned i = 0; i < worker_count; i++) {
        REQUIRE(pthread_join(workers[i].thread, NULL) == 0);
        steps += workers[i].steps;
    }
    /* Blocks sent after their receiver stopped, and orphans left over. */
    size_t leftovers = 0;
    for (unsigned i = 0; i < worker_count; i++)
        leftovers += free_list_of_handoffs(take_all(&mailboxes[i]), "before free at the end");
    leftovers += free_list_of_handoffs(take_all(&orphans), "before free at the end");
    free(workers);
    double elapsed = now_seconds() - start;

    unsigned long long allocated = atomic_load(&blocks_allocated);
    unsigned long long freed = atomic_load(&blocks_freed);
    printf("stress_mt: %.1f s, %llu worker steps, %llu blocks allocated, %llu freed, "
           "%.1f GiB checked, %lu short-lived threads, %u forks, %zu freed at the end\n",
           elapsed, steps, allocated, freed,
           (double)atomic_load(&bytes_checked) / (1024.0 * 1024.0 * 1024.0),
           short_lived_threads, forks_done, leftovers);
    CHECK_EQ(atomic_load(&failures), 0);
    CHECK_EQ(allocated, freed); /* the harness lost no block */
    CHECK(steps > 0);
    CHECK(short_lived_threads > 0);
    CHECK_EQ(forks_done, forks_planned);
    return check_finish("stress_mt");
}
