"""Start a real cashpayd on loopback with a temporary database and talk to it.

Used by every integration test. Only the Python standard library: the tests
speak plain HTTP through http.client (and raw sockets where HTTP itself is
the subject) and read the database through the sqlite3 module.
"""
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import random
import shlex
import shutil
import signal
import socket
import sqlite3
import string
import subprocess
import sys
import tempfile
import time

SECRET = "integration-test-secret-0123456789"

# CASHPAYD_WRAPPER runs the daemon under a tool, e.g. "valgrind --error-exitcode=99 ...";
# the tool exiting with WRAPPER_ERROR_EXIT fails the test.
WRAPPER = shlex.split(os.environ.get("CASHPAYD_WRAPPER", ""))
WRAPPER_ERROR_EXIT = 99

# CASHPAYD_TEST_TLS=1 runs every Daemon over HTTPS (a test CA's certificate),
# so a test file written for HTTP checks the same over TLS.
TLS_BY_DEFAULT = os.environ.get("CASHPAYD_TEST_TLS") == "1"


_ports_handed_out = set()


def free_port():
    """A loopback port nobody listens on. The kernel may hand a port just
    closed out again, so one test process never gets the same port twice
    (an http and an admin listener on one port would fail to start)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port
    raise AssertionError("no free loopback port")


def reachable_by_everyone(path):
    """@path itself when every user may execute it, else a copy that they
    can: a checkout in a 0700 directory (mktemp -d) hides its build from
    the other Unix users some tests run programs as."""
    parts = os.path.abspath(path).split(os.sep)
    dirs = [os.sep.join(parts[:i]) or os.sep for i in range(1, len(parts))]
    if all(os.stat(d).st_mode & 0o001 for d in dirs) and os.stat(path).st_mode & 0o001:
        return path
    copy_dir = tempfile.mkdtemp(prefix="cashpayd-bin-")
    os.chmod(copy_dir, 0o755)
    copy = os.path.join(copy_dir, os.path.basename(path))
    shutil.copy2(path, copy)
    os.chmod(copy, 0o755)
    return copy


def random_charge_id(prefix="chg_"):
    return prefix + "".join(random.choices(string.ascii_letters + string.digits, k=16))


def charge(charge_id=None, status="CAPTURED", amount=2000, currency="YER", **extra):
    body = {
        "id": charge_id or random_charge_id(),
        "status": status,
        "amount": amount,
        "currency": currency,
        "description": "Purchase of a watch",
        "transaction_url": "https://pay.cashpay.example/session/abc",
        "created": 1672531200,
    }
    body.update(extra)
    return body


def hmac_hex(secret, payload, algorithm="sha256"):
    return hmac.new(secret.encode(), payload, getattr(hashlib, algorithm)).hexdigest()


class Daemon:
    """A cashpayd process with its own directory, config and ports."""

    def __init__(self, extra_config=None, secret=SECRET, env=None, start=True, tls=None):
        self.binary = os.environ.get("CASHPAYD") or sys.exit("CASHPAYD is not set")
        self.dir = tempfile.mkdtemp(prefix="cashpayd-test-")
        self.db_path = os.path.join(self.dir, "db", "cashpay.db")
        self.secret_path = os.path.join(self.dir, "webhook.secret")
        self.config_path = os.path.join(self.dir, "cashpayd.conf")
        self.log_path = os.path.join(self.dir, "cashpayd.log")
        self.port = free_port()
        self.admin_port = free_port()
        self.secret = secret
        self.proc = None
        self.env = dict(os.environ)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("LISTEN_FDS", None)
        self.env.update(env or {})
        with open(self.secret_path, "w") as f:
            f.write(secret + "\n")
        self.tls_context = None
        extra_config = dict(extra_config or {})
        if TLS_BY_DEFAULT if tls is None else tls:
            from tlslib import TestCA
            self.ca = TestCA(self.dir)
            cert, key, _ = self.ca.issue("server")
            extra_config.setdefault("http.tls_cert", cert)
            extra_config.setdefault("http.tls_key", key)
            self.tls_context = self.ca.client_context()
        self.write_config(extra_config)
        if start:
            self.start()

    def write_config(self, extra):
        sections = {
            "http": {"listen": f"127.0.0.1:{self.port}", "threads": "2"},
            "admin": {"listen": f"127.0.0.1:{self.admin_port}"},
            "webhook": {"secret_file": self.secret_path},
            "database": {"path": self.db_path},
            "log": {"level": "debug"},
        }
        for key, value in extra.items():
            section, name = key.split(".", 1)
            sections.setdefault(section, {})[name] = value
        with open(self.config_path, "w") as f:
            for section, values in sections.items():
                f.write(f"[{section}]\n")
                for name, value in values.items():
                    f.write(f"{name} = {value}\n")
                f.write("\n")

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(WRAPPER + [self.binary, "--config", self.config_path],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"cashpayd exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("cashpayd did not start listening:\n" + self.log_text())

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("cashpayd did not stop in time:\n" + self.log_text())
        if WRAPPER and rc == WRAPPER_ERROR_EXIT:
            raise AssertionError(f"{WRAPPER[0]} reported errors:\n" + self.log_text()[-20000:])
        return rc

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        self.log.close()
        passed = exc_type is None or (exc_type is SystemExit and not exc.code)
        if passed:  # keep the directory of a failed test for a look
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ HTTP

    def request(self, method, path, body=None, headers=None, port=None, chunked=False):
        if self.tls_context and port in (None, self.port):
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                               context=self.tls_context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()

    def sign_headers(self, raw, timestamp=None):
        headers = {"Content-Type": "application/json",
                   "X-CashPay-Signature": hmac_hex(self.secret, raw)}
        return headers

    def post(self, payload, headers=None, sign=True, path="/cashpay/webhook"):
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h = self.sign_headers(raw) if sign else {"Content-Type": "application/json"}
        h.update(headers or {})
        status, resp_headers, data = self.request("POST", path, raw, h)
        return status, resp_headers, data

    def post_json(self, payload, **kw):
        status, _, data = self.post(payload, **kw)
        return status, (json.loads(data) if data else None)

    def admin(self, path):
        return self.request("GET", path, port=self.admin_port)

    # ------------------------------------------------------------ database

    def db(self):
        conn = sqlite3.connect(self.db_path, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql, *args):
        with contextlib.closing(self.db()) as conn:
            return [dict(row) for row in conn.execute(sql, args)]

    def applied_charge_ids(self):
        """Charges with an applied delivery: what an acknowledged webhook must leave."""
        return {r["charge_id"] for r in self.query(
            "SELECT charge_id FROM webhook_deliveries WHERE outcome = 'applied'")}


def asan_runtime(binary):
    """Path of the ASan runtime @binary links, or None for a plain build."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "libasan" in line and "=>" in line:
            return line.split("=>")[1].split("(")[0].strip()
    return None


def read_to_end(sock):
    """Everything @sock receives until the peer closes it (bounded by the
    socket's own timeout)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def check_eq(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def run_tests(tests):
    """Run test functions in order; print each; exit non-zero on failure."""
    failures = 0
    for test in tests:
        started = time.monotonic()
        try:
            test()
            print(f"ok   {test.__name__} ({time.monotonic() - started:.2f}s)", flush=True)
        except Exception as e:  # report every failing test, not just the first
            failures += 1
            print(f"FAIL {test.__name__}: {e}", flush=True)
            import traceback
            traceback.print_exc()
    sys.exit(1 if failures else 0)
