/*
 * brisk_assert is on in a BRISK_DEBUG build and off otherwise: a broken
 * internal precondition (here, a chunk size that is not one) aborts with
 * the assertion's message in the debug build, and costs nothing, not even
 * the evaluation of its condition, in the others. Built against
 * brisk_core (assertions off) and brisk_core_debug (on) by
 * tests/heap/CMakeLists.txt, which passes the expectation.
 */
#include "check.h"

#include "heap/heap.h"

static volatile size_t not_a_chunk_size = 24; /* below CHUNK_MIN_SIZE, not a multiple of 16 */

static void class_of_a_bad_size(void *arg)
{
    (void)arg;
    size_t cls = chunk_class_of(not_a_chunk_size);
    fprintf(stderr, "returned class %zu\n", cls);
}

static int evaluations;

/* Referenced only inside brisk_assert, which does not evaluate it when
 * assertions are off: clang then calls it unneeded (an error under
 * -Werror), hence "unused". */
__attribute__((unused)) static int count_evaluation(void)
{
    return ++evaluations;
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    int debug = strcmp(argv[1], "on") == 0;
    CHECK_EQ(BRISK_DEBUG, debug);
    child_result r = run_in_child(class_of_a_bad_size, NULL);
    if (debug) {
        CHECK_ABORTS_WITH(r, "brisk: internal assertion failed: chunk_class_of: not a chunk size");
        CHECK(strstr(r.output, "heap.h:") != NULL);
    } else {
        CHECK(r.exited && r.exit_code == 0);
        CHECK(strstr(r.output, "returned class") != NULL);
    }
    brisk_assert(count_evaluation() > 0, "counted");
    CHECK_EQ(evaluations, debug ? 1 : 0);
    return check_finish(debug ? "test_debug_assert (on)" : "test_debug_assert (off)");
}
