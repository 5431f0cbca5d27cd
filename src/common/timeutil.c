/*
 * timeutil — clocks and the database's time format.
 */
#include <time.h>

#include "cashpay/timeutil.h"

static int64_t clock_ms(clockid_t id)
{
        struct timespec ts;

        clock_gettime(id, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_now_ms(void)
{
        return clock_ms(CLOCK_REALTIME);
}

int64_t time_monotonic_ms(void)
{
        return clock_ms(CLOCK_MONOTONIC);
}

int64_t time_monotonic_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* @value's last @width decimal digits at @p, zero-padded; returns the end. */
static char *put_digits(char *p, int value, int width)
{
        for (int i = width - 1; i >= 0; i--) {
                p[i] = (char) ('0' + value % 10);
                value /= 10;
        }
        return p + width;
}

/*
 * Runs for every webhook (its received_at), where snprintf() cost more than
 * the conversion itself: the fixed-width fields are written directly.
 */
void time_format_iso(int64_t unix_ms, char buf[TIME_ISO_LEN])
{
        struct tm tm;
        char *p = buf;

        if (unix_ms < 0) /* before 1970: no real clock says so; keep every field digits */
                unix_ms = 0;
        time_t secs = (time_t) (unix_ms / 1000);
        gmtime_r(&secs, &tm);
        /* Years past 9999 cannot come from a real clock; keep 4 digits anyway. */
        p = put_digits(p, (tm.tm_year + 1900) % 10000, 4);
        *p++ = '-';
        p = put_digits(p, tm.tm_mon + 1, 2);
        *p++ = '-';
        p = put_digits(p, tm.tm_mday, 2);
        *p++ = 'T';
        p = put_digits(p, tm.tm_hour, 2);
        *p++ = ':';
        p = put_digits(p, tm.tm_min, 2);
        *p++ = ':';
        p = put_digits(p, tm.tm_sec, 2);
        *p++ = '.';
        p = put_digits(p, (int) (unix_ms % 1000), 3);
        *p++ = 'Z';
        *p = '\0';
}
