"""PostgreSQL's migrations against a real server: applied once and tracked
in the database, refused when newer or (without migrating) older, safe when
several instances start at once, and the result has SQLite's tables,
columns, view, indexes and rules in PostgreSQL's own types.

Usage: test_pg_schema.py PG_MIGRATE_RUN SQLITE_MIGRATIONS_DIR
"""
import os
import sqlite3
import subprocess
import sys

from harness import check, check_eq, run_tests
from pgserver import PgServer

RUN = SQLITE_DIR = PG = None
_dbs = iter(range(1, 1000))


def fresh_db():
    name = f"schema{next(_dbs)}"
    PG.create_database(name)
    return name


def migrate(db, mode="apply", password_file=None):
    r = subprocess.run([RUN, PG.url_for(db), password_file or PG.password_file, mode],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout.strip() + r.stderr.strip()


def known_version():
    return len([f for f in os.listdir(SQLITE_DIR) if f.endswith(".sql")])


def sqlite_schema():
    """SQLite's schema as its own migrations build it."""
    conn = sqlite3.connect(":memory:")
    for name in sorted(f for f in os.listdir(SQLITE_DIR) if f.endswith(".sql")):
        with open(os.path.join(SQLITE_DIR, name)) as f:
            conn.executescript(f.read())
    objects = {}
    for kind, name in conn.execute("SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'"):
        objects.setdefault(kind, set()).add(name)
    columns = {}
    for table in objects["table"] | objects["view"]:
        columns[table] = [(r[1], r[2]) for r in conn.execute(f"PRAGMA table_info({table})")]
    return objects, columns


def test_fresh_database_migrates_and_records_each_step():
    db = fresh_db()
    rc, out = migrate(db)
    v = known_version()
    check_eq((rc, out), (0, f"version {v} (binary knows {v})"), "migrate")
    rows = PG.query("SELECT version, name FROM cashpayd_schema_migrations ORDER BY version", db=db)
    check_eq([r["version"] for r in rows], list(range(1, v + 1)), "one row per step")
    check_eq([r["name"] for r in rows][:2], ["init", "api"], "names")
    rc, out = migrate(db)
    check_eq(rc, 0, "second run")
    check_eq(len(PG.query("SELECT * FROM cashpayd_schema_migrations", db=db)), v, "nothing twice")
    check_eq(migrate(db, "check")[0], 0, "check passes on a current database")


def test_same_numbers_as_sqlite():
    pg_dir = os.path.join(SQLITE_DIR, "postgresql")
    sqlite_files = sorted(f for f in os.listdir(SQLITE_DIR) if f.endswith(".sql"))
    pg_files = sorted(f for f in os.listdir(pg_dir) if f.endswith(".sql"))
    check_eq(pg_files, sqlite_files, "one PostgreSQL migration per SQLite one, same names")


# SQLite declared type -> the PostgreSQL types a column of it may have.
TYPE_MAP = {
    "TEXT": {"text", "timestamp with time zone"},
    "INTEGER": {"bigint", "integer", "boolean"},
    "BLOB": {"bytea"},
}
TIME_COLUMNS = {"first_seen_at", "updated_at", "captured_at", "failed_at", "fulfilled_at",
                "received_at", "recorded_at", "requested_at", "next_check_at"}


def test_same_tables_columns_and_native_types():
    db = fresh_db()
    check_eq(migrate(db)[0], 0, "migrate")
    objects, columns = sqlite_schema()
    tables = {r["table_name"]: r["table_type"] for r in PG.query(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_name <> 'cashpayd_schema_migrations'", db=db)}
    check_eq({t for t, k in tables.items() if k == "BASE TABLE"}, objects["table"], "tables")
    check_eq({t for t, k in tables.items() if k == "VIEW"}, objects["view"], "views")
    for table, cols in columns.items():
        pg_cols = PG.query("SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_schema = 'public' AND table_name = ? "
                           "ORDER BY ordinal_position", table, db=db)
        check_eq([c["column_name"] for c in pg_cols], [c[0] for c in cols], f"{table} columns")
        for (name, sqlite_type), pg in zip(cols, pg_cols):
            t = pg["data_type"]
            check(t in TYPE_MAP[sqlite_type], f"{table}.{name}: {sqlite_type} became {t}")
            if name in TIME_COLUMNS:
                check_eq(t, "timestamp with time zone", f"{table}.{name} is a time")
            if name == "needs_review":
                check_eq(t, "boolean", "needs_review")
            if name in ("amount", "charge_created") or (name == "id" and table != "orders"):
                check_eq(t, "bigint", f"{table}.{name}")
    indexes = {r["indexname"] for r in PG.query(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
        "AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'", db=db)}
    check_eq(indexes, objects["index"], "indexes")
    triggers = {r["tgname"] for r in PG.query(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal", db=db)}
    check(objects["trigger"] <= triggers, f"triggers: {objects['trigger'] - triggers} missing")


def expect_error(db, sql, fragment):
    r = subprocess.run([os.path.join(PG.bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-h", PG.sockdir, "-p", str(PG.port), "-U", "postgres", "-d", db, "-c", sql],
               capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and fragment in r.stderr, f"{sql!r} refused with {fragment!r}: {r.stderr}")


def test_rules_hold():
    db = fresh_db()
    check_eq(migrate(db)[0], 0, "migrate")
    now = "'2026-11-25T20:31:38.123Z'"
    PG.execute(f"INSERT INTO orders (charge_id, status, amount, currency, first_seen_at, updated_at) "
               f"VALUES ('chg_ok', 'INITIATED', 2000, 'YER', {now}, {now})", db=db)
    expect_error(db, f"INSERT INTO orders (charge_id, status, amount, currency, first_seen_at, "
                 f"updated_at) VALUES ('chx_bad', 'INITIATED', 1, 'YER', {now}, {now})", "check")
    expect_error(db, "UPDATE orders SET status = 'CAPTURED'", "check")
    expect_error(db, f"UPDATE orders SET fulfilled_at = {now}", "check")
    expect_error(db, "UPDATE orders SET currency = 'yer'", "check")
    expect_error(db, "UPDATE orders SET amount = 9007199254740992", "check")
    PG.execute(f"INSERT INTO webhook_deliveries (received_at, remote_addr, charge_id, claimed_status, "
               f"outcome, http_status, body) VALUES ({now}, '127.0.0.1', 'chg_ok', 'INITIATED', "
               f"'applied', 200, '\\x7b7d'), ({now}, '127.0.0.1', NULL, NULL, 'invalid', 400, NULL)",
               db=db)
    expect_error(db, f"INSERT INTO webhook_deliveries (received_at, remote_addr, outcome, http_status) "
                 f"VALUES ({now}, 'x', 'applied', 400)", "check")
    expect_error(db, f"INSERT INTO webhook_deliveries (received_at, remote_addr, outcome, http_status) "
                 f"VALUES ({now}, 'x', 'deferred', 503)", "check")
    PG.execute("INSERT INTO order_events (charge_id, to_status, delivery_id, recorded_at) "
               f"SELECT 'chg_ok', 'INITIATED', id, {now} FROM webhook_deliveries "
               "WHERE outcome = 'applied'", db=db)
    check_eq(PG.query("SELECT source FROM order_events", db=db), [{"source": "webhook"}], "default source")
    expect_error(db, "UPDATE order_events SET to_status = 'FAILED'", "append-only")
    expect_error(db, "DELETE FROM order_events", "append-only")
    expect_error(db, "TRUNCATE order_events CASCADE", "append-only")
    expect_error(db, "UPDATE webhook_deliveries SET error = 'x'", "never updated")
    expect_error(db, "DELETE FROM webhook_deliveries WHERE http_status = 200", "only rejected")
    PG.execute("DELETE FROM webhook_deliveries WHERE http_status = 400", db=db)
    expect_error(db, f"INSERT INTO order_events (charge_id, to_status, recorded_at, source) "
                 f"VALUES ('chg_ok', 'CAPTURED', {now}, 'checkout')", "check")
    check_eq(PG.query("SELECT count(*) AS n FROM orders_to_fulfil", db=db), [{"n": 0}], "view")
    PG.execute(f"INSERT INTO charge_requests (order_ref, amount, currency, idempotency_key, "
               f"return_ref, requested_at, updated_at) VALUES ('o-1', 5, 'YER', 'k1', 'r1', {now}, {now})",
               db=db)
    expect_error(db, f"INSERT INTO charge_requests (order_ref, amount, currency, idempotency_key, "
                 f"return_ref, requested_at, updated_at) VALUES ('o-1', 5, 'YER', 'k2', 'r2', {now}, {now})",
                 "charge_requests_pending_idx")


def test_newer_schema_refused():
    db = fresh_db()
    check_eq(migrate(db)[0], 0, "migrate")
    v = known_version()
    PG.execute(f"INSERT INTO cashpayd_schema_migrations (version, name) VALUES ({v + 1}, 'future')", db=db)
    for mode in ("apply", "check"):
        rc, out = migrate(db, mode)
        check_eq(rc, 2, f"{mode}: refused")
        check(f"database schema version {v + 1} is newer than this program (knows {v})" in out, out)


def test_older_schema_needs_migrating():
    db = fresh_db()
    rc, out = migrate(db, "check")
    check_eq(rc, 2, "check on an empty database")
    check("is older than this program" in out and "without migrating" in out, out)
    check_eq(PG.query("SELECT to_regclass('orders') AS t", db=db), [{"t": None}], "nothing created")


def test_instances_starting_at_once():
    db = fresh_db()
    procs = [subprocess.Popen([RUN, PG.url_for(db), PG.password_file, "apply"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(4)]
    results = [(p.wait(120), p.stdout.read().strip()) for p in procs]
    v = known_version()
    for rc, out in results:
        check_eq((rc, out), (0, f"version {v} (binary knows {v})"), "each instance")
    check_eq(len(PG.query("SELECT * FROM cashpayd_schema_migrations", db=db)), v, "each step once")


def test_wrong_password_refused_and_not_shown():
    db = fresh_db()
    bad = os.path.join(PG.dir, "bad-password")
    with open(bad, "w") as f:
        f.write("not-the-password-0815\n")
    rc, out = migrate(db, password_file=bad)
    check_eq(rc, 1, "refused")
    check("password authentication failed" in out, out)
    check("not-the-password-0815" not in out, "the password is never printed")


def test_unparseable_url():
    r = subprocess.run([RUN, "host=127.0.0.1 port", PG.password_file, "apply"],
                       capture_output=True, text=True, timeout=30)
    check_eq(r.returncode, 1, "refused")
    check("invalid [database] url" in r.stdout, r.stdout)


def main():
    global RUN, SQLITE_DIR, PG
    RUN, SQLITE_DIR = sys.argv[1], sys.argv[2]
    with PgServer() as PG:
        run_tests([
            test_fresh_database_migrates_and_records_each_step,
            test_same_numbers_as_sqlite,
            test_same_tables_columns_and_native_types,
            test_rules_hold,
            test_newer_schema_refused,
            test_older_schema_needs_migrating,
            test_instances_starting_at_once,
            test_wrong_password_refused_and_not_shown,
            test_unparseable_url,
        ])


if __name__ == "__main__":
    main()
