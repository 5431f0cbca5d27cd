/*
 * pages — the routes a customer's browser and the shop's front end use:
 * the return page after paying and the status lookup, both read from a
 * read-only database handle of the reader pool. The return page finds the
 * order by `ref` (its return_ref, §8.3), else `charge_id`, else `id`.
 *
 * With the API configured, a return page whose order is INITIATED (or not
 * known yet) first asks the API about that charge (CONTRACT §2, §8.5), at
 * most once per `refresh` seconds per charge: the connection is suspended
 * (a "hold") until the reconciler's writer has recorded the answer, or
 * HOLD_WAIT_MS have passed, and the page is then read from the database
 * as always, never from the API's answer itself. At most max_inflight
 * pages are held at a time; beyond that a page answers at once. Every
 * hold is resumed before the listeners stop (pages_expire_holds(all)).
 */
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/charge.h"
#include "cashpay/page.h"
#include "cashpay/store-api.h"
#include "cashpay/util.h"
#include "cashpay/timeutil.h"
#include "src/daemon/http-internal.h"
#include "src/daemon/reconciler.h"

#define HOLD_WAIT_MS INT64_C(2000)

/* One held return page. Two owners: the request (until its completion)
 * and the fetch (until its record); freed by the last. */
struct page_hold {
        struct page_hold *prev, *next; /* in held_list while suspended */
        struct MHD_Connection *conn;   /* valid only while !resumed */
        int64_t deadline_ms;
        unsigned refs;
        bool resumed;
};

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static struct page_hold *held_list; /* under held_lock, as are the fields above */
static unsigned held_n;
static bool held_closed;            /* stopping: no new holds */

/* Under held_lock: once, whoever comes first (the record or the deadline). */
static void hold_resume(struct page_hold *h)
{
        if (h->resumed)
                return;
        h->resumed = true;
        if (h->prev)
                h->prev->next = h->next;
        else
                held_list = h->next;
        if (h->next)
                h->next->prev = h->prev;
        held_n--;
        MHD_resume_connection(h->conn);
        h->conn = NULL;
}

static void hold_unref(struct page_hold *h)
{
        if (--h->refs == 0)
                free(h);
}

/* The fetch is recorded (writer's thread) or dropped (client's thread). */
static void on_fetch_done(void *data)
{
        struct page_hold *h = data;

        pthread_mutex_lock(&held_lock);
        hold_resume(h);
        hold_unref(h);
        pthread_mutex_unlock(&held_lock);
}

void pages_expire_holds(int64_t now_ms, bool all)
{
        pthread_mutex_lock(&held_lock);
        if (all)
                held_closed = true;
        for (struct page_hold *h = held_list, *next; h; h = next) {
                next = h->next;
                if (all || h->deadline_ms <= now_ms)
                        hold_resume(h);
        }
        pthread_mutex_unlock(&held_lock);
}

void pages_request_done(struct request *req)
{
        if (!req->hold)
                return;
        pthread_mutex_lock(&held_lock);
        hold_resume(req->hold); /* never still suspended here; kept safe anyway */
        hold_unref(req->hold);
        pthread_mutex_unlock(&held_lock);
        req->hold = NULL;
}

/*
 * Suspend @conn and fetch @charge_id, when the page may: the API is
 * configured, the charge was not fetched within `refresh` seconds, fewer
 * than max_inflight pages are held. True when the connection is held (the
 * handler returns MHD_YES without an answer; it is called again on resume).
 */
static bool hold_for_fetch(struct MHD_Connection *conn, struct runtime *rt,
                           const struct settings *s, struct request *req, const char *charge_id)
{
        struct reconciler *rc = rt->reconciler;
        unsigned max = s->cfg->cashpay.max_inflight ? s->cfg->cashpay.max_inflight : 1;
        int64_t now = time_monotonic_ms();
        struct page_hold *h;

        req->fetch_tried = true;
        if (!rc || atomic_load(&rt->draining) ||
            !reconciler_fetch_due(rc, charge_id, s->cfg->ret.refresh, now))
                return false;
        if (!(h = calloc(1, sizeof(*h))))
                return false;
        *h = (struct page_hold) { .conn = conn, .deadline_ms = now + HOLD_WAIT_MS, .refs = 2 };
        pthread_mutex_lock(&held_lock);
        if (held_closed || held_n >= max) {
                pthread_mutex_unlock(&held_lock);
                free(h);
                return false;
        }
        /* Suspended before the fetch can end, so a quick end resumes it. */
        MHD_suspend_connection(conn);
        h->next = held_list;
        if (held_list)
                held_list->prev = h;
        held_list = h;
        held_n++;
        req->hold = h;
        pthread_mutex_unlock(&held_lock);
        if (reconciler_fetch_one(rc, charge_id, now, on_fetch_done, h) < 0)
                on_fetch_done(h); /* resumed at once: the page as it is */
        return true;
}

