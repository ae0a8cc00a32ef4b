/*
 * Memory of exited threads (docs/process.md, "Cross-thread free, thread
 * exit, adoption"), linked with libbrisk.a:
 *
 *   stats    brisk_malloc_get_stats's contract (sizes, versioning)
 *   exit     a thread that exits with blocks live abandons its segment;
 *            the statistics show it, brisk_malloc_check checks it (A1-A3),
 *            frees by another thread sweep it, and the last one sends it
 *            to the cache
 *   adopt    a new thread's first block comes from the page an exited
 *            thread left, not from new memory
 *   fork     threads alive at a fork do not exist in the child: the child
 *            frees their blocks, and a thread started in the child gets
 *            its blocks from their pages
 *   stress   threads spawning short-lived threads that leave blocks to
 *            others, cross-thread frees, and forks whose children free
 *            the lost threads' blocks and check everything; every block
 *            carries a pattern checked before it is freed
 *
 * `test_abandon NAME` runs one part; ctest runs all of them, and again
 * under BRISK_OPTIONS=hardened.
 */
#include "check.h"

#include "brisk.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#define SEGMENT_BYTES ((uintptr_t)4 << 20)

static uintptr_t segment_of(const void *p)
{
    return (uintptr_t)p & ~(SEGMENT_BYTES - 1);
}

static brisk_malloc_stats stats_now(void)
{
    brisk_malloc_stats st;
    REQUIRE(brisk_malloc_get_stats(&st, sizeof st) == 0);
    return st;
}

/* ---- stats: the contract ------------------------------------------------- */

static void test_stats_contract(void)
{
    errno = 0;
    CHECK_EQ(brisk_malloc_get_stats(NULL, sizeof(brisk_malloc_stats)), -1);
    CHECK_EQ(errno, EINVAL);
    brisk_malloc_stats st;
    memset(&st, 0xab, sizeof st);
    errno = 0;
    CHECK_EQ(brisk_malloc_get_stats(&st, 0), -1);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK_EQ(brisk_malloc_get_stats(&st, 12), -1);
    CHECK_EQ(errno, EINVAL);
    unsigned char untouched[sizeof st];
    memset(untouched, 0xab, sizeof untouched);
    CHECK(memcmp(&st, untouched, sizeof st) == 0);

    void *p = malloc(100);
    REQUIRE(p != NULL);
    /* An older, shorter struct: only its two fields are written. */
    CHECK_EQ(brisk_malloc_get_stats(&st, 16), 0);
    CHECK_EQ(st.size, 16);
    CHECK(st.requests >= 1);
    CHECK(memcmp((char *)&st + 16, untouched + 16, sizeof st - 16) == 0);
    /* A newer, longer one: what this library does not know reads 0. */
    unsigned long long longer[sizeof st / 8 + 4];
    memset(longer, 0xab, sizeof longer);
    CHECK_EQ(brisk_malloc_get_stats((brisk_malloc_stats *)(void *)longer, sizeof longer), 0);
    CHECK_EQ(longer[0], sizeof st);
    for (size_t i = sizeof st / 8; i < sizeof longer / 8; i++)
        CHECK_EQ(longer[i], 0);
    st = stats_now();
    CHECK_EQ(st.size, sizeof st);
    CHECK(st.threads_live >= 1);
    CHECK(st.segments >= 1);
    CHECK(st.mapped_bytes >= st.segments * SEGMENT_BYTES);
    CHECK(st.peak_resident_bytes > 0);
    free(p);
}

/* ---- exit: abandonment and sweeping ----------------------------------------- */

enum { LEFT = 1000, LEFT_SIZE = 128 };

typedef struct left_blocks {
    void *blocks[LEFT];
    size_t count, size;
} left_blocks;

static void *leave_blocks(void *arg)
{
    left_blocks *left = arg;
    for (size_t i = 0; i < left->count; i++) {
        left->blocks[i] = malloc(left->size);
        if (left->blocks[i] != NULL)
            memset(left->blocks[i], 0x5a, left->size);
    }
    return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, fn, arg) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
}

/* Frees `count` blocks from `blocks` in a thread of its own, which then
 * exits: under BRISK_OPTIONS=delay every free waits in the freeing
 * thread's quarantine, which its exit empties, so when this returns the
 * blocks are back in their pages, as they would be at once without it. */
typedef struct block_span {
    void **blocks;
    size_t count;
} block_span;

static void *free_span(void *arg)
{
    const block_span *span = arg;
    for (size_t i = 0; i < span->count; i++)
        free(span->blocks[i]);
    return NULL;
}

