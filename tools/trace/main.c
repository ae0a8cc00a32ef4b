/*
 * brisk-trace: the command line. Subcommands:
 *
 *   record   run a program with libbrisk-record.so preloaded (record.c)
 *   report   the peak, allocations, temporaries and leaks by call site
 *            (report_sites.c)
 *   convert  recordings to malloc-lab text traces and back (convert.c)
 *   replay   replay traces through brisk's region heap and the system
 *            malloc: check, time, report, draw (replay.c, report.c, svg.c,
 *            html.c)
 *
 * Exit status: 0 success; 1 a trace was malformed, a replay check failed
 * or an output could not be written; 2 a usage error.
 */
#define _GNU_SOURCE
#include "sites.h"
#include "trace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char main_usage[] =
    "brisk-trace: record any program's allocations, replay them through brisk's\n"
    "region heap and the system malloc, and see the heap.\n"
    "\n"
    "usage:\n"
    "  brisk-trace record -o FILE.btr [--no-free-stacks] [--raw] -- COMMAND [ARGS...]\n"
    "  brisk-trace report [--json] [--top N] [--frames N] FILE.btr\n"
    "  brisk-trace convert [--to text | recording | raw] IN OUT\n"
    "  brisk-trace replay [options] TRACE...\n"
    "  brisk-trace help [record | report | convert | replay]\n"
    "\n"
    "record writes a recording (calls, stacks, threads, times); replay also reads\n"
    "CS:APP malloc-lab text traces. See docs/trace.md.\n";

static const char replay_usage[] =
    "usage: brisk-trace replay [options] TRACE...\n"
    "\n"
    "Replays each trace (a malloc-lab text file, or a recording) through brisk's\n"
    "region heap and through the system malloc.\n"
    "A checked pass first verifies every block (contents kept, alignment, no\n"
    "overlap, brisk_heap_check at intervals); timed passes without checks follow.\n"
    "Prints per trace: ops, peak live payload, brisk's high water, utilization\n"
    "(peak live payload / high water) and ops/s of both allocators (medians over\n"
    "the repetitions, with half their range as +-%, timed on the thread's CPU\n"
    "clock), then a summary row.\n"
    "\n"
    "options:\n"
    "  --capacity SIZE   brisk heap capacity, bytes or with K, M, G (default 256M)\n"
    "  --reps N          timed repetitions per allocator (default 5; 0: checked\n"
    "                    pass only, no timing)\n"
    "  --check-every N   run brisk_heap_check every N ops (default: ops / 64)\n"
    "  --defer-merge     create brisk's heaps with BRISK_HEAP_DEFER_MERGE\n"
    "  --hardened        create brisk's heaps with BRISK_HEAP_HARDENED\n"
    "  --csv             print CSV instead of the table\n"
    "  --json            print JSON instead of the table\n"
    "  --svg FILE        write the heap map of one trace at peak use as SVG\n"
    "  --map NAME        the trace --svg draws, by name or path (default: the first)\n"
    "  --html FILE       write an interactive page with every trace's snapshots\n"
    "                    (and, for a recording, live bytes by call site over time,\n"
    "                    a flame graph of any moment, and the leaks)\n"
    "  --snapshots N     snapshots per trace for --html (default 40)\n"
    "  -h, --help        show this help\n";

static const char record_usage[] =
    "usage: brisk-trace record -o FILE.btr [--no-free-stacks] [--raw] -- COMMAND [ARGS...]\n"
    "\n"
    "Runs COMMAND with libbrisk-record.so preloaded and records every malloc,\n"
    "calloc, realloc, reallocarray, free, free_sized, free_aligned_sized,\n"
    "posix_memalign, aligned_alloc, memalign, valloc and pvalloc it makes (C++\n"
    "new and delete through them) with its call stack, thread and time, in\n"
    "FILE.btr (the recording format). Each child process (fork, or a program it\n"
    "runs) gets its own file, FILE.PID.btr (the pid before the extension); the\n"
    "tool lists them when the command ends. Allocations made before the\n"
    "recorder starts are not recorded, nor are frees and reallocs of them. The\n"
    "exit status is the command's.\n"
    "\n"
    "options:\n"
    "  -o FILE            the recording of the command's own process (required)\n"
    "  --no-free-stacks   record frees without their call stacks (cheaper)\n"
    "  --raw              keep the recorder's stream as it is, unpacked (bigger)\n"
    "  -h, --help         show this help\n"
    "\n"
    "The recorder, libbrisk-record.so, is found at $BRISK_RECORD_LIB when set,\n"
    "else next to brisk-trace, in ../lib/brisk/ from it, or where it was installed.\n";

