/*
 * pg-batch — a batch of deliveries in two round trips instead of four
 * statements per delivery, each waiting for its answer.
 *
 * 1. One pipeline (libpq's pipeline mode): BEGIN; lock the batch's existing
 *    orders in charge_id order, returning what the state machine needs of
 *    them; one new webhook_deliveries id per delivery; which of its message
 *    ids (if it has any) are recorded with a 200.
 * 2. Here: every delivery decided in batch order against those rows, the
 *    batch's own earlier decisions applied to them as they are made (what
 *    the statement-at-a-time way reads back from the server).
 * 3. A second pipeline: the new orders' insert, one update of every order
 *    that changes (its transitions merged), the deliveries' rows, the events
 *    under their lock (pg-submit.c says why), and COMMIT; the server skips
 *    the rest, COMMIT included, after a statement that failed (the update
 *    fails too when an order misses its row). Only when rejected
 *    rows are to be trimmed does COMMIT follow as a statement of its own.
 *
 * The batch holds the row lock of every order that existed, so nothing
 * read in 1 changes before COMMIT. A charge nobody had seen may be inserted
 * by another instance meanwhile: the insert here has no ON CONFLICT, so it
 * waits for that instance and then fails, the batch is rolled back, and
 * pg-submit.c's statement-at-a-time way (which starts over on the row that
 * now exists) takes it - as it takes a batch with a delivery the server
 * refuses, so that delivery can be isolated.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/timeutil.h"
#include "src/store/pg-array.h"
#include "src/store/pg-store-internal.h"

#define MESSAGE_SEEN_REASON "message id already recorded"

/* An order as the batch has it so far: read in step 1, or inserted by it. */
struct batch_order {
        const char *charge_id;   /* a delivery's charge.id */
        struct order_view view;
};

struct batch {
        struct delivery *const *items;
        size_t n;
        struct batch_order *orders;
        size_t n_orders;
        char **seen;             /* message ids recorded with a 200 before the batch */
        size_t n_seen;
        char now[TIME_ISO_LEN];
};

static void batch_free(struct batch *b)
{
        for (size_t i = 0; i < b->n_seen; i++)
                free(b->seen[i]);
        free(b->seen);
        free(b->orders);
}

/* ------------------------------------------------------------ pipelines */

static int send_statement(struct pg_store *p, const struct pg_params *sp)
{
        int lengths[10] = { 0 }, formats[10] = { 0 };

        if (sp->binary_last) {
                lengths[sp->n - 1] = sp->last_len;
                formats[sp->n - 1] = 1;
        }
        const char *name = pg_stmt_name(sp->id);
        int sent = name ? PQsendQueryPrepared(p->conn, name, sp->n, sp->v, lengths, formats, 0)
                        : PQsendQueryParams(p->conn, pg_stmt_sql(sp->id), sp->n, NULL, sp->v,
                                            lengths, formats, 0);

        return sent ? 0 : -ECONNRESET;
}

static int send_sql(struct pg_store *p, const char *sql)
{
        return PQsendQueryParams(p->conn, sql, 0, NULL, NULL, NULL, NULL, 0) ? 0 : -ECONNRESET;
}

/* The pipeline's answers up to its sync, one per statement: @res[i] (NULL
 * when the connection ended first; the caller clears them). 0 or the first
 * failure; the connection leaves pipeline mode either way. */
