"""Beyond one machine (issue 12, item 4): ``--shard K/N``, one GPU group per xdist worker
through CUDA_VISIBLE_DEVICES, and ``python -m conformance report merge``, whose merge of
the shards equals one unsharded run."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from conformance import gate, report
from tests.processes import run_pytest, run_python

SELECTION = "S4_ or Y5_two or Y7_ or layer0.t or loss_c or (test_property and omitting-cpu-float64-ssd)"
RUN_ID = re.compile(r"Run \d{8}T\d{6}Z(-\d+)?")


def run_suite(tmp_path, name: str, *args) -> tuple:
    """The suite on two small adapters (one failing, one leaving keys out), reports under tmp_path / name."""
    return run_pytest(
        "conformance",
        "--impl",
        "tests.adapters:DoubleLoss",
        "--impl",
        "tests.adapters:Omitting",
        "--hypothesis-profile",
        "ci",
        "-k",
        SELECTION,
        "--report-dir",
        tmp_path / name,
        *args,
        timeout=300,
    )


def text(tmp_path, name: str, ext: str) -> str:
    """latest.<ext> of the run whose report dir is tmp_path / name; each shard's repro commands
    name its own report dir, written here as <report dir>."""
    written = (tmp_path / name / f"latest.{ext}").read_text()
    return re.sub(re.escape(str(tmp_path)) + r"/(whole|shard1|shard2)", "<report dir>", written)


def test_merged_shards_equal_one_unsharded_run(tmp_path):
    code, out = run_suite(tmp_path, "whole")
    assert code == 1, out[-3000:]
    for k in (1, 2):
        code, out = run_suite(tmp_path, f"shard{k}", "--shard", f"{k}/2")
        assert code == 1 and " deselected" in out, out[-3000:]
    done = run_python(
        "-m", "conformance", "report", "merge", tmp_path / "shard1/latest.json", tmp_path / "shard2/latest.json",
        "--out", tmp_path / "merged",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    docs = {name: json.loads(text(tmp_path, name, "json")) for name in ("whole", "shard1", "shard2", "merged")}
    assert docs["merged"] == docs["whole"]
    assert (docs["shard1"]["shard"], docs["shard2"]["shard"]) == ("1/2", "2/2") and "shard" not in docs["whole"]
    for k in (1, 2):  # a real split: each shard ran some tests, failing and passing, and not all
        outcomes = docs[f"shard{k}"]["summary"]["outcomes"]
        assert outcomes.get("passed") and outcomes.get("failed") and outcomes != docs["whole"]["summary"]["outcomes"]
    for ext in ("md", "html"):  # the same text but for the run id in the header
        assert RUN_ID.sub("", text(tmp_path, "merged", ext)) == RUN_ID.sub("", text(tmp_path, "whole", ext))


def test_merge_joins_incomplete_sections_and_refuses_other_formats():
    empty = report.Aggregate().to_dict()
    a = dict(empty, incomplete={"reason": "died", "crashed": ["t1"], "not_run": ["t3"], "workers_lost": []})
    b = dict(empty, incomplete={"reason": "gave up", "crashed": [], "not_run": ["t2", "t3"], "workers_lost": [
        {"worker": "gw0", "tests": ["t0"]}]})  # fmt: skip
    doc = report.merge_reports([("a.json", a), ("b.json", b), ("c.json", empty)])
    assert doc["incomplete"] == {
        "reason": "a.json: died; b.json: gave up",
        "crashed": ["t1"],
        "not_run": ["t2", "t3"],
        "workers_lost": [{"worker": "b.json:gw0", "tests": ["t0"]}],
    }
    assert "incomplete" not in report.merge_reports([("c.json", empty), ("d.json", empty)])
    with pytest.raises(report.RecordError, match="old.json: not a conformance report of format"):
        report.merge_reports([("old.json", dict(empty, format=1))])


def test_merge_counts_each_shard_once_and_says_which_are_missing():
    empty = report.Aggregate().to_dict()
    a, b, c = (dict(empty, shard=f"{k}/3") for k in (1, 2, 3))
    assert "incomplete" not in report.merge_reports([("c", c), ("a", a), ("b", b)])
    doc = report.merge_reports([("a", a), ("c", c)])
    assert doc["incomplete"]["reason"] == "shard 2/3 not merged: their tests are not counted"
    assert "shards 2/3, 3/3 not merged" in report.merge_reports([("a", a)])["incomplete"]["reason"]
    refused = {
        "b.json: shard 2/3 is given twice \\(also a.json\\)": [("a.json", b), ("b.json", b)],
        "u.json: not a shard's report, merged with the shard reports 1/3": [("a.json", a), ("u.json", empty)],
        "shards of different splits: 1/2, 1/3": [("a", a), ("x", dict(empty, shard="1/2"))],
        "x.json: field 'shard' = '4/3': not K/N": [("x.json", dict(empty, shard="4/3"))],
        "y.json: field 'shard' = 'two': not K/N": [("y.json", dict(empty, shard="two"))],
    }
    for says, named in refused.items():
        with pytest.raises(report.RecordError, match=says):
            report.merge_reports(named)


def test_merge_of_a_file_that_is_not_a_report_is_a_one_line_error(tmp_path):
    (tmp_path / "a.json").write_text("[1, 2]")
    (tmp_path / "b.json").write_text("{")
    for name, says in (("a.json", "not a conformance report"), ("b.json", "not JSON"), ("c.json", "No such file")):
        done = run_python("-m", "conformance", "report", "merge", tmp_path / name, "--out", tmp_path / "out")
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_shards_are_a_stable_partition():
    ids = [f"conformance/suite/test_fixtures.py::test_fixture[torch-cpu-float32-{i}]" for i in range(200)]
    for n in (1, 2, 3, 7):
        shards = [gate.shard_of(i, n) for i in ids]
        assert set(shards) == set(range(1, n + 1))  # every shard gets some of 200 tests
    # SHA-256 of the node id, not Python's salted hash(): the same on every machine and run
    assert gate.shard_of("conformance/suite/test_properties.py::test_property[torch-cpu-float32-yolo]", 7) == 7
    assert gate.parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "2", "a/b", "1/0"):
        with pytest.raises(pytest.UsageError, match=f"--shard '{bad}': expected K/N"):
            gate.parse_shard(bad)


ENV_LOGGER = '''
import os

from tests.adapters import Reference

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpus.log")


class EnvLogger(Reference):
    """The reference; skip_reason (asked when the plugin starts, and by each test) logs the
    xdist worker and its CUDA_VISIBLE_DEVICES."""

    name = "env-logger"

    def skip_reason(self, device):
        with open(LOG, "a") as f:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "controller")
            f.write(f"{worker} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}\\n")
        return None
'''


@pytest.mark.parametrize(
    "ask,visible,expected",
    [
        (("--gpus-per-worker", "1"), "7,5,3", {"controller": "7,5,3", "gw0": "7", "gw1": "5"}),
        ((), "7,5,3,1", {"controller": "7,5,3,1", "gw0": "7,5", "gw1": "3,1"}),  # CONFORMANCE_GPUS_PER_WORKER=2
    ],
    ids=["option", "env"],
)
def test_each_xdist_worker_gets_its_gpus_before_the_plugin_starts(tmp_path, monkeypatch, ask, visible, expected):
    (tmp_path / "env_logger.py").write_text(ENV_LOGGER)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    if not ask:
        monkeypatch.setenv(gate.GPUS_ENV, "2")
    code, out = run_pytest(
        "conformance/suite/test_fixtures.py", "--impl", "env_logger:EnvLogger", "-k", "env and (S4_ or S5_ or Y5_two)",
        "-n", "2", "--report-dir", tmp_path / "reports", *ask, path=[tmp_path], timeout=300,
    )  # fmt: skip
    assert code == 0, out[-3000:]
    seen = {tuple(line.split()) for line in (tmp_path / "gpus.log").read_text().splitlines()}
    assert seen == set(expected.items())  # also the first call, in the plugin's pytest_configure


def _node(worker: str):
    return SimpleNamespace(gateway=SimpleNamespace(id=worker), workerinput={})


def test_a_replacement_worker_takes_the_gpus_of_the_worker_it_replaces(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7,5,3")
    options = {"gpus_per_worker": "1", "dist": "load"}
    g = gate.Gate(SimpleNamespace(getoption=lambda name, default=None: options.get(name, default)))
    nodes = [_node(f"gw{k}") for k in range(4)]
    for node in nodes:
        g.pytest_configure_node(node)
    assert [n.workerinput[gate.GPUS_KEY] for n in nodes] == ["7", "5", "3", "7"]  # gwK: the K-th, modulo 3
    g.pytest_testnodedown(nodes[1], "Not properly terminated")
    replacement = _node("gw4")
    g.pytest_configure_node(replacement)
    assert replacement.workerinput[gate.GPUS_KEY] == "5"
    assert gate.gpu_groups(["0", "1", "2", "3", "4"], 2) == ["0,1", "2,3"]
    with pytest.raises(pytest.UsageError, match="--gpus-per-worker 2: only 1 GPU"):
        gate.gpu_groups(["0"], 2)
