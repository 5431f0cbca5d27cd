"""Crash safety of the API half: SIGKILL while charges are created and while
stale orders are reconciled, restart, repeat (CONTRACT §8.3, §8.5).

Charge creation: drivers keep asking the daemon's checkout listener
(POST /charges) for charges for a fixed set of order_refs, each retried
after a failure until it is answered with a charge, while the daemon is
killed with SIGKILL at a random moment of each round (cashpay-sim answers
the API with some latency, so kills land between the request recorded, the
POST sent, and the charge recorded). After each restart: cashpay-sim holds
at most one charge per order_ref (it sees the order_ref in the charge's
metadata), every charge acknowledged to a driver (201, or 200 for one that
was already there) is in orders with that charge_id and order_ref, and the
order_events chains hold. After a last round without a kill every
order_ref has exactly one charge, at the simulator and in orders.

The same with `cashpayctl charge create`, which runs the same steps in a
process of its own: two drivers run it for a fixed set of order_refs, each
run SIGKILLed at a random moment of its life unless it finished first, the
daemon running beside it; the same invariants.

Reconciliation: many INITIATED orders whose charges the simulator has
captured or failed (their webhooks dropped), some left unpaid; the daemon
with reconcile_after = 1 and few API requests at once is killed at random
moments and restarted. After each kill: every event of source 'api' names
an api_fetches row of its charge that saw that status, every change of
status has a delivery or a fetch, each event starts where the previous one
ended. In the end every order is what the simulator says.

On PostgreSQL (CASHPAYD_TEST_BACKEND=postgresql, as the integration tests:
the daemon on a server the test starts) the same loops and checks. There a
reconciler claims the orders it fetches with a lease derived from the
configuration, which a SIGKILLed instance cannot give back: with
request_timeout = 1 and max_inflight = 4 it is 23.5 s (claim_lease_ms()),
and the runs after a kill wait it out, the last one too, so that every
order is taken up again by the daemon itself, nothing in the database
touched by the test.

API_CRASH_ROUNDS (default 20), API_CRASH_SEED set the run.
"""
import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

import harness  # noqa: E402
from harness import (check, check_eq, claim_lease_ms, end_group, free_port, run_tests,  # noqa: E402
                     spawn)
from hostile import port_open  # noqa: E402
from test_reconcile import CTL, finish, start, wait_for  # noqa: E402

ROUNDS = int(os.environ.get("API_CRASH_ROUNDS", "20"))
SEED = int(os.environ.get("API_CRASH_SEED", str(random.randrange(1 << 32))))
DRIVERS = 4
REFS = [f"crash-order-{i:03d}" for i in range(150)]
ORDERS = 80            # stale orders for the reconciliation loop
ROUND_LIMIT_S = 1.0    # the longest a round runs before its kill
# PostgreSQL: the lease of a claim in the reconciliation loop (its config)
LEASE_MS = claim_lease_ms(request_timeout=1, max_inflight=4)

