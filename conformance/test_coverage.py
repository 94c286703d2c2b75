"""Which promised outputs each implementation returns: one test per target, family and key.

Every key implementations/adapter.py promises (YOLOv3 per layer) is a test, e.g.
``test_returns[torch-cpu-float64-yolo-layer0.tx]``. The adapter is called once per target
and family on a small fixture case (engine.returned caches it). A key it returns passes
when it is an array of numbers shaped as the reference's; a key it leaves out is a skip
saying so (``pytest -rs``) and is listed under "not returned" in the tolerance report.
"""
from functools import lru_cache

import pytest

from conformance import engine, fixtures, report

PROBES = {"yolo": "Y1_decode.npz", "ssd": "S2_truth_equals_prior.npz"}  # small fixture cases


@lru_cache(maxsize=None)
def probe(family: str):
    """(case, expected) of the family's probe fixture: expected holds the reference's outputs."""
    return fixtures.load(fixtures.DEFAULT_DIR / PROBES[family])


def pytest_generate_tests(metafunc):
    if "promised" in metafunc.fixturenames:
        params = [(t, family, key) for t in metafunc.config.stash[engine.TARGETS] for family in PROBES
                  if hasattr(t.adapter, family) for key in engine.promised_keys(family, probe(family)[0])]
        metafunc.parametrize("promised", params, ids=[f"{t.id}-{f}-{k}" for t, f, k in params])


def test_returns(promised):
    target, family, key = promised
    reason = engine.skip_reason(target)
    if reason:
        pytest.skip(f"{target.adapter.name} on {target.device}: {reason}")
    case, expected = probe(family)
    got = engine.returned(target, family, case.astype(target.dtype))
    if key not in got.arrays and key not in got.not_arrays:
        report.add_missing(target.adapter.name, target.device, target.dtype, family, key)
        pytest.skip(f"{target.id} does not return {key} ({family.upper()}): not compared")
    problem = engine.key_problem(key, got, expected[key].shape)
    if problem:
        raise engine.ConformanceFailure(problem)
