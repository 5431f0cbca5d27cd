/*
 * pg-api — the API half's store calls (cashpay/store-api.h) on
 * PostgreSQL, with several cashpayd instances on one database.
 *
 * Fetched charges go through the state machine exactly as a webhook does
 * in pg-submit.c: the order's row read FOR UPDATE, a new order inserted
 * with ON CONFLICT DO NOTHING and decided again when another instance won,
 * and the event written last under the events lock.
 *
 * The reconciler's queue is shared out, not merely read: store_due_orders()
 * claims what it returns by moving next_check_at a lease ahead in the same
 * statement (rows another instance is claiming at that moment are skipped:
 * FOR UPDATE SKIP LOCKED). A second instance asking a moment later finds
 * them not due; the fetch's own next_check_at then replaces the lease. An
 * instance that stops before fetching gives its claims back
 * (pg_store_release_due()); one that dies delays them by the lease, the
 * caller's: as long as the fetch can take (reconcile_lease_ms()).
 *
 * Charge creation: the partial unique index charge_requests_pending_idx
 * allows one pending request per order_ref. store_charge_plan() locks that
 * row first and only then reads the orders, so a creation that committed
 * meanwhile at another instance is seen; a new row goes in with ON CONFLICT
 * DO NOTHING, and losing that race means deciding again on the winner's
 * row (same Idempotency-Key), never a second row.
 *
 * These calls are rare next to webhook batches: their statements are sent
 * with parameters each time rather than prepared on every connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/timeutil.h"
#include "src/store/pg-store-internal.h"

/* A deadlock or a lost insert race is decided again this often. */
#define RETRIES 3

#define I64(buf, v) (snprintf(buf, sizeof(buf), "%" PRId64, (int64_t) (v)), (const char *) buf)

/* "" is no time at all: NULL, as the SQLite store leaves the column. */
static const char *time_or_null(const char *iso)
{
        return iso && iso[0] ? iso : NULL;
}

