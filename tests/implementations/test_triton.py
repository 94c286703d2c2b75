"""The Triton kernels (implementations/triton_yolo.py, triton_ssd.py) against the NumPy reference.

On CPU through Triton's interpreter, on small hand cases: a cell shared by two targets (Y5),
the ignore rule at and above its threshold with cx = 1 (Y3, Y4), no targets (Y8); a prior
forced by two truths (S4), equal mining scores at the cut (S10), a batch without truths (S12,
S13); and the multi-image cases of test_batched_torch. The native kernels are compiled for
sm_90 with the wheel's ptxas, which needs no GPU (running them does).
"""

from __future__ import annotations

import numpy as np
import pytest

triton = pytest.importorskip("triton", reason="triton is not importable (pip install triton)")
ry = pytest.importorskip("reference.yolo", reason="reference.yolo is not importable yet")
rs = pytest.importorskip("reference.ssd", reason="reference.ssd is not importable yet")

from test_batched_torch import assert_matches, obj_only, ssd_case, yolo_case, yolo_keys  # noqa: E402

from conformance.families.ssd.strategies import grid_priors  # noqa: E402
from implementations import triton_loss  # noqa: E402
from implementations.adapter import SSD_GRAD_KEYS, SSD_LOSS_KEYS, SSD_TARGET_KEYS  # noqa: E402
from reference.cases import SsdCase, SsdSettings, YoloCase, YoloSettings  # noqa: E402

adapter = triton_loss.adapter
SSD_KEYS = SSD_TARGET_KEYS + SSD_LOSS_KEYS + SSD_GRAD_KEYS + ("decoded",)


def yolo_both(case: YoloCase) -> tuple:
    """(triton on CPU, reference at float32 probabilities) for ``case`` rounded to float32."""
    case = case.astype("float32")
    return adapter.yolo(case, "cpu", "float32"), ry.evaluate(case, prob_dtype="float32")


def ssd_both(case: SsdCase) -> tuple:
    case = case.astype("float32")
    return adapter.ssd(case, "cpu", "float32"), rs.evaluate(case)


def one_layer(targets, anchors, settings=YoloSettings(), num_classes: int = 3) -> YoloCase:
    """B = 1, G = 4, img_dim 64 (stride 16 px: an anchor of 16 px is 1 cell)."""
    x = np.random.default_rng(5).normal(0, 1.5, (1, len(anchors) * (num_classes + 5), 4, 4))
    return YoloCase(
        outputs=(x,),
        anchors=(np.asarray(anchors, float),),
        targets=np.asarray(targets, float).reshape(-1, 6),
        num_classes=num_classes,
        img_dim=64.0,
        settings=settings,
    )


def test_each_mode_builds_its_own_kernels():
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    interpreted, native = triton_loss.kernels(True), triton_loss.kernels(False)
    for name in ("triton_yolo", "triton_ssd"):
        assert interpreted[name] is not native[name]
        names = [n for n in vars(native[name]) if n.endswith("_kernel")]
        assert len(names) >= 2, names
        for kernel in names:
            assert isinstance(getattr(interpreted[name], kernel), InterpretedFunction), kernel
            assert type(getattr(native[name], kernel)) is JITFunction, kernel


def test_skip_reasons():
    assert adapter.skip_reason("cpu") is None
    assert "not supported" in adapter.skip_reason("tpu")
    import torch

    if not torch.cuda.is_available():
        assert adapter.skip_reason("cuda") == "torch.cuda.is_available() is False"


def test_yolo_collision_last_row_wins_and_labels_unite():
    """Y5: rows 0 and 1 share (b, anchor 0, cell (1, 1)); row 1's tx..th, class_mask and
    iou_scores win, tcls holds both labels, the cell counts once."""
    targets = [[0, 0, 0.30, 0.40, 0.25, 0.25], [0, 1, 0.31, 0.45, 0.20, 0.22], [0, 2, 0.80, 0.10, 0.50, 0.40]]
    got, ref = yolo_both(one_layer(targets, [[16, 16], [48, 32]]))
    assert_matches(got, ref, yolo_keys(1), "float32", obj_only(ref, 1))
    obj = got["layer0.obj_mask"]
    assert obj.sum() == 2 and obj[0, 0, 1, 1]
    assert got["layer0.tx"][0, 0, 1, 1] == pytest.approx(0.31 * 4 - 1, abs=1e-6)
    np.testing.assert_array_equal(got["layer0.tcls"][0, 0, 1, 1], [1, 1, 0])


