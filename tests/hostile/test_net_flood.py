"""A flood of unsigned junk against the real daemon on loopback.

Every POST past the size and content-type checks leaves a delivery row (the
contract), so what must stay bounded is what each one costs: the body of a
rejected delivery is stored truncated ([webhook] rejected_body_max), the
log lines about them are rate limited, only the newest [webhook]
max_rejected_rows of them are kept, and `cashpayctl prune` (or the daemon,
hourly) removes them once they are old enough; the database file then stops
growing (SQLite reuses the freed pages). Figures are printed for NETWORK.md.

FLOOD_REQUESTS (default 2000) sets the size of each flood, CAPPED_REQUESTS
(default 3000) that of the flood against max_rejected_rows = 200.
"""
import json
import os
import re
import socket
import subprocess
import threading
import time

from netlib import (Daemon, Reader, charge, check, check_eq, connect, count, deliveries,
                    harness, open_fds, timed_post,
                    run_tests, webhook_request)

N = int(os.environ.get("FLOOD_REQUESTS", "2000"))
CLIENTS = 8
BODY = 60000  # just under max_body
KEEP = 4096   # [webhook] rejected_body_max, the default
CAP = 200     # [webhook] max_rejected_rows in the capped flood
SLACK = 2     # by how much the cap may be passed: 1% of it (at most 1000, at least 1)
CAPPED_N = int(os.environ.get("CAPPED_REQUESTS", "3000"))
REJECTED = "outcome IN ('invalid', 'unauthorized', 'forbidden')"


def db_bytes(d):
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(d.db_path + suffix)
        except FileNotFoundError:
            pass
    return total


def junk_client(d, n, statuses, seed):
    with connect(d.port, timeout=30) as s:
        reader = Reader(s, deadline=300)
        for i in range(n):
            body = json.dumps({"id": f"chg_junk{seed}x{i}", "pad": "j" * BODY}).encode()[:BODY]
            head, raw = webhook_request(d, body=body, sign=(i % 3 == 0))
            if i % 3 == 0:  # a signature, but a wrong one
                head = head.replace(b"X-CashPay-Signature: ", b"X-CashPay-Signature: 00")
            s.sendall(head + raw)
            statuses.append(reader.next().status)


