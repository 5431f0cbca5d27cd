/*
 * reconciler — sweeps of stale INITIATED orders; see reconciler.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/api.h"
#include "cashpay/log.h"
#include "cashpay/reconcile.h"
#include "cashpay/store-api.h"
#include "cashpay/timeutil.h"
#include "src/daemon/metrics.h"
#include "src/daemon/reconciler.h"

/* Sweeps come at least this often, and as often as the first look after
 * an unconfirmed claim when that is shorter (a shrunk reconcile_after);
 * after a full sweep the rest follow once it is recorded. */
#define SWEEP_EVERY_MS INT64_C(5000)
#define SWEEP_AGAIN_MS INT64_C(200)
/* With a backlog, how often the main loop asks whether the sweep before is
 * done: at 64 fetches of 20-40 ms a sweep, a 200 ms pace would cap the
 * backlog near 300 orders/s (10,000 stale orders took 35 s). */
#define SWEEP_BACKLOG_MS INT64_C(20)
/* Charges the return page fetched lately (at most once per `refresh` s
 * each); the oldest is forgotten first, so a flood of distinct charges
 * costs at most some extra fetches, never memory. */
#define RECENT_MAX 256

struct recent {
        char charge_id[CHARGE_ID_MAX + 1];
        int64_t at_ms;
};

/* A claim of CAPTURED the API answered FAILED (§8.4): a later CAPTURED is
 * still applied (FAILED -> CAPTURED), so the charge gets the three looks
 * an INITIATED one gets. The reconciler's queue in the database holds
 * INITIATED orders only, so these looks are kept here: at most
 * RECHECK_MAX at once (the oldest claim forgotten first), lost at a
 * restart (README, "Using the CashPay API"). */
#define RECHECK_MAX 256

struct recheck {
        char charge_id[CHARGE_ID_MAX + 1]; /* "" when the slot is free */
        int64_t claimed_ms;
        int64_t due_ms;                    /* the next look */
        unsigned after_s;                  /* reconcile_after, the looks' scale */
        bool in_flight;
};

struct reconciler {
        struct runtime *rt;
        struct api_client *api;

        pthread_mutex_t lock;
        pthread_cond_t idle;
        unsigned pending;     /* the sweep task, and fetches not yet recorded */
        /* of those, the sweep's own (the task and its fetches): the next
         * sweep waits for these only, not for webhooks' or return pages'
         * fetches, which under steady load are never all done at once */
        unsigned sweep_pending;
        bool sweeping;        /* a sweep is handing fetches to the client */
        bool stopping;
        /* set on the writer's thread, read by the main loop */
        _Atomic bool full;    /* the last sweep took as many orders as it could */
        _Atomic bool unsupported; /* the store cannot list due orders (PostgreSQL) */
        struct recent recent[RECENT_MAX]; /* under lock */
        struct recheck rechecks[RECHECK_MAX]; /* under lock */
        /* answers waiting for the writer, recorded together in one
         * transaction by one task (posted while record_posted) */
        struct fetch *ready_head, *ready_tail; /* under lock */
        bool record_posted;                    /* under lock */
};

/* The writer's task that records what is ready. */
struct record_task {
        struct writer_task task;   /* first */
        struct reconciler *rc;
};

struct sweep {
        struct writer_task task;   /* first: the writer hands this back */
        struct reconciler *rc;
        int64_t now_ms;
        int64_t lease_ms;          /* PostgreSQL: how long what it claims is its own */
        unsigned after_s, for_s, max;
};

/* One fetch, from the sweep to its record; the result copied off the
 * client's thread, since the client frees its own after the callback. */
