"""Hypothesis strategies of valid SSD cases: prior sets, drafts, one composite per
adversarial feature, then loc and conf (the logit kinds of conformance/strategies.py).

``ssd_cases`` draws small cases by default (under 200 priors) and, rarely, SSD300's 8732
priors. See conformance/strategies.py for how values are drawn (every number by
Hypothesis, so failures shrink to simple values).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance.strategies import (
    COORD_BITS,
    NEAR,
    any_logits,
    box_corners,
    check_features,
    integers,
    logits,
    sampled_from,
)
from reference.cases import SsdCase, SsdSettings
from reference.priors import VOC_300, PriorConfig, prior_boxes

SSD_FEATURES = (
    "plain",
    "threshold_iou",
    "tied_priors",
    "shared_best_prior",
    "no_overlap",
    "many_positives",
    "tiny_extreme",
    "no_truths",
    "near_tie",
)


# ---------------------------------------------------------------- SSD priors


def grid_priors(n: int = 4, sizes=(0.25, 0.5)) -> np.ndarray:
    """(n*n*k, 4) float64 centre-size priors: cell (row i, column j) centre ((j+.5)/n,
    (i+.5)/n), one prior per size, ordered row, column, size.

    sizes: k square sides, or (k, 2) (w, h) pairs; normalised to the image.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    sizes = np.stack([sizes, sizes], axis=1) if sizes.ndim == 1 else sizes.reshape(-1, 2)
    centres = (np.arange(n) + 0.5) / n
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    out = np.empty((n, n, len(sizes), 4))
    out[..., 0], out[..., 1] = cx[..., None], cy[..., None]
    out[..., 2:] = sizes
    return out.reshape(-1, 4)


# (k, 2) prior (w, h) in units of 4/n, k in 1..3
_GRID_SIDES = hnp.arrays(
    np.float64,
    st.tuples(integers(1, 3), st.just(2)),
    elements=sampled_from((1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1.0)),
    fill=st.nothing(),
)


def _grid_priors(draw, dyadic: bool = True, min_n: int = 1) -> np.ndarray:
    """Hand-made grid priors: n in {2, 4, 1, 8} (or {3, 5, 6}), n >= min_n, 1..3 sizes.

    Sides are binary fractions (1/8 .. 1) * 4/n, capped at 1.
    """
    n = draw(sampled_from(tuple(n for n in ((2, 4, 1, 8) if dyadic else (3, 5, 6)) if n >= min_n)))
    return grid_priors(n, np.minimum(1.0, draw(_GRID_SIDES) * 4 / n))


def _config_priors(draw) -> np.ndarray:
    """Priors of a small custom PriorConfig (S1's layout on 1..3 maps), clip on or off."""
    maps = draw(sampled_from(((4, 2, 1), (3, 1), (5, 3, 1), (2,), (4, 2))))
    image = 300.0
    mins = sorted(draw(st.lists(integers(20, 250), min_size=len(maps), max_size=len(maps), unique=True)))
    ratios = tuple(draw(sampled_from(((), (2,), (2, 3)))) for _ in maps)
    config = PriorConfig(
        feature_maps=maps,
        steps=tuple(image / f for f in maps),
        image_size=image,
        min_sizes=tuple(mins),
        max_sizes=tuple(m + 40 for m in mins),
        aspect_ratios=ratios,
        clip=draw(st.booleans()),
    )
    return prior_boxes(config)


def _random_priors(draw, max_priors: int = 16) -> np.ndarray:
    """(P, 4) float64 centre-size priors, P in 1..max_priors, binary fractions, each box inside [0, 1]."""
    boxes = np.array([box_corners(draw) for _ in range(draw(integers(1, max_priors)))])
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)


@functools.cache
def _ssd300_priors() -> np.ndarray:
    return prior_boxes(VOC_300)


# prior kinds: weights 12 : 2 : 4 : 4 : 1 by repetition; SSD300 last (rare, and dropped
# unless realistic)
_PRIOR_KINDS = ("grid",) * 12 + ("odd grid",) * 2 + ("config",) * 4 + ("random",) * 4 + ("ssd300",)


