/*
 * http — the public listener; see http.h.
 *
 * A webhook request goes through three access-handler calls: the first one
 * (headers only) checks the method, the framing and the declared size; the
 * middle ones collect the body under the size limit; the last one decides
 * who sent it, verifies and parses it, queues it for the writer and
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
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cashpay/charge.h"
#include "cashpay/cidr.h"
#include "cashpay/log.h"
#include "cashpay/page.h"
#include "cashpay/timeutil.h"
#include "cashpay/verify.h"
#include "src/daemon/deadline.h"
#include "src/daemon/http.h"
#include "src/daemon/metrics.h"

#define MAX_DAEMONS 16
#define RETRY_AFTER_SECONDS "5"

struct http_server {
        struct runtime *rt;
        struct MHD_Daemon *daemons[MAX_DAEMONS];
        size_t n;
        struct deadline_list *deadlines;
        int64_t request_timeout_ms;
};

enum route { ROUTE_WEBHOOK, ROUTE_OTHER };

/* Per-request state, from the first handler call to completion. */
struct request {
        struct runtime *rt;
        struct MHD_Connection *conn;
        enum route route;
        uint8_t *body;
        size_t len, cap;
        bool too_large;
        bool answered;    /* the 413 for too_large went out mid-body */
        size_t discarded; /* bytes past max_body (or of an unwanted body) thrown away */
        struct job *job;  /* queued delivery, once the body is complete */
};

/* ---------------------------------------------------------------- replies */

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status,
                             struct MHD_Response *resp)
{
        if (!resp)
                return MHD_NO;
        enum MHD_Result r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        if (r == MHD_YES)
                metrics_count_response(status);
        return r;
}

static struct MHD_Response *make_response(const char *content_type, const void *body, size_t len)
{
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_MUST_COPY);

        if (resp && content_type)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        return resp;
}

int http_respond(struct MHD_Connection *conn, unsigned status, const char *content_type,
                 const void *body, size_t len)
{
        return queue(conn, status, make_response(content_type, body, len));
}

static enum MHD_Result respond_json(struct MHD_Connection *conn, unsigned status, const char *json)
{
        return queue(conn, status, make_response("application/json", json, strlen(json)));
}

/* For answers given before the body was read: the connection must close,
 * or the unread body would be taken for the next request. */
static enum MHD_Result respond_early(struct MHD_Connection *conn, unsigned status,
                                     const char *json, const char *allow)
{
        struct MHD_Response *resp = make_response("application/json", json, strlen(json));

        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        if (allow)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
        return queue(conn, status, resp);
}

/* 503 with Retry-After; @closing when this connection will not be served again. */
static enum MHD_Result respond_503(struct MHD_Connection *conn, const char *body, size_t len,
                                   bool closing)
{
        struct MHD_Response *resp = make_response("application/json", body, len);

        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER_SECONDS);
        if (closing)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        return queue(conn, MHD_HTTP_SERVICE_UNAVAILABLE, resp);
}

static enum MHD_Result respond_unavailable(struct MHD_Connection *conn)
{
        static const char body[] = "{\"error\":\"unavailable\"}";

        return respond_503(conn, body, sizeof(body) - 1, false);
}

/* While the daemon drains. */
static enum MHD_Result respond_stopping(struct MHD_Connection *conn)
{
        static const char body[] = "{\"error\":\"unavailable\",\"detail\":\"shutting down\"}";

        return respond_503(conn, body, sizeof(body) - 1, true);
}

static void add_security_headers(struct MHD_Response *resp)
{
        size_t n;
        const struct page_header *h = page_security_headers(&n);

        for (size_t i = 0; i < n; i++)
                MHD_add_response_header(resp, h[i].name, h[i].value);
}

/* ------------------------------------------------------- header checks */

struct framing {
        unsigned content_length_headers;
        unsigned transfer_encoding_headers;
        bool bad_coding;  /* a Transfer-Encoding other than "chunked" alone */
        bool bad_line;    /* a header line we cannot trust libmicrohttpd's reading of */
};

