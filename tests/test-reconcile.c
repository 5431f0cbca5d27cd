/*
 * Unit tests of reconcile.h: the doubling timetable and its cutoffs.
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
        test_cutoffs();
        return check_summary();
}
