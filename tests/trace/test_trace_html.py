#!/usr/bin/env python3
"""The heap map page in a real browser: headless Chromium, driven over the
DevTools protocol (--remote-debugging-pipe, Python 3 stdlib only), opens
the page brisk-trace wrote, moves the slider with real input events (a
mouse click on it, then an arrow key), points at a chunk, reads back what
the page shows, and takes a screenshot.

Exits 77 (ctest's skip code, with a message) when no Chromium is found.

usage: test_trace_html.py BRISK_TRACE GEN_SYNTHETIC_PY [SCREENSHOT.png [TRACE.rep...]]
  With SCREENSHOT the picture is kept there (docs/heapmap.png is made so);
  with TRACEs those are replayed instead of small synthetic ones.
"""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

tool, gen = sys.argv[1], sys.argv[2]
shot_path = sys.argv[3] if len(sys.argv) > 3 else None
given_traces = sys.argv[4:]
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
    chromium = find_chromium()
    if chromium is None:
        print("SKIP: no Chromium found (install Debian's chromium package, or set CHROMIUM); "
              "the heap map page was not tested in a browser")
        return 77
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

        browser = DevTools(chromium, os.path.join(tmp, "profile"))
        try:
            run_browser_checks(browser, page, tmp)
        finally:
            browser.close()
    print(f"test_trace_html: {checks - failures} passed, {failures} failed")
    return 1 if failures or checks == 0 else 0


def run_browser_checks(b, page, tmp):
    target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    s = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    b.send("Runtime.enable", session=s)
    b.send("Page.enable", session=s)
    b.send("Emulation.setDeviceMetricsOverride",
           {"width": 1180, "height": 1500, "deviceScaleFactor": 1, "mobile": False}, session=s)
    b.send("Page.navigate", {"url": "file://" + page}, session=s)

    def js(expr):
        r = b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=s)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    deadline = time.time() + 30
    while time.time() < deadline:
        if js("document.readyState === 'complete' && document.body.dataset.snapshot !== undefined"):
            break
        time.sleep(0.1)
    state = lambda: js("({snap: document.body.dataset.snapshot, "
                       "label: document.getElementById('snapshot-label').textContent, "
                       "max: document.getElementById('slider').max, "
                       "info: document.getElementById('chunk-info').textContent})")
    first = state()
    check(first["snap"] is not None, "the page draws a snapshot on load", str(first))
    check("(peak use)" in first["label"], "it opens at peak use", first["label"])
    last = int(first["max"])
    check(last >= 30, "snapshots along the trace", first["max"])

    def mouse(kind, x, y, buttons=0, clicks=0):
        b.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left"
               if kind != "mouseMoved" or buttons else "none", "buttons": buttons,
               "clickCount": clicks}, session=s)

    def key(name, code):
        for kind in ("rawKeyDown", "keyUp"):
            b.send("Input.dispatchKeyEvent", {"type": kind, "key": name, "code": name,
                   "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}, session=s)

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
    shot = b.send("Page.captureScreenshot", {"format": "png"}, session=s)
    png = base64.b64decode(shot["data"])
    check(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000, "a screenshot is taken",
          str(len(png)))
    out = shot_path or os.path.join(tmp, "heapmap.png")
    with open(out, "wb") as f:
        f.write(png)
    if shot_path:
        print(f"screenshot written to {shot_path}")


if __name__ == "__main__":
    sys.exit(main())
