/*
 * metrics — see metrics.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "src/daemon/metrics.h"

typedef _Atomic uint64_t counter_t;

static const unsigned response_codes[] = {
        200, 303, 304, 400, 401, 403, 404, 405, 413, 415, 431, 500, 503,
};
#define N_CODES (sizeof(response_codes) / sizeof(response_codes[0]))

/* Upper bounds in seconds; the last bucket is +Inf. */
static const double commit_bounds[] = {
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
};
#define N_COMMIT (sizeof(commit_bounds) / sizeof(commit_bounds[0]))

/* Whole numbers, exact as doubles, and printed by %g as integers. */
static const double batch_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512 };
#define N_BATCH (sizeof(batch_bounds) / sizeof(batch_bounds[0]))

static counter_t outcomes[_OUTCOME_MAX];
static counter_t responses[N_CODES + 1]; /* last: any other code */
static counter_t commit_buckets[N_COMMIT + 1];
static counter_t commit_count, commit_sum_us, commit_failures;
static counter_t batch_buckets[N_BATCH + 1];
static counter_t batch_sum;

/* ---- the CashPay API half */
static const char *const api_endpoints[] = { "charges.get", "charges.create", "token" };
#define N_ENDPOINTS (sizeof(api_endpoints) / sizeof(api_endpoints[0]))
/* 0: no answer (refused, timed out), shown as code="none" */
static const unsigned api_codes[] = { 0, 200, 201, 400, 401, 404, 409, 422, 429, 500, 502, 503, 504 };
#define N_API_CODES (sizeof(api_codes) / sizeof(api_codes[0]))
static const double api_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define N_API (sizeof(api_bounds) / sizeof(api_bounds[0]))
static const char *const reconciled_names[_RECONCILED_MAX] = {
        "captured", "failed", "initiated", "not_found", "error",
};

static _Atomic bool api_enabled;
static counter_t api_requests[N_ENDPOINTS][N_API_CODES + 1]; /* last: any other code */
static counter_t api_buckets[N_API + 1];
static counter_t api_count, api_sum_us;
static counter_t reconciled[_RECONCILED_MAX];
static _Atomic int64_t initiated_stale;
static counter_t token_ok, token_failed;

/* ---- the checkout listener: every answer it gives (§8.3) */
static const unsigned checkout_codes[] = { 200, 201, 400, 401, 404, 405, 409, 413, 415, 500,
                                           502, 503 };
#define N_CHECKOUT_CODES (sizeof(checkout_codes) / sizeof(checkout_codes[0]))
static _Atomic bool checkout_enabled;
static counter_t checkout_requests[N_CHECKOUT_CODES + 1]; /* last: any other code */
static _Atomic int64_t token_expires_at_ms;

/* A histogram's buckets: buckets[i] counts values <= bounds[i], the last one the rest. */
struct histogram {
        const char *name, *help;
        const double *bounds;
        size_t n_bounds;
        counter_t *buckets; /* n_bounds + 1 */
};

static const struct histogram commit_hist = {
        "cashpayd_commit_seconds", "Time to commit one batch.",
        commit_bounds, N_COMMIT, commit_buckets,
};
static const struct histogram api_hist = {
        "cashpayd_api_request_seconds", "Time of one request to the CashPay API, on the wire.",
        api_bounds, N_API, api_buckets,
};
static const struct histogram batch_hist = {
        "cashpayd_batch_size", "Deliveries committed per transaction.",
        batch_bounds, N_BATCH, batch_buckets,
};

static void bump(counter_t *c, uint64_t by)
{
        atomic_fetch_add_explicit(c, by, memory_order_relaxed);
}

static uint64_t read_counter(counter_t *c)
{
        return atomic_load_explicit(c, memory_order_relaxed);
}

static void observe(const struct histogram *h, double value)
{
        size_t i = 0;

        while (i < h->n_bounds && value > h->bounds[i])
                i++;
        bump(&h->buckets[i], 1);
}

void metrics_count_outcome(enum outcome o)
{
        if ((unsigned) o < _OUTCOME_MAX)
                bump(&outcomes[o], 1);
}

