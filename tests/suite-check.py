#!/usr/bin/env python3
"""The first and the last test of every suite: nothing a run starts outlives it.

meson gives every test of a build tree the same TMPDIR, a directory of that
build tree's own under /tmp (tests/meson.build), and every process a test
starts inherits it. That makes what a run of this build tree started, and
only that, easy to find while other build trees run their suites on the same
machine: a process is ours when its environment has our TMPDIR, or (for a
program started with a cleared environment) its executable or an argument
lies inside that directory.

    suite-check.py start BUILD_ROOT   (runs first, alone)
        Ends what an interrupted earlier run of this build tree left running
        and moves what it left in TMPDIR into meson-logs/ (saying so; the
        earlier run already failed or was stopped), then makes TMPDIR.

    suite-check.py end BUILD_ROOT     (runs last, alone)
        Fails when a process of this build tree is still alive (it is ended),
        when something is still mounted below TMPDIR (it is unmounted), or
        when TMPDIR holds anything but the directories failed tests kept for
        a look. Everything in TMPDIR is moved into meson-logs/ for a look,
        and TMPDIR is removed: /tmp is left as the run found it.

Every suite holds both tests, so that `meson test --suite X` is checked as
well; the end check names any suite that does not.
"""
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

KEPT_MARKER = ".kept-after-failure"  # written by harness.keep_for_a_look()
SUITE_TMP_PREFIX = "/tmp/cashpayd-suite-"  # tests/meson.build
GRACE = 3.0


def ancestors():
    """This process and the ones above it (meson, the shell that ran it)."""
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        pid = proc_stat(pid)[0] if proc_stat(pid) else 1
    return out


