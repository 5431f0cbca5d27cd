/*
 * store-internal — what the store's own source files share: the handle and
 * the few SQLite helpers every query path needs (errno mapping, transaction
 * brackets). Not installed, not seen outside src/store.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sqlite3.h>

#include "cashpay/store.h"

/* Statements of the hot path, prepared once per handle (store.c). */
enum store_stmt {
        STMT_ORDER_VIEW,         /* status, amount, currency of one order */
        STMT_DUP_MESSAGE,        /* earlier counted delivery with this message_id */
        STMT_ORDER_INSERT,
        STMT_ORDER_UPDATE_STATUS,
        STMT_ORDER_FLAG_REVIEW,
        STMT_DELIVERY_INSERT,
        STMT_EVENT_INSERT,
        STMT_ORDER_GET,
        STMT_SAVEPOINT,
        STMT_RELEASE,
        STMT_ROLLBACK_TO,
        _STMT_MAX,
};

struct store {
        sqlite3 *db;
        char *path;              /* database file as opened; -wal is path + "-wal" */
        bool read_only;
        unsigned busy_timeout_ms;
        sqlite3_stmt *stmt[_STMT_MAX]; /* lazily prepared; NULL until first use */
};

/*
 * store_errno_from_sqlite() - map an SQLite (extended) result code to a
 * negative errno: BUSY/LOCKED -> -EBUSY, FULL -> -ENOSPC, IOERR* -> -EIO,
 * READONLY -> -EROFS, CANTOPEN -> -ENOENT/-EACCES (looked up via errno of
 * the failed open where possible), NOMEM -> -ENOMEM, PERM/AUTH -> -EACCES,
 * anything else -> -EIO. SQLITE_OK/ROW/DONE map to 0.
 */
int store_errno_from_sqlite(int rc);

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

/* store_finalizep() - for __attribute__((cleanup(store_finalizep))). */
void store_finalizep(sqlite3_stmt **st);

/* store_bind_text_or_null() - bind @text (NUL-terminated, copied
 * transiently) or NULL when @text is NULL or "". */
int store_bind_text_or_null(sqlite3_stmt *st, int idx, const char *text);

/* store_column_text_copy() - copy column @col into @buf (@len bytes,
 * truncated, always terminated); "" for NULL. */
void store_column_text_copy(sqlite3_stmt *st, int col, char *buf, size_t len);

/* store_column_text_dup() - strdup of column @col, or NULL for SQL NULL.
 * Returns 0 or -ENOMEM. */
int store_column_text_dup(sqlite3_stmt *st, int col, char **ret);
