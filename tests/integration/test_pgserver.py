"""The PostgreSQL server the tests start for themselves: it runs as an
unprivileged user on loopback only, takes a password over TCP, survives an
immediate stop with its committed data, and leaves nothing behind - after a
clean exit, an exception, or SIGTERM."""
import os
import pwd
import subprocess
import sys
import textwrap
import time

from harness import check, check_eq, run_tests
from pgserver import PASSWORD, PG_USER, PgServer, _alive, _owned_by, descendants


def process_user(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line")


def tree(pg):
    """The running server's processes: the postmaster and its descendants."""
    return [pg.pid] + descendants(pg.pid), pg.user.pw_uid


def left_over(snapshot):
    pids, uid = snapshot
    return [p for p in pids if _alive(p) and _owned_by(p, uid)]


def psql_tcp(pg, sql, password=PASSWORD):
    return subprocess.run([os.path.join(pg.bindir, "psql"), "-X", "-A", "-t", "-w", "-d", pg.url,
                           "-c", sql], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "PGPASSWORD": password})


def test_runs_unprivileged_on_loopback():
    with PgServer() as pg:
        check(pg.running(), "server running")
        check_eq(process_user(pg.pid), pg.user.pw_uid, "postmaster uid")
        check(pg.user.pw_uid != 0 and pg.user.pw_name == PG_USER, "not root")
        check(len(descendants(pg.pid)) >= 3, "postmaster and its helpers found")
        r = pg.query("SELECT current_setting('listen_addresses') AS l, "
                     "current_setting('unix_socket_directories') AS s")
        check_eq(r[0]["l"], "127.0.0.1", "listen_addresses")
        check(r[0]["s"].startswith(pg.dir), "socket inside the temporary directory")
        check(os.path.exists(os.path.join(pg.sockdir, f".s.PGSQL.{pg.port}")), "socket file")


def test_password_over_tcp():
    with PgServer() as pg:
        r = psql_tcp(pg, "SELECT 6 * 7")
        check_eq((r.returncode, r.stdout.strip()), (0, "42"), "right password")
        r = psql_tcp(pg, "SELECT 1", password="wrong")
        check(r.returncode != 0 and "password authentication failed" in r.stderr,
              f"wrong password refused: {r.stderr}")


def test_query_arguments_are_quoted():
    with PgServer() as pg:
        pg.execute("CREATE TABLE t (a text, b bigint, c bytea, d boolean)")
        pg.execute("INSERT INTO t VALUES ('x''; DROP TABLE t; --', 7, '\\x00ff', true)")
        rows = pg.query("SELECT * FROM t WHERE a = ? AND b = ?", "x'; DROP TABLE t; --", 7)
        check_eq(rows, [{"a": "x'; DROP TABLE t; --", "b": 7, "c": "\\x00ff", "d": True}], "row")
        check_eq(pg.query("SELECT * FROM t WHERE a = ?", None), [], "NULL matches nothing")


def test_immediate_stop_keeps_committed_data():
    with PgServer() as pg:
        pg.execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2)")
        before = tree(pg)
        pg.stop(mode="immediate")
        check(not left_over(before), "no process left after an immediate stop")
        pg.start()
        check_eq(pg.query("SELECT sum(n) AS s FROM t"), [{"s": 3}], "data after crash recovery")


def test_cleanup_after_exception():
    d = before = None
    try:
        with PgServer() as pg:
            d, before = pg.dir, tree(pg)
            raise RuntimeError("a failing test")
    except RuntimeError:
        pass
    check(not os.path.exists(d), "directory removed")
    check(not left_over(before), "server gone")


def test_cleanup_on_sigterm():
    """What meson's timeout does to a test: SIGTERM to the Python process."""
    here = os.path.dirname(os.path.abspath(__file__))
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {here!r})
        from pgserver import PgServer, descendants
        with PgServer() as pg:
            print(pg.dir, pg.pid, *descendants(pg.pid), flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        d, *pids = proc.stdout.readline().split()
        proc.terminate()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    check(proc.returncode != 0, "a test ended by SIGTERM fails")
    check(not os.path.exists(d), "directory removed after SIGTERM")
    deadline = time.monotonic() + 10
    before = [int(p) for p in pids], pwd.getpwnam(PG_USER).pw_uid
    check(len(before[0]) >= 3, "the child reported its server's processes")
    while left_over(before) and time.monotonic() < deadline:
        time.sleep(0.1)
    check(not left_over(before), "server gone after SIGTERM")


if __name__ == "__main__":
    run_tests([
        test_runs_unprivileged_on_loopback,
        test_password_over_tcp,
        test_query_arguments_are_quoted,
        test_immediate_stop_keeps_committed_data,
        test_cleanup_after_exception,
        test_cleanup_on_sigterm,
    ])
