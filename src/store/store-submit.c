/*
 * store-submit — the write path: a batch of deliveries in one transaction.
 *
 * This is the hot path of the daemon (one call per group commit), so it
 * runs on statements prepared once per handle, binds the caller's buffers
 * without copying them, and allocates nothing per delivery. The decisions
 * are made by state_decide(); this file only reads what it needs and writes
 * what it was told.
 */
#include <errno.h>
#include <string.h>

#include "src/store/pg-store.h"
#include "src/store/store-internal.h"

/* The error column of a repeat caught by its webhook-id. */

/* Binds borrow the caller's memory: every statement is reset before
 * store_submit() returns. */
static int bind_text(sqlite3_stmt *st, int idx, const char *text)
{
        int rc = text ? sqlite3_bind_text(st, idx, text, -1, SQLITE_STATIC)
                      : sqlite3_bind_null(st, idx);

        return store_errno_from_sqlite(rc);
}

static int bind_int64(sqlite3_stmt *st, int idx, int64_t v)
{
        return store_errno_from_sqlite(sqlite3_bind_int64(st, idx, v));
}

static int bind_body(sqlite3_stmt *st, int idx, const struct delivery *d)
{
        int rc;

        /* an empty body is recorded as X'' (what was received), not NULL */
        if (d->body_len == 0)
                rc = sqlite3_bind_zeroblob(st, idx, 0);
        else
                rc = sqlite3_bind_blob64(st, idx, d->body, d->body_len, SQLITE_STATIC);
        return store_errno_from_sqlite(rc);
}

static int savepoint(struct store *s, enum store_stmt id)
{
        sqlite3_stmt *st;
        int r;

        r = store_stmt(s, id, &st);
        return r < 0 ? r : store_stmt_done(st);
}

/* Was this webhook-id already counted (accepted) by an earlier delivery? */
int store_message_seen(struct store *s, const char *message_id, bool *ret)
{
        sqlite3_stmt *st;
        int r, rc;

        *ret = false;
        if (!message_id)
                return 0;
        r = store_stmt(s, STMT_MESSAGE_SEEN, &st);
        if (r < 0)
                return r;
        r = bind_text(st, 1, message_id);
        rc = r < 0 ? SQLITE_OK : sqlite3_step(st);
        store_reset(st);
        if (r < 0)
                return r;
        *ret = rc == SQLITE_ROW;
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_errno_from_sqlite(rc);
}

static int view_from_row(sqlite3_stmt *st, struct order_view *v)
{
        const char *status = (const char *) sqlite3_column_text(st, 0);
        const char *currency = (const char *) sqlite3_column_text(st, 2);

        if (!status || !currency || charge_status_from_name(status, &v->status) < 0)
                return -EIO; /* the schema's CHECKs rule this out */
        v->exists = true;
        v->amount = sqlite3_column_int64(st, 1);
        strncpy(v->currency, currency, sizeof(v->currency) - 1);
        v->currency[sizeof(v->currency) - 1] = '\0';
        return 0;
}

int store_read_order_view(struct store *s, const char *charge_id, struct order_view *v)
{
        sqlite3_stmt *st;
        int r, rc;

        *v = (struct order_view) { 0 };
        r = store_stmt(s, STMT_ORDER_VIEW, &st);
        if (r < 0)
                return r;
        r = bind_text(st, 1, charge_id);
        rc = r < 0 ? SQLITE_DONE : sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = view_from_row(st, v);
        else if (rc != SQLITE_DONE)
                r = store_errno_from_sqlite(rc);
        store_reset(st);
        return r;
}

static int insert_order(struct store *s, const struct charge *c, const char *now)
{
        sqlite3_stmt *st;
        int r;

        r = store_stmt(s, STMT_ORDER_INSERT, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, c->id)) < 0 ||
            (r = bind_text(st, 2, c->order_ref)) < 0 ||
            (r = bind_text(st, 3, charge_status_name(c->status))) < 0 ||
            (r = bind_int64(st, 4, c->amount)) < 0 ||
            (r = bind_text(st, 5, c->currency)) < 0 ||
            (r = bind_text(st, 6, c->description)) < 0 ||
            (r = bind_text(st, 7, c->transaction_url)) < 0 ||
            (r = bind_int64(st, 8, c->created)) < 0 ||
            (r = bind_text(st, 9, now)) < 0) {
                store_reset(st);
                return r;
        }
        return store_stmt_done(st);
}

