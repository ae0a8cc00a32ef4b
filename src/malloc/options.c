/*
 * BRISK_OPTIONS: the process allocator's settings, from one environment
 * variable of comma-separated `name` or `name=value` items. Read once, at
 * the first allocation, so nothing here may allocate: the environment is
 * walked by hand and messages go out through os_write_stderr.
 *
 *   stats              print a statistics summary at exit
 *   verbose            note OS memory events (maps, unmaps, purges)
 *   decay_ms=N         free memory is returned to the OS after N ms
 *                      unused (default 1000; 0 returns it at once)
 *   large_cache_mb=N   MiB of freed large blocks kept mapped for reuse
 *                      (default 64)
 *   profile[=RATE]     sampled heap profiling, one sample per RATE bytes
 *                      on average (default 524288; 0 is off): profile.c
 *   profile_path=P     where the profile goes (%p: the process id;
 *                      default brisk-profile.%p.btr)
 */
#include "malloc/internal.h"

extern char **environ;

brisk_options malloc_options = {
    .stats = 0,
    .stats_fd = -1,
    .verbose = 0,
    .decay_ms = 30,
    .large_cache = (size_t)64 << 20,
};

void options_warn(const char *what, const char *item, size_t len)
{
    text_line line = {.len = 0};
    line_add_str(&line, "brisk: BRISK_OPTIONS: ");
    line_add_str(&line, what);
    line_add_str(&line, " \"");
    line_add(&line, item, len > 80 ? 80 : len);
    line_add_str(&line, "\"");
    line_write(&line);
}

/* Parses a decimal number in [s, s + len); false when it is not one or
 * does not fit in 48 bits (more than any sensible setting). */
bool options_parse_number(const char *s, size_t len, uint64_t *out)
{
    if (len == 0)
        return false;
    uint64_t value = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        value = value * 10 + (uint64_t)(s[i] - '0');
        if (value > ((uint64_t)1 << 48))
            return false;
    }
    *out = value;
    return true;
}

static bool name_is(const char *name, size_t len, const char *expected)
{
    return strlen(expected) == len && memcmp(name, expected, len) == 0;
}

static void option_apply(const char *item, size_t len)
{
    const char *eq = memchr(item, '=', len);
    size_t name_len = eq != NULL ? (size_t)(eq - item) : len;
    const char *value = eq != NULL ? eq + 1 : NULL;
    size_t value_len = eq != NULL ? len - name_len - 1 : 0;
    uint64_t number = 1;

    if (profile_option(item, len))
        return; /* profile, profile=RATE, profile_path=P: see profile.c */
    if (value != NULL && !options_parse_number(value, value_len, &number)) {
        options_warn("ignoring an option whose value is not a number:", item, len);
        return;
    }
    if (name_is(item, name_len, "stats")) {
        malloc_options.stats = number != 0;
    } else if (name_is(item, name_len, "verbose")) {
        malloc_options.verbose = number != 0;
    } else if (name_is(item, name_len, "decay_ms")) {
        if (value == NULL)
            options_warn("decay_ms needs a value, ignoring", item, len);
        else
            malloc_options.decay_ms = number;
    } else if (name_is(item, name_len, "large_cache_mb")) {
        if (value == NULL)
            options_warn("large_cache_mb needs a value, ignoring", item, len);
        else
            /* Past what size_t holds in bytes, "no limit" is meant. */
            malloc_options.large_cache = (size_t)number > SIZE_MAX >> 20 ? SIZE_MAX : (size_t)number << 20;
    } else if (value == NULL && harden_option(item, name_len)) {
        /* hardened, canary, wipe, guard, delay: see harden.c */
    } else {
        options_warn("ignoring unknown option", item, len);
    }
}

void options_read(void)
{
    static const char key[] = "BRISK_OPTIONS=";
    const char *text = NULL;
    for (char **env = environ; env != NULL && *env != NULL; env++) {
        if (strncmp(*env, key, sizeof key - 1) == 0) {
            text = *env + sizeof key - 1;
            break;
        }
    }
    if (text == NULL)
        return;
    while (*text != '\0') {
        const char *end = strchr(text, ',');
        size_t len = end != NULL ? (size_t)(end - text) : strlen(text);
        while (len > 0 && *text == ' ') {
            text++;
            len--;
        }
        while (len > 0 && text[len - 1] == ' ')
            len--;
        if (len > 0)
            option_apply(text, len);
        if (end == NULL)
            break;
        text = end + 1;
    }
    if (malloc_options.stats)
        malloc_options.stats_fd = os_dup_stderr();
}
