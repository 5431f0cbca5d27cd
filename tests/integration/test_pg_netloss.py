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
"""
import ctypes
import os
import re
import subprocess
import sys
import time

from harness import Daemon, check, check_eq, run_tests, spawn, end_group
from pgserver import PgServer
from test_pg_faults import Load, check_answers, check_stored, wait_for_progress, wait_until

CLONE_NEWNET = 0x40000000
# this process, cashpayd and the senders on APP_ADDR; the server on DB_ADDR
APP_ADDR, DB_ADDR = "127.203.0.1", "127.203.0.2"
TCP_USER_TIMEOUT_S = 10  # pg-conn.c's default; the checks below keep wide margins
HOLDERS = {}             # "db": the `sleep` holding the server's namespace


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
    """Every packet the server's side sends dropped (@on), or passed again."""
    verb = "add" if on else "del"
    tail = ("pfifo", "limit", "0") if on else ()
    run(*in_ns("db", "tc", "qdisc", verb, "dev", "db0", "root", *tail))


class NsPgServer(PgServer):
    """The suite's throwaway server, run inside the holder's namespace and
    listening on its veth address."""

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


def test_server_host_vanishes():
    with NsPgServer(start=False, settings={"listen_addresses": f"'{DB_ADDR}'"}) as pg:
        with open(os.path.join(pg.data, "pg_hba.conf"), "a") as f:
            f.write(f"host all all {APP_ADDR}/32 scram-sha-256\n")
        pg.start()
        config = {"database.backend": "postgresql",
                  "database.url": f"host={DB_ADDR} port={pg.port} dbname=cashpay user=postgres",
                  "database.password_file": pg.password_file, "http.threads": "4",
                  "log.level": "notice"}
        with Daemon(config) as daemon:
            try:
                check_through_black_hole(daemon, pg)
            except BaseException:
                print("cashpayd log (tail):\n" + daemon.log_text()[-6000:], flush=True)
                raise


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
    print("cashpayd's log, its PostgreSQL lines:\n" + "\n".join(
        l for l in daemon.log_text().splitlines() if "PostgreSQL" in l or "commit" in l)[-3000:],
        flush=True)
    # tcp_user_timeout must pass before the connection is given up
    check(noticed > TCP_USER_TIMEOUT_S / 2, f"noticed after only {noticed:.1f} s")
    check(noticed < 4 * TCP_USER_TIMEOUT_S, f"noticed only after {noticed:.1f} s")
    check_answers(during, "server host gone")
    check_eq(daemon.proc.pid, pid, "the same process")
    check(daemon.proc.poll() is None, "cashpayd still running")
    check_stored("cashpay", load.acked, "server host gone", server=pg)


def main():
    set_up_namespaces()
    try:
        run_tests([test_server_host_vanishes])
    finally:
        for holder in HOLDERS.values():
            end_group(holder.pid)


if __name__ == "__main__":
    main()
