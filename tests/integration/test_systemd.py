"""cashpayd speaking systemd's protocols, without systemd as PID 1.

Socket activation through systemd-socket-activate and through sockets this
test holds itself (to see them survive a stop), the notify protocol on a
datagram socket of our own (READY, STATUS, RELOADING, STOPPING, WATCHDOG),
the watchdog against a stalled and a merely busy writer, reloads (a rotated
secret with requests running across the SIGHUP, a broken configuration),
and the database shared with a second Unix user through group cashpay.
"""
import contextlib
import grp
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import harness
from harness import (Daemon, charge, check, check_eq, free_port, hmac_hex, reachable_by_everyone,
                     run_tests)

SANITIZER_VARS = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS")

# Runs a command in place (same pid) after moving the given descriptors to 3, 4, …
# and setting each NAME_PID variable to that pid: what systemd does before it
# executes a service, so that sd_listen_fds() and sd_watchdog_enabled() accept
# what they are given.
EXEC_AS_SERVICE = r"""
import os, sys
sep = sys.argv.index("--")
fds = [int(x) for x in sys.argv[1].split(",") if x]
for name in sys.argv[2].split(","):
    if name:
        os.environ[name] = str(os.getpid())
tmp = [os.dup(fd) for fd in fds]
for i, fd in enumerate(tmp):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.execv(sys.argv[sep + 1], sys.argv[sep + 1:])
"""


class Notifications:
    """A NOTIFY_SOCKET of our own: every datagram, parsed, with its arrival time."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []  # (monotonic time, {KEY: value})
        self.cond = threading.Condition()
        self.on_ready = None
        self.stopped = False
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self):
        while not self.stopped:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            if "READY" in fields and self.on_ready:
                self.on_ready(fields)
            with self.cond:
                self.messages.append((time.monotonic(), fields))
                self.cond.notify_all()

    def wait_for(self, predicate, after=0, timeout=15, what="notification"):
        """Index of the first message at or after @after matching @predicate."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(after, len(self.messages)):
                    if predicate(self.messages[i][1]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout}s; got "
                                         f"{[m for _, m in self.messages[after:]]}")
                self.cond.wait(left)

    def wait_key(self, key, after=0, timeout=15):
        return self.wait_for(lambda m: key in m, after, timeout, key)

    def count(self):
        with self.cond:
            return len(self.messages)

    def times(self, key, start=0.0, end=float("inf")):
        with self.cond:
            return [t for t, m in self.messages if key in m and start <= t <= end]

    def close(self):
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


