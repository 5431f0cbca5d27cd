/*
 * test-store — the SQLite store against real database files: schema and
 * migrations, every path of the state machine as rows on disk, rejected
 * deliveries, the schema's own guards (CHECKs, append-only triggers), the
 * view fulfilment code polls, lock contention and file modes.
 *
 * Rows are checked through a second, plain SQLite connection, the way the
 * merchant's code would see them. Ends with a short throughput printout
 * (no timed assertion).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cashpay/store.h"
#include "cashpay/timeutil.h"
#include "tests/check.h"

static char tmpdir[256];

/* ---- helpers: paths, a plain SQLite connection, deliveries ---- */

static const char *db_path(const char *name)
{
        static char buf[4][512];
        static unsigned i;
        char *p = buf[i++ % 4];

        snprintf(p, sizeof(buf[0]), "%s/%s", tmpdir, name);
        return p;
}

static struct store *open_with(const struct store_options *o)
{
        struct store *s = NULL;
        char err[256];
        int r = store_new(o, &s, err, sizeof(err));

        if (r < 0)
                FAIL("store_new(%s): %d %s", o->path, r, err);
        return s;
}

static struct store *open_store(const char *path, unsigned busy_ms)
{
        struct store_options o = {
                .path = path, .synchronous = DB_SYNC_FULL,
                .busy_timeout_ms = busy_ms, .migrate = true,
        };

        return open_with(&o);
}

static int try_open(const char *path, bool read_only, bool migrate, char *err, size_t len)
{
        struct store_options o = {
                .path = path, .synchronous = DB_SYNC_NORMAL, .busy_timeout_ms = 100,
                .read_only = read_only, .migrate = migrate,
        };
        struct store *s = NULL;
        int r = store_new(&o, &s, err, len);

        store_free(s);
        return r;
}

static sqlite3 *raw_open(const char *path)
{
        sqlite3 *db = NULL;

        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
                FAIL("raw open %s: %s", path, sqlite3_errmsg(db));
        sqlite3_busy_timeout(db, 2000);
        return db;
}

static int raw_exec(sqlite3 *db, const char *sql)
{
        return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* The first column of the first row of a query formatted by
 * sqlite3_vmprintf (%Q quotes a string) as an integer; -1 for no row, -2
 * for NULL. */
static int64_t q_int(sqlite3 *db, const char *fmt, ...)
{
        char *sql;
        sqlite3_stmt *st;
        va_list ap;
        int64_t v = -1;

        va_start(ap, fmt);
        sql = sqlite3_vmprintf(fmt, ap);
        va_end(ap);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
                FAIL("prepare %s: %s", sql, sqlite3_errmsg(db));
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -2 : sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_free(sql);
        return v;
}

/* Same, as text copied into a static buffer; "(null)" / "(no row)". */
static const char *q_text(sqlite3 *db, const char *fmt, ...)
{
        static char buf[4][512];
        static unsigned i;
        char *out = buf[i++ % 4], *sql;
        sqlite3_stmt *st;
        va_list ap;

        va_start(ap, fmt);
        sql = sqlite3_vmprintf(fmt, ap);
        va_end(ap);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
                FAIL("prepare %s: %s", sql, sqlite3_errmsg(db));
        if (sqlite3_step(st) != SQLITE_ROW)
                snprintf(out, sizeof(buf[0]), "(no row)");
        else if (sqlite3_column_type(st, 0) == SQLITE_NULL)
                snprintf(out, sizeof(buf[0]), "(null)");
        else
                snprintf(out, sizeof(buf[0]), "%s", sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_free(sql);
        return out;
}

static char *xstrdup(const char *s)
{
        char *p = s ? strdup(s) : NULL;

        if (s && !p)
                FAIL("out of memory");
        return p;
}

static void fill_request(struct delivery *d, const char *message_id)
{
        char body[256];
        int n;

        time_format_iso(time_now_ms(), d->received_at);
        snprintf(d->remote_addr, sizeof(d->remote_addr), "127.0.0.1");
        d->message_id = xstrdup(message_id);
        n = snprintf(body, sizeof(body), "{\"id\":\"%s\"}", d->charge.id);
        d->body = (uint8_t *) xstrdup(body);
        d->body_len = (size_t) n;
}

/* An accepted (verified, parsed) delivery. */
static struct delivery *accepted(const char *id, enum charge_status status, int64_t amount,
                                 const char *currency, const char *message_id)
{
        struct delivery *d = calloc(1, sizeof(*d));

        if (!d)
                FAIL("out of memory");
        d->has_charge = true;
        snprintf(d->charge.id, sizeof(d->charge.id), "%s", id);
        d->charge.status = status;
        d->charge.amount = amount;
        snprintf(d->charge.currency, sizeof(d->charge.currency), "%s", currency);
        d->charge.created = 1672531200;
        d->charge.description = xstrdup("Purchase of a watch");
        d->charge.transaction_url = xstrdup("https://pay.example/session/1");
        fill_request(d, message_id);
        return d;
}

static struct delivery *rejected(const char *id, enum outcome as, int http, const char *error)
{
        struct delivery *d = calloc(1, sizeof(*d));

        if (!d)
                FAIL("out of memory");
        snprintf(d->charge.id, sizeof(d->charge.id), "%s", id ? id : "");
        d->rejected_as = as;
        d->rejected_status = http;
        d->error = xstrdup(error);
        fill_request(d, NULL);
        return d;
}

/* A new charge, applied. */
static struct delivery *accepted_delivery(const char *id)
{
        return accepted(id, CHARGE_INITIATED, 100, "YER", NULL);
}

static void free_delivery(struct delivery *d)
{
        delivery_clear(d);
        free(d);
}

/* Submits one delivery alone and expects the commit to succeed. */
static struct delivery *submit1(struct store *s, struct delivery *d)
{
        int r = store_submit(s, &d, 1);

        if (r < 0)
                FAIL("store_submit: %d (%s)", r, store_strerror(r));
        return d;
}

static int64_t count(sqlite3 *db, const char *table)
{
        return q_int(db, "SELECT count(*) FROM %s", table);
}

/* ---- schema and migrations ---- */

static bool is_iso_ms(const char *t)
{
        return strlen(t) == TIME_ISO_LEN - 1 && t[4] == '-' && t[10] == 'T' &&
               t[19] == '.' && t[23] == 'Z';
}

static void check_mode(const char *path, mode_t want)
{
        struct stat st;

        if (stat(path, &st) < 0)
                FAIL("stat %s: %s", path, strerror(errno));
        CHECK((st.st_mode & 07777) == want, "%s has mode %04o, expected %04o", path,
              st.st_mode & 07777, want);
}

static void test_fresh_schema(void)
{
        const char *path = db_path("fresh.db");
        char wal[600], shm[600];
        struct store *s = open_store(path, 1000);
        sqlite3 *db = raw_open(path);

        CHECK_EQ_INT(store_schema_version(), 3);
        CHECK_EQ_INT(q_int(db, "PRAGMA user_version"), store_schema_version());
        CHECK_STR(q_text(db, "PRAGMA journal_mode"), "wal");
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
                            "('orders', 'order_events', 'webhook_deliveries')"), 3);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'view' "
                            "AND name = 'orders_to_fulfil'"), 1);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' "
                            "AND tbl_name = 'order_events'"), 2);
        CHECK_EQ_INT(q_int(db, "SELECT strict FROM pragma_table_list WHERE name = 'orders'"), 1);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM pragma_foreign_key_list('order_events')"), 3);
        CHECK_STR(q_text(db, "SELECT name FROM pragma_index_list('webhook_deliveries') "
                             "WHERE name = 'webhook_deliveries_message_idx' AND partial = 1"),
                  "webhook_deliveries_message_idx");
        CHECK_EQ_INT(store_health(s), 0);

        /* umask 007 (set in main): the merchant's group reads and writes */
        snprintf(wal, sizeof(wal), "%s-wal", path);
        snprintf(shm, sizeof(shm), "%s-shm", path);
        check_mode(path, 0660);
        check_mode(wal, 0660);
        check_mode(shm, 0660);
        sqlite3_close(db);
        store_free(s);
}

