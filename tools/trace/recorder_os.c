/*
 * The recorder's system calls, in one place. The project keeps the
 * library's in src/common/os.c; the recorder is not part of the library
 * (a separate shared object wrapping another allocator inside an arbitrary
 * program, which must not depend on libbrisk), so its own are here.
 */
#define _GNU_SOURCE
#include "recorder.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void *rec_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void rec_unmap(void *p, size_t size) { munmap(p, size); }

void rec_zero_pages(void *p, size_t size) { madvise(p, size, MADV_DONTNEED); }

int rec_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* O_APPEND: the threads write whole chunks, each in one call, and must
 * never overwrite one another's. */
int rec_create(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
}

int rec_close(int fd) { return close(fd); }
long rec_pid(void) { return (long)getpid(); }
uint32_t rec_tid(void) { return (uint32_t)syscall(SYS_gettid); }

uint64_t rec_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

size_t rec_page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

void rec_say(const char *text) { rec_write_all(STDERR_FILENO, text, strlen(text)); }

size_t rec_read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t len = 0;
    while (len + 1 < size) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return len;
}

uint64_t rec_thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return rec_now_ns();
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rec_resident_bytes(void)
{
    /* statm: total and resident size, in pages, first. */
    char text[128];
    if (rec_read_file("/proc/self/statm", text, sizeof text) == 0)
        return 0;
    const char *p = text;
    while (*p >= '0' && *p <= '9')
        p++;
    uint64_t pages = 0;
    for (p++; *p >= '0' && *p <= '9'; p++)
        pages = pages * 10 + (uint64_t)(*p - '0');
    return pages * rec_page_size();
}

void rec_yield(void) { sched_yield(); }
