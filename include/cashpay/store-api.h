/*
 * store-api — what the CashPay API half of cashpayd records: charges
 * fetched from the API (api_fetches, and their effect on orders through the
 * same state machine as a webhook), charge creations asked for
 * (charge_requests) and the reconciler's queue (orders.next_check_at).
 *
 * Part of the store: the only code that speaks SQL. Every write is one
 * BEGIN IMMEDIATE transaction of its own, or part of a batch or group
 * committed as one (the calls say which), so that what the API said is
 * durable before anything is answered on its strength. Nothing here talks
 * to the network, and nothing holds a transaction open across a call.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cashpay/charge.h"
#include "cashpay/state.h"
#include "cashpay/store.h"
#include "cashpay/timeutil.h"

/* Bytes of an API answer kept in api_fetches.body. */
#define STORE_FETCH_BODY_MAX 65536

enum fetch_reason { FETCH_WEBHOOK, FETCH_RETURN, FETCH_RECONCILE, FETCH_MANUAL, _FETCH_REASON_MAX };

/* "webhook", "return", "reconcile", "manual"; NULL outside the enum. */
const char *fetch_reason_name(enum fetch_reason r);

/*
 * One GET /charges/{id} and what came of it. The caller fills the request
 * half; store_record_fetch() fills the result half.
 */
struct api_fetch {
        /* request */
        char charge_id[CHARGE_ID_MAX + 1];
        char requested_at[TIME_ISO_LEN];
        enum fetch_reason reason;
        int64_t delivery_id;       /* the webhook that made us ask, or 0 */
        int http_status;           /* 0: no answer (refused, timed out, too big) */
        bool has_charge;           /* a 200 whose body passed charge_parse(): the truth */
        struct charge charge;      /* valid when has_charge; borrowed, not freed here */
        const uint8_t *body;       /* borrowed raw answer; truncated when stored */
        size_t body_len;
        const char *error;         /* borrowed; why the answer is not a charge, or NULL */
        int64_t duration_ms;
        /* INITIATED afterwards: the reconciler's next look ("" leaves the
         * column as it is). Ignored for an order that is not INITIATED. */
        char next_check_at[TIME_ISO_LEN];

        /* result, after store_record_fetch() returned 0 */
        int64_t id;                /* api_fetches.id */
        bool had_order;
        enum charge_status previous;      /* had_order only */
        struct transition transition;     /* has_charge only */
        int64_t event_id;                 /* order_events.id written, or 0 */
};

/*
 * store_record_fetch() - in one transaction: the api_fetches row, and for
 * an answer that is a charge, the state machine on it (event source "api"
 * with this fetch_id, and the delivery_id when set) and next_check_at.
 * @has_charge must only be set for a 200 with a charge of the requested id;
 * anything else (-EINVAL) is refused before it is written. An order that
 * exists keeps its return_ref and order_ref (filled in when still NULL).
 * Returns 0, -EINVAL, -EROFS or an errno as for store_submit().
 */
int store_record_fetch(struct store *s, struct api_fetch *f);

/*
 * store_record_fetch_batch() - store_record_fetch() for @n fetches in one
 * transaction (one commit for all; on PostgreSQL one each), each in its own
 * savepoint: one refused on its own (-EINVAL, -E2BIG) gets that in @ret[i]
 * and leaves nothing behind. Returns 0 once committed (@ret[i] then 0 or a
 * fetch's own failure), or a negative errno when nothing was recorded
 * (every @ret[i] is that errno too).
 */
int store_record_fetch_batch(struct store *s, struct api_fetch *const *f, size_t n, int *ret);

