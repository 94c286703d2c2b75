"""Run the conformance suite on the whole zoo in one pytest process and read the verdicts.

``run_zoo`` runs, from a scratch directory (so failing cases land there, not in the
repository's reports/):

    python -m pytest <repo>/conformance --impl tests.zoo.adapters:<name> ... \
        --hypothesis-profile <profile> -n <workers> -p no:cacheprovider \
        --junitxml <dir>/zoo.xml --report-dir <dir>/reports

and ``read_junit`` assigns each JUnit testcase to its adapter by the test id, which holds
``<adapter name>-cpu-<dtype>``.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = "tests.zoo.adapters"
_TARGET = re.compile(r"[\[-]([A-Za-z0-9_]+)-cpu-(float64|float32|float16|bfloat16)(?=[-\]])")


@dataclass
class Outcome:
    """One adapter's tests: counts, seconds (JUnit durations) and its failures in file order."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)  # (test name, seconds, message text)

    @property
    def first_failure_s(self) -> float | None:
        """Duration of its quickest failing test (search, shrinking and reporting), seconds."""
        return min((s for _, s, _ in self.failures), default=None)

    @property
    def property_failures(self) -> list:
        """Its failures in the Hypothesis property tests (test_property)."""
        return [f for f in self.failures if f[0].startswith("test_property[")]

    @property
    def first_property_failure_s(self) -> float | None:
        """Duration of its quickest failing property test, seconds."""
        return min((s for _, s, _ in self.property_failures), default=None)


@dataclass
class ZooRun:
    outcomes: dict  # adapter name -> Outcome
    returncode: int
    wall_s: float
    cpu_s: float  # user + system time of the pytest process and its workers
    output: str  # the tail of pytest's output


def read_junit(path: Path) -> dict:
    """adapter name -> Outcome, from a pytest JUnit XML file. Tests of no adapter are left out."""
    outcomes: dict = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        found = _TARGET.search(case.get("name", ""))
        if not found:
            continue
        out = outcomes.setdefault(found.group(1), Outcome())
        seconds = float(case.get("time", 0.0))
        out.seconds += seconds
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            out.failed += 1
            out.failures.append((case.get("name"), seconds, bad.text or bad.get("message", "")))
        elif case.find("skipped") is not None:
            out.skipped += 1
        else:
            out.passed += 1
    return outcomes


def run_zoo(workdir: Path, names, profile: str, workers: int = 2, timeout_s: float = 3600) -> ZooRun:
    """Run the suite on adapters ``names`` of tests.zoo.adapters from ``workdir`` with the
    Hypothesis ``profile`` (ci, or zoo-noshrink of tests/zoo/profiles.py); see the module doc."""
    workdir = Path(workdir)
    junit = workdir / "zoo.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "conformance"),
        "-p",
        "tests.zoo.profiles",
        "--hypothesis-profile",
        profile,
        "-n",
        str(workers),
        "-p",
        "no:cacheprovider",
        "-q",
        f"--junitxml={junit}",
        "--report-dir",
        str(workdir / "reports"),
    ]
    for name in names:
        cmd += ["--impl", f"{ADAPTERS}:{name}"]
    # One thread per worker: xdist already uses the cores, and torch's intra-op threads on
    # tiny tensors cost more than they save (measured 30x on the zoo's target building).
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout_s)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = (result.stdout + result.stderr)[-6000:]
    if not junit.exists():
        raise RuntimeError(f"pytest wrote no JUnit XML (exit {result.returncode}):\n{output}")
    return ZooRun(read_junit(junit), result.returncode, wall, cpu, output)


def short_message(text: str, lines: int = 30) -> str:
    """The informative part of a failure text: the assertion message and Hypothesis' example."""
    keep = [ln[1:] for ln in text.splitlines() if ln.startswith("E ")]
    return textwrap.dedent("\n".join((keep or text.splitlines())[:lines]))
