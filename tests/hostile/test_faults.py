"""Fault injection: what the daemon does when the database cannot commit.

The contract under test: a 2xx only for what is committed; 503 with
Retry-After while the store cannot commit; /healthz says so; the service
comes back by itself once the fault is gone (or exits non-zero for systemd
to restart it); the database stays consistent throughout.

Faults: a full disk (a 2 MiB tmpfs), failed fdatasync/fsync/pwrite calls
and failed allocations (libfiu's POSIX preload library through fiu-run and
fiu-ctrl, plus the fault-nth module to hit exactly the N-th call), another
process holding the write lock past busy_timeout, a reader holding a
snapshot while the WAL grows, and the database file deleted, replaced or
made read-only under the running daemon.
"""
import collections
import json
import os
import random
import shutil
import sqlite3
import tempfile
import threading
import time

from hostile import (Daemon, Delivery, FaultDaemon, Tmpfs, UserDaemon, alive, asan_runtime, check,
                     check_acked_stored, check_database, check_eq, post_delivery, run_tests,
                     stored_by_nonce, timed_get, wait_for)
from harness import random_charge_id  # on the path once hostile is imported

EIO, ENOSPC = 5, 28
QUIET = {"log.level": "notice"}
rng = random.Random(int(os.environ.get("FAULTS_SEED", str(random.randrange(1 << 32)))))
summary = []


def post_new(daemon, status="CAPTURED", timeout=30):
    """A new charge with an amount that shows any dropped digit."""
    d = Delivery(random_charge_id(), status, amount=rng.randrange(10 ** 8, 10 ** 9))
    return post_delivery(daemon, d, timeout)


def healthz(daemon):
    status, _, body = daemon.admin("/healthz")
    return status, json.loads(body).get("detail", "")


def check_unavailable(dl, what):
    check_eq(dl.http_status, 503, what)
    check_eq(dl.headers.get("Retry-After"), "5", f"{what}: Retry-After")


def check_recovered(daemon, what):
    dl = post_new(daemon)
    check_eq(dl.http_status, 200, f"{what}: a webhook after the fault")
    check_eq(healthz(daemon), (200, "ok"), f"{what}: /healthz after the fault")
    return dl


def check_amounts(daemon, deliveries):
    """Every applied first sighting recorded the amount that was sent."""
    for d in deliveries:
        if d.acked and d.outcome == "applied" and d.status == "CAPTURED":
            rows = daemon.query("SELECT amount FROM orders WHERE charge_id = ?", d.charge_id)
            check_eq([r["amount"] for r in rows], [d.amount], f"amount of {d.charge_id}")


def check_all_kept(daemon, sent, what):
    lost = check_acked_stored(daemon, sent)
    check_eq(lost, 0, f"{what}: acknowledged deliveries missing")
    check_amounts(daemon, sent)
    check_database(daemon)


def redeliver_unacknowledged(daemon, sent, what):
    """CashPay's retries: whatever got no 2xx is sent again and must get 200,
    without a second effect when the first attempt did commit."""
    found = stored_by_nonce(daemon)
    for d in [x for x in sent if not x.acked]:
        committed = d.nonce in found
        post_delivery(daemon, d)
        check_eq(d.http_status, 200, f"{what}: redelivery of {d.charge_id}")
        if committed:
            check(d.outcome != "applied", f"{what}: {d.charge_id} committed, then applied again")
    check_database(daemon)


def stop_clean(daemon):
    """SIGTERM must end in exit 0: under ASan a leak report makes it fail."""
    rc = daemon.stop()
    daemon.log.close()
    check_eq(rc, 0, "exit status after SIGTERM\n" + daemon.log_text()[-2000:])
    shutil.rmtree(daemon.dir, ignore_errors=True)  # kept only when something failed


def kill(daemon):
    if daemon and daemon.proc and daemon.proc.poll() is None:
        daemon.proc.kill()
        daemon.proc.wait()


# ------------------------------------------------------------ disk full