static void test_reopen_and_versions(void)
{
        const char *path = db_path("fresh.db");
        char err[256];
        sqlite3 *db;

        /* re-open is idempotent, read-only open of a current schema works */
        CHECK_EQ_INT(try_open(path, false, true, err, sizeof(err)), 0);
        CHECK_EQ_INT(try_open(path, false, true, err, sizeof(err)), 0);
        CHECK_EQ_INT(try_open(path, true, false, err, sizeof(err)), 0);
        db = raw_open(path);
        CHECK_EQ_INT(q_int(db, "PRAGMA user_version"), 3);
        CHECK_EQ_INT(raw_exec(db, "PRAGMA user_version = 4"), SQLITE_OK);
        sqlite3_close(db);

        CHECK_EQ_INT(try_open(path, false, true, err, sizeof(err)), -EPROTO);
        CHECK_STR(err, "database schema version 4 is newer than this program (knows 3); "
                       "refusing to open");
        CHECK_EQ_INT(try_open(path, true, false, err, sizeof(err)), -EPROTO);
        CHECK(strstr(err, "is newer than this program") != NULL);
        /* refused means untouched */
        db = raw_open(path);
        CHECK_EQ_INT(q_int(db, "PRAGMA user_version"), 4);
        CHECK_EQ_INT(raw_exec(db, "PRAGMA user_version = 3"), SQLITE_OK);
        sqlite3_close(db);
        CHECK_EQ_INT(try_open(path, false, true, err, sizeof(err)), 0);
}

static void test_open_refusals(void)
{
        const char *old = db_path("old.db"), *missing = db_path("missing.db");
        char err[256];
        sqlite3 *db;

        /* version 0: a read-only or non-migrating open must not migrate it */
        db = NULL;
        CHECK_EQ_INT(sqlite3_open(old, &db), SQLITE_OK);
        CHECK_EQ_INT(raw_exec(db, "CREATE TABLE x (a)"), SQLITE_OK);
        sqlite3_close(db);
        CHECK_EQ_INT(try_open(old, true, false, err, sizeof(err)), -EPROTO);
        CHECK(strstr(err, "database schema version 0 is older than this program (needs 3)"));
        CHECK_EQ_INT(try_open(old, false, false, err, sizeof(err)), -EPROTO);
        db = raw_open(old);
        CHECK_EQ_INT(q_int(db, "PRAGMA user_version"), 0);
        sqlite3_close(db);

        /* a migration that fails names itself and leaves no trace */
        db = raw_open(old);
        CHECK_EQ_INT(raw_exec(db, "CREATE TABLE orders (a)"), SQLITE_OK);
        sqlite3_close(db);
        CHECK(try_open(old, false, true, err, sizeof(err)) < 0);
        CHECK(strstr(err, "migration 0001_init failed") != NULL);
        db = raw_open(old);
        CHECK_EQ_INT(q_int(db, "PRAGMA user_version"), 0);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'order_events'"), 0);
        sqlite3_close(db);

        CHECK_EQ_INT(try_open(missing, true, false, err, sizeof(err)), -ENOENT);
        CHECK(err[0] != '\0');
        CHECK_EQ_INT(try_open(missing, false, false, err, sizeof(err)), -ENOENT);
        CHECK(access(missing, F_OK) < 0);
        CHECK_EQ_INT(try_open(NULL, false, true, err, sizeof(err)), -EINVAL);
}

/* ---- the state machine through store_submit ---- */

#define ORDER(col) "SELECT " col " FROM orders WHERE charge_id = %Q"
#define DELIVERY(col) "SELECT " col " FROM webhook_deliveries WHERE id = %" PRId64

static void check_applied_first(sqlite3 *db, const struct delivery *d, const char *status)
{
        const char *id = d->charge.id;

        CHECK_EQ_INT(d->fault, 0);
        CHECK_EQ_INT(d->outcome, OUTCOME_APPLIED);
        CHECK_EQ_INT(d->http_status, 200);
        CHECK(d->transition.insert_order);
        CHECK(!d->had_order);
        CHECK(d->id > 0);
        CHECK(d->event_id > 0);
        CHECK_STR(q_text(db, ORDER("status"), id), status);
        CHECK_EQ_INT(q_int(db, ORDER("amount"), id), d->charge.amount);
        CHECK_STR(q_text(db, ORDER("currency"), id), d->charge.currency);
        CHECK_STR(q_text(db, ORDER("description"), id), "Purchase of a watch");
        CHECK_STR(q_text(db, ORDER("transaction_url"), id), "https://pay.example/session/1");
        CHECK_EQ_INT(q_int(db, ORDER("charge_created"), id), 1672531200);
        CHECK_EQ_INT(q_int(db, ORDER("needs_review"), id), 0);
        CHECK(is_iso_ms(q_text(db, ORDER("first_seen_at"), id)));
        CHECK_EQ_INT(q_int(db, ORDER("first_seen_at = updated_at"), id), 1);
        CHECK_EQ_INT(q_int(db, ORDER("fulfilled_at IS NULL"), id), 1);
        CHECK_EQ_INT(q_int(db, "SELECT from_status IS NULL AND to_status = %Q AND delivery_id = %"
                            PRId64 " AND charge_id = %Q FROM order_events WHERE id = %" PRId64,
                        status, d->id, id, d->event_id), 1);
        CHECK_STR(q_text(db, DELIVERY("outcome"), d->id), "applied");
        CHECK_EQ_INT(q_int(db, DELIVERY("http_status"), d->id), 200);
        CHECK_STR(q_text(db, DELIVERY("claimed_status"), d->id), status);
        CHECK_STR(q_text(db, DELIVERY("charge_id"), d->id), id);
        CHECK_STR(q_text(db, DELIVERY("error"), d->id), "(null)");
        CHECK_STR(q_text(db, DELIVERY("remote_addr"), d->id), "127.0.0.1");
        CHECK_STR(q_text(db, DELIVERY("received_at"), d->id), d->received_at);
        CHECK_EQ_INT(q_int(db, DELIVERY("length(body)"), d->id), (int64_t) d->body_len);
        CHECK_STR(q_text(db, DELIVERY("CAST(body AS TEXT)"), d->id), (const char *) d->body);
}

