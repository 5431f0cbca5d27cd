/*
 * store-api-backends — the store's API half (store-api.h) through the
 * store interface only, so that one set of tests proves both engines:
 *     store-api-backends sqlite DIR
 *     store-api-backends postgresql URL PASSWORD_FILE
 * (test_store_api_backends.py runs it both ways, PostgreSQL on a server it
 * starts). Fetched charges through the state machine, the reconciler's
 * queue, return_ref lookups, charge creation per CONTRACT §8.3, a webhook
 * batch's several changes of one order, and
 * several handles (connections, as several instances have) at once: one
 * charge_requests row per order_ref however many plan it together, and on
 * PostgreSQL a due order handed to one of them only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cashpay/store-api.h"
#include "tests/check.h"

#define NOW "2026-12-01T10:00:00.000Z"
#define PAST "2026-12-01T09:00:00.000Z"
#define LATER "2026-12-01T11:00:00.000Z"
#define LONG_AGO "2026-11-01T00:00:00.000Z"
#define LEASE_MS 90500 /* a claim's lease on PostgreSQL: NOW + 90.5 s */
#define LEASE_END "2026-12-01T10:01:30.500Z"
#define NO_ORDER (-1) /* status_of(): no such order */

static struct store_options opts = {
        .synchronous = DB_SYNC_NORMAL, .busy_timeout_ms = 5000, .migrate = true,
};
static bool on_pg;

static struct store *open_store(void)
{
        struct store *s = NULL;
        char err[512];
        int r = store_new(&opts, &s, err, sizeof(err));

        if (r < 0) {
                fprintf(stderr, "store_new: %d %s\n", r, err);
                exit(EXIT_FAILURE);
        }
        return s;
}

static struct charge make_charge(const char *id, enum charge_status status, int64_t amount)
{
        struct charge c = { .status = status, .amount = amount, .created = 1672531200 };

        snprintf(c.id, sizeof(c.id), "%s", id);
        snprintf(c.currency, sizeof(c.currency), "YER");
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
        f.charge = make_charge(id, status, amount);
        return f;
}

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

static int status_of(struct store *s, const char *id)
{
        struct order_record o;
        int st;

        if (store_get_order(s, id, &o) < 0)
                return NO_ORDER;
        st = o.status;
        order_record_clear(&o);
        return st;
}

static void test_fetch_through_state_machine(struct store *s)
{
        struct api_fetch f = fetched("chg_fetch1", CHARGE_INITIATED, 500);
        struct order_record o;

        snprintf(f.next_check_at, sizeof(f.next_check_at), LATER);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK(f.id > 0);
        CHECK(!f.had_order);
        CHECK(f.transition.insert_order);
        CHECK(f.event_id > 0);
        CHECK_EQ_INT(store_get_order(s, "chg_fetch1", &o), 0);
        CHECK_EQ_INT(o.status, CHARGE_INITIATED);
        CHECK_STR(o.next_check_at, LATER);
        order_record_clear(&o);

        /* the same answer again: a fetch, no event */
        f = fetched("chg_fetch1", CHARGE_INITIATED, 500);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK(f.had_order);
        CHECK_EQ_INT(f.event_id, 0);

        /* captured */
        int64_t first = f.id;
        f = fetched("chg_fetch1", CHARGE_CAPTURED, 500);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK(f.id > first);
        CHECK_EQ_INT(f.previous, CHARGE_INITIATED);
        CHECK(f.transition.change_status);
        CHECK(f.event_id > 0);
        CHECK_EQ_INT(status_of(s, "chg_fetch1"), CHARGE_CAPTURED);

        /* an answer that is not a charge is recorded and changes nothing */
        f = (struct api_fetch) { .reason = FETCH_MANUAL, .http_status = 503,
                                 .error = "upstream said 503", .duration_ms = 3 };
        snprintf(f.charge_id, sizeof(f.charge_id), "chg_fetch1");
        snprintf(f.requested_at, sizeof(f.requested_at), NOW);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK(f.id > 0);
        CHECK_EQ_INT(f.event_id, 0);
        CHECK_EQ_INT(status_of(s, "chg_fetch1"), CHARGE_CAPTURED);

        /* a 200 for another charge is never the truth */
        f = fetched("chg_fetch2", CHARGE_CAPTURED, 500);
        snprintf(f.charge.id, sizeof(f.charge.id), "chg_other");
        CHECK_EQ_INT(store_record_fetch(s, &f), -EINVAL);
        CHECK_EQ_INT(status_of(s, "chg_fetch2"), NO_ORDER);
}

