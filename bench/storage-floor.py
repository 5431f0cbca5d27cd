#!/usr/bin/python3
"""The storage floor: SQLite alone, cashpayd's rows, no HTTP.

Usage: storage-floor.py [--seconds S] [--batches 1,8,64] MIGRATIONS_DIR WORK_DIR

For each batch size B, writes webhooks into a fresh WAL database with
synchronous = FULL and cashpayd's schema, B webhooks per transaction, each
webhook the three rows cashpayd writes for a new charge (the order, the
delivery with its raw body, the event), for S seconds (default 3), and
prints webhooks/s and the median commit time. Nothing cashpayd does per
webhook can beat this on the same disk at the same moment; the disk of a
virtual machine varies from minute to minute, so run.sh prints it next to
its own figures.
"""
import argparse
import glob
import os
import sqlite3
import statistics
import time

NOW = "2026-01-01T00:00:00.000Z"


def fresh_db(path, migrations):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("BEGIN")
    for f in sorted(glob.glob(os.path.join(migrations, "[0-9][0-9][0-9][0-9]_*.sql"))):
        with open(f) as sql:
            for statement in split(sql.read()):
                db.execute(statement)
    db.execute("COMMIT")
    return db


def split(script):
    """Statements of a migration, for execute() (executescript would commit)."""
    out, cur = [], ""
    for line in script.splitlines(keepends=True):
        cur += line
        if sqlite3.complete_statement(cur):
            out.append(cur)
            cur = ""
    return out


SERIES = "WITH RECURSIVE s(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1 + ?2 - 1)"
CID = "'chg_f' || printf('%09d', i)"
BODY = ("CAST('{\"id\":\"' || " + CID + " || '\",\"status\":\"INITIATED\",\"amount\":1000,"
        "\"currency\":\"YER\",\"description\":\"Purchase of a watch\",\"transaction_url\":"
        "\"https://pay.cashpay.example/session/' || i || '\",\"created\":1672531200}' AS BLOB)")


def write_batch(db, first, size):
    """One transaction of @size webhooks; the rows are made by SQLite itself
    (a recursive CTE per table), so the Python interpreter costs nothing per
    row and the figure is SQLite's and the disk's."""
    db.execute("BEGIN IMMEDIATE")
    db.execute(f"""INSERT INTO orders (charge_id, status, amount, currency, description,
        transaction_url, charge_created, first_seen_at, updated_at)
        {SERIES} SELECT {CID}, 'INITIATED', 1000, 'YER', 'Purchase of a watch',
        'https://pay.cashpay.example/session/' || i, 1672531200, ?3, ?3 FROM s""",
               (first, size, NOW))
    db.execute(f"""INSERT INTO webhook_deliveries (id, received_at, remote_addr, charge_id,
        claimed_status, outcome, http_status, body)
        {SERIES} SELECT i + 1, ?3, '127.0.0.1', {CID}, 'INITIATED', 'applied', 200, {BODY}
        FROM s""", (first, size, NOW))
    db.execute(f"""INSERT INTO order_events (charge_id, to_status, delivery_id, recorded_at)
        {SERIES} SELECT {CID}, 'INITIATED', i + 1, ?3 FROM s""", (first, size, NOW))
    t = time.perf_counter()
    db.execute("COMMIT")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("migrations")
    ap.add_argument("work")
    args = ap.parse_args()
    for size in (int(b) for b in args.batches.split(",")):
        db = fresh_db(os.path.join(args.work, "floor.db"), args.migrations)
        n, commits, start = 0, [], time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            commits.append(write_batch(db, n, size))
            n += size
        elapsed = time.perf_counter() - start
        db.close()
        print(f"storage floor: {size:3d} webhook(s) per commit: {n / elapsed:8.0f} webhooks/s, "
              f"median COMMIT {statistics.median(commits) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
