/*
 * pg-store-internal — the handle and statement helpers shared by
 * pg-store.c (lifecycle, connection, reads) and pg-submit.c (the write path).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "src/store/pg-internal.h"
#include "src/store/pg-store.h"

/* Statements prepared on every new connection (pg-store.c holds the SQL). */
enum pg_stmt {
        PG_LOCK_ORDERS,          /* lock a batch's existing orders, in charge_id order */
        PG_ORDER_VIEW,           /* status, amount, currency; locks the row */
        PG_MESSAGE_SEEN,
        PG_ORDER_INSERT,         /* ON CONFLICT DO NOTHING: 0 rows when another instance won */
        PG_ORDER_UPDATE_STATUS,
        PG_ORDER_FLAG_REVIEW,
        PG_DELIVERY_INSERT,
        PG_EVENT_INSERT,
        PG_EVENTS_LOCK,          /* event ids visible in id order across instances */
        PG_ORDER_GET,
        PG_REJECTED_COUNT,
        PG_REJECTED_TRIM,
        PG_REJECTED_PRUNE,
        PG_REJECTED_PRUNE_COUNT,
        /* the batch in three round trips (pg-batch.c) */
        PG_LOCK_VIEWS,           /* PG_LOCK_ORDERS returning what PG_ORDER_VIEW returns */
        PG_MESSAGES_SEEN,        /* which of an array of message ids have a 200 */
        PG_DELIVERY_IDS,         /* $1 new webhook_deliveries ids */
        PG_ORDERS_INSERT,        /* new orders from arrays; fails when another instance won */
        PG_DELIVERIES_INSERT,    /* deliveries from arrays, their ids given */
        PG_ORDERS_UPDATE,        /* the batch's changed orders from arrays; an error unless all found */
        _PG_STMT_MAX,
};

struct pg_store {
        PGconn *conn;            /* NULL while disconnected */
        char *url;
        char *password_file;     /* NULL: none */
        bool read_only;
        unsigned lock_timeout_ms; /* 0: the server's setting */
        int64_t max_rejected;    /* 0: no cap */
        int64_t rejected_rows;   /* with a cap: as counted at connect, plus what we added; -1 without */
        int64_t next_connect_ms; /* monotonic; no attempt before */
        unsigned backoff_ms;
        bool listen_wanted;      /* LISTEN for the change feed on every connection */
        bool listening;          /* ... and this connection does (pg-listen.c) */
};

/* pg_store_conn() - the connection, connecting first when it is down and
 * the backoff allows. 0 or -ECONNRESET. */
int pg_store_conn(struct pg_store *p);

/* pg_store_run() - execute prepared statement @id with text parameters
 * (NULL: SQL NULL; @binary_last: the last one is bytea of @last_len bytes).
 * On failure drops a broken connection and returns pg_errno(); @ret gets
 * the result on success (the caller clears it). */
int pg_store_run(struct pg_store *p, enum pg_stmt id, const char *const *params, int n,
                 bool binary_last, int last_len, PGresult **ret);

/* pg_store_query() - as pg_store_run(), for a statement not prepared on
 * every connection (pg-api.c: calls far rarer than a webhook batch). */
int pg_store_query(struct pg_store *p, const char *sql, const char *const *params, int n,
                   bool binary_last, int last_len, PGresult **ret);

/* pg_stmt_name() - what statement @id is prepared as on every connection;
 * NULL for one sent as pg_stmt_sql() and planned at each execution. */
const char *pg_stmt_name(enum pg_stmt id);

/* pg_stmt_sql() - statement @id's SQL. */
const char *pg_stmt_sql(enum pg_stmt id);

/* pg_store_failed() - pg_errno() of a failed @res (never 0), the
 * connection dropped when it is broken so that the next call reconnects. */
int pg_store_failed(struct pg_store *p, const PGresult *res);

/* pg_store_exec() - a plain statement, e.g. BEGIN; drops a broken connection. */
int pg_store_exec(struct pg_store *p, const char *sql);

/* pg_read_view() - the order's row as the state machine sees it, locked
 * until COMMIT (FOR UPDATE); !exists when there is none. */
int pg_read_view(struct pg_store *p, const char *charge_id, struct order_view *v);

