/*
 * http-internal — what the files of the public listener share: the
 * per-request state, the replies, and the entry points of each route.
 * Used only by src/daemon/http*.c, webhook.c and pages.c.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/daemon/http-body.h"
#include "src/daemon/http.h"
#include "src/daemon/runtime.h"

enum route { ROUTE_WEBHOOK, ROUTE_OTHER };

/* Per-request state, from the first handler call to completion. */
struct request {
        struct runtime *rt;
        struct MHD_Connection *conn;
        enum route route;
        struct http_body body; /* discarded: also the bytes of an unwanted body */
        bool answered;    /* the 413 for a body too large went out mid-body */
        struct job *job;  /* queued delivery, once the body is complete */
        bool fetch_tried; /* the return page asked the API already (pages.c) */
        struct page_hold *hold; /* while (and after) it waited for that fetch */
};

/* ---- replies (http-reply.c) --------------------------------------------- */

/* Every answer of the listener is one http_reply() (http.h). */

/* http_reply_json() - a JSON body (NUL-terminated). */
enum MHD_Result http_reply_json(struct MHD_Connection *conn, unsigned status, const char *json);

/* http_reply_early() - for answers given before the body was read: the
 * connection must close, or the unread body would be taken for the next
 * request. @allow is the Allow header of a 405, else NULL. */
enum MHD_Result http_reply_early(struct MHD_Connection *conn, unsigned status, const char *json,
                                 const char *allow);

/* http_reply_unavailable() - 503 with Retry-After; the connection stays. */
enum MHD_Result http_reply_unavailable(struct MHD_Connection *conn);

/* http_reply_deferred() - 503 {"outcome":"deferred"} with Retry-After: a
 * webhook recorded but not confirmed (confirm = api, the API unreachable). */
enum MHD_Result http_reply_deferred(struct MHD_Connection *conn);

/* http_reply_stopping() - 503 while the daemon drains; the connection closes. */
enum MHD_Result http_reply_stopping(struct MHD_Connection *conn);

/* ---- routes -------------------------------------------------------------- */

/* webhook_headers_ok() - true when a webhook request may go on to send its
 * body; otherwise an answer was queued and @ret is what the handler returns. */
bool webhook_headers_ok(struct MHD_Connection *conn, const char *method,
                        const struct settings *s, enum MHD_Result *ret);

/* webhook_handle_body() - the later handler calls of a webhook: collect the
 * body, then verify, parse and queue it, then answer with the outcome. */
enum MHD_Result webhook_handle_body(struct MHD_Connection *conn, const struct settings *s,
                                    struct request *req, const char *data, size_t *size);

/* webhook_init_json() - route jansson's allocations through the webhook's
 * own allocator (see webhook.c); before any request thread runs. */
void webhook_init_json(void);

/* pages_route_ok() - true when @url and @method name the return page or a
 * status lookup; otherwise an answer was queued and @ret is what the handler
 * returns. */
bool pages_route_ok(struct MHD_Connection *conn, const struct settings *s, const char *url,
                    const char *method, enum MHD_Result *ret);

/* pages_handle() - the later handler calls of a page or status request. */
enum MHD_Result pages_handle(struct MHD_Connection *conn, struct runtime *rt,
                             const struct settings *s, const char *url, struct request *req,
                             size_t *size);

/* pages_request_done() - at a request's completion: let go of its hold. */
void pages_request_done(struct request *req);

/* pages_expire_holds() - resume the return pages held past their wait
 * (all of them, and no new holds from then on, when @all). Any thread. */
void pages_expire_holds(int64_t now_ms, bool all);
