"""An outsider's torch port of ssd.pytorch's MultiBoxLoss (match, encode, hard negative mining).

Written from the seed (shared/seeds/003_…) for torch 2.13, made to follow the spec
(reference/spec/ssd.md) only where it departs from the seed on purpose: the mining score
uses each row's own logsumexp (S9), ``loss_c`` is reshaped to (B, P) before positives are
zeroed (S10, the community fix), N = 0 gives zero losses (S12), images without truths
have no positives and no negatives (S13), float64 works. Everything else is the seed's:
``torch.max`` for matching (first index on ties), the forced-matching loop, the seed's
encode, sort/rank mining, smooth L1 and cross-entropy summed and divided by N, autograd
for the gradient. Like the seed, it keeps the match indices to itself unless asked.

``SsdFlags`` switches single rules to another behaviour: the zoo's mutants and variants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SsdFlags:
    """One behaviour per rule; the defaults are the spec-conforming seed port."""

    iou_plus_one: bool = False  # S2: True adds the pixel +1 to widths and heights
    ties: str = "first"  # S3: "last": argmax takes the last tied prior / truth
    best_prior: str = "iou"  # S3: "centre": each truth's best prior is the one with the nearest centre
    forced: str = "loop"  # S4: "loop" (later truth wins), "earlier_wins", "none", "scatter" (amax)
    threshold_op: str = "<"  # S6: background where overlap < threshold; "<=" also at equality
    encode: str = "divide"  # S7: "reciprocal" multiplies by 1/(v0·w); "swapped" swaps v0 and v1
    decode_xmax: str = "xmin_plus_w"  # S8: upstream decode; "cx_plus_w" forms xmax = cx + w
    logsumexp: str = "row"  # S9: "global": the seed's log_sum_exp with one max over the batch
    mining: str = "sort"  # S10: "sort" (sort, then rank) or "topk"
    num_neg: str = "image"  # S10: "batch": neg_pos × the batch's positives (capped at P − 1) per image
    zero_pos_scores: bool = True  # S10: False ranks positives by their own cross-entropy
    neg_mask_excludes_pos: bool = True  # S10: False returns the mined set, positives included
    neg_pos: int | None = None  # S10: a constant instead of settings.neg_pos
    normaliser: str = "positives"  # S11: "selected": divide by the positives and negatives
    beta: float = 1.0  # S11: smooth-L1 beta
    empty: str = "zero"  # S12: "nan": divide by N = 0 as the seed does
    empty_image_negatives: bool = False  # S13: True mines neg_pos negatives in images without truths
    empty_image: str = "skip"  # S13: "match": match against no truth, as the seed does (its max() fails)
    conf_dtype: str | None = None  # numerics: "float16" stores conf in float16 before the loss
    clamp_inputs_in_place: float | None = None  # writes clip(conf, ±value) into the caller's array
    return_matched: bool = False  # the seed keeps its match indices internal


def point_form(priors: torch.Tensor) -> torch.Tensor:
    """(P, 4) centre-size -> corners."""
    return torch.cat((priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2), 1)


def jaccard(a: torch.Tensor, b: torch.Tensor, plus_one: bool = False) -> torch.Tensor:
    """(n, P) IoU of corner boxes a (n, 4) and b (P, 4)."""
    one = 1.0 if plus_one else 0.0
    max_xy = torch.min(a[:, None, 2:], b[None, :, 2:])
    min_xy = torch.max(a[:, None, :2], b[None, :, :2])
    inter = torch.clamp(max_xy - min_xy + one, min=0)
    inter = inter[:, :, 0] * inter[:, :, 1]
    area_a = ((a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one))[:, None]
    area_b = ((b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one))[None, :]
    return inter / (area_a + area_b - inter)


def _max(x: torch.Tensor, dim: int, ties: str):
    """(values, indices) of the maximum along ``dim``: torch's first index, or the last one."""
    if ties == "last":
        v, i = x.flip(dim).max(dim)
        return v, x.shape[dim] - 1 - i
    return x.max(dim)


