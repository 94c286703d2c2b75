"""Float64 NumPy reference of the YOLOv3 training loss (spec rules Y1..Y14, reference/spec/yolo.md).

One detection layer at a time; YOLOv3 sums three independent layers.

Shapes: x (B, A*(C+5), G, G) raw head output; anchors (A, 2) anchor (w, h) in pixels;
targets (T, 6) rows [sample_idx, class, cx, cy, w, h], cx..h normalised to [0, 1];
img_dim the side of the padded square image in pixels; stride = img_dim / G pixels per cell.
Everything computed here is float64. "Grid units" means cells: pixels / stride.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from reference.cases import DTYPES, YoloCase, YoloSettings, round_to
from reference.errors import (
    BatchIndexError,
    CoordinateError,
    InvalidInputError,
    LabelError,
    SettingError,
    ShapeError,
    real_array,
    real_number,
)
from reference.outputs import YOLO_TARGET_KEYS, layer_key

WH_EPS = 1e-16  # the seed's epsilon in the wh-IoU union (Y2) and in log(g / anchor + eps) (Y6)
IOU_EPS = 1e-16  # the seed's epsilon in the union of bbox_iou (Y12)


# ---------------------------------------------------------------- small helpers


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic function in float64, written to ``out`` (a new array if None).

    1 / (1 + exp(-z)) is accurate to a few ulp for every z in float64; exp overflows to inf
    for z < -709 and gives 0, the limit.
    """
    out = np.empty(np.shape(z)) if out is None else out
    np.negative(z, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1.0
    return np.divide(1.0, out, out=out)


def _channels(x: np.ndarray, num_anchors: int, num_classes: int) -> np.ndarray:
    """View x (B, A*(C+5), G, G) as (B, A, C+5, G, G) without copying."""
    b, _, g, _ = x.shape
    return x.reshape(b, num_anchors, num_classes + 5, g, g)


def scaled_anchors(anchors: np.ndarray, grid_size: int, img_dim: float) -> np.ndarray:
    """Anchors (A, 2) in pixels -> (A, 2) in grid units, as the seed: a / (img_dim / G)."""
    stride = img_dim / grid_size
    return np.asarray(anchors, dtype=np.float64) / stride


def _cell_index(b, a, gj, gi, num_anchors: int, grid_size: int) -> np.ndarray:
    """Flat index into a (B, A, G, G) array for each (b, a, gj, gi)."""
    return ((b * num_anchors + a) * grid_size + gj) * grid_size + gi


def _empty_mean(total: float, count: int) -> float:
    """Mean of a masked sum; 0 over no element (Y8)."""
    return total / count if count > 0 else 0.0


# ---------------------------------------------------------------- Y1 decode


def decode(x: np.ndarray, anchors: np.ndarray, num_classes: int, img_dim: float) -> np.ndarray:
    """Layer output (B, A*G*G, 5+C) float64 in (anchor, row, col) order (Y1).

    Columns: box centre x, y and width, height in pixels, then conf and C class
    probabilities (sigmoid outputs).
    """
    x = np.asarray(x, dtype=np.float64)
    bsz, _, g, _ = x.shape
    anchors_g = scaled_anchors(anchors, g, img_dim)
    na = anchors_g.shape[0]
    xc = _channels(x, na, num_classes)
    stride = img_dim / g
    out = np.empty((bsz, na, g, g, num_classes + 5))
    probs = np.empty(xc.shape[1:])  # one image's sigmoids: reused, so its passes stay in cache
    for b in range(bsz):
        out[b] = sigmoid(xc[b], out=probs).transpose(0, 2, 3, 1)  # every column; boxes below
    grid = np.arange(g, dtype=np.float64)
    out[..., 0] += grid[None, None, None, :]
    out[..., 0] *= stride
    out[..., 1] += grid[None, None, :, None]
    out[..., 1] *= stride
    out[..., 2] = np.exp(xc[:, :, 2]) * anchors_g[None, :, 0, None, None] * stride
    out[..., 3] = np.exp(xc[:, :, 3]) * anchors_g[None, :, 1, None, None] * stride
    return out.reshape(bsz, na * g * g, num_classes + 5)


# ---------------------------------------------------------------- Y2-Y4 assignment


@dataclass(frozen=True)
class Assignment:
    """Discrete decisions of one layer for T targets and A anchors.

    best_anchor, gi, gj: (T,) int64, the anchor, column and row each target is written to.
    ignore: (T, A) bool, wh-IoU > ignore_thres (clears noobj_mask at the target's cell).
    wh_iou: (T, A) float64, IoU of the target's (w, h) with each scaled anchor (Y2).
    anchor_margin: (T,) float64, best minus runner-up wh-IoU (inf when A == 1).
    cell_margin: (T,) float64, grid units from gx or gy to the nearest cell boundary in
        [1, G-1], the smaller of the two (inf when G == 1).
    ignore_margin: (T, A) float64, |wh_iou - ignore_thres|.
    """

    best_anchor: np.ndarray
    gi: np.ndarray
    gj: np.ndarray
    ignore: np.ndarray
    wh_iou: np.ndarray
    anchor_margin: np.ndarray
    cell_margin: np.ndarray
    ignore_margin: np.ndarray


def wh_iou(anchors_g: np.ndarray, gwh: np.ndarray) -> np.ndarray:
    """(T, A) IoU of centred boxes, target sizes gwh (T, 2) vs anchors (A, 2), grid units (Y2)."""
    aw, ah = anchors_g[None, :, 0], anchors_g[None, :, 1]
    gw, gh = gwh[:, 0:1], gwh[:, 1:2]
    inter = np.minimum(aw, gw) * np.minimum(ah, gh)
    return inter / ((aw * ah + WH_EPS) + gw * gh - inter)


def _boundary_distance(g: np.ndarray, grid_size: int) -> np.ndarray:
    """Distance of g (grid units) to the nearest integer in [1, G-1]; inf when G == 1."""
    if grid_size < 2:
        return np.full(g.shape, np.inf)
    nearest = np.clip(np.rint(g), 1, grid_size - 1)
    return np.abs(g - nearest)


def _top_two_margin(values: np.ndarray) -> np.ndarray:
    """Largest minus second largest along the last axis; inf where that axis has length 1."""
    if values.shape[-1] < 2:
        return np.full(values.shape[:-1], np.inf)
    top = np.partition(values, -2, axis=-1)
    return top[..., -1] - top[..., -2]


def assign(targets: np.ndarray, anchors: np.ndarray, grid_size: int, img_dim: float, ignore_thres: float) -> Assignment:
    """Best anchor (Y2), cell (Y3) and ignore set (Y4) of every target for one layer."""
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 6)
    anchors_g = scaled_anchors(anchors, grid_size, img_dim)
    gxy = targets[:, 2:4] * grid_size
    ious = wh_iou(anchors_g, targets[:, 4:6] * grid_size)
    cell = np.minimum(np.floor(gxy), grid_size - 1).astype(np.int64)
    return Assignment(
        best_anchor=np.argmax(ious, axis=1).astype(np.int64),  # first on ties
        gi=cell[:, 0],
        gj=cell[:, 1],
        ignore=ious > ignore_thres,
        wh_iou=ious,
        anchor_margin=_top_two_margin(ious),
        cell_margin=_boundary_distance(gxy, grid_size).min(axis=1),
        ignore_margin=np.abs(ious - ignore_thres),
    )


