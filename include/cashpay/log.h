/*
 * log — one line per event: to the journal with structured fields when
 * stderr is connected to it (JOURNAL_STREAM), plain single-line text on
 * stderr otherwise. Used by the daemon and cashpayctl, never by the pure core.
 */
#pragma once

#include <stdint.h>

#include "cashpay/config.h"

/* Optional structured fields of a delivery; NULL/0 members are omitted. */
struct log_fields {
        const char *charge_id;     /* CHARGE_ID= */
        const char *outcome;       /* OUTCOME= */
        int64_t delivery_id;       /* DELIVERY_ID= (0 = none) */
        const char *remote_addr;   /* REMOTE_ADDR= */
        const char *message_id;    /* MESSAGE_ID= (a journal catalog id, not webhook-id) */
};

/* log_init() - decide journal vs plain once; @ident is SYSLOG_IDENTIFIER=. */
void log_init(const char *ident, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

void log_msg(enum log_level level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void log_fields(enum log_level level, const struct log_fields *f, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/*
 * log_rate_ok() - token bucket for noisy classes (rejected deliveries):
 * true when this line may be written. When lines were suppressed, the next
 * allowed call also logs "N similar messages suppressed".
 */
struct log_ratelimit {
        int64_t window_start_ms;
        unsigned burst;       /* lines per window */
        unsigned interval_ms; /* window length */
        unsigned used;
        unsigned suppressed;
};
#define LOG_RATELIMIT_INIT(burst_, interval_ms_) \
        { .burst = (burst_), .interval_ms = (interval_ms_) }
int log_rate_ok(struct log_ratelimit *rl); /* thread-safe; returns 1 or 0 */

#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