def encode(matched: torch.Tensor, priors: torch.Tensor, variances, how: str = "divide") -> torch.Tensor:
    """(P, 4) offsets of corner boxes ``matched`` against centre-size ``priors`` (the seed's encode)."""
    v0, v1 = (variances[1], variances[0]) if how == "swapped" else variances
    g_cxcy = (matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]
    if how == "reciprocal":
        g_cxcy = g_cxcy * (1 / (v0 * priors[:, 2:]))
    else:
        g_cxcy = g_cxcy / (v0 * priors[:, 2:])
    g_wh = (matched[:, 2:] - matched[:, :2]) / priors[:, 2:]
    g_wh = torch.log(g_wh) / v1
    return torch.cat([g_cxcy, g_wh], 1)


def decode(loc: torch.Tensor, priors: torch.Tensor, variances, how: str = "xmin_plus_w") -> torch.Tensor:
    """(…, P, 4) corner boxes from offsets ``loc`` (upstream's decode: xmax = xmin + w)."""
    v0, v1 = variances
    centre = priors[:, :2] + loc[..., :2] * v0 * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[..., 2:] * v1)
    if how == "cx_plus_w":
        return torch.cat((centre - size / 2, centre + size), -1)
    lo = centre - size / 2
    return torch.cat((lo, lo + size), -1)


def match(threshold, truths, priors, variances, labels, flags: SsdFlags):
    """One image: (loc (P, 4), conf (P,) int64, best_truth_idx (P,) int64), the seed's match."""
    overlaps = jaccard(truths, point_form(priors), flags.iou_plus_one)
    best_prior_overlap, best_prior_idx = _max(overlaps, 1, flags.ties)
    if flags.best_prior == "centre":
        centres = (truths[:, None, :2] + truths[:, None, 2:]) / 2 - priors[None, :, :2]
        best_prior_idx = (centres**2).sum(-1).min(1).indices
    best_truth_overlap, best_truth_idx = _max(overlaps, 0, flags.ties)
    if flags.forced != "none":
        best_truth_overlap.index_fill_(0, best_prior_idx, 2)
    if flags.forced == "loop":
        for j in range(best_prior_idx.size(0)):
            best_truth_idx[best_prior_idx[j]] = j
    elif flags.forced == "earlier_wins":
        for j in reversed(range(best_prior_idx.size(0))):
            best_truth_idx[best_prior_idx[j]] = j
    elif flags.forced == "scatter":
        best_truth_idx.scatter_reduce_(0, best_prior_idx, torch.arange(len(best_prior_idx)), "amax", include_self=False)
    matches = truths[best_truth_idx]
    conf = labels[best_truth_idx] + 1
    if flags.threshold_op == "<=":
        conf[best_truth_overlap <= threshold] = 0
    else:
        conf[best_truth_overlap < threshold] = 0
    return encode(matches, priors, variances, flags.encode), conf, best_truth_idx


def _hard_negatives(score: torch.Tensor, num_neg: torch.Tensor, how: str) -> torch.Tensor:
    """(B, P) bool: the num_neg[b] highest scores of each row."""
    if how == "topk":
        k = int(num_neg.max()) if num_neg.numel() else 0
        neg = torch.zeros_like(score, dtype=torch.bool)
        if k:
            idx = score.topk(k, dim=1).indices
            neg.scatter_(1, idx, torch.arange(k)[None, :] < num_neg)
        return neg
    _, loss_idx = score.sort(1, descending=True)
    _, idx_rank = loss_idx.sort(1)
    return idx_rank < num_neg.expand_as(idx_rank)


