/*
 * store-api — the API half's writes and reads: fetched charges through the
 * state machine, charge creation requests, the reconciler's queue.
 *
 * The reconciler's reads and the lookups run far less often than
 * store_submit() and prepare their statements per call. Those of a
 * confirmed webhook (with confirm = api, one per webhook) and of a charge
 * creation (about seven per charge at the checkout listener) are in the
 * handle's statement cache instead, and both are recorded in batches, one
 * commit for many, as store_submit() records plain webhooks
 * (store_record_confirmed_batch(), store_charge_group_begin()).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/store-api.h"
#include "src/store/pg-store.h"
#include "src/store/store-internal.h"

static const char *const reason_names[_FETCH_REASON_MAX] = {
        [FETCH_WEBHOOK] = "webhook",
        [FETCH_RETURN] = "return",
        [FETCH_RECONCILE] = "reconcile",
        [FETCH_MANUAL] = "manual",
};

const char *fetch_reason_name(enum fetch_reason r)
{
        return (unsigned) r < _FETCH_REASON_MAX ? reason_names[r] : NULL;
}

static int bind_int64(sqlite3_stmt *st, int idx, int64_t v)
{
        return store_errno_from_sqlite(sqlite3_bind_int64(st, idx, v));
}

static int bind_int64_or_null(sqlite3_stmt *st, int idx, int64_t v)
{
        return store_errno_from_sqlite(v ? sqlite3_bind_int64(st, idx, v)
                                         : sqlite3_bind_null(st, idx));
}

/* Runs a prepared write that must change exactly one row. */
static int step_one_change(struct store *s, sqlite3_stmt *st)
{
        int r = store_stmt_done(st);

        if (r >= 0 && sqlite3_changes(s->db) != 1)
                return -ENOENT;
        return r;
}

/* ---- api_fetches ---------------------------------------------------------- */

static int bind_fetch_body(sqlite3_stmt *st, int idx, const struct api_fetch *f)
{
        size_t n = f->body_len > STORE_FETCH_BODY_MAX ? STORE_FETCH_BODY_MAX : f->body_len;

        if (!f->body)
                return store_errno_from_sqlite(sqlite3_bind_null(st, idx));
        return store_errno_from_sqlite(sqlite3_bind_blob64(st, idx, f->body, n, SQLITE_STATIC));
}

static int insert_fetch(struct store *s, struct api_fetch *f)
{
        const struct charge *c = f->has_charge ? &f->charge : NULL;
        sqlite3_stmt *st;
        int r;

        r = store_stmt(s, STMT_API_FETCH_INSERT, &st);
        if (r < 0)
                return r;
        if ((r = store_bind_text_or_null(st, 1, f->charge_id)) < 0 ||
            (r = store_bind_text_or_null(st, 2, f->requested_at)) < 0 ||
            (r = store_bind_text_or_null(st, 3, fetch_reason_name(f->reason))) < 0 ||
            (r = bind_int64_or_null(st, 4, f->delivery_id)) < 0 ||
            (r = bind_int64_or_null(st, 5, f->http_status)) < 0 ||
            (r = store_bind_text_or_null(st, 6, c ? charge_status_name(c->status) : NULL)) < 0 ||
            (r = c ? bind_int64(st, 7, c->amount) : 0) < 0 ||
            (r = store_bind_text_or_null(st, 8, c ? c->currency : NULL)) < 0 ||
            (r = bind_fetch_body(st, 9, f)) < 0 ||
            (r = store_bind_text_or_null(st, 10, c ? NULL : f->error)) < 0 ||
            (r = bind_int64(st, 11, f->duration_ms < 0 ? 0 : f->duration_ms)) < 0) {
                store_reset(st);
                return r;
        }
        r = store_stmt_done(st);
        if (r >= 0)
                f->id = sqlite3_last_insert_rowid(s->db);
        return r;
}

static int insert_event(struct store *s, const char *charge_id, const char *from,
                        const char *to, const char *source, int64_t delivery_id,
                        int64_t fetch_id, const char *now, int64_t *ret_id)
{
        sqlite3_stmt *st;
        int r;

        r = store_stmt(s, STMT_API_EVENT_INSERT, &st);
        if (r < 0)
                return r;
        if ((r = store_bind_text_or_null(st, 1, charge_id)) < 0 ||
            (r = store_bind_text_or_null(st, 2, from)) < 0 ||
            (r = store_bind_text_or_null(st, 3, to)) < 0 ||
            (r = bind_int64_or_null(st, 4, delivery_id)) < 0 ||
            (r = store_bind_text_or_null(st, 5, now)) < 0 ||
            (r = store_bind_text_or_null(st, 6, source)) < 0 ||
            (r = bind_int64_or_null(st, 7, fetch_id)) < 0) {
                store_reset(st);
                return r;
        }
        r = store_stmt_done(st);
        if (r >= 0)
                *ret_id = sqlite3_last_insert_rowid(s->db);
        return r;
}

