/*
 * store-admin — the operator's queries (cashpayctl): listings, the
 * order_events feed, fulfil, review-done and the schema version (prune is
 * store-rejected.c's).
 *
 * Lists are read in one transaction and returned as arrays, so a caller can
 * size its table columns before printing. The writes are single conditional
 * statements inside BEGIN IMMEDIATE: the database decides who wins a race,
 * and the same transaction explains a refusal from the row it saw.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/store-admin.h"
#include "src/store/pg-store.h"
#include "src/store/store-internal.h"

#define ORDER_COLUMNS \
        "charge_id, order_ref, status, amount, currency, description, transaction_url, " \
        "charge_created, first_seen_at, updated_at, captured_at, failed_at, fulfilled_at, " \
        "needs_review"

#define EVENT_COLUMNS \
        "e.id, e.charge_id, e.from_status, e.to_status, e.delivery_id, e.recorded_at, " \
        "o.order_ref, o.amount, o.currency, e.source, e.fetch_id"

#define DELIVERY_COLUMNS \
        "id, received_at, remote_addr, message_id, charge_id, claimed_status, outcome, " \
        "http_status, error, length(body)"

/* Grows @items (of @size bytes each) so that one more fits; zeroes the new slot. */
static int grow(void **items, size_t n, size_t size)
{
        void *p;

        if (n % 32 == 0) {
                p = reallocarray(*items, n + 32, size);
                if (!p)
                        return -ENOMEM;
                *items = p;
        }
        memset((char *) *items + n * size, 0, size);
        return 0;
}

static int status_column(sqlite3_stmt *st, int col, enum charge_status *ret)
{
        const char *text = (const char *) sqlite3_column_text(st, col);

        /* The schema's CHECK constraint makes anything else corruption. */
        if (!text || charge_status_from_name(text, ret) < 0)
                return -EIO;
        return 0;
}

static int read_event_row(sqlite3_stmt *st, struct event_record *e)
{
        int r;

        e->id = sqlite3_column_int64(st, 0);
        store_column_text_copy(st, 1, e->charge_id, sizeof(e->charge_id));
        e->has_from = sqlite3_column_type(st, 2) != SQLITE_NULL;
        if (e->has_from) {
                r = status_column(st, 2, &e->from_status);
                if (r < 0)
                        return r;
        }
        r = status_column(st, 3, &e->to_status);
        if (r < 0)
                return r;
        e->delivery_id = sqlite3_column_int64(st, 4);
        store_column_text_copy(st, 5, e->recorded_at, sizeof(e->recorded_at));
        e->amount = sqlite3_column_int64(st, 7);
        store_column_text_copy(st, 8, e->currency, sizeof(e->currency));
        store_column_text_copy(st, 9, e->source, sizeof(e->source));
        e->fetch_id = sqlite3_column_int64(st, 10);
        return store_column_text_dup(st, 6, &e->order_ref);
}

static int read_delivery_row(sqlite3_stmt *st, struct delivery_record *d)
{
        const char *outcome = (const char *) sqlite3_column_text(st, 6);

        d->id = sqlite3_column_int64(st, 0);
        store_column_text_copy(st, 1, d->received_at, sizeof(d->received_at));
        store_column_text_copy(st, 2, d->remote_addr, sizeof(d->remote_addr));
        store_column_text_copy(st, 4, d->charge_id, sizeof(d->charge_id));
        store_column_text_copy(st, 5, d->claimed_status, sizeof(d->claimed_status));
        if (!outcome || outcome_from_name(outcome, &d->outcome) < 0)
                return -EIO;
        d->http_status = sqlite3_column_int(st, 7);
        d->body_len = (size_t) sqlite3_column_int64(st, 9);
        if (store_column_text_dup(st, 3, &d->message_id) < 0 ||
            store_column_text_dup(st, 8, &d->error) < 0)
                return -ENOMEM;
        return 0;
}

