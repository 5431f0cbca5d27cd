"""cashpay-sim's payment page in headless Chromium: the page's Pay and
Decline buttons, pressed by the browser (?click=...), post the real form,
follow the 303 to the merchant's redirect_url and trigger the webhook.

A missing browser is a failure, not a skip: the setup scripts install
Debian's chromium.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_sim  # noqa: E402  (the simulator and receiver helpers)
from test_sim import Receiver, Sim, check, check_eq  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def browse(url, tmp, shot):
    """Load @url in headless Chromium until its navigations settle; a
    screenshot of where it ended up goes to @shot."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)
    proc = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                             "--no-first-run", f"--user-data-dir={profile}",
                             "--window-size=480,720", "--virtual-time-budget=8000",
                             f"--screenshot={shot}", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=90)
    finally:
        # Chromium's helpers share its process group: end them all, also
        # when it timed out or the test failed.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    check(proc.returncode == 0 and os.path.exists(shot) and os.path.getsize(shot) > 1000,
          f"chromium exited {proc.returncode}: {err[-400:]!r}")


def visits(receiver, want, timeout=10):
    """The first @want requests the receiver saw: (path, body or None for a GET)."""
    seen = []
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        _, path, _, body = receiver.next(max(0.1, deadline - time.monotonic()))
        seen.append((path, body))
    return seen


def main():
    if not os.path.exists(CHROMIUM):
        print(f"FAIL: {CHROMIUM} not found; install Debian's chromium package")
        return 1
    tmp = tempfile.mkdtemp(prefix="cashpay-sim-browser-")
    test_sim.TMP = tmp
    receiver = Receiver()
    sim = None
    try:
        with open(os.path.join(tmp, "hmac"), "w") as f:
            f.write(test_sim.HMAC_SECRET + "\n")
        sim = Sim(tmp, "--secret-file", os.path.join(tmp, "hmac"))
        return_url = receiver.url.replace("/hook", "/return?c={CHARGE_ID}")
        for action, status in (("pay", "CAPTURED"), ("decline", "FAILED")):
            charge = sim.create(receiver.url, redirect_url=return_url)
            browse(charge["transaction_url"] + f"?click={action}", tmp,
                   os.path.join(tmp, f"{action}.png"))
            seen = visits(receiver, 2)
            gets = [path for path, body in seen if body is None]
            posts = [json.loads(body) for path, body in seen if body is not None]
            check_eq(gets, [f"/return?c={charge['id']}"], f"{action}: the browser landed on redirect_url")
            check_eq([(p["id"], p["status"]) for p in posts], [(charge["id"], status)],
                     f"{action}: the webhook")
            check_eq(sim.api("GET", "/charges/" + charge["id"])[2]["status"], status, f"{action}: the API")
            print(f"ok   browser {action}", flush=True)
        plain = sim.create(receiver.url, redirect_url=return_url)
        browse(plain["transaction_url"], tmp, os.path.join(tmp, "page.png"))
        receiver.nothing(0.5)
        check_eq(sim.api("GET", "/charges/" + plain["id"])[2]["status"], "INITIATED",
                 "without ?click nothing is pressed")
        print("ok   browser page alone changes nothing", flush=True)
        return 0
    except AssertionError as e:
        print(f"FAIL {e}", flush=True)
        return 1
    finally:
        if sim:
            sim.stop()
        receiver.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
