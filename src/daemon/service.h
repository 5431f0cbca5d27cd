/*
 * service — the daemon's side of systemd, through sd-daemon: listening
 * sockets passed by socket activation, the notify protocol and the watchdog.
 * Without systemd every call is a harmless no-op.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERVICE_FD_NAME_HTTP "http"
#define SERVICE_FD_NAME_ADMIN "admin"
#define SERVICE_FD_NAME_CHECKOUT "checkout"

struct service_sockets {
        int http[16];
        size_t n_http;
        int admin[16];
        size_t n_admin;
        int checkout[16];
        size_t n_checkout;
};

/*
 * service_listen_fds() - sockets passed by systemd, told apart by
 * FileDescriptorName= ("http", "admin", "checkout"). Descriptors without a name of their
 * own ("unknown", "", or the default "<unit>.socket") count as http. Every
 * descriptor must be a listening stream socket. $LISTEN_* are unset after.
 * Zero sockets is fine (bind from config); a kind with no socket (no admin
 * socket unit enabled, say) is also left to the caller to bind from config.
 * Returns 0, or -EINVAL (unknown name, not a listening socket), -E2BIG
 * (more than 16 of a kind) or another negative errno, with @err saying why
 * and @ret emptied. The descriptors are O_CLOEXEC and owned by the caller.
 */
int service_listen_fds(struct service_sockets *ret, char *err, size_t err_len);

/* service_watchdog_usec() - WatchdogSec= in µs for this process, 0 if off. */
uint64_t service_watchdog_usec(void);

/* Notifications to $NOTIFY_SOCKET; no-ops without it, errors ignored. */
void service_notify_ready(void);
void service_notify_reloading(void);  /* RELOADING=1 + MONOTONIC_USEC= */
void service_notify_stopping(void);
void service_notify_watchdog(void);
/* STATUS=… (newlines become spaces; at most 511 bytes). */
void service_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
