/*
 * Reporting of detected misuse. Every allocator in brisk funnels what it
 * detects through report_error, so the message format and the choice
 * between "print and abort" and "call the user's handler" live in one
 * place. Nothing here allocates: a report may come from inside malloc.
 */
#include "common/internal.h"

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

size_t format_decimal(char *buf, uint64_t value)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

/* Room for text: the newline line_write adds always fits. */
#define LINE_ROOM (sizeof(((text_line *)0)->text) - 1)

void line_add(text_line *line, const char *text, size_t len)
{
    if (len > LINE_ROOM - line->len)
        len = LINE_ROOM - line->len;
    memcpy(line->text + line->len, text, len);
    line->len += len;
}

void line_add_str(text_line *line, const char *text)
{
    line_add(line, text, strlen(text));
}

void line_add_hex(text_line *line, uintptr_t value)
{
    char digits[2 + sizeof(uintptr_t) * 2];
    line_add(line, digits, format_hex(digits, value));
}

void line_add_decimal(text_line *line, uint64_t value)
{
    char digits[20];
    line_add(line, digits, format_decimal(digits, value));
}

void line_write(text_line *line)
{
    line->text[line->len++] = '\n';
    os_write_stderr(line->text, line->len);
}

int check_report(const char *checker, unsigned invariant, const char *what, const void *where)
{
    text_line line = {.len = 0};
    line_add_str(&line, checker);
    line_add_str(&line, ": invariant ");
    line_add_decimal(&line, invariant);
    line_add_str(&line, ": ");
    line_add_str(&line, what);
    line_add_str(&line, " (at ");
    line_add_hex(&line, (uintptr_t)where);
    line_add_str(&line, ")");
    line_write(&line);
    return -1;
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

    text_line line = {.len = 0};
    line_add_str(&line, "brisk: ");
    line_add_str(&line, message);
    line_add_str(&line, " (pointer ");
    line_add_hex(&line, (uintptr_t)ptr);
    line_add_str(&line, ")");
    line_write(&line);
    os_abort();
}

void assert_fail(const char *message, const char *condition, const char *file, unsigned line)
{
    text_line out = {.len = 0};
    line_add_str(&out, "brisk: internal assertion failed: ");
    line_add_str(&out, message);
    line_add_str(&out, " (");
    line_add_str(&out, condition);
    line_add_str(&out, ") at ");
    line_add_str(&out, file);
    line_add_str(&out, ":");
    line_add_decimal(&out, line);
    line_write(&out);
    os_abort();
}
