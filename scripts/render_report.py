"""Render a conformance HTML report in headless Chromium, as a person would see it.

    python scripts/render_report.py reports/latest.html latest.png     PNG of the first screen (1400x900)
    python scripts/render_report.py reports/latest.html --boxes        where #summary, the first failure, ...
                                                                      lie on the page (JSON, CSS pixels)

Needs Chromium (Debian: ``apt-get install chromium``). ``screenshot`` writes the PNG with
``--screenshot``; ``boxes`` copies the report with a small script appended that writes the
bounding boxes (getBoundingClientRect, relative to the top of the first screen) and text of
the selected elements into the page, and reads them back from ``--dump-dom``.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SIZE = (1400, 900)  # CSS pixels: a laptop browser window
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# --headless is Chromium's new headless mode since version 132 (the page is laid out in a
# window of exactly --window-size); no sandbox (root in containers), no GPU, no scrollbars
# (they would take 15 px of the width), /tmp instead of a small /dev/shm.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
)
SELECTORS = (
    "#summary",
    "#failures",
    "#failures .failure",
    "#failures .failure .repro code",
    "#failures .failure pre",
    "#coverage",
    "#detail",
)
_OUT_ID = "render-report-boxes"


class RenderError(RuntimeError):
    """Chromium is missing, failed, or produced no output; the message says which and why."""


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on PATH, None if there is none."""
    return next((p for p in map(shutil.which, CHROMIUM) if p), None)


def _run(args: list, chromium: str | None, timeout: float) -> str:
    """Run Chromium with FLAGS, a fresh profile and ``args``; its stdout. RenderError on failure."""
    exe = chromium or find_chromium()
    if exe is None:
        raise RenderError(f"no Chromium found (looked for {', '.join(CHROMIUM)} on PATH)")
    with tempfile.TemporaryDirectory(prefix="render-report-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RenderError(f"{exe} did not finish within {timeout} s: {' '.join(cmd)}") from None
    if done.returncode != 0:
        raise RenderError(f"{exe} exited with {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def screenshot(html_path, png_path, size=SIZE, chromium: str | None = None, timeout: float = 120) -> Path:
    """Write a PNG of the first screen (``size`` = (width, height) CSS pixels) of ``html_path``."""
    png_path = Path(png_path).resolve()
    png_path.unlink(missing_ok=True)
    _run(
        [f"--window-size={size[0]},{size[1]}", f"--screenshot={png_path}", Path(html_path).resolve().as_uri()],
        chromium,
        timeout,
    )
    if not png_path.is_file():
        raise RenderError(f"Chromium wrote no screenshot to {png_path}")
    return png_path


def png_size(png_path) -> tuple:
    """(width, height) in pixels from a PNG's header."""
    head = Path(png_path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise RenderError(f"{png_path}: not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


_MEASURE = """<script>(() => {
  const out = {viewport: {width: innerWidth, height: innerHeight}, boxes: {}};
  for (const s of %s) {
    const e = document.querySelector(s);
    if (!e) { out.boxes[s] = null; continue; }
    const r = e.getBoundingClientRect();
    out.boxes[s] = {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width,
                    height: r.height, text: e.textContent.slice(0, 2000)};
  }
  const pre = document.createElement("pre");
  pre.id = "%s";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();</script>"""


def boxes(html_path, selectors=SELECTORS, size=SIZE, chromium: str | None = None, timeout: float = 120) -> dict:
    """{"viewport": {"width", "height"}, "boxes": {selector: None or {"top", "bottom", "left",
    "right", "width", "height", "text"}}} of the first element each selector matches, as
    laid out in a ``size`` window: CSS pixels from the top left of the page (not scrolled),
    so an element is on the first screen of ``size`` when 0 <= top and bottom <= size[1].

    The viewport is what the page saw: its width is size[0]; its height is less than
    size[1] under --dump-dom (Chromium 150 keeps 143 px for a window frame it does not
    draw), which moves nothing as long as the page's CSS does not use viewport heights
    (the report's does not); --screenshot does show size[1] pixels."""
    text = Path(html_path).read_text(encoding="utf-8")
    script = _MEASURE % (json.dumps(list(selectors)), _OUT_ID)
    at = text.rfind("</body>")
    text = text[:at] + script + text[at:] if at >= 0 else text + script
    with tempfile.TemporaryDirectory(prefix="render-report-page-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(text, encoding="utf-8")
        dom = _run([f"--window-size={size[0]},{size[1]}", "--dump-dom", page.as_uri()], chromium, timeout)
    found = re.search(f'<pre id="{_OUT_ID}">(.*?)</pre>', dom, re.S)
    if not found:
        raise RenderError(f"the measuring script left no result in the page (dump-dom gave {len(dom)} chars)")
    return json.loads(html.unescape(found.group(1)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", help="the report, e.g. reports/latest.html")
    parser.add_argument("png", nargs="?", help="where to write the PNG of the first screen")
    parser.add_argument("--boxes", action="store_true", help="print where the report's sections lie (JSON)")
    parser.add_argument("--size", default=f"{SIZE[0]}x{SIZE[1]}", help="window WIDTHxHEIGHT (default %(default)s)")
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if not (args.png or args.boxes):
        parser.error("give a PNG path, --boxes, or both")
    try:
        if args.png:
            print(screenshot(args.html, args.png, size))
        if args.boxes:
            print(json.dumps(boxes(args.html, size=size), indent=2))
    except (RenderError, OSError) as exc:
        print(f"render_report: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
