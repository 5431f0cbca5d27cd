"""A throwaway PostgreSQL server for the tests, started by the tests.

    with PgServer() as pg:
        pg.url            # a libpq connection string for cashpayd
        pg.query("SELECT ...", args...)  # rows as dicts, through psql

initdb and pg_ctl from Debian's postgresql package, in a temporary
directory, as an unprivileged user (PostgreSQL refuses to run as root, and
the suite does run as root), listening only on 127.0.0.1 at a free port with
its Unix socket inside the temporary directory. No system service is
involved. Leaving the `with` block - normally, by an exception, or by
SIGTERM from meson's timeout - stops the server's whole process tree and
removes the directory.

Only the standard library: queries go through the psql client, which
returns each result as one JSON document.
"""
import atexit
import datetime
import json
import os
import re
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from harness import accounts_locked, free_port

PG_USER = "cashpay-test-pg"
DB_NAME = "cashpay"
PASSWORD = "pg-test-password-4711"


def pg_bindir():
    """The newest /usr/lib/postgresql/N/bin holding initdb, or $PG_BINDIR."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    root = "/usr/lib/postgresql"
    try:
        versions = sorted((d for d in os.listdir(root) if d.isdigit()), key=int, reverse=True)
    except FileNotFoundError:
        versions = []
    for v in versions:
        if os.access(os.path.join(root, v, "bin", "initdb"), os.X_OK):
            return os.path.join(root, v, "bin")
    raise AssertionError("PostgreSQL server binaries not found (install the postgresql package "
                         "with scripts/install-deps.sh --test)")


def ensure_user():
    """The unprivileged account the server runs as (created on first use, by
    one of the tests that start at once on a fresh machine)."""
    with accounts_locked():
        try:
            return pwd.getpwnam(PG_USER)
        except KeyError:
            pass
        if os.geteuid() != 0:
            raise AssertionError(f"user {PG_USER} is missing and creating it needs root")
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", PG_USER], check=True)
        return pwd.getpwnam(PG_USER)


def _stat_fields(pid):
    """(state, ppid) of @pid from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def _alive(pid):
    st = _stat_fields(pid)
    return st is not None and st[0] != "Z"


def _owned_by(pid, uid):
    try:
        return os.stat(f"/proc/{pid}").st_uid == uid
    except FileNotFoundError:
        return False


def descendants(pid):
    """Every process below @pid, found through /proc's parent pids."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat_fields(int(name))
            if st:
                children.setdefault(st[1], []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _terminate_on_sigterm():
    """meson ends a test past its timeout with SIGTERM: turn it into
    SystemExit so that every `with PgServer()` still cleans up."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def handler(signum, frame):
            raise SystemExit(128 + signum)
        signal.signal(signal.SIGTERM, handler)


