/*
 * http-deadline — request deadlines (deadline.h) on a libmicrohttpd
 * listener, shared by the public (http.c) and the admin listener: each
 * connection's entry rides in its socket context. See http.h.
 */
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "cashpay/timeutil.h"
#include "src/daemon/deadline.h"
#include "src/daemon/http.h"

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
