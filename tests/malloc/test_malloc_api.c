/*
 * Tests of the process allocator through the standard names, linked
 * statically against libbrisk.a (so malloc here IS brisk's): exact
 * behaviour of every entry point, BRISK_OPTIONS and the statistics
 * printed at exit, misuse detection (in forked children), cross-thread
 * frees, thread exit, fork while threads allocate, and decay (resident
 * memory falls after a peak, while a loop reusing the same amount does
 * not fault its memory in again).
 *
 * Some tests re-run this program with an environment (BRISK_OPTIONS is
 * read once, at the first allocation): `test_malloc_api mode NAME`.
 */
#include "check.h"
#include "report.h"

#include "brisk.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

/* This file calls the allocator with impossible sizes and misuses it on
 * purpose; gcc sees some of that at compile time. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#endif
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

/* Hides a constant from the optimiser, so a huge request is made at run
 * time exactly as written. */
static size_t opaque(size_t value)
{
    static volatile size_t sink;
    sink = value;
    return sink;
}

static void *volatile result_sink;

/* C23 names glibc 2.36 does not declare yet. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

static const char *self_path;

/* Every usable byte is writable and keeps what was written. */
static bool usable_bytes_writable(unsigned char *p, size_t request)
{
    size_t usable = malloc_usable_size(p);
    if (usable < request)
        return false;
    memset(p, 0x5a, usable);
    return p[0] == 0x5a && p[usable - 1] == 0x5a;
}

static const size_t test_sizes[] = {0, 1, 2, 15, 16, 17, 31, 100, 128, 129, 1000,
                                    1024, 1025, 4096, 8191, 8192, 8193, 65536,
                                    100000, 262144, 262145, 1000000, 3u << 20};

static void test_static_link_is_brisk(void)
{
    /* The standard names are aliases of brisk's in libbrisk.a (compared
     * through volatile pointers: a compiler may assume two distinct
     * functions have distinct addresses). */
    void *(*volatile std_malloc)(size_t) = malloc;
    void *(*volatile own_malloc)(size_t) = brisk_malloc;
    void (*volatile std_free)(void *) = free;
    void (*volatile own_free)(void *) = brisk_free;
    CHECK(std_malloc == own_malloc);
    CHECK(std_free == own_free);
    void *p = malloc(40);
    CHECK(brisk_malloc_usable_size(p) >= 40);
    brisk_free(p);
}

static void test_malloc_sizes(void)
{
    for (size_t i = 0; i < sizeof test_sizes / sizeof test_sizes[0]; i++) {
        size_t size = test_sizes[i];
        unsigned char *p = malloc(size);
        REQUIRE(p != NULL);
        CHECK_MSG(aligned_to(p, 16), "malloc(%zu) = %p", size, (void *)p);
        CHECK_MSG(usable_bytes_writable(p, size), "size %zu", size);
        free(p);
    }
    /* malloc(2) is 16-byte aligned too, and many small blocks are distinct */
    void *blocks[1000];
    for (int i = 0; i < 1000; i++) {
        blocks[i] = malloc((size_t)(i % 3));
        CHECK(aligned_to(blocks[i], 16));
        for (int j = i - 3; j >= 0 && j < i; j++)
            CHECK(blocks[j] != blocks[i]);
    }
    for (int i = 0; i < 1000; i++)
        free(blocks[i]);
    free(NULL); /* does nothing */
    CHECK_EQ(brisk_malloc_check(), 0);
}

static void test_malloc_zero_unique(void)
{
    void *a = malloc(0), *b = malloc(0), *c = malloc(0);
    CHECK(a != NULL && b != NULL && c != NULL);
    CHECK(a != b && b != c && a != c);
    free(a);
    free(b);
    free(c);
}

