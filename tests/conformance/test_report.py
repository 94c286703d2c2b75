"""Tolerance reports: histogram bins, order-independent aggregation, writers, the pytest plugin."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from conformance import report

pytest_plugins = ["pytester"]


def _record(i: int, rng: random.Random) -> dict:
    ratio = rng.choice([0.0, 1e-9, 3e-4, 0.5, 0.99, 1.5, math.inf, math.nan])
    errors = np.asarray([ratio, ratio / 2, 0.0])
    passed = ratio <= 1  # NaN fails
    return {
        "impl": rng.choice(["torch", "onnx"]),
        "device": "cpu",
        "dtype": rng.choice(["float32", "float64"]),
        "family": rng.choice(["yolo", "ssd"]),
        "quantity": rng.choice(["loss_c", "layer0.tx", "neg_mask"]),
        "kind": rng.choice(["continuous", "discrete"]),
        "n": 3,
        "max_abs": ratio * 1e-6,
        "max_rel": ratio * 1e-5,
        "max_ulp": ratio * 10,
        "atol": 1e-6,
        "rtol": 1e-5,
        "ratio": ratio,
        "ties": rng.randint(0, 2),
        "passed": bool(passed),
        "test": f"test_x[{i % 7}]",
        "case": f"case{i % 5}",
        "message": "" if passed else f"mismatch {i % 3}",
        "hist": report.histogram(errors),
    }


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
    assert sum(got[: report.PASS_BINS]) == 5  # exactly the elements with ratio <= 1
    assert report.histogram(np.zeros((2, 3))) == [6] + [0] * 11
    assert report.histogram([]) == [0] * len(report.BINS)


def test_aggregate_values():
    recs = [
        dict(RECORDS[0], quantity="q", ratio=0.25, max_abs=1.0, passed=True, ties=1, n=4),
        dict(
            RECORDS[0],
            quantity="q",
            ratio=3.0,
            max_abs=0.5,
            passed=False,
            ties=2,
            n=5,
            test="t_bad",
            case="c_bad",
            message="E  bad",
        ),
    ]
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
    assert fails[1]["message"] == "assert 1 == 2\nrepro: python -m x" and fails[1]["repro"] == ""
    assert len(fails[0]["text"]) <= report.MAX_TEXT and len(fails[0]["message"]) <= report.MAX_TEXT


LONGREPR = """    def test_yolo(target, part, case, record):
>       check(target, "yolo", part, case, record)
E       conformance.engine.ConformanceFailure: layer0.tx: Tensor-likes are not close!
E       Mismatched elements: 1 / 4 (25.0%)
E
E       case: generated; reproduce with:
E           python -m conformance repro 'reports/failures/t x.npz' --impl my_mod:adapter --device cpu --dtype float32
E       Falsifying example: test_yolo(
E           part='targets',
E       )

