/*
 * pg-conn — one libpq connection: open it, run a statement, and say in
 * errno terms what went wrong, so the rest of the store (and the writer's
 * 503 logic above it) treats PostgreSQL's failures like SQLite's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cashpay/log.h"
#include "src/store/pg-internal.h"

/* libpq's messages end in a newline; the operator's log lines do not. */
static int set_pq_err(char *err, size_t err_len, int r, const char *what, const char *msg)
{
        size_t n = msg ? strlen(msg) : 0;

        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                n--;
        return err_set(err, err_len, r, "%s%s%.*s", what, n ? ": " : "", (int) n, msg ? msg : "");
}

/* The server's notices and warnings go to our log, not to stderr as
 * libpq's default would have it. */
static void log_notice_from_server(void *userdata, const char *message)
{
        size_t n = strlen(message);

        while (n > 0 && message[n - 1] == '\n')
                n--;
        log_info("PostgreSQL: %.*s", (int) n, message);
}

int pg_connect(const char *url, const char *password, PGconn **ret, char *err, size_t err_len)
{
        _cleanup_(PQfinishp) PGconn *c = NULL;
        PQconninfoOption *parsed;
        char *perr = NULL;
        int r;

        /* A string libpq cannot parse is a configuration error, not an outage. */
        parsed = PQconninfoParse(url, &perr);
        if (!parsed) {
                r = perr ? -EINVAL : -ENOMEM;
                set_pq_err(err, err_len, r, "invalid [database] url", perr);
                PQfreemem(perr);
                return r;
        }
        PQconninfoFree(parsed);

        /* dbname first with expand_dbname: the later keywords override what
         * the string says, so the password file wins over a password in it. */
        const char *keys[] = { "dbname", "fallback_application_name", "password", NULL };
        const char *values[] = { url, "cashpayd", password, NULL };
        if (!password)
                keys[2] = NULL;
        c = PQconnectdbParams(keys, values, 1);
        if (!c)
                return err_set(err, err_len, -ENOMEM, "out of memory connecting to PostgreSQL");
        if (PQstatus(c) != CONNECTION_OK)
                return set_pq_err(err, err_len, -ECONNREFUSED, "cannot connect to PostgreSQL",
                                  PQerrorMessage(c));
        PQsetNoticeProcessor(c, log_notice_from_server, NULL);
        /* Times are compared and formatted in UTC, whatever the server's
         * default. Notices ("already exists, skipping") are noise. */
        r = pg_exec(c, "SET TimeZone TO 'UTC'; SET client_min_messages TO warning", err, err_len);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

/* SQLSTATE classes and codes that decide what the caller may do next. */
static int errno_from_sqlstate(const char *state)
{
        if (!state || strlen(state) != 5)
                return -EIO;
        if (strncmp(state, "08", 2) == 0          /* connection exception */
            || strcmp(state, "57P01") == 0        /* admin_shutdown */
            || strcmp(state, "57P02") == 0        /* crash_shutdown */
            || strcmp(state, "57P03") == 0)       /* cannot_connect_now */
                return -ECONNRESET;
        if (strcmp(state, "53100") == 0)          /* disk_full */
                return -ENOSPC;
        if (strcmp(state, "53200") == 0)          /* out_of_memory */
                return -ENOMEM;
        if (strncmp(state, "53", 2) == 0)         /* insufficient resources */
                return -EBUSY;
        if (strcmp(state, "57014") == 0           /* query_canceled: statement_timeout */
            || strcmp(state, "55P03") == 0)       /* lock_not_available: lock_timeout */
                return -ETIMEDOUT;
        if (strcmp(state, "40001") == 0           /* serialization_failure */
            || strcmp(state, "40P01") == 0)       /* deadlock_detected */
                return -EBUSY;
        if (strcmp(state, "25006") == 0)          /* read_only_sql_transaction */
                return -EROFS;
        if (strcmp(state, "22001") == 0           /* string_data_right_truncation */
            || strcmp(state, "54000") == 0)       /* program_limit_exceeded */
                return -E2BIG;
        if (strncmp(state, "23", 2) == 0          /* integrity constraint violation */
            || strncmp(state, "22", 2) == 0)      /* data exception */
                return -EINVAL;
        return -EIO;
}

int pg_errno(PGconn *c, const PGresult *res)
{
        if (!c || PQstatus(c) == CONNECTION_BAD)
                return -ECONNRESET;
        if (!res)
                return -ENOMEM;
        switch (PQresultStatus(res)) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_SINGLE_TUPLE:
                return 0;
        case PGRES_FATAL_ERROR:
                /* No SQLSTATE: libpq's own failure, the connection most likely. */
                if (!PQresultErrorField(res, PG_DIAG_SQLSTATE))
                        return PQstatus(c) == CONNECTION_OK ? -EIO : -ECONNRESET;
                return errno_from_sqlstate(PQresultErrorField(res, PG_DIAG_SQLSTATE));
        default:
                return -EIO;
        }
}

int pg_exec(PGconn *c, const char *sql, char *err, size_t err_len)
{
        _cleanup_(PQclearp) PGresult *res = PQexec(c, sql);
        const char *msg;
        int r = pg_errno(c, res);

        if (r >= 0)
                return 0;
        msg = res ? PQresultErrorMessage(res) : "";
        return set_pq_err(err, err_len, r, "PostgreSQL", *msg ? msg : PQerrorMessage(c));
}
