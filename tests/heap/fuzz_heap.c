/* libFuzzer target for the region heap. The input is a program:
 *
 *   byte 0        heap options: bit 0 BRISK_HEAP_WIPE, bits 1-3 pick the
 *                 buffer size (2 KiB .. 256 KiB, plus the deferred
 *                 stacks' DEFERRED_SIZE for a deferring heap), bit 4
 *                 BRISK_HEAP_THREADSAFE (one thread: exercises the lock),
 *                 bit 5 BRISK_HEAP_CANARY, bit 6 BRISK_HEAP_WIPE_CHECK,
 *                 bit 7 BRISK_HEAP_DEFER_MERGE (bits 0, 5 and 6 are then
 *                 ignored: the hardening options cannot be combined
 *                 with it)
 *   then ops      one byte each, followed by its operands:
 *     op % 8 == 0  alloc          slot, size (2 bytes)
 *               1  calloc         slot, count, size (1 byte each)
 *               2  realloc        slot, size (2 bytes)
 *               3  alloc_aligned  slot, log2 alignment (1 byte), size (2)
 *               4  free           slot
 *               5  free a bad pointer (an already freed block, or an
 *                  interior one), with a handler that returns installed
 *               6  shrink-realloc slot, divisor
 *               7  usable_size of a bad pointer (handler installed)
 *                  (5 and 7 on a deferring heap, when the freed block is
 *                  still deferred: first 8 bytes and a fill byte written
 *                  into it, a write after free the heap must not notice:
 *                  it reads nothing from a deferred block)
 *   Every block is filled with a pattern derived from its id and checked
 *   when it is freed or resized; every call that may change the heap goes
 *   through heap_checked.h, which runs brisk_heap_check after it and
 *   aborts naming the call when the heap is broken; a misuse must be
 *   reported and change nothing. Any other disagreement traps.
 *
 * Short run (registered with ctest):  fuzz_heap -runs=20000 -seed=1
 * Long run:  cmake --build build --target fuzz_heap &&
 *            ./build/tests/heap/fuzz_heap -max_total_time=600
 */
#include "heap_checked.h"
#include "pattern.h"
#include "report.h"

#include "brisk.h"
#include "heap/heap.h" /* DEFERRED_SIZE, the block map */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 32

typedef struct slot {
    unsigned char *ptr;
    size_t size;
    unsigned id;
} slot;

static _Alignas(16) unsigned char buffer[256 * 1024 + DEFERRED_SIZE];
static report_log reports;

static void verify(const slot *s, size_t n)
{
    if (!filled(s->ptr, n, s->id))
        __builtin_trap();
}

typedef struct reader {
    const uint8_t *data;
    size_t left;
} reader;

static unsigned take(reader *r)
{
    if (r->left == 0)
        return 0;
    r->left--;
    return *r->data++;
}

