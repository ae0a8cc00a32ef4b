/*
 * The allocation-heavy C program of the recording-overhead benchmark
 * (overhead.py): N malloc/free pairs (default 2,500,000, so 5 million
 * calls) over 64 slots, sizes 16 to 215 bytes, through one helper
 * function. Prints a checksum so nothing is optimized away.
 */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static void *get(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2500000;
    void *keep[64] = {0};
    unsigned long sum = 0;
    for (long i = 0; i < n; i++) {
        unsigned k = (unsigned)(i * 2654435761u) % 64;
        free(keep[k]);
        keep[k] = get(16 + (size_t)(i % 200));
        if (keep[k] == NULL)
            return 1;
        sum += (unsigned long)keep[k] & 0xff;
    }
    for (int k = 0; k < 64; k++)
        free(keep[k]);
    printf("%lu\n", sum);
    return 0;
}