static int collect(struct pg_store *p, PGresult **res, size_t n)
{
        size_t got = 0, gaps = 0;
        int r = 0;

        if (!PQpipelineSync(p->conn))
                r = -ECONNRESET;
        while (r == 0) {
                PGresult *x = PQgetResult(p->conn);

                if (!x) {
                        /* NULL ends each statement's answers; more in a row: gone */
                        if (PQstatus(p->conn) != CONNECTION_OK || ++gaps > n + 1)
                                r = -ECONNRESET;
                        continue;
                }
                if (PQresultStatus(x) == PGRES_PIPELINE_SYNC) {
                        PQclear(x);
                        break;
                }
                if (got < n)
                        res[got++] = x;
                else
                        PQclear(x);
        }
        for (size_t i = 0; i < got && r == 0; i++)
                if (pg_errno(p->conn, res[i]) < 0)
                        r = pg_store_failed(p, res[i]);
        if (r == 0 && got < n)
                r = -EIO;
        if (r == -ECONNRESET && p->conn) {
                PQfinish(p->conn);
                p->conn = NULL;
        }
        if (p->conn && !PQexitPipelineMode(p->conn)) {
                PQfinish(p->conn); /* answers left unread: start clean */
                p->conn = NULL;
                r = r < 0 ? r : -ECONNRESET;
        }
        return r;
}

static void clear_all(PGresult **res, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (res[i])
                        PQclear(res[i]);
}

static int enter(struct pg_store *p)
{
        int r = pg_store_conn(p);

        if (r < 0)
                return r;
        return PQenterPipelineMode(p->conn) ? 0 : -EIO;
}

/* ------------------------------------------------------------ step 1: reads */

/* The batch's charge ids and message ids as array literals. */
static int build_arrays(const struct batch *b, struct pg_array *ids, struct pg_array *messages)
{
        for (size_t i = 0; i < b->n; i++) {
                const struct delivery *d = b->items[i];
                if (!d->has_charge)
                        continue;
                pg_array_add(ids, d->charge.id);
                if (delivery_message_id(d))
                        pg_array_add(messages, d->message_id);
        }
        return pg_array_end(ids) < 0 || pg_array_end(messages) < 0 ? -ENOMEM : 0;
}

static const char *batch_charge_id(const struct batch *b, const char *id)
{
        for (size_t i = 0; i < b->n; i++)
                if (b->items[i]->has_charge && strcmp(b->items[i]->charge.id, id) == 0)
                        return b->items[i]->charge.id;
        return NULL;
}

static int take_orders(struct batch *b, const PGresult *res)
{
        for (int row = 0; row < PQntuples(res); row++) {
                struct batch_order *o;
                if (b->n_orders >= b->n)
                        return -EIO;
                o = &b->orders[b->n_orders];
                o->charge_id = batch_charge_id(b, PQgetvalue(res, row, 0));
                if (!o->charge_id)
                        return -EIO;
                if (charge_status_from_name(PQgetvalue(res, row, 1), &o->view.status) < 0)
                        return -EIO;
                o->view.exists = true;
                o->view.amount = strtoll(PQgetvalue(res, row, 2), NULL, 10);
                snprintf(o->view.currency, sizeof(o->view.currency), "%s", PQgetvalue(res, row, 3));
                b->n_orders++;
        }
        return 0;
}

/* @res NULL: no message id was looked up. */
static int take_seen(struct batch *b, const PGresult *res)
{
        int rows = res ? PQntuples(res) : 0;

        b->seen = calloc((size_t) rows + 1, sizeof(*b->seen));
        if (!b->seen)
                return -ENOMEM;
        for (int row = 0; row < rows; row++) {
                b->seen[b->n_seen] = strdup(PQgetvalue(res, row, 0));
                if (!b->seen[b->n_seen])
                        return -ENOMEM;
                b->n_seen++;
        }
        return 0;
}

static int compare_ids(const void *a, const void *b)
{
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

        return (x > y) - (x < y);
}

/* The new ids in increasing order, as the identity column would have given them. */
static int take_ids(struct batch *b, const PGresult *res)
{
        _cleanup_(freep) int64_t *ids = calloc(b->n, sizeof(*ids));

        if (!ids)
                return -ENOMEM;
        if ((size_t) PQntuples(res) != b->n)
                return -EIO;
        for (size_t i = 0; i < b->n; i++)
                ids[i] = strtoll(PQgetvalue(res, (int) i, 0), NULL, 10);
        qsort(ids, b->n, sizeof(*ids), compare_ids);
        for (size_t i = 0; i < b->n; i++)
                b->items[i]->id = ids[i];
        return 0;
}