def test_disk_full_then_space_returns():
    base = tempfile.mkdtemp(prefix="cashpayd-hostile-")
    fs = Tmpfs(os.path.join(base, "db"), "2m")
    d = None
    try:
        d = Daemon({**QUIET, "database.path": os.path.join(fs.path, "cashpay.db")})
        d.db_path = os.path.join(fs.path, "cashpay.db")
        sent = [post_new(d) for _ in range(5)]
        check_eq([x.http_status for x in sent], [200] * 5, "before the disk fills")
        filler = fs.fill()
        refused = []
        for _ in range(60):  # a WAL with room left may still take a few
            dl = post_new(d)
            sent.append(dl)
            check(dl.http_status in (200, 503), f"disk full: got {dl.http_status}")
            if dl.http_status == 503:
                refused.append(dl)
                check_unavailable(dl, "disk full")
            if len(refused) >= 5:
                break
        check(len(refused) >= 5, "a full disk never answered 503")
        check_eq(healthz(d), (503, "disk full"), "/healthz while the disk is full")
        time.sleep(2.5)  # idle seconds: the writer's probe writes must fail too
        check_eq(healthz(d), (503, "disk full"), "/healthz while the disk stays full")
        pid = d.proc.pid
        os.unlink(filler)
        # no webhook is needed to clear it: the idle writer's probe commits
        started = time.monotonic()
        wait_for(lambda: healthz(d)[0] == 200, 5, "/healthz to recover with no webhook sent")
        cleared = time.monotonic() - started
        check("takes writes again" in d.log_text(), "the log says the database takes writes again")
        after = check_recovered(d, "disk full")
        check_eq(d.proc.pid, pid, "recovered without a restart")
        found = stored_by_nonce(d)
        for dl in refused:
            check(dl.nonce not in found, "a delivery answered 503 was stored")
        check_all_kept(d, sent + [after], "disk full")
        for dl in refused:  # CashPay's retry
            again = post_delivery(d, dl)
            check_eq((again.http_status, again.outcome), (200, "applied"), "retry after disk full")
        check("disk full" in d.log_text(), "the log names the full disk")
        stop_clean(d)
        summary.append(f"disk full: {len(sent) - len(refused)} acked, {len(refused)} x 503, "
                       f"/healthz green {cleared:.1f} s after space returned, no restart")
    finally:
        kill(d)
        fs.unmount()
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------ I/O errors

def count_calls(d, point_desc):
    d.arm(0)
    post_new(d)
    calls, _ = d.disarm()
    return calls


def sweep_io_point(point, err):
    """Fail the N-th call of @point once, for every N over three requests,
    then from the N-th call on; every 2xx kept, recovery each time."""
    d = FaultDaemon(QUIET, fault={"point": point, "n": 0, "errno": err})
    sent, answers = [], collections.Counter()
    try:
        sent.append(post_new(d))
        per_request = count_calls(d, point)
        if per_request == 0:
            stop_clean(d)
            return 0, answers
        for n in range(1, 3 * per_request + 2):
            d.arm(n, "once")
            batch = [post_new(d, timeout=15) for _ in range(3)]
            _, failed = d.disarm()
            check(failed <= 1, f"{point} #{n}: failed {failed} times")
            for dl in batch:
                check(dl.http_status in (200, 503), f"{point} #{n} once: got {dl.http_status}")
                answers[f"once {dl.http_status}"] += 1
            check(alive(d), f"{point} #{n}: the daemon died")
            sent += batch + [check_recovered(d, f"{point} #{n} once")]
        for n in (1, per_request + 1):
            d.arm(n, "always")
            batch = [post_new(d, timeout=15) for _ in range(3)]
            check_unavailable(batch[-1], f"{point} failing from #{n}")
            status, detail = healthz(d)
            check_eq(status, 503, f"/healthz while {point} fails ({detail})")
            d.disarm()
            for dl in batch:
                answers[f"always {dl.http_status}"] += 1
            sent += batch + [check_recovered(d, f"{point} from #{n}")]
        check_all_kept(d, sent, point)
        redeliver_unacknowledged(d, sent, point)
        # and a crash right after: what was acknowledged survives recovery
        kill(d)
        d.log.close()
        d.start()
        check_all_kept(d, sent, f"{point}, after SIGKILL and restart")
        stop_clean(d)
    finally:
        kill(d)
    return per_request, answers


