"""Headless Chromium driven through the DevTools protocol over a pipe.

Chromium started with --remote-debugging-pipe reads protocol commands from
its file descriptor 3 and writes answers and events to 4, each message one
JSON text followed by a NUL byte: no WebSocket, no port, only the standard
library. A test navigates, presses buttons with real mouse events, reads
the page's text and takes screenshots of what the browser shows.

The browser is started as a process group of its own (harness.spawn) and
ended as a group by close(), so its helper processes go with it.
"""
import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

from harness import end_group, spawn, wait_group

CHROMIUM = "/usr/bin/chromium"


class BrowserError(Exception):
    pass


class Browser:
    """One headless Chromium with one page (tab)."""

    def __init__(self, width=480, height=800):
        if not os.access(CHROMIUM, os.X_OK):
            raise BrowserError(f"{CHROMIUM} not found; install Debian's chromium package")
        # One short directory for the profile, the log and the browser's own
        # temporary files (its singleton socket needs a path that fits a
        # sockaddr_un), removed by close().
        self.dir = tempfile.mkdtemp(prefix="cr-")
        self.log_path = os.path.join(self.dir, "chromium.log")
        to_chromium_r, self.to_chromium = os.pipe()
        self.from_chromium, from_chromium_w = os.pipe()
        # The pipe ends become the browser's descriptors 3 and 4.
        shell = f'exec "$@" 3<&{to_chromium_r} 4>&{from_chromium_w} {to_chromium_r}<&- {from_chromium_w}>&-'
        cmd = ["sh", "-c", shell, "sh", CHROMIUM, "--headless=new", "--no-sandbox",
               "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--hide-scrollbars", "--remote-debugging-pipe",
               "--user-data-dir=" + os.path.join(self.dir, "profile"),
               f"--window-size={width},{height}",
               "about:blank"]
        with open(self.log_path, "ab") as log:
            env = dict(os.environ, TMPDIR=self.dir)
            self.proc = spawn(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                              pass_fds=(to_chromium_r, from_chromium_w))
        os.close(to_chromium_r)
        os.close(from_chromium_w)
        self.buffer = b""
        self.next_id = 0
        self.session = None
        try:
            self.size = (width, height)
            targets = self.call("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self.session = self.call("Target.attachToTarget", targetId=page["targetId"],
                                     flatten=True)["sessionId"]
            self.call("Page.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ protocol

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("no answer from chromium in time")
            ready, _, _ = select.select([self.from_chromium], [], [], left)
            if ready:
                chunk = os.read(self.from_chromium, 1 << 20)
                if not chunk:
                    raise BrowserError("chromium closed its pipe: " + self.log_tail())
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, timeout=30, **params):
        """Send one command (to the page once attached) and return its result;
        events that arrive meanwhile are not needed and dropped."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.to_chromium, data):]
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def log_tail(self):
        with contextlib.suppress(OSError), open(self.log_path, "rb") as f:
            return f.read()[-1500:].decode(errors="replace")
        return ""

    # ------------------------------------------------------------ the page

    def navigate(self, url):
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url}: {result['errorText']}")

    def evaluate(self, expression):
        """The value of @expression in the page, or None while the page is
        between two documents (its context gone)."""
        try:
            result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        except BrowserError:
            return None
        if "exceptionDetails" in result:
            return None
        return result.get("result", {}).get("value")

    def location_and_text(self):
        """(URL, visible text) of the page now; (None, "") while it loads."""
        state = self.evaluate("JSON.stringify({href: location.href, ready: document.readyState,"
                              " text: document.body ? document.body.innerText : ''})")
        if not state:
            return None, ""
        state = json.loads(state)
        return (state["href"], state["text"]) if state["ready"] == "complete" else (None, "")

    def wait_until(self, what, predicate, timeout=30):
        """Polls the page until @predicate(url, text) holds; returns (url, text)."""
        deadline = time.monotonic() + timeout
        url, text = None, ""
        while time.monotonic() < deadline:
            url, text = self.location_and_text()
            if url is not None and predicate(url, text):
                return url, text
            time.sleep(0.1)
        raise BrowserError(f"gave up waiting for {what}; the page is {url}: {text[:300]!r}")

    def click(self, element_id):
        """Press the element with a real mouse click at its centre."""
        box = self.evaluate(f"(function(){{var e=document.getElementById({json.dumps(element_id)});"
                            "if(!e)return null;e.scrollIntoView({block:'center'});"
                            "var r=e.getBoundingClientRect();"
                            "return JSON.stringify([r.left+r.width/2,r.top+r.height/2]);})()")
        if not box:
            raise BrowserError(f"no element #{element_id} on the page")
        x, y = json.loads(box)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      clickCount=0 if kind == "mouseMoved" else 1)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    # ------------------------------------------------------------ the end

    def close(self):
        """Ask the browser to quit, then end its whole process group."""
        with contextlib.suppress(BrowserError, OSError):
            self.call("Browser.close", timeout=5)
            wait_group(self.proc.pid, 5)
        end_group(self.proc.pid, timeout=5)
        self.proc.wait()
        for fd in (self.to_chromium, self.from_chromium):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
