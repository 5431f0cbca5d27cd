/*
 * pg-listen — the change feed's wake-up call on PostgreSQL: LISTEN on the
 * channel the order_events trigger notifies (migration 0003), and a wait
 * for the next notification, for cashpayctl events --follow.
 *
 * A notification only says "read again": the follower still asks for
 * "id > last", so a notification lost with a connection, or folded into
 * another, costs latency, never an event. What makes that hold is the
 * order of things on every connection: LISTEN comes first (connect_once()
 * issues it before the handle is used), the reads after it. A row
 * committed after a read notifies this connection, and one committed
 * before it is in that read. The wait itself never connects: a connection
 * found dead is dropped, and the caller's next read makes the new one
 * (LISTEN, then the read that catches up).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <time.h>

#include "cashpay/timeutil.h"
#include "src/store/pg-store-internal.h"

#define EVENTS_CHANNEL "cashpayd_events"

int pg_listen_on(struct pg_store *p, PGconn *c, char *err, size_t err_len)
{
        int r;

        p->listening = false;
        if (!p->listen_wanted)
                return 0;
        r = pg_exec(c, "LISTEN " EVENTS_CHANNEL, err, err_len);
        /* A hot standby refuses LISTEN (read-only): that connection is
         * still good for reading, the follower then polls instead. */
        if (r == -EROFS)
                return 0;
        if (r >= 0)
                p->listening = true;
        return r;
}

int pg_listen_events(struct pg_store *p)
{
        char err[256];
        int r;

        p->listen_wanted = true;
        if (!p->conn || PQstatus(p->conn) != CONNECTION_OK)
                return 0; /* the next read connects, and LISTENs first */
        r = pg_listen_on(p, p->conn, err, sizeof(err));
        if (r == -ECONNRESET || PQstatus(p->conn) != CONNECTION_OK) {
                PQfinish(p->conn);
                p->conn = NULL;
                return 0;
        }
        return r;
}

/* Takes every notification libpq has read; whether there was one. */
static bool drain(PGconn *c)
{
        bool any = false;
        PGnotify *n;

        while ((n = PQnotifies(c))) {
                PQfreemem(n);
                any = true;
        }
        return any;
}

/* ppoll() on @fd (-1: none) for at most @ms, with @sigmask; 1 readable,
 * 0 time up, -EINTR. */
static int wait_fd(int fd, int64_t ms, const sigset_t *sigmask)
{
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        int n = ppoll(&pfd, fd >= 0 ? 1 : 0, &ts, sigmask);

        if (n < 0)
                return -errno;
        return n > 0 ? 1 : 0;
}

/* Disconnected: sleep until the store's backoff lets the next read connect. */
static int wait_for_reconnect(struct pg_store *p, int64_t timeout_ms, const sigset_t *sigmask)
{
        int64_t ms = p->next_connect_ms - time_monotonic_ms();

        if (ms > timeout_ms)
                ms = timeout_ms;
        return ms > 0 ? wait_fd(-1, ms, sigmask) : 0;
}

int pg_listen_wait(struct pg_store *p, int timeout_ms, const sigset_t *sigmask)
{
        int64_t deadline = time_monotonic_ms() + timeout_ms;
        int r;

        if (!p->listen_wanted)
                return -EOPNOTSUPP;
        if (!p->conn || PQstatus(p->conn) != CONNECTION_OK)
                return wait_for_reconnect(p, timeout_ms, sigmask);
        if (!p->listening)
                return -EOPNOTSUPP;
        for (;;) {
                /* what arrived with the last read's answer comes first */
                if (drain(p->conn))
                        return 1;
                int64_t left = deadline - time_monotonic_ms();
                if (left <= 0)
                        return 0;
                r = wait_fd(PQsocket(p->conn), left, sigmask);
                if (r <= 0)
                        return r;
                if (!PQconsumeInput(p->conn) || PQstatus(p->conn) != CONNECTION_OK) {
                        /* terminated, or the server went down: read again,
                         * which reconnects (with backoff) and catches up */
                        PQfinish(p->conn);
                        p->conn = NULL;
                        return 0;
                }
        }
}
