#!/usr/bin/env python3
"""How soon `cashpayctl events --follow` prints an event once it is committed.

    bench/follow.py [--cashpayd PATH] [--cashpayctl PATH] [--backend B]...
                    [--events N] [--gap-ms MS]

For each backend (sqlite, postgresql; default both): a cashpayd on a fresh
database (PostgreSQL: a server of its own, as the tests start one), a
follower (`events --follow --json`), then N webhooks (default 300) sent one
at a time, a random 0-2 x --gap-ms (default 40) apart. A webhook's 200 comes
after its COMMIT, so "printed - acknowledged" is an upper bound of the
time from commit to print; "printed - sent" is printed as well. Prints
p50, p90, p99 and the maximum in milliseconds, and fails unless every event
was printed exactly once.

With --load SECONDS it measures the other side, what the NOTIFY costs the
webhook path on PostgreSQL: wrk at --connections (default 64) keep-alive
connections for SECONDS against a fresh cashpayd on a fresh database, three
cases in turn, --rounds times (default 2): `no-trigger` (migration 0003's
trigger dropped, no follower: as before it), `trigger` (no follower: the
NOTIFY queued at every commit) and `trigger+follow` (a follower woken at
every commit). webhooks/s, p50/p99 and cpu/req per case: the CPU time of
the daemon, the follower and the server's processes per acknowledged
webhook, the figure that holds still on a busy machine; for the last case
whether the follower printed every stored event once. --poll-cashpayctl
PATH adds `trigger+follow-poll`: a follower from a cashpayctl that polls
five times a second (one built without LISTEN), to tell the cost of being
woken at every commit from that of printing every event.

Run as root (the PostgreSQL server runs as an account of the tests'). Only
127.0.0.1; everything started is ended at exit.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def run(backend, args):
    os.environ["CASHPAYD_TEST_BACKEND"] = backend
    import harness  # after CASHPAYD_TEST_BACKEND: it reads it once
    harness.BACKEND = backend
    d = harness.Daemon({"log.level": "notice"})
    printed = {}
    try:
        proc = harness.spawn([args.cashpayctl, "--config", d.config_path, "events", "--follow",
                              "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

        def read():
            for line in proc.stdout:
                event = json.loads(line)
                printed.setdefault(event["charge_id"], []).append(time.monotonic())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(1.0)  # the follower is up and waiting
        sent, acked = {}, {}
        for i in range(args.events):
            cid = f"chg_follow{i:08d}"
            sent[cid] = time.monotonic()
            status, _ = d.post_json(harness.charge(cid, "CAPTURED"))
            acked[cid] = time.monotonic()
            if status != 200:
                raise SystemExit(f"webhook {i}: HTTP {status}")
            time.sleep(random.uniform(0, 2 * args.gap_ms) / 1000)
        deadline = time.monotonic() + 30
        while len(printed) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        proc.terminate()
        proc.wait(10)
        missing = [c for c in sent if c not in printed]
        twice = [c for c, t in printed.items() if len(t) != 1]
        if missing or twice:
            raise SystemExit(f"{backend}: {len(missing)} events not printed, {len(twice)} twice")
        after_ack = [(printed[c][0] - acked[c]) * 1000 for c in sent]
        after_send = [(printed[c][0] - sent[c]) * 1000 for c in sent]
        for name, values in (("printed - acknowledged", after_ack),
                             ("printed - sent", after_send)):
            print(f"{backend:10s} {name:22s} ms: p50 {percentile(values, 50):7.1f}  "
                  f"p90 {percentile(values, 90):7.1f}  p99 {percentile(values, 99):7.1f}  "
                  f"max {max(values):7.1f}  ({len(values)} events)", flush=True)
    finally:
        d.__exit__(None, None, None)
        harness.end_strays()


BENCH_SECRET = "bench-secret-0123456789abcdef"


def wrk(d, bodies, args):
    out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.load}s",
                          "--timeout", "10s", "-s", os.path.join(ROOT, "bench", "webhooks.lua"),
                          f"http://127.0.0.1:{d.port}/cashpay/webhook", "--", bodies, "2"],
                         capture_output=True, text=True, timeout=args.load + 60).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    return {k: int(v) for k, v in (f.split("=") for f in line.split()[1:])}


def cpu_ticks(pids):
    """utime + stime of @pids (clock ticks); a process gone counts 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def case_pids(d, proc):
    """The daemon, the follower, and the server's processes (its
    backends of this run included)."""
    import pgserver
    pids = [d.proc.pid] + ([proc.pid] if proc else [])
    return pids + [d.pg.pid] + pgserver.descendants(d.pg.pid)