struct fetch {
        struct writer_task task;   /* first */
        struct reconciler *rc;
        enum fetch_reason reason;
        bool recheck;              /* one of the looks of rc->rechecks */
        void (*done)(void *data);  /* after the record (or the drop), or NULL */
        void *done_data;
        char charge_id[CHARGE_ID_MAX + 1];
        char requested_at[TIME_ISO_LEN];
        char next_check_at[TIME_ISO_LEN];
        struct due_order due;      /* FETCH_RECONCILE: the claim, given back when stopping */
        struct api_result res;     /* body and charge below, owned */
        struct charge charge;
        uint8_t *body;
        struct api_fetch record;   /* what is recorded, pointing into the above */
        struct fetch *ready_next;  /* in rc->ready_head */
};

static void fetch_free(struct fetch *f);

static struct log_ratelimit fetch_error_log = LOG_RATELIMIT_INIT(5, 60000);
static struct log_ratelimit store_error_log = LOG_RATELIMIT_INIT(5, 60000);

static void done_one_of(struct reconciler *rc, bool sweep)
{
        pthread_mutex_lock(&rc->lock);
        rc->pending--;
        if (sweep)
                rc->sweep_pending--;
        pthread_cond_broadcast(&rc->idle);
        pthread_mutex_unlock(&rc->lock);
}

static void done_one(struct reconciler *rc)
{
        done_one_of(rc, false);
}

static void recheck_done(struct reconciler *rc, const struct fetch *f);

/* A fetch's end, recorded or not: its waiter told, then the count. */
static void fetch_done(struct fetch *f)
{
        struct reconciler *rc = f->rc;
        bool sweep = f->reason == FETCH_RECONCILE && !f->recheck;

        if (f->recheck)
                recheck_done(rc, f);
        if (f->done)
                f->done(f->done_data);
        fetch_free(f);
        done_one_of(rc, sweep);
}

static void fetch_free(struct fetch *f)
{
        charge_clear(&f->charge);
        free(f->body);
        free(f);
}

static enum reconciled classify(const struct fetch *f)
{
        if (f->res.has_charge)
                return f->charge.status == CHARGE_CAPTURED ? RECONCILED_CAPTURED :
                       f->charge.status == CHARGE_FAILED ? RECONCILED_FAILED :
                       RECONCILED_INITIATED;
        return f->res.error == 0 && f->res.http_status == 404 ? RECONCILED_NOT_FOUND
                                                              : RECONCILED_ERROR;
}

static void log_recorded(const struct fetch *f, const struct api_fetch *a, enum reconciled what)
{
        struct log_fields lf = { .charge_id = f->charge_id };

        if (what == RECONCILED_ERROR) {
                if (log_rate_ok(&fetch_error_log))
                        log_fields(LOG_LEVEL_WARNING, &lf, "reconciliation of %s: %s; "
                                   "looking again at %s", f->charge_id, f->res.detail,
                                   f->next_check_at);
                return;
        }
        if (what == RECONCILED_NOT_FOUND) {
                log_fields(LOG_LEVEL_WARNING, &lf, "reconciliation of %s: CashPay knows no "
                           "such charge; looking again at %s", f->charge_id, f->next_check_at);
                return;
        }
        if (what == RECONCILED_INITIATED)
                return; /* nothing new, the common case for a customer still paying */
        lf.outcome = outcome_name(a->transition.outcome);
        log_fields(a->transition.warn ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO, &lf,
                   "reconciled %s: the API says %s %lld %s: %s%s%s", f->charge_id,
                   charge_status_name(f->charge.status), (long long) f->charge.amount,
                   f->charge.currency, lf.outcome, a->transition.reason ? ", " : "",
                   a->transition.reason ? a->transition.reason : "");
}