static void make_initiated(struct store *s, const char *id, const char *next_check)
{
        struct api_fetch f = fetched(id, CHARGE_INITIATED, 100);

        snprintf(f.next_check_at, sizeof(f.next_check_at), "%s", next_check);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
}

static struct delivery claim(const char *id, enum charge_status status, int64_t amount,
                             const char *message_id)
{
        struct delivery d = { .has_charge = true };

        snprintf(d.received_at, sizeof(d.received_at), NOW);
        snprintf(d.remote_addr, sizeof(d.remote_addr), "127.0.0.1");
        d.charge = make_charge(id, status, amount);
        d.message_id = message_id ? strdup(message_id) : NULL;
        d.body = (uint8_t *) strdup("{\"claimed\":true}");
        d.body_len = strlen((char *) d.body);
        return d;
}

/* A webhook with the charge's optional texts (NULL: absent). */
static struct delivery claim_with(const char *id, enum charge_status status, int64_t amount,
                                  const char *order_ref, const char *description,
                                  const char *url)
{
        struct delivery d = claim(id, status, amount, NULL);

        d.charge.order_ref = order_ref ? strdup(order_ref) : NULL;
        d.charge.description = description ? strdup(description) : NULL;
        d.charge.transaction_url = url ? strdup(url) : NULL;
        return d;
}

/* Several changes of one order in one batch leave what they would one
 * after the other: the last status, the time of every status reached, the
 * first text given for each column, a review flag beside a status change
 * (PostgreSQL writes each order once per batch). */
static void test_batch_one_order(struct store *s)
{
        struct delivery d[4];
        struct delivery *b[4] = { &d[0], &d[1], &d[2], &d[3] };
        struct order_record o;

        d[0] = claim_with("chg_merge1", CHARGE_INITIATED, 100, NULL, NULL, NULL);
        d[1] = claim_with("chg_merge1", CHARGE_FAILED, 100, "ref-1", "first", NULL);
        d[2] = claim_with("chg_merge1", CHARGE_CAPTURED, 100, "ref-2", "second", "https://t/2");
        d[3] = claim_with("chg_merge2", CHARGE_INITIATED, 100, NULL, NULL, NULL);
        CHECK_EQ_INT(store_submit(s, b, 4), 0);
        for (int i = 0; i < 4; i++)
                CHECK_EQ_INT(d[i].outcome, OUTCOME_APPLIED);
        CHECK_EQ_INT(d[2].previous, CHARGE_FAILED);
        CHECK(d[0].event_id < d[1].event_id && d[1].event_id < d[2].event_id);
        CHECK_EQ_INT(store_get_order(s, "chg_merge1", &o), 0);
        CHECK_EQ_INT(o.status, CHARGE_CAPTURED);
        CHECK(o.captured_at[0] && o.failed_at[0], "captured_at %s failed_at %s", o.captured_at,
              o.failed_at);
        CHECK_STR(o.order_ref ? o.order_ref : "(null)", "ref-1");
        CHECK_STR(o.description ? o.description : "(null)", "first");
        CHECK_STR(o.transaction_url ? o.transaction_url : "(null)", "https://t/2");
        CHECK(!o.needs_review);
        order_record_clear(&o);
        for (int i = 0; i < 4; i++)
                delivery_clear(&d[i]);

        /* an existing order: a conflict's review flag, then a capture */
        d[0] = claim_with("chg_merge2", CHARGE_CAPTURED, 999, NULL, NULL, NULL);
        d[1] = claim_with("chg_merge2", CHARGE_CAPTURED, 100, NULL, "late", NULL);
        CHECK_EQ_INT(store_submit(s, b, 2), 0);
        CHECK_EQ_INT(d[0].outcome, OUTCOME_CONFLICT);
        CHECK_EQ_INT(d[1].outcome, OUTCOME_APPLIED);
        CHECK_EQ_INT(store_get_order(s, "chg_merge2", &o), 0);
        CHECK_EQ_INT(o.status, CHARGE_CAPTURED);
        CHECK(o.captured_at[0] && !o.failed_at[0]);
        CHECK(o.needs_review);
        CHECK_STR(o.description ? o.description : "(null)", "late");
        order_record_clear(&o);
        for (int i = 0; i < 2; i++)
                delivery_clear(&d[i]);
}

