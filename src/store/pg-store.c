/*
 * pg-store — a PostgreSQL store handle: its connection (lost, then found
 * again with backoff), the statements prepared on it, and the reads and
 * small writes outside the webhook batch (pg-submit.c has that).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/log.h"
#include "cashpay/timeutil.h"
#include "src/store/pg-store-internal.h"

#define REJECTED "http_status >= 400"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

#define ORDER_INSERT \
        "INSERT INTO orders (charge_id, order_ref, status, amount, currency, " \
        "description, transaction_url, charge_created, first_seen_at, updated_at, " \
        "captured_at, failed_at) " \
        "VALUES ($1, $2, $3, $4::bigint, $5, $6, $7, $8::bigint, $9::timestamptz, " \
        "$9::timestamptz, CASE $3 WHEN 'CAPTURED' THEN $9::timestamptz END, " \
        "CASE $3 WHEN 'FAILED' THEN $9::timestamptz END)"

#define ORDER_UPDATE_STATUS \
        "UPDATE orders SET status = $2, updated_at = $3::timestamptz, " \
        "captured_at = CASE $2 WHEN 'CAPTURED' THEN coalesce(captured_at, " \
        "$3::timestamptz) ELSE captured_at END, " \
        "failed_at = CASE $2 WHEN 'FAILED' THEN coalesce(failed_at, $3::timestamptz) " \
        "ELSE failed_at END, " \
        "order_ref = coalesce(order_ref, $4), " \
        "description = coalesce(description, $5), " \
        "transaction_url = coalesce(transaction_url, $6) " \
        "WHERE charge_id = $1"
#define ORDER_FLAG_REVIEW \
        "UPDATE orders SET needs_review = true, updated_at = $2::timestamptz WHERE charge_id = $1"

static const struct {
        const char *sql;
        int n_params;
} statements[_PG_STMT_MAX] = {
        [PG_LOCK_ORDERS] = { "SELECT 1 FROM orders WHERE charge_id = ANY ($1::text[]) "
                             "ORDER BY charge_id FOR UPDATE", 1 },
        [PG_ORDER_VIEW] = { "SELECT status, amount, currency FROM orders WHERE charge_id = $1 "
                            "FOR UPDATE", 1 },
        [PG_MESSAGE_SEEN] = { "SELECT 1 FROM webhook_deliveries WHERE message_id = $1 "
                              "AND http_status = 200 LIMIT 1", 1 },
        [PG_ORDER_INSERT] = { ORDER_INSERT " ON CONFLICT (charge_id) DO NOTHING", 9 },
        [PG_ORDER_UPDATE_STATUS] = { ORDER_UPDATE_STATUS, 6 },
        [PG_ORDER_FLAG_REVIEW] = { ORDER_FLAG_REVIEW, 2 },
        [PG_DELIVERY_INSERT] = {
                "INSERT INTO webhook_deliveries (received_at, remote_addr, message_id, "
                "charge_id, claimed_status, outcome, http_status, error, body) "
                "VALUES ($1::timestamptz, $2, $3, $4, $5, $6, $7::integer, $8, $9::bytea) "
                "RETURNING id", 9 },
        /* every event of the batch in one statement, in batch order (ORDINALITY),
         * so that one charge's events get increasing ids */
        [PG_EVENT_INSERT] = {
                "INSERT INTO order_events (charge_id, from_status, to_status, delivery_id, "
                "recorded_at) SELECT c, f, t, d, $5::timestamptz FROM unnest($1::text[], "
                "$2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS e (c, f, t, d, n) "
                "ORDER BY n RETURNING id, delivery_id", 5 },
        /* "cashpay" + 1 in ASCII: not the migrations' lock */
        [PG_EVENTS_LOCK] = { "SELECT pg_advisory_xact_lock(x'63617368706179'::bigint + 1)", 0 },
        [PG_ORDER_GET] = {
                "SELECT " PG_ORDER_COLUMNS " FROM orders WHERE charge_id = $1", 1 },
        [PG_REJECTED_COUNT] = { "SELECT count(*) FROM webhook_deliveries WHERE " REJECTED, 0 },
        /* everything rejected beyond the newest $1, oldest first, at most $2 rows */
        [PG_REJECTED_TRIM] = {
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries "
                "WHERE " REJECTED " ORDER BY received_at DESC, id DESC OFFSET $1::bigint "
                "LIMIT $2::bigint)", 2 },
        [PG_REJECTED_PRUNE] = {
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries "
                "WHERE " REJECTED " AND received_at < $1::timestamptz ORDER BY received_at, id "
                "LIMIT $2::bigint)", 2 },
        [PG_REJECTED_PRUNE_COUNT] = {
                "SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries WHERE " REJECTED
                " AND received_at < $1::timestamptz LIMIT $2::bigint) AS q", 2 },
        [PG_LOCK_VIEWS] = { "SELECT charge_id, status, amount, currency FROM orders "
                            "WHERE charge_id = ANY ($1::text[]) ORDER BY charge_id FOR UPDATE", 1 },
        [PG_MESSAGES_SEEN] = { "SELECT DISTINCT message_id FROM webhook_deliveries "
                               "WHERE message_id = ANY ($1::text[]) AND http_status = 200", 1 },
        /* the sequence looked up once, not once per id (OFFSET 0: not pulled up) */
        [PG_DELIVERY_IDS] = { "SELECT nextval(q.s) FROM (SELECT pg_get_serial_sequence("
                              "'webhook_deliveries', 'id')::regclass OFFSET 0) AS q (s), "
                              "generate_series(1, $1::integer)", 1 },
        /* the batch's new orders; a unique violation, not 0 rows, when another
         * instance inserted one meanwhile: the batch is rolled back */
        [PG_ORDERS_INSERT] = {
                "INSERT INTO orders (charge_id, order_ref, status, amount, currency, "
                "description, transaction_url, charge_created, first_seen_at, updated_at, "
                "captured_at, failed_at) "
                "SELECT c, r, s, a, cu, d, u, cr, $9::timestamptz, $9::timestamptz, "
                "CASE s WHEN 'CAPTURED' THEN $9::timestamptz END, "
                "CASE s WHEN 'FAILED' THEN $9::timestamptz END "
                "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], "
                "$6::text[], $7::text[], $8::bigint[]) AS o (c, r, s, a, cu, d, u, cr)", 9 },
        /* every order of the batch that changes, once: what ORDER_UPDATE_STATUS
         * and ORDER_FLAG_REVIEW in turn would leave (pg-batch.c merges them;
         * $2 NULL: no status change, $6/$7: a status written was CAPTURED/
         * FAILED, $8: a review flag). A data exception (1 / 0) unless every
         * charge id found its row, so that COMMIT never follows a miss.
         * Planned with its arrays: a generic plan made on a small table would
         * join by scanning it (see @replanned). */
        [PG_ORDERS_UPDATE] = {
                "WITH w AS (UPDATE orders AS o SET status = coalesce(u.s, o.status), "
                "updated_at = $9::timestamptz, "
                "captured_at = CASE WHEN u.cap THEN coalesce(o.captured_at, $9::timestamptz) "
                "ELSE o.captured_at END, "
                "failed_at = CASE WHEN u.fail THEN coalesce(o.failed_at, $9::timestamptz) "
                "ELSE o.failed_at END, "
                "order_ref = coalesce(o.order_ref, u.r), "
                "description = coalesce(o.description, u.d), "
                "transaction_url = coalesce(o.transaction_url, u.t), "
                "needs_review = o.needs_review OR u.rv "
                "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
                "$6::boolean[], $7::boolean[], $8::boolean[]) AS u (c, s, r, d, t, cap, fail, rv) "
                "WHERE o.charge_id = u.c RETURNING 1) "
                "SELECT 1 / (count(*) = cardinality($1::text[]))::integer FROM w", 9 },
        /* the batch's deliveries, ids given */
        [PG_DELIVERIES_INSERT] = {
                "INSERT INTO webhook_deliveries (id, received_at, remote_addr, message_id, "
                "charge_id, claimed_status, outcome, http_status, error, body) "
                "OVERRIDING SYSTEM VALUE SELECT * FROM unnest($1::bigint[], $2::timestamptz[], "
                "$3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::integer[], "
                "$9::text[], $10::bytea[])", 10 },
};

