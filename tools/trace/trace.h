/*
 * brisk-trace: shared declarations of the tool's parts.
 *
 *   main.c         the command line: subcommands, options, usage.
 *   record.c       `record`: runs a command with libbrisk-record.so
 *                  preloaded and lists the traces it wrote.
 *   recorder.c     libbrisk-record.so itself (built separately, shares
 *                  nothing with the tool but the trace format).
 *   trace_parse.c  reads a trace file into a `trace`, with FILE:LINE errors.
 *   replay.c       replays a trace through a pluggable allocator, checked
 *                  or timed, taking heap snapshots along the way.
 *   backends.c     the allocators replay knows: brisk's region heap and
 *                  the system malloc.
 *   report.c       the result table as text, CSV or JSON.
 *   svg.c, html.c  the heap map as a picture and as an interactive page;
 *   html_sites.c   a recording's call-site views on that page.
 *   tool_os.c      the tool's clock and executable path; record.c also
 *                  forks, execs and waits for the recorded command.
 */
#ifndef BRISK_TRACE_H
#define BRISK_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- the trace ----------------------------------------------------------
 *
 * The CS:APP malloc-lab text format:
 *
 *     <suggested heap size>     four header lines, one integer each
 *     <number of ids>
 *     <number of ops>
 *     <weight>
 *     a <id> <bytes>            allocate block `id`
 *     r <id> <bytes>            resize block `id` (keeps its id)
 *     f <id>                    free block `id`
 *
 * brisk extends `a` with an optional fourth field, the alignment, for
 * aligned allocations (posix_memalign and friends): `a <id> <bytes> <align>`.
 * Ids run from 0 to <number of ids> - 1. An id may be allocated again
 * after it was freed, never while it is live.
 */
typedef enum trace_op_kind { OP_ALLOC = 'a', OP_REALLOC = 'r', OP_FREE = 'f' } trace_op_kind;

typedef struct trace_op {
    uint64_t size;      /* bytes (alloc, realloc); 0 for free */
    uint32_t id;
    uint32_t alignment; /* 0 for the default alignment */
    uint32_t line;      /* line in the file, for messages */
    char kind;          /* a trace_op_kind */
} trace_op;

typedef struct trace {
    char *path;          /* as given on the command line */
    char *name;          /* file name without directory and ".rep" */
    uint64_t suggested_heap_size;
    uint64_t weight;
    uint32_t num_ids;
    size_t num_ops;
    trace_op *ops;
} trace;

/* Largest size or alignment a trace may ask for: far beyond any heap we
 * replay into, small enough that size arithmetic never wraps. */
#define TRACE_MAX_BYTES ((uint64_t)1 << 48)
/* Most ids a header may declare (the per-id tables are allocated up
 * front). */
#define TRACE_MAX_IDS ((uint32_t)1 << 28)

/* Reads and validates the trace at `path`. Returns 0, or -1 after
 * writing "PATH:LINE: what was wrong" (or "PATH: ..." for I/O errors) into
 * err (at least 512 bytes); *out is then untouched. */
int trace_load(const char *path, trace *out, char *err, size_t err_size);

/* As trace_load, from text already in memory (for tests). */
int trace_parse_text(const char *path, const char *text, size_t len, trace *out,
                     char *err, size_t err_size);

void trace_free(trace *t);

/* ---- allocators replay drives ---------------------------------------- */

/* One chunk of a heap snapshot, as an offset from the region's first
 * chunk. The chunks of a snapshot tile [0, extent) in address order. */
typedef struct map_chunk {
    uint64_t offset;
    uint64_t size;     /* whole chunk, header included */
    uint32_t header;   /* bytes before the payload (0 for free chunks) */
    uint32_t used;     /* 1 live block, 0 free */
    int64_t id;        /* trace id of a live block, -1 when unknown/free */
} map_chunk;

typedef void (*chunk_sink)(void *context, uint64_t offset, uint64_t size,
                           uint32_t header, int used, const void *payload);

