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