# What must hold of orders and order_events whatever moment the daemon
# died at; each query lists the charges that break it. The SQL is what both
# engines speak (IS DISTINCT FROM: SQLite 3.39 and later).
SQLITE_ONLY = {
    "PRAGMA integrity_check":
        "SELECT integrity_check AS charge_id FROM pragma_integrity_check "
        "WHERE integrity_check != 'ok'",
}
INVARIANTS = {
    **(SQLITE_ONLY if harness.BACKEND == "sqlite" else {}),
    "every order has an event":
        "SELECT o.charge_id FROM orders o WHERE NOT EXISTS "
        "(SELECT 1 FROM order_events e WHERE e.charge_id = o.charge_id)",
    "every event belongs to an order":
        "SELECT e.charge_id FROM order_events e LEFT JOIN orders o USING (charge_id) "
        "WHERE o.charge_id IS NULL",
    "the first event is the checkout's, from NULL to INITIATED":
        "SELECT e.charge_id FROM order_events e WHERE e.id = "
        "(SELECT min(id) FROM order_events f WHERE f.charge_id = e.charge_id) "
        "AND (e.from_status IS NOT NULL OR e.to_status IS DISTINCT FROM 'INITIATED' "
        "OR e.source IS DISTINCT FROM 'checkout')",
    "each event starts where the previous one ended":
        "SELECT charge_id FROM (SELECT charge_id, from_status, "
        "lag(to_status) OVER (PARTITION BY charge_id ORDER BY id) AS prev, "
        "row_number() OVER (PARTITION BY charge_id ORDER BY id) AS n FROM order_events) AS chain "
        "WHERE n > 1 AND from_status IS DISTINCT FROM prev",
    "last event's to_status is the order's status":
        "SELECT o.charge_id FROM orders o WHERE o.status IS DISTINCT FROM "
        "(SELECT to_status FROM order_events e WHERE e.charge_id = o.charge_id "
        " ORDER BY e.id DESC LIMIT 1)",
    "no status reached twice":
        "SELECT charge_id FROM order_events GROUP BY charge_id, to_status HAVING count(*) > 1",
    "every change of status has a delivery or a fetch":
        "SELECT charge_id FROM order_events WHERE from_status IS NOT NULL "
        "AND delivery_id IS NULL AND fetch_id IS NULL",
    "every api event names a fetch of its charge that saw its status":
        "SELECT e.charge_id FROM order_events e LEFT JOIN api_fetches f ON f.id = e.fetch_id "
        "WHERE e.source = 'api' AND (f.id IS NULL OR f.charge_id IS DISTINCT FROM e.charge_id "
        "OR f.http_status IS DISTINCT FROM 200 OR f.status IS DISTINCT FROM e.to_status)",
    "every webhook event names an applied delivery":
        "SELECT e.charge_id FROM order_events e LEFT JOIN webhook_deliveries d "
        "ON d.id = e.delivery_id WHERE e.source = 'webhook' "
        "AND (d.id IS NULL OR d.outcome IS DISTINCT FROM 'applied')",
    "one order per created charge request":
        "SELECT r.charge_id FROM charge_requests r LEFT JOIN orders o USING (charge_id) "
        "WHERE r.state = 'created' AND (o.charge_id IS NULL "
        "OR o.order_ref IS DISTINCT FROM r.order_ref)",
}


def check_database(d):
    for what, sql in INVARIANTS.items():
        bad = d.query(sql)
        check(not bad, f"{what}: broken for {[r['charge_id'] for r in bad][:5]}")


def start_daemon(extra=None):
    """The daemon (stopped) and cashpay-sim, webhooks dropped: nothing pays
    here but the test, and no webhook tells the daemon about it."""
    port = free_port()
    d, sim = start(extra={"cashpay.reconcile_after": "3600", "checkout.listen": f"127.0.0.1:{port}",
                          "webhook.order_ref_field": "metadata.order_id",
                          "log.level": "notice", **(extra or {})})
    d.checkout_port = port
    check_eq(d.stop(), 0, "the first run")
    d.log.close()
    return d, sim


