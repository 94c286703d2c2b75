"""Float64 NumPy reference of the SSD MultiBoxLoss (spec rules S2-S14, reference/spec/ssd.md).

Shapes: B images, P priors, C classes (class 0 is background), n truths in one image.
Boxes are normalised to [0, 1]; corners are (xmin, ymin, xmax, ymax), centre-size is
(cx, cy, w, h). Every float is float64, every index int64: ``evaluate`` casts the case's
arrays (float16, float32, int, nested lists) to float64 at entry, as the YOLO reference does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from reference.cases import SsdCase, SsdSettings
from reference.errors import (
    CoordinateError,
    InvalidInputError,
    LabelError,
    SettingError,
    ShapeError,
    real_array,
    real_number,
)

# ---------------------------------------------------------------- boxes (S2, S7, S8)


def point_form(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) centre-size -> (..., 4) corners: (cx - w/2, cy - h/2, cx + w/2, cy + h/2)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    half = boxes[..., 2:] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def center_size(corners: np.ndarray) -> np.ndarray:
    """(..., 4) corners -> (..., 4) centre-size: ((x0 + x1)/2, (y0 + y1)/2, x1 - x0, y1 - y0)."""
    corners = np.asarray(corners, dtype=np.float64)
    return np.concatenate([(corners[..., :2] + corners[..., 2:]) / 2, corners[..., 2:] - corners[..., :2]], axis=-1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, P) Jaccard overlap of corner boxes a (n, 4) and b (P, 4); no +1, no epsilon (S2)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def encode(matched: np.ndarray, priors: np.ndarray, variances) -> np.ndarray:
    """(P, 4) regression targets of corner boxes ``matched`` (P, 4) against centre-size priors (S7).

    ((cx_g - cx_p) / (v0 w_p), (cy_g - cy_p) / (v0 h_p), log(w_g / w_p) / v1, log(h_g / h_p) / v1).
    """
    g_cxcy = (matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]
    g_cxcy = g_cxcy / (variances[0] * priors[:, 2:])
    g_wh = (matched[:, 2:] - matched[:, :2]) / priors[:, 2:]
    return np.concatenate([g_cxcy, np.log(g_wh) / variances[1]], axis=1)


def decode(loc: np.ndarray, priors: np.ndarray, variances) -> np.ndarray:
    """(..., P, 4) offsets -> (..., P, 4) corner boxes (S8).

    centre = prior centre + l[:2] * v0 * prior size; size = prior size * exp(l[2:] * v1).
    Computed for x, then y, on (..., P) columns: NumPy is slow on a last axis of length 2.
    """
    loc = np.asarray(loc, dtype=np.float64)
    corners = np.empty(loc.shape)
    for k in (0, 1):
        centre = priors[:, k] + loc[..., k] * variances[0] * priors[:, k + 2]
        half = priors[:, k + 2] * np.exp(loc[..., k + 2] * variances[1])
        half /= 2
        np.subtract(centre, half, out=corners[..., k])
        np.add(centre, half, out=corners[..., k + 2])
    return corners


# ---------------------------------------------------------------- matching (S3-S6, S13)


@dataclass
class Match:
    """Matching of one image's n truths against P priors.

    overlaps (n, P) IoU; best_prior (n,) int64 forced prior of each truth and
    best_prior_margin (n,) best minus runner-up IoU over priors (inf when P = 1);
    best_truth (P,) int64 argmax over truths before forcing (-1 when n = 0) and
    best_truth_margin (P,) best minus runner-up over truths (inf when n <= 1);
    matched (P,) int64 truth per prior after forcing (-1 everywhere when n = 0);
    overlap (P,) float64 after forcing (2.0 at forced priors, 0 when n = 0);
    threshold_margin (P,) |overlap - threshold| (inf at forced priors).
    """

    overlaps: np.ndarray
    best_prior: np.ndarray
    best_prior_margin: np.ndarray
    best_truth: np.ndarray
    best_truth_margin: np.ndarray
    matched: np.ndarray
    overlap: np.ndarray
    threshold_margin: np.ndarray


def _top_two_gap(x: np.ndarray, axis: int) -> np.ndarray:
    """Largest minus second largest of x along axis (inf where that axis has fewer than 2).

    The runner-up is the largest value left after removing one copy of the largest (found by
    argmax), so a tie for the top gives 0. Along a short axis this is many times faster than
    np.partition, which sorts each of the P columns of an (n, P) array separately.
    """
    size = x.shape[axis]
    if size < 2:
        return np.full(np.delete(x.shape, axis), np.inf)
    first = np.expand_dims(x.argmax(axis=axis), axis)
    top = np.take_along_axis(x, first, axis=axis)
    rest = x.copy()
    np.put_along_axis(rest, first, -np.inf, axis=axis)
    return np.squeeze(top - rest.max(axis=axis, keepdims=True), axis=axis)


def match(truths: np.ndarray, priors: np.ndarray, threshold: float, best_prior: np.ndarray | None = None) -> Match:
    """Match one image's truths (n, 5) to centre-size priors (P, 4) (S3-S6, S13).

    ``best_prior`` (n,) int, if given, replaces the argmax as each truth's forced prior.
    Forcing: prior best_prior[j] gets truth j, the highest j winning a shared prior (S4).
    """
    return _match_corners(truths, point_form(priors), threshold, best_prior)


def _match_corners(
    truths: np.ndarray, prior_corners: np.ndarray, threshold: float, best_prior: np.ndarray | None, margins: bool = True
) -> Match:
    """``match`` with the priors already in corner form (P, 4), converted once per batch.

    margins=False leaves best_prior_margin and best_truth_margin None: ``evaluate`` reads
    only matched and overlap, and the two top-two gaps are a quarter of the matching time.
    """
    truths = np.asarray(truths, dtype=np.float64).reshape(-1, 5)
    n, num_priors = len(truths), len(prior_corners)
    overlaps = iou(truths[:, :4], prior_corners)
    if n == 0:
        matched = np.full(num_priors, -1, dtype=np.int64)
        overlap = np.zeros(num_priors)
        return Match(
            overlaps,
            np.zeros(0, np.int64),
            np.zeros(0),
            matched.copy(),
            np.full(num_priors, np.inf),
            matched,
            overlap,
            np.abs(overlap - threshold),
        )
    argmax_prior = overlaps.argmax(axis=1)
    best_prior = argmax_prior if best_prior is None else np.asarray(best_prior, dtype=np.int64)
    best_truth = overlaps.argmax(axis=0)
    overlap = overlaps[best_truth, np.arange(num_priors)]
    forced = np.full(num_priors, -1, dtype=np.int64)
    np.maximum.at(forced, best_prior, np.arange(n, dtype=np.int64))  # later truth wins
    is_forced = forced >= 0
    matched = np.where(is_forced, forced, best_truth)
    overlap = np.where(is_forced, 2.0, overlap)
    threshold_margin = np.where(is_forced, np.inf, np.abs(overlap - threshold))
    prior_gap = truth_gap = None
    if margins:
        prior_gap, truth_gap = _top_two_gap(overlaps, 1), _top_two_gap(overlaps, 0)
    return Match(
        overlaps,
        best_prior.astype(np.int64),
        prior_gap,
        best_truth.astype(np.int64),
        truth_gap,
        matched.astype(np.int64),
        overlap,
        threshold_margin,
    )


def targets(case: SsdCase, matches: list) -> dict:
    """Per-prior targets of the batch from one Match per image (S6, S7).

    Returns matched (B, P) int64, conf_t (B, P) int64 (0 background, label + 1),
    loc_t (B, P, 4) float64 (0 at background priors), pos_mask (B, P) bool.
    """
    priors, threshold = case.priors, case.settings.threshold
    matched = (
        np.zeros((0, len(priors)), np.int64)
        if len(matches) == 0
        else np.stack([m.matched for m in matches]).astype(np.int64)
    )
    conf_t = np.zeros(matched.shape, dtype=np.int64)
    loc_t = np.zeros(matched.shape + (4,))
    for b, (truth, m) in enumerate(zip(case.truths, matches)):
        pos = (m.matched >= 0) & (m.overlap >= threshold)
        idx = np.nonzero(pos)[0]
        if idx.size == 0:
            continue
        rows = np.asarray(truth, dtype=np.float64).reshape(-1, 5)[m.matched[idx]]
        conf_t[b, idx] = rows[:, 4].astype(np.int64) + 1
        loc_t[b, idx] = encode(rows[:, :4], priors[idx], case.settings.variances)
    return {"matched": matched, "conf_t": conf_t, "loc_t": loc_t, "pos_mask": conf_t > 0}


# ---------------------------------------------------------------- mining (S9, S10)


def _pick(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(N,) rows[i, cols[i]] of a C-contiguous (N, C) array, by flat index (np.take is several
    times faster than take_along_axis here)."""
    return np.take(rows.reshape(-1), np.arange(len(rows)) * rows.shape[1] + cols)