# ---------------------------------------------------------------- Y4-Y6, Y11, Y12 targets


def check_assignment(assignment: Assignment, num_targets: int, num_anchors: int, grid_size: int) -> None:
    """Raise a typed error if an (overridden) assignment does not fit the layer."""
    for name, size in (("best_anchor", num_anchors), ("gi", grid_size), ("gj", grid_size)):
        v = np.asarray(getattr(assignment, name))
        if v.shape != (num_targets,):
            raise ShapeError(f"assignment.{name}", None, v.shape, f"must have shape ({num_targets},)")
        bad = np.nonzero((v < 0) | (v >= size))[0]
        if len(bad):
            raise InvalidInputError(f"assignment.{name}", int(bad[0]), int(v[bad[0]]), f"must be in [0, {size})")
    ignore = np.asarray(assignment.ignore)
    if ignore.shape != (num_targets, num_anchors):
        raise ShapeError("assignment.ignore", None, ignore.shape, f"must have shape ({num_targets}, {num_anchors})")


def _last_wins(keys: np.ndarray) -> np.ndarray:
    """Indices of the last occurrence of each distinct key, in ascending row order (Y5)."""
    _, first_in_reversed = np.unique(keys[::-1], return_index=True)
    return np.sort(len(keys) - 1 - first_in_reversed)