/* @replanned: the statements that take arrays, sent with their SQL and
 * planned for their parameters at every execution instead of prepared
 * once. A prepared statement gets, after five executions, one generic plan
 * for any parameters, costed on the table as it was then; for "= ANY ($1)"
 * on a table that was nearly empty that plan is a sequential scan
 * comparing every row with every array element, kept for the connection's
 * life while the table grows (a batch's lock went from 2 to 12 ms within
 * 10 s). Planned with the array, the scan is an index lookup per element;
 * the planning costs a fraction of that. */
static const bool replanned[_PG_STMT_MAX] = {
        [PG_LOCK_ORDERS] = true,
        [PG_LOCK_VIEWS] = true,
        [PG_MESSAGES_SEEN] = true,
        [PG_ORDERS_UPDATE] = true,
};

static char stmt_name[_PG_STMT_MAX][8];

const char *pg_stmt_sql(enum pg_stmt id)
{
        return statements[id].sql;
}

const char *pg_stmt_name(enum pg_stmt id)
{
        if (replanned[id])
                return NULL;
        if (!stmt_name[id][0])
                snprintf(stmt_name[id], sizeof(stmt_name[id]), "s%d", (int) id);
        return stmt_name[id];
}

/* The first line of the password file; never copied anywhere but libpq. */
static int read_password(const char *path, char **ret)
{
        _cleanup_(freep) char *line = NULL;
        size_t cap = 0;
        FILE *f = fopen(path, "re");
        ssize_t n;

        if (!f)
                return -errno;
        n = getline(&line, &cap, f);
        fclose(f);
        if (n < 0)
                n = 0;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                n--;
        if (!line && !(line = strdup("")))
                return -ENOMEM;
        line[n] = '\0';
        *ret = TAKE_PTR(line);
        return 0;
}