typedef struct replay_allocator {
    const char *name;
    /* Returns the allocator's state for one replay, NULL on failure (with
     * a message in err). */
    void *(*create)(size_t capacity, char *err, size_t err_size);
    void (*destroy)(void *state);
    /* alignment 0 means the default. */
    void *(*alloc)(void *state, size_t size, size_t alignment);
    void *(*realloc)(void *state, void *ptr, size_t size);
    void (*free)(void *state, void *ptr);
    /* Optional (NULL when the allocator cannot): structural self-check,
     * returning 0 when sound; */
    int (*check)(void *state);
    /* the furthest extent of the region used so far (bytes); */
    uint64_t (*high_water)(void *state);
    /* what a region reaching that far needs with the allocator's own
     * bookkeeping (bytes): the footprint a heap grown on demand would
     * have had; */
    uint64_t (*footprint)(uint64_t high_water);
    /* and a walk of every chunk in address order. */
    int (*walk)(void *state, chunk_sink sink, void *context);
    /* Blocks this allocator leaves allocated at the end of a replay must
     * be freed one by one (system malloc) rather than dropped with the
     * whole region (a heap). */
    int free_leftovers;
} replay_allocator;

extern const replay_allocator backend_system;
extern const replay_allocator backend_brisk;
extern const replay_allocator backend_brisk_deferred; /* BRISK_HEAP_DEFER_MERGE */
extern const replay_allocator backend_brisk_hardened; /* BRISK_HEAP_HARDENED */

/* ---- replay ---------------------------------------------------------- */

/* A heap snapshot taken after op `op_index` ran. */
typedef struct heap_snapshot {
    size_t op_index;
    uint64_t live_payload;  /* requested bytes of live blocks */
    uint64_t high_water;
    uint64_t base;          /* address of the first chunk (0: unknown) */
    size_t num_chunks;
    map_chunk *chunks;
} heap_snapshot;

/* A point of the utilization curve. */
typedef struct curve_point {
    size_t op_index;
    uint64_t live_payload;
    uint64_t high_water;
} curve_point;

typedef struct replay_options {
    size_t capacity;        /* heap capacity for allocators with a region */
    size_t check_every;     /* run the self-check every N ops (0: ops/64) */
    size_t num_snapshots;   /* snapshots to take along the trace (0: none) */
    size_t curve_points;    /* utilization curve samples (0: none) */
} replay_options;

/* What a checked replay learned. */
typedef struct replay_result {
    uint64_t peak_live_payload;  /* most requested bytes live at once */
    size_t peak_op_index;        /* the op after which it was reached */
    uint64_t high_water;         /* allocator's high water at the end */
    uint64_t footprint;          /* and with its bookkeeping (0: unknown) */
    size_t checks_run;
    size_t num_snapshots;
    heap_snapshot *snapshots;    /* in op order; one is at the peak */
    size_t peak_snapshot;        /* index into snapshots of the peak one */
    size_t num_curve;
    curve_point *curve;
} replay_result;

/* Replays `t` through `a` with every check: blocks filled with an
 * id-derived pattern and verified before free/realloc (and contents kept
 * across realloc), alignment, no overlap between live blocks, and the
 * allocator's self-check every options->check_every ops and at the end.
 * Returns 0, or -1 with "PATH:LINE: what went wrong (allocator NAME)"
 * in err. */
int replay_checked(const trace *t, const replay_allocator *a,
                   const replay_options *options, replay_result *out,
                   char *err, size_t err_size);

/* Replays `t` through `a` without checks, timing only the ops. Returns
 * the elapsed seconds, or a negative value with a message in err when an
 * op failed. */
double replay_timed(const trace *t, const replay_allocator *a, size_t capacity,
                    char *err, size_t err_size);

void replay_result_free(replay_result *r);

/* ---- output ---------------------------------------------------------- */

struct site_analysis;

typedef struct trace_report {
    const trace *t;
    /* A recording's call sites, for the page's views of them (sites.h,
     * html_sites.c); NULL for a malloc-lab trace. */
    struct site_analysis *sites;
    replay_result result;
    int ok;                 /* 0 when the checked replay failed */
    char error[512];
    size_t reps;
    double *brisk_seconds;  /* reps entries */
    double *system_seconds;
} trace_report;

typedef enum report_format { REPORT_TABLE, REPORT_CSV, REPORT_JSON } report_format;

void report_write(FILE *out, report_format format, const trace_report *reports,
                  size_t count, size_t capacity);

/* Median of values[0..n) (sorts a copy). */
double median_of(const double *values, size_t n);

/* The heap map of reports[i].result's peak snapshot as SVG. Returns the
 * number of chunk shapes written, or -1 (errno set) on a write error. */
long svg_write(FILE *out, const trace_report *report);

/* One self-contained HTML page with every report's snapshots. Returns 0,
 * or -1 on a write error. */
int html_write(FILE *out, const trace_report *reports, size_t count);

