"""The PostgreSQL server's host vanishes without a reset (power loss, a
partition): every packet between cashpayd and the server is dropped, none
is refused. CONTRACT.md §9: 503s meanwhile, then the same process resumes
with nothing acknowledged lost. Without connect_timeout, tcp_user_timeout
and keepalives the writer would wait out the kernel's retransmissions
(about 15 minutes) before it even tried to reconnect.

Everything runs in network namespaces of the test's own, so nothing outside
is touched, and on loopback addresses only. This process (with cashpayd
and the webhook senders) moves into a new namespace at start; the server
runs in a second one, held by a `sleep` child, joined to the first by a
veth pair on 127.203.0.0/30 (route_localnet lets loopback addresses leave
`lo` inside those namespaces; the /8 local route gives way to 127.0.0.1
alone, so 127.203.0.2 is the server's side and not this one's). Dropping
every packet is a `pfifo limit 0` qdisc on the server's side of the pair:
this kernel has no netem, and a black hole on `lo` would drop the webhooks
to cashpayd too. Dropped there, cashpayd's side sees nothing at all - no
reset, no local drop, no unreachable (the neighbours are permanent, so no
failed ARP tells it either) - as when the server's host is gone. Needs
root (unshare, nsenter, ip, tc, sysctl).

Three cases: the host gone under load (the daemon's default timeouts,
proven as shipped); the primary's host gone in a failover, its promoted
standby named second in the url; and the host gone while the connection
is idle, found by keepalives. The last two lower the timeouts through the
url (its own values win over the defaults) to keep the test short.
"""
import ctypes
import os
import re
import subprocess
import sys
import threading
import time

from harness import Daemon, check, check_eq, random_charge_id, run_tests, spawn, end_group
from pgserver import PASSWORD, PgServer
from test_pg_faults import (Load, check_answers, check_stored, healthz, post, wait_for_progress,
                            wait_until)

CLONE_NEWNET = 0x40000000
# this process, cashpayd and the senders on APP_ADDR; the server on DB_ADDR
APP_ADDR, DB_ADDR = "127.203.0.1", "127.203.0.2"
TCP_USER_TIMEOUT_S = 10  # pg-conn.c's default; the checks below keep wide margins
HOLDERS = {}             # "db": the `sleep` holding the server's namespace
HOLE = {"on": False}     # the black hole's qdisc is in place
# the url's own timeouts for the failover and the idle case (seconds)
FAST = {"connect_timeout": 2, "tcp_user_timeout": 4, "keepalives_idle": 2,
        "keepalives_interval": 1, "keepalives_count": 3}
BACKOFF_MAX_S = 5        # pg-store.c: a handle's reconnects back off up to 5 s
COMMIT_TIMEOUT_S = 10    # [database] commit_timeout's default: a webhook's wait


