"""PostgreSQL faults under a steady webhook load, against the real daemon
on the test's own server (CONTRACT.md §9): the server restarted (fast and
immediate), the daemon's connection terminated in the middle of a
transaction and while idle, statements running past statement_timeout, a
failover to a promoted synchronous standby, the database's tablespace and
pg_wal on a full tmpfs, SIGKILL of the daemon in a loop, and the server
crashed (pg_ctl stop -m immediate) round after round.

Each time: answers while the database cannot commit are 503 (never a 2xx
that is not in the database afterwards), /healthz goes unavailable and
comes back, the same cashpayd process resumes by itself, every
acknowledged delivery is stored and every order's event chain is valid.
Reconnection attempts are counted from the daemon's log ("cannot connect
to PostgreSQL ...; trying again in N ms") and the server's
(log_connections): the backoff keeps them few.
"""
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from harness import Daemon, Tmpfs, charge, check, check_eq, random_charge_id, run_tests
from pgserver import PgServer

PG = None
SUMMARY = []
_dbs = iter(range(1, 1000))
RECOVERY_WAIT = 60  # seconds: a bound on a wait, not a figure that is checked


def new_daemon(extra=None, url_extra="", tablespace=None):
    db = f"fault{next(_dbs)}"
    PG.execute(f"CREATE DATABASE {db}" + (f" TABLESPACE {tablespace}" if tablespace else ""),
               db="postgres")
    # Two writer connections (not the default): every fault below then
    # meets two connections at once, each to find lost and replace by
    # itself; the other PostgreSQL tests run the default one.
    config = {"database.backend": "postgresql", "database.url": PG.url_for(db) + url_extra,
              "database.password_file": PG.password_file, "http.threads": "4",
              "database.writer_connections": "2", "log.level": "notice", **(extra or {})}
    return db, Daemon(config)


def post(daemon, cid, status, timeout=30):
    raw = json.dumps(charge(cid, status)).encode()
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=timeout)
    try:
        conn.request("POST", "/cashpay/webhook", body=raw, headers=daemon.sign_headers(raw))
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return "error"
    finally:
        conn.close()


def healthz(daemon):
    try:
        return daemon.admin("/healthz")[0]
    except OSError:
        return "error"


class Load:
    """Worker threads, each sending INITIATED then CAPTURED for one new
    charge after another, each delivery again after a non-200 (as CashPay
    retries) until it is acknowledged or the load stops; and a thread
    polling /healthz. Counts every answer; keeps what was acknowledged."""

    def __init__(self, daemon, workers=6):
        self.daemon = daemon
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.codes = {}
        self.acked = []          # (charge_id, status)
        self.health = []         # /healthz answers, consecutive repeats folded
        self.threads = [threading.Thread(target=self._work) for _ in range(workers)]
        self.threads.append(threading.Thread(target=self._poll_health))
        for t in self.threads:
            t.start()

    def _count(self, code):
        with self.lock:
            self.codes[code] = self.codes.get(code, 0) + 1

    def _work(self):
        for _ in range(100000):  # bounded
            if self.stop_event.is_set():
                return
            cid = random_charge_id()
            for status in ("INITIATED", "CAPTURED"):
                while not self.stop_event.is_set():
                    code = post(self.daemon, cid, status)
                    self._count(code)
                    if code == 200:
                        with self.lock:
                            self.acked.append((cid, status))
                        break
                    time.sleep(0.05)

    def _poll_health(self):
        while not self.stop_event.is_set():
            code = healthz(self.daemon)
            with self.lock:
                if not self.health or self.health[-1] != code:
                    self.health.append(code)
            time.sleep(0.1)

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def health_since(self, n):
        with self.lock:
            return self.health[n:]

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(120)
        check(not any(t.is_alive() for t in self.threads), "load threads did not stop")