static void free_in_thread(void **blocks, size_t count)
{
    block_span span = {blocks, count};
    run_thread(free_span, &span);
}

static void test_exit(void)
{
    static left_blocks left = {.count = LEFT, .size = LEFT_SIZE};
    brisk_malloc_stats before = stats_now();
    run_thread(leave_blocks, &left);
    for (size_t i = 0; i < LEFT; i++)
        REQUIRE(left.blocks[i] != NULL);
    brisk_malloc_stats st = stats_now();
    CHECK(st.segments_abandoned >= before.segments_abandoned + 1);
    CHECK(st.pages_abandoned >= before.pages_abandoned + 2); /* 128,000 bytes: 2 pages at least */
    CHECK(st.abandoned_segments >= 1);
    CHECK(st.abandoned_live_bytes >= (unsigned long long)LEFT * LEFT_SIZE);
    CHECK(st.abandoned_page_bytes >= st.abandoned_live_bytes);
    CHECK_EQ(st.threads_exited, before.threads_exited + 1);
    CHECK_EQ(brisk_malloc_check(), 0); /* A3 over the abandoned segment */

    /* All but one freed (cross-thread frees into the dead thread's
     * pages): every page but the last block's empties and is swept. */
    free_in_thread(left.blocks, LEFT - 1);
    st = stats_now();
    CHECK(st.pages_swept >= before.pages_swept + 1);
    /* one block left, at its block size (larger under canaries) */
    CHECK(st.abandoned_live_bytes <= before.abandoned_live_bytes + 2 * LEFT_SIZE);
    CHECK_EQ(brisk_malloc_check(), 0);
    free_in_thread(&left.blocks[LEFT - 1], 1);
    st = stats_now();
    CHECK(st.segments_swept_empty >= before.segments_swept_empty + 1);
    CHECK_EQ(st.abandoned_live_bytes, before.abandoned_live_bytes);
    CHECK_EQ(brisk_malloc_check(), 0);
}

/* ---- adopt: a new thread reuses what an exited one left ------------------------- */

typedef struct probe {
    void *block;
    int check;
} probe;

static void *allocate_one(void *arg)
{
    probe *pr = arg;
    pr->block = malloc(LEFT_SIZE);
    pr->check = brisk_malloc_check();
    return NULL;
}

static void test_adopt(void)
{
    static left_blocks left = {.count = 100, .size = LEFT_SIZE};
    run_thread(leave_blocks, &left);
    brisk_malloc_stats before = stats_now();
    probe pr = {NULL, -1};
    run_thread(allocate_one, &pr);
    REQUIRE(pr.block != NULL);
    CHECK_EQ(pr.check, 0);
    brisk_malloc_stats st = stats_now();
    CHECK(st.segments_adopted >= before.segments_adopted + 1);
    CHECK_MSG(segment_of(pr.block) == segment_of(left.blocks[0]),
              "a new thread's block %p is not in the segment %p an exited thread left",
              pr.block, (void *)segment_of(left.blocks[0]));
    free_in_thread(left.blocks, left.count);
    free_in_thread(&pr.block, 1);
    CHECK_EQ(brisk_malloc_check(), 0);
}

/* ---- fork: the child reuses the pages of threads it does not have -------------- */

enum { LOST_THREADS = 3, LOST_BLOCKS = 200 };

static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_ready, gate_open;

static void *allocate_and_wait(void *arg)
{
    left_blocks *left = arg;
    leave_blocks(left);
    pthread_mutex_lock(&gate);
    gate_ready++;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate);
    pthread_mutex_unlock(&gate);
    return NULL;
}

static left_blocks lost[LOST_THREADS];

static bool in_lost_segment(const void *p)
{
    for (int t = 0; t < LOST_THREADS; t++)
        for (size_t i = 0; i < lost[t].count; i++)
            if (segment_of(lost[t].blocks[i]) == segment_of(p))
                return true;
    return false;
}