/* What the API said, as the store records it. */
static void prepare_record(struct fetch *f)
{
        enum reconciled what = classify(f);
        struct api_fetch *a = &f->record;

        *a = (struct api_fetch) {
                .reason = f->reason,
                .http_status = f->res.http_status,
                .has_charge = f->res.has_charge,
                .charge = f->charge,
                .body = f->body,
                .body_len = f->body ? f->res.body_len : 0,
                .duration_ms = f->res.duration_ms,
        };
        snprintf(a->charge_id, sizeof(a->charge_id), "%s", f->charge_id);
        snprintf(a->requested_at, sizeof(a->requested_at), "%s", f->requested_at);
        snprintf(a->next_check_at, sizeof(a->next_check_at), "%s", f->next_check_at);
        if (!a->has_charge)
                a->error = what == RECONCILED_NOT_FOUND ? "no such charge at CashPay"
                                                        : f->res.detail;
}

/* A claim given back: due again at @d->next_check_at for every instance
 * (store_release_due()); a failure leaves the lease to run out. */
static void give_back(struct store *store, const struct due_order *d)
{
        int r = store_release_due(store, d);

        if (r < 0 && log_rate_ok(&store_error_log))
                log_warning("could not give back the claim on %s: %s (due again after "
                            "its lease)", d->charge_id, store_strerror(r));
}

/*
 * A fetch that could not be recorded: on PostgreSQL the order's
 * next_check_at is still this instance's lease, which would keep it from
 * every instance until the lease ends. It goes back to the time this fetch would
 * have set, so the order is looked at again on its usual doubling schedule
 * (a record that keeps failing is not retried at every sweep). SQLite
 * claims nothing: the order is still due there.
 */
static void give_back_unrecorded(struct store *store, struct fetch *f)
{
        struct due_order back = f->due;

        snprintf(back.next_check_at, sizeof(back.next_check_at), "%s", f->next_check_at);
        give_back(store, &back);
}

static void finish_record(struct store *store, struct fetch *f, int r)
{
        enum reconciled what = classify(f);

        if (r < 0) {
                if (log_rate_ok(&store_error_log))
                        log_err("could not record the reconciliation of %s: %s",
                                f->charge_id, store_strerror(r));
                give_back_unrecorded(store, f);
        } else {
                if (f->reason == FETCH_RECONCILE)
                        metrics_count_reconciled(what);
                log_recorded(f, &f->record, what);
        }
        fetch_done(f);
}

/* On the writer's thread: every answer ready, through the one state
 * machine, in one transaction (one commit, not one per fetch: a backlog
 * of stale orders was paced by the disk's fdatasync). */
static void records_run(struct store *store, struct writer_task *task)
{
        struct record_task *t = (struct record_task *) task;
        struct reconciler *rc = t->rc;
        struct fetch *list, *f;
        size_t n = 0, i;

        free(t);
        pthread_mutex_lock(&rc->lock);
        list = rc->ready_head;
        rc->ready_head = rc->ready_tail = NULL;
        rc->record_posted = false;
        pthread_mutex_unlock(&rc->lock);
        for (f = list; f; f = f->ready_next) {
                prepare_record(f);
                n++;
        }
        struct api_fetch **as = calloc(n ? n : 1, sizeof(*as));
        int *res = calloc(n ? n : 1, sizeof(*res));
        if (as && res) {
                for (f = list, i = 0; f; f = f->ready_next)
                        as[i++] = &f->record;
                (void) store_record_fetch_batch(store, as, n, res); /* res[i] say */
        }
        for (f = list, i = 0; f; i++) {
                struct fetch *next = f->ready_next;
                finish_record(store, f, as && res ? res[i]
                                                  : store_record_fetch(store, &f->record));
                f = next;
        }
        free(as);
        free(res);
}

