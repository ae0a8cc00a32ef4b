/*
 * libbrisk-record.so's parts (recorder.c the interposed functions and the
 * event log, recorder_stack.c the call stacks, recorder_os.c its system
 * calls). Internal to the recorder; the file format is trace_format.h.
 */
#ifndef BRISK_RECORDER_H
#define BRISK_RECORDER_H

#include <stddef.h>
#include <stdint.h>

#include "trace_format.h"

/* ---- recorder_os.c: every system call the recorder makes -------------- */

void *rec_map(size_t size);
void rec_unmap(void *p, size_t size);
/* Gives the pages of [p, p + size) back; they read as zero again. */
void rec_zero_pages(void *p, size_t size);
int rec_write_all(int fd, const void *buf, size_t len);
int rec_create(const char *path);
int rec_close(int fd);
long rec_pid(void);
uint32_t rec_tid(void);
uint64_t rec_now_ns(void);
size_t rec_page_size(void);
void rec_say(const char *text);
/* Reads a whole /proc file into buf (NUL-ended); returns its length, or
 * 0 when it cannot be read. */
size_t rec_read_file(const char *path, char *buf, size_t size);
void rec_yield(void);
/* The calling thread's CPU time in ns (the monotonic clock where that is
 * missing). */
uint64_t rec_thread_cpu_ns(void);
/* The process's resident set now, in bytes (0 when unknown). */
uint64_t rec_resident_bytes(void);

/* ---- recorder_stack.c: call stacks, unwound and interned -------------- */

/* Sets up the stack table (once, from the constructor) and finds the
 * recorder's own code, whose frames are left out of every stack. Returns
 * 0, or -1 when the table cannot be mapped. */
int stack_init(void);
/* Empties the table (a forked child's file starts without definitions). */
void stack_reset(void);
/* Unwinds the caller's stack and returns its id (0 when the table is
 * full). When the stack is new, *is_new is set and frames/count hold it,
 * for the caller to write its definition. */
uint64_t stack_capture(uint64_t *frames, unsigned *count, int *is_new);
/* Whether the table filled up (later stacks were recorded as 0). */
int stack_table_full(void);

#endif /* BRISK_RECORDER_H */
