"""The HTML report as a person sees it: rendered by headless Chromium at 1400x900, the summary
and the first failure with its repro command are on the first screen.

Skipped when no Chromium is installed (Debian: ``apt-get install chromium``).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import render_report

ROOT = Path(__file__).resolve().parents[2]
SIZE = (1400, 900)

pytestmark = pytest.mark.skipif(
    render_report.find_chromium() is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)

ADAPTERS = '''
from dataclasses import replace

from reference import ssd as rs
from reference import yolo as ry


class Reference:
    """The float64 reference itself: passes."""
    name, devices, dtypes = "reference", ("cpu",), ("float64",)

    def skip_reason(self, device):
        return None

    def yolo(self, case, device, dtype):
        return ry.evaluate(case, prob_dtype=dtype)

    def ssd(self, case, device, dtype):
        return rs.evaluate(case)


class Reversed:
    """YOLOv3 only: truths taken in reverse order, so where two share a cell the first wins
    (the spec says the last); no class targets (tcls) returned."""
    name, devices, dtypes = "reversed", ("cpu",), ("float64",)

    def skip_reason(self, device):
        return None

    def yolo(self, case, device, dtype):
        out = ry.evaluate(replace(case, targets=case.targets[::-1].copy()), prob_dtype=dtype)
        return {k: v for k, v in out.items() if not k.endswith(".tcls")}
'''


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    """The HTML report of a small run (fixtures and coverage) in which "reversed" fails."""
    tmp = tmp_path_factory.mktemp("render")
    (tmp / "render_adapters.py").write_text(ADAPTERS)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "conformance",
        "-p",
        "no:cacheprovider",
        "--hypothesis-profile",
        "ci",
        "--impl",
        "render_adapters:Reference",
        "--impl",
        "render_adapters:Reversed",
        "-k",
        "test_fixture or test_returns",
        "--report-dir",
        str(tmp / "reports"),
    ]
    done = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(tmp)}
    )
    assert done.returncode == 1, (done.stdout + done.stderr)[-3000:]
    return tmp / "reports" / "latest.html"


def first_screen_problems(layout: dict, size=SIZE) -> list:
    """What keeps a reader from seeing, on the first screen of ``size``, the summary and the
    first failure with its repro command, in the order summary, failures, coverage, detail;
    [] when nothing does. ``layout``: render_report.boxes (page coordinates in CSS pixels)."""
    width, height = size
    if layout["viewport"]["width"] != width:
        return [f"rendered {layout['viewport']['width']} px wide, not {width}"]
    b = layout["boxes"]
    absent = [
        s
        for s in (
            "#summary",
            "#failures .failure",
            "#failures .failure .repro code",
            "#failures .failure pre",
            "#coverage",
            "#detail",
        )
        if b.get(s) is None
    ]
    if absent:
        return [f"not in the page: {', '.join(absent)}"]
    summary, failure, repro, message = (
        b["#summary"],
        b["#failures .failure"],
        b["#failures .failure .repro code"],
        b["#failures .failure pre"],
    )
    problems = []
    if not (0 <= summary["top"] and summary["bottom"] <= height):
        problems.append(
            f"the summary spans {summary['top']:.0f}-{summary['bottom']:.0f} px, not within the first {height} px"
        )
    if not (0 <= repro["top"] and repro["bottom"] <= height and repro["width"] > 0):
        problems.append(
            f"the first failure's repro command spans {repro['top']:.0f}-{repro['bottom']:.0f} px, "
            f"not within the first {height} px"
        )
    if not message["top"] + 40 <= height:  # at least its first lines show
        problems.append(f"the first failure's message starts at {message['top']:.0f} px, below the first screen")
    if not repro["text"].startswith("python -m conformance repro "):
        problems.append(f"the first failure's repro box holds {repro['text'][:80]!r}")
    order = ["#summary", "#failures .failure", "#coverage", "#detail"]
    tops = [b[s]["top"] for s in order]
    if tops != sorted(tops) or summary["bottom"] > failure["top"]:
        problems.append("sections out of order: " + ", ".join(f"{s} at {t:.0f} px" for s, t in zip(order, tops)))
    return problems


def test_summary_and_first_failure_with_its_repro_command_on_the_first_screen(report_html, tmp_path):
    layout = render_report.boxes(report_html, size=SIZE)
    assert first_screen_problems(layout) == []
    boxes = layout["boxes"]
    assert "reversed" in boxes["#summary"]["text"] and "reference" in boxes["#summary"]["text"]
    assert (
        "--impl render_adapters:Reversed --device cpu --dtype float64"
        in boxes["#failures .failure .repro code"]["text"]
    )
    assert "Mismatched elements" in boxes["#failures .failure pre"]["text"]
    assert "reversedcpufloat64yololayer0.tcls" in boxes["#coverage"]["text"]  # textContent of the row
    png = render_report.screenshot(report_html, tmp_path / "report.png", size=SIZE)
    assert render_report.png_size(png) == SIZE


def test_the_check_fails_when_the_failures_come_after_the_detail(report_html, tmp_path):
    """The check above can fail: the same report with its failures moved to the end."""
    text = report_html.read_text()
    start, end = text.index('<section id="failures">'), text.index('<section id="coverage">')
    failures = text[start:end]
    text = text[:start] + text[end:]
    at = text.index("<script>")
    moved = tmp_path / "moved.html"
    moved.write_text(text[:at] + failures + text[at:])
    problems = first_screen_problems(render_report.boxes(moved, size=SIZE))
    assert any(p.startswith("sections out of order") for p in problems), problems
