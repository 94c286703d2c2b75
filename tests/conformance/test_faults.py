"""Faults in the implementation under test never hang the run or lose its report (issue 9,
items 1-5): timeouts, crashes with and without xdist, atomic and uniquely named report
files, the report directory checked at start and failing cases kept under it."""

from __future__ import annotations

import json
import multiprocessing
import threading

import pytest

from conformance import report
from tests.processes import ROOT, run_pytest


def pytest_run(tmp_path, *args, report_dir=None, tests="conformance/suite/test_coverage.py", cwd=ROOT):
    """pytest on ``tests`` in ``cwd``, the report in ``report_dir`` (default tmp_path / "reports")."""
    return run_pytest(tests, "--report-dir", report_dir or tmp_path / "reports", *args, cwd=cwd, timeout=300)


def latest(tmp_path) -> dict:
    return json.loads((tmp_path / "reports" / "latest.json").read_text())


# ---------------------------------------------------------------- item 1: hang


@pytest.mark.parametrize("xdist", [(), ("-n", "2")], ids=["plain", "xdist"])
def test_hanging_adapter_fails_with_timeout_and_the_run_goes_on(tmp_path, xdist):
    code, out = pytest_run(
        tmp_path, "--impl", "tests.adapters:Hang", "--timeout", "2", "-k", "yolo-layer0.tx or ssd-loss_l", *xdist
    )
    assert code == 1, out[-3000:]
    assert "1 failed, 1 passed" in out and "Timeout" in out, out[-3000:]
    doc = latest(tmp_path)
    assert doc["summary"]["outcomes"] == {"failed": 1, "passed": 1}
    (failure,) = doc["failures"]
    assert "hang-cpu-float64-yolo-layer0.tx" in failure["test"] and "Timeout" in failure["text"]
    assert "incomplete" not in doc


def test_default_timeout_is_shown_and_overridable(tmp_path):
    code, out = pytest_run(tmp_path, "--impl", "tests.adapters:Hang", "--co", "-q", "-v")
    assert code == 0 and "timeout: 300.0s" in out, out[-3000:]
    code, out = pytest_run(tmp_path, "--impl", "tests.adapters:Hang", "--co", "-q", "-v", "--timeout", "7")
    assert code == 0 and "timeout: 7.0s" in out, out[-3000:]


# ---------------------------------------------------------------- item 2: crash


def test_crash_without_xdist_leaves_an_incomplete_report_and_the_test_it_died_in(tmp_path):
    code, out = pytest_run(tmp_path, "--impl", "tests.adapters:Crash", "-k", "ssd-loss_l or yolo-layer0.tx")
    assert code == 3, out[-3000:]
    doc = latest(tmp_path)
    assert "process died" in doc["incomplete"]["reason"]
    (log,) = (tmp_path / "reports").glob("*.log")
    assert log.read_text().splitlines()[-1] == (
        "started conformance/suite/test_coverage.py::test_returns[crash-cpu-float64-yolo-layer0.tx]"
    )
    assert "INCOMPLETE" in (tmp_path / "reports" / "latest.md").read_text()


def test_crash_with_xdist_names_the_crashed_test_and_the_lost_worker(tmp_path):
    code, out = pytest_run(tmp_path, "--impl", "tests.adapters:Crash", "-n", "2", "-k", "ssd-loss or yolo-layer0.tx")
    assert code == 1, out[-3000:]
    doc = latest(tmp_path)
    crashed = "conformance/suite/test_coverage.py::test_returns[crash-cpu-float64-yolo-layer0.tx]"
    assert doc["incomplete"]["crashed"] == [crashed]
    assert any(crashed in w["tests"] for w in doc["incomplete"]["workers_lost"])
    assert doc["incomplete"]["not_run"] == []
    assert doc["summary"]["outcomes"]["passed"] == 2
    assert f"crashed: {crashed}" in (tmp_path / "reports" / "latest.md").read_text()
    assert not list((tmp_path / "reports").glob("*.log"))


