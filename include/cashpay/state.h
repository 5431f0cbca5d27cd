/*
 * state — the order state machine: current order × received charge → outcome.
 *
 * Pure: no SQL, no clock. The store asks it what to do and does it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cashpay/charge.h"

enum outcome {
        OUTCOME_APPLIED,
        OUTCOME_DUPLICATE,
        OUTCOME_STALE,
        OUTCOME_CONFLICT,
        OUTCOME_INVALID,
        OUTCOME_UNAUTHORIZED,
        OUTCOME_FORBIDDEN,
        OUTCOME_UNCONFIRMED, /* confirm = api: the API does not confirm the claim (200) */
        OUTCOME_DEFERRED,    /* confirm = api: the API could not be asked (503) */
        _OUTCOME_MAX,
};

/* What the store knows of an order before this delivery. */
struct order_view {
        bool exists;
        enum charge_status status;
        int64_t amount;
        char currency[4];
};

/* What to do about it. */
struct transition {
        enum outcome outcome;
        bool insert_order;   /* first sighting */
        bool change_status;  /* write received status + an order_events row */
        bool flag_review;    /* set needs_review = 1 */
        bool warn;           /* worth a warning in the log */
        const char *reason;  /* static text for logs and the delivery's error column */
};

/*
 * state_decide() - apply the table of CONTRACT §1. Amount or currency
 * mismatch is checked first: it wins over every status rule.
 * @current: NULL or !exists when the charge has no order yet.
 * @received: a charge that passed charge_parse().
 * Only ever answers APPLIED, DUPLICATE, STALE or CONFLICT.
 */
struct transition state_decide(const struct order_view *current, const struct charge *received);

/* "applied", "duplicate", … — the names stored in webhook_deliveries.outcome.
 * NULL for a value outside the enum. */
const char *outcome_name(enum outcome o);
/* Returns 0 or -EINVAL; exact, lower-case names only. */
int outcome_from_name(const char *name, enum outcome *ret);
