/*
 * webhook — the webhook route of the public listener.
 *
 * A webhook request goes through three access-handler calls: the first one
 * (headers only) checks the method, the declared size and the media type;
 * the middle ones collect the body under the size limit; the last one
 * decides who sent it, verifies and parses it, queues it for the writer and
 * suspends the connection. The writer (or the request's deadline) resumes
 * it, and the handler is called once more to send the outcome.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cashpay/charge.h"
#include "cashpay/cidr.h"
#include "cashpay/log.h"
#include "cashpay/timeutil.h"
#include "cashpay/util.h"
#include "cashpay/verify.h"
#include "src/daemon/deadline.h"
#include "src/daemon/http-framing.h"
#include "src/daemon/http-internal.h"
#include "src/daemon/http.h"
#include "src/daemon/metrics.h"
#include "src/daemon/reconciler.h"
#include "src/daemon/tls.h"

/*
 * True when the request may go on to send its body; otherwise an answer was
 * queued and @ret is what the handler returns.
 */
bool webhook_headers_ok(struct MHD_Connection *conn, const char *method,
                        const struct settings *s, enum MHD_Result *ret)
{
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_TYPE);

        if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
                *ret = http_reply_early(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                        "{\"error\":\"method_not_allowed\"}", "POST");
        else if (http_declared_too_large(conn, s->cfg->http.max_body))
                *ret = http_reply_early(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                        "{\"error\":\"payload_too_large\"}", NULL);
        else if (!http_content_type_is_json(ct))
                *ret = http_reply_early(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                        "{\"error\":\"unsupported_media_type\"}", NULL);
        else
                return true;
        return false;
}

/* How much of an oversized chunked body is read (and thrown away) after
 * the 413, so that closing does not reset the connection under an answer
 * the client has not read yet; past it the connection is just closed. */
#define DISCARD_FACTOR 16

/* How long that reading may go on (the lingering close). */
#define LINGER_MS 5000

/* Up to max_body kept; -EMSGSIZE once far more than that came. */
static int append_body(struct request *req, const char *data, size_t size, size_t max_body)
{
        int r = http_body_append(&req->body, data, size, max_body);

        if (r == 0 && req->body.discarded > DISCARD_FACTOR * max_body)
                return -EMSGSIZE;
        return r;
}

/*
 * A chunked body passed max_body. libmicrohttpd 0.9.75 takes a response
 * only before the body or after its last chunk (MHD_queue_response()
 * refuses one in between), so a client that keeps its body open would hear
 * nothing until the idle timeout. The 413 is written to the socket here
 * instead (as one TLS record on an HTTPS listener; nothing else is being
 * sent on the connection: a previous response was handed to the kernel whole
 * before this request was read), and the sending side is shut down so the
 * client sees where the answer ends. Returns 1 when it was sent, 0 when
 * nothing could be written (answer the usual way once the body ends), or
 * -EIO when part of it was (the connection is unusable).
 */
static int send_too_large_now(struct MHD_Connection *conn)
{
        static const char body[] = "{\"error\":\"payload_too_large\"}";
        const union MHD_ConnectionInfo *info =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        char date[64], msg[512];
        struct tm tm;
        time_t now = time(NULL);

        if (!info || !gmtime_r(&now, &tm) ||
            !strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm))
                return 0;
        int n = snprintf(msg, sizeof(msg),
                         "HTTP/1.1 %u %s\r\nConnection: close\r\nContent-Length: %zu\r\n"
                         "Content-Type: application/json\r\nDate: %s\r\n\r\n%s",
                         MHD_HTTP_CONTENT_TOO_LARGE,
                         MHD_get_reason_phrase_for(MHD_HTTP_CONTENT_TOO_LARGE),
                         sizeof(body) - 1, date, body);
        if (n < 0 || (size_t) n >= sizeof(msg))
                return 0;
        const union MHD_ConnectionInfo *tls =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (tls && tls->tls_session) { /* over HTTPS: one TLS record, then close_notify */
                int r = tls_send_and_close(tls->tls_session, msg, (size_t) n);
                if (r > 0) {
                        shutdown(info->connect_fd, SHUT_WR);
                        metrics_count_response(MHD_HTTP_CONTENT_TOO_LARGE);
                }
                return r;
        }
        ssize_t w = send(info->connect_fd, msg, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w <= 0)
                return 0;
        if (w != n)
                return -EIO;
        shutdown(info->connect_fd, SHUT_WR);
        metrics_count_response(MHD_HTTP_CONTENT_TOO_LARGE);
        return 1;
}

/* An IPv4 peer on a dual-stack socket (::ffff:a.b.c.d) is written as the
 * IPv4 address it is, so logs and remote_addr read the same either way. */