static size_t take_size(reader *r)
{
    size_t size = take(r);
    size |= (size_t)take(r) << 8;
    return size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    reader r = {data, size};
    unsigned options = take(&r);
    size_t heap_size = (size_t)2048 << (options >> 1 & 7);
    unsigned flags = (options & 1 ? BRISK_HEAP_WIPE : 0) | (options & 16 ? BRISK_HEAP_THREADSAFE : 0) |
                     (options & 32 ? BRISK_HEAP_CANARY : 0) | (options & 64 ? BRISK_HEAP_WIPE_CHECK : 0);
    if (options & 128) {
        flags = (flags & BRISK_HEAP_THREADSAFE) | BRISK_HEAP_DEFER_MERGE;
        /* Its stacks take about 6 KiB of bookkeeping (a 2 KiB buffer could
         * not hold them): added, so that a deferring heap gets about the
         * capacities the others do, the smallest ones included, where
         * flushes are frequent. */
        heap_size += DEFERRED_SIZE;
    }
    brisk_heap *heap = checked_create_ex(buffer, heap_size, flags);
    if (heap == NULL)
        __builtin_trap();
    slot slots[SLOTS];
    memset(slots, 0, sizeof slots);
    unsigned next_id = 0;
    unsigned char *freed_pointer = NULL;

    while (r.left > 0) {
        unsigned op = take(&r) % 8;
        slot *s = &slots[take(&r) % SLOTS];
        unsigned char *p = NULL;
        size_t n = 0;
        switch (op) {
        case 0:
        case 1:
        case 3:
            if (s->ptr != NULL) {
                verify(s, s->size);
                checked_free(heap, s->ptr);
                freed_pointer = s->ptr;
                s->ptr = NULL;
            }
            if (op == 0) {
                n = take_size(&r);
                p = checked_alloc(heap, n);
            } else if (op == 1) {
                size_t count = take(&r), each = take(&r);
                n = count * each;
                p = checked_calloc(heap, count, each);
                if (p != NULL)
                    for (size_t i = 0; i < n; i++)
                        if (p[i] != 0)
                            __builtin_trap();
            } else {
                size_t alignment = (size_t)1 << (take(&r) % 13);
                n = take_size(&r);
                p = checked_alloc_aligned(heap, alignment, n);
                if (p != NULL && ((uintptr_t)p & (alignment - 1)) != 0)
                    __builtin_trap();
            }
            if (p != NULL) {
                size_t usable = brisk_heap_usable_size(heap, p);
                if (usable < n)
                    __builtin_trap();
                if (flags & (BRISK_HEAP_WIPE | BRISK_HEAP_WIPE_CHECK))
                    for (size_t i = 0; i < usable; i++)
                        if (p[i] != 0)
                            __builtin_trap();
                s->ptr = p;
                s->size = n;
                s->id = ++next_id;
                fill(s->ptr, s->size, s->id);
            }
            break;
        case 2:
        case 6:
            if (s->ptr == NULL)
                break;
            verify(s, s->size);
            n = op == 2 ? take_size(&r) : s->size / (take(&r) % 4 + 1);
            p = checked_realloc(heap, s->ptr, n);
            if (n == 0) {
                if (p != NULL)
                    __builtin_trap();
                freed_pointer = s->ptr;
                s->ptr = NULL;
            } else if (p != NULL) {
                verify(&(slot){p, 0, s->id}, n < s->size ? n : s->size);
                if (p != s->ptr)
                    freed_pointer = s->ptr;
                s->ptr = p;
                s->size = n;
                fill(s->ptr, s->size, s->id);
            } else {
                verify(s, s->size);
            }
            break;
        case 4:
            if (s->ptr != NULL) {
                verify(s, s->size);
                checked_free(heap, s->ptr);
                freed_pointer = s->ptr;
                s->ptr = NULL;
            }
            break;
        case 5:
        case 7: {
            /* A pointer that is surely not a live block: an interior one
             * of a live block, or one freed since (unless reused). */
            unsigned char *bad = NULL;
            if (s->ptr != NULL && s->size > 16) {
                bad = s->ptr + 16 * (1 + take(&r) % ((s->size - 1) / 16));
            } else if (freed_pointer != NULL) {
                bad = freed_pointer;
                for (int i = 0; i < SLOTS; i++)
                    if (slots[i].ptr == freed_pointer)
                        bad = NULL; /* handed out again: live */
            }
            if (bad == NULL)
                break;
            if ((flags & BRISK_HEAP_DEFER_MERGE) && bad == freed_pointer &&
                block_map_get(heap, chunk_granule(heap, chunk_of_payload(bad))) == BLOCK_MAP_DEFERRED) {
                uint64_t word = 0;
                for (unsigned i = 0; i < 8; i++)
                    word |= (uint64_t)take(&r) << (8 * i);
                memcpy(bad, &word, sizeof word);
                memset(bad + 8, (int)take(&r), chunk_size(chunk_of_payload(bad)) - CHUNK_HEADER_SIZE - 8);
            }
            brisk_heap_stats before, after;
            brisk_heap_get_stats(heap, &before);
            int seen = reports.count;
            brisk_set_error_handler(record_report, &reports);
            if (op == 5)
                checked_free(heap, bad);
            else if (checked_usable_size(heap, bad) != 0)
                __builtin_trap();
            brisk_set_error_handler(NULL, NULL);
            brisk_heap_get_stats(heap, &after);
            if (reports.count != seen + 1 || memcmp(&before, &after, sizeof before) != 0)
                __builtin_trap();
            break;
        }
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].ptr != NULL) {
            verify(&slots[i], slots[i].size);
            checked_free(heap, slots[i].ptr);
        }
    }
    brisk_heap_stats end;
    brisk_heap_get_stats(heap, &end);
    if (end.used_chunks != 0 || end.free_bytes != end.capacity)
        __builtin_trap();
    if (flags & BRISK_HEAP_DEFER_MERGE) {
        /* Deferred blocks may remain: one request of the whole capacity
         * must merge them all and succeed. */
        void *whole = checked_alloc(heap, end.capacity - 8);
        if (whole == NULL)
            __builtin_trap();
        checked_free(heap, whole);
        brisk_heap_get_stats(heap, &end);
    }
    if (end.used_chunks != 0 || end.free_chunks != 1)
        __builtin_trap();
    brisk_heap_destroy(heap);
    return 0;
}
