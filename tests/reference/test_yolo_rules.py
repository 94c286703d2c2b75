"""YOLOv3 float64 reference: hand-computed cases and one test per spec rule Y1..Y14.

The small layer used throughout: B=1, A=2, C=2, G=2, img_dim=8 (stride 4 pixels),
anchors (4, 4) and (8, 2) pixels = (1, 1) and (2, 0.5) grid units.
"""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from reference import yolo
from reference.cases import YoloCase, YoloSettings
from reference.errors import CoordinateError, LabelError

ANCHORS = np.array([[4.0, 4.0], [8.0, 2.0]])
IMG, G, C, A = 8.0, 2, 2, 2
S = YoloSettings()


def zeros_x(batch=1, grid=G, anchors=A, classes=C):
    return np.zeros((batch, anchors * (classes + 5), grid, grid))


def put(x, b, a, channel, row, col, value, classes=C):
    """Set logit ``channel`` of anchor ``a`` at (row, col) in x (B, A*(C+5), G, G)."""
    x[b, a * (classes + 5) + channel, row, col] = value


def layer(x, targets, anchors=ANCHORS, classes=C, img=IMG, settings=S, prob_dtype="float64"):
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 6)
    asg = yolo.assign(targets, anchors, x.shape[2], img, settings.ignore_thres)
    built = yolo.build_targets(x, targets, anchors, classes, img, asg)
    return asg, built, yolo.loss_terms(x, built, settings, prob_dtype)


# One target: gx = 0.6, gy = 1.6, gw = 1.5, gh = 0.5 (grid units).
# wh-IoU: anchor 0 (1, 1): 0.5 / (1 + 0.75 - 0.5) = 0.4; anchor 1 (2, 0.5): 0.75 / 1 = 0.75.
TARGET = [[0, 1, 0.3, 0.8, 0.75, 0.25]]


# ---------------------------------------------------------------- hand-computed cases


def test_hand_decode_zero_logits():
    x = zeros_x()
    put(x, 0, 1, 2, 1, 0, math.log(2.0))  # anchor 1, row 1, col 0: width doubled
    out = yolo.decode(x, ANCHORS, C, IMG)
    assert out.shape == (1, A * G * G, 5 + C) and out.dtype == np.float64
    # row index = anchor*G*G + row*G + col; centre (col + 0.5, row + 0.5) * stride
    assert_allclose(out[0, 0], [2, 2, 4, 4, 0.5, 0.5, 0.5])
    assert_allclose(out[0, 1], [6, 2, 4, 4, 0.5, 0.5, 0.5])
    assert_allclose(out[0, 2], [2, 6, 4, 4, 0.5, 0.5, 0.5])
    assert_allclose(out[0, 4 + 2], [2, 6, 16, 2, 0.5, 0.5, 0.5])
    assert_allclose(out[0, 4 + 3], [6, 6, 8, 2, 0.5, 0.5, 0.5])


def test_hand_assign():
    asg = yolo.assign(np.array(TARGET, float), ANCHORS, G, IMG, 0.5)
    assert_allclose(asg.wh_iou, [[0.4, 0.75]])
    assert_array_equal(asg.best_anchor, [1])
    assert_array_equal(asg.gi, [0])
    assert_array_equal(asg.gj, [1])
    assert_array_equal(asg.ignore, [[False, True]])
    assert_allclose(asg.anchor_margin, [0.35])
    assert_allclose(asg.cell_margin, [0.4])  # gx = 0.6 is 0.4 from the boundary 1
    assert_allclose(asg.ignore_margin, [[0.1, 0.25]])
    for name in ("best_anchor", "gi", "gj"):
        assert getattr(asg, name).dtype == np.int64


