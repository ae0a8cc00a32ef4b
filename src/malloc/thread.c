/*
 * Thread heaps: process start-up, one heap per thread, thread exit (the
 * heap's segments are abandoned for other threads to adopt) and fork.
 *
 * Start-up happens at the first allocation, possibly before main and from
 * inside the C library. Nothing on this path may call malloc: options are
 * read by walking environ, randomness comes from getrandom, heaps are
 * carved from memory mapped here, and the pthread calls used (key_create,
 * setspecific on an early key, atfork) work on static tables in glibc.
 *
 * Heaps are reached through one initial-exec thread-local pointer, so the
 * fast paths load it with a single instruction and never allocate TLS.
 */
#include "malloc/internal.h"

uint8_t *segment_map;
uintptr_t segmap_entries;
pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
uintptr_t process_secret;
size_t meta_guard_bytes;
page empty_page; /* no free blocks: a fresh heap's malloc falls through to
                    malloc_generic, which installs a real page */
_Thread_local heap *tls_heap __attribute__((tls_model("initial-exec")));

enum { INIT_NONE, INIT_RUNNING, INIT_DONE };
static int init_state;
static pthread_key_t heap_key;
static heap *heap_pool; /* heaps of exited threads, for reuse */
static heap *heap_all;  /* every live heap */
static char *heap_chunk_next, *heap_chunk_end;

void global_lock_take(void)
{
    pthread_mutex_lock(&global_lock);
}

void global_lock_drop(void)
{
    pthread_mutex_unlock(&global_lock);
}

heap *heap_list_first(void)
{
    return heap_all;
}

/* splitmix64: a good, cheap generator for page keys (the seed is the
 * secret part; this only spreads it). */
uintptr_t random_next(uintptr_t *state)
{
    return (uintptr_t)mix64(*state += 0x9e3779b97f4a7c15ull);
}

static void heap_thread_exit(void *arg);

static void fork_prepare(void)
{
    global_lock_take();
}

static void fork_parent(void)
{
    global_lock_drop();
}

/* The child has only the thread that forked; the lock it holds from
 * fork_prepare is released so the child can allocate. Heaps of threads
 * that do not exist in the child keep their memory (their blocks can still
 * be freed: those frees take the cross-thread path). */
static void fork_child(void)
{
    global_lock_drop();
}

static void exit_print_stats(void) __attribute__((destructor));
static void exit_print_stats(void)
{
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == INIT_DONE &&
        malloc_options.stats)
        stats_print();
}

static void process_init(void)
{
    options_read();
    /* The metadata guard (malloc_internal.h) can be protected only in
     * whole pages. With a page size that does not divide META_GUARD (64
     * KiB pages), protecting it would take the header's page too: it is
     * left accessible instead. The layout does not change, only the
     * protection from overflows below the region's base is lost; the
     * header checks (large.c) still apply. */
    if (META_GUARD % os_page_size() == 0)
        meta_guard_bytes = META_GUARD;
    else
        verbose_note("page size does not divide META_GUARD: metadata guard off", os_page_size());
    segment_map = os_map(SEGMAP_ENTRIES);
    if (segment_map == NULL) {
        static const char msg[] = "brisk: cannot reserve the segment map\n";
        os_write_stderr(msg, sizeof msg - 1);
        os_abort();
    }
    /* After the map: a free that sees the entries sees the map. */
    __atomic_store_n(&segmap_entries, SEGMAP_ENTRIES, __ATOMIC_RELEASE);
    uintptr_t seed[2] = {0, 0};
    if (!os_random(seed, sizeof seed)) {
        /* No kernel randomness: mix what differs between runs (ASLR'd
         * addresses and the clock). Weaker, but never predictable from
         * the binary alone. */
        seed[0] = (uintptr_t)&seed ^ ((uintptr_t)segment_map << 17);
        seed[1] = (uintptr_t)os_now_ms() ^ (uintptr_t)&process_init;
    }
    process_secret = seed[0] ^ rotl_word(seed[1], 29);
    if (process_secret == 0)
        process_secret = 0x5bd1e9955bd1e995ull;
    pthread_key_create(&heap_key, heap_thread_exit);
    __atomic_store_n(&init_state, INIT_DONE, __ATOMIC_RELEASE);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void process_init_once(void)
{
    int expected = INIT_NONE;
    if (__atomic_compare_exchange_n(&init_state, &expected, INIT_RUNNING, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        process_init();
        return;
    }
    while (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE)
        ;
}

static heap *heap_new(void)
{
    heap *h;
    global_lock_take();
    h = heap_pool;
    if (h != NULL) {
        heap_pool = h->pool_next;
    } else {
        size_t need = (sizeof(heap) + 63) & ~(size_t)63;
        if (heap_chunk_next == NULL || (size_t)(heap_chunk_end - heap_chunk_next) < need) {
            size_t chunk = (size_t)64 << 10;
            char *mem = os_map(chunk);
            if (mem == NULL) {
                global_lock_drop();
                return NULL;
            }
            heap_chunk_next = mem;
            heap_chunk_end = mem + chunk;
        }
        h = (heap *)(void *)heap_chunk_next;
        heap_chunk_next += need;
    }
    memset(h, 0, sizeof *h);
    /* Page keys (free-list encoding) come from h->rng: seeded from the
     * kernel-random process secret, or every run's keys would be the same
     * and a program could forge encoded links (harden branch's fix). */
    h->rng = process_secret ^ rotl_word((uintptr_t)h, 17);
    for (unsigned i = 0; i < CLASS_COUNT; i++)
        heap_direct_set(h, i, &empty_page);
    h->all_next = heap_all;
    if (heap_all != NULL)
        heap_all->all_prev = h;
    heap_all = h;
    global_lock_drop();
    return h;
}

heap *heap_init_slow(void)
{
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE)
        process_init_once();
    if (tls_heap != NULL)
        return tls_heap;
    heap *h = heap_new();
    if (h == NULL)
        return NULL;
    tls_heap = h;
    pthread_setspecific(heap_key, h);
    return h;
}

/* Runs as the thread's key destructor: pages are collected, empty ones go
 * back, and segments that still hold live blocks are abandoned for other
 * threads to adopt (their blocks may be freed by anyone, any time). A
 * later allocation by another destructor of this thread makes a new heap,
 * which pthread destructs again. */
static void heap_thread_exit(void *arg)
{
    heap *h = arg;
    if (h == NULL)
        return;
    if (harden_flags & HARDEN_DELAY)
        harden_thread_exit(); /* quarantined blocks go back while h exists */
    tls_heap = NULL;
    heap_abandon_segments(h);
    global_lock_take();
    stats_merge_heap(h);
    if (h->all_prev != NULL)
        h->all_prev->all_next = h->all_next;
    else
        heap_all = h->all_next;
    if (h->all_next != NULL)
        h->all_next->all_prev = h->all_prev;
    h->pool_next = heap_pool;
    heap_pool = h;
    global_lock_drop();
}