static enum MHD_Result reply_page(struct MHD_Connection *conn, const struct page_info *info,
                                  unsigned status)
{
        _cleanup_(freep) char *html = NULL;
        size_t len;

        if (page_render(info, &html, &len) < 0)
                return MHD_NO;
        return http_reply(conn, status, &(struct http_reply) {
                .content_type = "text/html; charset=utf-8", .body = html, .len = len,
                .security_headers = true,
        });
}

static enum MHD_Result reply_redirect(struct MHD_Connection *conn, const char *tmpl,
                                      const struct order_record *o)
{
        _cleanup_(freep) char *url = NULL;

        if (page_expand_url(tmpl, o->charge_id, o->order_ref, &url) < 0)
                return MHD_NO;
        return http_reply(conn, MHD_HTTP_SEE_OTHER, &(struct http_reply) {
                .body = "", .location = url, .security_headers = true,
        });
}

/* Look the order up on a read-only handle. Returns 0, -ENOENT or -errno. */
static int lookup_order(struct runtime *rt, const char *charge_id, struct order_record *ret)
{
        struct store *reader = reader_pool_acquire(rt->readers);
        int r = store_get_order(reader, charge_id, ret);

        reader_pool_release(rt->readers, reader);
        return r;
}

/* Look the order up by its return reference (§8.3) on a read-only handle. */
static int lookup_order_by_ref(struct runtime *rt, const char *ref, struct order_record *ret)
{
        struct store *reader = reader_pool_acquire(rt->readers);
        int r = store_get_order_by_return_ref(reader, ref, ret);

        reader_pool_release(rt->readers, reader);
        return r;
}

/* A return reference is URL-safe: 1..CHECKOUT_KEY_MAX of [A-Za-z0-9_-]. */
static bool return_ref_valid(const char *ref)
{
        size_t n = strlen(ref);

        if (n == 0 || n > CHECKOUT_KEY_MAX)
                return false;
        for (const char *c = ref; *c; c++)
                if (!isalnum((unsigned char) *c) && *c != '_' && *c != '-')
                        return false;
        return true;
}

static const char *requested_charge_id(struct MHD_Connection *conn)
{
        const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "charge_id");

        return id ? id : MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
}

static enum MHD_Result handle_return(struct MHD_Connection *conn, struct runtime *rt,
                                     const struct settings *s, struct request *req)
{
        const struct config *cfg = s->cfg;
        const char *ref = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ref");
        const char *id = requested_charge_id(conn);
        struct page_info info = {
                .kind = PAGE_BAD_REQUEST,
                .shop_name = cfg->ret.shop_name,
                .minor_units = cfg->ret.minor_units,
                .refresh = cfg->ret.refresh,
        };
        struct order_record o = { 0 };
        enum MHD_Result ret;
        int r;

        if (ref) {
                /* The ref wins over charge_id/id (§2); one nobody issued is
                 * a bad link, not a payment still on its way. */
                if (!return_ref_valid(ref))
                        return reply_page(conn, &info, MHD_HTTP_BAD_REQUEST);
                r = lookup_order_by_ref(rt, ref, &o);
                if (r == -ENOENT) {
                        order_record_clear(&o);
                        return reply_page(conn, &info, MHD_HTTP_BAD_REQUEST);
                }
                if (r < 0) {
                        order_record_clear(&o);
                        info.kind = PAGE_PENDING;
                        return reply_page(conn, &info, MHD_HTTP_SERVICE_UNAVAILABLE);
                }
                id = o.charge_id;
        } else {
                if (!id || !charge_id_valid(id))
                        return reply_page(conn, &info, MHD_HTTP_BAD_REQUEST);
                r = lookup_order(rt, id, &o);
        }
        info.charge_id = id;
        info.kind = PAGE_PENDING;
        if (r == 0) {
                info.has_amount = true;
                info.amount = o.amount;
                info.currency = o.currency;
                info.order_ref = o.order_ref;
                info.description = o.description;
                if (o.status == CHARGE_CAPTURED)
                        info.kind = PAGE_SUCCESS;
                else if (o.status == CHARGE_FAILED)
                        info.kind = PAGE_FAILED;
        }
        if (info.kind == PAGE_PENDING && (r == 0 || r == -ENOENT) && !req->fetch_tried &&
            hold_for_fetch(conn, rt, s, req, id)) {
                order_record_clear(&o);
                return MHD_YES;
        }
        if (info.kind == PAGE_SUCCESS && cfg->ret.success_url)
                ret = reply_redirect(conn, cfg->ret.success_url, &o);
        else if (info.kind == PAGE_FAILED && cfg->ret.failure_url)
                ret = reply_redirect(conn, cfg->ret.failure_url, &o);
        else
                /* The database being unreachable is not the customer's
                 * problem to solve: show "processing", but say 503. */
                ret = reply_page(conn, &info,
                                 r == 0 || r == -ENOENT ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE);
        order_record_clear(&o);
        return ret;
}