def post_charge(d, ref, timeout=10):
    """POST /charges for @ref: (status, body) or (None, None) when the
    connection failed or broke."""
    body = json.dumps({"order_ref": ref, "amount": 2000, "currency": "YER",
                       "description": "crash test"})
    conn = http.client.HTTPConnection("127.0.0.1", d.checkout_port, timeout=timeout)
    try:
        conn.request("POST", "/charges", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    except (OSError, http.client.HTTPException, ValueError):
        return None, None
    finally:
        conn.close()


def sim_charges_by_ref(sim):
    out = {}
    for c in sim.control("charges")["charges"]:
        ref = (c["charge"].get("metadata") or {}).get("order_id")
        out.setdefault(ref, []).append(c["charge"]["id"])
    return out


def up(d):
    """d.start(), and the checkout listener accepting too."""
    d.start()
    wait_for("the checkout listener", lambda: port_open(d.checkout_port))


def kill(d):
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.log.close()


def held_leases(d):
    """On PostgreSQL: the claims a SIGKILLed instance left (next_check_at a
    lease on, more than the few seconds a fetch plans here with
    reconcile_after = 1), as (charge_id, lease) pairs; they wait it out."""
    if harness.BACKEND != "postgresql":
        return set()
    return {(r["charge_id"], r["next_check_at"]) for r in d.query(
        "SELECT charge_id, next_check_at FROM orders WHERE status = 'INITIATED' AND "
        f"next_check_at > now() + interval '{LEASE_MS // 2} milliseconds'")}


# ------------------------------------------------------------ charge creation

class Creation:
    """What the drivers were told, shared by them."""

    def __init__(self, refs=REFS):
        self.refs = refs
        self.lock = threading.Lock()
        self.acked = {}        # ref -> charge_id answered with
        self.answers = {}      # HTTP status (None: no answer) -> count
        self.requests = 0
        self.double_asks = 0   # a ref asked again after its charge was acknowledged
        self.problems = []     # what the drivers saw that must not happen
        self.failures = {}     # cashpayctl's message when it failed -> count

    def note(self, ref, status, body):
        with self.lock:
            self.requests += 1
            self.answers[status] = self.answers.get(status, 0) + 1
            if status not in (200, 201):
                return
            cid = body.get("charge_id") or ""
            if not cid.startswith("chg_") or body.get("order_ref") != ref:
                self.problems.append(f"{ref}: answered {status} {body}")
            elif self.acked.setdefault(ref, cid) != cid:
                self.problems.append(f"{ref}: acknowledged with {self.acked[ref]} and {cid}")

    def todo(self):
        with self.lock:
            return [r for r in self.refs if r not in self.acked]


def driver(d, creation, stop, rng):
    """Ask for the refs still without a charge, retrying each after a
    failure; now and then ask again for one already answered (a double
    click), which must give the same charge."""
    while not stop.is_set():
        todo = creation.todo()
        if not todo:
            return
        if creation.acked and rng.random() < 0.1:
            ref = rng.choice(sorted(creation.acked))
            with creation.lock:
                creation.double_asks += 1
        else:
            ref = rng.choice(todo[:DRIVERS * 2])
        status, body = post_charge(d, ref)
        creation.note(ref, status, body)
        if status not in (200, 201):
            time.sleep(0.01)  # the daemon is gone or busy: ask again soon


def check_creations(d, sim, creation):
    check(not creation.problems, "; ".join(creation.problems[:5]))
    by_ref = sim_charges_by_ref(sim)
    many = {ref: ids for ref, ids in by_ref.items() if len(ids) > 1}
    check(not many, f"the simulator holds more than one charge for {many}")
    check(None not in by_ref, "a charge without its order_ref at the simulator")
    orders = {r["charge_id"]: r["order_ref"] for r in d.query(
        "SELECT charge_id, order_ref FROM orders")}
    with creation.lock:
        acked = dict(creation.acked)
    for ref, cid in acked.items():
        check_eq(orders.get(cid), ref, f"acknowledged charge {cid} of {ref} in orders")
        check_eq(by_ref.get(ref), [cid], f"{ref}: the simulator's charge")
    check_database(d)
    return by_ref


def test_charge_creation_under_sigkill():
    rng = random.Random(SEED)
    d, sim = start_daemon()
    creation = Creation()
    kills = in_flight_at_kill = 0
    try:
        # Each create waits a while at CashPay: a kill finds some in flight.
        sim.control("config", {"api_latency_ms": 150})
        for n in range(ROUNDS):
            if not creation.todo():
                break
            d.start()
            check_creations(d, sim, creation)
            stop = threading.Event()
            threads = [threading.Thread(target=driver, args=(d, creation, stop,
                                                             random.Random(rng.random())))
                       for _ in range(DRIVERS)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.05, ROUND_LIMIT_S))
            in_flight_at_kill += sim.control("stats")["api_inflight"] > 0
            kill(d)
            kills += 1
            stop.set()
            for t in threads:
                t.join(30)
                check(not t.is_alive(), "a driver did not finish")
        # The last round: no kill, every ref asked until it has its charge.
        up(d)
        check_creations(d, sim, creation)
        for ref in creation.todo():
            status, body = post_charge(d, ref, timeout=30)
            creation.note(ref, status, body)
            check(status in (200, 201), f"{ref}: {status} {body}")
        for ref in REFS:  # asked once more: the same charge, nothing created
            status, body = post_charge(d, ref, timeout=30)
            check_eq(status, 200, f"{ref} asked again")
            creation.note(ref, status, body)
        by_ref = check_creations(d, sim, creation)
        check_eq(sorted(by_ref), sorted(REFS), "every order_ref has its charge at the simulator")
        rows = d.query("SELECT order_ref, count(*) AS n FROM orders GROUP BY order_ref")
        check_eq({r["order_ref"]: r["n"] for r in rows}, {ref: 1 for ref in REFS},
                 "one order per order_ref")
        check(not d.query("SELECT 1 FROM charge_requests WHERE state != 'created'"),
              "no request left pending or refused")
        stats = sim.control("stats")
        replays = sum(n - 1 for n in stats["creates_by_idempotency_key"].values())
        print(f"   seed {SEED}: {kills} kills ({in_flight_at_kill} with a create in flight at "
              f"the simulator), {creation.requests} requests {dict(sorted(creation.answers.items(), key=str))}, "
              f"{creation.double_asks} double asks; the simulator: {stats['charge_creates']} "
              f"creates, {stats['charges_created']} charges, {replays} replays of a key", flush=True)
        check_eq(stats["charges_created"], len(REFS), "charges created at the simulator")
        check(kills > 1 and in_flight_at_kill > 0, "no kill found a creation in flight")
        check(creation.answers.get(None, 0) > 0, "no request was cut off by a kill")
        check_eq(d.stop(), 0, "clean stop")
    finally:
        finish(d, sim)


