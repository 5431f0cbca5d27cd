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

/*
 * Only a bound on waiting, never on correctness: a lease that ends while
 * its fetch is still under way lets a second instance claim the order and
 * fetch it too. GET is harmless and recording a fetch goes through the
 * state machine, which is idempotent and decides on the row it locks, so
 * the order is never lost or corrupted, merely asked for twice. Too long a
 * lease is the real cost: an instance that dies (SIGKILL, a lost host)
 * cannot give its claims back, and they wait out the lease.
 */
int64_t reconcile_lease_ms(const struct api_options *o, size_t claimed, unsigned record_ms)
{
        /* the client's own fallbacks for unset options (api_client_new()) */
        int64_t timeout = (int64_t) (o->request_timeout ? o->request_timeout : 10) * 1000;
        int64_t slots = o->max_inflight ? o->max_inflight : 1;
        int64_t sends = (int64_t) o->get_retries + 2; /* every attempt, one more after a 401 */
        int64_t fetch = (sends + 2) * timeout, backoff = API_GET_RETRY_FIRST_MS;
        int64_t waves = ((int64_t) claimed + slots - 1) / slots + 1;

        for (unsigned i = 0; i < o->get_retries; i++, backoff *= 2)
                fetch += backoff;
        return waves * fetch + record_ms;
}

void reconcile_cutoffs(int64_t now_ms, unsigned after_s, unsigned for_s,
                       char untouched_before[TIME_ISO_LEN],
                       char first_seen_after[TIME_ISO_LEN])
{
        time_format_iso(now_ms - (int64_t) after_s * 1000, untouched_before);
        time_format_iso(now_ms - (int64_t) for_s * 1000, first_seen_after);
}