/* next_check_at for an order still INITIATED ("" keeps it). */
static int set_next_check(struct store *s, const char *charge_id, const char *when)
{
        sqlite3_stmt *st;
        int r;

        if (!when[0])
                return 0;
        r = store_stmt(s, STMT_API_NEXT_CHECK, &st);
        if (r < 0)
                return r;
        if ((r = store_bind_text_or_null(st, 1, charge_id)) < 0 ||
            (r = store_bind_text_or_null(st, 2, when)) < 0) {
                store_reset(st);
                return r;
        }
        return store_stmt_done(st);
}

/* The API's charge through the state machine, as a webhook's would go. */
static int apply_fetched(struct store *s, struct api_fetch *f, const char *now)
{
        struct order_view view;
        int r;

        r = store_read_order_view(s, f->charge_id, &view);
        if (r < 0)
                return r;
        f->had_order = view.exists;
        f->previous = view.status;
        f->transition = state_decide(&view, &f->charge);
        r = store_apply_transition(s, &f->transition, &f->charge, now);
        if (r < 0 || !f->transition.change_status)
                return r;
        return insert_event(s, f->charge_id,
                            view.exists ? charge_status_name(view.status) : NULL,
                            charge_status_name(f->charge.status), "api", f->delivery_id, f->id,
                            now, &f->event_id);
}

static bool fetch_valid(const struct api_fetch *f)
{
        if (!charge_id_valid(f->charge_id) || !fetch_reason_name(f->reason))
                return false;
        if (f->http_status != 0 && (f->http_status < 100 || f->http_status > 599))
                return false;
        /* only a 200 carrying the very charge asked for is the truth */
        return !f->has_charge ||
               (f->http_status == 200 && strcmp(f->charge.id, f->charge_id) == 0);
}

/* What recording fills in, cleared first so a failed call leaves none of a
 * previous one's results behind. */
static void fetch_reset_result(struct api_fetch *f)
{
        f->id = 0;
        f->had_order = false;
        f->transition = (struct transition) { 0 };
        f->event_id = 0;
}

static int record_fetch(struct store *s, struct api_fetch *f, const char *now)
{
        int r = insert_fetch(s, f);

        if (r >= 0 && f->has_charge)
                r = apply_fetched(s, f, now);
        if (r >= 0)
                r = set_next_check(s, f->charge_id, f->next_check_at);
        return r;
}

int store_record_fetch(struct store *s, struct api_fetch *f)
{
        int fault, r;

        fetch_reset_result(f);
        if (s->read_only)
                return -EROFS;
        if (!fetch_valid(f))
                return -EINVAL;
        r = store_record_fetch_batch(s, &f, 1, &fault);
        return r < 0 ? r : fault;
}

/* ---- webhooks confirmed with the API (§8.4) ------------------------------ */

static bool same_terms(const struct charge *a, const struct charge *b)
{
        return a->status == b->status && a->amount == b->amount &&
               strcmp(a->currency, b->currency) == 0;
}

/* What the delivery's row says, decided before anything is written (the
 * delivery comes first: the fetch and the event name its id). */
static int decide_confirmed(struct store *s, struct delivery *d, struct api_fetch *f,
                            struct order_view *view, bool *run_machine)
{
        bool seen;
        int r;

        *run_machine = false;
        d->http_status = 200;
        r = store_message_seen(s, delivery_message_id(d), &seen);
        if (r < 0)
                return r;
        if (seen) {
                d->outcome = OUTCOME_DUPLICATE;
                d->transition = (struct transition) { .outcome = OUTCOME_DUPLICATE,
                                                      .reason = MESSAGE_SEEN_REASON };
                return 0;
        }
        if (!f->has_charge) {
                bool not_found = f->http_status == 404;
                d->outcome = not_found ? OUTCOME_UNCONFIRMED : OUTCOME_DEFERRED;
                d->http_status = not_found ? 200 : 503;
                return 0;
        }
        r = store_read_order_view(s, f->charge_id, view);
        if (r < 0)
                return r;
        f->had_order = d->had_order = view->exists;
        f->previous = d->previous = view->status;
        f->transition = state_decide(view, &f->charge);
        d->transition = f->transition;
        d->outcome = same_terms(&f->charge, &d->charge) ? f->transition.outcome
                                                         : OUTCOME_UNCONFIRMED;
        *run_machine = true;
        return 0;
}

