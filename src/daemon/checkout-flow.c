/*
 * checkout-flow — creations and the requests held for them; see
 * checkout-flow.h.
 *
 * Three threads take part, and none waits for another: the listener's
 * (suspend; the answer once resumed), the writer's (a creation's store
 * steps) and the API client's (CashPay's answer, handed back to the
 * writer). Everything shared is under one lock, which is also held while a
 * connection is suspended or resumed, so that no answer can come before
 * its suspend.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/charge-create.h"
#include "cashpay/log.h"
#include "cashpay/timeutil.h"
#include "src/daemon/checkout-flow.h"

/* A hold waits for the POST (and a token request before it) and two
 * commits: past that the merchant's app hears 503 and retries, and the
 * creation still records whatever CashPay answers. */
#define HOLD_SLACK_MS INT64_C(2000)

/* The answer of a held request. Two owners: the request (until its
 * completion) and the creation (until its end); freed by the last. */
struct checkout_hold {
        struct checkout_hold *prev, *next; /* in fl->held while suspended */
        struct MHD_Connection *conn;       /* valid only while !resumed */
        int64_t deadline_ms;
        unsigned refs;
        bool resumed;
        unsigned status;                   /* the answer, set before the resume */
        char *body;
        bool close;
};

/* The store step a creation waits for. */
enum step { STEP_PLAN, STEP_SETTLE };

/* One creation, or a request waiting for the creation of its order_ref. */
struct flow {
        struct checkout_flows *fl;
        struct charge_create *cc;
        struct checkout_hold *hold;
        struct flow *next;          /* fl->flows (creations under way), or a waiter list */
        struct flow *waiters;       /* same order_ref, arrived while this one ran */
        enum step step;             /* the next one, while in fl->steps */
        bool send;                  /* planned: CashPay is to be asked */
        struct flow *step_next;     /* fl->steps */
};

struct checkout_flows {
        struct runtime *rt;
        struct api_client *api;
        /* one writer task at a time takes every step queued (steps_posted) */
        struct writer_task task;
        pthread_mutex_t lock;
        pthread_cond_t idle;
        struct checkout_hold *held; /* under lock, as is everything below */
        unsigned n_held;
        struct flow *flows;
        unsigned pending;           /* flows not yet ended */
        bool closed;                /* stopping: no holds, no requests to CashPay */
        struct flow *steps, **steps_end; /* waiting for the writer, in order */
        bool steps_posted;          /* fl->task is queued at the writer */
};

static const char stopping_body[] = "{\"error\":\"unavailable\",\"detail\":\"shutting down\"}";

/* ---- holds --------------------------------------------------------------- */

static void hold_unref(struct checkout_hold *h)
{
        if (--h->refs > 0)
                return;
        free(h->body);
        free(h);
}

/* Under fl->lock: answer @h with @status and @body (taken), unless an
 * answer went out already. The references stay as they are. */
static void hold_answer(struct checkout_flows *fl, struct checkout_hold *h, unsigned status,
                        char *body, bool close)
{
        if (h->resumed) {
                free(body);
                return;
        }
        h->resumed = true;
        h->status = status;
        h->body = body;
        h->close = close;
        if (h->prev)
                h->prev->next = h->next;
        else
                fl->held = h->next;
        if (h->next)
                h->next->prev = h->prev;
        fl->n_held--;
        MHD_resume_connection(h->conn);
        h->conn = NULL;
}

/* Under fl->lock: a fixed answer (deadline, shutdown). */
static void hold_answer_static(struct checkout_flows *fl, struct checkout_hold *h,
                               const char *body, bool close)
{
        char *copy = strdup(body);

        /* Without memory the body is NULL: checkout_hold_answer() says so. */
        hold_answer(fl, h, MHD_HTTP_SERVICE_UNAVAILABLE, copy, close);
}

void checkout_hold_answer(struct checkout_flows *fl, struct checkout_hold *h,
                          unsigned *ret_status, char **ret_body, bool *ret_close)
{
        pthread_mutex_lock(&fl->lock);
        *ret_status = h->status;
        *ret_body = h->body ? strdup(h->body) : NULL;
        *ret_close = h->close;
        pthread_mutex_unlock(&fl->lock);
}

