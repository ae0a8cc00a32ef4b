/*
 * Replay: runs a trace's ops through an allocator.
 *
 * The checked replay trusts nothing the allocator returns:
 *   - every block is filled with a pattern derived from its id and offset,
 *     and verified in full before it is freed or resized, so a block that
 *     another block overlapped, or that the allocator wrote into (its own
 *     metadata), or that realloc failed to copy, is caught;
 *   - every block must be aligned (BRISK_ALIGNMENT, or the op's alignment);
 *   - a new block must not overlap any live block: live blocks sit in a
 *     treap keyed by address, so the check is O(log live) per op;
 *   - the allocator's own self-check runs every `check_every` ops and at
 *     the end, and so does live_set_check on the treap above.
 * The timed replay does none of this: it only makes the calls.
 */
#define _GNU_SOURCE
#include "trace.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ALIGNMENT 16

/* ---- the fill pattern --------------------------------------------------
 * Word w of block `id` holds pattern_word(id, w): neighbouring blocks and
 * neighbouring words differ, so a shifted copy or a swapped block shows. */
static inline uint64_t pattern_word(uint32_t id, uint64_t w)
{
    uint64_t x = ((uint64_t)id + 1) * 0x9E3779B97F4A7C15ull ^ (w + 1) * 0xC2B2AE3D27D4EB4Full;
    return x ^ (x >> 29);
}

static void pattern_fill(unsigned char *p, uint32_t id, uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i < to;) {
        uint64_t word = pattern_word(id, i / 8);
        if (i % 8 == 0 && to - i >= 8) {
            memcpy(p + i, &word, 8);
            i += 8;
        } else {
            p[i] = (unsigned char)(word >> (8 * (i % 8)));
            i++;
        }
    }
}

/* Returns the first offset in [0, len) whose byte differs from the
 * pattern, or len when all match. */
static uint64_t pattern_verify(const unsigned char *p, uint32_t id, uint64_t len)
{
    for (uint64_t i = 0; i < len;) {
        uint64_t word = pattern_word(id, i / 8);
        if (i % 8 == 0 && len - i >= 8) {
            uint64_t have;
            memcpy(&have, p + i, 8);
            if (have == word) {
                i += 8;
                continue;
            }
        }
        if (p[i] != (unsigned char)(word >> (8 * (i % 8))))
            return i;
        i++;
    }
    return len;
}

static unsigned pattern_byte(uint32_t id, uint64_t i)
{
    return (unsigned char)(pattern_word(id, i / 8) >> (8 * (i % 8)));
}

/* ---- live blocks by address: a treap over ids --------------------------
 * Node i is id i (an id has at most one live block). Keys are addresses;
 * priorities are pseudo-random (a hash of the id), so the expected depth
 * is O(log n). Invariants: keys increase left to right; a node's priority
 * is at least its children's. */
typedef struct live_set {
    uintptr_t *start, *end;
    int32_t *left, *right;
    int32_t root;
} live_set;

/* A node's priority: a hash of its id, so no table is needed (and a
 * header declaring millions of ids touches no memory for them). */
static inline uint32_t treap_priority(int32_t id)
{
    uint32_t x = (uint32_t)id * 0x9E3779B1u;
    x ^= x >> 15;
    x *= 0x85EBCA77u;
    x ^= x >> 13;
    return x;
}

static int live_set_init(live_set *s, uint32_t n)
{
    size_t count = n ? n : 1;
    s->start = calloc(count, sizeof *s->start);
    s->end = calloc(count, sizeof *s->end);
    s->left = calloc(count, sizeof *s->left);
    s->right = calloc(count, sizeof *s->right);
    s->root = -1;
    return s->start && s->end && s->left && s->right ? 0 : -1;
}

static void live_set_destroy(live_set *s)
{
    free(s->start);
    free(s->end);
    free(s->left);
    free(s->right);
}

