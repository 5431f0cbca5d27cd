/*
 * checkout — the checkout listener (CONTRACT §8.3): POST /charges from the
 * merchant's application, on its own libmicrohttpd daemon ([checkout]
 * listen, or the socket systemd passes as "checkout").
 *
 * A request is checked (path, method, bearer, size, media type, body) on
 * the listener's thread, then its connection is suspended while the
 * creation (charge-create.h) runs: its store steps as writer tasks, its
 * POST through the daemon's API client; the last step resumes it with the
 * §8.3 answer. Neither the writer nor the listener's thread ever waits for
 * CashPay. Creations for one order_ref that overlap are one creation: the
 * later requests wait for the first and get its charge (200).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cashpay/api.h"
#include "src/daemon/runtime.h"

struct checkout_server;

/*
 * checkout_start() - serve POST /charges on @fds (owned by the caller until
 * after checkout_stop()), creating charges through @api. @err: why not.
 * Returns 0, -ENOMEM or -EIO.
 */
int checkout_start(struct runtime *rt, struct api_client *api, const int *fds, size_t n_fds,
                   struct checkout_server **ret, char *err, size_t err_len);

/* checkout_expire() - from the main loop: requests held past their wait are
 * answered 503, connections that did not send a request in time closed.
 * NULL-safe. */
void checkout_expire(struct checkout_server *srv, int64_t now_ms);

/* checkout_release_held() - stopping: answer every held request 503 now and
 * hold no more, and start no more requests to CashPay. NULL-safe. */
void checkout_release_held(struct checkout_server *srv);

/* checkout_stop() - stop the listener's daemons (after
 * checkout_release_held()). NULL-safe. */
void checkout_stop(struct checkout_server *srv);

/*
 * checkout_free() - wait until every creation under way has ended (their
 * store steps still run on the writer, so before writer_stop(); after the
 * API client stopped, so none waits for CashPay), then free. NULL-safe.
 */
void checkout_free(struct checkout_server *srv);