/* RFC 9110 token characters, what a field name is made of. */
static bool is_token(const char *s, size_t n)
{
        static const char extra[] = "!#$%&'*+-.^_`|~";

        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                             (c >= 'A' && c <= 'Z');
                if (!alnum && (c == '\0' || !strchr(extra, c)))
                        return false;
        }
        return n > 0;
}

/*
 * libmicrohttpd 0.9.75 joins an obs-fold continuation line onto the field
 * *name* ("X-A: 1\r\n b" arrives as "X-Ab: 1"), copying the name elsewhere.
 * An unfolded line leaves name, NUL (where the colon was), blanks and value
 * side by side in the request buffer; a folded one does not.
 */
#define MAX_BLANKS_AFTER_COLON 256

static bool was_folded(const char *key, size_t key_len, const char *value)
{
        uintptr_t after = (uintptr_t) key + key_len + 1, v = (uintptr_t) value;

        if (v < after || v - after > MAX_BLANKS_AFTER_COLON)
                return true;
        for (const char *p = key + key_len + 1; p < value; p++)
                if (*p != ' ' && *p != '\t')
                        return true;
        return false;
}

static bool is_plain_chunked(const char *value, size_t len)
{
        while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
                len--;
        return len == 7 && strncasecmp(value, "chunked", 7) == 0;
}

static enum MHD_Result check_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_len, const char *value, size_t value_len)
{
        struct framing *f = cls;

        if (!is_token(key, key_len) || !value || was_folded(key, key_len, value))
                f->bad_line = true;
        else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
                f->content_length_headers++;
        else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
                f->transfer_encoding_headers++;
                f->bad_coding |= !is_plain_chunked(value, value_len);
        }
        return MHD_YES;
}

/*
 * Request smuggling shapes libmicrohttpd accepts by itself: two
 * Content-Length headers, Content-Length together with chunked, a transfer
 * coding other than plain chunked (which it would read as "no body"), and
 * header lines a front proxy may read differently: whitespace before the
 * colon (kept as part of the name) and obs-fold (RFC 9112 lets a server
 * refuse both; libmicrohttpd misreads the latter).
 */
static bool framing_ambiguous(struct MHD_Connection *conn)
{
        struct framing f = { 0 };

        MHD_get_connection_values_n(conn, MHD_HEADER_KIND, check_field, &f);
        return f.bad_line || f.bad_coding || f.content_length_headers > 1 ||
               f.transfer_encoding_headers > 1 ||
               (f.content_length_headers > 0 && f.transfer_encoding_headers > 0);
}

/* "application/json", any case, optionally followed by parameters. */
static bool content_type_is_json(const char *value)
{
        static const char json[] = "application/json";
        size_t n = sizeof(json) - 1;

        if (!value || strncasecmp(value, json, n) != 0)
                return false;
        value += n;
        while (*value == ' ' || *value == '\t')
                value++;
        return *value == '\0' || *value == ';';
}

static bool declared_too_large(struct MHD_Connection *conn, size_t max_body)
{
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        char *end;

        if (!cl)
                return false;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        /* A malformed length never reaches here: MHD answers 400 itself. */
        return errno == ERANGE || end == cl || n > max_body;
}

/*
 * True when the request may go on to send its body; otherwise an answer was
 * queued and @ret is what the handler returns.
 */
static bool webhook_headers_ok(struct MHD_Connection *conn, const char *method,
                               const struct settings *s, enum MHD_Result *ret)
{
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_TYPE);

        if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
                *ret = respond_early(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                     "{\"error\":\"method_not_allowed\"}", "POST");
        else if (declared_too_large(conn, s->cfg->http.max_body))
                *ret = respond_early(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                     "{\"error\":\"payload_too_large\"}", NULL);
        else if (!content_type_is_json(ct))
                *ret = respond_early(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                     "{\"error\":\"unsupported_media_type\"}", NULL);
        else
                return true;
        return false;
}

/* ------------------------------------------------------------ the body */

/* How much of an oversized chunked body is read (and thrown away) after
 * the 413, so that closing does not reset the connection under an answer
 * the client has not read yet; past it the connection is just closed. */
