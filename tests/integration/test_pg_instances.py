"""Two and three cashpayd instances on one PostgreSQL database under a
concurrent, shuffled load for the same charges: every acknowledged delivery
is stored, every order's event chain is valid (each from_status is the
previous to_status), final statuses are what the state machine says, and a
webhook-id repeated at several instances at once is applied once. With
api_url: the reconciler's due orders shared out between instances (each
charge fetched once), a stopping instance's claims given back, and a
killed instance's claims taken up again once their lease has run out."""
import base64
import concurrent.futures
import hashlib
import hmac
import http.client
import json
import random
import threading
import time

from harness import (Daemon, charge, check, check_eq, claim_lease_ms, random_charge_id,
                     run_tests)
from pgserver import PgServer

PG = None
_dbs = iter(range(1, 1000))


def instances(n, extra=None, **daemon_kw):
    db = f"multi{next(_dbs)}"
    PG.create_database(db)
    config = {"database.backend": "postgresql", "database.url": PG.url_for(db),
              "database.password_file": PG.password_file, "http.threads": "4",
              "log.level": "notice", **(extra or {})}
    daemons = []
    try:
        for _ in range(n):
            daemons.append(Daemon(config, **daemon_kw))  # the first migrates, the rest find it done
    except BaseException:
        for d in daemons:
            d.__exit__(None, None, None)
        raise
    return db, daemons


def post_raw(daemon, raw, headers):
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=60)
    try:
        conn.request("POST", "/cashpay/webhook", body=raw, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def expected_final(statuses):
    """The state machine's end state for deliveries in any order: CAPTURED
    is final and may follow FAILED; FAILED follows INITIATED."""
    if "CAPTURED" in statuses:
        return "CAPTURED"
    if "FAILED" in statuses:
        return "FAILED"
    return "INITIATED"


def check_chains(db):
    events = PG.query("SELECT id, charge_id, from_status, to_status FROM order_events ORDER BY id",
                      db=db)
    last = {}
    for e in events:
        check_eq(e["from_status"], last.get(e["charge_id"]), f"event {e['id']} from_status")
        last[e["charge_id"]] = e["to_status"]
    orders = {o["charge_id"]: o["status"] for o in PG.query(
        "SELECT charge_id, status FROM orders", db=db)}
    check_eq(last, orders, "each order's status is its last event's to_status")
    return orders


def shuffled_load(db, daemons, n_charges=40, per_charge=6, workers=16):
    """A shuffled, concurrent load for the same charges at @daemons, checked:
    every delivery 200 and stored, every chain valid, each final status the
    state machine's. Returns the seconds it took and the deliveries sent."""
    plan = []
    for _ in range(n_charges):
        cid = random_charge_id()
        for _ in range(per_charge):
            plan.append((cid, random.choice(["INITIATED", "CAPTURED", "FAILED", "INITIATED"])))
    random.shuffle(plan)
    acked = {}
    lock = threading.Lock()

    def send(item):
        cid, status = item
        d = random.choice(daemons)
        raw = json.dumps(charge(cid, status)).encode()
        code, body = post_raw(d, raw, d.sign_headers(raw))
        with lock:
            if code == 200:
                acked.setdefault(cid, []).append(status)
        return code

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        codes = list(pool.map(send, plan))
    elapsed = time.monotonic() - started
    check_eq(set(codes), {200}, "every delivery acknowledged")
    stored, ours = {}, {cid for cid, _ in plan}
    for r in PG.query("SELECT charge_id, claimed_status FROM webhook_deliveries "
                      "WHERE http_status = 200", db=db):
        if r["charge_id"] in ours:  # not an earlier load's
            stored.setdefault(r["charge_id"], []).append(r["claimed_status"])
    check_eq({k: sorted(v) for k, v in stored.items()},
             {k: sorted(v) for k, v in acked.items()}, "every acknowledged delivery stored")
    orders = check_chains(db)
    for cid, statuses in acked.items():
        check_eq(orders.get(cid), expected_final(statuses), f"final status of {cid}")
    return elapsed, len(plan)


def run_load(n_instances, n_charges=40, per_charge=6, workers=16):
    db, daemons = instances(n_instances)
    try:
        elapsed, n = shuffled_load(db, daemons, n_charges, per_charge, workers)
        print(f"     {n_instances} instances: {n} deliveries for {n_charges} charges "
              f"in {elapsed:.2f}s ({n / elapsed:.0f}/s)", flush=True)
    finally:
        for d in daemons:
            d.__exit__(None, None, None)


def test_two_instances_shuffled_load():
    run_load(2)


def test_three_instances_shuffled_load():
    run_load(3)


def writing_backends(db):
    """pids of the daemon's connections inside a writing transaction (one
    with a transaction id: the readers never get one)."""
    return {r["pid"] for r in PG.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = ? AND application_name = 'cashpayd' "
        "AND backend_xid IS NOT NULL", db, db="postgres")}


