/*
 * Unit tests of the store's API half (store-api.h) and of migration 0002:
 * a schema-1 database with data migrates, keeps its rows, counters and old
 * queries; fetched charges go through the state machine with source "api";
 * the reconciler's queue; charge creation requests per CONTRACT §8.3.
 * Each test runs on a fresh database in a temporary directory.
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

#include "cashpay/store-api.h"
#include "src/store/migrations.h"
#include "tests/check.h"

#define NOW "2026-12-01T10:00:00.000Z"

static char tmpdir[256];
static unsigned db_serial;

static const char *fresh_path(void)
{
        static char buf[512];

        snprintf(buf, sizeof(buf), "%s/db%u.db", tmpdir, ++db_serial);
        return buf;
}

static struct store *open_store(const char *path)
{
        struct store_options o = {
                .path = path, .synchronous = DB_SYNC_NORMAL, .busy_timeout_ms = 1000,
                .migrate = true,
        };
        struct store *s = NULL;
        char err[256];
        int r = store_new(&o, &s, err, sizeof(err));

        if (r < 0) {
                fprintf(stderr, "store_new(%s): %d %s\n", path, r, err);
                exit(EXIT_FAILURE);
        }
        return s;
}

static sqlite3 *raw_open(const char *path)
{
        sqlite3 *db = NULL;

        if (sqlite3_open(path, &db) != SQLITE_OK) {
                fprintf(stderr, "raw open %s: %s\n", path, sqlite3_errmsg(db));
                exit(EXIT_FAILURE);
        }
        sqlite3_busy_timeout(db, 2000);
        sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
        return db;
}

static int raw_exec(sqlite3 *db, const char *sql)
{
        return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* The first column of the first row: an integer, -2 for NULL, -1 for no row. */
static int64_t q_int(sqlite3 *db, const char *fmt, ...)
{
        sqlite3_stmt *st = NULL;
        int64_t v = -1;
        va_list ap;
        char *sql;

        va_start(ap, fmt);
        sql = sqlite3_vmprintf(fmt, ap);
        va_end(ap);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
                fprintf(stderr, "prepare %s: %s\n", sql, sqlite3_errmsg(db));
                exit(EXIT_FAILURE);
        }
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -2 : sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_free(sql);
        return v;
}

/* Same as text into a rotating static buffer: "(null)", "(no row)". */
static const char *q_text(sqlite3 *db, const char *fmt, ...)
{
        static char buf[4][512];
        static unsigned i;
        char *out = buf[i++ % 4], *sql;
        sqlite3_stmt *st = NULL;
        va_list ap;

        va_start(ap, fmt);
        sql = sqlite3_vmprintf(fmt, ap);
        va_end(ap);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
                fprintf(stderr, "prepare %s: %s\n", sql, sqlite3_errmsg(db));
                exit(EXIT_FAILURE);
        }
        if (sqlite3_step(st) != SQLITE_ROW)
                snprintf(out, sizeof(buf[0]), "(no row)");
        else if (sqlite3_column_type(st, 0) == SQLITE_NULL)
                snprintf(out, sizeof(buf[0]), "(null)");
        else
                snprintf(out, sizeof(buf[0]), "%s", (const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_free(sql);
        return out;
}

static struct charge make_charge(const char *id, enum charge_status status, int64_t amount,
                                 const char *currency)
{
        struct charge c = { .status = status, .amount = amount, .created = 1672531200 };

        snprintf(c.id, sizeof(c.id), "%s", id);
        snprintf(c.currency, sizeof(c.currency), "%s", currency);
        return c;
}

static struct api_fetch fetched(const char *id, enum charge_status status, int64_t amount)
{
        static const uint8_t body[] = "{\"id\":\"...\"}";
        struct api_fetch f = {
                .reason = FETCH_RECONCILE, .http_status = 200, .has_charge = true,
                .body = body, .body_len = sizeof(body) - 1, .duration_ms = 12,
        };

        snprintf(f.charge_id, sizeof(f.charge_id), "%s", id);
        snprintf(f.requested_at, sizeof(f.requested_at), NOW);
        f.charge = make_charge(id, status, amount, "YER");
        return f;
}

/* ---- migration 0002 on a database with history -------------------------- */

/* A schema-1 database as the previous release left it: an order, its event,
 * an accepted and a pruned rejected delivery. */
static void make_schema1(const char *path)
{
        sqlite3 *db = raw_open(path);

        CHECK_EQ_INT(raw_exec(db, store_migrations[0].sql), SQLITE_OK);
        CHECK_EQ_INT(raw_exec(db,
                "PRAGMA user_version = 1;"
                "INSERT INTO webhook_deliveries (received_at, remote_addr, charge_id, "
                "claimed_status, outcome, http_status, body) VALUES "
                "('" NOW "', '127.0.0.1', 'chg_old', 'CAPTURED', 'applied', 200, X'7B7D');"
                "INSERT INTO webhook_deliveries (received_at, remote_addr, outcome, http_status) "
                "VALUES ('" NOW "', '127.0.0.1', 'invalid', 400);"
                "INSERT INTO webhook_deliveries (received_at, remote_addr, outcome, http_status) "
                "VALUES ('" NOW "', '127.0.0.1', 'invalid', 400);"
                "DELETE FROM webhook_deliveries WHERE id = 3;"
                "INSERT INTO orders (charge_id, status, amount, currency, first_seen_at, "
                "updated_at, captured_at) VALUES ('chg_old', 'CAPTURED', 2000, 'YER', "
                "'" NOW "', '" NOW "', '" NOW "');"
                "INSERT INTO order_events (charge_id, to_status, delivery_id, recorded_at) "
                "VALUES ('chg_old', 'CAPTURED', 1, '" NOW "');"), SQLITE_OK);
        sqlite3_close(db);
}

static void test_migration_keeps_history(void)
{
        const char *path = fresh_path();
        struct store *s;
        sqlite3 *db;

        make_schema1(path);
        s = open_store(path);
        db = raw_open(path);
        CHECK_EQ_INT(q_int(db, "PRAGMA user_version"), 3);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM webhook_deliveries"), 2);
        CHECK_STR(q_text(db, "SELECT hex(body) FROM webhook_deliveries WHERE id = 1"), "7B7D");
        CHECK_STR(q_text(db, "SELECT source FROM order_events WHERE id = 1"), "webhook");
        CHECK_EQ_INT(q_int(db, "PRAGMA foreign_key_check"), -1);
        CHECK_STR(q_text(db, "PRAGMA integrity_check"), "ok");
        /* the pruned row's id is never handed out again */
        CHECK_EQ_INT(raw_exec(db, "INSERT INTO webhook_deliveries (received_at, remote_addr, "
                                  "outcome, http_status) VALUES ('" NOW "', 'x', 'invalid', 400)"),
                     SQLITE_OK);
        CHECK_EQ_INT(q_int(db, "SELECT max(id) FROM webhook_deliveries"), 4);
        /* schema-1 queries and writes still work as they did */
        CHECK_EQ_INT(raw_exec(db, "INSERT INTO order_events (charge_id, from_status, to_status, "
                                  "delivery_id, recorded_at) VALUES ('chg_old', 'CAPTURED', "
                                  "'FAILED', 1, '" NOW "')"), SQLITE_OK);
        CHECK_EQ_INT(q_int(db, "SELECT id FROM order_events ORDER BY id DESC LIMIT 1"), 2);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM orders_to_fulfil"), 1);
        CHECK_EQ_INT(raw_exec(db, "SELECT charge_id, from_status, to_status, delivery_id, "
                                  "recorded_at FROM order_events WHERE id > 0 ORDER BY id"),
                     SQLITE_OK);
        /* the triggers came back with the tables */
        CHECK(raw_exec(db, "UPDATE order_events SET to_status = 'FAILED'") != SQLITE_OK);
        CHECK(raw_exec(db, "DELETE FROM webhook_deliveries WHERE id = 1") != SQLITE_OK);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"), 6);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%%_new'"), 0);
        sqlite3_close(db);
        store_free(s);
}

