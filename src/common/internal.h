/*
 * Internal declarations shared by brisk's source files. Nothing here is
 * part of the public API (include/brisk.h is). Every function declared
 * here has hidden visibility in libbrisk.so.
 *
 * Layering:
 *   common/os.c      the only code that makes system calls (map, unmap,
 *                    advise, protect, write to stderr, abort).
 *   common/error.c   reporting of detected misuse through the error handler.
 *   common/random.c  secrets for keys, marks, canaries and seals.
 *   arena/           the bump arena (arena/arena.h).
 *   heap/            the region heap (heap/heap.h).
 *   malloc/          the process-wide allocator (malloc/types.h, malloc/internal.h).
 * arena/, heap/ and malloc/ each stand on this folder alone: none includes
 * or calls another.
 */
#ifndef BRISK_INTERNAL_H
#define BRISK_INTERNAL_H

#include "brisk.h"

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* brisk.h promises every block suits any object type. */
_Static_assert(BRISK_ALIGNMENT >= alignof(max_align_t),
               "BRISK_ALIGNMENT must be at least alignof(max_align_t) on this platform");

#if defined(__GNUC__)
#define BRISK_HIDDEN __attribute__((visibility("hidden")))
#define brisk_likely(x) __builtin_expect(!!(x), 1)
#define brisk_unlikely(x) __builtin_expect(!!(x), 0)
#define BRISK_NOINLINE __attribute__((noinline))
#define BRISK_INLINE static inline __attribute__((always_inline))
/* A hot out-of-line function starting on a cache line: where the linker
 * happens to place a small hot function can change its speed with the
 * same instructions (docs/benchmarks.md has a case), so the ones measured
 * to care are pinned. */
#define BRISK_CACHE_ALIGNED __attribute__((aligned(64)))
#else
#define BRISK_HIDDEN
#define brisk_likely(x) (x)
#define brisk_unlikely(x) (x)
#define BRISK_NOINLINE
#define BRISK_INLINE static inline
#define BRISK_CACHE_ALIGNED
#endif

/* ---- debug assertions --------------------------------------------------- */

/* brisk_assert(cond, "message") states a precondition or an internal
 * invariant the code relies on: in a BRISK_DEBUG build (the CMake option of
 * that name) a false one writes "brisk: internal assertion failed:
 * <message> (<cond>) at <file>:<line>" and aborts; otherwise it costs
 * nothing and cond is not evaluated. It is for brisk's own mistakes, never
 * for a program's misuse, which is reported (report_error) in every build. */
