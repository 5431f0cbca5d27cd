#!/usr/bin/python3
"""cashpayctl against a real cashpayd: every command and its error paths.

Usage: test_ctl.py [CASHPAYCTL]   (else $CASHPAYCTL; $CASHPAYD names the daemon)

Orders, events and deliveries are created through the real writer path:
`cashpayctl send` POSTs signed webhooks to a cashpayd on a loopback port.
Only the Python standard library is used; the database is inspected with
the sqlite3 module, or on PostgreSQL (CASHPAYD_TEST_BACKEND=postgresql:
the daemon on a server the test starts, harness.py) through psql. The
tests that need no database, or speak of an SQLite file, run on SQLite
only; their PostgreSQL counterparts (a row lock, a server that cannot be
reached, a newer schema) on PostgreSQL only.
"""
import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import harness  # noqa: E402
from harness import check, check_eq, postgresql_only, sqlite_only  # noqa: E402

CTL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CASHPAYCTL")
if not CTL:
    sys.exit("usage: test_ctl.py CASHPAYCTL (or set $CASHPAYCTL)")
CTL = os.path.abspath(CTL)

WORK = tempfile.mkdtemp(prefix="cashpayctl-test-")
DAEMON = None   # started by test_setup_daemon
IDS = {}        # name -> charge id of the orders built there
ON_PG = harness.BACKEND == "postgresql"
NO_DB = "needs no database: the same on both backends"


def ctl(*args, config=None, stdin=None, env=None, timeout=60, user=None):
    """Run cashpayctl; return (exit code, stdout, stderr) as text."""
    argv = [CTL if user is None else harness.reachable_by_everyone(CTL)]
    if config:
        argv += ["--config", config]
    argv += list(args)
    e = dict(os.environ)
    e.pop("CASHPAYD_CONFIG", None)
    e.pop("COLUMNS", None)
    e.update(env or {})
    pre = None
    if user is not None:
        def pre():
            os.setgid(user)
            os.setuid(user)
    p = subprocess.run(argv, input=stdin.encode() if isinstance(stdin, str) else stdin,
                       capture_output=True, env=e, timeout=timeout, preexec_fn=pre)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def dctl(*args, **kw):
    """cashpayctl over the running daemon's configuration."""
    return ctl(*args, config=DAEMON.config_path, **kw)


def ok(*args, **kw):
    rc, out, err = dctl(*args, **kw)
    check_eq(rc, 0, f"exit code of {' '.join(args)} (stderr: {err!r})")
    return out


def ok_json(*args, **kw):
    return json.loads(ok("--json", *args, **kw))


def display_width(line):
    return len(line)  # str: one column per code point, as cashpayctl measures


def check_fits(text, width=80):
    for line in text.splitlines():
        check(display_width(line) <= width, f"line wider than {width}: {line!r}")
        check(line == line.rstrip(), f"trailing blanks: {line!r}")
        check("\x1b" not in line, f"escape character reached the terminal: {line!r}")


def write_config(path, sections):
    with open(path, "w") as f:
        for name, values in sections.items():
            f.write(f"[{name}]\n")
            for k, v in values.items():
                f.write(f"{k} = {v}\n")


def database_section():
    """The daemon's [database] section, for a configuration of the test's own."""
    if ON_PG:
        return {k.split(".", 1)[1]: v for k, v in DAEMON.base_config.items()
                if k.startswith("database.")}
    return {"path": DAEMON.db_path}


def send(*args):
    rc, out, err = dctl("send", *args)
    check_eq(rc, 0, f"send {args}: {out} {err}")
    return out


# ---------------------------------------------------------------- no database


@sqlite_only(NO_DB)
def test_help_and_version():
    rc, out, _ = ctl("--help")
    check_eq(rc, 0, "--help")
    for command in ["orders", "show", "deliveries", "events", "fulfil", "review-done", "sign",
                    "send", "migrate", "check-config", "prune"]:
        check(command in out, f"{command} missing from --help")
        rc, text, _ = ctl(command, "--help")
        check_eq(rc, 0, f"{command} --help")
        check(text.startswith(f"Usage: cashpayctl {command}"), f"{command} --help: {text!r}")
        check("--json" in text, f"{command} --help lacks the common options")
        check_fits(text)
        rc, text2, _ = ctl("help", command)
        check_eq((rc, text2), (0, text), f"help {command}")
    check("--status S" in ctl("orders", "--help")[1], "orders --help lists --status")
    rc, out, _ = ctl("--version")
    check_eq(rc, 0, "--version")
    check(out.startswith("cashpayctl "), f"--version: {out!r}")
    check_fits(ctl("--help")[1])


@sqlite_only(NO_DB)
def test_usage_errors():
    db = os.path.join(WORK, "usage.db")
    cases = [
        [],
        ["bogus"],
        ["--bogus", "orders"],
        ["orders", "--bogus"],
        ["orders", "extra"],
        ["orders", "--status", "PAID"],
        ["orders", "--status", "captured"],
        ["orders", "--limit", "x"],
        ["orders", "--limit", "-1"],
        ["orders", "--limit"],
        ["deliveries", "--outcome", "accepted"],
        ["deliveries", "--limit", "1e3"],
        ["show"],
        ["show", "chg_a", "chg_b"],
        ["show", "order_1"],
        ["show", "chg_bad id"],
        ["fulfil"],
        ["fulfil", "chg_" + "x" * 129],
        ["review-done", "nope"],
        ["events", "--after", "-1"],
        ["events", "--after", "abc"],
        ["events", "--charge", "bad"],
        ["send", "--amount", "1.5"],
        ["send", "--amount", "9007199254740992"],
        ["send", "--currency", "usd"],
        ["send", "--status", "PAID"],
        ["send", "--charge", "abc"],
        ["send", "--timeout", "0"],
        ["prune", "--days", "x"],
        ["prune", "extra"],
        ["sign", "--timestamp", "soon"],
        ["migrate", "now"],
        ["check-config", "x"],
        ["help", "bogus"],
    ]
    for args in cases:
        rc, out, err = ctl("--db", db, *args)
        check_eq(rc, 2, f"exit code of {args} (stderr {err!r})")
        check(err.startswith("cashpayctl"), f"{args}: message {err!r}")
        check(out == "", f"{args}: nothing on stdout, got {out!r}")
    check(not os.path.exists(db), "a usage error must not create the database")