/* Loads the body of the row @st stands on (column @col) into @d. */
static int read_delivery_body(sqlite3_stmt *st, int col, struct delivery_record *d)
{
        const void *blob = sqlite3_column_blob(st, col);
        int len = sqlite3_column_bytes(st, col);

        if (!blob || len <= 0)
                return 0;
        d->body = malloc((size_t) len);
        if (!d->body)
                return -ENOMEM;
        memcpy(d->body, blob, (size_t) len);
        d->body_len = (size_t) len;
        return 0;
}

/* The step loops below share this shape: run @st inside a read transaction,
 * hand each row to @row, and always end the transaction. */
typedef int (*row_fn)(sqlite3_stmt *st, void *list);

static int run_listing(struct store *s, sqlite3_stmt *st, row_fn row, void *list)
{
        int r, rc;

        r = store_begin_read(s);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = row(st, list);
                if (r < 0)
                        break;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = store_errno_from_sqlite(rc);
        store_rollback(s);
        return r < 0 ? r : 0;
}

static int order_row(sqlite3_stmt *st, void *p)
{
        struct order_list *l = p;
        int r = grow((void **) &l->items, l->n, sizeof(*l->items));

        if (r < 0)
                return r;
        l->n++;
        return store_order_from_row(st, &l->items[l->n - 1]);
}

static int event_row(sqlite3_stmt *st, void *p)
{
        struct event_list *l = p;
        int r = grow((void **) &l->items, l->n, sizeof(*l->items));

        if (r < 0)
                return r;
        l->n++;
        return read_event_row(st, &l->items[l->n - 1]);
}

static int delivery_row(sqlite3_stmt *st, void *p)
{
        struct delivery_list *l = p;
        int r = grow((void **) &l->items, l->n, sizeof(*l->items));

        if (r < 0)
                return r;
        l->n++;
        return read_delivery_row(st, &l->items[l->n - 1]);
}

static int delivery_row_with_body(sqlite3_stmt *st, void *p)
{
        struct delivery_list *l = p;
        int r = delivery_row(st, p);

        if (r < 0)
                return r;
        return read_delivery_body(st, 10, &l->items[l->n - 1]);
}

/* A negative LIMIT means none in SQLite. */
static sqlite3_int64 sql_limit(unsigned limit)
{
        return limit == 0 ? -1 : (sqlite3_int64) limit;
}

/*
 * Keeps the first failed bind's errno. A bind fails only when memory runs
 * out (or on a bug); the statement must not run then, since a parameter
 * left NULL would answer another question ("every charge" for one).
 */
static void bind_check(int *r, int rc)
{
        if (*r == 0 && rc != SQLITE_OK)
                *r = store_errno_from_sqlite(rc);
}

int store_admin_list_orders(struct store *s, const struct order_filter *f, struct order_list *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r;

        *ret = (struct order_list) { 0 };
        if (s->pg) {
                r = pg_admin_list_orders(s->pg, f, ret);
                if (r < 0)
                        order_list_clear(ret);
                return r;
        }
        r = store_prepare(s,
                "SELECT " ORDER_COLUMNS " FROM orders"
                " WHERE (?1 IS NULL OR status = ?1)"
                "   AND (?2 = 0 OR (status = 'CAPTURED' AND fulfilled_at IS NULL))"
                "   AND (?3 = 0 OR needs_review = 1)"
                " ORDER BY updated_at DESC, charge_id DESC LIMIT ?4", &st);
        if (r < 0)
                return r;
        if (f->has_status)
                bind_check(&r, sqlite3_bind_text(st, 1, charge_status_name(f->status), -1,
                                                 SQLITE_STATIC));
        bind_check(&r, sqlite3_bind_int(st, 2, f->unfulfilled));
        bind_check(&r, sqlite3_bind_int(st, 3, f->review));
        bind_check(&r, sqlite3_bind_int64(st, 4, sql_limit(f->limit)));
        if (r == 0)
                r = run_listing(s, st, order_row, ret);
        if (r < 0)
                order_list_clear(ret);
        return r;
}