/* Any thread: @f's answer to the writer, with whatever else is ready. */
static void queue_record(struct reconciler *rc, struct fetch *f)
{
        struct record_task *t = NULL;
        struct fetch *list;

        pthread_mutex_lock(&rc->lock);
        bool post = !rc->record_posted;
        if (post && !(t = calloc(1, sizeof(*t)))) {
                pthread_mutex_unlock(&rc->lock);
                fetch_done(f); /* out of memory: the next sweep asks again */
                return;
        }
        rc->record_posted = true;
        f->ready_next = NULL;
        if (rc->ready_tail)
                rc->ready_tail->ready_next = f;
        else
                rc->ready_head = f;
        rc->ready_tail = f;
        pthread_mutex_unlock(&rc->lock);
        if (!post)
                return; /* the task posted before takes it along */
        t->task.run = records_run;
        t->rc = rc;
        if (writer_post(rc->rt->writer, &t->task) == 0)
                return;
        free(t); /* the writer is closed: what is ready is dropped */
        pthread_mutex_lock(&rc->lock);
        list = rc->ready_head;
        rc->ready_head = rc->ready_tail = NULL;
        rc->record_posted = false;
        pthread_mutex_unlock(&rc->lock);
        while (list) {
                struct fetch *next = list->ready_next;
                fetch_done(list);
                list = next;
        }
}

/* On the writer's thread, while stopping: a claimed order this instance
 * will not fetch is due again at once for the other instances (PostgreSQL;
 * SQLite claims nothing). Without this it would wait out the lease. */
static void release_run(struct store *store, struct writer_task *task)
{
        struct fetch *f = (struct fetch *) task;

        give_back(store, &f->due);
        fetch_done(f);
}

/* On the client's thread: copy, hand to the writer, never wait. */
static void on_fetched(const struct api_result *r, void *userdata)
{
        struct fetch *f = userdata;
        struct reconciler *rc = f->rc;

        if (r->error == -ECANCELED) { /* stopping: the order stays due */
                f->task.run = release_run;
                if (f->due.claimed_until[0] && writer_post(rc->rt->writer, &f->task) == 0)
                        return;
                goto drop;
        }
        f->res = *r;
        f->res.body = NULL;
        f->res.charge = (struct charge) { 0 };
        if (r->body_len && (f->body = malloc(r->body_len)))
                memcpy(f->body, r->body, r->body_len);
        if (r->has_charge && charge_copy(&f->charge, &r->charge) < 0)
                goto drop; /* out of memory: the next sweep asks again */
        queue_record(rc, f);
        return;
drop:
        fetch_done(f);
}

/* Hand one due order's fetch to the client. */
static void start_fetch(struct reconciler *rc, const struct sweep *s, const struct due_order *d)
{
        struct fetch *f = calloc(1, sizeof(*f));
        int64_t seen, claimed;

        if (!f)
                return;
        f->rc = rc;
        f->reason = FETCH_RECONCILE;
        f->due = *d;
        snprintf(f->charge_id, sizeof(f->charge_id), "%s", d->charge_id);
        time_format_iso(s->now_ms, f->requested_at);
        if (time_parse_iso(d->first_seen_at, &seen) < 0)
                seen = s->now_ms;
        if (!d->claimed_at[0] || time_parse_iso(d->claimed_at, &claimed) < 0)
                claimed = -1;
        time_format_iso(reconcile_plan_ms(seen, claimed, s->now_ms, s->after_s), f->next_check_at);
        pthread_mutex_lock(&rc->lock);
        rc->pending++;
        rc->sweep_pending++;
        pthread_mutex_unlock(&rc->lock);
        if (api_fetch_charge(rc->api, f->charge_id, on_fetched, f) < 0) {
                fetch_free(f);
                done_one_of(rc, true);
        }
}

static void list_failed(struct reconciler *rc, int r)
{
        if (r == -EOPNOTSUPP) {
                log_warning("reconciliation is not available with this database backend: "
                            "stale INITIATED orders are not fetched");
                rc->unsupported = true;
        } else if (log_rate_ok(&store_error_log)) {
                log_err("could not list the orders due for reconciliation: %s",
                        store_strerror(r));
        }
}