static void password_free(char *pw)
{
        if (pw) {
                explicit_bzero(pw, strlen(pw));
                free(pw);
        }
}

static int prepare_all(PGconn *c, char *err, size_t err_len)
{
        for (int i = 0; i < _PG_STMT_MAX; i++) {
                if (replanned[i])
                        continue;
                _cleanup_(PQclearp) PGresult *res = PQprepare(c, pg_stmt_name(i), statements[i].sql,
                                                              statements[i].n_params, NULL);
                int r = pg_errno(c, res);
                if (r < 0)
                        return err_set(err, err_len, r, "cannot prepare statement %d: %s", i,
                                       PQerrorMessage(c));
        }
        return 0;
}

/* One connection attempt: connect, session settings, and (once the schema
 * is there) the statements. */
static int connect_once(struct pg_store *p, bool prepare, char *err, size_t err_len)
{
        _cleanup_(PQfinishp) PGconn *c = NULL;
        char *password = NULL;
        int r;

        if (p->password_file) {
                r = read_password(p->password_file, &password);
                if (r < 0)
                        return err_set(err, err_len, -ECONNREFUSED,
                                       "cannot read [database] password_file %s: %s",
                                       p->password_file, strerror(-r));
        }
        r = pg_connect(p->url, password, &c, err, err_len);
        password_free(password);
        if (r < 0)
                return r;
        if (p->read_only)
                r = pg_exec(c, "SET default_transaction_read_only TO on", err, err_len);
        if (r >= 0 && p->lock_timeout_ms) {
                /* an operator's command gives up on a row lock as on an SQLite lock */
                char set[64];
                snprintf(set, sizeof(set), "SET lock_timeout TO %u", p->lock_timeout_ms);
                r = pg_exec(c, set, err, err_len);
        }
        if (r >= 0 && prepare)
                r = prepare_all(c, err, err_len);
        /* a follower's LISTEN before its first read on this connection */
        if (r >= 0)
                r = pg_listen_on(p, c, err, err_len);
        if (r < 0)
                return r;
        p->conn = TAKE_PTR(c);
        return 0;
}

