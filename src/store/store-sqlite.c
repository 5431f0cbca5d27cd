/*
 * store-sqlite — the small SQLite toolkit of the store: result codes turned
 * into errnos once, the statement cache, transaction brackets and column
 * helpers. Everything here is shared by store.c, store-submit.c and
 * store-admin.c so that none of them handles raw result codes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "src/store/store-internal.h"

/* Word for word the WHERE of webhook_deliveries_rejected_idx: SQLite uses
 * a partial index only for queries whose WHERE implies the index's. */
#define REJECTED "http_status >= 400"

/* SQL of the cached statements, indexed by enum store_stmt. */
static const char *const stmt_sql[_STMT_MAX] = {
        [STMT_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
        [STMT_BEGIN_READ] = "BEGIN",
        [STMT_COMMIT] = "COMMIT",
        [STMT_ROLLBACK] = "ROLLBACK",
        [STMT_SAVEPOINT] = "SAVEPOINT delivery",
        [STMT_RELEASE] = "RELEASE delivery",
        [STMT_ROLLBACK_TO] = "ROLLBACK TO delivery",
        [STMT_ORDER_VIEW] =
                "SELECT status, amount, currency FROM orders WHERE charge_id = ?1",
        [STMT_MESSAGE_SEEN] =
                "SELECT 1 FROM webhook_deliveries WHERE message_id = ?1 "
                "AND http_status = 200 LIMIT 1", /* accepted: see the schema's CHECK */
        [STMT_ORDER_INSERT] =
                "INSERT INTO orders (charge_id, order_ref, status, amount, currency, "
                "description, transaction_url, charge_created, first_seen_at, updated_at, "
                "captured_at, failed_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, "
                "CASE ?3 WHEN 'CAPTURED' THEN ?9 END, CASE ?3 WHEN 'FAILED' THEN ?9 END)",
        /* captured_at/failed_at keep the first time; texts missing from the
         * first sighting (say, order_ref only sent on capture) are filled in */
        [STMT_ORDER_UPDATE_STATUS] =
                "UPDATE orders SET status = ?2, updated_at = ?3, "
                "captured_at = CASE ?2 WHEN 'CAPTURED' THEN coalesce(captured_at, ?3) "
                "ELSE captured_at END, "
                "failed_at = CASE ?2 WHEN 'FAILED' THEN coalesce(failed_at, ?3) "
                "ELSE failed_at END, "
                "order_ref = coalesce(order_ref, ?4), "
                "description = coalesce(description, ?5), "
                "transaction_url = coalesce(transaction_url, ?6) "
                "WHERE charge_id = ?1",
        [STMT_ORDER_FLAG_REVIEW] =
                "UPDATE orders SET needs_review = 1, updated_at = ?2 WHERE charge_id = ?1",
        [STMT_DELIVERY_INSERT] =
                "INSERT INTO webhook_deliveries (received_at, remote_addr, message_id, "
                "charge_id, claimed_status, outcome, http_status, error, body) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        [STMT_EVENT_INSERT] =
                "INSERT INTO order_events (charge_id, from_status, to_status, delivery_id, "
                "recorded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        [STMT_ORDER_GET] =
                "SELECT " STORE_ORDER_COLUMNS " FROM orders WHERE charge_id = ?1",
        /* touches the schema and a page of a real table, nothing more */
        [STMT_HEALTH] = "SELECT 1 FROM orders LIMIT 1",
        [STMT_REJECTED_COUNT] = "SELECT count(*) FROM webhook_deliveries WHERE " REJECTED,
        [STMT_REJECTED_BOUNDARY] =
                "SELECT received_at, id FROM webhook_deliveries WHERE " REJECTED
                " ORDER BY received_at DESC, id DESC LIMIT 1 OFFSET ?1",
        [STMT_REJECTED_TRIM] =
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
                " WHERE " REJECTED " AND received_at <= ?1 AND (received_at < ?1 OR id <= ?2)"
                " ORDER BY received_at, id LIMIT ?3)",
        [STMT_REJECTED_PRUNE] =
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
                " WHERE " REJECTED " AND received_at < ?1 ORDER BY received_at, id LIMIT ?2)",
        [STMT_REJECTED_PRUNE_COUNT] =
                "SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries"
                " WHERE " REJECTED " AND received_at < ?1 LIMIT ?2)",
        [STMT_API_FETCH_INSERT] =
                "INSERT INTO api_fetches (charge_id, requested_at, reason, delivery_id, "
                "http_status, status, amount, currency, body, error, duration_ms) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        [STMT_API_EVENT_INSERT] =
                "INSERT INTO order_events (charge_id, from_status, to_status, delivery_id, "
                "recorded_at, source, fetch_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [STMT_API_NEXT_CHECK] =
                "UPDATE orders SET next_check_at = ?2 WHERE charge_id = ?1 AND status = 'INITIATED'",
        [STMT_CHARGE_ORDER_OF_REF] =
                "SELECT charge_id, status, amount, currency, return_ref, "
                "transaction_url FROM orders WHERE order_ref = ?1 "
                "AND status <> 'FAILED' ORDER BY status = 'CAPTURED' DESC, "
                "first_seen_at DESC LIMIT 1",
        [STMT_CHARGE_PENDING_OF_REF] =
                "SELECT id, amount, currency, idempotency_key, return_ref, "
                "attempts FROM charge_requests WHERE order_ref = ?1 "
                "AND state = 'pending'",
        [STMT_CHARGE_ATTEMPTS_UP] =
                "UPDATE charge_requests SET attempts = attempts + 1, "
                "updated_at = ?2 WHERE id = ?1",
        [STMT_CHARGE_REQUEST_INSERT] =
                "INSERT INTO charge_requests (order_ref, amount, currency, "
                "description, idempotency_key, return_ref, attempts, requested_at, "
                "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)",
        [STMT_CHARGE_PENDING_BY_ID] =
                "SELECT order_ref, return_ref, amount, currency FROM "
                "charge_requests WHERE id = ?1 AND state = 'pending'",
        [STMT_CHARGE_FINISH] =
                "UPDATE charge_requests SET state = ?2, charge_id = ?3, "
                "http_status = ?4, error = ?5, updated_at = ?6 "
                "WHERE id = ?1 AND state = 'pending'",
        [STMT_CHARGE_ORDER_UPSERT] =
                "INSERT INTO orders (charge_id, order_ref, status, amount, currency, "
                "description, transaction_url, charge_created, first_seen_at, "
                "updated_at, return_ref, next_check_at) "
                "VALUES (?1, ?2, 'INITIATED', ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10) "
                "ON CONFLICT (charge_id) DO UPDATE SET "
                "order_ref = coalesce(order_ref, excluded.order_ref), "
                "return_ref = coalesce(return_ref, excluded.return_ref)",
        [STMT_CHARGE_NOTE_ATTEMPT] =
                "UPDATE charge_requests SET http_status = ?2, error = ?3, "
                "updated_at = ?4 WHERE id = ?1 AND state = 'pending'",
};

int store_errno_from_sqlite(int rc)
{
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_IOERR:
                return rc == SQLITE_IOERR_NOMEM ? -ENOMEM : -EIO;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_CANTOPEN:
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_CONSTRAINT:
        case SQLITE_MISMATCH:
        case SQLITE_RANGE:
                return -EINVAL;
        case SQLITE_TOOBIG:
                return -E2BIG;
        default:
                return -EIO;
        }
}