/* A delivery that changed nothing: its row explains why, no event. */
static void check_no_change(sqlite3 *db, const struct delivery *d, enum outcome o,
                            const char *name, int64_t events_before)
{
        CHECK_EQ_INT(d->fault, 0);
        CHECK_EQ_INT(d->outcome, o);
        CHECK_EQ_INT(d->http_status, 200);
        CHECK_EQ_INT(d->event_id, 0);
        CHECK(!d->transition.change_status);
        CHECK_EQ_INT(count(db, "order_events"), events_before);
        CHECK_STR(q_text(db, DELIVERY("outcome"), d->id), name);
        CHECK_STR(q_text(db, DELIVERY("error"), d->id), d->transition.reason);
}

static void test_initiated_captured_paths(struct store *s, sqlite3 *db)
{
        const char *id = "chg_path1";
        struct delivery *d1, *d2, *d3, *d4, *d5;
        char updated[64];
        int64_t ev;

        d1 = submit1(s, accepted(id, CHARGE_INITIATED, 2000, "YER", NULL));
        check_applied_first(db, d1, "INITIATED");
        CHECK_EQ_INT(q_int(db, ORDER("captured_at IS NULL AND failed_at IS NULL"), id), 1);

        d2 = submit1(s, accepted(id, CHARGE_CAPTURED, 2000, "YER", NULL));
        CHECK_EQ_INT(d2->outcome, OUTCOME_APPLIED);
        CHECK(d2->had_order);
        CHECK_EQ_INT(d2->previous, CHARGE_INITIATED);
        CHECK_STR(q_text(db, ORDER("status"), id), "CAPTURED");
        CHECK_EQ_INT(q_int(db, ORDER("captured_at = updated_at AND failed_at IS NULL"), id), 1);
        CHECK_EQ_INT(q_int(db, "SELECT from_status = 'INITIATED' AND to_status = 'CAPTURED' AND "
                            "delivery_id = %" PRId64 " FROM order_events WHERE id = %" PRId64,
                        d2->id, d2->event_id), 1);
        CHECK(d2->event_id > d1->event_id);
        snprintf(updated, sizeof(updated), "%s", q_text(db, ORDER("updated_at"), id));

        ev = count(db, "order_events");
        d3 = submit1(s, accepted(id, CHARGE_CAPTURED, 2000, "YER", NULL));
        check_no_change(db, d3, OUTCOME_DUPLICATE, "duplicate", ev);
        CHECK_STR(q_text(db, ORDER("updated_at"), id), updated);

        d4 = submit1(s, accepted(id, CHARGE_INITIATED, 2000, "YER", NULL));
        check_no_change(db, d4, OUTCOME_STALE, "stale", ev);
        CHECK_STR(q_text(db, ORDER("status"), id), "CAPTURED");
        CHECK_EQ_INT(q_int(db, ORDER("needs_review"), id), 0);

        /* CAPTURED → FAILED: never undone, held for a human */
        d5 = submit1(s, accepted(id, CHARGE_FAILED, 2000, "YER", NULL));
        check_no_change(db, d5, OUTCOME_CONFLICT, "conflict", ev);
        CHECK(d5->transition.flag_review);
        CHECK_STR(q_text(db, ORDER("status"), id), "CAPTURED");
        CHECK_EQ_INT(q_int(db, ORDER("needs_review"), id), 1);
        CHECK_EQ_INT(q_int(db, ORDER("failed_at IS NULL"), id), 1);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM webhook_deliveries WHERE charge_id = %Q", id), 5);
        free_delivery(d1), free_delivery(d2), free_delivery(d3);
        free_delivery(d4), free_delivery(d5);
}

static void test_failed_paths(struct store *s, sqlite3 *db)
{
        struct delivery *d1, *d2, *d3, *d4, *d5;

        d1 = submit1(s, accepted("chg_path2", CHARGE_FAILED, 500, "USD", NULL));
        check_applied_first(db, d1, "FAILED");
        CHECK_EQ_INT(q_int(db, ORDER("failed_at = first_seen_at AND captured_at IS NULL"),
                        "chg_path2"), 1);

        /* money arrived late: applied, both times kept, worth a warning */
        d2 = submit1(s, accepted("chg_path2", CHARGE_CAPTURED, 500, "USD", NULL));
        CHECK_EQ_INT(d2->outcome, OUTCOME_APPLIED);
        CHECK(d2->transition.warn);
        CHECK_EQ_INT(d2->previous, CHARGE_FAILED);
        CHECK_STR(q_text(db, ORDER("status"), "chg_path2"), "CAPTURED");
        CHECK_EQ_INT(q_int(db, ORDER("captured_at IS NOT NULL AND failed_at IS NOT NULL"),
                        "chg_path2"), 1);
        CHECK_STR(q_text(db, "SELECT from_status || '>' || to_status FROM order_events "
                             "WHERE id = %" PRId64, d2->event_id), "FAILED>CAPTURED");

        d3 = submit1(s, accepted("chg_path3", CHARGE_INITIATED, 700, "EUR", NULL));
        d4 = submit1(s, accepted("chg_path3", CHARGE_FAILED, 700, "EUR", NULL));
        CHECK_EQ_INT(d4->outcome, OUTCOME_APPLIED);
        CHECK_STR(q_text(db, ORDER("status"), "chg_path3"), "FAILED");
        CHECK_EQ_INT(q_int(db, ORDER("failed_at IS NOT NULL AND captured_at IS NULL"),
                        "chg_path3"), 1);

        /* FAILED → INITIATED is stale */
        d5 = submit1(s, accepted("chg_path3", CHARGE_INITIATED, 700, "EUR", NULL));
        CHECK_EQ_INT(d5->outcome, OUTCOME_STALE);
        CHECK_STR(q_text(db, ORDER("status"), "chg_path3"), "FAILED");
        free_delivery(d1), free_delivery(d2), free_delivery(d3);
        free_delivery(d4), free_delivery(d5);
}

static void test_terms_conflict(struct store *s, sqlite3 *db)
{
        struct delivery *d1, *d2, *d3, *d4;
        int64_t ev;

        d1 = submit1(s, accepted("chg_path4", CHARGE_CAPTURED, 900, "YER", NULL));
        check_applied_first(db, d1, "CAPTURED");
        CHECK_EQ_INT(q_int(db, ORDER("captured_at = first_seen_at"), "chg_path4"), 1);

        d2 = submit1(s, accepted("chg_path5", CHARGE_INITIATED, 900, "YER", NULL));
        ev = count(db, "order_events");
        /* an amount or currency change wins over the status rules */
        d3 = submit1(s, accepted("chg_path5", CHARGE_CAPTURED, 901, "YER", NULL));
        check_no_change(db, d3, OUTCOME_CONFLICT, "conflict", ev);
        CHECK_STR(q_text(db, ORDER("status"), "chg_path5"), "INITIATED");
        CHECK_EQ_INT(q_int(db, ORDER("amount"), "chg_path5"), 900);
        CHECK_EQ_INT(q_int(db, ORDER("needs_review"), "chg_path5"), 1);

        d4 = submit1(s, accepted("chg_path4", CHARGE_CAPTURED, 900, "USD", NULL));
        check_no_change(db, d4, OUTCOME_CONFLICT, "conflict", ev);
        CHECK_STR(q_text(db, ORDER("currency"), "chg_path4"), "YER");
        CHECK_EQ_INT(q_int(db, ORDER("needs_review"), "chg_path4"), 1);
        free_delivery(d1), free_delivery(d2), free_delivery(d3), free_delivery(d4);
}