/*
 * store_record_confirmed() - a webhook confirmed with the API (CONTRACT
 * §8.4), in one transaction: the delivery @d (has_charge: its verified
 * claim, body kept whole) and the fetch @f of the same charge (reason
 * webhook; its delivery_id is set here to d->id). Outcome of @d:
 * - a repeated message id: duplicate; the fetch row, nothing else;
 * - @f a charge: the state machine runs on the API's charge (event source
 *   "api" naming both rows, next_check_at from @f); the usual outcome when
 *   status, amount and currency equal the claim's, else unconfirmed (200);
 * - @f a 404: unconfirmed, nothing else changes;
 * - anything else (no answer, 5xx, 401): deferred (503), and an INITIATED
 *   order is due for reconciliation at once.
 * Fills the result halves of both. Returns 0, -EINVAL (no claim, another
 * charge, a fetch store_record_fetch() would refuse), -EROFS or an errno
 * as for store_submit(). On PostgreSQL the order's row is locked first, so
 * one charge's deliveries at several instances are decided one at a time.
 */
int store_record_confirmed(struct store *s, struct delivery *d, struct api_fetch *f);

/*
 * store_record_confirmed_batch() - store_record_confirmed() for @n pairs
 * @d[i], @f[i] in one transaction (one commit for all), each pair in its
 * own savepoint: a pair refused on its own (-EINVAL, -E2BIG) gets that in
 * @ret[i] and leaves nothing behind, the others are committed. Returns 0
 * once committed (@ret[i] then 0 or a pair's fault), or a negative errno
 * when nothing was recorded (every @ret[i] is that errno too). On
 * PostgreSQL each pair is a transaction of its own (holding several
 * orders' row locks at once could deadlock with another instance): a
 * failure there is that pair's alone, in @ret[i], and 0 is returned when
 * any pair was recorded or refused on its own.
 */
int store_record_confirmed_batch(struct store *s, struct delivery *const *d,
                                 struct api_fetch *const *f, size_t n, int *ret);

/* An order the reconciler should fetch. */
struct due_order {
        char charge_id[CHARGE_ID_MAX + 1];
        char first_seen_at[TIME_ISO_LEN];
        char next_check_at[TIME_ISO_LEN]; /* "" when never checked */
        /* the latest webhook claim the API did not confirm (§8.4), or "" */
        char claimed_at[TIME_ISO_LEN];
        /* PostgreSQL: the lease this instance holds on the order until its
         * fetch is recorded (next_check_at now), or "" (SQLite) */
        char claimed_until[TIME_ISO_LEN];
};

/*
 * store_due_orders() - INITIATED orders the reconciler should fetch now:
 * next_check_at at or before @now, or (never checked) updated at or before
 * @untouched_before; either way first seen at or after @first_seen_after
 * (older ones are given up). Soonest first, at most @max into @ret.
 * On PostgreSQL what is returned is claimed: its next_check_at moves
 * @lease_ms past @now (claimed_until; reconcile_lease_ms()), so other
 * instances skip it until the fetch is recorded, store_release_due() gives
 * it back or the lease runs out. SQLite (one instance) ignores @lease_ms.
 * @ret_n: how many. Returns 0 or a negative errno.
 */
int store_due_orders(struct store *s, const char *now, const char *untouched_before,
                     const char *first_seen_after, int64_t lease_ms, struct due_order *ret,
                     size_t max, size_t *ret_n);

/* store_release_due() - a claimed order @d that will not be fetched (the
 * instance is stopping) is due again at once for any instance: its
 * next_check_at goes back to what it was, unless something recorded since
 * replaced the lease. A no-op on SQLite. 0 or a negative errno. */
int store_release_due(struct store *s, const struct due_order *d);

/* store_count_due() - how many store_due_orders() would give without a cap
 * (cashpayd_orders_initiated_stale). 0 or a negative errno. */
int store_count_due(struct store *s, const char *now, const char *untouched_before,
                    const char *first_seen_after, int64_t *ret);

/* store_get_order_by_return_ref() - 0, -ENOENT, or a negative errno. */
int store_get_order_by_return_ref(struct store *s, const char *return_ref,
                                  struct order_record *ret);

/* ---- charge creation ---------------------------------------------------- */

#define CHECKOUT_ORDER_REF_MAX 128
#define CHECKOUT_KEY_MAX 64       /* idempotency key and return_ref, URL-safe */

