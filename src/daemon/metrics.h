/*
 * metrics — counters and histograms for /metrics (Prometheus text format).
 *
 * Updated with relaxed atomics from the HTTP threads and the writer, so
 * scraping costs the hot path nothing but the increments themselves.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cashpay/state.h"

struct metrics_gauges {
        unsigned queue_depth;
        int64_t wal_bytes;        /* -1 = unknown */
        int database_ok;          /* 1 / 0 */
        int64_t rejected_rows;    /* rejected deliveries kept; -1 = not counted (no cap) */
        int64_t tls_not_after;    /* Unix time the certificate expires; 0 = plain HTTP */
        int64_t now;              /* Unix time, for the seconds left until then */
};

void metrics_count_outcome(enum outcome o);
void metrics_count_response(unsigned http_status);
void metrics_observe_commit(int64_t commit_us, size_t batch_size, int result);

/* What a reconciliation fetch found (cashpayd_reconciled_total{outcome}). */
enum reconciled {
        RECONCILED_CAPTURED,   /* the API says CAPTURED */
        RECONCILED_FAILED,     /* the API says FAILED */
        RECONCILED_INITIATED,  /* the API says INITIATED still: looked at again later */
        RECONCILED_NOT_FOUND,  /* 404: CashPay knows no such charge */
        RECONCILED_ERROR,      /* no usable answer: looked at again later */
        _RECONCILED_MAX,
};

/* The CashPay API half; rendered only once metrics_api_enable() was called. */
void metrics_api_enable(void);
void metrics_count_reconciled(enum reconciled r);
void metrics_observe_api(const char *endpoint, int http_status, int64_t duration_us);
void metrics_set_initiated_stale(int64_t n);
/* From api_client_stats(): renewals so far, and when the token expires
 * (Unix ms; 0: no token, INT64_MAX: a token file's, which does not say). */
void metrics_set_token(uint64_t renewals_ok, uint64_t renewals_failed, int64_t expires_at_ms);

/* The checkout listener (cashpayd_checkout_requests_total{code}); rendered
 * only once metrics_checkout_enable() was called. */
void metrics_checkout_enable(void);
void metrics_count_checkout(unsigned http_status);

/* Totals for STATUS= lines. */
struct metrics_totals {
        uint64_t deliveries;   /* recorded deliveries, any outcome */
        uint64_t applied;
        uint64_t rejected;     /* invalid + unauthorized + forbidden */
        uint64_t commit_failures;
};
void metrics_totals(struct metrics_totals *ret);

/* metrics_render() - the exposition text, malloc'ed. Returns 0 or -ENOMEM. */
int metrics_render(const struct metrics_gauges *g, char **ret, size_t *ret_len);
