/*
 * What the misuse-case programs (malloc_cases.c, heap_cases.c) share: the
 * conventions security_expect relies on, and the case table.
 *
 *   - just before the misuse a case prints "target <pointer>" on stdout;
 *     the driver checks brisk's report names that same pointer;
 *   - a misuse that goes unnoticed falls through to unnoticed(), which
 *     says so and exits 3, so the driver reports a clear failure;
 *   - a case that must run clean checks its rule itself and calls broken()
 *     (exit 4) when it did not hold.
 *
 * The compiler must not see through the misuse (it may warn, or delete a
 * "dead" store into freed memory): pointers go through hide(), and the
 * files are built with -fno-builtin.
 */
#ifndef BRISK_TESTS_SECURITY_CASES_H
#define BRISK_TESTS_SECURITY_CASES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An opaque identity: the compiler cannot know what comes back. */
static inline void *hide(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

/* The misuse's write of one byte: a byte that differs from the one
 * there. A constant would equal a byte of a secret-derived word (a
 * canary, a free mark, a link) one time in 256, and the write would
 * change nothing for a check to find. */
static inline void scribble(volatile char *at)
{
    *at = (char)~*at;
}

static inline void target(const void *p)
{
    printf("target %p\n", p);
    fflush(stdout);
}

static inline _Noreturn void unnoticed(const char *what)
{
    printf("not detected: %s\n", what);
    fflush(stdout);
    exit(3);
}

static inline _Noreturn void broken(const char *what)
{
    printf("rule broken: %s\n", what);
    fflush(stdout);
    exit(4);
}

/* malloc(size), or the set-up failure (exit 5) when it returns NULL. */
static inline void *must_malloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL) {
        printf("set-up failed: malloc(%zu) returned NULL\n", size);
        exit(5);
    }
    return p;
}

/* True when every page of [p, p + len) can be read: write() into a pipe
 * fails with EFAULT instead of faulting when the source is unreadable. */
static inline int readable(const void *p, size_t len)
{
    int fds[2];
    if (pipe(fds) != 0)
        exit(5);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const char *start = (const char *)((uintptr_t)p & ~(uintptr_t)(page - 1));
    int ok = 1;
    for (const char *at = start; at < (const char *)p + len && ok; at += page) {
        char byte;
        if (write(fds[1], at, 1) != 1 || read(fds[0], &byte, 1) != 1)
            ok = 0;
    }
    close(fds[0]);
    close(fds[1]);
    return ok;
}

/* Wipe cases fill a block with OLD_BYTE before freeing it, then look for
 * it in what they get back. */
#define OLD_BYTE 0xA5

/* True when [p, p + n) holds four old bytes in a row: what a previous
 * owner wrote. A single 0xA5 may occur by chance in an encoded link. */
static inline int shows_old_bytes(const unsigned char *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        run = p[i] == OLD_BYTE ? run + 1 : 0;
        if (run >= 4)
            return 1;
    }
    return 0;
}

typedef struct security_case {
    const char *name;
    void (*run)(void);
} security_case;

#define CASE(name) {#name, case_##name}

/* Runs the case named `name` from cases[0..count) and returns 0 (the case
 * exits by itself when it ends otherwise), or lists every name for
 * "--list"; 2 for an unknown name. */
static inline int run_case(const security_case *cases, size_t count, const char *program,
                           const char *name)
{
    if (strcmp(name, "--list") == 0) {
        for (size_t i = 0; i < count; i++)
            puts(cases[i].name);
        return 0;
    }
    for (size_t i = 0; i < count; i++) {
        if (strcmp(name, cases[i].name) == 0) {
            cases[i].run();
            return 0;
        }
    }
    fprintf(stderr, "%s: no case named %s\n", program, name);
    return 2;
}

/* main() of a case program that takes one argument, the case's name (or
 * "--list"). */
static inline int case_main(const security_case *cases, size_t count, int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CASE (or --list)\n", argv[0]);
        return 2;
    }
    return run_case(cases, count, argv[0], argv[1]);
}

#endif /* BRISK_TESTS_SECURITY_CASES_H */