static void test_new_checks(void)
{
        const char *path = fresh_path();
        struct store *s = open_store(path);
        sqlite3 *db = raw_open(path);

        /* the two outcomes of confirm = api, each with its own status only */
        CHECK_EQ_INT(raw_exec(db, "INSERT INTO webhook_deliveries (received_at, remote_addr, "
                                  "charge_id, claimed_status, outcome, http_status) VALUES "
                                  "('" NOW "', 'x', 'chg_a', 'CAPTURED', 'deferred', 503)"),
                     SQLITE_OK);
        CHECK_EQ_INT(raw_exec(db, "INSERT INTO webhook_deliveries (received_at, remote_addr, "
                                  "charge_id, claimed_status, outcome, http_status) VALUES "
                                  "('" NOW "', 'x', 'chg_a', 'CAPTURED', 'unconfirmed', 200)"),
                     SQLITE_OK);
        CHECK(raw_exec(db, "INSERT INTO webhook_deliveries (received_at, remote_addr, charge_id, "
                           "claimed_status, outcome, http_status) VALUES "
                           "('" NOW "', 'x', 'chg_a', 'CAPTURED', 'deferred', 200)") != SQLITE_OK);
        CHECK(raw_exec(db, "INSERT INTO webhook_deliveries (received_at, remote_addr, outcome, "
                           "http_status) VALUES ('" NOW "', 'x', 'deferred', 503)") != SQLITE_OK);
        /* deferred rows are pruned like rejected ones: never acknowledged */
        CHECK_EQ_INT(raw_exec(db, "DELETE FROM webhook_deliveries WHERE outcome = 'deferred'"),
                     SQLITE_OK);
        CHECK(raw_exec(db, "DELETE FROM webhook_deliveries WHERE outcome = 'unconfirmed'")
              != SQLITE_OK);
        CHECK_EQ_INT(raw_exec(db, "INSERT INTO orders (charge_id, status, amount, currency, "
                                  "first_seen_at, updated_at, return_ref) VALUES ('chg_a', "
                                  "'INITIATED', 1, 'YER', '" NOW "', '" NOW "', 'r1')"), SQLITE_OK);
        /* return_ref is unique; next_check_at is a time */
        CHECK(raw_exec(db, "INSERT INTO orders (charge_id, status, amount, currency, "
                           "first_seen_at, updated_at, return_ref) VALUES ('chg_b', 'INITIATED', "
                           "1, 'YER', '" NOW "', '" NOW "', 'r1')") != SQLITE_OK);
        CHECK(raw_exec(db, "UPDATE orders SET next_check_at = 'soon'") != SQLITE_OK);
        /* every event names its evidence */
        CHECK(raw_exec(db, "INSERT INTO order_events (charge_id, to_status, recorded_at) "
                           "VALUES ('chg_a', 'INITIATED', '" NOW "')") != SQLITE_OK);
        CHECK(raw_exec(db, "INSERT INTO order_events (charge_id, to_status, recorded_at, source) "
                           "VALUES ('chg_a', 'INITIATED', '" NOW "', 'api')") != SQLITE_OK);
        CHECK(raw_exec(db, "INSERT INTO order_events (charge_id, to_status, recorded_at, source) "
                           "VALUES ('chg_a', 'CAPTURED', '" NOW "', 'checkout')") != SQLITE_OK);
        CHECK_EQ_INT(raw_exec(db, "INSERT INTO order_events (charge_id, to_status, recorded_at, "
                                  "source) VALUES ('chg_a', 'INITIATED', '" NOW "', 'checkout')"),
                     SQLITE_OK);
        /* a reported charge is whole, and only from a 200 */
        CHECK(raw_exec(db, "INSERT INTO api_fetches (charge_id, requested_at, reason, "
                           "http_status, status, duration_ms) VALUES ('chg_a', '" NOW "', "
                           "'manual', 200, 'CAPTURED', 1)") != SQLITE_OK);
        CHECK(raw_exec(db, "INSERT INTO api_fetches (charge_id, requested_at, reason, "
                           "http_status, status, amount, currency, duration_ms) VALUES ('chg_a', "
                           "'" NOW "', 'manual', 500, 'CAPTURED', 1, 'YER', 1)") != SQLITE_OK);
        CHECK(raw_exec(db, "INSERT INTO api_fetches (charge_id, requested_at, reason, "
                           "duration_ms) VALUES ('chg_a', '" NOW "', 'curious', 1)") != SQLITE_OK);
        /* one pending request per order_ref */
        CHECK_EQ_INT(raw_exec(db, "INSERT INTO charge_requests (order_ref, amount, currency, "
                                  "idempotency_key, return_ref, requested_at, updated_at) VALUES "
                                  "('o1', 5, 'YER', 'k1', 'q1', '" NOW "', '" NOW "')"), SQLITE_OK);
        CHECK(raw_exec(db, "INSERT INTO charge_requests (order_ref, amount, currency, "
                           "idempotency_key, return_ref, requested_at, updated_at) VALUES "
                           "('o1', 5, 'YER', 'k2', 'q2', '" NOW "', '" NOW "')") != SQLITE_OK);
        CHECK(raw_exec(db, "INSERT INTO charge_requests (order_ref, amount, currency, "
                           "idempotency_key, return_ref, requested_at, updated_at) VALUES "
                           "('o 2', 5, 'YER', 'k3', 'q3', '" NOW "', '" NOW "')") != SQLITE_OK);
        CHECK(raw_exec(db, "UPDATE charge_requests SET state = 'created'") != SQLITE_OK);
        sqlite3_close(db);
        store_free(s);
}

