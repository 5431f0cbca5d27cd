/*
 * Tests for timeutil: the database's time format, digit by digit, at the
 * edges a calendar has (epoch, leap day, the last millisecond of a year),
 * and the clocks' units.
 */
#include <errno.h>
#include <stdint.h>

#include "cashpay/timeutil.h"
#include "tests/check.h"

static void check_iso(int64_t unix_ms, const char *want)
{
        char buf[TIME_ISO_LEN];

        memset(buf, 'x', sizeof(buf));
        time_format_iso(unix_ms, buf);
        CHECK_STR(buf, want);
}

static void test_format(void)
{
        check_iso(0, "1970-01-01T00:00:00.000Z");
        check_iso(1, "1970-01-01T00:00:00.001Z");
        check_iso(1764102698123, "2025-11-25T20:31:38.123Z");
        check_iso(1709251199999, "2024-02-29T23:59:59.999Z");
        check_iso(1709251200000, "2024-03-01T00:00:00.000Z");
        check_iso(1767225599999, "2025-12-31T23:59:59.999Z");
        check_iso(253402300799999, "9999-12-31T23:59:59.999Z");
        /* a clock before 1970 cannot be real: still 24 well-formed characters */
        check_iso(-1, "1970-01-01T00:00:00.000Z");
}

static void test_parse(void)
{
        static const int64_t times[] = { 0, 999, 1764102698123, 1796193645992 };
        char buf[TIME_ISO_LEN];
        int64_t ms;

        for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
                time_format_iso(times[i], buf);
                CHECK(time_parse_iso(buf, &ms) == 0 && ms == times[i], "round trip of %s", buf);
        }
        CHECK(time_parse_iso("2026-11-25 20:31:38.123Z", &ms) == -EINVAL);
        CHECK(time_parse_iso("2026-11-25T20:31:38.123", &ms) == -EINVAL);
        CHECK(time_parse_iso("2026-13-25T20:31:38.123Z", &ms) == -EINVAL);
        CHECK(time_parse_iso("2026-11-25T2x:31:38.123Z", &ms) == -EINVAL);
        CHECK(time_parse_iso(NULL, &ms) == -EINVAL);
}

static void test_clocks(void)
{
        int64_t ms = time_monotonic_ms(), us = time_monotonic_us();

        /* taken a moment apart, the two monotonic readings agree to the ms */
        CHECK(us / 1000 - ms >= 0 && us / 1000 - ms < 1000, "ms %lld vs us %lld",
              (long long) ms, (long long) us);
        /* the wall clock is past the day this was written */
        CHECK(time_now_ms() > INT64_C(1764000000000));
}

int main(void)
{
        test_format();
        test_parse();
        test_clocks();
        return check_summary();
}
