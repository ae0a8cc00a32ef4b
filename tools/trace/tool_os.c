/*
 * The tool's own system calls (the library keeps its in src/os.c; the
 * tool is a separate program and keeps its here, in one place).
 */
#define _GNU_SOURCE
#include "trace.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

double os_seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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
