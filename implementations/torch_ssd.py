"""SSD MultiBoxLoss in PyTorch, following the seed (ssd.pytorch's match, encode and mining).

The algorithm is the seed's: per image, IoU of truths against priors, best prior per truth
and best truth per prior, forced matching with the seed's sequential loop
(``for j in range(n): best_truth_idx[best_prior_idx[j]] = j``), encode, then hard negative
mining by sort and argsort of the order, smooth-L1 and cross-entropy summed and divided by
the batch's positive count. Fixes relative to the seed, rule by rule
(reference/spec/ssd.md):

- S2  IoU in corner form, no +1, no epsilon: unchanged.
- S3  Best prior / best truth by ``argmax`` (lowest index on ties, as torch documents).
- S4  Forced matching: the seed's loop, unchanged (later truth wins a shared best prior).
- S5  A truth overlapping no prior goes to prior 0 (argmax of all zeros): unchanged.
- S6  overlap strictly below threshold is background: unchanged. Labels are cast with
      ``.long()`` after validation (the seed truncated float labels silently).
- S7  Encode: unchanged (validation rules out the zero sizes that gave -inf).
- S8  Decode of the predicted offsets is returned (corner form); the seed had none.
- S9  Mining score = per-row ``torch.logsumexp`` - conf[row, conf_t], not the seed's
      log_sum_exp with one global max over the batch (float32 rows far below it
      underflowed to -inf).
- S10 ``loss_c[pos] = 0`` fails on torch >= 1 (a (B*P, 1) score indexed by a (B, P) mask):
      the score is kept as (B, P). Sorts use ``stable=True`` so equal scores rank the
      lowest prior index first, as the reference does. neg_mask = mined and not positive.
- S11 ``reduction="sum"`` replaces the removed ``size_average=False``.
- S12 N = 0 gives loss_l = loss_c = 0 and zero gradients (the seed: NaN): the sums are over
      nothing and are divided by max(N, 1).
- S13 An image without truths has matched = -1, conf_t = 0, no positives (the seed crashed).
- S14 Validation is the adapter's job; these functions assume valid input.
- Devices and dtypes: every tensor is created on the input's device and dtype (the seed
      built loc_t / conf_t on the CPU with legacy constructors and ``Variable``); no
      ``.data``; float32 and float64, CPU and CUDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference.cases import SsdSettings


def point_form(boxes: torch.Tensor) -> torch.Tensor:
    """(P, 4) centre-size (cx, cy, w, h) to corner form (xmin, ymin, xmax, ymax)."""
    return torch.cat((boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2), 1)


def jaccard(box_a: torch.Tensor, box_b: torch.Tensor) -> torch.Tensor:
    """(n, P) IoU of corner-form boxes box_a (n, 4) against box_b (P, 4); no +1, no epsilon (S2)."""
    lt = torch.maximum(box_a[:, None, :2], box_b[None, :, :2])
    rb = torch.minimum(box_a[:, None, 2:], box_b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = ((box_a[:, 2] - box_a[:, 0]) * (box_a[:, 3] - box_a[:, 1]))[:, None]
    area_b = ((box_b[:, 2] - box_b[:, 0]) * (box_b[:, 3] - box_b[:, 1]))[None, :]
    return inter / (area_a + area_b - inter)


def encode(matched: torch.Tensor, priors: torch.Tensor, variances) -> torch.Tensor:
    """(P, 4) regression targets of corner-form truths matched (P, 4) on priors (P, 4) (S7)."""
    g_cxcy = ((matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]) / (variances[0] * priors[:, 2:])
    g_wh = torch.log((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]) / variances[1]
    return torch.cat((g_cxcy, g_wh), 1)


def decode(loc: torch.Tensor, priors: torch.Tensor, variances) -> torch.Tensor:
    """(..., P, 4) corner-form boxes from offsets loc (..., P, 4) on priors (P, 4) (S8)."""
    cxcy = priors[:, :2] + loc[..., :2] * variances[0] * priors[:, 2:]
    wh = priors[:, 2:] * torch.exp(loc[..., 2:] * variances[1])
    return torch.cat((cxcy - wh / 2, cxcy + wh / 2), -1)


def match(threshold: float, truths: torch.Tensor, priors: torch.Tensor, variances, labels: torch.Tensor) -> tuple:
    """Match one image's truths to the priors (S3-S7, S13).

    truths: (n, 4) corner form; priors: (P, 4) centre-size; labels: (n,) int64, 0-based.
    Returns matched (P,) int64 truth index (-1 when n = 0), conf (P,) int64 (0 background,
    label + 1 otherwise) and loc (P, 4) encoded targets (zeros when n = 0).
    """
    P = priors.shape[0]
    if truths.shape[0] == 0:
        return (
            torch.full((P,), -1, dtype=torch.long, device=priors.device),
            torch.zeros(P, dtype=torch.long, device=priors.device),
            torch.zeros(P, 4, dtype=priors.dtype, device=priors.device),
        )
    overlaps = jaccard(truths, point_form(priors))
    best_prior_idx = overlaps.argmax(1)
    best_truth_overlap, best_truth_idx = overlaps.amax(0), overlaps.argmax(0)
    best_truth_overlap = best_truth_overlap.index_fill(0, best_prior_idx, 2)
    for j in range(best_prior_idx.size(0)):  # the seed's forced matching: later truth wins
        best_truth_idx[best_prior_idx[j]] = j
    conf = labels[best_truth_idx] + 1
    conf[best_truth_overlap < threshold] = 0
    loc = encode(truths[best_truth_idx], priors, variances)
    return best_truth_idx, conf, loc


def mining_score(conf: torch.Tensor, conf_t: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """(B, P) hard-negative score: per-row logsumexp minus the target logit, 0 at positives (S9)."""
    score = torch.logsumexp(conf, -1) - conf.gather(-1, conf_t.unsqueeze(-1)).squeeze(-1)
    return torch.where(pos, torch.zeros_like(score), score)


def hard_negative_mask(score: torch.Tensor, pos: torch.Tensor, neg_pos: int) -> torch.Tensor:
    """(B, P) bool: the min(neg_pos * num_pos, P - 1) highest scores per image (S10).

    Ranked by sort then argsort of the order, both stable: equal scores rank lower prior
    index first. Positives (score 0) may be mined; callers combine with ``pos``.
    """
    _, loss_idx = score.sort(dim=1, descending=True, stable=True)
    _, idx_rank = loss_idx.sort(dim=1, stable=True)
    num_pos = pos.long().sum(1, keepdim=True)
    num_neg = torch.clamp(neg_pos * num_pos, max=pos.size(1) - 1)
    return idx_rank < num_neg


def multibox_loss(
    loc: torch.Tensor, conf: torch.Tensor, priors: torch.Tensor, truths, settings: SsdSettings = SsdSettings()
) -> dict:
    """SSD MultiBoxLoss of one batch (S2-S13).

    loc: (B, P, 4) offsets; conf: (B, P, C) logits, class 0 background; priors: (P, 4)
    centre-size; truths: B tensors (n_i, 5) [xmin, ymin, xmax, ymax, label], all on one
    device and dtype (float32/float64), valid (S14). Returns matched, conf_t (B, P) int64;
    loc_t (B, P, 4); pos_mask, neg_mask (B, P) bool; decoded (B, P, 4) corner form; loss_l,
    loss_c 0-d tensors in loc's dtype, differentiable with respect to loc and conf.
    """
    per_image = [match(settings.threshold, t[:, :4], priors, settings.variances, t[:, 4].long()) for t in truths]
    matched, conf_t, loc_t = (torch.stack(parts) for parts in zip(*per_image))
    pos = conf_t > 0
    with torch.no_grad():
        mined = hard_negative_mask(mining_score(conf, conf_t, pos), pos, settings.neg_pos)
    selected = pos | mined
    n = pos.sum().clamp(min=1).to(loc.dtype)
    loss_l = F.smooth_l1_loss(loc[pos], loc_t[pos], reduction="sum", beta=1.0) / n
    loss_c = F.cross_entropy(conf[selected], conf_t[selected], reduction="sum") / n
    return {
        "matched": matched,
        "conf_t": conf_t,
        "loc_t": loc_t,
        "pos_mask": pos,
        "neg_mask": mined & ~pos,
        "decoded": decode(loc.detach(), priors, settings.variances),
        "loss_l": loss_l,
        "loss_c": loss_c,
    }