static void copy_val(const PGresult *res, int row, int col, char *buf, size_t len)
{
        snprintf(buf, len, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

static int64_t int_val(const PGresult *res, int row, int col)
{
        return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* COMMIT, or ROLLBACK after a failure @r. */
static int finish(struct pg_store *p, int r)
{
        if (r >= 0)
                return pg_store_exec(p, "COMMIT");
        if (p->conn)
                pg_store_exec(p, "ROLLBACK");
        return r;
}

static int insert_event(struct pg_store *p, const char *charge_id, const char *from,
                        const char *to, const char *source, int64_t delivery_id, int64_t fetch_id,
                        const char *now, int64_t *ret_id)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char d[24], f[24];
        const char *params[] = { charge_id, from, to, delivery_id ? I64(d, delivery_id) : NULL,
                                 now, source, fetch_id ? I64(f, fetch_id) : NULL };
        int r;

        /* the last lock a transaction takes, as in pg-submit.c */
        r = pg_store_run(p, PG_EVENTS_LOCK, NULL, 0, false, 0, NULL);
        if (r < 0)
                return r;
        r = pg_store_query(p, "INSERT INTO order_events (charge_id, from_status, to_status, "
                              "delivery_id, recorded_at, source, fetch_id) VALUES ($1, $2, $3, "
                              "$4::bigint, $5::timestamptz, $6, $7::bigint) RETURNING id",
                           params, 7, false, 0, &res);
        if (r >= 0)
                *ret_id = int_val(res, 0, 0);
        return r;
}

/* ---- api_fetches ------------------------------------------------------------ */

static int insert_fetch(struct pg_store *p, struct api_fetch *f)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        const struct charge *c = f->has_charge ? &f->charge : NULL;
        size_t n = f->body_len > STORE_FETCH_BODY_MAX ? STORE_FETCH_BODY_MAX : f->body_len;
        char delivery[24], status[24], amount[24], duration[24];
        const char *params[] = {
                f->charge_id, f->requested_at, fetch_reason_name(f->reason),
                f->delivery_id ? I64(delivery, f->delivery_id) : NULL,
                f->http_status ? I64(status, f->http_status) : NULL,
                c ? charge_status_name(c->status) : NULL, c ? I64(amount, c->amount) : NULL,
                c ? c->currency : NULL, c ? NULL : f->error,
                I64(duration, f->duration_ms < 0 ? 0 : f->duration_ms),
                f->body ? (const char *) f->body : NULL,
        };
        int r;

        r = pg_store_query(p, "INSERT INTO api_fetches (charge_id, requested_at, reason, "
                              "delivery_id, http_status, status, amount, currency, error, "
                              "duration_ms, body) VALUES ($1, $2::timestamptz, $3, $4::bigint, "
                              "$5::integer, $6, $7::bigint, $8, $9, $10::bigint, $11::bytea) "
                              "RETURNING id",
                           params, 11, true, (int) n, &res);
        if (r >= 0)
                f->id = int_val(res, 0, 0);
        return r;
}

/* The API's charge through the state machine, under the order's row lock. */
static int apply_fetched(struct pg_store *p, struct api_fetch *f, const char *now)
{
        struct order_view view;
        int r = 0;

        for (int attempt = 0; attempt < RETRIES; attempt++) {
                r = pg_read_view(p, f->charge_id, &view);
                if (r < 0)
                        return r;
                f->had_order = view.exists;
                f->previous = view.status;
                f->transition = state_decide(&view, &f->charge);
                r = pg_apply_transition(p, &f->transition, &f->charge, now);
                if (r != 0)
                        break;
        }
        return r < 0 ? r : r == 0 ? -EBUSY : 0;
}

static int set_next_check(struct pg_store *p, const char *charge_id, const char *when)
{
        const char *params[] = { charge_id, when };

        if (!when[0])
                return 0;
        return pg_store_query(p, "UPDATE orders SET next_check_at = $2::timestamptz "
                                 "WHERE charge_id = $1 AND status = 'INITIATED'",
                              params, 2, false, 0, NULL);
}

static int record_fetch_once(struct pg_store *p, struct api_fetch *f)
{
        char now[TIME_ISO_LEN];
        int r;

        f->id = f->event_id = 0;
        f->had_order = false;
        f->transition = (struct transition) { 0 };
        r = pg_begin(p);
        if (r < 0)
                return r;
        time_format_iso(time_now_ms(), now);
        r = insert_fetch(p, f);
        if (r >= 0 && f->has_charge)
                r = apply_fetched(p, f, now);
        if (r >= 0)
                r = set_next_check(p, f->charge_id, f->next_check_at);
        if (r >= 0 && f->has_charge && f->transition.change_status)
                r = insert_event(p, f->charge_id,
                                 f->had_order ? charge_status_name(f->previous) : NULL,
                                 charge_status_name(f->charge.status), "api", f->delivery_id,
                                 f->id, now, &f->event_id);
        return finish(p, r);
}

int pg_store_record_fetch(struct pg_store *p, struct api_fetch *f)
{
        int r;

        for (int attempt = 0;; attempt++) {
                r = record_fetch_once(p, f);
                if (r != -EBUSY || attempt + 1 >= RETRIES)
                        return r;
        }
}

/* ---- webhooks confirmed with the API (§8.4) ------------------------------------ */

static bool same_terms(const struct charge *a, const struct charge *b)
{
        return a->status == b->status && a->amount == b->amount &&
               strcmp(a->currency, b->currency) == 0;
}

/* As decide_confirmed() in store-api.c, under the order's row lock, and
 * with the API's charge already written (insert races decided again, as a
 * webhook's are): true in *ran when the state machine ran. */
static int confirm_decide_apply(struct pg_store *p, struct delivery *d, struct api_fetch *f,
                                const char *now, bool *ran)
{
        struct order_view view;
        bool seen;
        int r = 0;

        *ran = false;
        d->http_status = 200;
        for (int attempt = 0; attempt < RETRIES; attempt++) {
                /* the row first: a delivery of the same message at another
                 * instance has committed when the lock is ours */
                r = pg_read_view(p, f->charge_id, &view);
                if (r >= 0)
                        r = pg_message_seen(p, delivery_message_id(d), &seen);
                if (r < 0)
                        return r;
                if (seen) {
                        d->outcome = OUTCOME_DUPLICATE;
                        d->transition = (struct transition) { .outcome = OUTCOME_DUPLICATE,
                                                              .reason = "message id already "
                                                                        "recorded" };
                        return 0;
                }
                if (!f->has_charge) {
                        bool not_found = f->http_status == 404;
                        d->outcome = not_found ? OUTCOME_UNCONFIRMED : OUTCOME_DEFERRED;
                        d->http_status = not_found ? 200 : 503;
                        return 0;
                }
                f->had_order = d->had_order = view.exists;
                f->previous = d->previous = view.status;
                f->transition = state_decide(&view, &f->charge);
                d->transition = f->transition;
                d->outcome = same_terms(&f->charge, &d->charge) ? f->transition.outcome
                                                                 : OUTCOME_UNCONFIRMED;
                r = pg_apply_transition(p, &f->transition, &f->charge, now);
                if (r != 0)
                        break;
        }
        if (r < 0)
                return r;
        *ran = r > 0;
        return r > 0 ? 0 : -EBUSY;
}

static int record_confirmed_once(struct pg_store *p, struct delivery *d, struct api_fetch *f,
                                 const char *(*error)(const struct delivery *,
                                                      const struct api_fetch *))
{
        char now[TIME_ISO_LEN];
        bool ran;
        int r;

        delivery_reset_result(d);
        f->id = f->event_id = 0;
        f->had_order = false;
        f->transition = (struct transition) { 0 };
        r = pg_begin(p);
        if (r < 0)
                return r;
        time_format_iso(time_now_ms(), now);
        r = confirm_decide_apply(p, d, f, now, &ran);
        if (r >= 0)
                r = pg_insert_delivery(p, d, d->charge.id, charge_status_name(d->charge.status),
                                       error(d, f));
        f->delivery_id = d->id;
        if (r >= 0)
                r = insert_fetch(p, f);
        if (r >= 0 && d->outcome == OUTCOME_DEFERRED) /* queued for reconciliation */
                r = set_next_check(p, f->charge_id, now);
        if (r >= 0 && ran && f->transition.change_status)
                r = insert_event(p, f->charge_id,
                                 f->had_order ? charge_status_name(f->previous) : NULL,
                                 charge_status_name(f->charge.status), "api", d->id, f->id, now,
                                 &f->event_id);
        d->event_id = f->event_id;
        if (r >= 0 && ran)
                r = set_next_check(p, f->charge_id, f->next_check_at);
        return finish(p, r);
}

int pg_store_record_confirmed(struct pg_store *p, struct delivery *d, struct api_fetch *f,
                              const char *(*error)(const struct delivery *d,
                                                   const struct api_fetch *f))
{
        int r;

        if (p->read_only)
                return -EROFS;
        for (int attempt = 0;; attempt++) {
                r = record_confirmed_once(p, d, f, error);
                if (r != -EBUSY || attempt + 1 >= RETRIES)
                        break;
        }
        if (r >= 0 && d->http_status >= 400 && p->rejected_rows >= 0)
                p->rejected_rows++; /* a deferred row is pruned like a rejected one */
        return r;
}

/* ---- the reconciler's queue ------------------------------------------------- */

#define DUE_WHERE \
        "status = 'INITIATED' AND first_seen_at >= $3::timestamptz AND " \
        "((next_check_at IS NOT NULL AND next_check_at <= $1::timestamptz) OR " \
        "(next_check_at IS NULL AND updated_at <= $2::timestamptz))"

int pg_store_due_orders(struct pg_store *p, const char *now, const char *untouched_before,
                        const char *first_seen_after, int64_t lease_ms, struct due_order *ret,
                        size_t max, size_t *ret_n)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char limit[24], lease[24];
        const char *params[] = { now, untouched_before, first_seen_after, I64(limit, max),
                                 I64(lease, lease_ms > 0 ? lease_ms : 0) };
        int r;

        *ret_n = 0;
        if (max == 0)
                return 0;
        if (p->read_only)
                return -EROFS; /* claiming writes */
        r = pg_store_query(p, "WITH due AS (SELECT charge_id, next_check_at AS previous, "
                              "coalesce(next_check_at, updated_at) AS due FROM orders WHERE "
                              DUE_WHERE " ORDER BY due, charge_id LIMIT $4::bigint "
                              "FOR UPDATE SKIP LOCKED), "
                              "claimed AS (UPDATE orders o SET next_check_at = "
                              "$1::timestamptz + $5::bigint * interval '1 millisecond' FROM due "
                              "WHERE o.charge_id = due.charge_id "
                              "RETURNING o.charge_id, o.first_seen_at, due.previous, due.due, "
                              "o.next_check_at AS lease) "
                              "SELECT charge_id, " PG_ISO("first_seen_at") ", "
                              PG_ISO("previous") ", " PG_ISO("lease") ", "
                              /* the latest claim the API did not confirm, as on SQLite */
                              "(SELECT " PG_ISO("max(w.received_at)") " FROM webhook_deliveries w "
                              "WHERE w.charge_id = claimed.charge_id AND w.outcome = 'unconfirmed') "
                              "FROM claimed ORDER BY due, charge_id",
                           params, 5, false, 0, &res);
        if (r < 0)
                return r;
        for (int row = 0; row < PQntuples(res) && *ret_n < max; row++) {
                struct due_order *d = &ret[(*ret_n)++];

                copy_val(res, row, 0, d->charge_id, sizeof(d->charge_id));
                copy_val(res, row, 1, d->first_seen_at, sizeof(d->first_seen_at));
                copy_val(res, row, 2, d->next_check_at, sizeof(d->next_check_at));
                copy_val(res, row, 3, d->claimed_until, sizeof(d->claimed_until));
                copy_val(res, row, 4, d->claimed_at, sizeof(d->claimed_at));
        }
        return 0;
}