static struct api_fetch confirm_fetch(const char *id, enum charge_status status, int64_t amount)
{
        struct api_fetch f = fetched(id, status, amount);

        f.reason = FETCH_WEBHOOK;
        return f;
}

/* §8.4: the delivery and its fetch in one transaction, on both engines. */
static void test_confirmed_webhooks(struct store *s)
{
        struct order_record o;
        struct delivery d;
        struct api_fetch f;

        d = claim("chg_conf1", CHARGE_CAPTURED, 500, "msg_conf1");
        f = confirm_fetch("chg_conf1", CHARGE_CAPTURED, 500);
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_APPLIED);
        CHECK_EQ_INT(d.http_status, 200);
        CHECK(d.id > 0 && f.id > 0 && f.event_id > 0 && d.event_id == f.event_id);
        CHECK_EQ_INT(f.delivery_id, d.id);
        CHECK_EQ_INT(status_of(s, "chg_conf1"), CHARGE_CAPTURED);
        delivery_clear(&d);

        /* the same message id again: duplicate, no event */
        d = claim("chg_conf1", CHARGE_CAPTURED, 500, "msg_conf1");
        f = confirm_fetch("chg_conf1", CHARGE_CAPTURED, 500);
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_DUPLICATE);
        CHECK(f.id > 0);
        CHECK_EQ_INT(f.event_id, 0);
        delivery_clear(&d);

        /* a forged claim: the API's INITIATED charge is what is recorded */
        d = claim("chg_conf2", CHARGE_CAPTURED, 500, NULL);
        f = confirm_fetch("chg_conf2", CHARGE_INITIATED, 500);
        snprintf(f.next_check_at, sizeof(f.next_check_at), LATER);
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_UNCONFIRMED);
        CHECK_EQ_INT(d.http_status, 200);
        CHECK(f.event_id > 0);
        CHECK_EQ_INT(store_get_order(s, "chg_conf2", &o), 0);
        CHECK_EQ_INT(o.status, CHARGE_INITIATED);
        CHECK_STR(o.next_check_at, LATER);
        order_record_clear(&o);
        delivery_clear(&d);

        /* 404: unconfirmed, nothing else */
        d = claim("chg_conf3", CHARGE_CAPTURED, 500, NULL);
        f = (struct api_fetch) { .reason = FETCH_WEBHOOK, .http_status = 404,
                                 .error = "no such charge at CashPay" };
        snprintf(f.charge_id, sizeof(f.charge_id), "chg_conf3");
        snprintf(f.requested_at, sizeof(f.requested_at), NOW);
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_UNCONFIRMED);
        CHECK_EQ_INT(d.http_status, 200);
        CHECK_EQ_INT(status_of(s, "chg_conf3"), NO_ORDER);
        delivery_clear(&d);

        /* no answer: deferred (503), the INITIATED order due at once */
        d = claim("chg_conf2", CHARGE_CAPTURED, 500, NULL);
        f = (struct api_fetch) { .reason = FETCH_WEBHOOK, .error = "timed out" };
        snprintf(f.charge_id, sizeof(f.charge_id), "chg_conf2");
        snprintf(f.requested_at, sizeof(f.requested_at), NOW);
        CHECK_EQ_INT(store_record_confirmed(s, &d, &f), 0);
        CHECK_EQ_INT(d.outcome, OUTCOME_DEFERRED);
        CHECK_EQ_INT(d.http_status, 503);
        CHECK_EQ_INT(store_get_order(s, "chg_conf2", &o), 0);
        CHECK_EQ_INT(o.status, CHARGE_INITIATED);
        /* the time of recording (the clock's, not the test's NOW) */
        CHECK(o.next_check_at[0] && strcmp(o.next_check_at, LATER) != 0,
              "deferred: due at once, not %s", o.next_check_at);
        order_record_clear(&o);
        delivery_clear(&d);
}

