/*
 * The shared library of trace_sites_program: allocation sites inside a
 * library mapped at an address only known at run time.
 */
#include <stdlib.h>

void *lib_hold(size_t size);
void *lib_leak(size_t size);

__attribute__((noinline)) void *lib_hold(size_t size) { return malloc(size); }

__attribute__((noinline)) void *lib_leak(size_t size) { return calloc(1, size); }