def proc_stat(pid):
    """(ppid, pgid, state) of @pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[2]), fields[0]


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def is_ours(pid, tmp_root):
    st = proc_stat(pid)
    if not st or st[2] == "Z":
        return False
    env = read(f"/proc/{pid}/environ").split(b"\0")
    if ("TMPDIR=" + tmp_root).encode() in env:
        return True
    if any(v.startswith(b"TMPDIR=" + SUITE_TMP_PREFIX.encode()) for v in env):
        return False  # another build tree's run (one nested in ours, say)
    # A test that clears the environment (systemd-socket-activate does)
    # still runs its program on files in TMPDIR. A program of the build
    # directory run by hand is none of our business.
    inside = tmp_root + os.sep
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    if exe.startswith(inside):
        return True
    args = read(f"/proc/{pid}/cmdline").decode(errors="replace").split("\0")
    return any(inside in arg for arg in args)


def describe(pid):
    args = read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
    st = proc_stat(pid)
    return f"pid {pid} (parent {st[0] if st else '?'}): {args or '?'}"


def our_processes(tmp_root):
    skip = ancestors()
    return [pid for pid in (int(d) for d in os.listdir("/proc") if d.isdigit())
            if pid not in skip and is_ours(pid, tmp_root)]


def end_processes(pids, tmp_root):
    for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, GRACE)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = [p for p in pids if is_ours(p, tmp_root)]
            if not pids:
                return []
            time.sleep(0.05)
    return pids


def mounts_below(tmp_root):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == tmp_root or point.startswith(tmp_root + os.sep):
                out.append(point)
    return sorted(out, key=len, reverse=True)  # innermost first


def move_out(tmp_root, build_root, label):
    """Move every entry of @tmp_root into meson-logs/@label-TIME/; return
    (kept by failed tests, others) as names."""
    kept, other = [], []
    entries = sorted(os.listdir(tmp_root)) if os.path.isdir(tmp_root) else []
    if not entries:
        return kept, other
    dest = os.path.join(build_root, "meson-logs", time.strftime(f"{label}-%Y%m%d-%H%M%S"))
    os.makedirs(dest, exist_ok=True)
    for name in entries:
        path = os.path.join(tmp_root, name)
        (kept if os.path.exists(os.path.join(path, KEPT_MARKER)) else other).append(name)
        move(path, os.path.join(dest, name))
    print(f"moved to {dest}")
    return kept, other


def move(src, dst):
    """Move @src to another file system: what can be copied is (sockets and
    FIFOs cannot), then @src goes."""
    def specials(directory, names):
        return [n for n in names
                if not stat.S_ISREG(m := os.lstat(os.path.join(directory, n)).st_mode)
                and not stat.S_ISDIR(m) and not stat.S_ISLNK(m)]
    try:
        if os.path.isdir(src) and not os.path.islink(src):
            shutil.copytree(src, dst, symlinks=True, ignore=specials)
        elif stat.S_ISREG(os.lstat(src).st_mode):
            shutil.copy2(src, dst)
    except OSError as e:
        print(f"cannot copy all of {src}: {e}")
    shutil.rmtree(src, ignore_errors=True)
    if os.path.lexists(src) and not os.path.isdir(src):
        os.unlink(src)


def make_root(tmp_root):
    """TMPDIR as a directory of ours, open to the other users some tests run
    programs as (like /tmp itself)."""
    try:
        os.mkdir(tmp_root, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(tmp_root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        sys.exit(f"{tmp_root} exists and is not a directory of ours: refusing to use it")
    os.chmod(tmp_root, 0o1777)


def suites_missing_check(build_root):
    """Suites of this build tree whose runs would not include the end check."""
    with open(os.path.join(build_root, "meson-info", "intro-tests.json")) as f:
        tests = json.load(f)
    every = {s for t in tests for s in t["suite"]}
    checked = {s for t in tests if t["name"] == "suite-leftovers" for s in t["suite"]}
    return sorted(s.split(":", 1)[-1] for s in every - checked)


def unmount(points):
    for point in points:
        subprocess.run(["umount", "-l", point], check=False)


def start(build_root, tmp_root):
    left = our_processes(tmp_root)
    if left:
        print(f"an earlier run of this build tree left {len(left)} process(es) running:")
        for pid in left:
            print("  " + describe(pid))
        stubborn = end_processes(left, tmp_root)
        if stubborn:
            sys.exit(f"cannot end {stubborn}")
    unmount(mounts_below(tmp_root))
    kept, other = move_out(tmp_root, build_root, "tmp-earlier-run")
    if kept or other:
        print(f"an earlier run left {len(kept) + len(other)} entries in {tmp_root}: "
              f"{', '.join(kept + other)}")
    make_root(tmp_root)
    print(f"temporary root {tmp_root}: empty")
    return 0


def end(build_root, tmp_root):
    failures = 0
    missing = suites_missing_check(build_root)
    if missing:
        # A whole run is checked all the same; only `meson test --suite`
        # of one of these would not be. Said, not failed: a suite added
        # elsewhere should not break the run.
        print(f"NOTE suites that do not hold suite-start and suite-leftovers (all_suites in "
              f"tests/meson.build): {', '.join(missing)}")
    left = our_processes(tmp_root)
    if left:
        # A process that is on its way out gets a moment first.
        time.sleep(1)
        left = [p for p in left if is_ours(p, tmp_root)]
    if left:
        failures += 1
        print(f"FAIL {len(left)} process(es) started from this build tree still running "
              f"(now ended):")
        for pid in left:
            print("  " + describe(pid))
        stubborn = end_processes(left, tmp_root)
        if stubborn:
            print(f"  could not end {stubborn}")
    else:
        print("no process of this build tree is running")
    points = mounts_below(tmp_root)
    if points:
        failures += 1
        print(f"FAIL still mounted below {tmp_root} (now unmounted): {', '.join(points)}")
        unmount(points)
    kept, other = move_out(tmp_root, build_root, "tmp-left")
    if kept:
        print(f"kept for a look by failed tests: {', '.join(kept)}")
    if other:
        failures += 1
        print(f"FAIL left in {tmp_root} by the tests: {', '.join(other)}")
    if not kept and not other:
        print(f"{tmp_root} is empty")
    try:
        os.rmdir(tmp_root)
    except FileNotFoundError:
        pass
    except OSError as e:
        failures += 1
        print(f"FAIL cannot remove {tmp_root}: {e}")
    return 1 if failures else 0


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "end"):
        sys.exit("usage: suite-check.py start|end BUILD_ROOT")
    tmp_root = os.environ.get("TMPDIR", "")
    build_root = os.path.realpath(sys.argv[2])
    if not tmp_root.startswith(SUITE_TMP_PREFIX):
        sys.exit(f"TMPDIR is {tmp_root!r}, not this build tree's own (tests/meson.build)")
    return (start if sys.argv[1] == "start" else end)(build_root, tmp_root)


if __name__ == "__main__":
    sys.exit(main())
