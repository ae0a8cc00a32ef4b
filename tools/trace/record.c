/*
 * `brisk-trace record`: runs a command with libbrisk-record.so preloaded,
 * waits for it, and lists the recordings it left: FILE for the command's
 * own process and FILE.PID.EXT for each child process (FILE's extension
 * EXT after the child's pid; see recorder.c).
 */
#define _GNU_SOURCE
#include "trace.h"
#include "trace_format.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef BRISK_RECORD_INSTALL_PATH
#define BRISK_RECORD_INSTALL_PATH ""
#endif

/* Where the recorder is: $BRISK_RECORD_LIB, next to this executable (the
 * build tree), ../lib/brisk/ from it, or the configured install path. */
static int find_recorder(char *buf, size_t size)
{
    const char *env = getenv("BRISK_RECORD_LIB");
    if (env != NULL && *env != '\0') {
        if (access(env, R_OK) != 0) {
            fprintf(stderr, "brisk-trace record: BRISK_RECORD_LIB=%s: %s\n", env,
                    strerror(errno));
            return -1;
        }
        if (realpath(env, buf) == NULL)
            snprintf(buf, size, "%s", env);
        return 0;
    }
    char dir[3800];
    os_executable_dir(dir, sizeof dir);
    const char *candidates[3] = {"%s/libbrisk-record.so", "%s/../lib/brisk/libbrisk-record.so",
                                 NULL};
    for (int i = 0; candidates[i] != NULL && dir[0] != '\0'; i++) {
        char path[4096];
        snprintf(path, sizeof path, candidates[i], dir);
        if (access(path, R_OK) == 0) {
            if (realpath(path, buf) == NULL)
                snprintf(buf, size, "%s", path);
            return 0;
        }
    }
    if (BRISK_RECORD_INSTALL_PATH[0] != '\0' && access(BRISK_RECORD_INSTALL_PATH, R_OK) == 0) {
        snprintf(buf, size, "%s", BRISK_RECORD_INSTALL_PATH);
        return 0;
    }
    fprintf(stderr, "brisk-trace record: cannot find libbrisk-record.so (looked next to "
                    "brisk-trace in %s, in ../lib/brisk/ from there%s%s); set BRISK_RECORD_LIB\n",
            dir[0] ? dir : "(unknown)", BRISK_RECORD_INSTALL_PATH[0] ? " and at " : "",
            BRISK_RECORD_INSTALL_PATH);
    return -1;
}

/* Packs the raw recording at path in place (pack.c), unless `raw`, and
 * gives its event and stack counts. -1 (with a message printed) when it is
 * no complete recording. */
static int finish_recording(const char *path, int raw, unsigned long long *events,
                            unsigned long long *stacks)
{
    char err[8600], temp[4200];
    size_t len, counts[2] = {0, 0};
    /* Mapped rather than read: a raw recording runs to tens of MB, which
     * reading copies twice (the kernel's copy, then the buffer's growth);
     * packing reads it once in each of two passes. */
    int mapped = 0;
    unsigned char *data = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            data = m;
            len = (size_t)st.st_size;
            mapped = 1;
            madvise(m, len, MADV_SEQUENTIAL);
        }
    }
    if (fd >= 0)
        close(fd);
    if (data == NULL)
        data = trace_read_file(path, &len, err, sizeof err);
    if (data == NULL) {
        fprintf(stderr, "brisk-trace record: %s\n", err);
        return -1;
    }
    snprintf(temp, sizeof temp, "%s.pack", path);
    FILE *f = raw ? NULL : fopen(temp, "wb");
    int rc = f == NULL ? 1 : recording_pack_raw(f, path, data, len, counts, err, sizeof err);
    if (rc == 1 && f == NULL) {
        /* --raw: the end record has the counts. */
        rc = recording_counts(path, data, len, counts, err, sizeof err);
    } else if (rc == 1) {
        /* Steps out of order (a damaged file): load it whole, which
         * orders them or says what is wrong. */
        recording r;
        if (recording_parse(path, data, len, &r, err, sizeof err) != 0) {
            rc = -1;
        } else {
            counts[0] = r.num_events;
            counts[1] = r.num_stacks ? r.num_stacks - 1 : 0;
            rc = f == NULL ? 0 : recording_pack(f, &r, err, sizeof err);
            recording_free(&r);
        }
    }
    if (mapped)
        munmap(data, len);
    else
        free(data);
    if (f != NULL && fclose(f) != 0 && rc == 0) {
        snprintf(err, sizeof err, "%s: %s", temp, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && f != NULL && rename(temp, path) != 0) {
        snprintf(err, sizeof err, "rename %s: %s", temp, strerror(errno));
        rc = -1;
    }
    if (f != NULL && rc != 0)
        unlink(temp);
    if (rc != 0) {
        fprintf(stderr, "brisk-trace record: %s\n", err);
        return -1;
    }
    *events = counts[0];
    *stacks = counts[1];
    return 0;
}

