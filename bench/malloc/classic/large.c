/*
 * Large blocks, 64 KiB - 4 MiB (log-uniform), eight live at a time: each
 * step frees a random one and allocates another in its place. What the
 * program does with a block is the pattern:
 *   - malloc_large: writes all of it (a buffer filled, then read back in
 *     part before it is freed);
 *   - sparse_touch: writes one byte per 64 KiB of it (a buffer sized for
 *     the worst case and mostly unused), issue 12's pattern;
 *   - malloc_large untouched: writes nothing (reported apart).
 * The program built from this file takes its pattern from its name.
 *
 *   malloc_large [SCALE [untouched]]
 *   sparse_touch [SCALE]
 */
#define _GNU_SOURCE
#include "classic.h"

#ifndef SPARSE_TOUCH
#error "build with -DSPARSE_TOUCH=1 (sparse_touch) or -DSPARSE_TOUCH=0 (malloc_large)"
#endif

enum { LIVE = 8, FULL, SPARSE, NONE };

int main(int argc, char **argv)
{
    const char *name = SPARSE_TOUCH ? "sparse_touch" : "malloc_large";
    const char *mode = classic_args(argc, argv, name, SPARSE_TOUCH ? "" : " [untouched]");
    int touch = SPARSE_TOUCH ? SPARSE : FULL;
    if (mode != NULL) {
        if (strcmp(mode, "untouched") != 0) {
            fprintf(stderr, "%s: the mode must be \"untouched\", not \"%s\"\n", name, mode);
            return 2;
        }
        touch = NONE;
    }
    size_t steps = classic_scaled(touch == FULL ? 400 : touch == SPARSE ? 4000 : 15000);
    const size_t stride = touch == SPARSE ? 65536 : 4096;
    unsigned char *block[LIVE] = {0};
    size_t size[LIVE] = {0};
    uint64_t rng = 0x1a79eULL, result = 0;
    for (size_t i = 0; i < steps; i++) {
        size_t s = rng_next(&rng) % LIVE;
        if (block[s] != NULL) {
            if (touch != NONE)
                for (size_t off = 0; off < size[s]; off += stride)
                    result += block[s][off];
            free(block[s]);
        }
        size[s] = classic_log_size(&rng, 16, 22);
        block[s] = xmalloc(size[s]);
        result += size[s];
        if (touch == FULL)
            memset(block[s], (int)(i & 0xff), size[s]);
        else if (touch == SPARSE)
            for (size_t off = 0; off < size[s]; off += stride)
                block[s][off] = (unsigned char)(i + off / stride);
    }
    for (size_t s = 0; s < LIVE; s++)
        free(block[s]);
    classic_result(result);
    return 0;
}