/* pg_apply_transition() - write what state_decide() said. 1 when done, 0
 * when the order's insert lost a race with another instance and the
 * decision must be made again on the row that now exists. */
int pg_apply_transition(struct pg_store *p, const struct transition *t, const struct charge *c,
                        const char *now);

/* pg_message_seen() - whether a delivery with @message_id (NULL: none) is
 * recorded; pg_insert_delivery() - its row, d->id set (pg-submit.c). */
int pg_message_seen(struct pg_store *p, const char *message_id, bool *ret);
int pg_insert_delivery(struct pg_store *p, struct delivery *d, const char *charge_id,
                       const char *claimed, const char *error);

/* pg_order_from_row() - an order_record from row @row of a result whose
 * columns are PG_ORDER_COLUMNS. 0, -EIO or -ENOMEM. */
int pg_order_from_row(const PGresult *res, int row, struct order_record *o);

/* The time columns as the SQLite store spells them: ISO-8601 UTC with ms. */
#define PG_ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* An order as pg_order_from_row() reads it. */
#define PG_ORDER_COLUMNS \
        "charge_id, order_ref, status, amount, currency, description, transaction_url, " \
        "coalesce(charge_created, 0), " PG_ISO("first_seen_at") ", " PG_ISO("updated_at") ", " \
        PG_ISO("captured_at") ", " PG_ISO("failed_at") ", " PG_ISO("fulfilled_at") ", " \
        "needs_review, return_ref, " PG_ISO("next_check_at")

/* pg_begin() - BEGIN, once more on a new connection when the idle one had died. */
int pg_begin(struct pg_store *p);

/* Parameters of one prepared statement, with room for the numbers formatted. */
struct pg_params {
        enum pg_stmt id;
        int n;
        const char *v[10];
        char buf[2][24];
        bool binary_last;        /* v[n - 1] is bytea of last_len bytes */
        int last_len;
};

/* pg_transition_params() - the statement that writes what state_decide()
 * said (an insert's v[0..7] are also PG_ORDERS_INSERT's columns); 0 when
 * there is none. */
int pg_transition_params(const struct transition *t, const struct charge *c, const char *now,
                         struct pg_params *out);

/* pg_delivery_params() - @d's columns for PG_DELIVERIES_INSERT: v[0] its
 * id (d->id), v[9] its body (last_len bytes); v + 1 is PG_DELIVERY_INSERT's
 * parameters. 0 or -E2BIG. */
int pg_delivery_params(const struct delivery *d, const char *charge_id, const char *claimed,
                       const char *error, struct pg_params *out);

/* The batch's status changes as PG_EVENT_INSERT's array parameters. */
struct pg_events {
        char *ids, *from, *to, *deliveries;
        size_t count;
};
int pg_events_build(struct delivery *const *items, size_t n, struct pg_events *e);
/* pg_events_take() - each delivery's event_id from PG_EVENT_INSERT's rows. */
int pg_events_take(const PGresult *res, struct delivery *const *items, size_t n, size_t count);
void pg_events_free(struct pg_events *e);

/* pg_trim_due() - whether pg_trim_rejected() would delete anything now. */
bool pg_trim_due(const struct pg_store *p);

/* pg_trim_rejected() - the cap on rejected rows, @added of them in this batch. */
int pg_trim_rejected(struct pg_store *p, int64_t added);

/* pg_rejection_status() - the HTTP status a rejected outcome is stored with (0: none). */
int pg_rejection_status(enum outcome o);

/*
 * pg_submit_batch() - the batch in three round trips (pg-batch.c): its
 * reads in one pipeline, the state machine run here, its writes in a
 * second one, then COMMIT. 0 when committed; 1 when nothing was
 * committed and the batch must go the statement-at-a-time way
 * (a delivery the server refused, an order another instance inserted
 * meanwhile); else a negative errno as pg_store_submit() returns it.
 */
int pg_submit_batch(struct pg_store *p, struct delivery *const *items, size_t n);

/* pg_listen_on() - LISTEN on @c when the handle wants it (connect_once()
 * calls it for every new connection, before any read). A server that
 * refuses it as read-only (a standby) leaves p->listening false and is no
 * error. 0 or pg_errno(). */
int pg_listen_on(struct pg_store *p, PGconn *c, char *err, size_t err_len);