#define DISCARD_FACTOR 16

/* How long that reading may go on (the lingering close). */
#define LINGER_MS 5000

static int append_body(struct request *req, const char *data, size_t size, size_t max_body)
{
        if (req->too_large || size > max_body - req->len) {
                req->too_large = true;
                req->discarded += size;
                return req->discarded > DISCARD_FACTOR * max_body ? -EMSGSIZE : 0;
        }
        if (req->len + size > req->cap) {
                size_t cap = req->cap ? req->cap : 4096;
                while (cap < req->len + size)
                        cap *= 2;
                if (cap > max_body)
                        cap = max_body;
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

/*
 * A chunked body passed max_body. libmicrohttpd 0.9.75 takes a response
 * only before the body or after its last chunk (MHD_queue_response()
 * refuses one in between), so a client that keeps its body open would hear
 * nothing until the idle timeout. The 413 is written to the socket here
 * instead (the listener is plain TCP, and nothing else is being sent on
 * the connection: a previous response was handed to the kernel whole
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
        ssize_t w = send(info->connect_fd, msg, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w <= 0)
                return 0;
        if (w != n)
                return -EIO;
        shutdown(info->connect_fd, SHUT_WR);
        metrics_count_response(MHD_HTTP_CONTENT_TOO_LARGE);
        return 1;
}

/* ------------------------------------------------------ who is calling */

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

/* ------------------------------------------------------ the webhook path */

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
        char detail[160];

        effective_peer(conn, s, &peer);
        addr_to_text((struct sockaddr *) &peer, d->remote_addr, sizeof(d->remote_addr));
        time_format_iso(time_now_ms(), d->received_at);
        d->body = req->body;
        d->body_len = req->len;
        req->body = NULL;

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
                         detail, sizeof(detail));
        if (r == -ENOMEM || json_alloc_failed)
                return -ENOMEM;
        if (r < 0) {
                reject(d, OUTCOME_INVALID, 400, detail, keep);
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
                return respond_unavailable(conn);
        int r = classify(conn, s, req, &job->delivery);
        if (r < 0) {
                log_warning_errno(r, "webhook from %s answered 503", job->delivery.remote_addr);
                job_unref(job);
                return respond_unavailable(conn);
        }
        job->deadline_ms = time_monotonic_ms() + s->cfg->database.commit_timeout;
        job->wake = wake_connection;
        job->wake_data = req;
        req->job = job;

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

static enum MHD_Result respond_outcome(struct MHD_Connection *conn, const struct job *job)
{
        const struct delivery *d = &job->delivery;
        char body[256];

        if (job->result == -EINVAL || job->result == -E2BIG)
                return respond_json(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                    "{\"error\":\"internal_error\"}");
        if (job->result < 0)
                return respond_unavailable(conn);
        switch (d->outcome) {
        case OUTCOME_INVALID: {
                json_t *j = json_pack("{s:s, s:s}", "error", "invalid_payload", "detail",
                                      d->error ? d->error : "invalid payload");
                char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
                json_decref(j);
                if (!text)
                        return MHD_NO;
                enum MHD_Result r = respond_json(conn, MHD_HTTP_BAD_REQUEST, text);
                free(text);
                return r;
        }
        case OUTCOME_UNAUTHORIZED:
                return respond_json(conn, MHD_HTTP_UNAUTHORIZED, "{\"error\":\"unauthorized\"}");
        case OUTCOME_FORBIDDEN:
                return respond_json(conn, MHD_HTTP_FORBIDDEN, "{\"error\":\"forbidden\"}");
        default:
                snprintf(body, sizeof(body), "{\"outcome\":\"%s\"}", outcome_name(d->outcome));
                return respond_json(conn, MHD_HTTP_OK, body);
        }
}

static enum MHD_Result handle_webhook_body(struct MHD_Connection *conn, const struct settings *s,
                                           struct request *req, const char *data,
                                           size_t *size)
{
        if (*size > 0) {
                bool was_too_large = req->too_large;
                int r = append_body(req, data, *size, s->cfg->http.max_body);
                *size = 0;
                if (r == 0 && req->too_large && !was_too_large) {
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
        if (req->too_large && req->answered)
                return MHD_NO; /* the 413 is out: close */
        if (req->too_large)
                return respond_early(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                     "{\"error\":\"payload_too_large\"}", NULL);
        if (req->job)
                return respond_outcome(conn, req->job);
        return enqueue_webhook(conn, s, req);
}

/* ------------------------------------------------- return page, status */

static enum MHD_Result respond_page(struct MHD_Connection *conn, const struct page_info *info,
                                    unsigned status)
{
        char *html;
        size_t len;

        if (page_render(info, &html, &len) < 0)
                return MHD_NO;
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, html, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(html);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
        add_security_headers(resp);
        return queue(conn, status, resp);
}

static enum MHD_Result respond_redirect(struct MHD_Connection *conn, const char *tmpl,
                                        const struct order_record *o)
{
        char *url;

        if (page_expand_url(tmpl, o->charge_id, o->order_ref, &url) < 0)
                return MHD_NO;
        struct MHD_Response *resp = make_response(NULL, "", 0);
        if (resp) {
                MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, url);
                add_security_headers(resp);
        }
        free(url);
        return queue(conn, MHD_HTTP_SEE_OTHER, resp);
}

/* Look the order up on a read-only handle. Returns 0, -ENOENT or -errno. */
static int lookup_order(struct runtime *rt, const char *charge_id, struct order_record *ret)
{
        struct store *reader = reader_pool_acquire(rt->readers);
        int r = store_get_order(reader, charge_id, ret);

        reader_pool_release(rt->readers, reader);
        return r;
}

static const char *requested_charge_id(struct MHD_Connection *conn)
{
        const char *id = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "charge_id");

        return id ? id : MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "id");
}

static enum MHD_Result handle_return(struct MHD_Connection *conn, struct runtime *rt,
                                     const struct settings *s)
{
        const struct config *cfg = s->cfg;
        const char *id = requested_charge_id(conn);
        struct page_info info = {
                .kind = PAGE_BAD_REQUEST,
                .shop_name = cfg->ret.shop_name,
                .minor_units = cfg->ret.minor_units,
                .refresh = cfg->ret.refresh,
        };

        if (!id || !charge_id_valid(id))
                return respond_page(conn, &info, MHD_HTTP_BAD_REQUEST);
        info.charge_id = id;
        info.kind = PAGE_PENDING;

        struct order_record o = { 0 };
        int r = lookup_order(rt, id, &o);
        enum MHD_Result ret;
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
        if (info.kind == PAGE_SUCCESS && cfg->ret.success_url)
                ret = respond_redirect(conn, cfg->ret.success_url, &o);
        else if (info.kind == PAGE_FAILED && cfg->ret.failure_url)
                ret = respond_redirect(conn, cfg->ret.failure_url, &o);
        else
                /* The database being unreachable is not the customer's
                 * problem to solve: show "processing", but say 503. */
                ret = respond_page(conn, &info,
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
                return respond_unavailable(conn);
        }
        order_record_clear(&o);
        struct MHD_Response *resp = make_response("application/json", body, strlen(body));
        if (resp)
                add_security_headers(resp);
        return queue(conn, status, resp);
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
static bool read_route_ok(struct MHD_Connection *conn, const struct settings *s, const char *url,
                          const char *method, enum MHD_Result *ret)
{
        const struct config *cfg = s->cfg;

        if (strcmp(url, cfg->http.return_path) != 0 && !status_suffix(url, cfg->http.status_path))
                *ret = respond_early(conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"not_found\"}", NULL);
        else if (!is_get_or_head(method))
                *ret = respond_early(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
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
static enum MHD_Result handle_read_route(struct MHD_Connection *conn, struct runtime *rt,
                                         const struct settings *s, const char *url,
                                         struct request *req, size_t *size)
{
        const char *status_id = status_suffix(url, s->cfg->http.status_path);

        if (*size > 0) {
                /* A body nobody asked for: thrown away, within bounds. */
                req->discarded += *size;
                *size = 0;
                return req->discarded > s->cfg->http.max_body ? MHD_NO : MHD_YES;
        }
        if (strcmp(url, s->cfg->http.return_path) == 0)
                return handle_return(conn, rt, s);
        if (status_id)
                return handle_status(conn, rt, status_id);
        return respond_early(conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"not_found\"}", NULL);
}

/* -------------------------------------------------------------- plumbing */

struct deadline *http_connection_deadline(struct MHD_Connection *conn)
{
        const union MHD_ConnectionInfo *info =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

        return info ? info->socket_context : NULL;
}

void http_track_connection(struct deadline_list *list, int64_t timeout_ms,
                           struct MHD_Connection *conn, void **socket_context, bool closed)
{
        if (closed) {
                /* libmicrohttpd closes the descriptor only after this. */
                deadline_remove(*socket_context);
                *socket_context = NULL;
                return;
        }
        const union MHD_ConnectionInfo *info =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (info)
                *socket_context = deadline_add(list, info->connect_fd,
                                               time_monotonic_ms() + timeout_ms);
}

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
                r = handle_webhook_body(conn, s, req, upload_data, upload_data_size);
        } else if (req) {
                r = handle_read_route(conn, rt, s, url, req, upload_data_size);
        } else if (atomic_load(&rt->draining)) {
                /* Requests already started finish; kept-alive connections
                 * must not start new ones, or the drain never ends. */
                r = respond_stopping(conn);
        } else if (framing_ambiguous(conn)) {
                /* On every path: a keep-alive connection is as open to
                 * smuggling behind a GET as behind a webhook. */
                r = respond_early(conn, MHD_HTTP_BAD_REQUEST,
                                  "{\"error\":\"bad_request\",\"detail\":\"ambiguous message framing\"}",
                                  NULL);
        } else if (strcmp(url, s->cfg->http.webhook_path) == 0) {
                if (webhook_headers_ok(conn, method, s, &r))
                        r = new_request(rt, conn, ROUTE_WEBHOOK, req_cls);
        } else if (read_route_ok(conn, s, url, method, &r)) {
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
        free(req->body);
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
        unsigned threads = http_thread_count(cfg);
        /* Each connection's pool is zeroed for every request and held while
         * it is open: 16 KiB (what the default max_header needs) rather than
         * 32 KiB keeps 256 busy connections 4-8 MiB smaller (bench/README.md). */
        size_t memory = cfg->http.max_header * 2 > 16384 ? cfg->http.max_header * 2 : 16384;
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_ITC;

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
                                MHD_OPTION_END);
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
        json_set_alloc_funcs(json_alloc, free); /* before any request thread runs */
        const struct settings *s = runtime_settings_acquire(rt);
        srv->request_timeout_ms = (int64_t) s->cfg->http.request_timeout * 1000;
        for (size_t i = 0; i < n_fds && i < MAX_DAEMONS; i++) {
                srv->daemons[i] = start_daemon(srv, s->cfg, fds[i]);
                if (!srv->daemons[i]) {
                        runtime_settings_release(rt);
                        snprintf(err, err_len, "cannot start the HTTP server on socket %d", fds[i]);
                        http_stop(srv);
                        return -EIO;
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
        unsigned n = deadline_expire(srv->deadlines, now_ms);
        if (n > 0 && log_rate_ok(&rl))
                log_info("closed %u connection(s) that did not send a whole request within %lld s",
                         n, (long long) (srv->request_timeout_ms / 1000));
}

void http_quiesce(struct http_server *srv)
{
        for (size_t i = 0; srv && i < srv->n; i++)
                MHD_quiesce_daemon(srv->daemons[i]);
}

void http_stop(struct http_server *srv)
{
        if (!srv)
                return;
        /* Quiesced first, MHD leaves the listening socket alone: under
         * socket activation it belongs to systemd and must stay usable. */
        http_quiesce(srv);
        for (size_t i = 0; i < srv->n; i++)
                MHD_stop_daemon(srv->daemons[i]);
        deadline_list_free(srv->deadlines);
        free(srv);
}