static void fork_child_body(void *arg)
{
    (void)arg;
    brisk_malloc_stats st = stats_now();
    if (st.fork_orphans < LOST_THREADS || st.threads_live != 1) {
        fprintf(stderr, "child: %llu fork orphans, %llu live threads\n", st.fork_orphans, st.threads_live);
        _exit(3);
    }
    if (brisk_malloc_check() != 0)
        _exit(4);
    /* A thread of the child takes its first block from their pages. */
    probe pr = {NULL, -1};
    run_thread(allocate_one, &pr);
    if (pr.block == NULL || pr.check != 0)
        _exit(5);
    if (!in_lost_segment(pr.block)) {
        fprintf(stderr, "child: a new thread's block %p is not in a lost thread's segment\n", pr.block);
        _exit(6);
    }
    /* Their blocks can be freed, contents intact. */
    for (int t = 0; t < LOST_THREADS; t++) {
        for (size_t i = 0; i < lost[t].count; i++) {
            const unsigned char *b = lost[t].blocks[i];
            for (size_t k = 0; k < lost[t].size; k++)
                if (b[k] != 0x5a)
                    _exit(7);
        }
        free_in_thread(lost[t].blocks, lost[t].count);
    }
    free_in_thread(&pr.block, 1);
    if (brisk_malloc_check() != 0)
        _exit(8);
    st = stats_now();
    if (st.abandoned_live_bytes != 0) {
        fprintf(stderr, "child: %llu bytes still live in abandoned pages\n", st.abandoned_live_bytes);
        _exit(9);
    }
}

static void test_fork(void)
{
    pthread_t t[LOST_THREADS];
    gate_ready = gate_open = 0;
    for (int i = 0; i < LOST_THREADS; i++) {
        lost[i].count = LOST_BLOCKS;
        lost[i].size = LEFT_SIZE;
        REQUIRE(pthread_create(&t[i], NULL, allocate_and_wait, &lost[i]) == 0);
    }
    pthread_mutex_lock(&gate);
    while (gate_ready < LOST_THREADS)
        pthread_cond_wait(&gate_cond, &gate);
    pthread_mutex_unlock(&gate);
    child_result r = run_in_child(fork_child_body, NULL);
    CHECK_MSG(r.exited && r.exit_code == 0, "child exit %d signal %d: %s", r.exit_code, r.signal, r.output);
    pthread_mutex_lock(&gate);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate);
    for (int i = 0; i < LOST_THREADS; i++)
        REQUIRE(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < LOST_THREADS; i++)
        for (size_t k = 0; k < lost[i].count; k++)
            free(lost[i].blocks[k]);
    CHECK_EQ(brisk_malloc_check(), 0);
}

/* ---- stress ---------------------------------------------------------------------- */

enum { WORKERS = 4, MAILBOX = 4096, PER_THREAD = 64 };

typedef struct tagged {
    unsigned char *p;
    size_t size;
    unsigned tag;
} tagged;

static pthread_mutex_t mailbox_lock = PTHREAD_MUTEX_INITIALIZER;
static tagged mailbox[MAILBOX];
static size_t mailbox_count;
static volatile int stress_stop;
static unsigned long stress_bad;
static unsigned long stress_children_bad;

static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill(const tagged *t)
{
    for (size_t k = 0; k < t->size; k++)
        t->p[k] = (unsigned char)(t->tag + k * 7);
}

static bool intact(const tagged *t)
{
    for (size_t k = 0; k < t->size; k++)
        if (t->p[k] != (unsigned char)(t->tag + k * 7))
            return false;
    return true;
}

static void release(tagged *t, unsigned long *bad)
{
    if (!intact(t))
        (*bad)++;
    free(t->p);
}

/* A short-lived thread: allocates PER_THREAD blocks of many sizes, frees
 * a third, posts a third to the mailbox (freed by others after it exits)
 * and leaves the rest for its parent worker to free. */
typedef struct short_lived {
    uint64_t seed;
    tagged kept[PER_THREAD];
    size_t kept_count;
    unsigned long bad;
} short_lived;

static void *short_lived_main(void *arg)
{
    short_lived *s = arg;
    s->kept_count = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        uint64_t r = next_random(&s->seed);
        size_t size = (r & 7) == 0 ? 16 + (r >> 8) % 60000 : 1 + (r >> 8) % 1024;
        tagged t = {malloc(size), size, (unsigned)(r >> 32)};
        if (t.p == NULL) {
            s->bad++;
            continue;
        }
        fill(&t);
        switch ((r >> 4) % 3) {
        case 0:
            release(&t, &s->bad);
            break;
        case 1:
            pthread_mutex_lock(&mailbox_lock);
            if (mailbox_count < MAILBOX) {
                mailbox[mailbox_count++] = t;
                t.p = NULL;
            }
            pthread_mutex_unlock(&mailbox_lock);
            if (t.p != NULL)
                release(&t, &s->bad);
            break;
        default:
            s->kept[s->kept_count++] = t;
            break;
        }
    }
    return NULL;
}

