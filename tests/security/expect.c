/*
 * security_expect: runs one misuse case in a child process and checks
 * exactly how it ended. ctest runs one security_expect per case (see
 * tests/security/CMakeLists.txt), so each case passes or fails on its own.
 *
 *   security_expect --ending abort|fault|exit [--message REGEX]
 *                   [--env NAME=VALUE]... -- PROGRAM [ARGS...]
 *
 * The environment given with --env (LD_PRELOAD=libbrisk.so,
 * BRISK_OPTIONS=...) is set only in the child, so the driver itself keeps
 * the system allocator and stays trustworthy when brisk is broken.
 *
 * What each ending requires:
 *
 *   abort  the child died of SIGABRT, and its stderr holds exactly one
 *          line of the form "brisk: <message> (pointer 0x<hex>)" whose
 *          message matches REGEX (POSIX extended, e.g. "double free"). If
 *          the child printed "target 0x<hex>" on stdout before the misuse,
 *          the reported pointer must be that address: the report must name
 *          the pointer the program passed, not some other one.
 *   fault  the child died of SIGSEGV or SIGBUS after printing "target" (so
 *          the fault came from the out-of-bounds access, not from set-up),
 *          and brisk printed nothing.
 *   exit   the child exited with status 0 and brisk printed nothing; the
 *          case itself checks what it saw (no old bytes, no immediate
 *          reuse) and exits non-zero when a rule was broken.
 *
 * Whatever the ending, a child that exits with status 77 could not set
 * the case up on this system (it says why): security_expect exits 77 too,
 * which ctest reports as skipped where the test sets SKIP_RETURN_CODE.
 *
 * Every child gets an alarm, so a case that hangs fails instead of
 * stalling the suite, and no core file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_SECONDS 60
#define MAX_ENV 16
#define OUTPUT_MAX 65536

typedef struct captured {
    char data[OUTPUT_MAX];
    size_t used;
} captured;

static void usage(void)
{
    fprintf(stderr, "usage: security_expect --ending abort|fault|exit "
                    "[--message REGEX] [--env NAME=VALUE]... -- PROGRAM [ARGS...]\n");
    exit(2);
}

/* Reads both pipes until the child closes them, keeping at most
 * OUTPUT_MAX - 1 bytes of each and draining the rest. */
static void capture_both(int out_fd, int err_fd, captured *out, captured *err)
{
    int fds[2] = {out_fd, err_fd};
    captured *bufs[2] = {out, err};
    int open_count = 2;
    while (open_count > 0) {
        fd_set set;
        FD_ZERO(&set);
        int max_fd = -1;
        for (int i = 0; i < 2; i++) {
            if (fds[i] >= 0) {
                FD_SET(fds[i], &set);
                if (fds[i] > max_fd)
                    max_fd = fds[i];
            }
        }
        if (select(max_fd + 1, &set, NULL, NULL, NULL) < 0) {
            if (errno == EINTR)
                continue;
            perror("select");
            exit(2);
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i] < 0 || !FD_ISSET(fds[i], &set))
                continue;
            char chunk[4096];
            ssize_t n = read(fds[i], chunk, sizeof chunk);
            if (n <= 0) {
                close(fds[i]);
                fds[i] = -1;
                open_count--;
                continue;
            }
            size_t room = OUTPUT_MAX - 1 - bufs[i]->used;
            size_t take = (size_t)n < room ? (size_t)n : room;
            memcpy(bufs[i]->data + bufs[i]->used, chunk, take);
            bufs[i]->used += take;
        }
    }
    out->data[out->used] = '\0';
    err->data[err->used] = '\0';
}

/* Finds "target 0x<hex>" on a line of its own in the child's stdout. */
static int find_target(const char *text, uintptr_t *target)
{
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, "target 0x", 9) == 0) {
            *target = (uintptr_t)strtoull(line + 7, NULL, 16);
            return 1;
        }
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return 0;
}

/* Counts the lines starting with "brisk: " and returns the first. */
static int brisk_lines(const char *text, const char **first, size_t *first_len)
{
    int count = 0;
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        if (strncmp(line, "brisk: ", 7) == 0) {
            if (count == 0) {
                *first = line;
                *first_len = len;
            }
            count++;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return count;
}

static const char *describe(int status, char *buf, size_t size)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, size, "ended with wait status 0x%x", status);
    return buf;
}

