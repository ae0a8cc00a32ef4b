/* brisk's misuse reports, as tests see them: report_for(message, p) is
 * the line the default handler prints before it aborts (compare it with
 * a child's stderr, check.h's run_in_child); record_report is an error
 * handler that returns, keeping the reports in a report_log for the test
 * to read:
 *
 *   report_log log = {0};
 *   brisk_set_error_handler(record_report, &log);
 *   ...misuse...
 *   CHECK_REPORT(log, 1, BRISK_ERROR_DOUBLE_FREE, "double free", p);
 *   brisk_set_error_handler(NULL, NULL);
 */
#ifndef BRISK_TESTS_REPORT_H
#define BRISK_TESTS_REPORT_H

#include "check.h"

#include "brisk.h"

/* "brisk: <message> (pointer 0x...)" for p, as report_error prints it.
 * The result lives in a static buffer until the next call. */
static inline const char *report_for(const char *message, const void *p)
{
    static char line[256];
    snprintf(line, sizeof line, "brisk: %s (pointer %p)", message, p);
    return line;
}

typedef struct report_log {
    int count;               /* reports so far */
    brisk_error last_error;  /* the last one's kind, message and pointer */
    const void *last_ptr;
    char last_message[256];
} report_log;

static inline void record_report(brisk_error error, const char *message, const void *ptr, void *context)
{
    report_log *log = context;
    log->count++;
    log->last_error = error;
    log->last_ptr = ptr;
    snprintf(log->last_message, sizeof log->last_message, "%s", message);
}

/* The log holds n reports, the last of kind `error` with `message` about
 * `ptr`. */
#define CHECK_REPORT(log, n, error, message, ptr)                                                                  \
    do {                                                                                                           \
        CHECK_EQ((log).count, (n));                                                                                \
        CHECK_EQ((log).last_error, (error));                                                                       \
        CHECK_MSG(strcmp((log).last_message, (message)) == 0, "message \"%s\"", (log).last_message);               \
        CHECK((log).last_ptr == (ptr));                                                                            \
    } while (0)

#endif /* BRISK_TESTS_REPORT_H */
