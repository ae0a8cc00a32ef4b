/*
 * The brisk-trace binary recording format, version 3 (docs/trace.md,
 * "The recording format"): shared by the recorder
 * (tools/trace/recorder.c) and libbrisk's sampled profiler
 * (src/malloc/profile.c), which write it, and the tool
 * (tools/trace/recording.c), which reads it. Header-only and free of any
 * allocation, so both writers can include it.
 *
 *   file    = header chunk*
 *   header  = magic[8] version:u32 header_bytes:u32 pid:u64 start_ns:u64
 *   chunk   = "CHNK":u32 payload_bytes:u32 tid:u32 flags:u32 payload
 *   payload = record*
 *   record  = kind:u8 fields (unsigned LEB128 varints unless said)
 *
 * Fixed-width fields are little-endian. In a chunk, every event's
 * sequence number and time are deltas from the previous event of that
 * chunk (the first from 0 and from the header's start_ns).
 */
#ifndef BRISK_TRACE_FORMAT_H
#define BRISK_TRACE_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TF_MAGIC "BRISKTRC"
#define TF_MAGIC_BYTES 8
#define TF_VERSION 3u
/* The oldest version readers still take: version 1 is version 2 without
 * allocator samples (TF_ALLOCATOR), version 2 is version 3 without the
 * sampled profile's records (TF_PROFILE, TF_PROFILE_SITE). */
#define TF_VERSION_OLDEST 1u
#define TF_HEADER_BYTES 32u
#define TF_HEADER_START_NS_AT 24u /* where the header's start_ns lies */
#define TF_CHUNK_MAGIC 0x4b4e4843u /* "CHNK" read as a little-endian u32 */
#define TF_CHUNK_HEADER_BYTES 16u
/* Deepest stack recorded; deeper ones keep their innermost frames. */
#define TF_MAX_FRAMES 64

/* Record kinds. Events (the calls) first: */
enum tf_kind {
    /* dseq dtime addr size stack: the result (0: the call failed) */
    TF_MALLOC = 1,
    TF_CALLOC = 2,       /* size is count * size */
    TF_VALLOC = 3,
    TF_PVALLOC = 4,      /* size as the caller asked */
    /* dseq dtime addr size alignment stack */
    TF_POSIX_MEMALIGN = 5,
    TF_ALIGNED_ALLOC = 6,
    TF_MEMALIGN = 7,
    /* dseq dtime gap old_addr new_addr size stack: the event holds two
     * sequence numbers, dseq's for the new block and that minus gap for
     * the release of the old one (taken before the real call).
     * realloc(NULL, n) has old 0; realloc(p, 0), which frees p in glibc,
     * records new 0 and size 0; a failed realloc new 0 and its size. */
    TF_REALLOC = 8,
    TF_REALLOCARRAY = 9, /* size is count * size */
    /* dseq dtime addr stack */
    TF_FREE = 10,
    /* dseq dtime addr size stack */
    TF_FREE_SIZED = 11,
    /* dseq dtime addr size alignment stack */
    TF_FREE_ALIGNED_SIZED = 12,
    TF_EVENT_KINDS_END = 13,
    /* id count frame*count: a distinct call stack, innermost frame first
     * (return addresses). Ids are unique in a file, never 0 (0 in an
     * event: no stack). A stack is defined before the end record, not
     * necessarily before the events using it (threads flush apart). */
    TF_STACK = 0x40,
    /* bytes text: lines of /proc/self/maps (the mappings of files),
     * written at exit and before each dlclose */
    TF_MAPS = 0x41,
    /* bytes text: the command line, arguments separated by NUL */
    TF_COMMAND = 0x42,
    /* events stacks flags: the last record of a complete recording, with
     * the number of events and stack records written before it; flags bit
     * 0: the stack table filled up (later stacks recorded as 0), bit 1:
     * free stacks were not recorded */
    TF_END = 0x43,
    /* seq time count value*count (version 2): a sample of the process
     * allocator's state, taken when the program was using libbrisk, after
     * every event numbered below seq and at time_ns (from the header's
     * start_ns); the values in enum tf_allocator_field order. A reader
     * keeps the ones it knows and skips the rest. */
    TF_ALLOCATOR = 0x44,
    /* rate samples live_samples time_ns flags (version 3): the file is a
     * sampled heap profile libbrisk wrote (BRISK_OPTIONS=profile), not a
     * recording of every call. One allocation in about `rate` bytes was
     * sampled; `samples` were taken since start-up, `live_samples` of
     * them still live at the dump, made at time_ns (from the header's
     * start_ns); flags as TF_END's. Its sites follow as TF_PROFILE_SITE
     * records. */
    TF_PROFILE = 0x45,
    /* stack samples live_samples alloc_count alloc_bytes live_count
     * live_bytes (version 3): one call site of a profile. samples is how
     * many allocations were sampled there, live_samples how many of those
     * were live at the dump; the rest are estimates of all the
     * site's allocations (each sample weighted by the inverse of its
     * chance to be sampled): made since start-up, and live at the dump. */
    TF_PROFILE_SITE = 0x46,
};