def test_hand_build_targets():
    x = zeros_x()
    put(x, 0, 1, 6, 1, 0, math.log(3.0))  # class 1 probability 0.75 at the obj cell
    _, built, _ = layer(x, TARGET)
    obj = np.zeros((1, A, G, G), bool)
    obj[0, 1, 1, 0] = True
    assert_array_equal(built["obj_mask"], obj)
    assert_array_equal(built["noobj_mask"], ~obj)
    assert_array_equal(built["tconf"], obj.astype(float))
    assert_allclose(built["tx"][0, 1, 1, 0], 0.6)
    assert_allclose(built["ty"][0, 1, 1, 0], 0.6)
    assert_allclose(built["tw"][0, 1, 1, 0], math.log(0.75))
    assert_allclose(built["th"][0, 1, 1, 0], 0.0, atol=1e-15)
    assert_array_equal(built["tcls"][0, 1, 1, 0], [0.0, 1.0])
    assert built["tcls"].sum() == 1.0
    assert built["class_mask"][0, 1, 1, 0] == 1.0 and built["class_mask"].sum() == 1.0
    assert_allclose(built["class_margin"][0, 1, 1, 0], 0.25)
    assert_allclose(built["class_margin"][0, 0, 0, 0], 0.0)


def test_hand_iou_scores():
    # pred box at the cell (0.5, 1.5, 2, 0.5) against target (0.6, 1.6, 1.5, 0.5), +1 pixel:
    # inter (1.35 + 0.15 + 1) * (1.75 - 1.35 + 1) = 3.5; areas 3 * 1.5 = 4.5 and 2.5 * 1.5 = 3.75
    _, built, _ = layer(zeros_x(), TARGET)
    assert_allclose(built["iou_scores"][0, 1, 1, 0], 3.5 / (4.5 + 3.75 - 3.5))
    assert np.count_nonzero(built["iou_scores"]) == 1


def test_hand_loss_terms():
    x = zeros_x()
    put(x, 0, 1, 4, 1, 0, math.log(3.0))  # conf 0.75 at the obj cell
    put(x, 0, 1, 6, 1, 0, math.log(3.0))  # class 1 probability 0.75
    put(x, 0, 0, 4, 0, 0, -math.log(3.0))  # one noobj conf at 0.25
    _, _, t = layer(x, TARGET)
    ln2 = math.log(2.0)
    assert_allclose(t["loss_x"], 0.1**2)
    assert_allclose(t["loss_y"], 0.1**2)
    assert_allclose(t["loss_w"], math.log(0.75) ** 2)
    assert_allclose(t["loss_h"], 0.0, atol=1e-30)
    assert_allclose(t["loss_conf_obj"], -math.log(0.75))
    noobj = (-math.log(0.75) + 6 * ln2) / 7  # 7 noobj cells: one at p = 0.25, six at 0.5
    assert_allclose(t["loss_conf_noobj"], noobj)
    assert_allclose(t["loss_conf"], -math.log(0.75) + 100 * noobj)
    assert_allclose(t["loss_cls"], (ln2 - math.log(0.75)) / 2)
    total = 0.02 + math.log(0.75) ** 2 - math.log(0.75) + 100 * noobj + (ln2 - math.log(0.75)) / 2
    assert_allclose(t["loss_total"], total)
    for v in t.values():
        assert isinstance(v, np.ndarray) and v.shape == () and v.dtype == np.float64


# ---------------------------------------------------------------- one test per rule


def test_Y1_decode_flattens_anchor_row_col_and_scales_by_stride():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, A * (C + 5), 3, 3))
    out = yolo.decode(x, ANCHORS, C, 12.0)  # G = 3, stride 4
    xc = x.reshape(2, A, C + 5, 3, 3)
    b, a, r, c = 1, 1, 2, 0
    row = out[b, a * 9 + r * 3 + c]
    sig = 1 / (1 + np.exp(-xc[b, a, :, r, c]))
    expect = [
        (sig[0] + c) * 4,
        (sig[1] + r) * 4,
        np.exp(xc[b, a, 2, r, c]) * 2 * 4,
        np.exp(xc[b, a, 3, r, c]) * 0.5 * 4,
        *sig[4:],
    ]
    assert_allclose(row, expect, rtol=1e-14)