void checkout_hold_release(struct checkout_flows *fl, struct checkout_hold *h)
{
        pthread_mutex_lock(&fl->lock);
        hold_unref(h); /* resumed before completion, always */
        pthread_mutex_unlock(&fl->lock);
}

/* ---- creations ------------------------------------------------------------ */

static void flow_free(struct flow *f)
{
        charge_create_free(f->cc);
        free(f);
}

static bool same_terms(const struct charge_order *a, const struct charge_order *b)
{
        return a->amount == b->amount && strcmp(a->currency, b->currency) == 0 &&
               strcmp(a->description ? a->description : "",
                      b->description ? b->description : "") == 0;
}

static void log_result(const struct flow *f, const struct charge_result *res, unsigned status)
{
        const struct charge_order *o = charge_create_order(f->cc);
        struct log_fields lf = { .charge_id = res->charge_id[0] ? res->charge_id : NULL };
        enum log_level level = status >= 500 ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO;

        if (status < 300)
                log_fields(level, &lf, "checkout %s %lld %s: %u %s", o->order_ref,
                           (long long) o->amount, o->currency, status, res->charge_id);
        else
                log_fields(level, &lf, "checkout %s %lld %s: %u%s%s%s%s", o->order_ref,
                           (long long) o->amount, o->currency, status,
                           res->charge_id[0] ? " " : "", res->charge_id,
                           res->detail[0] ? ": " : "", res->detail);
}

/* Under fl->lock: the answer of @f, built from @res (its own result, or
 * the result of the creation it waited for). */
static void answer_flow(struct flow *f, const struct charge_result *res)
{
        char *body = NULL;
        unsigned status = charge_result_status(res);

        if (charge_result_json(res, charge_create_order(f->cc), &body) < 0) {
                status = MHD_HTTP_SERVICE_UNAVAILABLE;
                body = NULL;
        }
        hold_answer(f->fl, f->hold, status, body, false);
        hold_unref(f->hold);
        f->hold = NULL;
}

static void post_plan(struct flow *f);

/* Under fl->lock: the waiters of a creation that ended with @res. The
 * ones with the same terms get its charge (201 is 200 to them: nothing new
 * was created for them); the others are planned again, the first as a
 * creation of its own and the rest as its waiters. Returns that first one,
 * to be posted once the lock is let go. */
static struct flow *settle_waiters(struct flow *waiters, const struct charge_result *res,
                                   const struct charge_order *terms)
{
        struct charge_result theirs = *res;
        struct flow *again = NULL;

        if (theirs.answer == CHARGE_ANSWER_CREATED)
                theirs.answer = CHARGE_ANSWER_EXISTS;
        for (struct flow *w = waiters, *next; w; w = next) {
                next = w->next;
                if (!same_terms(charge_create_order(w->cc), terms)) {
                        w->next = NULL;
                        if (again) {
                                w->next = again->waiters;
                                again->waiters = w;
                        } else {
                                again = w;
                        }
                        continue;
                }
                answer_flow(w, &theirs);
                w->fl->pending--;
                flow_free(w);
        }
        return again;
}

/* A creation's end, on whichever thread it ended: answered, waiters
 * settled, freed. */
static void flow_end(struct flow *f)
{
        struct checkout_flows *fl = f->fl;
        const struct charge_result *res = charge_create_result(f->cc);
        struct flow *again;

        log_result(f, res, charge_result_status(res));
        pthread_mutex_lock(&fl->lock);
        for (struct flow **p = &fl->flows; *p; p = &(*p)->next)
                if (*p == f) {
                        *p = f->next;
                        break;
                }
        answer_flow(f, res);
        again = settle_waiters(f->waiters, res, charge_create_order(f->cc));
        if (again) {
                again->next = fl->flows;
                fl->flows = again;
        }
        fl->pending--;
        pthread_cond_broadcast(&fl->idle);
        pthread_mutex_unlock(&fl->lock);
        flow_free(f);
        if (again)
                post_plan(again);
}

/* The steps queued, taken off the queue: the next one posts the task again. */
static struct flow *take_steps(struct checkout_flows *fl)
{
        struct flow *list;

        pthread_mutex_lock(&fl->lock);
        list = fl->steps;
        fl->steps = NULL;
        fl->steps_end = &fl->steps;
        fl->steps_posted = false;
        pthread_mutex_unlock(&fl->lock);
        return list;
}

