/*
 * service — cashpayd's side of the systemd contract, through libsystemd's
 * sd-daemon rather than hand-written protocol code.
 *
 * Socket activation: the public listener arrives named "http", the admin
 * listener "admin" and the checkout listener "checkout" (FileDescriptorName=;
 * one name per .socket unit, hence a socket unit each). Descriptors without a name of their own — "unknown" when
 * the manager sent none, "" or the socket unit's name ("foo.socket"), which
 * is what systemd sends when FileDescriptorName= is unset — are public
 * listeners. Anything else is a configuration mistake worth refusing to start
 * over, rather than guessing which port is which.
 *
 * Notifications are fire-and-forget: without $NOTIFY_SOCKET sd_notify() is a
 * no-op, and a failure to notify is not a reason to stop serving webhooks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "cashpay/util.h"
#include "src/daemon/service.h"

#define SERVICE_MAX_FDS (sizeof(((struct service_sockets *) 0)->http) / sizeof(int))
#define STATUS_MAX 512

enum fd_kind { FD_HTTP, FD_ADMIN, FD_CHECKOUT, FD_UNKNOWN };

static int ends_with(const char *s, const char *suffix)
{
        size_t n = strlen(s), m = strlen(suffix);

        return n >= m && strcmp(s + n - m, suffix) == 0;
}

static enum fd_kind classify_name(const char *name)
{
        if (!name || !*name || strcmp(name, "unknown") == 0 || ends_with(name, ".socket"))
                return FD_HTTP;
        if (strcmp(name, SERVICE_FD_NAME_HTTP) == 0)
                return FD_HTTP;
        if (strcmp(name, SERVICE_FD_NAME_ADMIN) == 0)
                return FD_ADMIN;
        if (strcmp(name, SERVICE_FD_NAME_CHECKOUT) == 0)
                return FD_CHECKOUT;
        return FD_UNKNOWN;
}

static void free_names(char **names)
{
        if (!names)
                return;
        for (char **p = names; *p; p++)
                free(*p);
        free(names);
}

/* The list of @kind's descriptors, and its count. */
static int *kind_list(struct service_sockets *s, enum fd_kind kind, size_t **ret_n)
{
        switch (kind) {
        case FD_ADMIN:
                *ret_n = &s->n_admin;
                return s->admin;
        case FD_CHECKOUT:
                *ret_n = &s->n_checkout;
                return s->checkout;
        default:
                *ret_n = &s->n_http;
                return s->http;
        }
}

/* Adds @fd to the list of its kind; -EINVAL/-E2BIG with a reason in @err. */
static int add_fd(struct service_sockets *s, int fd, const char *name, char *err, size_t err_len)
{
        enum fd_kind kind = classify_name(name);
        size_t *n;
        int *list = kind_list(s, kind, &n);
        int r;

        if (kind == FD_UNKNOWN)
                return err_set(err, err_len, -EINVAL,
                               "passed socket %d has unknown FileDescriptorName \"%s\" "
                               "(expected \"%s\", \"%s\" or \"%s\")", fd, name,
                               SERVICE_FD_NAME_HTTP, SERVICE_FD_NAME_ADMIN,
                               SERVICE_FD_NAME_CHECKOUT);
        r = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1);
        if (r <= 0)
                return err_set(err, err_len, r < 0 ? r : -EINVAL,
                               "passed descriptor %d (\"%s\") is not a listening stream socket",
                               fd, name ? name : "");
        if (*n >= SERVICE_MAX_FDS)
                return err_set(err, err_len, -E2BIG,
                               "more than %zu passed sockets of one kind", SERVICE_MAX_FDS);
        list[(*n)++] = fd;
        return 0;
}

int service_listen_fds(struct service_sockets *ret, char *err, size_t err_len)
{
        char **names = NULL;
        int n, r = 0;

        memset(ret, 0, sizeof(*ret));
        if (err_len > 0)
                err[0] = '\0';
        /* Unset $LISTEN_* so that nothing we spawn believes they are its own. */
        n = sd_listen_fds_with_names(1, &names);
        if (n < 0)
                return err_set(err, err_len, n, "cannot read passed sockets: %s", strerror(-n));
        for (int i = 0; i < n && r == 0; i++)
                r = add_fd(ret, SD_LISTEN_FDS_START + i, names ? names[i] : NULL, err, err_len);
        free_names(names);
        if (r < 0)
                memset(ret, 0, sizeof(*ret));
        return r;
}

uint64_t service_watchdog_usec(void)
{
        uint64_t usec = 0;

        if (sd_watchdog_enabled(0, &usec) <= 0)
                return 0;
        return usec;
}

void service_notify_ready(void)
{
        sd_notify(0, "READY=1");
}

/*
 * systemd ≥ 253 (Type=notify-reload) wants the CLOCK_MONOTONIC time of the
 * reload request with RELOADING=1 so it can tell this reload's READY=1 from an
 * older one; earlier versions ignore the extra field.
 */
void service_notify_reloading(void)
{
        struct timespec ts;
        uint64_t usec;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        usec = (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
        sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, usec);
}

void service_notify_stopping(void)
{
        sd_notify(0, "STOPPING=1");
}

void service_notify_watchdog(void)
{
        sd_notify(0, "WATCHDOG=1");
}

/* STATUS= is one line of the newline-separated protocol: keep it one line. */
void service_notify_status(const char *fmt, ...)
{
        char buf[STATUS_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        for (char *p = buf; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        sd_notifyf(0, "STATUS=%s", buf);
}
