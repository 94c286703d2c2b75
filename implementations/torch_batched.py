"""Loop-free batched PyTorch versions of the YOLOv3 (one layer) and SSD losses.

Every function works on fixed shapes with array operations only (no Python loop over
targets, cells, priors or images), so it runs unchanged on CPU and CUDA and exports to ONNX
(implementations/onnx_runtime.py). The rules are those of reference/spec/yolo.md (Y1..Y14)
and reference/spec/ssd.md (S1..S14):

- Y3: gi = min(floor(gx), G - 1), tx = gx - gi.
- Y5: the winner of a cell shared by several targets is found with ``scatter_reduce``
  (``amax`` of the row index), never with duplicate-index writes, so the last row wins on
  every device; tcls is the ``amax`` union of the labels.
- Y7/Y8: masked means are masked sums over max(count, 1): 0, with zero gradient, when empty.
  BCE is written out on probabilities with each log clamped below at ``log_clamp``; the logs
  are taken through a "safe where" so that a clamped log contributes an exact 0 gradient
  (no 0/0 when sigma rounds to 0 or 1).
- S4: the forced match of a prior shared by several truths is the ``amax`` of the truth index
  (the later truth wins). S9: logsumexp with each row's own max. S10: num_neg =
  min(neg_pos * num_pos, P - 1), selection by a stable descending sort (ties broken by lowest
  prior index, as the reference). S12/S13: N = 0 gives 0 losses and 0 gradients; an image
  without truths has matched = -1.

SSD truths are padded: ``truths`` (B, M, 4) corners, ``labels`` (B, M), ``valid`` (B, M) bool.
Padding rows may hold anything finite; they never match a prior.

Besides autograd, ``yolo_grad`` and ``ssd_grad`` give the closed-form gradients (Y9, S11) so
that an exported graph can return gradients without an autograd engine.
"""

from __future__ import annotations

import numpy as np
import torch

from reference.cases import SsdCase, YoloCase
from reference.outputs import layer_key

# ----------------------------------------------------------------------------- helpers


def sigmoid(t):
    """σ(t) with relative accuracy over the whole range, from exp(−|t|) ≤ 1 (no overflow).

    Not torch.sigmoid: exported to ONNX that becomes the Sigmoid op, and ONNX Runtime's
    float32 Sigmoid is a fast approximation with absolute accuracy only (σ(−20) = 0,
    σ(−17) = 8.9e-8 instead of 4.1e-8), which moves −log p by up to the −100 clamp (Y7, Y10).
    """
    e = torch.exp(torch.where(t >= 0, -t, t))  # not -|t|: d|t|/dt is 0 at t = 0
    return torch.where(t >= 0, 1 / (1 + e), e / (1 + e))