@pytest.mark.parametrize("ignore_thres, cleared", [(0.5, False), (0.25, True)])
def test_yolo_ignore_rule_is_strict_and_cx_one_is_the_last_cell(ignore_thres, cleared):
    """Y4: a 1x1-cell target against anchors of 1x1 and 2x1 cells: wh-IoU 1 and exactly 0.5.
    Only wh-IoU > ignore_thres clears noobj at anchor 1. Y3: cx = 1 lies in column G - 1, tx = 1."""
    case = one_layer([[0, 1, 1.0, 0.40, 0.25, 0.25]], [[16, 16], [32, 16]], YoloSettings(ignore_thres=ignore_thres))
    got, ref = yolo_both(case)
    assert_matches(got, ref, yolo_keys(1), "float32", obj_only(ref, 1))
    assert got["layer0.obj_mask"][0, 0, 1, 3] and got["layer0.tx"][0, 0, 1, 3] == 1.0
    assert got["layer0.noobj_mask"][0, 1, 1, 3] == (not cleared)
    assert got["layer0.noobj_mask"].sum() == 2 * 16 - 1 - cleared


def test_yolo_without_targets_only_the_noobj_term_counts():
    got, ref = yolo_both(one_layer(np.zeros((0, 6)), [[16, 16], [48, 32]]))
    assert_matches(got, ref, yolo_keys(1), "float32")
    for key in ("loss_x", "loss_y", "loss_w", "loss_h", "loss_conf_obj", "loss_cls"):
        assert got[f"layer0.{key}"] == 0.0, key
    assert got["layer0.loss_conf_noobj"] > 0 and not got["layer0.obj_mask"].any()


@pytest.mark.parametrize("kind", ["shared", "empty"])
def test_yolo_two_layers_match_reference(kind):
    got, ref = yolo_both(yolo_case(kind))
    assert_matches(got, ref, yolo_keys(2), "float32", obj_only(ref, 2))


def quadrant_priors() -> np.ndarray:
    """(5, 4) centre-size: the four quadrants of the image (row by row), then the whole image."""
    return np.concatenate([grid_priors(2, (0.5,)), grid_priors(1, (1.0,))])


