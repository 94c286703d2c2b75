"""Tolerance reports: histogram bins, order-independent aggregation, writers, the pytest plugin."""
from __future__ import annotations

import itertools
import json
import math
import random
from html.parser import HTMLParser

import numpy as np

from conformance import report

pytest_plugins = ["pytester"]


def _record(i: int, rng: random.Random) -> dict:
    ratio = rng.choice([0.0, 1e-9, 3e-4, 0.5, 0.99, 1.5, math.inf, math.nan])
    errors = np.asarray([ratio, ratio / 2, 0.0])
    passed = ratio <= 1  # NaN fails
    return {"impl": rng.choice(["torch", "onnx"]), "device": "cpu", "dtype": rng.choice(["float32", "float64"]),
            "family": rng.choice(["yolo", "ssd"]), "quantity": rng.choice(["loss_c", "layer0.tx", "neg_mask"]),
            "kind": rng.choice(["continuous", "discrete"]), "n": 3, "max_abs": ratio * 1e-6,
            "max_rel": ratio * 1e-5, "max_ulp": ratio * 10, "atol": 1e-6, "rtol": 1e-5, "ratio": ratio,
            "ties": rng.randint(0, 2), "passed": bool(passed), "test": f"test_x[{i % 7}]", "case": f"case{i % 5}",
            "message": "" if passed else f"mismatch {i % 3}", "hist": report.histogram(errors)}


RECORDS = [_record(i, random.Random(i)) for i in range(60)]


def _aggregate(records) -> report.Aggregate:
    agg = report.Aggregate()
    for r in records:
        agg.add(r)
    return agg


def test_histogram_bins():
    assert len(report.BINS) == len(report.BIN_UPPER)
    got = report.histogram([0, 1e-9, 1e-8, 0.5, 1, 1.0001, 10, 11, np.inf, np.nan])
    assert got == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2, 2, 3]
    assert sum(got[:report.PASS_BINS]) == 5  # exactly the elements with ratio <= 1
    assert report.histogram(np.zeros((2, 3))) == [6] + [0] * 11
    assert report.histogram([]) == [0] * len(report.BINS)


def test_aggregate_values():
    recs = [dict(RECORDS[0], quantity="q", ratio=0.25, max_abs=1.0, passed=True, ties=1, n=4),
            dict(RECORDS[0], quantity="q", ratio=3.0, max_abs=0.5, passed=False, ties=2, n=5,
                 test="t_bad", case="c_bad", message="E  bad")]
    doc = _aggregate(recs).to_dict()
    (e,) = doc["aggregates"]
    assert (e["cases"], e["elements"], e["ties"], e["failures"]) == (2, 9, 3, 1)
    assert e["max_abs"] == 1.0 and e["max_ratio"] == 3.0 and e["headroom"] == -2.0
    assert e["worst"]["test"] == "t_bad" and e["examples"] == [{"test": "t_bad", "case": "c_bad", "message": "E  bad"}]
    assert e["hist"] == [a + b for a, b in zip(recs[0]["hist"], recs[1]["hist"])]
    assert doc["summary"]["failed_comparisons"] == 1


def test_merge_is_order_independent():
    """Workers get records in any split and order; merging them in any order gives one JSON."""
    want = report.dumps(_aggregate(RECORDS).to_dict())
    rng = random.Random(7)
    for trial in range(6):
        recs = RECORDS[:]
        rng.shuffle(recs)
        cuts = sorted(rng.sample(range(1, len(recs)), 3))
        parts = [recs[a:b] for a, b in zip([0] + cuts, cuts + [len(recs)])]
        workers = [report.Aggregate.from_dict(json.loads(report.dumps(_aggregate(p).to_dict()))) for p in parts]
        for order in itertools.islice(itertools.permutations(workers), 0, 24, 5):
            total = report.Aggregate()
            for w in order:
                total.merge(w)
            assert report.dumps(total.to_dict()) == want


def test_failures_kept_sorted_and_trimmed():
    a, b = report.Aggregate(), report.Aggregate()
    a.add_failure("t[2]", "call", "noise\nE   assert 1 == 2\nE   repro: python -m x\nfile.py:3: AssertionError")
    b.add_failure("t[1]", "setup", "x" * 10000)
    b.add_outcome("failed")
    ab, ba = report.Aggregate(), report.Aggregate()
    ab.merge(a), ab.merge(b), ba.merge(b), ba.merge(a)
    assert report.dumps(ab.to_dict()) == report.dumps(ba.to_dict())
    fails = ab.to_dict()["failures"]
    assert [f["test"] for f in fails] == ["t[1]", "t[2]"]
    assert fails[1]["text"] == "E   assert 1 == 2\nE   repro: python -m x\nfile.py:3: AssertionError"
    assert len(fails[0]["text"]) <= report.MAX_TEXT