int store_admin_list_deliveries(struct store *s, const struct delivery_filter *f,
                                struct delivery_list *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r;

        *ret = (struct delivery_list) { 0 };
        if (s->pg) {
                r = pg_admin_list_deliveries(s->pg, f, ret);
                if (r < 0)
                        delivery_list_clear(ret);
                return r;
        }
        r = store_prepare(s,
                "SELECT " DELIVERY_COLUMNS " FROM webhook_deliveries"
                " WHERE (?1 IS NULL OR outcome = ?1) ORDER BY id DESC LIMIT ?2", &st);
        if (r < 0)
                return r;
        if (f->has_outcome)
                bind_check(&r, sqlite3_bind_text(st, 1, outcome_name(f->outcome), -1,
                                                 SQLITE_STATIC));
        bind_check(&r, sqlite3_bind_int64(st, 2, sql_limit(f->limit)));
        if (r == 0)
                r = run_listing(s, st, delivery_row, ret);
        if (r < 0)
                delivery_list_clear(ret);
        return r;
}

int store_admin_list_deliveries_for(struct store *s, const char *charge_id,
                                    struct delivery_list *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r;

        *ret = (struct delivery_list) { 0 };
        if (s->pg) {
                r = pg_admin_list_deliveries_for(s->pg, charge_id, ret);
                if (r < 0)
                        delivery_list_clear(ret);
                return r;
        }
        r = store_prepare(s,
                "SELECT " DELIVERY_COLUMNS ", body FROM webhook_deliveries"
                " WHERE charge_id = ?1 ORDER BY id", &st);
        if (r < 0)
                return r;
        bind_check(&r, sqlite3_bind_text(st, 1, charge_id, -1, SQLITE_TRANSIENT));
        if (r == 0)
                r = run_listing(s, st, delivery_row_with_body, ret);
        if (r < 0)
                delivery_list_clear(ret);
        return r;
}

int store_admin_list_events(struct store *s, int64_t after_id, const char *charge_id,
                            unsigned limit, struct event_list *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r;

        *ret = (struct event_list) { 0 };
        if (s->pg) {
                r = pg_admin_list_events(s->pg, after_id, charge_id, limit, ret);
                if (r < 0)
                        event_list_clear(ret);
                return r;
        }
        r = store_prepare(s,
                "SELECT " EVENT_COLUMNS " FROM order_events e"
                " LEFT JOIN orders o ON o.charge_id = e.charge_id"
                " WHERE e.id > ?1 AND (?2 IS NULL OR e.charge_id = ?2)"
                " ORDER BY e.id LIMIT ?3", &st);
        if (r < 0)
                return r;
        bind_check(&r, sqlite3_bind_int64(st, 1, after_id));
        if (charge_id)
                bind_check(&r, sqlite3_bind_text(st, 2, charge_id, -1, SQLITE_TRANSIENT));
        bind_check(&r, sqlite3_bind_int64(st, 3, sql_limit(limit)));
        if (r == 0)
                r = run_listing(s, st, event_row, ret);
        if (r < 0)
                event_list_clear(ret);
        return r;
}

/* Runs a one-row-or-none UPDATE bound to @charge_id (and @now_iso when not
 * NULL, as ?2); sets *@ret_changed. */
static int update_one(struct store *s, const char *sql, const char *charge_id,
                      const char *now_iso, bool *ret_changed)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s, sql, &st);
        if (r < 0)
                return r;
        bind_check(&r, sqlite3_bind_text(st, 1, charge_id, -1, SQLITE_TRANSIENT));
        if (now_iso)
                bind_check(&r, sqlite3_bind_text(st, 2, now_iso, -1, SQLITE_TRANSIENT));
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return store_errno_from_sqlite(rc);
        *ret_changed = sqlite3_changes(s->db) > 0;
        return 0;
}

