/*
 * The multi-threaded program of the recording-overhead benchmark
 * (overhead.py): THREADS threads (default 4), each making N malloc/free
 * pairs (default 250,000) over 32 slots of its own, sizes 16 to 527.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static long pairs = 250000;

static void *work(void *arg)
{
    unsigned long seed = (unsigned long)(size_t)arg, sum = 0;
    void *keep[32] = {0};
    for (long i = 0; i < pairs; i++) {
        seed = seed * 6364136223846793005ul + 1442695040888963407ul;
        unsigned k = (unsigned)(seed >> 59);
        free(keep[k]);
        keep[k] = malloc(16 + (size_t)((seed >> 33) % 512));
        if (keep[k] == NULL)
            exit(1);
        sum += (unsigned long)keep[k] & 0xff;
    }
    for (int k = 0; k < 32; k++)
        free(keep[k]);
    return (void *)sum;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2)
        pairs = atol(argv[2]);
    if (threads < 1 || threads > 64)
        return 2;
    pthread_t t[64];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, work, (void *)(size_t)(i + 1)) != 0)
            return 1;
    unsigned long sum = 0;
    for (int i = 0; i < threads; i++) {
        void *r;
        pthread_join(t[i], &r);
        sum += (unsigned long)r;
    }
    printf("%lu\n", sum);
    return 0;
}
