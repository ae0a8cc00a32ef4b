/*
 * glibc_simple: the pattern of glibc's bench-malloc-simple: allocate
 * COUNT blocks of one SIZE, free them all, and again, for every pair of
 * SIZE in 16, 32, 64, 128, 256, 1024 B and COUNT in 25, 100, 400, 1600
 * whose blocks add up to at most 100 KiB (the others are left out: glibc
 * gives a free heap top above its trim threshold of 128 KiB back to the
 * kernel every round, and then takes 20-100 times as long, which would
 * measure its trimming, not the pattern).
 * Every block is written in full after malloc and read before free, as
 * a program that allocates it would; with `untouched` (the original
 * benchmark's pattern, reported apart) nothing is written.
 *
 *   glibc_simple [SCALE [untouched]]
 */
#define _GNU_SOURCE
#include "classic.h"

int main(int argc, char **argv)
{
    const char *mode = classic_args(argc, argv, "glibc_simple", " [untouched]");
    int touch = 1;
    if (mode != NULL) {
        if (strcmp(mode, "untouched") != 0) {
            fprintf(stderr, "glibc_simple: the mode must be \"untouched\", not \"%s\"\n", mode);
            return 2;
        }
        touch = 0;
    }
    static const size_t sizes[] = {16, 32, 64, 128, 256, 1024};
    static const size_t counts[] = {25, 100, 400, 1600};
    size_t blocks_per_pair = classic_scaled(touch ? 4e5 : 8e5);
    unsigned char **block = xcalloc(1600, sizeof *block);
    uint64_t result = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            size_t size = sizes[si], count = counts[ci];
            if (size * count > 100 * 1024)
                continue;
            size_t rounds = blocks_per_pair / count + 1;
            for (size_t r = 0; r < rounds; r++) {
                for (size_t i = 0; i < count; i++) {
                    block[i] = xmalloc(size);
                    if (touch)
                        memset(block[i], (int)((r + i) & 0xff), size);
                }
                for (size_t i = 0; i < count; i++) {
                    if (touch)
                        result += block[i][size / 2] + block[i][size - 1];
                    free(block[i]);
                }
                result += count;
            }
        }
    free(block);
    classic_result(result);
    return 0;
}
