/*
 * pg-admin — the operator's listings (cashpay/store-admin.h) on
 * PostgreSQL: orders, deliveries and the order_events feed, as cashpayctl
 * prints them from SQLite. Each listing is one statement, so one snapshot
 * (READ COMMITTED); event ids become visible in increasing order (see
 * pg-submit.c), so a follower asking for "id > last" misses none.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/store/pg-store-internal.h"

#define EVENT_COLUMNS \
        "e.id, e.charge_id, e.from_status, e.to_status, coalesce(e.delivery_id, 0), " \
        PG_ISO("e.recorded_at") ", o.order_ref, coalesce(o.amount, 0), o.currency, " \
        "e.source, coalesce(e.fetch_id, 0)"

#define DELIVERY_COLUMNS \
        "id, " PG_ISO("received_at") ", remote_addr, message_id, charge_id, claimed_status, " \
        "outcome, http_status, error, coalesce(length(body), 0)"

/* Room for @n + 1 items of @size bytes; the new slot zeroed. */
static int grow(void **items, size_t n, size_t size)
{
        if (n % 32 == 0) {
                void *p = reallocarray(*items, n + 32, size);
                if (!p)
                        return -ENOMEM;
                *items = p;
        }
        memset((char *) *items + n * size, 0, size);
        return 0;
}

static void copy_val(const PGresult *res, int row, int col, char *buf, size_t len)
{
        snprintf(buf, len, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

static int dup_val(const PGresult *res, int row, int col, char **ret)
{
        *ret = NULL;
        if (PQgetisnull(res, row, col))
                return 0;
        *ret = strdup(PQgetvalue(res, row, col));
        return *ret ? 0 : -ENOMEM;
}

static int64_t int_val(const PGresult *res, int row, int col)
{
        return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* A read: once more on a fresh connection when an idle one had died. */
static int read_query(struct pg_store *p, const char *sql, const char *const *params, int n,
                      PGresult **ret)
{
        int r = pg_store_query(p, sql, params, n, false, 0, ret);

        if (r == -ECONNRESET)
                r = pg_store_query(p, sql, params, n, false, 0, ret);
        return r;
}

static const char *limit_param(unsigned limit, char *buf, size_t len)
{
        if (limit == 0)
                return NULL; /* LIMIT NULL: none */
        snprintf(buf, len, "%u", limit);
        return buf;
}

int pg_admin_list_orders(struct pg_store *p, const struct order_filter *f, struct order_list *ret)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char limit[16];
        const char *params[] = { f->has_status ? charge_status_name(f->status) : NULL,
                                 f->unfulfilled ? "t" : "f", f->review ? "t" : "f",
                                 limit_param(f->limit, limit, sizeof(limit)) };
        int r;

        r = read_query(p, "SELECT " PG_ORDER_COLUMNS " FROM orders"
                          " WHERE ($1::text IS NULL OR status = $1)"
                          " AND (NOT $2::boolean OR (status = 'CAPTURED' AND fulfilled_at IS NULL))"
                          " AND (NOT $3::boolean OR needs_review)"
                          " ORDER BY updated_at DESC, charge_id DESC LIMIT $4::bigint",
                       params, 4, &res);
        for (int row = 0; r >= 0 && row < PQntuples(res); row++) {
                r = grow((void **) &ret->items, ret->n, sizeof(*ret->items));
                if (r >= 0)
                        r = pg_order_from_row(res, row, &ret->items[ret->n]);
                if (r >= 0)
                        ret->n++;
        }
        return r < 0 ? r : 0;
}

static int delivery_from_row(const PGresult *res, int row, struct delivery_record *d)
{
        d->id = int_val(res, row, 0);
        copy_val(res, row, 1, d->received_at, sizeof(d->received_at));
        copy_val(res, row, 2, d->remote_addr, sizeof(d->remote_addr));
        copy_val(res, row, 4, d->charge_id, sizeof(d->charge_id));
        copy_val(res, row, 5, d->claimed_status, sizeof(d->claimed_status));
        if (outcome_from_name(PQgetvalue(res, row, 6), &d->outcome) < 0)
                return -EIO;
        d->http_status = (int) int_val(res, row, 7);
        d->body_len = (size_t) int_val(res, row, 9);
        if (dup_val(res, row, 3, &d->message_id) < 0 || dup_val(res, row, 8, &d->error) < 0)
                return -ENOMEM;
        return 0;
}

/* The body, asked for as hex (the results are text): back to its bytes. */
static int body_from_hex(const char *hex, struct delivery_record *d)
{
        size_t n = strlen(hex) / 2;

        if (n == 0)
                return 0;
        d->body = malloc(n);
        if (!d->body)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                        return -EIO;
                d->body[i] = (uint8_t) v;
        }
        d->body_len = n;
        return 0;
}

static int deliveries_from(const PGresult *res, bool with_body, struct delivery_list *ret)
{
        int r = 0;

        for (int row = 0; r >= 0 && row < PQntuples(res); row++) {
                r = grow((void **) &ret->items, ret->n, sizeof(*ret->items));
                if (r < 0)
                        break;
                ret->n++; /* counted first: a half-read row is still freed */
                r = delivery_from_row(res, row, &ret->items[ret->n - 1]);
                if (r >= 0 && with_body)
                        r = body_from_hex(PQgetvalue(res, row, 10), &ret->items[ret->n - 1]);
        }
        return r < 0 ? r : 0;
}

int pg_admin_list_deliveries(struct pg_store *p, const struct delivery_filter *f,
                             struct delivery_list *ret)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char limit[16];
        const char *params[] = { f->has_outcome ? outcome_name(f->outcome) : NULL,
                                 limit_param(f->limit, limit, sizeof(limit)) };
        int r;

        r = read_query(p, "SELECT " DELIVERY_COLUMNS " FROM webhook_deliveries"
                          " WHERE ($1::text IS NULL OR outcome = $1) ORDER BY id DESC"
                          " LIMIT $2::bigint", params, 2, &res);
        return r < 0 ? r : deliveries_from(res, false, ret);
}