int pg_store_conn(struct pg_store *p)
{
        char err[512];
        int64_t now;

        if (p->conn && PQstatus(p->conn) == CONNECTION_OK)
                return 0;
        if (p->conn) {
                PQfinish(p->conn);
                p->conn = NULL;
        }
        now = time_monotonic_ms();
        if (now < p->next_connect_ms)
                return -ECONNRESET;
        if (connect_once(p, true, err, sizeof(err)) < 0) {
                /* no storm of reconnects from many handles at once */
                p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : BACKOFF_MIN_MS;
                if (p->backoff_ms > BACKOFF_MAX_MS)
                        p->backoff_ms = BACKOFF_MAX_MS;
                p->next_connect_ms = now + p->backoff_ms;
                if (!p->read_only)
                        log_warning("%s; trying again in %u ms", err, p->backoff_ms);
                return -ECONNRESET;
        }
        if (p->backoff_ms && !p->read_only)
                log_notice("connected to PostgreSQL again");
        p->backoff_ms = 0;
        return 0;
}

/* A connection libpq found broken is dropped here, so the next call reconnects. */
int pg_store_failed(struct pg_store *p, const PGresult *res)
{
        int r = pg_errno(p->conn, res);

        if (r == -ECONNRESET || PQstatus(p->conn) != CONNECTION_OK) {
                PQfinish(p->conn);
                p->conn = NULL;
                r = -ECONNRESET;
        } else if (res && r < 0 && r != -EINVAL && r != -E2BIG) {
                log_debug("PostgreSQL: %s", PQresultErrorMessage(res));
        }
        return r < 0 ? r : -EIO;
}

/* One statement, prepared (named @statement) or not (@sql), with text parameters
 * but for an optional binary last one; *@ret gets the result on success. */
static int exec_params(struct pg_store *p, const char *statement, const char *sql,
                       const char *const *params, int n, bool binary_last, int last_len,
                       PGresult **ret)
{
        int lengths[16] = { 0 }, formats[16] = { 0 };
        PGresult *res;
        int r;

        r = pg_store_conn(p);
        if (r < 0)
                return r;
        if (n > 16)
                return -EINVAL;
        if (binary_last && n > 0) {
                lengths[n - 1] = last_len;
                formats[n - 1] = 1;
        }
        res = statement ? PQexecPrepared(p->conn, statement, n, params, lengths, formats, 0)
                        : PQexecParams(p->conn, sql, n, NULL, params, lengths, formats, 0);
        r = pg_errno(p->conn, res);
        if (r < 0) {
                r = pg_store_failed(p, res);
                PQclear(res);
                return r;
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

int pg_store_run(struct pg_store *p, enum pg_stmt id, const char *const *params, int n,
                 bool binary_last, int last_len, PGresult **ret)
{
        return exec_params(p, pg_stmt_name(id), statements[id].sql, params, n, binary_last,
                           last_len, ret);
}

int pg_store_query(struct pg_store *p, const char *sql, const char *const *params, int n,
                   bool binary_last, int last_len, PGresult **ret)
{
        return exec_params(p, NULL, sql, params, n, binary_last, last_len, ret);
}

int pg_store_exec(struct pg_store *p, const char *sql)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        int r = pg_store_conn(p);

        if (r < 0)
                return r;
        res = PQexec(p->conn, sql);
        return pg_errno(p->conn, res) < 0 ? pg_store_failed(p, res) : 0;
}

static int count_rejected(struct pg_store *p)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        int r = pg_store_run(p, PG_REJECTED_COUNT, NULL, 0, false, 0, &res);

        if (r < 0)
                return r;
        p->rejected_rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        return 0;
}