/* The lease is ours while next_check_at is still exactly it: a fetch
 * recorded since (here or, after the lease, elsewhere) has replaced it. */
int pg_store_release_due(struct pg_store *p, const char *charge_id, const char *claimed_until,
                         const char *previous)
{
        const char *params[] = { charge_id, claimed_until, time_or_null(previous) };

        return pg_store_query(p, "UPDATE orders SET next_check_at = $3::timestamptz "
                                 "WHERE charge_id = $1 AND status = 'INITIATED' "
                                 "AND next_check_at = $2::timestamptz",
                              params, 3, false, 0, NULL);
}

int pg_store_count_due(struct pg_store *p, const char *now, const char *untouched_before,
                       const char *first_seen_after, int64_t *ret)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = { now, untouched_before, first_seen_after };
        int r;

        *ret = 0;
        r = pg_store_query(p, "SELECT count(*) FROM orders WHERE " DUE_WHERE, params, 3, false, 0,
                           &res);
        if (r >= 0)
                *ret = int_val(res, 0, 0);
        return r;
}

int pg_store_get_order_by_return_ref(struct pg_store *p, const char *return_ref,
                                     struct order_record *ret)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = { return_ref };
        char charge_id[CHARGE_ID_MAX + 1];
        int r;

        *ret = (struct order_record) { 0 };
        r = pg_store_query(p, "SELECT charge_id FROM orders WHERE return_ref = $1", params, 1,
                           false, 0, &res);
        if (r == -ECONNRESET) /* a read: once more on a fresh connection */
                r = pg_store_query(p, "SELECT charge_id FROM orders WHERE return_ref = $1",
                                   params, 1, false, 0, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return -ENOENT;
        copy_val(res, 0, 0, charge_id, sizeof(charge_id));
        /* an order's return_ref, once set, never changes: two reads are one */
        return pg_store_get_order(p, charge_id, ret);
}