class ServiceDaemon(Daemon):
    """A Daemon started the way a service manager would: with a wrapper
    command (systemd-socket-activate, EXEC_AS_SERVICE) and extra options
    for subprocess.Popen (user=, group=)."""

    def __init__(self, extra_config=None, wrapper=None, popen_kw=None, start=True, **kw):
        self.wrapper = wrapper or []
        self.popen_kw = popen_kw or {}
        super().__init__(extra_config, start=start, **kw)

    def command(self):
        # A tool from CASHPAYD_WRAPPER (valgrind) runs in the same process too.
        tool = getattr(harness, "WRAPPER", [])
        return self.wrapper + tool + [self.binary, "--config", self.config_path]

    def start(self, wait=True):
        self.launch(self.command(), **self.popen_kw)
        if wait:
            self.wait_ready()

    def close(self, passed=None):
        """Stop; remove the directory unless an exception is on its way
        (its log and database are then kept for a look)."""
        if passed is None:
            passed = sys.exc_info()[0] is None
        try:
            self.stop()
        except BaseException:
            self.kill_tree()
            super().close(passed=False)
            raise
        super().close(passed)

    def wait_log(self, text, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not logged:\n{self.log_text()}")


def sanitizer_env():
    return {k: v for k, v in os.environ.items() if k in SANITIZER_VARS}


def as_service(fds=(), pid_vars=()):
    return [sys.executable, "-c", EXEC_AS_SERVICE, ",".join(str(fd) for fd in fds),
            ",".join(pid_vars), "--"]


def socket_activate(listen, names=None, env=None):
    """systemd-socket-activate listening on @listen (host:port strings)."""
    tool = shutil.which("systemd-socket-activate")
    check(tool is not None, "systemd-socket-activate is not installed (package systemd)")
    cmd = [tool]
    for address in listen:
        cmd += ["-l", address]
    if names:
        cmd.append("--fdname=" + ":".join(names))
    # It passes on only what it is told to: the sanitizers' settings included.
    for key, value in {**sanitizer_env(), **(env or {})}.items():
        cmd += ["-E", f"{key}={value}"]
    return cmd


def listening_socket(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def refuses(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def healthz(d, port):
    status, _, body = d.request("GET", "/healthz", port=port)
    return status, json.loads(body)


def post_with_secret(d, secret, payload=None, conn=None):
    """POST a webhook signed with @secret; status, on @conn when given."""
    raw = json.dumps(payload or charge()).encode()
    headers = {"Content-Type": "application/json", "X-CashPay-Signature": hmac_hex(secret, raw)}
    if conn is None:
        return d.post(raw, headers=headers, sign=False)[0]
    conn.request("POST", "/cashpay/webhook", body=raw, headers=headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status


# ------------------------------------------------------------ socket activation

def test_socket_activation_named():
    """Both listeners passed and named: the webhook that triggers activation
    is served, /healthz answers on the admin socket, and the ports of the
    configuration stay unbound."""
    http_port, admin_port = free_port(), free_port()
    d = ServiceDaemon(start=False)
    notify = Notifications(d.dir)
    d.wrapper = socket_activate([f"127.0.0.1:{http_port}", f"127.0.0.1:{admin_port}"],
                                names=["http", "admin"], env={"NOTIFY_SOCKET": notify.path})
    try:
        d.start(wait=False)
        d.wait_log(f"127.0.0.1:{admin_port}")
        check(d.proc.poll() is None, "systemd-socket-activate is waiting")
        check(not os.path.exists(d.db_path), "nothing started before the first connection")
        config_ports = (d.port, d.admin_port)
        d.port, d.admin_port = http_port, admin_port
        body = charge()
        status, reply = d.post_json(body)  # queued in the backlog until cashpayd runs
        check_eq((status, reply), (200, {"outcome": "applied"}), "webhook through activation")
        check_eq(d.query("SELECT status FROM orders WHERE charge_id = ?", body["id"]),
                 [{"status": "CAPTURED"}], "order recorded")
        check_eq(healthz(d, admin_port)[0], 200, "healthz on the admin socket")
        status, _, _ = d.request("GET", "/healthz", port=http_port)
        check(status != 200, "the public socket does not serve /healthz")
        for port in config_ports:
            check(refuses(port), f"configured port {port} is not bound")
        notify.wait_key("READY")
        check("1 public and 1 admin listener(s)" in d.log_text(), d.log_text())
        check_eq(d.stop(), 0, "exit status")
    finally:
        d.close()
        notify.close()


def test_socket_activation_unnamed():
    """Sockets without names (systemd-socket-activate without --fdname) are
    public listeners; the admin listener is then bound from the config."""
    ports = [free_port(), free_port()]
    d = ServiceDaemon(start=False)
    d.wrapper = socket_activate([f"127.0.0.1:{p}" for p in ports])
    try:
        d.start(wait=False)
        d.wait_log(f"127.0.0.1:{ports[1]}")
        configured = d.port
        for port in ports:
            d.port = port
            status, reply = d.post_json(charge())
            check_eq((status, reply), (200, {"outcome": "applied"}), f"webhook on {port}")
        check_eq(healthz(d, d.admin_port)[0], 200, "admin bound from the config")
        check(refuses(configured), "[http] listen is not used")
        check("2 public and 1 admin listener(s)" in d.log_text(), d.log_text())
        check_eq(d.stop(), 0, "exit status")
    finally:
        d.close()


def test_socket_activation_unknown_name_refused():
    port = free_port()
    d = ServiceDaemon(start=False)
    d.wrapper = socket_activate([f"127.0.0.1:{port}"], names=["metrics"])
    try:
        d.start(wait=False)
        d.wait_log(f"127.0.0.1:{port}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        check_eq(d.proc.wait(20), 1, "exit status")
        check('unknown FileDescriptorName "metrics"' in d.log_text(), d.log_text())
    finally:
        d.close()


def test_socket_activation_checkout():
    """The checkout listener passed as "checkout" (with api_url set) creates
    charges; its configured port stays unbound. Without api_url a passed
    checkout socket is refused by name."""
    from test_reconcile import Sim
    http_port, checkout_port = free_port(), free_port()
    d = ServiceDaemon(start=False)
    sim = Sim(d)
    configured = free_port()
    d.write_config({**d.base_config,
                    "cashpay.api_url": f"http://127.0.0.1:{sim.port}/v1",
                    "cashpay.public_url": f"http://127.0.0.1:{http_port}",
                    "cashpay.token_file": sim.token_file, "webhook.confirm": "none",
                    "checkout.listen": f"127.0.0.1:{configured}"})
    d.wrapper = socket_activate([f"127.0.0.1:{http_port}", f"127.0.0.1:{checkout_port}"],
                                names=["http", "checkout"])
    try:
        d.start(wait=False)
        d.wait_log(f"127.0.0.1:{checkout_port}")
        body = json.dumps({"order_ref": "sock-1", "amount": 100, "currency": "YER"}).encode()
        status, _, raw = d.request("POST", "/charges", body,
                                   {"Content-Type": "application/json"}, port=checkout_port)
        check_eq(status, 201, f"a charge through the passed socket: {raw!r}")
        check_eq(json.loads(raw)["order_ref"], "sock-1", "the answer")
        check(refuses(configured), "[checkout] listen is not used")
        check("1 checkout listener(s)" in d.log_text(), d.log_text())
        check_eq(d.stop(), 0, "exit status")
    finally:
        d.close()
        sim.stop()

    # Without the API a passed checkout socket (systemd passes every socket
    # unit naming the service) is left unserved with a warning; the
    # receiver still starts and serves webhooks.
    port, http_port = free_port(), free_port()
    d = ServiceDaemon(start=False)
    d.wrapper = socket_activate([f"127.0.0.1:{http_port}", f"127.0.0.1:{port}"],
                                names=["http", "checkout"])
    try:
        d.start(wait=False)
        d.wait_log(f"127.0.0.1:{port}")
        d.port = http_port
        status, reply = d.post_json(charge())  # the first connection starts cashpayd
        check_eq((status, reply), (200, {"outcome": "applied"}), "webhooks still served")
        check("a checkout socket was passed, but [cashpay] api_url is not set" in d.log_text(),
              d.log_text())
        check_eq(d.stop(), 0, "exit status")
    finally:
        d.close()


def accepts_connections(sock):
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_passed_sockets_survive_stop():
    """systemd keeps its listening sockets across restarts of the service.
    After a clean stop they must still be listening (no shutdown() on them):
    a connection made while the service is down waits in the backlog and is
    served by the next start. (A shut-down socket is what put
    cashpayd-admin.socket into the failed state.)"""
    http_sock, admin_sock = listening_socket(free_port()), listening_socket(free_port())
    fds = (http_sock.fileno(), admin_sock.fileno())
    d = ServiceDaemon(start=False, wrapper=as_service(fds, ["LISTEN_PID"]),
                      env={"LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:admin"},
                      popen_kw={"pass_fds": fds})
    d.port, d.admin_port = http_sock.getsockname()[1], admin_sock.getsockname()[1]
    waiting = None
    try:
        d.start()
        check_eq(d.post_json(charge())[0], 200, "webhook")
        check_eq(healthz(d, d.admin_port)[0], 200, "healthz")
        check_eq(d.stop(), 0, "first exit status")
        for name, sock in (("http", http_sock), ("admin", admin_sock)):
            check(accepts_connections(sock), f"the {name} socket still listens after the stop")
        waiting = socket.create_connection(("127.0.0.1", d.admin_port), timeout=20)
        waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        d.log.close()
        d.start()
        answer = waiting.recv(4096)
        check(answer.startswith(b"HTTP/1.1 200"), f"queued request served: {answer[:60]!r}")
        check_eq(d.post_json(charge())[0], 200, "webhook after the restart")
        check_eq(d.stop(), 0, "second exit status")
        check(accepts_connections(http_sock) and accepts_connections(admin_sock),
              "still listening after the second stop")
    finally:
        d.close()
        if waiting:
            waiting.close()
        http_sock.close()
        admin_sock.close()


# ------------------------------------------------------------ notify protocol

STATUS_RE = re.compile(r"deliveries (\d+), applied (\d+), rejected (\d+), commit failures (\d+), "
                       r"queue (\d+), last commit (\S+)")


def status_counts(message):
    m = STATUS_RE.search(message.get("STATUS", ""))
    return m and (int(m[1]), int(m[2]), int(m[3]), m[6])


def test_notify_protocol():
    d = ServiceDaemon(start=False)
    notify = Notifications(d.dir)
    d.env["NOTIFY_SOCKET"] = notify.path
    seen_at_ready = {}

    def on_ready(_):
        if seen_at_ready:
            return
        seen_at_ready["accepts"] = not refuses(d.port)
        seen_at_ready["admin"] = not refuses(d.admin_port)
        with contextlib.closing(sqlite3.connect(f"file:{d.db_path}?mode=ro", uri=True)) as c:
            seen_at_ready["schema"] = c.execute("PRAGMA user_version").fetchone()[0]

    notify.on_ready = on_ready
    try:
        d.start(wait=False)
        ready = notify.wait_key("READY")
        check_eq(seen_at_ready.get("accepts"), True, "public port accepts at READY=1")
        check_eq(seen_at_ready.get("admin"), True, "admin port accepts at READY=1")
        check(seen_at_ready.get("schema", 0) >= 1, f"database migrated at READY=1: {seen_at_ready}")
        first = notify.wait_for(lambda m: status_counts(m) is not None, ready, what="STATUS=")
        check_eq(status_counts(notify.messages[first][1]), (0, 0, 0, "never"), "first STATUS=")

        for _ in range(3):
            check_eq(d.post_json(charge())[0], 200, "signed webhook")
        check_eq(d.post_json(charge(), headers={"X-CashPay-Signature": "00"})[0], 401, "bad signature")
        moved = notify.wait_for(lambda m: (status_counts(m) or (0,))[0] == 4, first,
                                what="STATUS= with 4 deliveries")
        deliveries, applied, rejected, last = status_counts(notify.messages[moved][1])
        check_eq((deliveries, applied, rejected), (4, 3, 1), "counters")
        check(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", last), f"last commit {last!r}")

        sent = time.monotonic()
        d.proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_key("RELOADING", moved)
        usec = int(notify.messages[reloading][1].get("MONOTONIC_USEC", "0"))
        check(abs(usec / 1e6 - sent) < 5, f"MONOTONIC_USEC {usec} is CLOCK_MONOTONIC ({sent:.3f}s)")
        notify.wait_key("READY", reloading + 1)

        d.proc.send_signal(signal.SIGTERM)
        stopping = notify.wait_key("STOPPING", reloading)
        check_eq(d.proc.wait(20), 0, "exit status")
        kinds = [k for _, m in notify.messages for k in ("READY", "RELOADING", "STOPPING") if k in m]
        check_eq(kinds, ["READY", "RELOADING", "READY", "STOPPING"], "order of state changes")
        check_eq(notify.messages[stopping][1].get("STOPPING"), "1", "STOPPING=1")
        check("WATCHDOG" not in str(notify.messages), "no WATCHDOG=1 without WATCHDOG_USEC")
        # libmicrohttpd warns on stderr when its logger is not the first option.
        check("MHD_OPTION" not in d.log_text(), d.log_text())
    finally:
        d.close()
        notify.close()


def test_no_ready_when_start_fails():
    """A port that cannot be bound, or a database from a newer version:
    exit 1 without ever saying READY=1 (systemd then reports the failure
    instead of a service that seemed to start)."""
    for case in ("port", "schema"):
        d = ServiceDaemon(start=False)
        notify = Notifications(d.dir)
        d.env["NOTIFY_SOCKET"] = notify.path
        busy = listening_socket(d.admin_port) if case == "port" else None
        if case == "schema":
            os.makedirs(os.path.dirname(d.db_path))
            with contextlib.closing(sqlite3.connect(d.db_path)) as c:
                c.execute("PRAGMA user_version = 999")
        try:
            d.start(wait=False)
            check_eq(d.proc.wait(20), 1, f"{case}: exit status")
            time.sleep(0.1)
            check_eq([m for _, m in notify.messages if "READY" in m], [], f"{case}: no READY=1")
        finally:
            if busy:
                busy.close()
            d.close()
            notify.close()


def test_stop_drains_and_checkpoints():
    """SIGTERM: STOPPING=1, a webhook whose commit is under way still gets
    its 200 and is stored, the WAL is checkpointed into the database, exit 0."""
    d = ServiceDaemon(start=False)
    notify = Notifications(d.dir)
    stall = os.path.join(d.dir, "stall")
    d.env.update({"NOTIFY_SOCKET": notify.path, "CASHPAYD_TEST_STALL_FILE": stall})
    try:
        d.start()
        for _ in range(20):
            check_eq(d.post_json(charge())[0], 200, "webhook")
        open(stall, "w").close()
        results, body = [], charge()
        poster = threading.Thread(target=lambda: results.append(d.post_json(body)), daemon=True)
        poster.start()
        time.sleep(0.3)
        d.proc.send_signal(signal.SIGTERM)
        notify.wait_key("STOPPING")
        check_eq(d.proc.poll(), None, "still draining")
        os.unlink(stall)
        poster.join(15)
        check_eq(results, [(200, {"outcome": "applied"})], "in-flight webhook answered")
        check_eq(d.proc.wait(20), 0, "exit status")
        wal = d.db_path + "-wal"
        check(not os.path.exists(wal) or os.path.getsize(wal) == 0, "WAL checkpointed")
        with contextlib.closing(sqlite3.connect(f"file:{d.db_path}?mode=ro&immutable=1",
                                                uri=True)) as c:
            n = c.execute("SELECT count(*) FROM orders").fetchone()[0]
            found = c.execute("SELECT count(*) FROM orders WHERE charge_id = ?",
                              (body["id"],)).fetchone()[0]
        check_eq((n, found), (21, 1), "every order in the main database file")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stall)
        d.close()
        notify.close()


# ------------------------------------------------------------ watchdog

def max_gap(times, start, end):
    points = [start] + [t for t in times if start <= t <= end] + [end]
    return max(b - a for a, b in zip(points, points[1:]))


def post_in_background(d, results):
    def run():
        try:
            results.append(d.post_json(charge())[0])
        except Exception as e:  # reported by the caller
            results.append(repr(e))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_watchdog():
    """WATCHDOG=1 every WATCHDOG_USEC/2 while the writer commits or waits;
    a database merely locked by another process keeps it coming; a writer
    stuck inside a commit stops it (so systemd restarts the service) and it
    resumes once the writer moves again."""
    # busy_timeout 100 + commit_timeout 300: a commit is stuck after
    # 2 * 100 + 300 + 1000 = 1500 ms (writer_making_progress()).
    d = ServiceDaemon({"database.busy_timeout": "100", "database.commit_timeout": "300"},
                      start=False, wrapper=as_service(pid_vars=["WATCHDOG_PID"]))
    notify = Notifications(d.dir)
    stall = os.path.join(d.dir, "stall")
    d.env.update({"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000",
                  "CASHPAYD_TEST_STALL_FILE": stall})
    try:
        d.start()
        t0 = time.monotonic()
        time.sleep(1.2)
        pings = notify.times("WATCHDOG", t0, time.monotonic())
        check(len(pings) >= 4, f"{len(pings)} pings in 1.2 s at WATCHDOG_USEC=400000")
        # Every 200 ms; the margins allow for a loaded test machine, far
        # below the 1.5 s after which the writer counts as stuck.
        check(max_gap(pings, t0 + 0.3, time.monotonic()) < 0.6, f"regular pings: {pings}")

        # Merely busy: another process holds the write lock for 2.5 s, longer
        # than the stuck threshold; commits fail after busy_timeout (503).
        holder = sqlite3.connect(d.db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        busy_start, answers = time.monotonic(), []
        while time.monotonic() - busy_start < 2.5:
            answers.append(d.post_json(charge())[0])
        busy_end = time.monotonic()
        holder.execute("ROLLBACK")
        holder.close()
        check(answers and set(answers) == {503}, f"503 while locked: {set(answers)}")
        gap = max_gap(notify.times("WATCHDOG"), busy_start, busy_end)
        check(gap < 0.7, f"pings go on under an external lock (largest gap {gap:.2f}s)")
        check_eq(d.post_json(charge())[0], 200, "webhook after the lock is gone")

        # Stuck: the writer stalls inside its commit.
        open(stall, "w").close()
        results = []
        stall_start = time.monotonic()
        poster = post_in_background(d, results)
        time.sleep(3.0)
        stuck_window = (stall_start + 1.5 + 0.35, time.monotonic())
        early = notify.times("WATCHDOG", stall_start + 0.2, stall_start + 1.2)
        late = notify.times("WATCHDOG", *stuck_window)
        check(early, "a commit shorter than the threshold does not stop the pings")
        check_eq(late, [], "no WATCHDOG=1 while the writer is stuck")
        poster.join(5)
        check_eq(results, [503], "the stalled webhook is answered 503 at its deadline")
        os.unlink(stall)
        resumed = time.monotonic()
        notify.wait_for(lambda m: "WATCHDOG" in m, notify.count(), timeout=2,
                        what="WATCHDOG=1 after the stall")
        check(time.monotonic() - resumed < 1.0, "pings resume at once")
        check_eq(d.post_json(charge())[0], 200, "webhook after the stall")
        check_eq(d.stop(), 0, "exit status")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stall)
        d.close()
        notify.close()


# ------------------------------------------------------------ reload

class Client(threading.Thread):
    """Posts webhooks in a loop, each signed with the next of @secrets,
    over one keep-alive connection or a new connection per request;
    records (start, end, secret, status or exception)."""

    def __init__(self, d, secrets, keep_alive):
        super().__init__(daemon=True)
        self.d, self.secrets, self.keep_alive = d, secrets, keep_alive
        self.results = []
        self.stopped = threading.Event()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        i = 0
        while not self.stopped.is_set() and i < 5000:
            secret = self.secrets[i % len(self.secrets)]
            i += 1
            start = time.monotonic()
            try:
                status = post_with_secret(self.d, secret, conn=conn if self.keep_alive else None)
            except Exception as e:
                status = repr(e)
                conn.close()
            self.results.append((start, time.monotonic(), secret, status))
        conn.close()


def reload_and_wait(d, notify):
    """SIGHUP; returns the time just before it was sent and the time the
    READY=1 that follows RELOADING=1 arrived. A request that ended before
    the first can only have met the old settings, one that began after the
    second only the new. (Not the time RELOADING=1 arrived: on a loaded
    machine this reader can take it in after the daemon has already
    reloaded and answered under the new settings.)"""
    after = notify.count()
    sent = time.monotonic()
    d.proc.send_signal(signal.SIGHUP)
    i = notify.wait_key("RELOADING", after)
    j = notify.wait_key("READY", i + 1)
    return sent, notify.messages[j][0]


def wait_for_requests(clients, counts, least=10, limit=15.0):
    """Until each client has @least results for which @counts is true, or
    @limit seconds have passed (the caller's checks then say how many)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(sum(1 for r in list(c.results) if counts(r)) >= least for c in clients):
            return
        time.sleep(0.05)


def write_secrets(d, *secrets):
    # A new file moved into place, as an editor or a deployment tool does.
    with open(d.secret_path + ".new", "w") as f:
        f.write("".join(s + "\n" for s in secrets))
    os.replace(d.secret_path + ".new", d.secret_path)


def test_reload_rotated_secret():
    old, new = "old-secret-0123456789abcdef", "new-secret-fedcba9876543210"
    d = ServiceDaemon(secret=old, start=False)
    notify = Notifications(d.dir)
    d.env["NOTIFY_SOCKET"] = notify.path
    clients = [Client(d, [old, new], keep_alive=True), Client(d, [old, new], keep_alive=False)]
    try:
        d.start()
        notify.wait_key("READY")
        for c in clients:
            c.start()
        # Wait for enough requests on each side of the reload rather than a
        # fixed time: on a loaded machine one client thread can be starved
        # for longer than any short sleep.
        wait_for_requests(clients, lambda r: True)
        write_secrets(d, new)
        hup, ready = reload_and_wait(d, notify)
        wait_for_requests(clients, lambda r: r[0] > ready)
        for c in clients:
            c.stopped.set()
            c.join(15)
        for c in clients:
            kind = "keep-alive" if c.keep_alive else "new connections"
            statuses = {r[3] for r in c.results}
            check(statuses <= {200, 401}, f"{kind}: only 200 and 401, got {statuses}")
            before = [(s, st) for t0, t1, s, st in c.results if t1 < hup]
            after = [(s, st) for t0, t1, s, st in c.results if t0 > ready]
            check(len(before) >= 10 and len(after) >= 10,
                  f"{kind}: {len(before)} requests before, {len(after)} after the reload")
            check_eq({(s, st) for s, st in before}, {(old, 200), (new, 401)}, f"{kind} before")
            check_eq({(s, st) for s, st in after}, {(old, 401), (new, 200)}, f"{kind} after")
        check("configuration and secrets reloaded" in d.log_text(), d.log_text())
        check("systemd credential" not in d.log_text(), "no credential note for secret_file")
        check(old not in d.log_text() and new not in d.log_text(), "secrets are never logged")

        # Rotation without downtime: both secrets for a while, then only one.
        write_secrets(d, new, old)
        reload_and_wait(d, notify)
        check_eq((post_with_secret(d, old), post_with_secret(d, new)), (200, 200), "both verify")
        check_eq(d.stop(), 0, "exit status")
    finally:
        for c in clients:
            c.stopped.set()
        d.close()
        notify.close()


def test_secret_from_credentials_directory():
    """No secret_file: the secret is $CREDENTIALS_DIRECTORY/webhook-secret
    (LoadCredential=), read again on reload; the reload says that systemd
    itself copies the credential only when the service starts."""
    old, new = "credential-secret-old-0123456789", "credential-secret-new-0123456789"
    creds = None
    d = ServiceDaemon({"webhook.secret_file": ""}, secret=old, start=False)
    notify = Notifications(d.dir)
    try:
        creds = os.path.join(d.dir, "credentials")
        os.mkdir(creds, 0o700)
        with open(os.path.join(creds, "webhook-secret"), "w") as f:
            f.write(old + "\n")
        os.unlink(d.secret_path)  # only the credential exists
        d.env.update({"CREDENTIALS_DIRECTORY": creds, "NOTIFY_SOCKET": notify.path})
        d.start()
        check_eq((post_with_secret(d, old), post_with_secret(d, new)), (200, 401), "credential read")
        # A newer systemd, or a restart, puts the new credential in place.
        with open(os.path.join(creds, "webhook-secret"), "w") as f:
            f.write(new + "\n")
        reload_and_wait(d, notify)
        check_eq((post_with_secret(d, old), post_with_secret(d, new)), (401, 200), "re-read on reload")
        line = [l for l in d.log_text().splitlines() if "reloaded from" in l]
        check(line and "systemd credential" in line[-1] and "restart" in line[-1], f"note: {line}")
        check_eq(d.stop(), 0, "exit status")
    finally:
        d.close()
        notify.close()


def test_reload_broken_config():
    d = ServiceDaemon(start=False)
    notify = Notifications(d.dir)
    d.env["NOTIFY_SOCKET"] = notify.path
    try:
        d.start()
        original = open(d.config_path).read()

        # A bad value: refused with file and line, the old settings stay.
        with open(d.config_path, "a") as f:
            f.write("[http]\nmax_body = lots\n")
        bad_line = len(open(d.config_path).read().splitlines())
        reload_and_wait(d, notify)
        d.wait_log("failed, keeping the running configuration")
        check(f"{d.config_path}:{bad_line}" in d.log_text(), f"file:line in\n{d.log_text()}")
        check("max_body" in d.log_text(), "names the key")
        check_eq(d.post_json(charge())[0], 200, "still serving")
        check_eq(healthz(d, d.admin_port)[0], 200, "still healthy")

        # A setting that needs a restart: refused, still on the old port.
        with open(d.config_path, "w") as f:
            f.write(original.replace(f"127.0.0.1:{d.port}", f"127.0.0.1:{free_port()}"))
        reload_and_wait(d, notify)
        d.wait_log("[http] listen changed")
        refused = [l for l in d.log_text().splitlines() if "[http] listen changed" in l]
        check(f"reload of {d.config_path} failed" in refused[0], f"names the file: {refused}")
        check_eq(d.post_json(charge())[0], 200, "still on the old port")

        # A missing secret file: refused, the old secret still verifies.
        with open(d.config_path, "w") as f:
            f.write(original.replace(d.secret_path, d.secret_path + ".missing"))
        reload_and_wait(d, notify)
        check_eq(d.log_text().count("failed, keeping the running"), 3, "third reload refused")
        check(".missing" in d.log_text().splitlines()[-1], d.log_text().splitlines()[-1])
        check_eq(d.post_json(charge())[0], 200, "old secret still in use")

        # A good reloadable change takes effect.
        with open(d.config_path, "w") as f:
            f.write(original + "[http]\nmax_body = 300\n")
        reload_and_wait(d, notify)
        d.wait_log("configuration and secrets reloaded")
        big = charge(description="x" * 400)
        check_eq(d.post_json(big)[0], 413, "new max_body applies")
        check_eq(d.post_json(charge())[0], 200, "small body")
        check_eq(d.proc.poll(), None, "running")
        check_eq(d.stop(), 0, "exit status")
    finally:
        d.close()
        notify.close()


# ------------------------------------------------------------ shared database

GROUP = "cashpay"
DAEMON_USER = "cashpay-test-daemon"
APP_USER = "cashpay-test-app"


def ensure_account(user, extra_group):
    """Create @user (own primary group, member of @extra_group) unless it exists."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", "--groups", extra_group, user], check=True)
    members = grp.getgrnam(extra_group).gr_mem
    if user not in members:
        subprocess.run(["usermod", "-aG", extra_group, user], check=True)


def ensure_accounts():
    with harness.accounts_locked():
        try:
            grp.getgrnam(GROUP)
        except KeyError:
            subprocess.run(["groupadd", "--system", GROUP], check=True)
        ensure_account(DAEMON_USER, GROUP)
        ensure_account(APP_USER, GROUP)


def as_user(user, *command):
    """@command as @user with its groups and a umask of 022, through setpriv
    (util-linux; unlike runuser it needs no PAM configuration)."""
    pw = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--",
            "sh", "-c", 'umask 022; exec "$@"', "sh", *command]


def as_app(*sql, user=APP_USER, check_rc=True):
    """Run SQL as the merchant's application user through the sqlite3 shell."""
    r = subprocess.run(as_user(user, "sqlite3", "-bail", "-cmd", ".timeout 5000", *sql),
                       capture_output=True, text=True, timeout=60)
    if check_rc and r.returncode != 0:
        raise AssertionError(f"sqlite3 as {user}: {r.returncode} {r.stderr}")
    return r


def test_shared_database_group_access():
    """cashpayd as one user and the merchant's application as another, both
    in group cashpay, in a setgid 2770 directory as StateDirectoryMode=2770
    makes it: the application reads orders and sets fulfilled_at while the
    daemon writes, and whichever side creates the -wal and -shm files, the
    other can still write."""
    if os.geteuid() != 0:
        # a pass here would claim what was never tried: the suite needs root
        raise AssertionError("creating users and switching to them needs root")
    if not shutil.which("sqlite3"):
        raise AssertionError("the sqlite3 shell is not installed (package sqlite3)")
    ensure_accounts()
    gid = grp.getgrnam(GROUP).gr_gid
    d = ServiceDaemon(start=False, popen_kw={"user": DAEMON_USER, "group": GROUP,
                                             "extra_groups": []})
    d.binary = reachable_by_everyone(d.binary)
    os.chmod(d.dir, 0o755)
    for path in (d.config_path, d.secret_path):
        os.chmod(path, 0o644)
    state = os.path.dirname(d.db_path)
    os.mkdir(state)
    os.chown(state, pwd.getpwnam(DAEMON_USER).pw_uid, gid)
    os.chmod(state, 0o2770)
    db = d.db_path
    try:
        d.start()
        ids = [charge()["id"] for _ in range(40)]
        for cid in ids[:10]:
            check_eq(d.post_json(charge(cid))[0], 200, "webhook")
        for path in (db, db + "-wal", db + "-shm"):
            st = os.stat(path)
            check_eq((st.st_mode & 0o777, st.st_gid), (0o660, gid), f"mode and group of {path}")
        check_eq(os.stat(state).st_mode & 0o7777, 0o2770, "state directory")

        # The daemon keeps writing while the application reads and updates.
        results, stop = [], threading.Event()

        def writer():
            for cid in ids[10:]:
                if stop.is_set():
                    break
                results.append(d.post_json(charge(cid))[0])
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        for cid in ids[:10]:
            r = as_app(db, f"SELECT status FROM orders WHERE charge_id = '{cid}';",
                       "UPDATE orders SET fulfilled_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                       f"WHERE charge_id = '{cid}' AND fulfilled_at IS NULL;")
            check_eq(r.stdout.strip(), "CAPTURED", "the application reads the order")
        t.join(60)
        stop.set()
        check_eq(results, [200] * 30, "every webhook committed despite the application's locks")
        fulfilled = d.query("SELECT count(*) AS n FROM orders WHERE fulfilled_at IS NOT NULL")
        check_eq(fulfilled, [{"n": 10}], "fulfilled_at written by the application")
        todo = as_app(db, "SELECT count(*) FROM orders_to_fulfil;").stdout.strip()
        check_eq(todo, "30", "orders_to_fulfil seen by the application")
        outsider = as_app(db, "SELECT 1;", user="nobody", check_rc=False)
        check("unable to open" in outsider.stderr, f"a user outside the group: {outsider.stderr!r}")
        check_eq(d.stop(), 0, "exit status")

        # The application first, with its own umask, while the daemon is down:
        # the files it creates must stay writable for the daemon.
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(db + suffix)
        holder = subprocess.Popen(as_user(APP_USER, "/usr/bin/python3", "-c",
                                          "import sqlite3, sys\n"
                                          "c = sqlite3.connect(sys.argv[1])\n"
                                          "c.execute('UPDATE orders SET needs_review = 0')\n"
                                          "c.commit()\n"
                                          "print('open', flush=True)\n"
                                          "sys.stdin.readline()", db),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            check_eq(holder.stdout.readline().strip(), "open", "the application has the database open")
            for path in (db + "-wal", db + "-shm"):
                st = os.stat(path)
                check_eq((st.st_mode & 0o777, st.st_gid), (0o660, gid),
                         f"{path} created by the application")
            d.log.close()
            d.start()
            check_eq(d.post_json(charge())[0], 200, "the daemon writes next to the application")
        finally:
            holder.communicate("\n", timeout=10)
        check_eq(d.stop(), 0, "exit status")
    finally:
        d.close()


if __name__ == "__main__":
    run_tests([
        test_socket_activation_named,
        test_socket_activation_unnamed,
        test_socket_activation_unknown_name_refused,
        test_socket_activation_checkout,
        test_passed_sockets_survive_stop,
        test_notify_protocol,
        test_no_ready_when_start_fails,
        test_stop_drains_and_checkpoints,
        test_watchdog,
        test_reload_rotated_secret,
        test_secret_from_credentials_directory,
        test_reload_broken_config,
        test_shared_database_group_access,
    ])
