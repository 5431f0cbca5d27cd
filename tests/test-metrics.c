/*
 * Unit tests for metrics: what the counters and histograms count, and the
 * exposition text they render (cumulative buckets, sums, the gauges, the
 * rejected-rows gauge only when there is a cap).
 */
#include <stdlib.h>
#include <string.h>

#include "src/daemon/metrics.h"
#include "tests/check.h"

static char *render(const struct metrics_gauges *g)
{
        char *text = NULL;
        size_t len = 0;

        if (metrics_render(g, &text, &len) < 0 || !text)
                FAIL("metrics_render failed");
        CHECK_EQ_INT(len, strlen(text));
        return text;
}

/* @line must be one whole line of @text. */
static bool has_line(const char *text, const char *line)
{
        size_t n = strlen(line);

        for (const char *p = text; (p = strstr(p, line)); p += n)
                if ((p == text || p[-1] == '\n') && p[n] == '\n')
                        return true;
        return false;
}

#define CHECK_LINE(text, line) CHECK(has_line((text), (line)), "no line \"%s\"", (line))

static void test_counters(void)
{
        struct metrics_gauges g = { .queue_depth = 3, .wal_bytes = 4096, .database_ok = 1,
                                    .rejected_rows = -1 };
        struct metrics_totals t;
        char *text;

        metrics_count_outcome(OUTCOME_APPLIED);
        metrics_count_outcome(OUTCOME_APPLIED);
        metrics_count_outcome(OUTCOME_INVALID);
        metrics_count_outcome(OUTCOME_FORBIDDEN);
        metrics_count_outcome((enum outcome) 1000); /* out of range: ignored */
        metrics_count_response(200);
        metrics_count_response(200);
        metrics_count_response(413);
        metrics_count_response(418); /* not listed: "other" */
        metrics_observe_commit(-1, 5, -5); /* a failure counts nothing else */

        metrics_totals(&t);
        CHECK_EQ_INT(t.deliveries, 4);
        CHECK_EQ_INT(t.applied, 2);
        CHECK_EQ_INT(t.rejected, 2);
        CHECK_EQ_INT(t.commit_failures, 1);

        text = render(&g);
        CHECK_LINE(text, "cashpayd_webhooks_total{outcome=\"applied\"} 2");
        CHECK_LINE(text, "cashpayd_webhooks_total{outcome=\"invalid\"} 1");
        CHECK_LINE(text, "cashpayd_http_responses_total{code=\"200\"} 2");
        CHECK_LINE(text, "cashpayd_http_responses_total{code=\"413\"} 1");
        CHECK_LINE(text, "cashpayd_http_responses_total{code=\"503\"} 0");
        CHECK_LINE(text, "cashpayd_http_responses_total{code=\"other\"} 1");
        CHECK_LINE(text, "cashpayd_commit_failures_total 1");
        CHECK_LINE(text, "cashpayd_commit_seconds_count 0");
        CHECK_LINE(text, "cashpayd_queue_depth 3");
        CHECK_LINE(text, "cashpayd_wal_bytes 4096");
        CHECK_LINE(text, "cashpayd_database_up 1");
        CHECK(!strstr(text, "cashpayd_rejected_rows"));
        CHECK(has_line(text, "# TYPE cashpayd_commit_seconds histogram"));
        free(text);
}

/* Buckets are cumulative, a value on a bound falls in that bound's bucket. */
static void test_histograms(void)
{
        struct metrics_gauges g = { .wal_bytes = -1, .rejected_rows = 7 };
        char *text;

        metrics_observe_commit(400, 1, 0);     /* 0.0004 s, batch 1 */
        metrics_observe_commit(1000, 3, 0);    /* 0.001 s exactly, batch 3 */
        metrics_observe_commit(9000000, 600, 0); /* 9 s, batch 600: +Inf in both */

        text = render(&g);
        CHECK_LINE(text, "cashpayd_commit_seconds_bucket{le=\"0.0005\"} 1");
        CHECK_LINE(text, "cashpayd_commit_seconds_bucket{le=\"0.001\"} 2");
        CHECK_LINE(text, "cashpayd_commit_seconds_bucket{le=\"5\"} 2");
        CHECK_LINE(text, "cashpayd_commit_seconds_bucket{le=\"+Inf\"} 3");
        CHECK_LINE(text, "cashpayd_commit_seconds_sum 9.001400");
        CHECK_LINE(text, "cashpayd_commit_seconds_count 3");
        CHECK_LINE(text, "cashpayd_batch_size_bucket{le=\"1\"} 1");
        CHECK_LINE(text, "cashpayd_batch_size_bucket{le=\"2\"} 1");
        CHECK_LINE(text, "cashpayd_batch_size_bucket{le=\"4\"} 2");
        CHECK_LINE(text, "cashpayd_batch_size_bucket{le=\"512\"} 2");
        CHECK_LINE(text, "cashpayd_batch_size_bucket{le=\"+Inf\"} 3");
        CHECK_LINE(text, "cashpayd_batch_size_sum 604");
        CHECK_LINE(text, "cashpayd_batch_size_count 3");
        CHECK_LINE(text, "cashpayd_wal_bytes -1");
        CHECK_LINE(text, "cashpayd_database_up 0");
        CHECK_LINE(text, "cashpayd_rejected_rows 7");
        free(text);
}

int main(void)
{
        test_counters();
        test_histograms();
        return check_summary();
}