@sqlite_only("migrate creates an SQLite file")
def test_migrate():
    db = os.path.join(WORK, "fresh.db")
    rc, out, err = ctl("--db", db, "migrate")
    check_eq(rc, 0, f"migrate: {err}")
    check("schema version 3" in out, f"migrate output {out!r}")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        check_eq(conn.execute("PRAGMA user_version").fetchone()[0], 3, "user_version")
        check_eq(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal", "journal_mode")
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    for table in ["orders", "order_events", "webhook_deliveries", "orders_to_fulfil",
                  "api_fetches", "charge_requests"]:
        check(table in names, f"{table} missing after migrate")
    doc = json.loads(ctl("--db", db, "--json", "migrate")[1])
    check_eq(doc, {"database": db, "schema_version": 3, "binary_schema_version": 3}, "json")
    # Empty database: every read command works and prints a table header only.
    for args in [["orders"], ["deliveries"], ["events"]]:
        rc, out, err = ctl("--db", db, *args)
        check_eq(rc, 0, f"{args} on an empty database: {err}")
        check_eq(len(out.splitlines()), 1, f"{args}: header only")
    check_eq(json.loads(ctl("--db", db, "--json", "orders")[1]), {"orders": []}, "empty orders")
    check_eq(json.loads(ctl("--db", db, "--json", "events")[1]), {"events": []}, "empty events")


@sqlite_only("PRAGMA user_version")
def test_newer_schema_refused():
    db = os.path.join(WORK, "newer.db")
    check_eq(ctl("--db", db, "migrate")[0], 0, "migrate")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA user_version = 99")
    for args in [["orders"], ["migrate"], ["fulfil", "chg_x"]]:
        rc, _, err = ctl("--db", db, *args)
        check_eq(rc, 1, f"{args} on a newer schema")
        check("99" in err, f"{args}: message names the version: {err!r}")


@sqlite_only(NO_DB)
def test_check_config():
    good = os.path.join(WORK, "good.conf")
    secret = os.path.join(WORK, "good.secret")
    with open(secret, "w") as f:
        f.write("a-secret\n")
    write_config(good, {"webhook": {"secret_file": secret}, "database": {"path": WORK + "/x.db"}})
    rc, out, err = ctl("--config", good, "check-config")
    check_eq((rc, out.strip()), (0, f"{good}: configuration is valid"), f"good config ({err})")
    doc = json.loads(ctl("--config", good, "--json", "check-config")[1])
    check_eq((doc["ok"], doc["config"], doc["error"]), (True, good, None), "json")
    # The environment variable names the file too.
    rc, out, _ = ctl("check-config", env={"CASHPAYD_CONFIG": good})
    check_eq(rc, 0, "CASHPAYD_CONFIG")

    bad = os.path.join(WORK, "bad.conf")
    with open(bad, "w") as f:
        f.write("[http]\nlisten = 127.0.0.1:8080\nbogus_key = 1\n")
    rc, out, err = ctl("--config", bad, "check-config")
    check_eq(rc, 1, "unknown key")
    check(f"{bad}:3" in err, f"error names file and line: {err!r}")
    rc, out, _ = ctl("--config", bad, "--json", "check-config")
    doc = json.loads(out)
    check_eq((rc, doc["ok"]), (1, False), "json on a bad file")
    check(f"{bad}:3" in doc["error"], "json error")

    rc, _, err = ctl("--config", WORK + "/missing.conf", "check-config")
    check_eq(rc, 1, "missing file")
    check("missing.conf" in err, f"names the file: {err!r}")

    # A standard-webhooks secret that is not whsec_ base64 is an error.
    sw = os.path.join(WORK, "sw-bad.conf")
    write_config(sw, {"webhook": {"verify": "standard-webhooks", "secret_file": secret}})
    rc, _, err = ctl("--config", sw, "check-config")
    check_eq(rc, 1, f"bad whsec secret ({err})")
    check("good.secret" in err, f"names the secret file: {err!r}")

    # The default file is used when nothing else is named; commands that need
    # the configuration fail cleanly without one.
    if not os.path.exists("/etc/cashpayd/cashpayd.conf"):
        rc, _, err = ctl("orders")
        check_eq(rc, 1, "no config file")
        check("/etc/cashpayd/cashpayd.conf" in err, f"names the default file: {err!r}")


# ---------------------------------------------------------------- with a daemon


def test_setup_daemon():
    global DAEMON
    DAEMON = harness.Daemon(extra_config={"webhook.order_ref_field": "metadata.order_id",
                                          "database.busy_timeout": "1000"})
    IDS.update(paid="chg_paid0001", failed="chg_failed001", review="chg_review001",
               pending="chg_pending01", late="chg_late00001")
    send("--status", "INITIATED", "--charge", IDS["paid"], "--order-ref", "ORD-1001",
         "--description", "Watch, stainless steel, with a very long description " * 3)
    out = send("--status", "CAPTURED", "--charge", IDS["paid"], "--order-ref", "ORD-1001")
    check("HTTP 200" in out and '"applied"' in out, f"send output: {out!r}")
    send("--status", "FAILED", "--charge", IDS["failed"], "--amount", "150", "--currency", "USD")
    send("--status", "CAPTURED", "--charge", IDS["review"], "--amount", "500")
    out = send("--status", "CAPTURED", "--charge", IDS["review"], "--amount", "501")
    check('"conflict"' in out, f"amount mismatch is a conflict: {out!r}")
    send("--status", "INITIATED", "--charge", IDS["pending"])
    send("--status", "CAPTURED", "--charge", IDS["late"], "--currency", "USD", "--amount", "1999")
    # Rejected deliveries: a bad signature and a bad payload.
    status, _, _ = DAEMON.post(harness.charge("chg_unsigned1"), sign=False,
                               headers={"X-CashPay-Signature": "00" * 32})
    check_eq(status, 401, "unsigned post")
    status, _, _ = DAEMON.post({"id": "chg_badamount", "status": "CAPTURED", "amount": "2000",
                                "currency": "YER", "created": 1})
    check_eq(status, 400, "invalid payload")
    rows = DAEMON.query("SELECT count(*) AS n FROM order_events")
    check_eq(rows[0]["n"], 6, "events written by the daemon")


@postgresql_only("cashpayctl migrate on a PostgreSQL configuration")
def test_migrate_refused_on_postgresql():
    rc, out, err = dctl("migrate")
    check_eq((rc, out), (1, ""), f"migrate refused ({err!r})")
    check("cashpayd migrates such a database itself" in err, f"says why: {err!r}")


@postgresql_only("cashpayd_schema_migrations")
def test_newer_schema_refused_on_postgresql():
    v = DAEMON.query("SELECT max(version) AS v FROM cashpayd_schema_migrations")[0]["v"]
    DAEMON.pg.execute(f"INSERT INTO cashpayd_schema_migrations (version, name) "
                      f"VALUES ({v + 1}, 'future')", db=DAEMON.pg_db)
    try:
        for args in [["orders"], ["events", "--follow"], ["fulfil", "chg_x"]]:
            rc, _, err = dctl(*args)
            check_eq(rc, 1, f"{args} on a newer schema")
            check(str(v + 1) in err, f"{args}: message names the version: {err!r}")
    finally:
        DAEMON.pg.execute(f"DELETE FROM cashpayd_schema_migrations WHERE version = {v + 1}",
                          db=DAEMON.pg_db)


def test_send_defaults_and_options():
    out = send()
    line = out.splitlines()[0]
    check(line.startswith(f"POST http://127.0.0.1:{DAEMON.port}/cashpay/webhook (charge chg_"),
          f"default URL from [http] listen: {line!r}")
    charge = line.split("(charge ")[1].split(",")[0]
    check_eq(len(charge), 20, f"random id chg_ + 16 hex: {charge}")
    int(charge[4:], 16)
    order = DAEMON.query("SELECT * FROM orders WHERE charge_id = ?", charge)[0]
    check_eq((order["status"], order["amount"], order["currency"]), ("CAPTURED", 2000, "YER"),
             "defaults")
    body = json.loads(DAEMON.query("SELECT body FROM webhook_deliveries WHERE charge_id = ?",
                                   charge)[0]["body"])
    check_eq(set(body), {"id", "status", "amount", "currency", "created"}, "charge fields")
    check(abs(body["created"] - time.time()) < 60, "created is now")
    ref = DAEMON.query("SELECT order_ref FROM orders WHERE charge_id = ?", IDS["paid"])[0]
    check_eq(ref["order_ref"], "ORD-1001", "--order-ref lands at order_ref_field")

    rc, out, _ = dctl("--json", "send", "--charge", "chg_jsonsend1", "--status", "FAILED")
    doc = json.loads(out)
    check_eq((rc, doc["http_status"], doc["response"], doc["charge_id"], doc["status"]),
             (0, 200, {"outcome": "applied"}, "chg_jsonsend1", "FAILED"), "send --json")
    # A duplicate is still a 2xx.
    rc, out, _ = dctl("--json", "send", "--charge", "chg_jsonsend1", "--status", "FAILED")
    check_eq((rc, json.loads(out)["response"]["outcome"]), (0, "duplicate"), "duplicate")


def test_send_failures():
    rc, out, _ = dctl("send", "--url", f"http://127.0.0.1:{DAEMON.port}/elsewhere")
    check_eq(rc, 1, "404 is a failure")
    check("HTTP 404" in out, f"status printed: {out!r}")
    port = harness.free_port()
    rc, _, err = dctl("send", "--url", f"http://127.0.0.1:{port}/cashpay/webhook", "--timeout", "5")
    check_eq(rc, 1, "connection refused")
    check("POST" in err and str(port) in err, f"message: {err!r}")
    # Wrong secret: the daemon answers 401 and send says so.
    conf = os.path.join(WORK, "wrong-secret.conf")
    secret = os.path.join(WORK, "wrong.secret")
    with open(secret, "w") as f:
        f.write("not-the-secret\n")
    write_config(conf, {"http": {"listen": f"127.0.0.1:{DAEMON.port}"},
                        "webhook": {"secret_file": secret}})
    rc, out, _ = ctl("send", config=conf)
    check_eq(rc, 1, "401 is a failure")
    check("HTTP 401" in out, f"{out!r}")
    # --order-ref without order_ref_field is refused before sending.
    rc, _, err = ctl("send", "--order-ref", "X", config=conf)
    check_eq(rc, 1, "--order-ref without order_ref_field")
    check("order_ref_field" in err, err)


class Capture(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Capture.seen.append((self.path, dict(self.headers), body))
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok":true}')

    def log_message(self, *args):
        pass


def capture_send(listen_host, server_host, family=socket.AF_INET):
    """send with [http] listen = a wildcard address: where does it POST?"""
    class Server(http.server.HTTPServer):
        address_family = family
    server = Server((server_host, 0), Capture)
    port = server.server_address[1]
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    conf = os.path.join(WORK, "wildcard.conf")
    write_config(conf, {"http": {"listen": f"{listen_host}:{port}", "webhook_path": "/hook/in"},
                        "webhook": {"secret_file": DAEMON.secret_path}})
    Capture.seen.clear()
    try:
        rc, out, err = ctl("send", "--charge", "chg_wildcard1", config=conf, timeout=30)
    finally:
        thread.join(30)
        server.server_close()
    check_eq(rc, 0, f"202 is success ({err})")
    check_eq(len(Capture.seen), 1, "one POST")
    path, headers, body = Capture.seen[0]
    check_eq(path, "/hook/in", "webhook_path")
    check_eq(headers["Content-Type"], "application/json", "content type")
    check_eq(headers["X-CashPay-Signature"], harness.hmac_hex(harness.SECRET, body), "signature")
    return out


def test_send_url_from_wildcard_listen():
    out = capture_send("0.0.0.0", "127.0.0.1")
    check("POST http://127.0.0.1:" in out, f"0.0.0.0 -> 127.0.0.1: {out!r}")
    if socket.has_ipv6:
        try:
            out = capture_send("[::]", "::1", socket.AF_INET6)
        except OSError:
            return  # no IPv6 loopback on this machine
        check("POST http://[::1]:" in out, f"[::] -> [::1]: {out!r}")


def test_orders():
    out = ok("orders")
    check_fits(out)
    lines = out.splitlines()
    check(lines[0].startswith("CHARGE_ID"), f"header: {lines[0]!r}")
    for key in ["paid", "failed", "review", "pending", "late"]:
        check(any(IDS[key] in line for line in lines), f"{key} listed")
    paid = next(line for line in lines if IDS["paid"] in line)
    check("CAPTURED" in paid and "YER 2,000" in paid and "ORD-1001" in paid
          and "to fulfil" in paid, f"paid row: {paid!r}")
    check("USD 150" in next(line for line in lines if IDS["failed"] in line), "USD amount")
    check("review" in next(line for line in lines if IDS["review"] in line), "review note")

    docs = ok_json("orders", "--limit", "0")["orders"]
    by_id = {o["charge_id"]: o for o in docs}
    o = by_id[IDS["paid"]]
    check_eq(sorted(o), sorted(["charge_id", "order_ref", "status", "amount", "currency",
                                "description", "transaction_url", "charge_created",
                                "first_seen_at", "updated_at", "captured_at", "failed_at",
                                "fulfilled_at", "needs_review"]), "order fields")
    check_eq((o["status"], o["amount"], o["currency"], o["order_ref"], o["fulfilled_at"],
              o["needs_review"], o["failed_at"]),
             ("CAPTURED", 2000, "YER", "ORD-1001", None, False, None), "order values")
    check(o["description"].startswith("Watch, stainless steel"), "description")
    updated = [d["updated_at"] for d in docs]
    check_eq(updated, sorted(updated, reverse=True), "most recently updated first")

    captured = {o["charge_id"] for o in ok_json("orders", "--status", "CAPTURED")["orders"]}
    check(IDS["paid"] in captured and IDS["failed"] not in captured, "--status CAPTURED")
    check(all(o["status"] == "FAILED" for o in ok_json("orders", "--status", "FAILED")["orders"]),
          "--status FAILED")
    review = [o["charge_id"] for o in ok_json("orders", "--review")["orders"]]
    check_eq(review, [IDS["review"]], "--review")
    unfulfilled = {o["charge_id"] for o in ok_json("orders", "--unfulfilled")["orders"]}
    check(IDS["paid"] in unfulfilled and IDS["review"] in unfulfilled, "--unfulfilled")
    check(IDS["pending"] not in unfulfilled and IDS["failed"] not in unfulfilled,
          "--unfulfilled only CAPTURED")
    check_eq(len(ok_json("orders", "--limit", "2")["orders"]), 2, "--limit 2")
    both = ok_json("orders", "--review", "--status", "FAILED")["orders"]
    check_eq(both, [], "filters combine")
    # [return] minor_units: the same amount in the currency's minor unit.
    conf = os.path.join(WORK, "minor.conf")
    write_config(conf, {"database": database_section(), "return": {"minor_units": "yes"}})
    rc, out, _ = ctl("orders", config=conf)
    late = next(line for line in out.splitlines() if IDS["late"] in line)
    check_eq(rc, 0, "orders with minor_units")
    check("USD 19.99" in late, f"minor units: {late!r}")
    # Options after the command and before it mean the same.
    check_eq(ok("--json", "orders"), ok("orders", "--json"), "option placement")


def test_show():
    out = ok("show", IDS["paid"])
    check_fits(out)
    check("Order" in out and "Events" in out and "Deliveries" in out, out)
    check("ORD-1001" in out and "YER 2,000" in out, "order values shown")
    check(out.count("applied") == 2, f"two deliveries: {out}")
    check("INITIATED  CAPTURED" in out, "the INITIATED -> CAPTURED event")
    check("…" in out, "the long description is cut")
    doc = ok_json("show", IDS["paid"])
    check_eq(sorted(doc), ["deliveries", "events", "order"], "show keys")
    check_eq([(e["from_status"], e["to_status"]) for e in doc["events"]],
             [(None, "INITIATED"), ("INITIATED", "CAPTURED")], "events")
    check_eq([d["outcome"] for d in doc["deliveries"]], ["applied", "applied"], "deliveries")
    body = json.loads(doc["deliveries"][1]["body"])
    check_eq((body["id"], body["metadata"]), (IDS["paid"], {"order_id": "ORD-1001"}), "raw body")
    check_eq(doc["events"][1]["delivery_id"], doc["deliveries"][1]["id"], "event -> delivery")

    rc, out, err = dctl("show", "chg_unknown0001")
    check_eq((rc, out), (1, ""), "unknown charge")
    check("unknown charge chg_unknown0001" in err, err)
    review = ok_json("show", IDS["review"])
    check_eq([d["outcome"] for d in review["deliveries"]], ["applied", "conflict"], "conflict")
    check_eq(review["order"]["needs_review"], True, "needs_review")


def test_deliveries():
    out = ok("deliveries")
    check_fits(out)
    check("unauthorized" in out and "invalid" in out and "conflict" in out, out)
    docs = ok_json("deliveries", "--limit", "0")["deliveries"]
    ids = [d["id"] for d in docs]
    check_eq(ids, sorted(ids, reverse=True), "newest first")
    check_eq(sorted(docs[0]), sorted(["id", "received_at", "remote_addr", "message_id",
                                      "charge_id", "claimed_status", "outcome", "http_status",
                                      "error", "body_bytes"]), "delivery fields")
    unauth = ok_json("deliveries", "--outcome", "unauthorized")["deliveries"]
    check(len(unauth) >= 1 and all(d["outcome"] == "unauthorized" and d["http_status"] == 401
                                   for d in unauth), "--outcome unauthorized")
    invalid = ok_json("deliveries", "--outcome", "invalid")["deliveries"]
    check(any(d["charge_id"] == "chg_badamount" and "amount" in (d["error"] or "")
              for d in invalid), f"invalid delivery: {invalid}")
    check_eq(len(ok_json("deliveries", "--limit", "1")["deliveries"]), 1, "--limit 1")
    check_eq(ok_json("deliveries", "--outcome", "forbidden")["deliveries"], [], "none forbidden")


def test_events():
    docs = ok_json("events")["events"]
    check_eq(len(docs), DAEMON.query("SELECT count(*) AS n FROM order_events")[0]["n"], "all")
    ids = [e["id"] for e in docs]
    check_eq(ids, sorted(ids), "oldest first")
    first = docs[0]
    check_eq(sorted(first), sorted(["id", "charge_id", "from_status", "to_status",
                                    "delivery_id", "recorded_at", "order_ref", "amount",
                                    "currency", "source", "fetch_id"]), "event fields")
    check_eq((first["charge_id"], first["from_status"], first["to_status"], first["order_ref"],
              first["source"], first["fetch_id"]),
             (IDS["paid"], None, "INITIATED", "ORD-1001", "webhook", None), "first event")
    after = ok_json("events", "--after", str(ids[2]))["events"]
    check_eq([e["id"] for e in after], ids[3:], "--after")
    one = ok_json("events", "--charge", IDS["paid"])["events"]
    check_eq([e["to_status"] for e in one], ["INITIATED", "CAPTURED"], "--charge")
    out = ok("events")
    check_fits(out)
    check_eq(len(out.splitlines()), len(docs) + 1, "one line per event plus a header")
    check_eq(ok("events", "--after", "999999").splitlines()[1:], [], "nothing after the end")


def read_line(proc, timeout):
    """One line from proc.stdout within timeout seconds, or None."""
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            ch = os.read(proc.stdout.fileno(), 1)
            if not ch:
                return None
            buf += ch
            if ch == b"\n":
                return buf.decode()
    return None


def follow(*extra):
    return subprocess.Popen([CTL, "--config", DAEMON.config_path, "events", "--follow", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_events_follow_json():
    last = ok_json("events")["events"][-1]["id"]
    proc = follow("--json", "--after", str(last))
    try:
        time.sleep(0.3)
        check(proc.poll() is None, "still running with nothing to print")
        started = time.monotonic()
        send("--status", "CAPTURED", "--charge", "chg_follow001", "--order-ref", "F-1")
        line = read_line(proc, 5)
        check(line is not None, "the new event appears")
        check(time.monotonic() - started < 3, "promptly")
        event = json.loads(line)
        check_eq((event["id"], event["charge_id"], event["to_status"], event["order_ref"]),
                 (last + 1, "chg_follow001", "CAPTURED", "F-1"), "followed event")
        send("--status", "INITIATED", "--charge", "chg_follow002")
        send("--status", "FAILED", "--charge", "chg_follow002")
        got = [json.loads(read_line(proc, 5)) for _ in range(2)]
        check_eq([(e["charge_id"], e["from_status"], e["to_status"]) for e in got],
                 [("chg_follow002", None, "INITIATED"), ("chg_follow002", "INITIATED", "FAILED")],
                 "in commit order, one per line")
        proc.send_signal(signal.SIGINT)
        check_eq(proc.wait(5), 0, "SIGINT ends it cleanly")
        check_eq(proc.stderr.read(), b"", "nothing on stderr")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_events_follow_text_and_sigterm():
    proc = follow()
    try:
        header = read_line(proc, 5)
        check(header is not None and header.split()[0] == "ID", f"header: {header!r}")
        lines = [read_line(proc, 5) for _ in range(len(ok_json("events")["events"]))]
        check(all(lines), "existing events printed first")
        send("--status", "CAPTURED", "--charge", "chg_follow003")
        line = read_line(proc, 5)
        check(line is not None and "chg_follow003" in line and "CAPTURED" in line, f"{line!r}")
        check_fits(line)
        proc.send_signal(signal.SIGTERM)
        check_eq(proc.wait(5), 0, "SIGTERM ends it cleanly")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_events_follow_epipe():
    proc = follow("--json")
    try:
        check(read_line(proc, 5) is not None, "first line")
        proc.stdout.close()  # the reader goes away, as `| head -1` would
        send("--status", "CAPTURED", "--charge", "chg_follow004")
        check_eq(proc.wait(10), 0, "a closed pipe ends it cleanly")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_follow_shell_loop():
    """A fulfilment loop in plain shell over events --follow --json."""
    start = ok_json("events")["events"][-1]["id"]
    script = f"""
"$CTL" --config "$CONF" events --follow --json --after {start} |
while read -r line; do
        case $line in
        *'"to_status":"CAPTURED"'*)
                id=$(printf '%s' "$line" | sed -n 's/.*"charge_id":"\\([^"]*\\)".*/\\1/p')
                "$CTL" --config "$CONF" fulfil "$id"
                exit 0
                ;;
        esac
done
"""
    env = dict(os.environ, CTL=CTL, CONF=DAEMON.config_path)
    proc = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, env=env,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        time.sleep(0.3)
        send("--status", "CAPTURED", "--charge", "chg_loop00001")
        line = read_line(proc, 10)
        check(line is not None and line.startswith("chg_loop00001 fulfilled at"),
              f"loop output {line!r}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    row = DAEMON.query("SELECT fulfilled_at FROM orders WHERE charge_id = 'chg_loop00001'")[0]
    check(row["fulfilled_at"] is not None, "fulfilled through the loop")


def test_fulfil():
    rc, out, err = dctl("fulfil", IDS["paid"])
    check_eq(rc, 0, f"fulfil ({err})")
    check(out.startswith(f"{IDS['paid']} fulfilled at 20"), out)
    stamp = DAEMON.query("SELECT fulfilled_at FROM orders WHERE charge_id = ?",
                         IDS["paid"])[0]["fulfilled_at"]
    check(stamp and stamp.endswith("Z") and len(stamp) == 24, f"ISO time: {stamp!r}")
    check(stamp in out, "prints the stored time")
    rc, out, _ = dctl("fulfil", IDS["paid"])
    check_eq((rc, out.strip()), (0, f"{IDS['paid']} already fulfilled at {stamp}"), "again")
    doc = json.loads(dctl("--json", "fulfil", IDS["paid"])[1])
    check_eq(doc, {"charge_id": IDS["paid"], "result": "already_fulfilled", "status": "CAPTURED",
                   "fulfilled_at": stamp}, "json")

    for key, status in [("failed", "FAILED"), ("pending", "INITIATED")]:
        rc, out, err = dctl("fulfil", IDS[key])
        check_eq((rc, out), (1, ""), f"fulfil {status}")
        check(f"its status is {status}" in err and "only CAPTURED" in err, err)
    rc, out, err = dctl("--json", "fulfil", IDS["failed"])
    check_eq((rc, json.loads(out)["result"]), (1, "not_captured"), "json refusal")
    rc, out, err = dctl("fulfil", IDS["review"])
    check_eq(rc, 1, "needs review")
    check("needs review" in err and "review-done" in err, err)
    rc, out, err = dctl("fulfil", "chg_unknown0001")
    check_eq(rc, 1, "unknown")
    check("unknown charge chg_unknown0001" in err, err)
    check_eq(json.loads(dctl("--json", "fulfil", "chg_unknown0001")[1])["result"],
             "unknown_charge", "json unknown")
    rows = DAEMON.query("SELECT count(*) AS n FROM orders WHERE fulfilled_at IS NOT NULL"
                        " AND charge_id IN (?, ?, ?)", IDS["failed"], IDS["pending"], IDS["review"])
    check_eq(rows[0]["n"], 0, "refusals wrote nothing")
    check("fulfilled" in next(line for line in ok("orders").splitlines() if IDS["paid"] in line),
          "orders shows it fulfilled")
    unfulfilled = {o["charge_id"] for o in ok_json("orders", "--unfulfilled")["orders"]}
    check(IDS["paid"] not in unfulfilled, "--unfulfilled drops it")


def test_review_done():
    rc, out, err = dctl("review-done", IDS["review"])
    check_eq((rc, out.strip()), (0, f"{IDS['review']}: review flag cleared"), f"review-done {err}")
    check_eq(DAEMON.query("SELECT needs_review FROM orders WHERE charge_id = ?",
                          IDS["review"])[0]["needs_review"], 0, "flag cleared")
    rc, out, _ = dctl("review-done", IDS["review"])
    check_eq((rc, out.strip()), (0, f"{IDS['review']} was not flagged for review"), "again")
    check_eq(json.loads(dctl("--json", "review-done", IDS["review"])[1]),
             {"charge_id": IDS["review"], "result": "not_flagged"}, "json")
    rc, out, err = dctl("review-done", "chg_unknown0001")
    check_eq(rc, 1, "unknown")
    check("unknown charge" in err, err)
    rc, out, err = dctl("fulfil", IDS["review"])
    check_eq(rc, 0, f"fulfil after review ({err})")


def test_fulfil_race():
    """Two fulfils at once: exactly one sets the time, both succeed."""
    for i in range(6):
        charge = f"chg_race{i:05d}"
        send("--status", "CAPTURED", "--charge", charge)
        argv = [CTL, "--config", DAEMON.config_path, "fulfil", charge]
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
        results = [(p.wait(30), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        check_eq([r[0] for r in results], [0, 0], f"both exit 0: {results}")
        outs = sorted(r[1] for r in results)
        stamp = DAEMON.query("SELECT fulfilled_at FROM orders WHERE charge_id = ?",
                             charge)[0]["fulfilled_at"]
        check_eq(outs, sorted([f"{charge} already fulfilled at {stamp}\n",
                               f"{charge} fulfilled at {stamp}\n"]), "one of each")


def test_fulfil_while_daemon_writes():
    """fulfil and a burst of webhooks at once: nothing is lost, nothing fails."""
    charges = [f"chg_busy{i:05d}" for i in range(8)]
    for c in charges:
        send("--status", "CAPTURED", "--charge", c)
    senders = [subprocess.Popen([CTL, "--config", DAEMON.config_path, "send"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for _ in range(8)]
    for c in charges:
        rc, out, err = dctl("fulfil", c)
        check_eq(rc, 0, f"fulfil during writes ({err})")
    for p in senders:
        check_eq(p.wait(30), 0, f"send during fulfils: {p.stderr.read()!r}")
        p.stderr.close()
    rows = DAEMON.query("SELECT count(*) AS n FROM orders WHERE fulfilled_at IS NOT NULL"
                        " AND charge_id LIKE 'chg_busy%'")
    check_eq(rows[0]["n"], 8, "all fulfilled")


@sqlite_only("a database lock; on PostgreSQL a row lock")
def test_locked_database():
    conn = sqlite3.connect(DAEMON.db_path, timeout=5, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        rc, out, err = dctl("fulfil", IDS["late"])
        waited = time.monotonic() - started
        check_eq(rc, 1, "fulfil on a locked database")
        check("locked" in err and DAEMON.db_path in err, f"clear message: {err!r}")
        check(0.8 <= waited < 10, f"waited about busy_timeout (1000 ms): {waited:.2f}s")
        rc, out, err = dctl("review-done", IDS["late"])
        check_eq(rc, 1, "review-done on a locked database")
        check("locked" in err, err)
        rc, out, err = dctl("prune", "--days", "0")
        check_eq(rc, 1, "prune on a locked database")
        check("locked" in err, err)
        # WAL: readers are not blocked by a writer.
        rc, out, err = dctl("orders")
        check_eq(rc, 0, f"orders while locked ({err})")
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    rc, out, err = dctl("fulfil", IDS["late"])
    check_eq(rc, 0, f"fulfil once the lock is gone ({err})")


@postgresql_only("a row lock held by the merchant's own transaction")
def test_row_locked():
    with DAEMON.pg.session(db=DAEMON.pg_db) as session:
        session.run("BEGIN")
        session.run(f"SELECT 1 FROM orders WHERE charge_id = '{IDS['late']}' FOR UPDATE")
        started = time.monotonic()
        rc, out, err = dctl("fulfil", IDS["late"])
        waited = time.monotonic() - started
        check_eq((rc, out), (1, ""), "fulfil of a locked order")
        check("lock held by another transaction" in err and "try again" in err,
              f"clear message: {err!r}")
        check(waited >= 0.9, f"waited busy_timeout (1000 ms) first: {waited:.2f}s")
        rc, out, err = dctl("review-done", IDS["late"])
        check_eq(rc, 1, "review-done of a locked order")
        check("lock held by another transaction" in err, err)
        # readers are not blocked by a row lock
        rc, out, err = dctl("show", IDS["late"])
        check_eq(rc, 0, f"show while locked ({err})")
    check_eq(DAEMON.query("SELECT fulfilled_at FROM orders WHERE charge_id = ?",
                          IDS["late"])[0]["fulfilled_at"], None, "nothing written")
    rc, out, err = dctl("fulfil", IDS["late"])
    check_eq(rc, 0, f"fulfil once the lock is gone ({err})")


@postgresql_only("a server that cannot be reached, or refuses us")
def test_unreachable_server():
    section = database_section()
    conf = os.path.join(WORK, "pg-bad.conf")
    nobody = section["url"].replace(f"port={DAEMON.pg.port}", f"port={harness.free_port()}")
    wrong = os.path.join(WORK, "wrong-password")
    with open(wrong, "w") as f:
        f.write("not-the-password-0815\n")
    cases = [({"url": nobody}, "nothing listening"),
             ({"password_file": wrong}, "a wrong password"),
             ({"url": section["url"].replace(f"dbname={DAEMON.pg_db}", "dbname=absent")},
              "no such database")]
    for change, what in cases:
        write_config(conf, {"database": dict(section, **change)})
        for args in [["orders"], ["events", "--follow"], ["fulfil", "chg_x"]]:
            rc, out, err = ctl(*args, config=conf, timeout=60)
            check_eq((rc, out), (1, ""), f"{what}: {args} ({err!r})")
            check(err.startswith("cashpayctl: cannot connect to PostgreSQL"), f"{what}: {err!r}")
            check("not-the-password" not in err and harness_password() not in err,
                  f"{what}: no password in the message")


def harness_password():
    with open(DAEMON.pg.password_file) as f:
        return f.read().strip()


@sqlite_only("files; on PostgreSQL a server that cannot be reached")
def test_unreadable_database():
    rc, _, err = ctl("--db", WORK, "orders")
    check_eq(rc, 1, "a directory")
    check(WORK in err, f"names the path: {err!r}")
    missing = os.path.join(WORK, "nope", "missing.db")
    for args in [["orders"], ["events"], ["fulfil", "chg_x"], ["show", "chg_x"]]:
        rc, _, err = ctl("--db", missing, *args)
        check_eq(rc, 1, f"{args} on a missing database")
        check("does not exist" in err or "missing.db" in err, f"{args}: {err!r}")
    check(not os.path.exists(missing), "read commands never create a database")
    garbage = os.path.join(WORK, "garbage.db")
    with open(garbage, "wb") as f:
        f.write(b"this is not a database at all" * 100)
    rc, _, err = ctl("--db", garbage, "orders")
    check_eq(rc, 1, "not a database")
    check(err.startswith("cashpayctl:"), err)
    # Permissions: as root they only bind another user, so drop to nobody.
    shared = tempfile.mkdtemp(prefix="cashpayctl-perm-")
    os.chmod(shared, 0o755)
    db = os.path.join(shared, "perm.db")
    check_eq(ctl("--db", db, "migrate")[0], 0, "migrate")
    os.chmod(db, 0)
    user = 65534 if os.geteuid() == 0 else None
    try:
        rc, _, err = ctl("--db", db, "orders", user=user)
        check_eq(rc, 1, "chmod 000")
        check("perm.db" in err, f"names the file: {err!r}")
        rc, _, err = ctl("--db", db, "fulfil", "chg_x", user=user)
        check_eq(rc, 1, "chmod 000, write")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_prune():
    rejected = DAEMON.query("SELECT count(*) AS n FROM webhook_deliveries"
                            " WHERE outcome IN ('invalid', 'unauthorized', 'forbidden')")[0]["n"]
    total = DAEMON.query("SELECT count(*) AS n FROM webhook_deliveries")[0]["n"]
    check(rejected >= 2, f"rejected rows to prune: {rejected}")
    # keep_rejected_days (30 by default): all are recent, nothing goes.
    rc, out, _ = dctl("prune")
    check_eq(rc, 0, "prune")
    check(out.startswith("deleted 0 rejected deliveries") and "(30 days)" in out, out)
    doc = json.loads(dctl("--json", "prune", "--days", "0", "--dry-run")[1])
    check_eq((doc["deleted"], doc["dry_run"], doc["days"]), (rejected, True, 0), "dry run")
    check_eq(DAEMON.query("SELECT count(*) AS n FROM webhook_deliveries")[0]["n"], total,
             "dry run deletes nothing")
    # Forty days on, the default retention removes them (faketime moves the clock).
    faketime = shutil.which("faketime")
    check(faketime is not None, "faketime is needed for this test (package faketime)")
    # faketime preloads a library; a sanitizer build must be told that is fine.
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = dict(os.environ, ASAN_OPTIONS=(asan + ":" if asan else "") + "verify_asan_link_order=0")
    p = subprocess.run([faketime, "-f", "+40d", CTL, "--config", DAEMON.config_path, "prune"],
                       capture_output=True, timeout=60, env=env)
    check_eq(p.returncode, 0, f"prune 40 days later: {p.stderr!r}")
    check(p.stdout.decode().startswith(f"deleted {rejected} rejected deliveries"), p.stdout)
    check_eq(DAEMON.query("SELECT count(*) AS n FROM webhook_deliveries")[0]["n"],
             total - rejected, "accepted deliveries stay")
    check_eq(DAEMON.query("SELECT count(*) AS n FROM webhook_deliveries WHERE outcome IN"
                          " ('invalid', 'unauthorized', 'forbidden')")[0]["n"], 0, "rejected gone")
    rc, out, _ = dctl("prune", "--days", "0")
    check_eq((rc, out.split()[:2]), (0, ["deleted", "0"]), "nothing left")


def test_wide_and_hostile_values():
    long_id = "chg_" + "W" * 120
    send("--status", "CAPTURED", "--charge", long_id, "--order-ref", "R" * 200,
         "--description", "tab\there\nnewline \u00e9\u4e2d")
    for args in [["orders"], ["deliveries"], ["events"], ["show", long_id]]:
        out = ok(*args)
        check_fits(out)
        check("…" in out, f"{args}: long values are cut with an ellipsis")
    wide = ok("orders", env={"COLUMNS": "400"})
    check(long_id in wide and "R" * 200 in wide, "COLUMNS widens the table")
    check_fits(wide, 400)
    out = ok("show", long_id, env={"COLUMNS": "300"})
    check("tab?here?newline é中" in out, f"control characters replaced: {out!r}")
    doc = ok_json("show", long_id)
    check_eq(doc["order"]["description"], "tab\there\nnewline \u00e9\u4e2d", "JSON keeps the text")
    # A table cell (the orders table keeps sanitised copies of its cells),
    # with what the daemon never stores but the merchant's own SQL might:
    # control characters and a byte that is not UTF-8.
    send("--status", "CAPTURED", "--charge", "chg_ctrlref", "--order-ref", "plain")
    if ON_PG:  # a text column holds UTF-8 only there
        DAEMON.pg.execute("UPDATE orders SET order_ref = 'ref' || chr(9) || 'one' || chr(27) || "
                          "'[31m' || chr(127) || 'é' WHERE charge_id = 'chg_ctrlref'",
                          db=DAEMON.pg_db)
    else:
        with DAEMON.db() as db:
            db.execute("UPDATE orders SET order_ref = 'ref' || char(9) || 'one' || char(27) || "
                       "'[31m' || CAST(x'ff' AS TEXT) || 'é' WHERE charge_id = 'chg_ctrlref'")
    out = ok("orders", env={"COLUMNS": "300"})
    row = [line for line in out.splitlines() if line.startswith("chg_ctrlref")]
    check(len(row) == 1 and " ref?one?[31m?\u00e9 " in row[0] + " ", f"order_ref cell: {row!r}")
    check_fits(out, 300)


# ---------------------------------------------------------------- sign


def sign_config(name, webhook, secret_line):
    secret = os.path.join(WORK, name + ".secret")
    with open(secret, "w") as f:
        f.write("# comment\n" + secret_line + "\nsecond-secret-ignored-for-signing\n"
                if not secret_line.startswith("whsec_") else secret_line + "\n")
    conf = os.path.join(WORK, name + ".conf")
    write_config(conf, {"webhook": dict(webhook, secret_file=secret)})
    return conf


@sqlite_only(NO_DB)
def test_sign_hmac():
    body = b'{"id":"chg_sign1","status":"CAPTURED","amount":2000,"currency":"YER","created":1}\n'
    conf = sign_config("hmac", {}, "first-secret")
    rc, out, err = ctl("sign", config=conf, stdin=body)
    check_eq(rc, 0, f"sign ({err})")
    expected = hmac.new(b"first-secret", body, hashlib.sha256).hexdigest()
    check_eq(out, f"X-CashPay-Signature: {expected}\n", "hmac-sha256 hex of the raw bytes")
    doc = json.loads(ctl("--json", "sign", config=conf, stdin=body)[1])
    check_eq(doc, {"scheme": "hmac", "headers": {"X-CashPay-Signature": expected}}, "json")
    rc, _, err = ctl("sign", "--id", "msg_1", config=conf, stdin=body)
    check_eq(rc, 2, "--id is for standard-webhooks")
    rc, _, err = ctl("sign", "--timestamp", "1700000000", config=conf, stdin=body)
    check_eq(rc, 2, "--timestamp needs timestamp_header")

    conf = sign_config("hmac512", {"algorithm": "sha512", "encoding": "base64",
                                   "signature_header": "X-Sig",
                                   "timestamp_header": "X-CashPay-Timestamp"}, "k2")
    rc, out, err = ctl("sign", "--timestamp", "1700000000", config=conf, stdin=body)
    check_eq(rc, 0, f"sign sha512 ({err})")
    mac = hmac.new(b"k2", b"1700000000." + body, hashlib.sha512).digest()
    check_eq(out, f"X-Sig: {base64.b64encode(mac).decode()}\nX-CashPay-Timestamp: 1700000000\n",
             "timestamped sha512 base64")
    rc, out, _ = ctl("sign", config=conf, stdin=b"")
    ts = int(out.splitlines()[1].split(": ")[1])
    check(abs(ts - time.time()) < 60, "timestamp defaults to now")
    mac = hmac.new(b"k2", str(ts).encode() + b".", hashlib.sha512).digest()
    check_eq(out.splitlines()[0], f"X-Sig: {base64.b64encode(mac).decode()}", "empty body")

    conf = sign_config("none", {"verify": "none", "insecure_no_verify": "yes"}, "x")
    rc, _, err = ctl("sign", config=conf, stdin=body)
    check_eq(rc, 1, "nothing to sign with verify = none")
    conf = os.path.join(WORK, "nosecret.conf")
    write_config(conf, {"webhook": {"secret_file": WORK + "/absent.secret"}})
    rc, _, err = ctl("sign", config=conf, stdin=body)
    check_eq(rc, 1, "missing secret file")
    check("absent.secret" in err, err)


@sqlite_only(NO_DB)
def test_sign_standard_webhooks():
    key = bytes(range(32))
    conf = sign_config("sw", {"verify": "standard-webhooks"},
                       "whsec_" + base64.b64encode(key).decode())
    body = b'{"id":"chg_sw1","status":"CAPTURED","amount":2000,"currency":"YER","created":1}'
    rc, out, err = ctl("sign", "--id", "msg_abc", "--timestamp", "1700000000", config=conf,
                       stdin=body)
    check_eq(rc, 0, f"sign ({err})")
    mac = hmac.new(key, b"msg_abc.1700000000." + body, hashlib.sha256).digest()
    check_eq(out, "webhook-id: msg_abc\nwebhook-timestamp: 1700000000\n"
             f"webhook-signature: v1,{base64.b64encode(mac).decode()}\n", "standard webhooks")
    doc = json.loads(ctl("--json", "sign", config=conf, stdin=body)[1])
    h = doc["headers"]
    check_eq(doc["scheme"], "standard-webhooks", "scheme")
    check(h["webhook-id"].startswith("msg_") and len(h["webhook-id"]) > 10, "random id")
    check(abs(int(h["webhook-timestamp"]) - time.time()) < 60, "now")
    mac = hmac.new(key, f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + body,
                   hashlib.sha256).digest()
    check_eq(h["webhook-signature"], "v1," + base64.b64encode(mac).decode(), "json signature")
    rc, _, _ = ctl("sign", "--id", "has space", config=conf, stdin=body)
    check_eq(rc, 2, "a webhook-id with a blank")


def test_sign_accepted_by_daemon():
    """The headers sign prints make the daemon accept the body."""
    body = json.dumps(harness.charge("chg_signed0001")).encode()
    rc, out, _ = dctl("sign", stdin=body)
    check_eq(rc, 0, "sign")
    headers = {"Content-Type": "application/json"}
    for line in out.splitlines():
        name, value = line.split(": ", 1)
        headers[name] = value
    status, _, data = DAEMON.request("POST", "/cashpay/webhook", body, headers)
    check_eq((status, json.loads(data)), (200, {"outcome": "applied"}), "accepted")


# ---------------------------------------------------------------- completion

COMPLETION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "completions",
                          "cashpayctl.bash")
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


def complete(*words):
    """What the bash completion offers for the last of @words."""
    script = f"""
source {BASH_COMPLETION}
source {COMPLETION}
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${{#COMP_LINE}}
_cashpayctl cashpayctl "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"""
    p = subprocess.run(["bash", "-c", script, "bash", *words], capture_output=True, timeout=30)
    check_eq(p.returncode, 0, f"completion of {words}: {p.stderr!r}")
    return set(p.stdout.decode().split())


@sqlite_only(NO_DB)
def test_bash_completion():
    check(os.path.exists(BASH_COMPLETION), "bash-completion is needed (package bash-completion)")
    commands = {"orders", "show", "deliveries", "events", "fulfil", "review-done", "sign",
                "send", "migrate", "check-config", "prune", "charge", "api", "sync", "reconcile", "help"}
    check_eq(complete("cashpayctl", ""), commands, "commands")
    check_eq(complete("cashpayctl", "ful"), {"fulfil"}, "prefix")
    check_eq(complete("cashpayctl", "--"), {"--config", "--db", "--json", "--help", "--version"},
             "global options")
    check_eq(complete("cashpayctl", "orders", "--st"), {"--status"}, "orders option")
    check_eq(complete("cashpayctl", "orders", "--status", ""),
             {"INITIATED", "CAPTURED", "FAILED"}, "--status values")
    check_eq(complete("cashpayctl", "send", "--status", "F"), {"FAILED"}, "send --status")
    check_eq(complete("cashpayctl", "deliveries", "--outcome", ""),
             {"applied", "duplicate", "stale", "conflict", "invalid", "unauthorized",
              "forbidden", "unconfirmed", "deferred"}, "--outcome values")
    check_eq(complete("cashpayctl", "--db", "x.db", "events", "--f"), {"--follow"},
             "after --db VALUE the command is found")
    check({"--order-ref", "--url", "--json"} <= complete("cashpayctl", "send", "--"),
          "send options and common ones")
    check_eq(complete("cashpayctl", "prune", "--d"), {"--days", "--db", "--dry-run"}, "prune")
    check_eq(complete("cashpayctl", "help", "rev"), {"review-done"}, "help COMMAND")
    # Every option the program accepts is offered.
    for command in commands - {"help"}:
        text = ctl(command, "--help")[1]
        offered = complete("cashpayctl", command, "--")
        options = [line.split()[0] for line in text.splitlines() if line.startswith("  --")]
        check(len(options) >= 4, f"{command}: options found in --help")
        for opt in options:
            check(opt in offered, f"{command}: {opt} not completed ({sorted(offered)})")


def main():
    try:
        harness.run_tests([
            test_help_and_version,
            test_usage_errors,
            test_migrate,
            test_newer_schema_refused,
            test_check_config,
            test_bash_completion,
            test_sign_hmac,
            test_sign_standard_webhooks,
            test_setup_daemon,
            test_migrate_refused_on_postgresql,
            test_newer_schema_refused_on_postgresql,
            test_send_defaults_and_options,
            test_send_failures,
            test_send_url_from_wildcard_listen,
            test_sign_accepted_by_daemon,
            test_orders,
            test_show,
            test_deliveries,
            test_events,
            test_events_follow_json,
            test_events_follow_text_and_sigterm,
            test_events_follow_epipe,
            test_follow_shell_loop,
            test_fulfil,
            test_review_done,
            test_fulfil_race,
            test_fulfil_while_daemon_writes,
            test_locked_database,
            test_row_locked,
            test_unreadable_database,
            test_unreachable_server,
            test_prune,
            test_wide_and_hostile_values,
        ])
    finally:
        if DAEMON:
            DAEMON.__exit__(None, None, None)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