static void test_calloc(void)
{
    for (size_t i = 0; i < sizeof test_sizes / sizeof test_sizes[0]; i++) {
        size_t size = test_sizes[i];
        /* dirty the memory calloc may reuse */
        unsigned char *dirty = malloc(size);
        REQUIRE(dirty != NULL);
        memset(dirty, 0xff, size);
        free(dirty);
        unsigned char *p = calloc(1, size);
        REQUIRE(p != NULL);
        bool zero = true;
        for (size_t j = 0; j < size; j++)
            zero = zero && p[j] == 0;
        CHECK_MSG(zero, "calloc(1, %zu) not zeroed", size);
        CHECK(aligned_to(p, 16));
        free(p);
    }
    errno = 0;
    CHECK(calloc(opaque(SIZE_MAX / 2 + 1), 2) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(calloc(opaque((size_t)1 << 33), opaque((size_t)1 << 33)) == NULL);
    CHECK_EQ(errno, ENOMEM);
}

static void test_huge_requests(void)
{
    const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4095, SIZE_MAX / 2, (size_t)1 << 62,
                           (size_t)1 << 47};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        errno = 0;
        CHECK_MSG(malloc(opaque(huge[i])) == NULL, "malloc(%zu)", huge[i]);
        CHECK_EQ(errno, ENOMEM);
        errno = 0;
        CHECK(memalign(64, huge[i]) == NULL);
        CHECK_EQ(errno, ENOMEM);
        errno = 0;
        CHECK(valloc(huge[i]) == NULL);
        CHECK_EQ(errno, ENOMEM);
        errno = 0;
        CHECK(pvalloc(huge[i]) == NULL);
        CHECK_EQ(errno, ENOMEM);
        errno = 0;
        CHECK(aligned_alloc(4096, huge[i]) == NULL);
        CHECK_EQ(errno, ENOMEM);
        void *out = (void *)0x1;
        CHECK_EQ(posix_memalign(&out, 64, huge[i]), ENOMEM);
        CHECK(out == (void *)0x1); /* untouched on failure */
    }
    CHECK_EQ(brisk_malloc_check(), 0);
}

