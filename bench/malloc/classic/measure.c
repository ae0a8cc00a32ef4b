/*
 * measure: runs one program and reports its wall time, CPU time and peak
 * RSS, for run.py.
 *
 *   measure [-p PRELOAD] [-t SECONDS] -- PROGRAM [ARG...]
 *
 * It forks and executes PROGRAM (with LD_PRELOAD=PRELOAD in its
 * environment alone when -p is given), waits for it, and prints on
 * stderr, after whatever PROGRAM printed there:
 *
 *   measure: status=<exit status, or -signal> wall_seconds=<s>
 *            cpu_seconds=<user + system> maxrss_kib=<peak RSS>
 *
 * (one line). Why a program of its own: Linux counts in a process's peak
 * RSS the resident size of the process it was forked from before the
 * exec, so a child of python3 never reports less than python3's own RSS
 * (about 16 MiB); a child of this small program starts from about 1 MiB,
 * the same under every allocator. -t kills PROGRAM after SECONDS
 * (default 300).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t child;

static void on_alarm(int sig)
{
    (void)sig;
    if (child > 0)
        kill((pid_t)child, SIGKILL);
}

static void usage(void)
{
    fprintf(stderr, "usage: measure [-p PRELOAD] [-t SECONDS] -- PROGRAM [ARG...]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *preload = NULL;
    unsigned seconds = 300;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
            preload = argv[++i];
        } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
            char *end = NULL;
            errno = 0;
            unsigned long v = strtoul(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || v < 1 || v > 86400) {
                fprintf(stderr, "measure: -t must be 1 to 86400 seconds, not \"%s\"\n", argv[i]);
                return 2;
            }
            seconds = (unsigned)v;
        } else {
            usage();
        }
    }
    if (i + 1 >= argc)
        usage();
    char **program = &argv[i + 1];

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "measure: fork failed: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        if (preload != NULL)
            setenv("LD_PRELOAD", preload, 1);
        execv(program[0], program);
        fprintf(stderr, "measure: cannot execute %s: %s\n", program[0], strerror(errno));
        _exit(127);
    }
    child = pid;
    alarm(seconds);
    int status;
    struct rusage usage_child;
    while (wait4(pid, &status, 0, &usage_child) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "measure: wait4 failed: %s\n", strerror(errno));
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    alarm(0);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    double cpu = (double)(usage_child.ru_utime.tv_sec + usage_child.ru_stime.tv_sec) +
                 (double)(usage_child.ru_utime.tv_usec + usage_child.ru_stime.tv_usec) * 1e-6;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? -WTERMSIG(status) : -1;
    fprintf(stderr, "measure: status=%d wall_seconds=%.6f cpu_seconds=%.6f maxrss_kib=%ld\n", code,
            wall, cpu, usage_child.ru_maxrss);
    return 0;
}