/* ---- charge creation ---------------------------------------------------------- */

struct pending {
        bool found;
        int64_t id;
        int64_t amount;
        char currency[4];
        char idempotency_key[CHECKOUT_KEY_MAX + 1];
        char return_ref[CHECKOUT_KEY_MAX + 1];
        int attempts;
};

/* The order_ref's pending request, locked until COMMIT. */
static int lock_pending(struct pg_store *p, const char *order_ref, struct pending *ret)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = { order_ref };
        int r;

        *ret = (struct pending) { 0 };
        r = pg_store_query(p, "SELECT id, amount, currency, idempotency_key, return_ref, "
                              "attempts FROM charge_requests WHERE order_ref = $1 "
                              "AND state = 'pending' FOR UPDATE", params, 1, false, 0, &res);
        if (r < 0 || PQntuples(res) == 0)
                return r;
        ret->found = true;
        ret->id = int_val(res, 0, 0);
        ret->amount = int_val(res, 0, 1);
        copy_val(res, 0, 2, ret->currency, sizeof(ret->currency));
        copy_val(res, 0, 3, ret->idempotency_key, sizeof(ret->idempotency_key));
        copy_val(res, 0, 4, ret->return_ref, sizeof(ret->return_ref));
        ret->attempts = (int) int_val(res, 0, 5);
        return 0;
}

