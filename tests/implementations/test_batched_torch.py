"""The loop-free batched torch losses match the NumPy reference on small fixed cases.

Cases cover the decided quirks: a cell shared by two targets (Y5), cx = 1.0 (Y3), no targets
(Y8), a prior that is the best of two truths (S4), an image without truths (S13), a batch
without positives (S12), and saturated logits (Y9, Y10).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

ry = pytest.importorskip("reference.yolo", reason="reference.yolo is not importable yet")
rs = pytest.importorskip("reference.ssd", reason="reference.ssd is not importable yet")

from implementations import torch_batched as tb  # noqa: E402
from implementations.adapter import SSD_GRAD_KEYS, SSD_LOSS_KEYS, SSD_TARGET_KEYS, YOLO_LOSS_KEYS, YOLO_TARGET_KEYS  # noqa: E402
from reference.cases import SsdCase, YoloCase  # noqa: E402

TOL = {"float64": (1e-9, 1e-11), "float32": (2e-4, 2e-6)}  # (rtol, atol)
EXACT = {"obj_mask", "noobj_mask", "tconf", "tcls", "class_mask", "matched", "conf_t", "pos_mask", "neg_mask"}


def yolo_case(kind: str, num_classes: int = 3) -> YoloCase:
    """Two layers (G = 4, 7), B = 2; ``kind`` picks the targets."""
    rng = np.random.default_rng(11)
    anchors = (np.array([[60.0, 50.0], [90.0, 110.0]]), np.array([[12.0, 14.0], [30.0, 22.0]]))
    outputs = tuple(rng.normal(0, 1.5, (2, 2 * (num_classes + 5), g, g)) for g in (4, 7))
    targets = {
        "shared": [
            [0, 1, 0.30, 0.40, 0.20, 0.30],
            [1, 2, 0.80, 0.10, 0.50, 0.40],
            [0, 2, 0.31, 0.41, 0.21, 0.29],
            [1, 0, 1.00, 0.55, 0.10, 0.15],
        ],
        "empty": np.zeros((0, 6)),
    }[kind]
    return YoloCase(
        outputs=outputs,
        anchors=anchors,
        targets=np.asarray(targets, float),
        num_classes=num_classes,
        img_dim=112.0,
        name=kind,
    )


def grid_priors() -> np.ndarray:
    """(72, 4) centre-size priors: a 6x6 grid at two sizes."""
    cy, cx = np.meshgrid(np.arange(6) / 6 + 1 / 12, np.arange(6) / 6 + 1 / 12, indexing="ij")
    rows = [np.column_stack([cx.ravel(), cy.ravel(), np.full(36, s), np.full(36, 1.3 * s)]) for s in (0.2, 0.4)]
    return np.clip(np.vstack(rows), 0.0, 1.0)


def ssd_case(kind: str, num_classes: int = 4) -> SsdCase:
    """B = 3 images over grid_priors(); ``kind`` picks the truths."""
    rng = np.random.default_rng(12)
    priors = grid_priors()
    truths = {
        # image 0: two nearly equal boxes share a best prior (S4); image 2 has no truth (S13)
        "shared": (
            [[0.10, 0.10, 0.30, 0.35, 0], [0.11, 0.10, 0.30, 0.36, 2], [0.50, 0.40, 0.95, 0.90, 1]],
            [[0.05, 0.12, 0.71, 0.83, 2]],
            np.zeros((0, 5)),
        ),
        "none": (np.zeros((0, 5)),) * 3,  # S12: no positive in the batch
    }[kind]
    truths = tuple(np.asarray(t, float).reshape(-1, 5) for t in truths)
    return SsdCase(
        loc=rng.normal(0, 1, (3, len(priors), 4)),
        conf=rng.normal(0, 2, (3, len(priors), num_classes)),
        priors=priors,
        truths=truths,
        name=kind,
    )


def assert_matches(got: dict, ref: dict, keys, dtype: str, where=None):
    rtol, atol = TOL[dtype]
    for key in keys:
        assert key in got, key
        g = np.asarray(got[key], dtype=np.float64)
        r = np.asarray(ref[key], dtype=np.float64)
        assert g.shape == r.shape, (key, g.shape, r.shape)
        if where is not None and key in where:
            g, r = g[where[key]], r[where[key]]
        if key.split(".")[-1] in EXACT:
            np.testing.assert_array_equal(g, r, err_msg=key)
        else:
            np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, err_msg=key)


def yolo_keys(layers: int):
    keys = ["loss_total"]
    for k in range(layers):
        keys += [f"layer{k}.{n}" for n in ("output", "grad") + YOLO_TARGET_KEYS + YOLO_LOSS_KEYS]
    return keys


def obj_only(ref: dict, layers: int) -> dict:
    """tx, ty, tw, th, iou_scores are compared where obj_mask is set (see adapter.py)."""
    return {
        f"layer{k}.{n}": ref[f"layer{k}.obj_mask"]
        for k in range(layers)
        for n in ("tx", "ty", "tw", "th", "iou_scores")
    }


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["shared", "empty"])
def test_yolo_matches_reference(kind, dtype):
    case = yolo_case(kind).astype(dtype)
    ref = ry.evaluate(case, prob_dtype=dtype)
    got = tb.adapter.yolo(case, "cpu", dtype)
    assert_matches(got, ref, yolo_keys(2), dtype, obj_only(ref, 2))
    if kind == "shared":  # the collision is real: one obj cell, a multi-hot tcls
        assert got["layer0.tcls"].sum(axis=-1).max() == 2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["shared", "none"])
def test_ssd_matches_reference(kind, dtype):
    case = ssd_case(kind).astype(dtype)
    ref = rs.evaluate(case)
    got = tb.adapter.ssd(case, "cpu", dtype)
    pos = ref["conf_t"] > 0
    keys = SSD_TARGET_KEYS + SSD_LOSS_KEYS + SSD_GRAD_KEYS + ("decoded",)
    assert_matches(got, ref, keys, dtype, {"loc_t": pos})
    if kind == "shared":
        assert (got["matched"][2] == -1).all() and got["neg_mask"].any()
    else:
        assert got["loss_l"] == 0 and got["loss_c"] == 0 and not got["grad_conf"].any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_yolo_closed_form_gradient_equals_autograd(dtype):
    case = yolo_case("shared")
    x = torch.tensor(case.outputs[0], dtype=dtype)
    x[0, 4] = 40.0  # conf saturates: sigma rounds to 1 in float32, the noobj log is clamped
    x[1, 4] = -40.0  # and the obj log of the other image
    x.requires_grad_(True)
    out = tb.yolo_layer(
        x,
        torch.tensor(case.targets, dtype=dtype),
        torch.tensor(case.anchors[0], dtype=dtype),
        case.num_classes,
        case.img_dim,
    )
    (auto,) = torch.autograd.grad(out["loss_total"], x)
    closed = tb.yolo_grad(x, out["p"], out)
    assert torch.isfinite(auto).all()
    torch.testing.assert_close(closed, auto, rtol=1e-5, atol=1e-7)


def ssd_tensors(case) -> tuple:
    """multibox_loss's array arguments for ``case`` as tensors: loc, conf, priors and the
    truths padded to boxes, labels, valid (tb.pad_truths)."""
    boxes, labels, valid = tb.pad_truths(case.truths)
    return tuple(torch.tensor(a) for a in (case.loc, case.conf, case.priors, boxes, labels, valid))


def test_ssd_closed_form_gradient_equals_autograd():
    loc, conf, *rest = ssd_tensors(ssd_case("shared"))
    out = tb.multibox_loss(loc.requires_grad_(), conf.requires_grad_(), *rest)
    auto = torch.autograd.grad(out["loss_l"] + out["loss_c"], (loc, conf))
    for closed, a in zip(tb.ssd_grad(loc, conf, out), auto):
        torch.testing.assert_close(closed, a, rtol=1e-12, atol=1e-15)


def test_topk_mining_selects_the_same_negatives_without_ties():
    args = ssd_tensors(ssd_case("shared"))
    by_sort = tb.multibox_loss(*args)
    by_topk = tb.multibox_loss(*args, topk=True)
    assert torch.equal(by_sort["neg_mask"], by_topk["neg_mask"])
    assert by_sort["neg_mask"].sum() > 0


def test_tensor_settings_equal_python_settings():
    """0-d tensor settings (the exported graphs' inputs) give what Python numbers give."""
    case = yolo_case("shared")
    x = torch.tensor(case.outputs[0], requires_grad=True)
    args = (x, torch.tensor(case.targets), torch.tensor(case.anchors[0]))
    settings = (0.3, 2.0, 0.5, -20.0)
    by_float = tb.yolo_layer(*args, case.num_classes, case.img_dim, *settings)
    by_tensor = tb.yolo_layer(*args, None, torch.tensor(case.img_dim), *(torch.tensor(v) for v in settings))
    for key, value in by_float.items():
        torch.testing.assert_close(by_tensor[key], value, rtol=0, atol=0, msg=key)
    grads = [torch.autograd.grad(o["loss_total"], x)[0] for o in (by_float, by_tensor)]
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)
    sargs = ssd_tensors(ssd_case("shared"))
    by_float = tb.multibox_loss(*sargs, 0.375, 1, (0.125, 0.25), topk=True)
    v = torch.tensor([0.125, 0.25])
    by_tensor = tb.multibox_loss(*sargs, torch.tensor(0.375), torch.tensor(1), (v[0], v[1]), topk=True)
    for key, value in by_float.items():
        torch.testing.assert_close(by_tensor[key], value, rtol=0, atol=0, msg=key)