static void test_realloc(void)
{
    /* grow and shrink through every kind of block, keeping contents */
    unsigned char *p = NULL;
    size_t prev = 0;
    const size_t steps[] = {1, 24, 200, 5000, 70000, 300000, 2u << 20, 5000, 16, 9u << 20, 100};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t size = steps[i];
        unsigned char *q = realloc(p, size);
        REQUIRE(q != NULL);
        size_t keep = prev < size ? prev : size;
        bool same = true;
        for (size_t j = 0; j < keep; j++)
            same = same && q[j] == (unsigned char)(j * 7 + 3);
        CHECK_MSG(same, "realloc to %zu lost contents", size);
        CHECK(aligned_to(q, 16));
        for (size_t j = 0; j < size; j++)
            q[j] = (unsigned char)(j * 7 + 3);
        CHECK(malloc_usable_size(q) >= size);
        p = q;
        prev = size;
    }
    /* a failed realloc leaves the old block intact */
    errno = 0;
    CHECK(realloc(p, opaque(SIZE_MAX - 100)) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK(p[0] == 3 && p[99] == (unsigned char)(99 * 7 + 3));
    errno = 0;
    CHECK(reallocarray(p, opaque(SIZE_MAX / 4), 8) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK(p[0] == 3 && p[99] == (unsigned char)(99 * 7 + 3));
    unsigned char *r = reallocarray(p, 25, 8);
    REQUIRE(r != NULL);
    CHECK(r[99] == (unsigned char)(99 * 7 + 3));
    /* realloc(p, 0) frees p and returns NULL, as glibc does */
    CHECK(realloc(r, 0) == NULL);
    /* realloc(NULL, n) is malloc */
    void *m = realloc(NULL, 33);
    CHECK(m != NULL && malloc_usable_size(m) >= 33);
    free(m);
    CHECK_EQ(brisk_malloc_check(), 0);
}

static void test_aligned(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t alignment = 1; alignment <= ((size_t)8 << 20); alignment <<= 1) {
        for (size_t i = 0; i < sizeof test_sizes / sizeof test_sizes[0]; i++) {
            size_t size = test_sizes[i];
            if (size > ((size_t)1 << 20) && alignment < 4096)
                continue; /* enough big ones */
            void *p = NULL;
            if (alignment >= sizeof(void *)) {
                int rc = posix_memalign(&p, alignment, size);
                CHECK_EQ(rc, 0);
                CHECK_MSG(p != NULL && aligned_to(p, alignment), "posix_memalign(%zu, %zu) = %p",
                          alignment, size, p);
                CHECK(usable_bytes_writable(p, size));
                free(p);
            }
            p = aligned_alloc(alignment, size);
            CHECK_MSG(p != NULL && aligned_to(p, alignment), "aligned_alloc(%zu, %zu) = %p",
                      alignment, size, p);
            CHECK(usable_bytes_writable(p, size));
            free_aligned_sized(p, alignment, size);
            p = memalign(alignment, size);
            CHECK_MSG(p != NULL && aligned_to(p, alignment < 16 ? 16 : alignment),
                      "memalign(%zu, %zu) = %p", alignment, size, p);
            CHECK(usable_bytes_writable(p, size));
            free(p);
        }
    }
    /* a few aligned blocks alive at once, of one class, stay distinct */
    void *held[64];
    for (int i = 0; i < 64; i++) {
        held[i] = aligned_alloc(256, 100);
        CHECK(aligned_to(held[i], 256));
        memset(held[i], i, 100);
    }
    for (int i = 0; i < 64; i++) {
        CHECK(((unsigned char *)held[i])[99] == i);
        free(held[i]);
    }
    /* EINVAL: not a power of two, or below sizeof(void *) */
    const size_t bad[] = {0, 1, 2, 4, 3, 24, 48, 100, 4097};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)0x1;
        CHECK_MSG(posix_memalign(&out, bad[i], 16) == EINVAL, "alignment %zu", bad[i]);
        CHECK(out == (void *)0x1);
    }
    errno = 0;
    CHECK(aligned_alloc(opaque(24), 48) == NULL);
    CHECK_EQ(errno, EINVAL);
    /* memalign rounds a non-power-of-two alignment up, as glibc does */
    void *m = memalign(opaque(24), 100);
    CHECK(m != NULL && aligned_to(m, 32));
    free(m);
    /* valloc and pvalloc: page aligned; pvalloc rounds the size up */
    for (size_t i = 0; i < sizeof test_sizes / sizeof test_sizes[0]; i++) {
        void *v = valloc(test_sizes[i]);
        CHECK(v != NULL && aligned_to(v, page));
        CHECK(usable_bytes_writable(v, test_sizes[i]));
        free(v);
        void *pv = pvalloc(test_sizes[i]);
        size_t rounded = (test_sizes[i] + page - 1) / page * page;
        if (rounded == 0)
            rounded = page;
        CHECK(pv != NULL && aligned_to(pv, page));
        CHECK_MSG(malloc_usable_size(pv) >= rounded, "pvalloc(%zu)", test_sizes[i]);
        CHECK(usable_bytes_writable(pv, rounded));
        free(pv);
    }
    CHECK_EQ(brisk_malloc_check(), 0);
}

static void test_free_sized(void)
{
    for (size_t i = 0; i < sizeof test_sizes / sizeof test_sizes[0]; i++) {
        void *p = malloc(test_sizes[i]);
        REQUIRE(p != NULL);
        free_sized(p, test_sizes[i]);
    }
    free_sized(NULL, 0);
    free_aligned_sized(NULL, 64, 0);
    CHECK_EQ(brisk_malloc_check(), 0);
}

static void test_glibc_extras(void)
{
    enum { COUNT = 4000, SIZE = 2000 };
    static void *blocks[COUNT];
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = malloc(SIZE);
        REQUIRE(blocks[i] != NULL);
    }
    void *big = malloc(5u << 20);
    REQUIRE(big != NULL);
    struct mallinfo2 info = mallinfo2();
    CHECK_MSG(info.uordblks >= (size_t)COUNT * SIZE, "uordblks %zu", info.uordblks);
    CHECK(info.hblks >= 1);
    CHECK(info.hblkhd >= (5u << 20));
    CHECK(info.arena >= info.uordblks);
    struct mallinfo old = mallinfo();
    CHECK(old.uordblks > 0);
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);
    free(big);
    struct mallinfo2 after = mallinfo2();
    CHECK_MSG(after.uordblks < info.uordblks, "%zu !< %zu", after.uordblks, info.uordblks);
    CHECK(after.hblkhd < info.hblkhd);
    CHECK(malloc_trim(0) >= 0);
    CHECK_EQ(mallopt(M_MMAP_THRESHOLD, 1 << 20), 1);
    CHECK_EQ(mallopt(M_ARENA_MAX, 1), 1);
    CHECK_EQ(mallopt(12345, 1), 0);
    CHECK_EQ(brisk_malloc_check(), 0);
}