static const char *confirmed_error(const struct delivery *d, const struct api_fetch *f)
{
        switch (d->outcome) {
        case OUTCOME_APPLIED:
                return NULL;
        case OUTCOME_DEFERRED:
                return "the CashPay API could not be asked";
        case OUTCOME_UNCONFIRMED:
                return f->has_charge ? "the CashPay API reports other terms"
                                     : "the CashPay API does not know the charge";
        default:
                return d->transition.reason;
        }
}

static int record_confirmed(struct store *s, struct delivery *d, struct api_fetch *f,
                            const char *now)
{
        struct order_view view = { 0 };
        bool run_machine;
        int r;

        r = decide_confirmed(s, d, f, &view, &run_machine);
        if (r < 0)
                return r;
        r = store_insert_delivery(s, d, d->charge.id, charge_status_name(d->charge.status),
                                  confirmed_error(d, f));
        if (r < 0)
                return r;
        f->delivery_id = d->id;
        r = insert_fetch(s, f);
        if (r < 0)
                return r;
        if (d->outcome == OUTCOME_DEFERRED) /* queued for reconciliation */
                return set_next_check(s, f->charge_id, now);
        if (!run_machine)
                return 0;
        r = store_apply_transition(s, &f->transition, &f->charge, now);
        if (r >= 0 && f->transition.change_status)
                r = insert_event(s, f->charge_id,
                                 view.exists ? charge_status_name(view.status) : NULL,
                                 charge_status_name(f->charge.status), "api", d->id, f->id, now,
                                 &f->event_id);
        d->event_id = f->event_id;
        if (r >= 0)
                r = set_next_check(s, f->charge_id, f->next_check_at);
        return r;
}

static bool confirmed_valid(const struct delivery *d, const struct api_fetch *f)
{
        return d->has_charge && f->reason == FETCH_WEBHOOK &&
               strcmp(d->charge.id, f->charge_id) == 0 && fetch_valid(f);
}

/* Failures that retrying cannot cure: they cost this pair, not the batch
 * (as store_submit() treats a delivery). */
static bool pair_fault(int r)
{
        return r == -EINVAL || r == -E2BIG;
}

static int run_savepoint(struct store *s, enum store_stmt id)
{
        sqlite3_stmt *st;
        int r = store_stmt(s, id, &st);

        return r < 0 ? r : store_stmt_done(st);
}

/* One pair in its own savepoint: 0 when recorded or refused on its own
 * (@fault set), a negative errno when the whole batch must be given up. */
static int record_confirmed_isolated(struct store *s, struct delivery *d, struct api_fetch *f,
                                     const char *now, int *fault)
{
        int r;

        *fault = 0;
        if (!confirmed_valid(d, f)) {
                *fault = -EINVAL;
                return 0;
        }
        r = run_savepoint(s, STMT_SAVEPOINT);
        if (r < 0)
                return r;
        r = record_confirmed(s, d, f, now);
        if (r >= 0)
                return run_savepoint(s, STMT_RELEASE);
        if (!pair_fault(r))
                return r;
        delivery_reset_result(d);
        fetch_reset_result(f);
        *fault = r;
        r = run_savepoint(s, STMT_ROLLBACK_TO);
        return r < 0 ? r : run_savepoint(s, STMT_RELEASE);
}

/* PostgreSQL: a transaction per pair, each locking its order's row; one
 * for the batch would hold several rows at once, in arrival order, which
 * another instance's batch could be locking the other way round. */
static int pg_confirmed_each(struct store *s, struct delivery *const *d,
                             struct api_fetch *const *f, size_t n, int *ret)
{
        int first = 0;
        bool any = false;

        for (size_t i = 0; i < n; i++) {
                int r = confirmed_valid(d[i], f[i])
                        ? pg_store_record_confirmed(s->pg, d[i], f[i], confirmed_error)
                        : -EINVAL;

                if (r < 0) {
                        delivery_reset_result(d[i]);
                        fetch_reset_result(f[i]);
                }
                ret[i] = r < 0 ? r : 0;
                any |= r >= 0 || pair_fault(r);
                if (r < 0 && !pair_fault(r) && first == 0)
                        first = r;
        }
        return any ? 0 : first;
}