/* Splits tree t into keys < key (*l) and keys >= key (*r). */
static void treap_split(live_set *s, int32_t t, uintptr_t key, int32_t *l, int32_t *r)
{
    if (t < 0) {
        *l = *r = -1;
    } else if (s->start[t] < key) {
        treap_split(s, s->right[t], key, &s->right[t], r);
        *l = t;
    } else {
        treap_split(s, s->left[t], key, l, &s->left[t]);
        *r = t;
    }
}

/* Joins l and r, every key of l below every key of r. */
static int32_t treap_merge(live_set *s, int32_t l, int32_t r)
{
    if (l < 0)
        return r;
    if (r < 0)
        return l;
    if (treap_priority(l) > treap_priority(r)) {
        s->right[l] = treap_merge(s, s->right[l], r);
        return l;
    }
    s->left[r] = treap_merge(s, l, s->left[r]);
    return r;
}

static void live_set_insert(live_set *s, uint32_t id, uintptr_t start, uintptr_t end)
{
    int32_t l, r;
    s->start[id] = start;
    s->end[id] = end;
    s->left[id] = s->right[id] = -1;
    treap_split(s, s->root, start, &l, &r);
    s->root = treap_merge(s, treap_merge(s, l, (int32_t)id), r);
}

static void live_set_remove(live_set *s, uint32_t id)
{
    int32_t l, m, r;
    treap_split(s, s->root, s->start[id], &l, &r);
    treap_split(s, r, s->start[id] + 1, &m, &r);
    s->root = treap_merge(s, l, r);
}

/* The live block with the largest start <= addr, or -1. */
static int32_t live_set_at_or_below(const live_set *s, uintptr_t addr)
{
    int32_t t = s->root, best = -1;
    while (t >= 0) {
        if (s->start[t] <= addr) {
            best = t;
            t = s->right[t];
        } else {
            t = s->left[t];
        }
    }
    return best;
}

/* The live block with the smallest start >= addr, or -1. */
static int32_t live_set_at_or_above(const live_set *s, uintptr_t addr)
{
    int32_t t = s->root, best = -1;
    while (t >= 0) {
        if (s->start[t] >= addr) {
            best = t;
            t = s->left[t];
        } else {
            t = s->right[t];
        }
    }
    return best;
}

/* Checks the live set's invariants: keys strictly increase in order, the
 * blocks they stand for do not overlap, every node's priority is at least
 * its children's, and it holds exactly `expected` nodes. Returns 0, or -1
 * with the broken invariant in err. Runs with the allocator's self-check,
 * since the overlap check is only as good as this tree. */
static int live_set_check(const live_set *s, size_t expected, char *err, size_t err_size)
{
    /* Iterative in-order walk with an explicit stack (depth is O(log n)
     * expected, but a broken tree could be deep: the stack grows). */
    size_t cap = 64, depth = 0, count = 0;
    int32_t *stack = malloc(cap * sizeof *stack);
    int32_t t = s->root, prev = -1;
    int rc = 0;
    if (stack == NULL) {
        snprintf(err, err_size, "out of memory checking the live set");
        return -1;
    }
    while ((t >= 0 || depth > 0) && rc == 0) {
        while (t >= 0) {
            if (depth == cap) {
                int32_t *grown = realloc(stack, 2 * cap * sizeof *stack);
                if (grown == NULL) {
                    snprintf(err, err_size, "out of memory checking the live set");
                    rc = -1;
                    break;
                }
                stack = grown;
                cap *= 2;
            }
            if (count + depth > expected) {
                snprintf(err, err_size, "live set: more than the %zu live blocks (a cycle?)",
                         expected);
                rc = -1;
                break;
            }
            stack[depth++] = t;
            t = s->left[t];
        }
        if (rc != 0)
            break;
        t = stack[--depth];
        int32_t kids[2] = {s->left[t], s->right[t]};
        for (int k = 0; k < 2; k++)
            if (kids[k] >= 0 && treap_priority(kids[k]) > treap_priority(t)) {
                snprintf(err, err_size, "live set: id %d outranks its parent id %d", kids[k], t);
                rc = -1;
            }
        if (prev >= 0 && (s->start[prev] >= s->start[t] || s->end[prev] > s->start[t])) {
            snprintf(err, err_size, "live set: id %d at %#lx does not follow id %d at %#lx",
                     t, (unsigned long)s->start[t], prev, (unsigned long)s->start[prev]);
            rc = -1;
        }
        prev = t;
        count++;
        t = s->right[t];
    }
    if (rc == 0 && count != expected) {
        snprintf(err, err_size, "live set: %zu nodes for %zu live blocks", count, expected);
        rc = -1;
    }
    free(stack);
    return rc;
}