/* @begun: BEGIN was answered (the connection was alive when the batch started). */
static int read_batch(struct pg_store *p, struct batch *b, bool *begun)
{
        struct pg_array ids = { 0 }, messages = { 0 };
        PGresult *res[4] = { 0 };
        char count[24];
        int r;

        *begun = false;
        r = build_arrays(b, &ids, &messages);
        if (r >= 0)
                r = enter(p);
        if (r < 0) {
                pg_array_free(&ids);
                pg_array_free(&messages);
                return r;
        }
        snprintf(count, sizeof(count), "%zu", b->n);
        struct pg_params lock = { .id = PG_LOCK_VIEWS, .n = 1, .v = { ids.text } };
        struct pg_params new_ids = { .id = PG_DELIVERY_IDS, .n = 1, .v = { count } };
        struct pg_params seen = { .id = PG_MESSAGES_SEEN, .n = 1, .v = { messages.text } };
        /* no message ids, nothing to look up (and no statement to plan) */
        size_t n = strcmp(messages.text, "{}") == 0 ? 3 : 4;
        r = send_sql(p, "BEGIN");
        if (r >= 0)
                r = send_statement(p, &lock);
        if (r >= 0)
                r = send_statement(p, &new_ids);
        if (r >= 0 && n == 4)
                r = send_statement(p, &seen);
        int rc = collect(p, res, n);
        r = r < 0 ? r : rc;
        *begun = res[0] && PQresultStatus(res[0]) == PGRES_COMMAND_OK;
        if (r >= 0)
                r = take_orders(b, res[1]);
        if (r >= 0)
                r = take_ids(b, res[2]);
        if (r >= 0)
                r = take_seen(b, res[3]);
        clear_all(res, 4);
        pg_array_free(&ids);
        pg_array_free(&messages);
        return r;
}

/* ------------------------------------------------------------ step 2: decisions */

static struct batch_order *find_order(struct batch *b, const char *charge_id)
{
        for (size_t i = 0; i < b->n_orders; i++)
                if (strcmp(b->orders[i].charge_id, charge_id) == 0)
                        return &b->orders[i];
        return NULL;
}

/* Recorded with a 200 before the batch, or by an earlier delivery of it. */
static bool message_seen(const struct batch *b, size_t upto, const char *message_id)
{
        if (!message_id)
                return false;
        for (size_t i = 0; i < b->n_seen; i++)
                if (strcmp(b->seen[i], message_id) == 0)
                        return true;
        for (size_t i = 0; i < upto; i++) {
                const struct delivery *d = b->items[i];
                if (d->http_status == 200 && delivery_message_id(d) &&
                    strcmp(d->message_id, message_id) == 0)
                        return true;
        }
        return false;
}

/* What pg-submit.c's decide_and_apply() decides, against the batch's rows. */
static void decide(struct batch *b, size_t i)
{
        struct delivery *d = b->items[i];
        struct batch_order *o;
        struct order_view none = { 0 };

        d->outcome = OUTCOME_APPLIED;
        d->http_status = 200;
        if (message_seen(b, i, delivery_message_id(d))) {
                d->transition = (struct transition) { .outcome = OUTCOME_DUPLICATE,
                                                      .reason = MESSAGE_SEEN_REASON };
                d->outcome = OUTCOME_DUPLICATE;
                return;
        }
        o = find_order(b, d->charge.id);
        d->had_order = o != NULL;
        d->previous = o ? o->view.status : none.status;
        d->transition = state_decide(o ? &o->view : &none, &d->charge);
        d->outcome = d->transition.outcome;
        if (d->transition.insert_order && !o) {
                o = &b->orders[b->n_orders++];
                *o = (struct batch_order) { .charge_id = d->charge.id,
                                            .view = { .exists = true, .amount = d->charge.amount } };
                snprintf(o->view.currency, sizeof(o->view.currency), "%s", d->charge.currency);
        }
        if (o && (d->transition.insert_order || d->transition.change_status))
                o->view.status = d->charge.status;
}