/* Writes s as a JSON string (report.c), for report --json and the page,
 * with '<' escaped too so that no "</script" ends the page's data block
 * early. */
void json_string(FILE *out, const char *s);

/* Formats a byte count as "12.3 KiB" into buf. */
const char *format_bytes(char *buf, size_t size, uint64_t bytes);

/* ---- recordings (the binary format, trace_format.h) -------------------
 *
 * recording.c reads a recording into memory; blocks.c follows its blocks
 * by address; convert.c turns recordings into malloc-lab traces and back;
 * symbols.c names frames; sites.c and report_sites.c are `report`.
 */

/* One recorded call, as the file has it. */
typedef struct rec_event {
    uint64_t seq;          /* the call's place among all threads' calls */
    uint64_t seq_release;  /* realloc: when the old block was let go */
    uint64_t time_ns;      /* since the recording started */
    uint64_t addr;         /* result (0: failed); free: the block */
    uint64_t old_addr;     /* realloc: the block resized (0: none) */
    uint64_t size;
    uint64_t alignment;
    uint32_t stack;        /* index into the recording's stacks (0: none) */
    uint32_t thread;       /* index into the recording's threads */
    uint8_t kind;          /* an enum tf_kind event kind */
} rec_event;

/* A step of the process's heap, in the order the calls happened: an
 * event, or for a realloc its release of the old block (role 0) and
 * acquisition of the new one (role 1). */
typedef struct rec_step {
    uint64_t seq;
    uint32_t event;
    uint32_t role;
} rec_step;

/* A sample of the process allocator (TF_ALLOCATOR): values by
 * enum tf_allocator_field, 0 where the recording has none. */
typedef struct rec_sample {
    uint64_t seq;      /* taken after the events numbered below this */
    uint64_t time_ns;  /* since the recording started */
    uint64_t value[8]; /* TF_ALLOCATOR_FIELDS */
} rec_sample;

/* A call site of a sampled profile (TF_PROFILE_SITE): how many of its
 * allocations were sampled, and the estimates made from them. */
typedef struct rec_profile_site {
    uint32_t stack;        /* index into the recording's stacks */
    uint64_t samples, live_samples;
    uint64_t alloc_count, alloc_bytes; /* since start-up */
    uint64_t live_count, live_bytes;   /* at the dump */
} rec_profile_site;

typedef struct recording {
    char *path;
    uint64_t pid;
    char *command;          /* arguments joined by spaces */
    size_t num_events;
    rec_event *events;      /* in the order of their seq */
    size_t num_steps;
    rec_step *steps;
    size_t num_stacks;      /* stack 0 is the empty one */
    uint32_t *stack_first;  /* into frames */
    uint32_t *stack_depth;
    uint64_t *frames;       /* return addresses, innermost first */
    size_t num_threads;
    uint32_t *thread_tids;
    char *maps;             /* the maps records, latest first, as one text */
    size_t num_samples;     /* allocator samples, in seq order (a process */
    rec_sample *samples;    /* using libbrisk; none otherwise) */
    /* A sampled profile libbrisk wrote (TF_PROFILE; no events): */
    uint64_t profile_rate;  /* mean bytes between samples; 0: not a profile */
    uint64_t profile_samples, profile_live_samples, profile_time_ns;
    size_t num_profile_sites;
    rec_profile_site *profile_sites;
    unsigned flags;         /* TF_END_* of the end record */
    uint64_t duration_ns;   /* time of the last event */
} recording;

/* Whether data starts like a recording (its magic). */
int recording_is_binary(const unsigned char *data, size_t len);
/* Whether data starts like a packed recording (pack.c). */
int recording_is_packed(const unsigned char *data, size_t len);
/* Writes r packed (pack.c). Returns 0, or -1 with a message in err. */
int recording_pack(FILE *out, const recording *r, char *err, size_t err_size);
/* Packs a raw recording straight from its bytes, without loading it as
 * a recording (one thread's events are packed as they are read; several
 * threads' are held compactly and merged). Returns 0, or -1 with a
 * message. */
int recording_pack_raw(FILE *out, const char *path, const unsigned char *data, size_t len,
                       size_t counts[2], char *err, size_t err_size);
/* Reads up to n bytes from the start of the file at path into buf, to
 * tell what kind of file it is; how many it read (0 if it cannot be
 * opened). */