# cashpayctl charge create does the same steps in a process of its own:
# that process is what gets killed, at any moment of its run.
CTL_REFS = [f"ctl-order-{i:03d}" for i in range(30)]
CTL_RUNS = 300  # at most, killed or not


def ctl_create(d, ref, kill_after=None):
    """cashpayctl --json charge create for @ref, SIGKILLed after
    @kill_after seconds if still running: (0, its answer) or (None, None)."""
    proc = spawn([CTL, "--config", d.config_path, "--json", "charge", "create",
                  "--order-ref", ref, "--amount", "2000", "--currency", "YER",
                  "--description", "crash test"],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=kill_after if kill_after is not None else 60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        end_group(proc.pid)
        return "killed", None
    end_group(proc.pid)
    if proc.returncode != 0:
        return proc.returncode, {"stderr": err.decode(errors="replace").strip()}
    doc = json.loads(out)
    return (201 if doc["created"] else 200), doc


def ctl_driver(d, creation, rng, budget, kills):
    while True:
        todo = creation.todo()
        with creation.lock:
            if not todo or budget[0] <= 0:
                return
            budget[0] -= 1
        ref = rng.choice(todo[:4])
        status, doc = ctl_create(d, ref, kill_after=rng.uniform(0, 0.3))
        if status == "killed":
            with creation.lock:
                kills[0] += 1
            status = None
        if status not in (200, 201, None):
            with creation.lock:
                why = (doc or {}).get("stderr", "")
                creation.failures[why] = creation.failures.get(why, 0) + 1
        creation.note(ref, status, doc)


def test_ctl_charge_creation_under_sigkill():
    rng = random.Random(SEED + 2)
    d, sim = start_daemon()
    creation = Creation(CTL_REFS)
    try:
        up(d)  # the daemon runs beside it, as in production
        sim.control("config", {"api_latency_ms": 150})
        budget, kills = [CTL_RUNS], [0]
        threads = [threading.Thread(target=ctl_driver, args=(d, creation, random.Random(
            rng.random()), budget, kills)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
            check(not t.is_alive(), "a driver did not finish")
        check_creations(d, sim, creation)
        for ref in CTL_REFS:  # without kills: every ref gets its charge, once
            for _ in range(2):
                status, doc = ctl_create(d, ref)
                creation.note(ref, status, doc)
            check_eq(status, 200, f"{ref} asked again")
        by_ref = check_creations(d, sim, creation)
        check_eq(sorted(by_ref), sorted(CTL_REFS), "every order_ref has its charge")
        rows = d.query("SELECT order_ref, count(*) AS n FROM orders GROUP BY order_ref")
        check_eq({r["order_ref"]: r["n"] for r in rows}, {ref: 1 for ref in CTL_REFS},
                 "one order per order_ref")
        check(not d.query("SELECT 1 FROM charge_requests WHERE state != 'created'"),
              "no request left pending or refused")
        stats = sim.control("stats")
        replays = sum(n - 1 for n in stats["creates_by_idempotency_key"].values())
        print(f"   seed {SEED + 2}: {CTL_RUNS - budget[0]} cashpayctl runs, {kills[0]} killed; "
              f"answers {dict(sorted(creation.answers.items(), key=str))}; the simulator: "
              f"{stats['charge_creates']} creates, {stats['charges_created']} charges, "
              f"{replays} replays of a key; failures {creation.failures}", flush=True)
        check_eq(stats["charges_created"], len(CTL_REFS), "charges created at the simulator")
        check(kills[0] > 0 and replays > 0, "no kill cut a creation off")
        check_eq(d.stop(), 0, "clean stop")
    finally:
        finish(d, sim)


# ------------------------------------------------------------ reconciliation

def fetch_in_flight(sim, timeout):
    """Until the simulator is answering an API request, @timeout seconds at
    most; whether it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sim.control("stats")["api_inflight"] > 0:
            return True
        time.sleep(0.01)
    return False


def test_reconciliation_under_sigkill():
    rng = random.Random(SEED + 1)
    d, sim = start_daemon({"cashpay.reconcile_after": "1", "cashpay.max_inflight": "4",
                           "cashpay.request_timeout": "1"})
    try:
        up(d)
        truth = {}
        for i in range(ORDERS):
            status, body = post_charge(d, f"stale-{i:03d}")
            check_eq(status, 201, f"created: {body}")
            truth[body["charge_id"]] = "INITIATED"
        check_eq(d.stop(), 0, "clean stop after creating")
        d.log.close()
        # CashPay captures most, fails some, leaves some unpaid; every
        # webhook is dropped: only the API can tell the daemon.
        for cid in truth:
            fate = rng.choice(["pay", "pay", "pay", "decline", "decline", None])
            if fate:
                sim.control(f"charges/{cid}/{fate}", {})
                truth[cid] = "CAPTURED" if fate == "pay" else "FAILED"
        check_eq(sim.control("stats")["webhooks"]["dropped"], sum(
            s != "INITIATED" for s in truth.values()), "every webhook dropped")
        time.sleep(1.1)  # every order is stale now (reconcile_after = 1)
        sim.control("config", {"api_latency_ms": 150})

        def final():
            rows = d.query("SELECT charge_id, status FROM orders")
            return {r["charge_id"]: r["status"] for r in rows}

        kills = in_flight_at_kill = near_fetch = 0
        held = set()
        progress = []
        for n in range(ROUNDS):
            before = sum(s != "INITIATED" for s in final().values())
            d.start()
            # Every other round dies while a fetch is at CashPay (or just
            # answered, being recorded); the others at any moment.
            if n % 2 == 0 and fetch_in_flight(sim, ROUND_LIMIT_S * 3):
                near_fetch += 1
                time.sleep(rng.uniform(0, 0.3))  # the answer takes 0.15 s
            else:
                time.sleep(rng.uniform(0.1, ROUND_LIMIT_S))
            in_flight_at_kill += sim.control("stats")["api_inflight"] > 0
            kill(d)
            kills += 1
            check_database(d)
            held |= held_leases(d)
            now = final()
            for cid, status in now.items():
                check(status in ("INITIATED", truth[cid]),
                      f"{cid} is {status}, the simulator says {truth[cid]}")
            progress.append(sum(s != "INITIATED" for s in now.values()) - before)
            if now == truth:
                break
        # The last run: no kill, until every order is what CashPay says.
        d.start()
        wait_for("every order as the simulator says", lambda: final() == truth,
                 timeout=LEASE_MS / 1000 + 60)
        check_eq(d.stop(), 0, "clean stop")
        d.log.close()
        check_database(d)
        fetches = d.query("SELECT count(*) AS n, count(DISTINCT charge_id) AS charges "
                          "FROM api_fetches WHERE reason = 'reconcile'")[0]
        events = d.query("SELECT count(*) AS n FROM order_events WHERE source = 'api'")[0]["n"]
        check_eq(events, sum(s != "INITIATED" for s in truth.values()),
                 "one api event per order made final")
        counts = {s: list(truth.values()).count(s) for s in ("CAPTURED", "FAILED", "INITIATED")}
        print(f"   seed {SEED + 1}: {ORDERS} orders {counts}; {kills} kills ({in_flight_at_kill} "
              f"with a fetch in flight, {near_fetch} within 0.3 s of one); made final per round {progress}; {fetches['n']} "
              f"reconcile fetches of {fetches['charges']} charges; {len(held)} leases of a killed "
              f"instance waited out", flush=True)
        check(kills > 1 and near_fetch > 0, "no kill came near a fetch")
    finally:
        finish(d, sim)


if __name__ == "__main__":
    run_tests([test_charge_creation_under_sigkill, test_ctl_charge_creation_under_sigkill,
               test_reconciliation_under_sigkill])
