/*
 * cfrac: the allocation pattern of a continued-fraction factoring
 * program (the classic cfrac benchmark factors with Morrison and
 * Brillhart's method on a bignum library that allocates every result):
 * many small, short-lived bignums, and a few long-lived relations.
 *
 * It expands sqrt(N) as a continued fraction for a 128-bit N, with the
 * recurrences m' = d a - m, d' = (N - m'^2) / d, a' = (a0 + m') / d' and
 * A' = (a' A + A_prev) mod N, every bignum a fresh block; each d' is
 * trial-divided over a factor base, and those that factor (fully, or up
 * to one cofactor below 2^32) are kept as relations until the end.
 *
 *   cfrac [SCALE]
 */
#define _GNU_SOURCE
#include "classic.h"

/* A non-negative integer: n 32-bit limbs, least significant first, no
 * leading zero limb (zero has none). Always a block of its own. */
typedef struct big {
    uint32_t n;
    uint32_t d[];
} big;

static big *big_alloc(uint32_t n)
{
    big *b = xmalloc(sizeof(big) + (size_t)n * sizeof(uint32_t));
    b->n = n;
    return b;
}

static void big_trim(big *b)
{
    while (b->n > 0 && b->d[b->n - 1] == 0)
        b->n--;
}

static big *big_u64(uint64_t v)
{
    big *b = big_alloc(2);
    b->d[0] = (uint32_t)v;
    b->d[1] = (uint32_t)(v >> 32);
    big_trim(b);
    return b;
}

static big *big_copy(const big *a)
{
    big *b = big_alloc(a->n);
    memcpy(b->d, a->d, (size_t)a->n * sizeof(uint32_t));
    return b;
}

static int limbs_cmp(const uint32_t *a, uint32_t an, const uint32_t *b, uint32_t bn)
{
    if (an != bn)
        return an < bn ? -1 : 1;
    for (uint32_t i = an; i-- > 0;)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

static int big_cmp(const big *a, const big *b)
{
    return limbs_cmp(a->d, a->n, b->d, b->n);
}

static big *big_add(const big *a, const big *b)
{
    if (a->n < b->n) {
        const big *t = a;
        a = b;
        b = t;
    }
    big *r = big_alloc(a->n + 1);
    uint64_t carry = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        carry += (uint64_t)a->d[i] + (i < b->n ? b->d[i] : 0);
        r->d[i] = (uint32_t)carry;
        carry >>= 32;
    }
    r->d[a->n] = (uint32_t)carry;
    big_trim(r);
    return r;
}

/* a - b into limbs r (n limbs of a), a >= b. */
static void limbs_sub(uint32_t *r, const uint32_t *a, uint32_t an, const uint32_t *b, uint32_t bn)
{
    int64_t borrow = 0;
    for (uint32_t i = 0; i < an; i++) {
        int64_t v = (int64_t)a[i] - (i < bn ? (int64_t)b[i] : 0) - borrow;
        borrow = v < 0;
        r[i] = (uint32_t)(v + (borrow ? ((int64_t)1 << 32) : 0));
    }
}

static big *big_sub(const big *a, const big *b)
{
    big *r = big_alloc(a->n);
    limbs_sub(r->d, a->d, a->n, b->d, b->n);
    big_trim(r);
    return r;
}

static big *big_mul(const big *a, const big *b)
{
    big *r = big_alloc(a->n + b->n);
    memset(r->d, 0, (size_t)r->n * sizeof(uint32_t));
    for (uint32_t i = 0; i < a->n; i++) {
        uint64_t carry = 0;
        for (uint32_t j = 0; j < b->n; j++) {
            carry += (uint64_t)a->d[i] * b->d[j] + r->d[i + j];
            r->d[i + j] = (uint32_t)carry;
            carry >>= 32;
        }
        r->d[i + b->n] = (uint32_t)carry;
    }
    big_trim(r);
    return r;
}

