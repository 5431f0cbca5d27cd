"""The store's API half (store-api.h) on both engines with one set of
tests: tests/store-api-backends.c, run once on a SQLite file and once on a
database of a PostgreSQL server this test starts (pgserver.py), each with
several handles at once.

Usage: test_store_api_backends.py STORE_API_BACKENDS
"""
import subprocess
import sys
import tempfile

from harness import check_eq, run_tests
from pgserver import PgServer

RUN = PG = None


def run(*args):
    r = subprocess.run([RUN, *args], capture_output=True, text=True, timeout=240)
    print(r.stdout + r.stderr, end="", flush=True)
    return r.returncode


def test_sqlite():
    with tempfile.TemporaryDirectory() as d:
        check_eq(run("sqlite", d), 0, "store-api-backends on SQLite")


def test_postgresql():
    PG.create_database("storeapi")
    check_eq(run("postgresql", PG.url_for("storeapi"), PG.password_file), 0,
             "store-api-backends on PostgreSQL")


def main():
    global RUN, PG
    RUN = sys.argv[1]
    with PgServer() as PG:
        run_tests([test_sqlite, test_postgresql])


if __name__ == "__main__":
    main()
