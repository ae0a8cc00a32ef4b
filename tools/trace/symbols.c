/*
 * Naming frames: a return address becomes `function (file:line)`, offline,
 * from the mappings the recorder wrote (the recording's maps records) and
 * the files themselves: the ELF symbol tables and the DWARF line tables,
 * read through libdw (elfutils), with separate debug files found where
 * the system keeps them (/usr/lib/debug, by build id or debuglink). C++
 * names are demangled when the tool was linked with the C++ runtime.
 *
 * Every address gets its module (the mapped file) and offset in it, which
 * is all a frame says when the file has no symbol for it, the file is
 * gone, or the tool was built without libdw.
 *
 * The address a frame holds is a return address: the call is the byte
 * before it, so lookups use address - 1.
 */
#define _GNU_SOURCE
#include "symbols.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if BRISK_HAVE_LIBDW
#include <elfutils/libdwfl.h>
#include <gelf.h>
#endif

#if BRISK_HAVE_DEMANGLE
char *__cxa_demangle(const char *name, char *out, size_t *length, int *status);
#endif

typedef struct mapping {
    uint64_t start, end, offset;
    char *path;
    int exec; /* an executable mapping */
} mapping;

typedef struct cached_frame {
    uint64_t addr; /* 0: empty */
    frame_info info;
} cached_frame;

struct symbolizer {
    mapping *maps;
    size_t num_maps;
    char note[256];
    cached_frame *cache;
    size_t cache_size, cache_used;
#if BRISK_HAVE_LIBDW
    Dwfl *dwfl;
#endif
};

static int cmp_mapping(const void *a, const void *b)
{
    uint64_t x = ((const mapping *)a)->start, y = ((const mapping *)b)->start;
    return x < y ? -1 : x > y;
}

/* The mappings, latest record first: an entry overlapping one already
 * kept is an older mapping of that range and is dropped. */
