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

#include "net.h"

#define LISTEN_BACKLOG 1024

int net_listen(const struct listen_addr *addr, char *err, size_t err_len)
{
        int family = addr->addr.ss_family;
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int one = 1;

        if (fd < 0)
                goto fail;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                goto fail;
        /* "[::]:8080" means IPv6 only; list 0.0.0.0:8080 too for both. */
        if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
                goto fail;
        if (bind(fd, (const struct sockaddr *) &addr->addr, addr->addr_len) < 0)
                goto fail;
        if (listen(fd, LISTEN_BACKLOG) < 0)
                goto fail;
        return fd;
fail:;
        int r = -errno;
        snprintf(err, err_len, "cannot listen on %s: %s", addr->text, strerror(errno));
        if (fd >= 0)
                close(fd);
        return r;
}