/* On the writer's thread: list what is due, ask the client for it. */
static void sweep_run(struct store *store, struct writer_task *task)
{
        struct sweep *s = (struct sweep *) task;
        struct reconciler *rc = s->rc;
        char now[TIME_ISO_LEN], untouched[TIME_ISO_LEN], given_up[TIME_ISO_LEN];
        struct due_order *due = calloc(s->max, sizeof(*due));
        int64_t stale = 0;
        size_t n = 0;
        int r = due ? 0 : -ENOMEM;

        pthread_mutex_lock(&rc->lock);
        bool stopping = rc->stopping;
        rc->sweeping = !stopping;
        pthread_mutex_unlock(&rc->lock);
        if (stopping)
                goto out;
        time_format_iso(s->now_ms, now);
        reconcile_cutoffs(s->now_ms, s->after_s, s->for_s, untouched, given_up);
        if (r == 0)
                r = store_due_orders(store, now, untouched, given_up, s->lease_ms, due, s->max,
                                     &n);
        if (r == 0)
                r = store_count_due(store, now, untouched, given_up, &stale);
        if (r < 0)
                list_failed(rc, r);
        else
                metrics_set_initiated_stale(stale);
        for (size_t i = 0; r == 0 && i < n; i++)
                start_fetch(rc, s, &due[i]);
        rc->full = r == 0 && n == s->max;
        pthread_mutex_lock(&rc->lock);
        rc->sweeping = false;
        pthread_mutex_unlock(&rc->lock);
out:
        free(due);
        free(s);
        done_one_of(rc, true);
}

/* ---- the looks after a CAPTURED claim the API answered FAILED ----------- */

/* Any thread: the looks at @charge_id after a claim at @claimed_ms. */
static void recheck_add(struct reconciler *rc, const char *charge_id, int64_t claimed_ms,
                        unsigned after_s)
{
        int64_t due = reconcile_recheck_ms(claimed_ms, claimed_ms, after_s);
        size_t slot = 0;

        pthread_mutex_lock(&rc->lock);
        for (size_t i = 0; i < RECHECK_MAX; i++) {
                const struct recheck *e = &rc->rechecks[i], *best = &rc->rechecks[slot];
                if (strcmp(e->charge_id, charge_id) == 0) {
                        slot = i;
                        break;
                }
                /* a free slot, else the oldest claim */
                if (best->charge_id[0] && (!e->charge_id[0] || e->claimed_ms < best->claimed_ms))
                        slot = i;
        }
        struct recheck *e = &rc->rechecks[slot];
        if (!e->in_flight) { /* a look in flight ends first: its looks go on */
                snprintf(e->charge_id, sizeof(e->charge_id), "%s", charge_id);
                e->claimed_ms = claimed_ms;
                e->due_ms = due;
                e->after_s = after_s;
        }
        pthread_mutex_unlock(&rc->lock);
}

/* After a look, recorded or dropped: CAPTURED ends the looks (it went
 * through the state machine), anything else waits for the next one. */
static void recheck_done(struct reconciler *rc, const struct fetch *f)
{
        bool captured = f->res.has_charge && f->charge.status == CHARGE_CAPTURED;

        pthread_mutex_lock(&rc->lock);
        for (size_t i = 0; i < RECHECK_MAX; i++) {
                struct recheck *e = &rc->rechecks[i];
                if (!e->in_flight || strcmp(e->charge_id, f->charge_id) != 0)
                        continue;
                e->in_flight = false;
                e->due_ms = captured ? 0 : reconcile_recheck_ms(e->claimed_ms, time_now_ms(),
                                                                e->after_s);
                if (!e->due_ms)
                        e->charge_id[0] = '\0';
                break;
        }
        pthread_mutex_unlock(&rc->lock);
}