static int parse_maps(symbolizer *s, const char *text)
{
    size_t cap = 64;
    s->maps = malloc(cap * sizeof *s->maps);
    if (s->maps == NULL)
        return -1;
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[4200];
        if (len < sizeof buf) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            unsigned long long start, end, offset;
            char perms[8];
            int path_at = 0;
            if (sscanf(buf, "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &offset,
                       &path_at) == 4 &&
                path_at > 0 && buf[path_at] == '/' && start < end) {
                int overlaps = 0;
                for (size_t i = 0; i < s->num_maps && !overlaps; i++)
                    overlaps = start < s->maps[i].end && s->maps[i].start < end;
                if (!overlaps) {
                    if (s->num_maps == cap) {
                        mapping *grown = realloc(s->maps, cap * 2 * sizeof *grown);
                        if (grown == NULL)
                            return -1;
                        s->maps = grown;
                        cap *= 2;
                    }
                    char *path = strdup(buf + path_at);
                    if (path == NULL)
                        return -1;
                    char *deleted = strstr(path, " (deleted)");
                    if (deleted != NULL)
                        *deleted = '\0';
                    s->maps[s->num_maps++] = (mapping){start, end, offset, path, perms[2] == 'x'};
                }
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    qsort(s->maps, s->num_maps, sizeof *s->maps, cmp_mapping);
    return 0;
}

static const mapping *mapping_of(const symbolizer *s, uint64_t addr)
{
    size_t lo = 0, hi = s->num_maps;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->maps[mid].end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->num_maps && s->maps[lo].start <= addr ? &s->maps[lo] : NULL;
}

#if BRISK_HAVE_LIBDW
/* The load bias of the file mapped by m: its address minus the virtual
 * address the ELF program headers give that file offset. */
static int load_bias(const mapping *m, uint64_t *bias)
{
    int fd = open(m->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
    int rc = -1;
    GElf_Ehdr eh;
    size_t phnum;
    if (elf != NULL && gelf_getehdr(elf, &eh) != NULL && elf_getphdrnum(elf, &phnum) == 0) {
        if (eh.e_type == ET_EXEC) {
            *bias = 0;
            rc = 0;
        }
        for (size_t i = 0; rc != 0 && i < phnum; i++) {
            GElf_Phdr ph;
            if (gelf_getphdr(elf, (int)i, &ph) == NULL || ph.p_type != PT_LOAD)
                continue;
            uint64_t page_offset = ph.p_offset & ~(uint64_t)4095;
            if (m->offset >= page_offset && m->offset < ph.p_offset + ph.p_filesz + 4096) {
                *bias = m->start - (ph.p_vaddr - (ph.p_offset - m->offset));
                rc = 0;
            }
        }
    }
    if (elf != NULL)
        elf_end(elf);
    close(fd);
    return rc;
}

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
};

static void report_modules(symbolizer *s)
{
    elf_version(EV_CURRENT);
    s->dwfl = dwfl_begin(&callbacks);
    if (s->dwfl == NULL) {
        snprintf(s->note, sizeof s->note, "libdw: %s", dwfl_errmsg(-1));
        return;
    }
    dwfl_report_begin(s->dwfl);
    size_t missing = 0;
    for (size_t i = 0; i < s->num_maps; i++) {
        const mapping *m = &s->maps[i];
        int seen = 0, code = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(s->maps[k].path, m->path) == 0;
        for (size_t k = i; k < s->num_maps && !code; k++)
            code = s->maps[k].exec && strcmp(s->maps[k].path, m->path) == 0;
        if (seen || !code)
            continue; /* data files (locales, caches) have no frames */
        uint64_t bias;
        if (load_bias(m, &bias) != 0) {
            missing++;
            continue;
        }
        const char *base = strrchr(m->path, '/');
        if (dwfl_report_elf(s->dwfl, base ? base + 1 : m->path, m->path, -1, bias, false) ==
            NULL)
            missing++;
    }
    dwfl_report_end(s->dwfl, NULL, NULL);
    if (missing)
        snprintf(s->note, sizeof s->note,
                 "%zu mapped files could not be read (gone or changed since the recording); "
                 "their frames show module+offset",
                 missing);
}
#endif

symbolizer *symbols_open(const char *maps_text)
{
    symbolizer *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->cache_size = 1024;
    s->cache = calloc(s->cache_size, sizeof *s->cache);
    if (s->cache == NULL || parse_maps(s, maps_text ? maps_text : "") != 0) {
        symbols_close(s);
        return NULL;
    }
#if BRISK_HAVE_LIBDW
    report_modules(s);
#else
    snprintf(s->note, sizeof s->note,
             "brisk-trace was built without libdw (elfutils; Debian: libdw-dev): frames show "
             "module+offset");
#endif
    return s;
}

const char *symbols_note(const symbolizer *s) { return s->note; }

static char *demangled(const char *name)
{
#if BRISK_HAVE_DEMANGLE
    if (name[0] == '_' && name[1] == 'Z') {
        int status = 0;
        char *d = __cxa_demangle(name, NULL, NULL, &status);
        if (d != NULL && status == 0)
            return d;
        free(d);
    }
#endif
    return strdup(name);
}

#if BRISK_HAVE_LIBDW
/* The line of pc found by asking each compile unit of mod whether it
 * holds pc. libdw finds a unit from .debug_aranges, which clang does not
 * emit by default (and elfutils before 0.191 does not build the table
 * from the units themselves), so frames of clang-built code would lose
 * their file and line. Only for frames the table did not answer; each
 * address is looked up once (symbols_lookup caches it). */
static const char *line_by_unit_scan(Dwfl_Module *mod, uint64_t pc, int *lineno)
{
    Dwarf_Addr bias = 0;
    Dwarf_Die *unit = NULL;
    while ((unit = dwfl_module_nextcu(mod, unit, &bias)) != NULL) {
        if (dwarf_haspc(unit, pc - bias) != 1)
            continue;
        Dwarf_Line *line = dwarf_getsrc_die(unit, pc - bias);
        if (line == NULL || dwarf_lineno(line, lineno) != 0)
            return NULL;
        return dwarf_linesrc(line, NULL, NULL);
    }
    return NULL;
}
#endif

static void resolve(symbolizer *s, uint64_t addr, frame_info *out)
{
    memset(out, 0, sizeof *out);
    uint64_t pc = addr ? addr - 1 : 0;
    const mapping *m = mapping_of(s, pc);
    char text[4300];
    if (m != NULL) {
        const char *base = strrchr(m->path, '/');
        out->module = strdup(base ? base + 1 : m->path);
        out->offset = pc - m->start + m->offset;
    } else {
        out->module = strdup("?");
        out->offset = pc;
    }
#if BRISK_HAVE_LIBDW
    Dwfl_Module *mod = s->dwfl ? dwfl_addrmodule(s->dwfl, pc) : NULL;
    const char *name = mod ? dwfl_module_addrname(mod, pc) : NULL;
    if (name != NULL)
        out->function = demangled(name);
    Dwfl_Line *line = mod ? dwfl_module_getsrc(mod, pc) : NULL;
    int lineno = 0;
    const char *file = line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL) : NULL;
    if (file == NULL && mod != NULL)
        file = line_by_unit_scan(mod, pc, &lineno);
    if (file != NULL) {
        out->file = strdup(file);
        out->line = lineno;
    }
#endif
    if (out->function == NULL) {
        snprintf(text, sizeof text, "%s+0x%" PRIx64, out->module ? out->module : "?",
                 out->offset);
        out->function = strdup(text);
        out->unknown = 1;
    }
}

const frame_info *symbols_lookup(symbolizer *s, uint64_t addr)
{
    if ((s->cache_used + 1) * 2 > s->cache_size) {
        size_t size = s->cache_size * 2;
        cached_frame *bigger = calloc(size, sizeof *bigger);
        if (bigger != NULL) {
            for (size_t i = 0; i < s->cache_size; i++) {
                if (s->cache[i].addr == 0)
                    continue;
                size_t k = (size_t)(s->cache[i].addr * 0x9E3779B97F4A7C15ull >> 17) & (size - 1);
                while (bigger[k].addr != 0)
                    k = (k + 1) & (size - 1);
                bigger[k] = s->cache[i];
            }
            free(s->cache);
            s->cache = bigger;
            s->cache_size = size;
        }
    }
    uint64_t key = addr ? addr : 1;
    size_t k = (size_t)(key * 0x9E3779B97F4A7C15ull >> 17) & (s->cache_size - 1);
    while (s->cache[k].addr != 0 && s->cache[k].addr != key)
        k = (k + 1) & (s->cache_size - 1);
    if (s->cache[k].addr == 0) {
        s->cache[k].addr = key;
        resolve(s, addr, &s->cache[k].info);
        s->cache_used++;
    }
    return &s->cache[k].info;
}

void symbols_close(symbolizer *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->num_maps; i++)
        free(s->maps[i].path);
    free(s->maps);
    for (size_t i = 0; s->cache && i < s->cache_size; i++) {
        if (s->cache[i].addr == 0)
            continue;
        free(s->cache[i].info.function);
        free(s->cache[i].info.file);
        free(s->cache[i].info.module);
    }
    free(s->cache);
#if BRISK_HAVE_LIBDW
    if (s->dwfl)
        dwfl_end(s->dwfl);
#endif
    free(s);
}
