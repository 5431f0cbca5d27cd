/*
 * http — the public listener's server and dispatch; see http.h.
 *
 * One libmicrohttpd daemon per listening socket. The first access-handler
 * call of a request (headers only) refuses what no route may see (ambiguous
 * framing, http-framing.c; new requests while draining) and picks the route:
 * the webhook (webhook.c) or the return page and status (pages.c), which
 * then handle the later calls. Connections get a deadline for their whole
 * request (deadline.h). Replies are http-reply.c.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cashpay/log.h"
#include "cashpay/timeutil.h"
#include "cashpay/util.h"
#include "src/daemon/deadline.h"
#include "src/daemon/http-framing.h"
#include "src/daemon/http-internal.h"
#include "src/daemon/http-socket.h"
#include "src/daemon/http.h"
#include "src/daemon/tls.h"

#define MAX_DAEMONS 16

struct http_server {
        struct runtime *rt;
        struct MHD_Daemon *daemons[MAX_DAEMONS];
        size_t n;
        struct deadline_list *deadlines;
        int64_t request_timeout_ms;
};

static enum MHD_Result new_request(struct runtime *rt, struct MHD_Connection *conn,
                                   enum route route, void **req_cls)
{
        struct request *req = calloc(1, sizeof(*req));

        if (!req)
                return MHD_NO;
        req->rt = rt;
        req->conn = conn;
        req->route = route;
        *req_cls = req;
        atomic_fetch_add(&rt->in_flight, 1);
        return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
        struct http_server *srv = cls;
        struct runtime *rt = srv->rt;
        struct request *req = *req_cls;
        enum MHD_Result r;
        const struct settings *s = runtime_settings_acquire(rt);

        if (req && *upload_data_size == 0)
                deadline_set(http_connection_deadline(conn), 0); /* the whole request is here */
        if (req && req->route == ROUTE_WEBHOOK) {
                r = webhook_handle_body(conn, s, req, upload_data, upload_data_size);
        } else if (req) {
                r = pages_handle(conn, rt, s, url, req, upload_data_size);
        } else if (atomic_load(&rt->draining)) {
                /* Requests already started finish; kept-alive connections
                 * must not start new ones, or the drain never ends. */
                r = http_reply_stopping(conn);
        } else if (http_framing_ambiguous(conn)) {
                /* On every path: a keep-alive connection is as open to
                 * smuggling behind a GET as behind a webhook. */
                r = http_reply_early(conn, MHD_HTTP_BAD_REQUEST,
                                     "{\"error\":\"bad_request\",\"detail\":\"ambiguous message framing\"}",
                                     NULL);
        } else if (strcmp(url, s->cfg->http.webhook_path) == 0) {
                if (webhook_headers_ok(conn, method, s, &r))
                        r = new_request(rt, conn, ROUTE_WEBHOOK, req_cls);
        } else if (pages_route_ok(conn, s, url, method, &r)) {
                r = new_request(rt, conn, ROUTE_OTHER, req_cls);
        }
        runtime_settings_release(rt);
        return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode code)
{
        struct http_server *srv = cls;
        struct request *req = *req_cls;

        /* The next request on a kept-alive connection gets its own time. */
        deadline_set(http_connection_deadline(conn), time_monotonic_ms() + srv->request_timeout_ms);
        if (!req)
                return;
        job_unref(req->job);
        pages_request_done(req);
        http_body_clear(&req->body);
        free(req);
        *req_cls = NULL;
        atomic_fetch_sub(&srv->rt->in_flight, 1);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
        struct http_server *srv = cls;

        http_track_connection(srv->deadlines, srv->request_timeout_ms, conn, socket_context,
                              code == MHD_CONNECTION_NOTIFY_CLOSED);
}

__attribute__((format(printf, 2, 0)))
static void on_mhd_error(void *cls, const char *fmt, va_list ap)
{
        char msg[512];

        vsnprintf(msg, sizeof(msg), fmt, ap);
        msg[strcspn(msg, "\n")] = '\0';
        log_debug("libmicrohttpd: %s", msg);
}

unsigned http_thread_count(const struct config *cfg)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        if (cfg->http.threads > 0)
                return cfg->http.threads;
        return cpus > 0 ? (unsigned) cpus : 1;
}

