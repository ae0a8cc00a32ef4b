/*
 * Following a recording's blocks by address: which allocation a free or
 * realloc ends, in the order the calls happened (the steps), the live
 * bytes after every step and their peak, and which blocks were temporary
 * (freed by the thread that allocated them before it allocated anything
 * else, as heaptrack counts them).
 *
 * A free of an address no recorded allocation returned (a block from
 * before the recorder started, in the dynamic loader or before a fork) is
 * counted and otherwise ignored. An allocation returning an address that
 * is still live ends the block there: its free was not recorded (made
 * while the recorder itself ran, by a signal handler).
 */
#include "trace.h"
#include "trace_format.h"

#include <stdlib.h>
#include <string.h>

typedef struct addr_map {
    uint64_t *keys; /* 0: empty */
    uint32_t *values;
    size_t size, used;
} addr_map;

static size_t map_slot(const addr_map *m, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (m->size - 1);
}

static int map_init(addr_map *m, size_t size)
{
    m->keys = calloc(size, sizeof *m->keys);
    m->values = malloc(size * sizeof *m->values);
    m->size = size;
    m->used = 0;
    return m->keys && m->values ? 0 : -1;
}

static void map_free(addr_map *m)
{
    free(m->keys);
    free(m->values);
}

static size_t map_find(const addr_map *m, uint64_t key)
{
    for (size_t i = map_slot(m, key);; i = (i + 1) & (m->size - 1)) {
        if (m->keys[i] == key)
            return i;
        if (m->keys[i] == 0)
            return SIZE_MAX;
    }
}

static void map_put_slot(addr_map *m, uint64_t key, uint32_t value)
{
    size_t i = map_slot(m, key);
    while (m->keys[i] != 0)
        i = (i + 1) & (m->size - 1);
    m->keys[i] = key;
    m->values[i] = value;
    m->used++;
}

static int map_put(addr_map *m, uint64_t key, uint32_t value)
{
    if ((m->used + 1) * 2 > m->size) {
        addr_map bigger;
        if (map_init(&bigger, m->size * 2) != 0) {
            map_free(&bigger);
            return -1;
        }
        for (size_t i = 0; i < m->size; i++)
            if (m->keys[i] != 0)
                map_put_slot(&bigger, m->keys[i], m->values[i]);
        map_free(m);
        *m = bigger;
    }
    map_put_slot(m, key, value);
    return 0;
}

/* Removes slot i, shifting later members of its probe run back. */
static void map_remove(addr_map *m, size_t hole)
{
    size_t i = hole;
    for (;;) {
        i = (i + 1) & (m->size - 1);
        if (m->keys[i] == 0)
            break;
        size_t home = map_slot(m, m->keys[i]);
        int between = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (!between) {
            m->keys[hole] = m->keys[i];
            m->values[hole] = m->values[i];
            hole = i;
        }
    }
    m->keys[hole] = 0;
    m->used--;
}

static int is_alloc_kind(unsigned kind) { return kind >= TF_MALLOC && kind <= TF_MEMALIGN; }

int recording_blocks(const recording *r, rec_blocks *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    size_t cap = 1024;
    addr_map map;
    uint32_t *last = malloc((r->num_threads ? r->num_threads : 1) * sizeof *last);
    uint32_t *released = malloc((r->num_events ? r->num_events : 1) * sizeof *released);
    out->blocks = malloc(cap * sizeof *out->blocks);
    out->step_made = malloc((r->num_steps ? r->num_steps : 1) * sizeof *out->step_made);
    out->step_ended = malloc((r->num_steps ? r->num_steps : 1) * sizeof *out->step_ended);
    int rc = map_init(&map, 1024);
    if (rc != 0 || last == NULL || released == NULL || out->blocks == NULL ||
        out->step_made == NULL || out->step_ended == NULL)
        goto oom;
    for (size_t t = 0; t < r->num_threads; t++)
        last[t] = REC_NONE;
    uint64_t live = 0;
    for (size_t i = 0; i < r->num_steps; i++) {
        const rec_step *st = &r->steps[i];
        const rec_event *e = &r->events[st->event];
        out->step_made[i] = out->step_ended[i] = REC_NONE;
        int is_realloc = e->kind == TF_REALLOC || e->kind == TF_REALLOCARRAY;
        uint64_t ends = 0; /* the address this step lets go of */
        int frees = 0;
        if (is_realloc && st->role == 0) {
            released[st->event] = REC_NONE;
            if (e->old_addr != 0 && (e->addr != 0 || e->size == 0))
                ends = e->old_addr, frees = e->addr == 0;
        } else if (!is_realloc && !is_alloc_kind(e->kind)) {
            ends = e->addr, frees = 1;
        }
        if (ends != 0) {
            size_t slot = map_find(&map, ends);
            if (slot == SIZE_MAX) {
                if (frees)
                    out->unknown_frees++;
            } else {
                uint32_t b = map.values[slot];
                map_remove(&map, slot);
                out->blocks[b].died = i;
                live -= out->blocks[b].size;
                out->step_ended[i] = b;
                if (frees && last[e->thread] == b)
                    out->blocks[b].temporary = 1;
                if (!frees)
                    released[st->event] = b;
            }
        }
        int makes = e->addr != 0 && (is_alloc_kind(e->kind) || (is_realloc && st->role == 1));
        if (makes) {
            size_t slot = map_find(&map, e->addr);
            if (slot != SIZE_MAX) { /* its free went unrecorded */
                uint32_t b = map.values[slot];
                map_remove(&map, slot);
                out->blocks[b].died = i;
                live -= out->blocks[b].size;
                out->step_ended[i] = b;
            }
            if (out->count == cap) {
                rec_block *grown = realloc(out->blocks, cap * 2 * sizeof *grown);
                if (grown == NULL)
                    goto oom;
                out->blocks = grown;
                cap *= 2;
            }
            if (out->count >= REC_NONE)
                goto oom;
            uint32_t b = (uint32_t)out->count++;
            rec_block *blk = &out->blocks[b];
            blk->event = st->event;
            blk->prev = is_realloc ? released[st->event] : REC_NONE;
            blk->size = e->size;
            blk->born = i;
            blk->died = SIZE_MAX;
            blk->temporary = 0;
            if (map_put(&map, e->addr, b) != 0)
                goto oom;
            live += e->size;
            last[e->thread] = b;
            out->step_made[i] = b;
            if (live > out->peak_bytes) {
                out->peak_bytes = live;
                out->peak_step = i;
                out->peak_time_ns = e->time_ns;
            }
        }
    }
    map_free(&map);
    free(last);
    free(released);
    return 0;
oom:
    map_free(&map);
    free(last);
    free(released);
    rec_blocks_free(out);
    snprintf(err, err_size, "%s: out of memory following %zu events", r->path, r->num_events);
    return -1;
}

void rec_blocks_free(rec_blocks *b)
{
    free(b->blocks);
    free(b->step_made);
    free(b->step_ended);
    memset(b, 0, sizeof *b);
}