static void test_batch_same_charge(struct store *s, sqlite3 *db)
{
        struct delivery *b[3] = {
                accepted("chg_batch", CHARGE_INITIATED, 100, "YER", NULL),
                accepted("chg_batch", CHARGE_CAPTURED, 100, "YER", NULL),
                accepted("chg_batch", CHARGE_CAPTURED, 100, "YER", NULL),
        };

        CHECK_EQ_INT(store_submit(s, b, 3), 0);
        CHECK_EQ_INT(b[0]->outcome, OUTCOME_APPLIED);
        CHECK(!b[0]->had_order);
        CHECK_EQ_INT(b[1]->outcome, OUTCOME_APPLIED);
        CHECK(b[1]->had_order);
        CHECK_EQ_INT(b[1]->previous, CHARGE_INITIATED);
        CHECK_EQ_INT(b[2]->outcome, OUTCOME_DUPLICATE);
        CHECK(b[0]->id < b[1]->id && b[1]->id < b[2]->id);
        CHECK(b[0]->event_id < b[1]->event_id);
        CHECK_EQ_INT(b[2]->event_id, 0);
        CHECK_STR(q_text(db, ORDER("status"), "chg_batch"), "CAPTURED");
        CHECK_STR(q_text(db, "SELECT group_concat(coalesce(from_status, '-') || '>' || to_status, "
                             "' ') FROM (SELECT * FROM order_events WHERE charge_id = "
                             "'chg_batch' ORDER BY id)"), "->INITIATED INITIATED>CAPTURED");
        for (size_t i = 0; i < 3; i++)
                free_delivery(b[i]);
}

static void test_message_id(struct store *s, sqlite3 *db)
{
        struct delivery *d1, *d2, *d3, *d4, *b[2];
        int64_t ev;

        d1 = submit1(s, accepted("chg_msg1", CHARGE_INITIATED, 100, "YER", "msg_1"));
        CHECK_EQ_INT(d1->outcome, OUTCOME_APPLIED);
        CHECK_STR(q_text(db, DELIVERY("message_id"), d1->id), "msg_1");
        ev = count(db, "order_events");
        /* same webhook-id: duplicate without looking at the status */
        d2 = submit1(s, accepted("chg_msg1", CHARGE_CAPTURED, 100, "YER", "msg_1"));
        check_no_change(db, d2, OUTCOME_DUPLICATE, "duplicate", ev);
        CHECK_STR(q_text(db, DELIVERY("error"), d2->id), "message id already recorded");
        CHECK_STR(q_text(db, ORDER("status"), "chg_msg1"), "INITIATED");

        /* a rejected delivery does not count as seen */
        d3 = rejected("chg_msg1", OUTCOME_UNAUTHORIZED, 401, NULL);
        free(d3->message_id);
        d3->message_id = xstrdup("msg_2");
        submit1(s, d3);
        d4 = submit1(s, accepted("chg_msg1", CHARGE_CAPTURED, 100, "YER", "msg_2"));
        CHECK_EQ_INT(d4->outcome, OUTCOME_APPLIED);
        CHECK_STR(q_text(db, ORDER("status"), "chg_msg1"), "CAPTURED");

        /* the same id twice in one batch */
        b[0] = accepted("chg_msg2", CHARGE_INITIATED, 100, "YER", "msg_3");
        b[1] = accepted("chg_msg2", CHARGE_CAPTURED, 100, "YER", "msg_3");
        CHECK_EQ_INT(store_submit(s, b, 2), 0);
        CHECK_EQ_INT(b[0]->outcome, OUTCOME_APPLIED);
        CHECK_EQ_INT(b[1]->outcome, OUTCOME_DUPLICATE);
        CHECK_STR(q_text(db, ORDER("status"), "chg_msg2"), "INITIATED");
        free_delivery(b[0]), free_delivery(b[1]);

        /* an empty id is no id: both applied, stored as NULL */
        b[0] = accepted("chg_msg3", CHARGE_INITIATED, 100, "YER", "");
        b[1] = accepted("chg_msg3", CHARGE_CAPTURED, 100, "YER", "");
        CHECK_EQ_INT(store_submit(s, b, 2), 0);
        CHECK_EQ_INT(b[1]->outcome, OUTCOME_APPLIED);
        CHECK_STR(q_text(db, DELIVERY("message_id"), b[1]->id), "(null)");
        free_delivery(d1), free_delivery(d2), free_delivery(d3), free_delivery(d4);
        free_delivery(b[0]), free_delivery(b[1]);
}

static void test_rejected_rows(struct store *s, sqlite3 *db)
{
        struct delivery *b[4] = {
                rejected("chg_rej1", OUTCOME_INVALID, 400, "amount must be an integer"),
                rejected(NULL, OUTCOME_UNAUTHORIZED, 401, NULL),
                rejected(NULL, OUTCOME_FORBIDDEN, 403, NULL),
                rejected(NULL, OUTCOME_INVALID, 400, NULL),
        };
        int64_t orders = count(db, "orders");

        /* an empty body is kept as an empty blob, not NULL */
        free(b[3]->body);
        b[3]->body = NULL;
        b[3]->body_len = 0;
        CHECK_EQ_INT(store_submit(s, b, 4), 0);
        CHECK_EQ_INT(b[0]->outcome, OUTCOME_INVALID);
        CHECK_EQ_INT(b[0]->http_status, 400);
        CHECK_STR(q_text(db, DELIVERY("outcome || ' ' || http_status"), b[0]->id), "invalid 400");
        CHECK_STR(q_text(db, DELIVERY("charge_id"), b[0]->id), "chg_rej1");
        CHECK_STR(q_text(db, DELIVERY("error"), b[0]->id), "amount must be an integer");
        CHECK_STR(q_text(db, DELIVERY("claimed_status"), b[0]->id), "(null)");
        CHECK_STR(q_text(db, DELIVERY("CAST(body AS TEXT)"), b[0]->id), "{\"id\":\"chg_rej1\"}");
        CHECK_STR(q_text(db, DELIVERY("outcome || ' ' || http_status"), b[1]->id),
                  "unauthorized 401");
        CHECK_STR(q_text(db, DELIVERY("charge_id"), b[1]->id), "(null)");
        CHECK_STR(q_text(db, DELIVERY("error"), b[1]->id), "(null)");
        CHECK_STR(q_text(db, DELIVERY("outcome || ' ' || http_status"), b[2]->id), "forbidden 403");
        CHECK_EQ_INT(b[2]->http_status, 403);
        CHECK_STR(q_text(db, DELIVERY("typeof(body) || length(body)"), b[3]->id), "blob0");
        CHECK_EQ_INT(count(db, "orders"), orders);
        for (size_t i = 0; i < 4; i++)
                free_delivery(b[i]);
}