def flood(d, n):
    statuses = []
    threads = [threading.Thread(target=junk_client, args=(d, n // CLIENTS, statuses, k))
               for k in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses, time.monotonic() - started


def log_lines(d):
    return d.log_text().splitlines()


def checkpoint(d):
    # The daemon's own WAL is folded into the file at its checkpoints; ask
    # for one so the file size is what the rows take.
    d.query("PRAGMA wal_checkpoint(TRUNCATE)")


def prune(d):
    ctl = os.environ.get("CASHPAYCTL")
    check(ctl, "CASHPAYCTL is not set")
    r = subprocess.run([ctl, "--config", d.config_path, "--json", "prune", "--days", "0"],
                       capture_output=True, text=True, timeout=120)
    check_eq(r.returncode, 0, f"prune: {r.stderr}")
    return json.loads(r.stdout)["deleted"]


def test_junk_flood_is_bounded():
    with Daemon({"log.level": "notice"}) as d:
        n = N // CLIENTS * CLIENTS
        base_lines = len(log_lines(d))
        checkpoint(d)
        base = db_bytes(d)
        statuses, seconds = flood(d, n)
        check_eq(sorted(set(statuses)), [401], "every junk POST answered 401")
        check_eq(deliveries(d), n, "one row per junk POST")
        bodies = d.query("SELECT max(length(body)) AS m, sum(length(body)) AS s FROM webhook_deliveries")[0]
        check_eq(bodies["m"], KEEP, "rejected bodies truncated")
        checkpoint(d)
        grown = db_bytes(d) - base
        per_row = grown / n
        lines = log_lines(d)[base_lines:]
        rejected_lines = sum(1 for l in lines if "rejected webhook" in l)
        suppressed = [int(m.group(1)) for l in lines for m in [re.search(r"(\d+) similar messages suppressed", l)] if m]
        print(f"  flood of {n} x {BODY} B unsigned bodies in {seconds:.1f}s ({n / seconds:.0f}/s): "
              f"database +{grown / 1048576:.1f} MiB ({per_row:.0f} B per row, {n * BODY / 1048576:.0f} MiB sent); "
              f"{len(lines)} log lines ({rejected_lines} about rejected webhooks, "
              f"{sum(suppressed)} suppressed)")
        check(per_row < KEEP + 1024, f"{per_row:.0f} bytes per rejected row")
        # The rate limit: 10 lines per 5 s window, plus one "suppressed" line per window.
        windows = seconds / 5 + 2
        check(rejected_lines <= 10 * windows, f"{rejected_lines} rejected-webhook log lines")
        check(len(lines) <= 12 * windows + 5, f"{len(lines)} log lines during the flood")

        deleted = prune(d)
        check_eq(deleted, n, "prune removed every rejected row")
        check_eq(deliveries(d), 0, "no rows left")
        checkpoint(d)
        after_prune = db_bytes(d)
        statuses, _ = flood(d, n)
        checkpoint(d)
        after_second = db_bytes(d)
        print(f"  after prune {after_prune / 1048576:.1f} MiB; a second flood of the same size "
              f"leaves {after_second / 1048576:.1f} MiB (pages reused)")
        check(after_second <= after_prune * 1.1 + 1048576,
              f"the second flood reused the pruned pages ({after_prune} -> {after_second})")
        # Genuine webhooks are unaffected.
        check_eq(d.post_json(charge())[0], 200, "signed webhook after the flood")


def metric(d, name):
    status, _, body = d.admin("/metrics")
    check_eq(status, 200, "/metrics")
    values = [line.split()[1] for line in body.decode().splitlines() if line.startswith(name + " ")]
    return int(values[0]) if values else None


def test_capped_flood_keeps_the_newest():
    with Daemon({"log.level": "notice", "webhook.max_rejected_rows": str(CAP)}) as d:
        for i in range(20):
            check_eq(d.post_json(charge(f"chg_before{i}"))[0], 200, "signed webhook")
        checkpoint(d)
        base = db_bytes(d)
        n = CAPPED_N // CLIENTS * CLIENTS
        statuses, seconds = flood(d, n)
        check_eq(sorted(set(statuses)), [401], "every junk POST answered 401")
        kept = count(d, f"SELECT count(*) AS n FROM webhook_deliveries WHERE {REJECTED}")
        check(CAP <= kept <= CAP + SLACK, f"{kept} rejected rows kept (cap {CAP})")
        check_eq(count(d, "SELECT count(*) AS n FROM webhook_deliveries WHERE outcome = 'applied'"),
                 20, "accepted deliveries untouched")
        check_eq(count(d, "SELECT count(*) AS n FROM orders"), 20, "orders untouched")
        # The newest were kept: rows are deleted by received_at, which only
        # the 8 requests in flight at a time can reorder against the ids.
        last = count(d, "SELECT seq AS n FROM sqlite_sequence WHERE name = 'webhook_deliveries'")
        oldest = count(d, f"SELECT min(id) AS n FROM webhook_deliveries WHERE {REJECTED}")
        check_eq(last, 20 + n, "every junk POST was recorded when it arrived")
        check(oldest > last - CAP - SLACK - 2 * CLIENTS, f"oldest kept row {oldest} of {last}")
        check_eq(metric(d, "cashpayd_rejected_rows"), kept, "cashpayd_rejected_rows")
        checkpoint(d)
        size = db_bytes(d)
        print(f"  flood of {n} x {BODY} B unsigned bodies with max_rejected_rows = {CAP} in "
              f"{seconds:.1f}s ({n / seconds:.0f}/s): {kept} rejected rows kept, database "
              f"{size / 1048576:.2f} MiB (+{(size - base) / 1048576:.2f} MiB; "
              f"{n * (KEEP + 550) / 1048576:.1f} MiB without the cap)")
        check(size < 4 * 1048576, f"database of {size} bytes after the flood")
        check_eq(d.post_json(charge())[0], 200, "signed webhook after the flood")


def test_old_rejected_rows_are_pruned_by_the_daemon():
    with Daemon({"log.level": "info"}) as d:
        check_eq(d.post_json(charge("chg_kept"))[0], 200, "signed webhook")
        check_eq(d.post(charge(), sign=False)[0], 401, "a recent rejected one")
        d.stop()
        # 2500 rejected rows from long ago: three chunks of the prune
        db = d.db()
        with db:
            db.execute("""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n
                          WHERE i < 2500)
                          INSERT INTO webhook_deliveries (received_at, remote_addr, outcome,
                          http_status) SELECT '2020-01-01T00:00:00.000Z', '127.0.0.1',
                          'unauthorized', 401 FROM n""")
        db.close()
        d.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and count(
                d, f"SELECT count(*) AS n FROM webhook_deliveries WHERE {REJECTED}") > 1:
            time.sleep(0.1)
        check_eq(count(d, f"SELECT count(*) AS n FROM webhook_deliveries WHERE {REJECTED}"), 1,
                 "only the recent rejected row is left")
        check_eq(count(d, "SELECT count(*) AS n FROM webhook_deliveries WHERE outcome = 'applied'"),
                 1, "the accepted one stays")
        lines = [line for line in log_lines(d) if "deleted 2500 rejected deliveries" in line]
        check_eq(len(lines), 1, "one log line for the whole prune")
        check_eq(metric(d, "cashpayd_rejected_rows"), 1, "cashpayd_rejected_rows")


def test_junk_that_is_refused_early_leaves_nothing():
    with Daemon({"log.level": "notice"}) as d:
        for i in range(200):  # 415 closes the connection: its body is never read
            head = (b"POST /cashpay/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: 5000\r\n\r\n")
            with connect(d.port) as s:
                s.sendall(head + b"x" * 1000)
                check_eq(Reader(s).next().status, 415, "wrong content type")
        check_eq(deliveries(d), 0, "415 leaves no row")
        check_eq(count(d, "SELECT count(*) AS n FROM orders"), 0, "and no order")


def closed_within(sock, limit):
    """Seconds until the server closes @sock (a TLS alert may come first)."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        return None
    return time.monotonic() - started


def test_handshake_flood():
    """Over HTTPS: handshakes that stall after a few bytes, and then a stream
    of handshakes that complete and go away at once, from several addresses,
    hold no thread or connection slot past [http] timeout; webhooks from
    another address are answered meanwhile."""
    timeout, stalls, churns = 2, 96, 200
    with Daemon({"http.timeout": str(timeout), "http.request_timeout": str(timeout),
                 "http.max_connections": "128", "log.level": "notice"}) as d:
        timed_post(d)  # the database and its readers open what they keep open
        fds_before = open_fds(d.proc.pid)
        opened = time.monotonic()
        stalled = []
        for i in range(stalls):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=15,
                                         source_address=(f"127.0.0.{2 + i % 4}", 0))
            s.sendall(b"\x16\x03\x01")  # a handshake record's first bytes, then nothing
            stalled.append(s)
        answers = [timed_post(d) for _ in range(5)]
        left = [closed_within(s, timeout + 5) for s in stalled]
        closed_after = time.monotonic() - opened
        for s in stalled:
            s.close()
        check(all(x is not None for x in left), "a stalled handshake was never closed")
        check(closed_after < timeout + 3, f"stalled handshakes closed after {closed_after:.1f} s")

        churned = []

        def churn():
            started = time.monotonic()
            for i in range(churns):
                with connect(d.port, f"127.0.0.{6 + i % 2}"):
                    pass
            churned.append(time.monotonic() - started)

        t = threading.Thread(target=churn)
        t.start()
        answers += [timed_post(d) for _ in range(5)]
        t.join(120)
        check(churned, "the handshake churn did not finish")
        for status, _ in answers:
            check_eq(status, 200, "webhook during the handshake floods")
        slowest = max(took for _, took in answers)
        deadline = time.monotonic() + 5
        while open_fds(d.proc.pid) > fds_before + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        check(open_fds(d.proc.pid) <= fds_before + 2,
              f"descriptors {fds_before} before, {open_fds(d.proc.pid)} after")
        print(f"    {stalls} stalled handshakes all closed {closed_after:.1f} s after opening "
              f"(timeout {timeout} s); {churns} full handshakes in {churned[0]:.2f} s "
              f"(one client); slowest webhook meanwhile {slowest * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    tests = [test_junk_flood_is_bounded, test_capped_flood_keeps_the_newest,
             test_old_rejected_rows_are_pruned_by_the_daemon,
             test_junk_that_is_refused_early_leaves_nothing]
    # Handshakes exist only over HTTPS: the -tls run of this file adds them.
    if harness.TLS_BY_DEFAULT:
        tests.append(test_handshake_flood)
    run_tests(tests)
