/* Tests of the bump arena: alignment, exhaustion and recovery, overflow
 * safety, reset, save/restore, and arenas over a caller's buffer. */
#include "check.h"

#include "brisk.h"

#include <errno.h>
#include <stdalign.h>
#include <stddef.h>

static int aligned_to(const void *p, size_t alignment)
{
    return ((uintptr_t)p & (alignment - 1)) == 0;
}

static void test_basic_alignment(void)
{
    brisk_arena *arena = brisk_arena_create(4096);
    REQUIRE(arena != NULL);
    CHECK(brisk_arena_capacity(arena) >= 4096);
    CHECK_EQ(brisk_arena_used(arena), 0);
    char *prev = NULL;
    for (size_t size = 0; size < 40; size++) {
        char *p = brisk_arena_alloc(arena, size);
        REQUIRE(p != NULL);
        CHECK(aligned_to(p, BRISK_ALIGNMENT));
        CHECK(aligned_to(p, alignof(max_align_t)));
        CHECK(p != prev); /* even size 0 gets a unique pointer */
        memset(p, 0xab, size);
        prev = p;
    }
    /* Exact packing: three 16-byte blocks are 16 apart. */
    brisk_arena_reset(arena);
    char *a = brisk_arena_alloc(arena, 16);
    char *b = brisk_arena_alloc(arena, 16);
    char *c = brisk_arena_alloc(arena, 1);
    char *d = brisk_arena_alloc(arena, 1);
    CHECK_EQ(b - a, 16);
    CHECK_EQ(c - b, 16);
    CHECK_EQ(d - c, 16);
    CHECK_EQ(brisk_arena_used(arena), 49);
    brisk_arena_destroy(arena);
}

static void test_aligned(void)
{
    brisk_arena *arena = brisk_arena_create(1 << 20);
    REQUIRE(arena != NULL);
    for (size_t alignment = 1; alignment <= 65536; alignment <<= 1) {
        brisk_arena_alloc(arena, 3); /* knock the top off alignment */
        void *p = brisk_arena_alloc_aligned(arena, alignment, 5);
        REQUIRE(p != NULL);
        CHECK(aligned_to(p, alignment < 16 ? 16 : alignment));
    }
    errno = 0;
    CHECK(brisk_arena_alloc_aligned(arena, 24, 8) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(brisk_arena_alloc_aligned(arena, 0, 8) == NULL);
    CHECK_EQ(errno, EINVAL);
    /* An alignment larger than the whole arena fails cleanly. */
    size_t used = brisk_arena_used(arena);
    errno = 0;
    CHECK(brisk_arena_alloc_aligned(arena, (size_t)1 << 62, 1) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(brisk_arena_used(arena), used);
    brisk_arena_destroy(arena);
}

static void test_exhaustion_and_overflow(void)
{
    brisk_arena *arena = brisk_arena_create(1000);
    REQUIRE(arena != NULL);
    size_t capacity = brisk_arena_capacity(arena);
    char *whole = brisk_arena_alloc(arena, capacity);
    REQUIRE(whole != NULL);
    memset(whole, 1, capacity);
    errno = 0;
    CHECK(brisk_arena_alloc(arena, 1) == NULL);
    CHECK_EQ(errno, ENOMEM);
    brisk_arena_reset(arena);

    char *p = brisk_arena_alloc(arena, 100);
    REQUIRE(p != NULL);
    size_t used = brisk_arena_used(arena);
    size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX / 2 + 1, capacity};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        errno = 0;
        CHECK(brisk_arena_alloc(arena, huge[i]) == NULL);
        CHECK_EQ(errno, ENOMEM);
        CHECK_EQ(brisk_arena_used(arena), used); /* unchanged, still usable */
    }
    CHECK(brisk_arena_alloc(arena, 10) != NULL);
    brisk_arena_destroy(arena);

    errno = 0;
    CHECK(brisk_arena_create(0) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(brisk_arena_create(SIZE_MAX) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(brisk_arena_create(SIZE_MAX - 4096) == NULL);
    CHECK_EQ(errno, ENOMEM);
}

static void test_save_restore(void)
{
    brisk_arena *arena = brisk_arena_create(8192);
    REQUIRE(arena != NULL);
    char *keep = brisk_arena_alloc(arena, 64);
    memset(keep, 'k', 64);
    brisk_arena_mark mark = brisk_arena_save(arena);
    char *scratch = brisk_arena_alloc(arena, 1000);
    REQUIRE(scratch != NULL);
    memset(scratch, 's', 1000);
    brisk_arena_mark inner = brisk_arena_save(arena);
    brisk_arena_alloc(arena, 100);
    CHECK_EQ(brisk_arena_restore(arena, mark), 0);
    CHECK_EQ(brisk_arena_used(arena), mark.offset);
    /* The next block reuses the scratch space; the kept block is intact. */
    CHECK(brisk_arena_alloc(arena, 8) == scratch);
    for (int i = 0; i < 64; i++)
        CHECK_EQ(keep[i], 'k');
    /* A mark from past the current position is refused, arena unchanged. */
    size_t used = brisk_arena_used(arena);
    errno = 0;
    CHECK_EQ(brisk_arena_restore(arena, inner), -1);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(brisk_arena_used(arena), used);
    brisk_arena_destroy(arena);
}

static void test_create_in(void)
{
    alignas(16) static unsigned char buffer[1024];
    brisk_arena *arena = brisk_arena_create_in(buffer, sizeof buffer);
    REQUIRE(arena != NULL);
    CHECK((unsigned char *)arena >= buffer);
    CHECK(brisk_arena_capacity(arena) > 900);
    CHECK(brisk_arena_capacity(arena) < sizeof buffer);
    char *p = brisk_arena_alloc(arena, 10);
    REQUIRE(p != NULL);
    CHECK((unsigned char *)p >= buffer && (unsigned char *)p + 10 <= buffer + sizeof buffer);
    /* Fill to the last byte, never past the buffer. */
    size_t rest = brisk_arena_capacity(arena) - brisk_arena_used(arena);
    rest -= rest % 16;
    char *last = brisk_arena_alloc(arena, rest);
    REQUIRE(last != NULL);
    CHECK((unsigned char *)last + rest <= buffer + sizeof buffer);
    brisk_arena_destroy(arena); /* forgets, does not unmap a static buffer */
    buffer[0] = 1;

    /* A misaligned buffer still works: the arena aligns inside it. */
    brisk_arena *odd = brisk_arena_create_in(buffer + 3, 500);
    REQUIRE(odd != NULL);
    CHECK(aligned_to(brisk_arena_alloc(odd, 1), 16));

    errno = 0;
    CHECK(brisk_arena_create_in(NULL, 100) == NULL);
    CHECK_EQ(errno, EINVAL);
    for (size_t size = 0; size < 40; size++) {
        errno = 0;
        brisk_arena *tiny = brisk_arena_create_in(buffer, size);
        if (tiny == NULL)
            CHECK_EQ(errno, EINVAL);
        else
            CHECK(brisk_arena_alloc(tiny, 1) != NULL);
    }
}

int main(void)
{
    test_basic_alignment();
    test_aligned();
    test_exhaustion_and_overflow();
    test_save_restore();
    test_create_in();
    return check_finish("test_arena");
}
