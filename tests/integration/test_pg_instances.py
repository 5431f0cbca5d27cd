"""Two and three cashpayd instances on one PostgreSQL database under a
concurrent, shuffled load for the same charges: every acknowledged delivery
is stored, every order's event chain is valid (each from_status is the
previous to_status), final statuses are what the state machine says, and a
webhook-id repeated at several instances at once is applied once."""
import base64
import concurrent.futures
import hashlib
import hmac
import http.client
import json
import random
import threading
import time

from harness import Daemon, charge, check, check_eq, random_charge_id, run_tests
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


def run_load(n_instances, n_charges=40, per_charge=6, workers=16):
    db, daemons = instances(n_instances)
    try:
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
        stored = {}
        for r in PG.query("SELECT charge_id, claimed_status FROM webhook_deliveries "
                          "WHERE http_status = 200", db=db):
            stored.setdefault(r["charge_id"], []).append(r["claimed_status"])
        check_eq({k: sorted(v) for k, v in stored.items()},
                 {k: sorted(v) for k, v in acked.items()}, "every acknowledged delivery stored")
        orders = check_chains(db)
        for cid, statuses in acked.items():
            check_eq(orders.get(cid), expected_final(statuses), f"final status of {cid}")
        print(f"     {n_instances} instances: {len(plan)} deliveries for {n_charges} charges "
              f"in {elapsed:.2f}s ({len(plan) / elapsed:.0f}/s)", flush=True)
    finally:
        for d in daemons:
            d.__exit__(None, None, None)


def test_two_instances_shuffled_load():
    run_load(2)


def test_three_instances_shuffled_load():
    run_load(3)


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


def test_cashpayctl_refuses_postgresql_clearly():
    """cashpayctl's listing queries exist for SQLite only: it must say so,
    not open some SQLite file at [database] path instead."""
    import os
    import subprocess
    db, daemons = instances(1)
    try:
        r = subprocess.run([os.environ["CASHPAYCTL"], "--config", daemons[0].config_path, "orders"],
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
            test_message_id_repeated_at_every_instance_at_once,
            test_server_crash_under_load_loses_nothing_acknowledged,
            test_cashpayctl_refuses_postgresql_clearly,
        ])


if __name__ == "__main__":
    main()
