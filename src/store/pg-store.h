/*
 * pg-store — the store interface (cashpay/store.h) on PostgreSQL.
 *
 * store.c hands every call on a handle opened with backend = postgresql
 * to the function of the same name here; the callers never know. A
 * pg_store owns one libpq connection. When the connection is lost, every
 * call fails with -ECONNRESET (a 503 for webhooks, /healthz unhealthy)
 * and the next call after a backoff (100 ms doubling to 5 s) connects
 * again; nothing needs restarting.
 */
#pragma once

#include <stdint.h>

#include "cashpay/store.h"
#include "cashpay/store-admin.h"
#include "cashpay/store-api.h"

struct pg_store;

/* Connects, migrates (with @opts->migrate) or checks the schema. Errors as
 * store_new(), plus -ECONNREFUSED when no server could be reached. */
int pg_store_new(const struct store_options *opts, struct pg_store **ret, char *err, size_t err_len);
void pg_store_free(struct pg_store *p);

/* As store_submit(); -ECONNRESET and -ETIMEDOUT join its transient errors. */
int pg_store_submit(struct pg_store *p, struct delivery *const *items, size_t n);
int pg_store_get_order(struct pg_store *p, const char *charge_id, struct order_record *ret);
/* A round trip to the server (connecting first if due). */
int pg_store_health(struct pg_store *p);
/* 0 while the connection is up: a look at its socket, no round trip. One
 * found lost (a socket error, the server's goodbye) is replaced at once. */
int pg_store_check_connection(struct pg_store *p);
/* A transaction that writes and commits: one row of a temporary table, so
 * a file grows in the database's tablespace (unless temp_tablespaces
 * names another) as a webhook's rows would. */
int pg_store_probe_write(struct pg_store *p);
int pg_store_prune_rejected(struct pg_store *p, const char *cutoff_iso, unsigned limit,
                            bool dry_run, int64_t *ret_count);
int64_t pg_store_rejected_rows(struct pg_store *p);

/* pg-api.c: store-api.h on PostgreSQL, called by store-api.c after its
 * own argument checks. Errors as there, plus -ECONNRESET and -ETIMEDOUT.
 * pg_store_due_orders() claims what it returns (see pg-api.c). */
int pg_store_record_fetch(struct pg_store *p, struct api_fetch *f);
/* @error: the delivery's error column, as store-api.c words it for @d's outcome. */
int pg_store_record_confirmed(struct pg_store *p, struct delivery *d, struct api_fetch *f,
                              const char *(*error)(const struct delivery *d,
                                                   const struct api_fetch *f));
int pg_store_release_due(struct pg_store *p, const char *charge_id, const char *claimed_until,
                         const char *previous);
int pg_store_due_orders(struct pg_store *p, const char *now, const char *untouched_before,
                        const char *first_seen_after, int64_t lease_ms, struct due_order *ret,
                        size_t max, size_t *ret_n);
int pg_store_count_due(struct pg_store *p, const char *now, const char *untouched_before,
                       const char *first_seen_after, int64_t *ret);
int pg_store_get_order_by_return_ref(struct pg_store *p, const char *return_ref,
                                     struct order_record *ret);
int pg_store_charge_plan(struct pg_store *p, const struct charge_ask *ask, struct charge_plan *ret);
int pg_store_charge_created(struct pg_store *p, int64_t request_id, const struct charge *c,
                            int http_status, const char *now, const char *next_check_at);
int pg_store_charge_attempt(struct pg_store *p, int64_t request_id, bool refused, int http_status,
                            const char *error, const char *now);

/* pg-admin.c: the listings of store-admin.h, called by store-admin.c. */
int pg_admin_list_orders(struct pg_store *p, const struct order_filter *f, struct order_list *ret);
int pg_admin_list_deliveries(struct pg_store *p, const struct delivery_filter *f,
                             struct delivery_list *ret);
int pg_admin_list_deliveries_for(struct pg_store *p, const char *charge_id,
                                 struct delivery_list *ret);
int pg_admin_list_events(struct pg_store *p, int64_t after_id, const char *charge_id,
                         unsigned limit, struct event_list *ret);
/* One transaction each, the row locked: -ENOENT when there is no such
 * order; *ret_changed when the conditional UPDATE of store-admin.c's
 * SQLite twin would have changed it; @ret the order afterwards. */
int pg_admin_fulfil(struct pg_store *p, const char *charge_id, const char *now_iso,
                    bool *ret_changed, struct order_record *ret);
int pg_admin_review_done(struct pg_store *p, const char *charge_id, bool *ret_changed);
/* pg-listen.c: store_admin_listen_events() and store_admin_wait_events(). */
int pg_listen_events(struct pg_store *p);
int pg_listen_wait(struct pg_store *p, int timeout_ms, const sigset_t *sigmask);