def test_ssd_forced_match_later_truth_wins():
    """S4, the spec's example: both truths force the first quadrant; the later one (label 0)
    takes it, label 2 appears nowhere."""
    priors = quadrant_priors()
    rng = np.random.default_rng(3)
    case = SsdCase(
        loc=rng.normal(0, 1, (1, 5, 4)),
        conf=rng.normal(0, 1, (1, 5, 4)),
        priors=priors,
        truths=(np.array([[0, 0, 0.5, 0.5, 2], [0, 0, 1, 0.5, 0]], float),),
    )
    got, ref = ssd_both(case)
    assert_matches(got, ref, SSD_KEYS, "float32", {"loc_t": ref["pos_mask"]})
    np.testing.assert_array_equal(got["conf_t"][0], [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(got["matched"][0], [1, 1, 0, 0, 1])


def test_ssd_equal_mining_scores_take_the_lowest_priors():
    """S10: one positive (prior 5, the truth's own box), neg_pos 3, every logit 0: all seven
    background priors score log C; the three lowest-indexed are mined."""
    cy, cx = np.meshgrid([0.25, 0.75], [0.125, 0.375, 0.625, 0.875], indexing="ij")
    priors = np.column_stack([cx.ravel(), cy.ravel(), np.full(8, 0.25), np.full(8, 0.5)])
    case = SsdCase(
        loc=np.zeros((1, 8, 4)),
        conf=np.zeros((1, 8, 3)),
        priors=priors,
        truths=(np.array([[0.25, 0.5, 0.5, 1.0, 1]]),),
        settings=SsdSettings(neg_pos=3),
    )
    got, ref = ssd_both(case)
    assert_matches(got, ref, SSD_KEYS, "float32", {"loc_t": ref["pos_mask"]})
    np.testing.assert_array_equal(np.flatnonzero(got["pos_mask"][0]), [5])
    np.testing.assert_array_equal(np.flatnonzero(got["neg_mask"][0]), [0, 1, 2])


def test_ssd_without_truths_everything_is_zero():
    """S12, S13: matched -1, no positive, no negative, zero losses and gradients."""
    rng = np.random.default_rng(4)
    case = SsdCase(
        loc=rng.normal(0, 1, (2, 5, 4)),
        conf=rng.normal(0, 1, (2, 5, 4)),
        priors=quadrant_priors(),
        truths=(np.zeros((0, 5)), np.zeros((0, 5))),
    )
    got, ref = ssd_both(case)
    assert_matches(got, ref, SSD_KEYS, "float32")
    assert (got["matched"] == -1).all() and not got["neg_mask"].any()
    assert got["loss_l"] == 0 and got["loss_c"] == 0 and not got["grad_conf"].any()


@pytest.mark.parametrize("kind", ["shared", "none"])
def test_ssd_batches_match_reference(kind):
    got, ref = ssd_both(ssd_case(kind))
    assert_matches(got, ref, SSD_KEYS, "float32", {"loc_t": ref["pos_mask"]})


# ---------------------------------------------------------------- native kernels, compiled

_POINTERS = {  # element types of the pointer arguments that are not float32
    "_assign_kernel": {"win_ptr": "*i32", "noobj_ptr": "*i8"},
    "_count_kernel": {"win_ptr": "*i32", "noobj_ptr": "*i8", "counts_ptr": "*i32"},
    "_dense_kernel": {"win_ptr": "*i32", "noobj_ptr": "*i8", "counts_ptr": "*i32", "obj_ptr": "*i8"},
    "_finalize_kernel": {"counts_ptr": "*i32"},
    "_match_kernel": {
        "labels_ptr": "*i32",
        "counts_ptr": "*i32",
        "matched_ptr": "*i64",
        "conf_t_ptr": "*i64",
        "num_pos_ptr": "*i32",
    },
    "_mine_loss_kernel": {"conf_t_ptr": "*i64", "num_pos_ptr": "*i32", "neg_ptr": "*i8"},
}
_FLOATS = {"threshold", "v0", "v1", "img_dim", "ignore_thres", "obj_scale", "noobj_scale", "log_clamp"}
_BLOCKS = {
    "BLOCK_T": 16,
    "BLOCK_A": 4,
    "BLOCK": 1024,
    "BLOCK_G": 32,
    "BLOCK_C": 128,
    "BLOCK_R": 64,
    "BLOCK_P": 32,
    "BLOCK_B": 32,
    "BLOCK_S": 1024,
}


@pytest.mark.parametrize("ints", ["i32", "one"])
@pytest.mark.parametrize(
    "module, kernel",
    [("triton_yolo", k) for k in list(_POINTERS)[:4]] + [("triton_ssd", k) for k in list(_POINTERS)[4:]],
)
def test_native_kernel_compiles_for_sm90(module, kernel, ints):
    """Every native kernel compiles for CUDA sm_90 (H100), with its integer arguments as i32
    and, as triton specialises an argument equal to 1, as the constant 1."""
    try:
        triton.knobs.nvidia.ptxas.path  # noqa: B018  (raises when the wheel has no ptxas)
    except Exception as exc:
        pytest.skip(f"triton has no usable ptxas: {type(exc).__name__}: {exc}")
    from triton.backends.compiler import GPUTarget

    fn = getattr(triton_loss.kernels(False)[module], kernel)
    signature, constants = {}, {}
    for name in fn.arg_names:
        if name in _BLOCKS:
            signature[name], constants[name] = "constexpr", _BLOCKS[name]
        elif name.endswith("_ptr"):
            signature[name] = _POINTERS[kernel].get(name, "*fp32")
        elif name in _FLOATS:
            signature[name] = "fp32"
        elif ints == "one":
            signature[name], constants[name] = "constexpr", 1
        else:
            signature[name] = "i32"
    source = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constants)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": False})
    assert f".entry {kernel}(" in compiled.asm["ptx"]
