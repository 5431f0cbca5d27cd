"""Shared pieces of the hostile-conditions tests.

Builds on tests/integration/harness.py (the real daemon on loopback ports
with a temporary database) and adds what the crash and fault tests need:
deliveries that can be found again in the database (each body carries a
unique nonce), a client that records what happened to every request, the
database invariants checked after every crash or fault, and a daemon
launched under libfiu's fault injection.
"""
import http.client
import json
import os
import random
import signal
import socket
import string
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from harness import Daemon, Tmpfs, asan_runtime, charge, check, check_eq, run_tests  # noqa: E402,F401

ACCEPTED = ("applied", "duplicate", "stale", "conflict")


def nonce():
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=20))


class Delivery:
    """One webhook as sent, and what became of it."""

    def __init__(self, charge_id, status, amount=2000):
        self.charge_id = charge_id
        self.status = status
        self.nonce = nonce()
        body = charge(charge_id, status=status, amount=amount)
        body["nonce"] = self.nonce
        self.raw = json.dumps(body).encode()
        self.amount = amount
        self.http_status = None   # None: no answer arrived
        self.headers = {}
        self.outcome = None
        self.error = None

    @property
    def acked(self):
        return self.http_status is not None and 200 <= self.http_status < 300

    def send(self, conn, daemon):
        """POST over @conn; returns False when the connection broke."""
        try:
            conn.request("POST", "/cashpay/webhook", self.raw, daemon.sign_headers(self.raw))
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.error = type(e).__name__
            return False
        self.http_status = resp.status
        self.headers = dict(resp.getheaders())
        if resp.status == 200:
            self.outcome = json.loads(data).get("outcome")
        return True


def connection(daemon, timeout=30):
    return http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=timeout)


def post_delivery(daemon, delivery, timeout=30):
    conn = connection(daemon, timeout)
    try:
        delivery.send(conn, daemon)
    finally:
        conn.close()
    return delivery


