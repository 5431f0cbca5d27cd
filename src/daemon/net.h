/*
 * net — listening sockets bound from the configuration (when systemd did
 * not pass any).
 */
#pragma once

#include <stddef.h>

#include "cashpay/config.h"

/* net_listen() - a non-blocking listening TCP socket on @addr. Returns the
 * fd or a negative errno with @err naming the address. */
int net_listen(const struct listen_addr *addr, char *err, size_t err_len);
