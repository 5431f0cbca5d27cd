"""cashpayctl events --follow on PostgreSQL (LISTEN/NOTIFY) under a webhook
load, through the faults a follower meets: its connection terminated
(pg_terminate_backend), and the server restarted (pg_ctl stop -m fast,
start). Each time it reconnects by itself, LISTENs again and catches up
from the last event it printed: in the end it has printed every row of
order_events exactly once, in id order, each as the database holds it.
SIGINT and SIGTERM end it cleanly (exit 0) while it waits and while the
server is down. Pointed at a streaming standby, which refuses LISTEN, it
polls and still prints every event once.

Waits here are bounded (RECOVERY_WAIT) but never checked as figures: how
fast a follower wakes is measured by bench/follow.sh.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import harness
from harness import Daemon, check, check_eq, run_tests
from pgserver import PgServer
from test_pg_faults import Load

PG = None
CTL = os.environ.get("CASHPAYCTL") or sys.exit("CASHPAYCTL is not set")
RECOVERY_WAIT = 60  # seconds: a bound on a wait, not a figure that is checked
_dbs = iter(range(1, 1000))


def new_daemon():
    db = f"follow{next(_dbs)}"
    PG.create_database(db)
    return db, Daemon({"database.backend": "postgresql", "database.url": PG.url_for(db),
                       "database.password_file": PG.password_file, "http.threads": "4",
                       "log.level": "notice"})


class Follower:
    """cashpayctl events --follow --json over @daemon's configuration (or
    @config); a thread collects each line it prints, stderr goes to a file."""

    def __init__(self, daemon, config=None):
        self.err_path = os.path.join(daemon.dir, f"follow-{time.monotonic_ns()}.err")
        self.err = open(self.err_path, "wb")
        self.proc = harness.spawn([CTL, "--config", config or daemon.config_path, "events",
                                   "--follow", "--json"], stdout=subprocess.PIPE,
                                  stderr=self.err)
        self.lock = threading.Lock()
        self.events = []
        self.thread = threading.Thread(target=self._read)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.events.append(json.loads(line))

    def ids(self):
        with self.lock:
            return [e["id"] for e in self.events]

    def wait_for(self, what, predicate):
        deadline = time.monotonic() + RECOVERY_WAIT
        while not predicate():
            if self.proc.poll() is not None:
                raise AssertionError(f"the follower exited ({self.proc.returncode}) waiting for "
                                     f"{what}: {self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the follower did not print {what}: {self.stderr()}")
            time.sleep(0.05)

    def wait_past(self, n, what):
        self.wait_for(what, lambda: len(self.ids()) > n)

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig):
        """@sig, then its exit status (the follower must end by itself)."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(RECOVERY_WAIT)
        finally:
            self.close()

    def close(self):
        harness.end_group(self.proc.pid)
        self.proc.wait()
        self.thread.join(RECOVERY_WAIT)
        self.proc.stdout.close()
        self.err.close()


def follower_backends(db):
    """The follower's server processes: the connection that LISTENs (the
    daemon never does)."""
    return PG.query("SELECT pid FROM pg_stat_activity WHERE datname = ? AND "
                    "application_name = 'cashpayd' AND query LIKE '%FROM order_events e%'", db,
                    db="postgres")


def check_printed_everything(db, follower, load, server=None):
    """Every committed event once, in id order, as the database has it."""
    rows = (server or PG).query("SELECT e.id, e.charge_id, e.from_status, e.to_status FROM order_events e "
                    "ORDER BY e.id", db=db)
    follower.wait_for(f"all {len(rows)} events", lambda: len(follower.ids()) >= len(rows))
    time.sleep(0.5)  # a duplicate printed after the last event would show now
    with follower.lock:
        printed = list(follower.events)
    check_eq([e["id"] for e in printed], [r["id"] for r in rows], "printed ids: every row once, in order")
    check_eq([(e["charge_id"], e["from_status"], e["to_status"]) for e in printed],
             [(r["charge_id"], r["from_status"], r["to_status"]) for r in rows], "as stored")
    acked = {(cid, status) for cid, status in load.acked}
    seen = {(e["charge_id"], e["to_status"]) for e in printed}
    check(acked <= seen, f"acknowledged but never printed: {sorted(acked - seen)[:5]}")
    return len(printed)