static void *worker_main(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    unsigned long bad = 0;
    short_lived s;
    while (!stress_stop) {
        s.seed = next_random(&seed);
        s.bad = 0;
        pthread_t t;
        if (pthread_create(&t, NULL, short_lived_main, &s) != 0) {
            bad++;
            break;
        }
        pthread_join(t, NULL);
        bad += s.bad;
        for (size_t i = 0; i < s.kept_count; i++)
            release(&s.kept[i], &bad);
        /* Take some of anyone's posted blocks. */
        for (int i = 0; i < 24; i++) {
            tagged got = {NULL, 0, 0};
            pthread_mutex_lock(&mailbox_lock);
            if (mailbox_count > 0) {
                size_t at = next_random(&seed) % mailbox_count;
                got = mailbox[at];
                mailbox[at] = mailbox[--mailbox_count];
            }
            pthread_mutex_unlock(&mailbox_lock);
            if (got.p != NULL)
                release(&got, &bad);
        }
    }
    __atomic_add_fetch(&stress_bad, bad, __ATOMIC_RELAXED);
    return NULL;
}

static void *child_thread_main(void *arg)
{
    short_lived *s = arg;
    short_lived_main(s);
    for (size_t i = 0; i < s->kept_count; i++)
        release(&s->kept[i], &s->bad);
    if (brisk_malloc_check() != 0)
        s->bad++;
    return NULL;
}

/* The forked child: the mailbox lock is held (by this thread, taken
 * before the fork); it frees every posted block (many from threads that
 * no longer exist, here or at all), runs threads of its own, and checks. */
static void stress_child(void)
{
    unsigned long bad = 0;
    if (brisk_malloc_check() != 0)
        bad++;
    for (size_t i = 0; i < mailbox_count; i++)
        release(&mailbox[i], &bad);
    mailbox_count = 0;
    pthread_mutex_unlock(&mailbox_lock);
    for (int i = 0; i < 3; i++) {
        short_lived s = {.seed = 12345u + (unsigned)i, .kept_count = 0, .bad = 0};
        pthread_t t;
        if (pthread_create(&t, NULL, child_thread_main, &s) != 0 || pthread_join(t, NULL) != 0)
            bad++;
        bad += s.bad;
    }
    if (brisk_malloc_check() != 0)
        bad++;
    _exit(bad == 0 ? 0 : 1);
}

static void test_stress(void)
{
    double seconds = 1.5;
    const char *env = getenv("ABANDON_STRESS_SECONDS");
    if (env != NULL)
        seconds = atof(env);
    stress_stop = 0;
    pthread_t w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        REQUIRE(pthread_create(&w[i], NULL, worker_main, (void *)(uintptr_t)(i + 1)) == 0);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int forks = 0;
    do {
        struct timespec pause = {0, 150 * 1000 * 1000};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&mailbox_lock);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
            stress_child();
        pthread_mutex_unlock(&mailbox_lock);
        REQUIRE(pid > 0);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            stress_children_bad++;
        forks++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) * 1e-9 < seconds);
    stress_stop = 1;
    for (int i = 0; i < WORKERS; i++)
        REQUIRE(pthread_join(w[i], NULL) == 0);
    for (size_t i = 0; i < mailbox_count; i++)
        release(&mailbox[i], &stress_bad);
    mailbox_count = 0;
    brisk_malloc_stats st = stats_now();
    printf("stress: %d forks; %llu threads exited, %llu segments abandoned, %llu adopted, %llu pages swept\n",
           forks, st.threads_exited, st.segments_abandoned, st.segments_adopted, st.pages_swept);
    CHECK_EQ(stress_bad, 0);
    CHECK_EQ(stress_children_bad, 0);
    CHECK(forks >= 1);
    CHECK(st.segments_abandoned >= 1);
    CHECK_EQ(brisk_malloc_check(), 0);
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    struct {
        const char *name;
        void (*fn)(void);
    } parts[] = {{"stats", test_stats_contract}, {"exit", test_exit}, {"adopt", test_adopt},
                 {"fork", test_fork}, {"stress", test_stress}};
    bool ran = false;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (only == NULL || strcmp(only, parts[i].name) == 0) {
            parts[i].fn();
            ran = true;
        }
    }
    if (!ran) {
        fprintf(stderr, "test_abandon: no part named \"%s\" (stats, exit, adopt, fork, stress)\n", only);
        return 2;
    }
    return check_finish("test_abandon");
}