/* The main loop: hand the looks that are due to the client. */
static void recheck_due(struct reconciler *rc, int64_t now_ms)
{
        char ids[RECHECK_MAX][CHARGE_ID_MAX + 1]; /* each as big as a fetch's charge_id */
        size_t n = 0;

        pthread_mutex_lock(&rc->lock);
        for (size_t i = 0; !rc->stopping && i < RECHECK_MAX; i++) {
                struct recheck *e = &rc->rechecks[i];
                if (e->charge_id[0] && !e->in_flight && e->due_ms <= now_ms) {
                        e->in_flight = true;
                        snprintf(ids[n++], sizeof(ids[0]), "%s", e->charge_id);
                }
        }
        pthread_mutex_unlock(&rc->lock);
        for (size_t i = 0; i < n; i++) {
                struct fetch *f = calloc(1, sizeof(*f));
                if (!f) { /* the look stays due */
                        struct fetch gone = { .rc = rc, .recheck = true };
                        memcpy(gone.charge_id, ids[i], sizeof(gone.charge_id));
                        recheck_done(rc, &gone);
                        continue;
                }
                f->rc = rc;
                f->reason = FETCH_RECONCILE;
                f->recheck = true;
                memcpy(f->charge_id, ids[i], sizeof(f->charge_id));
                time_format_iso(time_now_ms(), f->requested_at);
                /* next_check_at "": the order is not INITIATED */
                pthread_mutex_lock(&rc->lock);
                rc->pending++;
                pthread_mutex_unlock(&rc->lock);
                if (api_fetch_charge(rc->api, f->charge_id, on_fetched, f) < 0)
                        fetch_done(f); /* the look stays due */
        }
}

static void on_attempt(const char *endpoint, int http_status, int64_t duration_us, void *data)
{
        metrics_observe_api(endpoint, http_status, duration_us);
}

int reconciler_start(struct runtime *rt, const struct config *cfg, struct reconciler **ret,
                     char *err, size_t err_len)
{
        struct reconciler *rc = calloc(1, sizeof(*rc));
        struct api_options o;
        int r;

        if (!rc)
                return err_set(err, err_len, -ENOMEM, "out of memory");
        rc->rt = rt;
        pthread_mutex_init(&rc->lock, NULL);
        pthread_cond_init(&rc->idle, NULL);
        api_options_from_config(cfg, &o);
        o.on_attempt = on_attempt;
        r = api_client_new(&o, &rc->api, err, err_len);
        if (r < 0) {
                pthread_cond_destroy(&rc->idle);
                pthread_mutex_destroy(&rc->lock);
                free(rc);
                return r;
        }
        metrics_api_enable();
        *ret = rc;
        return 0;
}

uint64_t reconciler_tick(struct reconciler *rc)
{
        const struct settings *st = runtime_settings_acquire(rc->rt);
        unsigned after = st->cfg->cashpay.reconcile_after, max = st->cfg->cashpay.max_inflight;
        struct sweep *s = NULL;
        struct api_stats as;
        int64_t every = reconcile_recheck_ms(0, -1, after); /* the first look's offset */

        if (every > SWEEP_EVERY_MS)
                every = SWEEP_EVERY_MS;
        if (every < SWEEP_AGAIN_MS)
                every = SWEEP_AGAIN_MS;
        recheck_due(rc, time_now_ms());
        api_client_stats(rc->api, &as);
        metrics_set_token(as.token_renewals_ok, as.token_renewals_failed, as.token_expires_at_ms);
        pthread_mutex_lock(&rc->lock);
        bool busy = rc->sweep_pending > 0 || rc->stopping || rc->unsupported;
        if (!busy && (s = calloc(1, sizeof(*s)))) {
                rc->pending++;
                rc->sweep_pending++;
        }
        pthread_mutex_unlock(&rc->lock);
        if (s) {
                struct api_options o;

                api_options_from_config(st->cfg, &o);
                *s = (struct sweep) {
                        .task.run = sweep_run, .rc = rc, .now_ms = time_now_ms(),
                        .after_s = after, .for_s = st->cfg->cashpay.reconcile_for,
                        .max = max ? max : 1,
                };
                /* the client's own figures (not reloadable), so they are its */
                s->lease_ms = reconcile_lease_ms(&o, s->max, st->cfg->database.commit_timeout);
                if (writer_post(rc->rt->writer, &s->task) < 0) {
                        free(s);
                        done_one_of(rc, true);
                }
        }
        runtime_settings_release(rc->rt);
        /* A backlog (the last sweep was full) goes on as soon as the sweep
         * before is recorded; a sweep still running is looked at again soon. */
        if (rc->full)
                return (uint64_t) SWEEP_BACKLOG_MS * 1000;
        if (busy)
                return (uint64_t) SWEEP_AGAIN_MS * 1000;
        return (uint64_t) every * 1000;
}

