/*
 * checkout — the checkout listener; see checkout.h.
 *
 * Three owners meet here, and none waits for another: the listener's
 * thread (checks, parse, suspend; the answer once resumed), the writer
 * (a creation's store steps, charge-create.h) and the API client's thread
 * (CashPay's answer, handed back to the writer). A suspended connection is
 * a "hold" with exactly one answerer: the creation's last step, its
 * deadline (tick from the main loop) or the shutdown, whichever comes
 * first; the creation itself always runs to its end, so that what CashPay
 * said is recorded even when nobody waits for it any more.
 */
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cashpay/charge-create.h"
#include "cashpay/checkout.h"
#include "cashpay/log.h"
#include "cashpay/timeutil.h"
#include "src/daemon/checkout.h"
#include "src/daemon/deadline.h"
#include "src/daemon/http-framing.h"
#include "src/daemon/http.h"
#include "src/daemon/metrics.h"

#define MAX_LISTENERS 16
#define CHARGES_PATH "/charges"
/* A hold waits for the POST (and a token request before it) and two
 * commits: past that the merchant's app hears 503 and retries, and the
 * creation still records whatever CashPay answers. */
#define HOLD_SLACK_MS INT64_C(2000)

/* The answer of a held request. Two owners: the request (until its
 * completion) and the creation (until its end); freed by the last. */
struct hold {
        struct hold *prev, *next;   /* in srv->held while suspended */
        struct MHD_Connection *conn; /* valid only while !resumed */
        int64_t deadline_ms;
        unsigned refs;
        bool resumed;
        unsigned status;            /* the answer, set before the resume */
        char *body;
        bool close;
};

/* One request, from its first handler call to its completion. */
struct request {
        struct checkout_server *srv;
        uint8_t *body;
        size_t len, cap;
        bool too_large;
        struct hold *hold;
};

/* One creation, or a request waiting for the creation of its order_ref. */
struct flow {
        struct writer_task task;    /* first: the writer hands this back */
        struct checkout_server *srv;
        struct charge_create *cc;
        struct hold *hold;
        struct flow *next;          /* srv->flows (creations under way), or a waiter list */
        struct flow *waiters;       /* same order_ref, arrived while this one ran */
};

struct checkout_server {
        struct runtime *rt;
        struct api_client *api;
        struct MHD_Daemon *daemons[MAX_LISTENERS];
        size_t n;
        struct deadline_list *deadlines;
        int64_t request_timeout_ms;

        pthread_mutex_t lock;
        pthread_cond_t idle;
        struct hold *held;          /* under lock, as is everything below */
        unsigned n_held;
        struct flow *flows;
        unsigned pending;           /* flows not yet ended */
        bool closed;                /* stopping: no holds, no requests to CashPay */
};

static const char unavailable_body[] = "{\"error\":\"cashpay_unavailable\"}";
static const char stopping_body[] = "{\"error\":\"unavailable\",\"detail\":\"shutting down\"}";

/* ---- answers ------------------------------------------------------------ */

/* Every answer: JSON, Retry-After with a 503, counted as the checkout's. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *json,
                             bool close, const char *allow)
{
        enum MHD_Result ret = http_reply(conn, status, &(struct http_reply) {
                .content_type = "application/json", .body = json, .len = strlen(json),
                .close = close, .allow = allow,
                .retry_after = status == MHD_HTTP_SERVICE_UNAVAILABLE,
        });

        if (ret == MHD_YES)
                metrics_count_checkout(status);
        return ret;
}

/* Before the body was read: close, or the unread body would be taken for
 * the next request. */
static enum MHD_Result reply_early(struct MHD_Connection *conn, unsigned status,
                                   const char *json, const char *allow)
{
        return reply(conn, status, json, true, allow);
}

static enum MHD_Result reply_invalid(struct MHD_Connection *conn, const char *detail)
{
        _cleanup_(json_decrefp) json_t *j = json_pack("{s:s, s:s}", "error", "invalid_request",
                                                      "detail", detail);
        _cleanup_(freep) char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

        if (!text)
                return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, unavailable_body, false, NULL);
        return reply(conn, MHD_HTTP_BAD_REQUEST, text, false, NULL);
}

/* ---- holds --------------------------------------------------------------- */