/* Parses a byte count with an optional K, M or G suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift != 0)
        end++;
    if (*end == 'i' && shift != 0)
        end++;
    if ((*end == 'B' || *end == 'b') && shift != 0)
        end++;
    if (*end != '\0' || v > (max >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int usage_error(const char *usage, const char *format, const char *arg)
{
    fprintf(stderr, "brisk-trace: ");
    fprintf(stderr, format, arg);
    fprintf(stderr, "\n\n%s", usage);
    return 2;
}

static FILE *open_output(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fprintf(stderr, "brisk-trace replay: cannot write %s: %s\n", path, strerror(errno));
    return f;
}

/* Whether the file at path is a recording (packed or raw), not a text
 * trace: only a recording has the call sites the page shows. */
static int is_recording(const char *path)
{
    unsigned char head[TF_MAGIC_BYTES];
    size_t got = trace_read_head(path, head, sizeof head);
    return recording_is_binary(head, got) || recording_is_packed(head, got);
}

/* The call sites of the recording at path, for the page. Returns 0, or -1
 * with a message in err. */
static int load_sites(const char *path, recording *r, site_analysis *a, char *err,
                      size_t err_size)
{
    if (recording_load(path, r, err, err_size) != 0)
        return -1;
    if (sites_analyse(r, a, err, err_size) != 0) {
        recording_free(r);
        return -1;
    }
    return 0;
}