def wait_until(predicate, what, timeout=RECOVERY_WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_progress(load, what, n=20):
    """At least @n more acknowledged deliveries and /healthz 200 as the
    load's own poller last saw it."""
    before = load.acked_count()
    wait_until(lambda: load.acked_count() >= before + n and load.health_since(-1) == [200], what)


def check_stored(db, acked, what, server=None):
    """Every acknowledged (charge, status) has its 200 delivery row, and
    every order's events form one chain ending in its status (on @server,
    the suite's server by default)."""
    server = server or PG
    stored = {(r["charge_id"], r["claimed_status"]) for r in server.query(
        "SELECT charge_id, claimed_status FROM webhook_deliveries WHERE http_status = 200", db=db)}
    lost = [a for a in acked if a not in stored]
    check_eq(lost, [], f"{what}: acknowledged deliveries missing")
    events = server.query("SELECT id, charge_id, from_status, to_status FROM order_events "
                          "ORDER BY id", db=db)
    last = {}
    for e in events:
        check_eq(e["from_status"], last.get(e["charge_id"]), f"{what}: event {e['id']} from_status")
        last[e["charge_id"]] = e["to_status"]
    orders = {o["charge_id"]: o["status"] for o in server.query(
        "SELECT charge_id, status FROM orders", db=db)}
    check_eq(last, orders, f"{what}: each order's status is its last event's to_status")
    for cid, status in acked:
        if status == "CAPTURED":
            check_eq(orders.get(cid), "CAPTURED", f"{what}: {cid} acknowledged CAPTURED")
    # nothing half: each event's delivery is an acknowledged one of its
    # charge claiming its to_status, and each delivery applied has its event
    half = server.query(
        "SELECT e.id FROM order_events e LEFT JOIN webhook_deliveries w ON w.id = e.delivery_id "
        "WHERE w.id IS NULL OR w.http_status <> 200 OR w.charge_id <> e.charge_id "
        "OR w.claimed_status <> e.to_status", db=db)
    check_eq(half, [], f"{what}: events without their acknowledged delivery")
    half = server.query(
        "SELECT w.id FROM webhook_deliveries w WHERE w.outcome = 'applied' AND NOT EXISTS "
        "(SELECT 1 FROM order_events e WHERE e.delivery_id = w.id)", db=db)
    check_eq(half, [], f"{what}: deliveries applied without their event")


def check_answers(codes, what):
    """Only 200 and 503 (and connection errors only where the daemon was killed)."""
    odd = {c: n for c, n in codes.items() if c not in (200, 503)}
    check_eq(odd, {}, f"{what}: answers other than 200 and 503")
    check(codes.get(503, 0) > 0, f"{what}: the fault was never seen as a 503: {codes}")


def reconnect_attempts(log_text):
    return len(re.findall(r"cannot connect to PostgreSQL", log_text))


def server_connections(log_text):
    return len(re.findall(r"connection received: host=127\.0\.0\.1", log_text))


# ------------------------------------------------------------ restart

class PortCounter:
    """While the server is down, a listener on its port that counts each
    connection and closes it at once: every connection attempt of every
    store handle of the daemon (libpq fails it as it would a refused one)."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.count = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._accept)
        self.thread.start()

    def _accept(self):
        while not self.stop_event.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.count += 1
            conn.close()

    def close(self):
        self.stop_event.set()
        self.thread.join(10)
        self.sock.close()
        return self.count


def restart_under_load(mode, outage=3.0):
    db, d = new_daemon()
    try:
        load = Load(d)
        try:
            wait_for_progress(load, "load to start")
            pid = d.proc.pid
            log_mark = len(d.log_text())
            health_mark = len(load.health_since(0))
            PG.stop(mode=mode)
            t0 = time.monotonic()
            counter = PortCounter(PG.port)
            try:
                time.sleep(outage)
            finally:
                tried = counter.close()
            down = time.monotonic() - t0
            server_mark = len(PG.log_text())
            PG.start()
            t1 = time.monotonic()
            wait_for_progress(load, f"service to resume after pg_ctl stop -m {mode}")
            resumed = time.monotonic() - t1
        finally:
            load.stop()
        check_eq(d.proc.pid, pid, "the same cashpayd process")
        check(d.proc.poll() is None, "cashpayd still running")
        check_answers(load.codes, f"restart -m {mode}")
        health = load.health_since(health_mark)
        check(503 in health, f"/healthz never said unavailable: {health}")
        check_eq(health[-1], 200, f"/healthz ready again: {health}")
        check_stored(db, load.acked, f"restart -m {mode}")
        logged = reconnect_attempts(d.log_text()[log_mark:])
        at_server = server_connections(PG.log_text()[server_mark:])
        # Without backoff each of the 6 senders' retries (every 50 ms) and
        # each health poll (every 100 ms) would try to connect: some 130 a
        # second. With it, each handle (the writer's two connections, as
        # new_daemon() sets, and 5 readers) tries after 100 ms,
        # doubling to 5 s: a second writer connection adds its own few.
        per_second = tried / down
        check(per_second < 15, f"{tried} connection attempts in {down:.1f} s: a storm")
        check(at_server < 40, f"{at_server} connections at the server after it came back")
        SUMMARY.append(f"pg_ctl stop -m {mode}, {down:.1f} s down: {load.codes}; "
                       f"/healthz {health}; {tried} connection attempts at the port while down "
                       f"({per_second:.1f}/s; the writer's {logged} logged), {at_server} "
                       f"connections at the server once back; "
                       f"service again {resumed:.1f} s after the server; "
                       f"{len(load.acked)} acknowledged, 0 lost")
    finally:
        d.__exit__(None, None, None)


def test_restart_fast_under_load():
    restart_under_load("fast")


def test_restart_immediate_under_load():
    restart_under_load("immediate")


# ------------------------------------------------------------ a dropped connection

def test_connection_terminated_mid_transaction():
    """A delivery for a charge whose row the test holds locked makes the
    daemon's transaction wait mid-way (after BEGIN and the batch's other
    statements); its backend is then terminated. That delivery is 503 and
    not stored; after the lock goes, it is acknowledged on a new
    connection. Then the same under load, terminating whatever the daemon's
    connections are doing, five times."""
    db, d = new_daemon()
    try:
        pid = d.proc.pid
        cid = random_charge_id()
        check_eq(post(d, cid, "INITIATED"), 200, "first delivery")
        with PG.session(db=db) as s:
            s.run(f"BEGIN; SELECT 1 FROM orders WHERE charge_id = '{cid}' FOR UPDATE")
            answer = {}
            t = threading.Thread(target=lambda: answer.setdefault("code", post(d, cid, "CAPTURED")))
            t.start()
            wait_until(lambda: PG.query(
                "SELECT 1 FROM pg_stat_activity WHERE datname = ? AND application_name = "
                "'cashpayd' AND wait_event_type = 'Lock'", db, db="postgres"),
                "the daemon's transaction to wait for the row lock")
            killed = PG.query("SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity "
                              "WHERE datname = ? AND application_name = 'cashpayd' AND "
                              "wait_event_type = 'Lock'", db, db="postgres")
            check_eq(killed, [{"t": True}], "the waiting backend terminated")
            t.join(60)
            check_eq(answer.get("code"), 503, "the delivery whose transaction was cut off")
            s.run("ROLLBACK")
        rows = PG.query("SELECT claimed_status FROM webhook_deliveries WHERE charge_id = ?", cid,
                        db=db)
        check_eq(rows, [{"claimed_status": "INITIATED"}], "nothing of the cut-off transaction")
        wait_until(lambda: post(d, cid, "CAPTURED") == 200, "the retry to be acknowledged")
        check_eq(PG.query("SELECT status FROM orders WHERE charge_id = ?", cid, db=db),
                 [{"status": "CAPTURED"}], "the retry applied")

        load = Load(d)
        try:
            wait_for_progress(load, "load to start")
            terminated = 0
            for _ in range(5):
                n = PG.query("SELECT count(*) AS n FROM (SELECT pg_terminate_backend(pid) "
                             "FROM pg_stat_activity WHERE datname = ? AND application_name = "
                             "'cashpayd' AND state <> 'idle') AS q", db, db="postgres")[0]["n"]
                terminated += n
                wait_for_progress(load, "service to resume after pg_terminate_backend")
        finally:
            load.stop()
        check_eq(d.proc.pid, pid, "the same cashpayd process")
        check_stored(db, load.acked + [(cid, "INITIATED"), (cid, "CAPTURED")], "terminate")
        odd = {c: n for c, n in load.codes.items() if c not in (200, 503)}
        check_eq(odd, {}, "answers other than 200 and 503")
        SUMMARY.append(f"pg_terminate_backend: the cut-off transaction 503 and not stored; "
                       f"under load 5 rounds, {terminated} busy backends terminated: "
                       f"{load.codes}; {len(load.acked)} acknowledged, 0 lost")
    finally:
        d.__exit__(None, None, None)


def test_idle_connection_dropped():
    """The daemon's connections terminated while idle (as a server restart
    in a quiet hour, idle_session_timeout or a middlebox would): the next
    webhook is acknowledged on a new connection, not answered 503 for the
    dead one, which only shows itself when used."""
    db, d = new_daemon()
    try:
        check_eq(post(d, random_charge_id(), "CAPTURED"), 200, "before")
        for round_ in range(3):
            check(PG.terminate_connections(db) >= 1, "the daemon's connections terminated")
            cid = random_charge_id()
            check_eq(post(d, cid, "CAPTURED"), 200, f"round {round_}: the first webhook after")
            check_eq(healthz(d), 200, f"round {round_}: /healthz after")
            check_stored(db, [(cid, "CAPTURED")], "idle drop")
    finally:
        d.__exit__(None, None, None)


# ------------------------------------------------------------ statement timeout

def test_statement_timeout():
    """The orders table locked by the test (ACCESS EXCLUSIVE) while the
    daemon's statements run under statement_timeout = 500 ms (from the
    connection string's options): 503s, /healthz unavailable, nothing of a
    timed-out transaction stored; the lock released, service resumes."""
    db, d = new_daemon(url_extra=" options='-c statement_timeout=500'")
    try:
        pid = d.proc.pid
        load = Load(d)
        try:
            wait_for_progress(load, "load to start")
            with PG.session(db=db) as s:
                health_mark = len(load.health_since(0))
                s.run("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                wait_until(lambda: 503 in load.health_since(health_mark),
                           "/healthz to say unavailable while statements time out")
                # answers to what committed before the lock have arrived by
                # now (a statement has timed out since): none may follow
                mark = load.acked_count()
                time.sleep(2)
                check_eq(load.acked_count(), mark, "nothing acknowledged while orders is locked")
                s.run("ROLLBACK")
            wait_for_progress(load, "service to resume once the lock is gone")
        finally:
            load.stop()
        check_eq(d.proc.pid, pid, "the same cashpayd process")
        check_answers(load.codes, "statement timeout")
        check("database statement timed out" in d.log_text() or
              "statement timeout" in d.log_text(), "the log says statements timed out")
        check_stored(db, load.acked, "statement timeout")
        SUMMARY.append(f"statement_timeout 500 ms, orders locked 2 s: {load.codes}; /healthz "
                       f"{load.health_since(health_mark)}; {len(load.acked)} acknowledged, 0 lost")
    finally:
        d.__exit__(None, None, None)


# ------------------------------------------------------------ failover

def test_failover_to_promoted_standby():
    """A primary and its streaming standby (pg_basebackup -R) with
    synchronous replication, so that a COMMIT returns once the standby has
    flushed it; cashpayd's url names both hosts with
    target_session_attrs=read-write. The primary crashes (stop -m
    immediate): 503s, also while only the read-only standby answers; it is
    promoted, and the same cashpayd process writes to it. Every delivery
    acknowledged, before and after the failover, is on the new primary."""
    with PgServer(settings={"log_connections": "on"}) as primary, \
            PgServer(standby_of=primary, settings={"log_connections": "on"}) as standby:
        primary.make_replication_synchronous()
        url = (f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} dbname=cashpay "
               "user=postgres target_session_attrs=read-write connect_timeout=5")
        d = Daemon({"database.backend": "postgresql", "database.url": url,
                    "database.password_file": primary.password_file, "http.threads": "4",
                    "log.level": "notice"})
        try:
            pid = d.proc.pid
            load = Load(d)
            try:
                wait_for_progress(load, "load on the primary", n=50)
                health_mark = len(load.health_since(0))
                log_mark = len(d.log_text())
                primary.stop(mode="immediate")
                t0 = time.monotonic()
                time.sleep(2)  # only the standby, read-only, is there
                before_promotion = load.acked_count()
                time.sleep(1)
                check_eq(load.acked_count(), before_promotion,
                         "nothing acknowledged while only the standby answers")
                standby_mark = len(standby.log_text())
                standby.promote()
                wait_for_progress(load, "service on the promoted standby", n=50)
                down = time.monotonic() - t0
            finally:
                load.stop()
            check_eq(d.proc.pid, pid, "the same cashpayd process")
            check_answers(load.codes, "failover")
            health = load.health_since(health_mark)
            check(503 in health and health[-1] == 200, f"/healthz through the failover: {health}")
            check_stored("cashpay", load.acked, "failover", server=standby)
            attempts = reconnect_attempts(d.log_text()[log_mark:])
            at_standby = server_connections(standby.log_text()[standby_mark:])
            SUMMARY.append(f"failover (synchronous standby promoted 3 s after the primary "
                           f"crashed; 50 more acknowledged {down:.1f} s after the crash): "
                           f"{load.codes}; /healthz {health}; the writer logged {attempts} "
                           f"failed connection attempts, "
                           f"{at_standby} connections at the new primary once promoted; "
                           f"{len(load.acked)} acknowledged, 0 lost")
        finally:
            d.__exit__(None, None, None)


# ------------------------------------------------------------ disk full

def test_disk_full():
    """The daemon's database in a tablespace on a small tmpfs (pg_wal stays
    on the server's own disk), filled up under load: 503s (PostgreSQL's
    disk_full, "could not extend file"), /healthz unavailable, nothing
    acknowledged; idle, /healthz stays unavailable while the disk is full
    (the writer's probe must grow a file there too); the filler removed,
    /healthz is ready with no webhook sent and the same process takes
    webhooks again."""
    base = tempfile.mkdtemp(prefix="cashpayd-pgdisk-")
    os.chmod(base, 0o755)  # the server's user reaches the mount point
    fs = Tmpfs(os.path.join(base, "ts"), "24m", PG.user)
    d = None
    try:
        PG.execute(f"CREATE TABLESPACE small LOCATION '{fs.path}'", db="postgres")
        db, d = new_daemon(tablespace="small")
        pid = d.proc.pid
        load = Load(d)
        try:
            wait_for_progress(load, "load to start")
            health_mark = len(load.health_since(0))
            filler = fs.fill()
            wait_until(lambda: 503 in load.health_since(health_mark),
                       "/healthz to say unavailable once the disk is full")
            mark = load.acked_count()
            time.sleep(2)
            during = load.acked_count() - mark
        finally:
            load.stop()
        check_eq(during, 0, "acknowledged while the disk is full")
        idle = []
        for _ in range(30):  # 3 s idle: the writer probes each idle second
            idle.append(healthz(d))
            time.sleep(0.1)
        check_eq(set(idle), {503}, "/healthz while idle with the disk full")
        os.unlink(filler)
        wait_until(lambda: healthz(d) == 200, "/healthz ready again with no webhook sent")
        check("takes writes again" in d.log_text(), "the log says the database takes writes again")
        after = [random_charge_id() for _ in range(5)]
        for cid in after:
            check_eq(post(d, cid, "CAPTURED"), 200, "a webhook once there is space again")
        check_eq(d.proc.pid, pid, "the same cashpayd process")
        check_answers(load.codes, "disk full")
        check("disk full" in d.log_text(), "the log says the disk is full")
        check_stored(db, load.acked + [(cid, "CAPTURED") for cid in after], "disk full")
        SUMMARY.append(f"disk full (tablespace on a 24 MiB tmpfs): {load.codes}, 0 acknowledged "
                       f"in the 2 s after /healthz said unavailable; /healthz "
                       f"{load.health_since(health_mark)}, then 503 idle for 3 s while full, "
                       f"200 once space was freed with no webhook sent; "
                       f"{len(load.acked) + len(after)} acknowledged, 0 lost")
    finally:
        if d:
            d.__exit__(None, None, None)
            PG.execute(f"DROP DATABASE {db}", db="postgres")
        PG.psql("DROP TABLESPACE IF EXISTS small", db="postgres", check_rc=False)
        fs.unmount()
        shutil.rmtree(base, ignore_errors=True)


def test_wal_disk_full():
    """pg_wal of a server of its own on a small tmpfs, filled up under
    load: PostgreSQL cannot write WAL and panics (its postmaster then
    goes through crash recovery); cashpayd answers 503 meanwhile. Space
    freed and the server restarted (as an operator would), the same
    cashpayd process serves again, and every acknowledged delivery is
    there."""
    base = tempfile.mkdtemp(prefix="cashpayd-pgwal-")
    os.chmod(base, 0o755)
    with PgServer(settings={"max_wal_size": "'64MB'", "min_wal_size": "'32MB'"}) as srv:
        fs = Tmpfs(os.path.join(base, "wal"), "80m", srv.user)
        d = None
        try:
            srv.stop()
            wal = os.path.join(srv.data, "pg_wal")
            for name in os.listdir(wal):
                shutil.move(os.path.join(wal, name), fs.path)
            os.rmdir(wal)
            for root, dirs, files in os.walk(fs.path):  # copied by root: the server's again
                for name in dirs + files:
                    os.chown(os.path.join(root, name), srv.user.pw_uid, srv.user.pw_gid)
            os.symlink(fs.path, wal)
            srv.start()
            d = Daemon({"database.backend": "postgresql", "database.url": srv.url,
                        "database.password_file": srv.password_file, "http.threads": "4",
                        "log.level": "notice"})
            pid = d.proc.pid
            load = Load(d)
            try:
                wait_for_progress(load, "load to start")
                health_mark = len(load.health_since(0))
                filler = fs.fill()
                wait_until(lambda: 503 in load.health_since(health_mark),
                           "/healthz to say unavailable once pg_wal is full", timeout=120)
                wait_until(lambda: "PANIC" in srv.log_text() or not srv.running(),
                           "the server to give up", timeout=120)
                time.sleep(1)
                panicked = "PANIC" in srv.log_text()
                still_up = srv.running()
                os.unlink(filler)
                srv.stop(mode="immediate")
                srv.start()
                wait_for_progress(load, "service once pg_wal has room and the server is back")
            finally:
                load.stop()
            check_eq(d.proc.pid, pid, "the same cashpayd process")
            check_answers(load.codes, "pg_wal full")
            check_stored("cashpay", load.acked, "pg_wal full", server=srv)
            SUMMARY.append(f"pg_wal full (an 80 MiB tmpfs): server PANIC {panicked}, postmaster "
                           f"{'still' if still_up else 'no longer'} running before space was "
                           f"freed; "
                           f"{load.codes}; /healthz {load.health_since(health_mark)}; "
                           f"{len(load.acked)} acknowledged, 0 lost")
        finally:
            if d:
                d.__exit__(None, None, None)
            srv.stop(mode="immediate")
            fs.unmount()
            shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------ SIGKILL loop

def test_sigkill_loop():
    """Load, SIGKILL of the daemon at a random moment, start again: 8
    rounds on one database; every acknowledged delivery stored, every
    chain valid."""
    db, d = new_daemon()
    acked, codes = [], {}
    rng = random.Random()
    try:
        for round_ in range(8):
            load = Load(d)
            try:
                wait_for_progress(load, f"round {round_}: load", n=5)
                time.sleep(rng.uniform(0.1, 1.5))
                d.kill_tree()
            finally:
                load.stop()
            acked += load.acked
            for c, n in load.codes.items():
                codes[c] = codes.get(c, 0) + n
            d.start()
        check_stored(db, acked, "SIGKILL loop")
        odd = {c: n for c, n in codes.items() if c not in (200, 503, "error")}
        check_eq(odd, {}, "answers other than 200, 503 and a connection cut by SIGKILL")
        SUMMARY.append(f"SIGKILL loop, 8 rounds: {codes}; {len(acked)} acknowledged, 0 lost")
    finally:
        d.__exit__(None, None, None)


def test_server_crash_loop():
    """pg_ctl stop -m immediate under load, 5 rounds, the server started
    again after a second each time: 0 acknowledged deliveries lost."""
    db, d = new_daemon()
    try:
        pid = d.proc.pid
        load = Load(d)
        try:
            for round_ in range(5):
                wait_for_progress(load, f"round {round_}: service")
                PG.stop(mode="immediate")
                time.sleep(1.0)
                PG.start()
            wait_for_progress(load, "service after the last crash")
        finally:
            load.stop()
        check_eq(d.proc.pid, pid, "the same cashpayd process")
        check_answers(load.codes, "server crash loop")
        check_stored(db, load.acked, "server crash loop")
        SUMMARY.append(f"pg_ctl stop -m immediate, 5 rounds: {load.codes}; "
                       f"{len(load.acked)} acknowledged, 0 lost")
    finally:
        d.__exit__(None, None, None)


def main():
    global PG
    with PgServer(settings={"log_connections": "on"}) as PG:
        tests = [
            test_restart_fast_under_load,
            test_restart_immediate_under_load,
            test_connection_terminated_mid_transaction,
            test_idle_connection_dropped,
            test_statement_timeout,
            test_failover_to_promoted_standby,
            test_disk_full,
            test_wal_disk_full,
            test_sigkill_loop,
            test_server_crash_loop,
        ]
        # by hand: test_pg_faults.py NAME... runs only those
        picked = [t for t in tests if t.__name__ in sys.argv[1:]]
        try:
            run_tests(picked or tests)
        finally:
            for line in SUMMARY:
                print("     " + line, flush=True)


if __name__ == "__main__":
    main()
