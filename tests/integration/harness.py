"""Start a real cashpayd on loopback with a temporary database and talk to it.

Used by every integration test. Only the Python standard library: the tests
speak plain HTTP through http.client (and raw sockets where HTTP itself is
the subject) and read the database through the sqlite3 module.
"""
import atexit
import contextlib
import ctypes
import errno
import fcntl
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


# ------------------------------------------------------------ system accounts

@contextlib.contextmanager
def accounts_locked():
    """Held while a test looks up and creates system accounts. useradd fails
    ("cannot lock /etc/passwd") rather than waits while another test's
    useradd runs, and two tests creating one account would race. flock(2) on
    the /etc directory itself: its inode never changes (useradd replaces
    /etc/passwd by a rename), and no lock file is left behind."""
    fd = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------ temporary files

# meson gives every test TMPDIR, a directory of this build tree's own that
# the suite checks is empty at the end (tests/suite-check.py). Python's
# tempfile would fall back to /tmp without a word if it were missing.
KEPT_MARKER = ".kept-after-failure"


def _temporary_root():
    root = os.environ.get("TMPDIR")
    if not root:
        return
    if not os.path.isdir(root):  # a single test run without suite-start
        os.makedirs(root, exist_ok=True)
        os.chmod(root, 0o1777)
    if os.path.realpath(tempfile.gettempdir()) != os.path.realpath(root):
        sys.exit(f"TMPDIR {root} is not usable: temporary files would go elsewhere")


_temporary_root()


# Directories the harness made: a Daemon's until it is closed, and copies
# of programs. At exit, what is still open is removed when every test
# passed and kept for a look otherwise; copies always go.
_open_dirs = set()
_scratch_dirs = set()
_run_result = None  # run_tests(): 0 when every test passed


def keep_for_a_look(path, why="a test failed"):
    """Leave @path in place, marked so that the end-of-suite check moves it
    into meson-logs instead of counting it as left behind; say so."""
    with contextlib.suppress(OSError):
        with open(os.path.join(path, KEPT_MARKER), "w") as f:
            f.write(why + "\n")
    print(f"kept {path} for a look ({why})", flush=True)


# ------------------------------------------------------------ processes
#
# A wrapper may fork rather than exec (faketime does, and passes no signal
# on), so a daemon is started as the leader of a process group of its own
# and ended as a group. This process is also made the subreaper of what it
# starts: whatever gets orphaned on the way stays below it, and at exit
# everything still alive below it is reported, ended, and fails the test.

PR_SET_CHILD_SUBREAPER = 36
STRAY_GRACE = 3.0  # seconds a descendant may take to go after the test ended

with contextlib.suppress(OSError, AttributeError):
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

_groups = set()


def spawn(cmd, **kw):
    """subprocess.Popen(@cmd, **@kw) in a new session and process group,
    ended by end_group() (or at exit) with everything it started."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kw)
    _groups.add(proc.pid)
    return proc


def _proc_stat(pid):
    """(ppid, pgid, state) of @pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[2]), fields[0]


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def group_members(pgid):
    """Live (not zombie) processes of the process group @pgid."""
    out = []
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st and st[1] == pgid and st[2] != "Z":
            out.append(pid)
    return out


