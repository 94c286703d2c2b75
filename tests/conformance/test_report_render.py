"""The HTML report as a person sees it: rendered by headless Chromium at 1400x900, the summary
and the first failure with its repro command are on the first screen.

Skipped when no Chromium is installed (Debian: ``apt-get install chromium``).
"""

from pathlib import Path

import pytest

from scripts import render_report
from tests.processes import run_pytest

SIZE = (1400, 900)

pytestmark = pytest.mark.skipif(
    render_report.find_chromium() is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    """The HTML report of a small run (fixtures and coverage) in which "first-row" fails."""
    tmp = tmp_path_factory.mktemp("render")
    code, out = run_pytest(
        "conformance",
        "--hypothesis-profile",
        "ci",
        "--impl",
        "tests.adapters:Reference",
        "--impl",
        "tests.adapters:FirstRowWins",
        "-k",
        "test_fixture or test_returns",
        "--report-dir",
        tmp / "reports",
    )
    assert code == 1, out[-3000:]
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
    assert "first-row" in boxes["#summary"]["text"] and "reference" in boxes["#summary"]["text"]
    assert (
        "--impl tests.adapters:FirstRowWins --device cpu --dtype float64"
        in boxes["#failures .failure .repro code"]["text"]
    )
    assert "Mismatched elements" in boxes["#failures .failure pre"]["text"]
    assert "first-rowcpufloat64yololayer0.tcls" in boxes["#coverage"]["text"]  # textContent of the row
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