def _logsumexp(conf: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(N, C) -> (N,) logsumexp of each row, shifted by the row's own max.

    ``out`` (N, C) float64 holds the shifted exponentials (a new array if None). The max is
    read at the argmax: along a short last axis NumPy's argmax is several times faster than
    max, and it is the same value.
    """
    conf = np.ascontiguousarray(conf, dtype=np.float64)
    top = _pick(conf, conf.argmax(axis=1))
    shifted = np.subtract(conf, top[:, None], out=out)
    np.exp(shifted, out=shifted)
    return top + np.log(shifted.sum(axis=1))


_MINING_ROWS = 2048  # priors per block of mining_score: the (rows, C) temporary stays in cache


def mining_score(conf: np.ndarray, conf_t: np.ndarray) -> np.ndarray:
    """(B, P) cross-entropy of each prior against its target class; 0 at positives (S9).

    conf (B, P, C) logits, conf_t (B, P) int64. Scores are >= 0. Computed _MINING_ROWS
    priors at a time, reusing one temporary for the shifted exponentials.
    """
    conf = np.ascontiguousarray(conf, dtype=np.float64)
    logits = conf.reshape(-1, conf.shape[-1])
    target = np.asarray(conf_t).reshape(-1)
    score = np.empty(len(logits))
    shifted = np.empty((min(_MINING_ROWS, len(logits)), conf.shape[-1]))
    for start in range(0, len(logits), _MINING_ROWS):
        rows = slice(start, start + _MINING_ROWS)
        block = logits[rows]
        score[rows] = _logsumexp(block, out=shifted[: len(block)]) - _pick(block, target[rows])
    score = score.reshape(conf.shape[:-1])
    score[conf_t > 0] = 0.0
    return score


@dataclass
class Mining:
    """Hard negative mining of a batch (S10).

    score (B, P) mining score; num_neg (B,) int64 = min(neg_pos * num_pos, P - 1);
    cut (B,) the num_neg-th highest score of the image (+inf when num_neg = 0);
    neg_mask (B, P) bool mined and not positive; margin (B, P) |score - cut|.
    """

    score: np.ndarray
    num_neg: np.ndarray
    cut: np.ndarray
    neg_mask: np.ndarray
    margin: np.ndarray


def hard_negative_mask(score: np.ndarray, pos_mask: np.ndarray, neg_pos: int) -> Mining:
    """Mine the num_neg highest scores per image, lowest prior index first among equals (S10).

    That is the first num_neg priors of a stable argsort by descending score, found from a
    plain sort of the values (many times faster): the cut is the num_neg-th highest score;
    every score above it is mined, and of the scores equal to it the lowest-indexed ones, as
    many as num_neg leaves room for.
    """
    batch, num_priors = score.shape
    num_pos = pos_mask.sum(axis=1).astype(np.int64)
    num_neg = np.minimum(min(int(neg_pos), num_priors) * num_pos, num_priors - 1)  # no overflow
    cut = np.full(batch, np.inf)
    has = num_neg > 0
    ascending = np.sort(score[has], axis=1)
    cut[has] = ascending[np.arange(len(ascending)), num_priors - num_neg[has]]  # num_neg-th highest
    above = score > cut[:, None]
    at_cut = score == cut[:, None]
    room = num_neg - above.sum(axis=1)
    mined = above | (at_cut & (np.cumsum(at_cut, axis=1) <= room[:, None]))
    margin = np.abs(score - cut[:, None])
    return Mining(score, num_neg, cut, mined & ~pos_mask, margin)


# ---------------------------------------------------------------- loss (S11, S12)


def multibox_loss(
    loc: np.ndarray, conf: np.ndarray, loc_t: np.ndarray, conf_t: np.ndarray, pos_mask: np.ndarray, neg_mask: np.ndarray
) -> dict:
    """loss_l, loss_c (0-d float64) and their analytic gradients (S11, S12).

    loc (B, P, 4), conf (B, P, C), loc_t (B, P, 4), conf_t (B, P) int, masks (B, P) bool.
    loss_l = sum of smooth-L1 (beta 1) over positives / N; loss_c = sum of cross-entropy over
    pos | neg / N; N = number of positives; N = 0 gives zeros. grad_loc (B, P, 4) and
    grad_conf (B, P, C) are d(loss_l + loss_c) / d loc and / d conf.
    """
    loc, conf = np.asarray(loc, dtype=np.float64), np.asarray(conf, dtype=np.float64)
    loc_t = np.asarray(loc_t, dtype=np.float64)
    grad_loc = np.zeros(loc.shape)
    grad_conf = np.zeros(conf.shape)
    count = int(pos_mask.sum())
    if count == 0:
        return {"loss_l": np.float64(0.0), "loss_c": np.float64(0.0), "grad_loc": grad_loc, "grad_conf": grad_conf}
    diff = loc[pos_mask] - loc_t[pos_mask]
    small = np.abs(diff) < 1.0
    loss_l = np.where(small, 0.5 * diff * diff, np.abs(diff) - 0.5).sum() / count
    grad_loc[pos_mask] = np.where(small, diff, np.sign(diff)) / count
    selected = pos_mask | neg_mask
    logits = conf[selected]
    target = conf_t[selected]
    top = logits.max(axis=1, keepdims=True)
    exp = np.exp(logits - top)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(logits))
    log_prob = logits[rows, target] - top[:, 0] - np.log(total[:, 0])
    loss_c = -log_prob.sum() / count
    softmax = exp / total
    softmax[rows, target] -= 1.0
    grad_conf[selected] = softmax / count
    return {"loss_l": np.float64(loss_l), "loss_c": np.float64(loss_c), "grad_loc": grad_loc, "grad_conf": grad_conf}


# ---------------------------------------------------------------- validation (S14)


def _first_bad(mask: np.ndarray):
    """Index tuple (or int for 1-D) of the first True in mask, or None."""
    flat = np.flatnonzero(mask)
    if flat.size == 0:
        return None
    idx = np.unravel_index(flat[0], mask.shape)
    return int(idx[0]) if len(idx) == 1 else tuple(int(i) for i in idx)


def _check_finite(name: str, a: np.ndarray, error=CoordinateError) -> None:
    bad = _first_bad(~np.isfinite(a))
    if bad is not None:
        raise error(name, bad, float(a[bad]), "not finite")


def _settings(s) -> SsdSettings:
    """``s`` with Python numbers: threshold float, neg_pos int, variances (float, float).

    Raises SettingError for settings that are not SsdSettings, values that are not real
    numbers (None, str, bool), neg_pos that is not a whole number >= 0 (NaN, inf, 1.5, -1),
    threshold outside (0, 1] and variances that are not 2 finite values > 0.
    """
    if not isinstance(s, SsdSettings):
        raise SettingError("settings", None, s, "must be an SsdSettings")
    threshold = real_number("settings.threshold", s.threshold)
    if not (np.isfinite(threshold) and 0.0 < threshold <= 1.0):
        raise SettingError("settings.threshold", None, s.threshold, "must lie in (0, 1]")
    neg_pos = real_number("settings.neg_pos", s.neg_pos)
    if not (np.isfinite(neg_pos) and neg_pos == np.floor(neg_pos) and neg_pos >= 0):
        raise SettingError("settings.neg_pos", None, s.neg_pos, "must be an integer >= 0")
    given = s.variances
    if not (isinstance(given, (tuple, list)) or (isinstance(given, np.ndarray) and given.ndim == 1)) or len(given) != 2:
        raise SettingError("settings.variances", None, given, "must hold 2 values")
    variances = tuple(real_number("settings.variances", v, i) for i, v in enumerate(given))
    for i, v in enumerate(variances):
        if not (np.isfinite(v) and v > 0):
            raise SettingError("settings.variances", i, v, "must be finite and > 0")
    return SsdSettings(threshold=threshold, neg_pos=int(neg_pos), variances=variances)


def _float64_case(case: SsdCase) -> SsdCase:
    """``case`` with float64 loc, conf, priors and truths (real_array) and checked settings."""
    settings = _settings(case.settings)
    truths = case.truths
    if not (isinstance(truths, (tuple, list)) or (isinstance(truths, np.ndarray) and truths.ndim)):
        raise ShapeError("truths", None, type(truths).__name__, "must be a tuple of B arrays (n_i, 5), one per image")
    return replace(
        case,
        loc=real_array("loc", case.loc),
        conf=real_array("conf", case.conf),
        priors=real_array("priors", case.priors),
        truths=tuple(real_array(f"truths[{b}]", t) for b, t in enumerate(truths)),
        settings=settings,
    )


def _validate_arrays(case: SsdCase) -> None:
    loc, conf, priors = case.loc, case.conf, case.priors
    if priors.ndim != 2 or priors.shape[1] != 4 or priors.shape[0] < 1:
        raise ShapeError("priors", None, priors.shape, "must be (P, 4) with P >= 1")
    if loc.ndim != 3 or loc.shape[1:] != (priors.shape[0], 4):
        raise ShapeError("loc", None, loc.shape, f"must be (B, {priors.shape[0]}, 4)")
    if conf.ndim != 3 or conf.shape[:2] != loc.shape[:2] or conf.shape[2] < 2:
        raise ShapeError("conf", None, conf.shape, f"must be ({loc.shape[0]}, {priors.shape[0]}, C) with C >= 2")
    if len(case.truths) != loc.shape[0]:
        raise ShapeError("truths", None, len(case.truths), f"must hold B = {loc.shape[0]} arrays")
    _check_finite("priors", priors)
    bad = _first_bad(priors[:, 2:] <= 0)
    if bad is not None:
        raise CoordinateError("priors", bad[0], priors[bad[0]].tolist(), "w and h must be > 0")
    _check_finite("loc", loc)
    _check_finite("conf", conf, InvalidInputError)


def _validate_truths(b: int, truth: np.ndarray, num_classes: int) -> None:
    name = f"truths[{b}]"
    truth = np.asarray(truth)
    if truth.ndim != 2 or truth.shape[1] != 5:
        raise ShapeError(name, None, truth.shape, "must be (n, 5)")
    row = _first_bad(~np.isfinite(truth).all(axis=1))
    if row is not None:
        raise CoordinateError(name, row, truth[row].tolist(), "not finite")
    box = truth[:, :4]
    row = _first_bad(((box < 0) | (box > 1)).any(axis=1))
    if row is not None:
        raise CoordinateError(name, row, truth[row].tolist(), "coordinates must lie in [0, 1]")
    row = _first_bad((box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1]))
    if row is not None:
        raise CoordinateError(name, row, truth[row].tolist(), "needs xmin < xmax and ymin < ymax")
    label = truth[:, 4]
    row = _first_bad((label != np.floor(label)) | (label < 0) | (label > num_classes - 2))
    if row is not None:
        raise LabelError(name, row, float(label[row]), f"label must be an integer in [0, {num_classes - 2}]")


def checked(case: SsdCase) -> SsdCase:
    """``case`` with float64 arrays and Python-number settings, after the checks of S14.

    Raises the typed error of S14 for the first invalid field.
    """
    case = _float64_case(case)
    _validate_arrays(case)
    for b, truth in enumerate(case.truths):
        _validate_truths(b, truth, case.num_classes)
    return case


def validate(case: SsdCase) -> None:
    """Raise the typed error of S14 for the first invalid field of ``case``; else return None."""
    checked(case)


# ---------------------------------------------------------------- everything


def evaluate(case: SsdCase, matches: list | None = None, neg_mask: np.ndarray | None = None) -> dict:
    """Every SSD output key of implementations/adapter.py for ``case``.

    ``matches`` (one Match per image) overrides the matching; ``neg_mask`` (B, P) bool
    overrides the hard negative mining. Arrays are cast to float64 first (``checked``);
    raises the typed errors of ``validate``. B = 0 gives (0, P, ...) arrays and zero losses.
    """
    case = checked(case)
    s = case.settings
    if matches is None:
        prior_corners = point_form(case.priors)
        matches = [_match_corners(t, prior_corners, s.threshold, None, margins=False) for t in case.truths]
    t = targets(case, matches)
    if neg_mask is None:
        score = mining_score(case.conf, t["conf_t"])
        neg_mask = hard_negative_mask(score, t["pos_mask"], s.neg_pos).neg_mask
    loss = multibox_loss(case.loc, case.conf, t["loc_t"], t["conf_t"], t["pos_mask"], neg_mask)
    return {
        **t,
        "neg_mask": np.asarray(neg_mask, dtype=bool),
        "decoded": decode(case.loc, case.priors, s.variances),
        **loss,
    }