int store_record_confirmed_batch(struct store *s, struct delivery *const *d,
                                 struct api_fetch *const *f, size_t n, int *ret)
{
        char now[TIME_ISO_LEN];
        size_t i;
        int r = 0;

        for (i = 0; i < n; i++) {
                delivery_reset_result(d[i]);
                fetch_reset_result(f[i]);
                ret[i] = 0;
        }
        if (n == 0)
                return 0;
        if (s->read_only)
                r = -EROFS;
        else if (s->pg)
                return pg_confirmed_each(s, d, f, n, ret);
        if (r == 0)
                r = store_check_file(s);
        if (r == 0)
                r = store_begin_immediate(s);
        if (r < 0)
                goto fail;
        /* read once the lock is held: times then only grow from batch to batch */
        time_format_iso(time_now_ms(), now);
        for (i = 0; i < n && r >= 0; i++)
                r = record_confirmed_isolated(s, d[i], f[i], now, &ret[i]);
        if (r >= 0)
                r = store_commit(s); /* rolls back itself when it fails */
        else
                store_rollback(s);
        if (r < 0)
                goto fail;
        for (i = 0; i < n; i++)
                if (ret[i] == 0 && d[i]->http_status >= 400 && s->rejected_rows >= 0)
                        s->rejected_rows++; /* a deferred row is pruned like a rejected one */
        return 0;
fail:
        for (i = 0; i < n; i++) {
                delivery_reset_result(d[i]);
                fetch_reset_result(f[i]);
                ret[i] = r;
        }
        return r;
}

int store_record_confirmed(struct store *s, struct delivery *d, struct api_fetch *f)
{
        int fault, r;

        /* refused before anything is tried, as it always was */
        if (!confirmed_valid(d, f)) {
                delivery_reset_result(d);
                fetch_reset_result(f);
                return s->read_only ? -EROFS : -EINVAL;
        }
        r = store_record_confirmed_batch(s, &d, &f, 1, &fault);
        return r < 0 ? r : fault;
}

/* One fetch in its own savepoint, as record_confirmed_isolated(). */
static int record_fetch_isolated(struct store *s, struct api_fetch *f, const char *now,
                                 int *fault)
{
        int r;

        *fault = 0;
        if (!fetch_valid(f)) {
                *fault = -EINVAL;
                return 0;
        }
        r = run_savepoint(s, STMT_SAVEPOINT);
        if (r < 0)
                return r;
        r = record_fetch(s, f, now);
        if (r >= 0)
                return run_savepoint(s, STMT_RELEASE);
        if (!pair_fault(r))
                return r;
        fetch_reset_result(f);
        *fault = r;
        r = run_savepoint(s, STMT_ROLLBACK_TO);
        return r < 0 ? r : run_savepoint(s, STMT_RELEASE);
}

int store_record_fetch_batch(struct store *s, struct api_fetch *const *f, size_t n, int *ret)
{
        char now[TIME_ISO_LEN];
        size_t i;
        int r = 0;

        for (i = 0; i < n; i++) {
                fetch_reset_result(f[i]);
                ret[i] = 0;
        }
        if (n == 0)
                return 0;
        if (s->read_only) {
                r = -EROFS;
                goto fail;
        }
        if (s->pg) { /* one transaction each, under the order's row lock */
                for (i = 0; i < n; i++)
                        ret[i] = fetch_valid(f[i]) ? pg_store_record_fetch(s->pg, f[i]) : -EINVAL;
                return 0;
        }
        r = store_check_file(s);
        if (r == 0)
                r = store_begin_immediate(s);
        if (r < 0)
                goto fail;
        time_format_iso(time_now_ms(), now);
        for (i = 0; i < n && r >= 0; i++)
                r = record_fetch_isolated(s, f[i], now, &ret[i]);
        if (r >= 0)
                r = store_commit(s); /* rolls back itself when it fails */
        else
                store_rollback(s);
        if (r >= 0)
                return 0;
fail:
        for (i = 0; i < n; i++) {
                fetch_reset_result(f[i]);
                ret[i] = r;
        }
        return r;
}

/* ---- the reconciler's queue ----------------------------------------------- */

/* Both halves lean on an index: next_check_at on orders_next_check_idx,
 * never-checked ones on orders_updated_idx. */