/* One bad delivery is refused alone; the rest of its batch commits. */
static void test_delivery_fault(struct store *s, sqlite3 *db)
{
        struct delivery *b[4] = {
                accepted("chg_fault1", CHARGE_INITIATED, 100, "YER", NULL),
                accepted("chg_fault2", CHARGE_INITIATED, 100, "yer", NULL), /* CHECK */
                rejected(NULL, OUTCOME_APPLIED, 200, NULL),                 /* not a rejection */
                accepted("chg_fault3", CHARGE_CAPTURED, 100, "YER", NULL),
        };
        int64_t deliveries = count(db, "webhook_deliveries");

        CHECK_EQ_INT(store_submit(s, b, 4), 0);
        CHECK_EQ_INT(b[0]->fault, 0);
        CHECK_EQ_INT(b[1]->fault, -EINVAL);
        CHECK_EQ_INT(b[1]->http_status, 500);
        CHECK_EQ_INT(b[1]->id, 0);
        CHECK_EQ_INT(b[1]->event_id, 0);
        CHECK_EQ_INT(b[2]->fault, -EINVAL);
        CHECK_EQ_INT(b[3]->fault, 0);
        CHECK_EQ_INT(b[3]->outcome, OUTCOME_APPLIED);
        CHECK_EQ_INT(count(db, "webhook_deliveries"), deliveries + 2);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM orders WHERE charge_id = 'chg_fault2'"), 0);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM webhook_deliveries WHERE charge_id = "
                            "'chg_fault2'"), 0);
        CHECK_STR(q_text(db, ORDER("status"), "chg_fault3"), "CAPTURED");
        for (size_t i = 0; i < 4; i++)
                free_delivery(b[i]);

        /* alone in its batch: the commit (of nothing) still succeeds */
        b[0] = accepted("chg_fault4", CHARGE_INITIATED, -5, "YER", NULL);
        CHECK_EQ_INT(store_submit(s, b, 1), 0);
        CHECK_EQ_INT(b[0]->fault, -EINVAL);
        CHECK_EQ_INT(count(db, "webhook_deliveries"), deliveries + 2);
        free_delivery(b[0]);
}

static void test_get_order(struct store *s)
{
        struct order_record o;

        CHECK_EQ_INT(store_get_order(s, "chg_path1", &o), 0);
        CHECK_STR(o.charge_id, "chg_path1");
        CHECK_EQ_INT(o.status, CHARGE_CAPTURED);
        CHECK_EQ_INT(o.amount, 2000);
        CHECK_STR(o.currency, "YER");
        CHECK_STR(o.description, "Purchase of a watch");
        CHECK(o.order_ref == NULL);
        CHECK(is_iso_ms(o.captured_at));
        CHECK_STR(o.failed_at, "");
        CHECK_STR(o.fulfilled_at, "");
        CHECK(o.needs_review);
        order_record_clear(&o);
        CHECK_EQ_INT(store_get_order(s, "chg_nobody", &o), -ENOENT);
        order_record_clear(&o);
}

/* ---- the schema's own guards ---- */

static void check_refused(sqlite3 *db, const char *sql, const char *msg)
{
        int rc = raw_exec(db, sql);

        CHECK((rc & 0xff) == SQLITE_CONSTRAINT, "not refused (%d): %s", rc, sql);
        CHECK(!msg || strstr(sqlite3_errmsg(db), msg), "refused as \"%s\", expected \"%s\": %s",
              sqlite3_errmsg(db), msg, sql);
}

#define NOW "'2026-11-25T20:31:38.123Z'"
#define ORDER_INSERT(id, status, amount, currency, extra_cols, extra_vals)                   \
        "INSERT INTO orders (charge_id, status, amount, currency, first_seen_at, updated_at, " \
        "captured_at" extra_cols ") VALUES (" id ", " status ", " amount ", " currency ", "    \
        NOW ", " NOW ", " NOW extra_vals ")"

static void test_append_only(sqlite3 *db)
{
        check_refused(db, "UPDATE order_events SET to_status = 'FAILED'",
                      "order_events is append-only");
        check_refused(db, "DELETE FROM order_events", "order_events is append-only");
        check_refused(db, "UPDATE webhook_deliveries SET outcome = 'stale'", "never updated");
        check_refused(db, "DELETE FROM webhook_deliveries WHERE outcome = 'applied'",
                      "only rejected");
        CHECK_EQ_INT(raw_exec(db, "DELETE FROM webhook_deliveries WHERE outcome = 'forbidden'"),
                  SQLITE_OK);
        CHECK_EQ_INT(sqlite3_changes(db), 1);
        /* an order with history cannot vanish (foreign key) */
        CHECK_EQ_INT(raw_exec(db, "PRAGMA foreign_keys = ON"), SQLITE_OK);
        check_refused(db, "DELETE FROM orders WHERE charge_id = 'chg_path1'", "FOREIGN KEY");
}

static void test_checks(sqlite3 *db)
{
        static const char *const bad[] = {
                ORDER_INSERT("'chg_c1'", "'PAID'", "1", "'YER'", "", ""),
                ORDER_INSERT("'chg_c1'", "'CAPTURED'", "-1", "'YER'", "", ""),
                ORDER_INSERT("'chg_c1'", "'CAPTURED'", "9007199254740992", "'YER'", "", ""),
                ORDER_INSERT("'chg_c1'", "'CAPTURED'", "'12x'", "'YER'", "", ""),
                ORDER_INSERT("'chg_c1'", "'CAPTURED'", "1", "'US'", "", ""),
                ORDER_INSERT("'chg_c1'", "'CAPTURED'", "1", "'usd'", "", ""),
                ORDER_INSERT("'CHG_c1'", "'CAPTURED'", "1", "'YER'", "", ""),
                ORDER_INSERT("'chg_'", "'CAPTURED'", "1", "'YER'", "", ""),
                ORDER_INSERT("'chg_a/b'", "'CAPTURED'", "1", "'YER'", "", ""),
                ORDER_INSERT("'chg_c1'", "'CAPTURED'", "1", "'YER'", ", needs_review", ", 2"),
                ORDER_INSERT("'chg_c1'", "'CAPTURED'", "1", "'YER'", ", fulfilled_at",
                             ", '2026-11-25 20:31:38'"),
                "INSERT INTO orders (charge_id, status, amount, currency, first_seen_at, "
                "updated_at) VALUES ('chg_c1', 'CAPTURED', 1, 'YER', " NOW ", " NOW ")",
                "INSERT INTO orders (charge_id, status, amount, currency, first_seen_at, "
                "updated_at, fulfilled_at) VALUES ('chg_c1', 'INITIATED', 1, 'YER', " NOW ", "
                NOW ", " NOW ")",
                "INSERT INTO webhook_deliveries (received_at, remote_addr, outcome, http_status) "
                "VALUES (" NOW ", '::1', 'ok', 400)",
                "INSERT INTO webhook_deliveries (received_at, remote_addr, outcome, http_status) "
                "VALUES (" NOW ", '::1', 'invalid', 99)",
                "INSERT INTO webhook_deliveries (received_at, remote_addr, outcome, http_status) "
                "VALUES (" NOW ", '::1', 'invalid', 600)",
                "INSERT INTO webhook_deliveries (received_at, remote_addr, outcome, http_status) "
                "VALUES (" NOW ", '::1', 'invalid', 200)",
                "INSERT INTO webhook_deliveries (received_at, remote_addr, outcome, http_status) "
                "VALUES (" NOW ", '::1', 'applied', 200)",
                "INSERT INTO order_events (charge_id, from_status, to_status, delivery_id, "
                "recorded_at) VALUES ('chg_path1', 'CAPTURED', 'CAPTURED', 1, " NOW ")",
                "INSERT INTO order_events (charge_id, to_status, delivery_id, recorded_at) "
                "VALUES ('chg_path1', 'PAID', 1, " NOW ")",
                "INSERT INTO order_events (charge_id, to_status, delivery_id, recorded_at) "
                "VALUES ('chg_unknown', 'FAILED', 1, " NOW ")",
        };

        CHECK_EQ_INT(raw_exec(db, "PRAGMA foreign_keys = ON"), SQLITE_OK);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                check_refused(db, bad[i], NULL);
        /* and the same shapes are fine when valid */
        CHECK_EQ_INT(raw_exec(db, ORDER_INSERT("'chg_c1-_x'", "'CAPTURED'", "9007199254740991",
                                            "'YER'", ", fulfilled_at", ", " NOW)), SQLITE_OK);
        CHECK_EQ_INT(raw_exec(db, "DELETE FROM orders WHERE charge_id = 'chg_c1-_x'"), SQLITE_OK);
}

