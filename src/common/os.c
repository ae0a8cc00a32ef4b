/*
 * The OS layer: every system call brisk makes goes through here, so that
 * porting brisk or auditing what it asks of the kernel means reading one
 * file.
 */
#define _GNU_SOURCE
#include "common/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

size_t os_page_size(void)
{
    static size_t cached;
    size_t size = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (brisk_unlikely(size == 0)) {
        long value = sysconf(_SC_PAGESIZE);
        size = value > 0 ? (size_t)value : 4096;
        __atomic_store_n(&cached, size, __ATOMIC_RELAXED);
    }
    return size;
}

void *os_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *os_map_aligned(size_t size, size_t alignment)
{
    if (alignment <= os_page_size())
        return os_map_accounted(size);
    /* Over-map by the alignment, then give back the misaligned head and
     * the unused tail. */
    size_t span;
    if (size > SIZE_MAX - alignment) {
        errno = ENOMEM;
        return NULL;
    }
    span = size + alignment;
    char *raw = os_map_accounted(span);
    if (raw == NULL)
        return NULL;
    char *start = (char *)align_up_ptr((uintptr_t)raw, alignment);
    size_t head = (size_t)(start - raw);
    size_t tail = span - head - size;
    if (head != 0)
        munmap(raw, head);
    if (tail != 0)
        munmap(start + size, tail);
    return start;
}

void *os_map_guarded(size_t size, size_t guard)
{
    if (size > SIZE_MAX - 2 * guard || guard > SIZE_MAX / 4) {
        errno = ENOMEM;
        return NULL;
    }
    /* Reserved inaccessible whole, then the middle opened: two calls,
     * where mapping it accessible and closing both guards would be three. */
    char *p = mmap(NULL, size + 2 * guard, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (mprotect(p + guard, size, PROT_READ | PROT_WRITE) != 0) {
        int saved = errno;
        munmap(p, size + 2 * guard);
        errno = saved;
        return NULL;
    }
    return p + guard;
}

int os_unmap(void *addr, size_t size)
{
    return munmap(addr, size);
}

int os_decommit(void *addr, size_t size)
{
    return madvise(addr, size, MADV_DONTNEED);
}

int os_resident(void *addr, size_t size, unsigned char *vec)
{
    return mincore(addr, size, vec);
}

int os_swap_configured(void)
{
    struct sysinfo info;
    if (sysinfo(&info) != 0)
        return -1;
    return info.totalswap != 0;
}

int os_release_keep_range(void *addr, size_t size)
{
    void *p = mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    return p == MAP_FAILED ? -1 : 0;
}

int os_protect_none(void *addr, size_t size)
{
    return mprotect(addr, size, PROT_NONE);
}

int os_protect_rw(void *addr, size_t size)
{
    return mprotect(addr, size, PROT_READ | PROT_WRITE);
}

void os_write_fd(int fd, const char *buf, size_t len)
{
    int saved = errno;
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        buf += n;
        len -= (size_t)n;
    }
    errno = saved;
}

void os_write_stderr(const char *buf, size_t len)
{
    os_write_fd(STDERR_FILENO, buf, len);
}

int os_dup_stderr(void)
{
    int saved = errno;
    int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    errno = saved;
    return fd;
}

_Noreturn void os_abort(void)
{
    abort();
}

/* ---- wrappers for the process allocator (malloc) -------------------- */

#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

/* Unlike os_map, without MAP_NORESERVE: memory the program will use is
 * charged to the commit limit, so an impossible request fails here (with
 * ENOMEM) instead of succeeding and being killed on first touch. */
void *os_map_accounted(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

uint64_t os_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Fills buf with random bytes from the kernel if it can (never blocks);
 * returns false when it could not, and the caller mixes its own. */
bool os_random(void *buf, size_t len)
{
    ssize_t n = getrandom(buf, len, GRND_NONBLOCK);
    return n == (ssize_t)len;
}

/* The process's peak resident set size in bytes. */
size_t os_peak_rss(void)
{
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0)
        return 0;
    return (size_t)usage.ru_maxrss * 1024u;
}

/* Grows or shrinks the mapping [addr, addr + old_size) in place (never
 * moving it). Returns 0, or -1 when the address space after it is taken. */
int os_remap_in_place(void *addr, size_t old_size, size_t new_size)
{
    void *p = mremap(addr, old_size, new_size, 0);
    return p == MAP_FAILED ? -1 : 0;
}

/* ---- wrappers for the sampled profiler (malloc/profile.c) ----------- */

#include <dlfcn.h>
#include <execinfo.h>
#include <string.h>

int os_create_file(const char *path)
{
    int fd;
    do
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

int os_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int os_close(int fd)
{
    /* Linux closes the descriptor even when close reports EINTR: no retry. */
    return close(fd) == 0 || errno == EINTR ? 0 : errno;
}

size_t os_read_file(const char *path, char *buf, size_t size)
{
    int saved = errno;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return 0;
    }
    size_t len = 0;
    while (len < size) {
        ssize_t n = read(fd, buf + len, size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    errno = saved;
    return len;
}

uint64_t os_pid(void)
{
    return (uint64_t)getpid();
}

uint64_t os_now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool os_signal_install_if_default(int sig, void (*handler)(int))
{
    struct sigaction old;
    if (sigaction(sig, NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
        return false;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    return sigaction(sig, &action, NULL) == 0;
}

void *os_library_symbol(const char *library, const char *symbol)
{
    int saved = errno;
    void *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    void *found = handle != NULL ? dlsym(handle, symbol) : NULL;
    errno = saved;
    return found;
}

int os_backtrace(void **ips, int max)
{
    return backtrace(ips, max);
}
