"""What the engine gives adapters and takes from them: copies of the inputs, outputs
validated (type, keys, shapes) before any comparison, skip_reason errors named."""

from __future__ import annotations

import numpy as np
import pytest

from conformance import engine, fixtures
from conformance.engine import ConformanceFailure, Subject
from conformance.families import BY_NAME, family_of
from conformance.plugin import check
from reference import ssd as rs
from reference import yolo as ry
from reference.precision import precision

FIXTURES = {name: (case, expected) for name, case, expected in fixtures.load_all()}


class Reference:
    """The float64 reference as an adapter; ``edit(family, case, out)`` may change its result."""

    devices, dtypes = ("cpu",), ("float64", "float32")

    def __init__(self, name="ref", edit=None, before=None):
        self.name, self.edit, self.before, self.calls = name, edit, before, []

    def skip_reason(self, device):
        return None

    def _run(self, family, case, dtype):
        self.calls.append(case)
        if self.before:
            self.before(case)
        out = rs.evaluate(case) if family == "ssd" else ry.evaluate(case, prob_dtype=dtype)
        return self.edit(family, case, out) if self.edit else out

    def yolo(self, case, device, dtype):
        return self._run("yolo", case, dtype)

    def ssd(self, case, device, dtype):
        return self._run("ssd", case, dtype)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Failure cases go under tmp_path (repro.save writes relative to the working directory);
    the engine's output cache starts empty."""
    monkeypatch.chdir(tmp_path)
    engine._CACHE.clear()
    yield
    engine._CACHE.clear()


def run(adapter, name, dtype="float64"):
    case, _ = FIXTURES[name]
    check(Subject("tests:adapter", adapter, "cpu", precision(dtype)), family_of(case), case, f"test[{name}]")


# ---------------------------------------------------------------- inputs (issue 8, item 5... 8)


def clamp_logits_in_place(case):
    for x in case.outputs:
        np.clip(x, -10.0, 10.0, out=x)


def test_reference_adapter_passes_the_fixtures_it_is_checked_on():
    for name in ("Y9_saturated_logits", "Y10_conf_logit_20", "S2_truth_equals_prior"):
        run(Reference(), name)


@pytest.mark.parametrize("name", ["Y9_saturated_logits", "Y10_conf_logit_20"])
def test_adapter_that_clamps_its_input_in_place_fails(name):
    """Issue 8 item 8: the reference is evaluated on the engine's own case, not on what the
    adapter left of its copy."""
    case, _ = FIXTURES[name]
    before = [x.copy() for x in case.outputs]
    with pytest.raises(ConformanceFailure):
        run(Reference(before=clamp_logits_in_place), name)
    assert all(np.array_equal(x, y) for x, y in zip(case.outputs, before))


def test_each_call_gets_a_fresh_copy():
    adapter = Reference(before=clamp_logits_in_place)
    case = FIXTURES["Y9_saturated_logits"][0].astype("float64")
    subject = Subject("tests:adapter", adapter, "cpu", precision("float64"))
    engine.returned(subject, BY_NAME["yolo"], case)
    engine._CACHE.clear()
    engine.returned(subject, BY_NAME["yolo"], case)
    first, second = adapter.calls
    assert first is not second and first.outputs[0] is not second.outputs[0]
    assert first.outputs[0] is not case.outputs[0]
    assert np.abs(case.outputs[0]).max() > 10  # the engine's case is untouched


# ---------------------------------------------------------------- outputs (issue 9, item 8)


def returns(value):
    return Reference(edit=lambda family, case, out: value(out) if callable(value) else value)


def resized(key, shape):
    def edit(out):
        return {**out, key: np.zeros(shape, out[key].dtype)}

    return edit