static void addr_to_text(const struct sockaddr *sa, char *buf, size_t len)
{
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *) sa)->sin6_addr;
        int family = sa->sa_family;
        const void *raw = &((const struct sockaddr_in *) sa)->sin_addr;

        if (family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(v6)) {
                family = AF_INET;
                raw = &v6->s6_addr[12];
        } else if (family == AF_INET6) {
                raw = v6;
        }
        if (!inet_ntop(family, raw, buf, (socklen_t) len))
                snprintf(buf, len, "unknown");
}

/* The peer, or the client behind it when the peer is a trusted proxy. */
static void effective_peer(struct MHD_Connection *conn, const struct settings *s,
                           struct sockaddr_storage *ret)
{
        const union MHD_ConnectionInfo *info =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct cidr_list *proxies = &s->cfg->http.trusted_proxies;

        memset(ret, 0, sizeof(*ret));
        if (!info || !info->client_addr)
                return;
        memcpy(ret, info->client_addr, info->client_addr->sa_family == AF_INET6
                                               ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in));
        (void) cidr_forwarded_client(
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For"), proxies, ret);
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
        return name ? MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name) : NULL;
}

static int check_signature(struct MHD_Connection *conn, const struct settings *s,
                           const struct delivery *d)
{
        const struct config *cfg = s->cfg;
        bool sw = cfg->webhook.verify == VERIFY_STANDARD_WEBHOOKS;
        struct verify_input in = {
                .signature = header(conn, sw ? SW_HEADER_SIGNATURE : cfg->webhook.signature_header),
                .timestamp = header(conn, sw ? SW_HEADER_TIMESTAMP : cfg->webhook.timestamp_header),
                .message_id = sw ? header(conn, SW_HEADER_ID) : NULL,
                .body = d->body,
                .body_len = d->body_len,
                .now = time_now_ms() / 1000,
        };

        return verify_check(&s->verify, &s->secrets, &in);
}

static const char *verify_failure_text(int r)
{
        switch (r) {
        case VERIFY_MISSING: return "signature missing";
        case VERIFY_MALFORMED: return "signature malformed";
        case VERIFY_STALE: return "timestamp outside tolerance";
        case VERIFY_MISMATCH: return "signature mismatch";
        default: return "verification failed internally";
        }
}

static void reject(struct delivery *d, enum outcome outcome, int status, const char *why,
                   size_t keep_bytes)
{
        d->has_charge = false;
        d->rejected_as = outcome;
        d->rejected_status = status;
        d->error = why ? strdup(why) : NULL;
        if (d->body_len > keep_bytes)
                d->body_len = keep_bytes; /* rejected bodies are kept truncated */
}

/*
 * jansson ignores a failed allocation while it collects a string or a
 * number, and goes on without the byte: "chg_ab12" may be read as
 * "chg_a12" and 2000 as 200. Every allocation jansson makes comes through
 * here, so that a request during which one failed can be refused whole.
 */
static __thread bool json_alloc_failed;

static void *json_alloc(size_t size)
{
        void *p = malloc(size);

        if (!p)
                json_alloc_failed = true;
        return p;
}

void webhook_init_json(void)
{
        json_set_alloc_funcs(json_alloc, free);
}

/*
 * Decide what the delivery is; the writer records whatever we decide.
 * Returns 0, or a negative errno when deciding itself failed (out of
 * memory): a valid webhook must then be retried, never refused for good.
 */
static int classify(struct MHD_Connection *conn, const struct settings *s,
                    struct request *req, struct delivery *d)
{
        const struct config *cfg = s->cfg;
        size_t keep = cfg->webhook.rejected_body_max;
        struct sockaddr_storage peer;
        char err[160];

        effective_peer(conn, s, &peer);
        addr_to_text((struct sockaddr *) &peer, d->remote_addr, sizeof(d->remote_addr));
        time_format_iso(time_now_ms(), d->received_at);
        d->body = req->body.data;
        d->body_len = req->body.len;
        req->body = (struct http_body) { 0 };

        if (cfg->webhook.allow_from.n > 0 &&
            !cidr_list_match(&cfg->webhook.allow_from, (struct sockaddr *) &peer)) {
                reject(d, OUTCOME_FORBIDDEN, 403, "source address not allowed", keep);
                return 0;
        }
        int r = check_signature(conn, s, d);
        if (r < 0)
                return r; /* could not compute it: not the sender's fault */
        if (r != VERIFY_OK) {
                reject(d, OUTCOME_UNAUTHORIZED, 401, verify_failure_text(r), keep);
                return 0;
        }
        json_alloc_failed = false;
        r = charge_parse(d->body, d->body_len, cfg->webhook.order_ref_field, &d->charge,
                         err, sizeof(err));
        if (r == -ENOMEM || json_alloc_failed)
                return -ENOMEM;
        if (r < 0) {
                reject(d, OUTCOME_INVALID, 400, err, keep);
                return 0;
        }
        d->has_charge = true;
        if (cfg->webhook.verify == VERIFY_STANDARD_WEBHOOKS) {
                const char *id = header(conn, SW_HEADER_ID);
                d->message_id = id ? strdup(id) : NULL;
                if (id && !d->message_id)
                        return -ENOMEM;
        }
        return 0;
}