/* Runs an UPDATE of exactly one order: any other row count is an error. */
static int update_one(struct store *s, sqlite3_stmt *st)
{
        int r = store_stmt_done(st);

        if (r >= 0 && sqlite3_changes(s->db) != 1)
                return -EIO;
        return r;
}

static int update_status(struct store *s, const struct charge *c, const char *now)
{
        sqlite3_stmt *st;
        int r;

        r = store_stmt(s, STMT_ORDER_UPDATE_STATUS, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, c->id)) < 0 ||
            (r = bind_text(st, 2, charge_status_name(c->status))) < 0 ||
            (r = bind_text(st, 3, now)) < 0 ||
            (r = bind_text(st, 4, c->order_ref)) < 0 ||
            (r = bind_text(st, 5, c->description)) < 0 ||
            (r = bind_text(st, 6, c->transaction_url)) < 0) {
                store_reset(st);
                return r;
        }
        return update_one(s, st);
}

static int flag_review(struct store *s, const char *charge_id, const char *now)
{
        sqlite3_stmt *st;
        int r;

        r = store_stmt(s, STMT_ORDER_FLAG_REVIEW, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, charge_id)) < 0 || (r = bind_text(st, 2, now)) < 0) {
                store_reset(st);
                return r;
        }
        return update_one(s, st);
}

int store_apply_transition(struct store *s, const struct transition *t, const struct charge *c,
                           const char *now)
{
        if (t->insert_order)
                return insert_order(s, c, now);
        if (t->change_status)
                return update_status(s, c, now);
        if (t->flag_review)
                return flag_review(s, c->id, now);
        return 0;
}

static int bind_delivery(sqlite3_stmt *st, const struct delivery *d, const char *charge_id,
                         const char *claimed, const char *error)
{
        int r;

        if ((r = bind_text(st, 1, d->received_at)) < 0 ||
            (r = bind_text(st, 2, d->remote_addr)) < 0 ||
            (r = bind_text(st, 3, delivery_message_id(d))) < 0 ||
            (r = bind_text(st, 4, charge_id)) < 0 ||
            (r = bind_text(st, 5, claimed)) < 0 ||
            (r = bind_text(st, 6, outcome_name(d->outcome))) < 0 ||
            (r = bind_int64(st, 7, d->http_status)) < 0 ||
            (r = bind_text(st, 8, error)) < 0)
                return r;
        return bind_body(st, 9, d);
}

/* The webhook_deliveries row; sets d->id. */
int store_insert_delivery(struct store *s, struct delivery *d, const char *charge_id,
                          const char *claimed, const char *error)
{
        sqlite3_stmt *st;
        int r;

        r = store_stmt(s, STMT_DELIVERY_INSERT, &st);
        if (r < 0)
                return r;
        r = bind_delivery(st, d, charge_id, claimed, error);
        if (r < 0) {
                store_reset(st);
                return r;
        }
        r = store_stmt_done(st);
        if (r >= 0)
                d->id = sqlite3_last_insert_rowid(s->db);
        return r;
}

/* The order_events row of a status change; sets d->event_id. */
static int insert_event(struct store *s, struct delivery *d, const char *now)
{
        sqlite3_stmt *st;
        int r;

        r = store_stmt(s, STMT_EVENT_INSERT, &st);
        if (r < 0)
                return r;
        if ((r = bind_text(st, 1, d->charge.id)) < 0 ||
            (r = bind_text(st, 2, d->had_order ? charge_status_name(d->previous) : NULL)) < 0 ||
            (r = bind_text(st, 3, charge_status_name(d->charge.status))) < 0 ||
            (r = bind_int64(st, 4, d->id)) < 0 ||
            (r = bind_text(st, 5, now)) < 0) {
                store_reset(st);
                return r;
        }
        r = store_stmt_done(st);
        if (r >= 0)
                d->event_id = sqlite3_last_insert_rowid(s->db);
        return r;
}

/* Fills d->transition (and had_order/previous) for a verified charge. */
static int decide(struct store *s, struct delivery *d)
{
        struct order_view view;
        bool seen;
        int r;

        r = store_message_seen(s, delivery_message_id(d), &seen);
        if (r < 0)
                return r;
        if (seen) {
                d->transition = (struct transition) { .outcome = OUTCOME_DUPLICATE,
                                                      .reason = MESSAGE_SEEN_REASON };
                return 0;
        }
        r = store_read_order_view(s, d->charge.id, &view);
        if (r < 0)
                return r;
        d->had_order = view.exists;
        d->previous = view.status;
        d->transition = state_decide(&view, &d->charge);
        return 0;
}