def test_Y2_best_anchor_ties_take_lowest_index_and_margin():
    # gw = gh = 0.5 gives wh-IoU 0.25 with both anchors: an exact tie
    asg = yolo.assign(np.array([[0, 0, 0.3, 0.3, 0.25, 0.25]]), ANCHORS, G, IMG, 0.5)
    assert_allclose(asg.wh_iou, [[0.25, 0.25]])
    assert asg.best_anchor[0] == 0
    assert asg.anchor_margin[0] == 0.0
    one = yolo.assign(np.array(TARGET, float), ANCHORS[:1], G, IMG, 0.5)
    assert one.anchor_margin[0] == np.inf and one.best_anchor[0] == 0


def test_Y2_wh_iou_keeps_seed_epsilon():
    tiny = np.array([[1e-9, 1e-9]])
    iou = yolo.wh_iou(tiny, np.array([[1e-9, 1e-9]]))
    assert_allclose(iou, [[1e-18 / (1e-18 + 1e-16)]])


def test_Y3_cx_equal_one_goes_to_last_cell():
    targets = np.array([[0, 0, 1.0, 1.0, 0.5, 0.5]])
    asg, built, _ = layer(zeros_x(), targets)
    assert asg.gi[0] == G - 1 and asg.gj[0] == G - 1
    a = asg.best_anchor[0]
    assert built["obj_mask"][0, a, G - 1, G - 1]
    assert built["tx"][0, a, G - 1, G - 1] == 1.0 and built["ty"][0, a, G - 1, G - 1] == 1.0


def test_Y3_cell_is_floor_and_margin_is_distance_to_inner_boundary():
    targets = np.array([[0, 0, 0.0, 0.49, 0.5, 0.5], [0, 0, 0.26, 0.74, 0.5, 0.5]])
    asg = yolo.assign(targets, ANCHORS, 4, 16.0, 0.5)  # G = 4: gx = 0, 1.04; gy = 1.96, 2.96
    assert_array_equal(asg.gi, [0, 1])
    assert_array_equal(asg.gj, [1, 2])
    # row 0: gx = 0 is 1 from boundary 1, gy = 1.96 is 0.04 from 2; row 1: 0.04 and 0.04
    assert_allclose(asg.cell_margin, [0.04, 0.04], atol=1e-14)
    one_cell = yolo.assign(targets, ANCHORS, 1, 4.0, 0.5)
    assert_array_equal(one_cell.cell_margin, [np.inf, np.inf])


def test_Y4_ignore_is_strictly_above_threshold_and_masks_disjoint():
    # gw = 1, gh = 0.5: wh-IoU with anchor 0 (1, 1) is exactly 0.5, with anchor 1 (2, 0.5) 0.5
    targets = np.array([[0, 0, 0.3, 0.3, 0.5, 0.25]])
    asg, built, _ = layer(zeros_x(), targets)
    assert_array_equal(asg.wh_iou, [[0.5, 0.5]])
    assert not asg.ignore.any()
    assert_array_equal(asg.ignore_margin, [[0.0, 0.0]])
    assert built["noobj_mask"].sum() == A * G * G - 1  # only the best anchor's cell
    asg2, built2, _ = layer(zeros_x(), targets, settings=YoloSettings(ignore_thres=0.49))
    assert asg2.ignore.all()
    assert not built2["noobj_mask"][0, :, 0, 0].any()
    assert built2["obj_mask"].sum() == 1
    assert not (built2["obj_mask"] & built2["noobj_mask"]).any()


