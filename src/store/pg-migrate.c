/*
 * pg-migrate — bring a PostgreSQL database to the schema this binary
 * carries (migrations/postgresql/, compiled in as pg_migrations[]).
 *
 * The database records its own progress in cashpayd_schema_migrations, one
 * row per migration applied, written in the migration's own transaction:
 * a step is there entirely or not at all. Several instances starting at
 * once take turns on a transaction-scoped advisory lock and re-read the
 * version under it, so no step runs twice.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "src/store/migrations.h"
#include "src/store/pg-internal.h"

/* The advisory lock all cashpayd instances take to migrate ("cashpay" in ASCII). */
#define MIGRATION_LOCK "63617368706179"

static const char bootstrap_sql[] =
        "SELECT pg_advisory_xact_lock(x'" MIGRATION_LOCK "'::bigint);"
        "CREATE TABLE IF NOT EXISTS cashpayd_schema_migrations ("
        " version integer PRIMARY KEY CHECK (version > 0),"
        " name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())";

int pg_schema_version(void)
{
        if (pg_migrations_count == 0)
                return 0;
        return (int) pg_migrations[pg_migrations_count - 1].version;
}

/* The single integer a one-row, one-column query returns. */
static int query_int(PGconn *c, const char *sql, int *ret, char *err, size_t err_len)
{
        _cleanup_(PQclearp) PGresult *res = PQexec(c, sql);
        int r = pg_errno(c, res);

        if (r < 0)
                return err_set(err, err_len, r, "cannot read the schema version: %s",
                               PQerrorMessage(c));
        if (PQntuples(res) != 1 || PQnfields(res) != 1)
                return err_set(err, err_len, -EIO, "cannot read the schema version");
        *ret = atoi(PQgetvalue(res, 0, 0));
        return 0;
}

int pg_read_version(PGconn *c, int *ret, char *err, size_t err_len)
{
        int exists, r;

        /* Two statements: a name in a query must exist when it is parsed.
         * A database nothing has migrated yet is version 0. */
        r = query_int(c, "SELECT count(*) FROM pg_catalog.pg_class "
                      "WHERE oid = to_regclass('cashpayd_schema_migrations')", &exists, err, err_len);
        if (r < 0)
                return r;
        if (!exists) {
                *ret = 0;
                return 0;
        }
        return query_int(c, "SELECT coalesce(max(version), 0) FROM cashpayd_schema_migrations",
                         ret, err, err_len);
}

static int check_version(int version, bool apply, char *err, size_t err_len)
{
        int known = pg_schema_version();

        if (version > known)
                return err_set(err, err_len, -EPROTO,
                               "database schema version %d is newer than this program (knows %d); "
                               "refusing to open", version, known);
        if (version < known && !apply)
                return err_set(err, err_len, -EPROTO,
                               "database schema version %d is older than this program (needs %d); "
                               "refusing to open it without migrating", version, known);
        return 0;
}

static int record_step(PGconn *c, const struct store_migration *m, char *err, size_t err_len)
{
        char version[16];
        const char *params[] = { version, m->name };
        _cleanup_(PQclearp) PGresult *res = NULL;

        snprintf(version, sizeof(version), "%u", m->version);
        res = PQexecParams(c, "INSERT INTO cashpayd_schema_migrations (version, name) "
                           "VALUES ($1::integer, $2)", 2, NULL, params, NULL, NULL, 0);
        int r = pg_errno(c, res);

        if (r < 0)
                return err_set(err, err_len, r, "cannot record it: %s", PQerrorMessage(c));
        return 0;
}

/* One step in its own transaction; 0 also when another instance did it first. */
static int apply_one(PGconn *c, const struct store_migration *m, char *err, size_t err_len)
{
        char why[512];
        int version, r;

        r = pg_exec(c, "BEGIN", why, sizeof(why));
        if (r >= 0)
                r = pg_exec(c, bootstrap_sql, why, sizeof(why));
        if (r >= 0)
                r = pg_read_version(c, &version, why, sizeof(why));
        if (r < 0)
                goto fail;
        if ((unsigned) version >= m->version)
                return pg_exec(c, "COMMIT", err, err_len);
        r = pg_exec(c, m->sql, why, sizeof(why));
        if (r >= 0)
                r = record_step(c, m, why, sizeof(why));
        if (r >= 0)
                r = pg_exec(c, "COMMIT", why, sizeof(why));
        if (r >= 0)
                return 0;
fail:
        pg_exec(c, "ROLLBACK", NULL, 0);
        return err_set(err, err_len, r, "migration %04u_%s failed: %s", m->version, m->name, why);
}

int pg_migrate(PGconn *c, bool apply, char *err, size_t err_len)
{
        int version, r;

        r = pg_read_version(c, &version, err, err_len);
        if (r < 0)
                return r;
        r = check_version(version, apply, err, err_len);
        if (r < 0 || !apply)
                return r;
        for (unsigned i = 0; i < pg_migrations_count; i++) {
                if (pg_migrations[i].version <= (unsigned) version)
                        continue;
                r = apply_one(c, &pg_migrations[i], err, err_len);
                if (r < 0)
                        return r;
        }
        /* a newer binary may have migrated further meanwhile */
        r = pg_read_version(c, &version, err, err_len);
        if (r < 0)
                return r;
        return check_version(version, false, err, err_len);
}
