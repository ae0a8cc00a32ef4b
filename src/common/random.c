/*
 * Secrets, for every allocator of the library: free-list keys, free marks,
 * canaries and seals are all derived from a secret drawn here, so one
 * value seen in memory tells nothing usable about another.
 */
#include "common/internal.h"

uint64_t random_secret(const void *salt)
{
    uint64_t seed[2] = {0, 0};
    if (!os_random(seed, sizeof seed)) {
        /* No kernel randomness (very early boot, seccomp): mix what
         * differs between runs and callers (ASLR'd addresses of the stack,
         * the code and the caller's object, and the clock). Weaker, but
         * never constant and never predictable from the binary alone. */
        seed[0] = (uint64_t)(uintptr_t)&seed ^ ((uint64_t)(uintptr_t)salt << 17);
        seed[1] = os_now_ms() ^ (uint64_t)(uintptr_t)&random_secret;
    }
    uint64_t secret = mix64(seed[0] ^ mix64(seed[1]));
    return secret != 0 ? secret : 0x5bd1e9955bd1e995ull;
}