def test_one_instance_two_writer_connections():
    """One instance with writer_connections = 2, under the shuffled load of
    the instances tests: every acknowledged delivery stored, every chain
    valid (the lanes of one process meet like two instances), and the
    server saw two of its connections writing - never more. The load is
    repeated (at most 5 rounds) until both were seen in a transaction."""
    db, (daemon,) = instances(1, {"database.writer_connections": "2"})
    try:
        seen, stop = set(), threading.Event()

        def watch():
            while not stop.is_set() and len(seen) < 2:
                seen.update(writing_backends(db))

        rounds = 0
        while len(seen) < 2 and rounds < 5:
            rounds += 1
            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                elapsed, n = shuffled_load(db, [daemon], n_charges=60, per_charge=6, workers=32)
            finally:
                stop.set()
                watcher.join(60)
                stop.clear()
        check_eq(len(seen), 2, f"the instance's connections seen writing ({seen})")
        check_chains(db)
        print(f"     writer_connections = 2: {rounds} round(s), {n} deliveries in {elapsed:.2f}s "
              f"({n / elapsed:.0f}/s), writers {sorted(seen)}", flush=True)
    finally:
        daemon.__exit__(None, None, None)


def standard_headers(secret_b64, msg_id, raw):
    ts = str(int(time.time()))
    key = base64.b64decode(secret_b64)
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + raw,
                                    hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": ts, "webhook-signature": f"v1,{sig}"}


def test_message_id_repeated_at_every_instance_at_once():
    secret = base64.b64encode(b"pg-instances-secret-0123456789ab").decode()
    db, daemons = instances(3, {"webhook.verify": "standard-webhooks"}, secret=f"whsec_{secret}")
    try:
        rounds = 10
        for i in range(rounds):
            cid, msg = random_charge_id(), f"msg_{i}_{random.random()}"
            raw = json.dumps(charge(cid, "CAPTURED")).encode()
            barrier = threading.Barrier(len(daemons) * 2)

            def send(d):
                barrier.wait()
                return post_raw(d, raw, standard_headers(secret, msg, raw))

            with concurrent.futures.ThreadPoolExecutor(len(daemons) * 2) as pool:
                answers = list(pool.map(send, daemons * 2))
            outcomes = sorted(json.loads(b)["outcome"] for code, b in answers)
            check_eq(outcomes, ["applied"] + ["duplicate"] * (len(answers) - 1),
                     f"round {i}: one applied")
            rows = PG.query("SELECT outcome, error FROM webhook_deliveries WHERE message_id = ? "
                            "ORDER BY id", msg, db=db)
            check_eq(len(rows), len(answers), "every copy recorded")
        check_chains(db)
        check_eq(PG.query("SELECT count(*) AS n FROM order_events", db=db), [{"n": rounds}],
                 "one event per charge")
    finally:
        for d in daemons:
            d.__exit__(None, None, None)


