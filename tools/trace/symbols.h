/*
 * Frame names for `brisk-trace report` (symbols.c).
 */
#ifndef BRISK_TRACE_SYMBOLS_H
#define BRISK_TRACE_SYMBOLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct frame_info {
    char *function; /* demangled; "module+0xOFFSET" when unknown */
    char *file;     /* source file, NULL when unknown */
    int line;
    char *module;   /* the mapped file's name, "?" when unmapped */
    uint64_t offset;/* of the call in that file */
    int unknown;    /* no symbol: function is module+offset */
} frame_info;

typedef struct symbolizer symbolizer;

/* A symbolizer for the address space the maps text (a recording's maps
 * records) describes; NULL when out of memory. */
symbolizer *symbols_open(const char *maps_text);
/* Why some or all frames have no names ("" when all could be looked up). */
const char *symbols_note(const symbolizer *s);
/* The frame at return address addr; owned by s (looked up once). */
const frame_info *symbols_lookup(symbolizer *s, uint64_t addr);
void symbols_close(symbolizer *s);

#endif /* BRISK_TRACE_SYMBOLS_H */
