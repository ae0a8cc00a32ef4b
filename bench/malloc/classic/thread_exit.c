/*
 * thread_exit: threads that exit and leave memory behind, the pattern of
 * a thread-per-connection server (issue 13). The main thread starts
 * short-lived threads, two at a time; each allocates and frees a few
 * small blocks of working memory, then allocates one 128-byte block,
 * writes it, leaves it in a shared ring and exits. The main thread frees
 * each such block 256 threads later. What is live stays small and flat;
 * the peak RSS shows what the exited threads' memory costs.
 *
 *   thread_exit [SCALE]
 */
#define _GNU_SOURCE
#include "classic.h"

enum { RING = 256, SCRATCH = 32, LEFT = 128 };

typedef struct job {
    size_t index;
    unsigned char *left; /* the block the thread leaves behind */
    uint64_t sum;
} job;

static void *run(void *arg)
{
    job *j = arg;
    uint64_t rng = 0x7e417ULL + j->index, sum = 0;
    unsigned char *scratch[SCRATCH];
    for (size_t i = 0; i < SCRATCH; i++)
        scratch[i] = checked_new(rng_range(&rng, CHECKED_MIN, 256), j->index * SCRATCH + i);
    for (size_t i = 0; i < SCRATCH; i++)
        sum += checked_free(scratch[i]);
    j->left = checked_new(LEFT, j->index);
    j->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    classic_args(argc, argv, "thread_exit", "");
    size_t threads = classic_scaled(10000);
    unsigned char **ring = xcalloc(RING, sizeof *ring);
    uint64_t result = 0;
    for (size_t t = 0; t < threads; t += 2) {
        job jobs[2];
        pthread_t tid[2];
        size_t n = threads - t < 2 ? threads - t : 2;
        for (size_t k = 0; k < n; k++) {
            jobs[k] = (job){.index = t + k};
            classic_thread(&tid[k], run, &jobs[k]);
        }
        for (size_t k = 0; k < n; k++) {
            classic_join(tid[k]);
            result += jobs[k].sum;
            size_t r = (t + k) % RING;
            if (ring[r] != NULL)
                result += checked_free(ring[r]);
            ring[r] = jobs[k].left;
        }
    }
    for (size_t r = 0; r < RING; r++)
        if (ring[r] != NULL)
            result += checked_free(ring[r]);
    free(ring);
    classic_result(result);
    return 0;
}
