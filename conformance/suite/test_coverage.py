"""Which promised outputs each implementation returns: one test per subject, family and key.

Every key the adapter protocol promises (YOLOv3 per layer) is a test, e.g.
``test_returns[torch-cpu-float64-yolo-layer0.tx]``. The adapter is called once per subject
and family on the family's probe fixture (engine.returned caches it). A key it returns
passes when it is an array of numbers shaped as the reference's; a key it leaves out is a
skip saying so (``pytest -rs``) and is listed under "not returned" in the tolerance report.
"""

from functools import lru_cache

import pytest

from conformance import engine, fixtures, report
from conformance.families import BY_NAME, FAMILIES
from conformance.plugin import SUBJECTS


@lru_cache(maxsize=None)
def probe(name: str):
    """(case, expected) of the family's probe fixture: expected holds the reference's outputs."""
    return fixtures.load(fixtures.DEFAULT_DIR / f"{BY_NAME[name].probe}.npz")


def pytest_generate_tests(metafunc):
    if "promised" in metafunc.fixturenames:
        params = [
            (t, f, key)
            for t in metafunc.config.stash[SUBJECTS]
            for f in FAMILIES
            if t.covers(f)
            for key in f.keys(probe(f.name)[0])
        ]
        metafunc.parametrize("promised", params, ids=[f"{t.id}-{f.name}-{k}" for t, f, k in params])


def test_returns(promised):
    subject, family, key = promised
    reason = engine.skip_reason(subject)
    if reason:
        pytest.skip(f"{subject.adapter.name} on {subject.device}: {reason}")
    case, expected = probe(family.name)
    got = engine.returned(subject, family, case.astype(subject.precision))
    if key not in got.arrays and key not in got.not_arrays:
        report.add_missing(subject.adapter.name, subject.device, subject.precision.name, family.name, key)
        pytest.skip(f"{subject.id} does not return {key} ({family.title}): not compared")
    problem = engine.key_problem(key, got, expected[key].shape)
    if problem:
        raise engine.ConformanceFailure(problem)