int pg_store_new(const struct store_options *opts, struct pg_store **ret, char *err, size_t err_len)
{
        struct pg_store *p;
        int r;

        if (!opts->url || !opts->url[0])
                return err_set(err, err_len, -EINVAL, "[database] url is not set");
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->read_only = opts->read_only;
        p->lock_timeout_ms = opts->lock_timeout_ms;
        p->max_rejected = opts->read_only ? 0 : opts->max_rejected_rows;
        p->rejected_rows = -1;
        p->url = strdup(opts->url);
        p->password_file = opts->password_file ? strdup(opts->password_file) : NULL;
        if (!p->url || (opts->password_file && !p->password_file)) {
                pg_store_free(p);
                return -ENOMEM;
        }
        r = connect_once(p, false, err, err_len);
        /* a read-only handle sits in read-only transactions: it only checks */
        if (r >= 0)
                r = pg_migrate(p->conn, opts->migrate && !opts->read_only, err, err_len);
        if (r >= 0)
                r = prepare_all(p->conn, err, err_len);
        if (r >= 0 && p->max_rejected > 0) {
                r = count_rejected(p);
                if (r < 0)
                        err_set(err, err_len, r, "cannot count rejected deliveries");
        }
        if (r < 0) {
                pg_store_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

void pg_store_free(struct pg_store *p)
{
        if (!p)
                return;
        if (p->conn)
                PQfinish(p->conn);
        free(p->url);
        free(p->password_file);
        free(p);
}

/* A text column into a fixed buffer; "" for NULL. */
static void copy_col(const PGresult *res, int row, int col, char *buf, size_t len)
{
        const char *v = PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col);

        snprintf(buf, len, "%s", v);
}

static int dup_col(const PGresult *res, int row, int col, char **ret)
{
        *ret = NULL;
        if (PQgetisnull(res, row, col))
                return 0;
        *ret = strdup(PQgetvalue(res, row, col));
        return *ret ? 0 : -ENOMEM;
}

int pg_order_from_row(const PGresult *res, int row, struct order_record *o)
{
        *o = (struct order_record) { 0 };
        if (charge_status_from_name(PQgetvalue(res, row, 2), &o->status) < 0)
                return -EIO;
        copy_col(res, row, 0, o->charge_id, sizeof(o->charge_id));
        o->amount = strtoll(PQgetvalue(res, row, 3), NULL, 10);
        copy_col(res, row, 4, o->currency, sizeof(o->currency));
        o->charge_created = strtoll(PQgetvalue(res, row, 7), NULL, 10);
        copy_col(res, row, 8, o->first_seen_at, sizeof(o->first_seen_at));
        copy_col(res, row, 9, o->updated_at, sizeof(o->updated_at));
        copy_col(res, row, 10, o->captured_at, sizeof(o->captured_at));
        copy_col(res, row, 11, o->failed_at, sizeof(o->failed_at));
        copy_col(res, row, 12, o->fulfilled_at, sizeof(o->fulfilled_at));
        o->needs_review = strcmp(PQgetvalue(res, row, 13), "t") == 0;
        copy_col(res, row, 14, o->return_ref, sizeof(o->return_ref));
        copy_col(res, row, 15, o->next_check_at, sizeof(o->next_check_at));
        if (dup_col(res, row, 1, &o->order_ref) < 0 || dup_col(res, row, 5, &o->description) < 0 ||
            dup_col(res, row, 6, &o->transaction_url) < 0) {
                order_record_clear(o);
                return -ENOMEM;
        }
        return 0;
}

static int get_order_once(struct pg_store *p, const char *charge_id, struct order_record *o)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        const char *params[] = { charge_id };
        int r;

        *o = (struct order_record) { 0 };
        r = pg_store_run(p, PG_ORDER_GET, params, 1, false, 0, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return -ENOENT;
        return pg_order_from_row(res, 0, o);
}

/*
 * A connection idle across a server restart only shows it is dead when it
 * is next used. Reads are safe to repeat, so they go again once on a fresh
 * connection (pg_store_conn() reconnects at once after a first loss)
 * instead of failing one page view or health check per idle handle.
 */
int pg_store_get_order(struct pg_store *p, const char *charge_id, struct order_record *o)
{
        int r = get_order_once(p, charge_id, o);

        return r == -ECONNRESET ? get_order_once(p, charge_id, o) : r;
}

int pg_store_health(struct pg_store *p)
{
        /* touches the schema, as SQLite's health check does */
        int r = pg_store_exec(p, "SELECT 1 FROM orders LIMIT 1");

        return r == -ECONNRESET ? pg_store_exec(p, "SELECT 1 FROM orders LIMIT 1") : r;
}

/*
 * The idle writer's look at its connection, each idle second (writer.c's
 * recheck()). PQstatus() changes only when libpq reads or writes, so a
 * connection the kernel has given up while nothing was in flight (the
 * server's host gone silent: keepalive probes unanswered for
 * tcp_user_timeout) would look fine - /healthz ready, nothing in the log -
 * until the next webhook found it dead. A poll() that does not wait sees
 * the socket's error (or a terminated backend's goodbye), and
 * PQconsumeInput() takes it in; nothing is sent, so an idle connection
 * stays idle and the keepalives alone do the watching. A connection found
 * lost is replaced at once (the first try after a loss waits for no
 * backoff): a server that merely restarted costs not even a 503 on
 * /healthz, and a host that is gone shows there and in the log before any
 * webhook arrives.
 */
int pg_store_check_connection(struct pg_store *p)
{
        struct pollfd pfd = { .fd = p->conn ? PQsocket(p->conn) : -1, .events = POLLIN };
        char why[512];

        if (!p->conn || PQstatus(p->conn) != CONNECTION_OK)
                return -ECONNRESET;
        if (poll(&pfd, 1, 0) <= 0 || (PQconsumeInput(p->conn) && PQstatus(p->conn) == CONNECTION_OK))
                return 0;
        if (!p->read_only)
                log_warning("the connection to PostgreSQL was lost while idle: %s; connecting again",
                            pg_one_line(PQerrorMessage(p->conn), why, sizeof(why)));
        PQfinish(p->conn);
        p->conn = NULL;
        return pg_store_conn(p);
}

int pg_store_probe_write(struct pg_store *p)
{
        int r;

        if (p->read_only)
                return -EROFS;
        /* A commit record alone goes to pg_wal, which may have room while
         * the database's own disk is full: a temporary table (in the
         * database's tablespace, as temp_tablespaces is empty by default)
         * given one row must grow a file there, as a webhook's rows do. */
        r = pg_store_exec(p, "BEGIN; CREATE TEMPORARY TABLE cashpayd_probe (x integer) "
                             "ON COMMIT DROP; INSERT INTO cashpayd_probe VALUES (1); COMMIT");
        if (r < 0 && p->conn)
                pg_store_exec(p, "ROLLBACK");
        return r;
}

int pg_store_prune_rejected(struct pg_store *p, const char *cutoff_iso, unsigned limit,
                            bool dry_run, int64_t *ret_count)
{
        _cleanup_(PQclearp) PGresult *res = NULL;
        char lim[24];
        const char *params[] = { cutoff_iso, lim };
        int r;

        if (!dry_run && p->read_only)
                return -EROFS;
        snprintf(lim, sizeof(lim), "%" PRId64, limit ? (int64_t) limit : INT64_MAX);
        r = pg_store_run(p, dry_run ? PG_REJECTED_PRUNE_COUNT : PG_REJECTED_PRUNE, params, 2,
                         false, 0, &res);
        if (r < 0)
                return r;
        *ret_count = dry_run ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                             : strtoll(PQcmdTuples(res), NULL, 10);
        if (!dry_run && p->rejected_rows >= 0) {
                p->rejected_rows -= *ret_count;
                if (p->rejected_rows < 0)
                        p->rejected_rows = 0;
        }
        return 0;
}

int64_t pg_store_rejected_rows(struct pg_store *p)
{
        return p->max_rejected > 0 ? p->rejected_rows : -1;
}