/* ---- fetched charges ---------------------------------------------------- */

static void test_fetch_through_state_machine(void)
{
        const char *path = fresh_path();
        struct store *s = open_store(path);
        sqlite3 *db = raw_open(path);
        struct api_fetch f;

        /* first sighting through the API: order and an "api" event */
        f = fetched("chg_f1", CHARGE_INITIATED, 700);
        snprintf(f.next_check_at, sizeof(f.next_check_at), "2026-12-01T10:05:00.000Z");
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK_EQ_INT(f.transition.outcome, OUTCOME_APPLIED);
        CHECK(!f.had_order);
        CHECK(f.id > 0 && f.event_id > 0);
        CHECK_STR(q_text(db, "SELECT source || ',' || fetch_id || ',' || coalesce(delivery_id, '-')"
                             " FROM order_events WHERE id = %lld", (long long) f.event_id),
                  "api,1,-");
        CHECK_STR(q_text(db, "SELECT next_check_at FROM orders WHERE charge_id = 'chg_f1'"),
                  "2026-12-01T10:05:00.000Z");
        CHECK_STR(q_text(db, "SELECT status || amount || currency || reason FROM api_fetches "
                             "WHERE id = %lld", (long long) f.id), "INITIATED700YERreconcile");

        /* captured later, confirming a webhook: both ids on the event */
        f = fetched("chg_f1", CHARGE_CAPTURED, 700);
        f.reason = FETCH_WEBHOOK;
        CHECK_EQ_INT(raw_exec(db, "INSERT INTO webhook_deliveries (id, received_at, remote_addr, "
                                  "charge_id, claimed_status, outcome, http_status) VALUES (42, "
                                  "'" NOW "', 'x', 'chg_f1', 'CAPTURED', 'deferred', 503)"),
                     SQLITE_OK);
        f.delivery_id = 42;
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK_EQ_INT(f.transition.outcome, OUTCOME_APPLIED);
        CHECK(f.had_order && f.previous == CHARGE_INITIATED);
        CHECK_STR(q_text(db, "SELECT from_status || to_status || delivery_id FROM order_events "
                             "WHERE id = %lld", (long long) f.event_id), "INITIATEDCAPTURED42");
        CHECK_STR(q_text(db, "SELECT status FROM orders WHERE charge_id = 'chg_f1'"), "CAPTURED");

        /* same again: duplicate, a fetch row and nothing else */
        f = fetched("chg_f1", CHARGE_CAPTURED, 700);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK_EQ_INT(f.transition.outcome, OUTCOME_DUPLICATE);
        CHECK_EQ_INT(f.event_id, 0);
        /* other terms: conflict and review, as for a webhook */
        f = fetched("chg_f1", CHARGE_CAPTURED, 701);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK_EQ_INT(f.transition.outcome, OUTCOME_CONFLICT);
        CHECK_EQ_INT(q_int(db, "SELECT needs_review FROM orders WHERE charge_id = 'chg_f1'"), 1);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM order_events"), 2);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM api_fetches"), 4);
        sqlite3_close(db);
        store_free(s);
}