def test_server_crash_under_load_loses_nothing_acknowledged():
    """pg_ctl stop -m immediate while two instances take webhooks, three
    times: deliveries meanwhile get 503 (never a 2xx not committed), the
    instances reconnect by themselves, and every 2xx is in the database."""
    db, daemons = instances(2)
    try:
        acked, codes = [], {}
        lock = threading.Lock()
        stop = threading.Event()

        def sender(k):
            i = 0
            while not stop.is_set() and i < 5000:
                i += 1
                d = daemons[(k + i) % len(daemons)]
                cid = random_charge_id()
                raw = json.dumps(charge(cid, "CAPTURED")).encode()
                try:
                    code, _ = post_raw(d, raw, d.sign_headers(raw))
                except OSError:
                    code = "error"
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                    if code == 200:
                        acked.append(cid)
                if code != 200:
                    time.sleep(0.02)

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        try:
            for _ in range(3):
                time.sleep(1.0)
                PG.stop(mode="immediate")
                time.sleep(0.5)
                PG.start()
            # service resumes without restarting cashpayd
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    before = len(acked)
                time.sleep(1.0)
                with lock:
                    if len(acked) > before and all(d.admin("/healthz")[0] == 200 for d in daemons):
                        break
            else:
                raise AssertionError("no webhook acknowledged after the restarts")
        finally:
            stop.set()
            for t in threads:
                t.join(120)
        check(all(d.proc.poll() is None for d in daemons), "no instance exited")
        check(codes.get(503, 0) > 0, f"the outages were seen: {codes}")
        stored = {r["charge_id"] for r in PG.query(
            "SELECT charge_id FROM webhook_deliveries WHERE http_status = 200", db=db)}
        lost = [c for c in acked if c not in stored]
        check_eq(lost, [], "acknowledged deliveries missing after three crashes")
        check_chains(db)
        print(f"     answers {codes}; {len(acked)} acknowledged, 0 lost", flush=True)
    finally:
        for d in daemons:
            d.__exit__(None, None, None)


def with_api(daemons, sim, extra=None):
    """api_url to @sim for every instance, reconcile_after 1 s; the first
    started and stopped once, so that the database is migrated for
    cashpayctl."""
    for d in daemons:
        d.write_config({
            **d.base_config,
            "cashpay.api_url": f"http://127.0.0.1:{sim.port}/v1",
            "cashpay.public_url": f"http://127.0.0.1:{d.port}",
            "cashpay.token_file": sim.token_file,
            "cashpay.reconcile_after": "1",
            "webhook.confirm": "none",
            "checkout.listen": "",
            **(extra or {}),
        })
    daemons[0].start()
    check_eq(daemons[0].stop(), 0, "exit status of the migrating start")