/* A claim given back is due again at once; one a fetch replaced is not
 * touched. SQLite claims nothing: the order is due throughout. */
static void test_release_due(struct store *s)
{
        struct due_order d[4];
        size_t n = 0;

        make_initiated(s, "chg_rel1", PAST);
        CHECK_EQ_INT(store_due_orders(s, NOW, LONG_AGO, LONG_AGO, LEASE_MS, d, 4, &n), 0);
        CHECK_EQ_INT(n, 1);
        CHECK_STR(d[0].charge_id, "chg_rel1");
        CHECK_STR(d[0].claimed_until, on_pg ? LEASE_END : ""); /* the caller's lease */
        size_t again = 99;
        struct due_order e[4];
        CHECK_EQ_INT(store_due_orders(s, NOW, LONG_AGO, LONG_AGO, LEASE_MS, e, 4, &again), 0);
        CHECK_EQ_INT(again, on_pg ? 0 : 1);
        CHECK_EQ_INT(store_release_due(s, &d[0]), 0);
        CHECK_EQ_INT(store_due_orders(s, NOW, LONG_AGO, LONG_AGO, LEASE_MS, e, 4, &again), 0);
        CHECK_EQ_INT(again, 1);
        CHECK_STR(e[0].next_check_at, PAST); /* what it was before the claim */

        /* claimed, then fetched: the release leaves the fetch's time */
        if (on_pg) {
                struct api_fetch f = fetched("chg_rel1", CHARGE_INITIATED, 100);
                struct order_record o;

                snprintf(f.next_check_at, sizeof(f.next_check_at), LATER);
                CHECK_EQ_INT(store_record_fetch(s, &f), 0);
                CHECK_EQ_INT(store_release_due(s, &e[0]), 0);
                CHECK_EQ_INT(store_get_order(s, "chg_rel1", &o), 0);
                CHECK_STR(o.next_check_at, LATER);
                order_record_clear(&o);
        }
}

static void test_due_orders(struct store *s)
{
        struct due_order d[8];
        size_t n = 99;
        int64_t count = -1;

        make_initiated(s, "chg_due_b", "2026-12-01T09:30:00.000Z");
        make_initiated(s, "chg_due_a", "2026-12-01T09:10:00.000Z");
        make_initiated(s, "chg_due_later", LATER);
        CHECK_EQ_INT(store_count_due(s, NOW, LONG_AGO, LONG_AGO, &count), 0);
        CHECK_EQ_INT(count, 2);
        CHECK_EQ_INT(store_due_orders(s, NOW, LONG_AGO, LONG_AGO, LEASE_MS, d, 8, &n), 0);
        CHECK_EQ_INT(n, 2);
        CHECK_STR(d[0].charge_id, "chg_due_a"); /* soonest first */
        CHECK_STR(d[0].next_check_at, "2026-12-01T09:10:00.000Z");
        CHECK_STR(d[1].charge_id, "chg_due_b");
        /* first seen too long ago: given up */
        CHECK_EQ_INT(store_due_orders(s, NOW, LONG_AGO, "2100-01-01T00:00:00.000Z", LEASE_MS, d,
                                      8, &n), 0);
        CHECK_EQ_INT(n, 0);
        /* once fetched, the order leaves the queue until its next look */
        struct api_fetch f = fetched("chg_due_a", CHARGE_CAPTURED, 100);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        f = fetched("chg_due_b", CHARGE_INITIATED, 100);
        snprintf(f.next_check_at, sizeof(f.next_check_at), "2026-12-01T12:00:00.000Z");
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK_EQ_INT(store_count_due(s, NOW, LONG_AGO, LONG_AGO, &count), 0);
        CHECK_EQ_INT(count, 0);
        CHECK_EQ_INT(store_count_due(s, "2026-12-01T12:00:00.000Z", LONG_AGO, LONG_AGO, &count), 0);
        CHECK_EQ_INT(count, 2);
}