/* ------------------------------------------------------------ step 3: writes */

/* The columns of a multi-row statement, one array literal each. */
struct columns {
        struct pg_array col[10];
        int n;
        size_t rows;
};

static void columns_free(struct columns *c)
{
        for (int i = 0; i < c->n; i++)
                pg_array_free(&c->col[i]);
}

/* The statement's parameters: the arrays, then @extra (or nothing). */
static int columns_params(struct columns *c, enum pg_stmt id, const char *extra,
                          struct pg_params *out)
{
        *out = (struct pg_params) { .id = id, .n = c->n };
        for (int i = 0; i < c->n; i++) {
                if (pg_array_end(&c->col[i]) < 0)
                        return -ENOMEM;
                out->v[i] = c->col[i].text;
        }
        if (extra)
                out->v[out->n++] = extra;
        return 0;
}

/* What one order's status changes and review flags in the batch, applied
 * in batch order, leave on its row: one row of PG_ORDERS_UPDATE (the
 * server would update a row once only, whichever source row it took, if a
 * charge id came twice). The batch's time is the same for all of them. */
struct order_change {
        const char *charge_id;
        const char *status;      /* the last status written; NULL: none */
        const char *order_ref, *description, *transaction_url; /* the first given */
        bool captured, failed;   /* a status written was CAPTURED / FAILED */
        bool review;             /* needs_review set */
};

struct changes {
        struct order_change *v;  /* room for one per delivery */
        size_t n;
};

static struct order_change *change_for(struct changes *c, const char *charge_id)
{
        for (size_t i = 0; i < c->n; i++)
                if (strcmp(c->v[i].charge_id, charge_id) == 0)
                        return &c->v[i];
        c->v[c->n] = (struct order_change) { .charge_id = charge_id };
        return &c->v[c->n++];
}

/* @op: PG_ORDER_UPDATE_STATUS's or PG_ORDER_FLAG_REVIEW's parameters. Each
 * status update coalesces the text columns with what the row has, so the
 * first value given wins; captured_at and failed_at are set once. */
static void change_add(struct changes *c, const struct pg_params *op)
{
        struct order_change *o = change_for(c, op->v[0]);
        const char *status = op->v[1];

        if (op->id == PG_ORDER_FLAG_REVIEW) {
                o->review = true;
                return;
        }
        o->status = status;
        o->captured |= strcmp(status, charge_status_name(CHARGE_CAPTURED)) == 0;
        o->failed |= strcmp(status, charge_status_name(CHARGE_FAILED)) == 0;
        o->order_ref = o->order_ref ? o->order_ref : op->v[3];
        o->description = o->description ? o->description : op->v[4];
        o->transaction_url = o->transaction_url ? o->transaction_url : op->v[5];
}

static void changes_columns(const struct changes *c, struct columns *cols)
{
        cols->n = 8;
        for (size_t i = 0; i < c->n; i++) {
                const struct order_change *o = &c->v[i];
                const char *text[] = { o->charge_id, o->status, o->order_ref, o->description,
                                       o->transaction_url };
                for (int k = 0; k < 5; k++)
                        pg_array_add(&cols->col[k], text[k]);
                pg_array_add(&cols->col[5], o->captured ? "t" : "f");
                pg_array_add(&cols->col[6], o->failed ? "t" : "f");
                pg_array_add(&cols->col[7], o->review ? "t" : "f");
                cols->rows++;
        }
}

/* The new orders' and the deliveries' columns, and the other writes of
 * the orders (status changes, review flags) merged per order. */
