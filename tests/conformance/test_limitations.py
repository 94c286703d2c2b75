"""Declared limitations (issue 11, item 4): the seed, faithful where the spec departs from it
on purpose, declares the rules it does not follow and gets a verdict on everything else.

The adapters are tests/zoo's outsider ports of the two seeds with the seed's own behaviour
switched on where the spec decides differently: cx = 1 indexes past the grid (Y3), empty
means are NaN (Y8, S12), an image without truths goes through match() and its max() fails
(S13). One suite run (ci profile, float32) holds the seed without declarations, the seed
declaring Y3-edge, Y8, S12, S13, and that seed with the seed's global-max mining score as
well (S9, a real departure it does not declare).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DECLARED = ("Y3-edge", "Y8", "S12", "S13")

SEEDS = f"""
from tests.zoo.adapters import ZooAdapter
from tests.zoo.seed_ssd import SsdFlags
from tests.zoo.seed_yolo import YoloFlags


def seed(name, limitations=(), **ssd):
    adapter = ZooAdapter(name, "the seed where the spec departs from it",
                         yolo=YoloFlags(cell="truncate", empty="nan"),
                         ssd=SsdFlags(empty="nan", empty_image="match", **ssd), dtypes=("float32",))
    adapter.limitations = limitations
    return adapter


undeclared = seed("seed")
declared = seed("seed-declared", {DECLARED!r})
global_max = seed("seed-s9", {DECLARED!r}, logsumexp="global")
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(JUnit outcomes {test name: (outcome, text)}, pytest output, report JSON) of one run."""
    tmp = tmp_path_factory.mktemp("limitations")
    (tmp / "seeds.py").write_text(SEEDS)
    options = "-p no:cacheprovider -n 2 -rs --hypothesis-profile ci"
    cmd = [sys.executable, "-m", "pytest", "conformance", *options.split(), "--report-dir", str(tmp / "reports")]
    cmd += ["--junitxml", str(tmp / "junit.xml")]
    for name in ("undeclared", "declared", "global_max"):
        cmd += ["--impl", f"seeds:{name}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    outcomes = {}
    for case in ET.parse(tmp / "junit.xml").getroot().iter("testcase"):
        bad = [e for e in case if e.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = (bad[0].tag if bad else "passed", (bad[0].get("message") or "") if bad else "")
    report = json.loads((tmp / "reports" / "latest.json").read_text())
    return outcomes, done.stdout + done.stderr, report


def mine(outcomes: dict, adapter: str, outcome: str) -> dict:
    return {n: text for n, (o, text) in outcomes.items() if f"[{adapter}-cpu-float32-" in n and o == outcome}


def properties(outcomes: dict, adapter: str, family: str) -> dict:
    """{feature: (outcome, message)} of the property tests of ``adapter`` on ``family``."""
    head = f"test_property[{adapter}-cpu-float32-{family}-"
    return {n[len(head) : -1]: o for n, o in outcomes.items() if n.startswith(head)}


def test_declaring_the_seeds_departures_leaves_a_clean_verdict(run):
    outcomes, out, _ = run
    assert not mine(outcomes, "seed-declared", "failure") and not mine(outcomes, "seed-declared", "error")
    for family, all_declared in (("yolo", "no_targets"), ("ssd", "no_truths")):
        tests = properties(outcomes, "seed-declared", family)
        assert {o for f, (o, _) in tests.items() if f != all_declared} == {"passed"}, tests
        outcome, message = tests[all_declared]  # every case of this feature is decided by a declared rule
        assert outcome == "skipped" and "one of them decides every case drawn here" in message, tests[all_declared]
    skipped = mine(outcomes, "seed-declared", "skipped")
    for fixture, rule in (
        ("Y3_cx_equal_one", "Y3-edge"),
        ("Y8_no_targets", "Y8"),
        ("S12_no_positives", "S12"),
        ("S13_image_without_truths", "S13"),
    ):
        assert f"declares it does not follow {rule} (" in skipped[f"test_fixture[seed-declared-cpu-float32-{fixture}]"]
    assert not any("Y2" in n or "S4_" in n for n in skipped)  # the rest is judged
    assert "seed-declared-cpu-float32" in out and "declares it does not follow Y3-edge, Y8, S12, S13" in out


def test_without_declarations_the_same_seed_fails_exactly_there(run):
    outcomes, _, _ = run
    failed = mine(outcomes, "seed", "failure")
    for family in ("yolo", "ssd"):
        assert "failure" in {o for o, _ in properties(outcomes, "seed", family).values()}
    for fixture in ("Y3_cx_equal_one", "Y8_no_targets", "S12_no_positives", "S13_image_without_truths"):
        assert f"test_fixture[seed-cpu-float32-{fixture}]" in failed
    declared_skips = {n.replace("seed-declared", "seed") for n in mine(outcomes, "seed-declared", "skipped")}
    fixture_failures = {n for n in failed if n.startswith("test_fixture[")}
    assert fixture_failures <= declared_skips, sorted(fixture_failures - declared_skips)


def test_a_real_departure_still_fails_with_its_message(run):
    """The seed's global-max logsumexp (S9) is not declarable: the SSD property finds it."""
    outcomes, _, _ = run
    failed = mine(outcomes, "seed-s9", "failure")
    assert failed and all("-ssd-" in n or "S9" in n or "S10" in n for n in failed), sorted(failed)
    assert "failure" in {o for o, _ in properties(outcomes, "seed-s9", "ssd").values()}
    assert {o for o, _ in properties(outcomes, "seed-s9", "yolo").values()} <= {"passed", "skipped"}


def test_report_shows_the_declarations(run):
    _, _, report = run
    rows = {(r["impl"], r["family"]): r for r in report["matrix"] if r["impl"]}
    assert rows[("seed-declared", "ssd")]["limitations"] == ",".join(DECLARED)
    assert rows[("seed", "ssd")]["limitations"] == ""
