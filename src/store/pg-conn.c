/*
 * pg-conn — one libpq connection: open it, run a statement, and say in
 * errno terms what went wrong, so the rest of the store (and the writer's
 * 503 logic above it) treats PostgreSQL's failures like SQLite's.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cashpay/log.h"
#include "src/store/pg-internal.h"

const char *pg_one_line(const char *msg, char *buf, size_t len)
{
        size_t n = 0;

        if (len == 0)
                return "";
        for (const char *s = msg ? msg : ""; *s && n + 3 < len; s++) {
                if (*s != '\n') {
                        buf[n++] = *s;
                        continue;
                }
                /* an indented line goes on with the same reason */
                bool more = s[1] == '\t' || s[1] == ' ';
                while (s[1] == '\t' || s[1] == ' ')
                        s++;
                if (s[1] && n > 0) {
                        if (!more)
                                buf[n++] = ';';
                        buf[n++] = ' ';
                }
        }
        while (n > 0 && buf[n - 1] == ' ')
                n--;
        buf[n] = '\0';
        return buf;
}

static int set_pq_err(char *err, size_t err_len, int r, const char *what, const char *msg)
{
        char line[1024];

        pg_one_line(msg, line, sizeof(line));
        return err_set(err, err_len, r, "%s%s%s", what, *line ? ": " : "", line);
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

/*
 * Without these libpq waits for the kernel when the server's host vanishes
 * without a reset (power loss, a partition, a failover whose old primary's
 * host is gone): a connect to it waits out the SYN retries, and a statement
 * on an established connection waits out tcp_retries2 (about 15 minutes),
 * with the writer blocked and every webhook answered 503 all that time, and
 * never a try at the next host of a multi-host url. The values go with the
 * defaults of [database] commit_timeout (10 s: how long a webhook waits for
 * its commit) and busy_timeout (5 s: how long a lock may hold one up):
 * - connect_timeout 5 s per host: a dead first host of a multi-host url
 *   leaves the next one time within one commit_timeout;
 * - tcp_user_timeout 10 s: data the server has not acknowledged for a whole
 *   commit_timeout means a dead connection; the webhooks waiting on it have
 *   been answered 503 by then, and the next batch goes to a new connection;
 * - keepalives after 5 s idle, every 2 s, 3 lost: a connection that has
 *   nothing in flight (idle, or waiting on a lock or a long statement) is
 *   found dead too (with tcp_user_timeout set, Linux drops it once probes
 *   go unanswered that long). A live server answers probes whatever a
 *   statement's duration, so no statement is cut short by them.
 */
#define PG_NETWORK_DEFAULT_KEYS \
        "connect_timeout", "tcp_user_timeout", "keepalives", "keepalives_idle", \
        "keepalives_interval", "keepalives_count"
#define PG_NETWORK_DEFAULT_VALUES "5", "10000", "1", "5", "2", "3"

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

        /* With expand_dbname, what the expanded dbname says overrides the
         * keywords before it, and the keywords after it override the string:
         * so the network defaults come first (the url's own values win) and
         * the password last (the password file wins over one in the url). */
        const char *keys[] = { PG_NETWORK_DEFAULT_KEYS, "dbname", "fallback_application_name",
                               "password", NULL };
        const char *values[] = { PG_NETWORK_DEFAULT_VALUES, url, "cashpayd", password, NULL };
        if (!password)
                keys[sizeof(keys) / sizeof(keys[0]) - 2] = NULL;
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
