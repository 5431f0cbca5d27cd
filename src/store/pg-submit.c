/*
 * pg-submit — the write path on PostgreSQL: a batch of deliveries in one
 * transaction, with several cashpayd instances writing at once.
 *
 * Serialising one charge across instances: the batch first locks the rows
 * of the orders it names that exist (SELECT ... FOR UPDATE, in charge_id
 * order so that two batches cannot lock each other out), and each
 * delivery reads its order FOR UPDATE. A charge nobody has seen is
 * inserted with INSERT ... ON CONFLICT DO NOTHING: when another instance
 * inserted it first, the insert waits for that transaction, inserts
 * nothing, and the delivery starts over on the row that now exists. Under
 * the row lock, each statement (READ COMMITTED) sees every commit before
 * it, so the message-id check and the state machine see the other
 * instance's work.
 *
 * The change feed: order_events ids come from a sequence, which hands
 * them out in call order, not commit order. The events of a batch are
 * therefore written last, under a transaction-scoped advisory lock held
 * until COMMIT, so ids become visible in increasing order across all
 * instances and "id > :cursor" never skips one. The lock is the last
 * thing a batch takes, so it adds no deadlock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/timeutil.h"
#include "src/store/pg-store-internal.h"

#define MESSAGE_SEEN_REASON "message id already recorded"
/* A deadlock or serialisation failure is retried this often before a 503. */
#define BUSY_RETRIES 3

int pg_message_seen(struct pg_store *p, const char *message_id, bool *ret)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = { message_id };
        int r;

        *ret = false;
        if (!message_id)
                return 0;
        r = pg_store_run(p, PG_MESSAGE_SEEN, params, 1, false, 0, &res);
        if (r >= 0)
                *ret = PQntuples(res) > 0;
        return r;
}

/* The order's row, locked until COMMIT. */
int pg_read_view(struct pg_store *p, const char *charge_id, struct order_view *v)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = { charge_id };
        int r;

        *v = (struct order_view) { 0 };
        r = pg_store_run(p, PG_ORDER_VIEW, params, 1, false, 0, &res);
        if (r < 0 || PQntuples(res) == 0)
                return r;
        if (charge_status_from_name(PQgetvalue(res, 0, 0), &v->status) < 0)
                return -EIO;
        v->exists = true;
        v->amount = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        snprintf(v->currency, sizeof(v->currency), "%s", PQgetvalue(res, 0, 2));
        return 0;
}

int pg_transition_params(const struct transition *t, const struct charge *c, const char *now,
                         struct pg_params *out)
{
        *out = (struct pg_params) { 0 };
        if (t->insert_order) {
                snprintf(out->buf[0], sizeof(out->buf[0]), "%" PRId64, c->amount);
                snprintf(out->buf[1], sizeof(out->buf[1]), "%" PRId64, c->created);
                const char *v[] = { c->id, c->order_ref, charge_status_name(c->status), out->buf[0],
                                    c->currency, c->description, c->transaction_url, out->buf[1],
                                    now };
                memcpy(out->v, v, sizeof(v));
                out->n = 9;
                out->id = PG_ORDER_INSERT;
        } else if (t->change_status) {
                const char *v[] = { c->id, charge_status_name(c->status), now, c->order_ref,
                                    c->description, c->transaction_url };
                memcpy(out->v, v, sizeof(v));
                out->n = 6;
                out->id = PG_ORDER_UPDATE_STATUS;
        } else if (t->flag_review) {
                out->v[0] = c->id;
                out->v[1] = now;
                out->n = 2;
                out->id = PG_ORDER_FLAG_REVIEW;
        }
        return out->n > 0;
}

/* 1 when done, 0 when the insert lost a race and the delivery must start over. */
int pg_apply_transition(struct pg_store *p, const struct transition *t, const struct charge *c,
                            const char *now)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        struct pg_params op;
        int r;

        if (!pg_transition_params(t, c, now, &op))
                return 1;
        r = pg_store_run(p, op.id, op.v, op.n, false, 0, &res);
        if (r < 0)
                return r;
        if (op.id == PG_ORDER_INSERT)
                return strcmp(PQcmdTuples(res), "1") == 0;
        return strcmp(PQcmdTuples(res), "1") == 0 ? 1 : -EIO;
}