conformance/engine.py:212: ConformanceFailure"""


def test_failure_message_and_repro_command_from_the_pytest_text():
    props = {"impl": "mine", "device": "cpu", "dtype": "float32", "family": "yolo", "other": "x"}
    f = report.Failure.of("conformance/test_yolo.py::test_yolo[mine-cpu-float32]", "call", LONGREPR + "\n" * 3, props)
    assert f.repro == (
        "python -m conformance repro 'reports/failures/t x.npz' --impl my_mod:adapter --device cpu --dtype float32"
    )
    assert f.message.startswith(
        "conformance.engine.ConformanceFailure: layer0.tx: Tensor-likes are not close!\n"
        "Mismatched elements: 1 / 4 (25.0%)\n\ncase: generated; reproduce with:\n"
        "    python -m conformance repro"
    )
    assert f.message.endswith("Falsifying example: test_yolo(\n    part='targets',\n)")
    assert (f.impl, f.device, f.dtype, f.family) == ("mine", "cpu", "float32", "yolo")
    # the repro command is found even where the kept text is cut short
    long = LONGREPR.replace("E       Mismatched", "E       Mismatched\n" + "E       x\n" * 3000 + "E       Mismatched")
    assert report.repro_command(long) == f.repro and len(report.trim(long)) <= report.MAX_TEXT
    # pytest.fail(..., pytrace=False): the text is the message
    plain = report.Failure.of("t", "call", "broken.npz: cannot be loaded")
    assert plain.message == "broken.npz: cannot be loaded" and plain.repro == "" and plain.impl == ""


def test_record_fields_are_typed_and_bad_ones_named():
    rec = report.Record.from_dict(RECORDS[0])
    assert isinstance(rec.n, int) and isinstance(rec.ratio, float) and len(rec.hist) == len(report.BINS)
    for bad, message in [
        ({"impl": None}, "field 'impl' is missing"),
        ({"n": "three"}, "field 'n' = 'three': not a int"),
        ({"ratio": [1, 2]}, "field 'ratio' = [1, 2]: not a float"),
        ({"hist": [1, 2]}, "field 'hist' has 2 bins, report.BINS has 12"),
    ]:
        with pytest.raises(report.RecordError, match=re.escape(message)):
            report.Aggregate().add(dict(RECORDS[0], **bad))
    minimal = report.Record.from_dict({k: "x" for k in report.KEY_FIELDS})
    assert minimal.passed and minimal.n == 0 and minimal.hist == (0,) * len(report.BINS)


def test_summary_matrix_per_implementation_device_dtype_and_loss():
    agg = _aggregate(
        [
            dict(RECORDS[0], impl="a", device="cpu", dtype="float32", family="yolo", quantity=q, ratio=r, passed=r <= 1)
            for q, r in (("tx", 0.25), ("loss_x", 0.5), ("grad", 3.0))
        ]
    )
    agg.add(
        dict(
            RECORDS[0],
            impl="a",
            device="cpu",
            dtype="float32",
            family="ssd",
            quantity="loss_c",
            ratio=math.nan,
            passed=False,
        )
    )
    yolo = {"impl": "a", "device": "cpu", "dtype": "float32", "family": "yolo"}
    for outcome in ("passed", "passed", "failed", "xpassed", "error", "skipped", "xfailed"):
        agg.add_outcome(outcome, yolo)
    agg.add_outcome("passed", {})  # a test of no implementation
    agg.add_outcome("skipped", dict(yolo, device="cuda"))
    agg.add_missing("a", "cpu", "float32", "yolo", "layer0.tcls")
    doc = agg.to_dict()
    rows = {(r["impl"], r["device"], r["family"]): r for r in doc["matrix"]}
    assert list(rows) == [("", "", ""), ("a", "cpu", "ssd"), ("a", "cpu", "yolo"), ("a", "cuda", "yolo")]
    r = rows["a", "cpu", "yolo"]
    assert (r["passed"], r["failed"], r["xfailed"], r["skipped"], r["not_returned"]) == (3, 2, 1, 1, 1)
    assert (r["worst_ratio"], r["headroom"], r["worst_quantity"], r["comparisons"]) == (3.0, -2.0, "grad", 3)
    assert rows["a", "cpu", "ssd"]["worst_ratio"] == "nan" and rows["a", "cpu", "ssd"]["headroom"] == "nan"
    assert rows["a", "cuda", "yolo"]["headroom"] is None and rows["a", "cuda", "yolo"]["skipped"] == 1
    assert rows["", "", ""]["outcomes"] == {"passed": 1}
    assert doc["summary"]["outcomes"] == {
        "error": 1,
        "failed": 1,
        "passed": 3,
        "skipped": 2,
        "xfailed": 1,
        "xpassed": 1,
    }
    assert report.Aggregate.from_dict(json.loads(report.dumps(doc))).to_dict() == doc
    page = report.to_html(doc)
    assert '<td class="bad">-2 <small>grad</small></td>' in page and '<td class="bad">nan <small>loss_c</small>' in page
    assert "YOLO loss" in page and "SSD loss" in page and "Tests of no single implementation" in page


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
    assert sorted(p.name for p in paths) == sorted(
        f"{n}.{e}" for n in ("20260101T000000Z", "latest") for e in ("json", "md", "html")
    )
    text = (tmp_path / "latest.json").read_text()
    assert json.loads(text) == json.loads(json.dumps(doc)) and "NaN" not in text and "Infinity" not in text
    md = (tmp_path / "latest.md").read_text()
    assert "Run 20260101T000000Z" in md and "**1 test failed.**" in md
    headings = ["## Summary", "## Failures (1)", "## Not returned", "## Detail"]
    assert [md.index(h) for h in headings] == sorted(md.index(h) for h in headings)
    detail = md[md.index("## Detail") :].splitlines()
    rows = [ln for ln in detail if ln.startswith("| ") and "---" not in ln and "| quantity |" not in ln]
    assert len(rows) == len(doc["aggregates"])
    assert all(ln.count("|") == len(report._DETAIL_COLUMNS) + 2 for ln in rows)
    html_text = (tmp_path / "latest.html").read_text()
    checker = _Checker()
    checker.feed(html_text)
    checker.close()
    assert checker.stack == [] and {"table", "details", "section"} <= checker.seen
    sections = [html_text.index(f'<section id="{s}">') for s in ("summary", "failures", "coverage", "detail")]
    assert sections == sorted(sections)
    assert html_text.count('<span class="h"') == len(doc["aggregates"])
    assert "a &lt; b &amp; c" in html_text
    # small: a few hundred bytes per quantity (one SVG histogram each made 826 KB of 450)
    assert len(html_text.encode()) < 12000 + 400 * len(doc["aggregates"]), len(html_text.encode())
    # a second run in the same second gets its own name, latest is replaced
    again = report.write(doc, tmp_path, run="20260101T000000Z")
    assert any(p.name == "20260101T000000Z-2.json" for p in again)


_SUITE_CONFTEST = """
from conformance.report import ReportPlugin

