/*
 * store-migrate — bring the database to the schema this binary carries.
 *
 * The migrations are compiled in (migrations.h), so a binary always knows
 * exactly which schema it was written for. PRAGMA user_version records how
 * far a database has come. Each migration runs in its own BEGIN IMMEDIATE
 * transaction together with the user_version bump, and re-reads the version
 * inside it, so two processes starting at once (cashpayd and
 * `cashpayctl migrate`) cannot both apply the same step.
 */
#include <errno.h>
#include <stdio.h>

#include "src/store/migrations.h"
#include "src/store/store-internal.h"

int store_schema_version(void)
{
        if (store_migrations_count == 0)
                return 0;
        return (int) store_migrations[store_migrations_count - 1].version;
}

int store_user_version(struct store *s, int *ret)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int r, rc;

        r = store_prepare(s, "PRAGMA user_version", &st);
        if (r < 0)
                return r;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -EIO : store_errno_from_sqlite(rc);
        *ret = sqlite3_column_int(st, 0);
        return 0;
}

/* Says why @version cannot be used as it is, or 0 when it can. */
static int check_version(int version, bool apply, char *err, size_t err_len)
{
        int known = store_schema_version();

        if (version < 0)
                return err_set(err, err_len, -EPROTO, "database schema version %d is not one "
                               "this program knows; refusing to open", version);
        if (version > known)
                return err_set(err, err_len, -EPROTO,
                               "database schema version %d is newer than this program (knows "
                               "%d); refusing to open", version, known);
        if (version < known && !apply)
                return err_set(err, err_len, -EPROTO,
                               "database schema version %d is older than this program (needs "
                               "%d); refusing to open it without migrating", version, known);
        return 0;
}

static int run_migration_sql(struct store *s, const struct store_migration *m,
                             char *err, size_t err_len)
{
        char bump[64];
        char *msg = NULL;
        int rc, r;

        rc = sqlite3_exec(s->db, m->sql, NULL, NULL, &msg);
        if (rc == SQLITE_OK) {
                snprintf(bump, sizeof(bump), "PRAGMA user_version = %u", m->version);
                rc = sqlite3_exec(s->db, bump, NULL, NULL, &msg);
        }
        r = store_errno_from_sqlite(rc);
        if (rc != SQLITE_OK)
                err_set(err, err_len, r, "migration %04u_%s failed: %s", m->version, m->name,
                        msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return r;
}

static int apply_one(struct store *s, const struct store_migration *m, char *err, size_t err_len)
{
        int version, r;

        r = store_begin_immediate(s);
        if (r >= 0)
                r = store_user_version(s, &version);
        if (r < 0) {
                err_set(err, err_len, r, "cannot start migration %04u_%s: %s", m->version,
                        m->name, sqlite3_errmsg(s->db));
                store_rollback(s);
                return r;
        }
        if ((unsigned) version >= m->version) {
                /* another process got here first */
                store_rollback(s);
                return 0;
        }
        r = run_migration_sql(s, m, err, err_len);
        if (r >= 0) {
                r = store_commit(s);
                if (r < 0)
                        err_set(err, err_len, r, "migration %04u_%s could not commit: %s",
                                m->version, m->name, sqlite3_errmsg(s->db));
        }
        if (r < 0)
                store_rollback(s);
        return r;
}

int store_migrate(struct store *s, bool apply, char *err, size_t err_len)
{
        int version, r;

        r = store_user_version(s, &version);
        if (r < 0)
                return err_set(err, err_len, r, "cannot read the schema version: %s",
                               sqlite3_errmsg(s->db));
        r = check_version(version, apply, err, err_len);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < store_migrations_count; i++) {
                if (store_migrations[i].version <= (unsigned) version)
                        continue;
                r = apply_one(s, &store_migrations[i], err, err_len);
                if (r < 0)
                        return r;
        }
        if (!apply)
                return 0;
        /* a newer binary may have migrated further while we were at it */
        r = store_user_version(s, &version);
        if (r < 0)
                return err_set(err, err_len, r, "cannot read the schema version: %s",
                               sqlite3_errmsg(s->db));
        return check_version(version, false, err, err_len);
}