static int collect_writes(struct batch *b, struct columns *orders, struct columns *deliveries,
                          struct changes *changes)
{
        struct pg_params op, dp;
        int r;

        orders->n = 8;
        deliveries->n = 10;
        for (size_t i = 0; i < b->n; i++) {
                struct delivery *d = b->items[i];
                if (d->has_charge && pg_transition_params(&d->transition, &d->charge, b->now, &op)) {
                        if (op.id == PG_ORDER_INSERT) {
                                for (int k = 0; k < orders->n; k++)
                                        pg_array_add(&orders->col[k], op.v[k]);
                                orders->rows++;
                        } else {
                                change_add(changes, &op);
                        }
                }
                if (d->has_charge)
                        r = pg_delivery_params(d, d->charge.id, charge_status_name(d->charge.status),
                                               d->outcome == OUTCOME_APPLIED ? NULL
                                                                             : d->transition.reason,
                                               &dp);
                else
                        r = pg_delivery_params(d, d->charge.id[0] ? d->charge.id : NULL, NULL,
                                               d->error, &dp);
                if (r < 0)
                        return r;
                for (int k = 0; k < 9; k++)
                        pg_array_add(&deliveries->col[k], dp.v[k]);
                pg_array_add_bytes(&deliveries->col[9], (const uint8_t *) dp.v[9],
                                   (size_t) dp.last_len);
                deliveries->rows++;
        }
        return 0;
}

/* The orders' inserts before their updates (a charge new to the batch is
 * inserted, then changed), the deliveries, the events under their lock,
 * and with @commit the COMMIT. @kinds[i]: 'e' for the events' answer. */
static int send_writes(struct pg_store *p, struct batch *b, const struct pg_events *e,
                       bool commit, char *kinds, size_t *sent)
{
        _cleanup_(freep) struct order_change *v = calloc(b->n, sizeof(*v));
        struct changes changes = { .v = v };
        struct columns orders = { 0 }, deliveries = { 0 }, updates = { 0 };
        struct pg_params sp;
        int r;

        *sent = 0;
        if (!v)
                return -ENOMEM;
        r = collect_writes(b, &orders, &deliveries, &changes);
        if (r >= 0 && orders.rows > 0) {
                r = columns_params(&orders, PG_ORDERS_INSERT, b->now, &sp);
                kinds[(*sent)++] = 'i';
                if (r >= 0)
                        r = send_statement(p, &sp);
        }
        if (r >= 0 && changes.n > 0) {
                changes_columns(&changes, &updates);
                r = columns_params(&updates, PG_ORDERS_UPDATE, b->now, &sp);
                kinds[(*sent)++] = 'u';
                if (r >= 0)
                        r = send_statement(p, &sp);
        }
        if (r >= 0) {
                r = columns_params(&deliveries, PG_DELIVERIES_INSERT, NULL, &sp);
                kinds[(*sent)++] = 'd';
                if (r >= 0)
                        r = send_statement(p, &sp);
        }
        if (r >= 0 && e->count > 0) {
                const char *events[] = { e->ids, e->from, e->to, e->deliveries, b->now };
                struct pg_params lock = { .id = PG_EVENTS_LOCK };
                struct pg_params insert = { .id = PG_EVENT_INSERT, .n = 5 };
                memcpy(insert.v, events, sizeof(events));
                kinds[(*sent)++] = 'l';
                r = send_statement(p, &lock);
                kinds[(*sent)++] = 'e';
                if (r >= 0)
                        r = send_statement(p, &insert);
        }
        if (r >= 0 && commit) {
                kinds[(*sent)++] = 'c';
                r = send_sql(p, "COMMIT");
        }
        columns_free(&orders);
        columns_free(&updates);
        columns_free(&deliveries);
        return r;
}

