/*
 * store-internal — what the store's own source files share: the handle and
 * the few SQLite helpers every query path needs (errno mapping, transaction
 * brackets). Not installed, not seen outside src/store.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sqlite3.h>
#include <sys/types.h>

#include "cashpay/store.h"
#include "cashpay/util.h"

/*
 * Statements prepared once per handle, on first use (store-sqlite.c holds
 * their SQL), and reused: the write path runs several per delivery.
 */
enum store_stmt {
        STMT_BEGIN_IMMEDIATE,
        STMT_BEGIN_READ,
        STMT_COMMIT,
        STMT_ROLLBACK,
        STMT_SAVEPOINT,
        STMT_RELEASE,
        STMT_ROLLBACK_TO,
        STMT_ORDER_VIEW,         /* status, amount, currency of one order */
        STMT_MESSAGE_SEEN,       /* an earlier accepted delivery with this message_id */
        STMT_ORDER_INSERT,
        STMT_ORDER_UPDATE_STATUS,
        STMT_ORDER_FLAG_REVIEW,
        STMT_DELIVERY_INSERT,
        STMT_EVENT_INSERT,
        STMT_ORDER_GET,
        STMT_HEALTH,
        STMT_REJECTED_COUNT,       /* rejected rows (store-rejected.c) */
        STMT_REJECTED_BOUNDARY,    /* the newest rejected row beyond the cap */
        STMT_REJECTED_TRIM,        /* delete rejected rows up to that one */
        STMT_REJECTED_PRUNE,       /* delete rejected rows older than a time */
        STMT_REJECTED_PRUNE_COUNT, /* count them (dry run) */
        STMT_API_FETCH_INSERT,     /* an api_fetches row (store-api.c) */
        STMT_API_EVENT_INSERT,     /* an order_events row naming its fetch */
        STMT_API_NEXT_CHECK,       /* next_check_at of an INITIATED order */
        STMT_CHARGE_ORDER_OF_REF,  /* the newest live order of an order_ref (store-api.c) */
        STMT_CHARGE_PENDING_OF_REF, /* its pending request */
        STMT_CHARGE_ATTEMPTS_UP,   /* a pending request asked again */
        STMT_CHARGE_REQUEST_INSERT, /* a new pending request */
        STMT_CHARGE_PENDING_BY_ID, /* a pending request by id */
        STMT_CHARGE_FINISH,        /* a request created or refused */
        STMT_CHARGE_ORDER_UPSERT,  /* the created charge's order */
        STMT_CHARGE_NOTE_ATTEMPT,  /* a failed attempt of a pending request */
        _STMT_MAX,
};

struct pg_store;

struct store {
        struct pg_store *pg;     /* backend = postgresql: every call goes there (pg-store.h);
                                  * then db is NULL */
        sqlite3 *db;
        char *path;              /* database file as opened */
        char *wal_path;          /* path + "-wal" */
        bool read_only;
        bool charge_group;       /* inside store_charge_group_begin() … _commit() */
        unsigned busy_timeout_ms;
        int64_t wal_limit_bytes; /* store_options.wal_limit_bytes */
        int64_t max_rejected;    /* store_options.max_rejected_rows; 0 = no cap */
        int64_t rejected_rows;   /* with a cap: rejected rows as of the last commit (inside
                                  * store_submit(), with the batch's so far); never below
                                  * the real number, which only other processes lower.
                                  * -1 without a cap */
        dev_t dev;               /* identity of the file opened, for store_health() */
        ino_t ino;
        sqlite3_stmt *stmt[_STMT_MAX]; /* NULL until first use */
};

/* The orders columns in the order store_order_from_row() reads them. */
#define STORE_ORDER_COLUMNS \
        "charge_id, order_ref, status, amount, currency, description, transaction_url, " \
        "charge_created, first_seen_at, updated_at, captured_at, failed_at, fulfilled_at, " \
        "needs_review, return_ref, next_check_at"

/*
 * store_errno_from_sqlite() - map an SQLite (extended) result code to a
 * negative errno. Transient, worth a 503 and a retry: BUSY/LOCKED -> -EBUSY,
 * FULL -> -ENOSPC, IOERR* -> -EIO (IOERR_NOMEM -> -ENOMEM), READONLY ->
 * -EROFS, NOMEM -> -ENOMEM, CANTOPEN -> -EACCES (store_new() tells
 * -ENOENT apart itself), PERM/AUTH -> -EACCES. Permanent, the request
 * itself is at fault: CONSTRAINT/MISMATCH/RANGE -> -EINVAL, TOOBIG -> -E2BIG.
 * Anything else (CORRUPT, NOTADB, ERROR, …) -> -EIO. OK/ROW/DONE -> 0.
 */
int store_errno_from_sqlite(int rc);

/* store_stmt() - the cached statement @id, prepared on first use and reset
 * (bindings cleared) by whoever used it last. 0 or a negative errno. */