static void hold_unref(struct hold *h)
{
        if (--h->refs > 0)
                return;
        free(h->body);
        free(h);
}

/* Under srv->lock: answer @h with @status and @body (taken), unless an
 * answer went out already; the creation's reference goes either way. */
static void hold_answer(struct checkout_server *srv, struct hold *h, unsigned status,
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
                srv->held = h->next;
        if (h->next)
                h->next->prev = h->prev;
        srv->n_held--;
        MHD_resume_connection(h->conn);
        h->conn = NULL;
}

/* Under srv->lock: a fixed answer (deadline, shutdown). */
static void hold_answer_static(struct checkout_server *srv, struct hold *h, const char *body,
                               bool close)
{
        char *copy = strdup(body);

        /* Without memory the answer is the bare 503 reply_held() gives. */
        hold_answer(srv, h, MHD_HTTP_SERVICE_UNAVAILABLE, copy, close);
}

static enum MHD_Result reply_held(struct checkout_server *srv, struct MHD_Connection *conn,
                                  struct hold *h)
{
        pthread_mutex_lock(&srv->lock);
        unsigned status = h->status;
        char *body = h->body ? strdup(h->body) : NULL;
        bool close = h->close;
        pthread_mutex_unlock(&srv->lock);

        enum MHD_Result r = body ? reply(conn, status, body, close, NULL)
                                 : reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, unavailable_body,
                                         close, NULL);
        free(body);
        return r;
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

/* Under srv->lock: the answer of @f, built from @res (its own result, or
 * the result of the creation it waited for). */
static void answer_flow(struct flow *f, const struct charge_result *res)
{
        char *body = NULL;
        unsigned status = charge_result_status(res);

        if (charge_result_json(res, charge_create_order(f->cc), &body) < 0) {
                status = MHD_HTTP_SERVICE_UNAVAILABLE;
                body = NULL;
        }
        hold_answer(f->srv, f->hold, status, body, false);
        hold_unref(f->hold);
        f->hold = NULL;
}

static void post_plan(struct flow *f);

/* Under srv->lock: the waiters of a creation that ended with @res. The
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
                w->srv->pending--;
                flow_free(w);
        }
        return again;
}

/* A creation's end, on whichever thread it ended: answered, waiters
 * settled, freed. */
static void flow_end(struct flow *f)
{
        struct checkout_server *srv = f->srv;
        const struct charge_result *res = charge_create_result(f->cc);
        struct flow *again;

        log_result(f, res, charge_result_status(res));
        pthread_mutex_lock(&srv->lock);
        for (struct flow **p = &srv->flows; *p; p = &(*p)->next)
                if (*p == f) {
                        *p = f->next;
                        break;
                }
        answer_flow(f, res);
        again = settle_waiters(f->waiters, res, charge_create_order(f->cc));
        if (again) {
                again->next = srv->flows;
                srv->flows = again;
        }
        srv->pending--;
        pthread_cond_broadcast(&srv->idle);
        pthread_mutex_unlock(&srv->lock);
        flow_free(f);
        if (again)
                post_plan(again);
}

/* Step 3, on the writer's thread. */
static void settle_run(struct store *store, struct writer_task *task)
{
        struct flow *f = (struct flow *) task;

        charge_create_settle(f->cc, store, time_now_ms());
        flow_end(f);
}

/* On the client's thread: CashPay answered (or the client stops). */
static void on_sent(void *data)
{
        struct flow *f = data;

        if (charge_create_cancelled(f->cc)) {
                flow_end(f);
                return;
        }
        f->task.run = settle_run;
        if (writer_post(f->srv->rt->writer, &f->task) < 0)
                flow_end(f); /* the request stays pending: a retry sends its key */
}

/* Steps 1 and 2, on the writer's thread: the request row, then the POST
 * handed to the client (which only queues it). */
static void plan_run(struct store *store, struct writer_task *task)
{
        struct flow *f = (struct flow *) task;
        struct checkout_server *srv = f->srv;
        int r = -ESHUTDOWN;

        if (!charge_create_plan(f->cc, store, time_now_ms())) {
                flow_end(f);
                return;
        }
        /* Under the lock, so that the client is not freed meanwhile. */
        pthread_mutex_lock(&srv->lock);
        if (!srv->closed)
                r = charge_create_send(f->cc, srv->api, on_sent, f);
        pthread_mutex_unlock(&srv->lock);
        if (r < 0)
                flow_end(f);
}

