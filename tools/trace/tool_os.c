/*
 * The tool's own system calls (the library keeps its in src/common/os.c; the
 * tool is a separate program and keeps its here, in one place).
 */
#define _GNU_SOURCE
#include "trace.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

/* The calling thread's CPU time (user and system, so page faults count).
 * Replay is single-threaded, and on a machine shared with other work the
 * wall clock also counts the time other processes held the CPU; this
 * clock does not. Falls back to the monotonic clock where it is missing. */
double os_thread_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t os_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void os_executable_dir(char *buf, size_t size)
{
    buf[0] = '\0';
    if (size < 2)
        return;
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n <= 0) {
        buf[0] = '\0';
        return;
    }
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        buf[0] = '\0';
}
