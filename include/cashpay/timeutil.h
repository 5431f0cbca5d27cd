/*
 * timeutil — the one time format of the database: UTC ISO-8601 with
 * milliseconds, "2026-11-25T20:31:38.123Z".
 */
#pragma once

#include <stdint.h>

#define TIME_ISO_LEN 25 /* "2026-11-25T20:31:38.123Z" + NUL */

int64_t time_now_ms(void);       /* CLOCK_REALTIME, ms since the epoch */
int64_t time_monotonic_ms(void); /* CLOCK_MONOTONIC, for deadlines */
int64_t time_monotonic_us(void); /* CLOCK_MONOTONIC, for short durations */

/* time_format_iso() - @buf must hold TIME_ISO_LEN bytes. */
void time_format_iso(int64_t unix_ms, char buf[TIME_ISO_LEN]);

/* time_parse_iso() - the exact format time_format_iso() writes, back to ms
 * since the epoch. Returns 0 or -EINVAL. */
int time_parse_iso(const char *s, int64_t *ret_ms);