static enum MHD_Result handle_status(struct MHD_Connection *conn, struct runtime *rt,
                                     const char *id)
{
        struct order_record o = { 0 };
        char body[256];
        unsigned status = MHD_HTTP_OK;
        int r = charge_id_valid(id) ? lookup_order(rt, id, &o) : -ENOENT;

        if (r == 0)
                snprintf(body, sizeof(body), "{\"charge_id\":\"%s\",\"status\":\"%s\"}",
                         o.charge_id, charge_status_name(o.status));
        else if (r == -ENOENT) {
                status = MHD_HTTP_NOT_FOUND;
                snprintf(body, sizeof(body), "{\"error\":\"not_found\"}");
        } else {
                order_record_clear(&o);
                return http_reply_unavailable(conn);
        }
        order_record_clear(&o);
        return http_reply(conn, status, &(struct http_reply) {
                .content_type = "application/json", .body = body, .len = strlen(body),
                .security_headers = true,
        });
}

/* "/cashpay/status/chg_x" → "chg_x"; NULL when @url is not under @prefix. */
static const char *status_suffix(const char *url, const char *prefix)
{
        size_t n = strlen(prefix);

        if (strncmp(url, prefix, n) != 0 || url[n] != '/')
                return NULL;
        return url + n + 1;
}

static bool is_get_or_head(const char *method)
{
        return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* True when @url and @method name a page or a status lookup; otherwise an
 * answer was queued and @ret is what the handler returns. */
bool pages_route_ok(struct MHD_Connection *conn, const struct settings *s, const char *url,
                    const char *method, enum MHD_Result *ret)
{
        const struct config *cfg = s->cfg;

        if (strcmp(url, cfg->http.return_path) != 0 && !status_suffix(url, cfg->http.status_path))
                *ret = http_reply_early(conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"not_found\"}",
                                        NULL);
        else if (!is_get_or_head(method))
                *ret = http_reply_early(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                        "{\"error\":\"method_not_allowed\"}", "GET, HEAD");
        else
                return true;
        return false;
}

/*
 * Answered once the request is complete, not from the first call: a response
 * queued before libmicrohttpd has the whole request makes it close the
 * connection afterwards (no keep-alive for the page's refreshes, and the
 * rest of a pipeline dropped).
 */
enum MHD_Result pages_handle(struct MHD_Connection *conn, struct runtime *rt,
                             const struct settings *s, const char *url, struct request *req,
                             size_t *size)
{
        const char *status_id = status_suffix(url, s->cfg->http.status_path);

        if (*size > 0) {
                /* A body nobody asked for: thrown away, within bounds. */
                req->body.discarded += *size;
                *size = 0;
                return req->body.discarded > s->cfg->http.max_body ? MHD_NO : MHD_YES;
        }
        if (strcmp(url, s->cfg->http.return_path) == 0)
                return handle_return(conn, rt, s, req);
        if (status_id)
                return handle_status(conn, rt, status_id);
        return http_reply_early(conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"not_found\"}", NULL);
}
