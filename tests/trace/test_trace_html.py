#!/usr/bin/env python3
"""The heap map page in a real browser: headless Chromium, driven over the
DevTools protocol (--remote-debugging-pipe, Python 3 stdlib only), opens
the pages brisk-trace wrote and works them with real input events (mouse
clicks, drags and keys), reads back what the page shows, and takes
screenshots.

Two pages: the replay of small synthetic traces (the heap map: slider,
keys, pointing at a chunk, the curve), and, given --program, the replay of
a recording of tests/trace/trace_sites_program.c, whose sites, peak and
leaks are known by construction: live bytes by call site over time with
its cursor, the flame graph of the moment (zooming into a frame), the leak
list, and the heap map following the cursor.

Exits 77 (ctest's skip code, with a message) when no Chromium is found.

usage: test_trace_html.py BRISK_TRACE GEN_SYNTHETIC_PY [--program SITES_PROGRAM --lib SITES_LIB]
                          [--screenshot PNG] [--sites-screenshot PNG] [TRACE.rep...]
  With --screenshot the heap map's picture is kept there (docs/heapmap.png
  is made so), with --sites-screenshot the recording's page; with TRACEs
  those are replayed instead of small synthetic ones.
"""
import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("tool")
parser.add_argument("gen")
parser.add_argument("traces", nargs="*")
parser.add_argument("--program")
parser.add_argument("--lib")
parser.add_argument("--brisk", help="libbrisk.so: the program is recorded again using it")
parser.add_argument("--asan-tool", help="brisk-trace built with sanitizers: writes the pages too")
parser.add_argument("--screenshot")
parser.add_argument("--sites-screenshot")
args = parser.parse_args()
tool, gen = args.tool, args.gen
shot_path = args.screenshot
given_traces = args.traces
failures = checks = 0


def check(cond, what, detail=""):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL: {what}\n{detail}", file=sys.stderr)


def find_chromium():
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """A DevTools protocol client over Chromium's --remote-debugging-pipe:
    JSON messages, each ended by a NUL byte; commands on the browser's fd
    3, replies and events from its fd 4."""

    def __init__(self, chromium, profile):
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()

        def wire_fds():
            a, b = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
             "--disable-dev-shm-usage",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=wire_fds)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            if time.time() > deadline:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_browser)
        os.close(self.from_browser)