def _prior_set(draw, realistic: bool = True, dyadic: bool = False) -> np.ndarray:
    """(P, 4) prior sets: grids, small configs, random boxes; rarely SSD300 (8732 priors).

    ``dyadic`` keeps to exact binary-fraction priors (dyadic grids 3 times as often as
    random boxes).
    """
    kinds = (
        ("grid",) * 3 + ("random",)
        if dyadic
        else _PRIOR_KINDS
        if realistic
        else tuple(k for k in _PRIOR_KINDS if k != "ssd300")
    )
    kind = draw(sampled_from(kinds))
    event(f"ssd: priors {kind}")
    if kind == "ssd300":
        return _ssd300_priors().copy()
    if kind == "config":
        return _config_priors(draw)
    if kind == "random":
        return _random_priors(draw)
    return _grid_priors(draw, dyadic=kind == "grid")


# ---------------------------------------------------------------- SSD drafts


@dataclass(frozen=True)
class SsdDraft:
    """An SSD case before its loc and conf are drawn.

    priors: (P, 4) float64 centre-size; truths: per image (n_i, 5) float64 rows
    [xmin, ymin, xmax, ymax, label], label in [0, C-2]; num_classes: C (background included).
    Builders return a new draft; the arrays of a draft are never written to.
    """

    priors: np.ndarray
    truths: tuple
    num_classes: int
    settings: SsdSettings = SsdSettings()


def _ssd_draft(
    draw, max_batch: int = 3, max_truths: int = 4, max_classes: int = 6, realistic: bool = True, dyadic: bool = False
) -> SsdDraft:
    """A draft with random truths and settings (``ssd_drafts``: the strategy): max_batch
    images (1 with more than 1000 priors), 0..max_truths truths each, C in 2..max_classes;
    priors from ``_prior_set``."""
    priors = _prior_set(draw, realistic, dyadic)
    batch = 1 if len(priors) > 1000 else draw(integers(1, max_batch))
    num_classes = draw(integers(2, max_classes))
    truths = tuple(_truths(draw, num_classes, draw(integers(0, max_truths))) for _ in range(batch))
    return SsdDraft(priors=priors, truths=truths, num_classes=num_classes, settings=_ssd_settings(draw))


ssd_drafts = st.composite(_ssd_draft)


def _truth(draw, num_classes: int, box=None) -> np.ndarray:
    """One (5,) truth row [xmin, ymin, xmax, ymax, label], label in [0, C-2]; ``box`` or a drawn one."""
    box = box_corners(draw) if box is None else box
    return np.array(list(box) + [draw(integers(0, num_classes - 2))], dtype=np.float64)


def _truths(draw, num_classes: int, count: int) -> np.ndarray:
    """(count, 5) float64 drawn truths of one image."""
    return np.array([_truth(draw, num_classes) for _ in range(count)], dtype=np.float64).reshape(-1, 5)


def _ssd_settings(draw) -> SsdSettings:
    """The seed's settings or (event "ssd: non-default settings") other thresholds, neg:pos
    ratios and variances, each shrinking towards the seed's value."""
    if draw(st.booleans()):
        event("ssd: non-default settings")
        return SsdSettings(
            threshold=draw(sampled_from((0.5, 0.25, 0.375, 0.75, 1.0))),
            neg_pos=draw(sampled_from((3, 0, 1, 7))),
            variances=draw(sampled_from(((0.1, 0.2), (0.125, 0.25), (1.0, 1.0)))),
        )
    return SsdSettings()


def _inside(priors: np.ndarray) -> np.ndarray:
    """Indices of priors whose corner box lies inside [0, 1]."""
    lo, hi = priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2
    return np.flatnonzero((lo >= 0).all(axis=1) & (hi <= 1).all(axis=1))


def _corners(prior) -> list:
    cx, cy, w, h = prior
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _clipped(box) -> list:
    return [min(max(v, 0.0), 1.0) for v in box]


def _with_truth(draw, d: SsdDraft, box, **changes) -> SsdDraft:
    """``d`` with a truth on ``box`` (drawn label) inserted into a drawn image at a drawn position."""
    new = _truth(draw, d.num_classes, box)
    b = draw(integers(0, len(d.truths) - 1))
    at = draw(integers(0, len(d.truths[b])))
    image = np.concatenate([d.truths[b][:at], new[None], d.truths[b][at:]])
    return replace(d, truths=d.truths[:b] + (image,) + d.truths[b + 1 :], **changes)


# ---------------------------------------------------------------- SSD features
# every builder: (draft) -> strategy of drafts; loc and conf are drawn afterwards, sized
# by the draft's priors


