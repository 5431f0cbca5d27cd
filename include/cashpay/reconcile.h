/*
 * reconcile — when the reconciler looks at an INITIATED order (CONTRACT
 * §8.5): first once it is untouched for reconcile_after, then at doubling
 * intervals, at most an hour apart, until reconcile_for after it was first
 * seen. Pure: times in, times out.
 */
#pragma once

#include <stdint.h>

#include "cashpay/timeutil.h"

#define RECONCILE_MAX_INTERVAL_MS INT64_C(3600000)

/*
 * reconcile_next_ms() - after a look at @now_ms, when the next one is due.
 * The interval is the order's age (so ages double from look to look), at
 * least @after_s, at most an hour.
 */
int64_t reconcile_next_ms(int64_t first_seen_ms, int64_t now_ms, unsigned after_s);

/*
 * reconcile_cutoffs() - the arguments of store_due_orders() at @now_ms:
 * orders never looked at are due once untouched since @untouched_before;
 * orders first seen before @first_seen_after are given up.
 */
void reconcile_cutoffs(int64_t now_ms, unsigned after_s, unsigned for_s,
                       char untouched_before[TIME_ISO_LEN],
                       char first_seen_after[TIME_ISO_LEN]);
