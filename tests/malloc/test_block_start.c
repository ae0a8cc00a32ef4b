/*
 * The process allocator's block-start test (page_block_start in
 * src/malloc/internal.h: one multiply and one compare instead of a
 * division) against plain division, for every size class, every offset
 * of its page and around it, every 32-bit offset a pointer below the
 * page's start can give, and capacities from 0 to full.
 *
 * free() trusts this test to tell a block start from an interior pointer
 * and a carved block from one not carved yet, so it is checked
 * exhaustively rather than by example.
 */
#include "check.h"

#include "malloc/internal.h"

/* A page of class cls with `capacity` blocks carved, as segment.c and
 * page.c set it up (only the fields the test reads). */
static page page_with(unsigned cls, uint32_t capacity)
{
    page pg;
    memset(&pg, 0, sizeof pg);
    pg.block_size = (uint32_t)class_block_size(cls);
    pg.block_mul = block_mul_of(pg.block_size);
    pg.block_limit = block_limit_of(pg.block_mul, pg.block_size, capacity);
    return pg;
}

static bool expected_start(int64_t off, uint32_t block_size, uint32_t capacity)
{
    return off >= 0 && off % block_size == 0 && off / block_size < capacity;
}

/* Every offset from two blocks before the start (the hardened pad) to two
 * blocks past the page; returns the number of disagreements. */
static unsigned long sweep(unsigned cls, uint32_t capacity, size_t page_bytes)
{
    page pg = page_with(cls, capacity);
    unsigned long wrong = 0;
    int64_t from = -2 * (int64_t)pg.block_size;
    int64_t to = (int64_t)page_bytes + 2 * (int64_t)pg.block_size;
    for (int64_t off = from; off < to; off++) {
        /* What free computes: p - start, wrapped to 64 bits. */
        uintptr_t wrapped = (uintptr_t)off;
        if (page_block_start(&pg, wrapped) != expected_start(off, pg.block_size, capacity)) {
            if (wrong++ < 3)
                fprintf(stderr, "class %u (size %u), capacity %u: offset %lld misjudged\n", cls,
                        pg.block_size, capacity, (long long)off);
        }
    }
    return wrong;
}

int main(void)
{
    uint64_t rng = 0x9e3779b97f4a7c15u;
    for (unsigned cls = 0; cls < CLASS_COUNT; cls++) {
        size_t d = class_block_size(cls);
        size_t page_bytes = (size_t)1 << (cls <= SMALL_CLASS_LAST ? SMALL_PAGE_SHIFT : MEDIUM_PAGE_SHIFT);
        uint32_t reserved = (uint32_t)(page_bytes / d);
        uint64_t m = block_mul_of(d);
        /* The property the test rests on: m * d = 2^64 + e, 1 <= e <= d. */
        uint64_t e = m * (uint64_t)d;
        CHECK_MSG(e >= 1 && e <= d, "class %u: e = %llu for block size %zu", cls,
                  (unsigned long long)e, d);
        CHECK_MSG(m - 1 == (uint64_t)(((unsigned __int128)1 << 64) / d),
                  "class %u: block_mul is not floor(2^64 / %zu) + 1", cls, d);

        uint32_t capacities[] = {0, 1, reserved / 2 + 1, reserved - 1, reserved};
        for (size_t i = 0; i < sizeof capacities / sizeof capacities[0]; i++)
            CHECK_MSG(sweep(cls, capacities[i], page_bytes) == 0,
                      "class %u, capacity %u: the block-start test disagrees with division", cls,
                      capacities[i]);

        /* Any 32-bit offset, as a far-off pointer below the start gives. */
        page pg = page_with(cls, reserved);
        unsigned long wrong = 0;
        for (int i = 0; i < 200000; i++) {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            uint32_t off = (uint32_t)((rng * 0x2545f4914f6cdd1du) >> 32);
            if (page_block_start(&pg, off) != expected_start(off, pg.block_size, reserved))
                wrong++;
        }
        CHECK_MSG(wrong == 0, "class %u: %lu random 32-bit offsets misjudged", cls, wrong);
    }
    return check_finish("test_block_start");
}