def bbox_iou_plus_one(box1: np.ndarray, box2: np.ndarray) -> np.ndarray:
    """The seed's IoU of centre-size boxes (N, 4) with the +1 pixel convention (Y12)."""
    lo1, hi1 = box1[:, :2] - box1[:, 2:] / 2, box1[:, :2] + box1[:, 2:] / 2
    lo2, hi2 = box2[:, :2] - box2[:, 2:] / 2, box2[:, :2] + box2[:, 2:] / 2
    inter = np.clip(np.minimum(hi1, hi2) - np.maximum(lo1, lo2) + 1, 0, None).prod(axis=1)
    area1 = (hi1 - lo1 + 1).prod(axis=1)
    area2 = (hi2 - lo2 + 1).prod(axis=1)
    return inter / (area1 + area2 - inter + IOU_EPS)


def build_targets(
    x: np.ndarray, targets: np.ndarray, anchors: np.ndarray, num_classes: int, img_dim: float, assignment: Assignment
) -> dict:
    """Masks and regression/classification targets of one layer (Y4, Y5, Y6, Y11, Y12).

    Discrete decisions come only from ``assignment`` (best_anchor, gi, gj, ignore).
    Returns obj_mask, noobj_mask (B, A, G, G) bool; tx, ty, tw, th, tconf, class_mask,
    iou_scores (B, A, G, G) float64; tcls (B, A, G, G, C) float64 (multi-hot on collisions);
    class_margin (B, A, G, G) float64, top-1 minus top-2 predicted class probability
    (inf when C == 1).
    """
    built = _build_targets(x, targets, anchors, num_classes, img_dim, assignment)
    xc = _channels(np.asarray(x, dtype=np.float64), built["obj_mask"].shape[1], num_classes)
    built["class_margin"] = class_margin(xc[:, :, 5:])
    return built


def _build_targets(
    x: np.ndarray, targets: np.ndarray, anchors: np.ndarray, num_classes: int, img_dim: float, assignment: Assignment
) -> dict:
    """``build_targets`` without class_margin, which ``evaluate`` does not return."""
    x = np.asarray(x, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 6)
    bsz, _, g, _ = x.shape
    anchors_g = scaled_anchors(anchors, g, img_dim)
    na = anchors_g.shape[0]
    xc = _channels(x, na, num_classes)
    shape = (bsz, na, g, g)
    b = targets[:, 0].astype(np.int64)
    label = targets[:, 1].astype(np.int64)
    check_assignment(assignment, len(targets), na, g)
    best, gi, gj = assignment.best_anchor, assignment.gi, assignment.gj
    cell = _cell_index(b, best, gj, gi, na, g)

    obj = np.zeros(bsz * na * g * g, dtype=bool)
    obj[cell] = True
    noobj = np.ones(bsz * na * g * g, dtype=bool)
    noobj[cell] = False
    t_ig, a_ig = np.nonzero(assignment.ignore)
    noobj[_cell_index(b[t_ig], a_ig, gj[t_ig], gi[t_ig], na, g)] = False

    win = _last_wins(cell)  # rows that own their (b, anchor, gj, gi)
    cw, bw, aw_, iw, jw = cell[win], b[win], best[win], gi[win], gj[win]
    gx, gy = targets[win, 2] * g, targets[win, 3] * g
    gw, gh = targets[win, 4] * g, targets[win, 5] * g
    out = {k: np.zeros(bsz * na * g * g) for k in ("tx", "ty", "tw", "th", "class_mask", "iou_scores")}
    out["tx"][cw] = gx - iw
    out["ty"][cw] = gy - jw
    out["tw"][cw] = np.log(gw / anchors_g[aw_, 0] + WH_EPS)
    out["th"][cw] = np.log(gh / anchors_g[aw_, 1] + WH_EPS)

    tcls = np.zeros((bsz * na * g * g, num_classes))
    tcls[cell, label] = 1.0

    raw = xc[bw, aw_, :, jw, iw]  # (n_win, C+5) logits at the winning cells
    cls_prob = sigmoid(raw[:, 5:])
    out["class_mask"][cw] = np.argmax(cls_prob, axis=1) == label[win]
    pred = np.stack(
        [
            sigmoid(raw[:, 0]) + iw,
            sigmoid(raw[:, 1]) + jw,
            np.exp(raw[:, 2]) * anchors_g[aw_, 0],
            np.exp(raw[:, 3]) * anchors_g[aw_, 1],
        ],
        axis=1,
    )
    out["iou_scores"][cw] = bbox_iou_plus_one(pred, np.stack([gx, gy, gw, gh], axis=1))

    built = {k: v.reshape(shape) for k, v in out.items()}
    built["obj_mask"] = obj.reshape(shape)
    built["noobj_mask"] = noobj.reshape(shape)
    built["tconf"] = built["obj_mask"].astype(np.float64)
    built["tcls"] = tcls.reshape(shape + (num_classes,))
    return built