#define DUE_WHERE_CHECKED \
        "status = 'INITIATED' AND next_check_at IS NOT NULL AND next_check_at <= ?1 " \
        "AND first_seen_at >= ?3"
#define DUE_WHERE_UNCHECKED \
        "status = 'INITIATED' AND next_check_at IS NULL AND updated_at <= ?2 " \
        "AND first_seen_at >= ?3"

static int bind_due(sqlite3_stmt *st, const char *now, const char *untouched_before,
                    const char *first_seen_after)
{
        int r;

        if ((r = store_bind_text_or_null(st, 1, now)) < 0 ||
            (r = store_bind_text_or_null(st, 2, untouched_before)) < 0)
                return r;
        return store_bind_text_or_null(st, 3, first_seen_after);
}

int store_due_orders(struct store *s, const char *now, const char *untouched_before,
                     const char *first_seen_after, int64_t lease_ms, struct due_order *ret,
                     size_t max, size_t *ret_n)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc;

        *ret_n = 0;
        if (s->pg)
                return pg_store_due_orders(s->pg, now, untouched_before, first_seen_after,
                                           lease_ms, ret, max, ret_n);
        /* The claim's time only for the rows taken, on webhook_deliveries_charge_idx. */
        r = store_prepare(s, "SELECT charge_id, first_seen_at, next_check_at, "
                             "(SELECT max(w.received_at) FROM webhook_deliveries w "
                             "WHERE w.charge_id = due.charge_id AND w.outcome = 'unconfirmed') "
                             "FROM (SELECT * FROM ("
                             "SELECT charge_id, first_seen_at, next_check_at, next_check_at AS due "
                             "FROM orders WHERE " DUE_WHERE_CHECKED " UNION ALL "
                             "SELECT charge_id, first_seen_at, next_check_at, updated_at AS due "
                             "FROM orders WHERE " DUE_WHERE_UNCHECKED
                             ") ORDER BY due, charge_id LIMIT ?4) AS due "
                             "ORDER BY due.due, due.charge_id", &st);
        if (r < 0)
                return r;
        r = bind_due(st, now, untouched_before, first_seen_after);
        if (r >= 0)
                r = bind_int64(st, 4, (int64_t) max);
        if (r < 0)
                return r;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && *ret_n < max) {
                struct due_order *d = &ret[(*ret_n)++];

                *d = (struct due_order) { 0 }; /* claimed_until stays "": SQLite claims nothing */
                store_column_text_copy(st, 0, d->charge_id, sizeof(d->charge_id));
                store_column_text_copy(st, 1, d->first_seen_at, sizeof(d->first_seen_at));
                store_column_text_copy(st, 2, d->next_check_at, sizeof(d->next_check_at));
                store_column_text_copy(st, 3, d->claimed_at, sizeof(d->claimed_at));
        }
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_errno_from_sqlite(rc);
}

int store_release_due(struct store *s, const struct due_order *d)
{
        if (!s->pg || !d->claimed_until[0])
                return 0; /* SQLite claims nothing: one instance per file */
        if (s->read_only)
                return -EROFS;
        return pg_store_release_due(s->pg, d->charge_id, d->claimed_until, d->next_check_at);
}

int store_count_due(struct store *s, const char *now, const char *untouched_before,
                    const char *first_seen_after, int64_t *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc;

        *ret = 0;
        if (s->pg)
                return pg_store_count_due(s->pg, now, untouched_before, first_seen_after, ret);
        r = store_prepare(s, "SELECT (SELECT count(*) FROM orders WHERE " DUE_WHERE_CHECKED
                             ") + (SELECT count(*) FROM orders WHERE " DUE_WHERE_UNCHECKED ")",
                          &st);
        if (r < 0)
                return r;
        r = bind_due(st, now, untouched_before, first_seen_after);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -EIO : store_errno_from_sqlite(rc);
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}

int store_get_order_by_return_ref(struct store *s, const char *return_ref,
                                  struct order_record *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc;

        *ret = (struct order_record) { 0 };
        if (s->pg)
                return pg_store_get_order_by_return_ref(s->pg, return_ref, ret);
        r = store_prepare(s, "SELECT " STORE_ORDER_COLUMNS " FROM orders WHERE return_ref = ?1",
                          &st);
        if (r < 0)
                return r;
        r = store_bind_text_or_null(st, 1, return_ref);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = store_order_from_row(st, ret);
        else
                r = rc == SQLITE_DONE ? -ENOENT : store_errno_from_sqlite(rc);
        if (r < 0)
                order_record_clear(ret);
        return r;
}