/* ---- the checked replay ------------------------------------------------ */

typedef struct checked_state {
    const trace *t;
    const replay_allocator *a;
    void *heap;
    unsigned char **ptr;   /* per id: its block, NULL when not live */
    uint64_t *size;        /* per id: requested bytes */
    uint32_t *alloc_line;  /* per id: line of its live alloc */
    live_set live;
    char *err;
    size_t err_size;
    /* snapshot collection */
    heap_snapshot *snap;
    size_t snap_cap;
} checked_state;

static int replay_fail(checked_state *st, uint32_t line, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int replay_fail(checked_state *st, uint32_t line, const char *format, ...)
{
    int n = snprintf(st->err, st->err_size, "%s:%u: ", st->t->path, line);
    if (n < 0 || (size_t)n >= st->err_size)
        return -1;
    va_list args;
    va_start(args, format);
    int m = vsnprintf(st->err + n, st->err_size - (size_t)n, format, args);
    va_end(args);
    if (m >= 0 && (size_t)(n + m) < st->err_size)
        snprintf(st->err + n + m, st->err_size - (size_t)(n + m), " (allocator %s)",
                 st->a->name);
    return -1;
}

/* Verifies block `id` is intact (its first `len` bytes). */
static int verify_block(checked_state *st, uint32_t id, uint64_t len, uint32_t line,
                        const char *when)
{
    uint64_t bad = pattern_verify(st->ptr[id], id, len);
    if (bad == len)
        return 0;
    return replay_fail(st, line,
                       "contents of id %u changed %s: byte %llu of %llu at %p is 0x%02x, "
                       "expected 0x%02x (block allocated at line %u; something wrote into "
                       "it: an overlapping block or the allocator itself)",
                       id, when, (unsigned long long)bad, (unsigned long long)len,
                       (void *)(st->ptr[id] + bad), st->ptr[id][bad], pattern_byte(id, bad),
                       st->alloc_line[id]);
}

/* Checks a block the allocator just returned for `id`: present, aligned
 * and clear of every live block. Then records it as live. */
static int accept_block(checked_state *st, uint32_t id, unsigned char *p, uint64_t size,
                        uint32_t alignment, uint32_t line, const char *what)
{
    if (p == NULL)
        return replay_fail(st, line,
                           "%s of %llu bytes for id %u returned NULL: out of memory "
                           "(raise --capacity)",
                           what, (unsigned long long)size, id);
    size_t align = alignment > DEFAULT_ALIGNMENT ? alignment : DEFAULT_ALIGNMENT;
    if ((uintptr_t)p % align != 0)
        return replay_fail(st, line, "%s for id %u returned %p, not aligned to %zu", what, id,
                           (void *)p, align);
    uintptr_t start = (uintptr_t)p;
    uint64_t span = size ? size : 1;
    if (span > UINTPTR_MAX - start)
        return replay_fail(st, line, "%s for id %u returned %p, whose %llu bytes wrap around "
                           "the address space", what, id, (void *)p, (unsigned long long)size);
    uintptr_t end = start + (uintptr_t)span;
    int32_t below = live_set_at_or_below(&st->live, start);
    int32_t above = live_set_at_or_above(&st->live, start);
    int32_t other = -1;
    if (below >= 0 && st->live.end[below] > start)
        other = below;
    else if (above >= 0 && st->live.start[above] < end)
        other = above;
    if (other >= 0)
        return replay_fail(st, line,
                           "%s for id %u returned [%p, +%llu), which overlaps live id %d at "
                           "[%p, +%llu) allocated at line %u",
                           what, id, (void *)p, (unsigned long long)size, other,
                           (void *)st->live.start[other],
                           (unsigned long long)st->size[other], st->alloc_line[other]);
    live_set_insert(&st->live, id, start, end);
    st->ptr[id] = p;
    st->size[id] = size;
    return 0;
}

typedef struct snapshot_builder {
    checked_state *st;
    heap_snapshot *snap;
    size_t cap;
    int failed;
} snapshot_builder;

static void snapshot_sink(void *context, uint64_t offset, uint64_t size, uint32_t header,
                          int used, const void *payload)
{
    snapshot_builder *b = context;
    if (b->failed)
        return;
    if (b->snap->num_chunks == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        map_chunk *grown = realloc(b->snap->chunks, cap * sizeof *grown);
        if (grown == NULL) {
            b->failed = 1;
            return;
        }
        b->snap->chunks = grown;
        b->cap = cap;
    }
    map_chunk *c = &b->snap->chunks[b->snap->num_chunks++];
    c->offset = offset;
    c->size = size;
    c->header = header;
    c->used = used ? 1 : 0;
    c->id = -1;
    if (used && payload != NULL) {
        b->snap->base = (uint64_t)(uintptr_t)payload - header - offset;
        int32_t id = live_set_at_or_below(&b->st->live, (uintptr_t)payload);
        if (id >= 0 && b->st->live.start[id] == (uintptr_t)payload)
            c->id = id;
    }
}

static int take_snapshot(checked_state *st, replay_result *out, size_t op_index,
                         uint64_t live_payload, uint32_t line)
{
    heap_snapshot *snap = &out->snapshots[out->num_snapshots];
    memset(snap, 0, sizeof *snap);
    snap->op_index = op_index;
    snap->live_payload = live_payload;
    snap->high_water = st->a->high_water ? st->a->high_water(st->heap) : 0;
    snapshot_builder b = {st, snap, 0, 0};
    int rc = st->a->walk(st->heap, snapshot_sink, &b);
    out->num_snapshots++;
    if (b.failed)
        return replay_fail(st, line, "out of memory taking a heap snapshot");
    if (rc != 0)
        return replay_fail(st, line, "the heap walk stopped early (%d)", rc);
    /* The chunks must tile the region: each starts where the last ended. */
    uint64_t expect = 0;
    for (size_t i = 0; i < snap->num_chunks; i++) {
        if (snap->chunks[i].offset != expect)
            return replay_fail(st, line,
                               "heap walk: chunk %zu starts at offset %llu, expected %llu",
                               i, (unsigned long long)snap->chunks[i].offset,
                               (unsigned long long)expect);
        expect += snap->chunks[i].size;
    }
    return 0;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* The ids still live when the trace ends (their last op is not a free),
 * found in O(ops): a header may declare far more ids than the trace
 * uses, so nothing here walks all of them. Returns NULL (with *count 0)
 * when there are none or memory runs out. */
static uint32_t *leftover_ids(const trace *t, size_t *count)
{
    *count = 0;
    unsigned char *seen = calloc(t->num_ids ? t->num_ids : 1, 1);
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = t->num_ops; seen != NULL && i-- > 0;) {
        const trace_op *op = &t->ops[i];
        if (seen[op->id])
            continue;
        seen[op->id] = 1;
        if (op->kind == OP_FREE)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint32_t *grown = realloc(ids, cap * sizeof *ids);
            if (grown == NULL)
                break;
            ids = grown;
        }
        if (n < cap)
            ids[n++] = op->id;
    }
    free(seen);
    *count = n;
    return ids;
}