/* ---- misuse, each in a forked child --------------------------------------- */

static void misuse_double_free_small(void *arg)
{
    (void)arg;
    void *p = malloc(48);
    free(p);
    free(p);
}

static void misuse_double_free_interleaved(void *arg)
{
    (void)arg;
    void *keep[100];
    void *p = malloc(64);
    for (int i = 0; i < 100; i++)
        keep[i] = malloc(64);
    free(p);
    for (int i = 0; i < 50; i++)
        free(keep[i]);
    /* many more allocations of other sizes, and of the same size (which
     * the free list hands out before reaching p's turn) */
    for (int i = 0; i < 50; i++)
        keep[i] = malloc(32);
    free(p);
}

static void misuse_double_free_many_allocs(void *arg)
{
    (void)arg;
    void *p = malloc(200);
    free(p);
    for (int i = 0; i < 10000; i++)
        free(malloc(200));
    free(p);
}

static void misuse_double_free_medium(void *arg)
{
    (void)arg;
    void *p = malloc(100000);
    void *q = malloc(100000);
    free(p);
    free(q);
    free(p);
}

static void misuse_double_free_large(void *arg)
{
    (void)arg;
    void *p = malloc(3u << 20);
    free(p);
    free(p);
}

static void misuse_double_free_large_uncached(void *arg)
{
    (void)arg;
    void *p = malloc(200u << 20); /* beyond the large cache: unmapped */
    free(p);
    free(p);
}

static void misuse_double_free_cross_thread_worker(void *arg)
{
    free(arg);
}

static void *remote_free_thread(void *arg)
{
    misuse_double_free_cross_thread_worker(arg);
    return NULL;
}

static void misuse_double_free_cross_thread(void *arg)
{
    (void)arg;
    void *p = malloc(80);
    pthread_t t;
    pthread_create(&t, NULL, remote_free_thread, p);
    pthread_join(t, NULL);
    free(p);
}

static void misuse_interior_aligned(void *arg)
{
    (void)arg;
    char *p = malloc(256);
    free(p + 16);
}

static void misuse_interior_unaligned(void *arg)
{
    (void)arg;
    char *p = malloc(256);
    free(p + 3);
}

static void misuse_interior_large(void *arg)
{
    (void)arg;
    char *p = malloc(1u << 20);
    free(p + 4096);
}

static void misuse_stack(void *arg)
{
    (void)arg;
    char local[64];
    memset(local, 0, sizeof local);
    free(local + 16);
}

static void misuse_wild(void *arg)
{
    (void)arg;
    free((void *)(uintptr_t)0x123456780ull);
}