/* Does the query plan of @sql mention @what (an index, say)? */
static bool plan_uses(sqlite3 *db, const char *sql, const char *what)
{
        char *explain = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
        sqlite3_stmt *st;
        bool found = false;

        if (!explain || sqlite3_prepare_v2(db, explain, -1, &st, NULL) != SQLITE_OK)
                FAIL("explain %s: %s", sql, sqlite3_errmsg(db));
        while (!found && sqlite3_step(st) == SQLITE_ROW)
                found = strstr((const char *) sqlite3_column_text(st, 3), what) != NULL;
        sqlite3_finalize(st);
        sqlite3_free(explain);
        return found;
}

static void test_to_fulfil(struct store *s, sqlite3 *db)
{
        struct delivery *b[4] = {
                accepted("chg_ful1", CHARGE_CAPTURED, 100, "YER", NULL),
                accepted("chg_ful2", CHARGE_CAPTURED, 100, "YER", NULL),
                accepted("chg_ful3", CHARGE_INITIATED, 100, "YER", NULL),
                accepted("chg_ful2", CHARGE_FAILED, 100, "YER", NULL), /* review */
        };
        const char *fulfil = "UPDATE orders SET fulfilled_at = strftime('%Y-%m-%dT%H:%M:%fZ', "
                             "'now') WHERE charge_id = 'chg_ful1' AND status = 'CAPTURED' AND "
                             "fulfilled_at IS NULL";

        CHECK_EQ_INT(store_submit(s, b, 4), 0);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM orders_to_fulfil WHERE charge_id LIKE "
                            "'chg_ful%%'"), 1);
        CHECK_STR(q_text(db, "SELECT charge_id FROM orders_to_fulfil WHERE charge_id LIKE "
                             "'chg_ful%%'"), "chg_ful1");
        CHECK(plan_uses(db, "SELECT * FROM orders_to_fulfil ORDER BY captured_at LIMIT 10",
                        "USING INDEX orders_to_fulfil_idx"));
        CHECK(plan_uses(db, "SELECT 1 FROM webhook_deliveries WHERE message_id = 'm' AND "
                            "http_status = 200",
                        "USING INDEX webhook_deliveries_message_idx"));
        CHECK(plan_uses(db, "SELECT id FROM webhook_deliveries WHERE http_status >= 400 "
                            "AND received_at < " NOW,
                        "USING INDEX webhook_deliveries_rejected_idx"));
        /* the race-free fulfilment update from the README, done by "the merchant" */
        CHECK_EQ_INT(raw_exec(db, fulfil), SQLITE_OK);
        CHECK_EQ_INT(sqlite3_changes(db), 1);
        CHECK_EQ_INT(raw_exec(db, fulfil), SQLITE_OK);
        CHECK_EQ_INT(sqlite3_changes(db), 0);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM orders_to_fulfil WHERE charge_id LIKE "
                            "'chg_ful%%'"), 0);
        CHECK(is_iso_ms(q_text(db, ORDER("fulfilled_at"), "chg_ful1")));
        for (size_t i = 0; i < 4; i++)
                free_delivery(b[i]);
}

/* ---- locks, health, files ---- */

static void test_busy(const char *path)
{
        struct store *s = open_store(path, 100);
        sqlite3 *db = raw_open(path);
        struct delivery *d = accepted("chg_busy", CHARGE_INITIATED, 1, "YER", NULL);
        int64_t before = count(db, "webhook_deliveries"), t0, waited;

        CHECK_EQ_INT(raw_exec(db, "BEGIN IMMEDIATE"), SQLITE_OK);
        t0 = time_monotonic_ms();
        CHECK_EQ_INT(store_submit(s, &d, 1), -EBUSY);
        waited = time_monotonic_ms() - t0;
        CHECK(waited >= 90);
        CHECK_EQ_INT(store_probe_write(s), -EBUSY); /* the probe meets the same lock */
        CHECK_EQ_INT(raw_exec(db, "COMMIT"), SQLITE_OK);
        CHECK_EQ_INT(store_probe_write(s), 0);
        CHECK_EQ_INT(count(db, "webhook_deliveries"), before);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM orders WHERE charge_id = 'chg_busy'"), 0);
        CHECK_STR(store_strerror(-EBUSY), "database is locked");

        /* a reader holding a snapshot does not block the writer (WAL) */
        CHECK_EQ_INT(raw_exec(db, "BEGIN; SELECT count(*) FROM orders;"), SQLITE_OK);
        CHECK_EQ_INT(store_submit(s, &d, 1), 0);
        CHECK_EQ_INT(d->outcome, OUTCOME_APPLIED);
        CHECK_EQ_INT(raw_exec(db, "COMMIT"), SQLITE_OK);
        CHECK_EQ_INT(count(db, "webhook_deliveries"), before + 1);
        free_delivery(d);
        sqlite3_close(db);
        store_free(s);
}

static void test_readonly_store(const char *path)
{
        struct store_options o = { .path = path, .read_only = true, .busy_timeout_ms = 100 };
        struct delivery *d = accepted("chg_ro", CHARGE_INITIATED, 1, "YER", NULL);
        struct order_record rec;
        struct store *s = NULL;
        char err[256];

        CHECK_EQ_INT(store_new(&o, &s, err, sizeof(err)), 0);
        CHECK_EQ_INT(store_health(s), 0);
        CHECK_EQ_INT(store_get_order(s, "chg_busy", &rec), 0);
        CHECK_EQ_INT(rec.status, CHARGE_INITIATED);
        order_record_clear(&rec);
        CHECK_EQ_INT(store_submit(s, &d, 1), -EROFS);
        CHECK_EQ_INT(store_checkpoint(s, false), -EROFS);
        CHECK_EQ_INT(store_probe_write(s), -EROFS);
        free_delivery(d);
        store_free(s);
}

static void check_probe_left_no_trace(const char *path)
{
        sqlite3 *db = raw_open(path);

        CHECK_EQ_INT(q_int(db, "PRAGMA user_version"), store_schema_version());
        CHECK_EQ_INT(count(db, "orders"), 1);
        CHECK_EQ_INT(count(db, "webhook_deliveries"), 1);
        CHECK_EQ_INT(count(db, "order_events"), 1);
        sqlite3_close(db);
}

