/*
 * http — the public listener: the webhook endpoint, the return page and the
 * status endpoint, on libmicrohttpd.
 *
 * This is the only module that speaks HTTP to CashPay and to browsers. It
 * enforces the request limits, decides who the peer is, verifies and parses
 * the body through the pure core, and hands the delivery to the writer.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/daemon/runtime.h"

struct http_server;

/* One MHD daemon per listening socket (MHD takes one socket each).
 * The sockets stay owned by the caller until http_stop(). */
int http_start(struct runtime *rt, const int *fds, size_t n_fds, struct http_server **ret,
               char *err, size_t err_len);

/*
 * http_expire() - disconnect clients that have not sent their whole request
 * within [http] request_timeout (see deadline.h). From the main loop.
 */
void http_expire(struct http_server *srv, int64_t now_ms);

/* http_thread_count() - [http] threads, or one per CPU when it is 0. */
unsigned http_thread_count(const struct config *cfg);

/* http_release_held() - answer every return page waiting for an API fetch
 * now, from the database, and hold no more (stopping). NULL-safe. */
void http_release_held(struct http_server *srv);

/* http_stop() - stop the MHD daemons (closing idle connections). NULL-safe. */
void http_stop(struct http_server *srv);

/*
 * Shared with admin.c and checkout.c: every answer is one http_reply(), a
 * status and what goes with it. The body is copied. The response is counted
 * in the metrics once it is queued. Returns what the access handler returns
 * (MHD_NO when the response could not be built or queued: libmicrohttpd
 * closes).
 */
struct http_reply {
        const char *content_type; /* NULL: no Content-Type */
        const void *body;
        size_t len;
        bool close;               /* Connection: close */
        bool retry_after;         /* Retry-After (503) */
        bool security_headers;    /* page_security_headers() (pages, status) */
        const char *allow;        /* Allow (405) */
        const char *location;     /* Location (303) */
};
enum MHD_Result http_reply(struct MHD_Connection *conn, unsigned status,
                           const struct http_reply *r);

/* http_respond() - a response with a copied body and a Content-Type. */
int http_respond(struct MHD_Connection *conn, unsigned status, const char *content_type,
                 const void *body, size_t len);

/*
 * Shared with admin.c and checkout.c: request deadlines (deadline.h) on a listener.
 * http_track_connection() is the body of an MHD_OPTION_NOTIFY_CONNECTION
 * callback: a new connection is tracked in @list, due @timeout_ms from now;
 * a @closed one is forgotten. http_connection_deadline() is that entry (NULL
 * when it went untracked), for deadline_set().
 */
struct deadline;
struct deadline_list;
void http_track_connection(struct deadline_list *list, int64_t timeout_ms,
                           struct MHD_Connection *conn, void **socket_context, bool closed);
struct deadline *http_connection_deadline(struct MHD_Connection *conn);