int main(int argc, char **argv)
{
    const char *ending = NULL;
    const char *message = NULL;
    char *env[MAX_ENV];
    int env_count = 0;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--ending") == 0)
            ending = argv[++i];
        else if (strcmp(argv[i], "--message") == 0)
            message = argv[++i];
        else if (strcmp(argv[i], "--env") == 0 && env_count < MAX_ENV)
            env[env_count++] = argv[++i];
        else
            usage();
    }
    if (ending == NULL || i >= argc)
        usage();
    int want_abort = strcmp(ending, "abort") == 0;
    int want_fault = strcmp(ending, "fault") == 0;
    int want_exit = strcmp(ending, "exit") == 0;
    if (!want_abort && !want_fault && !want_exit)
        usage();
    if (want_abort && message == NULL) {
        fprintf(stderr, "security_expect: --ending abort needs --message\n");
        return 2;
    }
    regex_t pattern;
    if (message != NULL && regcomp(&pattern, message, REG_EXTENDED | REG_NOSUB) != 0) {
        fprintf(stderr, "security_expect: bad regular expression \"%s\"\n", message);
        return 2;
    }

    int out_pipe[2], err_pipe[2];
    if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) {
        perror("pipe");
        return 2;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        dup2(out_pipe[1], STDOUT_FILENO);
        dup2(err_pipe[1], STDERR_FILENO);
        close(out_pipe[0]);
        close(out_pipe[1]);
        close(err_pipe[0]);
        close(err_pipe[1]);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        signal(SIGABRT, SIG_DFL);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        for (int e = 0; e < env_count; e++)
            putenv(env[e]);
        alarm(CHILD_SECONDS);
        execv(argv[i], argv + i);
        fprintf(stderr, "security_expect: cannot run %s: %s\n", argv[i], strerror(errno));
        _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    static captured out, err;
    capture_both(out_pipe[0], err_pipe[0], &out, &err);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return 2;
        }
    }

    char how[128];
    describe(status, how, sizeof how);
    const char *line = NULL;
    size_t line_len = 0;
    int lines = brisk_lines(err.data, &line, &line_len);
    uintptr_t target = 0;
    int has_target = find_target(out.data, &target);
    int ok = 1;
    char why[2048] = "";

    if (want_abort) {
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) {
            ok = 0;
            snprintf(why, sizeof why, "expected an abort, but the case %s", how);
        } else if (lines != 1) {
            ok = 0;
            snprintf(why, sizeof why, "expected exactly one \"brisk: \" line on stderr, found %d", lines);
        } else {
            /* "brisk: <message> (pointer 0x<hex>)" */
            char copy[1024];
            size_t n = line_len < sizeof copy - 1 ? line_len : sizeof copy - 1;
            memcpy(copy, line, n);
            copy[n] = '\0';
            char *open = strstr(copy, " (pointer 0x");
            size_t copy_len = strlen(copy);
            if (open == NULL || copy[copy_len - 1] != ')') {
                ok = 0;
                snprintf(why, sizeof why, "the report does not end in \"(pointer 0x...)\"");
            } else {
                uintptr_t reported = (uintptr_t)strtoull(open + 10, NULL, 16);
                *open = '\0';
                const char *what = copy + 7;
                if (regexec(&pattern, what, 0, NULL, 0) != 0) {
                    ok = 0;
                    snprintf(why, sizeof why, "message \"%s\" does not match /%s/", what, message);
                } else if (has_target && reported != target) {
                    ok = 0;
                    snprintf(why, sizeof why,
                             "reported pointer 0x%" PRIxPTR " is not the misused 0x%" PRIxPTR,
                             reported, target);
                }
            }
        }
    } else if (want_fault) {
        int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        if (sig != SIGSEGV && sig != SIGBUS) {
            ok = 0;
            snprintf(why, sizeof why, "expected a fault (SIGSEGV or SIGBUS), but the case %s", how);
        } else if (!has_target) {
            ok = 0;
            snprintf(why, sizeof why, "the case faulted before reaching the out-of-bounds access");
        } else if (lines != 0) {
            ok = 0;
            snprintf(why, sizeof why, "brisk reported an error before the fault");
        }
    } else {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            ok = 0;
            snprintf(why, sizeof why, "expected a clean exit, but the case %s", how);
        } else if (lines != 0) {
            ok = 0;
            snprintf(why, sizeof why, "brisk reported an error in a case that must run clean");
        }
    }

    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        printf("SKIPPED: the case cannot be set up here\n--- stdout ---\n%s--------------\n", out.data);
        return 77;
    }

    printf("case: ");
    for (int a = i; a < argc; a++)
        printf("%s ", argv[a]);
    for (int e = 0; e < env_count; e++)
        printf("[%s] ", env[e]);
    printf("\nexpected: %s%s%s%s\nresult: %s\n", ending, message ? " /" : "",
           message ? message : "", message ? "/" : "", how);
    printf("--- stdout ---\n%s--- stderr ---\n%s--------------\n", out.data, err.data);
    if (!ok) {
        printf("FAIL: %s\n", why);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