static void test_health_and_wal(void)
{
        const char *path = db_path("health.db"), *moved = db_path("health-moved.db");
        struct store *s = open_store(path, 100);
        struct delivery *d = submit1(s, accepted("chg_h1", CHARGE_INITIATED, 1, "YER", NULL));

        CHECK(store_wal_bytes(s) > 0);
        CHECK_EQ_INT(store_checkpoint(s, false), 0);
        CHECK_EQ_INT(store_checkpoint(s, true), 0);
        CHECK_EQ_INT(store_wal_bytes(s), 0);
        CHECK_EQ_INT(store_health(s), 0);
        /* the probe commits one real page write (a WAL frame: header and
         * page) and leaves the schema version and the rows as they were */
        CHECK_EQ_INT(store_probe_write(s), 0);
        CHECK_EQ_INT(store_wal_bytes(s), 32 + 24 + 4096);
        check_probe_left_no_trace(path);
        CHECK_EQ_INT(rename(path, moved), 0);
        CHECK_EQ_INT(store_health(s), -ENOENT);
        CHECK_EQ_INT(store_probe_write(s), -ENOENT);
        /* a new, different file in its place */
        CHECK_EQ_INT(try_open(path, false, true, (char[64]) { 0 }, 64), 0);
        CHECK_EQ_INT(store_health(s), -ESTALE);
        CHECK_STR(store_strerror(-ESTALE), "database file was replaced");
        free_delivery(d);
        store_free(s);
}

/* ---- the cap on rejected rows ---- */

#define REJECTED_WHERE "http_status >= 400"

static struct store *open_capped(const char *path, unsigned cap)
{
        struct store_options o = {
                .path = path, .synchronous = DB_SYNC_NORMAL,
                .busy_timeout_ms = 1000, .migrate = true, .max_rejected_rows = cap,
        };

        return open_with(&o);
}

static int64_t rejected_count(sqlite3 *db)
{
        return q_int(db, "SELECT count(*) FROM webhook_deliveries WHERE " REJECTED_WHERE);
}

/* The lowest and highest "junk N" numbers among the rejected rows kept. */
static int64_t junk_min(sqlite3 *db)
{
        return q_int(db, "SELECT min(CAST(substr(error, 6) AS INTEGER)) FROM "
                         "webhook_deliveries WHERE error LIKE 'junk %%'");
}

/* Submits @n rejected deliveries numbered from *@next ("junk N"), with
 * @accepted accepted ones in between, as one batch. */
static int submit_junk(struct store *s, size_t n, unsigned *next, size_t accepted)
{
        struct delivery *b[64];
        char text[32];
        size_t k = 0;
        int r;

        if (n + accepted > 64)
                FAIL("batch too big");
        for (size_t i = 0; i < n; i++) {
                snprintf(text, sizeof(text), "junk %u", (*next)++);
                b[k++] = rejected(NULL, OUTCOME_UNAUTHORIZED, 401, text);
                if (i < accepted) {
                        snprintf(text, sizeof(text), "chg_capok%u", *next);
                        b[k++] = accepted_delivery(text);
                }
        }
        r = store_submit(s, b, k);
        for (size_t i = 0; i < k; i++)
                free_delivery(b[i]);
        return r;
}

/* 1000 rejected rows through a cap of 100 (slack 1), in batches of 1 to 37. */
static void test_cap_floods(const char *path, sqlite3 *db)
{
        struct store *s = open_capped(path, 100);
        unsigned next = 0;
        int64_t accepted = 0;

        CHECK_EQ_INT(store_rejected_rows(s), 0);
        for (size_t size = 1; next < 1000; size = size % 37 + 1) {
                size_t n = size < 1000 - next ? size : 1000 - next;
                CHECK_EQ_INT(submit_junk(s, n, &next, size % 5 == 0 ? 2 : 0), 0);
                accepted += size % 5 == 0 ? (n < 2 ? (int64_t) n : 2) : 0;
                CHECK(rejected_count(db) <= 101);
                CHECK_EQ_INT(store_rejected_rows(s), rejected_count(db));
        }
        CHECK(rejected_count(db) >= 100);
        /* the newest are the ones kept, and nothing accepted went */
        CHECK_EQ_INT(junk_min(db), 1000 - rejected_count(db));
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM webhook_deliveries WHERE outcome = 'applied' "
                            "AND charge_id LIKE 'chg_capok%%'"), accepted);
        CHECK(accepted >= 10);
        store_free(s);

        /* the count is taken again at open */
        s = open_capped(path, 100);
        CHECK_EQ_INT(store_rejected_rows(s), rejected_count(db));
        store_free(s);
}

/* Rows deleted by another process: the next trim finds out, deletes nothing. */
static void test_cap_external_delete(const char *path, sqlite3 *db)
{
        struct store *s = open_capped(path, 100);
        int64_t before = store_rejected_rows(s);
        unsigned next = 2000;

        CHECK(before >= 100);
        CHECK_EQ_INT(raw_exec(db, "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM "
                               "webhook_deliveries WHERE " REJECTED_WHERE " ORDER BY id "
                               "LIMIT 60)"), SQLITE_OK);
        CHECK_EQ_INT(store_rejected_rows(s), before); /* not known yet */
        CHECK_EQ_INT(submit_junk(s, 2, &next, 0), 0);
        CHECK_EQ_INT(rejected_count(db), before - 60 + 2);
        CHECK_EQ_INT(store_rejected_rows(s), before - 60 + 2);
        CHECK_EQ_INT(submit_junk(s, 30, &next, 0), 0);
        CHECK_EQ_INT(submit_junk(s, 30, &next, 0), 0);
        CHECK(rejected_count(db) <= 101);
        CHECK_EQ_INT(store_rejected_rows(s), rejected_count(db));
        /* the 62 new ones and the newest of the old ones are kept */
        CHECK_EQ_INT(junk_min(db), 1000 - (rejected_count(db) - 62));
        store_free(s);
}

/* A cap set on a database far over it: brought down 10000 rows a batch. */
static void test_cap_backlog(const char *path, sqlite3 *db)
{
        struct store *s;
        unsigned next = 30000;

        CHECK_EQ_INT(raw_exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                               "WHERE i < 12000) INSERT INTO webhook_deliveries (received_at, "
                               "remote_addr, outcome, http_status, error) SELECT "
                               "'2020-01-01T00:00:00.000Z', '127.0.0.1', 'invalid', 400, "
                               "'junk ' || (10000 + i) FROM n"), SQLITE_OK);
        int64_t total = rejected_count(db);
        s = open_capped(path, 100);
        CHECK_EQ_INT(store_rejected_rows(s), total);
        CHECK_EQ_INT(submit_junk(s, 1, &next, 1), 0);
        CHECK_EQ_INT(rejected_count(db), total + 1 - 10001);
        CHECK_EQ_INT(store_rejected_rows(s), rejected_count(db));
        CHECK_EQ_INT(submit_junk(s, 1, &next, 0), 0);
        CHECK_EQ_INT(rejected_count(db), 100);
        CHECK_EQ_INT(store_rejected_rows(s), 100);
        /* the old rows went first, the new ones stay */
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM webhook_deliveries WHERE received_at < '2021'"),
                  0);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM webhook_deliveries WHERE error IN "
                            "('junk 30000', 'junk 30001')"), 2);
        store_free(s);
}

