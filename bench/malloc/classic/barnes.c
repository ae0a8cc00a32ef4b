/*
 * barnes: the Barnes-Hut n-body simulation of the classic barnes
 * benchmark: the bodies live throughout; every time step builds an octree
 * over them, one block per cell, computes each cell's mass and centre of
 * mass, the force on every body (cells far enough away, by the opening
 * angle 0.5, count as one body), moves the bodies, and frees the tree.
 *
 *   barnes [SCALE]
 */
#define _GNU_SOURCE
#include <math.h>

#include "classic.h"

enum { BODIES = 3000, MAX_DEPTH = 48 };

typedef struct body {
    double pos[3], vel[3], acc[3], mass;
    struct body *next; /* the other bodies of a leaf at MAX_DEPTH */
} body;

typedef struct cell {
    struct cell *child[8];
    body *leaf; /* a leaf holds bodies and no children */
    double centre[3], half; /* the cube the cell covers */
    double mass, com[3];
} cell;

static size_t cells;

static cell *cell_new(const double centre[3], double half)
{
    cell *c = xmalloc(sizeof *c);
    memset(c->child, 0, sizeof c->child);
    c->leaf = NULL;
    memcpy(c->centre, centre, sizeof c->centre);
    c->half = half;
    c->mass = 0;
    cells++;
    return c;
}

static unsigned octant(const cell *c, const double pos[3])
{
    return (pos[0] >= c->centre[0]) | (pos[1] >= c->centre[1]) << 1 |
           (pos[2] >= c->centre[2]) << 2;
}

static cell *child_of(cell *c, unsigned o)
{
    if (c->child[o] == NULL) {
        double centre[3];
        double h = c->half / 2;
        for (int k = 0; k < 3; k++)
            centre[k] = c->centre[k] + ((o >> k) & 1 ? h : -h);
        c->child[o] = cell_new(centre, h);
    }
    return c->child[o];
}

static int is_empty_leaf(const cell *c)
{
    for (int o = 0; o < 8; o++)
        if (c->child[o] != NULL)
            return 0;
    return c->leaf == NULL;
}

static void insert(cell *c, body *b, int depth)
{
    for (;;) {
        int has_children = !is_empty_leaf(c) && c->leaf == NULL;
        if (!has_children && c->leaf == NULL) {
            c->leaf = b;
            b->next = NULL;
            return;
        }
        if (depth >= MAX_DEPTH) {
            b->next = c->leaf;
            c->leaf = b;
            return;
        }
        if (c->leaf != NULL) {
            /* split: push the leaf's body one level down */
            body *old = c->leaf;
            c->leaf = NULL;
            cell *down = child_of(c, octant(c, old->pos));
            down->leaf = old;
        }
        c = child_of(c, octant(c, b->pos));
        depth++;
    }
}

static void summarise(cell *c)
{
    c->mass = 0;
    double m[3] = {0, 0, 0};
    for (body *b = c->leaf; b != NULL; b = b->next) {
        c->mass += b->mass;
        for (int k = 0; k < 3; k++)
            m[k] += b->mass * b->pos[k];
    }
    for (int o = 0; o < 8; o++)
        if (c->child[o] != NULL) {
            summarise(c->child[o]);
            c->mass += c->child[o]->mass;
            for (int k = 0; k < 3; k++)
                m[k] += c->child[o]->mass * c->child[o]->com[k];
        }
    for (int k = 0; k < 3; k++)
        c->com[k] = c->mass > 0 ? m[k] / c->mass : c->centre[k];
}

static void pull(double acc[3], const double pos[3], const double from[3], double mass)
{
    double d[3], r2 = 1e-4; /* softening */
    for (int k = 0; k < 3; k++) {
        d[k] = from[k] - pos[k];
        r2 += d[k] * d[k];
    }
    double f = mass / (r2 * sqrt(r2));
    for (int k = 0; k < 3; k++)
        acc[k] += f * d[k];
}

static void force(const cell *c, body *b)
{
    double d2 = 0;
    for (int k = 0; k < 3; k++)
        d2 += (c->com[k] - b->pos[k]) * (c->com[k] - b->pos[k]);
    if (4 * c->half * c->half < 0.25 * d2) { /* (size / distance)^2 < 0.5^2 */
        pull(b->acc, b->pos, c->com, c->mass);
        return;
    }
    for (const body *o = c->leaf; o != NULL; o = o->next)
        if (o != b)
            pull(b->acc, b->pos, o->pos, o->mass);
    for (int o = 0; o < 8; o++)
        if (c->child[o] != NULL)
            force(c->child[o], b);
}

static void free_tree(cell *c)
{
    for (int o = 0; o < 8; o++)
        if (c->child[o] != NULL)
            free_tree(c->child[o]);
    free(c);
}

int main(int argc, char **argv)
{
    classic_args(argc, argv, "barnes", "");
    size_t steps = classic_scaled(16);
    uint64_t rng = 0xba27e5ULL;
    body **bodies = xcalloc(BODIES, sizeof *bodies);
    for (size_t i = 0; i < BODIES; i++) {
        body *b = xmalloc(sizeof *b);
        memset(b, 0, sizeof *b);
        /* a clump: the sum of three uniforms per axis, around the origin */
        for (int k = 0; k < 3; k++)
            b->pos[k] = ((double)(rng_next(&rng) >> 11) + (double)(rng_next(&rng) >> 11) +
                         (double)(rng_next(&rng) >> 11)) / (double)(1ULL << 53) / 1.5 - 1.0;
        b->mass = 1.0 / BODIES;
        bodies[i] = b;
    }
    const double dt = 0.001;
    for (size_t s = 0; s < steps; s++) {
        double lo = bodies[0]->pos[0], hi = lo;
        for (size_t i = 0; i < BODIES; i++)
            for (int k = 0; k < 3; k++) {
                lo = fmin(lo, bodies[i]->pos[k]);
                hi = fmax(hi, bodies[i]->pos[k]);
            }
        double centre[3] = {(lo + hi) / 2, (lo + hi) / 2, (lo + hi) / 2};
        cell *root = cell_new(centre, (hi - lo) / 2 * 1.0001 + 1e-9);
        for (size_t i = 0; i < BODIES; i++)
            insert(root, bodies[i], 0);
        summarise(root);
        for (size_t i = 0; i < BODIES; i++) {
            body *b = bodies[i];
            memset(b->acc, 0, sizeof b->acc);
            force(root, b);
        }
        for (size_t i = 0; i < BODIES; i++)
            for (int k = 0; k < 3; k++) {
                bodies[i]->vel[k] += dt * bodies[i]->acc[k];
                bodies[i]->pos[k] += dt * bodies[i]->vel[k];
            }
        free_tree(root);
    }
    uint64_t result = cells;
    for (size_t i = 0; i < BODIES; i++) {
        for (int k = 0; k < 3; k++)
            result = result * 31 + (uint64_t)(int64_t)llround(bodies[i]->pos[k] * 1e9);
        free(bodies[i]);
    }
    free(bodies);
    classic_result(result);
    return 0;
}
