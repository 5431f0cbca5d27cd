#!/usr/bin/python3
"""cashpayctl's --json output when memory runs out.

Usage: test_ctl_oom.py [CASHPAYCTL]   (else $CASHPAYCTL; $CASHPAYD names the
daemon that fills the database, $FAULT_NTH_MODULE the fault-nth module)

Each command is first run once to count its allocations and to record its
output, then once for every N from 1 to that count with the N-th
allocation failing. Every run must end one of two ways: exit 0 with exactly
the recorded output, or exit 1 (the documented code for a failure) with a
message on stderr and nothing on stdout. A well-formed but different
document, such as {} where the list should be, or half a document, fails.

Two sweeps. "jansson": every allocation jansson makes (the fault-nth module
installs its allocator), so every step of building and printing the JSON,
for every command with --json; in an ASan build too, where a leak or a bad
free on those paths fails the run. "all": every malloc, calloc and realloc
of the process (libfiu's POSIX preload library and the fault-nth module),
for the commands whose other layers cope with it; not in an ASan build,
whose allocator owns malloc so that libfiu cannot fail it.
"""
import concurrent.futures
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import harness  # noqa: E402
from harness import charge, check, check_eq  # noqa: E402

FIU_POSIX_PRELOAD = "/usr/lib/fiu/fiu_posix_preload.so"
ENOMEM = 12

CTL = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CASHPAYCTL", ""))
WORK = tempfile.mkdtemp(prefix="cashpayctl-oom-")


ASAN = harness.asan_runtime(CTL) if os.path.exists(CTL) else None


def fill_database(db_path):
    """Orders, events and deliveries of every kind, copied to @db_path."""
    with harness.Daemon() as d:
        d.post(charge("chg_oomplain", description="Purchase of a watch"))
        d.post(charge("chg_oomtext", description="caf\u00e9 \u2603 \t tab, \u0007 bell"))
        d.post(charge("chg_oomtext", status="CAPTURED"))
        d.post(charge("chg_oomconflict", status="CAPTURED"))
        d.post(charge("chg_oomconflict", status="CAPTURED", amount=1))
        d.post(charge("chg_oomplain", status="FAILED"))
        d.post(charge(), sign=False)
        d.post(b'{"id": 1}')
        with sqlite3.connect(d.db_path) as src, sqlite3.connect(db_path) as dst:
            src.backup(dst)
    with sqlite3.connect(db_path) as db:
        # A body that is not UTF-8: show prints it as base64.
        db.execute("INSERT INTO webhook_deliveries (received_at, remote_addr, charge_id, "
                   "outcome, http_status, error, body) VALUES ('2026-01-02T03:04:05.678Z', "
                   "'127.0.0.1', 'chg_oomtext', 'invalid', 400, 'not UTF-8', X'7B22FF22')")
    # No -wal next to the copies: everything is in the one file.
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def preload(point):
    """LD_PRELOAD for @point: the ASan runtime must come first, libfiu's
    wrappers before the module that drives them."""
    libs = [ASAN] if ASAN else []
    if point != "jansson":
        libs.append(FIU_POSIX_PRELOAD)
    return " ".join(libs + [os.environ["FAULT_NTH_MODULE"]])


def run(point, args, n, db=None, stdin=b""):
    """cashpayctl @args with the @n-th allocation of @point failing (0:
    none, only counted). A command that writes gets its own copy of @db.
    Returns (exit code, stdout, stderr, allocations counted)."""
    tag = f"{n}-{os.getpid()}-{id(args)}"
    report = os.path.join(WORK, f"report-{tag}")
    if db:
        copy = os.path.join(WORK, f"db-{tag}.db")
        shutil.copyfile(db, copy)
        args = [copy if a == db else a for a in args]
    env = dict(os.environ, LD_PRELOAD=preload(point), FAULT_NTH_POINT=point,
               FAULT_NTH_N=str(n), FAULT_NTH_MODE="once", FAULT_NTH_ERRNO=str(ENOMEM),
               FAULT_NTH_ARMED="1", FAULT_NTH_REPORT=report)
    env.pop("CASHPAYD_CONFIG", None)
    p = subprocess.run([CTL] + args, input=stdin, capture_output=True, env=env,
                       timeout=120)
    calls = 0
    if os.path.exists(report):
        with open(report) as f:
            calls = int(f.read().split()[0])
        os.unlink(report)
    if db:
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(copy + suffix):
                os.unlink(copy + suffix)
    return p.returncode, p.stdout, p.stderr, calls