/* With @commit, COMMIT ends the pipeline: the events' lock is then held
 * for the server's work only, not also for a round trip to here and back
 * (the other instances wait for it). A write that fails - the update fails
 * too when an order missed its row, see PG_ORDERS_UPDATE in pg-store.c -
 * makes the server skip the rest of the pipeline, COMMIT included. */
static int write_batch(struct pg_store *p, struct batch *b, bool commit)
{
        _cleanup_(freep) PGresult **res = calloc(b->n + 5, sizeof(*res));
        _cleanup_(freep) char *kinds = malloc(b->n + 5);
        struct pg_events e = { 0 };
        size_t sent = 0;
        int r, rc;

        if (!res || !kinds)
                return -ENOMEM;
        r = pg_events_build(b->items, b->n, &e);
        if (r < 0)
                return r;
        r = enter(p);
        if (r >= 0) {
                r = send_writes(p, b, &e, commit, kinds, &sent);
                rc = collect(p, res, sent);
                r = r < 0 ? r : rc;
        }
        for (size_t i = 0; i < sent && r >= 0; i++) {
                if (kinds[i] == 'e')
                        r = pg_events_take(res[i], b->items, b->n, e.count);
                /* a transaction that had failed answers COMMIT with ROLLBACK */
                if (kinds[i] == 'c' && strcmp(PQcmdStatus(res[i]), "COMMIT") != 0)
                        r = -EIO;
        }
        clear_all(res, sent);
        pg_events_free(&e);
        return r;
}

/* ------------------------------------------------------------ the batch */

/* Rejected deliveries as record() stores them; -EINVAL when one is not
 * what a rejection can be (the statement-at-a-time way isolates it). */
static int decide_all(struct pg_store *p, struct batch *b)
{
        for (size_t i = 0; i < b->n; i++) {
                struct delivery *d = b->items[i];
                if (d->body_len > INT32_MAX)
                        return -EINVAL;
                if (d->has_charge) {
                        decide(b, i);
                        continue;
                }
                int status = pg_rejection_status(d->rejected_as);
                if (status == 0 || status != d->rejected_status)
                        return -EINVAL;
                d->outcome = d->rejected_as;
                d->http_status = status;
                if (p->rejected_rows >= 0)
                        p->rejected_rows++;
        }
        return 0;
}

int pg_submit_batch(struct pg_store *p, struct delivery *const *items, size_t n)
{
        int64_t rejected = p->rejected_rows;
        struct batch b = { .items = items, .n = n, .orders = calloc(n, sizeof(*b.orders)) };
        bool begun;
        int r;

        if (!b.orders)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                delivery_reset_result(items[i]);
        time_format_iso(time_now_ms(), b.now);
        r = read_batch(p, &b, &begun);
        /* a connection that died while idle shows it at BEGIN; nothing of the
         * batch had reached the server (a transaction cut off later is a 503) */
        if (r == -ECONNRESET && !begun) {
                batch_free(&b);
                b = (struct batch) { .items = items, .n = n, .orders = calloc(n, sizeof(*b.orders)) };
                if (!b.orders)
                        return -ENOMEM;
                time_format_iso(time_now_ms(), b.now);
                r = read_batch(p, &b, &begun);
        }
        if (r >= 0)
                r = decide_all(p, &b);
        /* the COMMIT in the writes' pipeline, unless rejected rows are to be
         * trimmed first */
        bool commit = !pg_trim_due(p);
        if (r >= 0)
                r = write_batch(p, &b, commit);
        if (r >= 0 && !commit)
                r = pg_trim_rejected(p, p->rejected_rows - rejected);
        if (r >= 0 && !commit)
                r = pg_store_exec(p, "COMMIT");
        else if (r < 0 && p->conn)
                pg_store_exec(p, "ROLLBACK");
        batch_free(&b);
        if (r < 0) {
                p->rejected_rows = rejected;
                for (size_t i = 0; i < n; i++)
                        delivery_reset_result(items[i]);
        }
        return r == -EINVAL || r == -E2BIG ? 1 : r;
}