int pg_delivery_params(const struct delivery *d, const char *charge_id, const char *claimed,
                       const char *error, struct pg_params *out)
{
        *out = (struct pg_params) { 0 };
        if (d->body_len > INT32_MAX)
                return -E2BIG;
        snprintf(out->buf[0], sizeof(out->buf[0]), "%" PRId64, d->id);
        snprintf(out->buf[1], sizeof(out->buf[1]), "%d", d->http_status);
        const char *v[] = { out->buf[0], d->received_at, d->remote_addr, delivery_message_id(d),
                            charge_id, claimed, outcome_name(d->outcome), out->buf[1], error,
                            /* an empty body is '' (what was received), not NULL */
                            d->body ? (const char *) d->body : "" };
        memcpy(out->v, v, sizeof(v));
        out->n = 10;
        out->binary_last = true;
        out->last_len = (int) d->body_len;
        return 0;
}

int pg_insert_delivery(struct pg_store *p, struct delivery *d, const char *charge_id,
                           const char *claimed, const char *error)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        struct pg_params dp;
        int r;

        r = pg_delivery_params(d, charge_id, claimed, error, &dp);
        if (r < 0)
                return r;
        /* without the id: the identity column numbers it */
        r = pg_store_run(p, PG_DELIVERY_INSERT, dp.v + 1, 9, true, dp.last_len, &res);
        if (r >= 0)
                d->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        return r;
}

/* Decide under the order's lock and write the order; loops once when a
 * new charge was inserted by another instance meanwhile. */