int store_prepare(struct store *s, const char *sql, sqlite3_stmt **ret)
{
        if (!s->db)
                return -EOPNOTSUPP; /* a PostgreSQL handle: see config-rules.c */
        int rc;

        *ret = NULL;
        rc = sqlite3_prepare_v2(s->db, sql, -1, ret, NULL);
        if (rc != SQLITE_OK) {
                sqlite3_finalize(*ret);
                *ret = NULL;
                return store_errno_from_sqlite(rc);
        }
        return 0;
}

int store_stmt(struct store *s, enum store_stmt id, sqlite3_stmt **ret)
{
        if (!s->db)
                return -EOPNOTSUPP; /* a PostgreSQL handle: see config-rules.c */
        int rc;

        if (!s->stmt[id]) {
                rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                        &s->stmt[id], NULL);
                if (rc != SQLITE_OK) {
                        sqlite3_finalize(s->stmt[id]);
                        s->stmt[id] = NULL;
                        return store_errno_from_sqlite(rc);
                }
        }
        *ret = s->stmt[id];
        return 0;
}

void store_finalize_all(struct store *s)
{
        for (size_t i = 0; i < _STMT_MAX; i++) {
                sqlite3_finalize(s->stmt[i]);
                s->stmt[i] = NULL;
        }
}

