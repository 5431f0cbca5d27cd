/*
 * http-socket — the listening socket each libmicrohttpd daemon is given.
 * See http-socket.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cashpay/log.h"
#include "src/daemon/http-socket.h"

int http_mhd_socket(int fd)
{
        int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);

        return copy < 0 ? -errno : copy;
}

void http_mhd_socket_unused(int copy)
{
        /* A daemon that did not start may or may not have closed it. */
        if (copy >= 0 && fcntl(copy, F_GETFD) >= 0)
                close(copy);
}

void http_mhd_stop(struct MHD_Daemon *daemon)
{
        if (!daemon)
                return;
        /* A daemon with a worker pool shutdown()s its listening socket in
         * MHD_stop_daemon(), and shutdown() acts on the socket, not on one
         * descriptor of it: the one we keep (and systemd's) would stop
         * listening too. So its descriptor is pointed at an unbound socket
         * first; the daemon's threads stop at once (an accept() one of them
         * may still try fails harmlessly). */
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_LISTEN_FD);
        int unbound = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (!info || unbound < 0 || dup3(unbound, info->listen_fd, O_CLOEXEC) < 0)
                log_warning_errno(info ? -errno : -EBADF,
                                  "cannot detach a listener from its socket before stopping it");
        if (unbound >= 0)
                close(unbound);
        MHD_stop_daemon(daemon);
}