static void test_fetch_failures_not_truth(void)
{
        const char *path = fresh_path();
        struct store *s = open_store(path);
        sqlite3 *db = raw_open(path);
        static const uint8_t html[] = "<html>maintenance</html>";
        struct api_fetch f;
        uint8_t *big;

        /* an answer that broke the charge rules: recorded as evidence only */
        f = fetched("chg_f2", CHARGE_CAPTURED, 1);
        f.has_charge = false;
        f.body = html;
        f.body_len = sizeof(html) - 1;
        f.error = "answer is not a charge: invalid JSON";
        snprintf(f.next_check_at, sizeof(f.next_check_at), "2026-12-01T10:05:00.000Z");
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK_EQ_INT(f.event_id, 0);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM orders"), 0);
        CHECK_STR(q_text(db, "SELECT coalesce(status, 'none') || ':' || error FROM api_fetches"),
                  "none:answer is not a charge: invalid JSON");

        /* no answer at all */
        f = fetched("chg_f2", CHARGE_CAPTURED, 1);
        f.has_charge = false;
        f.http_status = 0;
        f.body = NULL;
        f.error = "timed out";
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK_EQ_INT(q_int(db, "SELECT http_status FROM api_fetches WHERE id = %lld",
                           (long long) f.id), -2);

        /* a "charge" from a 500, or for another id, is refused unwritten */
        f = fetched("chg_f2", CHARGE_CAPTURED, 1);
        f.http_status = 500;
        CHECK_EQ_INT(store_record_fetch(s, &f), -EINVAL);
        f = fetched("chg_f2", CHARGE_CAPTURED, 1);
        snprintf(f.charge.id, sizeof(f.charge.id), "chg_other");
        CHECK_EQ_INT(store_record_fetch(s, &f), -EINVAL);
        f = fetched("not_a_charge", CHARGE_CAPTURED, 1);
        CHECK_EQ_INT(store_record_fetch(s, &f), -EINVAL);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM api_fetches"), 2);

        /* a huge answer is kept truncated */
        big = malloc(3 << 20);
        CHECK(big != NULL);
        memset(big, 'x', 3 << 20);
        f = fetched("chg_f2", CHARGE_CAPTURED, 1);
        f.has_charge = false;
        f.body = big;
        f.body_len = 3 << 20;
        f.error = "answer too big";
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK_EQ_INT(q_int(db, "SELECT length(body) FROM api_fetches WHERE id = %lld",
                           (long long) f.id), STORE_FETCH_BODY_MAX);
        free(big);
        sqlite3_close(db);
        store_free(s);
}

/* ---- webhooks confirmed with the API (§8.4) ------------------------------ */

/* A verified webhook's claim; the body is the delivery's own (freed by
 * delivery_clear()). */
static struct delivery claim(const char *id, enum charge_status status, int64_t amount,
                             const char *message_id)
{
        struct delivery d = { .has_charge = true };

        snprintf(d.received_at, sizeof(d.received_at), NOW);
        snprintf(d.remote_addr, sizeof(d.remote_addr), "127.0.0.1");
        d.charge = make_charge(id, status, amount, "YER");
        d.message_id = message_id ? strdup(message_id) : NULL;
        d.body = (uint8_t *) strdup("{\"claimed\":true}");
        d.body_len = strlen((char *) d.body);
        return d;
}

static struct api_fetch confirm_fetch(const char *id, enum charge_status status, int64_t amount)
{
        struct api_fetch f = fetched(id, status, amount);

        f.reason = FETCH_WEBHOOK;
        return f;
}