void store_reset(sqlite3_stmt *st)
{
        if (!st)
                return;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
}

int store_stmt_done(sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);

        store_reset(st);
        if (rc == SQLITE_DONE)
                return 0;
        /* a row where none was expected is a bug in the SQL above */
        return rc == SQLITE_ROW ? -EIO : store_errno_from_sqlite(rc);
}

int store_exec(struct store *s, const char *sql)
{
        return store_errno_from_sqlite(sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

static int run_cached(struct store *s, enum store_stmt id)
{
        sqlite3_stmt *st;
        int r;

        r = store_stmt(s, id, &st);
        if (r < 0)
                return r;
        return store_stmt_done(st);
}

int store_begin_immediate(struct store *s)
{
        return run_cached(s, STMT_BEGIN_IMMEDIATE);
}

int store_begin_read(struct store *s)
{
        return run_cached(s, STMT_BEGIN_READ);
}

int store_commit(struct store *s)
{
        int r = run_cached(s, STMT_COMMIT);

        /* A failed COMMIT may leave the transaction open (BUSY) or already
         * rolled back (I/O error); either way nothing of it must stay. */
        if (r < 0)
                store_rollback(s);
        return r;
}

void store_rollback(struct store *s)
{
        if (!sqlite3_get_autocommit(s->db))
                (void) run_cached(s, STMT_ROLLBACK);
}

int store_bind_text_or_null(sqlite3_stmt *st, int idx, const char *text)
{
        int rc;

        if (!text || !*text)
                rc = sqlite3_bind_null(st, idx);
        else
                rc = sqlite3_bind_text(st, idx, text, -1, SQLITE_TRANSIENT);
        return store_errno_from_sqlite(rc);
}

void store_column_text_copy(sqlite3_stmt *st, int col, char *buf, size_t len)
{
        const unsigned char *text = sqlite3_column_text(st, col);
        size_t n;

        if (len == 0)
                return;
        n = text ? (size_t) sqlite3_column_bytes(st, col) : 0;
        if (n >= len)
                n = len - 1;
        if (n > 0)
                memcpy(buf, text, n);
        buf[n] = '\0';
}

int store_column_text_dup(sqlite3_stmt *st, int col, char **ret)
{
        const unsigned char *text;

        *ret = NULL;
        if (sqlite3_column_type(st, col) == SQLITE_NULL)
                return 0;
        text = sqlite3_column_text(st, col);
        if (!text) /* conversion to text ran out of memory */
                return -ENOMEM;
        *ret = strdup((const char *) text);
        return *ret ? 0 : -ENOMEM;
}

int store_order_from_row(sqlite3_stmt *st, struct order_record *o)
{
        const char *status = (const char *) sqlite3_column_text(st, 2);

        /* the schema's CHECK makes any other status a damaged database */
        if (!status || charge_status_from_name(status, &o->status) < 0)
                return -EIO;
        store_column_text_copy(st, 0, o->charge_id, sizeof(o->charge_id));
        o->amount = sqlite3_column_int64(st, 3);
        store_column_text_copy(st, 4, o->currency, sizeof(o->currency));
        o->charge_created = sqlite3_column_int64(st, 7);
        store_column_text_copy(st, 8, o->first_seen_at, sizeof(o->first_seen_at));
        store_column_text_copy(st, 9, o->updated_at, sizeof(o->updated_at));
        store_column_text_copy(st, 10, o->captured_at, sizeof(o->captured_at));
        store_column_text_copy(st, 11, o->failed_at, sizeof(o->failed_at));
        store_column_text_copy(st, 12, o->fulfilled_at, sizeof(o->fulfilled_at));
        o->needs_review = sqlite3_column_int(st, 13) != 0;
        store_column_text_copy(st, 14, o->return_ref, sizeof(o->return_ref));
        store_column_text_copy(st, 15, o->next_check_at, sizeof(o->next_check_at));
        if (store_column_text_dup(st, 1, &o->order_ref) < 0 ||
            store_column_text_dup(st, 5, &o->description) < 0 ||
            store_column_text_dup(st, 6, &o->transaction_url) < 0)
                return -ENOMEM;
        return 0;
}