bool reconciler_fetch_due(struct reconciler *rc, const char *charge_id, unsigned every_s,
                          int64_t now_ms)
{
        pthread_mutex_lock(&rc->lock);
        bool due = !rc->stopping;
        for (size_t i = 0; due && i < RECENT_MAX; i++)
                if (strcmp(rc->recent[i].charge_id, charge_id) == 0)
                        due = now_ms - rc->recent[i].at_ms >= (int64_t) every_s * 1000;
        pthread_mutex_unlock(&rc->lock);
        return due;
}

/* Under rc->lock: remember @charge_id as fetched at @now_ms. */
static void remember(struct reconciler *rc, const char *charge_id, int64_t now_ms)
{
        size_t slot = 0;

        for (size_t i = 0; i < RECENT_MAX; i++) {
                if (strcmp(rc->recent[i].charge_id, charge_id) == 0) {
                        slot = i;
                        break;
                }
                if (rc->recent[i].at_ms < rc->recent[slot].at_ms)
                        slot = i;
        }
        snprintf(rc->recent[slot].charge_id, sizeof(rc->recent[slot].charge_id), "%s", charge_id);
        rc->recent[slot].at_ms = now_ms;
}

int reconciler_fetch_one(struct reconciler *rc, const char *charge_id, int64_t now_ms,
                         void (*done)(void *data), void *data)
{
        struct fetch *f = calloc(1, sizeof(*f));

        if (!f)
                return -ENOMEM;
        f->rc = rc;
        f->reason = FETCH_RETURN;
        f->done = done;
        f->done_data = data;
        snprintf(f->charge_id, sizeof(f->charge_id), "%s", charge_id);
        time_format_iso(time_now_ms(), f->requested_at);
        /* next_check_at "": the reconciler's own schedule stays as it is */
        pthread_mutex_lock(&rc->lock);
        if (rc->stopping) {
                pthread_mutex_unlock(&rc->lock);
                free(f);
                return -ESHUTDOWN;
        }
        remember(rc, charge_id, now_ms);
        rc->pending++;
        pthread_mutex_unlock(&rc->lock);
        if (api_fetch_charge(rc->api, f->charge_id, on_fetched, f) < 0) {
                fetch_free(f);
                done_one(rc);
                return -ENOMEM;
        }
        return 0;
}

/* A webhook's fetch (§8.4): the result goes into the job, which the writer
 * then records with its delivery. */
struct confirm {
        struct reconciler *rc;
        struct job *job;
        unsigned after_s;          /* reconcile_after when the webhook came */
};

static bool same_terms(const struct charge *a, const struct charge *b)
{
        return a->status == b->status && a->amount == b->amount &&
               strcmp(a->currency, b->currency) == 0;
}