static void misuse_foreign_mapping(void *arg)
{
    (void)arg;
    /* Placed far below the mmap area, where brisk has never mapped: the
     * kernel reuses the addresses of freed mappings, and a mapping that
     * lands where brisk unmapped a large block cannot be told from a
     * double free of that block (the report names both). */
    void *hint = (void *)((uintptr_t)1 << 44);
    char *m = mmap(hint, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        _exit(5);
    free(m + 4096);
}

/* A "chunk header" forged inside a block the program owns, then freed as
 * if it were a block: metadata lives out of line, so this is an interior
 * pointer and is refused. */
static void misuse_forged_header(void *arg)
{
    (void)arg;
    size_t *p = malloc(4096);
    p[0] = 0;
    p[1] = 1024 | 1; /* dlmalloc-style size word */
    p[2] = (size_t)p;
    free(&p[2]);
}

static void misuse_realloc_invalid(void *arg)
{
    (void)arg;
    char *p = malloc(100);
    result_sink = realloc(p + 32, 200);
}

static void misuse_realloc_freed(void *arg)
{
    (void)arg;
    char *p = malloc(100);
    free(p);
    result_sink = realloc(p, 200);
}

static void misuse_usable_size_invalid(void *arg)
{
    (void)arg;
    char *p = malloc(100);
    malloc_usable_size(p + 48);
}

/* A write into a freed block tries to steer malloc to a chosen address. */
static void misuse_free_list_steer(void *arg)
{
    (void)arg;
    static char target[256] __attribute__((aligned(16)));
    void *p = malloc(96);
    free(p);
    *(void **)p = target;
    for (int i = 0; i < 100000; i++) {
        void *q = malloc(96);
        if (q == (void *)target) {
            fprintf(stderr, "steered to the target\n");
            _exit(3);
        }
        if (q == NULL)
            break;
    }
    _exit(4); /* never popped the forged link: the test fails */
}

typedef struct misuse_case {
    const char *name;
    void (*fn)(void *);
    const char *expected;
} misuse_case;

static void test_misuse(void)
{
    static const misuse_case cases[] = {
        {"double free small", misuse_double_free_small, "brisk: double free (pointer 0x"},
        {"double free interleaved", misuse_double_free_interleaved, "brisk: double free"},
        {"double free after many allocations", misuse_double_free_many_allocs, "brisk: double free"},
        {"double free medium", misuse_double_free_medium, "brisk: double free"},
        {"double free large", misuse_double_free_large, "brisk: double free"},
        {"double free large unmapped", misuse_double_free_large_uncached, "brisk: double free"},
        {"double free cross-thread", misuse_double_free_cross_thread, "brisk: double free"},
        {"interior aligned", misuse_interior_aligned, "brisk: free of a pointer that is not the start of a live block"},
        {"interior unaligned", misuse_interior_unaligned, "brisk: free of a pointer that is not the start"},
        {"interior large", misuse_interior_large, "brisk: free of a pointer that is not"},
        {"stack address", misuse_stack, "brisk: free of a pointer that is not a block of this allocator"},
        {"wild address", misuse_wild, "brisk: free of a pointer that is not a block of this allocator"},
        {"foreign mapping", misuse_foreign_mapping, "brisk: free of a pointer that is not a block"},
        {"forged header", misuse_forged_header, "brisk: free of a pointer that is not the start"},
        {"realloc interior", misuse_realloc_invalid, "brisk: pointer is not the start of a live block"},
        {"realloc freed", misuse_realloc_freed, "brisk: realloc of a freed block"},
        {"usable size interior", misuse_usable_size_invalid, "brisk: pointer is not the start"},
        {"free list steering", misuse_free_list_steer, "brisk: free list corrupted"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        child_result r = run_in_child(cases[i].fn, NULL);
        CHECK_MSG(!r.exited && r.signal == SIGABRT, "%s: exited=%d code=%d signal=%d out=%s",
                  cases[i].name, r.exited, r.exit_code, r.signal, r.output);
        CHECK_MSG(strstr(r.output, cases[i].expected) != NULL, "%s: stderr was \"%s\"",
                  cases[i].name, r.output);
    }
}

/* An installed handler that returns (report.h's record_report): the call
 * does nothing more. */
static void test_handler_returns(void)
{
    report_log log = {0};
    brisk_set_error_handler(record_report, &log);
    char *p = malloc(64);
    free(p + 16);
    CHECK_EQ(log.count, 1);
    CHECK_EQ(log.last_error, BRISK_ERROR_INVALID_POINTER);
    free(p);
    free(p);
    CHECK_EQ(log.count, 2);
    CHECK_EQ(log.last_error, BRISK_ERROR_DOUBLE_FREE);
    CHECK(realloc(p, 10) == NULL);
    CHECK_EQ(log.count, 3);
    CHECK_EQ(malloc_usable_size(p), 0);
    CHECK_EQ(log.count, 4);
    brisk_set_error_handler(NULL, NULL);
    CHECK_EQ(brisk_malloc_check(), 0);
}

/* ---- threads ------------------------------------------------------------ */

enum { HANDOFF = 20000 };

static void *alloc_many_thread(void *arg)
{
    void **blocks = arg;
    for (int i = 0; i < HANDOFF; i++) {
        blocks[i] = malloc((size_t)(16 + (i % 50) * 24));
        memset(blocks[i], 0x11, 16);
    }
    return NULL;
}

static void *free_many_thread(void *arg)
{
    void **blocks = arg;
    for (int i = 0; i < HANDOFF; i++)
        free(blocks[i]);
    return NULL;
}

static void test_cross_thread_free(void)
{
    static void *blocks[HANDOFF];
    /* main allocates, another thread frees, main allocates again */
    for (int round = 0; round < 3; round++) {
        alloc_many_thread(blocks);
        pthread_t t;
        pthread_create(&t, NULL, free_many_thread, blocks);
        pthread_join(t, NULL);
        CHECK_EQ(brisk_malloc_check(), 0);
    }
    size_t mapped_before = mallinfo2().arena;
    for (int round = 0; round < 5; round++) {
        alloc_many_thread(blocks);
        pthread_t t;
        pthread_create(&t, NULL, free_many_thread, blocks);
        pthread_join(t, NULL);
    }
    /* the remote frees were reclaimed: no growth round after round */
    size_t mapped_after = mallinfo2().arena;
    CHECK_MSG(mapped_after <= mapped_before + (8u << 20), "%zu -> %zu", mapped_before, mapped_after);
    CHECK_EQ(brisk_malloc_check(), 0);
}

static void test_thread_exit_live_blocks(void)
{
    static void *blocks[HANDOFF];
    size_t mapped_first = 0;
    for (int round = 0; round < 6; round++) {
        if (round == 1)
            mapped_first = mallinfo2().arena;
        /* a thread allocates and exits with everything live */
        pthread_t t;
        pthread_create(&t, NULL, alloc_many_thread, blocks);
        pthread_join(t, NULL);
        /* main frees its blocks later, then allocates (adopting) */
        for (int i = 0; i < HANDOFF; i++) {
            CHECK(((unsigned char *)blocks[i])[0] == 0x11);
            free(blocks[i]);
        }
        void *more[1000];
        for (int i = 0; i < 1000; i++)
            more[i] = malloc(64);
        for (int i = 0; i < 1000; i++)
            free(more[i]);
        CHECK_EQ(brisk_malloc_check(), 0);
    }
    /* the exited threads' segments were adopted and reused, not leaked */
    size_t mapped_last = mallinfo2().arena;
    CHECK_MSG(mapped_last <= mapped_first + (8u << 20), "%zu -> %zu", mapped_first, mapped_last);
    /* freed by a third thread while the allocating one is gone */
    pthread_t t;
    pthread_create(&t, NULL, alloc_many_thread, blocks);
    pthread_join(t, NULL);
    pthread_create(&t, NULL, free_many_thread, blocks);
    pthread_join(t, NULL);
    CHECK_EQ(brisk_malloc_check(), 0);
}

static volatile int churn_stop;

static void *churn_thread(void *arg)
{
    (void)arg;
    void *slots[64] = {0};
    unsigned i = 0;
    while (!__atomic_load_n(&churn_stop, __ATOMIC_RELAXED)) {
        unsigned k = (i * 2654435761u) >> 26;
        free(slots[k]);
        slots[k] = malloc((size_t)(i % 3000) + 1);
        if (i % 1000 == 0) {
            free(slots[k]);
            slots[k] = malloc(400000);
        }
        i++;
    }
    for (int k = 0; k < 64; k++)
        free(slots[k]);
    return NULL;
}

static void test_fork_with_threads(void)
{
    pthread_t threads[2];
    churn_stop = 0;
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], NULL, churn_thread, NULL);
    int ok = 0;
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(10);
            void *blocks[500];
            for (int i = 0; i < 500; i++)
                blocks[i] = malloc((size_t)(i * 37 % 5000) + 1);
            for (int i = 0; i < 500; i++)
                free(blocks[i]);
            free(malloc(1 << 20));
            _exit(brisk_malloc_check() == 0 ? 0 : 7);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok++;
        else
            fprintf(stderr, "fork round %d: status %#x\n", round, status);
    }
    __atomic_store_n(&churn_stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    CHECK_EQ(ok, 20);
    CHECK_EQ(brisk_malloc_check(), 0);
}

