"""YOLOv3 loss in PyTorch, following the seed's YOLOLayer and build_targets, for modern torch.

The algorithm is the seed's (decode, best anchor by wh-IoU, one cell per target, ignore
mask, MSE and BCE with masked means), with every fix the spec (reference/spec/yolo.md)
asks for. Fixes relative to the seed, rule by rule:

- Y1  Decode: unchanged. pred_boxes and the layer output are built on the input's device
      and dtype (the seed built pred_boxes with ``torch.FloatTensor`` on the CPU) under
      ``torch.no_grad()`` (not ``.data``); the output carries no gradient. The loss takes
      the logits at the masked cells first and applies sigmoid there (same values).
- Y2  Best anchor: ``argmax`` over anchors, lowest index on exact ties (as the seed).
- Y3  Cell: gi = min(floor(gx), G - 1), gj likewise; tx = gx - gi, ty = gy - gj. The seed
      truncated with ``.long()`` and raised IndexError (CPU) or a device assert (CUDA) for
      cx = 1.0.
- Y4  Ignore: the seed's per-target Python loop is one vectorised write of ``False`` at
      every (target, anchor) pair whose wh-IoU is strictly above ``ignore_thres``.
- Y5  Targets sharing (b, anchor, gj, gi): the last row in target order wins on every
      device. Rows are deduplicated first (stable sort of the cell key, last of each run),
      so every write of a row-dependent value (tx, ty, tw, th, class_mask, iou_scores) has
      unique indices; the mask and tcls writes keep duplicates but store one constant
      (True, False or 1), so any order gives the same result and tcls is the union. The seed's
      advanced-index writes with duplicate indices pick an arbitrary winner on CUDA and with many targets on CPU.
- Y6  tw = log(gw / aw + 1e-16): unchanged.
- Y7  BCE is written out with each log clamped from below at ``log_clamp`` (-100), instead
      of ``nn.BCELoss``, on the seed's masked selections. log(1 - p) is ``log1p(-p)``, as
      PyTorch's BCELoss computes it.
- Y8  A mean over no element is 0 with zero gradient (the seed: NaN).
- Y9  Gradients come from autograd through the explicit BCE: the derivative of a clamped
      log is exactly zero (``nn.BCELoss``'s backward divides by max(p(1-p), 1e-12)).
- Y10 Probabilities are computed in the input's dtype (float32 sigma(20) == 1 exactly).
- Y11 class_mask: ``argmax`` over classes (lowest index on ties) == the winning label.
- Y12 iou_scores: the seed's +1-pixel IoU on grid-unit boxes, for the winning row.
- Y13 Validation is the adapter's job (it runs the reference's validate on the case);
      these functions assume valid input.
- Y14 Every tensor is created on the input's device and dtype: float32 and float64,
      CPU and CUDA. No legacy typed-tensor constructors (the seed's cuda Float/Byte tensors), bool
      masks, ``.long()`` only after validation.
"""

from __future__ import annotations

import torch

from reference.cases import YoloSettings


@torch.no_grad()
def decode(p: torch.Tensor, anchors: torch.Tensor, img_dim: float) -> dict:
    """Decode one layer's predictions p (B, A, G, G, C+5) (x viewed, permuted), no gradients (Y1).

    anchors: (A, 2) anchor (w, h) in pixels, p's dtype. Returns conf (B, A, G, G) and cls
    (B, A, G, G, C) probabilities; pred_boxes (B, A, G, G, 4) (cx, cy, w, h) in grid units;
    scaled_anchors (A, 2) in grid units; output (B, A*G*G, 5+C) box in pixels, conf, cls.
    """
    B, A, G, _, _ = p.shape
    stride = img_dim / G
    scaled_anchors = anchors / stride
    grid = torch.arange(G, device=p.device, dtype=p.dtype)
    pred_boxes = torch.stack(
        (
            torch.sigmoid(p[..., 0]) + grid.view(1, 1, 1, G),
            torch.sigmoid(p[..., 1]) + grid.view(1, 1, G, 1),
            torch.exp(p[..., 2]) * scaled_anchors[:, 0].view(1, A, 1, 1),
            torch.exp(p[..., 3]) * scaled_anchors[:, 1].view(1, A, 1, 1),
        ),
        -1,
    )
    output = torch.empty(p.shape, device=p.device, dtype=p.dtype)
    torch.sigmoid(p, out=output)  # one pass: conf and cls in place, the box columns overwritten
    output[..., :4] = pred_boxes * stride
    conf, cls = output[..., 4], output[..., 5:]
    output = output.view(B, A * G * G, -1)
    return {"conf": conf, "cls": cls, "pred_boxes": pred_boxes, "scaled_anchors": scaled_anchors, "output": output}