int replay_checked(const trace *t, const replay_allocator *a, const replay_options *options,
                   replay_result *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    checked_state st;
    memset(&st, 0, sizeof st);
    st.t = t;
    st.a = a;
    st.err = err;
    st.err_size = err_size;
    size_t ids = t->num_ids ? t->num_ids : 1;
    st.ptr = calloc(ids, sizeof *st.ptr);
    st.size = calloc(ids, sizeof *st.size);
    st.alloc_line = calloc(ids, sizeof *st.alloc_line);
    int rc = -1;
    size_t *plan = NULL, num_plan = 0;
    uint32_t *left = NULL;
    size_t num_left = 0;
    if (!st.ptr || !st.size || !st.alloc_line || live_set_init(&st.live, t->num_ids) != 0) {
        snprintf(err, err_size, "%s: out of memory replaying", t->path);
        goto done;
    }

    /* The peak of live payload follows from the trace alone, so the
     * snapshot at the peak can be planned before replaying. */
    {
        uint64_t live = 0;
        for (size_t i = 0; i < t->num_ops; i++) {
            const trace_op *op = &t->ops[i];
            if (op->kind == OP_ALLOC) {
                st.size[op->id] = op->size;
                live += op->size;
            } else if (op->kind == OP_REALLOC) {
                live = live - st.size[op->id] + op->size;
                st.size[op->id] = op->size;
            } else {
                live -= st.size[op->id];
            }
            if (live > out->peak_live_payload) {
                out->peak_live_payload = live;
                out->peak_op_index = i;
            }
        }
        for (size_t i = 0; i < t->num_ops; i++)
            st.size[t->ops[i].id] = 0;
    }
    bool want_snapshots = options->num_snapshots > 0 && a->walk != NULL && t->num_ops > 0;
    if (want_snapshots) {
        size_t n = options->num_snapshots;
        plan = malloc((n + 1) * sizeof *plan);
        out->snapshots = calloc(n + 1, sizeof *out->snapshots);
        if (!plan || !out->snapshots) {
            snprintf(err, err_size, "%s: out of memory planning snapshots", t->path);
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            plan[i] = n == 1 ? t->num_ops - 1 : (t->num_ops - 1) * i / (n - 1);
        plan[n] = out->peak_op_index;
        qsort(plan, n + 1, sizeof *plan, cmp_size);
        for (size_t i = 0; i <= n; i++)
            if (num_plan == 0 || plan[num_plan - 1] != plan[i])
                plan[num_plan++] = plan[i];
    }
    if (options->curve_points > 0 && t->num_ops > 0) {
        out->curve = calloc(options->curve_points, sizeof *out->curve);
        if (out->curve == NULL) {
            snprintf(err, err_size, "%s: out of memory for the curve", t->path);
            goto done;
        }
    }

    char create_err[256] = "";
    st.heap = a->create(options->capacity, create_err, sizeof create_err);
    if (st.heap == NULL) {
        snprintf(err, err_size, "%s: cannot create the %s allocator: %s", t->path, a->name,
                 create_err);
        goto done;
    }
    size_t check_every = options->check_every;
    if (check_every == 0)
        check_every = t->num_ops / 64 > 0 ? t->num_ops / 64 : 1;
    uint64_t live = 0;
    size_t next_plan = 0, live_count = 0;
    for (size_t i = 0; i < t->num_ops; i++) {
        const trace_op *op = &t->ops[i];
        uint32_t id = op->id;
        if (op->kind == OP_ALLOC) {
            unsigned char *p = a->alloc(st.heap, (size_t)op->size, op->alignment);
            if (accept_block(&st, id, p, op->size, op->alignment, op->line, "alloc") != 0)
                goto done;
            st.alloc_line[id] = op->line;
            pattern_fill(p, id, 0, op->size);
            live += op->size;
        } else if (op->kind == OP_REALLOC) {
            uint64_t old = st.size[id];
            if (verify_block(&st, id, old, op->line, "before its realloc") != 0)
                goto done;
            /* `r id 0` resizes to a minimal block and keeps the id live:
             * C leaves realloc(p, 0) implementation-defined. */
            size_t request = op->size ? (size_t)op->size : 1;
            unsigned char *p = a->realloc(st.heap, st.ptr[id], request);
            if (p == NULL) {
                replay_fail(&st, op->line,
                            "realloc of id %u to %llu bytes returned NULL: out of memory "
                            "(raise --capacity)",
                            id, (unsigned long long)op->size);
                goto done;
            }
            live_set_remove(&st.live, id);
            st.ptr[id] = NULL;
            if (accept_block(&st, id, p, op->size, 0, op->line, "realloc") != 0)
                goto done;
            uint64_t kept = old < op->size ? old : op->size;
            uint64_t bad = pattern_verify(p, id, kept);
            if (bad != kept) {
                replay_fail(&st, op->line,
                            "realloc of id %u from %llu to %llu bytes lost its contents: "
                            "byte %llu is 0x%02x, expected 0x%02x",
                            id, (unsigned long long)old, (unsigned long long)op->size,
                            (unsigned long long)bad, p[bad], pattern_byte(id, bad));
                goto done;
            }
            pattern_fill(p, id, kept, op->size);
            live = live - old + op->size;
        } else {
            if (verify_block(&st, id, st.size[id], op->line, "before its free") != 0)
                goto done;
            a->free(st.heap, st.ptr[id]);
            live_set_remove(&st.live, id);
            live -= st.size[id];
            st.ptr[id] = NULL;
            st.size[id] = 0;
        }
        if (op->kind == OP_ALLOC)
            live_count++;
        else if (op->kind == OP_FREE)
            live_count--;
        if ((i + 1) % check_every == 0) {
            char why[256];
            if (live_set_check(&st.live, live_count, why, sizeof why) != 0) {
                replay_fail(&st, op->line, "replay's own bookkeeping is broken: %s", why);
                goto done;
            }
        }
        if (a->check != NULL && (i + 1) % check_every == 0) {
            out->checks_run++;
            if (a->check(st.heap) != 0) {
                replay_fail(&st, op->line, "the allocator's self-check failed after this op");
                goto done;
            }
        }
        if (out->curve != NULL) {
            size_t n = options->curve_points;
            /* Sample k is taken after op (ops - 1) * k / (n - 1). */
            while (out->num_curve < n &&
                   (n == 1 ? t->num_ops - 1
                           : (t->num_ops - 1) * out->num_curve / (n - 1)) == i) {
                curve_point *c = &out->curve[out->num_curve++];
                c->op_index = i;
                c->live_payload = live;
                c->high_water = a->high_water ? a->high_water(st.heap) : 0;
            }
        }
        if (next_plan < num_plan && plan[next_plan] == i) {
            if (take_snapshot(&st, out, i, live, op->line) != 0)
                goto done;
            if (i == out->peak_op_index)
                out->peak_snapshot = out->num_snapshots - 1;
            next_plan++;
        }
    }
    if (a->check != NULL) {
        out->checks_run++;
        if (a->check(st.heap) != 0) {
            snprintf(err, err_size, "%s: the allocator's self-check failed at the end (allocator %s)",
                     t->path, a->name);
            goto done;
        }
    }
    /* Every block still live must still hold its pattern. */
    left = leftover_ids(t, &num_left);
    for (size_t k = 0; k < num_left; k++) {
        uint32_t id = left[k];
        if (st.ptr[id] != NULL &&
            verify_block(&st, id, st.size[id], st.alloc_line[id], "by the end of the trace") != 0)
            goto done;
    }
    out->high_water = a->high_water ? a->high_water(st.heap) : 0;
    out->footprint = a->footprint && out->high_water ? a->footprint(out->high_water) : 0;
    rc = 0;

done:
    if (st.heap != NULL) {
        /* Blocks live where the replay stopped: at the end, the trace's
         * leftovers; after a failure, any op's id may be live. */
        if (a->free_leftovers && rc == 0) {
            for (size_t k = 0; k < num_left; k++)
                if (st.ptr[left[k]] != NULL)
                    a->free(st.heap, st.ptr[left[k]]);
        } else if (a->free_leftovers && st.ptr != NULL) {
            for (size_t i = 0; i < t->num_ops; i++) {
                uint32_t id = t->ops[i].id;
                if (st.ptr[id] != NULL) {
                    a->free(st.heap, st.ptr[id]);
                    st.ptr[id] = NULL;
                }
            }
        }
        a->destroy(st.heap);
    }
    free(left);
    free(st.ptr);
    free(st.size);
    free(st.alloc_line);
    live_set_destroy(&st.live);
    free(plan);
    if (rc != 0)
        replay_result_free(out);
    return rc;
}

void replay_result_free(replay_result *r)
{
    for (size_t i = 0; i < r->num_snapshots; i++)
        free(r->snapshots[i].chunks);
    free(r->snapshots);
    free(r->curve);
    memset(r, 0, sizeof *r);
}

/* ---- the timed replay --------------------------------------------------
 * One replay of a small trace takes microseconds, below what a clock
 * measures well, so a timed pass repeats the whole trace until it has run
 * at least TIMED_MIN_OPS ops. All rounds share one heap: after each round
 * the blocks still live are freed (outside the clock), and a first,
 * untimed round warms it up, so that neither allocator is timed taking
 * its first page faults (the system malloc's arena is warm from the
 * checked pass). Only the ops are inside the clock, which is the thread's
 * CPU clock: time the machine gave to other processes is not counted. */
#define TIMED_MIN_OPS 1000000u

/* Runs the trace once; returns the op that failed, or NULL. */
static const trace_op *replay_round(const trace *t, const replay_allocator *a, void *heap,
                                    void **ptr)
{
    for (size_t i = 0; i < t->num_ops; i++) {
        const trace_op *op = &t->ops[i];
        if (op->kind == OP_ALLOC) {
            ptr[op->id] = a->alloc(heap, (size_t)op->size, op->alignment);
            if (ptr[op->id] == NULL)
                return op;
        } else if (op->kind == OP_REALLOC) {
            void *p = a->realloc(heap, ptr[op->id], op->size ? (size_t)op->size : 1);
            if (p == NULL)
                return op;
            ptr[op->id] = p;
        } else {
            a->free(heap, ptr[op->id]);
            ptr[op->id] = NULL;
        }
    }
    return NULL;
}

double replay_timed(const trace *t, const replay_allocator *a, size_t capacity, char *err,
                    size_t err_size)
{
    if (t->num_ops == 0)
        return 0.0;
    void **ptr = calloc(t->num_ids ? t->num_ids : 1, sizeof *ptr);
    if (ptr == NULL) {
        snprintf(err, err_size, "%s: out of memory", t->path);
        return -1.0;
    }
    char create_err[256] = "";
    void *heap = a->create(capacity, create_err, sizeof create_err);
    if (heap == NULL) {
        snprintf(err, err_size, "%s: cannot create the %s allocator: %s", t->path, a->name,
                 create_err);
        free(ptr);
        return -1.0;
    }
    size_t num_left;
    uint32_t *left = leftover_ids(t, &num_left);
    size_t rounds = (TIMED_MIN_OPS + t->num_ops - 1) / t->num_ops;
    double total = 0.0;
    const trace_op *failed = NULL;
    for (size_t round = 0; round <= rounds && failed == NULL; round++) {
        double start = os_thread_seconds();
        failed = replay_round(t, a, heap, ptr);
        if (round > 0) /* round 0 warms up */
            total += os_thread_seconds() - start;
        if (failed == NULL) {
            for (size_t k = 0; k < num_left; k++) {
                a->free(heap, ptr[left[k]]);
                ptr[left[k]] = NULL;
            }
        } else {
            for (size_t i = 0; i < t->num_ops; i++) {
                uint32_t id = t->ops[i].id;
                if (ptr[id] != NULL) {
                    a->free(heap, ptr[id]);
                    ptr[id] = NULL;
                }
            }
        }
    }
    a->destroy(heap);
    free(ptr);
    free(left);
    if (failed != NULL) {
        snprintf(err, err_size, "%s:%u: %s returned NULL for %llu bytes (raise --capacity)",
                 t->path, failed->line, a->name, (unsigned long long)failed->size);
        return -1.0;
    }
    /* Seconds per single replay of the trace. */
    return total / (double)rounds;
}