static void test_charge_plan_lifecycle(struct store *s)
{
        struct charge_ask a = ask_for("life-1", 2000, "key-life-1", "ret-life-1");
        struct charge_plan p;
        struct order_record o;
        struct charge c;
        int64_t first;

        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_SEND);
        CHECK_STR(p.idempotency_key, "key-life-1");
        CHECK_EQ_INT(p.attempts, 0);
        first = p.request_id;
        charge_plan_clear(&p);

        /* the same POST again: the same row and key, one attempt more */
        a = ask_for("life-1", 2000, "key-life-2", "ret-life-2");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_SEND);
        CHECK_EQ_INT(p.request_id, first);
        CHECK_STR(p.idempotency_key, "key-life-1");
        CHECK_STR(p.return_ref, "ret-life-1");
        CHECK_EQ_INT(p.attempts, 1);
        charge_plan_clear(&p);

        /* other terms while the first is pending: its outcome is unknown */
        a = ask_for("life-1", 2500, "key-life-3", "ret-life-3");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_ORDER_CHANGED);
        CHECK_STR(p.charge_id, "");
        charge_plan_clear(&p);

        /* a timeout: still pending */
        CHECK_EQ_INT(store_charge_attempt(s, first, false, 0, "timed out", NOW), 0);

        /* CashPay created something else than asked: never recorded */
        c = make_charge("chg_life", CHARGE_INITIATED, 1999);
        CHECK_EQ_INT(store_charge_created(s, first, &c, 201, NOW, LATER), -EINVAL);
        CHECK_EQ_INT(status_of(s, "chg_life"), NO_ORDER);

        c = make_charge("chg_life", CHARGE_INITIATED, 2000);
        c.transaction_url = "https://pay.example/t/1";
        CHECK_EQ_INT(store_charge_created(s, first, &c, 201, NOW, LATER), 0);
        CHECK_EQ_INT(store_charge_created(s, first, &c, 201, NOW, LATER), -ENOENT);
        CHECK_EQ_INT(store_charge_attempt(s, first, false, 0, "late", NOW), -ENOENT);
        CHECK_EQ_INT(store_get_order_by_return_ref(s, "ret-life-1", &o), 0);
        CHECK_STR(o.charge_id, "chg_life");
        CHECK_STR(o.order_ref ? o.order_ref : "", "life-1");
        CHECK_STR(o.next_check_at, LATER);
        order_record_clear(&o);
        CHECK_EQ_INT(store_get_order_by_return_ref(s, "ret-nothing", &o), -ENOENT);

        /* now the order answers */
        a = ask_for("life-1", 2000, "key-life-4", "ret-life-4");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_EXISTS);
        CHECK_STR(p.charge_id, "chg_life");
        CHECK_STR(p.return_ref, "ret-life-1");
        CHECK_STR(p.transaction_url ? p.transaction_url : "", "https://pay.example/t/1");
        charge_plan_clear(&p);
        a = ask_for("life-1", 3000, "key-life-5", "ret-life-5");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_ORDER_CHANGED);
        CHECK_STR(p.charge_id, "chg_life");
        charge_plan_clear(&p);

        struct api_fetch f = fetched("chg_life", CHARGE_CAPTURED, 2000);
        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
        CHECK(f.had_order);
        a = ask_for("life-1", 2000, "key-life-6", "ret-life-6");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_ALREADY_PAID);
        CHECK_STR(p.charge_id, "chg_life");
        charge_plan_clear(&p);
}