def main():
    # What needs no browser (recording, the allocator samples, the
    # sanitized build's pages) runs first, so a machine without Chromium
    # still tests it.
    chromium = find_chromium()
    with tempfile.TemporaryDirectory() as tmp:
        if given_traces:
            traces = given_traces
        else:
            subprocess.run([sys.executable, gen, "--out-dir", tmp, "--scale", "0.2"], check=True,
                           capture_output=True)
            traces = sorted(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".rep"))
        page = os.path.join(tmp, "heapmap.html")
        p = subprocess.run([tool, "replay", "--reps", "0", "--snapshots", "40", "--html", page] +
                           traces, capture_output=True, text=True, timeout=300)
        check(p.returncode == 0 and os.path.exists(page), "the tool writes the page", p.stderr)
        if p.returncode != 0:
            return 1

        sites_page = None
        if args.program:
            recording = os.path.join(tmp, "sites.btr")
            p = subprocess.run([tool, "record", "-o", recording, "--", args.program, args.lib],
                               capture_output=True, text=True, timeout=300)
            check(p.returncode == 0, "the program is recorded", p.stderr)
            p = subprocess.run([tool, "report", "--json", "--top", "0", recording],
                               capture_output=True, text=True, timeout=300)
            check(p.returncode == 0, "report reads the recording", p.stderr)
            report = json.loads(p.stdout) if p.returncode == 0 else None
            sites_page = os.path.join(tmp, "sites.html")
            p = subprocess.run([tool, "replay", "--reps", "0", "--html", sites_page, recording],
                               capture_output=True, text=True, timeout=300)
            check(p.returncode == 0 and report is not None, "the tool writes the recording's page",
                  p.stderr)
            if p.returncode != 0 or report is None:
                return 1
            check(report["allocator"]["samples"] == 0,
                  "a program not using libbrisk has no allocator samples", str(report["allocator"]))
        brisk_page = None
        if args.program and args.brisk:
            recording = os.path.join(tmp, "brisk.btr")
            env = dict(os.environ, LD_PRELOAD=args.brisk)
            p = subprocess.run([tool, "record", "-o", recording, "--", args.program, args.lib],
                               capture_output=True, text=True, timeout=300, env=env)
            check(p.returncode == 0, "the program is recorded using libbrisk", p.stderr)
            brisk_report = json.loads(run_tool("report", "--json", recording) or "null")
            al = brisk_report["allocator"] if brisk_report else {}
            check(al.get("samples", 0) >= 5 and al["mapped_bytes_most"] >= 4 << 20 and
                  al["resident_bytes_most"] > 0,
                  "a program using libbrisk has allocator samples", str(al))
            # The samples survive unpacking and packing again.
            raw = os.path.join(tmp, "brisk.raw")
            back = os.path.join(tmp, "brisk-back.btr")
            run_tool("convert", "--to", "raw", recording, raw)
            run_tool("convert", "--to", "recording", raw, back)
            for path in (raw, back):
                again = json.loads(run_tool("report", "--json", path) or "null")
                check(again is not None and again["allocator"] == al,
                      f"{os.path.basename(path)}: the allocator samples kept",
                      str(again and again["allocator"]))
            brisk_page = os.path.join(tmp, "brisk.html")
            run_tool("replay", "--reps", "0", "--html", brisk_page, recording)

        if args.asan_tool:
            for page_path in (sites_page, brisk_page):
                if page_path:
                    check_under_sanitizers(page_path, tmp)

        if chromium is None:
            print(f"test_trace_html: {checks - failures} passed, {failures} failed without a browser")
            if failures:
                return 1
            print("SKIP: no Chromium found (install Debian's chromium package, or set CHROMIUM); "
                  "the heap map page was not tested in a browser")
            return 77
        browser = DevTools(chromium, os.path.join(tmp, "profile"))
        try:
            run_browser_checks(browser, page, tmp)
            if sites_page:
                run_sites_checks(browser, sites_page, report, tmp)
            if brisk_page:
                run_allocator_checks(browser, brisk_page, brisk_report, tmp)
        finally:
            browser.close()
    print(f"test_trace_html: {checks - failures} passed, {failures} failed")
    return 1 if failures or checks == 0 else 0


def page_data(path):
    with open(path) as f:
        text = f.read()
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1)) if m else None


def check_under_sanitizers(page, tmp):
    """The sanitizer build writes the same call-site views for the same
    recording (the replay's addresses differ, the sites cannot)."""
    recording = page[: -len(".html")] + ".btr"
    again = os.path.join(tmp, "asan-" + os.path.basename(page))
    env = dict(os.environ, ASAN_OPTIONS="abort_on_error=0:detect_leaks=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    p = subprocess.run([args.asan_tool, "replay", "--reps", "0", "--html", again, recording],
                       capture_output=True, text=True, timeout=600, env=env)
    check(p.returncode == 0 and "Sanitizer" not in p.stderr,
          f"{os.path.basename(page)}: written under ASan and UBSan", p.stderr[-3000:])
    a, b = page_data(page), page_data(again)
    check(a is not None and b is not None and a["traces"][0]["sites"] == b["traces"][0]["sites"],
          f"{os.path.basename(page)}: the same sites under sanitizers")


def run_tool(*arguments):
    """The tool's stdout, or None (a failed check) when it fails."""
    p = subprocess.run([tool] + list(arguments), capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "brisk-trace " + " ".join(arguments), p.stderr)
    return p.stdout if p.returncode == 0 else None