def class_margin(cls_logits: np.ndarray) -> np.ndarray:
    """(B, A, C, G, G) class logits -> (B, A, G, G) top-1 minus top-2 sigmoid probability.

    The two largest logits of every cell come from one pass over the C class planes, each a
    contiguous (G, G) block: several times faster than partitioning along the strided class
    axis. A tie for the top gives 0.
    """
    if cls_logits.shape[2] < 2:
        b, a, _, g, _ = cls_logits.shape
        return np.full((b, a, g, g), np.inf)
    top = cls_logits[:, :, 0].copy()
    second = np.full(top.shape, -np.inf)
    for plane in np.moveaxis(cls_logits[:, :, 1:], 2, 0):
        np.maximum(second, np.minimum(top, plane), out=second)
        np.maximum(top, plane, out=top)
    return sigmoid(top) - sigmoid(second)


# ---------------------------------------------------------------- Y7, Y8, Y10 loss


def _bce_parts(p: np.ndarray, t: np.ndarray, log_clamp: float):
    """Elementwise BCE on probabilities with each log clamped below at log_clamp (Y7).

    Returns (loss, log_p_active, log_1mp_active): the two masks say where a log is not
    clamped (and so has a derivative).
    """
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
        log_q = np.log(1.0 - p)  # literal log(1 - p); BCELoss's log1p(-p) differs by at most u (Y7)
    act_p, act_q = log_p > log_clamp, log_q > log_clamp
    loss = -(t * np.maximum(log_p, log_clamp) + (1.0 - t) * np.maximum(log_q, log_clamp))
    return loss, act_p, act_q


def _layer_pieces(x: np.ndarray, built: dict):
    """Gather the predictions the loss needs: obj-cell rows and conf probabilities."""
    obj, noobj = built["obj_mask"], built["noobj_mask"]
    bsz, na, g, _ = obj.shape
    ncls = built["tcls"].shape[-1]
    xc = _channels(np.asarray(x, dtype=np.float64), na, ncls)
    ob = np.nonzero(obj)  # (b, a, gj, gi) of obj cells, C order
    raw = xc[ob[0], ob[1], :, ob[2], ob[3]]  # (n_obj, C+5)
    conf_noobj = xc[:, :, 4][noobj]
    return xc, ob, raw, conf_noobj


def loss_terms(
    x: np.ndarray, built: dict, settings: YoloSettings = YoloSettings(), prob_dtype: str = "float64"
) -> dict:
    """Loss terms of one layer as 0-d float64 arrays (Y7, Y8, Y10).

    Uses only built["obj_mask"], ["noobj_mask"], tx, ty, tw, th, tcls. Sigmoid outputs
    that enter BCE are rounded to ``prob_dtype`` first (Y10).
    """
    _, ob, raw, conf_noobj = _layer_pieces(x, built)
    n_obj, n_noobj = len(ob[0]), len(conf_noobj)
    tgt = {k: built[k][ob] for k in ("tx", "ty", "tw", "th")}
    tcls = built["tcls"][ob]
    clamp = settings.log_clamp
    p_obj = round_to(sigmoid(raw[:, 4]), prob_dtype)
    p_noobj = round_to(sigmoid(conf_noobj), prob_dtype)
    p_cls = round_to(sigmoid(raw[:, 5:]), prob_dtype)
    terms = {
        "loss_x": _empty_mean(np.sum((sigmoid(raw[:, 0]) - tgt["tx"]) ** 2), n_obj),
        "loss_y": _empty_mean(np.sum((sigmoid(raw[:, 1]) - tgt["ty"]) ** 2), n_obj),
        "loss_w": _empty_mean(np.sum((raw[:, 2] - tgt["tw"]) ** 2), n_obj),
        "loss_h": _empty_mean(np.sum((raw[:, 3] - tgt["th"]) ** 2), n_obj),
        "loss_conf_obj": _empty_mean(np.sum(_bce_parts(p_obj, 1.0, clamp)[0]), n_obj),
        "loss_conf_noobj": _empty_mean(np.sum(_bce_parts(p_noobj, 0.0, clamp)[0]), n_noobj),
        "loss_cls": _empty_mean(np.sum(_bce_parts(p_cls, tcls, clamp)[0]), tcls.size),
    }
    terms["loss_conf"] = settings.obj_scale * terms["loss_conf_obj"] + settings.noobj_scale * terms["loss_conf_noobj"]
    terms["loss_total"] = (
        terms["loss_x"] + terms["loss_y"] + terms["loss_w"] + terms["loss_h"] + terms["loss_conf"] + terms["loss_cls"]
    )
    return {k: np.asarray(v, dtype=np.float64) for k, v in terms.items()}