static void test_charge_refused(struct store *s)
{
        struct charge_ask a = ask_for("refused-1", 700, "key-ref-1", "ret-ref-1");
        struct charge_plan p;
        int64_t first;

        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        first = p.request_id;
        charge_plan_clear(&p);
        CHECK_EQ_INT(store_charge_attempt(s, first, true, 422, "bad amount", NOW), 0);
        CHECK_EQ_INT(store_charge_attempt(s, first, true, 422, "again", NOW), -ENOENT);
        /* refused: the next POST is a new request with a new key */
        a = ask_for("refused-1", 700, "key-ref-2", "ret-ref-2");
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.verdict, CHARGE_SEND);
        CHECK(p.request_id != first);
        CHECK_STR(p.idempotency_key, "key-ref-2");
        CHECK_EQ_INT(p.attempts, 0);
        charge_plan_clear(&p);
        CHECK_EQ_INT(store_charge_attempt(s, 999999, false, 0, NULL, NOW), -ENOENT);
}

/* ---- several handles at once --------------------------------------------------- */

#define WORKERS 4

/* Forks @n children that each open a handle, wait for the go, run @fn and
 * write what it gives into their pipe; returns the read ends. */
static void run_workers(int n, void (*fn)(struct store *, int, FILE *), FILE **ret)
{
        int go[2];

        if (pipe(go) < 0)
                abort();
        for (int i = 0; i < n; i++) {
                int out[2];
                char c;

                if (pipe(out) < 0)
                        abort();
                fflush(NULL);
                pid_t pid = fork();
                if (pid < 0)
                        abort();
                if (pid == 0) {
                        check_failures = 0; /* its own, not the parent's so far */
                        struct store *s = open_store();
                        FILE *w = fdopen(out[1], "w");

                        close(out[0]);
                        close(go[1]);
                        if (read(go[0], &c, 1) != 0) /* all start when the parent closes it */
                                _exit(3);
                        fn(s, i, w);
                        fclose(w);
                        store_free(s);
                        _exit(check_failures ? 1 : 0);
                }
                close(out[1]);
                ret[i] = fdopen(out[0], "r");
        }
        close(go[0]);
        usleep(300 * 1000); /* every child connected and waiting */
        close(go[1]);
}

static void wait_workers(int n)
{
        for (int i = 0; i < n; i++) {
                int status;

                CHECK(wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "a worker failed");
        }
}

static void plan_worker(struct store *s, int i, FILE *w)
{
        char key[32], rref[32];
        struct charge_plan p;

        snprintf(key, sizeof(key), "key-race-%d", i);
        snprintf(rref, sizeof(rref), "ret-race-%d", i);
        struct charge_ask a = ask_for("race-1", 900, key, rref);
        int r = store_charge_plan(s, &a, &p);

        fprintf(w, "%d %d %" PRId64 " %s\n", r, (int) p.verdict, p.request_id,
                r == 0 ? p.idempotency_key : "-");
        charge_plan_clear(&p);
}