static void test_confirmed_webhooks(void)
{
        const char *path = fresh_path();
        struct store *s = open_store(path);
        sqlite3 *db = raw_open(path);
        struct delivery d;
        struct api_fetch f;

        /* confirmed: the usual outcome, the event names delivery and fetch */
        d = claim("chg_c1", CHARGE_CAPTURED, 500, "msg_1");
        f = confirm_fetch("chg_c1", CHARGE_CAPTURED, 500);
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_APPLIED);
        CHECK_EQ_INT(d.http_status, 200);
        CHECK(d.id > 0 && f.id > 0 && f.event_id > 0 && d.event_id == f.event_id);
        CHECK_STR(q_text(db, "SELECT source || ',' || delivery_id || ',' || fetch_id FROM "
                             "order_events WHERE id = %lld", (long long) f.event_id),
                  q_text(db, "SELECT 'api,%lld,%lld'", (long long) d.id, (long long) f.id));
        CHECK_STR(q_text(db, "SELECT outcome || claimed_status || body FROM webhook_deliveries "
                             "WHERE id = %lld", (long long) d.id),
                  "appliedCAPTURED{\"claimed\":true}");
        CHECK_EQ_INT(q_int(db, "SELECT delivery_id FROM api_fetches WHERE id = %lld",
                           (long long) f.id), d.id);
        CHECK_STR(q_text(db, "SELECT status FROM orders WHERE charge_id = 'chg_c1'"), "CAPTURED");
        delivery_clear(&d);

        /* the same message id again: duplicate, only the rows */
        d = claim("chg_c1", CHARGE_CAPTURED, 500, "msg_1");
        f = confirm_fetch("chg_c1", CHARGE_CAPTURED, 500);
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_DUPLICATE);
        CHECK_EQ_INT(f.event_id, 0);
        delivery_clear(&d);

        /* a forged claim: the API's INITIATED charge is recorded, the claim is not */
        d = claim("chg_c2", CHARGE_CAPTURED, 500, NULL);
        f = confirm_fetch("chg_c2", CHARGE_INITIATED, 500);
        snprintf(f.next_check_at, sizeof(f.next_check_at), "2026-12-01T10:00:05.000Z");
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_UNCONFIRMED);
        CHECK_EQ_INT(d.http_status, 200);
        CHECK_EQ_INT(f.transition.outcome, OUTCOME_APPLIED);
        CHECK_STR(q_text(db, "SELECT status || ',' || next_check_at FROM orders "
                             "WHERE charge_id = 'chg_c2'"),
                  "INITIATED,2026-12-01T10:00:05.000Z");
        CHECK_STR(q_text(db, "SELECT outcome || ',' || claimed_status || ',' || error FROM "
                             "webhook_deliveries WHERE id = %lld", (long long) d.id),
                  "unconfirmed,CAPTURED,the CashPay API reports other terms");
        delivery_clear(&d);

        /* other amount: unconfirmed too */
        d = claim("chg_c2", CHARGE_INITIATED, 501, NULL);
        f = confirm_fetch("chg_c2", CHARGE_INITIATED, 500);
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_UNCONFIRMED);
        delivery_clear(&d);

        /* 404: unconfirmed, no order */
        d = claim("chg_c3", CHARGE_CAPTURED, 500, NULL);
        f = confirm_fetch("chg_c3", CHARGE_CAPTURED, 500);
        f.has_charge = false;
        f.http_status = 404;
        f.error = "no such charge";
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_UNCONFIRMED);
        CHECK_EQ_INT(d.http_status, 200);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM orders WHERE charge_id = 'chg_c3'"), 0);
        delivery_clear(&d);

        /* API down: deferred (503), nothing changed but the due time */
        d = claim("chg_c2", CHARGE_CAPTURED, 500, NULL);
        f = confirm_fetch("chg_c2", CHARGE_CAPTURED, 500);
        f.has_charge = false;
        f.http_status = 0;
        f.body = NULL;
        f.error = "timed out";
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_DEFERRED);
        CHECK_EQ_INT(d.http_status, 503);
        CHECK_STR(q_text(db, "SELECT status FROM orders WHERE charge_id = 'chg_c2'"), "INITIATED");
        CHECK(strcmp(q_text(db, "SELECT next_check_at FROM orders WHERE charge_id = 'chg_c2'"),
                     "2026-12-01T10:00:05.000Z") != 0);
        CHECK_STR(q_text(db, "SELECT outcome || http_status FROM webhook_deliveries "
                             "WHERE id = %lld", (long long) d.id), "deferred503");
        delivery_clear(&d);

        /* refused unwritten: no claim, another charge, a wrong reason */
        d = claim("chg_c4", CHARGE_CAPTURED, 500, NULL);
        f = confirm_fetch("chg_c5", CHARGE_CAPTURED, 500);
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), -EINVAL);
        f = confirm_fetch("chg_c4", CHARGE_CAPTURED, 500);
        f.reason = FETCH_RECONCILE;
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), -EINVAL);
        d.has_charge = false;
        f.reason = FETCH_WEBHOOK;
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), -EINVAL);
        delivery_clear(&d);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM webhook_deliveries"), 6);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM api_fetches"), 6);
        sqlite3_close(db);
        store_free(s);
}

/* Several confirmed webhooks in one transaction: one refused on its own
 * leaves nothing behind, the others are committed. */
static void test_confirmed_batch(void)
{
        const char *path = fresh_path();
        struct store *s = open_store(path);
        sqlite3 *db = raw_open(path);
        struct delivery d[3] = {
                claim("chg_b1", CHARGE_INITIATED, 500, NULL),
                claim("chg_b2", CHARGE_CAPTURED, 500, NULL),
                claim("chg_b3", CHARGE_CAPTURED, 700, NULL),
        };
        struct api_fetch f[3] = {
                confirm_fetch("chg_b1", CHARGE_INITIATED, 500),
                confirm_fetch("chg_bX", CHARGE_CAPTURED, 500), /* another charge */
                confirm_fetch("chg_b3", CHARGE_CAPTURED, 700),
        };
        struct delivery *dp[3] = { &d[0], &d[1], &d[2] };
        struct api_fetch *fp[3] = { &f[0], &f[1], &f[2] };
        int faults[3] = { 1, 1, 1 };

        CHECK_EQ_INT(store_record_confirmed_batch(s, dp, fp, 3, faults), 0);
        CHECK_EQ_INT(faults[0], 0);
        CHECK_EQ_INT(faults[1], -EINVAL);
        CHECK_EQ_INT(faults[2], 0);
        CHECK_EQ_INT(d[0].outcome, OUTCOME_APPLIED);
        CHECK_EQ_INT(d[2].outcome, OUTCOME_APPLIED);
        CHECK(d[0].id > 0 && d[2].id > 0 && d[1].id == 0 && f[1].id == 0);
        CHECK_STR(q_text(db, "SELECT group_concat(charge_id || status, ',') FROM "
                             "(SELECT * FROM orders ORDER BY charge_id)"),
                  "chg_b1INITIATED,chg_b3CAPTURED");
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM webhook_deliveries"), 2);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM api_fetches"), 2);
        CHECK_EQ_INT(store_record_confirmed_batch(s, dp, fp, 0, faults), 0);
        for (size_t i = 0; i < 3; i++)
                delivery_clear(&d[i]);
        sqlite3_close(db);
        store_free(s);
}

/* ---- the reconciler's queue --------------------------------------------- */

