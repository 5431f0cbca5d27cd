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

const int64_t reconcile_recheck_offsets_ms[RECHECK_LOOKS] = { 5000, 30000, 120000 };

int64_t reconcile_recheck_ms(int64_t claimed_ms, int64_t now_ms, unsigned after_s)
{
        int64_t scale = after_s < RECHECK_SCALE_S ? after_s : RECHECK_SCALE_S;

        for (int i = 0; i < RECHECK_LOOKS; i++) {
                int64_t at = claimed_ms + reconcile_recheck_offsets_ms[i] * scale / RECHECK_SCALE_S;
                if (at > now_ms)
                        return at;
        }
        return 0;
}

int64_t reconcile_plan_ms(int64_t first_seen_ms, int64_t claimed_ms, int64_t now_ms,
                          unsigned after_s)
{
        int64_t at = claimed_ms < 0 ? 0 : reconcile_recheck_ms(claimed_ms, now_ms, after_s);

        return at ? at : reconcile_next_ms(first_seen_ms, now_ms, after_s);
}

void reconcile_cutoffs(int64_t now_ms, unsigned after_s, unsigned for_s,
                       char untouched_before[TIME_ISO_LEN],
                       char first_seen_after[TIME_ISO_LEN])
{
        time_format_iso(now_ms - (int64_t) after_s * 1000, untouched_before);
        time_format_iso(now_ms - (int64_t) for_s * 1000, first_seen_after);
}