/* ---- charge creation ------------------------------------------------------- */

void charge_plan_clear(struct charge_plan *p)
{
        free(p->transaction_url);
        *p = (struct charge_plan) { 0 };
}

int store_charge_group_begin(struct store *s)
{
        int r;

        if (s->read_only)
                return -EROFS;
        if (s->pg || s->charge_group)
                return s->pg ? 0 : -EINVAL;
        r = store_check_file(s);
        if (r == 0)
                r = store_begin_immediate(s);
        s->charge_group = r == 0;
        return r;
}

int store_charge_group_commit(struct store *s)
{
        if (s->pg)
                return 0;
        if (!s->charge_group)
                return -EINVAL;
        s->charge_group = false;
        /* an I/O error or a full disk may have rolled the group back */
        if (sqlite3_get_autocommit(s->db))
                return -EIO;
        return store_commit(s); /* rolls back itself when it fails */
}

/* A charge creation step's transaction: its own, or inside a group a
 * savepoint of the group's transaction. 0 or a negative errno. */
static int step_begin(struct store *s)
{
        int r;

        if (!s->charge_group) {
                r = store_check_file(s);
                return r < 0 ? r : store_begin_immediate(s);
        }
        if (sqlite3_get_autocommit(s->db))
                return -EIO; /* the group's transaction is gone: it will not commit */
        return run_savepoint(s, STMT_SAVEPOINT);
}

/* The step's end: @r >= 0 commits it (or releases its savepoint), else it
 * is undone. Returns @r, or the commit's failure. */
static int step_end(struct store *s, int r)
{
        if (!s->charge_group) {
                if (r >= 0)
                        return store_commit(s);
                store_rollback(s);
                return r;
        }
        if (r >= 0)
                return run_savepoint(s, STMT_RELEASE);
        if (!sqlite3_get_autocommit(s->db) && run_savepoint(s, STMT_ROLLBACK_TO) == 0)
                (void) run_savepoint(s, STMT_RELEASE);
        return r;
}

/*
 * The orders of an order_ref decide first: CAPTURED anywhere wins, then
 * an INITIATED one. Returns 1 when they decided @p, 0 when a request
 * must be sent, or a negative errno.
 */
static int plan_from_orders(struct store *s, const struct charge_ask *ask, struct charge_plan *p)
{
        _cleanup_(store_resetp) sqlite3_stmt *st = NULL;
        const char *status;
        int r, rc;

        r = store_stmt(s, STMT_CHARGE_ORDER_OF_REF, &st);
        if (r < 0)
                return r;
        r = store_bind_text_or_null(st, 1, ask->order_ref);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? 0 : store_errno_from_sqlite(rc);
        store_column_text_copy(st, 0, p->charge_id, sizeof(p->charge_id));
        status = (const char *) sqlite3_column_text(st, 1);
        if (status && strcmp(status, "CAPTURED") == 0) {
                p->verdict = CHARGE_ALREADY_PAID;
                return 1;
        }
        if (sqlite3_column_int64(st, 2) != ask->amount ||
            strcmp((const char *) sqlite3_column_text(st, 3), ask->currency) != 0) {
                p->verdict = CHARGE_ORDER_CHANGED;
                return 1;
        }
        p->verdict = CHARGE_EXISTS;
        store_column_text_copy(st, 4, p->return_ref, sizeof(p->return_ref));
        r = store_column_text_dup(st, 5, &p->transaction_url);
        return r < 0 ? r : 1;
}

/* The pending request of the order_ref, reused when its terms match.
 * 1 when found (and @p decided), 0 when there is none. */