static void add_order(sqlite3 *db, const char *id, const char *status, const char *seen,
                      const char *next)
{
        char *sql = sqlite3_mprintf(
                "INSERT INTO orders (charge_id, status, amount, currency, first_seen_at, "
                "updated_at, captured_at, failed_at, next_check_at) VALUES (%Q, %Q, 1, 'YER', "
                "%Q, %Q, %Q, %Q, %Q)", id, status, seen, seen,
                strcmp(status, "CAPTURED") == 0 ? seen : NULL,
                strcmp(status, "FAILED") == 0 ? seen : NULL, next);

        CHECK_EQ_INT(raw_exec(db, sql), SQLITE_OK);
        sqlite3_free(sql);
}

static void test_due_orders(void)
{
        const char *path = fresh_path();
        struct store *s = open_store(path);
        sqlite3 *db = raw_open(path);
        struct due_order ids[8];
        size_t n;
        int64_t count;

        add_order(db, "chg_due_checked", "INITIATED", "2026-12-01T08:00:00.000Z",
                  "2026-12-01T09:59:00.000Z");
        add_order(db, "chg_later", "INITIATED", "2026-12-01T08:00:00.000Z",
                  "2026-12-01T10:30:00.000Z");
        add_order(db, "chg_unchecked_old", "INITIATED", "2026-12-01T09:00:00.000Z", NULL);
        add_order(db, "chg_unchecked_new", "INITIATED", "2026-12-01T09:58:00.000Z", NULL);
        add_order(db, "chg_given_up", "INITIATED", "2026-11-20T09:00:00.000Z",
                  "2026-12-01T09:00:00.000Z");
        add_order(db, "chg_paid", "CAPTURED", "2026-12-01T08:00:00.000Z",
                  "2026-12-01T09:00:00.000Z");

        /* untouched for 5 minutes, given up after 3 days */
        CHECK_EQ_INT(store_due_orders(s, NOW, "2026-12-01T09:55:00.000Z",
                                      "2026-11-28T10:00:00.000Z", 0, ids, 8, &n), 0);
        CHECK_EQ_INT(n, 2);
        CHECK_STR(ids[0].charge_id, "chg_unchecked_old"); /* 09:00 before 09:59 */
        CHECK_STR(ids[0].next_check_at, "");
        CHECK_STR(ids[1].charge_id, "chg_due_checked");
        CHECK_STR(ids[1].first_seen_at, "2026-12-01T08:00:00.000Z");
        CHECK_STR(ids[1].next_check_at, "2026-12-01T09:59:00.000Z");
        CHECK_EQ_INT(store_count_due(s, NOW, "2026-12-01T09:55:00.000Z",
                                     "2026-11-28T10:00:00.000Z", &count), 0);
        CHECK_EQ_INT(count, 2);
        CHECK_EQ_INT(store_due_orders(s, NOW, "2026-12-01T09:55:00.000Z",
                                      "2026-11-28T10:00:00.000Z", 0, ids, 1, &n), 0);
        CHECK_EQ_INT(n, 1);
        CHECK_STR(ids[0].claimed_at, "");

        /* the latest claim the API did not confirm comes with its order */
        CHECK_EQ_INT(raw_exec(db, "INSERT INTO webhook_deliveries (received_at, remote_addr, "
                                  "charge_id, claimed_status, outcome, http_status) VALUES "
                                  "('2026-12-01T09:58:00.000Z', '127.0.0.1', 'chg_due_checked', "
                                  "'CAPTURED', 'unconfirmed', 200), "
                                  "('2026-12-01T09:58:30.000Z', '127.0.0.1', 'chg_due_checked', "
                                  "'CAPTURED', 'unconfirmed', 200), "
                                  "('2026-12-01T09:59:00.000Z', '127.0.0.1', 'chg_due_checked', "
                                  "'INITIATED', 'applied', 200)"), SQLITE_OK);
        CHECK_EQ_INT(store_due_orders(s, NOW, "2026-12-01T09:55:00.000Z",
                                      "2026-11-28T10:00:00.000Z", 0, ids, 8, &n), 0);
        CHECK_EQ_INT(n, 2);
        CHECK_STR(ids[0].claimed_at, "");
        CHECK_STR(ids[1].charge_id, "chg_due_checked");
        CHECK_STR(ids[1].claimed_at, "2026-12-01T09:58:30.000Z");
        sqlite3_close(db);
        store_free(s);
}

static void test_return_ref_lookup(void)
{
        const char *path = fresh_path();
        struct store *s = open_store(path);
        sqlite3 *db = raw_open(path);
        struct order_record o;

        add_order(db, "chg_rr", "INITIATED", NOW, NULL);
        CHECK_EQ_INT(raw_exec(db, "UPDATE orders SET return_ref = 'Zr_9-x'"), SQLITE_OK);
        CHECK_EQ_INT(store_get_order_by_return_ref(s, "Zr_9-x", &o), 0);
        CHECK_STR(o.charge_id, "chg_rr");
        CHECK_STR(o.return_ref, "Zr_9-x");
        order_record_clear(&o);
        CHECK_EQ_INT(store_get_order_by_return_ref(s, "zr_9-x", &o), -ENOENT);
        CHECK_EQ_INT(store_get_order(s, "chg_rr", &o), 0);
        CHECK_STR(o.return_ref, "Zr_9-x");
        CHECK_STR(o.next_check_at, "");
        order_record_clear(&o);
        sqlite3_close(db);
        store_free(s);
}

/* ---- charge creation ---------------------------------------------------- */

static struct charge_ask ask_for(const char *ref, int64_t amount, const char *key,
                                 const char *rref)
{
        struct charge_ask a = {
                .order_ref = ref, .amount = amount, .description = "a watch",
                .new_idempotency_key = key, .new_return_ref = rref,
        };

        snprintf(a.currency, sizeof(a.currency), "YER");
        snprintf(a.now, sizeof(a.now), NOW);
        return a;
}

