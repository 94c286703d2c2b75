"""A third loss family plugs in by its own folder and one registry name (issue 10).

The test copies the project, adds ``conformance/families/toy/`` (a mean squared error:
case type, reference, key schema, comparison, strategy, corpus, fixture codec) and the
name "toy" to the registry, and nothing else; then regenerates the fixtures and runs the
whole suite on a correct and a wrong toy implementation, as a user would.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.processes import run_python

ROOT = Path(__file__).resolve().parents[2]

TOY_FAMILY = '''
"""A toy loss: mean squared error of a prediction against a target (the third-family test)."""
from dataclasses import dataclass, replace

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance import checks
from conformance import tolerances as tol
from conformance.family import Family, missing_or_malformed
from reference.errors import ShapeError
from reference.precision import precision

PARTS = {"targets": ("diff",), "losses": ("loss",), "gradients": ("grad",)}


@dataclass(frozen=True)
class ToyCase:
    """pred, target: (N,) float64."""

    pred: np.ndarray
    target: np.ndarray
    name: str = ""

    def astype(self, dtype):
        p = precision(dtype)
        return replace(self, pred=p.round(self.pred), target=p.round(self.target))


def validate(case):
    if case.pred.shape != case.target.shape:
        raise ShapeError("target", None, case.target.shape, f"must be {case.pred.shape} like pred")


def evaluate(case):
    validate(case)
    d = case.pred - case.target
    return {"diff": d, "loss": np.asarray(np.mean(d * d)), "grad": 2 * d / d.size}


def compare(case, out, prec, parts=tuple(PARTS)):
    prec, ref = precision(prec), evaluate(case)
    scale = tol.SAFETY * tol.sum_factor(case.pred.size) * prec.u * (1 + np.abs(ref["diff"]).max(initial=0)) ** 2
    return [checks.continuous(key, out[key], ref[key], scale, prec)
            for part in parts for key in PARTS[part] if key in out]


def to_arrays(case):
    return {"input.toy_pred": case.pred, "input.toy_target": case.target}


def from_arrays(arrays, name=""):
    return ToyCase(np.asarray(arrays["input.toy_pred"], np.float64),
                   np.asarray(arrays["input.toy_target"], np.float64), name)


_values = hnp.arrays(np.float64, st.integers(1, 6), elements=st.integers(-64, 64).map(lambda k: k / 16))

FAMILY = Family(
    name="toy", title="Toy MSE", case_type=ToyCase, evaluate=evaluate, validate=validate,
    parts=lambda case: PARTS, shapes=lambda case: {"diff": case.pred.shape, "loss": (), "grad": case.pred.shape},
    compare=compare,
    cases=_values.flatmap(lambda p: hnp.arrays(np.float64, p.shape, elements=st.integers(-64, 64).map(
        lambda k: k / 16)).map(lambda t: ToyCase(p, t, "generated toy"))),
    corpus=lambda: [ToyCase(np.zeros(3), np.zeros(3), "T1_zero"),
                    ToyCase(np.array([1.0, 2.0, 0.5]), np.array([0.0, 2.0, -1.0]), "T2_small")],
    to_arrays=to_arrays, from_arrays=from_arrays,
    input_problem=lambda arrays: missing_or_malformed(arrays, ("input.toy_pred", "input.toy_target")),
    input_key="input.toy_pred", probe="T1_zero")
'''

TOY_IMPLEMENTATIONS = '''
import numpy as np


class ToyImpl:
    name, devices, dtypes = "toy-impl", ("cpu",), ("float64", "float32")

    def skip_reason(self, device):
        return None

    def toy(self, case, device, dtype):
        d = case.pred.astype(dtype) - case.target.astype(dtype)
        return {"diff": d, "loss": np.mean(d * d, dtype=dtype), "grad": (2 / d.size) * d}


class Wrong(ToyImpl):
    """The gradient's sign flipped."""

    name = "toy-wrong"

    def toy(self, case, device, dtype):
        out = super().toy(case, device, dtype)
        return {**out, "grad": -out["grad"]}
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project with the toy family added by its folder and one registry name."""
    copy = tmp_path_factory.mktemp("third_family") / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".hypothesis")
    for name in ("reference", "implementations", "conformance", "fixtures"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    (copy / "conformance" / "families" / "toy").mkdir()
    (copy / "conformance" / "families" / "toy" / "__init__.py").write_text(TOY_FAMILY)
    registry = copy / "conformance" / "families" / "__init__.py"
    text = registry.read_text()
    assert text.count('NAMES = ("yolo", "ssd")') == 1
    registry.write_text(text.replace('NAMES = ("yolo", "ssd")', 'NAMES = ("yolo", "ssd", "toy")'))
    (copy / "toy_impl.py").write_text(TOY_IMPLEMENTATIONS)
    return copy


def run(project: Path, *args):
    """``python *args`` in the copy, the copy first on the path (tests.processes)."""
    return run_python(*args, cwd=project, path=[project], timeout=900)


def test_toy_family_gets_fixtures_tests_and_a_report(project):
    regen = run(project, "-m", "conformance", "regen")
    assert regen.returncode == 0, regen.stdout + regen.stderr
    assert "wrote 2 of 85 fixtures" in regen.stdout + regen.stderr, regen.stdout + regen.stderr
    manifest = json.loads((project / "fixtures" / "manifest.json").read_text())["files"]
    assert {manifest["T1_zero.npz"]["family"], manifest["T2_small.npz"]["family"]} == {"toy"}
    check = run(project, "-m", "conformance", "regen", "--check")
    assert check.returncode == 0, check.stdout + check.stderr

    junit = project / "junit.xml"
    suite = run(
        project,
        "-m",
        "pytest",
        "conformance",
        "-p",
        "no:cacheprovider",
        "-q",
        "--hypothesis-profile",
        "ci",
        "--impl",
        "toy_impl:ToyImpl",
        "--impl",
        "toy_impl:Wrong",
        "--report-dir",
        "reports",
        f"--junitxml={junit}",
    )
    out = suite.stdout + suite.stderr
    assert suite.returncode == 1, out[-4000:]
    outcome = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kind = (
            "failed"
            if case.find("failure") is not None
            else "skipped"
            if case.find("skipped") is not None
            else "passed"
        )
        outcome[case.get("name")] = kind
    for dtype in ("float64", "float32"):
        assert outcome[f"test_property[toy-impl-cpu-{dtype}-toy]"] == "passed"
        assert outcome[f"test_property[toy-wrong-cpu-{dtype}-toy]"] == "failed"
        assert outcome[f"test_property[toy-impl-cpu-{dtype}-yolo-plain]"] == "skipped"  # covers no YOLOv3 loss
        assert outcome[f"test_fixture[toy-impl-cpu-{dtype}-T2_small]"] == "passed"
        assert outcome[f"test_fixture[toy-wrong-cpu-{dtype}-T2_small]"] == "failed"
        assert outcome[f"test_returns[toy-impl-cpu-{dtype}-toy-grad]"] == "passed"
    assert outcome["test_reference_reproduces_fixture[T2_small]"] == "passed"
    assert "[gradients] grad: Tensor-likes are not close!" in out
    failed = {n for n, k in outcome.items() if k == "failed"}
    assert all("toy-wrong" in n and n.endswith(("toy]", "T2_small]")) for n in failed), sorted(failed)

    report = json.loads((project / "reports" / "latest.json").read_text())
    rows = {(r["impl"], r["dtype"]): r for r in report["matrix"] if r["family"] == "toy"}
    assert rows[("toy-impl", "float32")]["failed"] == 0 and rows[("toy-wrong", "float32")]["failed"] == 2
    saved = sorted((project / "reports" / "failures").glob("test_property_toy-wrong-cpu-float64-toy-*.npz"))
    assert len(saved) == 1
    replay = run(project, "-m", "conformance", "repro", str(saved[0]), "--impl", "toy_impl:Wrong", "--dtype", "float64")
    assert replay.returncode == 1 and "FAIL grad" in replay.stdout, replay.stdout + replay.stderr