/* The length of the stem of a file name: up to its extension. */
static size_t stem_length(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot != NULL && dot != name ? (size_t)(dot - name) : strlen(name);
}

static int is_digits(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Whether the file at path is a raw recording that started at or after
 * started_ns (the monotonic clock): one this run's processes wrote, not
 * one an earlier run left (packed by then, or raw and older). */
static int recorded_since(const char *path, uint64_t started_ns)
{
    unsigned char head[TF_HEADER_BYTES];
    size_t got = trace_read_head(path, head, sizeof head);
    return got == sizeof head && recording_is_binary(head, got) &&
           tf_get_u64(head + TF_HEADER_START_NS_AT) >= started_ns;
}

/* Prints the recordings children left: files named STEM.PID.EXT next to
 * the main one, written since `started` (file times, a first filter: they
 * are coarse) by processes that started since started_ns. */
static void list_child_traces(const char *out, const struct timespec *started,
                              uint64_t started_ns, int raw)
{
    char dir[4096], stem[4096], ext[4096];
    const char *slash = strrchr(out, '/');
    if (slash != NULL) {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - out), out);
        if (dir[0] == '\0')
            snprintf(dir, sizeof dir, "/");
    } else {
        snprintf(dir, sizeof dir, ".");
    }
    const char *base = slash ? slash + 1 : out;
    size_t stem_len = stem_length(base);
    snprintf(stem, sizeof stem, "%.*s", (int)stem_len, base);
    snprintf(ext, sizeof ext, "%s", base + stem_len);
    size_t ext_len = strlen(ext);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        /* STEM . digits EXT */
        if (n <= stem_len + 1 + ext_len || strncmp(e->d_name, stem, stem_len) != 0 ||
            e->d_name[stem_len] != '.' || strcmp(e->d_name + n - ext_len, ext) != 0 ||
            !is_digits(e->d_name + stem_len + 1, n - stem_len - 1 - ext_len))
            continue;
        char path[8300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if (st.st_mtim.tv_sec < started->tv_sec ||
            (st.st_mtim.tv_sec == started->tv_sec && st.st_mtim.tv_nsec < started->tv_nsec))
            continue;
        if (!recorded_since(path, started_ns))
            continue;
        unsigned long long events = 0, stacks = 0;
        if (finish_recording(path, raw, &events, &stacks) == 0)
            fprintf(stderr, "brisk-trace: child process %.*s: %s (%llu events, %llu stacks)\n",
                    (int)(n - stem_len - 1 - ext_len), e->d_name + stem_len + 1, path, events,
                    stacks);
    }
    closedir(d);
}