/* The values of an allocator sample (TF_ALLOCATOR). Bytes unless said;
 * all but resident come from brisk_malloc_get_stats (include/brisk.h). */
enum tf_allocator_field {
    TF_AL_RESIDENT,        /* the process's resident set (/proc/self/statm) */
    TF_AL_MAPPED,          /* brisk's segments and large mappings */
    TF_AL_LARGE_LIVE,      /* live large blocks' bytes */
    TF_AL_LARGE_CACHED,    /* freed large blocks kept mapped */
    TF_AL_SEGMENTS,        /* segments mapped (a count) */
    TF_AL_SEGMENTS_CACHED, /* of them, empty and kept (a count) */
    TF_AL_ABANDONED,       /* pages' bytes that exited threads left in use */
    TF_AL_THREADS,         /* threads with a thread heap (a count) */
    TF_ALLOCATOR_FIELDS
};

#define TF_END_STACKS_FULL 1u
#define TF_END_NO_FREE_STACKS 2u
#define TF_END_PROFILE 4u /* a sampled profile (TF_PROFILE), no events */

static inline int tf_kind_has_alignment(unsigned kind)
{
    return kind == TF_POSIX_MEMALIGN || kind == TF_ALIGNED_ALLOC || kind == TF_MEMALIGN ||
           kind == TF_FREE_ALIGNED_SIZED;
}

/* Writes v as LEB128 at p (at most 10 bytes); returns the end. */
static inline unsigned char *tf_put_varint(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

static inline void tf_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void tf_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t tf_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t tf_get_u64(const unsigned char *p)
{
    return (uint64_t)tf_get_u32(p) | (uint64_t)tf_get_u32(p + 4) << 32;
}

/* Reads a LEB128 varint from [*p, end); returns 0, or -1 when it runs
 * past end or is longer than 10 bytes. */
static inline int tf_get_varint(const unsigned char **p, const unsigned char *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (*p >= end)
            return -1;
        unsigned char b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* The maps chunk keeps only the lines of /proc/self/maps that name a
 * file (the whole file's mappings, for its load address, not only its
 * code's): the symbols need no others. Filters maps[0, len) in place;
 * returns the bytes kept. */
static inline size_t tf_maps_keep_files(char *maps, size_t len)
{
    size_t kept = 0;
    for (size_t at = 0; at < len;) {
        char *nl = memchr(maps + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - maps) + 1 : len;
        if (memchr(maps + at, '/', end - at) != NULL) {
            memmove(maps + kept, maps + at, end - at);
            kept += end - at;
        }
        at = end;
    }
    return kept;
}

#endif /* BRISK_TRACE_FORMAT_H */
