/*
 * reconciler — no order stays wrong because a webhook was lost (CONTRACT
 * §8.5): the daemon's CashPay API client, and the sweeps that fetch stale
 * INITIATED orders through it.
 *
 * Three threads take part, and none waits for another: the main loop's
 * timer starts a sweep; the sweep runs on the writer (the database's one
 * connection), lists the due orders and hands their fetches to the API
 * client, which only queues them; each result comes back on the client's
 * thread, is copied and handed back to the writer, which records it with
 * store_record_fetch() — the api_fetches row, the one state machine (event
 * source 'api') and the order's next look (reconcile.h). So a slow or dead
 * API costs the writer nothing, and webhooks keep being committed.
 *
 * One sweep at a time, of at most max_inflight orders: the next starts
 * once every fetch of the last is recorded. A failing API is looked at
 * again on the order's doubling schedule, like an order still INITIATED.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cashpay/config.h"
#include "src/daemon/runtime.h"

struct reconciler;

/*
 * reconciler_start() - the API client for @cfg ([cashpay] api_url must be
 * set). Sweeps use @rt's writer and current settings. @err: why not.
 * Returns 0 or a negative errno.
 */
int reconciler_start(struct runtime *rt, const struct config *cfg, struct reconciler **ret,
                     char *err, size_t err_len);

/* reconciler_tick() - from the main loop: start a sweep unless one is still
 * running. Returns the microseconds until it wants to be called again. */
uint64_t reconciler_tick(struct reconciler *rc);

/*
 * reconciler_fetch_due() - true when the return page may fetch @charge_id:
 * it has not done so within @every_s seconds (the page's `refresh`) of
 * @now_ms (monotonic). Any thread.
 */
bool reconciler_fetch_due(struct reconciler *rc, const char *charge_id, unsigned every_s,
                          int64_t now_ms);

/*
 * reconciler_fetch_one() - fetch @charge_id for the return page (api_fetches
 * reason 'return'), recorded by the writer like a sweep's fetch. @done(@data)
 * runs exactly once when 0 is returned: on the writer's thread after the
 * record, or on the client's thread when the result is dropped (stopping,
 * out of memory). Any thread. Returns 0, -ENOMEM or -ESHUTDOWN (then @done
 * never runs).
 */
int reconciler_fetch_one(struct reconciler *rc, const char *charge_id, int64_t now_ms,
                         void (*done)(void *data), void *data);

/*
 * reconciler_confirm() - fetch the charge @job's verified webhook claims
 * (confirm = api, §8.4; api_fetches reason 'webhook'). The job is held by
 * the writer meanwhile (its deadline runs); the answer is copied into
 * job->fetch and the job queued, and the writer records delivery and fetch
 * together. A claim the API does not confirm is looked at again, at the
 * looks reconcile.h scales by @after_s (reconcile_after). Returns 0, or
 * -ENOMEM / -ESHUTDOWN: then nothing was held and the caller answers the
 * job itself.
 */
struct job;
int reconciler_confirm(struct reconciler *rc, struct job *job, unsigned after_s);

/* reconciler_api() - the daemon's one API client, for the checkout
 * listener's charge creations; valid until reconciler_stop(). */
struct api_client *reconciler_api(struct reconciler *rc);

/*
 * reconciler_stop() - stop the client (requests still open are dropped,
 * their orders stay due), wait until the writer has recorded every result
 * already handed to it, free. Before writer_stop(). NULL-safe.
 */
void reconciler_stop(struct reconciler *rc);
