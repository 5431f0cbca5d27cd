/*
 * net — see net.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cashpay/util.h"
#include "src/daemon/net.h"

#define LISTEN_BACKLOG 1024

/* Says which step failed, with the errno text. */
static int listen_fail(const struct listen_addr *addr, char *err, size_t err_len)
{
        int r = -errno;

        return err_set(err, err_len, r, "cannot listen on %s: %s", addr->text, strerror(-r));
}

int net_listen(const struct listen_addr *addr, char *err, size_t err_len)
{
        int family = addr->addr.ss_family;
        _cleanup_(closep) int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int one = 1;

        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return listen_fail(addr, err, err_len);
        /* "[::]:8080" means IPv6 only; list 0.0.0.0:8080 too for both. */
        if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
                return listen_fail(addr, err, err_len);
        if (bind(fd, (const struct sockaddr *) &addr->addr, addr->addr_len) < 0 ||
            listen(fd, LISTEN_BACKLOG) < 0)
                return listen_fail(addr, err, err_len);
        return TAKE_FD(fd);
}