/* Every handle planning the same order_ref at once gets the one request row. */
static void test_plan_race(void)
{
        FILE *out[WORKERS];
        int64_t id = -1;
        char first_key[64] = "";
        int attempts = 0;

        run_workers(WORKERS, plan_worker, out);
        for (int i = 0; i < WORKERS; i++) {
                int r = -1, verdict = -1;
                int64_t rid = 0;
                char key[64] = "";

                CHECK_EQ_INT(fscanf(out[i], "%d %d %" SCNd64 " %63s", &r, &verdict, &rid, key), 4);
                fclose(out[i]);
                CHECK_EQ_INT(r, 0);
                CHECK_EQ_INT(verdict, CHARGE_SEND);
                if (id < 0) {
                        id = rid;
                        snprintf(first_key, sizeof(first_key), "%s", key);
                }
                CHECK(rid == id, "request %" PRId64 " and %" PRId64 ": two rows", rid, id);
                CHECK_STR(key, first_key);
                attempts++;
        }
        wait_workers(WORKERS);
        /* the row counted every attempt: a fresh one finds WORKERS before it */
        struct store *s = open_store();
        struct charge_ask a = ask_for("race-1", 900, "key-race-x", "ret-race-x");
        struct charge_plan p;
        CHECK_EQ_INT(store_charge_plan(s, &a, &p), 0);
        CHECK_EQ_INT(p.request_id, id);
        CHECK_EQ_INT(p.attempts, attempts);
        charge_plan_clear(&p);
        store_free(s);
}

#define RACE_ORDERS 40

static void due_worker(struct store *s, int i, FILE *w)
{
        struct due_order d[3];
        size_t n;

        /* as the reconciler: take a few, "fetch" each, take more */
        do {
                CHECK_EQ_INT(store_due_orders(s, NOW, LONG_AGO, LONG_AGO, LEASE_MS, d, 3, &n), 0);
                for (size_t k = 0; k < n; k++) {
                        struct api_fetch f = fetched(d[k].charge_id, CHARGE_INITIATED, 100);

                        snprintf(f.next_check_at, sizeof(f.next_check_at), LATER);
                        CHECK_EQ_INT(store_record_fetch(s, &f), 0);
                        fprintf(w, "%s\n", d[k].charge_id);
                }
        } while (n > 0);
}

/* PostgreSQL: instances share the queue out, no order fetched twice. */
static void test_due_race(void)
{
        struct store *s = open_store();
        FILE *out[WORKERS];
        bool seen[RACE_ORDERS] = { false };
        int total = 0;
        char id[64];

        for (int i = 0; i < RACE_ORDERS; i++) {
                snprintf(id, sizeof(id), "chg_race%02d", i);
                make_initiated(s, id, PAST);
        }
        run_workers(WORKERS, due_worker, out);
        for (int i = 0; i < WORKERS; i++) {
                while (fscanf(out[i], "%63s", id) == 1) {
                        int k = atoi(id + strlen("chg_race"));

                        CHECK(k >= 0 && k < RACE_ORDERS && !seen[k], "%s handed out twice", id);
                        if (k >= 0 && k < RACE_ORDERS)
                                seen[k] = true;
                        total++;
                }
                fclose(out[i]);
        }
        wait_workers(WORKERS);
        CHECK_EQ_INT(total, RACE_ORDERS);
        int64_t count = -1;
        CHECK_EQ_INT(store_count_due(s, NOW, LONG_AGO, LONG_AGO, &count), 0);
        CHECK_EQ_INT(count, 0);
        store_free(s);
}

int main(int argc, char **argv)
{
        char path[1024];

        if (argc == 3 && strcmp(argv[1], "sqlite") == 0) {
                snprintf(path, sizeof(path), "%s/store-api.db", argv[2]);
                opts.path = path;
        } else if (argc == 4 && strcmp(argv[1], "postgresql") == 0) {
                opts.backend = DB_BACKEND_POSTGRESQL;
                opts.url = argv[2];
                opts.password_file = argv[3];
                on_pg = true;
        } else {
                fprintf(stderr, "usage: %s sqlite DIR | postgresql URL PASSWORD_FILE\n", argv[0]);
                return EXIT_FAILURE;
        }
        struct store *s = open_store();
        test_fetch_through_state_machine(s);
        test_due_orders(s);
        test_confirmed_webhooks(s);
        test_batch_one_order(s);
        test_release_due(s);
        test_charge_plan_lifecycle(s);
        test_charge_refused(s);
        store_free(s);
        test_plan_race();
        /* SQLite serves one instance: its queue is a plain read */
        if (on_pg)
                test_due_race();
        return check_summary();
}
