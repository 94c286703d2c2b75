"""Hypothesis strategies of valid YOLOv3 cases: drafts, one composite per adversarial
feature, then head outputs (the logit kinds of conformance/strategies.py).

``yolo_cases`` draws small cases by default (typically under 2k head values) and, rarely,
the YOLOv3-416 layers G = 13 and 26. See conformance/strategies.py for how values are
drawn (every number by Hypothesis, so failures shrink to simple values).
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
    check_features,
    codes,
    integers,
    pick,
    sampled_from,
)
from reference.cases import YoloCase, YoloSettings

YOLO_FEATURES = (
    "plain",
    "shared_cell",
    "anchor_tie",
    "no_targets",
    "ignore_threshold",
    "cell_boundary",
    "tiny_extreme",
    "near_tie",
)
YOLO416_ANCHORS = (((116, 90), (156, 198), (373, 326)), ((30, 61), (62, 45), (59, 119)))


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


def _yolo_draft(
    draw,
    max_batch: int = 3,
    max_layers: int = 2,
    max_targets: int = 8,
    max_classes: int = 6,
    realistic: bool = True,
    dyadic: bool = False,
) -> YoloDraft:
    """A draft with random target rows and settings (``yolo_drafts``: the strategy).

    Small layouts: G0 in 1..8 (1..4 with two layers), G_k = G0 * 2**k, stride of layer 0 a
    power of two, so every stride and scaled anchor is exact. Sometimes an img_dim with an
    inexact stride (100 px); rarely (``realistic``) the YOLOv3-416 layout (G = 13, then 26).
    ``dyadic`` forces small layouts with G0 a power of two (exact k/G boundaries).
    """
    num_layers = draw(integers(1, max_layers))
    kind = (
        "small"
        if dyadic
        else draw(sampled_from(_YOLO_LAYOUTS if realistic else tuple(k for k in _YOLO_LAYOUTS if k != "realistic")))
    )
    event(f"yolo: layout {kind}")
    if kind == "realistic":
        batch, grids, img_dim = 1, tuple(13 * 2**k for k in range(min(num_layers, 2))), 416.0
        anchors = tuple(np.array(YOLO416_ANCHORS[k], dtype=np.float64) for k in range(len(grids)))
        num_classes = draw(integers(1, min(3, max_classes)))
    else:
        g0_choices = (2, 4, 1, 8) if dyadic else tuple(range(1, 9))
        g0 = draw(sampled_from(tuple(g for g in g0_choices if num_layers == 1 or g <= 4)))
        grids = tuple(g0 * 2**k for k in range(num_layers))
        img_dim = 100.0 if kind == "inexact" else float(g0 * draw(sampled_from((8, 16, 32))))
        anchors = tuple(draw(anchor_sets(img_dim)) for _ in grids)  # (cached strategy)
        batch = draw(integers(1, max_batch))
        num_classes = draw(integers(1, max_classes))
    rows = draw(st.lists(yolo_target_row(batch, num_classes), max_size=max_targets))
    return YoloDraft(
        batch=batch,
        grids=grids,
        img_dim=img_dim,
        anchors=anchors,
        num_classes=num_classes,
        targets=np.array(rows, dtype=np.float64).reshape(-1, 6),
        settings=_yolo_settings(draw),
    )


yolo_drafts = st.composite(_yolo_draft)


@functools.cache
def anchor_sets(img_dim: float) -> st.SearchStrategy[np.ndarray]:
    """(A, 2) float64 anchors in pixels, A in 1..3, integer sides in [1, img_dim]."""
    return hnp.arrays(
        np.float64, st.tuples(integers(1, 3), st.just(2)), elements=integers(1, int(img_dim)), fill=st.nothing()
    )


@functools.cache
def yolo_target_row(batch: int, num_classes: int) -> st.SearchStrategy[tuple]:
    """One target row (b, class, cx, cy, w, h) as one choice (``codes``): cx, cy k/256 in
    [0, 1], w, h k/256 in (0, 1]; shrinks towards (0, 0, 0, 0, 1/256, 1/256)."""
    return codes(6).map(functools.partial(_target_row, batch, num_classes))


def _target_row(batch: int, num_classes: int, c: np.ndarray) -> tuple:
    scale = 2**COORD_BITS
    b, cls = pick(c[0], batch), pick(c[1], num_classes)
    cx, cy = pick(c[2:4], scale + 1) / scale
    w, h = (1 + pick(c[4:6], scale)) / scale
    return (float(b), float(cls), float(cx), float(cy), float(w), float(h))


def _yolo_settings(draw) -> YoloSettings:
    """The seed's settings or (event "yolo: non-default settings") others: ignore_thres,
    scales and log clamps, each shrinking towards the seed's value."""
    if draw(st.booleans()):
        event("yolo: non-default settings")
        return YoloSettings(
            ignore_thres=draw(sampled_from((0.5, 0.0, 0.25, 0.7, 1.0))),
            obj_scale=draw(sampled_from((1.0, 0.5, 2.0))),
            noobj_scale=draw(sampled_from((100.0, 1.0, 0.5))),
            log_clamp=draw(sampled_from((-100.0, -20.0, -60.0))),
        )
    return YoloSettings()