def _reap_orphans():
    """Collect the zombies of orphans handed to us as subreaper. Only at
    exit: until then a zombie child may be one a Popen object still has to
    wait for, and taking its status would make that wait report 0."""
    mine = os.getpid()
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st and st[0] == mine and st[2] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def wait_group(pgid, timeout):
    """Until the group @pgid has no live process, @timeout seconds at most;
    returns what is still alive."""
    deadline = time.monotonic() + timeout
    while True:
        left = group_members(pgid)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def end_group(pgid, timeout=10.0):
    """SIGTERM to what is left of the group @pgid, SIGKILL after @timeout.
    Returns the command lines of the processes that were still there."""
    left = [f"{pid} {_cmdline(pid)}" for pid in group_members(pgid)]
    if left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        if wait_group(pgid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            wait_group(pgid, 5)
    _groups.discard(pgid)
    return left


def descendants():
    """Live processes below this one (orphans included: we are their subreaper)."""
    children = {}
    for pid in _all_pids():
        st = _proc_stat(pid)
        if st and st[2] != "Z":
            children.setdefault(st[0], []).append(pid)
    out, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def end_strays():
    """End every process still alive below this one, its group included;
    returns their command lines."""
    deadline = time.monotonic() + STRAY_GRACE
    while descendants() and time.monotonic() < deadline:
        time.sleep(0.05)
    strays = [f"{pid} {_cmdline(pid)}" for pid in descendants()]
    for pid in descendants():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pgid in list(_groups):
        end_group(pgid, timeout=2)
    deadline = time.monotonic() + 5
    while descendants() and time.monotonic() < deadline:
        time.sleep(0.02)
    _reap_orphans()
    return strays


def _at_exit():
    strays = end_strays()
    for path in _scratch_dirs:
        shutil.rmtree(path, ignore_errors=True)
    for path in sorted(_open_dirs):
        if _run_result == 0 and not strays:
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.isdir(path):
            keep_for_a_look(path, "left open when the test failed")
    if strays:
        print("FAIL processes still running when the test ended (now ended):\n  " +
              "\n  ".join(strays), flush=True)
        sys.stderr.flush()
        os._exit(1)  # whatever the tests said: something was left running


def _on_sigterm(signum, frame):
    """meson's timeout (SIGTERM, then SIGKILL half a second later): kill
    every process we started at once, then unwind, so that `with` blocks
    and finally clauses still tidy up (and what a failed test leaves is
    kept for a look)."""
    # Once is enough (a handler, not SIG_IGN, which what we start would inherit).
    signal.signal(signal.SIGTERM, lambda *_: None)
    for pgid in list(_groups):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in descendants():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    print(f"terminated by signal {signum}: killed every process this test started", flush=True)
    raise SystemExit(128 + signum)


atexit.register(_at_exit)
signal.signal(signal.SIGTERM, _on_sigterm)


# CASHPAYD_TEST_BACKEND=postgresql runs the same tests on PostgreSQL: each
# Daemon gets a database of its own on one server the test process starts
# (pgserver.py), and query() reads it with the values spelled as SQLite's.
BACKEND = os.environ.get("CASHPAYD_TEST_BACKEND", "sqlite")


# ------------------------------------------------------------ ports

_ports_handed_out = set()


def _ephemeral_ports():
    """The kernel's range for the local ports of outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A loopback port nobody listens on, from outside the kernel's
    ephemeral range: a port from inside it may be the local end of some
    other test's client connection a moment later, and then the daemon's
    bind() fails with "Address already in use". One test process never gets
    the same port twice (an http and an admin listener on one port would
    fail to start)."""
    low, high = _ephemeral_ports()
    ranges = [(10000, low - 1)] if low > 11000 else [(high + 1, 65535)]
    for _ in range(200):
        first, last = random.choice(ranges)
        port = random.randint(first, last)
        if port in _ports_handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
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
    _scratch_dirs.add(copy_dir)
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
        _open_dirs.add(self.dir)
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
        self.log = None
        try:
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
            self.pg = None
            if BACKEND == "postgresql":
                from pgserver import shared_database
                self.pg, self.pg_db, pg_config = shared_database()
                extra_config = {**pg_config, **extra_config}
            self.base_config = extra_config  # for a test that rewrites the config
            self.write_config(extra_config)
            if start:
                self.start()
        except BaseException:
            # No __exit__ will run: end what was started, keep the rest.
            self.kill_tree()
            self.close(passed=False)
            raise

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
        self.launch(WRAPPER + [self.binary, "--config", self.config_path])
        if wait:
            self.wait_ready()

    def launch(self, cmd, **kw):
        """Start @cmd (the daemon, perhaps under wrappers) logging to the log
        file, as a process group of its own (see spawn)."""
        if self.log:
            self.log.close()
        self.log = open(self.log_path, "ab")
        self.proc = spawn(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env, **kw)

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
        """@sig to the daemon's whole process group (a forking wrapper's
        child too); its exit status, once the group has gone."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_tree()
                raise AssertionError("cashpayd did not stop in time:\n" + self.log_text())
        rc = self.proc.returncode
        # The rest of the group had the signal too; give it the same time.
        wait_group(self.proc.pid, timeout)
        left = end_group(self.proc.pid, timeout)
        if left:
            raise AssertionError("still running after cashpayd stopped (now ended): " +
                                 "; ".join(left))
        if WRAPPER and rc == WRAPPER_ERROR_EXIT:
            raise AssertionError(f"{WRAPPER[0]} reported errors:\n" + self.log_text()[-20000:])
        return rc

    def kill_tree(self):
        """SIGKILL the daemon and everything in its process group."""
        if self.proc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            end_group(self.proc.pid)

    def close(self, passed):
        """The log closed; the directory removed, or kept for a look when
        the test failed."""
        if self.log:
            self.log.close()
        _open_dirs.discard(self.dir)
        if passed:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif os.path.isdir(self.dir):
            keep_for_a_look(self.dir)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop()
        except BaseException:
            self.kill_tree()
            self.close(passed=False)
            raise
        self.close(passed=exc_type is None or (exc_type is SystemExit and not exc.code))

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
        if self.pg:
            return self.pg.query_as_sqlite(sql, *args, db=self.pg_db)
        with contextlib.closing(self.db()) as conn:
            return [dict(row) for row in conn.execute(sql, args)]

    def applied_charge_ids(self):
        """Charges with an applied delivery: what an acknowledged webhook must leave."""
        return {r["charge_id"] for r in self.query(
            "SELECT charge_id FROM webhook_deliveries WHERE outcome = 'applied'")}



class Tmpfs:
    """A size-limited tmpfs mounted for one test (the suite runs as root),
    owned by `owner` (a pwd entry) when a server of that user writes there."""

    def __init__(self, path, size, owner=None):
        self.path = path
        os.makedirs(path, exist_ok=True)
        options = f"size={size}"
        if owner is not None:
            options += f",mode=0700,uid={owner.pw_uid},gid={owner.pw_gid}"
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise AssertionError(f"cannot mount a {size} tmpfs on {path} (this test needs "
                                 f"root with CAP_SYS_ADMIN): {r.stderr.strip()}")

    def fill(self):
        """A filler file written until the file system is full; its path."""
        path = os.path.join(self.path, "filler")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for _ in range(1 << 20):  # bounded: far more than the tmpfs holds
                os.write(fd, b"\0" * 65536)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)
        return path

    def unmount(self):
        if subprocess.run(["umount", self.path]).returncode != 0:
            # a process still holding a file there: detach it now, the
            # kernel frees it when the last one closes
            subprocess.run(["umount", "-l", self.path], check=True)


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


def claim_lease_ms(request_timeout=10, max_inflight=256, claimed=None, commit_timeout_ms=10000,
                   get_retries=2):
    """The lease a PostgreSQL sweep claims its orders with, derived as
    reconcile_lease_ms() does (src/api/reconcile.c): one fetch is every GET
    attempt, one more after a 401 and two token requests, request_timeout
    each, plus the retries' backoff; the @claimed orders (a sweep claims
    max_inflight) take their turns in max_inflight slots behind one wave of
    other requests; then commit_timeout for the record. The defaults' 131.5 s."""
    claimed = max_inflight if claimed is None else claimed
    fetch = (get_retries + 4) * request_timeout * 1000 + 250 * (2 ** get_retries - 1)
    waves = -(-claimed // max_inflight) + 1
    return waves * fetch + commit_timeout_ms


def postgresql_only(why):
    """Mark a test that means something on PostgreSQL alone: on SQLite
    run_tests() names it and says @why instead of running it."""
    def mark(test):
        test.sqlite_skip_reason = why
        return test
    return mark


def sqlite_only(why):
    """Mark a test that means something on SQLite alone (or needs no
    database, so once is enough): on PostgreSQL run_tests() names it and
    says @why instead of running it."""
    def mark(test):
        test.postgresql_skip_reason = why
        return test
    return mark


def run_tests(tests):
    """Run test functions in order; print each; exit non-zero on failure."""
    failures = 0
    for test in tests:
        why = getattr(test, "sqlite_skip_reason", None)
        if why and BACKEND != "postgresql":
            print(f"-    {test.__name__}: PostgreSQL only ({why})", flush=True)
            continue
        why = getattr(test, "postgresql_skip_reason", None)
        if why and BACKEND == "postgresql":
            print(f"-    {test.__name__}: SQLite only ({why})", flush=True)
            continue
        started = time.monotonic()
        try:
            test()
            print(f"ok   {test.__name__} ({time.monotonic() - started:.2f}s)", flush=True)
        except Exception as e:  # report every failing test, not just the first
            failures += 1
            print(f"FAIL {test.__name__}: {e}", flush=True)
            import traceback
            traceback.print_exc()
    global _run_result
    _run_result = 1 if failures else 0
    sys.exit(_run_result)