static void test_charge_plan_lifecycle(void)
{
        const char *path = fresh_path();
        struct store *s = open_store(path);
        sqlite3 *db = raw_open(path);
        struct charge_ask a = ask_for("42", 2000, "key-1", "ret-1");
        struct charge_plan p;
        struct charge c;
        struct api_fetch f;
        int64_t first;

        /* a new order_ref: a pending row, written before anything is sent */
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_SEND);
        CHECK_STR(p.idempotency_key, "key-1");
        CHECK_STR(p.return_ref, "ret-1");
        CHECK_EQ_INT(p.attempts, 0);
        first = p.request_id;
        CHECK_STR(q_text(db, "SELECT state FROM charge_requests WHERE id = %lld",
                         (long long) first), "pending");
        charge_plan_clear(&p);

        /* CashPay unreachable; the retry sends the same key, whatever is fresh */
        CHECK_EQ_INT(store_charge_attempt(s, first, false, 0, "connection refused", NOW), 0);
        a = ask_for("42", 2000, "key-2", "ret-2");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_SEND);
        CHECK_EQ_INT(p.request_id, first);
        CHECK_STR(p.idempotency_key, "key-1");
        CHECK_STR(p.return_ref, "ret-1");
        CHECK_EQ_INT(p.attempts, 1);
        charge_plan_clear(&p);
        /* other terms while the first may have been created: not sent */
        a = ask_for("42", 2500, "key-3", "ret-3");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_ORDER_CHANGED);
        CHECK_STR(p.charge_id, "");
        charge_plan_clear(&p);

        /* created: order INITIATED with both references and a checkout event */
        c = make_charge("chg_new", CHARGE_INITIATED, 2000, "YER");
        c.transaction_url = "https://pay.example/s/1";
        CHECK_EQ_INT(store_charge_created(s, first, &c, 201, NOW, "2026-12-01T10:05:00.000Z"), 0);
        CHECK_STR(q_text(db, "SELECT order_ref || ' ' || return_ref || ' ' || status || ' ' || "
                             "next_check_at FROM orders WHERE charge_id = 'chg_new'"),
                  "42 ret-1 INITIATED 2026-12-01T10:05:00.000Z");
        CHECK_STR(q_text(db, "SELECT source || coalesce(from_status, '-') || to_status "
                             "FROM order_events WHERE charge_id = 'chg_new'"), "checkout-INITIATED");
        CHECK_STR(q_text(db, "SELECT state || charge_id || http_status || attempts FROM "
                             "charge_requests WHERE id = %lld", (long long) first),
                  "createdchg_new2012");
        /* recording it twice is refused: the row is no longer pending */
        CHECK_EQ_INT(store_charge_created(s, first, &c, 201, NOW, ""), -ENOENT);

        /* a double click: the same charge, nothing new */
        a = ask_for("42", 2000, "key-4", "ret-4");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_EXISTS);
        CHECK_STR(p.charge_id, "chg_new");
        CHECK_STR(p.return_ref, "ret-1");
        CHECK_STR(p.transaction_url, "https://pay.example/s/1");
        charge_plan_clear(&p);
        a = ask_for("42", 1999, "key-5", "ret-5");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_ORDER_CHANGED);
        CHECK_STR(p.charge_id, "chg_new");
        charge_plan_clear(&p);

        /* it failed: the order_ref gets a new charge, with new keys */
        f = fetched("chg_new", CHARGE_FAILED, 2000);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        a = ask_for("42", 2000, "key-6", "ret-6");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_SEND);
        CHECK(p.request_id != first);
        CHECK_STR(p.idempotency_key, "key-6");
        c = make_charge("chg_new2", CHARGE_INITIATED, 2000, "YER");
        CHECK_EQ_INT(store_charge_created(s, p.request_id, &c, 200, NOW, ""), 0);
        charge_plan_clear(&p);
        f = fetched("chg_new2", CHARGE_CAPTURED, 2000);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        /* paid: whatever is asked now is already paid */
        a = ask_for("42", 1, "key-7", "ret-7");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_ALREADY_PAID);
        CHECK_STR(p.charge_id, "chg_new2");
        charge_plan_clear(&p);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM charge_requests"), 2);
        sqlite3_close(db);
        store_free(s);
}