static unsigned big_bits(const big *a)
{
    if (a->n == 0)
        return 0;
    return 32 * (a->n - 1) + (32 - (unsigned)__builtin_clz(a->d[a->n - 1]));
}

static unsigned big_bit(const big *a, unsigned i)
{
    return (a->d[i / 32] >> (i % 32)) & 1;
}

/* Quotient of a / b (b not zero); the remainder in *rem. Binary long
 * division over the quotient's bits, in a scratch block. */
static big *big_divmod(const big *a, const big *b, big **rem)
{
    if (big_cmp(a, b) < 0) {
        *rem = big_copy(a);
        return big_alloc(0);
    }
    unsigned qbits = big_bits(a) - big_bits(b) + 1;
    uint32_t rn = b->n + 1;
    uint32_t *r = xcalloc(rn, sizeof(uint32_t));
    /* r = a >> qbits: the top bits(b) - 1 bits, which hold no quotient bit */
    for (unsigned i = qbits; i < big_bits(a); i++)
        if (big_bit(a, i))
            r[(i - qbits) / 32] |= 1u << ((i - qbits) % 32);
    big *q = big_alloc((qbits + 31) / 32);
    memset(q->d, 0, (size_t)q->n * sizeof(uint32_t));
    for (unsigned i = qbits; i-- > 0;) {
        uint32_t in = big_bit(a, i);
        for (uint32_t j = 0; j < rn; j++) {
            uint32_t out = r[j] >> 31;
            r[j] = (r[j] << 1) | in;
            in = out;
        }
        uint32_t used = rn;
        while (used > 0 && r[used - 1] == 0)
            used--;
        if (limbs_cmp(r, used, b->d, b->n) >= 0) {
            limbs_sub(r, r, used, b->d, b->n);
            q->d[i / 32] |= 1u << (i % 32);
        }
    }
    big *rb = big_alloc(rn);
    memcpy(rb->d, r, (size_t)rn * sizeof(uint32_t));
    big_trim(rb);
    free(r);
    big_trim(q);
    *rem = rb;
    return q;
}

static uint32_t big_mod_small(const big *a, uint32_t m)
{
    uint64_t r = 0;
    for (uint32_t i = a->n; i-- > 0;)
        r = ((r << 32) | a->d[i]) % m;
    return (uint32_t)r;
}

static big *big_div_small(const big *a, uint32_t m)
{
    big *q = big_alloc(a->n);
    uint64_t r = 0;
    for (uint32_t i = a->n; i-- > 0;) {
        r = (r << 32) | a->d[i];
        q->d[i] = (uint32_t)(r / m);
        r %= m;
    }
    big_trim(q);
    return q;
}

/* floor(sqrt(n)) by Newton's iteration. */
static big *big_isqrt(const big *n)
{
    big *x = big_alloc((big_bits(n) / 2 + 1) / 32 + 1);
    memset(x->d, 0, (size_t)x->n * sizeof(uint32_t));
    unsigned top = big_bits(n) / 2 + 1;
    x->d[top / 32] |= 1u << (top % 32);
    big_trim(x);
    for (;;) {
        big *rem, *q = big_divmod(n, x, &rem);
        big *s = big_add(x, q);
        big *y = big_div_small(s, 2);
        free(rem);
        free(q);
        free(s);
        if (big_cmp(y, x) >= 0) {
            free(y);
            return x;
        }
        free(x);
        x = y;
    }
}

static uint64_t pow_mod(uint64_t b, uint64_t e, uint64_t m)
{
    uint64_t r = 1;
    b %= m;
    while (e > 0) {
        if (e & 1)
            r = r * b % m;
        b = b * b % m;
        e >>= 1;
    }
    return r;
}

enum { BASE = 64 };

typedef struct relation {
    struct relation *next;
    big *A, *Q;
    uint32_t cofactor;
    unsigned char exponent[BASE];
} relation;

