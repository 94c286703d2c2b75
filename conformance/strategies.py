"""What the Hypothesis strategies of every family share: numbers, arrays and logits.

Each family draws its cases in its own folder (conformance/families/<name>/strategies.py:
``yolo_cases``, ``ssd_cases``): a draft (every input but the logits) with random rows,
one adversarial feature (a composite ``feature(draft) -> draft``), then the logits, one
kind of ``LOGIT_KINDS`` per array (``any_logits``).

Every number is drawn by Hypothesis itself, so a failing example shrinks towards simple
values: logits towards 0, boxes towards the smallest side at the origin, kinds and
features towards the first of their tuple. Structure (sizes, counts, kinds, features) is
drawn with integers and ``sampled_from``; the numbers of a row, a box or an array's
values with ``codes``: several 16-bit codes in one bytes choice, each shrinking on its
own, because every Hypothesis choice costs about 25 µs whatever its size. An array draws
its first ``PERIOD`` values (C order) and reuses them, rotated, over the rest, so
SSD300's 8732 x C logits cost one choice (see ``array_values``). Choices are
``sampled_from`` a tuple; where one choice must be more or less likely than another (the
realistic sizes rarely, saturated and spread logits often) the tuple repeats entries.

Every feature and kind is reported with ``hypothesis.event`` ("yolo: shared cell",
"logits saturated", ...), so ``--hypothesis-show-statistics`` shows what a run covered.

Coordinates, sizes, anchors and logits are binary fractions k / 2**m with few significant
bits, so float64, float32 and (for logits and coordinates) float16 and bfloat16 see the
same numbers; only the "near tie" features and logit kind add offsets of 2**-30 (``NEAR``)
that vanish when the case is rounded to float32, to reach inputs whose decisions differ
between float64 and float32.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

COORD_BITS = 8  # coordinates are k / 256
NEAR = 2.0**-30  # an offset that float32 rounds away near 0.25 .. 1 (its ulp there is >= 2**-25)
PERIOD = 19  # values drawn per array; prime, so rows, cells and channels never align with it

LOGIT_KINDS = ("small", "wide", "saturated", "tied", "near_tie", "spread")
SATURATED = (-120.0, -40.0, -30.0, -27.625, -17.0, -16.5, 16.5, 17.0, 27.625, 30.0, 40.0, 120.0)
SPREAD = (0.0, -120.0, -800.0)  # row offsets: far below the batch max in float32 / float64


# ---------------------------------------------------------------- numbers and arrays

# Hypothesis builds and validates a strategy on every call of st.integers / st.sampled_from
# (about 10 % of the drawing time here); these build each one once
integers = functools.cache(st.integers)
sampled_from = functools.cache(st.sampled_from)  # hashable arguments (tuples) only


@functools.cache
def codes(count: int) -> st.SearchStrategy[np.ndarray]:
    """(count,) int64 codes in [0, 2**16), drawn as one Hypothesis choice: a string of
    2·count bytes read as big-endian uint16.

    Hypothesis shrinks a bytes choice byte by byte towards 0, so each code shrinks on its
    own towards 0, as ``count`` integer draws would; but one choice costs about what one
    integer draw does (~25 µs), where ``count`` of them cost ``count`` times that.
    """
    return st.binary(min_size=2 * count, max_size=2 * count).map(_uint16)


def _uint16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=">u2").astype(np.int64)


def pick(code, n: int):
    """The index in [0, n) of a code of ``codes``: each index has 2**16 // n or one more codes; code 0 is index 0."""
    return (code * n) >> 16


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
def _table(values: tuple) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def array_values(draw, shape, values: tuple) -> np.ndarray:
    """A float64 array of ``shape`` whose first min(size, PERIOD) entries (C order) are
    drawn from ``values``; the rest reuse them, block j of PERIOD entries rotated by j.

    The drawn entries are one Hypothesis choice (``codes``), each uniform over ``values``
    and shrinking on its own towards ``values[0]``, the simplest.
    Flat position i holds drawn entry (i + i // PERIOD) mod PERIOD, so the sequence repeats
    only after PERIOD**2 = 361 entries and rows, cells and channels of every size drawn
    here differ from their neighbours (PERIOD is prime); larger arrays repeat rows, which
    only adds ties. SSD300's 8732 x C logits cost one choice.
    """
    shape = tuple(int(n) for n in shape)
    size = math.prod(shape)
    count = min(size, PERIOD)
    drawn = _table(values)[pick(draw(codes(count)), len(values))]
    i = np.arange(size)
    return drawn[(i + i // PERIOD) % count].reshape(shape)


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


def any_logits(draw, shape) -> np.ndarray:
    """Logits of ``shape`` of one drawn kind of LOGIT_KINDS (event "logits <kind>")."""
    kind = draw(sampled_from(_KIND_MIX))
    event(f"logits {kind}")
    return logits(draw, shape, kind)


def box_corners(draw) -> list:
    """[xmin, ymin, xmax, ymax] binary fractions k/256 with 0 <= min < max <= 1 (one choice).

    Per axis a side in 1..256 and an offset in 0..256 - side (units of 1/256), shrinking
    towards the smallest side at the origin."""
    scale = 2**COORD_BITS
    c = draw(codes(4))
    side = 1 + pick(c[:2], scale)
    lo = pick(c[2:], scale + 1 - side)
    return [float(v) for v in np.concatenate([lo, lo + side]) / scale]


def check_features(features, known: tuple) -> tuple:
    """``features`` as a tuple; InvalidArgument naming any name not in ``known``."""
    features = tuple(features)
    unknown = [f for f in features if f not in known]
    if not features or unknown:
        raise InvalidArgument(f"features={features!r}: {unknown or 'empty'}; choose from {known}")
    return features
