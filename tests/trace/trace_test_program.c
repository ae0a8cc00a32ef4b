/*
 * A program with a known allocation pattern, recorded by
 * test_trace_record.py: each allocation function once with a distinctive
 * size, a vfork child, two threads of alloc/free pairs, and a forked
 * child with a pattern of its own that leaves through _exit. Prints the
 * forked child's pid.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREAD_BLOCKS 1000

static void *thread_work(void *arg)
{
    (void)arg;
    for (int i = 0; i < THREAD_BLOCKS; i++) {
        char *p = malloc(4242);
        if (p == NULL)
            return NULL;
        p[0] = (char)i;
        free(p);
    }
    return NULL;
}

int main(void)
{
    char *a = malloc(12345);
    /* A vfork child shares this process's memory (the recorder's too) and
     * leaves through _exit: recording must go on in the parent. */
    pid_t vchild = vfork();
    if (vchild == 0)
        _exit(0);
    if (vchild < 0 || waitpid(vchild, NULL, 0) < 0)
        return 1;
    char *b = calloc(10, 33);
    char *c = realloc(NULL, 40);
    char *c2 = realloc(c, 50000);
    void *d = NULL;
    if (posix_memalign(&d, 64, 1000) != 0)
        return 1;
    void *e = aligned_alloc(128, 256);
    void *f = memalign(256, 100);
    void *g = valloc(10);
    /* Not a power of two: glibc rounds it up. (volatile: clang rejects a
     * constant one at compile time.) */
    volatile size_t odd_alignment = 48;
    void *h = memalign(odd_alignment, 101);
    if (!a || !b || !c2 || !e || !f || !g || !h)
        return 1;
    memset(a, 1, 12345);
    free(b);
    free(d);
    free(e);
    free(f);
    free(g);
    free(h);

    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&threads[i], NULL, thread_work, NULL) != 0)
            return 1;
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);

    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        char *blocks[10];
        for (int i = 0; i < 10; i++)
            blocks[i] = malloc(777);
        for (int i = 0; i < 10; i++)
            free(blocks[i]);
        free(a); /* allocated before the fork: not in the child's trace */
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child %ld\n", (long)pid);
    free(a);
    free(c2);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