def timed_get(port, path, timeout=5):
    """(status, seconds) of one GET on a fresh connection."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - started
    finally:
        conn.close()


# ------------------------------------------------------------ the database

def stored_by_nonce(daemon, after_id=0):
    """{nonce: row} for every delivery row past @after_id that has a nonce."""
    rows = daemon.query("SELECT id, charge_id, claimed_status, outcome, http_status, body "
                        "FROM webhook_deliveries WHERE id > ?", after_id)
    found = {}
    for row in rows:
        try:
            n = json.loads(row["body"]).get("nonce")
        except (ValueError, TypeError, AttributeError):
            continue
        if n:
            found.setdefault(n, []).append(row)
    return found


# Each query lists what breaks one invariant of orders/order_events.
INVARIANTS = {
    "last event's to_status is the order's status":
        "SELECT o.charge_id FROM orders o WHERE o.status IS NOT "
        "(SELECT to_status FROM order_events e WHERE e.charge_id = o.charge_id "
        " ORDER BY e.id DESC LIMIT 1)",
    "first event comes from NULL":
        "SELECT e.charge_id FROM order_events e WHERE e.id = "
        "(SELECT min(id) FROM order_events f WHERE f.charge_id = e.charge_id) "
        "AND e.from_status IS NOT NULL",
    "each event starts where the previous one ended":
        "SELECT charge_id FROM (SELECT charge_id, from_status, "
        "lag(to_status) OVER (PARTITION BY charge_id ORDER BY id) AS prev, "
        "row_number() OVER (PARTITION BY charge_id ORDER BY id) AS n FROM order_events) "
        "WHERE n > 1 AND from_status IS NOT prev",
    "no status applied twice":
        "SELECT charge_id FROM order_events GROUP BY charge_id, to_status HAVING count(*) > 1",
    "every event belongs to an order":
        "SELECT e.charge_id FROM order_events e LEFT JOIN orders o USING (charge_id) "
        "WHERE o.charge_id IS NULL",
    "every event was caused by an applied delivery":
        "SELECT e.charge_id FROM order_events e LEFT JOIN webhook_deliveries d "
        "ON d.id = e.delivery_id WHERE d.outcome IS NOT 'applied' "
        "OR d.claimed_status IS NOT e.to_status OR d.charge_id IS NOT e.charge_id",
    "every applied delivery has its event":
        "SELECT d.charge_id FROM webhook_deliveries d LEFT JOIN "
        "(SELECT delivery_id, count(*) AS n FROM order_events GROUP BY delivery_id) e "
        "ON e.delivery_id = d.id WHERE d.outcome = 'applied' AND coalesce(e.n, 0) != 1",
    "every order has an event":
        "SELECT o.charge_id FROM orders o WHERE NOT EXISTS "
        "(SELECT 1 FROM order_events e WHERE e.charge_id = o.charge_id)",
}


def check_database(daemon):
    """PRAGMA integrity_check and every invariant above."""
    integrity = daemon.query("PRAGMA integrity_check")
    check_eq([r["integrity_check"] for r in integrity], ["ok"], "PRAGMA integrity_check")
    for what, sql in INVARIANTS.items():
        bad = daemon.query(sql)
        check(not bad, f"{what}: broken for {[r['charge_id'] for r in bad][:5]}")


def check_acked_stored(daemon, deliveries, found=None):
    """Every 2xx has its row with the outcome it was answered with, and its
    effect. Returns the number of 2xx whose row is missing (lost)."""
    found = stored_by_nonce(daemon) if found is None else found
    first = min((r["id"] for rows in found.values() for r in rows), default=0)
    events = {}
    for e in daemon.query("SELECT delivery_id, to_status FROM order_events WHERE delivery_id >= ?",
                          first):
        events.setdefault(e["delivery_id"], []).append(e["to_status"])
    lost = 0
    for d in deliveries:
        if not d.acked:
            continue
        rows = found.get(d.nonce)
        if not rows:
            lost += 1
            continue
        check_eq(len(rows), 1, f"rows for {d.nonce}")
        row = rows[0]
        check_eq((row["charge_id"], row["claimed_status"], row["outcome"]),
                 (d.charge_id, d.status, d.outcome), f"stored row of {d.nonce}")
        if d.outcome == "applied":
            check_eq(events.get(row["id"]), [d.status], f"event of {d.nonce}")
    return lost


# ------------------------------------------------------------ fault injection

FIU_LIB = "/usr/lib/fiu"


def fault_module():
    path = os.environ.get("FAULT_NTH_MODULE")
    if not path or not os.path.exists(path):
        sys.exit("FAULT_NTH_MODULE is not set (meson sets it to the built fault-nth module)")
    return path


class FaultDaemon(Daemon):
    """cashpayd under `fiu-run -x` (libfiu's POSIX preload, remote control on
    a FIFO in the test directory) plus the fault-nth module.

    In an ASan build the sanitizer runtime must initialise before libfiu's
    wrappers can run, so it is preloaded first; its interceptors then pass
    I/O calls on to libfiu, but its allocator owns malloc, which libfiu can
    therefore not fail (see uses_asan). With @valgrind, the daemon runs under
    memcheck and any leak or invalid access makes it exit non-zero."""

    # nouserintercepts: memcheck must not take over libfiu's malloc (an
    # object without a soname, like the program itself), so that libfiu can
    # fail it and pass the rest on.
    VALGRIND = ["valgrind", "-q", "--soname-synonyms=somalloc=nouserintercepts",
                "--leak-check=full", "--show-leak-kinds=definite",
                "--errors-for-leak-kinds=definite",
                "--error-exitcode=99"]

    def __init__(self, extra_config=None, commands=(), fault=None, valgrind=False, **kw):
        self.commands = list(commands)
        self.valgrind = valgrind
        env = dict(kw.pop("env", {}) or {})
        if fault:
            env.update({"FAULT_NTH_" + k.upper(): str(v) for k, v in fault.items()})
        self.asan = asan_runtime(os.environ.get("CASHPAYD", ""))
        if self.asan:
            supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lsan-libfiu.supp")
            lsan = env.get("LSAN_OPTIONS", os.environ.get("LSAN_OPTIONS", ""))
            env["LSAN_OPTIONS"] = ":".join(x for x in (lsan, f"suppressions={supp}") if x)
        super().__init__(extra_config, env=env, **kw)

    @property
    def uses_asan(self):
        return self.asan is not None

    @property
    def report_path(self):
        return os.path.join(self.dir, "fault-report")

    def start(self, wait=True):
        for tool in ("fiu-run", "fiu-ctrl"):
            if not any(os.access(os.path.join(p, tool), os.X_OK)
                       for p in os.environ.get("PATH", "").split(":")):
                raise AssertionError(f"{tool} not found: install the Debian package fiu-utils")
        self.env["FAULT_NTH_REPORT"] = self.report_path
        self.env["FAULT_NTH_CONTROL"] = os.path.join(self.dir, "fault-control")
        cmd = ["fiu-run", "-x", "-f", os.path.join(self.dir, "fiu")]
        for c in self.commands:
            cmd += ["-c", c]
        # fiu-run sets LD_PRELOAD itself; add the fault-nth module after its
        # libraries (and the ASan runtime before them)
        first = self.asan or ""
        cmd += ["/bin/sh", "-c", f'LD_PRELOAD="{first} $LD_PRELOAD $0" exec "$@"', fault_module()]
        cmd += (self.VALGRIND if self.valgrind else []) + [self.binary, "--config", self.config_path]
        self.launch(cmd)
        if wait:
            self.wait_ready()

    def ctrl(self, command):
        """Run one libfiu remote-control command in the running daemon."""
        out = subprocess.run(["fiu-ctrl", "-f", os.path.join(self.dir, "fiu"), "-c", command,
                              str(self.proc.pid)], capture_output=True, text=True, timeout=10)
        check_eq(out.returncode, 0, f"fiu-ctrl {command!r}: {out.stderr.strip()}")

    def arm(self, n=None, mode="once"):
        """Count calls from now on; with @n, fail the n-th (and, with
        mode "always", every later) call instead of what the environment said."""
        if n is not None:
            with open(self.env["FAULT_NTH_CONTROL"], "w") as f:
                f.write(f"{n} {mode}\n")
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.01)  # let the signal land before the first request

    def disarm(self):
        """Stop failing; returns (calls seen, calls failed) since arming."""
        try:
            os.unlink(self.report_path)
        except FileNotFoundError:
            pass
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(self.report_path) as f:
                    text = f.read()
                if text.endswith("\n"):
                    calls, failed = text.split()
                    return int(calls), int(failed)
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        raise AssertionError("the fault-nth module did not report")


class UserDaemon(Daemon):
    """cashpayd as an unprivileged user (nobody), as systemd runs it: root
    ignores file modes, so a database made read-only only shows this way."""

    UID = GID = 65534

    def start(self, wait=True):
        for root, dirs, files in os.walk(self.dir):
            for name in dirs + files + ["."]:
                os.chown(os.path.join(root, name), self.UID, self.GID)
        self.launch(["setpriv", f"--reuid={self.UID}", f"--regid={self.GID}", "--clear-groups",
                     self.binary, "--config", self.config_path])
        if wait:
            self.wait_ready()


def wait_for(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def alive(daemon):
    return daemon.proc.poll() is None


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


__all__ = ["ACCEPTED", "Daemon", "asan_runtime", "Delivery", "FaultDaemon", "Tmpfs", "UserDaemon", "alive",
           "charge", "check", "check_acked_stored", "check_database", "check_eq", "connection",
           "nonce", "port_open", "post_delivery", "run_tests", "stored_by_nonce", "timed_get",
           "wait_for"]
