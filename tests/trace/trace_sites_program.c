/*
 * A program whose allocation sites, peak and leaks are known by
 * construction, for test_trace_report.py (the sizes here are the ones it
 * checks). In order:
 *
 *   1. the peak: peak_big 8 x 100000 bytes, peak_small 4 x 25000, the
 *      shared library's lib_hold 3 x 50000, and THREADS threads each
 *      thread_hold 10 x 3000; all live at once, then freed;
 *   2. temporaries: temp_site allocates and frees 64 bytes 1000 times;
 *   3. reallocs: grow_site reallocs one block through 1000, 2000, ...
 *      10000 bytes, then frees it;
 *   4. leaks: leak_here 3 x 777 (malloc), the library's lib_leak
 *      2 x 4321 (calloc), aligned_leak 1 x 640 (aligned_alloc), and each
 *      thread thread_leak 1 x 1234;
 *   5. robustness: two threads allocating while a third keeps sending
 *      them a signal whose handler allocates (so some land inside the
 *      recorder), and the main thread dlopens and dlcloses the library
 *      meanwhile.
 *
 * It prints a checksum of what it computed, which recording must not
 * change. Built with -fno-optimize-sibling-calls and noinline sites so
 * every site keeps its frame.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <ucontext.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 4

void *lib_hold(size_t size);
void *lib_leak(size_t size);

static void *held[64];
static size_t num_held;
static void *leaked[16];
static size_t num_leaked;
static uint64_t checksum;

static void keep(void *p, size_t size)
{
    if (p == NULL)
        exit(3);
    memset(p, (int)(size & 0xff), size);
    held[num_held++] = p;
}

__attribute__((noinline)) static void peak_big(void)
{
    for (int i = 0; i < 8; i++)
        keep(malloc(100000), 100000);
}

__attribute__((noinline)) static void peak_small(void)
{
    for (int i = 0; i < 4; i++)
        keep(malloc(25000), 25000);
}

__attribute__((noinline)) static void peak_lib(void)
{
    for (int i = 0; i < 3; i++)
        keep(lib_hold(50000), 50000);
}

typedef struct thread_blocks {
    void *blocks[10];
    void *leak;
} thread_blocks;

__attribute__((noinline)) static void thread_hold(thread_blocks *t)
{
    for (int i = 0; i < 10; i++) {
        t->blocks[i] = malloc(3000);
        if (t->blocks[i] == NULL)
            exit(3);
        memset(t->blocks[i], i, 3000);
    }
}

__attribute__((noinline)) static void thread_leak(thread_blocks *t)
{
    t->leak = malloc(1234);
    if (t->leak == NULL)
        exit(3);
    memset(t->leak, 1, 1234);
}

static void *thread_main(void *arg)
{
    thread_hold(arg);
    thread_leak(arg);
    return NULL;
}

__attribute__((noinline)) static void temp_site(void)
{
    for (int i = 0; i < 1000; i++) {
        unsigned char *p = malloc(64);
        if (p == NULL)
            exit(3);
        for (int k = 0; k < 64; k++)
            p[k] = (unsigned char)(i + k);
        checksum += p[i % 64];
        free(p);
    }
}

__attribute__((noinline)) static void grow_site(void)
{
    unsigned char *p = NULL;
    for (size_t i = 1; i <= 10; i++) {
        unsigned char *q = realloc(p, i * 1000);
        if (q == NULL)
            exit(3);
        p = q;
        p[i * 1000 - 1] = (unsigned char)i;
        checksum += p[i * 1000 - 1];
    }
    free(p);
}

__attribute__((noinline)) static void leak_here(void)
{
    for (int i = 0; i < 3; i++)
        leaked[num_leaked++] = malloc(777);
}

__attribute__((noinline)) static void aligned_leak(void)
{
    leaked[num_leaked++] = aligned_alloc(64, 640);
}

/* ---- robustness: allocating signal handlers, dlopen among threads ---- */

static volatile sig_atomic_t signals_seen, inside_recorder;
static int churn_finished;
static volatile int churn_done;

/* Code ranges: the program's own and the recorder's (when preloaded). A
 * handler may allocate when the thread it interrupted was in either,
 * never inside libc's malloc itself (which is not reentrant). */
