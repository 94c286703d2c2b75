"""The YOLOv3 golden fixture cases: curated (one per spec rule Y1..Y14 or quirk), generated,
realistic (YOLOv3-416). Every function returns a ``YoloCase`` with a unique ``name``;
values are binary fractions (see conformance/corpus.py).
"""

from __future__ import annotations

import numpy as np

from conformance.corpus import N_GENERATED, logits
from reference.cases import YoloCase, YoloSettings

YOLO416_ANCHORS = (
    ((116, 90), (156, 198), (373, 326)),  # G = 13
    ((30, 61), (62, 45), (59, 119)),  # G = 26
    ((10, 13), (16, 30), (33, 23)),
)  # G = 52


def _yolo(
    name: str,
    targets,
    *,
    anchors=((16, 16), (32, 32), (48, 24)),
    grid=4,
    img_dim=64.0,
    num_classes=2,
    batch=1,
    seed=0,
    settings=YoloSettings(),
) -> YoloCase:
    """A one-layer YOLO case; stride img_dim / grid (16 px by default)."""
    rng = np.random.default_rng(seed)
    a = np.asarray(anchors, dtype=np.float64)
    x = logits(rng, (batch, len(a) * (num_classes + 5), grid, grid))
    t = np.asarray(targets, dtype=np.float64).reshape(-1, 6)
    return YoloCase(
        outputs=(x,),
        anchors=(a,),
        targets=t,
        num_classes=num_classes,
        img_dim=float(img_dim),
        settings=settings,
        name=name,
    )