/* As plan_from_orders() in store-api.c: 1 when the orders decided @p. */
static int plan_from_orders(struct pg_store *p, const struct charge_ask *ask, struct charge_plan *pl)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = { ask->order_ref };
        int r;

        r = pg_store_query(p, "SELECT charge_id, status, amount, currency, return_ref, "
                              "transaction_url FROM orders WHERE order_ref = $1 "
                              "AND status <> 'FAILED' ORDER BY status = 'CAPTURED' DESC, "
                              "first_seen_at DESC LIMIT 1", params, 1, false, 0, &res);
        if (r < 0 || PQntuples(res) == 0)
                return r;
        copy_val(res, 0, 0, pl->charge_id, sizeof(pl->charge_id));
        if (strcmp(PQgetvalue(res, 0, 1), "CAPTURED") == 0) {
                pl->verdict = CHARGE_ALREADY_PAID;
                return 1;
        }
        if (int_val(res, 0, 2) != ask->amount || strcmp(PQgetvalue(res, 0, 3), ask->currency) != 0) {
                pl->verdict = CHARGE_ORDER_CHANGED;
                return 1;
        }
        pl->verdict = CHARGE_EXISTS;
        copy_val(res, 0, 4, pl->return_ref, sizeof(pl->return_ref));
        if (!PQgetisnull(res, 0, 5) && !(pl->transaction_url = strdup(PQgetvalue(res, 0, 5))))
                return -ENOMEM;
        return 1;
}

static int plan_reuse(struct pg_store *p, const struct charge_ask *ask, const struct pending *q,
                      struct charge_plan *pl)
{
        char id[24];
        const char *params[] = { I64(id, q->id), ask->now };

        if (q->amount != ask->amount || strcmp(q->currency, ask->currency) != 0) {
                /* the earlier request may have created a charge at CashPay */
                pl->verdict = CHARGE_ORDER_CHANGED;
                return 0;
        }
        pl->verdict = CHARGE_SEND;
        pl->request_id = q->id;
        snprintf(pl->idempotency_key, sizeof(pl->idempotency_key), "%s", q->idempotency_key);
        snprintf(pl->return_ref, sizeof(pl->return_ref), "%s", q->return_ref);
        pl->attempts = q->attempts;
        return pg_store_query(p, "UPDATE charge_requests SET attempts = attempts + 1, "
                                 "updated_at = $2::timestamptz WHERE id = $1::bigint",
                              params, 2, false, 0, NULL);
}