def open_page(b, page, height=1500):
    """Opens page in a new tab; returns (session, js, mouse, key) once it
    has drawn its first snapshot."""
    target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    s = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    b.send("Runtime.enable", session=s)
    b.send("Page.enable", session=s)
    b.send("Emulation.setDeviceMetricsOverride",
           {"width": 1180, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=s)
    b.send("Page.navigate", {"url": "file://" + page}, session=s)

    def js(expr):
        r = b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=s)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def mouse(kind, x, y, buttons=0, clicks=0):
        b.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left"
               if kind != "mouseMoved" or buttons else "none", "buttons": buttons,
               "clickCount": clicks}, session=s)

    def key(name, code):
        for kind in ("rawKeyDown", "keyUp"):
            b.send("Input.dispatchKeyEvent", {"type": kind, "key": name, "code": name,
                   "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}, session=s)

    deadline = time.time() + 30
    while time.time() < deadline:
        if js("document.readyState === 'complete' && document.body.dataset.snapshot !== undefined"):
            break
        time.sleep(0.1)
    return s, js, mouse, key


def screenshot(b, s, path, whole_page=False):
    shot = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": whole_page},
                  session=s)
    png = base64.b64decode(shot["data"])
    check(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000, "a screenshot is taken",
          str(len(png)))
    with open(path, "wb") as f:
        f.write(png)


def run_browser_checks(b, page, tmp):
    s, js, mouse, key = open_page(b, page)
    check(js("[...document.querySelectorAll('.sites-only')].every((e) => e.hidden)"),
          "a text trace has no call-site views (it has no stacks)")
    state = lambda: js("({snap: document.body.dataset.snapshot, "
                       "label: document.getElementById('snapshot-label').textContent, "
                       "max: document.getElementById('slider').max, "
                       "info: document.getElementById('chunk-info').textContent})")
    first = state()
    check(first["snap"] is not None, "the page draws a snapshot on load", str(first))
    check("(peak use)" in first["label"], "it opens at peak use", first["label"])
    last = int(first["max"])
    check(last >= 30, "snapshots along the trace", first["max"])

    # A click at the slider's left end moves it to the first snapshot.
    r = js("(() => { const e = document.getElementById('slider'); e.scrollIntoView(); "
           "const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
    x, y = r[0] + 2, r[1] + r[3] / 2
    mouse("mouseMoved", x, y)
    mouse("mousePressed", x, y, 1, 1)
    mouse("mouseReleased", x, y, 0, 1)
    after_click = state()
    check(after_click["snap"] == "0", "a click at the slider's start shows the first snapshot",
          str(after_click))
    check(after_click["label"].startswith(f"snapshot 1 of {last + 1}: after op "),
          "the label follows", after_click["label"])

    # The arrow key steps one snapshot on (the slider has the focus).
    key("ArrowRight", 39)
    key("ArrowRight", 39)
    after_keys = state()
    check(after_keys["snap"] == "2", "two ArrowRight presses step to the third snapshot",
          str(after_keys))
    check(after_keys["label"].startswith(f"snapshot 3 of {last + 1}"), "the label follows",
          after_keys["label"])

    # Drag to the far end: the last snapshot.
    x_end = r[0] + r[2] - 2
    mouse("mousePressed", x, y, 1, 1)
    mouse("mouseMoved", (x + x_end) / 2, y, 1)
    mouse("mouseMoved", x_end, y, 1)
    mouse("mouseReleased", x_end, y, 0, 1)
    check(state()["snap"] == str(last), "dragging to the end shows the last snapshot",
          str(state()))

    # Back to the peak, then point at the first chunk of the map.
    js("document.getElementById('slider').focus()")
    for _ in range(last):
        key("ArrowLeft", 37)
    check(state()["snap"] == "0", "ArrowLeft steps back to the start", str(state()))
    peak = js("DATA.traces[0].peak")
    for _ in range(peak):
        key("ArrowRight", 39)
    check(state()["snap"] == str(peak) and "(peak use)" in state()["label"],
          "ArrowRight steps forward to the peak", str(state()))
    m = js("(() => { const r = document.getElementById('map').getBoundingClientRect(); "
           "return [r.left, r.top]; })()")
    mouse("mouseMoved", m[0] + 78 + 1, m[1] + 6 + 9)
    info = state()["info"]
    check(info.startswith("live block") or info.startswith("free chunk"),
          "pointing at the map names a chunk", info)
    m_off = re.search(r"at offset 0x([0-9a-f]+) ", info)
    row_bytes = js("layout.rowBytes")
    check(m_off is not None and int(m_off.group(1), 16) < row_bytes / 64,
          "a chunk at the very start of the first row", f"{info} (row {row_bytes} bytes)")
    check(re.search(r", address 0x[0-9a-f]{6,}\)", info) is not None, "the chunk's address is named",
          info)
    check(re.search(r": (chunk )?[0-9.]+ (B|KiB|MiB)", info) is not None, "and its size", info)
    check(js("document.getElementById('tip').style.display") == "block", "a tooltip shows")

    # The curve is drawn (some non-white pixels).
    painted = js("(() => { const c = document.getElementById('curve'); const d = "
                 "c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; "
                 "for (let i = 0; i < d.length; i += 4) if (d[i] < 200) n++; return n; })()")
    check(painted > 500, "the utilization curve is drawn", str(painted))

    errors = [e for e in b.events if e.get("method") == "Runtime.exceptionThrown"]
    check(not errors, "no script errors", json.dumps(errors)[:2000])

    js("window.scrollTo(0, 0)")
    screenshot(b, s, shot_path or os.path.join(tmp, "heapmap.png"))
    if shot_path:
        print(f"screenshot written to {shot_path}")


def run_sites_checks(b, page, report, tmp):
    """The recording's page: its call-site views against what
    trace_sites_program.c allocates by construction and what `report`
    computed from the same recording."""
    with open(page) as f:
        text = f.read()
    check("http://" not in text and "https://" not in text and "<link" not in text and
          " src=" not in text and "import(" not in text,
          "the recording's page loads nothing from elsewhere")
    check(len(text) < 2 << 20, "the recording's page is small", f"{len(text)} bytes")
    s, js, mouse, key = open_page(b, page, height=1300)
    check(js("[...document.querySelectorAll('.sites-only')].every((e) => !e.hidden)"),
          "a recording shows its call-site views")
    sites = lambda: js("""(() => {
      const legend = {};
      for (const li of document.querySelectorAll('#series-legend li')) legend[li.dataset.site] = Number(li.dataset.bytes);
      const frames = [...document.querySelectorAll('#flame .frame')].map((d) => ({
        name: d.dataset.name, bytes: Number(d.dataset.bytes), depth: Number(d.dataset.depth),
        width: d.getBoundingClientRect().width}));
      return {moment: document.body.dataset.moment, snap: document.body.dataset.snapshot,
              label: document.getElementById('moment-label').textContent,
              max: Number(document.getElementById('moment').max),
              total: Number(document.getElementById('flame').dataset.total),
              path: document.getElementById('flame-path').textContent, legend, frames};
    })()""")
    first = sites()
    peak = report["peak"]
    check("(peak use)" in first["label"], "the sites open at peak use", first["label"])
    check(first["max"] >= 250, "moments along the recording", str(first["max"]))
    check(first["total"] == peak["bytes"], "the flame graph holds the peak's bytes",
          f"{first['total']} vs report's {peak['bytes']}")
    # The program's peak, by construction: 8 x 100000 in peak_big, 3 x
    # 50000 in the library's lib_hold, 4 threads x 10 x 3000 in
    # thread_hold, 4 x 25000 in peak_small.
    known = {"peak_big": 800000, "lib_hold": 150000, "thread_hold": 120000, "peak_small": 100000}
    for name, bytes_ in known.items():
        check(first["legend"].get(name) == bytes_, f"the timeline's legend: {name} holds {bytes_}",
              str(first["legend"]))
        held = sum(f["bytes"] for f in first["frames"] if f["name"] == name)
        check(held == bytes_, f"the flame graph: {name} holds {bytes_}",
              str([f for f in first["frames"] if f["name"] == name]))
    check(sum(first["legend"].values()) == peak["bytes"], "the stacked sites add up to the peak",
          str(first["legend"]))
    main_frame = [f for f in first["frames"] if f["name"] == "main"]
    check(main_frame and main_frame[0]["bytes"] >= 1050000,
          "main's frame holds what the sites it called hold", str(main_frame))
    check(all(f["depth"] == 0 for f in first["frames"] if f["name"] == "all live blocks") and
          any(f["name"] == "start_thread" for f in first["frames"]),
          "the threads' stacks are under the root too", str([f["name"] for f in first["frames"]]))
    painted = js("(() => { const c = document.getElementById('timeline'); const d = "
                 "c.getContext('2d').getImageData(0, 0, c.width, c.height).data; const seen = new Set(); "
                 "for (let i = 0; i < d.length; i += 4) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]); "
                 "return seen.size; })()")
    check(painted > 8, "the timeline is drawn in the sites' colours", str(painted))

    # A click on peak_big's frame zooms into it: it becomes the top row,
    # the whole width.
    r = js("(() => { const d = [...document.querySelectorAll('#flame .frame')].find((d) => "
           "d.dataset.name === 'peak_big'); d.scrollIntoView(); const r = d.getBoundingClientRect(); "
           "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    mouse("mouseMoved", r[0], r[1])
    mouse("mousePressed", r[0], r[1], 1, 1)
    mouse("mouseReleased", r[0], r[1], 0, 1)
    zoomed = sites()
    top = [f for f in zoomed["frames"] if f["depth"] == 0]
    check(len(top) == 1 and top[0]["name"] == "peak_big" and top[0]["width"] > 1000,
          "clicking a frame zooms into it", str(top))
    check("peak_big" in zoomed["path"], "the zoom names its path", zoomed["path"])
    check(js("document.getElementById('flame-info').textContent").startswith("peak_big: 781 KiB"),
          "pointing at a frame names its bytes", js("document.getElementById('flame-info').textContent"))
    js("document.getElementById('flame-reset').click()")
    check([f["name"] for f in sites()["frames"] if f["depth"] == 0] == ["all live blocks"],
          "the whole heap again")

    # Moving the cursor to the end of the timeline (a click there): what
    # is live after the last call is what leaked, and the heap map
    # follows to its last snapshot.
    r = js("(() => { const e = document.getElementById('timeline'); e.scrollIntoView(); "
           "const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
    x, y = r[0] + r[2] - 21, r[1] + r[3] / 2
    mouse("mouseMoved", x, y)
    mouse("mousePressed", x, y, 1, 1)
    mouse("mouseReleased", x, y, 0, 1)
    end = sites()
    check(int(end["moment"]) == end["max"], "a click at the timeline's end picks the last moment",
          str(end["moment"]))
    check(end["total"] == report["leaks"]["bytes"], "live at the end is what leaked",
          f"{end['total']} vs report's {report['leaks']['bytes']}")
    check(end["legend"].get("peak_big") == 0, "peak_big's blocks are freed by then", str(end["legend"]))
    last_snap = js("document.getElementById('slider').max")
    check(end["snap"] == last_snap, "the heap map follows to its last snapshot",
          f"{end['snap']} of {last_snap}")
    # A drag back to the start, then the arrow keys step moment by moment.
    x0 = r[0] + 78
    mouse("mousePressed", x, y, 1, 1)
    mouse("mouseMoved", (x + x0) / 2, y, 1)
    mouse("mouseMoved", x0, y, 1)
    mouse("mouseReleased", x0, y, 0, 1)
    check(sites()["moment"] == "0", "dragging to the start picks the first moment", sites()["moment"])
    check(sites()["snap"] == "0", "and the heap map its first snapshot", sites()["snap"])
    js("document.getElementById('moment').focus()")
    key("ArrowRight", 39)
    key("ArrowRight", 39)
    check(sites()["moment"] == "2", "two ArrowRight presses step two moments", sites()["moment"])
    # The heap map's own slider moves the moment too.
    js("(() => { const e = document.getElementById('slider'); e.value = e.max; "
       "e.dispatchEvent(new Event('input')); })()")
    check(int(sites()["moment"]) == end["max"], "the heap map's slider moves the moment along",
          sites()["moment"])

    # The leak list: report's leaking stacks, biggest first, and the
    # program's leaks by construction.
    rows = js("[...document.querySelectorAll('#leaks tbody tr')].map((tr) => ({bytes: "
              "Number(tr.dataset.bytes), count: Number(tr.dataset.count), where: "
              "tr.cells[2].textContent, from: tr.cells[3].textContent}))")
    want = [(site["bytes"], site["count"]) for site in report["leaks"]["sites"]]
    check([(row["bytes"], row["count"]) for row in rows] == want,
          "the leak list is report's leaking stacks", f"{rows}\nvs {want}")

    # Each names where it was allocated as report does: the first frame
    # that is not an allocation wrapper, with its file and line (or module
    # and offset without line information), and the callers after it.
    def allocated_in(site):
        names = site["frames"]
        k = next((i for i, f in enumerate(names) if not f.startswith(("operator new", "std::"))), 0)
        return site["locations"][k] if names else "(no stack)"

    check([row["where"] for row in rows] == [allocated_in(site) for site in report["leaks"]["sites"]],
          "each leak names where report says it was allocated",
          f"{[row['where'] for row in rows]}\nvs {[allocated_in(x) for x in report['leaks']['sites']]}")

    def leaked(function):
        mine = [row for row in rows if row["where"].startswith(function + " (")]
        return sum(row["bytes"] for row in mine), sum(row["count"] for row in mine)

    for function, expected in (("leak_here", (3 * 777, 3)), ("lib_leak", (2 * 4321, 2)),
                               ("aligned_leak", (640, 1)), ("thread_leak", (4 * 1234, 4))):
        check(leaked(function) == expected, f"the leak list: {function} leaks {expected}",
              str(rows))
    check(any(row["where"].startswith("leak_here (") and row["from"].startswith("main ")
              for row in rows), "a leak names its callers", str(rows))
    leaks_note = js("document.getElementById('leaks-note').textContent")
    check(f" in {report['leaks']['count']} blocks live at exit, from {len(want)} stacks" in leaks_note,
          "the leaks' totals", leaks_note)

    check(js("document.getElementById('allocator-card').hidden"),
          "no allocator view for a program not using libbrisk")

    # By size class, at the peak: the program's blocks in libbrisk's
    # classes, by construction (docs/process.md's grid): 8 x 100000 in
    # the 104 KiB class, 3 x 50000 in 52 KiB, 4 x 25000 in 26 KiB, 40 x
    # 3000 in 3 KiB.
    js("document.getElementById('moment-peak').click()")
    classes = lambda: js("[...document.querySelectorAll('#classes tbody tr')].map((tr) => "
                         "[Number(tr.dataset.block), Number(tr.dataset.count), "
                         "Number(tr.dataset.requested), Number(tr.dataset.held)])")
    at_peak = {row[0]: row[1:] for row in classes()}
    for block, count, requested in ((106496, 8, 800000), (53248, 3, 150000),
                                    (26624, 4, 100000), (3072, 40, 120000)):
        check(at_peak.get(block) == [count, requested, count * block],
              f"at the peak, the {block}-byte class holds {count} blocks of {requested} bytes",
              str(at_peak))
    check(sum(v[1] for v in at_peak.values()) == peak["bytes"],
          "the classes hold every byte live at the peak", str(at_peak))
    # At the end: aligned_leak's aligned_alloc(64, 640) in the 640 class,
    # leak_here's 3 x 777 in 832.
    js("(() => { const e = document.getElementById('moment'); e.value = e.max; "
       "e.dispatchEvent(new Event('input')); })()")
    at_end = {row[0]: row[1:] for row in classes()}
    check(at_end.get(640, [0])[0] >= 1 and at_end.get(832, [0])[0] >= 3,
          "at the end, the leaks' classes", str(at_end))
    if args.brisk:
        check_class_grid(js("DATA.traces[0].sites.classes.block"))
    errors = [e for e in b.events if e.get("method") == "Runtime.exceptionThrown"]
    check(not errors, "no script errors", json.dumps(errors)[:2000])
    js("document.getElementById('moment-peak').click(); window.scrollTo(0, 0)")
    out = args.sites_screenshot or os.path.join(tmp, "sites.png")
    screenshot(b, s, out, whole_page=True)
    if args.sites_screenshot:
        print(f"screenshot written to {out}")

def check_class_grid(blocks):
    """The page's size classes are libbrisk's: a request of a class's
    block size, and one of a byte more than the class below, both get
    that block size (brisk_malloc_usable_size); past the last class,
    blocks are whole pages."""
    import ctypes
    lib = ctypes.CDLL(args.brisk)
    lib.brisk_malloc.restype = ctypes.c_void_p
    lib.brisk_malloc.argtypes = [ctypes.c_size_t]
    lib.brisk_malloc_usable_size.restype = ctypes.c_size_t
    lib.brisk_malloc_usable_size.argtypes = [ctypes.c_void_p]
    lib.brisk_free.argtypes = [ctypes.c_void_p]

    def usable(n):
        p = lib.brisk_malloc(n)
        got = lib.brisk_malloc_usable_size(p)
        lib.brisk_free(p)
        return got

    small = [b for b in blocks if b]
    check(len(small) == 96 and blocks[-1] == 0, "96 classes and large", str(blocks))
    wrong = [(below, block, usable(below + 1), usable(block))
             for below, block in zip([0] + small, small)
             if usable(below + 1) != block or usable(block) != block]
    check(not wrong, "every class of the page is libbrisk's", str(wrong[:5]))
    check(usable(small[-1] + 1) == (small[-1] + 1 + 4095) // 4096 * 4096,
          "past the classes, whole pages", str(usable(small[-1] + 1)))


def run_allocator_checks(b, page, report, tmp):
    """The page of the same program recorded using libbrisk: the process
    allocator's view, its samples against report's, following the
    cursor."""
    s, js, mouse, key = open_page(b, page, height=1300)
    al = report["allocator"]
    check(not js("document.getElementById('allocator-card').hidden"),
          "a program using libbrisk shows the allocator view")
    state = lambda: js("""(() => {
      const legend = {};
      for (const li of document.querySelectorAll('#allocator-legend li')) legend[li.dataset.key] = Number(li.dataset.bytes);
      return {sample: Number(document.body.dataset.allocatorSample), legend,
              note: document.getElementById('allocator-note').textContent,
              stats: document.getElementById('allocator-stats').textContent,
              mostMapped: Math.max(...DATA.traces[0].sites.allocator.mapped)};
    })()""")
    at_peak = state()
    check(at_peak["note"].startswith(f"{al['samples']} samples of brisk_malloc_get_stats"),
          "the view counts report's samples", at_peak["note"])
    check(at_peak["mostMapped"] == al["mapped_bytes_most"], "the page has report's most mapped",
          f"{at_peak['mostMapped']} vs {al['mapped_bytes_most']}")
    lg = at_peak["legend"]
    check(set(lg) == {"resident", "mapped", "live", "large_live", "large_cached"},
          "the legend names every line", str(lg))
    # The legend shows the sample nearest the cursor's moment (by heap
    # traffic, the x of both charts).
    data = js("(() => { const s = DATA.traces[0].sites; return {traffic: s.traffic[s.peak], "
              "al: s.allocator}; })()")
    samples = data["al"]
    nearest = min(range(len(samples["traffic"])),
                  key=lambda i: (abs(samples["traffic"][i] - data["traffic"]), i))
    check(at_peak["sample"] == nearest and
          all(lg.get(k) == samples[k][nearest] for k in lg),
          "at the peak the legend shows the nearest sample",
          f"sample {at_peak['sample']}, nearest {nearest}: {lg}")
    # Every sample: libbrisk had mapped a segment (4 MiB) at least, and
    # never fewer bytes than were requested; the requested bytes never
    # passed the peak.
    check(all(m >= 4 << 20 and m >= live for m, live in zip(samples["mapped"], samples["live"])),
          "mapped covers what was requested, in segments", str(samples["mapped"][:10]))
    check(max(samples["live"]) <= report["peak"]["bytes"] and min(samples["resident"]) > 0,
          "requested bytes within the peak; resident known", str(samples["live"][:10]))
    check("segments mapped (4 MiB)" in at_peak["stats"], "the allocator's stats show",
          at_peak["stats"])
    painted = js("(() => { const c = document.getElementById('allocator'); const d = "
                 "c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; "
                 "for (let i = 0; i < d.length; i += 4) if (d[i] < 200) n++; return n; })()")
    check(painted > 500, "the allocator's lines are drawn", str(painted))
    js("(() => { const e = document.getElementById('moment'); e.value = e.max; "
       "e.dispatchEvent(new Event('input')); })()")
    at_end = state()
    check(at_end["sample"] > at_peak["sample"], "the allocator view follows the cursor",
          f"sample {at_peak['sample']} at the peak, {at_end['sample']} at the end")
    errors = [e for e in b.events if e.get("method") == "Runtime.exceptionThrown"]
    check(not errors, "no script errors", json.dumps(errors)[:2000])
    js("document.getElementById('moment-peak').click(); window.scrollTo(0, 0)")
    screenshot(b, s, os.path.join(tmp, "allocator.png"), whole_page=True)


if __name__ == "__main__":
    sys.exit(main())