def _set_channel(case: YoloCase, channel: int, value, num_anchors: int) -> YoloCase:
    """A copy of the one-layer ``case`` with channel ``channel`` (0..C+4) of every anchor = value."""
    x = case.outputs[0].copy()
    b, ch, g, _ = x.shape
    x.reshape(b, num_anchors, ch // num_anchors, g, g)[:, :, channel] = value
    return YoloCase(
        outputs=(x,),
        anchors=case.anchors,
        targets=case.targets,
        num_classes=case.num_classes,
        img_dim=case.img_dim,
        settings=case.settings,
        name=case.name,
    )


# ---------------------------------------------------------------- curated YOLO (Y1..Y14)


def y1_decode() -> YoloCase:
    return _yolo("Y1_decode", [[0, 1, 0.40625, 0.65625, 0.3125, 0.1875]], seed=1)


def y2_best_anchor_tie() -> YoloCase:
    """Two identical anchors: the wh-IoUs tie exactly, the lowest index wins."""
    return _yolo(
        "Y2_best_anchor_tie", [[0, 0, 0.40625, 0.40625, 0.25, 0.25]], anchors=((16, 16), (16, 16), (48, 24)), seed=2
    )


def y2_single_anchor() -> YoloCase:
    return _yolo("Y2_single_anchor", [[0, 1, 0.59375, 0.28125, 0.125, 0.375]], anchors=((24, 32),), seed=3)


def y3_cx_equal_one() -> YoloCase:
    """cx = cy = 1.0: cell G-1, tx = ty = 1.0 (the seed raises IndexError)."""
    return _yolo("Y3_cx_equal_one", [[0, 1, 1.0, 1.0, 0.25, 0.25]], seed=4)


def y3_cell_boundary() -> YoloCase:
    """gx = 2.0 and gy = 1.0 exactly: cell (1, 2), tx = ty = 0."""
    return _yolo("Y3_cell_boundary", [[0, 0, 0.5, 0.25, 0.25, 0.5]], seed=5)


def y3_cx_zero() -> YoloCase:
    return _yolo("Y3_cx_zero", [[0, 0, 0.0, 0.0, 0.125, 0.125]], seed=6)


def y4_ignore_above_threshold() -> YoloCase:
    """Scaled anchors (1,1), (1.5,1), (4,4) vs a 1x1 box: anchor 1 has wh-IoU 2/3 > 0.5."""
    return _yolo(
        "Y4_ignore_above_threshold",
        [[0, 0, 0.40625, 0.65625, 0.25, 0.25]],
        anchors=((16, 16), (24, 16), (64, 64)),
        seed=7,
    )


def y4_ignore_exactly_threshold() -> YoloCase:
    """Scaled anchor (2, 1) vs a 1x1 box: wh-IoU exactly 0.5, not > 0.5, so noobj stays set."""
    return _yolo(
        "Y4_ignore_exactly_threshold", [[0, 1, 0.65625, 0.40625, 0.25, 0.25]], anchors=((16, 16), (32, 16)), seed=8
    )


def y5_two_targets_one_cell() -> YoloCase:
    """Two rows on (b=0, anchor 0, cell (1, 1)) with different labels: last wins, tcls multi-hot."""
    return _yolo(
        "Y5_two_targets_one_cell", [[0, 0, 0.3125, 0.3125, 0.25, 0.25], [0, 1, 0.375, 0.4375, 0.25, 0.1875]], seed=9
    )


def y5_same_cell_different_anchors() -> YoloCase:
    return _yolo(
        "Y5_same_cell_different_anchors",
        [[0, 0, 0.3125, 0.3125, 0.25, 0.25], [0, 1, 0.375, 0.4375, 0.75, 0.375]],
        seed=10,
    )


def y5_many_targets_collide() -> YoloCase:
    """40 rows on 4 cells (the seed's winner is arbitrary with many indices, pytorch #55516)."""
    rng = np.random.default_rng(11)
    n = 40
    cells = rng.integers(0, 2, size=(n, 2)) + 1  # cells 1..2 in each axis
    frac = rng.integers(0, 16, size=(n, 2)) / 16
    cxy = (cells + frac) / 4
    wh = rng.integers(3, 5, size=(n, 2)) / 16
    t = np.column_stack([np.zeros(n), rng.integers(0, 2, n), cxy, wh])
    return _yolo("Y5_many_targets_collide", t, seed=11)


def y6_tiny_box() -> YoloCase:
    return _yolo("Y6_tiny_box", [[0, 1, 0.5625, 0.1875, 2.0**-10, 2.0**-9]], seed=12)


def y6_whole_image_box() -> YoloCase:
    return _yolo("Y6_whole_image_box", [[0, 0, 0.5, 0.5, 1.0, 1.0]], seed=13)


def y7_batch_two_images() -> YoloCase:
    return _yolo(
        "Y7_batch_two_images",
        [
            [0, 0, 0.15625, 0.84375, 0.1875, 0.3125],
            [1, 1, 0.71875, 0.34375, 0.5, 0.25],
            [1, 0, 0.46875, 0.53125, 0.125, 0.125],
        ],
        batch=2,
        seed=14,
    )


def y7_three_layers() -> YoloCase:
    """Three layers G = 2, 4, 8 on a 64 px image, like YOLOv3's 13/26/52."""
    rng = np.random.default_rng(15)
    anchors = (((40, 32), (56, 48), (64, 64)), ((16, 24), (24, 16), (32, 32)), ((4, 6), (8, 8), (12, 10)))
    c = 2
    outs = tuple(logits(rng, (2, 3 * (c + 5), g, g)) for g in (2, 4, 8))
    t = np.array(
        [
            [0, 0, 0.53125, 0.46875, 0.75, 0.625],
            [0, 1, 0.21875, 0.28125, 0.25, 0.3125],
            [1, 1, 0.84375, 0.65625, 0.09375, 0.125],
            [1, 0, 0.34375, 0.78125, 0.4375, 0.1875],
        ]
    )
    return YoloCase(
        outputs=outs,
        anchors=tuple(np.asarray(a, dtype=np.float64) for a in anchors),
        targets=t,
        num_classes=c,
        img_dim=64.0,
        name="Y7_three_layers",
    )


def y8_no_targets() -> YoloCase:
    """No target at all: every term 0 except loss_conf_noobj (the seed gives NaN)."""
    return _yolo("Y8_no_targets", np.zeros((0, 6)), batch=2, seed=16)


def y8_image_without_targets() -> YoloCase:
    return _yolo("Y8_image_without_targets", [[1, 1, 0.40625, 0.59375, 0.25, 0.375]], batch=2, seed=17)


def y9_saturated_logits() -> YoloCase:
    """Conf logits +-40 (p(1-p) < 1e-12, log clamp active in float64) and +-30 on a checkerboard."""
    case = _yolo(
        "Y9_saturated_logits", [[0, 0, 0.40625, 0.40625, 0.25, 0.25], [0, 1, 0.84375, 0.15625, 0.5, 0.5]], seed=18
    )
    g = 4
    board = np.where((np.arange(g)[:, None] + np.arange(g)) % 2 == 0, 40.0, -30.0)
    board = np.where(np.arange(g)[:, None] < 2, board, -board)
    case = _set_channel(case, 4, board, 3)
    return _set_channel(case, 5, -board, 3)


def y10_conf_logit_20() -> YoloCase:
    """Every conf logit 20: float32 sigma(20) = 1 so its noobj BCE hits the clamp (100, not 20)."""
    return _set_channel(_yolo("Y10_conf_logit_20", [[0, 0, 0.65625, 0.65625, 0.25, 0.25]], seed=19), 4, 20.0, 3)


def y7_log_clamp_setting() -> YoloCase:
    """Y9's saturated logits with log_clamp = -20: every clamped term is 20, not 100."""
    return YoloCase(
        **{**y9_saturated_logits().__dict__, "name": "Y7_log_clamp_setting", "settings": YoloSettings(log_clamp=-20.0)}
    )


def y11_class_mask_tie() -> YoloCase:
    """Equal class logits everywhere: argmax takes class 0; label 0 gives 1, label 2 gives 0."""
    case = _yolo(
        "Y11_class_mask_tie",
        [[0, 0, 0.15625, 0.15625, 0.25, 0.25], [0, 2, 0.84375, 0.84375, 0.25, 0.25]],
        num_classes=3,
        seed=20,
    )
    for ch in (5, 6, 7):
        case = _set_channel(case, ch, 0.5, 3)
    return case


def y12_iou_perfect_prediction() -> YoloCase:
    """Target at a cell centre with the anchor's size, box logits 0 there: iou_scores = 1."""
    case = _yolo("Y12_iou_perfect_prediction", [[0, 1, 0.375, 0.625, 0.25, 0.25]], seed=21)
    x = case.outputs[0]
    x.reshape(1, 3, 7, 4, 4)[0, 0, 0:4, 2, 1] = 0.0
    return case


def y13_boundary_values() -> YoloCase:
    """Valid extremes: last sample and class, cx = 0 and 1, w = h = 1, w = 2**-6."""
    return _yolo("Y13_boundary_values", [[1, 1, 0.0, 1.0, 1.0, 1.0], [0, 0, 1.0, 0.0, 2.0**-6, 1.0]], batch=2, seed=22)


def y14_settings() -> YoloCase:
    """Non-default settings (every dtype and device must honour them alike)."""
    s = YoloSettings(ignore_thres=0.25, obj_scale=2.0, noobj_scale=0.5)
    return _yolo("Y14_settings", [[0, 0, 0.28125, 0.71875, 0.375, 0.25]], settings=s, seed=23)


YOLO_CURATED = (
    y1_decode,
    y2_best_anchor_tie,
    y2_single_anchor,
    y3_cx_equal_one,
    y3_cell_boundary,
    y3_cx_zero,
    y4_ignore_above_threshold,
    y4_ignore_exactly_threshold,
    y5_two_targets_one_cell,
    y5_same_cell_different_anchors,
    y5_many_targets_collide,
    y6_tiny_box,
    y6_whole_image_box,
    y7_batch_two_images,
    y7_three_layers,
    y8_no_targets,
    y8_image_without_targets,
    y7_log_clamp_setting,
    y9_saturated_logits,
    y10_conf_logit_20,
    y11_class_mask_tie,
    y12_iou_perfect_prediction,
    y13_boundary_values,
    y14_settings,
)


# ---------------------------------------------------------------- generated, realistic


def generated_yolo(i: int) -> YoloCase:
    """Small random YOLO case number ``i`` from default_rng(1000 + i)."""
    rng = np.random.default_rng(1000 + i)
    b, a, c, g = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(2, 6)))
    stride = float(rng.choice([8, 16, 32]))
    img = g * stride
    anchors = rng.integers(2, int(img) + 1, size=(a, 2)).astype(np.float64)
    n = int(rng.integers(0, 5))
    t = (
        np.column_stack(
            [
                rng.integers(0, b, n),
                rng.integers(0, c, n),
                rng.integers(0, 65, (n, 2)) / 64,
                rng.integers(1, 65, (n, 2)) / 64,
            ]
        )
        .astype(np.float64)
        .reshape(n, 6)
    )
    return YoloCase(
        outputs=(logits(rng, (b, a * (c + 5), g, g)),),
        anchors=(anchors,),
        targets=t,
        num_classes=c,
        img_dim=img,
        name=f"yolo_gen_{i:02d}",
    )


def yolo416(batch: int = 1, num_classes: int = 2, seed: int = 416) -> YoloCase:
    """YOLOv3-416: three layers G = 13, 26, 52 with the standard anchors; 6 objects per image."""
    rng = np.random.default_rng(seed)
    outs = tuple(logits(rng, (batch, 3 * (num_classes + 5), g, g)) for g in (13, 26, 52))
    n = 6 * batch
    t = np.column_stack(
        [
            np.repeat(np.arange(batch), 6),
            rng.integers(0, num_classes, n),
            rng.integers(0, 257, (n, 2)) / 256,
            rng.integers(4, 257, (n, 2)) / 256,
        ]
    )
    return YoloCase(
        outputs=outs,
        anchors=tuple(np.asarray(a, dtype=np.float64) for a in YOLO416_ANCHORS),
        targets=t.astype(np.float64),
        num_classes=num_classes,
        img_dim=416.0,
        name=f"yolo416_b{batch}",
    )


def cases() -> list:
    """Every YOLOv3 fixture case: curated, then generated, then realistic."""
    return [f() for f in YOLO_CURATED] + [generated_yolo(i) for i in range(N_GENERATED)] + [yolo416(1)]
