/*
 * checkout — the checkout listener; see checkout.h. This file is its
 * HTTP side: the checks of each request, the body, and the answers; the
 * creations and the held connections are checkout-flow.c's.
 */
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cashpay/checkout.h"
#include "cashpay/timeutil.h"
#include "src/daemon/checkout-flow.h"
#include "src/daemon/checkout.h"
#include "src/daemon/deadline.h"
#include "src/daemon/http-body.h"
#include "src/daemon/http-framing.h"
#include "src/daemon/http-socket.h"
#include "src/daemon/http.h"
#include "src/daemon/metrics.h"

#define MAX_LISTENERS 16
#define CHARGES_PATH "/charges"
/* One request, from its first handler call to its completion. */
struct request {
        struct checkout_server *srv;
        struct http_body body;
        struct checkout_hold *hold;
};

struct checkout_server {
        struct runtime *rt;
        struct checkout_flows *flows;
        struct MHD_Daemon *daemons[MAX_LISTENERS];
        size_t n;
        struct deadline_list *deadlines;
        int64_t request_timeout_ms;
};

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
                return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, CHECKOUT_UNAVAILABLE_BODY,
                             false, NULL);
        return reply(conn, MHD_HTTP_BAD_REQUEST, text, false, NULL);
}

/* ---- requests ----------------------------------------------------------- */

static enum MHD_Result reply_held(struct checkout_server *srv, struct MHD_Connection *conn,
                                  struct checkout_hold *h)
{
        unsigned status;
        char *body;
        bool close;

        checkout_hold_answer(srv->flows, h, &status, &body, &close);
        enum MHD_Result r = body ? reply(conn, status, body, close, NULL)
                                 : reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                                         CHECKOUT_UNAVAILABLE_BODY, close, NULL);
        free(body);
        return r;
}

/* The whole body is in: parse it, start (or join) the creation. */
static enum MHD_Result start(struct checkout_server *srv, struct MHD_Connection *conn,
                             struct request *req)
{
        struct checkout_request cr;
        char detail[200];
        int r = checkout_parse_request(req->body.data, req->body.len, &cr, detail, sizeof(detail));

        if (r == -EINVAL) {
                checkout_request_clear(&cr);
                return reply_invalid(conn, detail);
        }
        if (r == 0) {
                const struct settings *s = runtime_settings_acquire(srv->rt);
                r = checkout_flows_hold(srv->flows, conn, s, &cr, &req->hold);
                runtime_settings_release(srv->rt);
        }
        checkout_request_clear(&cr);
        if (r < 0) /* out of memory, stopping, or as many held as may be */
                return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, CHECKOUT_UNAVAILABLE_BODY,
                             false, NULL);
        return MHD_YES; /* held: called again once resumed */
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
                /* Up to max_body; past it the rest is read and dropped (a
                 * chunked body gives no size up front), and answered 413 at
                 * its end. */
                int r = http_body_append(&req->body, upload_data, *upload_data_size,
                                         max_body(srv));
                *upload_data_size = 0;
                return r < 0 ? MHD_NO : MHD_YES;
        }
        deadline_set(http_connection_deadline(conn), 0); /* the whole request is here */
        if (req->hold)
                return reply_held(srv, conn, req->hold);
        if (req->body.too_large)
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
        if (req->hold)
                checkout_hold_release(srv->flows, req->hold);
        http_body_clear(&req->body);
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

        if (!srv || deadline_list_new(&srv->deadlines) < 0 ||
            checkout_flows_new(rt, api, &srv->flows) < 0) {
                if (srv)
                        deadline_list_free(srv->deadlines);
                free(srv);
                return err_set(err, err_len, -ENOMEM, "out of memory");
        }
        srv->rt = rt;
        const struct settings *s = runtime_settings_acquire(rt);
        srv->request_timeout_ms = (int64_t) s->cfg->http.request_timeout * 1000;
        for (size_t i = 0; i < n_fds && i < MAX_LISTENERS; i++) {
                int fd = http_mhd_socket(fds[i]); /* the daemon's own, closed at its stop */
                srv->daemons[i] = fd < 0 ? NULL : start_daemon(srv, s->cfg, fd);
                if (!srv->daemons[i]) {
                        http_mhd_socket_unused(fd);
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
        checkout_flows_expire(srv->flows, now_ms);
        deadline_expire(srv->deadlines, now_ms);
}

void checkout_release_held(struct checkout_server *srv)
{
        if (srv)
                checkout_flows_close(srv->flows);
}

void checkout_stop(struct checkout_server *srv)
{
        if (!srv)
                return;
        /* MHD closes its duplicate of the listening socket (http_mhd_socket()). */
        checkout_release_held(srv); /* MHD must not stop with a connection suspended */
        for (size_t i = 0; i < srv->n; i++)
                http_mhd_stop(srv->daemons[i]);
        srv->n = 0;
}

void checkout_free(struct checkout_server *srv)
{
        if (!srv)
                return;
        checkout_flows_free(srv->flows);
        deadline_list_free(srv->deadlines);
        free(srv);
}
