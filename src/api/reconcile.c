/*
 * reconcile — the reconciler's timetable; see include/cashpay/reconcile.h.
 */
#include "cashpay/reconcile.h"

int64_t reconcile_next_ms(int64_t first_seen_ms, int64_t now_ms, unsigned after_s)
{
        int64_t interval = now_ms - first_seen_ms, least = (int64_t) after_s * 1000;

        if (interval < least)
                interval = least;
        if (interval > RECONCILE_MAX_INTERVAL_MS)
                interval = RECONCILE_MAX_INTERVAL_MS;
        return now_ms + interval;
}

void reconcile_cutoffs(int64_t now_ms, unsigned after_s, unsigned for_s,
                       char untouched_before[TIME_ISO_LEN],
                       char first_seen_after[TIME_ISO_LEN])
{
        time_format_iso(now_ms - (int64_t) after_s * 1000, untouched_before);
        time_format_iso(now_ms - (int64_t) for_s * 1000, first_seen_after);
}
