/*
 * pg-internal — what the PostgreSQL half of the store shares between its
 * files: connecting, turning libpq's errors into negative errnos, running
 * a statement, and the migrations.
 *
 * Only src/store/pg-*.c include this header; like SQLite for the rest of
 * src/store, libpq is never seen outside the store.
 */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "cashpay/util.h"

/* PQclearp() - for _cleanup_(PQclearp) PGresult *res = NULL; */
static inline void PQclearp(PGresult **res)
{
        if (*res)
                PQclear(*res);
}

/* PQfinishp() - for _cleanup_(PQfinishp) PGconn *c = NULL; */
static inline void PQfinishp(PGconn **c)
{
        if (*c)
                PQfinish(*c);
}

/*
 * pg_connect() - connect with the libpq connection string @url (key=value
 * or postgresql:// URI, several hosts allowed) and, when @password is not
 * NULL, that password, which wins over one in @url. The password is handed
 * to libpq as a parameter of its own and never becomes part of a string
 * that could be logged. The session gets UTC as its time zone, so that
 * timestamptz values come back as ...+00.
 * @err: libpq's reason, e.g. "connection to server at ... failed: ...".
 * Returns 0, -ECONNREFUSED (no server reachable, or authentication
 * failed), -EINVAL (a connection string libpq cannot parse) or -ENOMEM.
 */
int pg_connect(const char *url, const char *password, PGconn **ret, char *err, size_t err_len);

/*
 * pg_one_line() - libpq's message @msg as one log line in @buf (@len bytes),
 * returned: its trailing newline dropped, and the lines of a multi-host
 * url's failure (one per host tried, each with its reason) joined by "; ",
 * so that the log keeps one line per entry and says what each host did.
 */
const char *pg_one_line(const char *msg, char *buf, size_t len);

/*
 * pg_errno() - the negative errno for a failed result @res of @c (NULL
 * @res: the connection's own state): -ECONNRESET when the connection is
 * gone or the server is shutting down, -ENOSPC (disk full), -ETIMEDOUT
 * (statement or lock timeout), -EBUSY (serialisation failure or deadlock:
 * worth retrying), -EROFS (a read-only server, e.g. a standby after
 * failover), -EINVAL (a constraint or a bad value), -ENOMEM, else -EIO.
 */
int pg_errno(PGconn *c, const PGresult *res);

/*
 * pg_exec() - run @sql (several statements allowed, no parameters) and
 * check that it succeeded. Returns 0 or pg_errno(); @err gets the server's
 * message.
 */
int pg_exec(PGconn *c, const char *sql, char *err, size_t err_len);

/*
 * pg_migrate() - bring the database to pg_schema_version(), one migration
 * per transaction, each recorded in cashpayd_schema_migrations within the
 * same transaction. A transaction-scoped advisory lock around each step
 * makes instances that start at once take turns: the later one finds the
 * step done. Without @apply it only checks that the database is exactly at
 * the version this binary knows.
 * Returns 0, -EPROTO (a newer schema, or an older one and !@apply) or an
 * errno of pg_errno(); @err says which.
 */
int pg_migrate(PGconn *c, bool apply, char *err, size_t err_len);

/* pg_read_version() - the database's schema version (0: none yet). */
int pg_read_version(PGconn *c, int *ret, char *err, size_t err_len);

/* pg_schema_version() - the version the compiled-in PostgreSQL migrations reach. */
int pg_schema_version(void);