def pytest_configure(config):  # --report-dir is the installed plugin's option (inactive here)
    config.pluginmanager.register(ReportPlugin(config), "conformance-report")

def pytest_collection_modifyitems(items):  # as conformance/conftest.py does
    for item in items:
        if hasattr(item, "callspec"):
            i = item.callspec.params["i"]
            item.user_properties += [("impl", "fake"), ("device", "cpu"), ("dtype", "float32"),
                                     ("family", ["yolo", "ssd"][i % 2])]
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
    assert ratio <= 1, f"too far; reproduce with:\\n    python -m conformance repro c{i}.npz --impl fake:adapter"

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
    first = doc["failures"][0]
    assert first["repro"] == "python -m conformance repro c2.npz --impl fake:adapter"
    assert first["message"].startswith("AssertionError: too far; reproduce with:\n")
    assert (first["impl"], first["device"], first["dtype"], first["family"]) == ("fake", "cpu", "float32", "yolo")
    rows = {r["family"] or "other": r for r in doc["matrix"]}
    assert (rows["yolo"]["passed"], rows["yolo"]["failed"], rows["yolo"]["headroom"]) == (2, 2, -1.0)
    assert (rows["ssd"]["passed"], rows["ssd"]["failed"], rows["ssd"]["headroom"]) == (4, 0, 0.5)
    assert rows["other"]["outcomes"] == {"skipped": 1} and rows["other"]["impl"] == ""
    assert _run_suite(pytester, "-n", "2") == plain  # the user_properties travel with the workers' reports


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
        {
            "impl": "mine",
            "device": "cpu",
            "dtype": "float32",
            "family": "yolo",
            "keys": ["layer0.obj_mask", "layer0.tx"],
        },
        {"impl": "mine", "device": "cpu", "dtype": "float64", "family": "ssd", "keys": ["matched"]},
    ]
    assert doc["summary"]["not_returned"] == 3
    assert report.Aggregate.from_dict(json.loads(report.dumps(doc))).to_dict() == doc
    report.write(doc, tmp_path, run="r")
    md = (tmp_path / "latest.md").read_text()
    assert "## Not returned" in md and "- mine cpu float32 yolo: layer0.obj_mask, layer0.tx" in md
    html_text = (tmp_path / "latest.html").read_text()
    assert "<h2>Not returned</h2>" in html_text
    assert "<td>mine</td><td>cpu</td><td>float64</td><td>ssd</td><td>matched</td>" in html_text