/* 1 when written, 0 when another instance's pending row won the race. */
static int plan_new_request(struct pg_store *p, const struct charge_ask *ask,
                            struct charge_plan *pl)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char amount[24];
        const char *params[] = { ask->order_ref, I64(amount, ask->amount), ask->currency,
                                 ask->description, ask->new_idempotency_key, ask->new_return_ref,
                                 ask->now };
        int r;

        if (!ask->new_idempotency_key || !ask->new_return_ref ||
            strlen(ask->new_idempotency_key) > CHECKOUT_KEY_MAX ||
            strlen(ask->new_return_ref) > CHECKOUT_KEY_MAX)
                return -EINVAL;
        r = pg_store_query(p, "INSERT INTO charge_requests (order_ref, amount, currency, "
                              "description, idempotency_key, return_ref, attempts, requested_at, "
                              "updated_at) VALUES ($1, $2::bigint, $3, $4, $5, $6, 1, "
                              "$7::timestamptz, $7::timestamptz) "
                              "ON CONFLICT (order_ref) WHERE state = 'pending' DO NOTHING "
                              "RETURNING id", params, 7, false, 0, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return 0;
        pl->verdict = CHARGE_SEND;
        pl->request_id = int_val(res, 0, 0);
        snprintf(pl->idempotency_key, sizeof(pl->idempotency_key), "%s", ask->new_idempotency_key);
        snprintf(pl->return_ref, sizeof(pl->return_ref), "%s", ask->new_return_ref);
        pl->attempts = 0;
        return 1;
}

/* 1 when decided, 0 when it must be decided again in a new transaction. */
static int plan_once(struct pg_store *p, const struct charge_ask *ask, struct charge_plan *pl)
{
        struct pending q;
        int r;

        r = pg_begin(p);
        if (r < 0)
                return r;
        /* the request row first: a creation that held it has committed when
         * this returns, and the orders read next see its order */
        r = lock_pending(p, ask->order_ref, &q);
        if (r >= 0)
                r = plan_from_orders(p, ask, pl);
        if (r == 0 && q.found)
        {
                r = plan_reuse(p, ask, &q, pl);
                r = r < 0 ? r : 1;
        }
        if (r == 0)
                r = plan_new_request(p, ask, pl);
        if (r == 0) {
                pg_store_exec(p, "ROLLBACK");
                return 0;
        }
        r = finish(p, r);
        return r < 0 ? r : 1;
}

int pg_store_charge_plan(struct pg_store *p, const struct charge_ask *ask, struct charge_plan *ret)
{
        int r = 0;

        for (int attempt = 0; attempt < RETRIES; attempt++) {
                charge_plan_clear(ret);
                r = plan_once(p, ask, ret);
                if (r > 0)
                        return 0;
                if (r < 0 && r != -EBUSY)
                        break;
        }
        charge_plan_clear(ret);
        return r < 0 ? r : -EBUSY;
}

struct request_row {
        char order_ref[CHECKOUT_ORDER_REF_MAX + 1];
        char return_ref[CHECKOUT_KEY_MAX + 1];
        int64_t amount;
        char currency[4];
};

static int read_pending(struct pg_store *p, int64_t id, struct request_row *ret)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char idb[24];
        const char *params[] = { I64(idb, id) };
        int r;

        r = pg_store_query(p, "SELECT order_ref, return_ref, amount, currency FROM "
                              "charge_requests WHERE id = $1::bigint AND state = 'pending' "
                              "FOR UPDATE", params, 1, false, 0, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return -ENOENT;
        copy_val(res, 0, 0, ret->order_ref, sizeof(ret->order_ref));
        copy_val(res, 0, 1, ret->return_ref, sizeof(ret->return_ref));
        ret->amount = int_val(res, 0, 2);
        copy_val(res, 0, 3, ret->currency, sizeof(ret->currency));
        return 0;
}

