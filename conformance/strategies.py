"""Hypothesis strategies that generate valid YOLOv3 and SSD conformance cases.

``yolo_cases`` and ``ssd_cases`` draw small cases by default (a YOLO case has typically
under 2k head values, an SSD case under 200 priors) and, rarely, realistic sizes
(YOLOv3-416 G = 13 layer, SSD300's 8732 priors). Each case carries one adversarial
feature, drawn with weights from ``YOLO_FEATURES`` / ``SSD_FEATURES`` (plain random cases
included), plus one kind of logits from ``LOGIT_KINDS``. Every feature and kind is
reported with ``hypothesis.event`` ("yolo: shared cell", "ssd: logits saturated", ...),
so ``--hypothesis-show-statistics`` shows what a run covered.

Every generated case is valid per Y13 / S14. Coordinates, sizes, anchors and logits are
binary fractions k / 2**m with few significant bits, so float64, float32 and (for
logits and coordinates) float16 and bfloat16 see the same numbers; only the "near tie"
feature and logit kind add offsets of 2**-30 that vanish when the case is rounded to
float32, to reach inputs whose decisions differ between float64 and float32.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import event
from hypothesis import strategies as st

from reference.cases import SsdCase, SsdSettings, YoloCase, YoloSettings

try:  # the prior layouts of S1; hand-made grids are used when it is missing
    from reference.priors import VOC_300, PriorConfig, prior_boxes
except ImportError:  # pragma: no cover - only while reference/priors.py is being written
    PriorConfig = prior_boxes = VOC_300 = None

COORD_BITS = 8  # coordinates are k / 256
NEAR = 2.0**-30  # an offset that float32 rounds away near 0.25 .. 1 (its ulp there is >= 2**-25)

YOLO_FEATURES = ("plain", "shared_cell", "anchor_tie", "no_targets", "ignore_threshold",
                 "cell_boundary", "tiny_extreme", "near_tie")
SSD_FEATURES = ("plain", "threshold_iou", "tied_priors", "shared_best_prior", "no_overlap",
                "many_positives", "tiny_extreme", "no_truths", "near_tie")
LOGIT_KINDS = ("small", "wide", "saturated", "tied", "near_tie", "spread")
SATURATED = (-120.0, -40.0, -30.0, -27.625, -17.0, -16.5, 16.5, 17.0, 27.625, 30.0, 40.0, 120.0)
SPREAD = (0.0, -120.0, -800.0)  # row offsets: far below the batch max in float32 / float64

YOLO416_ANCHORS = (((116, 90), (156, 198), (373, 326)), ((30, 61), (62, 45), (59, 119)))


# ---------------------------------------------------------------- numbers and arrays

def binary_fractions(lo: float, hi: float, bits: int = COORD_BITS) -> st.SearchStrategy[float]:
    """Floats k / 2**bits in [lo, hi] (lo, hi multiples of 2**-bits): exact in float32."""
    scale = 2**bits
    return st.integers(int(np.ceil(lo * scale)), int(np.floor(hi * scale))).map(lambda k: k / scale)


def _weighted(choices: tuple, weights: tuple) -> st.SearchStrategy:
    """sampled_from with integer weights (each choice repeated ``weight`` times).

    Hypothesis favours the first and last index of a sampled_from, so the heaviest choice
    is put at both ends; the first choice of ``choices`` is what examples shrink towards.
    """
    heavy = int(np.argmax(weights))
    middle = [c for k, (c, w) in enumerate(zip(choices, weights)) if k != heavy for _ in range(w)]
    w = weights[heavy]
    pool = [choices[heavy]] * ((w + 1) // 2) + middle + [choices[heavy]] * (w // 2)
    return st.sampled_from(pool)


def _choose(draw, choices: tuple, default_weight: int = 1, plain_weight: int = 3):
    """One of ``choices``, "plain" (when present) ``plain_weight`` times as likely."""
    weights = tuple(plain_weight if c == "plain" else default_weight for c in choices)
    return draw(_weighted(tuple(choices), weights))


def _rng(draw) -> np.random.Generator:
    """A NumPy generator seeded from one drawn integer (bulk arrays: fast to generate)."""
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def logits(rng: np.random.Generator, shape, kind: str) -> np.ndarray:
    """float64 logits of ``shape`` (binary fractions with at most 8 significant bits).

    small: k/64 in [-4, 4]; wide: k/4 in [-60, 60]; saturated: mostly values of SATURATED
    (σ rounds to exactly 0 or 1 in float32 from about 17, in float64 from about 37; p(1 − p)
    < 1e-12 beyond 27.6; -120 puts log p below the -100 clamp) with small values between;
    tied: values from {-1, 0, 1} (argmax and ranking ties); near_tie: tied plus 2**-30 in
    half the entries of +-1 (distinct in float64, equal once rounded to float32); spread:
    small values, each row (last axis) shifted by one of SPREAD, so that a logsumexp
    shifted by one global max instead of the row's own underflows (S9); the shifted rows
    have their first entry (SSD's background) 4 lower: hard negatives that mining takes.
    """
    small = rng.integers(-256, 257, size=shape) / 64.0
    if kind == "small":
        return small
    if kind == "wide":
        return rng.integers(-240, 241, size=shape) / 4.0
    if kind == "saturated":
        return np.where(rng.random(shape) < 0.7, rng.choice(SATURATED, size=shape), small)
    if kind == "spread":
        offset = rng.choice(SPREAD, size=tuple(shape[:-1]) + (1,))
        out = small + offset
        out[..., :1] -= 4.0 * (offset < 0)
        return out
    tied = rng.integers(-1, 2, size=shape).astype(np.float64)
    if kind == "tied":
        return tied
    return tied + NEAR * rng.integers(0, 2, size=shape) * (tied != 0)  # 0 + 2**-30 is exact


@st.composite
def logit_arrays(draw, shape) -> np.ndarray:
    """Logits of one drawn kind (labelled with event "logits <kind>")."""
    kind = draw(_weighted(LOGIT_KINDS, (4, 1, 2, 1, 1, 2)))
    event(f"logits {kind}")
    return logits(_rng(draw), shape, kind)


def _box_corners(draw, max_side: float = 1.0) -> list:
    """[xmin, ymin, xmax, ymax] binary fractions with 0 <= min < max <= 1, sides <= max_side."""
    scale = 2**COORD_BITS
    box = []
    for _ in range(2):
        side = draw(st.integers(1, int(max_side * scale)))
        lo = draw(st.integers(0, scale - side))
        box.append((lo, lo + side))
    (x0, x1), (y0, y1) = box
    return [x0 / scale, y0 / scale, x1 / scale, y1 / scale]


# ---------------------------------------------------------------- YOLO layout

@st.composite
def yolo_layout(draw, max_batch: int = 3, max_layers: int = 2, max_classes: int = 6,
                realistic: bool = True, dyadic: bool = False) -> dict:
    """batch, grids (one per layer), img_dim (pixels), anchors (per layer (A, 2) pixels), classes.

    Small layouts: G0 in 1..8 (1..4 with two layers), G_k = G0 * 2**k, stride of layer 0 a
    power of two, so every stride and scaled anchor is exact. Sometimes an img_dim with an
    inexact stride (100 px); rarely the YOLOv3-416 layout (G = 13, then 26). ``dyadic``
    forces powers of two for G0 (exact k/G boundaries).
    """
    num_layers = draw(st.integers(1, max_layers))
    kind = "small" if dyadic else draw(_weighted(("small", "inexact", "realistic"),
                                                 (12, 2, 1 if realistic else 0)))
    event(f"yolo: layout {kind}")
    if kind == "realistic":
        grids = tuple(13 * 2**k for k in range(min(num_layers, 2)))
        anchors = tuple(np.array(YOLO416_ANCHORS[k], dtype=np.float64) for k in range(len(grids)))
        return dict(batch=1, grids=grids, img_dim=416.0, anchors=anchors,
                    num_classes=draw(st.integers(1, min(3, max_classes))))
    g0_choices = (2, 4, 1, 8) if dyadic else tuple(range(1, 9 if num_layers == 1 else 5))
    g0 = draw(st.sampled_from(g0_choices if num_layers == 1 else tuple(g for g in g0_choices if g <= 4)))
    grids = tuple(g0 * 2**k for k in range(num_layers))
    img_dim = 100.0 if kind == "inexact" else float(g0 * draw(st.sampled_from((8, 16, 32))))
    anchors = tuple(draw(_anchor_set(img_dim)) for _ in grids)
    return dict(batch=draw(st.integers(1, max_batch)), grids=grids, img_dim=img_dim,
                anchors=anchors, num_classes=draw(st.integers(1, max_classes)))


@st.composite
def _anchor_set(draw, img_dim: float) -> np.ndarray:
    """(A, 2) anchors in pixels, A in 1..3, integer sides in [1, img_dim]."""
    num = draw(st.integers(1, 3))
    side = st.integers(1, int(img_dim))
    return np.array([[draw(side), draw(side)] for _ in range(num)], dtype=np.float64)


@st.composite
def yolo_target_rows(draw, batch: int, num_classes: int, max_targets: int) -> np.ndarray:
    """(T, 6) rows [b, class, cx, cy, w, h]; T in 0..max_targets, coordinates k/256."""
    count = draw(st.integers(0, max_targets))
    rows = [draw(yolo_target_row(batch, num_classes)) for _ in range(count)]
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def yolo_target_row(batch: int, num_classes: int) -> st.SearchStrategy[tuple]:
    """One target row (b, class, cx, cy, w, h): cx, cy k/256 in [0, 1], w, h k/256 in (0, 1]."""
    return st.tuples(st.integers(0, batch - 1), st.integers(0, num_classes - 1),
                     binary_fractions(0, 1), binary_fractions(0, 1),
                     binary_fractions(2**-COORD_BITS, 1), binary_fractions(2**-COORD_BITS, 1))


def _one_row(draw, lay: dict, rows: np.ndarray) -> np.ndarray:
    """A target row to build a feature on: a drawn existing row, or a fresh one."""
    if len(rows) and draw(st.booleans()):
        return rows[draw(st.integers(0, len(rows) - 1))].copy()
    return np.array(draw(yolo_target_row(lay["batch"], lay["num_classes"])), dtype=np.float64)


def _insert(draw, rows: np.ndarray, new: np.ndarray) -> np.ndarray:
    """rows with ``new`` (k, 6) inserted at a drawn position (target order matters, Y5)."""
    at = draw(st.integers(0, len(rows)))
    return np.concatenate([rows[:at], new.reshape(-1, 6), rows[at:]])


# ---------------------------------------------------------------- YOLO features

def _yolo_shared_cell(draw, lay, rows, settings):
    """Two or more targets on one (b, anchor, cell): copies of a row with drawn classes.

    The copies follow an existing row (inserted anywhere, so before or after it) or
    come as a group of 2..3 fresh rows.
    """
    existing = len(rows) > 0 and draw(st.booleans())
    base = rows[draw(st.integers(0, len(rows) - 1))] if existing else \
        np.array(draw(yolo_target_row(lay["batch"], lay["num_classes"])), dtype=np.float64)
    copies = np.repeat(base[None], draw(st.integers(1, 2)) + (0 if existing else 1), axis=0)
    copies[:, 1] = [draw(st.integers(0, lay["num_classes"] - 1)) for _ in copies]
    return _insert(draw, rows, copies), settings


def _yolo_anchor_tie(draw, lay, rows, settings):
    """Layer 0 gets anchors (p, q) and (q, p) (or a duplicate); a square target ties them."""
    a = lay["anchors"][0]
    p, q = a[0]
    pair = np.array([[p, q], [q, p]]) if draw(st.booleans()) else np.array([[p, q], [p, q]])
    lay["anchors"] = (np.concatenate([pair, a[1:2]]),) + lay["anchors"][1:]
    new = _one_row(draw, lay, rows)
    new[5] = new[4]
    return _insert(draw, rows, new), settings


def _yolo_ignore_threshold(draw, lay, rows, settings, offset: float = 0.0):
    """A target whose wh-IoU with an anchor of layer 0 is exactly ignore_thres (Y4).

    Anchor (p, q) cells with p, q >= 1 (so the 1e-16 of Y2 vanishes), target (t p, q)
    cells: inter = t p q, union = p q, IoU = t exactly in binary arithmetic. ``offset``
    is added to the target's w (the near-tie variant: IoU just above or below t).
    Needs a layout with a power-of-two stride for layer 0 (``yolo_layout(dyadic=True)``).
    """
    t = draw(st.sampled_from((0.5, 0.25, 0.75, 0.5)))
    settings = replace(settings, ignore_thres=t)
    g0 = lay["grids"][0]
    stride = lay["img_dim"] / g0
    p, q = draw(st.integers(1, g0)), draw(st.integers(1, g0))
    a = lay["anchors"][0].copy()
    idx = draw(st.integers(0, len(a) - 1))
    a[idx] = (p * stride, q * stride)
    lay["anchors"] = (a,) + lay["anchors"][1:]
    new = _one_row(draw, lay, rows)
    new[4], new[5] = t * p / g0 + offset, q / g0
    if draw(st.booleans()):  # the transposed target: IoU t with the transposed anchor
        a[idx] = a[idx][::-1]
        new[4], new[5] = new[5], new[4]
    return _insert(draw, rows, new), settings


def _yolo_cell_boundary(draw, lay, rows, settings):
    """A target centred on a cell boundary (Y3): interior (cx*G or cy*G an integer in
    [1, G-1] for a layer with G >= 2) or at the image edge (cx or cy in {0, 1})."""
    new = _one_row(draw, lay, rows)
    grids = [g for g in lay["grids"] if g > 1]
    variant = draw(_weighted(("interior", "edge"), (2, 1))) if grids else "edge"
    event(f"yolo: cell boundary {variant}")
    cols = draw(st.sampled_from(((2,), (3,), (2, 3))))
    if variant == "interior":
        g = draw(st.sampled_from(grids))
        for col in cols:
            new[col] = draw(st.integers(1, g - 1)) / g
    else:
        for col in cols:
            new[col] = draw(st.sampled_from((0.0, 1.0)))
    return _insert(draw, rows, new), settings


def _yolo_tiny_extreme(draw, lay, rows, settings):
    """Tiny boxes (side 2**-9 .. 2**-14), extreme aspects (one side 1, the other tiny), w = h = 1."""
    new = _one_row(draw, lay, rows)
    tiny = 2.0 ** -draw(st.integers(9, 14))
    new[4], new[5] = draw(st.sampled_from(((tiny, tiny), (1.0, tiny), (tiny, 1.0), (1.0, 1.0))))
    return _insert(draw, rows, new), settings


def _yolo_no_targets(draw, lay, rows, settings):
    """A batch without any target (Y8)."""
    return rows[:0], settings


def _yolo_near_tie(draw, lay, rows, settings):
    """Values 2**-30 off a decision boundary; rounded to float32 they land on it exactly.

    cx_one: cx = 1 - 2**-30 (1.0 in float32, the seed's IndexError); cell_edge: cx =
    k/G +- 2**-30 (Y3 cell); anchors: anchors (1, 2) and (2, 1) cells (halved when G = 1),
    target (1.5, 1.5) cells with w or h off by 2**-30 (Y2 best anchor); ignore: wh-IoU = ignore_thres +- tiny
    (Y4). Needs ``yolo_layout(dyadic=True)``.
    """
    which = draw(st.sampled_from(("cx_one", "cell_edge", "anchors", "ignore")))
    event(f"yolo: near tie {which}")
    offset = draw(st.sampled_from((-NEAR, NEAR)))
    if which == "ignore":
        return _yolo_ignore_threshold(draw, lay, rows, settings, offset)
    new = _one_row(draw, lay, rows)
    if which == "cx_one":
        new[2] = 1.0 - NEAR
    elif which == "cell_edge":
        g = lay["grids"][-1]
        new[2] = draw(st.integers(1, g - 1)) / g + offset if g > 1 else 1.0 - NEAR
    else:
        g0 = lay["grids"][0]
        unit = lay["img_dim"] / g0 / (2 if g0 == 1 else 1)  # keeps the target side <= 1
        a = lay["anchors"][0]
        pair = np.array([[unit, 2 * unit], [2 * unit, unit]])
        lay["anchors"] = (np.concatenate([pair, a[:1]]),) + lay["anchors"][1:]
        new[4] = new[5] = 1.5 * unit / lay["img_dim"]
        new[draw(st.sampled_from((4, 5)))] += offset
    return _insert(draw, rows, new), settings


# feature name -> builder(draw, lay, rows, settings) -> (rows, settings); a builder may
# replace lay["anchors"] (the head outputs are drawn afterwards, sized by the anchors)
_YOLO_BUILDERS = {
    "plain": lambda draw, lay, rows, settings: (rows, settings),
    "shared_cell": _yolo_shared_cell,
    "anchor_tie": _yolo_anchor_tie,
    "ignore_threshold": _yolo_ignore_threshold,
    "cell_boundary": _yolo_cell_boundary,
    "tiny_extreme": _yolo_tiny_extreme,
    "no_targets": _yolo_no_targets,
    "near_tie": _yolo_near_tie,
}


@st.composite
def yolo_settings(draw) -> YoloSettings:
    """Mostly the seed's settings; sometimes other ignore_thres, scales and log clamps."""
    if draw(_weighted((True, False), (4, 1))):
        return YoloSettings()
    event("yolo: non-default settings")
    return YoloSettings(ignore_thres=draw(st.sampled_from((0.0, 0.25, 0.5, 0.7, 1.0))),
                        obj_scale=draw(st.sampled_from((1.0, 0.5, 2.0))),
                        noobj_scale=draw(st.sampled_from((100.0, 1.0, 0.5))),
                        log_clamp=draw(st.sampled_from((-100.0, -20.0, -60.0))))


@st.composite
def yolo_cases(draw, max_batch: int = 3, max_layers: int = 2, max_targets: int = 8,
               max_classes: int = 6, realistic: bool = True, features=YOLO_FEATURES):
    """Valid ``YoloCase``s with one adversarial feature of ``features`` each.

    max_batch, max_layers, max_targets (random rows; a feature adds up to 3), max_classes
    bound the small cases; ``realistic`` allows, rarely, the YOLOv3-416 layers (G = 13,
    26). ``features`` restricts the mix (names from YOLO_FEATURES; "plain" is weighted
    3:1 against each other feature).
    """
    feature = _choose(draw, features)
    exact = feature in ("ignore_threshold", "cell_boundary", "near_tie")
    lay = draw(yolo_layout(max_batch, max_layers, max_classes, realistic and not exact, exact))
    rows = draw(yolo_target_rows(lay["batch"], lay["num_classes"], max_targets))
    rows, settings = _YOLO_BUILDERS[feature](draw, lay, rows, draw(yolo_settings()))
    event(f"yolo: {feature.replace('_', ' ')}")
    _yolo_count_events(rows, lay["batch"])
    outputs = tuple(draw(logit_arrays((lay["batch"], len(a) * (lay["num_classes"] + 5), g, g)))
                    for g, a in zip(lay["grids"], lay["anchors"]))
    return YoloCase(outputs=outputs, anchors=tuple(lay["anchors"]), targets=rows,
                    num_classes=lay["num_classes"], img_dim=lay["img_dim"], settings=settings,
                    name=f"generated yolo {feature}")


def _yolo_count_events(rows: np.ndarray, batch: int) -> None:
    """Events for empty batches and images without targets."""
    if len(rows) == 0:
        event("yolo: batch without targets")
    elif len(np.unique(rows[:, 0])) < batch:
        event("yolo: image without targets")


# ---------------------------------------------------------------- SSD priors

def grid_priors(n: int, sizes) -> np.ndarray:
    """(n*n*len(sizes), 4) centre-size priors: centres ((j+0.5)/n, (i+0.5)/n), row i, column j."""
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    centres = (np.arange(n) + 0.5) / n
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    out = np.empty((n, n, len(sizes), 4))
    out[..., 0], out[..., 1] = cx[..., None], cy[..., None]
    out[..., 2:] = sizes
    return out.reshape(-1, 4)


@st.composite
def grid_prior_sets(draw, dyadic: bool = True, min_n: int = 1) -> np.ndarray:
    """Hand-made grid priors: n in {1, 2, 4, 8} (or {3, 5, 6}), n >= min_n, 1..3 sizes.

    Sizes are binary fractions (1/8 .. 1) * 4/n, capped at 1.
    """
    n = draw(st.sampled_from([n for n in ((2, 4, 1, 8) if dyadic else (3, 5, 6)) if n >= min_n]))
    side = st.sampled_from((1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1.0)).map(lambda s: min(1.0, s * 4 / n))
    sizes = draw(st.lists(st.tuples(side, side), min_size=1, max_size=3))
    return grid_priors(n, sizes)


@st.composite
def config_prior_sets(draw) -> np.ndarray:
    """Priors of a small custom PriorConfig (S1's layout on 1..3 maps), clip on or off."""
    maps = draw(st.sampled_from(((4, 2, 1), (3, 1), (5, 3, 1), (2,), (4, 2))))
    image = 300.0
    mins = sorted(draw(st.lists(st.integers(20, 250), min_size=len(maps), max_size=len(maps),
                                unique=True)))
    ratios = tuple(draw(st.sampled_from(((), (2,), (2, 3)))) for _ in maps)
    config = PriorConfig(feature_maps=maps, steps=tuple(image / f for f in maps), image_size=image,
                         min_sizes=tuple(mins), max_sizes=tuple(m + 40 for m in mins),
                         aspect_ratios=ratios, clip=draw(st.booleans()))
    return prior_boxes(config)


@st.composite
def random_prior_sets(draw, max_priors: int = 16) -> np.ndarray:
    """1..max_priors centre-size priors, binary fractions, w and h in (0, 1]."""
    num = draw(st.integers(1, max_priors))
    rows = [_centre_size(_box_corners(draw)) for _ in range(num)]
    return np.array(rows, dtype=np.float64)


def _centre_size(b) -> list:
    return [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]]


@st.composite
def prior_sets(draw, realistic: bool = True, dyadic: bool = False) -> np.ndarray:
    """Prior sets: grids, small configs, random boxes; rarely SSD300 (8732 priors).

    ``dyadic`` keeps to exact binary-fraction priors (dyadic grids, random boxes).
    """
    kinds = ("grid", "random") if dyadic else ("grid", "odd grid", "config", "random", "ssd300")
    weights = (3, 1) if dyadic else (12, 2, 4 if PriorConfig else 0, 4, 1 if realistic and VOC_300 else 0)
    kind = draw(_weighted(kinds, weights))
    event(f"ssd: priors {kind}")
    if kind == "ssd300":
        return prior_boxes(VOC_300)
    if kind == "config":
        return draw(config_prior_sets())
    if kind == "random":
        return draw(random_prior_sets())
    return draw(grid_prior_sets(dyadic=kind == "grid"))


# ---------------------------------------------------------------- SSD truths and features

def _truth(draw, num_classes: int, box=None) -> np.ndarray:
    """One truth row [xmin, ymin, xmax, ymax, label]; label in [0, C-2]."""
    box = _box_corners(draw) if box is None else box
    return np.array(list(box) + [draw(st.integers(0, num_classes - 2))], dtype=np.float64)


@st.composite
def ssd_truth_sets(draw, num_classes: int, max_truths: int) -> np.ndarray:
    """(n, 5) truths of one image, n in 0..max_truths."""
    n = draw(st.integers(0, max_truths))
    return np.array([_truth(draw, num_classes) for _ in range(n)], dtype=np.float64).reshape(-1, 5)


def _inside(priors: np.ndarray) -> np.ndarray:
    """Indices of priors whose corner box lies inside [0, 1]."""
    lo, hi = priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2
    return np.flatnonzero((lo >= 0).all(axis=1) & (hi <= 1).all(axis=1))


def _add(draw, truths: list, new: np.ndarray) -> list:
    """Truths with ``new`` (k, 5) inserted into a drawn image at a drawn position."""
    b = draw(st.integers(0, len(truths) - 1))
    at = draw(st.integers(0, len(truths[b])))
    out = list(truths)
    out[b] = np.concatenate([truths[b][:at], new.reshape(-1, 5), truths[b][at:]])
    return out


def _ssd_threshold_iou(draw, priors, truths, settings, C, offset: float = 0.0):
    """A truth and a prior with IoU exactly == threshold t (S6), from a prior k inside [0, 1].

    sub-box: the truth is prior k with one side scaled by t (prior k may be its forced
    prior). extra prior: the truth is prior k itself (forced there, IoU 1) and a new prior
    at its centre with width t * w gets IoU t without being forced. ``offset`` moves the
    scaled side (the near-tie variant: IoU just above or below t).
    """
    t = draw(st.sampled_from((0.5, 0.25, 0.75, 0.5)))
    settings = replace(settings, threshold=t)
    inside = _inside(priors)
    if len(inside) == 0:
        return truths, settings, priors
    k = draw(st.sampled_from(inside.tolist()))
    x0, y0, x1, y1 = _corners(priors[k])
    variant = draw(st.sampled_from(("extra prior", "sub-box x", "sub-box y")))
    event(f"ssd: threshold iou {variant}")
    if variant == "extra prior":
        extra = priors[k].copy()
        extra[2] = t * extra[2] + offset
        return _add(draw, truths, _truth(draw, C, [x0, y0, x1, y1])), settings, \
            np.concatenate([priors, extra[None]])
    if variant == "sub-box x":
        box = [x0, y0, x0 + t * (x1 - x0) + offset, y1]
    else:
        box = [x0, y0, x1, y0 + t * (y1 - y0) + offset]
    box = [min(max(v, 0.0), 1.0) for v in box]
    return _add(draw, truths, _truth(draw, C, box)), settings, priors


def _corners(prior) -> list:
    cx, cy, w, h = prior
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _ssd_tied_priors(draw, priors, truths, settings, C, offset: float = 0.0):
    """A truth centred half-way between two equal priors of one row or column (S3 tie).

    Prior sets without such a pair are replaced by a dyadic grid with n >= 2.
    """
    pairs = _neighbour_pairs(priors)
    if len(pairs) == 0:
        priors = draw(grid_prior_sets(dyadic=True, min_n=2))
        pairs = _neighbour_pairs(priors)
    i, j = pairs[draw(st.integers(0, len(pairs) - 1))]
    mid = (priors[i, :2] + priors[j, :2]) / 2
    room = np.minimum(mid, 1 - mid)
    half = [room[k] / 2 ** draw(st.integers(0, 3)) for k in range(2)]
    if half[0] <= 0 or half[1] <= 0:
        return truths, settings, priors
    box = [mid[0] - half[0] + offset, mid[1] - half[1], mid[0] + half[0] + offset, mid[1] + half[1]]
    box = [min(max(v, 0.0), 1.0) for v in box]
    return _add(draw, truths, _truth(draw, C, box)), settings, priors


def _neighbour_pairs(priors: np.ndarray) -> list:
    """Pairs (i, j) of priors with equal w, h and one equal centre coordinate."""
    same_size = (priors[:, None, 2:] == priors[None, :, 2:]).all(axis=2)
    one_axis = (priors[:, None, :2] == priors[None, :, :2]).sum(axis=2) == 1
    i, j = np.nonzero(np.triu(same_size & one_axis, k=1))
    return list(zip(i.tolist(), j.tolist()))[:64]


def _ssd_shared_best_prior(draw, priors, truths, settings, C):
    """Two truths with the same best prior: a copy, other label, after the original (S4)."""
    b = draw(st.integers(0, len(truths) - 1))
    first = truths[b][0] if len(truths[b]) else _truth(draw, C)
    copy = first.copy()
    copy[4] = draw(st.integers(0, C - 2))
    out = list(truths)
    rest = truths[b][1:] if len(truths[b]) else truths[b]
    out[b] = np.concatenate([first[None], rest[: draw(st.integers(0, len(rest)))], copy[None]])
    return out, settings, priors


def _ssd_no_overlap(draw, priors, truths, settings, C):
    """Small priors (side 1/(2n)) centred in an n-grid, a truth in a cell corner: IoU 0 (S5)."""
    n = draw(st.sampled_from((1, 2, 4)))
    new_priors = grid_priors(n, [(1 / (2 * n), 1 / (2 * n))])
    i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
    side = 1 / (8 * n)
    box = [j / n, i / n, j / n + side, i / n + side]
    return _add(draw, truths, _truth(draw, C, box)), settings, new_priors


def _ssd_many_positives(draw, priors, truths, settings, C):
    """Few priors (1..4) and several truths per image: positives outnumber negatives."""
    new_priors = draw(random_prior_sets(max_priors=4))
    out = [np.concatenate([t, np.array([_truth(draw, C) for _ in range(draw(st.integers(2, 5)))])])
           for t in truths]
    return out, settings, new_priors


def _ssd_tiny_extreme(draw, priors, truths, settings, C):
    """A tiny truth (side 2**-9 .. 2**-14), an extreme aspect (full width or height, tiny
    other side) or the whole image."""
    tiny = 2.0 ** -draw(st.integers(9, 14))
    x0 = draw(st.integers(0, 2**COORD_BITS - 1)) / 2**COORD_BITS
    box = draw(st.sampled_from(([x0, x0, x0 + tiny, x0 + tiny], [0.0, x0, 1.0, x0 + tiny],
                                [x0, 0.0, x0 + tiny, 1.0], [0.0, 0.0, 1.0, 1.0])))
    return _add(draw, truths, _truth(draw, C, box)), settings, priors


def _ssd_no_truths(draw, priors, truths, settings, C):
    """Images without truths: one image emptied, or the whole batch (S12, S13)."""
    if draw(st.booleans()):
        return [t[:0] for t in truths], settings, priors
    b = draw(st.integers(0, len(truths) - 1))
    return [t[:0] if k == b else t for k, t in enumerate(truths)], settings, priors


def _ssd_near_tie(draw, priors, truths, settings, C):
    """A tie or threshold case moved by 2**-30: decided in float64, tied in float32."""
    offset = draw(st.sampled_from((-NEAR, NEAR)))
    if draw(st.booleans()):
        return _ssd_tied_priors(draw, priors, truths, settings, C, offset=offset)
    return _ssd_threshold_iou(draw, priors, truths, settings, C, offset=offset)


# feature name -> builder(draw, priors, truths, settings, C) -> (truths, settings, priors)
_SSD_BUILDERS = {
    "plain": lambda draw, priors, truths, settings, C: (truths, settings, priors),
    "threshold_iou": _ssd_threshold_iou,
    "tied_priors": _ssd_tied_priors,
    "shared_best_prior": _ssd_shared_best_prior,
    "no_overlap": _ssd_no_overlap,
    "many_positives": _ssd_many_positives,
    "tiny_extreme": _ssd_tiny_extreme,
    "no_truths": _ssd_no_truths,
    "near_tie": _ssd_near_tie,
}


@st.composite
def ssd_settings(draw) -> SsdSettings:
    """Mostly the seed's settings; sometimes other thresholds, neg:pos ratios, variances."""
    if draw(_weighted((True, False), (4, 1))):
        return SsdSettings()
    event("ssd: non-default settings")
    return SsdSettings(threshold=draw(st.sampled_from((0.25, 0.375, 0.5, 0.75, 1.0))),
                       neg_pos=draw(st.sampled_from((0, 1, 3, 7))),
                       variances=draw(st.sampled_from(((0.1, 0.2), (0.125, 0.25), (1.0, 1.0)))))


@st.composite
def ssd_cases(draw, max_batch: int = 3, max_truths: int = 4, max_classes: int = 6,
              realistic: bool = True, features=SSD_FEATURES):
    """Valid ``SsdCase``s with one adversarial feature of ``features`` each.

    max_batch images (1 with SSD300 priors), 0..max_truths truths per image, C in
    2..max_classes (background included). ``realistic`` allows, rarely, SSD300's 8732
    priors. ``features`` restricts the mix (names from SSD_FEATURES; "plain" 3:1).
    """
    feature = _choose(draw, features)
    exact = feature in ("threshold_iou", "tied_priors", "near_tie")
    priors = draw(prior_sets(realistic and not exact, dyadic=exact))
    batch = 1 if len(priors) > 1000 else draw(st.integers(1, max_batch))
    C = draw(st.integers(2, max_classes))
    truths = [draw(ssd_truth_sets(C, max_truths)) for _ in range(batch)]
    truths, settings, priors = _SSD_BUILDERS[feature](draw, priors, truths, draw(ssd_settings()), C)
    event(f"ssd: {feature.replace('_', ' ')}")
    _ssd_count_events(truths)
    loc = logits(_rng(draw), (batch, len(priors), 4), draw(st.sampled_from(("small", "small", "wide"))))
    conf = draw(logit_arrays((batch, len(priors), C)))
    return SsdCase(loc=loc, conf=conf, priors=priors, truths=tuple(truths), settings=settings,
                   name=f"generated ssd {feature}")


def _ssd_count_events(truths) -> None:
    """Events for batches without truths and images without truths."""
    counts = [len(t) for t in truths]
    if sum(counts) == 0:
        event("ssd: batch without truths")
    elif min(counts) == 0:
        event("ssd: image without truths")
