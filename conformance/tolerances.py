"""Tolerances, each derived from an error model of the computation.

Everything is expressed in ``u``, the unit roundoff of the implementation's dtype (half
the distance from 1 to the next float). An implementation receives inputs already
rounded to its dtype (``YoloCase.astype``), so only its arithmetic is charged here.
Every function returns the allowed absolute error per element, as an array shaped like
the reference value, so the check is ``|impl - ref| <= allowed`` element by element.

Rules used throughout (Higham, "Accuracy and Stability of Numerical Algorithms"):
- one correctly rounded operation: relative error u; exp/log/tanh: transcendental(dtype)·u
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

UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11,
                 "bfloat16": 2.0**-8}
SAFETY = 4.0
TRANSCENDENTAL_ULPS = {"float64": 8.0, "float32": 8.0, "float16": 8.0, "bfloat16": 8.0}


def unit(dtype: str) -> float:
    return UNIT_ROUNDOFF[dtype]


def transcendental(dtype: str) -> float:
    """Error of exp, log and tanh in units of u for this dtype (see the module docstring)."""
    return TRANSCENDENTAL_ULPS[dtype]


def sum_factor(n: int) -> float:
    """Error factor of a sum of n terms, in units of u·Σ|terms|."""
    return np.log2(max(n, 1)) + 2.0


def decision_eps(dtype: str) -> dict:
    """Margins below which a discrete decision is a near-tie at this precision.

    iou: an IoU is a ratio of products and differences of at most 8 rounded values in
    [0, 1]; its absolute error is below 8u, so two IoUs closer than 16u may compare
    either way. cell: gx = cx·G is one rounded product, error ≤ u·G (scaled by G at use).
    prob: σ outputs carry 2u relative error; two class probabilities closer than 4u tie.
    score: the mining score lse(row) − row[t] has absolute error ≤ u·(log2(C) + 4)·max|row|
    (scaled by the case's logits at use).
    """
    u = unit(dtype)
    return {"iou": 16 * u, "cell": 4 * u, "prob": 4 * u, "score": 8 * u}


def allowed(ref: np.ndarray, u: float, atol: float = 0.0, rtol: float = 0.0) -> np.ndarray:
    """SAFETY·(atol + rtol·|ref|), elementwise, with atol and rtol in absolute units."""
    return SAFETY * (atol + rtol * np.abs(np.asarray(ref, dtype=np.float64)))


def threshold_tie(margin: np.ndarray, eps: float, dtype: str) -> np.ndarray:
    """Is a threshold comparison (IoU vs 0.5, wh-IoU vs ignore_thres) a near-tie?

    A value exactly on the threshold (margin 0) is decided by the spec's strictness
    (S6: ≥ is positive; Y4: only > ignores), which float64 must follow: inputs on short
    binary fractions make such IoUs exact in any operation order. In lower precisions
    the implementation's own rounding may put it on either side, so it is a near-tie.
    Argmax ties, by contrast, are admissible at every precision (any tied index).
    """
    tie = margin < eps
    return tie & (margin > 0) if dtype == "float64" else tie