/* A delete that fails fails the batch: nothing of it stays. */
static void test_cap_failure(const char *path, sqlite3 *db)
{
        struct store *s = open_capped(path, 100);
        int64_t rows = count(db, "webhook_deliveries"), kept = store_rejected_rows(s);
        unsigned next = 40000;

        CHECK_EQ_INT(kept, 100);
        CHECK_EQ_INT(raw_exec(db, "CREATE TRIGGER no_trim BEFORE DELETE ON webhook_deliveries "
                               "BEGIN SELECT RAISE(ABORT, 'no'); END"), SQLITE_OK);
        CHECK_EQ_INT(submit_junk(s, 1, &next, 0), 0); /* 101: within the slack */
        CHECK_EQ_INT(submit_junk(s, 3, &next, 2), -EIO);
        CHECK_EQ_INT(count(db, "webhook_deliveries"), rows + 1);
        CHECK_EQ_INT(store_rejected_rows(s), 101);
        CHECK_EQ_INT(raw_exec(db, "DROP TRIGGER no_trim"), SQLITE_OK);
        CHECK_EQ_INT(submit_junk(s, 3, &next, 2), 0);
        CHECK_EQ_INT(rejected_count(db), 100);
        CHECK_EQ_INT(count(db, "webhook_deliveries"), rows + 1 + 3 + 2 - 4);
        store_free(s);
}

/* The age bound (cashpayctl prune, and the daemon hourly). */
static void test_prune(const char *path, sqlite3 *db)
{
        struct store *s = open_capped(path, 100);
        int64_t n = 0, accepted = q_int(db, "SELECT count(*) FROM webhook_deliveries WHERE "
                                           "outcome = 'applied'");

        CHECK_EQ_INT(store_prune_rejected(s, "2000-01-01T00:00:00.000Z", 0, false, &n), 0);
        CHECK_EQ_INT(n, 0);
        CHECK_EQ_INT(store_prune_rejected(s, "9999-01-01T00:00:00.000Z", 10, true, &n), 0);
        CHECK_EQ_INT(n, 10);
        CHECK_EQ_INT(rejected_count(db), 100);
        int64_t eleventh = q_int(db, "SELECT id FROM webhook_deliveries WHERE " REJECTED_WHERE
                                     " ORDER BY received_at, id LIMIT 1 OFFSET 10");
        CHECK_EQ_INT(store_prune_rejected(s, "9999-01-01T00:00:00.000Z", 10, false, &n), 0);
        CHECK_EQ_INT(n, 10);
        CHECK_EQ_INT(rejected_count(db), 90);
        CHECK_EQ_INT(store_rejected_rows(s), 90);
        /* the oldest went */
        CHECK_EQ_INT(q_int(db, "SELECT id FROM webhook_deliveries WHERE " REJECTED_WHERE
                            " ORDER BY received_at, id LIMIT 1"), eleventh);
        CHECK_EQ_INT(store_prune_rejected(s, "9999-01-01T00:00:00.000Z", 0, true, &n), 0);
        CHECK_EQ_INT(n, 90);
        CHECK_EQ_INT(store_prune_rejected(s, "9999-01-01T00:00:00.000Z", 0, false, &n), 0);
        CHECK_EQ_INT(n, 90);
        CHECK_EQ_INT(store_rejected_rows(s), 0);
        CHECK_EQ_INT(rejected_count(db), 0);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM webhook_deliveries WHERE outcome = 'applied'"),
                  accepted);
        store_free(s);

        /* no cap: no count, and a read-only handle may only count */
        s = open_capped(path, 0);
        CHECK_EQ_INT(store_rejected_rows(s), -1);
        store_free(s);
        struct store_options o = { .path = path, .read_only = true, .busy_timeout_ms = 100,
                                   .max_rejected_rows = 100 };
        char err[256];
        CHECK_EQ_INT(store_new(&o, &s, err, sizeof(err)), 0);
        CHECK_EQ_INT(store_rejected_rows(s), -1);
        CHECK_EQ_INT(store_prune_rejected(s, "9999-01-01T00:00:00.000Z", 0, true, &n), 0);
        CHECK_EQ_INT(store_prune_rejected(s, "9999-01-01T00:00:00.000Z", 0, false, &n), -EROFS);
        store_free(s);
}

static void test_rejected_cap(void)
{
        const char *path = db_path("cap.db");
        struct store *s = open_capped(path, 0);
        sqlite3 *db = raw_open(path);

        store_free(s);
        test_cap_floods(path, db);
        test_cap_external_delete(path, db);
        test_cap_backlog(path, db);
        test_cap_failure(path, db);
        test_prune(path, db);
        sqlite3_close(db);
}

/* ---- throughput printout ---- */

static void bench(enum db_synchronous sync, const char *label, size_t total, size_t batch)
{
        struct store_options o = { .path = db_path("bench.db"), .synchronous = sync,
                                   .busy_timeout_ms = 1000, .migrate = true };
        struct delivery *b[100];
        struct store *s = NULL;
        char id[64], err[256] = "";
        int64_t t0, ms;

        unlink(o.path);
        if (batch > 100 || store_new(&o, &s, err, sizeof(err)) < 0)
                FAIL("bench open: %s", err);
        t0 = time_monotonic_ms();
        for (size_t done = 0; done < total; done += batch) {
                for (size_t i = 0; i < batch; i++) {
                        snprintf(id, sizeof(id), "chg_bench%zu", (done + i) / 2);
                        b[i] = accepted(id, (done + i) % 2 ? CHARGE_CAPTURED : CHARGE_INITIATED,
                                        100, "YER", NULL);
                }
                CHECK_EQ_INT(store_submit(s, b, batch), 0);
                for (size_t i = 0; i < batch; i++)
                        free_delivery(b[i]);
        }
        ms = time_monotonic_ms() - t0;
        printf("bench %-6s batch %3zu: %zu deliveries in %" PRId64 " ms (%.0f/s)\n", label,
               batch, total, ms, ms > 0 ? total * 1000.0 / (double) ms : 0.0);
        store_free(s);
}

static void cleanup_dir(void)
{
        static const char *const names[] = {
                "fresh.db", "old.db", "missing.db", "main.db", "health.db",
                "health-moved.db", "bench.db", "cap.db",
        };
        char p[600];

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                static const char *const suffix[] = { "", "-wal", "-shm", "-journal" };

                for (size_t j = 0; j < 4; j++) {
                        snprintf(p, sizeof(p), "%s/%s%s", tmpdir, names[i], suffix[j]);
                        unlink(p);
                }
        }
        rmdir(tmpdir);
}

int main(void)
{
        const char *base = getenv("TMPDIR");
        struct store *s;
        sqlite3 *db;

        umask(007);
        snprintf(tmpdir, sizeof(tmpdir), "%s/test-store-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir))
                FAIL("mkdtemp: %s", strerror(errno));

        test_fresh_schema();
        test_reopen_and_versions();
        test_open_refusals();

        s = open_store(db_path("main.db"), 1000);
        db = raw_open(db_path("main.db"));
        test_initiated_captured_paths(s, db);
        test_failed_paths(s, db);
        test_terms_conflict(s, db);
        test_batch_same_charge(s, db);
        test_message_id(s, db);
        test_rejected_rows(s, db);
        test_delivery_fault(s, db);
        test_get_order(s);
        test_to_fulfil(s, db);
        test_append_only(db);
        test_checks(db);
        sqlite3_close(db);
        store_free(s);

        test_busy(db_path("main.db"));
        test_readonly_store(db_path("main.db"));
        test_health_and_wal();
        test_rejected_cap();

        bench(DB_SYNC_FULL, "full", 500, 1);
        bench(DB_SYNC_FULL, "full", 20000, 100);
        bench(DB_SYNC_NORMAL, "normal", 20000, 100);
        cleanup_dir();
        return check_summary();
}
