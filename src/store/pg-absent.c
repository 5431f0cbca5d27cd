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