static void test_charge_refused_and_bad_answers(void)
{
        const char *path = fresh_path();
        struct store *s = open_store(path);
        sqlite3 *db = raw_open(path);
        struct charge_ask a = ask_for("o-7", 500, "k-a", "r-a");
        struct charge_plan p;
        struct charge c;
        int64_t id;

        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        id = p.request_id;
        charge_plan_clear(&p);
        /* CashPay answered with another amount, or not INITIATED: never recorded */
        c = make_charge("chg_odd", CHARGE_INITIATED, 501, "YER");
        CHECK_EQ_INT(store_charge_created(s, id, &c, 201, NOW, ""), -EINVAL);
        c = make_charge("chg_odd", CHARGE_CAPTURED, 500, "YER");
        CHECK_EQ_INT(store_charge_created(s, id, &c, 201, NOW, ""), -EINVAL);
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM orders"), 0);
        CHECK_STR(q_text(db, "SELECT state FROM charge_requests"), "pending");

        /* refused (a 4xx): done with; the next ask is a new request */
        CHECK_EQ_INT(store_charge_attempt(s, id, true, 422, "currency not supported", NOW), 0);
        CHECK_STR(q_text(db, "SELECT state || http_status || error FROM charge_requests"),
                  "refused422currency not supported");
        CHECK_EQ_INT(store_charge_attempt(s, id, false, 500, "again", NOW), -ENOENT);
        a = ask_for("o-7", 500, "k-b", "r-b");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_SEND);
        CHECK_STR(p.idempotency_key, "k-b");
        charge_plan_clear(&p);
        /* a fresh key that is not fresh is a database refusal, not a reuse */
        a = ask_for("o-8", 500, "k-b", "r-c");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), -EINVAL);
        a = ask_for("o 8", 500, "k-d", "r-d");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), -EINVAL);

        /* a webhook recorded the charge before the creation was: it keeps
         * its status, gains the references, and no checkout event appears */
        a = ask_for("o-9", 900, "k-e", "r-e");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(raw_exec(db, "INSERT INTO orders (charge_id, status, amount, currency, "
                                  "first_seen_at, updated_at, captured_at) VALUES ('chg_fast', "
                                  "'CAPTURED', 900, 'YER', '" NOW "', '" NOW "', '" NOW "')"),
                     SQLITE_OK);
        c = make_charge("chg_fast", CHARGE_INITIATED, 900, "YER");
        CHECK_EQ_INT(store_charge_created(s, p.request_id, &c, 201, NOW, ""), 0);
        CHECK_STR(q_text(db, "SELECT status || order_ref || return_ref FROM orders "
                             "WHERE charge_id = 'chg_fast'"), "CAPTUREDo-9r-e");
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM order_events WHERE charge_id = 'chg_fast'"),
                     0);
        charge_plan_clear(&p);
        sqlite3_close(db);
        store_free(s);
}

/* Creations in one group: nothing of them visible (or durable) before the
 * group's commit; a step refused inside it leaves the others standing;
 * the same decisions as one transaction each. */
static void test_charge_group(void)
{
        const char *path = fresh_path();
        struct store *s = open_store(path);
        sqlite3 *db = raw_open(path);
        struct charge_ask a = ask_for("g-1", 100, "gk-1", "gr-1");
        struct charge_plan p1, p2, p3;
        struct charge c;

        CHECK_EQ_INT(store_charge_group_begin(s), 0);
        CHECK_EQ_INT(store_charge_group_begin(s), -EINVAL); /* no group in a group */
        CHECK_EQ_INT(store_charge_plan(s, &a, &p1), 0);
        CHECK_EQ_INT(p1.verdict, CHARGE_SEND);
        a = ask_for("g-2", 200, "gk-2", "gr-2");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p2), 0);
        /* refused on its own (a key that is not fresh): its savepoint only */
        a = ask_for("g-3", 300, "gk-2", "gr-3");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p3), -EINVAL);
        /* another connection sees nothing yet */
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM charge_requests"), 0);
        CHECK_EQ_INT(store_charge_group_commit(s), 0);
        CHECK_EQ_INT(store_charge_group_commit(s), -EINVAL);
        CHECK_STR(q_text(db, "SELECT group_concat(order_ref || idempotency_key, ' ') FROM "
                             "(SELECT * FROM charge_requests ORDER BY id)"), "g-1gk-1 g-2gk-2");

        /* settles and a plan in one group: the created order and its
         * event, a failed attempt kept pending, a replanned request reused */
        CHECK_EQ_INT(store_charge_group_begin(s), 0);
        c = make_charge("chg_g1", CHARGE_INITIATED, 100, "YER");
        CHECK_EQ_INT(store_charge_created(s, p1.request_id, &c, 201, NOW, ""), 0);
        c = make_charge("chg_g2", CHARGE_INITIATED, 999, "YER"); /* not what was asked */
        CHECK_EQ_INT(store_charge_created(s, p2.request_id, &c, 201, NOW, ""), -EINVAL);
        CHECK_EQ_INT(store_charge_attempt(s, p2.request_id, false, 0, "timed out", NOW), 0);
        CHECK_EQ_INT(store_charge_created(s, 4242, &c, 201, NOW, ""), -ENOENT);
        charge_plan_clear(&p2);
        a = ask_for("g-2", 200, "gk-9", "gr-9");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p2), 0);
        CHECK_STR(p2.idempotency_key, "gk-2");
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM orders"), 0);
        CHECK_EQ_INT(store_charge_group_commit(s), 0);
        CHECK_STR(q_text(db, "SELECT status || order_ref || return_ref FROM orders"),
                  "INITIATEDg-1gr-1");
        CHECK_STR(q_text(db, "SELECT source || to_status FROM order_events"), "checkoutINITIATED");
        CHECK_STR(q_text(db, "SELECT state || attempts || error FROM charge_requests "
                             "WHERE order_ref = 'g-2'"), "pending2timed out");
        CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM orders WHERE charge_id = 'chg_g2'"), 0);
        charge_plan_clear(&p1);
        charge_plan_clear(&p2);
        sqlite3_close(db);
        store_free(s);
}

static void remove_tmpdir(void)
{
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", tmpdir);
}

int main(void)
{
        const char *base = getenv("TMPDIR");

        snprintf(tmpdir, sizeof(tmpdir), "%s/test-store-api-XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return EXIT_FAILURE;
        }
        umask(007);
        test_migration_keeps_history();
        test_new_checks();
        test_fetch_through_state_machine();
        test_fetch_failures_not_truth();
        test_confirmed_webhooks();
        test_confirmed_batch();
        test_charge_group();
        test_due_orders();
        test_return_ref_lookup();
        test_charge_plan_lifecycle();
        test_charge_refused_and_bad_answers();
        remove_tmpdir();
        return check_summary();
}
