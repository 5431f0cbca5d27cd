/*
 * pg-absent — the PostgreSQL half of the store for a program built
 * without it (cashpayctl: linking libpq costs every start some 670
 * allocations in its Kerberos and LDAP libraries). Opening a PostgreSQL
 * store fails with a sentence saying so; no handle can exist, so the
 * other calls are never reached with one and only report -EOPNOTSUPP.
 */
#include <errno.h>

#include "cashpay/util.h"
#include "src/store/pg-store.h"

int pg_store_new(const struct store_options *opts, struct pg_store **ret, char *err, size_t err_len)
{
        return err_set(err, err_len, -EOPNOTSUPP,
                       "this program is built without PostgreSQL support");
}

void pg_store_free(struct pg_store *p)
{
}

int pg_store_submit(struct pg_store *p, struct delivery *const *items, size_t n)
{
        return -EOPNOTSUPP;
}

int pg_store_get_order(struct pg_store *p, const char *charge_id, struct order_record *ret)
{
        return -EOPNOTSUPP;
}

int pg_store_health(struct pg_store *p)
{
        return -EOPNOTSUPP;
}

int pg_store_check_connection(struct pg_store *p)
{
        return -EOPNOTSUPP;
}

int pg_store_probe_write(struct pg_store *p)
{
        return -EOPNOTSUPP;
}

int pg_store_prune_rejected(struct pg_store *p, const char *cutoff_iso, unsigned limit,
                            bool dry_run, int64_t *ret_count)
{
        return -EOPNOTSUPP;
}

int64_t pg_store_rejected_rows(struct pg_store *p)
{
        return -1;
}

int pg_store_record_fetch(struct pg_store *p, struct api_fetch *f)
{
        return -EOPNOTSUPP;
}

int pg_store_record_confirmed(struct pg_store *p, struct delivery *d, struct api_fetch *f,
                              const char *(*error)(const struct delivery *d,
                                                   const struct api_fetch *f))
{
        return -EOPNOTSUPP;
}

int pg_store_release_due(struct pg_store *p, const char *charge_id, const char *claimed_until,
                         const char *previous)
{
        return -EOPNOTSUPP;
}

int pg_store_due_orders(struct pg_store *p, const char *now, const char *untouched_before,
                        const char *first_seen_after, struct due_order *ret, size_t max,
                        size_t *ret_n)
{
        return -EOPNOTSUPP;
}

int pg_store_count_due(struct pg_store *p, const char *now, const char *untouched_before,
                       const char *first_seen_after, int64_t *ret)
{
        return -EOPNOTSUPP;
}

int pg_store_get_order_by_return_ref(struct pg_store *p, const char *return_ref,
                                     struct order_record *ret)
{
        return -EOPNOTSUPP;
}

int pg_store_charge_plan(struct pg_store *p, const struct charge_ask *ask, struct charge_plan *ret)
{
        return -EOPNOTSUPP;
}

int pg_store_charge_created(struct pg_store *p, int64_t request_id, const struct charge *c,
                            int http_status, const char *now, const char *next_check_at)
{
        return -EOPNOTSUPP;
}

int pg_store_charge_attempt(struct pg_store *p, int64_t request_id, bool refused, int http_status,
                            const char *error, const char *now)
{
        return -EOPNOTSUPP;
}

int pg_admin_list_orders(struct pg_store *p, const struct order_filter *f, struct order_list *ret)
{
        return -EOPNOTSUPP;
}

int pg_admin_list_deliveries(struct pg_store *p, const struct delivery_filter *f,
                             struct delivery_list *ret)
{
        return -EOPNOTSUPP;
}

int pg_admin_list_deliveries_for(struct pg_store *p, const char *charge_id,
                                 struct delivery_list *ret)
{
        return -EOPNOTSUPP;
}

int pg_admin_list_events(struct pg_store *p, int64_t after_id, const char *charge_id,
                         unsigned limit, struct event_list *ret)
{
        return -EOPNOTSUPP;
}

int pg_admin_fulfil(struct pg_store *p, const char *charge_id, const char *now_iso,
                    bool *ret_changed, struct order_record *ret)
{
        return -EOPNOTSUPP;
}

int pg_admin_review_done(struct pg_store *p, const char *charge_id, bool *ret_changed)
{
        return -EOPNOTSUPP;
}