/* ---- decay and hysteresis ---------------------------------------------- */

static size_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    unsigned long size = 0, resident = 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static long minor_faults(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_minflt;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

enum { DECAY_BLOCKS = 6400, DECAY_BLOCK_SIZE = 8000 }; /* ~50 MiB of small blocks */

static void *decay_blocks[DECAY_BLOCKS];

static void decay_fill(void)
{
    for (int i = 0; i < DECAY_BLOCKS; i++) {
        decay_blocks[i] = malloc(DECAY_BLOCK_SIZE);
        memset(decay_blocks[i], 0x33, DECAY_BLOCK_SIZE);
    }
}

static void decay_empty(void)
{
    for (int i = 0; i < DECAY_BLOCKS; i++)
        free(decay_blocks[i]);
}

static void *decay_free_thread(void *arg)
{
    (void)arg;
    decay_empty();
    return NULL;
}

/* Run with BRISK_OPTIONS=decay_ms=10000 (see main): a long decay, so a
 * loaded machine cannot make the loop outlast it. */
static int mode_hysteresis(void)
{
    size_t total = (size_t)DECAY_BLOCKS * DECAY_BLOCK_SIZE;
    decay_fill();
    decay_empty();
    /* hysteresis: filling and emptying again within the decay period
     * reuses resident memory, so (almost) no page faults */
    long faults_before = minor_faults();
    for (int round = 0; round < 5; round++) {
        decay_fill();
        decay_empty();
    }
    long faults = minor_faults() - faults_before;
    long pages = (long)(total / (size_t)sysconf(_SC_PAGESIZE));
    CHECK_MSG(faults < pages / 10, "small refill loop faulted %ld times (%ld pages per fill)",
              faults, pages);
    /* large blocks likewise come back from the cache (after a first
     * round that faults them in) */
    free(memset(malloc(16u << 20), 1, 16u << 20));
    faults_before = minor_faults();
    for (int round = 0; round < 10; round++) {
        char *big = malloc(16u << 20);
        memset(big, round, 16u << 20);
        free(big);
    }
    faults = minor_faults() - faults_before;
    CHECK_MSG(faults < 512, "large refill loop faulted %ld times (4096 pages per block)", faults);
    CHECK_EQ(brisk_malloc_check(), 0);
    return check_finish("test_malloc_api hysteresis");
}

/* Run with BRISK_OPTIONS=decay_ms=500 (see main). */
static int mode_decay(void)
{
    size_t total = (size_t)DECAY_BLOCKS * DECAY_BLOCK_SIZE;
    size_t base = resident_bytes();
    decay_fill();
    size_t peak = resident_bytes();
    CHECK_MSG(peak >= base + total / 2, "filling did not raise resident memory: base %zu, peak %zu",
              base, peak);
    decay_empty();
    /* That memory is not given back at once is mode_hysteresis's check,
     * under a decay long enough that a loaded machine cannot outlast it;
     * here a slow fill may legitimately let the first pages decay. */
    /* after the decay period, the next allocations' slow paths purge */
    sleep_ms(800);
    for (int i = 0; i < 300; i++)
        free(malloc(300000));
    size_t after = resident_bytes();
    CHECK_MSG(after < base + total / 4, "resident after decay %zu (base %zu, peak %zu)", after,
              base, peak);

    /* Blocks freed by another thread: their pages are noticed empty at a
     * purge and given back one decay period later. */
    decay_fill();
    pthread_t t;
    pthread_create(&t, NULL, decay_free_thread, NULL);
    pthread_join(t, NULL);
    for (int period = 0; period < 2; period++) {
        sleep_ms(800);
        for (int i = 0; i < 300; i++)
            free(malloc(300000));
    }
    after = resident_bytes();
    CHECK_MSG(after < base + total / 4, "resident after remote frees and decay %zu (base %zu)",
              after, base);
    CHECK_EQ(brisk_malloc_check(), 0);
    return check_finish("test_malloc_api decay");
}

/* Runs this program in `mode` with extra environment; returns its exit
 * status and captures its stderr. */
static int run_self(const char *mode, const char *env_entry, char *output, size_t output_size)
{
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        char *argv[] = {(char *)self_path, (char *)"mode", (char *)mode, NULL};
        char *envp[] = {(char *)env_entry, NULL};
        execve(self_path, argv, envp);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fds[0], output + used, output_size - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
        if (used == output_size - 1)
            break;
    }
    output[used] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int mode_options(void)
{
    void *p = malloc(100);
    void *q = malloc(500000);
    free(p);
    free(q);
    return 0;
}

/* As mode_options, closing stderr in an exit handler the way coreutils
 * programs do: the summary must still come out. */
static void close_stderr_at_exit(void)
{
    close(STDERR_FILENO);
}

static int mode_options_closing_stderr(void)
{
    atexit(close_stderr_at_exit);
    return mode_options();
}

static void test_options_and_stats(void)
{
    static char out[16384];
    int rc = run_self("options", "BRISK_OPTIONS=stats,bogus_option=3,decay_ms=abc,verbose=0", out,
                      sizeof out);
    CHECK_EQ(rc, 0);
    CHECK_MSG(strstr(out, "brisk: BRISK_OPTIONS: ignoring unknown option \"bogus_option=3\"") != NULL,
              "stderr: %s", out);
    CHECK_MSG(strstr(out, "not a number: \"decay_ms=abc\"") != NULL, "stderr: %s", out);
    CHECK_MSG(strstr(out, "brisk: statistics") != NULL, "stderr: %s", out);
    CHECK_MSG(strstr(out, "large requests               1") != NULL, "stderr: %s", out);
    CHECK_MSG(strstr(out, "peak resident") != NULL, "stderr: %s", out);
    /* the per-class table lists the class of the 100-byte request (112) */
    CHECK_MSG(strstr(out, "    112") != NULL, "stderr: %s", out);

    rc = run_self("options-closing-stderr", "BRISK_OPTIONS=stats", out, sizeof out);
    CHECK_EQ(rc, 0);
    CHECK_MSG(strstr(out, "brisk: statistics") != NULL,
              "no summary when the program closes stderr at exit: %s", out);

    rc = run_self("options", "BRISK_OPTIONS=", out, sizeof out);
    CHECK_EQ(rc, 0);
    CHECK_MSG(out[0] == '\0', "empty options printed: %s", out);

    rc = run_self("options", "BRISK_OPTIONS=verbose,large_cache_mb=0", out, sizeof out);
    CHECK_EQ(rc, 0);
    CHECK_MSG(strstr(out, "brisk: mapped a large block") != NULL, "stderr: %s", out);
    CHECK_MSG(strstr(out, "brisk: unmapped a large block") != NULL, "stderr: %s", out);
}

static void test_decay(void)
{
    static char out[16384];
    int rc = run_self("hysteresis", "BRISK_OPTIONS=decay_ms=10000", out, sizeof out);
    CHECK_MSG(rc == 0, "hysteresis child failed (%d): %s", rc, out);
    rc = run_self("decay", "BRISK_OPTIONS=decay_ms=500", out, sizeof out);
    CHECK_MSG(rc == 0, "decay child failed (%d): %s", rc, out);
}

int main(int argc, char **argv)
{
    self_path = "/proc/self/exe";
    if (argc == 3 && strcmp(argv[1], "mode") == 0) {
        if (strcmp(argv[2], "options") == 0)
            return mode_options();
        if (strcmp(argv[2], "options-closing-stderr") == 0)
            return mode_options_closing_stderr();
        if (strcmp(argv[2], "decay") == 0)
            return mode_decay();
        if (strcmp(argv[2], "hysteresis") == 0)
            return mode_hysteresis();
        return 2;
    }
    test_static_link_is_brisk();
    test_malloc_sizes();
    test_malloc_zero_unique();
    test_calloc();
    test_huge_requests();
    test_realloc();
    test_aligned();
    test_free_sized();
    test_glibc_extras();
    test_misuse();
    test_handler_returns();
    test_cross_thread_free();
    test_thread_exit_live_blocks();
    test_fork_with_threads();
    test_options_and_stats();
    test_decay();
    return check_finish("test_malloc_api");
}