typedef struct code_range {
    uintptr_t start, end;
} code_range;
static code_range program_code, recorder_code;

static int find_code(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    code_range *r = NULL;
    if (info->dlpi_name[0] == '\0' && program_code.end == 0)
        r = &program_code;
    else if (strstr(info->dlpi_name, "libbrisk-record") != NULL)
        r = &recorder_code;
    for (int i = 0; r != NULL && i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            r->start = info->dlpi_addr + ph->p_vaddr;
            r->end = r->start + ph->p_memsz;
        }
    }
    return 0;
}

static int in_range(const code_range *r, uintptr_t pc) { return pc >= r->start && pc < r->end; }

static void allocating_handler(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)info;
    const ucontext_t *uc = context;
#if defined(__x86_64__)
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.pc;
#else
    uintptr_t pc = 0;
#endif
    int in_recorder = in_range(&recorder_code, pc);
    if (in_recorder || in_range(&program_code, pc)) {
        void *p = malloc(48);
        free(p);
        inside_recorder += in_recorder;
    }
    signals_seen++;
}

static void *churn(void *arg)
{
    uint64_t sum = 0;
    /* 20000 allocations, and on until signals have come (they count in
     * no result). */
    for (int i = 0; i < 20000 || signals_seen < 200; i++) {
        unsigned char *p = malloc(32 + (size_t)(i % 97));
        if (p == NULL)
            exit(3);
        p[0] = (unsigned char)i;
        if (i < 20000)
            sum += p[0];
        free(p);
    }
    *(uint64_t *)arg = sum;
    __atomic_fetch_add(&churn_finished, 1, __ATOMIC_RELEASE);
    /* Stay alive (signals may still come) until the sender stops. */
    while (!churn_done)
        sched_yield();
    return NULL;
}

static pthread_t churners[2];

static void *signaller(void *arg)
{
    (void)arg;
    struct timespec pause = {0, 20000};
    while (!churn_done) {
        for (int i = 0; i < 2; i++)
            pthread_kill(churners[i], SIGUSR1);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void robustness(const char *lib_path)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    dl_iterate_phdr(find_code, NULL);
    sa.sa_sigaction = allocating_handler;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t *threads = churners, sender;
    uint64_t sums[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&threads[i], NULL, churn, &sums[i]) != 0)
            exit(4);
    if (pthread_create(&sender, NULL, signaller, NULL) != 0)
        exit(4);
    for (int round = 0; round < 20; round++) {
        void *h = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL) {
            fprintf(stderr, "dlopen %s: %s\n", lib_path, dlerror());
            exit(5);
        }
        void *(*hold)(size_t) = (void *(*)(size_t))dlsym(h, "lib_hold");
        void *p = hold ? hold(100) : NULL;
        free(p);
        dlclose(h);
    }
    /* The churners finish before the signals stop: join them after. */
    while (__atomic_load_n(&churn_finished, __ATOMIC_ACQUIRE) < 2)
        sched_yield();
    churn_done = 1;
    pthread_join(sender, NULL);
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        checksum += sums[i];
    }
    signal(SIGUSR1, SIG_IGN);
}

int main(int argc, char **argv)
{
    peak_big();
    peak_small();
    peak_lib();
    pthread_t threads[THREADS];
    thread_blocks blocks[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, thread_main, &blocks[i]) != 0)
            return 4;
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    /* The peak is now: everything above is live. */
    for (size_t i = 0; i < num_held; i++) {
        checksum += ((unsigned char *)held[i])[7];
        free(held[i]);
    }
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < 10; k++) {
            checksum += ((unsigned char *)blocks[i].blocks[k])[k];
            free(blocks[i].blocks[k]);
        }
    temp_site();
    grow_site();
    leak_here();
    for (int i = 0; i < 2; i++)
        leaked[num_leaked++] = lib_leak(4321);
    aligned_leak();
    if (argc > 1)
        robustness(argv[1]);
    fprintf(stderr, "signals handled: %d (allocating inside the recorder: %d)\n",
            (int)signals_seen, (int)inside_recorder);
    printf("checksum %llu\n", (unsigned long long)checksum);
    return 0;
}