@st.composite
def ssd_threshold_iou(draw, d: SsdDraft, offset: float = 0.0) -> SsdDraft:
    """A truth and a prior with IoU exactly == threshold t (S6), from a prior k inside [0, 1].

    sub-box: the truth is prior k with one side scaled by t (prior k may be its forced
    prior). extra prior: the truth is prior k itself (forced there, IoU 1) and a new prior
    at its centre with width t * w gets IoU t without being forced. ``offset`` moves the
    scaled side (the near-tie variant: IoU just above or below t).
    """
    t = draw(sampled_from((0.5, 0.25, 0.75)))
    d = replace(d, settings=replace(d.settings, threshold=t))
    inside = _inside(d.priors)
    if len(inside) == 0:
        return d
    k = draw(st.sampled_from(inside.tolist()))
    x0, y0, x1, y1 = _corners(d.priors[k])
    variant = draw(sampled_from(("extra prior", "sub-box x", "sub-box y")))
    event(f"ssd: threshold iou {variant}")
    if variant == "extra prior":
        extra = d.priors[k] * np.array([1.0, 1.0, t, 1.0]) + np.array([0.0, 0.0, offset, 0.0])
        return _with_truth(draw, d, [x0, y0, x1, y1], priors=np.concatenate([d.priors, extra[None]]))
    if variant == "sub-box x":
        box = [x0, y0, x0 + t * (x1 - x0) + offset, y1]
    else:
        box = [x0, y0, x1, y0 + t * (y1 - y0) + offset]
    return _with_truth(draw, d, _clipped(box))


@st.composite
def ssd_tied_priors(draw, d: SsdDraft, offset: float = 0.0) -> SsdDraft:
    """A truth centred half-way between two equal priors of one row or column (S3 tie).

    Prior sets without such a pair are replaced by a dyadic grid with n >= 2.
    ``offset`` moves the truth along x (the near-tie variant).
    """
    pairs = _neighbour_pairs(d.priors)
    if len(pairs) == 0:
        d = replace(d, priors=_grid_priors(draw, dyadic=True, min_n=2))
        pairs = _neighbour_pairs(d.priors)
    i, j = pairs[draw(integers(0, len(pairs) - 1))]
    mid = (d.priors[i, :2] + d.priors[j, :2]) / 2
    room = np.minimum(mid, 1 - mid)
    half = [room[k] / 2 ** draw(integers(0, 3)) for k in range(2)]
    if half[0] <= 0 or half[1] <= 0:
        return d
    box = [mid[0] - half[0] + offset, mid[1] - half[1], mid[0] + half[0] + offset, mid[1] + half[1]]
    return _with_truth(draw, d, _clipped(box))


def _neighbour_pairs(priors: np.ndarray) -> list:
    """Pairs (i, j) of priors with equal w, h and one equal centre coordinate (first 64)."""
    same_size = (priors[:, None, 2:] == priors[None, :, 2:]).all(axis=2)
    one_axis = (priors[:, None, :2] == priors[None, :, :2]).sum(axis=2) == 1
    i, j = np.nonzero(np.triu(same_size & one_axis, k=1))
    return list(zip(i.tolist(), j.tolist()))[:64]


@st.composite
def ssd_shared_best_prior(draw, d: SsdDraft) -> SsdDraft:
    """Two truths with the same best prior: a copy, other label, after the original (S4)."""
    b = draw(integers(0, len(d.truths) - 1))
    image = d.truths[b]
    first = image[0] if len(image) else _truth(draw, d.num_classes)
    copy = np.append(first[:4], draw(integers(0, d.num_classes - 2)))
    rest = image[1:]
    image = np.concatenate([first[None], rest[: draw(integers(0, len(rest)))], copy[None]])
    return replace(d, truths=d.truths[:b] + (image,) + d.truths[b + 1 :])


@st.composite
def ssd_no_overlap(draw, d: SsdDraft) -> SsdDraft:
    """Small priors (side 1/(2n)) centred in an n-grid, a truth in a cell corner: IoU 0 (S5)."""
    n = draw(sampled_from((1, 2, 4)))
    i, j = draw(integers(0, n - 1)), draw(integers(0, n - 1))
    side = 1 / (8 * n)
    return _with_truth(draw, d, [j / n, i / n, j / n + side, i / n + side], priors=grid_priors(n, [1 / (2 * n)]))


@st.composite
def ssd_many_positives(draw, d: SsdDraft) -> SsdDraft:
    """Few priors (1..4) and 2..5 more truths per image: positives outnumber negatives."""
    truths = tuple(np.concatenate([t, _truths(draw, d.num_classes, draw(integers(2, 5)))]) for t in d.truths)
    return replace(d, priors=_random_priors(draw, max_priors=4), truths=truths)