def _scalar(value, like: torch.Tensor) -> torch.Tensor:
    """``value`` (a Python number or 0-d tensor) as a 0-d tensor of ``like``'s dtype and device.

    Exported graphs otherwise may carry Python floats as float32 constants.
    """
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` over max(count, 1): 0 over no element (Y8, S12)."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    count = mask.sum().to(values.dtype)
    return total / torch.clamp(count, min=1.0)


def _clamped_log(p: torch.Tensor, log_clamp) -> torch.Tensor:
    """max(log p, log_clamp) elementwise, with a zero (not NaN) gradient where p == 0.

    ``log_clamp`` is a Python number or a 0-d tensor (an exported graph's input).
    """
    clamp = _scalar(log_clamp, p)
    positive = p > 0
    safe = torch.where(positive, p, torch.ones_like(p))
    log_p = torch.where(positive, torch.log(safe), clamp)
    return torch.clamp(log_p, min=clamp)


def bce(p: torch.Tensor, t: torch.Tensor, log_clamp: float = -100.0) -> torch.Tensor:
    """Elementwise BCE on probabilities, each log clamped from below (Y7); shape of p."""
    return -(t * _clamped_log(p, log_clamp) + (1 - t) * _clamped_log(1 - p, log_clamp))


# ----------------------------------------------------------------------------- YOLOv3


def yolo_channels(x: torch.Tensor, num_anchors: int, num_classes: int | None) -> torch.Tensor:
    """x (B, A*(C+5), G, G) -> (B, A, G, G, C+5), the C+5 axis last (Y1).

    ``num_classes=None`` reads C+5 off x as x.shape[1] // A (an exported graph's dynamic C).
    """
    b, _, g, _ = x.shape
    c5 = -1 if num_classes is None else num_classes + 5
    return x.reshape(b, num_anchors, c5, g, g).permute(0, 1, 3, 4, 2)


def _grid_size(x: torch.Tensor) -> torch.Tensor:
    """G = x.shape[2] (x is (B, A*(C+5), G, G) or (B, A, G, G, C+5)) as a 0-d tensor of x's dtype.

    A tensor, not a Python number, so that an exported graph with dynamic G keeps it exact.
    """
    return torch.full((), x.shape[2], dtype=x.dtype, device=x.device)


def yolo_decode(x: torch.Tensor, anchors: torch.Tensor, num_classes: int | None, img_dim: float) -> dict:
    """Decode one layer (Y1).

    x: (B, A*(C+5), G, G) raw head output. anchors: (A, 2) pixels. Returns
    ``p`` (B, A, G, G, C+5) with sigma applied to channels 0, 1, 4, 5: (raw w, h kept),
    ``boxes`` (B, A, G, G, 4) centre-size in grid units (detached), ``output``
    (B, A*G*G, 5+C): boxes in pixels, conf, cls.
    """
    a = anchors.shape[0]
    g = x.shape[2]
    stride = _scalar(img_dim, x) / _grid_size(x)
    t = yolo_channels(x, a, num_classes)
    sig = sigmoid(t)
    p = torch.cat([sig[..., 0:2], t[..., 2:4], sig[..., 4:]], dim=-1)
    grid = torch.arange(g, dtype=x.dtype, device=x.device)
    scaled = anchors.to(x.dtype) / stride
    aw = scaled[:, 0].view(1, a, 1, 1)
    ah = scaled[:, 1].view(1, a, 1, 1)
    raw = t.detach()
    boxes = torch.stack(
        [
            sig[..., 0].detach() + grid.view(1, 1, 1, g),
            sig[..., 1].detach() + grid.view(1, 1, g, 1),
            torch.exp(raw[..., 2]) * aw,
            torch.exp(raw[..., 3]) * ah,
        ],
        dim=-1,
    )
    output = torch.cat([boxes * stride, sig[..., 4:5], sig[..., 5:]], dim=-1)
    return {"p": p, "boxes": boxes, "output": output.reshape(x.shape[0], -1, t.shape[-1])}


def wh_iou(anchors_g: torch.Tensor, gwh: torch.Tensor) -> torch.Tensor:
    """(T, A) IoU of centred boxes, target sizes gwh (T, 2) vs anchors (A, 2), grid units (Y2)."""
    aw, ah = anchors_g[:, 0].unsqueeze(0), anchors_g[:, 1].unsqueeze(0)
    gw, gh = gwh[:, 0:1], gwh[:, 1:2]
    inter = torch.minimum(aw, gw) * torch.minimum(ah, gh)
    return inter / ((aw * ah + _scalar(1e-16, gwh)) + gw * gh - inter)


def bbox_iou_plus_one(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """The seed's IoU of centre-size boxes (..., 4) with the +1 pixel convention (Y12)."""

    def corners(b):
        return (
            b[..., 0] - b[..., 2] / 2,
            b[..., 1] - b[..., 3] / 2,
            b[..., 0] + b[..., 2] / 2,
            b[..., 1] + b[..., 3] / 2,
        )

    ax1, ay1, ax2, ay2 = corners(box1)
    bx1, by1, bx2, by2 = corners(box2)
    iw = torch.clamp(torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1) + 1, min=0)
    ih = torch.clamp(torch.minimum(ay2, by2) - torch.maximum(ay1, by1) + 1, min=0)
    inter = iw * ih
    area1 = (ax2 - ax1 + 1) * (ay2 - ay1 + 1)
    area2 = (bx2 - bx1 + 1) * (by2 - by1 + 1)
    return inter / (area1 + area2 - inter + _scalar(1e-16, inter))


def _with_dummy(a: torch.Tensor, fill) -> torch.Tensor:
    """``a`` (T, ...) plus one appended row of ``fill``: a gather source that is never empty."""
    pad = torch.full((1, *a.shape[1:]), fill, dtype=a.dtype, device=a.device)
    return torch.cat([a, pad], dim=0)


def yolo_build_targets(
    p: torch.Tensor,
    boxes: torch.Tensor,
    targets: torch.Tensor,
    anchors: torch.Tensor,
    img_dim: float,
    ignore_thres: float = 0.5,
) -> dict:
    """Masks and targets of one layer (Y2..Y6, Y11, Y12), loop-free.

    p: (B, A, G, G, C+5) decoded channels; boxes: (B, A, G, G, 4) grid units;
    targets: (T, 6) [sample_idx, class, cx, cy, w, h]; anchors: (A, 2) pixels.
    Returns (B, A, G, G) obj_mask/noobj_mask (bool), tx, ty, tw, th, tconf, class_mask,
    iou_scores (dtype of p), tcls (B, A, G, G, C). Values outside obj cells are 0.
    """
    b_, a_, g, _, c5 = p.shape
    c = c5 - 5
    dtype, device = p.dtype, p.device
    cells = b_ * a_ * g * g
    gf = _grid_size(p)
    scaled = anchors.to(dtype) / (_scalar(img_dim, gf) / gf)
    gxy = targets[:, 2:4] * gf
    gwh = targets[:, 4:6] * gf
    ious = wh_iou(scaled, gwh)  # (T, A)
    best = torch.argmax(ious, dim=1)  # (T,), first on ties
    gij = torch.minimum(torch.floor(gxy), gf - 1)  # Y3
    gi, gj = gij[:, 0].long(), gij[:, 1].long()
    b = targets[:, 0].long()
    label = targets[:, 1].long()
    rows = torch.arange(targets.shape[0], device=device)

    flat = ((b * a_ + best) * g + gj) * g + gi  # (T,)
    winner = torch.full((cells,), -1, dtype=torch.long, device=device)
    winner = winner.scatter_reduce(0, flat, rows, reduce="amax")  # Y5: last row wins
    obj = winner >= 0
    n_t = targets.shape[0]
    w = torch.where(obj, winner, torch.full_like(winner, n_t))  # row n_t: a dummy (T may be 0)

    anchor_ids = torch.arange(a_, device=device)
    flat_ta = ((b.unsqueeze(1) * a_ + anchor_ids.unsqueeze(0)) * g + gj.unsqueeze(1)) * g + gi.unsqueeze(1)  # (T, A)
    over = (ious > _scalar(ignore_thres, ious)).to(torch.long)
    ignored = torch.zeros(cells, dtype=torch.long, device=device)
    ignored = ignored.scatter_reduce(0, flat_ta.reshape(-1), over.reshape(-1), reduce="amax")
    noobj = ~obj & (ignored == 0)  # Y4

    zero = torch.zeros(cells, dtype=dtype, device=device)
    frac = _with_dummy(gxy - gij, 0.0)
    size = _with_dummy(torch.log(gwh / scaled[best] + _scalar(1e-16, gwh)), 0.0)  # Y6
    tx = torch.where(obj, frac[w, 0], zero)
    ty = torch.where(obj, frac[w, 1], zero)
    tw = torch.where(obj, size[w, 0], zero)
    th = torch.where(obj, size[w, 1], zero)

    onehot = torch.zeros(cells * c, dtype=dtype, device=device)
    ones = torch.ones(targets.shape[0], dtype=dtype, device=device)
    tcls = onehot.scatter_reduce(0, flat * c + label, ones, reduce="amax")  # Y5 union

    pred_label = torch.argmax(p[..., 5:], dim=-1).reshape(cells)  # Y11, first on ties
    win_label = _with_dummy(label, -1)[w]
    class_mask = torch.where(obj & (pred_label == win_label), torch.ones_like(zero), zero)
    target_box = _with_dummy(torch.cat([gxy, gwh], dim=1), 1.0)[w]  # (cells, 4)
    iou = bbox_iou_plus_one(boxes.reshape(cells, 4), target_box)  # Y12
    shape = (b_, a_, g, g)
    return {
        "obj_mask": obj.view(shape),
        "noobj_mask": noobj.view(shape),
        "tx": tx.view(shape),
        "ty": ty.view(shape),
        "tw": tw.view(shape),
        "th": th.view(shape),
        "tconf": obj.to(dtype).view(shape),
        "tcls": tcls.view(*shape, c),
        "class_mask": class_mask.view(shape),
        "iou_scores": torch.where(obj, iou, zero).view(shape),
    }


def yolo_loss_terms(
    p: torch.Tensor, built: dict, obj_scale: float = 1.0, noobj_scale: float = 100.0, log_clamp: float = -100.0
) -> dict:
    """Loss terms of one layer as 0-d tensors (Y7, Y8); p (B, A, G, G, C+5) from yolo_decode."""
    obj, noobj = built["obj_mask"], built["noobj_mask"]
    c = p.shape[-1] - 5
    conf = p[..., 4]
    terms = {
        "loss_x": _masked_mean((p[..., 0] - built["tx"]) ** 2, obj),
        "loss_y": _masked_mean((p[..., 1] - built["ty"]) ** 2, obj),
        "loss_w": _masked_mean((p[..., 2] - built["tw"]) ** 2, obj),
        "loss_h": _masked_mean((p[..., 3] - built["th"]) ** 2, obj),
        "loss_conf_obj": _masked_mean(-_clamped_log(conf, log_clamp), obj),
        "loss_conf_noobj": _masked_mean(-_clamped_log(1 - conf, log_clamp), noobj),
    }
    terms["loss_conf"] = (
        _scalar(obj_scale, conf) * terms["loss_conf_obj"] + _scalar(noobj_scale, conf) * terms["loss_conf_noobj"]
    )
    obj_c = obj.unsqueeze(-1).expand(*obj.shape, c)
    terms["loss_cls"] = _masked_mean(bce(p[..., 5:], built["tcls"], log_clamp), obj_c)
    terms["loss_total"] = (
        terms["loss_x"] + terms["loss_y"] + terms["loss_w"] + terms["loss_h"] + terms["loss_conf"] + terms["loss_cls"]
    )
    return terms


def _bce_logit_grad(p: torch.Tensor, t: torch.Tensor, log_clamp: float) -> torch.Tensor:
    """d bce(sigma(z), t) / dz at probability p: -t(1-p) + (1-t)p, 0 where a log is clamped."""
    clamp = _scalar(log_clamp, p)
    live_pos = _clamped_log(p, clamp) > clamp
    live_neg = _clamped_log(1 - p, clamp) > clamp
    zero = torch.zeros_like(p)
    return torch.where(live_neg, (1 - t) * p, zero) - torch.where(live_pos, t * (1 - p), zero)


def yolo_grad(
    x: torch.Tensor,
    p: torch.Tensor,
    built: dict,
    obj_scale: float = 1.0,
    noobj_scale: float = 100.0,
    log_clamp: float = -100.0,
) -> torch.Tensor:
    """Closed-form d loss_total / d x (Y9), shape of x (B, A*(C+5), G, G)."""
    obj, noobj = built["obj_mask"], built["noobj_mask"]
    c = p.shape[-1] - 5
    dtype = p.dtype
    n_obj = torch.clamp(obj.sum().to(dtype), min=1.0)
    n_noobj = torch.clamp(noobj.sum().to(dtype), min=1.0)
    zero = torch.zeros_like(p[..., 0])
    px, py, conf = p[..., 0], p[..., 1], p[..., 4]
    gx = torch.where(obj, 2 * (px - built["tx"]) * px * (1 - px) / n_obj, zero)
    gy = torch.where(obj, 2 * (py - built["ty"]) * py * (1 - py) / n_obj, zero)
    gw = torch.where(obj, 2 * (p[..., 2] - built["tw"]) / n_obj, zero)
    gh = torch.where(obj, 2 * (p[..., 3] - built["th"]) / n_obj, zero)
    one = torch.ones_like(conf)
    w_obj = _scalar(obj_scale, conf) / n_obj
    w_noobj = _scalar(noobj_scale, conf) / n_noobj
    g_obj = torch.where(obj, _bce_logit_grad(conf, one, log_clamp) * w_obj, zero)
    g_noobj = torch.where(noobj, _bce_logit_grad(conf, zero, log_clamp) * w_noobj, zero)
    obj_c = obj.unsqueeze(-1)
    g_cls = torch.where(obj_c, _bce_logit_grad(p[..., 5:], built["tcls"], log_clamp), torch.zeros_like(p[..., 5:])) / (
        n_obj * c
    )
    g = torch.cat([torch.stack([gx, gy, gw, gh, g_obj + g_noobj], dim=-1), g_cls], dim=-1)
    return g.permute(0, 1, 4, 2, 3).reshape(x.shape)


def yolo_layer(
    x: torch.Tensor,
    targets: torch.Tensor,
    anchors: torch.Tensor,
    num_classes: int | None,
    img_dim: float,
    ignore_thres: float = 0.5,
    obj_scale: float = 1.0,
    noobj_scale: float = 100.0,
    log_clamp: float = -100.0,
) -> dict:
    """Decode, targets and loss terms of one layer; the adapter.py keys without a prefix.

    ``num_classes`` None: C from x.shape[1] // A - 5. ``img_dim`` and the settings are Python
    numbers or 0-d tensors (graph inputs when exported).
    """
    dec = yolo_decode(x, anchors, num_classes, img_dim)
    built = yolo_build_targets(dec["p"], dec["boxes"], targets, anchors, img_dim, ignore_thres)
    terms = yolo_loss_terms(dec["p"], built, obj_scale, noobj_scale, log_clamp)
    return {"output": dec["output"], "p": dec["p"], **built, **terms}


# ----------------------------------------------------------------------------- SSD


def point_form(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre-size -> corners (xmin, ymin, xmax, ymax)."""
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1)


def box_iou(truths: torch.Tensor, priors_pt: torch.Tensor) -> torch.Tensor:
    """(B, M, P) IoU of truths (B, M, 4) against priors (P, 4), corner form, no +1 or eps (S2)."""
    t = truths.unsqueeze(2)
    q = priors_pt.view(1, 1, -1, 4)
    wh = torch.clamp(torch.minimum(t[..., 2:], q[..., 2:]) - torch.maximum(t[..., :2], q[..., :2]), min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_t = (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])
    area_q = (q[..., 2] - q[..., 0]) * (q[..., 3] - q[..., 1])
    return inter / (area_t + area_q - inter)


def encode(matched: torch.Tensor, priors: torch.Tensor, variances) -> torch.Tensor:
    """(B, P, 4) corner truths against (P, 4) centre-size priors -> loc targets (S7)."""
    centre = (matched[..., :2] + matched[..., 2:]) / 2
    size = matched[..., 2:] - matched[..., :2]
    v0, v1 = _scalar(variances[0], priors), _scalar(variances[1], priors)
    g_c = (centre - priors[:, :2]) / (v0 * priors[:, 2:])
    g_s = torch.log(size / priors[:, 2:]) / v1
    return torch.cat([g_c, g_s], dim=-1)


def decode(loc: torch.Tensor, priors: torch.Tensor, variances) -> torch.Tensor:
    """(B, P, 4) offsets -> (B, P, 4) corner boxes (S8)."""
    v0, v1 = _scalar(variances[0], loc), _scalar(variances[1], loc)
    centre = priors[:, :2] + loc[..., :2] * v0 * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[..., 2:] * v1)
    return point_form(torch.cat([centre, size], dim=-1))


def match(
    truths: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    priors: torch.Tensor,
    threshold: float = 0.5,
    variances=(0.1, 0.2),
) -> dict:
    """Match padded truths to priors for the whole batch (S2..S7, S13).

    truths (B, M, 4) corners, labels (B, M) 0-based, valid (B, M) bool, priors (P, 4).
    Returns matched (B, P) int64 (-1 for an image without truths), conf_t (B, P) int64,
    loc_t (B, P, 4) (0 where matched == -1).
    """
    b_, m_, _ = truths.shape
    p_ = priors.shape[0]
    unit = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=truths.dtype, device=truths.device)
    truths = torch.where(valid.unsqueeze(-1), truths, unit)  # padding stays finite
    overlaps = box_iou(truths, point_form(priors))  # (B, M, P)
    overlaps = torch.where(valid.unsqueeze(-1), overlaps, torch.full_like(overlaps, -1.0))
    best_prior = torch.argmax(overlaps, dim=2)  # (B, M), S3, S5
    best_truth = torch.argmax(overlaps, dim=1)  # (B, P), first on ties (S3)
    best_truth_overlap = torch.gather(overlaps, 1, best_truth.unsqueeze(1)).squeeze(1)
    truth_ids = torch.arange(m_, device=truths.device).expand(b_, m_)
    forced = torch.full((b_, p_), -1, dtype=torch.long, device=truths.device)
    src = torch.where(valid, truth_ids, torch.full_like(truth_ids, -1))
    forced = forced.scatter_reduce(1, best_prior, src, reduce="amax")  # S4: later truth wins
    is_forced = forced >= 0
    matched = torch.where(is_forced, forced, best_truth)
    overlap = torch.where(is_forced, torch.full_like(best_truth_overlap, 2.0), best_truth_overlap)
    has_truth = valid.any(dim=1, keepdim=True)
    matched = torch.where(has_truth, matched, torch.full_like(matched, -1))  # S13
    safe = torch.clamp(matched, min=0)
    label = torch.gather(labels.to(torch.long), 1, safe)
    positive = (overlap >= _scalar(threshold, overlap)) & has_truth  # S6
    conf_t = torch.where(positive, label + 1, torch.zeros_like(label))
    boxes = torch.gather(truths, 1, safe.unsqueeze(-1).expand(b_, p_, 4))
    loc_t = encode(boxes, priors, variances)
    loc_t = torch.where(has_truth.unsqueeze(-1), loc_t, torch.zeros_like(loc_t))
    return {"matched": matched, "conf_t": conf_t, "loc_t": loc_t}


def log_sum_exp(conf: torch.Tensor) -> torch.Tensor:
    """(B, P, C) -> (B, P) logsumexp with each row's own max (S9)."""
    m = torch.amax(conf, dim=-1, keepdim=True)
    return (m + torch.log(torch.exp(conf - m).sum(dim=-1, keepdim=True))).squeeze(-1)


def cross_entropy(conf: torch.Tensor, conf_t: torch.Tensor) -> torch.Tensor:
    """(B, P) per-prior cross-entropy logsumexp(row) - row[conf_t]."""
    picked = torch.gather(conf, -1, conf_t.unsqueeze(-1)).squeeze(-1)
    return log_sum_exp(conf) - picked


def hard_negative_mask(score: torch.Tensor, pos: torch.Tensor, neg_pos: int, topk: bool = False) -> torch.Tensor:
    """(B, P) bool hard negatives (S10): the num_neg highest scores, minus the positives.

    score (B, P) mining score (0 at positives), pos (B, P) bool. num_neg =
    min(neg_pos * num_pos, P - 1) per image. The default stable sort ranks equal scores by
    lowest prior index (the reference's order); ``topk=True`` ranks with a full-row top-k
    instead (what ONNX export supports; its tie order is the runtime's, admissible per S10).
    """
    p_ = score.shape[1]
    score = torch.where(pos, torch.zeros_like(score), score).detach()
    if topk:
        order = torch.topk(score, p_, dim=1, largest=True, sorted=True).indices
    else:
        order = torch.sort(score, dim=1, descending=True, stable=True).indices
    ranks = torch.arange(p_, device=score.device).expand_as(order)
    rank = torch.empty_like(order).scatter(1, order, ranks)  # a permutation: no duplicates
    num_pos = pos.sum(dim=1, keepdim=True)
    num_neg = torch.clamp(torch.as_tensor(neg_pos, dtype=torch.long, device=pos.device) * num_pos, max=p_ - 1)
    return (rank < num_neg) & ~pos


def multibox_loss(
    loc: torch.Tensor,
    conf: torch.Tensor,
    priors: torch.Tensor,
    truths: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    threshold: float = 0.5,
    neg_pos: int = 3,
    variances=(0.1, 0.2),
    topk: bool = False,
) -> dict:
    """The whole SSD loss (S2..S13), loop-free; every key of implementations/adapter.py but grads.

    loc (B, P, 4), conf (B, P, C) logits, priors (P, 4) centre-size; truths (B, M, 4),
    labels (B, M), valid (B, M) padded as in ``match``; ``topk`` as in hard_negative_mask.
    """
    m = match(truths, labels, valid, priors, threshold, variances)
    pos = m["conf_t"] > 0
    ce = cross_entropy(conf, m["conf_t"])
    neg = hard_negative_mask(ce, pos, neg_pos, topk)
    n = torch.clamp(pos.sum().to(loc.dtype), min=1.0)  # S12: 0/0 read as 0
    diff = loc - m["loc_t"]
    ad = diff.abs()
    sl1 = torch.where(ad < 1, 0.5 * diff * diff, ad - 0.5)
    sl1 = torch.where(pos.unsqueeze(-1), sl1, torch.zeros_like(sl1))
    loss_l = sl1.sum() / n
    sel = pos | neg
    loss_c = torch.where(sel, ce, torch.zeros_like(ce)).sum() / n
    return {
        **m,
        "pos_mask": pos,
        "neg_mask": neg,
        "decoded": decode(loc, priors, variances),
        "loss_l": loss_l,
        "loss_c": loss_c,
    }


def ssd_grad(loc: torch.Tensor, conf: torch.Tensor, out: dict) -> tuple:
    """Closed-form d (loss_l + loss_c) / d loc and / d conf (S11), from multibox_loss's ``out``."""
    pos, neg = out["pos_mask"], out["neg_mask"]
    n = torch.clamp(pos.sum().to(loc.dtype), min=1.0)
    diff = loc - out["loc_t"]
    g_loc = torch.where(diff.abs() < 1, diff, torch.sign(diff)) / n
    g_loc = torch.where(pos.unsqueeze(-1), g_loc, torch.zeros_like(g_loc))
    classes = torch.arange(conf.shape[-1], device=conf.device)
    onehot = (classes == out["conf_t"].unsqueeze(-1)).to(conf.dtype)
    soft = torch.softmax(conf, dim=-1)
    g_conf = torch.where((pos | neg).unsqueeze(-1), (soft - onehot) / n, torch.zeros_like(conf))
    return g_loc, g_conf


# ----------------------------------------------------------------------------- packing


def pad_truths(truths, dtype=np.float64):
    """B arrays (n_i, 5) -> NumPy truths (B, M, 4), labels (B, M), valid (B, M); M = max(1, n_i).

    Image i's rows fill its first n_i slots (valid True); the rest hold the box (0, 0, 1, 1),
    label 0. truths and labels in ``dtype``, valid bool."""
    b = len(truths)
    m = max([1] + [len(t) for t in truths])
    boxes = np.tile(np.array([0.0, 0.0, 1.0, 1.0], dtype=dtype), (b, m, 1))
    labels = np.zeros((b, m), dtype=dtype)
    valid = np.zeros((b, m), dtype=bool)
    for i, t in enumerate(truths):
        t = np.asarray(t, dtype=np.float64).reshape(-1, 5)
        boxes[i, : len(t)] = t[:, :4]
        labels[i, : len(t)] = t[:, 4]
        valid[i, : len(t)] = True
    return boxes, labels, valid


# ----------------------------------------------------------------------------- adapter


class TorchBatchedAdapter:
    """The loop-free torch implementation as a conformance adapter (autograd gradients)."""

    name = "torch-batched"
    devices = ("cpu", "cuda")
    dtypes = ("float64", "float32")

    def skip_reason(self, device: str) -> str | None:
        if device == "cuda" and not torch.cuda.is_available():
            return "torch has no CUDA device here"
        return None

    def yolo(self, case: YoloCase, device: str, dtype: str) -> dict:
        from reference.yolo import validate

        validate(case)
        td = getattr(torch, dtype)
        s = case.settings
        targets = torch.as_tensor(np.asarray(case.targets).reshape(-1, 6), dtype=td, device=device)
        result, total = {}, None
        for k, (x_np, anchors_np) in enumerate(zip(case.outputs, case.anchors)):
            x = torch.as_tensor(x_np, dtype=td, device=device).requires_grad_(True)
            anchors = torch.as_tensor(anchors_np, dtype=td, device=device)
            out = yolo_layer(
                x,
                targets,
                anchors,
                case.num_classes,
                float(case.img_dim),
                s.ignore_thres,
                s.obj_scale,
                s.noobj_scale,
                s.log_clamp,
            )
            (grad,) = torch.autograd.grad(out["loss_total"], x)
            out.pop("p")
            for key, value in out.items():
                result[layer_key(k, key)] = value.detach().cpu().numpy()
            result[layer_key(k, "grad")] = grad.cpu().numpy()
            layer_total = out["loss_total"].detach()
            total = layer_total if total is None else total + layer_total
        result["loss_total"] = total.cpu().numpy()
        return result

    def ssd(self, case: SsdCase, device: str, dtype: str) -> dict:
        from reference.ssd import validate

        validate(case)
        td = getattr(torch, dtype)
        s = case.settings
        boxes, labels, valid = pad_truths(case.truths)
        loc = torch.as_tensor(case.loc, dtype=td, device=device).requires_grad_(True)
        conf = torch.as_tensor(case.conf, dtype=td, device=device).requires_grad_(True)
        out = multibox_loss(
            loc,
            conf,
            torch.as_tensor(case.priors, dtype=td, device=device),
            torch.as_tensor(boxes, dtype=td, device=device),
            torch.as_tensor(labels, dtype=td, device=device),
            torch.as_tensor(valid, device=device),
            s.threshold,
            s.neg_pos,
            tuple(s.variances),
        )
        g_loc, g_conf = torch.autograd.grad(out["loss_l"] + out["loss_c"], (loc, conf))
        result = {k: v.detach().cpu().numpy() for k, v in out.items()}
        result["grad_loc"], result["grad_conf"] = g_loc.cpu().numpy(), g_conf.cpu().numpy()
        return result


adapter = TorchBatchedAdapter()
