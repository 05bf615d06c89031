#!/usr/bin/env python3
"""Checks a `moekit profile` HTML report by rendering it in headless Chromium.

    check_report_html.py REPORT_DIR [--screenshot OUT.png] [--chromium PATH]

Checks, each reported on its own line when it fails:
  * REPORT_DIR/index.html refers to no external resource (src/href/srcset/... attributes other
    than in-page "#" links or data: URIs, CSS url()/@import, <link>, <base>, <script src>);
  * Chromium (--headless --no-sandbox --disable-gpu, a fresh --user-data-dir) parses it:
    --dump-dom gives the rendered DOM;
  * every expected <figure id> is in that DOM and holds an <svg> with drawn elements
    (rect/path/line/circle/polygon/polyline/ellipse count > 0);
  * the --screenshot is a valid PNG that is not one flat colour (decoded here with zlib/struct).

Exit 0 when every check passes, 1 otherwise, 77 when Chromium is not installed (prints
"*** SKIPPED: chromium not found"). Python standard library only.
"""
import argparse
import html.parser
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

# Same list and order as analysis/report_html.cpp report_figure_ids().
FIGURE_IDS = ["fig-load", "fig-domain", "fig-coactivation", "fig-affinity", "fig-srp", "fig-sch", "fig-congestion"]
DRAWN = {"rect", "path", "line", "circle", "polygon", "polyline", "ellipse"}
URL_ATTRS = {"src", "href", "xlink:href", "srcset", "poster", "data", "action", "formaction", "background",
             "ping", "manifest", "codebase", "longdesc", "lowsrc", "dynsrc", "imagesrcset"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
CANDIDATES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]


def find_chromium(explicit):
    if explicit:
        return explicit if os.path.exists(explicit) else None
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Scan(html.parser.HTMLParser):
    """Collects external references and, per <figure id>, the SVG elements drawn inside it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.external = []
        self.stack = []          # open elements: (tag, figure id or None)
        self.figures = {}        # id -> {"svg": n, "drawn": n}
        self.in_style = False
        self.tags = 0

    def figure(self):
        for tag, fid in reversed(self.stack):
            if fid is not None:
                return fid
        return None

    def handle_starttag(self, tag, attrs):
        self.tags += 1
        attrs = dict(attrs)
        for name, value in attrs.items():
            value = (value or "").strip()
            if name in URL_ATTRS and value and not value.startswith("#") and not value.lower().startswith("data:"):
                self.external.append(f"<{tag} {name}=\"{value[:80]}\">")
            if name == "style" and re.search(r"url\s*\(|@import", value, re.I):
                self.external.append(f"<{tag} style=\"{value[:80]}\">")
        if tag in ("link", "base"):
            self.external.append(f"<{tag}> element")
        if tag == "style":
            self.in_style = True
        fid = attrs.get("id") if tag == "figure" else None
        if fid is not None:
            self.figures.setdefault(fid, {"svg": 0, "drawn": 0})
        cur = fid or self.figure()
        if cur is not None:
            if tag == "svg":
                self.figures[cur]["svg"] += 1
            elif tag in DRAWN and any(t == "svg" for t, _ in self.stack):
                self.figures[cur]["drawn"] += 1
        if tag not in VOID:
            self.stack.append((tag, fid))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag == "style":
            self.in_style = False
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if self.in_style and re.search(r"url\s*\((?!\s*['\"]?data:)|@import", data, re.I):
            self.external.append("CSS url()/@import in <style>")


def png_colours(path, limit=2):
    """Decodes an 8-bit RGB/RGBA/grey PNG row by row until `limit` distinct colours are seen;
    returns (width, height, the colours seen)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG signature")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if zlib.crc32(kind + body) & 0xFFFFFFFF != struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]:
            raise ValueError(f"bad CRC in {kind!r} chunk")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if ihdr is None or not idat:
        raise ValueError("missing IHDR or IDAT")
    width, height, depth, colour_type, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour_type)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {colour_type}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise ValueError("image data has the wrong size")
    colours = set()
    prev = bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ftype == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif ftype == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = prev[i]
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        elif ftype != 0:
            raise ValueError(f"bad filter type {ftype} in row {y}")
        for x in range(0, stride, channels):
            colours.add(bytes(line[x:x + channels]))
        if len(colours) >= limit:  # enough to tell the image is not flat
            break
        prev = line
    return width, height, colours


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report_dir")
    ap.add_argument("--screenshot", help="where to keep the PNG (default: a temporary file)")
    ap.add_argument("--chromium", help="browser binary (default: /usr/bin/chromium, then PATH)")
    ap.add_argument("--window-size", default="1280,2400", help="viewport WIDTH,HEIGHT for the screenshot")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()

    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("*** SKIPPED: chromium not found", flush=True)
        return 77
    page = os.path.abspath(os.path.join(args.report_dir, "index.html"))
    if not os.path.isfile(page):
        print(f"FAIL: {page} does not exist")
        return 1
    failures = []

    with open(page, encoding="utf-8") as f:
        source = Scan()
        source.feed(f.read())
        source.close()
    for ref in source.external:
        failures.append(f"external resource in index.html: {ref}")

    with tempfile.TemporaryDirectory(prefix="moekit-chromium-") as tmp:
        base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                "--hide-scrollbars", f"--user-data-dir={os.path.join(tmp, 'profile')}"]
        url = "file://" + page
        try:
            dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            dom = None
        if dom is None or dom.returncode != 0 or b"<body" not in dom.stdout:
            detail = "timed out" if dom is None else f"exit {dom.returncode}: {dom.stderr.decode(errors='replace')[-400:]}"
            failures.append(f"chromium --dump-dom did not give a parsed page ({detail})")
        else:
            rendered = Scan()
            rendered.feed(dom.stdout.decode("utf-8", errors="replace"))
            rendered.close()
            for fid in FIGURE_IDS:
                fig = rendered.figures.get(fid)
                if fig is None:
                    failures.append(f"figure #{fid} missing from the rendered DOM")
                elif fig["svg"] == 0:
                    failures.append(f"figure #{fid} has no <svg>")
                elif fig["drawn"] == 0:
                    failures.append(f"figure #{fid}: its <svg> draws nothing (no rect/path/line/circle)")

        shot = os.path.abspath(args.screenshot) if args.screenshot else os.path.join(tmp, "screenshot.png")
        if os.path.exists(shot):
            os.remove(shot)
        try:
            run = subprocess.run(base + [f"--screenshot={shot}", f"--window-size={args.window_size}", url],
                                 capture_output=True, timeout=args.timeout)
            rc = run.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        if not os.path.isfile(shot):
            failures.append(f"chromium --screenshot wrote no PNG (exit {rc})")
        else:
            try:
                width, height, colours = png_colours(shot)
                if len(colours) < 2:
                    failures.append(f"screenshot {width}x{height} is a single colour (blank page)")
            except (ValueError, zlib.error, struct.error) as e:
                failures.append(f"screenshot is not a valid PNG: {e}")

    for msg in failures:
        print("FAIL: " + msg)
    if failures:
        return 1
    print(f"OK: {page}: {len(FIGURE_IDS)} figures rendered with SVG content, no external resources, non-blank screenshot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