static int finish_request(struct pg_store *p, int64_t id, const char *state, const char *charge_id,
                          int http_status, const char *error, const char *now)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char idb[24], status[24];
        const char *params[] = { I64(idb, id), state, charge_id,
                                 http_status ? I64(status, http_status) : NULL, error, now };
        int r;

        r = pg_store_query(p, "UPDATE charge_requests SET state = $2, charge_id = $3, "
                              "http_status = $4::integer, error = $5, updated_at = "
                              "$6::timestamptz WHERE id = $1::bigint AND state = 'pending'",
                           params, 6, false, 0, &res);
        if (r >= 0 && strcmp(PQcmdTuples(res), "1") != 0)
                return -ENOENT;
        return r;
}

/* The created charge's order, or its references when a webhook recorded it
 * first (at this instance or another). 1 when this inserted the row. */
static int record_created_order(struct pg_store *p, const struct request_row *req,
                                const struct charge *c, const char *now, const char *next_check)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char amount[24], created[24];
        const char *params[] = { c->id, req->order_ref, I64(amount, c->amount), c->currency,
                                 c->description, c->transaction_url, I64(created, c->created),
                                 now, req->return_ref, time_or_null(next_check) };
        int r;

        r = pg_store_query(p, "INSERT INTO orders (charge_id, order_ref, status, amount, currency, "
                              "description, transaction_url, charge_created, first_seen_at, "
                              "updated_at, return_ref, next_check_at) VALUES ($1, $2, "
                              "'INITIATED', $3::bigint, $4, $5, $6, $7::bigint, $8::timestamptz, "
                              "$8::timestamptz, $9, $10::timestamptz) "
                              "ON CONFLICT (charge_id) DO UPDATE SET "
                              "order_ref = coalesce(orders.order_ref, excluded.order_ref), "
                              "return_ref = coalesce(orders.return_ref, excluded.return_ref) "
                              /* xmax is 0 only on a row this statement inserted */
                              "RETURNING xmax = 0", params, 10, false, 0, &res);
        if (r < 0)
                return r;
        return strcmp(PQgetvalue(res, 0, 0), "t") == 0;
}

int pg_store_charge_created(struct pg_store *p, int64_t request_id, const struct charge *c,
                            int http_status, const char *now, const char *next_check_at)
{
        struct request_row req;
        int64_t event_id;
        int inserted = 0, r;

        r = pg_begin(p);
        if (r < 0)
                return r;
        r = read_pending(p, request_id, &req);
        if (r >= 0 && (req.amount != c->amount || strcmp(req.currency, c->currency) != 0))
                r = -EINVAL; /* CashPay did not create what was asked: never record it */
        if (r >= 0)
                r = inserted = record_created_order(p, &req, c, now, next_check_at);
        if (r >= 0)
                r = finish_request(p, request_id, "created", c->id, http_status, NULL, now);
        if (r >= 0 && inserted)
                r = insert_event(p, c->id, NULL, "INITIATED", "checkout", 0, 0, now, &event_id);
        return finish(p, r);
}

int pg_store_charge_attempt(struct pg_store *p, int64_t request_id, bool refused, int http_status,
                            const char *error, const char *now)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char idb[24], status[24];
        const char *params[] = { I64(idb, request_id),
                                 http_status ? I64(status, http_status) : NULL, error, now };
        int r;

        if (refused)
                return finish_request(p, request_id, "refused", NULL, http_status, error, now);
        /* one statement: its own transaction */
        r = pg_store_query(p, "UPDATE charge_requests SET http_status = $2::integer, error = $3, "
                              "updated_at = $4::timestamptz WHERE id = $1::bigint "
                              "AND state = 'pending'", params, 4, false, 0, &res);
        if (r >= 0 && strcmp(PQcmdTuples(res), "1") != 0)
                return -ENOENT;
        return r;
}