static void post_plan(struct flow *f)
{
        f->task.run = plan_run;
        if (writer_post(f->srv->rt->writer, &f->task) < 0)
                flow_end(f); /* answered with the result's default: 503 */
}

/* Under srv->lock: the creation of @o's order_ref under way, or NULL. */
static struct flow *find_flow(struct checkout_server *srv, const struct charge_order *o)
{
        for (struct flow *f = srv->flows; f; f = f->next)
                if (strcmp(charge_create_order(f->cc)->order_ref, o->order_ref) == 0)
                        return f;
        return NULL;
}

/* ---- requests ----------------------------------------------------------- */

static int new_flow(struct checkout_server *srv, const struct settings *s,
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
        f->srv = srv;
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

/* Hold the connection for @f: false when stopping or too many are held. */
static bool hold_for(struct checkout_server *srv, struct MHD_Connection *conn,
                     struct request *req, struct flow *f, int64_t wait_ms, unsigned max,
                     bool *ret_lead)
{
        struct hold *h = f->hold;
        struct flow *leader;

        pthread_mutex_lock(&srv->lock);
        if (srv->closed || srv->n_held >= max) {
                pthread_mutex_unlock(&srv->lock);
                return false;
        }
        *h = (struct hold) { .conn = conn, .deadline_ms = time_monotonic_ms() + wait_ms,
                             .refs = 2, .next = srv->held };
        if (srv->held)
                srv->held->prev = h;
        srv->held = h;
        srv->n_held++;
        srv->pending++;
        req->hold = h;
        leader = find_flow(srv, charge_create_order(f->cc));
        if (leader) {
                f->next = leader->waiters;
                leader->waiters = f;
        } else {
                f->next = srv->flows;
                srv->flows = f;
        }
        *ret_lead = !leader;
        /* Suspended before anyone can answer it: they all take this lock. */
        MHD_suspend_connection(conn);
        pthread_mutex_unlock(&srv->lock);
        return true;
}

/* The whole body is in: parse it, start (or join) the creation. */
static enum MHD_Result start(struct checkout_server *srv, struct MHD_Connection *conn,
                             struct request *req)
{
        struct checkout_request cr;
        char detail[200];
        struct flow *f = NULL;
        bool lead = false, held = false;
        int r = checkout_parse_request(req->body, req->len, &cr, detail, sizeof(detail));

        if (r == -EINVAL) {
                checkout_request_clear(&cr);
                return reply_invalid(conn, detail);
        }
        const struct settings *s = runtime_settings_acquire(srv->rt);
        const struct config *cfg = s->cfg;
        int64_t wait_ms = (int64_t) cfg->cashpay.request_timeout * 2000 +
                          cfg->database.commit_timeout + HOLD_SLACK_MS;
        unsigned max = cfg->cashpay.max_inflight ? cfg->cashpay.max_inflight : 1;

        if (r == 0)
                r = new_flow(srv, s, &cr, &f);
        runtime_settings_release(srv->rt);
        checkout_request_clear(&cr);
        if (r == 0)
                held = hold_for(srv, conn, req, f, wait_ms, max, &lead);
        if (!held) {
                if (f) {
                        free(f->hold);
                        flow_free(f);
                }
                return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, unavailable_body, false, NULL);
        }
        if (lead)
                post_plan(f);
        return MHD_YES;
}

/* sha256 of @len bytes at @p. */
static bool digest(const void *p, size_t len, unsigned char out[EVP_MAX_MD_SIZE])
{
        unsigned n = 0;

        return EVP_Digest(p, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32;
}

/* The bearer against each token of [checkout] token_file, compared as
 * digests in constant time (no early exit, no length leaked). */
static bool authorized(struct MHD_Connection *conn, const struct secret_set *tokens)
{
        const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_AUTHORIZATION);
        unsigned char mine[EVP_MAX_MD_SIZE], theirs[EVP_MAX_MD_SIZE];
        unsigned ok = 0;

        if (tokens->n == 0)
                return true;
        if (!h || strncasecmp(h, "Bearer ", 7) != 0)
                return false;
        for (h += 7; *h == ' '; h++)
                ;
        if (!digest(h, strlen(h), theirs))
                return false;
        for (size_t i = 0; i < tokens->n; i++) {
                if (!digest(tokens->items[i].bytes, tokens->items[i].len, mine))
                        return false;
                ok |= (unsigned) (CRYPTO_memcmp(mine, theirs, 32) == 0);
        }
        OPENSSL_cleanse(mine, sizeof(mine));
        return ok != 0;
}