void metrics_count_response(unsigned http_status)
{
        size_t i = 0;

        while (i < N_CODES && response_codes[i] != http_status)
                i++;
        bump(&responses[i], 1);
}

void metrics_checkout_enable(void)
{
        atomic_store(&checkout_enabled, true);
}

void metrics_count_checkout(unsigned http_status)
{
        size_t i = 0;

        while (i < N_CHECKOUT_CODES && checkout_codes[i] != http_status)
                i++;
        bump(&checkout_requests[i], 1);
}

void metrics_observe_commit(int64_t commit_us, size_t batch_size, int result)
{
        if (result < 0) {
                bump(&commit_failures, 1);
                return;
        }
        observe(&commit_hist, (double) commit_us / 1e6);
        bump(&commit_count, 1);
        bump(&commit_sum_us, (uint64_t) (commit_us > 0 ? commit_us : 0));
        observe(&batch_hist, (double) batch_size);
        bump(&batch_sum, batch_size);
}

void metrics_api_enable(void)
{
        atomic_store(&api_enabled, true);
}

void metrics_count_reconciled(enum reconciled r)
{
        if ((unsigned) r < _RECONCILED_MAX)
                bump(&reconciled[r], 1);
}

void metrics_observe_api(const char *endpoint, int http_status, int64_t duration_us)
{
        size_t e = 0, i = 0;

        while (e < N_ENDPOINTS && strcmp(api_endpoints[e], endpoint) != 0)
                e++;
        if (e == N_ENDPOINTS)
                return;
        while (i < N_API_CODES && api_codes[i] != (unsigned) http_status)
                i++;
        bump(&api_requests[e][i], 1);
        observe(&api_hist, (double) duration_us / 1e6);
        bump(&api_count, 1);
        bump(&api_sum_us, (uint64_t) (duration_us > 0 ? duration_us : 0));
}

void metrics_set_initiated_stale(int64_t n)
{
        atomic_store(&initiated_stale, n);
}

void metrics_set_token(uint64_t renewals_ok, uint64_t renewals_failed, int64_t expires_at_ms)
{
        atomic_store(&token_ok, renewals_ok);
        atomic_store(&token_failed, renewals_failed);
        atomic_store(&token_expires_at_ms, expires_at_ms);
}

void metrics_totals(struct metrics_totals *ret)
{
        *ret = (struct metrics_totals) { 0 };
        for (int o = 0; o < _OUTCOME_MAX; o++)
                ret->deliveries += read_counter(&outcomes[o]);
        ret->applied = read_counter(&outcomes[OUTCOME_APPLIED]);
        ret->rejected = read_counter(&outcomes[OUTCOME_INVALID]) +
                        read_counter(&outcomes[OUTCOME_UNAUTHORIZED]) +
                        read_counter(&outcomes[OUTCOME_FORBIDDEN]);
        ret->commit_failures = read_counter(&commit_failures);
}

/* A growing text buffer; on allocation failure it stays failed. */
struct text {
        char *buf;
        size_t len, cap;
        bool failed;
};

__attribute__((format(printf, 2, 3)))
static void put(struct text *t, const char *fmt, ...)
{
        for (int attempt = 0; attempt < 2 && !t->failed; attempt++) {
                va_list ap;
                va_start(ap, fmt);
                int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        t->failed = true;
                } else if ((size_t) n < t->cap - t->len) {
                        t->len += (size_t) n;
                        return;
                } else {
                        size_t cap = (t->cap + (size_t) n + 1) * 2;
                        char *grown = realloc(t->buf, cap);
                        if (!grown)
                                t->failed = true;
                        else {
                                t->buf = grown;
                                t->cap = cap;
                        }
                }
        }
}

