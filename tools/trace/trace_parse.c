/*
 * The trace parser: CS:APP malloc-lab text (see trace.h) into a `trace`
 * (trace_load also takes a recording, converted by convert.c).
 *
 * Everything a replay relies on is validated here, once, so replay can
 * trust the ops: ids in range, no alloc of a live id, no free or realloc of
 * an id that is not live, op count as the header declares, sizes and
 * alignments in range. Each error names the file and line.
 */
#define _GNU_SOURCE
#include "trace.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *path;
    const char *cursor, *end;
    uint32_t line;       /* number of the line last returned */
    char *err;
    size_t err_size;
} parser;

static int parse_fail(parser *p, uint32_t line, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int parse_fail(parser *p, uint32_t line, const char *format, ...)
{
    int n = snprintf(p->err, p->err_size, "%s:%u: ", p->path, line);
    if (n < 0 || (size_t)n >= p->err_size)
        return -1;
    va_list args;
    va_start(args, format);
    vsnprintf(p->err + n, p->err_size - (size_t)n, format, args);
    va_end(args);
    return -1;
}

/* The next line that is not blank, as [*start, *stop); false at the end of
 * the text. */
static bool next_line(parser *p, const char **start, const char **stop)
{
    while (p->cursor < p->end) {
        const char *s = p->cursor;
        const char *nl = memchr(s, '\n', (size_t)(p->end - s));
        const char *e = nl ? nl : p->end;
        p->cursor = nl ? nl + 1 : p->end;
        p->line++;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\r'))
            t--;
        if (s < t) {
            *start = s;
            *stop = t;
            return true;
        }
    }
    return false;
}

static void skip_spaces(const char **s, const char *stop)
{
    while (*s < stop && (**s == ' ' || **s == '\t'))
        (*s)++;
}

/* Reads one field (up to white space) as text for messages; bytes that
 * are not printable ASCII show as '?', so a message stays one clean line. */
static void field_text(const char *s, const char *stop, char *buf, size_t size)
{
    size_t n = 0;
    for (; s < stop && *s != ' ' && *s != '\t' && n + 1 < size && n < 40; s++)
        buf[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    buf[n] = '\0';
}

/* Parses a decimal unsigned integer field no larger than max. Returns 1 on
 * success, 0 when the field is missing, -1 when it is not a number or too
 * large. */
static int parse_number(const char **s, const char *stop, uint64_t max, uint64_t *out)
{
    skip_spaces(s, stop);
    if (*s == stop)
        return 0;
    const char *q = *s;
    uint64_t value = 0;
    if (*q < '0' || *q > '9')
        return -1;
    while (q < stop && *q >= '0' && *q <= '9') {
        uint64_t digit = (uint64_t)(*q - '0');
        if (value > (max - digit) / 10)
            return -1;
        value = value * 10 + digit;
        q++;
    }
    if (q < stop && *q != ' ' && *q != '\t')
        return -1;
    *s = q;
    *out = value;
    return 1;
}

static const char *const header_names[4] = {
    "the suggested heap size", "the number of ids", "the number of ops", "the weight"};

int trace_parse_text(const char *path, const char *text, size_t len, trace *out,
                     char *err, size_t err_size)
{
    parser p = {path, text, text + len, 0, err, err_size};
    uint64_t header[4];
    uint32_t header_line[4];
    const uint64_t header_max[4] = {UINT64_MAX / 2, TRACE_MAX_IDS, (uint64_t)1 << 40,
                                    UINT64_MAX / 2};
    const char *s, *stop;

    /* Line numbers are 32-bit (and 0 means "none" in the tables below): a
     * file under 4 GiB cannot have more lines than that. */
    if (len >= UINT32_MAX)
        return parse_fail(&p, 1, "the file is 4 GiB or larger, more than brisk-trace reads");
    if (memchr(text, '\0', len) != NULL)
        return parse_fail(&p, 1, "bad header: the file contains NUL bytes (not a text trace)");
    for (int i = 0; i < 4; i++) {
        if (!next_line(&p, &s, &stop))
            return parse_fail(&p, p.line + 1,
                              "bad header: the file ends before %s (header line %d of 4)",
                              header_names[i], i + 1);
        char got[48];
        field_text(s, stop, got, sizeof got);
        header_line[i] = p.line;
        int r = parse_number(&s, stop, header_max[i], &header[i]);
        if (r <= 0)
            return parse_fail(&p, p.line,
                              "bad header: expected %s (a non-negative integer%s), got '%s'",
                              header_names[i],
                              i == 1 ? " up to 268435456" : "", got);
        skip_spaces(&s, stop);
        if (s != stop) {
            field_text(s, stop, got, sizeof got);
            return parse_fail(&p, p.line, "bad header: unexpected '%s' after %s",
                              got, header_names[i]);
        }
    }
    if (header[1] == 0 && header[2] != 0)
        return parse_fail(&p, header_line[2], "bad header: %llu ops but 0 ids",
                          (unsigned long long)header[2]);

    uint32_t num_ids = (uint32_t)header[1];
    size_t num_ops = (size_t)header[2];
    /* Per id: the line of its live allocation (0: not live) and the line
     * that last freed it (0: never freed). */
    uint32_t *live_line = calloc(num_ids ? num_ids : 1, sizeof *live_line);
    uint32_t *freed_line = calloc(num_ids ? num_ids : 1, sizeof *freed_line);
    /* The header may lie about the op count; grow as ops arrive rather
     * than trusting it with a huge allocation. */
    size_t cap = num_ops < 4096 ? (num_ops ? num_ops : 1) : 4096;
    trace_op *ops = malloc(cap * sizeof *ops);
    if (live_line == NULL || freed_line == NULL || ops == NULL) {
        free(live_line);
        free(freed_line);
        free(ops);
        snprintf(err, err_size, "%s: out of memory reading a trace of %u ids", path, num_ids);
        return -1;
    }

    size_t count = 0;
    int rc = 0;
    while (next_line(&p, &s, &stop)) {
        if (count == num_ops) {
            rc = parse_fail(&p, p.line, "more ops than the header declares (%zu)", num_ops);
            break;
        }
        if (count == cap) {
            size_t new_cap = cap * 2 < num_ops ? cap * 2 : num_ops;
            trace_op *grown = realloc(ops, new_cap * sizeof *ops);
            if (grown == NULL) {
                rc = parse_fail(&p, p.line, "out of memory after %zu ops", count);
                break;
            }
            ops = grown;
            cap = new_cap;
        }
        trace_op *op = &ops[count];
        memset(op, 0, sizeof *op);
        op->line = p.line;
        char kind = *s;
        char got[48];
        field_text(s, stop, got, sizeof got);
        if ((kind != 'a' && kind != 'r' && kind != 'f') ||
            (s + 1 < stop && s[1] != ' ' && s[1] != '\t')) {
            rc = parse_fail(&p, p.line, "unknown op '%s' (expected a, r or f)", got);
            break;
        }
        op->kind = kind;
        s++;
        uint64_t id, size = 0, alignment = 0;
        skip_spaces(&s, stop);
        field_text(s, stop, got, sizeof got);
        int r = parse_number(&s, stop, UINT32_MAX, &id);
        if (r == 0) {
            rc = parse_fail(&p, p.line, "'%c' without an id", kind);
            break;
        }
        if (r < 0) {
            rc = parse_fail(&p, p.line, "bad id '%s' (expected a non-negative integer)", got);
            break;
        }
        if (id >= num_ids) {
            rc = parse_fail(&p, p.line,
                            "id %llu out of range: the header declares %u ids (0 to %lld)",
                            (unsigned long long)id, num_ids, (long long)num_ids - 1);
            break;
        }
        op->id = (uint32_t)id;
        if (kind != 'f') {
            skip_spaces(&s, stop);
            field_text(s, stop, got, sizeof got);
            r = parse_number(&s, stop, TRACE_MAX_BYTES, &size);
            if (r == 0) {
                rc = parse_fail(&p, p.line, "'%c %llu' without a size in bytes", kind,
                                (unsigned long long)id);
                break;
            }
            if (r < 0) {
                rc = parse_fail(&p, p.line,
                                "bad size '%s' (expected bytes, a non-negative integer up to 2^48)",
                                got);
                break;
            }
            op->size = size;
        }
        if (kind == 'a') {
            skip_spaces(&s, stop);
            if (s != stop) {
                field_text(s, stop, got, sizeof got);
                r = parse_number(&s, stop, (uint64_t)1 << 30, &alignment);
                if (r < 0 || alignment == 0 || (alignment & (alignment - 1)) != 0) {
                    rc = parse_fail(&p, p.line,
                                    "bad alignment '%s' (expected a power of two up to 2^30)",
                                    got);
                    break;
                }
                op->alignment = (uint32_t)alignment;
            }
        }
        skip_spaces(&s, stop);
        if (s != stop) {
            field_text(s, stop, got, sizeof got);
            rc = parse_fail(&p, p.line, "unexpected '%s' after the op", got);
            break;
        }
        /* The id's life: alloc only when not live; realloc and free only
         * when live. */
        if (kind == 'a') {
            if (live_line[id] != 0) {
                rc = parse_fail(&p, p.line,
                                "alloc of id %llu, which is still live (allocated at line %u)",
                                (unsigned long long)id, live_line[id]);
                break;
            }
            live_line[id] = p.line;
        } else if (live_line[id] == 0) {
            const char *what = kind == 'f' ? "free" : "realloc";
            if (freed_line[id] != 0)
                rc = parse_fail(&p, p.line, "%s of id %llu, which was already freed at line %u",
                                what, (unsigned long long)id, freed_line[id]);
            else
                rc = parse_fail(&p, p.line, "%s of id %llu, which was never allocated", what,
                                (unsigned long long)id);
            break;
        } else if (kind == 'f') {
            live_line[id] = 0;
            freed_line[id] = p.line;
        }
        count++;
    }
    if (rc == 0 && count < num_ops)
        rc = parse_fail(&p, p.line + 1,
                        "truncated: the file ends after %zu of the %zu ops the header declares",
                        count, num_ops);
    free(live_line);
    free(freed_line);
    if (rc != 0) {
        free(ops);
        return -1;
    }

    memset(out, 0, sizeof *out);
    out->suggested_heap_size = header[0];
    out->num_ids = num_ids;
    out->num_ops = num_ops;
    out->weight = header[3];
    out->ops = ops;
    out->path = strdup(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t base_len = strlen(base);
    if (base_len > 4 && strcmp(base + base_len - 4, ".rep") == 0)
        base_len -= 4;
    out->name = strndup(base, base_len);
    if (out->path == NULL || out->name == NULL) {
        trace_free(out);
        snprintf(err, err_size, "%s: out of memory", path);
        return -1;
    }
    return 0;
}

int trace_load(const char *path, trace *out, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    while (text != NULL) {
        if (len == cap) {
            char *grown = cap < ((size_t)1 << 34) ? realloc(text, cap * 2) : NULL;
            if (grown == NULL) {
                free(text);
                text = NULL;
                break;
            }
            text = grown;
            cap *= 2;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int read_error = ferror(f);
    int saved = errno;
    fclose(f);
    if (text == NULL) {
        snprintf(err, err_size, "%s: out of memory reading the file", path);
        return -1;
    }
    if (read_error) {
        free(text);
        snprintf(err, err_size, "%s: cannot read: %s", path, strerror(saved));
        return -1;
    }
    int rc;
    if (recording_is_binary((const unsigned char *)text, len) ||
        recording_is_packed((const unsigned char *)text, len)) {
        recording r;
        rc = recording_parse_any(path, (const unsigned char *)text, len, &r, err, err_size);
        if (rc == 0) {
            rc = recording_to_trace(&r, out, err, err_size);
            recording_free(&r);
        }
    } else {
        rc = trace_parse_text(path, text, len, out, err, err_size);
    }
    free(text);
    return rc;
}

void trace_free(trace *t)
{
    free(t->path);
    free(t->name);
    free(t->ops);
    memset(t, 0, sizeof *t);
}