static int decide_and_apply(struct pg_store *p, struct delivery *d, const char *now)
{
        struct order_view view;
        bool seen;
        int r;

        for (int attempt = 0; attempt < 3; attempt++) {
                r = pg_read_view(p, d->charge.id, &view);
                if (r >= 0)
                        r = pg_message_seen(p, delivery_message_id(d), &seen);
                if (r < 0)
                        return r;
                if (seen) {
                        d->had_order = false;
                        d->transition = (struct transition) { .outcome = OUTCOME_DUPLICATE,
                                                              .reason = MESSAGE_SEEN_REASON };
                        return 0;
                }
                d->had_order = view.exists;
                d->previous = view.status;
                d->transition = state_decide(&view, &d->charge);
                r = pg_apply_transition(p, &d->transition, &d->charge, now);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        return -EBUSY; /* the row kept appearing and vanishing: give the batch up */
}

static int record_accepted(struct pg_store *p, struct delivery *d, const char *now)
{
        int r = decide_and_apply(p, d, now);

        if (r < 0)
                return r;
        d->outcome = d->transition.outcome;
        d->http_status = 200;
        return pg_insert_delivery(p, d, d->charge.id, charge_status_name(d->charge.status),
                               d->outcome == OUTCOME_APPLIED ? NULL : d->transition.reason);
}

int pg_rejection_status(enum outcome o)
{
        switch (o) {
        case OUTCOME_INVALID:
                return 400;
        case OUTCOME_UNAUTHORIZED:
                return 401;
        case OUTCOME_FORBIDDEN:
                return 403;
        default:
                return 0;
        }
}

static int record(struct pg_store *p, struct delivery *d, const char *now)
{
        int status, r;

        delivery_reset_result(d);
        if (d->has_charge)
                return record_accepted(p, d, now);
        status = pg_rejection_status(d->rejected_as);
        if (status == 0 || status != d->rejected_status)
                return -EINVAL;
        d->outcome = d->rejected_as;
        d->http_status = status;
        r = pg_insert_delivery(p, d, d->charge.id[0] ? d->charge.id : NULL, NULL, d->error);
        if (r >= 0 && p->rejected_rows >= 0)
                p->rejected_rows++;
        return r;
}

static bool delivery_fault(int r)
{
        return r == -EINVAL || r == -E2BIG;
}

static int record_isolated(struct pg_store *p, struct delivery *d, const char *now)
{
        int r = pg_store_exec(p, "SAVEPOINT delivery");

        if (r < 0)
                return r;
        r = record(p, d, now);
        if (r >= 0)
                return pg_store_exec(p, "RELEASE SAVEPOINT delivery");
        if (!delivery_fault(r))
                return r;
        delivery_reset_result(d);
        d->fault = r;
        d->http_status = 500;
        return pg_store_exec(p, "ROLLBACK TO SAVEPOINT delivery; RELEASE SAVEPOINT delivery");
}

/* Every existing order of the batch, locked in one statement, in charge_id order. */
static int lock_orders(struct pg_store *p, struct delivery *const *items, size_t n)
{
        size_t len = 3;
        int r;

        for (size_t i = 0; i < n; i++)
                if (items[i]->has_charge)
                        len += strlen(items[i]->charge.id) + 3;
        if (len == 3)
                return 0;
        _cleanup_(freep) char *array = malloc(len);
        if (!array)
                return -ENOMEM;
        /* charge ids are [A-Za-z0-9_-] (charge.c): nothing to escape in "..." */
        char *w = array;
        *w++ = '{';
        for (size_t i = 0; i < n; i++)
                if (items[i]->has_charge)
                        w += sprintf(w, "%s\"%s\"", w == array + 1 ? "" : ",", items[i]->charge.id);
        *w++ = '}';
        *w = '\0';
        const char *params[] = { array };
        r = pg_store_run(p, PG_LOCK_ORDERS, params, 1, false, 0, NULL);
        return r;
}

/* Appends @text (or NULL) as the next element of the array literal @buf. */
static void array_add(char *buf, size_t *len, const char *text)
{
        *len += sprintf(buf + *len, "%s%s%s%s", *len > 1 ? "," : "", text ? "\"" : "",
                        text ? text : "NULL", text ? "\"" : "");
}

void pg_events_free(struct pg_events *e)
{
        free(e->ids);
        free(e->from);
        free(e->to);
        free(e->deliveries);
        *e = (struct pg_events) { 0 };
}

/* The values are charge ids ([A-Za-z0-9_-], charge.c), status names and
 * numbers: nothing in them needs escaping inside "...". */
int pg_events_build(struct delivery *const *items, size_t n, struct pg_events *e)
{
        size_t li = 1, lf = 1, lt = 1, ld = 1;

        *e = (struct pg_events) { .ids = malloc(n * (CHARGE_ID_MAX + 4) + 3),
                                  .from = malloc(n * 13 + 3), .to = malloc(n * 13 + 3),
                                  .deliveries = malloc(n * 24 + 3) };
        if (!e->ids || !e->from || !e->to || !e->deliveries) {
                pg_events_free(e);
                return -ENOMEM;
        }
        e->ids[0] = e->from[0] = e->to[0] = e->deliveries[0] = '{';
        for (size_t i = 0; i < n; i++) {
                const struct delivery *d = items[i];
                char id[24];

                if (d->fault < 0 || !d->has_charge || !d->transition.change_status)
                        continue;
                snprintf(id, sizeof(id), "%" PRId64, d->id);
                array_add(e->ids, &li, d->charge.id);
                array_add(e->from, &lf, d->had_order ? charge_status_name(d->previous) : NULL);
                array_add(e->to, &lt, charge_status_name(d->charge.status));
                array_add(e->deliveries, &ld, id);
                e->count++;
        }
        strcpy(e->ids + li, "}");
        strcpy(e->from + lf, "}");
        strcpy(e->to + lt, "}");
        strcpy(e->deliveries + ld, "}");
        return 0;
}

int pg_events_take(const PGresult *res, struct delivery *const *items, size_t n, size_t count)
{
        if ((size_t) PQntuples(res) != count)
                return -EIO;
        /* each row names its delivery: no reliance on the order of RETURNING */
        for (int row = 0; row < PQntuples(res); row++) {
                int64_t event = strtoll(PQgetvalue(res, row, 0), NULL, 10);
                int64_t delivery = strtoll(PQgetvalue(res, row, 1), NULL, 10);
                for (size_t i = 0; i < n; i++)
                        if (items[i]->id == delivery && items[i]->has_charge &&
                            items[i]->fault == 0)
                                items[i]->event_id = event;
        }
        return 0;
}

/* The batch's status changes, in one INSERT under the events lock. */
static int insert_events(struct pg_store *p, struct delivery *const *items, size_t n,
                         const char *now)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        struct pg_events e;
        int r;

        r = pg_events_build(items, n, &e);
        if (r < 0 || e.count == 0)
                goto out;
        r = pg_store_run(p, PG_EVENTS_LOCK, NULL, 0, false, 0, NULL);
        if (r < 0)
                goto out;
        const char *params[] = { e.ids, e.from, e.to, e.deliveries, now };
        r = pg_store_run(p, PG_EVENT_INSERT, params, 5, false, 0, &res);
        if (r >= 0)
                r = pg_events_take(res, items, n, e.count);
out:
        pg_events_free(&e);
        return r;
}

