"""cashpayd's command line and start-up: --version, --help, --check-config,
a broken config named by file and line, a database from the future."""
import json
import os
import sqlite3
import subprocess

from harness import Daemon, check, check_eq, free_port, run_tests

BIN = os.environ.get("CASHPAYD")


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=30)


def test_version_and_help():
    r = run("--version")
    check_eq(r.returncode, 0, "exit")
    check(r.stdout.startswith("cashpayd "), r.stdout)
    r = run("--help")
    check_eq(r.returncode, 0, "exit")
    check("--check-config" in r.stdout, "help lists options")
    check_eq(run("--bogus").returncode, 2, "unknown option")


def test_check_config():
    d = Daemon(start=False)
    r = run("--config", d.config_path, "--check-config")
    check_eq(r.returncode, 0, r.stderr)
    with open(d.config_path, "a") as f:
        f.write("[http]\nmax_body = lots\n")
    r = run("--config", d.config_path, "--check-config")
    check_eq(r.returncode, 1, "bad value")
    check(d.config_path in r.stderr and "max_body" in r.stderr, r.stderr)
    lines = open(d.config_path).read().splitlines()
    check(f":{len(lines)}:" in r.stderr, f"line number in {r.stderr!r}")


def test_check_config_missing_secret():
    d = Daemon(start=False)
    os.unlink(d.secret_path)
    r = run("--config", d.config_path, "--check-config")
    check_eq(r.returncode, 1, "missing secret file")
    check("webhook.secret" in r.stderr, r.stderr)


def test_unknown_key_refuses_to_start():
    d = Daemon({"http.colour": "blue"}, start=False)
    r = run("--config", d.config_path)
    check_eq(r.returncode, 1, "exit")
    check("colour" in r.stderr, r.stderr)


def test_newer_schema_refused():
    d = Daemon(start=False)
    os.makedirs(os.path.dirname(d.db_path))
    conn = sqlite3.connect(d.db_path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    r = run("--config", d.config_path)
    check_eq(r.returncode, 1, "exit")
    check("newer" in (r.stderr + r.stdout), r.stderr)


def test_database_files_are_group_accessible():
    with Daemon() as d:
        mode = os.stat(d.db_path).st_mode & 0o777
        check_eq(mode, 0o660, "database file mode")
        check_eq(os.stat(os.path.dirname(d.db_path)).st_mode & 0o777, 0o770, "directory mode")


def test_verify_none_needs_insecure_flag_and_warns():
    d = Daemon({"webhook.verify": "none"}, start=False)
    check_eq(run("--config", d.config_path, "--check-config").returncode, 1, "refused")
    with Daemon({"webhook.verify": "none", "webhook.insecure_no_verify": "yes"}) as d:
        status, _ = d.post_json({"id": "chg_unsigned", "status": "CAPTURED", "amount": 1,
                                 "currency": "YER", "created": 0}, sign=False)
        check_eq(status, 200, "accepted unsigned")
        check("NOT VERIFIED" in d.log_text(), "loud warning")


def test_api_half_is_served():
    """The checkout listener is served beside api_url (its token file
    checked like the webhook secret, at --check-config and at start), and
    confirm = api (also what auto comes to with api_url set, and with
    verify = none) is served: an unconfirmable webhook is deferred, never
    believed."""
    api = {"cashpay.api_url": "http://127.0.0.1:9/v1", "cashpay.public_url": "https://shop.example",
           "cashpay.token_file": "/nonexistent-token", "checkout.listen": ""}
    port = free_port()
    d = Daemon({**api, "webhook.confirm": "none", "checkout.listen": f"127.0.0.1:{port}",
                "checkout.token_file": "/nonexistent-checkout-token"}, start=False)
    for args in (["--check-config"], []):
        r = run("--config", d.config_path, *args)
        check_eq(r.returncode, 1, f"missing checkout token file {args}: exit")
        check("/nonexistent-checkout-token" in r.stderr, r.stderr)
    with Daemon({**api, "webhook.confirm": "none", "checkout.listen": f"127.0.0.1:{port}"}) as d:
        status, _, body = d.request("POST", "/charges", b"{", {"Content-Type": "application/json"},
                                    port=port)
        check_eq((status, json.loads(body)["error"]), (400, "invalid_request"),
                 "the checkout listener answers")
    for extra in [{}, {"webhook.confirm": "api"},
                  {"webhook.confirm": "api", "webhook.verify": "none"}]:
        d = Daemon({**api, **extra}, start=False)
        r = run("--config", d.config_path, "--check-config")
        check_eq(r.returncode, 0, f"{extra} --check-config: {r.stderr}")
    with Daemon({**api, "webhook.confirm": "api", "webhook.verify": "none"}) as d:
        status, body = d.post_json({"id": "chg_apiconfirm", "status": "CAPTURED", "amount": 1,
                                    "currency": "YER", "created": 0}, sign=False)
        check_eq((status, body), (503, {"outcome": "deferred"}),
                 "an unsigned webhook the API cannot confirm is deferred")
        check(not d.query("SELECT 1 FROM orders"), "and changes nothing")
    with Daemon({**api, "webhook.confirm": "none"}) as d:
        status, _ = d.post_json({"id": "chg_apinone", "status": "CAPTURED", "amount": 1,
                                 "currency": "YER", "created": 0})
        check_eq(status, 200, "confirm = none with api_url set serves webhooks")


if __name__ == "__main__":
    run_tests([v for k, v in list(globals().items()) if k.startswith("test_")])
