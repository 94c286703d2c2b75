"""The suite installed from a wheel and run from another directory, as a user runs it (issue 11).

The wheel is built from this checkout and installed with ``pip install --no-deps --target``
into a scratch folder put first on PYTHONPATH: its dependencies (pytest, Hypothesis, NumPy)
are this environment's, and nothing of the checkout is importable from the empty working
directory, so the plugin (pytest11 entry point), the tests and the golden fixtures all come
from the wheel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MINE = """
from reference import ssd


class Mine:
    '''An SSD loss outside the project: the reference itself.'''

    name, devices, dtypes = "mine", ("cpu",), ("float64",)

    def skip_reason(self, device):
        return None

    def ssd(self, case, device, dtype):
        return ssd.evaluate(case)


adapter = Mine()
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple:
    """(site folder holding the installed wheel, an empty working directory, environment)."""
    tmp = tmp_path_factory.mktemp("install")
    wheels, site, work, own = tmp / "wheels", tmp / "site", tmp / "work", tmp / "own"
    for folder in (work, own):
        folder.mkdir()
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True, timeout=600)
    (wheel,) = wheels.glob("*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=600)
    (own / "mine.py").write_text(MINE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(own)])}
    return site, work, env


def run(installed, *args) -> subprocess.CompletedProcess:
    site, work, env = installed
    return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=900)


def test_installed_copy_is_the_one_imported(installed):
    site, _, _ = installed
    done = run(installed, "-c", "import conformance.fixtures as f; print(f.__file__); print(f.DEFAULT_DIR)")
    assert done.stdout.split() == [str(site / "conformance" / "fixtures.py"), str(site / "conformance" / "golden")]


def test_pytest_pyargs_runs_the_whole_suite_on_an_outside_adapter(installed):
    done = run(
        installed,
        "-m",
        "pytest",
        "--pyargs",
        "conformance",
        "--impl",
        "mine:adapter",
        "-p",
        "no:cacheprovider",
        "--hypothesis-profile",
        "ci",
        "--report-dir",
        "reports",
        "-rs",
        "--junitxml",
        "junit.xml",
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "conformance: mine-cpu-float64" in out and "covers no YOLOv3 loss" in out
    junit = ET.parse(installed[1] / "junit.xml").getroot()
    passed = {c.get("name") for c in junit.iter("testcase") if len(c) == 0 or all(e.tag == "properties" for e in c)}
    assert {
        "test_property[mine-cpu-float64-ssd-plain]",
        "test_property[mine-cpu-float64-ssd-no_truths]",
        "test_fixture[mine-cpu-float64-S4_later_truth_wins]",
        "test_returns[mine-cpu-float64-ssd-matched]",
        "test_reference_reproduces_fixture[Y1_decode]",
    } <= passed
    assert (installed[1] / "reports" / "latest.json").exists()


def test_regen_checks_the_packaged_fixtures_and_writes_where_asked(installed):
    site, work, _ = installed
    done = run(installed, "-m", "conformance", "regen", "--check")
    assert done.returncode == 0 and str(site / "conformance" / "golden") in done.stdout + done.stderr, done.stderr
    done = run(installed, "-m", "conformance", "regen", "--dir", "mine")
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (work / "mine").glob("*.npz"))
    packaged = sorted(p.name for p in (site / "conformance" / "golden").glob("*.npz"))
    assert written == packaged and len(written) > 80


def test_other_pytest_runs_are_left_alone(installed):
    """The entry point loads the plugin everywhere; outside a conformance run it adds no
    header, no report and no Hypothesis profile: the settings a test sees are those of the
    same run without the plugin (Hypothesis' own, "ci" where the CI variable is set)."""
    _, work, _ = installed
    (work / "test_other.py").write_text(
        "from hypothesis import settings\n\ndef test_default_profile():\n    print('DEFAULT', settings.default)\n"
    )
    seen = []
    for without in ((), ("-p", "no:conformance")):
        done = run(installed, "-m", "pytest", "test_other.py", "-p", "no:cacheprovider", "-s", *without)
        assert done.returncode == 0, done.stdout[-2000:]
        seen.append(re.findall(r"DEFAULT settings\(.*\)", done.stdout))
        assert "conformance:" not in done.stdout
    assert seen[0] == seen[1] and seen[0]
    done = run(installed, "-m", "pytest", "test_other.py", "-p", "no:cacheprovider", "--report-dir", "other")
    assert done.returncode == 0 and not (work / "other").exists()
