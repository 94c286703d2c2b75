"""The torch adapter satisfies implementations/adapter.py: attributes, skip reasons, keys, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("reference.yolo", reason="reference.yolo is not importable yet")
pytest.importorskip("reference.ssd", reason="reference.ssd is not importable yet")

from implementations.adapter import (  # noqa: E402
    SSD_GRAD_KEYS,
    SSD_LOSS_KEYS,
    SSD_TARGET_KEYS,
    YOLO_LOSS_KEYS,
    YOLO_TARGET_KEYS,
    SsdAdapter,
    YoloAdapter,
)
from implementations.torch_adapter import adapter  # noqa: E402
from reference.cases import SsdCase, YoloCase  # noqa: E402

BOOL_KEYS = {"obj_mask", "noobj_mask", "pos_mask", "neg_mask"}
INT_KEYS = {"matched", "conf_t"}


def yolo_case(batch=2, num_classes=3):
    rng = np.random.default_rng(7)
    anchors = (np.array([[116.0, 90.0], [156.0, 198.0]]), np.array([[30.0, 61.0], [62.0, 45.0]]))
    outputs = tuple(rng.normal(size=(batch, 2 * (num_classes + 5), g, g)) for g in (4, 8))
    targets = np.array([[0, 1, 0.3, 0.4, 0.2, 0.3], [1, 2, 0.8, 0.1, 0.5, 0.4]])
    return YoloCase(outputs=outputs, anchors=anchors, targets=targets, num_classes=num_classes, img_dim=128.0)


def ssd_case(batch=2, num_priors=6, num_classes=4):
    rng = np.random.default_rng(8)
    priors = np.column_stack([rng.uniform(0.2, 0.8, (num_priors, 2)), rng.uniform(0.1, 0.5, (num_priors, 2))])
    truths = (np.array([[0.1, 0.2, 0.5, 0.6, 2]]), np.zeros((0, 5)))
    return SsdCase(
        loc=rng.normal(size=(batch, num_priors, 4)),
        conf=rng.normal(size=(batch, num_priors, num_classes)),
        priors=priors,
        truths=truths,
    )


def check_dtype(key: str, value: np.ndarray, dtype: str) -> None:
    leaf = key.rsplit(".", 1)[-1]
    if leaf in BOOL_KEYS:
        assert value.dtype == bool, key
    elif leaf in INT_KEYS:
        assert value.dtype == np.int64, key
    else:
        assert value.dtype == np.dtype(dtype), key


def test_protocol_attributes():
    assert isinstance(adapter, YoloAdapter) and isinstance(adapter, SsdAdapter)
    assert adapter.name == "torch"
    assert tuple(adapter.devices) == ("cpu", "cuda")
    assert tuple(adapter.dtypes) == ("float64", "float32")
    assert adapter.skip_reason("cpu") is None


def test_cuda_skip_reason_follows_availability():
    reason = adapter.skip_reason("cuda")
    if torch.cuda.is_available():
        assert reason is None
    else:
        assert reason == "torch.cuda.is_available() is False"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_yolo_returns_every_key_with_its_shape_and_dtype(dtype):
    case = yolo_case().astype(dtype)
    out = adapter.yolo(case, "cpu", dtype)
    for k, x in enumerate(case.outputs):
        b, _, g, _ = x.shape
        for key in ("output", "grad") + YOLO_TARGET_KEYS + YOLO_LOSS_KEYS:
            assert f"layer{k}.{key}" in out, key
            check_dtype(f"layer{k}.{key}", out[f"layer{k}.{key}"], dtype)
        assert out[f"layer{k}.output"].shape == (b, 2 * g * g, 5 + case.num_classes)
        assert out[f"layer{k}.grad"].shape == x.shape
        assert out[f"layer{k}.tcls"].shape == (b, 2, g, g, case.num_classes)
        assert out[f"layer{k}.loss_total"].shape == ()
    layer_sum = out["layer0.loss_total"] + out["layer1.loss_total"]
    np.testing.assert_allclose(out["loss_total"], layer_sum, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ssd_returns_every_key_with_its_shape_and_dtype(dtype):
    case = ssd_case().astype(dtype)
    out = adapter.ssd(case, "cpu", dtype)
    b, p, c = case.conf.shape
    shapes = {
        "matched": (b, p),
        "conf_t": (b, p),
        "loc_t": (b, p, 4),
        "pos_mask": (b, p),
        "neg_mask": (b, p),
        "decoded": (b, p, 4),
        "loss_l": (),
        "loss_c": (),
        "grad_loc": (b, p, 4),
        "grad_conf": (b, p, c),
    }
    for key in SSD_TARGET_KEYS + SSD_LOSS_KEYS + SSD_GRAD_KEYS + ("decoded",):
        assert out[key].shape == shapes[key], key
        check_dtype(key, out[key], dtype)
    assert (out["matched"][1] == -1).all()