/* Any thread: @f's next store step (@step) to the writer, along with
 * whatever other steps are waiting, so that one transaction records them
 * all. A writer that is stopping takes no more: @f ends unanswered (503). */
static void queue_step(struct flow *f, enum step step)
{
        struct checkout_flows *fl = f->fl;
        struct flow *list;

        pthread_mutex_lock(&fl->lock);
        f->step = step;
        f->step_next = NULL;
        *fl->steps_end = f;
        fl->steps_end = &f->step_next;
        bool post = !fl->steps_posted;
        fl->steps_posted = true;
        pthread_mutex_unlock(&fl->lock);
        if (!post || writer_post(fl->rt->writer, &fl->task) == 0)
                return; /* the task posted before takes @f along */
        list = take_steps(fl);
        while (list) {
                struct flow *next = list->step_next;
                flow_end(list); /* a plan's request stays pending: a retry sends its key */
                list = next;
        }
}

/* On the client's thread: CashPay answered (or the client stops). */
static void on_sent(void *data)
{
        struct flow *f = data;

        if (charge_create_cancelled(f->cc)) {
                flow_end(f);
                return;
        }
        queue_step(f, STEP_SETTLE);
}

/* A planned creation, its plan committed: the POST handed to the client
 * (which only queues it). */
static void send_flow(struct flow *f)
{
        struct checkout_flows *fl = f->fl;
        int r = -ESHUTDOWN;

        /* Under the lock, so that the client is not freed meanwhile. */
        pthread_mutex_lock(&fl->lock);
        if (!fl->closed)
                r = charge_create_send(f->cc, fl->api, on_sent, f);
        pthread_mutex_unlock(&fl->lock);
        if (r < 0)
                flow_end(f);
}

/*
 * On the writer's thread: every step waiting, in one transaction (a
 * creation took two commits of its own, one fdatasync each, and that was
 * what bounded the listener): the settles (CashPay's answers recorded) and
 * the plans (request rows). Only once it is committed is anything sent or
 * answered; when it fails, every one of them answers 503 and nothing of
 * them was recorded (a retry finds the request as it was).
 */
static void steps_run(struct store *store, struct writer_task *task)
{
        struct checkout_flows *fl = (struct checkout_flows *) ((char *) task -
                                                               offsetof(struct checkout_flows, task));
        struct flow *list, *f;
        int64_t now_ms = time_now_ms();
        int r;

        list = take_steps(fl);
        r = store_charge_group_begin(store);
        for (f = list; f && r == 0; f = f->step_next) {
                if (f->step == STEP_SETTLE)
                        charge_create_settle(f->cc, store, now_ms);
                else
                        f->send = charge_create_plan(f->cc, store, now_ms);
        }
        if (r == 0)
                r = store_charge_group_commit(store);
        /* @fl may be freed once the last flow ended: not touched below */
        for (f = list; f;) {
                struct flow *next = f->step_next;

                if (r < 0)
                        charge_create_unrecorded(f->cc, r);
                if (r == 0 && f->step == STEP_PLAN && f->send)
                        send_flow(f);
                else
                        flow_end(f);
                f = next;
        }
}

static void post_plan(struct flow *f)
{
        queue_step(f, STEP_PLAN);
}

/* Under fl->lock: the creation of @o's order_ref under way, or NULL. */
static struct flow *find_flow(struct checkout_flows *fl, const struct charge_order *o)
{
        for (struct flow *f = fl->flows; f; f = f->next)
                if (strcmp(charge_create_order(f->cc)->order_ref, o->order_ref) == 0)
                        return f;
        return NULL;
}

static int new_flow(struct checkout_flows *fl, const struct settings *s,
                    const struct checkout_request *cr, struct flow **ret)
{
        const struct config *cfg = s->cfg;
        const struct charge_order order = {
                .order_ref = cr->order_ref, .amount = cr->amount, .currency = cr->currency,
                .description = cr->description,
        };
        const struct charge_urls urls = {
                .public_url = cfg->cashpay.public_url, .webhook_path = cfg->http.webhook_path,
                .return_path = cfg->http.return_path,
                .order_ref_field = cfg->webhook.order_ref_field,
                .reconcile_after = cfg->cashpay.reconcile_after,
        };
        struct flow *f = calloc(1, sizeof(*f));
        int r;

        if (!f)
                return -ENOMEM;
        f->fl = fl;
        f->hold = calloc(1, sizeof(*f->hold));
        r = f->hold ? charge_create_new(&order, &urls, &f->cc) : -ENOMEM;
        if (r < 0) {
                free(f->hold);
                free(f);
                return r;
        }
        *ret = f;
        return 0;
}

