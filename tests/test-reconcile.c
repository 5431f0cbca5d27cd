/*
 * Unit tests of reconcile.h: the doubling timetable, the looks after an
 * unconfirmed claim, a claim's lease, and the cutoffs.
 */
#include <string.h>

#include "cashpay/reconcile.h"
#include "tests/check.h"

#define S INT64_C(1000)

static void test_doubling(void)
{
        int64_t seen = 1764000000000, now = seen + 300 * S, next;
        int64_t want[] = { 300, 600, 1200, 2400, 3600, 3600 };

        /* looked at when untouched for 5 minutes, then ever later */
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                next = reconcile_next_ms(seen, now, 300);
                CHECK_EQ_INT(next - now, want[i] * S);
                now = next;
        }
        /* never sooner than reconcile_after, even for a young order */
        CHECK_EQ_INT(reconcile_next_ms(seen, seen + 10 * S, 300), seen + 310 * S);
        /* a clock that went back still waits reconcile_after */
        CHECK_EQ_INT(reconcile_next_ms(seen, seen - 50 * S, 300), seen + 250 * S);
}

static void test_recheck(void)
{
        int64_t claim = 1764000000000, now = claim;
        int64_t want[] = { 5000, 30000, 120000 };

        /* at the contract's scale: about 5 s, 30 s and 2 min after the claim */
        for (size_t i = 0; i < 3; i++) {
                now = reconcile_recheck_ms(claim, now, 300);
                CHECK_EQ_INT(now - claim, want[i]);
        }
        CHECK_EQ_INT(reconcile_recheck_ms(claim, now, 300), 0);
        /* a late look goes on with the next one still ahead, not a missed one */
        CHECK_EQ_INT(reconcile_recheck_ms(claim, claim + 31 * S, 300), claim + 120 * S);
        /* a longer reconcile_after keeps them, a shorter one shrinks them */
        CHECK_EQ_INT(reconcile_recheck_ms(claim, claim, 3600), claim + 5 * S);
        CHECK_EQ_INT(reconcile_recheck_ms(claim, claim, 12), claim + 200);
        CHECK_EQ_INT(reconcile_recheck_ms(claim, claim + 200, 12), claim + 1200);
        CHECK_EQ_INT(reconcile_recheck_ms(claim, claim + 1200, 12), claim + 4800);
        CHECK_EQ_INT(reconcile_recheck_ms(claim, claim + 4800, 12), 0);
}

static void test_plan(void)
{
        int64_t seen = 1764000000000, claim = seen + 10 * S;

        /* no claim: the doubling schedule */
        CHECK_EQ_INT(reconcile_plan_ms(seen, -1, seen + 20 * S, 300), seen + 320 * S);
        /* within the looks after a claim: the next look */
        CHECK_EQ_INT(reconcile_plan_ms(seen, claim, claim + 6 * S, 300), claim + 30 * S);
        /* all three past: the doubling schedule goes on */
        CHECK_EQ_INT(reconcile_plan_ms(seen, claim, claim + 121 * S, 300),
                     claim + 121 * S + 300 * S);
}

static void test_lease(void)
{
        struct api_options o = { .request_timeout = 10, .max_inflight = 256,
                                 .get_retries = API_GET_RETRIES };

        /* the defaults: a sweep of max_inflight orders behind one other wave;
         * a fetch is 4 attempts + 2 token requests of 10 s, 250 + 500 ms backoff */
        CHECK_EQ_INT(reconcile_lease_ms(&o, 256, 10000), 2 * 60750 + 10000);
        /* well under the ten minutes it was, above one request_timeout */
        CHECK(reconcile_lease_ms(&o, 256, 10000) < 600 * S);
        /* the longest request the config allows still fits */
        o.request_timeout = 300;
        CHECK_EQ_INT(reconcile_lease_ms(&o, 256, 10000), 2 * (6 * 300 * S + 750) + 10000);
        /* more claimed than slots: they take their turns */
        o.request_timeout = 1;
        o.max_inflight = 4;
        CHECK_EQ_INT(reconcile_lease_ms(&o, 4, 500), 2 * 6750 + 500);
        CHECK_EQ_INT(reconcile_lease_ms(&o, 5, 500), 3 * 6750 + 500);
        CHECK_EQ_INT(reconcile_lease_ms(&o, 1000, 0), 251 * 6750);
        /* no retries: a third less per fetch; the client's own fallbacks */
        o.get_retries = 0;
        CHECK_EQ_INT(reconcile_lease_ms(&o, 4, 0), 2 * 4000);
        o = (struct api_options) { 0 };
        CHECK_EQ_INT(reconcile_lease_ms(&o, 1, 0), 2 * 40 * S);
}

static void test_cutoffs(void)
{
        char untouched[TIME_ISO_LEN], given_up[TIME_ISO_LEN];

        reconcile_cutoffs(INT64_C(1764460800000), 300, 259200, untouched, given_up);
        CHECK_STR(untouched, "2025-11-29T23:55:00.000Z");
        CHECK_STR(given_up, "2025-11-27T00:00:00.000Z");
}

int main(void)
{
        test_doubling();
        test_recheck();
        test_plan();
        test_lease();
        test_cutoffs();
        return check_summary();
}