def test_io_errors_sweep():
    used = {}
    for point, err in (("posix/io/sync/fdatasync", EIO), ("posix/io/sync/fsync", EIO),
                       ("posix/io/rw/pwrite", EIO), ("posix/io/rw/pwrite", ENOSPC)):
        per_request, answers = sweep_io_point(point, err)
        used[(point, err)] = per_request
        summary.append(f"{point} errno {err}: {per_request} calls per request, "
                       f"{dict(sorted(answers.items()))}")
    check(used[("posix/io/sync/fdatasync", EIO)] + used[("posix/io/sync/fsync", EIO)] > 0,
          "neither fdatasync nor fsync is called on commit: synchronous is not honoured")
    check(used[("posix/io/rw/pwrite", EIO)] > 0, "no pwrite seen: SQLite writes another way")


def test_fiu_ctrl_once_and_permanently():
    """The same through fiu-ctrl, as an operator would do it by hand."""
    point = "posix/io/sync/fdatasync"
    d = FaultDaemon(QUIET)
    sent = []
    try:
        sent.append(post_new(d))
        d.ctrl(f"enable name={point},failinfo={EIO},onetime")
        first, second = post_new(d), post_new(d)
        check_unavailable(first, "fdatasync failing once")
        check_eq(second.http_status, 200, "the next commit after a single failure")
        d.ctrl(f"enable name={point},failinfo={EIO}")
        batch = [post_new(d) for _ in range(3)]
        for dl in batch:
            check_unavailable(dl, "fdatasync failing for good")
        check_eq(healthz(d), (503, "database I/O error"), "/healthz while fdatasync fails")
        d.ctrl(f"disable name={point}")
        sent += [first, second] + batch + [check_recovered(d, "fdatasync enabled again")]
        check_all_kept(d, sent, "fiu-ctrl")
        stop_clean(d)
    finally:
        kill(d)


def test_idle_checkpoint_fails():
    """The writer's own checkpoint (when idle) hits failing syncs."""
    d = FaultDaemon(QUIET, fault={"point": "posix/io/sync/fdatasync", "n": 0, "errno": EIO})
    try:
        sent = [post_new(d) for _ in range(20)]
        d.arm(1, "always")
        time.sleep(1.6)  # the writer checkpoints after a second without work
        calls, failed = d.disarm()
        check(failed >= 1, f"no sync during the idle checkpoint ({calls} calls)")
        check(alive(d), "the daemon died on a failed checkpoint")
        sent.append(check_recovered(d, "failed checkpoint"))
        check_all_kept(d, sent, "failed checkpoint")
        stop_clean(d)
    finally:
        kill(d)


# ------------------------------------------------------------ allocation failures

def test_malloc_nth_during_a_request():
    """The N-th allocation after the request starts fails, for every N. The
    plain build runs under valgrind's memcheck, so a leak or an invalid
    access on any error path fails the test at exit."""
    if asan_runtime(os.environ["CASHPAYD"]):
        # ASan's allocator replaces malloc before libfiu can wrap it
        summary.append("malloc: not in the ASan build (ASan owns malloc); the plain build "
                       "runs this sweep under valgrind")
        return
    d = FaultDaemon(QUIET, fault={"point": "libc/mm/*", "n": 0}, valgrind=True)
    sent, answers = [], collections.Counter()
    try:
        sent.append(post_new(d))
        per_request = count_calls(d, "libc/mm/*")
        check(per_request > 20, f"only {per_request} allocations counted")
        for n in range(1, per_request + 6):
            d.arm(n, "once")
            dl = post_new(d, timeout=15)
            _, failed = d.disarm()
            check(alive(d), f"malloc #{n}: the daemon died")
            # a 400/401 would tell CashPay to give up on a valid webhook
            check(dl.http_status in (None, 200, 503), f"malloc #{n}: got {dl.http_status}")
            if dl.http_status == 503:
                check_eq(dl.headers.get("Retry-After"), "5", f"malloc #{n}: Retry-After")
            answers[dl.http_status or "no answer"] += 1
            sent.append(dl)
        sent.append(check_recovered(d, "allocation failures"))
        check_all_kept(d, sent, "allocation failures")
        redeliver_unacknowledged(d, sent, "allocation failures")
        stop_clean(d)
        summary.append(f"malloc: {per_request} allocations per request, N = 1..{per_request + 5}: "
                       f"{dict(answers)}")
    finally:
        kill(d)


