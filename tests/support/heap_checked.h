/*
 * The region heap's calls, each followed by brisk_heap_check of the whole
 * heap: the random and differential tests make every call through these,
 * so a call that breaks an invariant is caught at that call, not at the
 * next hand-placed check. One wrapper per call that may change the heap
 * (those taking a non-const heap), and one for brisk_heap_usable_size, for
 * a test whose call under test it is (a misuse, say); a test reading
 * usable sizes, statistics or the walk for its own checks calls those
 * directly (they take a const heap).
 *
 *   checked_create_ex(mem, size, flags)     checked_alloc(heap, size)
 *   checked_calloc(heap, count, size)       checked_realloc(heap, ptr, size)
 *   checked_alloc_aligned(heap, alignment, size)   checked_free(heap, ptr)
 *   checked_usable_size(heap, ptr)
 *
 * Each returns what the real call returned. When the check fails the test
 * stops at once (abort: a broken heap makes every later result
 * meaningless, and libFuzzer records the input) with one line, after the
 * check's own, naming where the call was made, the test's step
 * (checked_step: the step number a test with a loop last set), the
 * thread's count of checked calls, the
 * call with its arguments and result, the test's note (checked_note, for
 * example how to rerun it) and brisk_heap_check's own report:
 *
 *   test_heap_random.c:180: step 1234 (checked call 1240 of this thread):
 *   brisk_heap_free(0x7f.., 0x7f..) left the heap broken: brisk_heap_check:
 *   invariant 5: two free chunks are adjacent (at 0x7f..) [seed 1 flags 0]
 *
 * The counters are per thread, so threads sharing a BRISK_HEAP_THREADSAFE
 * heap may all call these (the check takes the heap's lock).
 */
#ifndef BRISK_TESTS_HEAP_CHECKED_H
#define BRISK_TESTS_HEAP_CHECKED_H

#include "check.h"

#include "brisk.h"

#include <errno.h>

/* The test's own step number, printed on failure (0 unless it sets it). */
static _Thread_local size_t checked_step;
/* Checked calls this thread has made so far. */
static _Thread_local unsigned long checked_calls;
/* Printed at the end of a failure's line when not NULL. */
static _Thread_local const char *checked_note;

/* brisk_heap_check's report for heap, captured by running the check
 * again with stderr sent to a temporary file (the check only reads the
 * heap, so it finds the same thing). */
static inline void heap_checked_report(const brisk_heap *heap, char *out, size_t size)
{
    snprintf(out, size, "(its report is on the line above)");
    fflush(stderr);
    FILE *capture = tmpfile();
    if (capture == NULL)
        return;
    int saved = dup(STDERR_FILENO);
    if (saved >= 0 && dup2(fileno(capture), STDERR_FILENO) >= 0) {
        brisk_heap_check(heap);
        dup2(saved, STDERR_FILENO);
        rewind(capture);
        if (fgets(out, (int)size, capture) != NULL)
            out[strcspn(out, "\n")] = '\0';
    }
    if (saved >= 0)
        close(saved);
    fclose(capture);
}

/* Whether heap passes brisk_heap_check, counting the call; errno is left
 * as the call under test set it. */
static inline int heap_checked_ok(const brisk_heap *heap)
{
    int saved_errno = errno;
    checked_calls++;
    int result = brisk_heap_check(heap);
    errno = saved_errno;
    return result == 0;
}

/* Reports that `call` (as written out by the wrapper) left heap broken,
 * and aborts. */
static inline _Noreturn void heap_checked_fail(const char *file, int line, const brisk_heap *heap, const char *call)
{
    char report[512];
    heap_checked_report(heap, report, sizeof report);
    const char *name = strrchr(file, '/');
    fprintf(stderr, "%s:%d: step %zu (checked call %lu of this thread): %s left the heap broken: %s%s%s%s\n",
            name != NULL ? name + 1 : file, line, checked_step, checked_calls, call, report,
            checked_note != NULL ? " [" : "", checked_note != NULL ? checked_note : "",
            checked_note != NULL ? "]" : "");
    fflush(stderr);
    abort();
}