def load_case(case, bodies, args):
    import harness
    d = harness.Daemon({"log.level": "notice", "http.threads": "4"}, secret=BENCH_SECRET)
    proc, printed = None, []
    try:
        if case == "no-trigger":
            d.pg.execute("DROP TRIGGER order_events_notify ON order_events", db=d.pg_db)
        if case.startswith("trigger+follow"):
            ctl = args.poll_cashpayctl if case == "trigger+follow-poll" else args.cashpayctl
            proc = harness.spawn([ctl, "--config", d.config_path, "events",
                                  "--follow", "--json"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
            reader = threading.Thread(target=lambda: printed.extend(
                json.loads(l)["id"] for l in proc.stdout), daemon=True)
            reader.start()
            time.sleep(0.5)
        pids = case_pids(d, proc)
        t0 = cpu_ticks(pids)
        r = wrk(d, bodies, args)
        cpu_ms = (cpu_ticks(pids) - t0) * 1000 / os.sysconf("SC_CLK_TCK")
        ok = r["requests"] - r["non2xx"]
        note = ""
        if proc:
            ids = [row["id"] for row in d.query("SELECT id FROM order_events ORDER BY id")]
            deadline = time.monotonic() + 30
            while len(printed) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.05)
            note = "every event printed once" if printed == ids else \
                f"FOLLOWER WRONG: {len(printed)} printed, {len(ids)} stored"
        print(f"{case:15s} webhooks/s {ok / (r['duration_us'] / 1e6):8.0f}  "
              f"p50 {r['p50_us'] / 1000:6.1f} ms  p99 {r['p99_us'] / 1000:6.1f} ms  "
              f"cpu/req {cpu_ms * 1000 / max(ok, 1):5.0f} us  "
              f"non-2xx {r['non2xx']}  {note}", flush=True)
        return not note.startswith("FOLLOWER WRONG")
    finally:
        if proc:
            harness.end_group(proc.pid)
            proc.wait()
        d.__exit__(None, None, None)


def load(args):
    os.environ["CASHPAYD_TEST_BACKEND"] = "postgresql"
    import harness
    harness.BACKEND = "postgresql"
    bodies = os.path.join(harness.tempfile.mkdtemp(prefix="cashpayd-follow-"), "bodies.txt")
    try:
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen-bodies.py"),
                        "--secret", BENCH_SECRET, "--count", str(args.load * 30000 + 2000),
                        bodies], check=True)
        good = True
        for _ in range(args.rounds):
            cases = ["no-trigger", "trigger", "trigger+follow"]
            if args.poll_cashpayctl:
                cases.append("trigger+follow-poll")
            for case in cases:
                good = load_case(case, bodies, args) and good
        if not good:
            raise SystemExit("the follower missed or repeated events")
    finally:
        harness.shutil.rmtree(os.path.dirname(bodies), ignore_errors=True)
        harness.end_strays()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cashpayd", default=os.path.join(ROOT, "build", "cashpayd"))
    parser.add_argument("--cashpayctl", default=os.path.join(ROOT, "build", "cashpayctl"))
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=40)
    parser.add_argument("--load", type=int, metavar="SECONDS")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--poll-cashpayctl", metavar="PATH")
    args = parser.parse_args()
    args.cashpayctl = os.path.abspath(args.cashpayctl)
    os.environ["CASHPAYD"] = os.path.abspath(args.cashpayd)
    if args.load:
        return load(args)
    for backend in args.backend or ["sqlite", "postgresql"]:
        run(backend, args)


if __name__ == "__main__":
    main()
