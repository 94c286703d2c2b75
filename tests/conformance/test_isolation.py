"""CUDA fault isolation (issue 12, item 3), on the CPU with a simulated sticky error: a
test whose kernel hits a device-side assert is blamed alone, and the tests after it run
in a fresh process (xdist) or are reported as not run (without xdist, exit 3)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from conformance import gate
from tests.processes import run_pytest

try:
    ExceptionGroup
except NameError:  # Python 3.10: Hypothesis' dependency
    from exceptiongroup import ExceptionGroup

STICKY = '''
import os

from tests.adapters import Reference

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.log")
TRIGGER = "S3_best_prior_tie"
BROKEN = False  # set by the device-side assert: this process's "CUDA context" is unusable from then on


def log(line):
    with open(LOG, "a") as f:
        f.write(f"{os.getpid()} {line}\\n")


class Sticky(Reference):
    """SSD: the reference, except that the case TRIGGER hits a device-side assert, after
    which every call in the same process fails as in a broken CUDA context."""

    name = "sticky"

    def ssd(self, case, device, dtype):
        global BROKEN
        if BROKEN:
            log(f"broken {case.name}")
            raise RuntimeError("CUDA error: unspecified launch failure (a previous error left the context unusable)")
        if case.name == TRIGGER:
            BROKEN = True
            log(f"assert {case.name}")
            raise RuntimeError(
                "CUDA error: device-side assert triggered\\nCUDA kernel errors might be asynchronously reported"
            )
        log(f"ok {case.name}")
        return super().ssd(case, device, dtype)
'''
FIXTURES = ("S2_", "S3_", "S4_", "S5_", "S6_", "S7_", "S8_", "S9_")  # 9 SSD fixtures, S3 the second
TRIGGERED = "conformance/suite/test_fixtures.py::test_fixture[sticky-cpu-float64-S3_best_prior_tie]"


def run_sticky(tmp_path, *args):
    (tmp_path / "sticky.py").write_text(STICKY)
    return run_pytest(
        "conformance/suite/test_fixtures.py",
        "--impl",
        "sticky:Sticky",
        "-k",
        f"sticky and ({' or '.join(FIXTURES)})",
        "--report-dir",
        tmp_path / "reports",
        *args,
        path=[tmp_path],
        timeout=300,
    )


def calls(tmp_path) -> list:
    """(pid, what, case) of every adapter call, in order."""
    return [tuple(line.split()) for line in (tmp_path / "calls.log").read_text().splitlines()]


def test_xdist_blames_only_the_asserting_test_and_goes_on_in_a_fresh_worker(tmp_path):
    code, out = run_sticky(tmp_path, "-n", "2", "--max-worker-restart", "4", "--gate", "--junitxml", tmp_path / "j.xml")
    assert code == 1, out[-4000:]  # one departure, and the run is complete
    assert "1 failed, 8 passed" in out and "sticky device error in " + TRIGGERED in out, out[-4000:]
    log = calls(tmp_path)
    (asserted,) = [i for i, (_, what, _) in enumerate(log) if what == "assert"]
    pid = log[asserted][0]
    assert [c for c in log[asserted + 1 :] if c[0] == pid] == []  # the worker ended right after
    assert not [c for c in log if c[1] == "broken"]  # no test ran in the broken process
    doc = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert "incomplete" not in doc  # nothing crashed, nothing lost, nothing not run
    assert doc["summary"]["outcomes"] == {"failed": 1, "passed": 8}
    (failure,) = doc["failures"]
    assert failure["test"] == TRIGGERED and "device-side assert triggered" in failure["message"]
    assert {e["cases"] for e in doc["aggregates"]} == {8}  # the ended worker's records arrived too
    cases = {c.get("name"): [e.tag for e in c if e.tag != "properties"] for c in ET.parse(tmp_path / "j.xml").iter()}
    cases = {k: v for k, v in cases.items() if k and k.startswith("test_fixture[")}
    assert len(cases) == 9 and cases.pop("test_fixture[sticky-cpu-float64-S3_best_prior_tie]") == ["failure"]
    assert all(v == [] for v in cases.values()), cases


@pytest.mark.parametrize("gate_flag", [(), ("--gate",)], ids=["plain", "gate"])
def test_without_xdist_the_session_stops_with_could_not_judge(tmp_path, gate_flag):
    code, out = run_sticky(tmp_path, *gate_flag)
    assert code == gate.COULD_NOT_JUDGE, out[-4000:]
    assert f"{TRIGGERED} raised a sticky device error (RuntimeError: CUDA error: device-side assert" in out
    assert "run with -n (pytest-xdist)" in out and "7 test(s) did not run" in out, out[-4000:]
    assert not [c for c in calls(tmp_path) if c[1] == "broken"]
    doc = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert doc["summary"]["outcomes"] == {"failed": 1, "passed": 1}  # S2, then S3 asserts
    assert len(doc["incomplete"]["not_run"]) == 7 and doc["incomplete"]["crashed"] == []


def test_sticky_errors_are_found_in_causes_contexts_and_exception_groups():
    assert gate.device_error(RuntimeError("CUDA error: an illegal memory access was encountered\nmore")) == (
        "RuntimeError: CUDA error: an illegal memory access was encountered"
    )
    try:
        try:
            raise RuntimeError("Triton Error [CUDA]: device-side assert triggered")
        except RuntimeError as inner:
            raise ValueError("adapter failed") from inner
    except ValueError as outer:
        chained = outer
    assert gate.device_error(chained) == "RuntimeError: Triton Error [CUDA]: device-side assert triggered"
    group = ExceptionGroup("Hypothesis found 2 distinct failures", [AssertionError("x"), chained])
    assert gate.device_error(group).startswith("RuntimeError: Triton Error")
    assert gate.device_error(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")) is None
    assert gate.device_error(AssertionError("Mismatched elements: 3 / 8")) is None
