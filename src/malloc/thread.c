/*
 * Thread heaps: one per thread, made at its first allocation, and its
 * exit (the thread heap's segments are abandoned for other threads to
 * adopt). Process start-up is process.c's.
 *
 * Thread heaps are carved from memory mapped here (never from malloc),
 * and reached through one initial-exec thread-local pointer, so the
 * fast paths load it with a single instruction and never allocate TLS.
 * Each chunk of them lies between two guards (os_map_guarded): a heap's
 * current pages are where malloc pops from, so an overflow from a mapping
 * next to a chunk must fault before it can rewrite them. The hardened
 * level's quarantines are carved from the same chunks (metadata_carve).
 */
#include "malloc/internal.h"

page empty_page; /* no free blocks: a fresh thread heap's malloc falls through to
                    malloc_generic, which installs a real page */
_Thread_local thread_heap *tls_thread_heap __attribute__((tls_model("initial-exec")));

static pthread_key_t thread_heap_key;
static thread_heap *thread_heap_pool; /* thread heaps of exited threads, for reuse */
static thread_heap *thread_heap_all;  /* every live thread heap */
static char *thread_heap_chunk_next, *thread_heap_chunk_end;
static uint64_t thread_heaps_exited;

uint64_t thread_heap_exited_count(void)
{
    return thread_heaps_exited;
}

/* global_lock held: h leaves the list of live heaps for the pool. */
static void thread_heap_retire(thread_heap *h)
{
    stats_merge_thread_heap(h);
    if (h->all_prev != NULL)
        h->all_prev->all_next = h->all_next;
    else
        thread_heap_all = h->all_next;
    if (h->all_next != NULL)
        h->all_next->all_prev = h->all_prev;
    h->pool_next = thread_heap_pool;
    thread_heap_pool = h;
    thread_heaps_exited++;
}

thread_heap *thread_heap_list_first(void)
{
    return thread_heap_all;
}

static void thread_heap_exit(void *arg);

void thread_heap_key_init(void)
{
    pthread_key_create(&thread_heap_key, thread_heap_exit);
}

void *metadata_carve(size_t size)
{
    size_t need = (size + 63) & ~(size_t)63;
    if (thread_heap_chunk_next == NULL || (size_t)(thread_heap_chunk_end - thread_heap_chunk_next) < need) {
        size_t chunk = (size_t)64 << 10;
        char *mem = os_map_guarded(chunk, metadata_guard_size());
        if (mem == NULL)
            return NULL;
        thread_heap_chunk_next = mem;
        thread_heap_chunk_end = mem + chunk;
    }
    void *p = thread_heap_chunk_next;
    thread_heap_chunk_next += need;
    return p;
}

static thread_heap *thread_heap_new(void)
{
    /* Page keys and free marks come from h->rng, and a free mark is in
     * every free block's second word: the generator is seeded from the
     * kernel for each heap, not from the process secret, since its mix
     * can be inverted and one mark read after free would give the secret
     * (and with it every canary) back. Drawn before the lock: a system
     * call. */
    uint64_t seed = random_secret(&seed);
    thread_heap *h;
    global_lock_take();
    h = thread_heap_pool;
    if (h != NULL) {
        thread_heap_pool = h->pool_next;
    } else {
        h = metadata_carve(sizeof(thread_heap));
        if (h == NULL) {
            global_lock_drop();
            return NULL;
        }
    }
    memset(h, 0, sizeof *h);
    h->rng = seed;
    for (unsigned i = 0; i < CLASS_COUNT; i++)
        thread_heap_set_direct(h, i, &empty_page);
    h->all_next = thread_heap_all;
    if (thread_heap_all != NULL)
        thread_heap_all->all_prev = h;
    thread_heap_all = h;
    global_lock_drop();
    return h;
}

thread_heap *thread_heap_init_slow(void)
{
    process_init_once();
    if (tls_thread_heap != NULL)
        return tls_thread_heap;
    thread_heap *h = thread_heap_new();
    if (h == NULL)
        return NULL;
    tls_thread_heap = h;
    pthread_setspecific(thread_heap_key, h);
    return h;
}

/* Runs as the thread's key destructor: pages are collected, empty ones go
 * back, and segments that still hold live blocks are abandoned for other
 * threads to adopt (their blocks may be freed by anyone, any time). A
 * later allocation by another destructor of this thread makes a new thread heap,
 * which pthread destructs again. */
static void thread_heap_exit(void *arg)
{
    thread_heap *h = arg;
    if (h == NULL)
        return;
    if (harden_flags & HARDEN_DELAY)
        harden_thread_exit(); /* quarantined blocks go back while h exists */
    tls_thread_heap = NULL;
    thread_heap_abandon_segments(h);
    global_lock_take();
    thread_heap_retire(h);
    global_lock_drop();
}

/* The forked child has one thread, the one that forked (its heap, if it
 * has one, is intact: it was inside fork). Every other live heap belonged
 * to a thread the fork left behind: its segments are abandoned for the
 * child's threads to adopt (segment_fork_child: their pages are rebuilt
 * first, since the lost thread may have been changing them), and the heap
 * goes back to the pool. Its lists are not read: they may be
 * half-written. */
void thread_heap_fork_child(void)
{
    thread_heap *me = tls_thread_heap;
    segment_fork_child(me);
    thread_heap *h = thread_heap_all;
    while (h != NULL) {
        thread_heap *next = h->all_next;
        if (h != me)
            thread_heap_retire(h);
        h = next;
    }
}
