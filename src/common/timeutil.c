/*
 * timeutil — clocks and the database's time format.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
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

/* Reads @n digits at @s into *@ret; false when one is not a digit. */
static bool get_digits(const char *s, int n, int *ret)
{
        int v = 0;

        for (int i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return true;
}

int time_parse_iso(const char *s, int64_t *ret_ms)
{
        static const char shape[] = "0000-00-00T00:00:00.000Z";
        int year, mon, day, hour, min, sec, ms;
        struct tm tm = { 0 };

        if (!s || strlen(s) != sizeof(shape) - 1)
                return -EINVAL;
        for (size_t i = 0; shape[i]; i++)
                if (shape[i] != '0' && s[i] != shape[i])
                        return -EINVAL;
        if (!get_digits(s, 4, &year) || !get_digits(s + 5, 2, &mon) ||
            !get_digits(s + 8, 2, &day) || !get_digits(s + 11, 2, &hour) ||
            !get_digits(s + 14, 2, &min) || !get_digits(s + 17, 2, &sec) ||
            !get_digits(s + 20, 3, &ms))
                return -EINVAL;
        if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
                return -EINVAL;
        tm.tm_year = year - 1900;
        tm.tm_mon = mon - 1;
        tm.tm_mday = day;
        tm.tm_hour = hour;
        tm.tm_min = min;
        tm.tm_sec = sec;
        *ret_ms = (int64_t) timegm(&tm) * 1000 + ms;
        return 0;
}
