"""Tolerances, each derived from an error model of the computation.

Everything is expressed in ``u``, the unit roundoff of the implementation's precision
(``reference.precision.Precision``: half the distance from 1 to the next float). An
implementation receives inputs already rounded to its precision (``YoloCase.astype``), so
only its arithmetic is charged here.
Every function returns the allowed absolute error per element, as an array shaped like
the reference value, so the check is ``|impl - ref| <= allowed`` element by element.

Rules used throughout (Higham, "Accuracy and Stability of Numerical Algorithms"):
- one correctly rounded operation: relative error u; exp/log/tanh: Precision.transcendental·u
  (glibc is within 1-2 ulps; vectorised runtime kernels may take a few more);
- a sum of n terms: error up to log2(n)·u·Σ|terms| for pairwise (NumPy, PyTorch CPU
  and CUDA reductions are pairwise or tree-shaped); we charge (log2(n) + 2)·u·Σ|terms|;
- exp(t): relative error (|t| + 2)·u (its condition number is |t|);
- log(z): absolute error (relative error of z) + u·|log z|;
- σ(t) = p: relative error 2u in p, hence relative error 2u·p in 1 − p ... amplified in
  log(1 − p) by p / (1 − p) (conditioning of the BCE on probabilities).
A safety factor SAFETY covers operation orders we do not model one by one.
"""

from __future__ import annotations

import numpy as np

from reference.precision import Precision

SAFETY = 4.0
MAX_INTERVALS = 64


def sum_factor(n: int) -> float:
    """Error factor of a sum of n terms, in units of u·Σ|terms|."""
    return np.log2(max(n, 1)) + 2.0


def decision_eps(prec: Precision) -> dict:
    """Margins below which a discrete decision is a near-tie at this precision.

    iou: an IoU is a ratio of products and differences of at most 8 rounded values in
    [0, 1]; its absolute error is below 8u, so two IoUs closer than 16u may compare
    either way. cell: gx = cx·G is one rounded product, error ≤ u·G (scaled by G at use).
    prob: σ outputs carry 2u relative error; two class probabilities closer than 4u tie.
    score: the mining score lse(row) − row[t] has absolute error ≤ u·(log2(C) + 4)·max|row|
    (scaled by the case's logits at use).
    """
    u = prec.u
    return {"iou": 16 * u, "cell": 4 * u, "prob": 4 * u, "score": 8 * u}


def allowed(ref: np.ndarray, u: float, atol: float = 0.0, rtol: float = 0.0) -> np.ndarray:
    """SAFETY·(atol + rtol·|ref|), elementwise, with atol and rtol in absolute units."""
    return SAFETY * (atol + rtol * np.abs(np.asarray(ref, dtype=np.float64)))


def threshold_tie(margin: np.ndarray, eps: float, prec: Precision) -> np.ndarray:
    """Is a threshold comparison (IoU vs 0.5, wh-IoU vs ignore_thres) a near-tie?

    A value exactly on the threshold (margin 0) is decided by the spec's strictness
    (S6: ≥ is positive; Y4: only > ignores), which float64 must follow: inputs on short
    binary fractions make such IoUs exact in any operation order. In lower precisions
    the implementation's own rounding may put it on either side, so it is a near-tie.
    Argmax ties, by contrast, are admissible at every precision (any tied index).
    """
    tie = margin < eps
    return tie & (margin > 0) if prec.name == "float64" else tie


class Intervals:
    """A union of disjoint closed intervals [lo_k, hi_k], sorted: the admissible values of a
    quantity built from elements that each take one of a few discrete values (a BCE term
    at a saturated or unsaturated probability, Y10) within rounding.

    Sums and scalings stay exact up to MAX_INTERVALS pieces; beyond that the closest
    pieces are joined, which only ever admits more.
    """

    def __init__(self, lo, hi):
        lo, hi = np.atleast_1d(np.asarray(lo, np.float64)), np.atleast_1d(np.asarray(hi, np.float64))
        if lo.size == 1:  # one piece: nothing to sort or join
            self.lo, self.hi = lo, hi
            return
        order = np.argsort(lo, kind="stable")
        lo, hi = lo[order], np.maximum.accumulate(hi[order])
        start = np.concatenate([[True], lo[1:] > hi[:-1]])  # a new piece where a gap opens
        idx = np.flatnonzero(start)
        self.lo, self.hi = lo[idx], np.maximum.reduceat(hi, idx)
        if len(self.lo) > MAX_INTERVALS:
            gaps = self.lo[1:] - self.hi[:-1]
            keep = np.sort(np.argsort(gaps, kind="stable")[len(gaps) - MAX_INTERVALS + 1 :])
            self.lo = np.concatenate([self.lo[:1], self.lo[keep + 1]])
            self.hi = np.concatenate([self.hi[keep], self.hi[-1:]])

    @classmethod
    def around(cls, value: float, err: float = 0.0) -> "Intervals":
        return cls(value - err, value + err)

    @classmethod
    def choice_sum(cls, lo, hi, alt, value: float) -> "Intervals":
        """The sums Σ v_i over elements with v_i ∈ [lo_i, hi_i], or v_i = ``value`` where
        ``alt`` is set. For m alternatives taken, the sums span from the lowest (the m
        largest lo_i replaced) to the highest (the m smallest hi_i replaced); that span
        is taken whole."""
        lo, hi, alt = (np.ravel(a) for a in (lo, hi, alt))
        m = np.arange(int(alt.sum()) + 1)
        out_lo = np.concatenate([[0.0], np.cumsum(np.sort(lo[alt])[::-1])])
        out_hi = np.concatenate([[0.0], np.cumsum(np.sort(hi[alt]))])
        return cls(lo.sum() - out_lo + m * value, hi.sum() - out_hi + m * value)

    def __add__(self, other: "Intervals") -> "Intervals":
        return Intervals((self.lo[:, None] + other.lo[None]).ravel(), (self.hi[:, None] + other.hi[None]).ravel())

    def __mul__(self, factor: float) -> "Intervals":
        """Scaled by factor ≥ 0."""
        return Intervals(self.lo * factor, self.hi * factor)

    __rmul__ = __mul__

    def nearest(self, value: float) -> float:
        """The admissible value closest to ``value`` (NaN stays NaN)."""
        if not np.isfinite(value):
            return float(self.lo[0]) if np.isnan(value) else float(self.hi[-1] if value > 0 else self.lo[0])
        clipped = np.clip(value, self.lo, self.hi)
        return float(clipped[np.argmin(np.abs(clipped - value))])

    def __repr__(self) -> str:
        return " ∪ ".join(f"[{a:.9g}, {b:.9g}]" for a, b in zip(self.lo, self.hi))
