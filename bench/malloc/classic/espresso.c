/*
 * espresso: the allocation pattern of a two-level logic minimiser (the
 * classic espresso benchmark): cubes (bit vectors of two bits per input
 * variable) as small blocks of their own, covers (arrays of cubes) that
 * grow by realloc, a temporary cube for every pair looked at, and covers
 * replaced wholesale from one pass to the next.
 *
 * For each of a series of random functions of 8-48 variables and 30-90
 * cubes, three passes each add the consensus of every pair of cubes at
 * distance one that no cube of the cover contains, then drop every cube
 * another contains. The result is a hash of the final covers.
 *
 *   espresso [SCALE]
 */
#define _GNU_SOURCE
#include "classic.h"

typedef struct cube {
    uint32_t words;
    uint32_t bit[];
} cube;

typedef struct cover {
    size_t n, cap;
    cube **c;
} cover;

static cube *cube_new(uint32_t words)
{
    cube *c = xmalloc(sizeof(cube) + (size_t)words * sizeof(uint32_t));
    c->words = words;
    return c;
}

static void cover_add(cover *f, cube *c)
{
    if (f->n == f->cap) {
        f->cap = f->cap == 0 ? 8 : f->cap * 2;
        f->c = xrealloc(f->c, f->cap * sizeof *f->c);
    }
    f->c[f->n++] = c;
}

/* Does a contain b? */
static int contains(const cube *a, const cube *b)
{
    for (uint32_t w = 0; w < a->words; w++)
        if ((a->bit[w] & b->bit[w]) != b->bit[w])
            return 0;
    return 1;
}

/* The intersection of a and b, a fresh cube; *distance: the number of
 * variables where it is empty, *where: the last of them. */
static cube *intersect(const cube *a, const cube *b, unsigned *distance, unsigned *where)
{
    cube *t = cube_new(a->words);
    *distance = 0;
    for (uint32_t w = 0; w < a->words; w++) {
        uint32_t x = a->bit[w] & b->bit[w];
        t->bit[w] = x;
        uint32_t empty = ~(x | (x >> 1)) & 0x55555555u;
        if (empty != 0) {
            *distance += (unsigned)__builtin_popcount(empty);
            *where = w * 16 + (unsigned)__builtin_ctz(empty) / 2;
        }
    }
    return t;
}

static size_t consensus_added;

static uint64_t minimise(uint64_t *rng)
{
    unsigned vars = (unsigned)rng_range(rng, 8, 48);
    uint32_t words = (2 * vars + 31) / 32;
    size_t k = rng_range(rng, 30, 90);
    cover f = {0};
    for (size_t i = 0; i < k; i++) {
        cube *c = cube_new(words);
        memset(c->bit, 0xff, words * sizeof(uint32_t)); /* unused pairs: don't care */
        for (unsigned v = 0; v < vars; v++) {
            uint64_t r = rng_next(rng) % 8;
            uint32_t lit = r == 0 ? 1u : r == 1 ? 2u : 3u;
            c->bit[v / 16] &= ~(3u << (2 * (v % 16)));
            c->bit[v / 16] |= lit << (2 * (v % 16));
        }
        cover_add(&f, c);
    }
    for (int pass = 0; pass < 3; pass++) {
        cover g = {0};
        for (size_t i = 0; i < f.n; i++)
            cover_add(&g, f.c[i]);
        for (size_t i = 0; i < f.n && g.n < 4 * k; i++)
            for (size_t j = i + 1; j < f.n && g.n < 4 * k; j++) {
                unsigned distance, where = 0;
                cube *t = intersect(f.c[i], f.c[j], &distance, &where);
                if (distance != 1) {
                    free(t);
                    continue;
                }
                t->bit[where / 16] |= 3u << (2 * (where % 16));
                int covered = 0;
                for (size_t x = 0; x < f.n && !covered; x++)
                    covered = contains(f.c[x], t);
                if (covered)
                    free(t);
                else {
                    cover_add(&g, t);
                    consensus_added++;
                }
            }
        /* drop every cube another contains (of equal ones, keep the first) */
        unsigned char *dropped = xcalloc(g.n, 1);
        for (size_t i = 0; i < g.n; i++)
            for (size_t j = 0; j < g.n && !dropped[i]; j++)
                if (j != i && contains(g.c[j], g.c[i]) && (j < i || !contains(g.c[i], g.c[j])))
                    dropped[i] = 1;
        cover h = {0};
        for (size_t i = 0; i < g.n; i++) {
            if (dropped[i])
                free(g.c[i]);
            else
                cover_add(&h, g.c[i]);
        }
        free(dropped);
        free(g.c);
        free(f.c);
        f = h;
    }
    uint64_t hash = f.n;
    for (size_t i = 0; i < f.n; i++) {
        for (uint32_t w = 0; w < f.c[i]->words; w++)
            hash = hash * 0x100000001b3ULL + f.c[i]->bit[w];
        free(f.c[i]);
    }
    free(f.c);
    return hash;
}

int main(int argc, char **argv)
{
    classic_args(argc, argv, "espresso", "");
    size_t functions = classic_scaled(1500);
    uint64_t rng = 0xe5b7e550ULL, result = 0;
    for (size_t i = 0; i < functions; i++)
        result = result * 31 + minimise(&rng);
    fprintf(stderr, "espresso: %zu consensus cubes added\n", consensus_added);
    classic_result(result);
    return 0;
}