/* The wrappers: the call, then the check; the call is written out only
 * when the check fails. */
static inline brisk_heap *checked_create_ex_at(const char *file, int line, void *mem, size_t size, unsigned flags)
{
    brisk_heap *heap = brisk_heap_create_ex(mem, size, flags);
    if (heap == NULL || heap_checked_ok(heap))
        return heap;
    char call[160];
    snprintf(call, sizeof call, "brisk_heap_create_ex(%p, %zu, %#x) = %p", mem, size, flags, (void *)heap);
    heap_checked_fail(file, line, heap, call);
}

static inline void *checked_alloc_at(const char *file, int line, brisk_heap *heap, size_t size)
{
    void *p = brisk_heap_alloc(heap, size);
    if (heap_checked_ok(heap))
        return p;
    char call[160];
    snprintf(call, sizeof call, "brisk_heap_alloc(%p, %zu) = %p", (void *)heap, size, p);
    heap_checked_fail(file, line, heap, call);
}

static inline void *checked_calloc_at(const char *file, int line, brisk_heap *heap, size_t count, size_t size)
{
    void *p = brisk_heap_calloc(heap, count, size);
    if (heap_checked_ok(heap))
        return p;
    char call[160];
    snprintf(call, sizeof call, "brisk_heap_calloc(%p, %zu, %zu) = %p", (void *)heap, count, size, p);
    heap_checked_fail(file, line, heap, call);
}

static inline void *checked_realloc_at(const char *file, int line, brisk_heap *heap, void *ptr, size_t size)
{
    void *p = brisk_heap_realloc(heap, ptr, size);
    if (heap_checked_ok(heap))
        return p;
    char call[160];
    snprintf(call, sizeof call, "brisk_heap_realloc(%p, %p, %zu) = %p", (void *)heap, ptr, size, p);
    heap_checked_fail(file, line, heap, call);
}

static inline void *checked_alloc_aligned_at(const char *file, int line, brisk_heap *heap, size_t alignment,
                                             size_t size)
{
    void *p = brisk_heap_alloc_aligned(heap, alignment, size);
    if (heap_checked_ok(heap))
        return p;
    char call[160];
    snprintf(call, sizeof call, "brisk_heap_alloc_aligned(%p, %zu, %zu) = %p", (void *)heap, alignment, size, p);
    heap_checked_fail(file, line, heap, call);
}

static inline void checked_free_at(const char *file, int line, brisk_heap *heap, void *ptr)
{
    brisk_heap_free(heap, ptr);
    if (heap_checked_ok(heap))
        return;
    char call[160];
    snprintf(call, sizeof call, "brisk_heap_free(%p, %p)", (void *)heap, ptr);
    heap_checked_fail(file, line, heap, call);
}

static inline size_t checked_usable_size_at(const char *file, int line, const brisk_heap *heap, const void *ptr)
{
    size_t usable = brisk_heap_usable_size(heap, ptr);
    if (heap_checked_ok(heap))
        return usable;
    char call[160];
    snprintf(call, sizeof call, "brisk_heap_usable_size(%p, %p) = %zu", (const void *)heap, ptr, usable);
    heap_checked_fail(file, line, heap, call);
}

#define checked_create_ex(mem, size, flags) checked_create_ex_at(__FILE__, __LINE__, (mem), (size), (flags))
#define checked_alloc(heap, size) checked_alloc_at(__FILE__, __LINE__, (heap), (size))
#define checked_calloc(heap, count, size) checked_calloc_at(__FILE__, __LINE__, (heap), (count), (size))
#define checked_realloc(heap, ptr, size) checked_realloc_at(__FILE__, __LINE__, (heap), (ptr), (size))
#define checked_alloc_aligned(heap, alignment, size)                                                               \
    checked_alloc_aligned_at(__FILE__, __LINE__, (heap), (alignment), (size))
#define checked_free(heap, ptr) checked_free_at(__FILE__, __LINE__, (heap), (ptr))
#define checked_usable_size(heap, ptr) checked_usable_size_at(__FILE__, __LINE__, (heap), (ptr))

#endif /* BRISK_TESTS_HEAP_CHECKED_H */