int pg_admin_list_deliveries_for(struct pg_store *p, const char *charge_id,
                                 struct delivery_list *ret)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = { charge_id };
        int r;

        r = read_query(p, "SELECT " DELIVERY_COLUMNS ", encode(body, 'hex')"
                          " FROM webhook_deliveries WHERE charge_id = $1 ORDER BY id",
                       params, 1, &res);
        return r < 0 ? r : deliveries_from(res, true, ret);
}

static int event_from_row(const PGresult *res, int row, struct event_record *e)
{
        e->id = int_val(res, row, 0);
        copy_val(res, row, 1, e->charge_id, sizeof(e->charge_id));
        e->has_from = !PQgetisnull(res, row, 2);
        if ((e->has_from && charge_status_from_name(PQgetvalue(res, row, 2), &e->from_status) < 0) ||
            charge_status_from_name(PQgetvalue(res, row, 3), &e->to_status) < 0)
                return -EIO;
        e->delivery_id = int_val(res, row, 4);
        copy_val(res, row, 5, e->recorded_at, sizeof(e->recorded_at));
        e->amount = int_val(res, row, 7);
        copy_val(res, row, 8, e->currency, sizeof(e->currency));
        copy_val(res, row, 9, e->source, sizeof(e->source));
        e->fetch_id = int_val(res, row, 10);
        return dup_val(res, row, 6, &e->order_ref);
}

int pg_admin_list_events(struct pg_store *p, int64_t after_id, const char *charge_id,
                         unsigned limit, struct event_list *ret)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char after[24], lim[16];
        const char *params[] = { after, charge_id, limit_param(limit, lim, sizeof(lim)) };
        int r;

        snprintf(after, sizeof(after), "%" PRId64, after_id);
        r = read_query(p, "SELECT " EVENT_COLUMNS " FROM order_events e"
                          " LEFT JOIN orders o ON o.charge_id = e.charge_id"
                          " WHERE e.id > $1::bigint AND ($2::text IS NULL OR e.charge_id = $2)"
                          " ORDER BY e.id LIMIT $3::bigint", params, 3, &res);
        for (int row = 0; r >= 0 && row < PQntuples(res); row++) {
                r = grow((void **) &ret->items, ret->n, sizeof(*ret->items));
                if (r < 0)
                        break;
                ret->n++;
                r = event_from_row(res, row, &ret->items[ret->n - 1]);
        }
        return r < 0 ? r : 0;
}

/* ---- the operator's writes ---------------------------------------------------- */

/* The order's row locked, one conditional UPDATE, the row as it is then:
 * all in one transaction, so the explanation of a refusal is the row the
 * UPDATE saw. */
static int update_locked(struct pg_store *p, const char *sql, const char *charge_id,
                         const char *now_iso, bool *ret_changed, struct order_record *ret)
{
        _cleanup_(PQclearp) PGresult *lock = NULL;
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = { charge_id, now_iso };
        int r;

        *ret_changed = false;
        r = pg_begin(p);
        if (r < 0)
                return r;
        r = pg_store_query(p, "SELECT 1 FROM orders WHERE charge_id = $1 FOR UPDATE", params, 1,
                           false, 0, &lock);
        if (r >= 0 && PQntuples(lock) == 0)
                r = -ENOENT;
        if (r >= 0)
                r = pg_store_query(p, sql, params, now_iso ? 2 : 1, false, 0, &res);
        if (r >= 0)
                *ret_changed = strcmp(PQcmdTuples(res), "1") == 0;
        if (r >= 0)
                r = pg_store_get_order(p, charge_id, ret);
        if (r >= 0)
                return pg_store_exec(p, "COMMIT");
        if (p->conn)
                pg_store_exec(p, "ROLLBACK");
        return r;
}

int pg_admin_fulfil(struct pg_store *p, const char *charge_id, const char *now_iso,
                    bool *ret_changed, struct order_record *ret)
{
        if (p->read_only)
                return -EROFS;
        return update_locked(p, "UPDATE orders SET fulfilled_at = $2::timestamptz "
                                "WHERE charge_id = $1 AND status = 'CAPTURED' "
                                "AND NOT needs_review AND fulfilled_at IS NULL",
                             charge_id, now_iso, ret_changed, ret);
}

int pg_admin_review_done(struct pg_store *p, const char *charge_id, bool *ret_changed)
{
        struct order_record o;
        int r;

        if (p->read_only)
                return -EROFS;
        r = update_locked(p, "UPDATE orders SET needs_review = false "
                             "WHERE charge_id = $1 AND needs_review",
                          charge_id, NULL, ret_changed, &o);
        if (r >= 0)
                order_record_clear(&o);
        return r;
}
