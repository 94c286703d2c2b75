"""Hypothesis strategies that generate valid YOLOv3 and SSD conformance cases.

``yolo_cases`` and ``ssd_cases`` draw small cases by default (a YOLO case has typically
under 2k head values, an SSD case under 200 priors) and, rarely, realistic sizes
(YOLOv3-416 G = 13 and 26 layers, SSD300's 8732 priors). A case is built in three steps:

1. a draft (``YoloDraft`` / ``SsdDraft``: every input but the logits) with random rows;
2. one adversarial feature of ``YOLO_FEATURES`` / ``SSD_FEATURES`` ("plain": none), each
   a strategy ``feature(draft) -> draft`` (``YOLO_BUILDERS`` / ``SSD_BUILDERS``);
3. the logits, one kind of ``LOGIT_KINDS`` per array.

Every number is drawn by Hypothesis itself (integers, ``sampled_from``, and
``hypothesis.extra.numpy.arrays`` element by element), so a failing example shrinks
towards simple values: logits towards 0, boxes towards the smallest side at the origin,
kinds and features towards the first of their tuple. An array draws its first
``PERIOD`` values (C order) and reuses them, rotated, over the rest, so SSD300's 8732 x C
logits cost as much to draw as 29 values (see ``array_values``). Choices are ``sampled_from``
a tuple; where one choice must be more or less likely than another (the realistic sizes
rarely, saturated and spread logits often) the tuple repeats entries.

Every feature and kind is reported with ``hypothesis.event`` ("yolo: shared cell",
"logits saturated", ...), so ``--hypothesis-show-statistics`` shows what a run covered.

Every generated case is valid per Y13 / S14. Coordinates, sizes, anchors and logits are
binary fractions k / 2**m with few significant bits, so float64, float32 and (for
logits and coordinates) float16 and bfloat16 see the same numbers; only the "near tie"
feature and logit kind add offsets of 2**-30 that vanish when the case is rounded to
float32, to reach inputs whose decisions differ between float64 and float32.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp

from reference.cases import SsdCase, SsdSettings, YoloCase, YoloSettings
from reference.priors import VOC_300, PriorConfig, prior_boxes

COORD_BITS = 8  # coordinates are k / 256
NEAR = 2.0**-30  # an offset that float32 rounds away near 0.25 .. 1 (its ulp there is >= 2**-25)
PERIOD = 29  # values drawn per array; prime, so rows, cells and channels never align with it

YOLO_FEATURES = ("plain", "shared_cell", "anchor_tie", "no_targets", "ignore_threshold",
                 "cell_boundary", "tiny_extreme", "near_tie")
SSD_FEATURES = ("plain", "threshold_iou", "tied_priors", "shared_best_prior", "no_overlap",
                "many_positives", "tiny_extreme", "no_truths", "near_tie")
LOGIT_KINDS = ("small", "wide", "saturated", "tied", "near_tie", "spread")
SATURATED = (-120.0, -40.0, -30.0, -27.625, -17.0, -16.5, 16.5, 17.0, 27.625, 30.0, 40.0, 120.0)
SPREAD = (0.0, -120.0, -800.0)  # row offsets: far below the batch max in float32 / float64

YOLO416_ANCHORS = (((116, 90), (156, 198), (373, 326)), ((30, 61), (62, 45), (59, 119)))


# ---------------------------------------------------------------- numbers and arrays

# Hypothesis builds and validates a strategy on every call of st.integers / st.sampled_from
# (about 10 % of the drawing time here); these build each one once
_integers = functools.cache(st.integers)
_sampled_from = functools.cache(st.sampled_from)  # hashable arguments (tuples) only


@functools.cache
def binary_fractions(lo: float, hi: float, bits: int = COORD_BITS) -> st.SearchStrategy[float]:
    """Floats k / 2**bits in [lo, hi] (lo, hi multiples of 2**-bits): exact in float32.

    Shrinks towards 0 (or the bound nearest 0).
    """
    scale = 2**bits
    return st.integers(int(np.ceil(lo * scale)), int(np.floor(hi * scale))).map(lambda k: k / scale)


def _by_magnitude(values) -> tuple:
    """``values`` as floats, smallest magnitude first (negative before positive)."""
    return tuple(sorted((float(v) for v in values), key=lambda v: (abs(v), v > 0)))


_SMALL = _by_magnitude(np.arange(-256, 257) / 64)  # k/64 in [-4, 4]
# the values of each logit kind, simplest first: Hypothesis draws them uniformly and
# shrinks towards the first
KIND_VALUES = {
    "small": _SMALL,
    "wide": _by_magnitude(np.arange(-240, 241) / 4),  # k/4 in [-60, 60]
    "saturated": (0.0, -0.5, 0.5, -1.0, 1.0) + _by_magnitude(SATURATED),  # 70 % saturated
    "tied": (0.0, -1.0, 1.0),
    # +-1 + 2**-30: distinct from +-1 in float64, equal once rounded to float32
    "near_tie": (0.0, -1.0, 1.0, -1.0 + NEAR, 1.0 + NEAR),
    "spread": _SMALL,  # plus row offsets, see ``logits``
}


@functools.cache
def _elements(values: tuple, count: int) -> st.SearchStrategy[np.ndarray]:
    """(count,) float64 arrays, each element drawn from ``values`` (no fill value)."""
    return hnp.arrays(np.float64, count, elements=st.sampled_from(values), fill=st.nothing())


def array_values(draw, shape, values: tuple) -> np.ndarray:
    """A float64 array of ``shape`` whose first min(size, PERIOD) entries (C order) are
    drawn one by one from ``values``; the rest reuse them, block j of PERIOD entries
    rotated by j.

    An array of at most PERIOD entries is drawn element-wise; a larger one costs PERIOD
    draws whatever its size (SSD300's 8732 x C logits included). Flat position i holds
    drawn value (i + i // PERIOD) mod PERIOD, so the sequence repeats only after PERIOD**2
    = 841 entries and rows, cells and channels of every size drawn here differ from their
    neighbours (PERIOD is prime); larger arrays repeat rows, which only adds ties.
    """
    shape = tuple(int(n) for n in shape)
    size = math.prod(shape)
    drawn = draw(_elements(values, min(size, PERIOD)))
    i = np.arange(size)
    return drawn[(i + i // PERIOD) % len(drawn)].reshape(shape)


def logits(draw, shape, kind: str) -> np.ndarray:
    """float64 logits of ``shape`` and ``kind``, binary fractions with at most 8 significant bits.

    small: k/64 in [-4, 4]; wide: k/4 in [-60, 60]; saturated: 70 % values of SATURATED
    (σ rounds to exactly 0 or 1 in float32 from about 17, in float64 from about 37;
    p(1 − p) < 1e-12 beyond 27.6; -120 puts log p below the -100 clamp), the others in
    {0, ±1/2, ±1}; tied: {0, ±1} (argmax and ranking ties); near_tie: tied and ±1 + 2**-30
    (distinct in float64, equal once rounded to float32); spread: small values, each row
    (last axis) shifted by one of SPREAD, so that a logsumexp shifted by one global max
    instead of the row's own underflows (S9); the shifted rows have their first entry
    (SSD's background) 4 lower: hard negatives that mining takes.
    """
    if kind not in KIND_VALUES:
        raise InvalidArgument(f"kind={kind!r}: not one of LOGIT_KINDS {LOGIT_KINDS}")
    out = array_values(draw, shape, KIND_VALUES[kind])
    if kind == "spread":
        offsets = array_values(draw, tuple(shape[:-1]) + (1,), SPREAD)
        out += offsets
        out[..., :1] -= 4.0 * (offsets < 0)
    return out


# saturated and spread (what the BCE and S9 rules need) twice as likely as wide, tied, near_tie
_KIND_MIX = ("small", "small", "wide", "saturated", "saturated", "tied", "near_tie", "spread", "spread")


def _any_logits(draw, shape) -> np.ndarray:
    """Logits of ``shape`` of one drawn kind of LOGIT_KINDS (event "logits <kind>")."""
    kind = draw(_sampled_from(_KIND_MIX))
    event(f"logits {kind}")
    return logits(draw, shape, kind)


logit_arrays = st.composite(_any_logits)  # logit_arrays(shape): the strategy


def _box_corners(draw) -> list:
    """[xmin, ymin, xmax, ymax] binary fractions k/256 with 0 <= min < max <= 1."""
    scale = 2**COORD_BITS
    box = []
    for _ in range(2):
        side = draw(_integers(1, scale))
        lo = draw(_integers(0, scale - side))
        box.append((lo, lo + side))
    (x0, x1), (y0, y1) = box
    return [x0 / scale, y0 / scale, x1 / scale, y1 / scale]


def _check_features(features, known: tuple) -> tuple:
    """``features`` as a tuple; InvalidArgument naming any name not in ``known``."""
    features = tuple(features)
    unknown = [f for f in features if f not in known]
    if not features or unknown:
        raise InvalidArgument(f"features={features!r}: {unknown or 'empty'}; choose from {known}")
    return features


# ---------------------------------------------------------------- YOLO drafts

@dataclass(frozen=True)
class YoloDraft:
    """A YOLO case before its head outputs are drawn.

    grids: G per layer; anchors: per layer (A, 2) float64 pixels; img_dim: pixels;
    targets: (T, 6) float64 rows [b, class, cx, cy, w, h] (normalised coordinates).
    Builders return a new draft; the arrays of a draft are never written to.
    """

    batch: int
    grids: tuple
    img_dim: float
    anchors: tuple
    num_classes: int
    targets: np.ndarray
    settings: YoloSettings = YoloSettings()


# layout kinds, "small" 12 and "inexact" 2 times as likely as "realistic"
_YOLO_LAYOUTS = ("small",) * 12 + ("inexact",) * 2 + ("realistic",)


def _yolo_draft(draw, max_batch: int = 3, max_layers: int = 2, max_targets: int = 8,
                max_classes: int = 6, realistic: bool = True, dyadic: bool = False) -> YoloDraft:
    """A draft with random target rows and settings (``yolo_drafts``: the strategy).

    Small layouts: G0 in 1..8 (1..4 with two layers), G_k = G0 * 2**k, stride of layer 0 a
    power of two, so every stride and scaled anchor is exact. Sometimes an img_dim with an
    inexact stride (100 px); rarely (``realistic``) the YOLOv3-416 layout (G = 13, then 26).
    ``dyadic`` forces small layouts with G0 a power of two (exact k/G boundaries).
    """
    num_layers = draw(_integers(1, max_layers))
    kind = "small" if dyadic else draw(_sampled_from(
        _YOLO_LAYOUTS if realistic else tuple(k for k in _YOLO_LAYOUTS if k != "realistic")))
    event(f"yolo: layout {kind}")
    if kind == "realistic":
        batch, grids, img_dim = 1, tuple(13 * 2**k for k in range(min(num_layers, 2))), 416.0
        anchors = tuple(np.array(YOLO416_ANCHORS[k], dtype=np.float64) for k in range(len(grids)))
        num_classes = draw(_integers(1, min(3, max_classes)))
    else:
        g0_choices = (2, 4, 1, 8) if dyadic else tuple(range(1, 9))
        g0 = draw(_sampled_from(tuple(g for g in g0_choices if num_layers == 1 or g <= 4)))
        grids = tuple(g0 * 2**k for k in range(num_layers))
        img_dim = 100.0 if kind == "inexact" else float(g0 * draw(_sampled_from((8, 16, 32))))
        anchors = tuple(draw(anchor_sets(img_dim)) for _ in grids)  # (cached strategy)
        batch = draw(_integers(1, max_batch))
        num_classes = draw(_integers(1, max_classes))
    rows = draw(st.lists(yolo_target_row(batch, num_classes), max_size=max_targets))
    return YoloDraft(batch=batch, grids=grids, img_dim=img_dim, anchors=anchors,
                     num_classes=num_classes, targets=np.array(rows, dtype=np.float64).reshape(-1, 6),
                     settings=_yolo_settings(draw))


yolo_drafts = st.composite(_yolo_draft)


@functools.cache
def anchor_sets(img_dim: float) -> st.SearchStrategy[np.ndarray]:
    """(A, 2) float64 anchors in pixels, A in 1..3, integer sides in [1, img_dim]."""
    return hnp.arrays(np.float64, st.tuples(_integers(1, 3), st.just(2)),
                      elements=_integers(1, int(img_dim)), fill=st.nothing())


def yolo_target_row(batch: int, num_classes: int) -> st.SearchStrategy[tuple]:
    """One target row (b, class, cx, cy, w, h): cx, cy k/256 in [0, 1], w, h k/256 in (0, 1]."""
    return st.tuples(_integers(0, batch - 1), _integers(0, num_classes - 1),
                     binary_fractions(0, 1), binary_fractions(0, 1),
                     binary_fractions(2**-COORD_BITS, 1), binary_fractions(2**-COORD_BITS, 1))


def _yolo_settings(draw) -> YoloSettings:
    """The seed's settings or (event "yolo: non-default settings") others: ignore_thres,
    scales and log clamps, each shrinking towards the seed's value."""
    if draw(st.booleans()):
        event("yolo: non-default settings")
        return YoloSettings(ignore_thres=draw(_sampled_from((0.5, 0.0, 0.25, 0.7, 1.0))),
                            obj_scale=draw(_sampled_from((1.0, 0.5, 2.0))),
                            noobj_scale=draw(_sampled_from((100.0, 1.0, 0.5))),
                            log_clamp=draw(_sampled_from((-100.0, -20.0, -60.0))))
    return YoloSettings()


def _one_row(draw, d: YoloDraft) -> np.ndarray:
    """A new (6,) target row to build a feature on: a copy of a drawn row of ``d``, or fresh."""
    if len(d.targets) and draw(st.booleans()):
        return d.targets[draw(_integers(0, len(d.targets) - 1))].copy()
    return np.array(draw(yolo_target_row(d.batch, d.num_classes)), dtype=np.float64)


def _with_rows(draw, d: YoloDraft, new: np.ndarray, **changes) -> YoloDraft:
    """``d`` with ``new`` (k, 6) inserted at a drawn position (target order matters, Y5)."""
    at = draw(_integers(0, len(d.targets)))
    rows = np.concatenate([d.targets[:at], new.reshape(-1, 6), d.targets[at:]])
    return replace(d, targets=rows, **changes)


def _with_layer0_anchors(d: YoloDraft, anchors: np.ndarray) -> YoloDraft:
    return replace(d, anchors=(anchors,) + d.anchors[1:])


# ---------------------------------------------------------------- YOLO features
# every builder: (draft) -> strategy of drafts; the head outputs are drawn afterwards,
# sized by the draft's anchors

@st.composite
def yolo_shared_cell(draw, d: YoloDraft) -> YoloDraft:
    """Two or more targets on one (b, anchor, cell): copies of a row with drawn classes.

    The copies follow an existing row (inserted anywhere, so before or after it) or
    come as a group of 2..3 fresh rows.
    """
    existing = len(d.targets) > 0 and draw(st.booleans())
    base = d.targets[draw(_integers(0, len(d.targets) - 1))] if existing else \
        np.array(draw(yolo_target_row(d.batch, d.num_classes)), dtype=np.float64)
    copies = np.repeat(base[None], draw(_integers(1, 2)) + (0 if existing else 1), axis=0)
    copies[:, 1] = [draw(_integers(0, d.num_classes - 1)) for _ in copies]
    return _with_rows(draw, d, copies)


@st.composite
def yolo_anchor_tie(draw, d: YoloDraft) -> YoloDraft:
    """Layer 0 gets anchors (p, q) and (q, p) (or a duplicate); a square target ties them."""
    a = d.anchors[0]
    p, q = a[0]
    pair = np.array([[p, q], [q, p]]) if draw(st.booleans()) else np.array([[p, q], [p, q]])
    d = _with_layer0_anchors(d, np.concatenate([pair, a[1:2]]))
    new = _one_row(draw, d)
    new[5] = new[4]
    return _with_rows(draw, d, new)


@st.composite
def yolo_ignore_threshold(draw, d: YoloDraft, offset: float = 0.0) -> YoloDraft:
    """A target whose wh-IoU with an anchor of layer 0 is exactly ignore_thres (Y4).

    Anchor (p, q) cells with p, q >= 1 (so the 1e-16 of Y2 vanishes), target (t p, q)
    cells: inter = t p q, union = p q, IoU = t exactly in binary arithmetic. ``offset``
    is added to the target's w (the near-tie variant: IoU just above or below t).
    Needs a layout with a power-of-two stride for layer 0 (``yolo_drafts(dyadic=True)``).
    """
    t = draw(_sampled_from((0.5, 0.25, 0.75)))
    g0 = d.grids[0]
    stride = d.img_dim / g0
    p, q = draw(_integers(1, g0)), draw(_integers(1, g0))
    idx = draw(_integers(0, len(d.anchors[0]) - 1))
    new = _one_row(draw, d)
    anchor, (new[4], new[5]) = (p * stride, q * stride), (t * p / g0 + offset, q / g0)
    if draw(st.booleans()):  # the transposed target: IoU t with the transposed anchor
        anchor, (new[4], new[5]) = anchor[::-1], (new[5], new[4])
    a = d.anchors[0].copy()
    a[idx] = anchor
    return _with_rows(draw, _with_layer0_anchors(d, a), new, settings=replace(d.settings, ignore_thres=t))


@st.composite
def yolo_cell_boundary(draw, d: YoloDraft) -> YoloDraft:
    """A target centred on a cell boundary (Y3): interior (cx*G or cy*G an integer in
    [1, G-1] for a layer with G >= 2; twice as likely) or at the image edge (cx or cy in {0, 1})."""
    new = _one_row(draw, d)
    grids = tuple(g for g in d.grids if g > 1)
    variant = draw(_sampled_from(("interior", "interior", "edge"))) if grids else "edge"
    event(f"yolo: cell boundary {variant}")
    cols = draw(_sampled_from(((2,), (3,), (2, 3))))
    g = draw(_sampled_from(grids)) if variant == "interior" else None
    for col in cols:
        new[col] = draw(_integers(1, g - 1)) / g if g else draw(_sampled_from((0.0, 1.0)))
    return _with_rows(draw, d, new)


@st.composite
def yolo_tiny_extreme(draw, d: YoloDraft) -> YoloDraft:
    """Tiny boxes (side 2**-9 .. 2**-14), extreme aspects (one side 1, the other tiny), w = h = 1."""
    new = _one_row(draw, d)
    tiny = 2.0 ** -draw(_integers(9, 14))
    new[4], new[5] = draw(_sampled_from(((tiny, tiny), (1.0, tiny), (tiny, 1.0), (1.0, 1.0))))
    return _with_rows(draw, d, new)


def yolo_no_targets(d: YoloDraft) -> st.SearchStrategy[YoloDraft]:
    """A batch without any target (Y8)."""
    return st.just(replace(d, targets=d.targets[:0]))


@st.composite
def yolo_near_tie(draw, d: YoloDraft) -> YoloDraft:
    """Values 2**-30 off a decision boundary; rounded to float32 they land on it exactly.

    cx_one: cx = 1 - 2**-30 (1.0 in float32, the seed's IndexError); cell_edge: cx =
    k/G +- 2**-30 (Y3 cell); anchors: anchors (1, 2) and (2, 1) cells (halved when G = 1),
    target (1.5, 1.5) cells with w or h off by 2**-30 (Y2 best anchor); ignore: wh-IoU =
    ignore_thres +- tiny (Y4). Needs ``yolo_drafts(dyadic=True)``.

    The move that changes the decision in float32 comes first (drawn more often, kept by
    shrinking): cx just below the boundary (the next cell once rounded), the target nearer
    the later anchor (w up or h down: the earlier wins the float32 tie), the IoU just above
    ignore_thres (ignored in float64 only).
    """
    which = draw(_sampled_from(("cx_one", "cell_edge", "anchors", "ignore")))
    event(f"yolo: near tie {which}")
    if which == "ignore":
        return draw(yolo_ignore_threshold(d, draw(_sampled_from((NEAR, -NEAR)))))
    new = _one_row(draw, d)
    g = d.grids[-1]
    if which == "cx_one" or (which == "cell_edge" and g == 1):
        new[2] = 1.0 - NEAR
    elif which == "cell_edge":
        new[2] = draw(_integers(1, g - 1)) / g + draw(_sampled_from((-NEAR, NEAR)))
    else:
        g0 = d.grids[0]
        unit = d.img_dim / g0 / (2 if g0 == 1 else 1)  # keeps the target side <= 1
        pair = np.array([[unit, 2 * unit], [2 * unit, unit]])
        d = _with_layer0_anchors(d, np.concatenate([pair, d.anchors[0][:1]]))
        new[4] = new[5] = 1.5 * unit / d.img_dim
        col, offset = draw(_sampled_from(((4, NEAR), (5, -NEAR), (4, -NEAR), (5, NEAR))))
        new[col] += offset
    return _with_rows(draw, d, new)


# feature name -> builder(draft) -> strategy of drafts
YOLO_BUILDERS = {
    "plain": st.just,
    "shared_cell": yolo_shared_cell,
    "anchor_tie": yolo_anchor_tie,
    "ignore_threshold": yolo_ignore_threshold,
    "cell_boundary": yolo_cell_boundary,
    "tiny_extreme": yolo_tiny_extreme,
    "no_targets": yolo_no_targets,
    "near_tie": yolo_near_tie,
}
_YOLO_EXACT = ("ignore_threshold", "cell_boundary", "near_tie")  # need dyadic layouts


def yolo_cases(max_batch: int = 3, max_layers: int = 2, max_targets: int = 8,
               max_classes: int = 6, realistic: bool = True,
               features=YOLO_FEATURES) -> st.SearchStrategy[YoloCase]:
    """Valid ``YoloCase``s with one adversarial feature of ``features`` each.

    max_batch, max_layers, max_targets (random rows; a feature adds up to 3), max_classes
    bound the small cases; ``realistic`` allows, rarely, the YOLOv3-416 layers (G = 13,
    26). ``features`` restricts the mix (names from YOLO_FEATURES, drawn uniformly,
    shrinking towards the first); InvalidArgument for an unknown name.
    """
    return _yolo_cases(max_batch, max_layers, max_targets, max_classes, realistic,
                       _check_features(features, YOLO_FEATURES))


@st.composite
def _yolo_cases(draw, max_batch, max_layers, max_targets, max_classes, realistic, features):
    feature = draw(_sampled_from(features))
    exact = feature in _YOLO_EXACT
    d = _yolo_draft(draw, max_batch, max_layers, max_targets, max_classes, realistic and not exact, exact)
    d = draw(YOLO_BUILDERS[feature](d))
    event(f"yolo: {feature.replace('_', ' ')}")
    if len(d.targets) == 0:
        event("yolo: batch without targets")
    elif len(np.unique(d.targets[:, 0])) < d.batch:
        event("yolo: image without targets")
    outputs = tuple(_any_logits(draw, (d.batch, len(a) * (d.num_classes + 5), g, g))
                    for g, a in zip(d.grids, d.anchors))
    return YoloCase(outputs=outputs, anchors=d.anchors, targets=d.targets, num_classes=d.num_classes,
                    img_dim=d.img_dim, settings=d.settings, name=f"generated yolo {feature}")


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
_GRID_SIDES = hnp.arrays(np.float64, st.tuples(_integers(1, 3), st.just(2)),
                         elements=_sampled_from((1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1.0)), fill=st.nothing())


def _grid_priors(draw, dyadic: bool = True, min_n: int = 1) -> np.ndarray:
    """Hand-made grid priors: n in {2, 4, 1, 8} (or {3, 5, 6}), n >= min_n, 1..3 sizes.

    Sides are binary fractions (1/8 .. 1) * 4/n, capped at 1.
    """
    n = draw(_sampled_from(tuple(n for n in ((2, 4, 1, 8) if dyadic else (3, 5, 6)) if n >= min_n)))
    return grid_priors(n, np.minimum(1.0, draw(_GRID_SIDES) * 4 / n))


def _config_priors(draw) -> np.ndarray:
    """Priors of a small custom PriorConfig (S1's layout on 1..3 maps), clip on or off."""
    maps = draw(_sampled_from(((4, 2, 1), (3, 1), (5, 3, 1), (2,), (4, 2))))
    image = 300.0
    mins = sorted(draw(st.lists(_integers(20, 250), min_size=len(maps), max_size=len(maps),
                                unique=True)))
    ratios = tuple(draw(_sampled_from(((), (2,), (2, 3)))) for _ in maps)
    config = PriorConfig(feature_maps=maps, steps=tuple(image / f for f in maps), image_size=image,
                         min_sizes=tuple(mins), max_sizes=tuple(m + 40 for m in mins),
                         aspect_ratios=ratios, clip=draw(st.booleans()))
    return prior_boxes(config)


def _random_priors(draw, max_priors: int = 16) -> np.ndarray:
    """(P, 4) float64 centre-size priors, P in 1..max_priors, binary fractions, each box inside [0, 1]."""
    boxes = np.array([_box_corners(draw) for _ in range(draw(_integers(1, max_priors)))])
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
    kinds = ("grid",) * 3 + ("random",) if dyadic else \
        _PRIOR_KINDS if realistic else tuple(k for k in _PRIOR_KINDS if k != "ssd300")
    kind = draw(_sampled_from(kinds))
    event(f"ssd: priors {kind}")
    if kind == "ssd300":
        return _ssd300_priors().copy()
    if kind == "config":
        return _config_priors(draw)
    if kind == "random":
        return _random_priors(draw)
    return _grid_priors(draw, dyadic=kind == "grid")


prior_sets = st.composite(_prior_set)


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


def _ssd_draft(draw, max_batch: int = 3, max_truths: int = 4, max_classes: int = 6,
               realistic: bool = True, dyadic: bool = False) -> SsdDraft:
    """A draft with random truths and settings (``ssd_drafts``: the strategy): max_batch
    images (1 with more than 1000 priors), 0..max_truths truths each, C in 2..max_classes;
    priors from ``prior_sets``."""
    priors = _prior_set(draw, realistic, dyadic)
    batch = 1 if len(priors) > 1000 else draw(_integers(1, max_batch))
    num_classes = draw(_integers(2, max_classes))
    truths = tuple(_truths(draw, num_classes, draw(_integers(0, max_truths))) for _ in range(batch))
    return SsdDraft(priors=priors, truths=truths, num_classes=num_classes, settings=_ssd_settings(draw))


ssd_drafts = st.composite(_ssd_draft)


def _truth(draw, num_classes: int, box=None) -> np.ndarray:
    """One (5,) truth row [xmin, ymin, xmax, ymax, label], label in [0, C-2]; ``box`` or a drawn one."""
    box = _box_corners(draw) if box is None else box
    return np.array(list(box) + [draw(_integers(0, num_classes - 2))], dtype=np.float64)


def _truths(draw, num_classes: int, count: int) -> np.ndarray:
    """(count, 5) float64 drawn truths of one image."""
    return np.array([_truth(draw, num_classes) for _ in range(count)], dtype=np.float64).reshape(-1, 5)


def _ssd_settings(draw) -> SsdSettings:
    """The seed's settings or (event "ssd: non-default settings") other thresholds, neg:pos
    ratios and variances, each shrinking towards the seed's value."""
    if draw(st.booleans()):
        event("ssd: non-default settings")
        return SsdSettings(threshold=draw(_sampled_from((0.5, 0.25, 0.375, 0.75, 1.0))),
                           neg_pos=draw(_sampled_from((3, 0, 1, 7))),
                           variances=draw(_sampled_from(((0.1, 0.2), (0.125, 0.25), (1.0, 1.0)))))
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
    b = draw(_integers(0, len(d.truths) - 1))
    at = draw(_integers(0, len(d.truths[b])))
    image = np.concatenate([d.truths[b][:at], new[None], d.truths[b][at:]])
    return replace(d, truths=d.truths[:b] + (image,) + d.truths[b + 1:], **changes)


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
    t = draw(_sampled_from((0.5, 0.25, 0.75)))
    d = replace(d, settings=replace(d.settings, threshold=t))
    inside = _inside(d.priors)
    if len(inside) == 0:
        return d
    k = draw(st.sampled_from(inside.tolist()))
    x0, y0, x1, y1 = _corners(d.priors[k])
    variant = draw(_sampled_from(("extra prior", "sub-box x", "sub-box y")))
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
    i, j = pairs[draw(_integers(0, len(pairs) - 1))]
    mid = (d.priors[i, :2] + d.priors[j, :2]) / 2
    room = np.minimum(mid, 1 - mid)
    half = [room[k] / 2 ** draw(_integers(0, 3)) for k in range(2)]
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
    b = draw(_integers(0, len(d.truths) - 1))
    image = d.truths[b]
    first = image[0] if len(image) else _truth(draw, d.num_classes)
    copy = np.append(first[:4], draw(_integers(0, d.num_classes - 2)))
    rest = image[1:]
    image = np.concatenate([first[None], rest[: draw(_integers(0, len(rest)))], copy[None]])
    return replace(d, truths=d.truths[:b] + (image,) + d.truths[b + 1:])


@st.composite
def ssd_no_overlap(draw, d: SsdDraft) -> SsdDraft:
    """Small priors (side 1/(2n)) centred in an n-grid, a truth in a cell corner: IoU 0 (S5)."""
    n = draw(_sampled_from((1, 2, 4)))
    i, j = draw(_integers(0, n - 1)), draw(_integers(0, n - 1))
    side = 1 / (8 * n)
    return _with_truth(draw, d, [j / n, i / n, j / n + side, i / n + side],
                       priors=grid_priors(n, [1 / (2 * n)]))


@st.composite
def ssd_many_positives(draw, d: SsdDraft) -> SsdDraft:
    """Few priors (1..4) and 2..5 more truths per image: positives outnumber negatives."""
    truths = tuple(np.concatenate([t, _truths(draw, d.num_classes, draw(_integers(2, 5)))])
                   for t in d.truths)
    return replace(d, priors=_random_priors(draw, max_priors=4), truths=truths)


@st.composite
def ssd_tiny_extreme(draw, d: SsdDraft) -> SsdDraft:
    """A tiny truth (side 2**-9 .. 2**-14), an extreme aspect (full width or height, tiny
    other side) or the whole image."""
    tiny = 2.0 ** -draw(_integers(9, 14))
    x0 = draw(_integers(0, 2**COORD_BITS - 1)) / 2**COORD_BITS
    box = draw(st.sampled_from(([x0, x0, x0 + tiny, x0 + tiny], [0.0, x0, 1.0, x0 + tiny],
                                [x0, 0.0, x0 + tiny, 1.0], [0.0, 0.0, 1.0, 1.0])))
    return _with_truth(draw, d, box)


@st.composite
def ssd_no_truths(draw, d: SsdDraft) -> SsdDraft:
    """Images without truths: the whole batch, or one image emptied (S12, S13)."""
    if draw(st.booleans()):
        b = draw(_integers(0, len(d.truths) - 1))
        return replace(d, truths=d.truths[:b] + (d.truths[b][:0],) + d.truths[b + 1:])
    return replace(d, truths=tuple(t[:0] for t in d.truths))


@st.composite
def ssd_near_tie(draw, d: SsdDraft) -> SsdDraft:
    """A threshold or tie case moved by 2**-30: decided in float64, tied in float32.

    The sign that changes the decision in float32 comes first (drawn more often, kept by
    shrinking): an IoU just below the threshold (positive once rounded), a truth nearer
    the later of two tied priors (the earlier wins the float32 tie).
    """
    builder, signs = draw(_sampled_from(((ssd_threshold_iou, (-NEAR, NEAR)), (ssd_tied_priors, (NEAR, -NEAR)))))
    return draw(builder(d, offset=draw(_sampled_from(signs))))


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


def ssd_cases(max_batch: int = 3, max_truths: int = 4, max_classes: int = 6,
              realistic: bool = True, features=SSD_FEATURES) -> st.SearchStrategy[SsdCase]:
    """Valid ``SsdCase``s with one adversarial feature of ``features`` each.

    max_batch images (1 with SSD300 priors), 0..max_truths truths per image, C in
    2..max_classes (background included). ``realistic`` allows, rarely, SSD300's 8732
    priors. ``features`` restricts the mix (names from SSD_FEATURES, drawn uniformly,
    shrinking towards the first); InvalidArgument for an unknown name.
    """
    return _ssd_cases(max_batch, max_truths, max_classes, realistic,
                      _check_features(features, SSD_FEATURES))


@st.composite
def _ssd_cases(draw, max_batch, max_truths, max_classes, realistic, features):
    feature = draw(_sampled_from(features))
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
    loc = logits(draw, (batch, num_priors, 4), draw(_sampled_from(("small", "small", "wide"))))
    conf = _any_logits(draw, (batch, num_priors, d.num_classes))
    return SsdCase(loc=loc, conf=conf, priors=d.priors, truths=d.truths, settings=d.settings,
                   name=f"generated ssd {feature}")
