"""An outsider's torch port of the PyTorch-YOLOv3 loss (YOLOLayer.forward + build_targets).

Written from the seed (shared/seeds/000_…) for torch 2.13, made to follow the spec
(reference/spec/yolo.md) only where it departs from the seed on purpose: cx = 1 goes to
the last cell (Y3), empty means are 0 (Y8), float64 works (Y14), colliding targets keep
the last row (Y5), tcls is multi-hot (Y5), log_clamp is a setting (Y7). Everything else is
the seed's: nn.MSELoss and nn.BCELoss with mean reduction, autograd for the gradient.

``YoloFlags`` switches single rules to another behaviour: the zoo's deliberately wrong
implementations (mutants) and legitimate variants are this port with one flag changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn


@dataclass(frozen=True)
class YoloFlags:
    """One behaviour per rule; the defaults are the spec-conforming seed port."""

    layout: str = "anchor_major"  # Y1: x viewed (B, A, C+5, G, G); "channel_major": (B, C+5, A, G, G)
    anchor_rule: str = "wh_iou"  # Y2: "side_ratio": smallest max(w/aw, aw/w, h/ah, ah/h)
    anchor_ties: str = "first"  # Y2: "last": the highest tied anchor index
    cell: str = "floor"  # Y3: "round": the nearest integer; "truncate": the seed's, no clamp (IndexError at cx = 1)
    ignore_op: str = ">"  # Y4: ">=" also ignores wh-IoU equal to ignore_thres
    ignore_other_anchors: bool = True  # Y4: False clears noobj at the best anchor only
    winner: str = "last"  # Y5: "first": the first colliding row sets tx .. th
    multi_hot: bool = True  # Y5: False: tcls holds the winning row's label only
    size_target: str = "log"  # Y6: "linear": gw / aw; "pixel_anchor": log(gw / anchor_px)
    reduction: str = "mean"  # Y7: "sum"
    noobj_scale: float | None = None  # Y7: a constant instead of settings.noobj_scale
    log_clamp: float | None = None  # Y7: a constant instead of settings.log_clamp
    bce: str = "bceloss"  # Y7/Y10: "log1p" (own formula), "logits" (nn.BCEWithLogitsLoss)
    empty: str = "zero"  # Y8: "nan": the seed's mean over nothing
    mse_grad_factor: float = 2.0  # Y9: 1.0 drops the factor 2 of d(d²)/dd
    prob_dtype: str | None = None  # Y10: "float16": σ outputs stored in float16
    class_mask_row: str = "winner"  # Y11: "first": label of the first colliding row
    iou_plus_one: bool = True  # Y12: False: plain IoU
    target_dtype: str | None = None  # Y14: "float32": the seed's FloatTensor targets


def wh_iou(anchors: torch.Tensor, gwh: torch.Tensor) -> torch.Tensor:
    """(A, T) IoU of anchor and target sizes sharing a centre; grid units (the seed's bbox_wh_iou)."""
    aw, ah = anchors[:, 0:1], anchors[:, 1:2]
    gw, gh = gwh[None, :, 0], gwh[None, :, 1]
    inter = torch.min(aw, gw) * torch.min(ah, gh)
    return inter / ((aw * ah + 1e-16) + gw * gh - inter)


def box_iou_centre(a: torch.Tensor, b: torch.Tensor, plus_one: bool) -> torch.Tensor:
    """(N,) IoU of centre-size boxes (N, 4) a and b, +1 pixel convention when ``plus_one``."""
    one = 1.0 if plus_one else 0.0
    a1, a2 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b1, b2 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    lo, hi = torch.max(a1, b1), torch.min(a2, b2)
    inter = torch.clamp(hi[:, 0] - lo[:, 0] + one, min=0) * torch.clamp(hi[:, 1] - lo[:, 1] + one, min=0)
    area_a = (a2[:, 0] - a1[:, 0] + one) * (a2[:, 1] - a1[:, 1] + one)
    area_b = (b2[:, 0] - b1[:, 0] + one) * (b2[:, 1] - b1[:, 1] + one)
    return inter / (area_a + area_b - inter + 1e-16)


def _best_anchor(ious, gwh, anchors, flags: YoloFlags) -> torch.Tensor:
    """(T,) int64 best anchor per target from (A, T) wh-IoUs, target sizes (T, 2), anchors (A, 2)."""
    if flags.anchor_rule == "side_ratio":
        r = gwh[None] / anchors[:, None]
        return torch.max(r, 1 / r).amax(-1).min(0).indices
    if flags.anchor_ties == "last":
        return ious.shape[0] - 1 - ious.flip(0).max(0).indices
    return ious.max(0).indices


def _kept_rows(flat: torch.Tensor, keep: str) -> torch.Tensor:
    """(T,) bool: the row that a (b, anchor, cell) index keeps, the last or first of equal ones."""
    same = flat[:, None] == flat[None, :]
    other = torch.ones_like(same).triu(1) if keep == "last" else torch.ones_like(same).tril(-1)
    return ~(same & other).any(1)


def build_targets(pred_boxes, pred_cls, target, anchors, anchors_px, ignore_thres, flags: YoloFlags):
    """Targets and masks of one layer.

    pred_boxes (B, A, G, G, 4) grid units, pred_cls (B, A, G, G, C) probabilities,
    target (T, 6) [b, class, cx, cy, w, h] normalised, anchors (A, 2) grid units,
    anchors_px (A, 2) pixels. Returns a dict of (B, A, G, G) tensors (tcls: (…, C)).
    """
    B, A, G = pred_boxes.shape[:3]
    C = pred_cls.shape[-1]
    dt = getattr(torch, flags.target_dtype) if flags.target_dtype else pred_boxes.dtype
    obj_mask = torch.zeros(B, A, G, G, dtype=torch.bool)
    noobj_mask = torch.ones(B, A, G, G, dtype=torch.bool)
    out = {k: torch.zeros(B, A, G, G, dtype=dt) for k in ("class_mask", "iou_scores", "tx", "ty", "tw", "th")}
    tcls = torch.zeros(B, A, G, G, C, dtype=dt)
    target = target.to(dt)
    target_boxes = target[:, 2:6] * G
    gxy, gwh = target_boxes[:, :2], target_boxes[:, 2:]
    ious = wh_iou(anchors.to(dt), gwh)
    best_n = _best_anchor(ious, gwh, anchors.to(dt), flags)
    b, labels = target[:, :2].long().t()
    gx, gy = gxy.t()
    gw, gh = gwh.t()
    if flags.cell == "round":
        gi, gj = torch.round(gxy).long().clamp(0, G - 1).t()
    elif flags.cell == "truncate":
        gi, gj = gxy.long().t()
    else:
        gi, gj = gxy.long().clamp(max=G - 1).t()
    obj_mask[b, best_n, gj, gi] = True
    noobj_mask[b, best_n, gj, gi] = False
    if flags.ignore_other_anchors:
        above = ious.t() >= ignore_thres if flags.ignore_op == ">=" else ious.t() > ignore_thres
        t, a = above.nonzero(as_tuple=True)
        noobj_mask[b[t], a, gj[t], gi[t]] = False
    flat = ((b * A + best_n) * G + gj) * G + gi
    w = _kept_rows(flat, flags.winner)
    at = (b[w], best_n[w], gj[w], gi[w])
    out["tx"][at] = (gx - gi)[w]
    out["ty"][at] = (gy - gj)[w]
    if flags.size_target == "linear":
        out["tw"][at] = (gw / anchors[best_n][:, 0].to(dt))[w]
        out["th"][at] = (gh / anchors[best_n][:, 1].to(dt))[w]
    else:
        ref = anchors_px if flags.size_target == "pixel_anchor" else anchors
        out["tw"][at] = torch.log(gw / ref[best_n][:, 0].to(dt) + 1e-16)[w]
        out["th"][at] = torch.log(gh / ref[best_n][:, 1].to(dt) + 1e-16)[w]
    if flags.multi_hot:
        tcls[b, best_n, gj, gi, labels] = 1
    else:
        tcls[at + (labels[w],)] = 1
    cm = _kept_rows(flat, "first") if flags.class_mask_row == "first" else w
    cat = (b[cm], best_n[cm], gj[cm], gi[cm])
    out["class_mask"][cat] = (pred_cls[cat].argmax(-1) == labels[cm]).to(dt)
    out["iou_scores"][at] = box_iou_centre(pred_boxes[at].to(dt), target_boxes[w], flags.iou_plus_one)
    out.update(obj_mask=obj_mask, noobj_mask=noobj_mask, tcls=tcls, tconf=obj_mask.to(dt))
    return out


def _mean(loss_fn, pred, target, flags: YoloFlags):
    """loss_fn(pred, target) with the seed's reduction, or 0 (with zero gradient) when empty (Y8)."""
    if pred.numel() == 0 and flags.empty == "zero":
        return pred.sum() * 0
    return loss_fn(pred, target.to(pred.dtype))


def _mse(flags: YoloFlags):
    if flags.mse_grad_factor == 2.0:
        return nn.MSELoss(reduction=flags.reduction)
    factor = flags.mse_grad_factor

    def mse(pred, target):  # value (p − t)², derivative factor·(p − t)
        d = pred - target
        v = factor * d.detach() * d + (1 - factor) * d.detach() ** 2
        return v.sum() if flags.reduction == "sum" else v.mean()

    return mse


def _bce(clamp: float, flags: YoloFlags):
    """BCE on probabilities: nn.BCELoss (clamp −100 built in) or the formula with a clamp."""
    if flags.bce == "bceloss" and clamp == -100.0:
        return nn.BCELoss(reduction=flags.reduction)

    def bce(p, t):
        pos, neg = p > 0, p < 1
        log_p = torch.where(pos, torch.log(torch.where(pos, p, 1)), clamp).clamp(min=clamp)
        log_q = torch.where(neg, torch.log1p(-torch.where(neg, p, 0)), clamp).clamp(min=clamp)
        v = -(t * log_p + (1 - t) * log_q)
        return v.sum() if flags.reduction == "sum" else v.mean()

    return bce


def yolo_layer(x, anchors_px, targets, num_classes: int, img_dim: float, settings, flags: YoloFlags):
    """One YOLOLayer: x (B, A·(C+5), G, G) with requires_grad, anchors_px (A, 2) pixels,
    targets (T, 6). Returns {"output", masks and targets, losses} as tensors."""
    B, _, G, _ = x.shape
    A, C = anchors_px.shape[0], num_classes
    if flags.layout == "channel_major":
        prediction = x.view(B, C + 5, A, G, G).permute(0, 2, 3, 4, 1).contiguous()
    else:
        prediction = x.view(B, A, C + 5, G, G).permute(0, 1, 3, 4, 2).contiguous()
    sx, sy = torch.sigmoid(prediction[..., 0]), torch.sigmoid(prediction[..., 1])
    w, h = prediction[..., 2], prediction[..., 3]
    pred_conf, pred_cls = torch.sigmoid(prediction[..., 4]), torch.sigmoid(prediction[..., 5:])
    if flags.prob_dtype:
        pred_conf = pred_conf.to(getattr(torch, flags.prob_dtype)).to(x.dtype)
        pred_cls = pred_cls.to(getattr(torch, flags.prob_dtype)).to(x.dtype)
    stride = img_dim / G
    grid = torch.arange(G, dtype=x.dtype)
    scaled = anchors_px / stride
    pred_boxes = torch.stack(
        [
            sx.detach() + grid.view(1, 1, 1, G),
            sy.detach() + grid.view(1, 1, G, 1),
            torch.exp(w.detach()) * scaled[:, 0].view(1, A, 1, 1),
            torch.exp(h.detach()) * scaled[:, 1].view(1, A, 1, 1),
        ],
        -1,
    )
    output = torch.cat(
        (pred_boxes.view(B, -1, 4) * stride, pred_conf.detach().view(B, -1, 1), pred_cls.detach().view(B, -1, C)), -1
    )
    t = build_targets(pred_boxes, pred_cls.detach(), targets, scaled, anchors_px, settings.ignore_thres, flags)
    obj, noobj = t["obj_mask"], t["noobj_mask"]
    mse = _mse(flags)
    clamp = settings.log_clamp if flags.log_clamp is None else flags.log_clamp
    if flags.bce == "logits":
        bce = nn.BCEWithLogitsLoss(reduction=flags.reduction)
        conf_in, cls_in = prediction[..., 4], prediction[..., 5:]
    else:
        bce = _bce(clamp, flags)
        conf_in, cls_in = pred_conf, pred_cls
    losses = {
        "loss_x": _mean(mse, sx[obj], t["tx"][obj], flags),
        "loss_y": _mean(mse, sy[obj], t["ty"][obj], flags),
        "loss_w": _mean(mse, w[obj], t["tw"][obj], flags),
        "loss_h": _mean(mse, h[obj], t["th"][obj], flags),
        "loss_conf_obj": _mean(bce, conf_in[obj], t["tconf"][obj], flags),
        "loss_conf_noobj": _mean(bce, conf_in[noobj], t["tconf"][noobj], flags),
        "loss_cls": _mean(bce, cls_in[obj], t["tcls"][obj], flags),
    }
    noobj_scale = settings.noobj_scale if flags.noobj_scale is None else flags.noobj_scale
    losses["loss_conf"] = settings.obj_scale * losses["loss_conf_obj"] + noobj_scale * losses["loss_conf_noobj"]
    losses["loss_total"] = (
        losses["loss_x"]
        + losses["loss_y"]
        + losses["loss_w"]
        + losses["loss_h"]
        + losses["loss_conf"]
        + losses["loss_cls"]
    )
    return dict(t, output=output, **losses)


def yolo_loss(case, dtype: str, flags: YoloFlags = YoloFlags()) -> dict:
    """Every adapter key (implementations/adapter.py) for a YoloCase, as NumPy arrays in ``dtype``."""
    dt = getattr(torch, dtype)
    xs = [torch.tensor(np.asarray(x), dtype=dt, requires_grad=True) for x in case.outputs]
    targets = torch.tensor(np.asarray(case.targets), dtype=dt).reshape(-1, 6)
    result, total = {}, 0
    for k, (x, anchors) in enumerate(zip(xs, case.anchors)):
        layer = yolo_layer(
            x,
            torch.tensor(np.asarray(anchors), dtype=dt),
            targets,
            case.num_classes,
            case.img_dim,
            case.settings,
            flags,
        )
        total = total + layer["loss_total"]
        result.update({f"layer{k}.{key}": v for key, v in layer.items()})
    total.backward()
    for k, x in enumerate(xs):
        result[f"layer{k}.grad"] = x.grad if x.grad is not None else torch.zeros_like(x)
    result["loss_total"] = total
    return {k: v.detach().numpy() for k, v in result.items()}