static int replay_main(int argc, char **argv)
{
    uint64_t capacity = (uint64_t)256 << 20, reps = 5, check_every = 0, snapshots = 40;
    const replay_allocator *brisk = &backend_brisk;
    report_format format = REPORT_TABLE;
    const char *svg_path = NULL, *html_path = NULL, *map_name = NULL;
    char **paths = calloc((size_t)argc + 1, sizeof *paths);
    size_t num_paths = 0;
    if (paths == NULL)
        return 1;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        int takes_value = strcmp(arg, "--capacity") == 0 || strcmp(arg, "--reps") == 0 ||
                          strcmp(arg, "--check-every") == 0 || strcmp(arg, "--svg") == 0 ||
                          strcmp(arg, "--html") == 0 || strcmp(arg, "--map") == 0 ||
                          strcmp(arg, "--snapshots") == 0;
        if (takes_value && value == NULL) {
            free(paths);
            return usage_error(replay_usage, "replay: %s needs a value", arg);
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(replay_usage, stdout);
            free(paths);
            return 0;
        } else if (strcmp(arg, "--capacity") == 0) {
            if (parse_size(value, (uint64_t)1 << 46, &capacity) != 0 || capacity == 0) {
                free(paths);
                return usage_error(replay_usage, "replay: bad --capacity '%s' (bytes, or with K, M, G)",
                                   value);
            }
            i++;
        } else if (strcmp(arg, "--reps") == 0 || strcmp(arg, "--check-every") == 0 ||
                   strcmp(arg, "--snapshots") == 0) {
            uint64_t *target = arg[2] == 'r' ? &reps : arg[2] == 'c' ? &check_every : &snapshots;
            uint64_t limit = arg[2] == 'r' ? 1000 : arg[2] == 'c' ? UINT32_MAX : 10000;
            char *end;
            errno = 0;
            unsigned long long v = strtoull(value, &end, 10);
            if (*value < '0' || *value > '9' || *end != '\0' || errno != 0 || v > limit ||
                0) {
                free(paths);
                fprintf(stderr, "brisk-trace: replay: bad %s '%s' (an integer, at most %llu)\n\n%s",
                        arg, value, (unsigned long long)limit, replay_usage);
                return 2;
            }
            *target = v;
            i++;
        } else if (strcmp(arg, "--defer-merge") == 0) {
            brisk = &backend_brisk_deferred;
        } else if (strcmp(arg, "--hardened") == 0) {
            brisk = &backend_brisk_hardened;
        } else if (strcmp(arg, "--csv") == 0) {
            format = REPORT_CSV;
        } else if (strcmp(arg, "--json") == 0) {
            format = REPORT_JSON;
        } else if (strcmp(arg, "--svg") == 0) {
            svg_path = argv[++i];
        } else if (strcmp(arg, "--html") == 0) {
            html_path = argv[++i];
        } else if (strcmp(arg, "--map") == 0) {
            map_name = argv[++i];
        } else if (arg[0] == '-' && arg[1] != '\0') {
            free(paths);
            return usage_error(replay_usage, "replay: unknown option '%s'", arg);
        } else {
            paths[num_paths++] = argv[i];
        }
    }
    if (num_paths == 0) {
        free(paths);
        return usage_error(replay_usage, "replay: no trace given%s", "");
    }

    int status = 1;
    FILE *svg = NULL, *html = NULL;
    trace *traces = calloc(num_paths, sizeof *traces);
    trace_report *reports = calloc(num_paths, sizeof *reports);
    double *times = calloc(num_paths * 2 * (reps ? reps : 1), sizeof *times);
    recording *recordings = calloc(num_paths, sizeof *recordings);
    site_analysis *analyses = calloc(num_paths, sizeof *analyses);
    size_t loaded = 0;
    if (traces == NULL || reports == NULL || times == NULL || recordings == NULL ||
        analyses == NULL) {
        fprintf(stderr, "brisk-trace replay: out of memory\n");
        goto out;
    }
    /* Outputs are opened before the (long) replays, so a bad path fails
     * at once. */
    if (svg_path != NULL && (svg = open_output(svg_path)) == NULL)
        goto out;
    if (html_path != NULL && (html = open_output(html_path)) == NULL)
        goto out;
    char err[1024];
    for (size_t i = 0; i < num_paths; i++) {
        if (trace_load(paths[i], &traces[i], err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            goto out;
        }
        loaded++;
    }
    size_t map_index = 0;
    if (map_name != NULL) {
        size_t i = 0;
        while (i < loaded && strcmp(traces[i].name, map_name) != 0 &&
               strcmp(traces[i].path, map_name) != 0)
            i++;
        if (i == loaded) {
            fprintf(stderr, "brisk-trace replay: --map '%s' names none of the traces given\n",
                    map_name);
            goto out;
        }
        map_index = i;
    }

    int failures = 0;
    for (size_t i = 0; i < loaded; i++) {
        trace_report *r = &reports[i];
        r->t = &traces[i];
        if (html != NULL && is_recording(paths[i])) {
            if (load_sites(paths[i], &recordings[i], &analyses[i], r->error,
                           sizeof r->error) != 0) {
                fprintf(stderr, "%s\n", r->error);
                failures++;
                continue;
            }
            r->sites = &analyses[i];
        }
        r->reps = (size_t)reps;
        r->brisk_seconds = times + i * 2 * reps;
        r->system_seconds = times + i * 2 * reps + reps;
        replay_options opt = {(size_t)capacity, (size_t)check_every, 0, 0};
        if (html != NULL || (svg != NULL && i == map_index)) {
            opt.num_snapshots = html != NULL ? (size_t)snapshots : 1;
            opt.curve_points = 400;
        }
        r->ok = replay_checked(r->t, brisk, &opt, &r->result, r->error,
                               sizeof r->error) == 0;
        if (r->ok) {
            replay_options plain = {0, 0, 0, 0};
            replay_result sys;
            r->ok = replay_checked(r->t, &backend_system, &plain, &sys, r->error,
                                   sizeof r->error) == 0;
            replay_result_free(&sys);
        }
        /* Timed passes, alternating which allocator goes first so that
         * neither always runs on a warmer cache. */
        for (size_t k = 0; r->ok && k < reps; k++) {
            for (int turn = 0; turn < 2 && r->ok; turn++) {
                int brisk_turn = (turn == 0) == (k % 2 == 0);
                double s = replay_timed(r->t, brisk_turn ? brisk : &backend_system,
                                        (size_t)capacity, r->error, sizeof r->error);
                if (s < 0)
                    r->ok = 0;
                else
                    (brisk_turn ? r->brisk_seconds : r->system_seconds)[k] = s;
            }
        }
        if (!r->ok) {
            failures++;
            fprintf(stderr, "%s\n", r->error);
        }
    }
    report_write(stdout, format, reports, loaded, (size_t)capacity);
    fflush(stdout);
    status = failures ? 1 : 0;

    if (svg != NULL) {
        const trace_report *r = &reports[map_index];
        if (!r->ok || r->result.num_snapshots == 0) {
            fprintf(stderr, "brisk-trace replay: no heap map for %s: %s\n", r->t->name,
                    r->ok ? "it has no ops" : "its replay failed");
            status = 1;
        } else {
            long shapes = svg_write(svg, r);
            if (shapes < 0 || fflush(svg) != 0) {
                fprintf(stderr, "brisk-trace replay: cannot write %s: %s\n", svg_path,
                        strerror(errno));
                status = 1;
            } else {
                fprintf(stderr,
                        "brisk-trace: wrote the heap map of %s at peak use (%ld chunks) to %s\n",
                        r->t->name, shapes, svg_path);
            }
        }
    }
    if (html != NULL) {
        if (html_write(html, reports, loaded) != 0 || fflush(html) != 0) {
            fprintf(stderr, "brisk-trace replay: cannot write %s: %s\n", html_path,
                    strerror(errno));
            status = 1;
        } else {
            fprintf(stderr, "brisk-trace: wrote the heap map page to %s (open it in a browser)\n",
                    html_path);
        }
    }

out:
    if (svg != NULL && fclose(svg) != 0 && status == 0) {
        fprintf(stderr, "brisk-trace replay: cannot write %s: %s\n", svg_path, strerror(errno));
        status = 1;
    }
    if (html != NULL && fclose(html) != 0 && status == 0) {
        fprintf(stderr, "brisk-trace replay: cannot write %s: %s\n", html_path, strerror(errno));
        status = 1;
    }
    for (size_t i = 0; i < loaded; i++) {
        replay_result_free(&reports[i].result);
        trace_free(&traces[i]);
    }
    for (size_t i = 0; reports != NULL && i < num_paths; i++)
        if (reports[i].sites != NULL) {
            sites_free(reports[i].sites);
            recording_free(&recordings[i]);
        }
    free(recordings);
    free(analyses);
    free(traces);
    free(reports);
    free(times);
    free(paths);
    return status;
}

const char *record_usage_text(void) { return record_usage; }

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(main_usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        if (argc > 2 && strcmp(argv[2], "record") == 0)
            fputs(record_usage, stdout);
        else if (argc > 2 && strcmp(argv[2], "replay") == 0)
            fputs(replay_usage, stdout);
        else if (argc > 2 && (strcmp(argv[2], "report") == 0 || strcmp(argv[2], "convert") == 0)) {
            char *help[] = {(char *)"--help"};
            return strcmp(argv[2], "report") == 0 ? report_main(1, help) : convert_main(1, help);
        }
        else
            fputs(main_usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "record") == 0)
        return record_main(argc - 2, argv + 2);
    if (strcmp(cmd, "replay") == 0)
        return replay_main(argc - 2, argv + 2);
    if (strcmp(cmd, "report") == 0)
        return report_main(argc - 2, argv + 2);
    if (strcmp(cmd, "convert") == 0)
        return convert_main(argc - 2, argv + 2);
    fprintf(stderr, "brisk-trace: unknown subcommand '%s'\n\n%s", cmd, main_usage);
    return 2;
}