# ------------------------------------------------------------ another process's lock

def watch_latency(daemon, until, charge_id):
    """Worst latency of the return page and /healthz until @until."""
    worst = {"return": 0.0, "healthz": 0.0}
    statuses = collections.Counter()
    while time.monotonic() < until:
        status, secs = timed_get(daemon.port, f"/cashpay/return?charge_id={charge_id}")
        worst["return"] = max(worst["return"], secs)
        hz, secs = timed_get(daemon.admin_port, "/healthz")
        worst["healthz"] = max(worst["healthz"], secs)
        statuses[hz] += 1
        time.sleep(0.02)
    return worst, statuses


def external_lock(mode):
    d = Daemon({**QUIET, "database.busy_timeout": "500"})
    locker = None
    try:
        known = post_new(d)
        locker = sqlite3.connect(d.db_path, timeout=5, isolation_level=None)
        locker.execute(f"BEGIN {mode}")
        locker.execute("UPDATE orders SET fulfilled_at = NULL WHERE 0")
        started = time.monotonic()
        results = []
        posters = [threading.Thread(target=lambda: results.append(post_new(d, timeout=10)))
                   for _ in range(4)]
        for t in posters:
            t.start()
        worst, statuses = watch_latency(d, started + 1.5, known.charge_id)
        for t in posters:
            t.join(10)
        elapsed = time.monotonic() - started
        for dl in results:
            check_unavailable(dl, f"BEGIN {mode} held past busy_timeout")
        check_eq(len(results), 4, "every webhook answered")
        check(worst["return"] < 1.0 and worst["healthz"] < 1.0,
              f"public port or /healthz slowed down by the lock: {worst}")
        check(statuses[503] > 0, f"/healthz never reported the locked database: {statuses}")
        locker.execute("ROLLBACK")
        locker.close()
        locker = None
        check_all_kept(d, [known, check_recovered(d, f"BEGIN {mode}")], f"BEGIN {mode}")
        stop_clean(d)
        summary.append(f"BEGIN {mode} held 1.5 s, busy_timeout 500 ms: 4 x 503, worst return page "
                       f"{worst['return'] * 1000:.0f} ms, worst /healthz "
                       f"{worst['healthz'] * 1000:.0f} ms ({elapsed:.1f} s)")
    finally:
        if locker:
            locker.close()
        kill(d)


def test_begin_immediate_held():
    external_lock("IMMEDIATE")


def test_begin_exclusive_held():
    external_lock("EXCLUSIVE")


# ------------------------------------------------------------ a reader that never ends