def test_Y5_last_target_row_wins_and_tcls_is_union():
    x = zeros_x()
    put(x, 0, 1, 5, 1, 0, 2.0)  # predicted class 0 at the shared cell
    first = [0, 0, 0.3, 0.8, 0.75, 0.25]  # cell (row 1, col 0), anchor 1
    second = [0, 1, 0.4, 0.9, 0.8, 0.25]  # same cell and anchor, other label and box
    asg, built, t = layer(x, [first, second])
    assert_array_equal(asg.best_anchor, [1, 1])
    cell = (0, 1, 1, 0)
    assert built["obj_mask"].sum() == 1
    assert_allclose(built["tx"][cell], 0.8)
    assert_allclose(built["ty"][cell], 0.8)
    assert_allclose(built["tw"][cell], math.log(1.6 / 2))
    assert_array_equal(built["tcls"][cell], [1.0, 1.0])
    assert built["class_mask"][cell] == 0.0  # winner's label 1, argmax 0
    _, built_rev, _ = layer(x, [second, first])
    assert_allclose(built_rev["tx"][cell], 0.6)
    assert built_rev["class_mask"][cell] == 1.0
    assert_allclose(t["loss_x"], (0.5 - 0.8) ** 2)  # one obj cell, counted once


def test_Y5_collisions_many_rows_vectorised():
    rng = np.random.default_rng(5)
    n = 200
    targets = np.column_stack(
        [
            np.zeros(n),
            rng.integers(0, C, n),
            rng.uniform(0, 1, n),
            rng.uniform(0, 1, n),
            np.full(n, 0.75),
            np.full(n, 0.25),
        ]
    )
    asg, built, _ = layer(zeros_x(), targets)
    for gj in range(G):
        for gi in range(G):
            rows = np.nonzero((asg.gi == gi) & (asg.gj == gj))[0]
            if len(rows):
                last = rows[-1]
                assert_allclose(built["tx"][0, 1, gj, gi], targets[last, 2] * G - gi)
                labels = np.unique(targets[rows, 1]).astype(int)
                assert_array_equal(np.nonzero(built["tcls"][0, 1, gj, gi])[0], labels)


def test_Y6_size_targets_log_ratio_with_epsilon():
    _, built, _ = layer(zeros_x(), TARGET)
    assert built["tw"][0, 1, 1, 0] == math.log(1.5 / 2.0 + 1e-16)
    assert built["th"][0, 1, 1, 0] == math.log(0.5 / 0.5 + 1e-16)


def test_Y7_bce_clamps_each_log_at_minus_100():
    x = zeros_x()
    put(x, 0, 1, 4, 1, 0, -800.0)  # obj conf p = 0: log p clamped, term 100
    put(x, 0, 0, 4, 0, 0, 800.0)  # a noobj conf p = 1: log(1 - p) clamped, term 100
    _, _, t = layer(x, TARGET)
    assert t["loss_conf_obj"] == 100.0
    assert_allclose(t["loss_conf_noobj"], (100.0 + 6 * math.log(2)) / 7)
    _, _, t2 = layer(x, TARGET, settings=YoloSettings(log_clamp=-50.0, obj_scale=2.0, noobj_scale=3.0))
    assert t2["loss_conf_obj"] == 50.0
    assert_allclose(t2["loss_conf"], 2 * 50.0 + 3 * (50.0 + 6 * math.log(2)) / 7)


def test_Y8_no_targets_every_term_zero_but_noobj():
    x = np.random.default_rng(8).normal(size=zeros_x().shape)
    _, built, t = layer(x, np.zeros((0, 6)))
    assert not built["obj_mask"].any() and built["noobj_mask"].all()
    for k in ("loss_x", "loss_y", "loss_w", "loss_h", "loss_conf_obj", "loss_cls"):
        assert t[k] == 0.0
    assert t["loss_conf_noobj"] > 0 and t["loss_total"] == 100 * t["loss_conf_noobj"]
    grad = yolo.gradient(x, built, S).reshape(1, A, C + 5, G, G)
    assert np.count_nonzero(grad[:, :, [0, 1, 2, 3, 5, 6]]) == 0
    assert np.all(grad[:, :, 4] > 0)