static int record_accepted(struct store *s, struct delivery *d, const char *now)
{
        const char *error;
        int r;

        r = decide(s, d);
        if (r < 0)
                return r;
        d->outcome = d->transition.outcome;
        d->http_status = 200;
        r = store_apply_transition(s, &d->transition, &d->charge, now);
        if (r < 0)
                return r;
        /* the reason is the row's explanation of why nothing changed */
        error = d->outcome == OUTCOME_APPLIED ? NULL : d->transition.reason;
        r = store_insert_delivery(s, d, d->charge.id, charge_status_name(d->charge.status), error);
        if (r < 0 || !d->transition.change_status)
                return r;
        return insert_event(s, d, now);
}

static int status_of_rejection(enum outcome o)
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

static int record_rejected(struct store *s, struct delivery *d)
{
        int status = status_of_rejection(d->rejected_as);

        if (status == 0 || status != d->rejected_status)
                return -EINVAL;
        d->outcome = d->rejected_as;
        d->http_status = status;
        return store_insert_delivery(s, d, d->charge.id[0] ? d->charge.id : NULL, NULL, d->error);
}

/* Failures that retrying cannot cure: they cost this delivery, not the batch. */
static bool delivery_fault(int r)
{
        return r == -EINVAL || r == -E2BIG;
}

static int record(struct store *s, struct delivery *d, const char *now)
{
        int r;

        delivery_reset_result(d);
        if (d->has_charge)
                return record_accepted(s, d, now);
        r = record_rejected(s, d);
        if (r >= 0 && s->rejected_rows >= 0)
                s->rejected_rows++; /* run_batch() puts it back unless committed */
        return r;
}

/*
 * One delivery inside its own savepoint. Returns 0 when it was recorded or
 * refused on its own (d->fault), a negative errno when the whole batch must
 * be given up.
 */
static int record_isolated(struct store *s, struct delivery *d, const char *now)
{
        int r;

        r = savepoint(s, STMT_SAVEPOINT);
        if (r < 0)
                return r;
        r = record(s, d, now);
        if (r >= 0)
                return savepoint(s, STMT_RELEASE);
        if (!delivery_fault(r))
                return r;
        delivery_reset_result(d);
        d->fault = r;
        d->http_status = 500; /* for callers that answer from http_status */
        r = savepoint(s, STMT_ROLLBACK_TO);
        return r < 0 ? r : savepoint(s, STMT_RELEASE);
}

/*
 * The batch in one transaction. Without @isolated, deliveries run without
 * savepoints (they cost about a tenth of the throughput) and the first
 * delivery fault gives up the batch with that fault, so that the caller
 * can run it again isolated. Returns 0 once committed.
 */
static int run_batch(struct store *s, struct delivery *const *items, size_t n, bool isolated)
{
        int64_t rejected = s->rejected_rows;
        char now[TIME_ISO_LEN];
        int r;

        r = store_begin_immediate(s);
        if (r < 0)
                return r;
        /* read once the lock is held: times then only grow from batch to batch */
        time_format_iso(time_now_ms(), now);
        for (size_t i = 0; i < n && r >= 0; i++)
                r = isolated ? record_isolated(s, items[i], now) : record(s, items[i], now);
        /* the cap on rejected rows, in the same transaction as the rows that pass it */
        if (r >= 0)
                r = store_rejected_trim(s, s->rejected_rows - rejected);
        if (r >= 0)
                r = store_commit(s); /* rolls back itself when it fails */
        else
                store_rollback(s);
        if (r < 0)
                s->rejected_rows = rejected;
        return r;
}

int store_submit(struct store *s, struct delivery *const *items, size_t n)
{
        if (s->pg)
                return pg_store_submit(s->pg, items, n);
        int r;

        if (s->read_only)
                return -EROFS;
        if (n == 0)
                return 0;
        /* once per batch: committing into a deleted, replaced or read-only
         * file would acknowledge what the next start cannot see */
        r = store_check_file(s);
        if (r < 0)
                return r;
        r = run_batch(s, items, n, false);
        /* rare: a delivery the database refuses; redo the batch around it */
        if (delivery_fault(r))
                r = run_batch(s, items, n, true);
        return r;
}