size_t trace_read_head(const char *path, unsigned char *buf, size_t n);
/* Reads a whole file into memory (*len bytes). NULL with a message. */
unsigned char *trace_read_file(const char *path, size_t *len, char *err, size_t err_size);
/* Reads a packed recording. Returns 0, or -1 with a message in err. */
int recording_unpack(const char *path, const unsigned char *data, size_t len, recording *out,
                     char *err, size_t err_size);
/* Streams a raw recording without holding its events: meta gets
 * everything but the events (num_events counts them), begin runs once
 * meta is complete, then sink gets each event (its stack a dense index of
 * meta): in order when one thread has events; when several do, in the
 * file's order (each thread's in its order, threads' chunks interleaved)
 * if any_order, else nothing is streamed and it returns 1. Returns 0, or
 * -1 with a message in err. */
typedef int (*rec_event_sink)(void *context, rec_event *e);
int recording_stream(const char *path, const unsigned char *data, size_t len, recording *meta,
                     rec_event_sink sink, int (*begin)(void *context, const recording *meta),
                     void *context, int any_order, char *err, size_t err_size);
/* Checks a raw recording and counts its events and stacks. Returns 0, or
 * -1 with a message. */
int recording_counts(const char *path, const unsigned char *data, size_t len, size_t counts[2],
                     char *err, size_t err_size);
/* A recording, packed or not, or a malloc-lab text trace, from memory. */
int recording_parse_any(const char *path, const unsigned char *data, size_t len,
                        recording *out, char *err, size_t err_size);
/* Reads a recording or, for a text file, a malloc-lab trace (converted as
 * convert.c does). Returns 0, or -1 with "PATH: what was wrong" in err. */
int recording_load(const char *path, recording *out, char *err, size_t err_size);
/* As recording_load, from a recording already in memory. */
int recording_parse(const char *path, const unsigned char *data, size_t len, recording *out,
                    char *err, size_t err_size);
void recording_free(recording *r);
/* Writes r in the recording format (version TF_VERSION). Returns 0, or -1
 * on a write error. */
int recording_write(FILE *out, const recording *r);

/* A block's life (blocks.c). */
#define REC_NONE UINT32_MAX
typedef struct rec_block {
    uint32_t event;  /* the event that made it (an allocation or realloc) */
    uint32_t prev;   /* the block it was resized from, or REC_NONE */
    uint64_t size;
    size_t born;     /* step index */
    size_t died;     /* step index; SIZE_MAX: live at the end */
    int temporary;   /* freed by its thread before it allocated again */
} rec_block;

typedef struct rec_blocks {
    size_t count;
    rec_block *blocks;
    uint32_t *step_made;    /* per step: the block it made (REC_NONE: none) */
    uint32_t *step_ended;   /* per step: the block it ended (REC_NONE: none) */
    uint64_t peak_bytes;
    size_t peak_step;       /* the step after which the peak was first held */
    uint64_t peak_time_ns;
    size_t unknown_frees;   /* frees of blocks from before the recording */
} rec_blocks;

/* Follows every block of r by address. Returns 0, or -1 (out of memory)
 * with a message in err. */
int recording_blocks(const recording *r, rec_blocks *out, char *err, size_t err_size);
void rec_blocks_free(rec_blocks *b);

/* A recording as a malloc-lab trace (convert.c). */
int recording_to_trace(const recording *r, trace *out, char *err, size_t err_size);
/* A malloc-lab trace as a recording: no stacks, one thread, op i at time
 * i ns. */
int recording_from_trace(const trace *t, recording *out, char *err, size_t err_size);
/* Writes t as malloc-lab text. Returns 0, or -1 on a write error. */
int trace_write_text(FILE *out, const trace *t);
/* `convert`. */
int convert_main(int argc, char **argv);
/* `report`. */
int report_main(int argc, char **argv);

/* ---- record ---------------------------------------------------------- */

/* Runs `record`; argv are the subcommand's arguments. Returns the exit
 * status for the tool. */
int record_main(int argc, char **argv);

/* The record subcommand's help text (main.c). */
const char *record_usage_text(void);

/* ---- the tool's system calls (tool_os.c) ----------------------------- */

/* The calling thread's CPU seconds (see tool_os.c for why). */
double os_thread_seconds(void);
/* The monotonic clock in ns: the recorder's clock (recorder_os.c), so a
 * recording's start can be compared with it. */
uint64_t os_monotonic_ns(void);
/* Directory of the running executable (into buf), or "" when unknown. */
void os_executable_dir(char *buf, size_t size);

#endif /* BRISK_TRACE_H */