/* The first handler call (headers only): what may go on to send a body. */
static enum MHD_Result first_call(struct checkout_server *srv, struct MHD_Connection *conn,
                                  const char *url, const char *method, void **req_cls)
{
        const struct settings *s = runtime_settings_acquire(srv->rt);
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_TYPE);
        enum MHD_Result r = MHD_YES;
        struct request *req = NULL;

        if (atomic_load(&srv->rt->draining))
                r = reply_early(conn, MHD_HTTP_SERVICE_UNAVAILABLE, stopping_body, NULL);
        else if (http_framing_ambiguous(conn))
                r = reply_early(conn, MHD_HTTP_BAD_REQUEST, "{\"error\":\"invalid_request\","
                                "\"detail\":\"ambiguous message framing\"}", NULL);
        else if (strcmp(url, CHARGES_PATH) != 0)
                r = reply_early(conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"not_found\"}", NULL);
        else if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
                r = reply_early(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                "{\"error\":\"method_not_allowed\"}", "POST");
        else if (!authorized(conn, &s->checkout_tokens))
                r = reply_early(conn, MHD_HTTP_UNAUTHORIZED, "{\"error\":\"unauthorized\"}", NULL);
        else if (http_declared_too_large(conn, s->cfg->checkout.max_body))
                r = reply_early(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                "{\"error\":\"payload_too_large\"}", NULL);
        else if (!http_content_type_is_json(ct))
                r = reply_early(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                "{\"error\":\"unsupported_media_type\"}", NULL);
        else if (!(req = calloc(1, sizeof(*req))))
                r = MHD_NO;
        runtime_settings_release(srv->rt);
        if (req) {
                req->srv = srv;
                *req_cls = req;
                atomic_fetch_add(&srv->rt->in_flight, 1);
        }
        return r;
}

/* Up to max_body; past it the rest is read and dropped (a chunked body
 * gives no size up front), and answered 413 at its end. */
static int append_body(struct request *req, const char *data, size_t size, size_t max)
{
        if (req->too_large || size > max - req->len) {
                req->too_large = true;
                return 0;
        }
        if (req->len + size > req->cap) {
                size_t cap = req->cap ? req->cap * 2 : 1024;
                while (cap < req->len + size)
                        cap *= 2;
                uint8_t *grown = realloc(req->body, cap);
                if (!grown)
                        return -ENOMEM;
                req->body = grown;
                req->cap = cap;
        }
        memcpy(req->body + req->len, data, size);
        req->len += size;
        return 0;
}

