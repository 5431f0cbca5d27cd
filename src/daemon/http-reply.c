/*
 * http-reply — the answers of the public listener, all built by
 * http_reply() from a status and a struct http_reply; see http-internal.h.
 */
#include <microhttpd.h>
#include <string.h>

#include "cashpay/page.h"
#include "src/daemon/http-internal.h"
#include "src/daemon/http.h"
#include "src/daemon/metrics.h"

#define RETRY_AFTER_SECONDS "5"

static void add_security_headers(struct MHD_Response *resp)
{
        size_t n;
        const struct page_header *h = page_security_headers(&n);

        for (size_t i = 0; i < n; i++)
                MHD_add_response_header(resp, h[i].name, h[i].value);
}

enum MHD_Result http_reply(struct MHD_Connection *conn, unsigned status,
                           const struct http_reply *r)
{
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(r->len, (void *) r->body, MHD_RESPMEM_MUST_COPY);
        enum MHD_Result ret;

        if (!resp)
                return MHD_NO;
        if (r->content_type)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
        if (r->close)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        if (r->retry_after)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER_SECONDS);
        if (r->allow)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
        if (r->location)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
        if (r->security_headers)
                add_security_headers(resp);
        ret = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        if (ret == MHD_YES)
                metrics_count_response(status);
        return ret;
}

int http_respond(struct MHD_Connection *conn, unsigned status, const char *content_type,
                 const void *body, size_t len)
{
        return http_reply(conn, status, &(struct http_reply) {
                .content_type = content_type, .body = body, .len = len,
        });
}

enum MHD_Result http_reply_json(struct MHD_Connection *conn, unsigned status, const char *json)
{
        return http_reply(conn, status, &(struct http_reply) {
                .content_type = "application/json", .body = json, .len = strlen(json),
        });
}

enum MHD_Result http_reply_early(struct MHD_Connection *conn, unsigned status, const char *json,
                                 const char *allow)
{
        return http_reply(conn, status, &(struct http_reply) {
                .content_type = "application/json", .body = json, .len = strlen(json),
                .close = true, .allow = allow,
        });
}

enum MHD_Result http_reply_unavailable(struct MHD_Connection *conn)
{
        static const char body[] = "{\"error\":\"unavailable\"}";

        return http_reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, &(struct http_reply) {
                .content_type = "application/json", .body = body, .len = sizeof(body) - 1,
                .retry_after = true,
        });
}

enum MHD_Result http_reply_deferred(struct MHD_Connection *conn)
{
        static const char body[] = "{\"outcome\":\"deferred\"}";

        return http_reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, &(struct http_reply) {
                .content_type = "application/json", .body = body, .len = sizeof(body) - 1,
                .retry_after = true,
        });
}

enum MHD_Result http_reply_stopping(struct MHD_Connection *conn)
{
        static const char body[] = "{\"error\":\"unavailable\",\"detail\":\"shutting down\"}";

        return http_reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, &(struct http_reply) {
                .content_type = "application/json", .body = body, .len = sizeof(body) - 1,
                .retry_after = true, .close = true,
        });
}