static int plan_from_pending(struct store *s, const struct charge_ask *ask, struct charge_plan *p)
{
        _cleanup_(store_resetp) sqlite3_stmt *st = NULL;
        _cleanup_(store_resetp) sqlite3_stmt *up = NULL;
        int r, rc;

        r = store_stmt(s, STMT_CHARGE_PENDING_OF_REF, &st);
        if (r < 0)
                return r;
        r = store_bind_text_or_null(st, 1, ask->order_ref);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? 0 : store_errno_from_sqlite(rc);
        if (sqlite3_column_int64(st, 1) != ask->amount ||
            strcmp((const char *) sqlite3_column_text(st, 2), ask->currency) != 0) {
                /* the earlier request may have created a charge at CashPay:
                 * other terms must wait until it is settled */
                p->verdict = CHARGE_ORDER_CHANGED;
                return 1;
        }
        p->verdict = CHARGE_SEND;
        p->request_id = sqlite3_column_int64(st, 0);
        store_column_text_copy(st, 3, p->idempotency_key, sizeof(p->idempotency_key));
        store_column_text_copy(st, 4, p->return_ref, sizeof(p->return_ref));
        p->attempts = sqlite3_column_int(st, 5);
        r = store_stmt(s, STMT_CHARGE_ATTEMPTS_UP, &up);
        if (r < 0)
                return r;
        if ((r = bind_int64(up, 1, p->request_id)) < 0 ||
            (r = store_bind_text_or_null(up, 2, ask->now)) < 0)
                return r;
        r = step_one_change(s, up);
        return r < 0 ? r : 1;
}

static int plan_new_request(struct store *s, const struct charge_ask *ask, struct charge_plan *p)
{
        _cleanup_(store_resetp) sqlite3_stmt *st = NULL;
        int r;

        if (!ask->new_idempotency_key || !ask->new_return_ref ||
            strlen(ask->new_idempotency_key) > CHECKOUT_KEY_MAX ||
            strlen(ask->new_return_ref) > CHECKOUT_KEY_MAX)
                return -EINVAL;
        r = store_stmt(s, STMT_CHARGE_REQUEST_INSERT, &st);
        if (r < 0)
                return r;
        if ((r = store_bind_text_or_null(st, 1, ask->order_ref)) < 0 ||
            (r = bind_int64(st, 2, ask->amount)) < 0 ||
            (r = store_bind_text_or_null(st, 3, ask->currency)) < 0 ||
            (r = store_bind_text_or_null(st, 4, ask->description)) < 0 ||
            (r = store_bind_text_or_null(st, 5, ask->new_idempotency_key)) < 0 ||
            (r = store_bind_text_or_null(st, 6, ask->new_return_ref)) < 0 ||
            (r = store_bind_text_or_null(st, 7, ask->now)) < 0)
                return r;
        r = store_stmt_done(st);
        if (r < 0)
                return r;
        p->verdict = CHARGE_SEND;
        p->request_id = sqlite3_last_insert_rowid(s->db);
        strcpy(p->idempotency_key, ask->new_idempotency_key);
        strcpy(p->return_ref, ask->new_return_ref);
        p->attempts = 0;
        return 0;
}

int store_charge_plan(struct store *s, const struct charge_ask *ask, struct charge_plan *ret)
{
        int r;

        *ret = (struct charge_plan) { 0 };
        if (s->read_only)
                return -EROFS;
        if (s->pg)
                return pg_store_charge_plan(s->pg, ask, ret);
        r = step_begin(s);
        if (r < 0)
                return r;
        r = plan_from_orders(s, ask, ret);
        if (r == 0)
                r = plan_from_pending(s, ask, ret);
        if (r == 0)
                r = plan_new_request(s, ask, ret);
        r = step_end(s, r);
        if (r < 0)
                charge_plan_clear(ret);
        return r;
}

struct request_row {
        char order_ref[CHECKOUT_ORDER_REF_MAX + 1];
        char return_ref[CHECKOUT_KEY_MAX + 1];
        int64_t amount;
        char currency[4];
};

static int read_pending(struct store *s, int64_t id, struct request_row *ret)
{
        _cleanup_(store_resetp) sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_stmt(s, STMT_CHARGE_PENDING_BY_ID, &st);
        if (r < 0)
                return r;
        r = bind_int64(st, 1, id);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -ENOENT : store_errno_from_sqlite(rc);
        store_column_text_copy(st, 0, ret->order_ref, sizeof(ret->order_ref));
        store_column_text_copy(st, 1, ret->return_ref, sizeof(ret->return_ref));
        ret->amount = sqlite3_column_int64(st, 2);
        store_column_text_copy(st, 3, ret->currency, sizeof(ret->currency));
        return 0;
}