int record_main(int argc, char **argv)
{
    const char *out = NULL;
    int free_stacks = 1, raw = 0;
    int i = 0;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(record_usage_text(), stdout);
            return 0;
        }
        if (strcmp(arg, "-o") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "brisk-trace: record: %s needs a value\n\n%s", arg,
                        record_usage_text());
                return 2;
            }
            out = argv[++i];
            continue;
        }
        if (strcmp(arg, "--no-free-stacks") == 0) {
            free_stacks = 0;
            continue;
        }
        if (strcmp(arg, "--raw") == 0) {
            raw = 1;
            continue;
        }
        if (arg[0] == '-') {
            fprintf(stderr, "brisk-trace: record: unknown option '%s'\n\n%s", arg,
                    record_usage_text());
            return 2;
        }
        break; /* the command, without a "--" */
    }
    if (out == NULL) {
        fprintf(stderr, "brisk-trace: record: no output file (-o FILE.btr)\n\n%s",
                record_usage_text());
        return 2;
    }
    if (i >= argc) {
        fprintf(stderr, "brisk-trace: record: no command given after --\n\n%s",
                record_usage_text());
        return 2;
    }
    char lib[4096];
    if (find_recorder(lib, sizeof lib) != 0)
        return 1;
    /* Check the recording can be created now rather than after the
     * command has run. */
    struct stat out_stat;
    if (stat(out, &out_stat) == 0 && S_ISDIR(out_stat.st_mode)) {
        fprintf(stderr, "brisk-trace record: cannot write %s: it is a directory\n", out);
        return 1;
    }
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "brisk-trace record: cannot write %s: %s\n", out, strerror(errno));
        return 1;
    }
    close(fd);
    /* The recorder needs an absolute path: the command may chdir. */
    char out_abs[4096];
    if (out[0] == '/') {
        snprintf(out_abs, sizeof out_abs, "%s", out);
    } else {
        char cwd[3000];
        if (getcwd(cwd, sizeof cwd) == NULL) {
            fprintf(stderr, "brisk-trace record: getcwd: %s\n", strerror(errno));
            return 1;
        }
        snprintf(out_abs, sizeof out_abs, "%s/%s", cwd, out);
    }

    struct timespec started;
    clock_gettime(CLOCK_REALTIME, &started);
    started.tv_sec -= 1; /* file times are coarser than the clock on some systems */
    uint64_t started_ns = os_monotonic_ns();
    unlink(out);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "brisk-trace record: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        char preload[8300], pid_text[32];
        const char *old = getenv("LD_PRELOAD");
        if (old != NULL && *old != '\0')
            snprintf(preload, sizeof preload, "%s:%s", lib, old);
        else
            snprintf(preload, sizeof preload, "%s", lib);
        snprintf(pid_text, sizeof pid_text, "%ld", (long)getpid());
        setenv("LD_PRELOAD", preload, 1);
        setenv("BRISK_RECORD_OUT", out_abs, 1);
        setenv("BRISK_RECORD_ROOT_PID", pid_text, 1);
        setenv("BRISK_RECORD_FREE_STACKS", free_stacks ? "1" : "0", 1);
        execvp(argv[i], argv + i);
        fprintf(stderr, "brisk-trace record: cannot run '%s': %s\n", argv[i], strerror(errno));
        _exit(127);
    }
    /* The command owns the terminal's signals while it runs. */
    signal(SIGINT, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "brisk-trace record: waitpid: %s\n", strerror(errno));
            return 1;
        }
    }
    int code;
    if (WIFEXITED(status)) {
        code = WEXITSTATUS(status);
    } else {
        code = 128 + WTERMSIG(status);
        fprintf(stderr, "brisk-trace record: %s was killed by signal %d (%s)\n", argv[i],
                WTERMSIG(status), strsignal(WTERMSIG(status)));
    }
    if (WIFEXITED(status) && code == 127 && access(out, F_OK) != 0)
        return code; /* it never ran; the child said why */

    unsigned long long events = 0, stacks = 0;
    if (finish_recording(out, raw, &events, &stacks) == 0)
        fprintf(stderr, "brisk-trace: recorded %llu events (%llu stacks) of %s (pid %ld) in %s\n",
                events, stacks, argv[i], (long)pid, out);
    else
        fprintf(stderr, "brisk-trace: %s (pid %ld) left no complete recording in %s (it may "
                        "have been killed, or replaced itself with exec; see docs/trace.md)\n",
                argv[i], (long)pid, out);
    list_child_traces(out, &started, started_ns, raw);
    return code;
}