# ---------------------------------------------------------------- Y9 gradient


def _bce_grad(p: np.ndarray, t, log_clamp: float) -> np.ndarray:
    """d bce(sigmoid(z), t) / dz at probability p, zero for each clamped log (Y9)."""
    _, act_p, act_q = _bce_parts(p, t, log_clamp)
    return (1.0 - t) * p * act_q - t * (1.0 - p) * act_p


TERMS = ("loss_x", "loss_y", "loss_w", "loss_h", "loss_conf_obj", "loss_conf_noobj", "loss_cls")


def _weighted_gradient(
    x: np.ndarray, built: dict, settings: YoloSettings, prob_dtype: str, weights: dict
) -> np.ndarray:
    """d (sum of weights[term] * term) / d x for the unscaled terms of TERMS."""
    x = np.asarray(x, dtype=np.float64)
    xc, ob, raw, conf_noobj = _layer_pieces(x, built)
    noobj = built["noobj_mask"]
    n_obj, n_noobj = len(ob[0]), len(conf_noobj)
    clamp = settings.log_clamp
    grad = np.zeros(xc.shape)
    if n_noobj and weights["loss_conf_noobj"]:
        p = round_to(sigmoid(conf_noobj), prob_dtype)
        grad[:, :, 4][noobj] = weights["loss_conf_noobj"] * _bce_grad(p, 0.0, clamp) / n_noobj
    if n_obj:
        ncls = raw.shape[1] - 5
        rows = np.empty_like(raw)
        px, py = sigmoid(raw[:, 0]), sigmoid(raw[:, 1])
        rows[:, 0] = weights["loss_x"] * 2.0 * (px - built["tx"][ob]) * px * (1.0 - px) / n_obj
        rows[:, 1] = weights["loss_y"] * 2.0 * (py - built["ty"][ob]) * py * (1.0 - py) / n_obj
        rows[:, 2] = weights["loss_w"] * 2.0 * (raw[:, 2] - built["tw"][ob]) / n_obj
        rows[:, 3] = weights["loss_h"] * 2.0 * (raw[:, 3] - built["th"][ob]) / n_obj
        p_obj = round_to(sigmoid(raw[:, 4]), prob_dtype)
        rows[:, 4] = weights["loss_conf_obj"] * _bce_grad(p_obj, 1.0, clamp) / n_obj
        p_cls = round_to(sigmoid(raw[:, 5:]), prob_dtype)
        rows[:, 5:] = weights["loss_cls"] * _bce_grad(p_cls, built["tcls"][ob], clamp) / (n_obj * ncls)
        grad[ob[0], ob[1], :, ob[2], ob[3]] = rows
    return grad.reshape(x.shape)


def gradient(
    x: np.ndarray, built: dict, settings: YoloSettings = YoloSettings(), prob_dtype: str = "float64"
) -> np.ndarray:
    """d loss_total / d x, float64, shape of x (B, A*(C+5), G, G) (Y9).

    Uses only built["obj_mask"], ["noobj_mask"], tx, ty, tw, th, tcls. With prob_dtype
    other than float64 the rounding is treated as the identity, except that a log clamp
    made active by the rounded probability zeroes that log's derivative.
    """
    weights = dict.fromkeys(TERMS, 1.0)
    weights["loss_conf_obj"] = settings.obj_scale
    weights["loss_conf_noobj"] = settings.noobj_scale
    return _weighted_gradient(x, built, settings, prob_dtype, weights)


