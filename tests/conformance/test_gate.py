"""Gate mode (issue 12, item 2): ``--gate`` exits 0 when conformant, 1 on departures and 3
when the gate could not judge (a crash, a timeout, nothing judged); a departure and a crash
together are 3 unless --gate-crash-is-departure; --device cuda without CUDA stays a usage
error (4) naming why; a pytest run that is not a conformance run is left alone."""

from __future__ import annotations

import pytest

from conformance import gate
from tests.processes import run_pytest


def run_fixtures(tmp_path, selection: str, *args) -> tuple:
    return run_pytest(
        "conformance/suite/test_fixtures.py",
        "-k",
        selection,
        "--report-dir",
        tmp_path / "reports",
        *args,
        timeout=300,
    )


REFERENCE, DOUBLE = ("--impl", "tests.adapters:Reference"), ("--impl", "tests.adapters:DoubleLoss")
CRASH, HANG, GPU = (
    ("--impl", "tests.adapters:Crash"),
    ("--impl", "tests.adapters:Hang"),
    ("--impl", "tests.adapters:Gpu"),
)


@pytest.mark.parametrize(
    "selection,args,code,says",
    [
        ("S4_ or Y5_two", (*REFERENCE, "--gate"), 0, "exit 0: conformant: 2 conformance test(s) judged"),
        ("double and (S4_ or Y5_two)", (*DOUBLE, "--gate"), 1, "exit 1: departures: 2 conformance test(s) failed"),
        ("hang and (S4_ or Y5_two)", (*HANG, "--timeout", "1", "--gate"), 3, "Y5_two_targets_one_cell]: timed out"),
        ("hang and (S4_ or Y5_two)", (*HANG, "--timeout", "1", "--gate", "--gate-crash-is-departure"), 1, "exit 1"),
        ("gpu-cuda and (S4_ or Y5_two)", (*GPU, "--gate"), 3, "no conformance test was judged"),
        ("gpu-cuda and (S4_ or Y5_two)", GPU, 0, "2 skipped"),  # without --gate: pytest's code
    ],
    ids=["conformant", "departures", "timeout", "timeout-is-departure", "nothing-judged", "nothing-judged-plain"],
)
def test_gate_exit_codes(tmp_path, selection, args, code, says):
    got, out = run_fixtures(tmp_path, selection, *args)
    assert got == code, out[-3000:]
    assert says in out, out[-3000:]


@pytest.mark.parametrize(
    "args,code",
    [(("--gate",), gate.COULD_NOT_JUDGE), (("--gate", "--gate-crash-is-departure"), 1), ((), 1)],
    ids=["gate", "crash-is-departure", "plain"],
)
def test_a_departure_and_a_crash_is_could_not_judge(tmp_path, args, code):
    got, out = run_fixtures(tmp_path, "(crash and Y5_two) or (double and S4_)", *CRASH, *DOUBLE, "-n", "2", *args)
    assert got == code, out[-3000:]
    if args == ("--gate",):
        assert "exit 3: could not judge:" in out and "Y5_two_targets_one_cell]: crashed its worker" in out, out[-3000:]


def test_device_cuda_without_cuda_is_a_usage_error_that_says_why(tmp_path):
    got, out = run_fixtures(tmp_path, "S4_", *GPU, "--device", "cuda", "--gate")
    assert got == 4, out[-3000:]
    assert "--device cuda: no selected implementation can run: gpu-cuda-float64: no CUDA device here" in out


def test_runs_that_are_not_conformance_runs_are_left_alone(tmp_path):
    (tmp_path / "test_other.py").write_text("import pytest\n\ndef test_skipped():\n    pytest.skip('not here')\n")
    got, out = run_pytest(tmp_path / "test_other.py", "--gate", "--shard", "2/2", cwd=tmp_path, timeout=300)
    assert got == 0 and "1 skipped" in out and "conformance gate" not in out, out[-3000:]