/* The cap on rejected rows, as store_submit() describes it for SQLite. */
bool pg_trim_due(const struct pg_store *p)
{
        int64_t slack = p->max_rejected / 100;

        if (p->max_rejected <= 0)
                return false;
        slack = slack < 1 ? 1 : slack > 1000 ? 1000 : slack;
        return p->rejected_rows > p->max_rejected + slack;
}

int pg_trim_rejected(struct pg_store *p, int64_t added)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char keep[24], limit[24];
        const char *params[] = { keep, limit };
        int r;

        if (!pg_trim_due(p))
                return 0;
        snprintf(keep, sizeof(keep), "%" PRId64, p->max_rejected);
        snprintf(limit, sizeof(limit), "%" PRId64, 10000 + added);
        r = pg_store_run(p, PG_REJECTED_TRIM, params, 2, false, 0, &res);
        if (r < 0)
                return r;
        p->rejected_rows -= strtoll(PQcmdTuples(res), NULL, 10);
        if (p->rejected_rows < p->max_rejected)
                p->rejected_rows = p->max_rejected; /* an upper bound, as documented */
        return 0;
}

/*
 * A connection that died while idle (a server restart in a quiet hour,
 * idle_session_timeout, a middlebox) only shows it when used, and the
 * first use is BEGIN. Nothing of the batch has been sent then, so BEGIN
 * goes once more on a new connection (pg_store_conn() connects at once
 * after a first loss) rather than answering 503 for a server that is up.
 */
int pg_begin(struct pg_store *p)
{
        int r = pg_store_exec(p, "BEGIN");

        return r == -ECONNRESET ? pg_store_exec(p, "BEGIN") : r;
}

static int run_batch(struct pg_store *p, struct delivery *const *items, size_t n, bool isolated)
{
        int64_t rejected = p->rejected_rows;
        char now[TIME_ISO_LEN];
        int r;

        r = pg_begin(p);
        if (r < 0)
                return r;
        time_format_iso(time_now_ms(), now);
        r = lock_orders(p, items, n);
        for (size_t i = 0; i < n && r >= 0; i++)
                r = isolated ? record_isolated(p, items[i], now) : record(p, items[i], now);
        if (r >= 0)
                r = pg_trim_rejected(p, p->rejected_rows - rejected);
        if (r >= 0)
                r = insert_events(p, items, n, now);
        /* 2xx only once this returned: a COMMIT that fails (or whose answer
         * is lost with the connection) is a 503, and the retry is a duplicate */
        if (r >= 0)
                r = pg_store_exec(p, "COMMIT");
        else if (p->conn)
                pg_store_exec(p, "ROLLBACK");
        if (r < 0)
                p->rejected_rows = rejected;
        return r;
}

int pg_store_submit(struct pg_store *p, struct delivery *const *items, size_t n)
{
        int r;

        if (p->read_only)
                return -EROFS;
        if (n == 0)
                return 0;
        for (int attempt = 0;; attempt++) {
                r = pg_submit_batch(p, items, n);
                if (r == 1)
                        r = run_batch(p, items, n, false);
                if (delivery_fault(r))
                        r = run_batch(p, items, n, true);
                /* a deadlock with another instance: the server chose us; go again */
                if (r != -EBUSY || attempt + 1 >= BUSY_RETRIES)
                        return r;
        }
}
