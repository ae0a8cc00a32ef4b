/*
 * The region heap's optional hardening (BRISK_HEAP_CANARY,
 * BRISK_HEAP_WIPE_CHECK): canaries after blocks and the check that freed
 * memory stays wiped until it is handed out again. The layout and the
 * rules are in heap/heap.h; what each option catches, and what it does
 * not, is in docs/security.md.
 *
 * None of this runs unless a heap was created with the flag: heap.c calls
 * in here only behind a test of heap->flags.
 */
#include "heap/heap.h"

#include <string.h>

/* The canary of a used chunk at c whose header reads `head`: its size
 * and its flag bits, so that an overflow clearing the PREV_USED bit of
 * the next header (to make its free merge backwards over a fake chunk)
 * breaks that chunk's canary. PREV_USED changes legitimately when the
 * left neighbour is freed or handed out: heap_canary_refresh. */
static inline uint64_t canary_value(const brisk_heap *heap, const heap_chunk *c, size_t head)
{
    return mix64(heap->canary_key ^ (uint64_t)(uintptr_t)c ^ ((uint64_t)head << 1));
}

void heap_canary_write(const brisk_heap *heap, heap_chunk *c)
{
    uint64_t value = canary_value(heap, c, c->head);
    memcpy((char *)c + chunk_size(c) - CHUNK_CANARY_SIZE, &value, sizeof value);
}

bool heap_canary_intact(const brisk_heap *heap, const heap_chunk *c)
{
    uint64_t stored;
    memcpy(&stored, (const char *)c + chunk_size(c) - CHUNK_CANARY_SIZE, sizeof stored);
    return stored == canary_value(heap, c, c->head);
}

void heap_canary_refresh(const brisk_heap *heap, heap_chunk *c, size_t old_head)
{
    uint64_t stored;
    memcpy(&stored, (const char *)c + chunk_size(c) - CHUNK_CANARY_SIZE, sizeof stored);
    /* A canary already broken stays broken: its block's free reports it. */
    if (stored == canary_value(heap, c, old_head))
        heap_canary_write(heap, c);
}

static const void *bytes_first_nonzero(const void *from, size_t len)
{
    /* Word at a time over the aligned middle; bytes at the edges. */
    const unsigned char *p = from;
    const unsigned char *end = p + len;
    while (p < end && ((uintptr_t)p & (sizeof(uint64_t) - 1)) != 0) {
        if (*p != 0)
            return p;
        p++;
    }
    while ((size_t)(end - p) >= 4 * sizeof(uint64_t)) {
        uint64_t w[4];
        memcpy(w, p, sizeof w);
        if ((w[0] | w[1] | w[2] | w[3]) != 0)
            break;
        p += sizeof w;
    }
    for (; p < end; p++)
        if (*p != 0)
            return p;
    return NULL;
}

/* Memory brisk mapped itself (private anonymous): its pages that are
 * not resident read zero. A caller's buffer may be a file or shared
 * mapping, whose pages that are not resident hold data. */
static bool heap_region_is_ours(const brisk_heap *heap)
{
    return heap->map_base != NULL;
}

static bool visit_find_nonzero(uintptr_t from, uintptr_t to, void *context)
{
    const void **found = context;
    *found = bytes_first_nonzero((const void *)from, (size_t)(to - from));
    return *found == NULL;
}

const void *heap_wipe_first_dirty(const brisk_heap *heap, const void *from, size_t len)
{
    if (len < HEAP_RESIDENCY_SPAN_MIN || !heap_region_is_ours(heap))
        return bytes_first_nonzero(from, len);
    const void *found = NULL;
    resident_runs((uintptr_t)from, (uintptr_t)from + len, visit_find_nonzero, &found);
    return found;
}

static bool visit_zero_fill(uintptr_t from, uintptr_t to, void *unused)
{
    (void)unused;
    memset((void *)from, 0, (size_t)(to - from));
    return true;
}

void heap_wipe_span(const brisk_heap *heap, void *from, size_t len)
{
    if (len < HEAP_RESIDENCY_SPAN_MIN || !heap_region_is_ours(heap)) {
        memset(from, 0, len);
        return;
    }
    resident_runs((uintptr_t)from, (uintptr_t)from + len, visit_zero_fill, NULL);
}

void heap_report_write_after_free(const void *payload)
{
    report_error(BRISK_ERROR_USE_AFTER_FREE,
                 "use after free: memory written after it was freed (found when handed out again)",
                 payload);
}

uint64_t heap_canary_key_new(const void *heap)
{
    return random_secret(heap) | 1u;
}
