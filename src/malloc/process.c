/*
 * The process allocator's start-up and process-wide state: the global
 * lock, the process secret, the metadata guard's size, and what fork and
 * exit need.
 *
 * Start-up happens at the first allocation, possibly before main and from
 * inside the C library. Nothing on this path may call malloc: options are
 * read by walking environ, randomness comes from getrandom, and the
 * pthread calls used (key_create, setspecific on an early key, atfork)
 * work on static tables in glibc.
 */
#include "malloc/internal.h"

pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
uintptr_t process_secret;
size_t meta_guard_bytes;

enum { INIT_NONE, INIT_RUNNING, INIT_DONE };
static int init_state;

void global_lock_take(void)
{
    pthread_mutex_lock(&global_lock);
}

void global_lock_drop(void)
{
    pthread_mutex_unlock(&global_lock);
}

/* The profile's lock first: a sample never takes the global lock while
 * holding it, so the order cannot deadlock. */
static void fork_prepare(void)
{
    if (harden_flags & PROFILE_ON)
        profile_fork_prepare();
    global_lock_take();
}

static void fork_parent(void)
{
    global_lock_drop();
    if (harden_flags & PROFILE_ON)
        profile_fork_release();
}

/* The child has only the thread that forked; the lock it holds from
 * fork_prepare is released so the child can allocate. The segments of
 * threads that do not exist in the child are abandoned, so the child's
 * threads reuse them (thread_heap_fork_child); their blocks can still be
 * freed. (The handlers are installed at the end of start-up, so
 * start-up is done when they run.) */
static void fork_child(void)
{
    thread_heap_fork_child();
    if (harden_flags & HARDEN_DELAY)
        harden_fork_child(); /* or parent and child would reuse in the same order */
    global_lock_drop();
    if (harden_flags & PROFILE_ON)
        profile_fork_release();
}

static void process_exit_print_stats(void) __attribute__((destructor));
static void process_exit_print_stats(void)
{
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == INIT_DONE &&
        malloc_options.stats)
        stats_print();
}

static void process_init(void)
{
    options_read();
    profile_init();
    /* The metadata guard (malloc/types.h) can be protected only in whole
     * pages. With a page size that does not divide META_GUARD (64 KiB
     * pages), protecting it would take the header's page too: it is left
     * accessible instead. The layout does not change, only the protection
     * from overflows below the region's base is lost; the header checks
     * (large.c) still apply. */
    if (META_GUARD % os_page_size() == 0)
        meta_guard_bytes = META_GUARD;
    else
        verbose_note("page size does not divide META_GUARD: metadata guard off", os_page_size());
    segmap_init();
    process_secret = (uintptr_t)random_secret(&init_state);
    thread_heap_key_init();
    __atomic_store_n(&init_state, INIT_DONE, __ATOMIC_RELEASE);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void process_init_once(void)
{
    if (brisk_likely(__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == INIT_DONE))
        return;
    int expected = INIT_NONE;
    if (__atomic_compare_exchange_n(&init_state, &expected, INIT_RUNNING, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        process_init();
        return;
    }
    while (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != INIT_DONE)
        ;
}
