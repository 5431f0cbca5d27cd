/*
 * timeutil — clocks and the database's time format.
 */
#include <stdio.h>
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

void time_format_iso(int64_t unix_ms, char buf[TIME_ISO_LEN])
{
        time_t secs = (time_t) (unix_ms / 1000);
        struct tm tm;

        char wide[64]; /* the compiler cannot know every field has its width */

        gmtime_r(&secs, &tm);
        /* Years past 9999 cannot come from a real clock; clamp the width anyway. */
        snprintf(wide, sizeof(wide), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (unix_ms % 1000));
        memcpy(buf, wide, TIME_ISO_LEN - 1);
        buf[TIME_ISO_LEN - 1] = '\0';
}
