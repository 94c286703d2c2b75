"""The SSD MultiBoxLoss (reference/spec/ssd.md, S2-S13) as two Triton kernels, float32.

Built in one execution mode (``INTERPRET``: interpreted on CPU, or compiled for CUDA) by
implementations/triton_loss.py's ``load``, with triton_common.py's decorators and helpers
(reductions, exp, log) of the same mode; triton_common.py says how. Imported directly, native.

Kernels, one program per image (grid (B,)), each looping over the priors BLOCK_P at a time:

``_match_kernel``   S2-S7 and S9's cross-entropy: IoU of the image's truths against the priors,
    best prior per truth (lowest index on ties), best truth per prior (lowest index on ties),
    forced matches (the later truth wins a shared prior, S4), threshold (S6), conf_t, loc_t
    (S7), decoded boxes (S8), each prior's cross-entropy logsumexp(row) - row[conf_t] with the
    row's own max (S9), the mining score (that cross-entropy, 0 at positives) and the image's
    positive count.
``_mine_loss_kernel``   S10-S12: num_neg = min(neg_pos * num_pos, P - 1); the num_neg-th highest
    mining score found by a radix select on the float32 bits, 4 bits per pass (scores are >= 0,
    so their bit patterns order like the values), equal scores at the cut taken lowest prior
    index first; then smooth-L1 and cross-entropy sums over the image divided by the batch's N,
    and the analytic gradients (S11), 0 everywhere when N = 0 (S12).

Every division that decides or feeds a compared value is ``div_rn`` (IEEE, not the approximate
``div.full`` of ``/`` on CUDA), exp and log are libdevice's on CUDA (``tl.exp`` there is
``ex2.approx``) and NumPy's in the interpreter; launches pass ``enable_fp_fusion=False`` so
CUDA does not contract a*b + c into FMAs the reference does not make.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from implementations.triton_loss import load

INTERPRET: bool = globals().get("INTERPRET", False)  # set by triton_loss.load before the code runs

common = load("triton_common", INTERPRET)  # this mode's copy; kernels call its helpers by these names
kernel, helper = common.kernel, common.helper
_sum, _max, _cumsum, _argmax = common.sum_, common.max_, common.cumsum, common.argmax
_exp, _log = common.exp, common.log


@helper
def _iou(tx0, ty0, tx1, ty1, t_ok, px0, py0, px1, py1, p_ok):
    """(BLOCK_T, BLOCK_P) IoU of corner truths (BLOCK_T,) against corner priors (BLOCK_P,),
    no +1, no epsilon (S2); -1 where a truth or a prior is padding."""
    iw = tl.minimum(tx1[:, None], px1[None, :]) - tl.maximum(tx0[:, None], px0[None, :])
    ih = tl.minimum(ty1[:, None], py1[None, :]) - tl.maximum(ty0[:, None], py0[None, :])
    inter = tl.maximum(iw, 0.0) * tl.maximum(ih, 0.0)
    area_t = (tx1 - tx0) * (ty1 - ty0)
    area_p = (px1 - px0) * (py1 - py0)
    iou = tl.math.div_rn(inter, area_t[:, None] + area_p[None, :] - inter)
    return tl.where(t_ok[:, None] & p_ok[None, :], iou, -1.0)


@kernel
def _match_kernel(
    priors_ptr,
    truths_ptr,
    labels_ptr,
    counts_ptr,
    loc_ptr,
    conf_ptr,
    matched_ptr,
    conf_t_ptr,
    loc_t_ptr,
    decoded_ptr,
    ce_ptr,
    score_ptr,
    num_pos_ptr,
    P,
    C,
    M,
    threshold,
    v0,
    v1,
    BLOCK_P: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """One image: matching (S3-S6), targets (S7), decode (S8), cross-entropy and mining score (S9).

    priors (P, 4) centre-size; truths (B, M, 4) corners, labels (B, M) int32, counts (B,) int32
    (rows >= count are padding); loc (B, P, 4), conf (B, P, C). Writes matched, conf_t (B, P)
    int64, loc_t, decoded (B, P, 4), ce, score (B, P) float32 and num_pos (B,) int32.
    """
    b = tl.program_id(0)
    n = tl.load(counts_ptr + b)
    t_idx = tl.arange(0, BLOCK_T)
    t_ok = t_idx < n
    truth = truths_ptr + (b * M + t_idx) * 4
    tx0 = tl.load(truth + 0, mask=t_ok, other=0.0)
    ty0 = tl.load(truth + 1, mask=t_ok, other=0.0)
    tx1 = tl.load(truth + 2, mask=t_ok, other=1.0)
    ty1 = tl.load(truth + 3, mask=t_ok, other=1.0)

    # S3: best prior of each truth over all priors, lowest index on ties
    best_iou = tl.full((BLOCK_T,), -2.0, tl.float32)
    best_prior = tl.full((BLOCK_T,), 0, tl.int32)
    for start in range(0, P, BLOCK_P):
        offs = start + tl.arange(0, BLOCK_P)
        p_ok = offs < P
        cx = tl.load(priors_ptr + offs * 4 + 0, mask=p_ok, other=0.5)
        cy = tl.load(priors_ptr + offs * 4 + 1, mask=p_ok, other=0.5)
        hw = tl.load(priors_ptr + offs * 4 + 2, mask=p_ok, other=1.0) * 0.5
        hh = tl.load(priors_ptr + offs * 4 + 3, mask=p_ok, other=1.0) * 0.5
        iou = _iou(tx0, ty0, tx1, ty1, t_ok, cx - hw, cy - hh, cx + hw, cy + hh, p_ok)
        chunk_best = _max(iou, 1)
        chunk_prior = _argmax(iou, tl.arange(0, BLOCK_P), 1) + start
        better = chunk_best > best_iou  # strict: an earlier chunk keeps a tie
        best_prior = tl.where(better, chunk_prior, best_prior)
        best_iou = tl.where(better, chunk_best, best_iou)

    num_pos = 0
    cls = tl.arange(0, BLOCK_C)
    c_ok = cls < C
    for start in range(0, P, BLOCK_P):
        offs = start + tl.arange(0, BLOCK_P)
        p_ok = offs < P
        cx = tl.load(priors_ptr + offs * 4 + 0, mask=p_ok, other=0.5)
        cy = tl.load(priors_ptr + offs * 4 + 1, mask=p_ok, other=0.5)
        w = tl.load(priors_ptr + offs * 4 + 2, mask=p_ok, other=1.0)
        h = tl.load(priors_ptr + offs * 4 + 3, mask=p_ok, other=1.0)
        hw = w * 0.5
        hh = h * 0.5
        iou = _iou(tx0, ty0, tx1, ty1, t_ok, cx - hw, cy - hh, cx + hw, cy + hh, p_ok)
        # S3 best truth per prior; S4 forced priors, the later truth winning a shared one
        best_truth = _argmax(iou, t_idx, 0)
        overlap = _max(iou, 0)
        hit = (best_prior[:, None] == offs[None, :]) & t_ok[:, None]
        forced = _max(tl.where(hit, t_idx[:, None], -1), 0)
        is_forced = forced >= 0
        matched = tl.where(is_forced, forced, best_truth)
        overlap = tl.where(is_forced, 2.0, overlap)
        has = (n + offs * 0) > 0  # a block: the interpreter mishandles a 0-d bool in & (triton 3.9)
        matched = tl.where(has, matched, -1)  # S13
        pos = (overlap >= threshold) & has & p_ok  # S6
        safe = tl.maximum(matched, 0)
        g_ok = p_ok & has
        g = truths_ptr + (b * M + safe) * 4
        gx0 = tl.load(g + 0, mask=g_ok, other=0.0)
        gy0 = tl.load(g + 1, mask=g_ok, other=0.0)
        gx1 = tl.load(g + 2, mask=g_ok, other=1.0)
        gy1 = tl.load(g + 3, mask=g_ok, other=1.0)
        label = tl.load(labels_ptr + b * M + safe, mask=g_ok, other=0)
        conf_t = tl.where(pos, label + 1, 0)
        row = b * P + offs
        tl.store(matched_ptr + row, matched, mask=p_ok)
        tl.store(conf_t_ptr + row, conf_t, mask=p_ok)
        # S7 encode, 0 at background priors as in the reference
        e0 = tl.math.div_rn((gx0 + gx1) * 0.5 - cx, v0 * w)
        e1 = tl.math.div_rn((gy0 + gy1) * 0.5 - cy, v0 * h)
        e2 = tl.math.div_rn(_log(tl.math.div_rn(gx1 - gx0, w)), v1)
        e3 = tl.math.div_rn(_log(tl.math.div_rn(gy1 - gy0, h)), v1)
        tl.store(loc_t_ptr + row * 4 + 0, tl.where(pos, e0, 0.0), mask=p_ok)
        tl.store(loc_t_ptr + row * 4 + 1, tl.where(pos, e1, 0.0), mask=p_ok)
        tl.store(loc_t_ptr + row * 4 + 2, tl.where(pos, e2, 0.0), mask=p_ok)
        tl.store(loc_t_ptr + row * 4 + 3, tl.where(pos, e3, 0.0), mask=p_ok)
        # S8 decode, corners (c - size / 2, c + size / 2)
        l0 = tl.load(loc_ptr + row * 4 + 0, mask=p_ok, other=0.0)
        l1 = tl.load(loc_ptr + row * 4 + 1, mask=p_ok, other=0.0)
        l2 = tl.load(loc_ptr + row * 4 + 2, mask=p_ok, other=0.0)
        l3 = tl.load(loc_ptr + row * 4 + 3, mask=p_ok, other=0.0)
        dcx = cx + l0 * v0 * w
        dcy = cy + l1 * v0 * h
        dhw = w * _exp(l2 * v1) * 0.5
        dhh = h * _exp(l3 * v1) * 0.5
        tl.store(decoded_ptr + row * 4 + 0, dcx - dhw, mask=p_ok)
        tl.store(decoded_ptr + row * 4 + 1, dcy - dhh, mask=p_ok)
        tl.store(decoded_ptr + row * 4 + 2, dcx + dhw, mask=p_ok)
        tl.store(decoded_ptr + row * 4 + 3, dcy + dhh, mask=p_ok)
        # S9 cross-entropy against conf_t, logsumexp with the row's own max
        tile_ok = p_ok[:, None] & c_ok[None, :]
        x = tl.load(conf_ptr + row[:, None] * C + cls[None, :], mask=tile_ok, other=float("-inf"))
        x = tl.where(p_ok[:, None], x, 0.0)  # padding rows: finite
        top = _max(x, 1)
        lse = top + _log(_sum(_exp(x - top[:, None]), 1))
        picked = _sum(tl.where(cls[None, :] == conf_t[:, None], x, 0.0), 1)
        ce = lse - picked
        tl.store(ce_ptr + row, ce, mask=p_ok)
        # S9 mining score: 0 at positives; >= 0 (lse >= the row's max >= any entry), max(., 0)
        # only turns a -0.0 into +0.0
        tl.store(score_ptr + row, tl.where(pos, 0.0, tl.maximum(ce, 0.0)), mask=p_ok)
        num_pos += _sum(pos.to(tl.int32), 0)
    tl.store(num_pos_ptr + b, num_pos)


@helper
def _score_bits(score_ptr, row, p_ok):
    """int32 bit patterns of the mining scores, -1 at padding. Scores are >= 0, so their
    patterns order like the values."""
    score = tl.load(score_ptr + row, mask=p_ok, other=0.0)
    return tl.where(p_ok, score.to(tl.int32, bitcast=True), -1)


@kernel
def _mine_loss_kernel(
    ce_ptr,
    score_ptr,
    conf_t_ptr,
    num_pos_ptr,
    loc_ptr,
    loc_t_ptr,
    conf_ptr,
    neg_ptr,
    grad_loc_ptr,
    grad_conf_ptr,
    loss_ptr,
    B,
    P,
    C,
    neg_pos,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """One image: hard negatives (S10), its share of loss_l and loss_c and their gradients (S11,
    S12). neg_pos is already min(neg_pos, P). Writes neg (B, P) int8, grad_loc (B, P, 4),
    grad_conf (B, P, C) and loss (B, 2) = (smooth-L1 sum, cross-entropy sum) / N.
    """
    b = tl.program_id(0)
    images = tl.arange(0, BLOCK_B)
    n_total = _sum(tl.load(num_pos_ptr + images, mask=images < B, other=0), 0)
    n = tl.maximum(n_total, 1).to(tl.float32)  # S12: with N = 0 every mask below is empty
    num_pos = tl.load(num_pos_ptr + b)
    num_neg = tl.minimum(num_pos.to(tl.int64) * neg_pos, P - 1).to(tl.int32)

    # The num_neg-th highest score, as a bit pattern: the largest t with at least num_neg scores
    # >= t, fixed 4 bits per pass from the top (a radix select, 16 candidates at a time; counts
    # fall as t rises). int64, so that candidates beyond the sign bit stay positive (no score
    # reaches them). With num_neg = 0 the cut is meaningless and nothing is mined.
    digits = tl.arange(0, 16).to(tl.int64)
    cut = tl.full((), 0, tl.int64)
    for shift in tl.static_range(28, -1, -4):
        candidates = cut | (digits << shift)
        count = tl.full((16,), 0, tl.int32)
        for start in range(0, P, BLOCK_S):
            offs = start + tl.arange(0, BLOCK_S)
            bits = _score_bits(score_ptr, b * P + offs, offs < P).to(tl.int64)
            count += _sum((bits[:, None] >= candidates[None, :]).to(tl.int32), 0)
        cut = cut | ((_sum((count >= num_neg).to(tl.int64), 0) - 1) << shift)
    above = 0
    for start in range(0, P, BLOCK_S):
        offs = start + tl.arange(0, BLOCK_S)
        bits = _score_bits(score_ptr, b * P + offs, offs < P)
        above += _sum((bits > cut).to(tl.int32), 0)
    room = num_neg - above  # how many of the scores equal to the cut are mined

    seen = 0  # scores equal to the cut in earlier chunks
    sum_l = 0.0
    sum_c = 0.0
    cls = tl.arange(0, BLOCK_C)
    c_ok = cls < C
    coord = tl.arange(0, 4)
    for start in range(0, P, BLOCK_P):
        offs = start + tl.arange(0, BLOCK_P)
        p_ok = offs < P
        row = b * P + offs
        bits = _score_bits(score_ptr, row, p_ok)
        at_cut = (bits == cut) & p_ok
        rank = seen + _cumsum(at_cut.to(tl.int32), 0)
        mined = ((bits > cut) | (at_cut & (rank <= room))) & ((num_neg + offs * 0) > 0)
        seen += _sum(at_cut.to(tl.int32), 0)
        conf_t = tl.load(conf_t_ptr + row, mask=p_ok, other=0).to(tl.int32)
        pos = (conf_t > 0) & p_ok
        neg = mined & ~pos
        selected = pos | neg
        tl.store(neg_ptr + row, neg.to(tl.int8), mask=p_ok)
        # S11 cross-entropy over pos | neg; d/d conf = (softmax - onehot) / N there
        ce = tl.load(ce_ptr + row, mask=p_ok, other=0.0)
        sum_c += _sum(tl.where(selected, ce, 0.0), 0)
        tile_ok = p_ok[:, None] & c_ok[None, :]
        x = tl.load(conf_ptr + row[:, None] * C + cls[None, :], mask=tile_ok, other=float("-inf"))
        x = tl.where(p_ok[:, None], x, 0.0)
        e = _exp(x - _max(x, 1)[:, None])
        softmax = tl.math.div_rn(e, _sum(e, 1)[:, None])
        onehot = tl.where(cls[None, :] == conf_t[:, None], 1.0, 0.0)
        g_conf = tl.where(selected[:, None], tl.math.div_rn(softmax - onehot, n), 0.0)
        tl.store(grad_conf_ptr + row[:, None] * C + cls[None, :], g_conf, mask=tile_ok)
        # S11 smooth-L1 over positives; d/d loc = (d if |d| < 1 else sign d) / N there
        box_ok = p_ok[:, None] & (coord[None, :] < 4)
        at = row[:, None] * 4 + coord[None, :]
        d = tl.load(loc_ptr + at, mask=box_ok, other=0.0) - tl.load(loc_t_ptr + at, mask=box_ok, other=0.0)
        ad = tl.abs(d)
        small = ad < 1.0
        sl1 = tl.where(small, 0.5 * d * d, ad - 0.5)
        sum_l += _sum(_sum(tl.where(pos[:, None], sl1, 0.0), 1), 0)
        step = tl.where(small, d, tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0)))
        g_loc = tl.where(pos[:, None], tl.math.div_rn(step, n), 0.0)
        tl.store(grad_loc_ptr + at, g_loc, mask=box_ok)
    tl.store(loss_ptr + b * 2 + 0, tl.math.div_rn(sum_l, n))
    tl.store(loss_ptr + b * 2 + 1, tl.math.div_rn(sum_c, n))


def _blocks(num_priors: int, num_truths: int, num_classes: int) -> dict:
    """BLOCK_P (priors per chunk of the 2-D passes), BLOCK_T, BLOCK_C, BLOCK_S (priors per
    chunk of the 1-D mining passes). Interpreted: few, large blocks, as the interpreter runs
    NumPy once per operation and block: 2-D tiles up to 2**20 elements (triton's limit; SSD300
    with 81 classes takes two chunks), every prior in one 1-D block. CUDA: tiles of about 4096
    elements, which fit in registers."""
    block_t = triton.next_power_of_2(max(num_truths, 1))
    block_c = triton.next_power_of_2(num_classes)
    all_priors = triton.next_power_of_2(num_priors)
    budget = 2**20 if INTERPRET else 4096
    return {
        "BLOCK_P": min(all_priors, max(16, budget // max(block_t, block_c))),
        "BLOCK_T": block_t,
        "BLOCK_C": block_c,
        "BLOCK_S": min(all_priors, 2**16 if INTERPRET else 256),  # (BLOCK_S, 16) radix tiles
    }


def multibox_loss(
    loc: torch.Tensor,
    conf: torch.Tensor,
    priors: torch.Tensor,
    truths: torch.Tensor,
    labels: torch.Tensor,
    counts: torch.Tensor,
    threshold: float,
    neg_pos: int,
    variances: tuple,
) -> dict:
    """Every SSD key of implementations/adapter.py as tensors on loc's device (S2-S13).

    loc (B, P, 4), conf (B, P, C), priors (P, 4) centre-size, truths (B, M, 4) corners padded
    with any finite box, labels (B, M) int32, counts (B,) int32 truths per image; float32,
    contiguous, one device (CPU tensors in interpreted mode). Returns matched, conf_t (B, P)
    int64, loc_t, decoded, grad_loc (B, P, 4), grad_conf (B, P, C) float32, pos_mask, neg_mask
    (B, P) bool, loss_l, loss_c 0-d float32.
    """
    batch, num_priors, num_classes = conf.shape
    num_truths = truths.shape[1]
    dev = loc.device
    out = {
        "matched": torch.empty((batch, num_priors), dtype=torch.int64, device=dev),
        "conf_t": torch.empty((batch, num_priors), dtype=torch.int64, device=dev),
        "loc_t": torch.empty_like(loc),
        "decoded": torch.empty_like(loc),
        "grad_loc": torch.empty_like(loc),
        "grad_conf": torch.empty_like(conf),
    }
    ce = torch.empty((batch, num_priors), dtype=torch.float32, device=dev)
    score = torch.empty((batch, num_priors), dtype=torch.float32, device=dev)
    num_pos = torch.zeros(batch, dtype=torch.int32, device=dev)
    neg = torch.zeros((batch, num_priors), dtype=torch.int8, device=dev)
    loss = torch.zeros((batch, 2), dtype=torch.float32, device=dev)
    blocks = _blocks(num_priors, num_truths, num_classes)
    if batch > 0:
        _match_kernel[(batch,)](
            priors,
            truths,
            labels,
            counts,
            loc,
            conf,
            out["matched"],
            out["conf_t"],
            out["loc_t"],
            out["decoded"],
            ce,
            score,
            num_pos,
            num_priors,
            num_classes,
            num_truths,
            float(threshold),
            float(variances[0]),
            float(variances[1]),
            BLOCK_P=blocks["BLOCK_P"],
            BLOCK_T=blocks["BLOCK_T"],
            BLOCK_C=blocks["BLOCK_C"],
            enable_fp_fusion=False,
        )
        _mine_loss_kernel[(batch,)](
            ce,
            score,
            out["conf_t"],
            num_pos,
            loc,
            out["loc_t"],
            conf,
            neg,
            out["grad_loc"],
            out["grad_conf"],
            loss,
            batch,
            num_priors,
            num_classes,
            min(int(neg_pos), num_priors),
            BLOCK_P=blocks["BLOCK_P"],
            BLOCK_C=blocks["BLOCK_C"],
            BLOCK_B=triton.next_power_of_2(batch),
            BLOCK_S=blocks["BLOCK_S"],
            enable_fp_fusion=False,
        )
    out["pos_mask"] = out["conf_t"] > 0
    out["neg_mask"] = neg.bool()
    out["loss_l"], out["loss_c"] = loss.sum(dim=0).unbind()  # B per-image shares, already / N
    return out
