"""The PyTorch YOLOv3 loss (implementations/torch_yolo.py) on CPU, float32 and float64.

Hand cases check single rules (Y3, Y5, Y8, Y9); a few fixed random cases check every key
against the NumPy reference. The property-based comparison is the conformance suite's job.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

reference_yolo = pytest.importorskip("reference.yolo", reason="reference.yolo is not importable yet")

from implementations import torch_yolo  # noqa: E402
from implementations.torch_adapter import adapter  # noqa: E402
from reference.cases import YoloCase  # noqa: E402
from reference.errors import CoordinateError, LabelError  # noqa: E402

TOL = {"float64": dict(rtol=1e-9, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
ANCHORS_13 = np.array([[116.0, 90.0], [156.0, 198.0], [373.0, 326.0]])
ANCHORS_26 = np.array([[30.0, 61.0], [62.0, 45.0], [59.0, 119.0]])


def one_layer_case(targets, grid=4, num_classes=3, batch=1, seed=0, scale=1.0, anchors=None):
    """A one-layer case with anchors (2, 2) of 1x1 and 2x2 cells and random logits."""
    img_dim = 32.0 * grid
    if anchors is None:
        anchors = np.array([[32.0, 32.0], [64.0, 64.0]])
    x = np.random.default_rng(seed).normal(size=(batch, len(anchors) * (num_classes + 5), grid, grid))
    return YoloCase(
        outputs=(x * scale,),
        anchors=(anchors,),
        targets=np.asarray(targets, dtype=np.float64).reshape(-1, 6),
        num_classes=num_classes,
        img_dim=img_dim,
    )


def random_case(seed, batch=2, num_classes=5, num_targets=6):
    """Two YOLOv3 layers (13, 26) with random logits and targets."""
    rng = np.random.default_rng(seed)
    outputs = tuple(rng.normal(size=(batch, 3 * (num_classes + 5), g, g)) * 2 for g in (13, 26))
    t = np.column_stack(
        [
            rng.integers(0, batch, num_targets),
            rng.integers(0, num_classes, num_targets),
            rng.uniform(0, 1, (num_targets, 2)),
            rng.uniform(0.02, 0.9, (num_targets, 2)),
        ]
    )
    return YoloCase(
        outputs=outputs, anchors=(ANCHORS_13, ANCHORS_26), targets=t, num_classes=num_classes, img_dim=416.0
    )


def assert_same(expected: dict, got: dict, dtype: str) -> None:
    """Every reference key present with its shape; discrete keys equal, floats within TOL."""
    for key, want in expected.items():
        want = np.asarray(want)
        assert key in got, key
        have = got[key]
        assert have.shape == want.shape, (key, have.shape, want.shape)
        if want.dtype == bool:
            assert have.dtype == bool and np.array_equal(have, want), key
        else:
            assert have.dtype == np.dtype(dtype), (key, have.dtype)
            np.testing.assert_allclose(have, want, err_msg=key, **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_single_target_by_hand(dtype):
    # G=4, img 128: stride 32; target at cx=0.30, cy=0.60 -> gx=1.2, gy=2.4 -> cell (gj=2, gi=1);
    # size 0.25 -> 1x1 cells -> anchor 0 (1x1) with IoU 1, anchor 1 (2x2) IoU 0.25.
    case = one_layer_case([[0, 2, 0.30, 0.60, 0.25, 0.25]]).astype(dtype)
    out = adapter.yolo(case, "cpu", dtype)
    obj = out["layer0.obj_mask"]
    assert obj.sum() == 1 and obj[0, 0, 2, 1]
    assert not out["layer0.noobj_mask"][0, 0, 2, 1] and out["layer0.noobj_mask"].sum() == 2 * 16 - 1
    np.testing.assert_allclose(out["layer0.tx"][0, 0, 2, 1], 0.30 * 4 - 1, rtol=1e-6)
    np.testing.assert_allclose(out["layer0.ty"][0, 0, 2, 1], 0.60 * 4 - 2, rtol=1e-6)
    np.testing.assert_allclose(out["layer0.tw"][0, 0, 2, 1], np.log(1.0 + 1e-16), atol=1e-6)
    assert out["layer0.tcls"][0, 0, 2, 1].tolist() == [0, 0, 1]
    assert_same(reference_yolo.evaluate(case, prob_dtype=dtype), out, dtype)


def test_cx_one_lands_in_last_cell():
    # Y3: cx = 1.0 gives gi = G - 1 and tx = 1.0 (the seed raised IndexError).
    out = adapter.yolo(one_layer_case([[0, 0, 1.0, 1.0, 0.25, 0.25]]), "cpu", "float64")
    assert out["layer0.obj_mask"][0, 0, 3, 3]
    assert out["layer0.tx"][0, 0, 3, 3] == 1.0 and out["layer0.ty"][0, 0, 3, 3] == 1.0


def test_shared_cell_last_row_wins_and_tcls_is_the_union():
    # Y5: 300 rows on one (b, anchor, gj, gi); the last row's offsets win, labels are the union.
    rng = np.random.default_rng(1)
    n = 300
    rows = np.column_stack([np.zeros(n), rng.integers(0, 2, n), rng.uniform(0.26, 0.49, (n, 2)), np.full((n, 2), 0.25)])
    rows[-1, 1] = 2
    out = adapter.yolo(one_layer_case(rows), "cpu", "float64")
    assert out["layer0.obj_mask"].sum() == 1
    np.testing.assert_allclose(out["layer0.tx"][0, 0, 1, 1], rows[-1, 2] * 4 - 1, rtol=1e-12)
    np.testing.assert_allclose(out["layer0.ty"][0, 0, 1, 1], rows[-1, 3] * 4 - 1, rtol=1e-12)
    assert out["layer0.tcls"][0, 0, 1, 1].tolist() == [1, 1, 1]


def test_last_per_key_keeps_the_last_row_of_each_key():
    key = torch.tensor([5, 3, 5, 3, 7, 5])
    assert sorted(torch_yolo.last_per_key(key).tolist()) == [3, 4, 5]
    assert torch_yolo.last_per_key(torch.zeros(0, dtype=torch.long)).numel() == 0


def test_no_targets_gives_zero_terms_not_nan():
    # Y8: every masked mean over nothing is 0; only loss_conf_noobj remains.
    out = adapter.yolo(one_layer_case(np.zeros((0, 6))), "cpu", "float32")
    for term in ("loss_x", "loss_y", "loss_w", "loss_h", "loss_conf_obj", "loss_cls"):
        assert out[f"layer0.{term}"] == 0.0, term
    assert np.isfinite(out["layer0.loss_conf_noobj"]) and out["layer0.loss_conf_noobj"] > 0
    assert np.all(np.isfinite(out["layer0.grad"]))


def test_saturated_logits_have_the_exact_clamped_gradient():
    # Y9: logits of order +-150 put p(1-p) far below 1e-12 (nn.BCELoss's backward departs from
    # the exact derivative there) and some log(p) below the -100 clamp (zero derivative).
    case = one_layer_case([[0, 1, 0.3, 0.6, 0.25, 0.25]], scale=150.0)
    out = adapter.yolo(case, "cpu", "float64")
    want = reference_yolo.evaluate(case)
    np.testing.assert_allclose(out["layer0.grad"], want["layer0.grad"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["loss_total"], want["loss_total"], rtol=1e-9)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_fixed_cases(seed, dtype):
    case = random_case(seed).astype(dtype)
    assert_same(reference_yolo.evaluate(case, prob_dtype=dtype), adapter.yolo(case, "cpu", dtype), dtype)


def test_gradient_matches_finite_differences():
    # Autograd against central differences of loss_total in float64 on small logits.
    case = one_layer_case([[0, 1, 0.3, 0.6, 0.3, 0.2]], grid=2, num_classes=2, scale=0.5)
    x = torch.tensor(case.outputs[0], requires_grad=True)
    targets = torch.tensor(case.targets)
    anchors = torch.tensor(case.anchors[0])

    def total(z):
        return torch_yolo.layer_loss(z, targets, anchors, 2, case.img_dim)["loss_total"]

    assert torch.autograd.gradcheck(total, (x,), eps=1e-6, atol=1e-6)


def test_invalid_input_raises_typed_errors():
    with pytest.raises(LabelError):
        adapter.yolo(one_layer_case([[0, 3, 0.3, 0.6, 0.25, 0.25]]), "cpu", "float64")
    with pytest.raises(CoordinateError):
        adapter.yolo(one_layer_case([[0, 0, -0.1, 0.6, 0.25, 0.25]]), "cpu", "float64")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_matches_reference(dtype):
    case = random_case(3).astype(dtype)
    assert_same(reference_yolo.evaluate(case, prob_dtype=dtype), adapter.yolo(case, "cuda", dtype), dtype)