@st.composite
def ssd_tiny_extreme(draw, d: SsdDraft) -> SsdDraft:
    """A tiny truth (side 2**-9 .. 2**-14), an extreme aspect (full width or height, tiny
    other side) or the whole image."""
    tiny = 2.0 ** -draw(integers(9, 14))
    x0 = draw(integers(0, 2**COORD_BITS - 1)) / 2**COORD_BITS
    box = draw(
        st.sampled_from(
            ([x0, x0, x0 + tiny, x0 + tiny], [0.0, x0, 1.0, x0 + tiny], [x0, 0.0, x0 + tiny, 1.0], [0.0, 0.0, 1.0, 1.0])
        )
    )
    return _with_truth(draw, d, box)


@st.composite
def ssd_no_truths(draw, d: SsdDraft) -> SsdDraft:
    """Images without truths: the whole batch, or one image emptied (S12, S13)."""
    if draw(st.booleans()):
        b = draw(integers(0, len(d.truths) - 1))
        return replace(d, truths=d.truths[:b] + (d.truths[b][:0],) + d.truths[b + 1 :])
    return replace(d, truths=tuple(t[:0] for t in d.truths))


@st.composite
def ssd_near_tie(draw, d: SsdDraft) -> SsdDraft:
    """A threshold or tie case moved by 2**-30: decided in float64, tied in float32.

    The sign that changes the decision in float32 comes first (drawn twice as often, kept
    by shrinking): an IoU just below the threshold (positive once rounded), a truth nearer
    the later of two tied priors (the earlier wins the float32 tie).
    """
    builder, signs = draw(
        sampled_from(((ssd_threshold_iou, (-NEAR, -NEAR, NEAR)), (ssd_tied_priors, (NEAR, NEAR, -NEAR))))
    )
    return draw(builder(d, offset=draw(sampled_from(signs))))


# feature name -> builder(draft) -> strategy of drafts
SSD_BUILDERS = {
    "plain": st.just,
    "threshold_iou": ssd_threshold_iou,
    "tied_priors": ssd_tied_priors,
    "shared_best_prior": ssd_shared_best_prior,
    "no_overlap": ssd_no_overlap,
    "many_positives": ssd_many_positives,
    "tiny_extreme": ssd_tiny_extreme,
    "no_truths": ssd_no_truths,
    "near_tie": ssd_near_tie,
}
_SSD_EXACT = ("threshold_iou", "tied_priors", "near_tie")  # need dyadic priors


def ssd_cases(
    max_batch: int = 3, max_truths: int = 4, max_classes: int = 6, realistic: bool = True, features=SSD_FEATURES
) -> st.SearchStrategy[SsdCase]:
    """Valid ``SsdCase``s with one adversarial feature of ``features`` each.

    max_batch images (1 with SSD300 priors), 0..max_truths truths per image, C in
    2..max_classes (background included). ``realistic`` allows, rarely, SSD300's 8732
    priors. ``features`` restricts the mix (names from SSD_FEATURES, drawn uniformly,
    shrinking towards the first); InvalidArgument for an unknown name.
    """
    return _ssd_cases(max_batch, max_truths, max_classes, realistic, check_features(features, SSD_FEATURES))


@st.composite
def _ssd_cases(draw, max_batch, max_truths, max_classes, realistic, features):
    feature = draw(sampled_from(features))
    exact = feature in _SSD_EXACT
    d = _ssd_draft(draw, max_batch, max_truths, max_classes, realistic and not exact, exact)
    d = draw(SSD_BUILDERS[feature](d))
    event(f"ssd: {feature.replace('_', ' ')}")
    counts = [len(t) for t in d.truths]
    if sum(counts) == 0:
        event("ssd: batch without truths")
    elif min(counts) == 0:
        event("ssd: image without truths")
    batch, num_priors = len(d.truths), len(d.priors)
    loc = logits(draw, (batch, num_priors, 4), draw(sampled_from(("small", "small", "wide"))))
    conf = any_logits(draw, (batch, num_priors, d.num_classes))
    return SsdCase(
        loc=loc, conf=conf, priors=d.priors, truths=d.truths, settings=d.settings, name=f"generated ssd {feature}"
    )


FEATURES = SSD_FEATURES  # one property test each (Family.of)


def cases(features=SSD_FEATURES):
    """The strategy of valid cases with one of ``features`` each (Family.of)."""
    return ssd_cases(features=features)
