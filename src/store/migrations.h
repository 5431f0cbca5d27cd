/*
 * The schema migrations compiled into this binary (generated at build time
 * from migrations/NNNN_name.sql by scripts/embed-migrations.py).
 */
#pragma once

struct store_migration {
        unsigned version;  /* user_version after this migration */
        const char *name;
        const char *sql;
};

extern const struct store_migration store_migrations[];
extern const unsigned store_migrations_count;
