/*
 * The system allocator as a replay backend: whatever malloc this process
 * runs with (glibc's, or the sanitizer's under ASan). It has no region,
 * no self-check and no walk, so replay checks only what it returns.
 */
#define _GNU_SOURCE
#include "trace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A non-NULL token: the system allocator has no per-replay state. */
static char system_state;

static void *system_create(size_t capacity, char *err, size_t err_size)
{
    (void)capacity;
    (void)err;
    (void)err_size;
    return &system_state;
}

static void system_destroy(void *state) { (void)state; }

static void *system_alloc(void *state, size_t size, size_t alignment)
{
    (void)state;
    if (alignment == 0)
        return malloc(size);
    void *p = NULL;
    if (alignment < sizeof(void *))
        alignment = sizeof(void *);
    return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}

static void *system_realloc(void *state, void *ptr, size_t size)
{
    (void)state;
    return realloc(ptr, size);
}

static void system_free(void *state, void *ptr)
{
    (void)state;
    free(ptr);
}

const replay_allocator backend_system = {
    .name = "system",
    .create = system_create,
    .destroy = system_destroy,
    .alloc = system_alloc,
    .realloc = system_realloc,
    .free = system_free,
    .check = NULL,
    .high_water = NULL,
    .walk = NULL,
    .free_leftovers = 1,
};