BAD_OUTPUTS = [
    ("Y1_decode", None, "adapter returned NoneType, expected a mapping of str to arrays"),
    ("Y1_decode", lambda out: list(out.values()), "adapter returned list, expected a mapping of str to arrays"),
    (
        "S2_truth_equals_prior",
        lambda out: {**out, 3: np.zeros(1)},
        "adapter returned a mapping with key 3 (int), expected a mapping of str to arrays",
    ),
    ("Y1_decode", lambda out: {**out, "layer0.tx": None}, "layer0.tx: NoneType is not an array of numbers"),
    ("Y1_decode", lambda out: {**out, "layer0.loss_x": "0.5"}, "layer0.loss_x: str is not an array of numbers"),
    ("S2_truth_equals_prior", lambda out: {**out, "loss_l": object()}, "loss_l: object is not an array of numbers"),
    (
        "S2_truth_equals_prior",
        lambda out: {**out, "loc_t": out["loc_t"] + 0j},
        "loc_t: array of complex128 is not an array",
    ),
    (
        "Y1_decode",
        resized("layer0.obj_mask", (1, 3, 5, 5)),
        "layer0.obj_mask: shape (1, 3, 5, 5), expected (1, 3, 4, 4)",
    ),
    ("Y1_decode", resized("layer0.tcls", (1, 3, 4, 4)), "layer0.tcls: shape (1, 3, 4, 4), expected (1, 3, 4, 4, 2)"),
    ("Y1_decode", resized("layer0.loss_x", (1,)), "layer0.loss_x: shape (1,), expected ()"),
    ("S2_truth_equals_prior", resized("matched", (1, 31)), "matched: shape (1, 31), expected (1, 32)"),
    ("S2_truth_equals_prior", resized("pos_mask", (32,)), "pos_mask: shape (32,), expected (1, 32)"),
    ("S2_truth_equals_prior", resized("neg_mask", (1, 32, 1)), "neg_mask: shape (1, 32, 1), expected (1, 32)"),
]


@pytest.mark.parametrize(
    "name,value,message",
    BAD_OUTPUTS,
    ids=[
        "none",
        "list",
        "int-key",
        "none-value",
        "str-value",
        "object-value",
        "complex-value",
        "obj_mask-shape",
        "tcls-shape",
        "loss-shape",
        "matched-shape",
        "pos_mask-shape",
        "neg_mask-shape",
    ],
)
def test_bad_output_is_a_failure_naming_the_quantity(name, value, message):
    with pytest.raises(ConformanceFailure) as info:
        run(returns(value), name)
    text = str(info.value)
    assert text.startswith(message), text
    assert "python -m conformance repro" in text


def test_wrong_shapes_are_all_named_at_once():
    adapter = returns(lambda out: {**resized("layer0.tx", (2,))(out), "layer0.ty": np.zeros((2,))})
    with pytest.raises(ConformanceFailure, match=r"layer0.tx: shape \(2,\).*\n.*layer0.ty: shape \(2,\)"):
        run(adapter, "Y1_decode")


def test_torch_tensors_and_lists_are_array_like():
    torch = pytest.importorskip("torch")

    def edit(out):
        return {k: (torch.as_tensor(v) if k.endswith(".tx") else v.tolist()) for k, v in out.items()}

    run(returns(edit), "Y1_decode")


@pytest.mark.parametrize(
    "keys", [("matched", "loss_l"), ("matched",), ("loss_c", "grad_conf"), ("loc_t", "loss_l"), ("conf_t",)]
)
def test_ssd_adapter_returning_some_keys_is_compared_on_those(keys):
    """The seed exposes no ``matched``; others expose little else: whatever subset a
    correct adapter returns, nothing crashes and it passes."""
    for name in ("S2_truth_equals_prior", "S11_two_images", "S3_best_prior_tie"):
        run(returns(lambda out: {k: out[k] for k in keys}), name)


def test_expected_shapes_are_the_references_on_every_fixture():
    for name, (case, expected) in FIXTURES.items():
        family = family_of(case)
        shapes = family.shapes(case)
        assert sorted(shapes) == sorted(family.keys(case)), name
        assert shapes == {k: v.shape for k, v in expected.items()}, name


# ---------------------------------------------------------------- skip_reason at test time (issue 9, item 9)


class FlakySkipReason(Reference):
    def __init__(self, result):
        super().__init__()
        self.result = result

    def skip_reason(self, device):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.mark.parametrize(
    "result,message",
    [
        (RuntimeError("driver gone"), r"ref: skip_reason\('cpu'\) raised RuntimeError: driver gone"),
        (True, r"ref: skip_reason\('cpu'\) returned True, expected a str or None"),
    ],
)
def test_skip_reason_errors_fail_the_test_naming_it(result, message):
    with pytest.raises(ConformanceFailure, match=message):
        run(FlakySkipReason(result), "Y1_decode")
