/* A program linked with libbrisk.a whose first call into the allocator is
 * a free of a stack address: before any allocation there is no segment
 * map yet, and the free must still be reported as misuse, not crash.
 * The child is forked before anything in this process allocates. */
#include "check.h"

#include <stdlib.h>

static void free_stack_first(void *arg)
{
    (void)arg;
    int on_stack[4] = {0};
    void *volatile p = &on_stack[2];
    free(p);
}

int main(void)
{
    child_result r = run_in_child(free_stack_first, NULL);
    CHECK_ABORTS_WITH(r, "brisk: ");
    CHECK_ABORTS_WITH(r, "(pointer 0x");
    return check_finish("test_first_call_free");
}
