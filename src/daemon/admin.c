/*
 * admin — /healthz and /metrics on their own listener, so that monitoring
 * never competes with CashPay for the public port.
 *
 * Its connections are bounded ([admin] max_connections) and each request
 * has a deadline ([admin] request_timeout, deadline.h), so clients that
 * connect and send nothing, or half a request a byte at a time, hold a
 * slot only that long: a monitor never waits longer than that for one.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cashpay/log.h"
#include "cashpay/timeutil.h"
#include "src/daemon/admin.h"
#include "src/daemon/deadline.h"
#include "src/daemon/http-socket.h"
#include "src/daemon/http.h"
#include "src/daemon/metrics.h"
#include "src/daemon/tls.h"

#define MAX_ADMIN 16

struct admin_server {
        struct runtime *rt;
        struct MHD_Daemon *daemons[MAX_ADMIN];
        size_t n;
        struct deadline_list *deadlines;
        int64_t request_timeout_ms;
};

static int64_t wal_bytes(struct runtime *rt);

int admin_health(struct runtime *rt, const char **why)
{
        struct store *reader = reader_pool_acquire(rt->readers);
        int r = store_health(reader);

        reader_pool_release(rt->readers, reader);
        if (r < 0) {
                *why = store_strerror(r);
                return r;
        }
        if (!writer_making_progress(rt->writer, time_monotonic_ms())) {
                *why = "writer is stuck in a commit";
                return -ETIMEDOUT;
        }
        r = writer_last_result(rt->writer);
        if (r < 0) {
                *why = store_strerror(r);
                return r;
        }
        const struct settings *s = runtime_settings_acquire(rt);
        int64_t limit = (int64_t) s->cfg->database.wal_warn_bytes;
        runtime_settings_release(rt);
        if (wal_bytes(rt) > limit) {
                *why = "write-ahead log past wal_warn_bytes: a reader keeps a transaction open";
                return -EFBIG;
        }
        *why = "ok";
        return 0;
}

static int64_t wal_bytes(struct runtime *rt)
{
        char path[4096];
        struct stat st;
        const struct settings *s = runtime_settings_acquire(rt);

        snprintf(path, sizeof(path), "%s-wal", s->cfg->database.path);
        runtime_settings_release(rt);
        return stat(path, &st) == 0 ? (int64_t) st.st_size : -1;
}

static enum MHD_Result serve_health(struct MHD_Connection *conn, struct runtime *rt)
{
        const char *why;
        char body[256];
        int r = admin_health(rt, &why);

        snprintf(body, sizeof(body), "{\"status\":\"%s\",\"detail\":\"%s\"}",
                 r == 0 ? "ok" : "unavailable", why);
        return http_respond(conn, r == 0 ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                            "application/json", body, strlen(body)) ? MHD_YES : MHD_NO;
}

static enum MHD_Result serve_metrics(struct MHD_Connection *conn, struct runtime *rt)
{
        const char *why;
        struct metrics_gauges g = {
                .queue_depth = writer_queue_depth(rt->writer),
                .wal_bytes = wal_bytes(rt),
                .database_ok = admin_health(rt, &why) == 0,
                .rejected_rows = writer_rejected_rows(rt->writer),
                .tls_not_after = tls_not_after(),
                .now = time(NULL),
        };
        char *text;
        size_t len;

        if (metrics_render(&g, &text, &len) < 0)
                return MHD_NO;
        int r = http_respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                             text, len);
        free(text);
        return r ? MHD_YES : MHD_NO;
}

/*
 * Called once the headers are in; every route answers at once, so the
 * request has arrived. One that announces a body (no admin route takes one)
 * stays under its deadline: libmicrohttpd closes such a connection after
 * the answer, but a client must not get to trickle a body if it did not.
 */
static void request_arrived(struct MHD_Connection *conn)
{
        if (!MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) &&
            !MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
                deadline_set(http_connection_deadline(conn), 0);
}