def multibox_loss(case, dtype: str, flags: SsdFlags = SsdFlags()) -> dict:
    """Adapter keys (implementations/adapter.py) for an SsdCase, as NumPy arrays in ``dtype``."""
    if flags.clamp_inputs_in_place is not None:
        np.clip(case.conf, -flags.clamp_inputs_in_place, flags.clamp_inputs_in_place, out=case.conf)
    dt = getattr(torch, dtype)
    loc_data = torch.tensor(np.asarray(case.loc), dtype=dt, requires_grad=True)
    conf_in = torch.tensor(np.asarray(case.conf), dtype=dt, requires_grad=True)
    conf_data = conf_in.to(getattr(torch, flags.conf_dtype)).to(dt) if flags.conf_dtype else conf_in
    priors = torch.tensor(np.asarray(case.priors), dtype=dt)
    num, num_priors, num_classes = conf_data.shape
    variances = tuple(case.settings.variances)
    loc_t = torch.zeros(num, num_priors, 4, dtype=dt)
    conf_t = torch.zeros(num, num_priors, dtype=torch.long)
    matched = torch.full((num, num_priors), -1, dtype=torch.long)
    for idx in range(num):
        target = torch.tensor(np.asarray(case.truths[idx]), dtype=dt).reshape(-1, 5)
        if len(target) == 0 and flags.empty_image == "skip":  # S13: no positives, no match
            continue
        loc, conf, best_truth_idx = match(
            case.settings.threshold, target[:, :-1], priors, variances, target[:, -1].long(), flags
        )
        loc_t[idx], conf_t[idx], matched[idx] = loc, conf, best_truth_idx
    pos = conf_t > 0
    num_pos = pos.long().sum(1, keepdim=True)

    # Localization loss (smooth L1) over the positives.
    pos_idx = pos.unsqueeze(pos.dim()).expand_as(loc_data)
    loss_l = F.smooth_l1_loss(
        loc_data[pos_idx].view(-1, 4), loc_t[pos_idx].view(-1, 4), reduction="sum", beta=flags.beta
    )

    # Hard negative mining on the cross-entropy of each prior.
    batch_conf = conf_data.detach().view(-1, num_classes)
    if flags.logsumexp == "global":
        x_max = batch_conf.max()
        lse = torch.log(torch.sum(torch.exp(batch_conf - x_max), 1, keepdim=True)) + x_max
    else:
        lse = torch.logsumexp(batch_conf, 1, keepdim=True)
    score = (lse - batch_conf.gather(1, conf_t.view(-1, 1))).view(num, -1)
    if flags.zero_pos_scores:
        score[pos] = 0
    neg_pos = case.settings.neg_pos if flags.neg_pos is None else flags.neg_pos
    if flags.num_neg == "batch":
        num_neg = torch.clamp(neg_pos * num_pos.sum(0, keepdim=True), max=num_priors - 1).expand_as(num_pos)
    else:
        num_neg = torch.clamp(neg_pos * num_pos, max=num_priors - 1)
    if flags.empty_image_negatives:
        num_neg = torch.where(num_pos == 0, min(neg_pos, num_priors - 1), num_neg)
    neg = _hard_negatives(score, num_neg, flags.mining)

    # Confidence loss over positives and hard negatives.
    selected = pos | neg
    loss_c = F.cross_entropy(conf_data[selected].view(-1, num_classes), conf_t[selected], reduction="sum")

    n = num_pos.sum()
    if flags.normaliser == "selected":
        n = selected.sum()
    if flags.empty == "zero":
        n = n.clamp(min=1)  # S12: 0 / 0 is read as 0 (both sums are empty when N = 0)
    loss_l = loss_l / n
    loss_c = loss_c / n
    (loss_l + loss_c).backward()
    out = {
        "conf_t": conf_t,
        "loc_t": loc_t,
        "pos_mask": pos,
        "neg_mask": neg & ~pos if flags.neg_mask_excludes_pos else neg,
        "decoded": decode(loc_data.detach(), priors, variances, flags.decode_xmax),
        "loss_l": loss_l.detach(),
        "loss_c": loss_c.detach(),
        "grad_loc": loc_data.grad,
        "grad_conf": conf_in.grad,
    }
    if flags.return_matched:
        out["matched"] = matched
    return {k: v.numpy() for k, v in out.items()}