def end(d, follower, load):
    """The load, the follower (if the test did not stop them) and the daemon
    ended, whatever the test got to."""
    if load:
        load.stop()
    if follower:
        follower.close()
    d.__exit__(None, None, None)


# ------------------------------------------------------------ tests

def test_follow_through_terminated_connections():
    db, d = new_daemon()
    follower = load = None
    try:
        follower = Follower(d)
        load = Load(d, workers=4)
        follower.wait_past(20, "the first events")
        rounds = 0
        for _ in range(4):
            n = len(follower.ids())
            # the follower's connection alone, then every cashpayd connection
            pids = follower_backends(db) if rounds % 2 == 0 else []
            if pids:
                PG.query("SELECT pg_terminate_backend(?::int) AS t", pids[0]["pid"],
                         db="postgres")
            else:  # without waiting for them to go: under load they come back at once
                PG.query("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
                         "WHERE datname = ? AND application_name = 'cashpayd'", db,
                         db="postgres")
            rounds += 1
            follower.wait_past(n + 20, f"events after termination {rounds}")
        load.stop()
        n = check_printed_everything(db, follower, load)
        check_eq(follower.stop(signal.SIGTERM), 0, "SIGTERM ends the follower cleanly")
        follower = None
        print(f"     {rounds} terminations, {n} events printed once each", flush=True)
    finally:
        end(d, follower, load)


def test_follow_through_server_restarts():
    db, d = new_daemon()
    follower = load = None
    try:
        follower = Follower(d)
        load = Load(d, workers=4)
        follower.wait_past(20, "the first events")
        for i in range(2):
            n = len(follower.ids())
            PG.stop(mode="fast")
            time.sleep(1.0)  # long enough for the follower to find the server gone
            PG.start()
            follower.wait_past(n + 20, f"events after restart {i + 1}")
        load.stop()
        n = check_printed_everything(db, follower, load)
        err = follower.stderr()
        check("cannot read events (trying again)" in err and "reading events again" in err,
              f"the follower says it lost the server and found it again: {err!r}")
        check_eq(follower.stop(signal.SIGINT), 0, "SIGINT ends the follower cleanly")
        follower = None
        print(f"     2 restarts, {n} events printed once each", flush=True)
    finally:
        if not PG.running():
            PG.start()
        end(d, follower, load)


def test_signals_end_follower_while_server_down():
    db, d = new_daemon()
    followers = []
    try:
        followers = [Follower(d), Follower(d)]
        followers[0].wait_for("a read of the empty feed by both",
                              lambda: len(follower_backends(db)) == 2)
        PG.stop(mode="fast")
        try:
            # both find the server gone and wait to reconnect (on backoff)
            for f in followers:
                f.wait_for("its outage", lambda f=f: "trying again" in f.stderr())
            for f, sig in zip(followers, (signal.SIGINT, signal.SIGTERM)):
                check_eq(f.stop(sig), 0, f"signal {sig.name} with the server down")
            followers = []
        finally:
            PG.start()
    finally:
        for f in followers:
            f.close()
        d.__exit__(None, None, None)


def test_follow_on_standby_polls():
    db, d = new_daemon()
    follower = load = None
    try:
        with PgServer(standby_of=PG) as standby:
            conf = os.path.join(d.dir, "standby.conf")
            with open(d.config_path) as f:
                text = f.read()
            with open(conf, "w") as f:
                f.write(text.replace(f"port={PG.port}", f"port={standby.port}"))
            follower = Follower(d, conf)
            load = Load(d, workers=2)
            follower.wait_past(50, "events replicated to the standby")
            load.stop()
            # the standby has replayed all the primary committed
            n = check_printed_everything(db, follower, load, server=standby)
            check_eq(n, len(PG.query("SELECT id FROM order_events", db=db)), "all of the primary's")
            check("cannot execute LISTEN during recovery" in standby.log_text(),
                  "the standby refused LISTEN (so the follower polled)")
            check_eq(follower.stop(signal.SIGTERM), 0, "SIGTERM ends the follower cleanly")
            follower = None
            print(f"     {n} events printed once each from the standby", flush=True)
    finally:
        end(d, follower, load)


def main():
    global PG
    with PgServer() as PG:
        run_tests([
            test_follow_through_terminated_connections,
            test_follow_through_server_restarts,
            test_signals_end_follower_while_server_down,
            test_follow_on_standby_polls,
        ])


if __name__ == "__main__":
    main()