int main(int argc, char **argv)
{
    classic_args(argc, argv, "cfrac", "");
    size_t steps = classic_scaled(200000);

    /* N: 128 bits from the generator, odd, not a square (checked below) */
    uint64_t rng = 0xcf7ac0ffeeULL;
    big *N = big_alloc(4);
    for (int i = 0; i < 4; i++)
        N->d[i] = (uint32_t)rng_next(&rng);
    N->d[3] |= 0x80000000u;
    N->d[0] |= 1;

    /* the factor base: small odd primes p for which N is a square mod p */
    uint32_t base[BASE];
    unsigned nbase = 0;
    for (uint32_t p = 3; nbase < BASE; p += 2) {
        int prime = 1;
        for (uint32_t f = 3; f * f <= p; f += 2)
            if (p % f == 0)
                prime = 0;
        if (prime && pow_mod(big_mod_small(N, p), (p - 1) / 2, p) == 1)
            base[nbase++] = p;
    }

    big *a0 = big_isqrt(N);
    big *sq = big_mul(a0, a0);
    if (big_cmp(sq, N) == 0) {
        fprintf(stderr, "cfrac: N is a square\n");
        return 1;
    }
    free(sq);
    big *m = big_u64(0), *d = big_u64(1), *a = big_copy(a0);
    big *A_prev = big_u64(1), *A = big_copy(a0);
    relation *relations = NULL;
    uint64_t full = 0, partial = 0, hash = 0;
    for (size_t k = 0; k < steps; k++) {
        big *da = big_mul(d, a);
        big *m1 = big_sub(da, m);
        big *m1sq = big_mul(m1, m1);
        big *num = big_sub(N, m1sq);
        big *rem, *d1 = big_divmod(num, d, &rem);
        big *s = big_add(a0, m1);
        big *rem2, *a1 = big_divmod(s, d1, &rem2);
        free(da);
        free(m1sq);
        free(num);
        free(rem);
        free(s);
        free(rem2);

        /* A' = (a' A + A_prev) mod N */
        big *t = big_mul(a1, A);
        big *t2 = big_add(t, A_prev);
        big *rem3, *q3 = big_divmod(t2, N, &rem3);
        free(t);
        free(t2);
        free(q3);
        free(A_prev);
        A_prev = A;
        A = rem3;

        /* trial division of d' over the factor base */
        unsigned char exponent[BASE] = {0};
        big *c = big_copy(d1);
        while (c->n > 0 && (c->d[0] & 1) == 0) {
            big *h = big_div_small(c, 2);
            free(c);
            c = h;
        }
        for (unsigned i = 0; i < nbase; i++)
            while (big_mod_small(c, base[i]) == 0) {
                big *h = big_div_small(c, base[i]);
                free(c);
                c = h;
                exponent[i]++;
            }
        if (c->n <= 1) {
            relation *r = xmalloc(sizeof *r);
            r->A = big_copy(A);
            r->Q = big_copy(d1);
            r->cofactor = c->n == 0 ? 0 : c->d[0];
            memcpy(r->exponent, exponent, sizeof exponent);
            r->next = relations;
            relations = r;
            if (r->cofactor == 1)
                full++;
            else
                partial++;
        }
        free(c);
        hash = hash * 1000003 + (d1->n > 0 ? d1->d[0] : 0) + a1->n;

        free(m);
        free(d);
        free(a);
        m = m1;
        d = d1;
        a = a1;
    }
    uint64_t result = hash ^ (full << 48) ^ (partial << 32);
    while (relations != NULL) {
        relation *r = relations;
        relations = r->next;
        result = result * 31 + (r->A->n > 0 ? r->A->d[0] : 0) + r->cofactor + r->exponent[0];
        free(r->A);
        free(r->Q);
        free(r);
    }
    free(m);
    free(d);
    free(a);
    free(A);
    free(A_prev);
    free(a0);
    free(N);
    fprintf(stderr, "cfrac: %llu full and %llu partial relations in %zu steps\n",
            (unsigned long long)full, (unsigned long long)partial, steps);
    classic_result(result);
    return 0;
}