class _Checker(HTMLParser):
    """Fails on unbalanced tags (void elements excepted)."""

    VOID = {"meta", "br", "img", "hr", "input", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.seen = [], set()

    def handle_starttag(self, tag, attrs):
        self.seen.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.seen.add(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()


def test_writers(tmp_path):
    doc = _aggregate(RECORDS).to_dict()
    agg = report.Aggregate.from_dict(doc)
    agg.add_failure("test_y[<torch>]", "call", "E   a < b & c")
    doc = agg.to_dict()
    paths = report.write(doc, tmp_path, run="20260101T000000Z")
    assert sorted(p.name for p in paths) == sorted(f"{n}.{e}" for n in ("20260101T000000Z", "latest")
                                                   for e in ("json", "md", "html"))
    text = (tmp_path / "latest.json").read_text()
    assert json.loads(text) == json.loads(json.dumps(doc)) and "NaN" not in text and "Infinity" not in text
    md = (tmp_path / "latest.md").read_text()
    assert "Run 20260101T000000Z" in md and "| impl | device | dtype | quantity |" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln and "| impl |" not in ln]
    assert len(rows) == len(doc["aggregates"])
    assert all(ln.count("|") == len(report._COLUMNS) + 2 for ln in rows)
    html_text = (tmp_path / "latest.html").read_text()
    checker = _Checker()
    checker.feed(html_text)
    checker.close()
    assert checker.stack == [] and {"svg", "rect", "table"} <= checker.seen
    assert html_text.count("<svg") == len(doc["aggregates"])
    assert "a &lt; b &amp; c" in html_text
    # a second run in the same second gets its own name, latest is replaced
    again = report.write(doc, tmp_path, run="20260101T000000Z")
    assert any(p.name == "20260101T000000Z-2.json" for p in again)


_SUITE_CONFTEST = """
from conformance.report import ReportPlugin

def pytest_addoption(parser):
    parser.addoption("--report-dir", default="reports")

def pytest_configure(config):
    config.pluginmanager.register(ReportPlugin(config), "conformance-report")
"""

_SUITE_TESTS = """
import pytest
from conformance import report

@pytest.mark.parametrize("i", range(8))
def test_compare(i):
    ratio = [0.0, 0.5, 2.0, 1e-9][i % 4]
    report.add({"impl": "fake", "device": "cpu", "dtype": "float32", "family": ["yolo", "ssd"][i % 2],
                "quantity": f"q{i % 3}", "kind": "continuous", "n": i + 1, "max_abs": ratio, "max_rel": ratio,
                "max_ulp": ratio, "atol": 1.0, "rtol": 0.0, "ratio": ratio, "ties": i % 2,
                "passed": ratio <= 1, "test": f"test_compare[{i}]", "case": f"c{i}",
                "message": "E  too far" if ratio > 1 else "", "hist": report.histogram([ratio])})
    assert ratio <= 1, "too far: repro with pytest -k " + str(i)

@pytest.mark.skip(reason="not here")
def test_skipped():
    pass
"""


def _run_suite(pytester, *args):
    pytester.makeconftest(_SUITE_CONFTEST)
    pytester.makepyfile(test_suite=_SUITE_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--report-dir", "out", *args)
    result.assert_outcomes(passed=6, failed=2, skipped=1)
    result.stdout.fnmatch_lines(["*conformance tolerance report*", "*out*latest.json"])
    return (pytester.path / "out" / "latest.json").read_text()


def test_plugin_same_report_with_and_without_xdist(pytester):
    plain = _run_suite(pytester)
    doc = json.loads(plain)
    assert doc["summary"]["comparisons"] == 8 and doc["summary"]["failed_comparisons"] == 2
    assert doc["summary"]["outcomes"] == {"failed": 2, "passed": 6, "skipped": 1}
    assert [f["test"] for f in doc["failures"]] == ["test_suite.py::test_compare[2]", "test_suite.py::test_compare[6]"]
    assert "repro with pytest -k 2" in doc["failures"][0]["text"]
    assert _run_suite(pytester, "-n", "2") == plain


def test_not_returned_merges_across_workers_and_is_written(tmp_path):
    """Issue 8 item 5: promised keys an implementation leaves out are listed per impl, device,
    dtype and family, whichever worker saw them."""
    a, b = report.Aggregate(), report.Aggregate()
    a.add_missing("mine", "cpu", "float32", "yolo", "layer0.tx")
    b.add_missing("mine", "cpu", "float32", "yolo", "layer0.obj_mask")
    b.add_missing("mine", "cpu", "float32", "yolo", "layer0.tx")
    b.add_missing("mine", "cpu", "float64", "ssd", "matched")
    ab, ba = report.Aggregate(), report.Aggregate()
    ab.merge(a), ab.merge(b), ba.merge(b), ba.merge(a)
    doc = ab.to_dict()
    assert report.dumps(doc) == report.dumps(ba.to_dict())
    assert doc["not_returned"] == [
        {"impl": "mine", "device": "cpu", "dtype": "float32", "family": "yolo",
         "keys": ["layer0.obj_mask", "layer0.tx"]},
        {"impl": "mine", "device": "cpu", "dtype": "float64", "family": "ssd", "keys": ["matched"]}]
    assert doc["summary"]["not_returned"] == 3
    assert report.Aggregate.from_dict(json.loads(report.dumps(doc))).to_dict() == doc
    report.write(doc, tmp_path, run="r")
    md = (tmp_path / "latest.md").read_text()
    assert "## Not returned" in md and "- mine cpu float32 yolo: layer0.obj_mask, layer0.tx" in md
    html_text = (tmp_path / "latest.html").read_text()
    assert "<h2>Not returned</h2>" in html_text and "mine cpu float64 ssd: matched" in html_text