int store_stmt(struct store *s, enum store_stmt id, sqlite3_stmt **ret);

/* store_stmt_done() - step @st, which must not return rows, then reset it
 * and clear its bindings. 0 or a negative errno. */
int store_stmt_done(sqlite3_stmt *st);

/* store_finalize_all() - finalize every cached statement. */
void store_finalize_all(struct store *s);

/*
 * store_migrate() - compare the database's user_version with the schema
 * this binary carries; with @apply, run the missing migrations (one
 * transaction each), else refuse any difference. @err as for store_new().
 * Returns 0, -EPROTO or an errno of store_errno_from_sqlite().
 */
int store_migrate(struct store *s, bool apply, char *err, size_t err_len);

/* store_user_version() - PRAGMA user_version of the open database; 0 or a
 * negative errno. */
int store_user_version(struct store *s, int *ret);

/*
 * store_order_from_row() - fill @ret from a row selected as
 * STORE_ORDER_COLUMNS (first column 0). @ret must be zeroed or cleared.
 * Returns 0, -EIO (a status the schema forbids) or -ENOMEM.
 */
int store_order_from_row(sqlite3_stmt *st, struct order_record *ret);

/* store_read_order_view() - what state_decide() needs of order @charge_id
 * (exists = false when there is none). 0 or a negative errno. */
int store_read_order_view(struct store *s, const char *charge_id, struct order_view *v);

/*
 * store_apply_transition() - carry out what state_decide() said about the
 * order itself (insert, status change or review flag; no event row), with
 * @c as the charge it decided on. 0 or a negative errno.
 */
int store_apply_transition(struct store *s, const struct transition *t, const struct charge *c,
                           const char *now);

/* The reason a repeated webhook-id is a duplicate. */
#define MESSAGE_SEEN_REASON "message id already recorded"

/* store_message_seen() - is @message_id (NULL: never) already recorded? */
int store_message_seen(struct store *s, const char *message_id, bool *ret);

/* store_insert_delivery() - the webhook_deliveries row of @d as its outcome
 * and http_status say; sets d->id. 0 or a negative errno. */
int store_insert_delivery(struct store *s, struct delivery *d, const char *charge_id,
                          const char *claimed, const char *error);

/* store_begin_immediate() - BEGIN IMMEDIATE; 0 or a negative errno
 * (-EBUSY when another writer held the lock past busy_timeout). */
int store_begin_immediate(struct store *s);

/* store_begin_read() - BEGIN (deferred) for a consistent multi-statement read. */
int store_begin_read(struct store *s);

/* store_commit() - COMMIT; on failure rolls back and returns a negative errno. */
int store_commit(struct store *s);

/* store_rollback() - ROLLBACK if a transaction is open; never fails loudly. */
void store_rollback(struct store *s);

/*
 * store_prepare() - compile @sql on @s's connection.
 * Returns 0 or a negative errno; on error *@ret is NULL.
 */
int store_prepare(struct store *s, const char *sql, sqlite3_stmt **ret);

/* store_exec() - run SQL that returns no rows; 0 or a negative errno. */
int store_exec(struct store *s, const char *sql);

/* store_reset() - sqlite3_reset + sqlite3_clear_bindings; NULL-safe. */
void store_reset(sqlite3_stmt *st);

/* store_resetp() - for _cleanup_(store_resetp) sqlite3_stmt *st = NULL; on a
 * cached statement (store_stmt()), so that it is reset however its user returns. */
DEFINE_FREEP(sqlite3_stmt, store_reset)

/* sqlite3_finalizep() - for _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL; */
DEFINE_FREEP(sqlite3_stmt, sqlite3_finalize)

/* store_bind_text_or_null() - bind @text (NUL-terminated, copied
 * transiently) or NULL when @text is NULL or "". */
int store_bind_text_or_null(sqlite3_stmt *st, int idx, const char *text);

/* store_column_text_copy() - copy column @col into @buf (@len bytes,
 * truncated, always terminated); "" for NULL. */
void store_column_text_copy(sqlite3_stmt *st, int col, char *buf, size_t len);

/* store_column_text_dup() - strdup of column @col, or NULL for SQL NULL.
 * Returns 0 or -ENOMEM. */
int store_column_text_dup(sqlite3_stmt *st, int col, char **ret);

/*
 * store_rejected_recount() - count the rejected deliveries into
 * s->rejected_rows (through the partial index). 0 or a negative errno.
 */
int store_rejected_recount(struct store *s);

/*
 * store_rejected_trim() - inside store_submit()'s transaction, before
 * COMMIT: once s->rejected_rows is past the cap by more than the slack,
 * delete the oldest rejected rows beyond the newest max_rejected (at most
 * @added, the rejected rows this batch inserted, plus a fixed backlog
 * chunk). 0 or a negative errno, never -EINVAL/-E2BIG: a failure is the
 * batch's, like any other SQL error.
 */
int store_rejected_trim(struct store *s, int64_t added);