def test_tests_never_run_after_xdist_gives_up_are_listed(tmp_path):
    code, out = pytest_run(
        tmp_path,
        "--impl",
        "tests.adapters:Crash",
        "-n",
        "1",
        "--max-worker-restart",
        "0",
        "-k",
        "yolo-layer0.output or ssd",
    )
    assert code != 0, out[-3000:]
    never = latest(tmp_path)["incomplete"]["not_run"]
    assert len(never) == 10 and all("crash-cpu-float64-ssd-" in t for t in never), never


def test_complete_run_has_no_incomplete_section(tmp_path):
    code, out = pytest_run(tmp_path, "--impl", "tests.adapters:Hang", "-k", "ssd-loss")
    assert code == 0, out[-3000:]
    assert "incomplete" not in latest(tmp_path)
    assert not list((tmp_path / "reports").glob("*.log"))


# ---------------------------------------------------------------- item 3: atomic latest.*


def test_readers_never_see_a_partial_report(tmp_path):
    big = {
        "format": 1,
        "aggregates": [],
        "failures": [{"test": f"t{i}", "when": "call", "text": "x" * 2000} for i in range(500)],
        "summary": {
            "quantities": 0,
            "comparisons": 0,
            "failed_comparisons": 0,
            "ties": 0,
            "failed_tests": 500,
            "outcomes": {},
        },
        "bins": list(report.BINS),
        "bin_upper": [],
        "pass_bins": report.PASS_BINS,
    }
    report.write(big, tmp_path, run="r")
    bad, reads, done = [], [0], threading.Event()

    def reader():
        while not done.is_set():
            try:
                json.loads((tmp_path / "latest.json").read_text())
            except ValueError as exc:
                bad.append(exc)
            reads[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            report.write(big, tmp_path, run="r")
    finally:
        done.set()
        thread.join()
    assert reads[0] > 0 and not bad, f"{len(bad)} of {reads[0]} reads saw a partial file"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- item 4: unique run ids

EMPTY = report.Aggregate().to_dict()
ROUNDS = 40


def _write_many(args):
    """ROUNDS reports under one run id, starting together with the other processes."""
    directory, barrier = args
    barrier.wait()
    return [
        p.name
        for _ in range(ROUNDS)
        for p in report.write(EMPTY, directory, run="20260101T000000Z")
        if p.suffix == ".json" and p.name != "latest.json"
    ]


def test_runs_starting_in_the_same_second_get_different_ids(tmp_path):
    n = 4
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(n)
        with multiprocessing.Pool(n) as pool:
            written = pool.map(_write_many, [(tmp_path, barrier)] * n)
    runs = [name for names in written for name in names]
    assert len(set(runs)) == n * ROUNDS, f"{n * ROUNDS - len(set(runs))} of {n * ROUNDS} runs overwrote another"
    assert sorted(p.name for p in tmp_path.glob("2026*.json")) == sorted(runs)


# ---------------------------------------------------------------- item 5: report dir


def test_report_dir_that_cannot_be_created_is_a_usage_error_at_start(tmp_path):
    (tmp_path / "a_file").write_text("")
    code, out = pytest_run(
        tmp_path,
        "--impl",
        "tests.adapters:Hang",
        "-k",
        "test_fixture and S2_truth_equals_prior",
        report_dir=tmp_path / "a_file" / "reports",
        tests="conformance/suite/test_fixtures.py",
    )
    assert code == 4, out[-3000:]
    assert f"--report-dir '{tmp_path / 'a_file' / 'reports'}': cannot write reports there" in out
    assert "Traceback" not in out and "passed" not in out


def test_failing_cases_are_saved_under_the_report_dir(tmp_path):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    code, out = pytest_run(
        tmp_path,
        "--rootdir",
        ROOT,
        "--impl",
        "tests.adapters:DoubleLoss",
        "-k",
        "test_fixture and (Y1_decode or Y2_single_anchor)",
        report_dir=tmp_path / "out",
        tests=ROOT / "conformance" / "suite" / "test_fixtures.py",
        cwd=workdir,
    )
    assert code == 1, out[-3000:]
    saved = sorted(p.name for p in (tmp_path / "out" / "failures").glob("*.npz"))
    assert len(saved) == 2, (saved, out[-3000:])
    assert f"python -m conformance repro {tmp_path / 'out' / 'failures'}" in out
    assert not (workdir / "reports").exists()
