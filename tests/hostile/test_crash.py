"""Crash consistency: SIGKILL under concurrent signed load, restart, repeat.

Each cycle starts the daemon on the same database, runs a few clients that
walk charges through their states (INITIATED -> CAPTURED, late captures after
FAILED, duplicates, stale and conflicting deliveries), and kills the daemon
with SIGKILL 50-300 ms into the load. After the restart every request is
accounted for: a 2xx must be in webhook_deliveries with the outcome it was
answered with and its order event; the database passes integrity_check and
the order_events invariants; every request that got no answer (or a 503) is
delivered again, must get 200 and must not take effect twice.

CRASH_CYCLES (default 50), CRASH_CLIENTS (4) and CRASH_SEED set the run;
thousands of cycles are a matter of CRASH_CYCLES=5000. Every CRASH_DB_CYCLES
(100) cycles the run moves on to a fresh database, so that the checks after
each cycle keep their cost.
"""
import os
import random
import shutil
import signal
import threading
import time

from hostile import (Daemon, Delivery, check, check_acked_stored, check_database, check_eq,
                     connection, post_delivery, run_tests, stored_by_nonce)
from harness import random_charge_id  # on the path once hostile is imported

CYCLES = int(os.environ.get("CRASH_CYCLES", "50"))
CLIENTS = int(os.environ.get("CRASH_CLIENTS", "4"))
SEED = int(os.environ.get("CRASH_SEED", str(random.randrange(1 << 32))))
DB_CYCLES = int(os.environ.get("CRASH_DB_CYCLES", "100"))
PER_CLIENT_LIMIT = 2000   # requests per client and cycle: the load is bounded

# What a charge goes through; some repeat or contradict themselves on purpose.
SEQUENCES = [
    ("INITIATED", "CAPTURED"),
    ("INITIATED", "CAPTURED"),
    ("INITIATED", "FAILED"),
    ("CAPTURED",),
    ("INITIATED", "FAILED", "CAPTURED"),   # money arrived late
    ("INITIATED", "CAPTURED", "CAPTURED"), # duplicate
    ("CAPTURED", "INITIATED"),             # stale
    ("CAPTURED", "FAILED"),                # conflict
]


class Stats:
    def __init__(self):
        self.sent = self.acked = self.stored = self.lost = 0
        self.unanswered = self.unanswered_committed = self.refused = 0
        self.redelivered = 0
        self.redelivery_outcomes = {}
        self.restart_ms = []
        self.kill_ms = []  # one per completed cycle

    def summary(self):
        worst = max(self.restart_ms) if self.restart_ms else 0
        mean = sum(self.restart_ms) / len(self.restart_ms) if self.restart_ms else 0
        return (f"cycles {len(self.kill_ms)} of {CYCLES}, clients {CLIENTS}, seed {SEED}: "
                f"sent {self.sent}, "
                f"acked {self.acked}, stored {self.stored}, lost {self.lost}; "
                f"unanswered {self.unanswered} (committed {self.unanswered_committed}), "
                f"non-2xx {self.refused}; redelivered {self.redelivered} "
                f"{dict(sorted(self.redelivery_outcomes.items()))}; "
                f"restart mean {mean:.0f} ms, max {worst:.0f} ms")


def client(daemon, stop, log, rng):
    """Walk charges through their sequences until told to stop."""
    conn = connection(daemon, timeout=5)
    sent = 0
    while not stop.is_set() and sent < PER_CLIENT_LIMIT:
        charge_id = random_charge_id()
        for status in rng.choice(SEQUENCES):
            d = Delivery(charge_id, status)
            log.append(d)
            sent += 1
            if not d.send(conn, daemon):
                conn.close()
                conn = connection(daemon, timeout=5)
                break  # the rest of this charge waits for the redelivery
            if not d.acked:
                break
    conn.close()


def start(daemon, stats):
    started = time.monotonic()
    daemon.start()
    stats.restart_ms.append((time.monotonic() - started) * 1000)


def kill_under_load(daemon, stats, rng):
    """Load, then SIGKILL at a random moment; returns every request made."""
    stop, log = threading.Event(), []
    threads = [threading.Thread(target=client, args=(daemon, stop, log, random.Random(rng.random())))
               for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    delay = rng.uniform(0.05, 0.3)
    time.sleep(delay)
    daemon.proc.send_signal(signal.SIGKILL)
    stop.set()
    daemon.proc.wait()
    daemon.log.close()
    for t in threads:
        t.join(30)
        check(not t.is_alive(), "a client did not finish")
    stats.kill_ms.append(delay * 1000)
    return log


def redeliver(daemon, log, found, stats):
    """Send again whatever was not acknowledged, in the order it was sent."""
    for d in log:
        if d.acked:
            continue
        committed = d.nonce in found
        if d.http_status is None:
            stats.unanswered += 1
            stats.unanswered_committed += committed
        else:
            stats.refused += 1
        again = Delivery(d.charge_id, d.status)
        again.nonce, again.raw = d.nonce, d.raw
        post_delivery(daemon, again)
        stats.redelivered += 1
        check_eq(again.http_status, 200, f"redelivery of {d.charge_id} {d.status}")
        stats.redelivery_outcomes[again.outcome] = stats.redelivery_outcomes.get(again.outcome, 0) + 1
        if committed:
            check(again.outcome != "applied",
                  f"{d.charge_id} {d.status}: committed before the crash, applied again")


def account(daemon, log, after_id, stats):
    """After a restart: the previous cycle's requests against the database."""
    found = stored_by_nonce(daemon, after_id)
    acked = [d for d in log if d.acked]
    lost = check_acked_stored(daemon, log, found)
    stats.sent += len(log)
    stats.acked += len(acked)
    stats.stored += len(acked) - lost
    stats.lost += lost
    check_eq(lost, 0, "acknowledged deliveries missing after the crash")
    check_database(daemon)
    redeliver(daemon, log, found, stats)
    check_database(daemon)


def max_delivery_id(daemon):
    return daemon.query("SELECT coalesce(max(id), 0) AS n FROM webhook_deliveries")[0]["n"]


def new_daemon():
    return Daemon({"log.level": "notice", "http.threads": "4"}, start=False)


def finish(d, log, after_id, stats):
    """Restart after the last kill on this database, account, stop cleanly."""
    start(d, stats)
    account(d, log, after_id, stats)
    check_eq(d.stop(), 0, "clean stop after the last cycle")
    d.log.close()
    check_database(d)


def test_sigkill_under_load():
    rng = random.Random(SEED)
    stats = Stats()
    d = new_daemon()
    log, after_id = [], 0
    try:
        for cycle in range(CYCLES):
            if cycle > 0 and cycle % DB_CYCLES == 0:
                finish(d, log, after_id, stats)
                shutil.rmtree(d.dir, ignore_errors=True)
                d, log, after_id = new_daemon(), [], 0
            start(d, stats)
            try:
                account(d, log, after_id, stats)
            except AssertionError as e:
                raise AssertionError(f"cycle {cycle} (seed {SEED}): {e}") from None
            after_id = max_delivery_id(d)
            log = kill_under_load(d, stats, rng)
        finish(d, log, after_id, stats)
        shutil.rmtree(d.dir, ignore_errors=True)
    finally:
        print(stats.summary(), flush=True)
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
    check(stats.acked > 0, "nothing was acknowledged: the load did not run")
    check(stats.unanswered > 0, "no request was cut off: the kills missed the load")


if __name__ == "__main__":
    run_tests([test_sigkill_under_load])
