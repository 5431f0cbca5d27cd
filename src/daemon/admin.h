/*
 * admin — the operator's listener: GET /healthz and GET /metrics.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "src/daemon/runtime.h"

struct admin_server;

int admin_start(struct runtime *rt, const int *fds, size_t n_fds, struct admin_server **ret,
                char *err, size_t err_len);
/*
 * admin_expire() - disconnect clients that have not sent a whole request
 * within [admin] request_timeout (see deadline.h). From the main loop. NULL-safe.
 */
void admin_expire(struct admin_server *srv, int64_t now_ms);
void admin_stop(struct admin_server *srv);

/*
 * admin_health() - 0 when the database answers a read and the writer is
 * neither stuck nor failing its commits; else a negative errno, with @why
 * set to a short reason.
 */
int admin_health(struct runtime *rt, const char **why);
