/* A program that links libbrisk.a and has functions and variables named
 * like brisk's internals. It builds only if libbrisk.a keeps nothing but
 * its public names global (see the top-level CMakeLists.txt); it then
 * checks both its own definitions and brisk's malloc are the ones used. */
#include "check.h"

#include "brisk.h"

#include <errno.h>

/* Names brisk uses inside libbrisk.a. */
int os_map = 5;
int report_error(void);
int report_error(void) { return 42; }
int random_next(void);
int random_next(void) { return 7; }

int main(void)
{
    CHECK_EQ(os_map, 5);
    CHECK_EQ(report_error(), 42);
    CHECK_EQ(random_next(), 7);
    char *p = malloc(100);
    REQUIRE(p != NULL);
    /* The block is brisk's: its own usable-size query accepts it. */
    CHECK(brisk_malloc_usable_size(p) >= 100);
    CHECK_EQ(brisk_malloc_check(), 0);
    free(p);
    return check_finish("test_static_names");
}
