"""The ONNX Runtime adapter matches the NumPy reference, and its graphs compute everything.

Exporting a graph costs 15-30 s; graphs are cached on disk (LOSS_ONNX_CACHE) and sessions in
memory, so these tests export at most four graphs (YOLO and SSD, float64 and float32): the
settings and YOLO's C are graph inputs, not constants.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

ry = pytest.importorskip("reference.yolo", reason="reference.yolo is not importable yet")
rs = pytest.importorskip("reference.ssd", reason="reference.ssd is not importable yet")
ort = pytest.importorskip("onnxruntime")

from test_batched_torch import assert_matches, obj_only, ssd_case, yolo_case, yolo_keys  # noqa: E402

from implementations import onnx_runtime as onx  # noqa: E402
from implementations.adapter import SSD_GRAD_KEYS, SSD_LOSS_KEYS, SSD_TARGET_KEYS  # noqa: E402
from reference.cases import SsdCase, SsdSettings, YoloCase, YoloSettings  # noqa: E402
from reference.errors import InvalidInputError  # noqa: E402


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_yolo_matches_reference(dtype):
    for kind in ("shared", "empty"):  # one graph serves both: T = 4 and T = 0, G = 4 and 7
        case = yolo_case(kind).astype(dtype)
        ref = ry.evaluate(case, prob_dtype=dtype)
        got = onx.adapter.yolo(case, "cpu", dtype)
        assert_matches(got, ref, yolo_keys(2), dtype, obj_only(ref, 2))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ssd_matches_reference(dtype):
    for kind in ("shared", "none"):
        case = ssd_case(kind).astype(dtype)
        ref = rs.evaluate(case)
        got = onx.adapter.ssd(case, "cpu", dtype)
        keys = SSD_TARGET_KEYS + SSD_LOSS_KEYS + SSD_GRAD_KEYS + ("decoded",)
        assert_matches(got, ref, keys, dtype, {"loc_t": ref["conf_t"] > 0})


def _model(kind: str) -> onnx.ModelProto:
    key = ("yolo", "float64") if kind == "yolo" else ("ssd", "float64")
    return onnx.load_from_string(onx.cached_model(key, lambda: pytest.fail("graph not cached")))


@pytest.mark.parametrize("kind", ["yolo", "ssd"])
def test_graph_takes_only_raw_inputs_and_does_the_data_dependent_work(kind):
    onx.adapter.yolo(yolo_case("shared"), "cpu", "float64")  # make sure both graphs exist
    onx.adapter.ssd(ssd_case("shared"), "cpu", "float64")
    model = _model(kind)
    names = tuple(i.name for i in model.graph.input)
    assert names == (onx.YOLO_INPUTS if kind == "yolo" else onx.SSD_INPUTS)
    ops = {n.op_type for n in model.graph.node}
    for node in model.graph.node:  # functions are inlined by the exporter; look one level in
        for attr in node.attribute:
            if attr.g is not None:
                ops |= {n.op_type for n in attr.g.node}
    assert {"ArgMax", "ScatterElements"} <= ops
    if kind == "ssd":
        assert "TopK" in ops
    reductions = {
        a.s.decode()
        for n in model.graph.node
        if n.op_type == "ScatterElements"
        for a in n.attribute
        if a.name == "reduction"
    }
    assert "max" in reductions
    dims = [d.dim_param for i in model.graph.input for d in i.type.tensor_type.shape.dim]
    assert any(dims), "no dynamic axis"


def test_one_session_serves_every_shape():
    onx.adapter.ssd(ssd_case("shared"), "cpu", "float64")
    before = len(onx._SESSIONS)
    case = ssd_case("shared")
    small = SsdCase(
        loc=case.loc[:1, :36],
        conf=case.conf[:1, :36, :3],
        priors=case.priors[:36],
        truths=(np.array([[0.1, 0.1, 0.4, 0.5, 1.0]]),),
    )
    got = onx.adapter.ssd(small, "cpu", "float64")
    assert len(onx._SESSIONS) == before
    ref = rs.evaluate(small)
    np.testing.assert_array_equal(got["conf_t"], ref["conf_t"])
    np.testing.assert_allclose(got["loss_c"], ref["loss_c"], rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_graph_serves_every_setting_and_class_count(dtype):
    before = len(onx._SESSIONS)
    for num_classes, settings in ((3, YoloSettings()), (5, YoloSettings(0.3, 2.5, 0.5, -20.0))):
        case = yolo_case("shared", num_classes)
        case = YoloCase(
            outputs=case.outputs,
            anchors=case.anchors,
            targets=case.targets,
            num_classes=num_classes,
            img_dim=case.img_dim,
            settings=settings,
        ).astype(dtype)
        ref = ry.evaluate(case, prob_dtype=dtype)
        got = onx.adapter.yolo(case, "cpu", dtype)
        assert_matches(got, ref, yolo_keys(2), dtype, obj_only(ref, 2))
    for settings in (SsdSettings(), SsdSettings(0.375, 1, (0.125, 0.25)), SsdSettings(0.6, 0, (0.2, 0.1))):
        case = ssd_case("shared")
        case = SsdCase(loc=case.loc, conf=case.conf, priors=case.priors, truths=case.truths, settings=settings).astype(
            dtype
        )
        ref = rs.evaluate(case)
        got = onx.adapter.ssd(case, "cpu", dtype)
        keys = SSD_TARGET_KEYS + SSD_LOSS_KEYS + SSD_GRAD_KEYS + ("decoded",)
        assert_matches(got, ref, keys, dtype, {"loc_t": ref["conf_t"] > 0})
    assert len(onx._SESSIONS) <= before + 2


def test_adapter_protocol_and_bad_input():
    assert onx.adapter.name == "onnxruntime"
    assert set(onx.adapter.dtypes) == {"float32", "float64"}
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    expected = None if cuda else "onnxruntime has no CUDAExecutionProvider here"
    assert onx.adapter.skip_reason("cuda") == expected
    assert onx.adapter.skip_reason("cpu") is None
    case = yolo_case("shared")
    bad = YoloCase(
        outputs=case.outputs,
        anchors=case.anchors,
        targets=np.vstack([case.targets, [[0, 7, 0.5, 0.5, 0.1, 0.1]]]),
        num_classes=case.num_classes,
        img_dim=case.img_dim,
    )
    with pytest.raises(InvalidInputError, match=r"targets\[4\]"):
        onx.adapter.yolo(bad, "cpu", "float64")