static int finish_request(struct store *s, int64_t id, const char *state, const char *charge_id,
                          int http_status, const char *error, const char *now)
{
        _cleanup_(store_resetp) sqlite3_stmt *st = NULL;
        int r;

        r = store_stmt(s, STMT_CHARGE_FINISH, &st);
        if (r < 0)
                return r;
        if ((r = bind_int64(st, 1, id)) < 0 ||
            (r = store_bind_text_or_null(st, 2, state)) < 0 ||
            (r = store_bind_text_or_null(st, 3, charge_id)) < 0 ||
            (r = bind_int64_or_null(st, 4, http_status)) < 0 ||
            (r = store_bind_text_or_null(st, 5, error)) < 0 ||
            (r = store_bind_text_or_null(st, 6, now)) < 0)
                return r;
        return step_one_change(s, st);
}

/* The order row of a created charge, or its references when a webhook
 * recorded it first. */
static int record_created_order(struct store *s, const struct request_row *req,
                                const struct charge *c, const char *now, const char *next_check)
{
        _cleanup_(store_resetp) sqlite3_stmt *st = NULL;
        int r;

        r = store_stmt(s, STMT_CHARGE_ORDER_UPSERT, &st);
        if (r < 0)
                return r;
        if ((r = store_bind_text_or_null(st, 1, c->id)) < 0 ||
            (r = store_bind_text_or_null(st, 2, req->order_ref)) < 0 ||
            (r = bind_int64(st, 3, c->amount)) < 0 ||
            (r = store_bind_text_or_null(st, 4, c->currency)) < 0 ||
            (r = store_bind_text_or_null(st, 5, c->description)) < 0 ||
            (r = store_bind_text_or_null(st, 6, c->transaction_url)) < 0 ||
            (r = bind_int64(st, 7, c->created)) < 0 ||
            (r = store_bind_text_or_null(st, 8, now)) < 0 ||
            (r = store_bind_text_or_null(st, 9, req->return_ref)) < 0 ||
            (r = store_bind_text_or_null(st, 10, next_check)) < 0)
                return r;
        return store_stmt_done(st);
}

static int order_exists(struct store *s, const char *charge_id, bool *ret)
{
        struct order_view v;
        int r = store_read_order_view(s, charge_id, &v);

        *ret = v.exists;
        return r;
}

int store_charge_created(struct store *s, int64_t request_id, const struct charge *c,
                         int http_status, const char *now, const char *next_check_at)
{
        struct request_row req;
        bool existed = false;
        int64_t event_id;
        int r;

        if (s->read_only)
                return -EROFS;
        if (c->status != CHARGE_INITIATED || !charge_id_valid(c->id))
                return -EINVAL;
        if (s->pg)
                return pg_store_charge_created(s->pg, request_id, c, http_status, now,
                                               next_check_at);
        r = step_begin(s);
        if (r < 0)
                return r;
        r = read_pending(s, request_id, &req);
        if (r >= 0 && (req.amount != c->amount || strcmp(req.currency, c->currency) != 0))
                r = -EINVAL; /* CashPay did not create what was asked: never record it */
        if (r >= 0)
                r = order_exists(s, c->id, &existed);
        if (r >= 0)
                r = record_created_order(s, &req, c, now, next_check_at);
        if (r >= 0 && !existed)
                r = insert_event(s, c->id, NULL, "INITIATED", "checkout", 0, 0, now, &event_id);
        if (r >= 0)
                r = finish_request(s, request_id, "created", c->id, http_status, NULL, now);
        return step_end(s, r);
}

/* A failed attempt that leaves the request pending for a retry. */
static int note_attempt(struct store *s, int64_t id, int http_status, const char *error,
                        const char *now)
{
        _cleanup_(store_resetp) sqlite3_stmt *st = NULL;
        int r;

        r = store_stmt(s, STMT_CHARGE_NOTE_ATTEMPT, &st);
        if (r < 0)
                return r;
        if ((r = bind_int64(st, 1, id)) < 0 ||
            (r = bind_int64_or_null(st, 2, http_status)) < 0 ||
            (r = store_bind_text_or_null(st, 3, error)) < 0 ||
            (r = store_bind_text_or_null(st, 4, now)) < 0)
                return r;
        return step_one_change(s, st);
}

int store_charge_attempt(struct store *s, int64_t request_id, bool refused, int http_status,
                         const char *error, const char *now)
{
        int r;

        if (s->read_only)
                return -EROFS;
        if (s->pg)
                return pg_store_charge_attempt(s->pg, request_id, refused, http_status, error,
                                               now);
        r = step_begin(s);
        if (r < 0)
                return r;
        if (refused)
                r = finish_request(s, request_id, "refused", NULL, http_status, error, now);
        else
                r = note_attempt(s, request_id, http_status, error, now);
        return step_end(s, r);
}