def _one_row(draw, d: YoloDraft) -> np.ndarray:
    """A new (6,) target row to build a feature on: a copy of a drawn row of ``d``, or fresh."""
    if len(d.targets) and draw(st.booleans()):
        return d.targets[draw(integers(0, len(d.targets) - 1))].copy()
    return np.array(draw(yolo_target_row(d.batch, d.num_classes)), dtype=np.float64)


def _with_rows(draw, d: YoloDraft, new: np.ndarray, **changes) -> YoloDraft:
    """``d`` with ``new`` (k, 6) inserted at a drawn position (target order matters, Y5)."""
    at = draw(integers(0, len(d.targets)))
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
    base = (
        d.targets[draw(integers(0, len(d.targets) - 1))]
        if existing
        else np.array(draw(yolo_target_row(d.batch, d.num_classes)), dtype=np.float64)
    )
    copies = np.repeat(base[None], draw(integers(1, 2)) + (0 if existing else 1), axis=0)
    copies[:, 1] = [draw(integers(0, d.num_classes - 1)) for _ in copies]
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
    Three times in four, the next anchor (appended to a single one) takes the target's
    own size, so that it is the best anchor and the ignore rule alone decides the other
    one's cell (else the IoU-t anchor may be the best, placed whatever the rule).
    Needs a layout with a power-of-two stride for layer 0 (``yolo_drafts(dyadic=True)``).
    """
    t = draw(sampled_from((0.5, 0.25, 0.75)))
    g0 = d.grids[0]
    stride = d.img_dim / g0
    p, q = draw(integers(1, g0)), draw(integers(1, g0))
    idx = draw(integers(0, len(d.anchors[0]) - 1))
    new = _one_row(draw, d)
    anchor, own = np.array([p, q]) * stride, np.array([t * p, q]) * stride  # own: the target's size, pixels
    new[4:6] = own / d.img_dim + [offset, 0.0]
    if draw(st.booleans()):  # the transposed target: IoU t with the transposed anchor
        anchor, own, new[4:6] = anchor[::-1], own[::-1], new[5:3:-1]
    a = d.anchors[0].copy()
    a[idx] = anchor
    if draw(sampled_from((True, True, True, False))):  # another anchor is the best: IoU 1
        a = np.concatenate([a, own[None]]) if len(a) == 1 else a
        a[(idx + 1) % len(a)] = own
    return _with_rows(draw, _with_layer0_anchors(d, a), new, settings=replace(d.settings, ignore_thres=t))


@st.composite
def yolo_cell_boundary(draw, d: YoloDraft) -> YoloDraft:
    """A target centred on a cell boundary (Y3): interior (cx*G or cy*G an integer in
    [1, G-1] for a layer with G >= 2; twice as likely) or at the image edge (cx or cy in {0, 1})."""
    new = _one_row(draw, d)
    grids = tuple(g for g in d.grids if g > 1)
    variant = draw(sampled_from(("interior", "interior", "edge"))) if grids else "edge"
    event(f"yolo: cell boundary {variant}")
    cols = draw(sampled_from(((2,), (3,), (2, 3))))
    g = draw(sampled_from(grids)) if variant == "interior" else None
    for col in cols:
        new[col] = draw(integers(1, g - 1)) / g if g else draw(sampled_from((0.0, 1.0)))
    return _with_rows(draw, d, new)


@st.composite
def yolo_tiny_extreme(draw, d: YoloDraft) -> YoloDraft:
    """Tiny boxes (side 2**-9 .. 2**-14), extreme aspects (one side 1, the other tiny), w = h = 1."""
    new = _one_row(draw, d)
    tiny = 2.0 ** -draw(integers(9, 14))
    new[4], new[5] = draw(sampled_from(((tiny, tiny), (1.0, tiny), (tiny, 1.0), (1.0, 1.0))))
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
    which = draw(sampled_from(("cx_one", "cell_edge", "anchors", "ignore")))
    event(f"yolo: near tie {which}")
    if which == "ignore":
        return draw(yolo_ignore_threshold(d, draw(sampled_from((NEAR, -NEAR)))))
    new = _one_row(draw, d)
    g = d.grids[-1]
    if which == "cx_one" or (which == "cell_edge" and g == 1):
        new[2] = 1.0 - NEAR
    elif which == "cell_edge":
        new[2] = draw(integers(1, g - 1)) / g + draw(sampled_from((-NEAR, NEAR)))
    else:
        g0 = d.grids[0]
        unit = d.img_dim / g0 / (2 if g0 == 1 else 1)  # keeps the target side <= 1
        pair = np.array([[unit, 2 * unit], [2 * unit, unit]])
        d = _with_layer0_anchors(d, np.concatenate([pair, d.anchors[0][:1]]))
        new[4] = new[5] = 1.5 * unit / d.img_dim
        col, offset = draw(sampled_from(((4, NEAR), (5, -NEAR), (4, -NEAR), (5, NEAR))))
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


def yolo_cases(
    max_batch: int = 3,
    max_layers: int = 2,
    max_targets: int = 8,
    max_classes: int = 6,
    realistic: bool = True,
    features=YOLO_FEATURES,
) -> st.SearchStrategy[YoloCase]:
    """Valid ``YoloCase``s with one adversarial feature of ``features`` each.

    max_batch, max_layers, max_targets (random rows; a feature adds up to 3), max_classes
    bound the small cases; ``realistic`` allows, rarely, the YOLOv3-416 layers (G = 13,
    26). ``features`` restricts the mix (names from YOLO_FEATURES, drawn uniformly,
    shrinking towards the first); InvalidArgument for an unknown name.
    """
    return _yolo_cases(
        max_batch, max_layers, max_targets, max_classes, realistic, check_features(features, YOLO_FEATURES)
    )


@st.composite
def _yolo_cases(draw, max_batch, max_layers, max_targets, max_classes, realistic, features):
    feature = draw(sampled_from(features))
    exact = feature in _YOLO_EXACT
    d = _yolo_draft(draw, max_batch, max_layers, max_targets, max_classes, realistic and not exact, exact)
    d = draw(YOLO_BUILDERS[feature](d))
    event(f"yolo: {feature.replace('_', ' ')}")
    if len(d.targets) == 0:
        event("yolo: batch without targets")
    elif len(np.unique(d.targets[:, 0])) < d.batch:
        event("yolo: image without targets")
    outputs = tuple(any_logits(draw, (d.batch, len(a) * (d.num_classes + 5), g, g)) for g, a in zip(d.grids, d.anchors))
    return YoloCase(
        outputs=outputs,
        anchors=d.anchors,
        targets=d.targets,
        num_classes=d.num_classes,
        img_dim=d.img_dim,
        settings=d.settings,
        name=f"generated yolo {feature}",
    )


FEATURES = YOLO_FEATURES  # one property test each (Family.of)


def cases(features=YOLO_FEATURES):
    """The strategy of valid cases with one of ``features`` each (Family.of)."""
    return yolo_cases(features=features)
