/*
 * The schema migrations compiled into this binary (generated at build time
 * by scripts/embed-migrations.py): SQLite's from migrations/NNNN_name.sql,
 * PostgreSQL's from migrations/postgresql/NNNN_name.sql. Both sets carry
 * the same numbers: version N of either engine has the same tables and
 * columns.
 */
#pragma once

struct store_migration {
        unsigned version;  /* schema version after this migration */
        const char *name;
        const char *sql;
};

extern const struct store_migration store_migrations[];
extern const unsigned store_migrations_count;

extern const struct store_migration pg_migrations[];
extern const unsigned pg_migrations_count;