class PgServer:
    """One PostgreSQL cluster: created, started, and on exit stopped and removed."""

    def __init__(self, start=True, settings=None, standby_of=None):
        """@standby_of: a running PgServer; this one starts as its
        streaming standby (a base backup of it) instead of a new cluster."""
        _terminate_on_sigterm()
        self.bindir = pg_bindir()
        self.user = ensure_user()
        self.dir = tempfile.mkdtemp(prefix="cashpayd-pg-")
        os.chmod(self.dir, 0o755)  # the daemon and psql reach the socket
        self.data = os.path.join(self.dir, "data")
        self.sockdir = os.path.join(self.dir, "sock")
        self.log_path = os.path.join(self.dir, "server.log")
        self.password_file = os.path.join(self.dir, "db-password")
        self.port = free_port()
        self.pid = None
        self.settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.sockdir}'",
            "max_connections": "60",
            "shared_buffers": "32MB",
            "fsync": "on",  # acknowledged means committed: test it as deployed
            "log_min_messages": "warning",
        }
        self.settings.update(settings or {})
        try:
            if standby_of:
                self._init_standby(standby_of)
            else:
                self._init()
            if start:
                self.start()
        except BaseException:
            self.cleanup()
            raise

    # ------------------------------------------------------------ lifecycle

    def _as_pg(self, *cmd, **kw):
        """@cmd as the server's user (setpriv, like the other tests' users)."""
        argv = ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                "--clear-groups", "--", *cmd]
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 120)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        return subprocess.run(argv, env=env, cwd=self.dir, **kw)

    def _init(self):
        os.mkdir(self.sockdir, 0o755)
        os.chown(self.sockdir, self.user.pw_uid, self.user.pw_gid)
        with open(self.password_file, "w") as f:
            f.write(PASSWORD + "\n")
        pwfile = os.path.join(self.dir, "initdb-pw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        os.chmod(pwfile, 0o600)
        os.mkdir(self.data, 0o700)
        os.chown(self.data, self.user.pw_uid, self.user.pw_gid)
        # Password authentication over TCP (what a deployment uses), trust
        # over the private socket for the test's own psql.
        # --no-sync: a fresh cluster of a test need not survive a power cut.
        r = self._as_pg(os.path.join(self.bindir, "initdb"), "-D", self.data,
                        "--username=postgres", f"--pwfile={pwfile}", "--encoding=UTF8",
                        "--locale=C", "--no-sync", "--auth-host=scram-sha-256", "--auth-local=trust")
        os.unlink(pwfile)
        if r.returncode != 0:
            raise AssertionError(f"initdb failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            for key, value in self.settings.items():
                f.write(f"{key} = {value}\n")

    def _init_standby(self, primary):
        """pg_basebackup -R of @primary over its private socket (initdb's
        pg_hba trusts local replication), then this server's own settings
        after the copied ones (the later line wins)."""
        os.mkdir(self.sockdir, 0o755)
        os.chown(self.sockdir, self.user.pw_uid, self.user.pw_gid)
        shutil.copy(primary.password_file, self.password_file)
        os.mkdir(self.data, 0o700)
        os.chown(self.data, self.user.pw_uid, self.user.pw_gid)
        r = self._as_pg(os.path.join(self.bindir, "pg_basebackup"), "-h", primary.sockdir,
                        "-p", str(primary.port), "-U", "postgres", "-D", self.data, "-R",
                        "-X", "stream", "-c", "fast", "--no-sync")
        if r.returncode != 0:
            raise AssertionError(f"pg_basebackup failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        # promoted, it has no standby of its own to wait for
        settings = {"synchronous_standby_names": "''", **self.settings}
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            for key, value in settings.items():
                f.write(f"{key} = {value}\n")

    def promote(self, timeout=60):
        """pg_ctl promote: the standby becomes a primary (read-write)."""
        r = self._as_pg(os.path.join(self.bindir, "pg_ctl"), "promote", "-w", "-t", str(timeout),
                        "-D", self.data, timeout=timeout + 10)
        if r.returncode != 0:
            raise AssertionError(f"pg_ctl promote failed ({r.returncode}):\n{r.stderr}")

    def make_replication_synchronous(self, timeout=60):
        """COMMIT on this primary waits until a standby has flushed it,
        from the moment one is streaming as synchronous."""
        self.psql("ALTER SYSTEM SET synchronous_standby_names = '*'", db="postgres")
        self.psql("SELECT pg_reload_conf()", db="postgres")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.psql("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'",
                         db="postgres").strip() == "1":
                return
            time.sleep(0.1)
        raise AssertionError("no synchronous standby streaming")

    def start(self, timeout=60):
        open(self.log_path, "a").close()
        os.chown(self.log_path, self.user.pw_uid, self.user.pw_gid)
        r = self._as_pg(os.path.join(self.bindir, "pg_ctl"), "start", "-w", "-t", str(timeout),
                        "-D", self.data, "-l", self.log_path, timeout=timeout + 10)
        self.pid = self._read_pid()
        if r.returncode != 0:
            raise AssertionError(f"pg_ctl start failed ({r.returncode}):\n{r.stderr}\n"
                                 + self.log_text())
        if not self.pid:
            raise AssertionError("postmaster.pid missing after pg_ctl start")
        if not self._database_exists():  # a standby has the primary's
            self.psql(f"CREATE DATABASE {DB_NAME}", db="postgres")

    def _read_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (FileNotFoundError, ValueError):
            return self.pid

    def stop(self, mode="fast", timeout=60):
        """pg_ctl stop -m @mode (smart, fast or immediate), then make sure
        nothing of the server is left running."""
        if self.pid is None:
            return
        self._as_pg(os.path.join(self.bindir, "pg_ctl"), "stop", "-w", "-t", str(timeout),
                    "-m", mode, "-D", self.data, timeout=timeout + 10)
        self._kill_tree()

    def _kill_tree(self):
        """SIGKILL to whatever is left of the server, then wait until it is
        gone. The postmaster's children each lead a process group of their
        own, so the tree is found by parent pid: the postmaster is stopped
        first (it forks no more), then it and every descendant running as
        the server's user are killed."""
        pid, self.pid = self.pid, None
        if pid is None or not _owned_by(pid, self.user.pw_uid):
            return
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return
        tree = [p for p in [pid] + descendants(pid) if _owned_by(p, self.user.pw_uid)]
        for p in tree:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not any(_alive(p) for p in tree):
                return
            time.sleep(0.05)
        raise AssertionError(f"PostgreSQL processes {tree} survived SIGKILL")

    def running(self):
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def cleanup(self, keep_dir=False):
        try:
            if self.pid is not None:
                self.stop(mode="immediate", timeout=20)
        finally:
            if not keep_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        passed = exc_type is None or (exc_type is SystemExit and not exc.code)
        if not passed:
            print("PostgreSQL log (tail):\n" + self.log_text()[-4000:], flush=True)
        self.cleanup()

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------ clients

    @property
    def url(self):
        """What cashpayd gets as [database] url: TCP on loopback, password
        from its password_file."""
        return self.url_for(DB_NAME)

    def url_for(self, db):
        return f"host=127.0.0.1 port={self.port} dbname={db} user=postgres"

    def create_database(self, db):
        """Another empty database on this server (cheaper than a server)."""
        self.psql(f"CREATE DATABASE {db}", db="postgres")

    def psql(self, sql, db=DB_NAME, variables=None, check_rc=True):
        """Run @sql through psql over the private socket; returns stdout."""
        argv = [os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t",
                "-v", "ON_ERROR_STOP=1", "-h", self.sockdir, "-p", str(self.port),
                "-U", "postgres", "-d", db]
        for name, value in (variables or {}).items():
            argv += ["-v", f"{name}={value}"]
        r = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
        if check_rc and r.returncode != 0:
            raise AssertionError(f"psql failed ({r.returncode}): {r.stderr.strip()}\nSQL: {sql}")
        return r.stdout

    def query(self, sql, *args, db=DB_NAME):
        """Rows of @sql as dicts (JSON types: numbers, strings, booleans,
        bytea as "\\x..." hex). Each ? becomes a quoted psql variable, so
        arguments are never spliced into the SQL text."""
        parts = sql.split("?")
        if len(parts) - 1 != len(args):
            raise ValueError(f"{len(parts) - 1} placeholders, {len(args)} arguments")
        text = parts[0]
        variables = {}
        for i, (arg, rest) in enumerate(zip(args, parts[1:])):
            if arg is None:
                text += "NULL" + rest
                continue
            variables[f"a{i}"] = str(arg)
            text += f":'a{i}'" + rest
        wrapped = f"SELECT coalesce(json_agg(q), '[]'::json) FROM ({text}) AS q"
        return json.loads(self.psql(wrapped, db=db, variables=variables))

    def terminate_connections(self, db, application_name="cashpayd", timeout=60):
        """pg_terminate_backend() for every connection of @application_name
        to @db, then wait until the server has let them go. Returns how
        many were terminated."""
        n = self.query("SELECT count(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM "
                       "pg_stat_activity WHERE datname = ? AND application_name = ?) AS q",
                       db, application_name, db="postgres")[0]["n"]
        deadline = time.monotonic() + timeout
        while self.query("SELECT 1 FROM pg_stat_activity WHERE datname = ? AND "
                         "application_name = ?", db, application_name, db="postgres"):
            if time.monotonic() > deadline:
                raise AssertionError(f"the terminated connections to {db} are still there")
            time.sleep(0.1)
        return n

    def query_as_sqlite(self, sql, *args, db=DB_NAME):
        """query(), with each value as the SQLite store spells it, so that
        one test's assertions hold on both backends: times as ISO-8601 UTC
        text with milliseconds, booleans as 0/1, bytea as bytes."""
        return [{k: _as_sqlite(v) for k, v in row.items()} for row in self.query(sql, *args, db=db)]

    def execute(self, sql, db=DB_NAME):
        self.psql(sql, db=db)

    def session(self, db=DB_NAME, application_name="cashpayd-test"):
        """A psql kept open (Session): one connection across statements,
        e.g. to hold a lock while the daemon runs into it."""
        return Session(self, db, application_name)

    def _database_exists(self):
        out = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'", db="postgres")
        return out.strip() == "1"


class Session:
    """One psql process over the private socket, statements fed through
    its stdin; run() waits for each to finish. Closing ends the process
    (its transaction, and the locks held in it, go with the connection)."""

    def __init__(self, server, db, application_name):
        argv = [os.path.join(server.bindir, "psql"), "-X", "-q", "-A", "-t",
                "-v", "ON_ERROR_STOP=1", "-h", server.sockdir, "-p", str(server.port),
                "-U", "postgres", "-d", db]
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PGAPPNAME": application_name}
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
        self._n = 0

    def run(self, sql):
        """@sql, then the lines it printed, once psql echoes a marker after
        it (a statement that blocks blocks this too: meson's timeout bounds it)."""
        self._n += 1
        marker = f"--done {self._n}--"
        self.proc.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + marker + "\n")
        self.proc.stdin.flush()
        lines = []
        for line in self.proc.stdout:
            if line.strip() == marker:
                return lines
            lines.append(line)
        raise AssertionError(f"psql session ended: {''.join(lines)}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_TIMESTAMPTZ = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")


def _as_sqlite(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, str) and v.startswith("\\x"):
        return bytes.fromhex(v[2:])
    if isinstance(v, str) and _TIMESTAMPTZ.fullmatch(v):
        t = datetime.datetime.fromisoformat(v).astimezone(datetime.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return v


_shared = {"server": None, "n": 0}


def shared_database():
    """(server, database name, the [database] config for it): a fresh
    database on the one server of this test process, started on first use
    and stopped when the process exits."""
    if _shared["server"] is None:
        _shared["server"] = PgServer()
        atexit.register(_shared["server"].cleanup)
    pg = _shared["server"]
    _shared["n"] += 1
    db = f"test{_shared['n']}"
    pg.create_database(db)
    return pg, db, {"database.backend": "postgresql", "database.url": pg.url_for(db),
                    "database.password_file": pg.password_file}