def wh_iou(anchors: torch.Tensor, gwh: torch.Tensor) -> torch.Tensor:
    """(A, T) IoU of co-centred boxes: anchors (A, 2) against targets gwh (T, 2), grid units (Y2)."""
    aw, ah = anchors[:, 0:1], anchors[:, 1:2]
    gw, gh = gwh[:, 0].unsqueeze(0), gwh[:, 1].unsqueeze(0)
    inter = torch.minimum(aw, gw) * torch.minimum(ah, gh)
    return inter / ((aw * ah + 1e-16) + gw * gh - inter)


def bbox_iou_plus1(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """(T,) IoU of centre-size boxes (T, 4) with the seed's +1 pixel convention (Y12)."""
    b1x1, b1x2 = box1[:, 0] - box1[:, 2] / 2, box1[:, 0] + box1[:, 2] / 2
    b1y1, b1y2 = box1[:, 1] - box1[:, 3] / 2, box1[:, 1] + box1[:, 3] / 2
    b2x1, b2x2 = box2[:, 0] - box2[:, 2] / 2, box2[:, 0] + box2[:, 2] / 2
    b2y1, b2y2 = box2[:, 1] - box2[:, 3] / 2, box2[:, 1] + box2[:, 3] / 2
    iw = (torch.minimum(b1x2, b2x2) - torch.maximum(b1x1, b2x1) + 1).clamp(min=0)
    ih = (torch.minimum(b1y2, b2y2) - torch.maximum(b1y1, b2y1) + 1).clamp(min=0)
    inter = iw * ih
    a1 = (b1x2 - b1x1 + 1) * (b1y2 - b1y1 + 1)
    a2 = (b2x2 - b2x1 + 1) * (b2y2 - b2y1 + 1)
    return inter / (a1 + a2 - inter + 1e-16)


def last_per_key(key: torch.Tensor) -> torch.Tensor:
    """Row indices (int64) holding the last occurrence of each distinct value of key (T,) (Y5)."""
    sorted_key, order = torch.sort(key, stable=True)
    is_last = torch.ones_like(sorted_key, dtype=torch.bool)
    is_last[:-1] = sorted_key[1:] != sorted_key[:-1]
    return order[is_last]


def build_targets(
    pred_boxes: torch.Tensor,
    pred_cls: torch.Tensor,
    targets: torch.Tensor,
    scaled_anchors: torch.Tensor,
    ignore_thres: float,
) -> dict:
    """Targets and masks of one layer (Y2-Y6, Y11, Y12).

    pred_boxes: (B, A, G, G, 4) grid units. pred_cls: (B, A, G, G, C) probabilities.
    targets: (T, 6) [sample_idx, class, cx, cy, w, h], valid (Y13). scaled_anchors: (A, 2).
    Returns bool obj_mask, noobj_mask (B, A, G, G); float tx, ty, tw, th, tconf, class_mask,
    iou_scores (B, A, G, G) and tcls (B, A, G, G, C), all on pred_boxes' device and dtype.
    """
    B, A, G, _, _ = pred_boxes.shape
    C = pred_cls.shape[-1]
    opts = {"device": pred_boxes.device, "dtype": pred_boxes.dtype}
    obj_mask = torch.zeros(B, A, G, G, dtype=torch.bool, device=opts["device"])
    noobj_mask = torch.ones_like(obj_mask)
    tx, ty, tw, th, class_mask, iou_scores = (torch.zeros(B, A, G, G, **opts) for _ in range(6))
    tcls = torch.zeros(B, A, G, G, C, **opts)

    target_boxes = targets[:, 2:6] * G
    gxy, gwh = target_boxes[:, :2], target_boxes[:, 2:]
    ious = wh_iou(scaled_anchors, gwh)  # (A, T)
    best_n = ious.argmax(0)
    b, labels = targets[:, 0].long(), targets[:, 1].long()
    gij = gxy.floor().clamp(max=G - 1)
    gi, gj = gij[:, 0].long(), gij[:, 1].long()

    obj_mask[b, best_n, gj, gi] = True
    noobj_mask[b, best_n, gj, gi] = False
    t_idx, a_idx = torch.nonzero(ious.t() > ignore_thres, as_tuple=True)
    noobj_mask[b[t_idx], a_idx, gj[t_idx], gi[t_idx]] = False
    tcls[b, best_n, gj, gi, labels] = 1

    w = last_per_key(((b * A + best_n) * G + gj) * G + gi)
    cell = (b[w], best_n[w], gj[w], gi[w])
    tx[cell] = gxy[w, 0] - gij[w, 0]
    ty[cell] = gxy[w, 1] - gij[w, 1]
    tw[cell] = torch.log(gwh[w, 0] / scaled_anchors[best_n[w], 0] + 1e-16)
    th[cell] = torch.log(gwh[w, 1] / scaled_anchors[best_n[w], 1] + 1e-16)
    class_mask[cell] = (pred_cls[cell].argmax(-1) == labels[w]).to(opts["dtype"])
    iou_scores[cell] = bbox_iou_plus1(pred_boxes[cell], target_boxes[w])
    return {
        "obj_mask": obj_mask,
        "noobj_mask": noobj_mask,
        "tx": tx,
        "ty": ty,
        "tw": tw,
        "th": th,
        "tconf": obj_mask.to(opts["dtype"]),
        "tcls": tcls,
        "class_mask": class_mask,
        "iou_scores": iou_scores,
    }


def clamped_log(p: torch.Tensor, log_clamp: float) -> torch.Tensor:
    """max(log p, log_clamp) elementwise with gradient exactly 0 where the clamp is active (Y9)."""
    keep = torch.log(p.detach()) > log_clamp
    safe = torch.where(keep, p, torch.ones_like(p))
    return torch.where(keep, torch.log(safe), torch.full_like(p, log_clamp))


def clamped_log1m(p: torch.Tensor, log_clamp: float) -> torch.Tensor:
    """max(log(1 - p), log_clamp) elementwise, computed as log1p(-p), zero gradient where clamped."""
    keep = torch.log1p(-p.detach()) > log_clamp
    safe = torch.where(keep, p, torch.zeros_like(p))
    return torch.where(keep, torch.log1p(-safe), torch.full_like(p, log_clamp))


def bce(p: torch.Tensor, t: torch.Tensor, log_clamp: float) -> torch.Tensor:
    """Elementwise binary cross-entropy on probabilities with clamped logs (Y7)."""
    return -(t * clamped_log(p, log_clamp) + (1 - t) * clamped_log1m(p, log_clamp))


def mean_or_zero(values: torch.Tensor) -> torch.Tensor:
    """Mean of all elements of values; 0 (with zero gradient) when there are none (Y8)."""
    return values.sum() / max(values.numel(), 1)


def layer_loss(
    x: torch.Tensor,
    targets: torch.Tensor,
    anchors: torch.Tensor,
    num_classes: int,
    img_dim: float,
    settings: YoloSettings = YoloSettings(),
) -> dict:
    """Decode, targets and loss terms of one YOLOv3 layer (Y1-Y12).

    x: (B, A*(C+5), G, G) float32/float64 logits on any device; targets (T, 6) and anchors
    (A, 2, pixels) on x's device and dtype. Returns the decode output, every target and
    mask of ``build_targets`` and the scalar loss terms loss_x ... loss_total (0-d tensors
    in x's dtype, differentiable with respect to x).
    """
    B, _, G, _ = x.shape
    x5 = x.view(B, anchors.shape[0], num_classes + 5, G, G)  # Y1: channels of each anchor
    d = decode(x5.permute(0, 1, 3, 4, 2), anchors, img_dim)
    t = build_targets(d["pred_boxes"], d["cls"], targets, d["scaled_anchors"], settings.ignore_thres)
    obj, noobj, clamp = t["obj_mask"], t["noobj_mask"], settings.log_clamp
    # Select logits in x's own (B, A, C+5, G, G) layout so that backward writes into a
    # contiguous gradient of x's shape (no full-size permute copies).
    b, a, gj, gi = torch.nonzero(obj, as_tuple=True)
    at_obj = x5[b, a, :, gj, gi]  # (n_obj, C+5), cells in obj_mask's C order
    conf_noobj = torch.sigmoid(x5[:, :, 4][noobj])
    loss = {  # the seed's masked selections, then means that are 0 over nothing
        "loss_x": mean_or_zero((torch.sigmoid(at_obj[:, 0]) - t["tx"][obj]) ** 2),
        "loss_y": mean_or_zero((torch.sigmoid(at_obj[:, 1]) - t["ty"][obj]) ** 2),
        "loss_w": mean_or_zero((at_obj[:, 2] - t["tw"][obj]) ** 2),
        "loss_h": mean_or_zero((at_obj[:, 3] - t["th"][obj]) ** 2),
        "loss_conf_obj": mean_or_zero(-clamped_log(torch.sigmoid(at_obj[:, 4]), clamp)),
        "loss_conf_noobj": mean_or_zero(-clamped_log1m(conf_noobj, clamp)),
        "loss_cls": mean_or_zero(bce(torch.sigmoid(at_obj[:, 5:]), t["tcls"][obj], clamp)),
    }
    loss["loss_conf"] = settings.obj_scale * loss["loss_conf_obj"] + settings.noobj_scale * loss["loss_conf_noobj"]
    loss["loss_total"] = (
        loss["loss_x"] + loss["loss_y"] + loss["loss_w"] + loss["loss_h"] + loss["loss_conf"] + loss["loss_cls"]
    )
    return {"output": d["output"], **t, **loss}


def yolo_loss(
    outputs, anchors, targets: torch.Tensor, num_classes: int, img_dim: float, settings: YoloSettings = YoloSettings()
) -> tuple[list, torch.Tensor]:
    """Every layer's ``layer_loss`` and the total (sum of the layers' loss_total, 0-d).

    outputs: sequence of (B, A*(C+5), G_k, G_k) tensors; anchors: matching (A, 2) tensors.
    """
    layers = [layer_loss(x, targets, a, num_classes, img_dim, settings) for x, a in zip(outputs, anchors)]
    return layers, sum(layer["loss_total"] for layer in layers)