static void render_counters(struct text *t)
{
        put(t, "# HELP cashpayd_webhooks_total Recorded webhook deliveries by outcome.\n"
               "# TYPE cashpayd_webhooks_total counter\n");
        for (int o = 0; o < _OUTCOME_MAX; o++)
                put(t, "cashpayd_webhooks_total{outcome=\"%s\"} %llu\n", outcome_name(o),
                    (unsigned long long) read_counter(&outcomes[o]));
        put(t, "# HELP cashpayd_http_responses_total HTTP responses by status code.\n"
               "# TYPE cashpayd_http_responses_total counter\n");
        for (size_t i = 0; i < N_CODES; i++)
                put(t, "cashpayd_http_responses_total{code=\"%u\"} %llu\n", response_codes[i],
                    (unsigned long long) read_counter(&responses[i]));
        put(t, "cashpayd_http_responses_total{code=\"other\"} %llu\n",
            (unsigned long long) read_counter(&responses[N_CODES]));
        put(t, "# HELP cashpayd_commit_failures_total Transactions that could not commit.\n"
               "# TYPE cashpayd_commit_failures_total counter\n"
               "cashpayd_commit_failures_total %llu\n",
            (unsigned long long) read_counter(&commit_failures));
}

/* The HELP, TYPE and cumulative bucket lines; returns the +Inf bucket's count. */
static uint64_t render_buckets(struct text *t, const struct histogram *h)
{
        uint64_t cumulative = 0;

        put(t, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
        for (size_t i = 0; i <= h->n_bounds; i++) {
                cumulative += read_counter(&h->buckets[i]);
                if (i < h->n_bounds)
                        put(t, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->bounds[i],
                            (unsigned long long) cumulative);
                else
                        put(t, "%s_bucket{le=\"+Inf\"} %llu\n", h->name,
                            (unsigned long long) cumulative);
        }
        return cumulative;
}

static void render_histograms(struct text *t)
{
        uint64_t batches;

        render_buckets(t, &commit_hist);
        put(t, "cashpayd_commit_seconds_sum %.6f\ncashpayd_commit_seconds_count %llu\n",
            (double) read_counter(&commit_sum_us) / 1e6,
            (unsigned long long) read_counter(&commit_count));
        batches = render_buckets(t, &batch_hist);
        put(t, "cashpayd_batch_size_sum %llu\ncashpayd_batch_size_count %llu\n",
            (unsigned long long) read_counter(&batch_sum), (unsigned long long) batches);
}

static void render_api(struct text *t, const struct metrics_gauges *g)
{
        int64_t expires = atomic_load(&token_expires_at_ms);

        if (!atomic_load(&api_enabled))
                return;
        put(t, "# HELP cashpayd_api_requests_total Requests to the CashPay API by endpoint and "
               "answer (none: no answer).\n# TYPE cashpayd_api_requests_total counter\n");
        for (size_t e = 0; e < N_ENDPOINTS; e++) {
                for (size_t i = 0; i < N_API_CODES; i++) {
                        char code[16];

                        snprintf(code, sizeof(code), "%u", api_codes[i]);
                        put(t, "cashpayd_api_requests_total{endpoint=\"%s\",code=\"%s\"} %llu\n",
                            api_endpoints[e], api_codes[i] ? code : "none",
                            (unsigned long long) read_counter(&api_requests[e][i]));
                }
                put(t, "cashpayd_api_requests_total{endpoint=\"%s\",code=\"other\"} %llu\n",
                    api_endpoints[e], (unsigned long long) read_counter(&api_requests[e][N_API_CODES]));
        }
        render_buckets(t, &api_hist);
        put(t, "cashpayd_api_request_seconds_sum %.6f\ncashpayd_api_request_seconds_count %llu\n",
            (double) read_counter(&api_sum_us) / 1e6, (unsigned long long) read_counter(&api_count));
        put(t, "# HELP cashpayd_reconciled_total Reconciliation fetches of stale INITIATED "
               "orders by what the API said.\n# TYPE cashpayd_reconciled_total counter\n");
        for (int r = 0; r < _RECONCILED_MAX; r++)
                put(t, "cashpayd_reconciled_total{outcome=\"%s\"} %llu\n", reconciled_names[r],
                    (unsigned long long) read_counter(&reconciled[r]));
        put(t, "# HELP cashpayd_orders_initiated_stale INITIATED orders due for a "
               "reconciliation fetch, as of the last sweep.\n"
               "# TYPE cashpayd_orders_initiated_stale gauge\n"
               "cashpayd_orders_initiated_stale %lld\n", (long long) atomic_load(&initiated_stale));
        put(t, "# HELP cashpayd_token_renewals_total Renewals of the CashPay API token by result.\n"
               "# TYPE cashpayd_token_renewals_total counter\n"
               "cashpayd_token_renewals_total{result=\"ok\"} %llu\n"
               "cashpayd_token_renewals_total{result=\"failed\"} %llu\n",
            (unsigned long long) read_counter(&token_ok),
            (unsigned long long) read_counter(&token_failed));
        /* A token file's token does not say when it expires: no sample then. */
        if (expires != INT64_MAX)
                put(t, "# HELP cashpayd_token_expiry_seconds Seconds until the CashPay API token "
                       "expires (0: no token).\n# TYPE cashpayd_token_expiry_seconds gauge\n"
                       "cashpayd_token_expiry_seconds %lld\n",
                    (long long) (expires > 0 ? expires / 1000 - g->now : 0));
}

static void render_checkout(struct text *t)
{
        if (!atomic_load(&checkout_enabled))
                return;
        put(t, "# HELP cashpayd_checkout_requests_total Answers of the checkout listener "
               "(POST /charges) by status code.\n"
               "# TYPE cashpayd_checkout_requests_total counter\n");
        for (size_t i = 0; i < N_CHECKOUT_CODES; i++)
                put(t, "cashpayd_checkout_requests_total{code=\"%u\"} %llu\n", checkout_codes[i],
                    (unsigned long long) read_counter(&checkout_requests[i]));
        put(t, "cashpayd_checkout_requests_total{code=\"other\"} %llu\n",
            (unsigned long long) read_counter(&checkout_requests[N_CHECKOUT_CODES]));
}

static void render_gauges(struct text *t, const struct metrics_gauges *g)
{
        put(t, "# HELP cashpayd_queue_depth Deliveries waiting for the writer.\n"
               "# TYPE cashpayd_queue_depth gauge\ncashpayd_queue_depth %u\n", g->queue_depth);
        put(t, "# HELP cashpayd_wal_bytes Size of the SQLite write-ahead log.\n"
               "# TYPE cashpayd_wal_bytes gauge\ncashpayd_wal_bytes %lld\n",
            (long long) g->wal_bytes);
        put(t, "# HELP cashpayd_database_up Whether the database answers.\n"
               "# TYPE cashpayd_database_up gauge\ncashpayd_database_up %d\n", g->database_ok);
        if (g->rejected_rows >= 0)
                put(t, "# HELP cashpayd_rejected_rows Rejected deliveries kept in the database "
                       "(at most [webhook] max_rejected_rows and a slack).\n"
                       "# TYPE cashpayd_rejected_rows gauge\ncashpayd_rejected_rows %lld\n",
                    (long long) g->rejected_rows);
        if (g->tls_not_after > 0)
                put(t, "# HELP cashpayd_tls_certificate_expiry_seconds Seconds until the TLS "
                       "certificate new connections get expires (negative: expired).\n"
                       "# TYPE cashpayd_tls_certificate_expiry_seconds gauge\n"
                       "cashpayd_tls_certificate_expiry_seconds %lld\n",
                    (long long) (g->tls_not_after - g->now));
        put(t, "# HELP cashpayd_build_info Build information.\n"
               "# TYPE cashpayd_build_info gauge\n"
               "cashpayd_build_info{version=\"%s\"} 1\n", CASHPAY_VERSION);
}

int metrics_render(const struct metrics_gauges *g, char **ret, size_t *ret_len)
{
        struct text t = { 0 };

        render_counters(&t);
        render_histograms(&t);
        render_api(&t, g);
        render_checkout(&t);
        render_gauges(&t, g);
        if (t.failed || !t.buf) {
                free(t.buf);
                return -ENOMEM;
        }
        *ret = t.buf;
        *ret_len = t.len;
        return 0;
}
