/*
 * Reporting of detected misuse. Every allocator in brisk funnels what it
 * detects through report_error, so the message format and the choice
 * between "print and abort" and "call the user's handler" live in one
 * place. Nothing here allocates: a report may come from inside malloc.
 */
#include "internal.h"

#include <string.h>

/* The handler and its context are read and written as one pair under a
 * tiny spinlock, so a report never sees a handler with another's context. */
static brisk_error_handler installed_handler;
static void *installed_context;
static int handler_lock;

static void handler_lock_take(void)
{
    while (__atomic_exchange_n(&handler_lock, 1, __ATOMIC_ACQUIRE) != 0) {
        while (__atomic_load_n(&handler_lock, __ATOMIC_RELAXED) != 0)
            ;
    }
}

static void handler_lock_drop(void)
{
    __atomic_store_n(&handler_lock, 0, __ATOMIC_RELEASE);
}

brisk_error_handler brisk_set_error_handler(brisk_error_handler handler, void *context)
{
    handler_lock_take();
    brisk_error_handler previous = installed_handler;
    installed_handler = handler;
    installed_context = context;
    handler_lock_drop();
    return previous;
}

size_t format_hex(char *buf, uintptr_t value)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[sizeof(uintptr_t) * 2];
    size_t n = 0;
    do {
        tmp[n++] = digits[value & 0xf];
        value >>= 4;
    } while (value != 0);
    buf[0] = '0';
    buf[1] = 'x';
    for (size_t i = 0; i < n; i++)
        buf[2 + i] = tmp[n - 1 - i];
    return n + 2;
}

void report_error(brisk_error error, const char *message, const void *ptr)
{
    handler_lock_take();
    brisk_error_handler handler = installed_handler;
    void *context = installed_context;
    handler_lock_drop();

    if (handler != NULL) {
        handler(error, message, ptr, context);
        return;
    }

    /* "brisk: <message> (pointer 0x...)\n", built without stdio. */
    char line[256];
    size_t len = 0;
    static const char prefix[] = "brisk: ";
    static const char middle[] = " (pointer ";
    size_t msg_len = strlen(message);
    if (msg_len > sizeof(line) - 64)
        msg_len = sizeof(line) - 64;
    memcpy(line + len, prefix, sizeof(prefix) - 1);
    len += sizeof(prefix) - 1;
    memcpy(line + len, message, msg_len);
    len += msg_len;
    memcpy(line + len, middle, sizeof(middle) - 1);
    len += sizeof(middle) - 1;
    len += format_hex(line + len, (uintptr_t)ptr);
    line[len++] = ')';
    line[len++] = '\n';
    os_write_stderr(line, len);
    os_abort();
}