static void wake_connection(struct job *job)
{
        struct request *req = job->wake_data;

        MHD_resume_connection(req->conn);
}

static enum MHD_Result enqueue_webhook(struct MHD_Connection *conn, const struct settings *s,
                                       struct request *req)
{
        struct job *job = job_new();

        if (!job)
                return http_reply_unavailable(conn);
        int r = classify(conn, s, req, &job->delivery);
        if (r < 0) {
                log_warning_errno(r, "webhook from %s answered 503", job->delivery.remote_addr);
                job_unref(job);
                return http_reply_unavailable(conn);
        }
        job->deadline_ms = time_monotonic_ms() + s->cfg->database.commit_timeout;
        job->wake = wake_connection;
        job->wake_data = req;
        req->job = job;

        /* confirm = api (§8.4): a verified claim waits for the API's charge,
         * then the writer records both; the answer comes after that commit. */
        if (job->delivery.has_charge && config_confirm_api(s->cfg)) {
                MHD_suspend_connection(conn);
                r = req->rt->reconciler ? reconciler_confirm(req->rt->reconciler, job,
                                                            s->cfg->cashpay.reconcile_after)
                                        : -ESHUTDOWN; /* never believed unconfirmed */
                if (r < 0) {
                        job->result = r;
                        MHD_resume_connection(conn);
                }
                return MHD_YES;
        }

        /* Suspend first: the writer may finish before writer_submit() returns.
         * Once the writer is closed (shutdown) it refuses, and we resume. */
        MHD_suspend_connection(conn);
        r = writer_submit(req->rt->writer, job);
        if (r < 0) {
                job->result = r;
                MHD_resume_connection(conn);
        }
        return MHD_YES;
}

static enum MHD_Result reply_outcome(struct MHD_Connection *conn, const struct job *job)
{
        const struct delivery *d = &job->delivery;
        char body[256];

        if (job->result == -EINVAL || job->result == -E2BIG)
                return http_reply_json(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                       "{\"error\":\"internal_error\"}");
        if (job->result < 0)
                return http_reply_unavailable(conn);
        switch (d->outcome) {
        case OUTCOME_INVALID: {
                _cleanup_(json_decrefp) json_t *j = json_pack("{s:s, s:s}", "error",
                        "invalid_payload", "detail", d->error ? d->error : "invalid payload");
                _cleanup_(freep) char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
                if (!text)
                        return MHD_NO;
                return http_reply_json(conn, MHD_HTTP_BAD_REQUEST, text);
        }
        case OUTCOME_UNAUTHORIZED:
                return http_reply_json(conn, MHD_HTTP_UNAUTHORIZED, "{\"error\":\"unauthorized\"}");
        case OUTCOME_FORBIDDEN:
                return http_reply_json(conn, MHD_HTTP_FORBIDDEN, "{\"error\":\"forbidden\"}");
        case OUTCOME_DEFERRED: /* recorded, not acknowledged: CashPay sends it again */
                return http_reply_deferred(conn);
        default:
                snprintf(body, sizeof(body), "{\"outcome\":\"%s\"}", outcome_name(d->outcome));
                return http_reply_json(conn, MHD_HTTP_OK, body);
        }
}

enum MHD_Result webhook_handle_body(struct MHD_Connection *conn, const struct settings *s,
                                    struct request *req, const char *data, size_t *size)
{
        if (*size > 0) {
                bool was_too_large = req->body.too_large;
                int r = append_body(req, data, *size, s->cfg->http.max_body);
                *size = 0;
                if (r == 0 && req->body.too_large && !was_too_large) {
                        /* Answered now; what follows is read and thrown
                         * away for a bounded time and amount, then closed. */
                        r = send_too_large_now(conn);
                        req->answered = r > 0;
                        if (req->answered)
                                deadline_set(http_connection_deadline(conn),
                                             time_monotonic_ms() + LINGER_MS);
                }
                return r < 0 ? MHD_NO : MHD_YES;
        }
        if (req->body.too_large && req->answered)
                return MHD_NO; /* the 413 is out: close */
        if (req->body.too_large)
                return http_reply_early(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                        "{\"error\":\"payload_too_large\"}", NULL);
        if (req->job)
                return reply_outcome(conn, req->job);
        return enqueue_webhook(conn, s, req);
}