static struct MHD_Daemon *start_daemon(struct http_server *srv, const struct config *cfg, int fd)
{
        bool tls = cfg->http.tls_cert != NULL;
        unsigned threads = http_thread_count(cfg);
        /* Each connection's pool is zeroed for every request and held while
         * it is open: 16 KiB (what the default max_header needs) rather than
         * 32 KiB keeps 256 busy connections 4-8 MiB smaller (bench/README.md). */
        size_t memory = cfg->http.max_header * 2 > 16384 ? cfg->http.max_header * 2 : 16384;
        /* poll() for HTTPS: libmicrohttpd 0.9.75's epoll loop leaves a TLS
         * connection waiting between handshake steps (35 handshakes a
         * second, at 600 a CPU second; poll(): 220 a second, bench/README). */
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | (tls ? MHD_USE_POLL : MHD_USE_EPOLL) |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_ITC |
                         (tls ? MHD_USE_TLS : 0);

        return MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv,
                                MHD_OPTION_EXTERNAL_LOGGER, on_mhd_error, NULL,
                                MHD_OPTION_LISTEN_SOCKET, fd,
                                MHD_OPTION_THREAD_POOL_SIZE, threads > 1 ? threads : 0,
                                MHD_OPTION_CONNECTION_LIMIT, cfg->http.max_connections,
                                MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->http.max_connections_per_ip,
                                MHD_OPTION_CONNECTION_TIMEOUT, cfg->http.timeout,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, memory,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                                MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
                                MHD_OPTION_STRICT_FOR_CLIENT, 1,
                                /* Last: for plain HTTP the list ends here. The
                                 * certificate is asked for at each handshake,
                                 * so a SIGHUP can replace it (tls.h). */
                                tls ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END,
                                tls_certificate_callback,
                                MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES,
                                MHD_OPTION_END);
}

static int check_tls_support(char *err, size_t err_len)
{
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
            MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES)
                return err_set(err, err_len, -EOPNOTSUPP, "[http] tls_cert is set, but this "
                               "libmicrohttpd was built without TLS (or without its "
                               "certificate callback)");
        return 0;
}

int http_start(struct runtime *rt, const int *fds, size_t n_fds, struct http_server **ret,
               char *err, size_t err_len)
{
        struct http_server *srv = calloc(1, sizeof(*srv));

        if (!srv || deadline_list_new(&srv->deadlines) < 0) {
                free(srv);
                return -ENOMEM;
        }
        srv->rt = rt;
        webhook_init_json(); /* before any request thread runs */
        const struct settings *s = runtime_settings_acquire(rt);
        srv->request_timeout_ms = (int64_t) s->cfg->http.request_timeout * 1000;
        if (s->cfg->http.tls_cert) {
                int r = check_tls_support(err, err_len);
                if (r < 0) {
                        runtime_settings_release(rt);
                        http_stop(srv);
                        return r;
                }
        }
        for (size_t i = 0; i < n_fds && i < MAX_DAEMONS; i++) {
                int fd = http_mhd_socket(fds[i]); /* the daemon's own, closed at its stop */
                srv->daemons[i] = fd < 0 ? NULL : start_daemon(srv, s->cfg, fd);
                if (!srv->daemons[i]) {
                        http_mhd_socket_unused(fd);
                        runtime_settings_release(rt);
                        http_stop(srv);
                        return err_set(err, err_len, -EIO,
                                       "cannot start the HTTP server on socket %d", fds[i]);
                }
                srv->n++;
        }
        runtime_settings_release(rt);
        *ret = srv;
        return 0;
}

void http_expire(struct http_server *srv, int64_t now_ms)
{
        static struct log_ratelimit rl = LOG_RATELIMIT_INIT(5, 10000);

        if (!srv)
                return;
        pages_expire_holds(now_ms, false);
        unsigned n = deadline_expire(srv->deadlines, now_ms);
        if (n > 0 && log_rate_ok(&rl))
                log_info("closed %u connection(s) that did not send a whole request within %lld s",
                         n, (long long) (srv->request_timeout_ms / 1000));
}

void http_release_held(struct http_server *srv)
{
        if (srv)
                pages_expire_holds(INT64_MAX, true);
}

void http_stop(struct http_server *srv)
{
        if (!srv)
                return;
        /* MHD closes its duplicate of the listening socket (http_mhd_socket()). */
        http_release_held(srv); /* MHD must not stop with a connection suspended */
        for (size_t i = 0; i < srv->n; i++)
                http_mhd_stop(srv->daemons[i]);
        deadline_list_free(srv->deadlines);
        free(srv);
}