def run(*argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {r.returncode} {r.stderr.strip()}")


def in_ns(name, *argv):
    return ("nsenter", f"--net=/proc/{HOLDERS[name].pid}/ns/net", "--", *argv)


def new_namespace(name):
    HOLDERS[name] = spawn(["unshare", "--net", "--", "sleep", "infinity"])
    mine = os.readlink("/proc/self/ns/net")
    wait_until(lambda: os.readlink(f"/proc/{HOLDERS[name].pid}/ns/net") != mine,
               f"the {name} namespace", timeout=10)


def loopback_beyond_lo(*ns):
    """In this namespace (or @ns's): lo up, loopback addresses routable on
    other interfaces, and only 127.0.0.1 itself local on lo."""
    for cmd in (("sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1"),
                ("sysctl", "-q", "-w", "net.ipv4.conf.default.route_localnet=1"),
                ("ip", "link", "set", "lo", "up"),
                ("ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")):
        run(*(in_ns(*ns, *cmd) if ns else cmd))


def mac_of(dev, *ns):
    # from ip, not /sys: sysfs shows the namespace it was mounted in
    argv = ("ip", "-o", "link", "show", "dev", dev)
    r = subprocess.run(in_ns(*ns, *argv) if ns else argv, capture_output=True, text=True,
                       check=True)
    return r.stdout.split("link/ether ", 1)[1].split()[0]


def set_up_namespaces():
    """This process into a new namespace (before any thread starts), and
    the server's, joined by a veth pair with permanent neighbours."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise AssertionError(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
    loopback_beyond_lo()
    new_namespace("db")
    loopback_beyond_lo("db")
    run("ip", "link", "add", "app0", "type", "veth", "peer", "name", "db0")
    run("ip", "link", "set", "db0", "netns", str(HOLDERS["db"].pid))
    run("ip", "addr", "add", f"{APP_ADDR}/30", "dev", "app0")
    run("ip", "link", "set", "app0", "up")
    for cmd in (("ip", "addr", "add", f"{DB_ADDR}/30", "dev", "db0"),
                ("ip", "link", "set", "db0", "up")):
        run(*in_ns("db", *cmd))
    run("ip", "neigh", "replace", DB_ADDR, "lladdr", mac_of("db0", "db"), "dev", "app0",
        "nud", "permanent")
    run(*in_ns("db", "ip", "neigh", "replace", APP_ADDR, "lladdr", mac_of("app0"),
               "dev", "db0", "nud", "permanent"))


def black_hole(on):
    """Every packet the server's side sends dropped (@on), or passed again
    (nothing to do when it already is)."""
    if HOLE["on"] == on:
        return
    verb = "add" if on else "del"
    tail = ("pfifo", "limit", "0") if on else ()
    run(*in_ns("db", "tc", "qdisc", verb, "dev", "db0", "root", *tail))
    HOLE["on"] = on


class NsPgServer(PgServer):
    """The suite's throwaway server, run inside the holder's namespace and
    listening on its veth address, where this side may connect (also for
    replication) with the password."""

    def __init__(self, settings=None):
        super().__init__(start=False,
                         settings={"listen_addresses": f"'{DB_ADDR}'", **(settings or {})})
        try:
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                f.write(f"host all all {APP_ADDR}/32 scram-sha-256\n"
                        f"host replication all {APP_ADDR}/32 scram-sha-256\n")
            self.start()
        except BaseException:
            self.cleanup()
            raise

    def _as_pg(self, *cmd, **kw):
        argv = in_ns("db", "setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                        "--clear-groups", "--", *cmd)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 120)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        return subprocess.run(argv, env=env, cwd=self.dir, **kw)


def writer_noticed(daemon):
    """The writer gave the dead connection up (its batch answered 503)."""
    return re.search(r"answering 503: database connection lost", daemon.log_text()) is not None


def reconnect_timed_out(daemon):
    """A reconnect gave up by libpq's connect_timeout ("timeout expired"),
    not by the kernel's SYN retries ("Connection timed out", minutes)."""
    return re.search(r"cannot connect to PostgreSQL: .*timeout expired",
                     daemon.log_text()) is not None


class LogWatch:
    """The daemon's log lines as they come, each stamped with the monotonic
    time this test first read it (the lines have no time of their own),
    read every 50 ms: a stamp is late by that much at most."""

    def __init__(self, daemon):
        self.path = daemon.log_path
        self.offset = os.path.getsize(daemon.log_path)
        self.lines = []          # (time, line)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._read)
        self.thread.start()

    def _read(self):
        partial = b""
        while not self.stop_event.wait(0.05):
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
            self.offset += len(data)
            *complete, partial = (partial + data).split(b"\n")
            now = time.monotonic()
            with self.lock:
                self.lines += [(now, l.decode(errors="replace")) for l in complete]

    def matching(self, pattern, since=0.0):
        """(time, re.Match) of each line since @since that @pattern matches."""
        with self.lock:
            lines = list(self.lines)
        return [(t, m) for t, l in lines if t >= since for m in [re.search(pattern, l)] if m]

    def wait_for(self, pattern, since, what, timeout):
        """The time of the first line since @since that @pattern matches."""
        wait_until(lambda: self.matching(pattern, since), what, timeout=timeout)
        return self.matching(pattern, since)[0][0]

    def stop(self):
        self.stop_event.set()
        self.thread.join(10)


def daemon_config(url, password_file):
    return {"database.backend": "postgresql", "database.url": url,
            "database.password_file": password_file, "http.threads": "4",
            "log.level": "notice"}


def fast_timeouts(*keys):
    """FAST's @keys (all by default) as url keywords, tcp_user_timeout in ms
    as libpq takes it (only those a case needs: a line of the config file
    holds at most 198 bytes)."""
    return " ".join(f"{k}={v * 1000 if k == 'tcp_user_timeout' else v}"
                    for k, v in FAST.items() if k in (keys or FAST))


def print_pg_lines(daemon):
    print("cashpayd's log, its PostgreSQL lines:\n" + "\n".join(
        l for l in daemon.log_text().splitlines() if "PostgreSQL" in l or "commit" in l)[-3000:],
        flush=True)


def with_log_on_failure(daemon, scenario, *args):
    try:
        scenario(daemon, *args)
    except BaseException:
        print("cashpayd log (tail):\n" + daemon.log_text()[-6000:], flush=True)
        raise


def on_server_behind_hole(scenario, url_options=""):
    """@scenario(daemon, pg) for a daemon whose one server is on the far
    side of the black hole, with @url_options in its url."""
    with NsPgServer() as pg:
        url = f"host={DB_ADDR} port={pg.port} dbname=cashpay user=postgres {url_options}"
        with Daemon(daemon_config(url.strip(), pg.password_file)) as daemon:
            with_log_on_failure(daemon, scenario, pg)


def test_server_host_vanishes():
    """Under load, with the daemon's default timeouts."""
    on_server_behind_hole(check_through_black_hole)


def check_through_black_hole(daemon, pg):
    pid = daemon.proc.pid
    load = Load(daemon, workers=4)
    try:
        wait_for_progress(load, "acks before the black hole")
        codes_before = dict(load.codes)
        black_hole(True)
        cut = time.monotonic()
        try:
            # meson's timeout bounds this wait; without the defaults it
            # would last the kernel's ~15 minutes of retransmissions
            wait_until(lambda: writer_noticed(daemon), "the writer to notice", timeout=120)
            noticed = time.monotonic() - cut
            acked_in_hole = load.acked_count()
            # its reconnect into the black hole ends by connect_timeout
            wait_until(lambda: reconnect_timed_out(daemon), "a reconnect to time out",
                       timeout=60)
            retried = time.monotonic() - cut
            check_eq(load.acked_count(), acked_in_hole, "acks while the server is gone")
        finally:
            black_hole(False)
        back = time.monotonic()
        wait_for_progress(load, "acks after the black hole")
        resumed = time.monotonic() - back
    finally:
        load.stop()
    during = {c: n - codes_before.get(c, 0) for c, n in load.codes.items()}
    print(f"writer noticed after {noticed:.1f} s, its reconnect failed {retried:.1f} s after "
          f"the cut; service again {resumed:.1f} s after the "
          f"black hole went; answers from the cut on: {during}; {len(load.acked)} "
          f"acknowledged", flush=True)
    print_pg_lines(daemon)
    # tcp_user_timeout must pass before the connection is given up
    check(noticed > TCP_USER_TIMEOUT_S / 2, f"noticed after only {noticed:.1f} s")
    check(noticed < 4 * TCP_USER_TIMEOUT_S, f"noticed only after {noticed:.1f} s")
    check_answers(during, "server host gone")
    check_eq(daemon.proc.pid, pid, "the same process")
    check(daemon.proc.poll() is None, "cashpayd still running")
    check_stored("cashpay", load.acked, "server host gone", server=pg)


# ------------------------------------------------------------ failover

def test_failover_from_silent_primary():
    """The primary's host goes silent (power lost, cut off) and its standby
    is promoted, as an HA manager fails over: the old primary is not
    stopped but gone from the network for everyone, cashpayd and the
    standby alike (which streams from it over the same veth pair, so
    replication is cut too). The standby is the second host, on this
    namespace's 127.0.0.1, which the black hole does not touch; cashpayd's
    url names the primary first (host=A,B target_session_attrs=read-write).
    Replication is synchronous (a COMMIT returns once the standby has
    flushed it), so every delivery acknowledged before the cut is on the
    standby too, and checking the promoted standby alone is honest; with
    asynchronous replication the last commits acknowledged before the cut
    could be missing there (README). Shown: the writer gives its connection
    up within the tcp_user_timeout bound; each reconnect gives the silent
    primary its connect_timeout, then finds the standby still read-only
    (one log line with both hosts' reasons); 503s meanwhile and nothing
    acknowledged; once the standby is promoted the same process writes to
    it within a backoff and a connect_timeout, /healthz follows, and nothing
    acknowledged is lost."""
    conninfo = f"host={DB_ADDR} user=postgres password={PASSWORD} application_name=standby"
    try:
        with NsPgServer() as primary, PgServer(standby_of=primary, settings={
                "primary_conninfo": f"'{conninfo} port={primary.port}'"}) as standby:
            primary.make_replication_synchronous()
            url = (f"host={DB_ADDR},127.0.0.1 port={primary.port},{standby.port} "
                   f"dbname=cashpay user=postgres target_session_attrs=read-write "
                   f"{fast_timeouts('connect_timeout', 'tcp_user_timeout')}")
            with Daemon(daemon_config(url, primary.password_file)) as daemon:
                with_log_on_failure(daemon, check_failover, primary, standby)
    finally:
        black_hole(False)  # once the old primary has stopped: it never comes back


def both_hosts_failed(primary, standby):
    """A reconnect that gave the silent primary its connect_timeout and then
    found the standby read-only, in one line; its backoff as group 1."""
    return (f'cannot connect to PostgreSQL: connection to server at "{re.escape(DB_ADDR)}", '
            f'port {primary.port} failed: timeout expired; connection to server at '
            f'"127\\.0\\.0\\.1", port {standby.port} failed: session is read-only; '
            r'trying again in (\d+) ms')


def attempt_durations(failed, start):
    """How long each failed reconnect took, at most (the writer's next call
    comes a little after it may connect). The first starts at @start, the
    loss; each next one once the previous has ended and its backoff,
    counted from the previous one's start, has passed."""
    durations, prev_end, prev_took, backoff = [], start, 0.0, 0.0
    for t, m in failed:
        took = t - prev_end - max(0.0, backoff - prev_took)
        durations.append(took)
        prev_end, prev_took, backoff = t, took, int(m[1]) / 1000
    return durations


def check_failover(daemon, primary, standby):
    pid = daemon.proc.pid
    tut, ct = FAST["tcp_user_timeout"], FAST["connect_timeout"]
    watch = LogWatch(daemon)
    load = Load(daemon, workers=4)
    try:
        wait_for_progress(load, "acks on the primary", n=50)
        health_mark = len(load.health_since(0))
        codes_before = dict(load.codes)
        black_hole(True)
        cut = time.monotonic()
        lost = watch.wait_for(r"answering 503: database connection lost", cut,
                              "the writer to notice", timeout=30 * tut)
        acked_when_lost = load.acked_count()
        attempt = both_hosts_failed(primary, standby)
        wait_until(lambda: len(watch.matching(attempt, cut)) >= 2,
                   "two reconnects that tried both hosts", timeout=30 * ct)
        check_eq(load.acked_count(), acked_when_lost, "acks while only the standby answers")
        promoted = time.monotonic()
        standby.promote()
        back = watch.wait_for(r"connected to PostgreSQL again", promoted,
                              "the writer to connect to the promoted standby", timeout=60)
        wait_for_progress(load, "service on the promoted standby", n=50)
    finally:
        load.stop()
        watch.stop()
    failed = watch.matching(r"cannot connect to PostgreSQL: .*trying again in (\d+) ms", cut)
    failed = [(t, m) for t, m in failed if t < promoted]
    durations = attempt_durations(failed, lost)
    during = {c: n - codes_before.get(c, 0) for c, n in load.codes.items()}
    health = load.health_since(health_mark)
    print(f"failover: the writer noticed {lost - cut:.1f} s after the cut; {len(failed)} "
          f"reconnects before the promotion, each {min(durations):.1f}-{max(durations):.1f} s "
          f"(connect_timeout={ct}); connected to the promoted standby {back - promoted:.1f} s "
          f"after the promotion; answers from the cut on: {during}; /healthz {health}; "
          f"{len(load.acked)} acknowledged", flush=True)
    print_pg_lines(daemon)
    check(lost - cut > tut / 2, f"noticed after only {lost - cut:.1f} s")
    check(lost - cut < 4 * tut, f"noticed only after {lost - cut:.1f} s")
    for t, m in failed:
        check(re.search(attempt, m.string), f"a reconnect that did not try both hosts: {m.string}")
    check(max(durations) < 3 * ct, f"reconnects took {durations} s, connect_timeout={ct}")
    check(back - promoted < 3 * (BACKOFF_MAX_S + ct),
          f"connected only {back - promoted:.1f} s after the promotion")
    check_answers(during, "failover from a silent primary")
    check(503 in health and health[-1] == 200, f"/healthz through the failover: {health}")
    check_eq(daemon.proc.pid, pid, "the same process")
    check(daemon.proc.poll() is None, "cashpayd still running")
    check_stored("cashpay", load.acked, "failover from a silent primary", server=standby)


# ------------------------------------------------------------ idle

def test_idle_connection_host_goes_silent():
    """The server's host goes silent while nothing is in flight: no webhook,
    no statement, so no retransmission timer runs and only keepalives can
    tell. Linux gives such a connection up once its probes have gone
    unanswered for tcp_user_timeout after the last packet that came in
    (with tcp_user_timeout set keepalives_count does not count; the first
    probe goes after keepalives_idle, the next every keepalives_interval),
    so within tcp_user_timeout + keepalives_interval; the idle writer looks
    at its socket every second. Shown: the writer logs the loss ("timed
    out": the kernel's verdict, not a reset) and a reconnect ended by
    connect_timeout, and /healthz says 503, all before any webhook; the
    webhook sent then is answered 503 within a bounded time instead of
    waiting on a dead connection; once packets pass again the same process
    acknowledges it, and nothing acknowledged is lost."""
    on_server_behind_hole(check_idle_host_silent, fast_timeouts())


def check_idle_host_silent(daemon, pg):
    pid = daemon.proc.pid
    tut, idle, interval = (FAST[k] for k in ("tcp_user_timeout", "keepalives_idle",
                                             "keepalives_interval"))
    acked = [(random_charge_id(), "CAPTURED") for _ in range(3)]
    for cid, status in acked:
        check_eq(post(daemon, cid, status), 200, "a webhook before the cut")
    check_eq(healthz(daemon), 200, "/healthz before the cut")
    watch = LogWatch(daemon)
    cid = random_charge_id()
    try:
        black_hole(True)
        cut = time.monotonic()
        try:
            lost = watch.wait_for(r"lost while idle: .*timed out", cut,
                                  "the idle writer to notice", timeout=3 * (tut + interval) + 1)
            watch.wait_for(r"cannot connect to PostgreSQL: .*timeout expired", lost,
                           "its reconnect to time out", timeout=30 * FAST["connect_timeout"])
            health = healthz(daemon)
            sent = time.monotonic()
            code = post(daemon, cid, "CAPTURED")
            answered = time.monotonic() - sent
        finally:
            black_hole(False)
        back = time.monotonic()
        wait_until(lambda: post(daemon, cid, "CAPTURED") == 200, "the webhook acknowledged")
        resumed = time.monotonic() - back
        wait_until(lambda: healthz(daemon) == 200, "/healthz ready again")
    finally:
        watch.stop()
    print(f"idle: the writer found its connection lost {lost - cut:.1f} s after the cut "
          f"(tcp_user_timeout={tut} s, keepalives every {interval} s after {idle} s idle); "
          f"/healthz then {health}; the webhook sent {sent - cut:.1f} s after the cut answered "
          f"{code} in {answered:.1f} s; acknowledged {resumed:.1f} s after the black hole went",
          flush=True)
    print_pg_lines(daemon)
    # no sooner than the probes could have gone unanswered, no later than a few rounds
    check(lost - cut > (tut - idle) / 2, f"found lost after only {lost - cut:.1f} s")
    check(lost - cut < 3 * (tut + interval) + 1, f"found lost only after {lost - cut:.1f} s")
    check_eq(health, 503, "/healthz once the writer found its connection lost")
    check_eq(code, 503, "the webhook while the host is silent")
    check(answered < 2 * COMMIT_TIMEOUT_S, f"the webhook answered only after {answered:.1f} s")
    check_eq(daemon.proc.pid, pid, "the same process")
    check_stored("cashpay", acked + [(cid, "CAPTURED")], "idle connection, host silent",
                 server=pg)


def main():
    set_up_namespaces()
    try:
        run_tests([test_server_host_vanishes, test_failover_from_silent_primary,
                   test_idle_connection_host_goes_silent])
    finally:
        for holder in HOLDERS.values():
            end_group(holder.pid)


if __name__ == "__main__":
    main()