static enum MHD_Result on_admin_request(void *cls, struct MHD_Connection *conn, const char *url,
                                        const char *method, const char *version,
                                        const char *upload_data, size_t *upload_data_size,
                                        void **req_cls)
{
        static const char not_found[] = "{\"error\":\"not_found\"}";
        static const char not_allowed[] = "{\"error\":\"method_not_allowed\"}";
        struct admin_server *srv = cls;

        request_arrived(conn);
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
                return http_respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "application/json",
                                    not_allowed, sizeof(not_allowed) - 1) ? MHD_YES : MHD_NO;
        if (strcmp(url, "/healthz") == 0)
                return serve_health(conn, srv->rt);
        if (strcmp(url, "/metrics") == 0)
                return serve_metrics(conn, srv->rt);
        return http_respond(conn, MHD_HTTP_NOT_FOUND, "application/json", not_found,
                            sizeof(not_found) - 1) ? MHD_YES : MHD_NO;
}

/* Answers queued with the headers close the connection (libmicrohttpd
 * 0.9.75), but should one be kept alive, its next request gets its own time. */
static void on_admin_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                               enum MHD_RequestTerminationCode code)
{
        struct admin_server *srv = cls;

        deadline_set(http_connection_deadline(conn), time_monotonic_ms() + srv->request_timeout_ms);
}

static void on_admin_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                enum MHD_ConnectionNotificationCode code)
{
        struct admin_server *srv = cls;

        http_track_connection(srv->deadlines, srv->request_timeout_ms, conn, socket_context,
                              code == MHD_CONNECTION_NOTIFY_CLOSED);
}

/* One thread: requests are tiny, and a slow one only delays monitoring. */
static struct MHD_Daemon *start_daemon(struct admin_server *srv, const struct config *cfg, int fd)
{
        return MHD_start_daemon(
                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC, 0, NULL, NULL,
                on_admin_request, srv,
                MHD_OPTION_LISTEN_SOCKET, fd,
                MHD_OPTION_CONNECTION_LIMIT, cfg->admin.max_connections,
                /* Idle while its answer is sent: the deadline covers receiving. */
                MHD_OPTION_CONNECTION_TIMEOUT, cfg->admin.request_timeout,
                MHD_OPTION_NOTIFY_COMPLETED, on_admin_completed, srv,
                MHD_OPTION_NOTIFY_CONNECTION, on_admin_connection, srv,
                MHD_OPTION_END);
}

int admin_start(struct runtime *rt, const int *fds, size_t n_fds, struct admin_server **ret,
                char *err, size_t err_len)
{
        struct admin_server *srv = calloc(1, sizeof(*srv));

        if (!srv || deadline_list_new(&srv->deadlines) < 0) {
                free(srv);
                return -ENOMEM;
        }
        srv->rt = rt;
        const struct settings *s = runtime_settings_acquire(rt);
        srv->request_timeout_ms = (int64_t) s->cfg->admin.request_timeout * 1000;
        for (size_t i = 0; i < n_fds && i < MAX_ADMIN; i++) {
                int fd = http_mhd_socket(fds[i]); /* the daemon's own, closed at its stop */
                srv->daemons[i] = fd < 0 ? NULL : start_daemon(srv, s->cfg, fd);
                if (!srv->daemons[i]) {
                        http_mhd_socket_unused(fd);
                        runtime_settings_release(rt);
                        admin_stop(srv);
                        return err_set(err, err_len, -EIO,
                                       "cannot start the admin server on socket %d", fds[i]);
                }
                srv->n++;
        }
        runtime_settings_release(rt);
        *ret = srv;
        return 0;
}

void admin_expire(struct admin_server *srv, int64_t now_ms)
{
        static struct log_ratelimit rl = LOG_RATELIMIT_INIT(5, 10000);

        if (!srv)
                return;
        unsigned n = deadline_expire(srv->deadlines, now_ms);
        if (n > 0 && log_rate_ok(&rl))
                log_info("admin listener: closed %u connection(s) that did not send a whole "
                         "request within %lld s", n, (long long) (srv->request_timeout_ms / 1000));
}

void admin_stop(struct admin_server *srv)
{
        if (!srv)
                return;
        /* MHD closes its duplicate of the listening socket (http_mhd_socket()). */
        for (size_t i = 0; i < srv->n; i++)
                http_mhd_stop(srv->daemons[i]);
        deadline_list_free(srv->deadlines);
        free(srv);
}