/* Why did the conditional fulfil UPDATE touch nothing? */
static int fulfil_refusal(const struct order_record *o)
{
        if (o->status != CHARGE_CAPTURED)
                return STORE_ADMIN_NOT_CAPTURED;
        if (o->fulfilled_at[0])
                return STORE_ADMIN_ALREADY;
        if (o->needs_review)
                return STORE_ADMIN_REVIEW;
        return -EIO; /* the row matches the condition, yet the UPDATE missed it */
}

static int fulfil_locked(struct store *s, const char *charge_id, const char *now_iso,
                         struct order_record *ret)
{
        bool changed = false;
        int r;

        r = update_one(s,
                "UPDATE orders SET fulfilled_at = ?2"
                " WHERE charge_id = ?1 AND status = 'CAPTURED' AND needs_review = 0"
                "   AND fulfilled_at IS NULL", charge_id, now_iso, &changed);
        if (r < 0)
                return r;
        r = store_get_order(s, charge_id, ret);
        if (r == -ENOENT)
                return STORE_ADMIN_UNKNOWN;
        if (r < 0)
                return r;
        return changed ? STORE_ADMIN_DONE : fulfil_refusal(ret);
}

int store_admin_fulfil(struct store *s, const char *charge_id, const char *now_iso,
                       struct order_record *ret)
{
        int r, c;

        *ret = (struct order_record) { 0 };
        if (s->pg) {
                bool changed;
                r = pg_admin_fulfil(s->pg, charge_id, now_iso, &changed, ret);
                if (r == -ENOENT)
                        return STORE_ADMIN_UNKNOWN;
                if (r < 0)
                        return r;
                return changed ? STORE_ADMIN_DONE : fulfil_refusal(ret);
        }
        r = store_begin_immediate(s);
        if (r < 0)
                return r;
        r = fulfil_locked(s, charge_id, now_iso, ret);
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        c = store_commit(s);
        return c < 0 ? c : r;
}

static int review_done_locked(struct store *s, const char *charge_id)
{
        struct order_record o = { 0 };
        bool changed = false;
        int r;

        r = update_one(s, "UPDATE orders SET needs_review = 0"
                          " WHERE charge_id = ?1 AND needs_review <> 0",
                       charge_id, NULL, &changed);
        if (r < 0 || changed)
                return r;
        r = store_get_order(s, charge_id, &o);
        order_record_clear(&o);
        if (r == -ENOENT)
                return STORE_ADMIN_UNKNOWN;
        return r < 0 ? r : STORE_ADMIN_ALREADY;
}

int store_admin_review_done(struct store *s, const char *charge_id)
{
        int r, c;

        if (s->pg) {
                bool changed;
                r = pg_admin_review_done(s->pg, charge_id, &changed);
                if (r == -ENOENT)
                        return STORE_ADMIN_UNKNOWN;
                return r < 0 ? r : changed ? STORE_ADMIN_DONE : STORE_ADMIN_ALREADY;
        }
        r = store_begin_immediate(s);
        if (r < 0)
                return r;
        r = review_done_locked(s, charge_id);
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        c = store_commit(s);
        return c < 0 ? c : r;
}

int store_admin_listen_events(struct store *s)
{
        return s->pg ? pg_listen_events(s->pg) : -EOPNOTSUPP;
}

int store_admin_wait_events(struct store *s, int timeout_ms, const sigset_t *sigmask)
{
        return s->pg ? pg_listen_wait(s->pg, timeout_ms, sigmask) : -EOPNOTSUPP;
}

int store_admin_user_version(struct store *s, int *ret)
{
        return store_user_version(s, ret);
}

void order_list_clear(struct order_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                order_record_clear(&l->items[i]);
        free(l->items);
        *l = (struct order_list) { 0 };
}

void event_list_clear(struct event_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->items[i].order_ref);
        free(l->items);
        *l = (struct event_list) { 0 };
}

void delivery_list_clear(struct delivery_list *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].message_id);
                free(l->items[i].error);
                free(l->items[i].body);
        }
        free(l->items);
        *l = (struct delivery_list) { 0 };
}