#ifndef BRISK_DEBUG
#define BRISK_DEBUG 0
#endif
#if BRISK_DEBUG
#define brisk_assert(cond, message) \
    (brisk_likely(cond) ? (void)0 : assert_fail(message, #cond, __FILE__, __LINE__))
#else
#define brisk_assert(cond, message) ((void)sizeof(!(cond)))
#endif

/* ---- arithmetic helpers ------------------------------------------------ */

static inline bool is_power_of_two(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

/* Rounds x up to a multiple of `align` (a power of two). Returns false and
 * leaves *out alone when the result would not fit in size_t. */
static inline bool align_up_checked(size_t x, size_t align, size_t *out)
{
    size_t mask = align - 1;
    if (x > SIZE_MAX - mask)
        return false;
    *out = (x + mask) & ~mask;
    return true;
}

static inline uintptr_t align_up_ptr(uintptr_t x, size_t align)
{
    return (x + (align - 1)) & ~(uintptr_t)(align - 1);
}

/* A 64-bit mix (the finalizer of splitmix64): every input bit affects
 * every output bit. Used to derive canaries and to seed generators from a
 * secret, so one value reveals nothing usable about another. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    x ^= x >> 31;
    return x;
}

/* splitmix64's step: a cheap generator whose state is seeded from a
 * secret (random_secret); it only spreads the seed, the secrecy is the
 * seed's. */
static inline uint64_t random_next(uint64_t *state)
{
    return mix64(*state += 0x9e3779b97f4a7c15ull);
}

/* ---- secrets (random.c) ------------------------------------------------- */

/* A nonzero 64-bit secret from the kernel's randomness; without it (very
 * early boot, seccomp), a mix of what differs between runs and of salt. */
BRISK_HIDDEN uint64_t random_secret(const void *salt);

/* ---- residency (resident.c) ---------------------------------------------- */

/* Called on a run [from, to) of a span; returns whether to go on. */
typedef bool (*resident_visit)(uintptr_t from, uintptr_t to, void *context);

/* Calls visit on each run of resident pages of [from, to), clipped to it,
 * of memory the library mapped itself (private anonymous), or on the
 * whole span when residency cannot say that the other pages read zero
 * (swap, or mincore failing); stops at, and returns, the first false. */
BRISK_HIDDEN bool resident_runs(uintptr_t from, uintptr_t to, resident_visit visit, void *context);

/* ---- the OS layer (os.c): the only code that makes system calls -------- */

/* The system page size, read once. */
BRISK_HIDDEN size_t os_page_size(void);

/* Maps `size` bytes (a multiple of the page size) of zeroed, readable and
 * writable private memory. Returns NULL with errno set on failure. */
BRISK_HIDDEN void *os_map(size_t size);

/* As os_map_accounted (charged to the commit limit: it backs memory that
 * will be used), with the start aligned to `alignment` (a power of two, at
 * least the page size). The whole [result, result + size) is mapped and
 * nothing else is left mapped. */
BRISK_HIDDEN void *os_map_aligned(size_t size, size_t alignment);

/* As os_map, between two inaccessible guards of `guard` bytes each (a
 * multiple of the page size), reserved with it as one range: no other
 * mapping can be placed, or grown in place, right before or after it, and
 * a linear overflow from a neighbour faults on the guard. Returns the
 * start of the accessible part, or NULL with errno set. Never unmapped. */
BRISK_HIDDEN void *os_map_guarded(size_t size, size_t guard);

/* Unmaps [addr, addr + size). Returns 0, or -1 with errno set. */
BRISK_HIDDEN int os_unmap(void *addr, size_t size);

/* Tells the kernel the pages in [addr, addr + size) are not needed: their
 * memory is returned and they read as zero when next touched. */
BRISK_HIDDEN int os_decommit(void *addr, size_t size);

/* Which pages of [addr, addr + size) (addr page-aligned) are resident:
 * bit 0 of vec[i] for the i-th page (mincore). Returns 0, or -1 with
 * errno set. */
BRISK_HIDDEN int os_resident(void *addr, size_t size, unsigned char *vec);

/* Whether the machine has swap space configured: 1 or 0, or -1 when it
 * cannot tell. (A swapped-out page is not resident and still holds data,
 * so residency alone does not say a page reads zero.) */
BRISK_HIDDEN int os_swap_configured(void);

/* Replaces the mapping [addr, addr + size) with an inaccessible
 * reservation holding no memory: its pages are given back, and the range
 * stays ours (no other mapping can land there) until os_unmap. */
BRISK_HIDDEN int os_release_keep_range(void *addr, size_t size);

/* Makes [addr, addr + size) inaccessible (guard pages) or accessible. */
BRISK_HIDDEN int os_protect_none(void *addr, size_t size);
BRISK_HIDDEN int os_protect_rw(void *addr, size_t size);

/* Writes all of buf to stderr without stdio (which may allocate). */
BRISK_HIDDEN void os_write_stderr(const char *buf, size_t len);

/* Writes all of buf to file descriptor fd (errors are ignored). */
BRISK_HIDDEN void os_write_fd(int fd, const char *buf, size_t len);

/* A close-on-exec copy of stderr, or -1. */
BRISK_HIDDEN int os_dup_stderr(void);

/* Ends the process with SIGABRT, never returning. */
BRISK_HIDDEN _Noreturn void os_abort(void);

/* For the process allocator: a mapping charged to the commit limit (no
 * MAP_NORESERVE), a monotonic clock in milliseconds, kernel randomness
 * (false if unavailable) and the peak resident set size in bytes. */
BRISK_HIDDEN void *os_map_accounted(size_t size);
BRISK_HIDDEN uint64_t os_now_ms(void);
BRISK_HIDDEN bool os_random(void *buf, size_t len);
BRISK_HIDDEN size_t os_peak_rss(void);
BRISK_HIDDEN int os_remap_in_place(void *addr, size_t old_size, size_t new_size);

/* For the sampled profiler (src/malloc/profile.c). */
/* Creates (or truncates) the file at path for writing, close-on-exec,
 * mode 0644 less the umask. Returns the descriptor, or -errno. */
BRISK_HIDDEN int os_create_file(const char *path);
/* Writes all of buf to fd. Returns 0, or the errno of the failure. */
BRISK_HIDDEN int os_write_all(int fd, const void *buf, size_t len);
/* Closes fd. Returns 0, or the errno of the failure (a write error the
 * kernel reports only at close, such as on NFS). */
BRISK_HIDDEN int os_close(int fd);
/* Reads the file at path (a /proc file) into buf; its length, which is
 * size when buf was too small, or 0 when it cannot be read. */
BRISK_HIDDEN size_t os_read_file(const char *path, char *buf, size_t size);
BRISK_HIDDEN uint64_t os_pid(void);
BRISK_HIDDEN uint64_t os_now_ns(void); /* the monotonic clock */
/* Installs handler for signal sig (with SA_RESTART) when its disposition
 * is the default; false, changing nothing, when the program has its own
 * (or ignores it). */
BRISK_HIDDEN bool os_signal_install_if_default(int sig, void (*handler)(int));
/* symbol in the shared library `library`, loaded if it is not (dlopen,
 * RTLD_LOCAL); NULL when either is missing. */
BRISK_HIDDEN void *os_library_symbol(const char *library, const char *symbol);
/* glibc's backtrace(): up to max return addresses of the calling stack,
 * innermost first; how many. */
BRISK_HIDDEN int os_backtrace(void **ips, int max);

/* ---- error reporting (error.c) ----------------------------------------- */

/* Reports misuse: calls the installed handler, or writes
 * "brisk: <message> (pointer <ptr>)" to stderr and aborts. Returns only
 * when an installed handler returned; the caller must then undo nothing
 * and return without further effect. */
BRISK_HIDDEN void report_error(brisk_error error, const char *message,
                               const void *ptr);

/* brisk_assert's failure: writes the line and aborts (error.c). */
BRISK_HIDDEN _Noreturn void assert_fail(const char *message, const char *condition,
                                        const char *file, unsigned line);

/* Formats value as 0x-prefixed lower-case hex into buf (at least 19
 * bytes); returns the length written, without a terminator. */
BRISK_HIDDEN size_t format_hex(char *buf, uintptr_t value);

/* Formats value in decimal into buf (at least 20 bytes); returns the
 * length written, without a terminator. */
BRISK_HIDDEN size_t format_decimal(char *buf, uint64_t value);

/* One line of a report, built without stdio (which may allocate, and a
 * report may come from inside malloc). What does not fit is cut; the
 * newline always fits. */
typedef struct text_line {
    char text[256];
    size_t len;
} text_line;

BRISK_HIDDEN void line_add(text_line *line, const char *text, size_t len);
BRISK_HIDDEN void line_add_str(text_line *line, const char *text);
BRISK_HIDDEN void line_add_hex(text_line *line, uintptr_t value);
BRISK_HIDDEN void line_add_decimal(text_line *line, uint64_t value);
/* Ends the line with a newline and writes it to stderr. */
BRISK_HIDDEN void line_write(text_line *line);

/* A self-check's failure, the same for every checker: writes
 * "<checker>: invariant <n>: <what> (at <where>)" to stderr and returns
 * -1, which the checker returns. */
BRISK_HIDDEN int check_report(const char *checker, unsigned invariant, const char *what,
                              const void *where);

#endif /* BRISK_INTERNAL_H */