/* Under fl->lock: @f's hold in the list, @f a creation or a waiter.
 * Returns true when @f leads (its plan is to be posted). */
static bool add_flow(struct checkout_flows *fl, struct MHD_Connection *conn, struct flow *f,
                     int64_t wait_ms)
{
        struct checkout_hold *h = f->hold;
        struct flow *leader = find_flow(fl, charge_create_order(f->cc));

        *h = (struct checkout_hold) { .conn = conn, .deadline_ms = time_monotonic_ms() + wait_ms,
                                      .refs = 2, .next = fl->held };
        if (fl->held)
                fl->held->prev = h;
        fl->held = h;
        fl->n_held++;
        fl->pending++;
        if (leader) {
                f->next = leader->waiters;
                leader->waiters = f;
        } else {
                f->next = fl->flows;
                fl->flows = f;
        }
        return !leader;
}

int checkout_flows_hold(struct checkout_flows *fl, struct MHD_Connection *conn,
                        const struct settings *s, const struct checkout_request *cr,
                        struct checkout_hold **ret)
{
        const struct config *cfg = s->cfg;
        int64_t wait_ms = (int64_t) cfg->cashpay.request_timeout * 2000 +
                          cfg->database.commit_timeout + HOLD_SLACK_MS;
        unsigned max = cfg->cashpay.max_inflight ? cfg->cashpay.max_inflight : 1;
        struct flow *f;
        bool lead;
        int r = new_flow(fl, s, cr, &f);

        if (r < 0)
                return r;
        pthread_mutex_lock(&fl->lock);
        r = fl->closed ? -ESHUTDOWN : fl->n_held >= max ? -EBUSY : 0;
        if (r == 0) {
                lead = add_flow(fl, conn, f, wait_ms);
                *ret = f->hold;
                /* Suspended before anyone can answer it: they all take this lock. */
                MHD_suspend_connection(conn);
        }
        pthread_mutex_unlock(&fl->lock);
        if (r < 0) {
                free(f->hold);
                flow_free(f);
                return r;
        }
        if (lead)
                post_plan(f);
        return 0;
}

int checkout_flows_new(struct runtime *rt, struct api_client *api, struct checkout_flows **ret)
{
        struct checkout_flows *fl = calloc(1, sizeof(*fl));

        if (!fl)
                return -ENOMEM;
        fl->rt = rt;
        fl->api = api;
        fl->task.run = steps_run;
        fl->steps_end = &fl->steps;
        pthread_mutex_init(&fl->lock, NULL);
        pthread_cond_init(&fl->idle, NULL);
        *ret = fl;
        return 0;
}

void checkout_flows_expire(struct checkout_flows *fl, int64_t now_ms)
{
        pthread_mutex_lock(&fl->lock);
        for (struct checkout_hold *h = fl->held, *next; h; h = next) {
                next = h->next;
                if (h->deadline_ms <= now_ms)
                        hold_answer_static(fl, h, CHECKOUT_UNAVAILABLE_BODY, false);
        }
        pthread_mutex_unlock(&fl->lock);
}

void checkout_flows_close(struct checkout_flows *fl)
{
        pthread_mutex_lock(&fl->lock);
        fl->closed = true;
        while (fl->held)
                hold_answer_static(fl, fl->held, stopping_body, true);
        pthread_mutex_unlock(&fl->lock);
}

void checkout_flows_free(struct checkout_flows *fl)
{
        if (!fl)
                return;
        pthread_mutex_lock(&fl->lock);
        while (fl->pending > 0)
                pthread_cond_wait(&fl->idle, &fl->lock);
        pthread_mutex_unlock(&fl->lock);
        pthread_cond_destroy(&fl->idle);
        pthread_mutex_destroy(&fl->lock);
        free(fl);
}