def normal(out, drop):
    """The document in @out without the keys in @drop (times of the run)."""
    doc = json.loads(out)
    for key in drop:
        doc.pop(key, None)
    return doc


def sweep(point, name, args, drop=(), db=None, stdin=b""):
    rc, expected, err, total = run(point, args, 0, db, stdin)
    check_eq(rc, 0, f"{name}: exit code without faults (stderr {err!r})")
    check(total > 0, f"{name}: no allocation counted")
    expected_doc = normal(expected, drop)
    outcomes = {"complete": 0, "failed": 0}

    def one(n):
        rc, out, err, _ = run(point, args, n, db, stdin)
        where = f"{name}, allocation {n} of {total} failing"
        if rc == 0:
            check(out.endswith(b"\n") and normal(out, drop) == expected_doc,
                  f"{where}: exit 0 with other output: {out[:300]!r}")
            return "complete"
        check_eq(rc, 1, f"{where}: exit code (stderr {err[-300:]!r})")
        check_eq(out, b"", f"{where}: stdout of a failed run")
        check(err.startswith(b"cashpayctl: ") and len(err) > len(b"cashpayctl: \n"),
              f"{where}: no message: {err!r}")
        return "failed"

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for outcome in pool.map(one, range(1, total + 1)):
            outcomes[outcome] += 1
    check(outcomes["failed"] > 0, f"{name}: no failed allocation made it fail")
    print(f"     {name}: {total} allocations; {outcomes['complete']} runs complete, "
          f"{outcomes['failed']} failed cleanly", flush=True)


def commands(db, config):
    """(name, arguments, options of sweep()) of every command with --json."""
    read = ["--db", db, "--json"]
    return [
        ("deliveries", read + ["deliveries", "--limit", "0"], {}),
        ("orders", read + ["orders", "--limit", "0"], {}),
        ("show", read + ["show", "chg_oomtext"], {}),
        ("events", read + ["events"], {}),
        ("prune --dry-run", read + ["prune", "--dry-run"], {"drop": ["cutoff"]}),
        ("check-config", ["--config", config, "--json", "check-config"], {}),
        ("sign", ["--config", config, "--json", "sign"], {"stdin": b'{"id":"chg_x"}'}),
        ("migrate", read + ["migrate"], {"db": db, "drop": ["database"]}),
        ("fulfil", read + ["fulfil", "chg_oomtext"], {"db": db, "drop": ["fulfilled_at"]}),
        ("review-done", read + ["review-done", "chg_oomconflict"], {"db": db}),
    ]


# Not in the "all" sweep, for a failure below the JSON output, outside
# cashpayctl's own code: sign, since OpenSSL 3 goes on with a default
# library context whose lock it could not allocate, and crashes on it.
NOT_ALL = {"sign"}


def main():
    if not os.path.exists(CTL):
        sys.exit("usage: test_ctl_oom.py CASHPAYCTL (or set $CASHPAYCTL)")
    module = os.environ.get("FAULT_NTH_MODULE")
    if not module or not os.path.exists(module):
        sys.exit("FAULT_NTH_MODULE is not set (meson sets it to the built fault-nth module)")
    if not ASAN and not os.path.exists(FIU_POSIX_PRELOAD):
        sys.exit(f"{FIU_POSIX_PRELOAD} not found: install the Debian package fiu-utils")
    db = os.path.join(WORK, "cashpay.db")
    fill_database(db)
    secret = os.path.join(WORK, "webhook.secret")
    with open(secret, "w") as f:
        f.write("oom-test-secret-0123456789abcdef\n")
    config = os.path.join(WORK, "cashpayd.conf")
    with open(config, "w") as f:
        f.write(f"[webhook]\nsecret_file = {secret}\n[database]\npath = {db}\n")
    sweeps = [("jansson", c) for c in commands(db, config)]
    if ASAN:
        print("     the \"all\" sweep is left out: ASan's allocator owns malloc, "
              "libfiu cannot fail it", flush=True)
    else:
        sweeps += [("libc/mm/*", c) for c in commands(db, config) if c[0] not in NOT_ALL]
    failures = 0
    for point, (name, args, kw) in sweeps:
        what = f"{'jansson' if point == 'jansson' else 'all'}: {name}"
        try:
            sweep(point, what, args, **kw)
            print(f"ok   {what}", flush=True)
        except Exception as e:  # report every failing sweep, not just the first
            failures += 1
            print(f"FAIL {what}: {e}", flush=True)
    if not failures:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
