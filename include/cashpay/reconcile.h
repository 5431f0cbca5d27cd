/*
 * reconcile — when the reconciler looks at an INITIATED order (CONTRACT
 * §8.5): first once it is untouched for reconcile_after, then at doubling
 * intervals, at most an hour apart, until reconcile_for after it was first
 * seen. A claim the API did not confirm (§8.4) is looked at sooner: about
 * 5 s, 30 s and 2 min after it, then the doubling schedule goes on. Pure:
 * times in, times out.
 */
#pragma once

#include <stdint.h>

#include <stddef.h>

#include "cashpay/api.h"
#include "cashpay/timeutil.h"

#define RECONCILE_MAX_INTERVAL_MS INT64_C(3600000)

/*
 * reconcile_next_ms() - after a look at @now_ms, when the next one is due.
 * The interval is the order's age (so ages double from look to look), at
 * least @after_s, at most an hour.
 */
int64_t reconcile_next_ms(int64_t first_seen_ms, int64_t now_ms, unsigned after_s);

/*
 * The looks after an unconfirmed claim, in ms after it, at reconcile_after
 * = RECHECK_SCALE_S; a shorter reconcile_after shrinks them in proportion
 * (a test's 12 s gives 0.2 s, 1.2 s, 4.8 s), a longer one keeps them.
 */
#define RECHECK_SCALE_S 300u
#define RECHECK_LOOKS 3
extern const int64_t reconcile_recheck_offsets_ms[RECHECK_LOOKS];

/*
 * reconcile_recheck_ms() - the first look after an unconfirmed claim at
 * @claimed_ms that is later than @now_ms, or 0 when all three are past.
 */
int64_t reconcile_recheck_ms(int64_t claimed_ms, int64_t now_ms, unsigned after_s);

/*
 * reconcile_plan_ms() - after a look at @now_ms at an order first seen at
 * @first_seen_ms, when the next one is due: the next look of an unconfirmed
 * claim at @claimed_ms (< 0: none), else reconcile_next_ms().
 */
int64_t reconcile_plan_ms(int64_t first_seen_ms, int64_t claimed_ms, int64_t now_ms,
                          unsigned after_s);

/*
 * reconcile_lease_ms() - on PostgreSQL, how long an order a sweep claims
 * (store_due_orders()) is left to the instance that claimed it: the longest
 * its fetch can take with the client's options @o, when the sweep claims
 * @claimed orders, plus @record_ms for the writer to record the answer
 * ([database] commit_timeout). One fetch: every attempt of the GET and its
 * backoff, the attempt again after a 401 and the two token requests that
 * may come before them, each at most request_timeout. Waves: the claimed
 * orders share max_inflight slots, and may queue behind one full wave of
 * other requests already in the client. Defaults (10 s, 2 retries, 256 of
 * 256, 10 s): 131.5 s.
 */
int64_t reconcile_lease_ms(const struct api_options *o, size_t claimed, unsigned record_ms);

/*
 * reconcile_cutoffs() - the arguments of store_due_orders() at @now_ms:
 * orders never looked at are due once untouched since @untouched_before;
 * orders first seen before @first_seen_after are given up.
 */
void reconcile_cutoffs(int64_t now_ms, unsigned after_s, unsigned for_s,
                       char untouched_before[TIME_ISO_LEN],
                       char first_seen_after[TIME_ISO_LEN]);