def term_gradients(
    x: np.ndarray, built: dict, settings: YoloSettings = YoloSettings(), prob_dtype: str = "float64"
) -> dict:
    """d term / d x for each unscaled term in TERMS, each shaped like x, float64 (Y9)."""
    return {
        term: _weighted_gradient(x, built, settings, prob_dtype, {t: float(t == term) for t in TERMS}) for term in TERMS
    }


# ---------------------------------------------------------------- Y13 validation


def _first_bad(mask: np.ndarray):
    """Index tuple of the first True in mask (C order), or None."""
    idx = np.argwhere(mask)
    return tuple(int(i) for i in idx[0]) if len(idx) else None


def _check_finite(name: str, a: np.ndarray, error=InvalidInputError):
    """Raise ``error`` naming the first non-finite element of ``a``."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(a)):  # fast path: any NaN or inf makes the sum non-finite
            return
    bad = _first_bad(~np.isfinite(a))
    if bad is not None:
        row = bad[0] if a.ndim == 1 else bad
        raise error(name, row, float(a[bad]), "must be finite")


def _validate_settings(s: YoloSettings, img_dim) -> None:
    if not (np.isfinite(img_dim) and img_dim > 0):
        raise SettingError("img_dim", None, img_dim, "must be finite and > 0")
    if not (0.0 <= s.ignore_thres <= 1.0):
        raise SettingError("settings.ignore_thres", None, s.ignore_thres, "must be in [0, 1]")
    for name in ("obj_scale", "noobj_scale"):
        v = getattr(s, name)
        if not (np.isfinite(v) and v >= 0):
            raise SettingError(f"settings.{name}", None, v, "must be finite and >= 0")
    if not (np.isfinite(s.log_clamp) and s.log_clamp < 0):
        raise SettingError("settings.log_clamp", None, s.log_clamp, "must be finite and < 0")


def _validate_layers(case: YoloCase):
    """Shapes and values of outputs and anchors; returns the batch size."""
    if not isinstance(case.num_classes, (int, np.integer)) or case.num_classes < 1:
        raise LabelError("num_classes", None, case.num_classes, "must be an integer >= 1")
    if len(case.outputs) == 0 or len(case.outputs) != len(case.anchors):
        raise ShapeError(
            "outputs",
            None,
            len(case.outputs),
            f"need one or more layers and one anchor set per layer ({len(case.anchors)} anchor sets)",
        )
    batch = None
    for k, (x, anchors) in enumerate(zip(case.outputs, case.anchors)):
        anchors = np.asarray(anchors, dtype=np.float64)
        if anchors.ndim != 2 or anchors.shape[1] != 2 or anchors.shape[0] < 1:
            raise ShapeError(f"anchors[{k}]", None, anchors.shape, "must have shape (A, 2), A >= 1")
        bad = _first_bad(~(np.isfinite(anchors) & (anchors > 0)))
        if bad is not None:
            raise SettingError(f"anchors[{k}]", bad[0], float(anchors[bad]), "anchor sizes must be finite and > 0")
        x = np.asarray(x)
        want = anchors.shape[0] * (case.num_classes + 5)
        if x.ndim != 4 or x.shape[1] != want or x.shape[2] != x.shape[3] or x.shape[2] < 1:
            raise ShapeError(
                f"outputs[{k}]",
                None,
                x.shape,
                f"must be (B, {want}, G, G) for A={anchors.shape[0]}, C={case.num_classes}",
            )
        if batch is not None and x.shape[0] != batch:
            raise ShapeError(f"outputs[{k}]", None, x.shape, f"batch size differs from {batch}")
        batch = x.shape[0]
        _check_finite(f"outputs[{k}]", x)
    return batch


def _layer_arrays(name: str, value) -> tuple:
    """``value`` (a tuple or list with one array per layer) as a tuple of float64 arrays."""
    if not isinstance(value, (tuple, list)):
        raise ShapeError(name, None, type(value).__name__, "must be a tuple with one array per layer")
    return tuple(real_array(f"{name}[{k}]", a) for k, a in enumerate(value))


def _float64_case(case: YoloCase) -> YoloCase:
    """``case`` with float64 arrays (real_array), a Python int num_classes and float img_dim
    and settings; raises LabelError / SettingError / ShapeError / DtypeError otherwise."""
    s = case.settings
    if not isinstance(s, YoloSettings):
        raise SettingError("settings", None, s, "must be a YoloSettings")
    settings = YoloSettings(
        **{f.name: real_number(f"settings.{f.name}", getattr(s, f.name)) for f in fields(YoloSettings)}
    )
    n = case.num_classes
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise LabelError("num_classes", None, n, "must be an integer >= 1")
    return replace(
        case,
        outputs=_layer_arrays("outputs", case.outputs),
        anchors=_layer_arrays("anchors", case.anchors),
        targets=real_array("targets", case.targets),
        num_classes=int(n),
        img_dim=real_number("img_dim", case.img_dim),
        settings=settings,
    )


def checked(case: YoloCase) -> YoloCase:
    """``case`` with float64 arrays and Python-number settings, after the checks of Y13.

    Raises the typed error of Y13 for the first invalid field.
    """
    case = _float64_case(case)
    _validate_settings(case.settings, case.img_dim)
    batch = _validate_layers(case)
    t = case.targets
    if t.ndim != 2 or t.shape[1] != 6:
        raise ShapeError("targets", None, t.shape, "must have shape (T, 6)")
    checks = [
        (
            0,
            BatchIndexError,
            (t[:, 0] >= 0) & (t[:, 0] < batch) & (t[:, 0] == np.floor(t[:, 0])),
            f"sample index must be an integer in [0, {batch})",
        ),
        (
            1,
            LabelError,
            (t[:, 1] >= 0) & (t[:, 1] < case.num_classes) & (t[:, 1] == np.floor(t[:, 1])),
            f"class must be an integer in [0, {case.num_classes})",
        ),
        (2, CoordinateError, (t[:, 2] >= 0) & (t[:, 2] <= 1), "cx must be finite in [0, 1]"),
        (3, CoordinateError, (t[:, 3] >= 0) & (t[:, 3] <= 1), "cy must be finite in [0, 1]"),
        (4, CoordinateError, (t[:, 4] > 0) & (t[:, 4] <= 1), "w must be finite in (0, 1]"),
        (5, CoordinateError, (t[:, 5] > 0) & (t[:, 5] <= 1), "h must be finite in (0, 1]"),
    ]
    bad_rows = [(np.argmax(~ok), col, err, why) for col, err, ok, why in checks if not ok.all()]
    if bad_rows:
        row, col, err, why = min(bad_rows, key=lambda r: (r[0], r[1]))
        raise err("targets", int(row), float(t[row, col]), why)
    return case


def validate(case: YoloCase) -> None:
    """Raise the typed error of Y13 for the first invalid field of ``case``."""
    checked(case)


def check_prob_dtype(prob_dtype) -> None:
    """SettingError (field ``prob_dtype``) unless it is one of DTYPES."""
    if not isinstance(prob_dtype, str) or prob_dtype not in DTYPES:
        raise SettingError("prob_dtype", None, prob_dtype, f"must be one of {', '.join(DTYPES)}")


# ---------------------------------------------------------------- whole case


def evaluate(case: YoloCase, prob_dtype: str = "float64", assignments=None) -> dict:
    """Validate ``case`` and return every YOLO key of implementations/adapter.py.

    Arrays are cast to float64 first (``checked``); ``prob_dtype`` is one of DTYPES.

    assignments: optional list with one Assignment (or None) per layer, replacing
    the layer's own assign() result.
    """
    check_prob_dtype(prob_dtype)
    case = checked(case)
    s = case.settings
    result = {}
    total = 0.0
    for k, (x, anchors) in enumerate(zip(case.outputs, case.anchors)):
        x = np.asarray(x, dtype=np.float64)
        g = x.shape[2]
        assignment = assignments[k] if assignments is not None else None
        if assignment is None:
            assignment = assign(case.targets, anchors, g, case.img_dim, s.ignore_thres)
        built = _build_targets(x, case.targets, anchors, case.num_classes, case.img_dim, assignment)
        terms = loss_terms(x, built, s, prob_dtype)
        result[layer_key(k, "output")] = decode(x, anchors, case.num_classes, case.img_dim)
        for key in YOLO_TARGET_KEYS:
            result[layer_key(k, key)] = built[key]
        for key, value in terms.items():
            result[layer_key(k, key)] = value
        result[layer_key(k, "grad")] = gradient(x, built, s, prob_dtype)
        total = total + terms["loss_total"]
    result["loss_total"] = np.asarray(total, dtype=np.float64)
    return result
