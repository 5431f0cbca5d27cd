"""Concurrency and durability: many clients at once, an external lock held
past busy_timeout, and SIGTERM in the middle of a load. Every 2xx must have
its row; nothing may be acknowledged that was not committed."""
import collections
import json
import signal
import sqlite3
import threading
import time

from harness import Daemon, charge, check, check_eq, hmac_hex, run_tests
import http.client


def client_loop(daemon, n, acked, failures, stop=None):
    """Send @n signed webhooks over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    for _ in range(n):
        if stop and stop.is_set():
            break
        c = charge(status="CAPTURED")
        raw = json.dumps(c).encode()
        try:
            conn.request("POST", "/cashpay/webhook", raw, daemon.sign_headers(raw))
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                acked.append(c["id"])
            else:
                failures.append(resp.status)
        except (OSError, http.client.HTTPException) as e:
            failures.append(type(e).__name__)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    conn.close()


def run_clients(daemon, clients, per_client, stop=None):
    acked, failures = [], []
    threads = [threading.Thread(target=client_loop, args=(daemon, per_client, acked, failures, stop))
               for _ in range(clients)]
    for t in threads:
        t.start()
    return threads, acked, failures


def test_16_clients_x_100():
    with Daemon({"log.level": "notice"}) as d:
        threads, acked, failures = run_clients(d, 16, 100)
        for t in threads:
            t.join()
        check_eq(collections.Counter(failures), collections.Counter(), "no failures")
        check_eq(len(acked), 1600, "all acknowledged")
        stored = d.applied_charge_ids()
        check_eq(len(set(acked) - stored), 0, "every 200 has its row")
        check_eq(d.query("SELECT count(*) AS n FROM orders")[0]["n"], 1600, "orders")
        check_eq(d.query("SELECT count(*) AS n FROM order_events")[0]["n"], 1600, "events")
        metrics = d.admin("/metrics")[2].decode()
        check('cashpayd_webhooks_total{outcome="applied"} 1600' in metrics, "metrics count applied")


def test_external_lock_gives_503_then_recovers():
    with Daemon({"database.busy_timeout": "300", "log.level": "notice"}) as d:
        check_eq(d.post_json(charge())[0], 200, "before the lock")
        locker = sqlite3.connect(d.db_path, timeout=1, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        c = charge()
        status, headers, _ = d.post(c)
        elapsed = time.monotonic() - started
        check_eq(status, 503, "locked past busy_timeout")
        check_eq(headers.get("Retry-After"), "5", "Retry-After")
        check(elapsed < 5, f"answered promptly ({elapsed:.2f}s)")
        check_eq(d.admin("/healthz")[0], 503, "healthz while commits fail")
        # The public port keeps answering reads while the writer waits.
        check_eq(d.request("GET", "/cashpay/return?charge_id=chg_x")[0], 200, "return page")
        locker.execute("ROLLBACK")
        locker.close()
        check_eq(d.query("SELECT count(*) AS n FROM orders WHERE charge_id = ?", c["id"])[0]["n"], 0,
                 "503 was not committed")
        check_eq(d.post_json(c)[0], 200, "recovered after the lock")
        check_eq(d.admin("/healthz")[0], 200, "healthz recovered")


def test_sigterm_during_load_keeps_every_ack():
    d = Daemon({"log.level": "notice"})
    try:
        stop = threading.Event()
        threads, acked, failures = run_clients(d, 8, 400, stop)
        time.sleep(0.7)
        rc = d.stop(signal.SIGTERM)
        stop.set()
        for t in threads:
            t.join()
        check_eq(rc, 0, "exit status")
        check(len(acked) > 0, "some webhooks were acknowledged before the stop")
        stored = d.applied_charge_ids()
        lost = set(acked) - stored
        check_eq(len(lost), 0, f"every 2xx stored ({len(acked)} acked, {len(stored)} stored)")
        integrity = d.query("PRAGMA integrity_check")[0]["integrity_check"]
        check_eq(integrity, "ok", "integrity")
        check("stopped cleanly" in d.log_text(), "clean stop logged")
    finally:
        d.stop()
        d.log.close()


if __name__ == "__main__":
    run_tests([test_16_clients_x_100, test_external_lock_gives_503_then_recovers,
               test_sigterm_during_load_keeps_every_ack])
