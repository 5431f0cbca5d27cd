/*
 * log — one line per event: to the journal with structured fields when
 * stderr is connected to it (JOURNAL_STREAM), plain single-line text on
 * stderr otherwise. Used by the daemon and cashpayctl, never by the pure core.
 *
 * Messages may carry text an attacker chose (a charge id, a header value):
 * control characters, newlines and invalid UTF-8 are escaped before they are
 * written, so one call is always exactly one line. There is deliberately no
 * way to log a buffer as-is: secrets must simply never be passed in.
 *
 * All functions are thread-safe and leave errno unchanged.
 *
 * Failing and logging is one step: `return log_err_errno(r, "cannot open
 * %s", path);` logs "cannot open PATH: <strerror(-r)>" and returns r. When
 * the message already says why (an err buffer a module filled with
 * err_set()), `return log_err_return(r, "%s", err);` logs it as it is.
 * (The errno text is appended rather than written as "%m", which the
 * compiler rejects under -Wpedantic.)
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Log levels use syslog's numbering so they map 1:1 onto journal PRIORITY=. */
enum log_level {
        LOG_LEVEL_ERR = 3,
        LOG_LEVEL_WARNING = 4,
        LOG_LEVEL_NOTICE = 5,
        LOG_LEVEL_INFO = 6,
        LOG_LEVEL_DEBUG = 7,
};

/* Optional structured fields of a delivery; NULL/0 members are omitted. */
struct log_fields {
        const char *charge_id;     /* CHARGE_ID= */
        const char *outcome;       /* OUTCOME= */
        int64_t delivery_id;       /* DELIVERY_ID= (0 = none) */
        const char *remote_addr;   /* REMOTE_ADDR= */
        const char *message_id;    /* MESSAGE_ID= (a journal catalog id, not webhook-id) */
};

/*
 * log_init() - decide journal vs plain once, before threads start.
 * Journal mode is chosen when $JOURNAL_STREAM names the device and inode of
 * our stderr. @ident (copied) becomes SYSLOG_IDENTIFIER=; NULL means the
 * program's name. Calling no log_init() at all gives plain mode at info.
 */
void log_init(const char *ident, enum log_level level);

/* log_set_level() - may be called at any time (SIGHUP) while threads log. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* log_enabled() - whether @level passes the filter; skips costly formatting. */
bool log_enabled(enum log_level level);

/* log_to_journal() - true when log_init() chose the journal. */
bool log_to_journal(void);

void log_msg(enum log_level level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void log_fields(enum log_level level, const struct log_fields *f, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/*
 * log_rate_ok() - rate limit for noisy classes (rejected deliveries): at most
 * @burst lines per @interval_ms window; true when this line may be written.
 * When lines were suppressed, the first allowed call of a later window first
 * logs "N similar messages suppressed" (at notice). One struct per class,
 * usually static; the members are guarded by a lock inside log.c.
 */
struct log_ratelimit {
        int64_t window_start_ms;
        unsigned burst;       /* lines per window */
        unsigned interval_ms; /* window length */
        unsigned used;
        unsigned suppressed;
        bool started;
};
#define LOG_RATELIMIT_INIT(burst_, interval_ms_) \
        { .burst = (burst_), .interval_ms = (interval_ms_) }
int log_rate_ok(struct log_ratelimit *rl); /* thread-safe; returns 1 or 0 */

/* log_rate_ok_at() - the same with the monotonic time given (for tests). */
int log_rate_ok_at(struct log_ratelimit *rl, int64_t now_ms);

#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/*
 * log_errno() - log the message at @level, followed by ": " and the text of
 * -@r when @with_errno_text, and return @r (a negative errno, passed on).
 * Use it through the macros below.
 */
int log_errno(enum log_level level, int r, bool with_errno_text, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

#define log_err_errno(r, ...) log_errno(LOG_LEVEL_ERR, (r), true, __VA_ARGS__)
#define log_warning_errno(r, ...) log_errno(LOG_LEVEL_WARNING, (r), true, __VA_ARGS__)
#define log_notice_errno(r, ...) log_errno(LOG_LEVEL_NOTICE, (r), true, __VA_ARGS__)
#define log_debug_errno(r, ...) log_errno(LOG_LEVEL_DEBUG, (r), true, __VA_ARGS__)
#define log_err_return(r, ...) log_errno(LOG_LEVEL_ERR, (r), false, __VA_ARGS__)
