#!/usr/bin/python3
"""Render every return page in headless Chromium, at phone and laptop sizes
and in dark mode, and check the screenshots are real pictures of the page.

Usage: test_page_browser.py PAGE_RENDER OUTDIR

PAGE_RENDER is the page-render program; it writes the pages as .html files
into OUTDIR, and the screenshots land next to them. A missing browser is a
failure, not a skip: the setup scripts install Debian's chromium.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

CHROMIUM = "/usr/bin/chromium"
SIZES = [(375, 800), (1280, 800)]

# Page file -> the state colour of its icon and top bar, light and dark.
PAGES = {
    "success.html": ((0x16, 0xa3, 0x4a), (0x22, 0xc5, 0x5e)),
    "failed.html": ((0xdc, 0x26, 0x26), (0xef, 0x44, 0x44)),
    "pending.html": ((0xd9, 0x77, 0x06), (0xf5, 0x9e, 0x0b)),
    "bad-request.html": ((0xea, 0x58, 0x0c), (0xf9, 0x73, 0x16)),
    "long-values.html": ((0x16, 0xa3, 0x4a), (0x22, 0xc5, 0x5e)),
}
BACKGROUND = {"light": (0xf3, 0xf4, 0xf7), "dark": (0x0b, 0x10, 0x20)}

# The solid icon disc alone is about 3,200 pixels; allow for the glyph and
# anti-aliasing, but not for a page whose styles were blocked or lost.
MIN_ACCENT_PIXELS = 1500
MIN_COLOURS = 40
MIN_DISTINCT_ROWS = 40


class PngError(Exception):
    pass


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def unfilter(raw, width, height, bpp):
    """Undo PNG's per-row filters; returns a list of rows (bytes)."""
    stride = width * bpp
    rows, prev, pos = [], bytearray(stride), 0
    for _ in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        if len(line) != stride:
            raise PngError("truncated image data")
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xff
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xff
            elif ftype == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 0xff
            elif ftype == 4:
                line[i] = (line[i] + paeth(a, b, c)) & 0xff
            elif ftype != 0:
                raise PngError("bad filter type %d" % ftype)
        rows.append(bytes(line))
        prev = line
    return rows


def read_png(path):
    """Returns (width, height, rows of RGB(A) bytes, bytes per pixel)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise PngError("not a PNG signature")
    pos, ihdr, idat = 8, None, b""
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        if zlib.crc32(ctype + body) != crc:
            raise PngError("bad CRC in %r chunk" % ctype)
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat += body
        elif ctype == b"IEND":
            break
        pos += 12 + length
    if ihdr is None or not idat:
        raise PngError("missing IHDR or IDAT")
    width, height, depth, colour, _, _, interlace = ihdr
    if depth != 8 or colour not in (2, 6) or interlace != 0:
        raise PngError("unexpected format depth=%d colour=%d interlace=%d"
                       % (depth, colour, interlace))
    bpp = 3 if colour == 2 else 4
    return width, height, unfilter(zlib.decompress(idat), width, height, bpp), bpp


def near(px, ref, tol=14):
    return all(abs(p - r) <= tol for p, r in zip(px, ref))


def analyse(rows, bpp, accent):
    """Distinct colours, distinct rows, pixels near the accent colour."""
    colours, accent_pixels = set(), 0
    for row in rows:
        for x in range(0, len(row), bpp * 2):  # every other pixel is plenty
            px = row[x:x + 3]
            colours.add(px)
            if near(px, accent):
                accent_pixels += 2
    return len(colours), len(set(rows)), accent_pixels


def screenshot(url, out, width, height, dark):
    if os.path.exists(out):
        os.unlink(out)
    profile = tempfile.mkdtemp(prefix="page-browser-")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--hide-scrollbars",
           "--user-data-dir=" + profile, "--window-size=%d,%d" % (width, height),
           "--screenshot=" + out]
    if dark:
        cmd.append("--force-dark-mode")
    try:
        proc = subprocess.run(cmd + [url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=60, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if proc.returncode != 0 or not os.path.exists(out):
        tail = proc.stdout.decode("utf-8", "replace")[-2000:]
        raise PngError("chromium exited %d without %s:\n%s" % (proc.returncode, out, tail))


def check_one(outdir, page, width, height, scheme):
    name = "%s-%dx%d-%s.png" % (page[:-5], width, height, scheme)
    out = os.path.join(outdir, name)
    url = "file://" + os.path.join(os.path.abspath(outdir), page)
    screenshot(url, out, width, height, scheme == "dark")
    w, h, rows, bpp = read_png(out)
    problems = []
    if (w, h) != (width, height):
        problems.append("size %dx%d, want %dx%d" % (w, h, width, height))
    accent = PAGES[page][0 if scheme == "light" else 1]
    colours, distinct_rows, accent_pixels = analyse(rows, bpp, accent)
    if colours < MIN_COLOURS:
        problems.append("only %d colours: blank page?" % colours)
    if distinct_rows < MIN_DISTINCT_ROWS:
        problems.append("only %d distinct rows: blank page?" % distinct_rows)
    if accent_pixels < MIN_ACCENT_PIXELS:
        problems.append("%d pixels of the state colour, want >= %d: styles or icon missing?"
                        % (accent_pixels, MIN_ACCENT_PIXELS))
    if not near(rows[0][0:3], BACKGROUND[scheme], 3):
        problems.append("corner pixel %s is not the %s background" % (tuple(rows[0][0:3]), scheme))
    status = "FAIL" if problems else "ok"
    print("%-4s %-36s %5d colours %4d rows %6d state-colour px  %s"
          % (status, name, colours, distinct_rows, accent_pixels, "; ".join(problems)))
    return not problems


def main():
    if len(sys.argv) != 3:
        print("usage: test_page_browser.py PAGE_RENDER OUTDIR", file=sys.stderr)
        return 2
    render, outdir = sys.argv[1], sys.argv[2]
    if not os.access(CHROMIUM, os.X_OK):
        print("FAIL: %s not found; install Debian's chromium package" % CHROMIUM)
        return 1
    subprocess.run([render, outdir], check=True, stdout=subprocess.DEVNULL)
    failed = 0
    for page in PAGES:
        for width, height in SIZES:
            for scheme in ("light", "dark"):
                if scheme == "dark" and width != SIZES[0][0]:
                    continue  # dark mode once, at phone size, is enough
                try:
                    ok = check_one(outdir, page, width, height, scheme)
                except (PngError, OSError, subprocess.SubprocessError, zlib.error) as e:
                    print("FAIL %s %dx%d %s: %s" % (page, width, height, scheme, e))
                    ok = False
                failed += 0 if ok else 1
    print("screenshots in %s" % os.path.abspath(outdir))
    if failed:
        print("%d screenshot check(s) failed" % failed)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
