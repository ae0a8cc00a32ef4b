/*
 * Allocation sites: each block (blocks.c) counted at the stack of the call
 * that made it, and stacks merged by the function that called the
 * allocator: the first frame that is neither operator new nor the C++
 * library's own code (std:: and __gnu_cxx::, its containers and
 * allocators), so a vector's growth counts at the code that grew it.
 */
#define _GNU_SOURCE
#include "sites.h"

#include <stdlib.h>
#include <string.h>

static const char *const wrappers[] = {"operator new", "operator delete", "std::", "__gnu_cxx::",
                                       "_Znwm", "_Znam", "_ZNSt", "_ZNKSt", "_ZSt", "_ZN9__gnu_cxx",
                                       NULL};

int sites_is_wrapper(const char *function)
{
    for (int i = 0; wrappers[i] != NULL; i++)
        if (strncmp(function, wrappers[i], strlen(wrappers[i])) == 0)
            return 1;
    return 0;
}

const frame_info *sites_frame(site_analysis *a, uint32_t stack, uint32_t k)
{
    const recording *r = a->r;
    return symbols_lookup(a->symbols, r->frames[r->stack_first[stack] + k]);
}

static const site_analysis *sort_context;

static int cmp_by_function(const void *x, const void *y)
{
    uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
    return strcmp(sort_context->function[i], sort_context->function[j]);
}

static void add_stats(site_stats *to, const site_stats *from)
{
    to->count += from->count;
    to->bytes += from->bytes;
    to->temporary += from->temporary;
    to->temporary_bytes += from->temporary_bytes;
    to->peak_count += from->peak_count;
    to->peak_bytes += from->peak_bytes;
    to->leak_count += from->leak_count;
    to->leak_bytes += from->leak_bytes;
    to->samples += from->samples;
    to->live_samples += from->live_samples;
}

int sites_analyse(const recording *r, site_analysis *a, char *err, size_t err_size)
{
    memset(a, 0, sizeof *a);
    a->r = r;
    if (recording_blocks(r, &a->blocks, err, err_size) != 0)
        return -1;
    a->symbols = symbols_open(r->maps);
    a->num_sites = r->num_stacks;
    a->by_stack = calloc(r->num_stacks, sizeof *a->by_stack);
    a->function = calloc(r->num_stacks, sizeof *a->function);
    uint32_t *order = malloc(r->num_stacks * sizeof *order);
    a->by_function = calloc(r->num_stacks, sizeof *a->by_function);
    a->function_name = calloc(r->num_stacks, sizeof *a->function_name);
    if (a->symbols == NULL || a->by_stack == NULL || a->function == NULL || order == NULL ||
        a->by_function == NULL || a->function_name == NULL) {
        free(order);
        sites_free(a);
        snprintf(err, err_size, "%s: out of memory for the sites", r->path);
        return -1;
    }
    for (size_t i = 0; i < r->num_events; i++)
        a->calls[r->events[i].kind]++;
    const rec_blocks *b = &a->blocks;
    for (size_t i = 0; i < b->count; i++) {
        const rec_block *blk = &b->blocks[i];
        site_stats *s = &a->by_stack[r->events[blk->event].stack];
        s->count++;
        s->bytes += blk->size;
        s->temporary += (uint64_t)blk->temporary;
        s->temporary_bytes += blk->temporary ? blk->size : 0;
        a->total_count++;
        a->total_bytes += blk->size;
        a->temporary += (uint64_t)blk->temporary;
        if (b->peak_bytes > 0 && blk->born <= b->peak_step && blk->died > b->peak_step) {
            s->peak_count++;
            s->peak_bytes += blk->size;
            a->peak_blocks++;
        }
        if (blk->died == SIZE_MAX) {
            s->leak_count++;
            s->leak_bytes += blk->size;
            a->leak_count++;
            a->leak_bytes += blk->size;
        }
    }
    for (size_t i = 0; i < r->num_profile_sites; i++) {
        const rec_profile_site *p = &r->profile_sites[i];
        site_stats *s = &a->by_stack[p->stack];
        s->samples += p->samples;
        s->live_samples += p->live_samples;
        s->count += p->alloc_count;
        s->bytes += p->alloc_bytes;
        s->leak_count += p->live_count;
        s->leak_bytes += p->live_bytes;
        a->total_count += p->alloc_count;
        a->total_bytes += p->alloc_bytes;
        a->leak_count += p->live_count;
        a->leak_bytes += p->live_bytes;
    }
    /* The function of each stack that holds anything. */
    size_t used = 0;
    for (uint32_t st = 0; st < r->num_stacks; st++) {
        if (a->by_stack[st].count == 0)
            continue;
        const char *name = "(no stack)";
        for (uint32_t k = 0; k < r->stack_depth[st]; k++) {
            const frame_info *f = sites_frame(a, st, k);
            name = f->function;
            if (!sites_is_wrapper(f->function))
                break;
        }
        a->function[st] = name;
        order[used++] = st;
    }
    sort_context = a;
    qsort(order, used, sizeof *order, cmp_by_function);
    for (size_t i = 0; i < used; i++) {
        uint32_t st = order[i];
        if (a->num_functions == 0 ||
            strcmp(a->function_name[a->num_functions - 1], a->function[st]) != 0)
            a->function_name[a->num_functions++] = a->function[st];
        add_stats(&a->by_function[a->num_functions - 1], &a->by_stack[st]);
    }
    free(order);
    return 0;
}

void sites_free(site_analysis *a)
{
    rec_blocks_free(&a->blocks);
    symbols_close(a->symbols);
    free(a->by_stack);
    free(a->function);
    free(a->by_function);
    free(a->function_name);
    memset(a, 0, sizeof *a);
}