def test_long_reader_wal_bounded():
    limit = 1 << 20  # the smallest wal_warn_bytes: checkpoints every 256 KiB
    d = Daemon({**QUIET, "database.wal_warn_bytes": str(limit)})

    def wal():
        try:
            return os.path.getsize(d.db_path + "-wal")
        except FileNotFoundError:
            return 0

    reader = None
    try:
        sent = [post_new(d)]
        reader = sqlite3.connect(d.db_path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM orders").fetchall()  # holds its snapshot
        for _ in range(3000):
            if wal() > limit * 3 // 2:
                break
            sent.append(post_new(d))
        grown = wal()
        check(grown > limit, f"the WAL did not grow behind the reader ({grown} bytes)")
        wait_for(lambda: "past wal_warn_bytes" in d.log_text(), 3, "the WAL warning")
        status, detail = healthz(d)
        check(status == 503 and "wal_warn_bytes" in detail, f"/healthz: {status} {detail}")
        metrics = d.admin("/metrics")[2].decode()
        shown = [int(line.split()[1]) for line in metrics.splitlines()
                 if line.startswith("cashpayd_wal_bytes ")]
        check(shown and shown[0] > limit, f"cashpayd_wal_bytes: {shown}")
        reader.execute("COMMIT")
        reader.close()
        reader = None
        started = time.monotonic()
        wait_for(lambda: wal() <= limit, 5, "the WAL to shrink once the reader is gone")
        shrink = time.monotonic() - started
        wait_for(lambda: healthz(d)[0] == 200, 3, "/healthz to recover")
        wait_for(lambda: "write-ahead log is back" in d.log_text(), 3, "the all-clear")
        peak = 0
        for _ in range(400):  # steady load, no reader: the WAL stays small
            sent.append(post_new(d))
            peak = max(peak, wal())
        check(peak <= limit, f"WAL reached {peak} bytes under load without a reader")
        check_all_kept(d, sent, "long reader")
        stop_clean(d)
        summary.append(f"long reader: WAL grew to {grown} bytes (warn at {limit}), back under "
                       f"in {shrink:.1f} s after the reader left; peak {peak} bytes over 400 "
                       "more webhooks")
    finally:
        if reader:
            reader.close()
        kill(d)


# ------------------------------------------------------------ the file itself

def test_database_deleted():
    d = Daemon(QUIET)
    try:
        sent = [post_new(d)]
        os.unlink(d.db_path)
        dl = post_new(d)
        check_unavailable(dl, "database deleted")
        check_eq(healthz(d), (503, "database file not found"), "/healthz")
        check("deleted, replaced or made read-only" in d.log_text(), "a log line says why")
        stop_clean(d)
    finally:
        kill(d)


def test_database_replaced():
    d = Daemon(QUIET)
    try:
        post_new(d)
        copy = d.db_path + ".copy"
        with sqlite3.connect(d.db_path) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
        os.rename(copy, d.db_path)  # "restoring a backup" under the running daemon
        check_unavailable(post_new(d), "database replaced")
        check_eq(healthz(d), (503, "database file was replaced"), "/healthz")
        stop_clean(d)
    finally:
        kill(d)


def test_database_made_read_only():
    d = UserDaemon(QUIET, start=False)
    try:
        d.start()
        sent = [post_new(d)]
        os.chmod(d.db_path, 0o440)
        dl = post_new(d)
        check_unavailable(dl, "database made read-only")
        check_eq(healthz(d), (503, "database is read-only"), "/healthz")
        check("deleted, replaced or made read-only" in d.log_text(), "a log line says why")
        os.chmod(d.db_path, 0o660)
        # the idle writer notices the file is writable again, without a webhook
        wait_for(lambda: healthz(d)[0] == 200, 3, "/healthz once writable again")
        sent += [dl, check_recovered(d, "read-only")]
        check(dl.nonce not in stored_by_nonce(d), "a delivery answered 503 was stored")
        check_all_kept(d, sent, "read-only")
        stop_clean(d)
    finally:
        kill(d)


if __name__ == "__main__":
    try:
        run_tests([test_disk_full_then_space_returns, test_io_errors_sweep,
                   test_fiu_ctrl_once_and_permanently, test_idle_checkpoint_fails,
                   test_malloc_nth_during_a_request, test_begin_immediate_held,
                   test_begin_exclusive_held, test_long_reader_wal_bounded,
                   test_database_deleted, test_database_replaced, test_database_made_read_only])
    finally:
        for line in summary:
            print(line, flush=True)