static int copy_result(struct api_fetch *a, const struct api_result *r, const struct delivery *d,
                       unsigned after_s)
{
        int64_t claimed;

        a->http_status = r->http_status;
        a->has_charge = r->has_charge;
        a->duration_ms = r->duration_ms;
        if (r->body_len) {
                uint8_t *b = malloc(r->body_len);
                if (!b)
                        return -ENOMEM;
                memcpy(b, r->body, r->body_len);
                a->body = b;
                a->body_len = r->body_len;
        }
        if (!r->has_charge) {
                a->error = strdup(r->error == 0 && r->http_status == 404
                                  ? "no such charge at CashPay" : r->detail);
                return a->error ? 0 : -ENOMEM;
        }
        if (charge_copy(&a->charge, &r->charge) < 0)
                return -ENOMEM;
        /* A claim the API does not confirm is looked at again after about
         * 5 s, 30 s and 2 min (§8.4): CashPay may have sent the webhook
         * before its API caught up. The first look is planned here, the
         * sweeps plan the others (store_due_orders() gives the claim's
         * time, received_at); the store keeps it only for an order still
         * INITIATED. */
        if (!same_terms(&r->charge, &d->charge)) {
                if (time_parse_iso(d->received_at, &claimed) < 0)
                        claimed = time_now_ms();
                time_format_iso(reconcile_recheck_ms(claimed, claimed, after_s), a->next_check_at);
        }
        return 0;
}

/* On the client's thread: copy into the job, queue it for the writer. */
static void on_confirm_fetched(const struct api_result *r, void *userdata)
{
        struct confirm *cf = userdata;
        struct reconciler *rc = cf->rc;
        struct job *job = cf->job;
        int res = -ESHUTDOWN;

        if (r->error != -ECANCELED) {
                job->confirmed = true; /* job_unref() frees what was copied */
                res = copy_result(&job->fetch, r, &job->delivery, cf->after_s);
                if (res == 0 && r->has_charge && r->charge.status == CHARGE_FAILED &&
                    job->delivery.charge.status == CHARGE_CAPTURED) {
                        int64_t claimed;
                        if (time_parse_iso(job->delivery.received_at, &claimed) < 0)
                                claimed = time_now_ms();
                        recheck_add(rc, r->charge.id, claimed, cf->after_s);
                }
        }
        writer_release_held(rc->rt->writer, job, res);
        job_unref(job);
        free(cf);
        done_one(rc);
}

int reconciler_confirm(struct reconciler *rc, struct job *job, unsigned after_s)
{
        struct confirm *cf = calloc(1, sizeof(*cf));
        struct api_fetch *a = &job->fetch;
        int r;

        if (!cf)
                return -ENOMEM;
        cf->rc = rc;
        cf->job = job;
        cf->after_s = after_s;
        a->reason = FETCH_WEBHOOK;
        snprintf(a->charge_id, sizeof(a->charge_id), "%s", job->delivery.charge.id);
        time_format_iso(time_now_ms(), a->requested_at);
        pthread_mutex_lock(&rc->lock);
        if (rc->stopping) {
                pthread_mutex_unlock(&rc->lock);
                free(cf);
                return -ESHUTDOWN;
        }
        rc->pending++;
        pthread_mutex_unlock(&rc->lock);
        r = writer_hold(rc->rt->writer, job);
        if (r == 0) {
                job_ref(job);
                if (api_fetch_charge(rc->api, a->charge_id, on_confirm_fetched, cf) == 0)
                        return 0;
                job_unref(job);
                r = -ENOMEM;
                writer_release_held(rc->rt->writer, job, r);
        }
        free(cf);
        done_one(rc);
        return r;
}

struct api_client *reconciler_api(struct reconciler *rc)
{
        return rc->api;
}

void reconciler_stop(struct reconciler *rc)
{
        if (!rc)
                return;
        pthread_mutex_lock(&rc->lock);
        rc->stopping = true;
        while (rc->sweeping)
                pthread_cond_wait(&rc->idle, &rc->lock);
        pthread_mutex_unlock(&rc->lock);
        /* Fetches still open end with -ECANCELED: a sweep's claim is given
         * back through the writer (still running), then each is dropped. */
        api_client_free(rc->api);
        pthread_mutex_lock(&rc->lock);
        while (rc->pending > 0)
                pthread_cond_wait(&rc->idle, &rc->lock);
        pthread_mutex_unlock(&rc->lock);
        pthread_cond_destroy(&rc->idle);
        pthread_mutex_destroy(&rc->lock);
        free(rc);
}
