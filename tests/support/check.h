/*
 * A minimal check harness for brisk's tests. Allocator tests cannot lean
 * on a framework that allocates through the allocator under test, so this
 * stays a header of macros over stdio.
 *
 *   CHECK(cond)            records a failure (file:line and the expression)
 *   CHECK_EQ(a, b)         compares two integers and prints both on failure
 *   CHECK_MSG(cond, ...)   with a printf-style explanation
 *   return check_finish("name");   prints "name: N passed, N failed" and
 *                                  returns the exit status for ctest
 *
 *   aligned_to(p, alignment)   whether p is a multiple of alignment
 *
 * run_in_child runs a function in a forked child and reports how it ended
 * (exit status or signal) and what it wrote to stderr, for testing misuse
 * that must abort.
 */
#ifndef BRISK_TESTS_CHECK_H
#define BRISK_TESTS_CHECK_H

#define _GNU_SOURCE
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned long check_passed_count;
static unsigned long check_failed_count;

#define CHECK_MSG(cond, ...)                                                   \
    do {                                                                       \
        if (cond) {                                                            \
            check_passed_count++;                                              \
        } else {                                                               \
            check_failed_count++;                                              \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__,   \
                    #cond);                                                    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

#define CHECK(cond) CHECK_MSG(cond, "false")

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        intmax_t check_a_ = (intmax_t)(a), check_b_ = (intmax_t)(b);           \
        CHECK_MSG(check_a_ == check_b_, "%jd != %jd", check_a_, check_b_);    \
    } while (0)

/* Stops the test at once when cond fails (the rest would only crash). */
#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: required check failed: %s\n", __FILE__,   \
                    __LINE__, #cond);                                          \
            exit(1);                                                           \
        }                                                                      \
        check_passed_count++;                                                  \
    } while (0)

static inline int check_finish(const char *name)
{
    printf("%s: %lu passed, %lu failed\n", name, check_passed_count, check_failed_count);
    if (check_passed_count == 0) {
        printf("%s: no check ran\n", name);
        return 1;
    }
    return check_failed_count == 0 ? 0 : 1;
}

/* Whether p is a multiple of alignment (a power of two). */
static inline int aligned_to(const void *p, size_t alignment)
{
    return ((uintptr_t)p & (alignment - 1)) == 0;
}

/* How a child run ended. */
typedef struct child_result {
    int exited;       /* 1 when it exited normally */
    int exit_code;    /* its exit status, when exited */
    int signal;       /* the signal that ended it, when not exited */
    char output[4096];/* what it wrote to stderr (truncated, NUL-ended) */
} child_result;

/* Runs fn(arg) in a forked child with stderr captured; the child exits 0
 * when fn returns. */
static inline child_result run_in_child(void (*fn)(void *), void *arg)
{
    child_result result;
    memset(&result, 0, sizeof result);
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        /* No core files from the aborts we provoke on purpose. */
        signal(SIGABRT, SIG_DFL);
        fn(arg);
        fflush(NULL);
        _exit(0);
    }
    close(fds[1]);
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fds[0], result.output + used, sizeof(result.output) - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
        if (used == sizeof(result.output) - 1) {
            char sink[256]; /* drain the rest so the child never blocks */
            while (read(fds[0], sink, sizeof sink) > 0)
                ;
            break;
        }
    }
    result.output[used] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) {
        result.exited = 1;
        result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
    }
    return result;
}

/* Checks that a child run died of SIGABRT having printed `expected`. */
#define CHECK_ABORTS_WITH(result, expected)                                    \
    do {                                                                       \
        CHECK_MSG(!(result).exited && (result).signal == SIGABRT,              \
                  "expected an abort, got exited=%d code=%d signal=%d",        \
                  (result).exited, (result).exit_code, (result).signal);       \
        CHECK_MSG(strstr((result).output, (expected)) != NULL,                 \
                  "stderr lacks \"%s\"; it was: \"%s\"", (expected),           \
                  (result).output);                                            \
    } while (0)

#endif /* BRISK_TESTS_CHECK_H */