def create_charges(daemons, n, prefix):
    """@n charges created with cashpayctl charge create (at the sim and in
    the database, INITIATED), through the instances' configurations in turn."""
    import os
    import subprocess

    def create(i):
        r = subprocess.run([os.environ["CASHPAYCTL"], "--config", daemons[i % len(daemons)].config_path,
                            "--json", "charge", "create", "--order-ref", f"{prefix}-{i}",
                            "--amount", str(1000 + i), "--currency", "YER"],
                           capture_output=True, text=True, timeout=60)
        check_eq(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["charge_id"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(create, range(n)))
    check_eq(len(set(ids)), n, "distinct charges created")
    return ids


def end_all(sim, daemons, passed):
    """The simulator and every instance ended; after a failure the daemons'
    whole trees are killed and their files kept for a look."""
    sim.stop()
    for d in daemons:
        if passed:
            d.__exit__(None, None, None)
        else:
            d.kill_tree()
            d.close(passed=False)


def test_two_instances_reconcile_each_order_once():
    """Two instances with api_url on one database and one cashpay-sim, 220
    stale INITIATED orders whose webhooks were lost: the sweeps share the
    due orders out (claimed with SKIP LOCKED), so the sim is asked for each
    charge exactly once, every order ends as CashPay says, and every api
    event names the fetch that caused it."""
    from test_reconcile import Sim, wait_for
    n_orders = 220
    db, daemons = instances(2, start=False)
    sim = Sim(daemons[0])
    passed = False
    try:
        # small sweeps of slow fetches: both instances are sweeping while
        # the other still has claims open
        with_api(daemons, sim, {"cashpay.max_inflight": "8"})
        sim.control("config", {"webhook_drop": True, "api_latency_ms": 50})
        ids = create_charges(daemons, n_orders, "two")
        expected = {}
        for i, cid in enumerate(ids):
            paid = i % 3 != 0
            sim.control(f"charges/{cid}/{'pay' if paid else 'decline'}", {})
            expected[cid] = "CAPTURED" if paid else "FAILED"
        check(sim.control("stats")["webhooks"]["dropped"] >= n_orders, "the webhooks were lost")
        sim.control("stats/reset", {})

        started = time.monotonic()
        for d in daemons:
            d.start(wait=False)
        for d in daemons:
            d.wait_ready()

        def settled():
            rows = PG.query("SELECT count(*) AS n FROM orders WHERE status = 'INITIATED'", db=db)
            return rows[0]["n"] == 0
        wait_for("every order reconciled", settled, timeout=120)
        took = time.monotonic() - started

        orders = {o["charge_id"]: o["status"] for o in PG.query(
            "SELECT charge_id, status FROM orders", db=db)}
        check_eq(orders, expected, "final statuses as CashPay says")
        fetched = sim.control("stats")["fetches_by_charge"]
        twice = {c: n for c, n in fetched.items() if n != 1}
        check_eq(twice, {}, "charges not fetched exactly once")
        check_eq(set(fetched), set(ids), "every charge fetched")
        events = PG.query("SELECT e.charge_id, e.to_status, f.charge_id AS fetched, f.reason, "
                          "f.status FROM order_events e LEFT JOIN api_fetches f "
                          "ON f.id = e.fetch_id WHERE e.source = 'api'", db=db)
        check_eq(len(events), n_orders, "one api event per order")
        for e in events:
            check_eq((e["fetched"], e["reason"], e["status"]),
                     (e["charge_id"], "reconcile", e["to_status"]),
                     f"the fetch named by {e['charge_id']}'s api event")
        fetch_rows = PG.query("SELECT count(*) AS n FROM api_fetches", db=db)[0]["n"]
        check_eq(fetch_rows, n_orders, "api_fetches rows")
        check_chains(db)
        shares = []
        for d in daemons:
            _, _, body = d.admin("/metrics")
            total = 0
            for line in body.decode().splitlines():
                if line.startswith("cashpayd_reconciled_total{"):
                    total += float(line.rsplit(" ", 1)[1])
            shares.append(int(total))
        check_eq(sum(shares), n_orders, f"orders reconciled by the instances ({shares})")
        for d in daemons:
            check_eq(d.stop(), 0, "exit status")
        print(f"     {n_orders} stale orders reconciled by two instances in {took:.1f}s: "
              f"{sum(fetched.values())} GETs at the sim, {shares} per instance", flush=True)
        passed = True
    finally:
        end_all(sim, daemons, passed)


def test_stopping_instance_gives_its_claims_back():
    """An instance stopped (SIGTERM) while its sweep's fetches hang gives
    the claimed orders back: none keeps its lease (over 12 minutes with
    request_timeout = 60), and the other instance reconciles them all at once."""
    from test_reconcile import Sim, wait_for
    db, daemons = instances(2, start=False)
    a, b = daemons
    sim = Sim(a)
    passed = False
    try:
        with_api(daemons, sim, {"cashpay.max_inflight": "4", "cashpay.request_timeout": "60"})
        sim.control("config", {"webhook_drop": True})
        ids = create_charges(daemons, 12, "release")
        for cid in ids:
            sim.control(f"charges/{cid}/pay", {})
        sim.control("config", {"api_fault": "hang", "api_fault_on": "fetch", "hang_ms": 120000})
        a.start()

        def leased():
            return PG.query("SELECT count(*) AS n FROM orders WHERE next_check_at > "
                            "now() + interval '5 minutes'", db=db)[0]["n"]
        wait_for("a sweep's claims with their fetches hanging",
                 lambda: leased() > 0 and sim.control("stats")["api_inflight"] > 0, timeout=30)
        claimed = leased()
        check_eq(a.stop(), 0, "exit status of the stopped instance")
        check_eq(leased(), 0, f"claims left after the stop (of {claimed})")
        sim.control("config", {"api_fault": "none"})
        b.start()
        wait_for("every order reconciled by the other instance", lambda: PG.query(
            "SELECT count(*) AS n FROM orders WHERE status = 'CAPTURED'", db=db)[0]["n"] == len(ids),
            timeout=60)
        check_eq(b.stop(), 0, "exit status")
        print(f"     {claimed} claims given back at SIGTERM, taken by the other instance",
              flush=True)
        passed = True
    finally:
        end_all(sim, daemons, passed)


def test_killed_instance_claims_taken_up_after_lease():
    """An instance SIGKILLed while its sweep's fetches hang cannot give its
    claims back: those orders wait out the lease derived from the
    configuration (request_timeout 1 s, max_inflight 4: 23.5 s, see
    claim_lease_ms()), then the restarted instance or the other one takes
    them up, and every order is reconciled once the API answers. Lower
    bounds only: each lease is at least the derived length past the start of
    the killed instance, and no leased order is fetched again before its
    lease ended, however slow the machine."""
    from test_reconcile import Sim, wait_for
    db, daemons = instances(2, start=False)
    a, b = daemons
    sim = Sim(a)
    passed = False
    lease = claim_lease_ms(request_timeout=1, max_inflight=4)
    try:
        with_api(daemons, sim, {"cashpay.max_inflight": "4", "cashpay.request_timeout": "1"})
        sim.control("config", {"webhook_drop": True})
        ids = create_charges(daemons, 12, "killed")
        for cid in ids:
            sim.control(f"charges/{cid}/pay", {})
        sim.control("config", {"api_fault": "hang", "api_fault_on": "fetch", "hang_ms": 120000})
        started = PG.query("SELECT extract(epoch FROM now()) * 1000 AS ms", db=db)[0]["ms"]
        a.start()

        def leases():
            # a fresh order's own next look is about reconcile_after (1 s) on
            return {r["charge_id"]: float(r["ms"]) for r in PG.query(
                "SELECT charge_id, extract(epoch FROM next_check_at) * 1000 AS ms FROM orders "
                "WHERE next_check_at > now() + interval '10 seconds'", db=db)}
        wait_for("a sweep's claims with their fetches hanging",
                 lambda: leases() and sim.control("stats")["api_inflight"] > 0, timeout=30)
        a.kill_tree()  # before the first attempt's 1 s timeout: nothing recorded
        held = leases()
        check(held, "claims held by the killed instance")
        for cid, until in held.items():
            check(until >= float(started) + lease - 1,
                  f"{cid}'s lease ends {until - float(started):.0f} ms after the start, "
                  f"less than the derived {lease} ms")
        sim.control("config", {"api_fault": "none"})
        a.start()
        b.start()
        wait_for("every order reconciled", lambda: PG.query(
            "SELECT count(*) AS n FROM orders WHERE status = 'CAPTURED'", db=db)[0]["n"] == len(ids),
            timeout=lease / 1000 + 60)
        for cid, until in held.items():
            first = PG.query("SELECT min(extract(epoch FROM requested_at) * 1000) AS ms "
                             "FROM api_fetches WHERE charge_id = ? AND reason = 'reconcile'",
                             cid, db=db)[0]["ms"]
            check(first is not None and float(first) >= until - 1,
                  f"{cid} fetched {until - float(first or 0):.0f} ms before its lease ended")
        for d in daemons:
            check_eq(d.stop(), 0, "exit status")
        check_chains(db)
        print(f"     {len(held)} claims of a killed instance taken up after their "
              f"{lease / 1000:.1f} s lease; {len(ids) - len(held)} others at once", flush=True)
        passed = True
    finally:
        end_all(sim, daemons, passed)


def test_cashpayctl_listings_match_sqlite():
    """cashpayctl orders, events, deliveries and show print the same JSON
    on both engines for the same webhooks (times and addresses aside), and
    fulfil, review-done and prune decide and answer alike."""
    import os
    import subprocess
    import harness
    # a first sighting, a capture, a duplicate, a failure and a conflict
    plan = [("chg_ctl_paid", "INITIATED", 2000), ("chg_ctl_paid", "CAPTURED", 2000),
            ("chg_ctl_paid", "CAPTURED", 2000), ("chg_ctl_failed", "FAILED", 1500),
            ("chg_ctl_other", "CAPTURED", 900), ("chg_ctl_other", "CAPTURED", 901)]
    volatile = {"received_at", "first_seen_at", "updated_at", "captured_at", "failed_at",
                "recorded_at", "remote_addr", "fulfilled_at", "cutoff"}

    def scrub(v):
        if isinstance(v, dict):
            return {k: ("…" if k in volatile and x else scrub(x)) for k, x in v.items()}
        if isinstance(v, list):
            return [scrub(x) for x in v]
        return v

    def listings(d):
        for cid, status, amount in plan:
            raw = json.dumps(charge(cid, status, amount=amount)).encode()
            code, _ = post_raw(d, raw, d.sign_headers(raw))
            check_eq(code, 200, f"{cid} {status}")
        code, _ = post_raw(d, b'{"forged": true}', {"Content-Type": "application/json",
                                                   "X-CashPay-Signature": "00" * 32})
        check_eq(code, 401, "a forged delivery")
        out = {}
        for args in (["orders", "--limit", "0"], ["events"], ["deliveries", "--limit", "0"],
                     ["show", "chg_ctl_paid"], ["orders", "--review"],
                     ["deliveries", "--outcome", "duplicate"], ["events", "--after", "2"]):
            r = subprocess.run([os.environ["CASHPAYCTL"], "--config", d.config_path, "--json",
                                *args], capture_output=True, text=True, timeout=60)
            check_eq(r.returncode, 0, f"cashpayctl {' '.join(args)}: {r.stderr}")
            out[" ".join(args)] = scrub(json.loads(r.stdout))
        # the operator's writes: done, refused for each reason, then done again
        for args in (["fulfil", "chg_ctl_paid"], ["fulfil", "chg_ctl_paid"],
                     ["fulfil", "chg_ctl_failed"], ["fulfil", "chg_ctl_other"],
                     ["review-done", "chg_ctl_other"], ["review-done", "chg_ctl_other"],
                     ["fulfil", "chg_ctl_other"], ["fulfil", "chg_ctl_unknown"],
                     ["orders", "--unfulfilled"], ["prune", "--days", "0", "--dry-run"],
                     ["prune", "--days", "0"], ["deliveries", "--outcome", "unauthorized"]):
            r = subprocess.run([os.environ["CASHPAYCTL"], "--config", d.config_path, "--json",
                                *args], capture_output=True, text=True, timeout=60)
            out.setdefault("writes", []).append(
                (args, r.returncode, scrub(json.loads(r.stdout)) if r.stdout else None,
                 r.stderr))
        return out

    db, daemons = instances(1)
    try:
        on_pg = listings(daemons[0])
    finally:
        daemons[0].__exit__(None, None, None)
    saved, harness.BACKEND = harness.BACKEND, "sqlite"
    try:
        with Daemon() as lite:
            on_sqlite = listings(lite)
    finally:
        harness.BACKEND = saved
    for what in on_sqlite:
        check_eq(on_pg[what], on_sqlite[what], f"cashpayctl --json {what} on PostgreSQL")
    check_eq(sorted(o["charge_id"] for o in on_pg["orders --limit 0"]["orders"]),
             ["chg_ctl_failed", "chg_ctl_other", "chg_ctl_paid"], "orders listed")
    check_eq(len(on_pg["events"]["events"]), 4, "events listed")
    check_eq(len(on_pg["deliveries --limit 0"]["deliveries"]), len(plan) + 1,
             "deliveries listed")
    check_eq(on_pg["writes"][-1][2], {"deliveries": []}, "the forged delivery pruned")
    check_eq([e["to_status"] for e in on_pg["show chg_ctl_paid"]["events"]],
             ["INITIATED", "CAPTURED"], "show's events")
    check_eq(len(on_pg["show chg_ctl_paid"]["deliveries"]), 3, "show's deliveries")
    check_eq([code for _, code, _, _ in on_pg["writes"]], [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0],
             "fulfil and review-done exit codes")
    print(f"     {sum(len(json.dumps(v)) for v in on_pg.values())} bytes of JSON alike",
          flush=True)


def test_cashpayctl_refuses_postgresql_clearly():
    """cashpayctl migrate exists for SQLite only: it must say so, not open
    some SQLite file at [database] path instead."""
    import os
    import subprocess
    db, daemons = instances(1)
    try:
        r = subprocess.run([os.environ["CASHPAYCTL"], "--config", daemons[0].config_path,
                            "migrate"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode != 0, "cashpayctl fails")
        check("does not support [database] backend = postgresql" in r.stderr, r.stderr)
        check(not os.path.exists(daemons[0].db_path), "no SQLite file created")
    finally:
        for d in daemons:
            d.__exit__(None, None, None)


def main():
    global PG
    with PgServer() as PG:
        run_tests([
            test_two_instances_shuffled_load,
            test_three_instances_shuffled_load,
            test_one_instance_two_writer_connections,
            test_message_id_repeated_at_every_instance_at_once,
            test_server_crash_under_load_loses_nothing_acknowledged,
            test_two_instances_reconcile_each_order_once,
            test_stopping_instance_gives_its_claims_back,
            test_killed_instance_claims_taken_up_after_lease,
            test_cashpayctl_listings_match_sqlite,
            test_cashpayctl_refuses_postgresql_clearly,
        ])


if __name__ == "__main__":
    main()