def test_Y9_gradient_zero_where_clamp_active():
    x = zeros_x()
    put(x, 0, 1, 4, 1, 0, -800.0)
    put(x, 0, 0, 4, 0, 0, 800.0)
    _, built, _ = layer(x, TARGET)
    grad = yolo.gradient(x, built, S).reshape(1, A, C + 5, G, G)
    assert grad[0, 1, 4, 1, 0] == 0.0 and grad[0, 0, 4, 0, 0] == 0.0
    assert_allclose(grad[0, 0, 4, 0, 1], 100 * 0.5 / 7)  # unclamped noobj: noobj_scale * p / n


def test_Y10_float32_probability_saturates_to_clamp():
    x = zeros_x()
    put(x, 0, 0, 4, 0, 0, 20.0)  # a noobj conf logit of 20
    _, built, t64 = layer(x, TARGET)
    _, _, t32 = layer(x, TARGET, prob_dtype="float32")
    p = 1 / (1 + math.exp(-20.0))
    assert_allclose(t64["loss_conf_noobj"] * 7 - 6 * math.log(2), -math.log(1 - p), rtol=1e-7)
    assert_allclose(t32["loss_conf_noobj"] * 7 - 6 * math.log(2), 100.0)
    g32 = yolo.gradient(x, built, S, "float32").reshape(1, A, C + 5, G, G)
    g64 = yolo.gradient(x, built, S).reshape(1, A, C + 5, G, G)
    assert g32[0, 0, 4, 0, 0] == 0.0 and g64[0, 0, 4, 0, 0] > 0.0


def test_Y11_class_mask_argmax_lowest_on_ties_and_class_margin():
    x = zeros_x()  # both class probabilities 0.5 at the obj cell: argmax 0 != label 1
    _, built, _ = layer(x, TARGET)
    assert built["class_mask"][0, 1, 1, 0] == 0.0
    label0 = [[0, 0, 0.3, 0.8, 0.75, 0.25]]
    _, built0, _ = layer(x, label0)
    assert built0["class_mask"][0, 1, 1, 0] == 1.0
    assert_array_equal(built0["class_margin"], 0.0)
    _, built1, _ = layer(zeros_x(classes=1), label0, classes=1)
    assert_array_equal(built1["class_margin"], np.inf)


def test_Y12_iou_scores_plus_one_pixel_convention():
    one = np.array([[0.5, 0.5, 1.0, 1.0]])
    assert_allclose(yolo.bbox_iou_plus_one(one, one), [1.0])
    assert_allclose(yolo.bbox_iou_plus_one(one, np.array([[0.5, 0.5, 0.5, 0.5]])), [0.5625])


@pytest.mark.parametrize(
    "target,error,message",
    [
        ([0, 2, 0.5, 0.5, 0.5, 0.5], LabelError, r"targets\[0\] = 2\.0"),  # class C
        ([0, 1, 0.5, 0.5, 0.0, 0.5], CoordinateError, r"targets\[0\] = 0\.0"),  # w = 0
    ],
    ids=["label", "zero-width"],
)
def test_Y13_invalid_input_raises_typed_error(target, error, message):
    case = YoloCase(outputs=(zeros_x(),), anchors=(ANCHORS,), targets=np.array([target]), num_classes=C, img_dim=IMG)
    with pytest.raises(error, match=message):
        yolo.evaluate(case)


def test_Y14_float64_throughout_and_rounded_case_uses_same_rules():
    rng = np.random.default_rng(14)
    case = YoloCase(
        outputs=(rng.normal(size=(2, A * (C + 5), G, G)),),
        anchors=(ANCHORS,),
        targets=np.array(TARGET, float),
        num_classes=C,
        img_dim=IMG,
    )
    res = yolo.evaluate(case)
    for key, value in res.items():
        if not key.endswith("_mask") or key.endswith("class_mask"):
            assert value.dtype == np.float64, key
    res32 = yolo.evaluate(case.astype("float32"), prob_dtype="float32")
    assert_array_equal(res32["layer0.obj_mask"], res["layer0.obj_mask"])
    assert_allclose(res32["loss_total"], res["loss_total"], rtol=1e-6)