static size_t max_body(struct checkout_server *srv)
{
        const struct settings *s = runtime_settings_acquire(srv->rt);
        size_t max = s->cfg->checkout.max_body;

        runtime_settings_release(srv->rt);
        return max;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
        struct checkout_server *srv = cls;
        struct request *req = *req_cls;

        if (!req)
                return first_call(srv, conn, url, method, req_cls);
        if (*upload_data_size > 0) {
                int r = append_body(req, upload_data, *upload_data_size, max_body(srv));
                *upload_data_size = 0;
                return r < 0 ? MHD_NO : MHD_YES;
        }
        deadline_set(http_connection_deadline(conn), 0); /* the whole request is here */
        if (req->hold)
                return reply_held(srv, conn, req->hold);
        if (req->too_large)
                return reply(conn, MHD_HTTP_CONTENT_TOO_LARGE, "{\"error\":\"payload_too_large\"}",
                             true, NULL);
        return start(srv, conn, req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode code)
{
        struct checkout_server *srv = cls;
        struct request *req = *req_cls;

        deadline_set(http_connection_deadline(conn), time_monotonic_ms() + srv->request_timeout_ms);
        if (!req)
                return;
        if (req->hold) {
                pthread_mutex_lock(&srv->lock);
                hold_unref(req->hold); /* resumed before completion, always */
                pthread_mutex_unlock(&srv->lock);
        }
        free(req->body);
        free(req);
        *req_cls = NULL;
        atomic_fetch_sub(&srv->rt->in_flight, 1);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
        struct checkout_server *srv = cls;

        http_track_connection(srv->deadlines, srv->request_timeout_ms, conn, socket_context,
                              code == MHD_CONNECTION_NOTIFY_CLOSED);
}

/* One thread: a request costs a parse, then waits suspended. */
static struct MHD_Daemon *start_daemon(struct checkout_server *srv, const struct config *cfg,
                                       int fd)
{
        return MHD_start_daemon(
                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                MHD_USE_ITC, 0, NULL, NULL, on_request, srv,
                MHD_OPTION_LISTEN_SOCKET, fd,
                MHD_OPTION_CONNECTION_LIMIT, cfg->http.max_connections,
                MHD_OPTION_CONNECTION_TIMEOUT, cfg->http.timeout,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
                MHD_OPTION_STRICT_FOR_CLIENT, 1,
                MHD_OPTION_END);
}

int checkout_start(struct runtime *rt, struct api_client *api, const int *fds, size_t n_fds,
                   struct checkout_server **ret, char *err, size_t err_len)
{
        struct checkout_server *srv = calloc(1, sizeof(*srv));

        if (!srv || deadline_list_new(&srv->deadlines) < 0) {
                free(srv);
                return err_set(err, err_len, -ENOMEM, "out of memory");
        }
        srv->rt = rt;
        srv->api = api;
        pthread_mutex_init(&srv->lock, NULL);
        pthread_cond_init(&srv->idle, NULL);
        const struct settings *s = runtime_settings_acquire(rt);
        srv->request_timeout_ms = (int64_t) s->cfg->http.request_timeout * 1000;
        for (size_t i = 0; i < n_fds && i < MAX_LISTENERS; i++) {
                srv->daemons[i] = start_daemon(srv, s->cfg, fds[i]);
                if (!srv->daemons[i]) {
                        runtime_settings_release(rt);
                        checkout_stop(srv);
                        checkout_free(srv);
                        return err_set(err, err_len, -EIO,
                                       "cannot start the checkout listener on socket %d", fds[i]);
                }
                srv->n++;
        }
        runtime_settings_release(rt);
        metrics_checkout_enable();
        *ret = srv;
        return 0;
}

void checkout_expire(struct checkout_server *srv, int64_t now_ms)
{
        if (!srv)
                return;
        pthread_mutex_lock(&srv->lock);
        for (struct hold *h = srv->held, *next; h; h = next) {
                next = h->next;
                if (h->deadline_ms <= now_ms)
                        hold_answer_static(srv, h, unavailable_body, false);
        }
        pthread_mutex_unlock(&srv->lock);
        deadline_expire(srv->deadlines, now_ms);
}

void checkout_quiesce(struct checkout_server *srv)
{
        for (size_t i = 0; srv && i < srv->n; i++)
                MHD_quiesce_daemon(srv->daemons[i]);
}

void checkout_release_held(struct checkout_server *srv)
{
        if (!srv)
                return;
        pthread_mutex_lock(&srv->lock);
        srv->closed = true;
        while (srv->held)
                hold_answer_static(srv, srv->held, stopping_body, true);
        pthread_mutex_unlock(&srv->lock);
}

void checkout_stop(struct checkout_server *srv)
{
        if (!srv)
                return;
        /* Quiesced first, MHD leaves the listening socket (maybe systemd's) alone. */
        checkout_quiesce(srv);
        checkout_release_held(srv); /* MHD must not stop with a connection suspended */
        for (size_t i = 0; i < srv->n; i++)
                MHD_stop_daemon(srv->daemons[i]);
        srv->n = 0;
}

void checkout_free(struct checkout_server *srv)
{
        if (!srv)
                return;
        pthread_mutex_lock(&srv->lock);
        while (srv->pending > 0)
                pthread_cond_wait(&srv->idle, &srv->lock);
        pthread_mutex_unlock(&srv->lock);
        deadline_list_free(srv->deadlines);
        pthread_cond_destroy(&srv->idle);
        pthread_mutex_destroy(&srv->lock);
        free(srv);
}