/* What POST /charges asks for (validated by the caller). */
struct charge_ask {
        const char *order_ref;
        int64_t amount;
        char currency[4];
        const char *description;  /* or NULL */
        /* fresh random values, used only when a new request row is made */
        const char *new_idempotency_key;
        const char *new_return_ref;
        char now[TIME_ISO_LEN];
};

enum charge_verdict {
        CHARGE_SEND,          /* send the request below to CashPay */
        CHARGE_EXISTS,        /* an INITIATED charge with these terms: answer 200 with it */
        CHARGE_ALREADY_PAID,  /* 409 already_paid, @charge_id */
        CHARGE_ORDER_CHANGED, /* 409 order_changed, @charge_id ("" while only a request
                               * with other terms is pending: its outcome is unknown) */
};

/* The request row to send, or the order that answers instead. */
struct charge_plan {
        enum charge_verdict verdict;
        int64_t request_id;                       /* SEND */
        char idempotency_key[CHECKOUT_KEY_MAX + 1];  /* SEND: the row's, maybe an old one */
        char return_ref[CHECKOUT_KEY_MAX + 1];       /* SEND, EXISTS */
        char charge_id[CHARGE_ID_MAX + 1];           /* EXISTS, ALREADY_PAID, ORDER_CHANGED */
        char *transaction_url;                       /* EXISTS; owned */
        int attempts;                                /* SEND: earlier attempts of this row */
};

void charge_plan_clear(struct charge_plan *p);

/*
 * store_charge_plan() - one BEGIN IMMEDIATE transaction deciding §8.3 for
 * @ask against the orders carrying its order_ref and its pending request:
 * a CAPTURED order wins (ALREADY_PAID), then an INITIATED one (EXISTS when
 * the terms match, else ORDER_CHANGED); otherwise the pending request row
 * for the order_ref is reused (same Idempotency-Key, attempts + 1) when its
 * terms match, or a new one is written with the @ask's fresh key and
 * return_ref. Returns 0, or an errno as for store_submit().
 */
int store_charge_plan(struct store *s, const struct charge_ask *ask, struct charge_plan *ret);

/*
 * store_charge_created() - CashPay created @c for request @request_id: in
 * one transaction the request becomes "created" and the order is recorded
 * INITIATED with its order_ref, return_ref, next_check_at and an event of
 * source "checkout". When a webhook was faster and the order exists, it
 * only gains the order_ref and return_ref. @c must be INITIATED with the
 * request's amount and currency, else -EINVAL and nothing is written.
 * Returns 0, -ENOENT (no pending request @request_id), -EINVAL or an errno
 * as for store_submit().
 */
int store_charge_created(struct store *s, int64_t request_id, const struct charge *c,
                         int http_status, const char *now, const char *next_check_at);

/*
 * store_charge_attempt() - an attempt of request @request_id ended without
 * a charge. @refused: CashPay said no (a 4xx): the row becomes "refused"
 * and a later POST for the order_ref makes a new one; otherwise it stays
 * pending for a retry with the same key. @http_status 0 when there was no
 * answer. Returns 0, -ENOENT (no pending request) or an errno as above.
 */
int store_charge_attempt(struct store *s, int64_t request_id, bool refused, int http_status,
                         const char *error, const char *now);

/*
 * store_charge_group_begin() - the charge creation calls that follow
 * (store_charge_plan(), store_charge_created(), store_charge_attempt()) up
 * to store_charge_group_commit() share one transaction, so that the
 * creations under way at one moment cost one commit, not two each. Each
 * call still runs in a savepoint of its own: one that fails leaves nothing
 * of itself behind and the others stand. What they return is not durable
 * until store_charge_group_commit() returned 0, so nothing may be sent or
 * answered on it before; when the commit fails, none of them was recorded.
 * On PostgreSQL both are no-ops and each call stays a transaction of its
 * own (a group would hold several order_refs' row locks at once, in
 * arrival order, which another instance could be taking the other way
 * round). Returns 0, -EROFS or an errno as for store_submit().
 */
int store_charge_group_begin(struct store *s);

/* store_charge_group_commit() - COMMIT the group; 0 or a negative errno
 * (then nothing of the group was recorded). */
int store_charge_group_commit(struct store *s);
