"""One comparison of one quantity, and the mismatch message users know from torch.testing.

A ``Check`` is what the engine reports (to the tolerance report) and asserts on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reference.precision import Precision


@dataclass
class Check:
    quantity: str
    kind: str  # "continuous" or "discrete"
    n: int = 0  # elements compared
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_ulp: float = 0.0
    ratio: float = 0.0  # max over elements of |err| / allowed; <= 1 passes
    atol: float = 0.0  # the allowed error at the worst element (absolute)
    rtol: float = 0.0
    ties: int = 0  # decisions accepted because the reference's margin showed a (near-)tie
    passed: bool = True
    message: str = ""
    errors: np.ndarray = field(default=None, repr=False)  # |err| / allowed per compared element


def _index(flat: int, shape) -> tuple:
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


def _ulp(expected: np.ndarray, prec: Precision) -> np.ndarray:
    """Spacing of the implementation's precision at each expected value (normal range)."""
    mag = np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    return 2.0 ** np.floor(np.log2(mag)) * 2 * prec.u


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a − b|, 0 where equal (inf == inf), inf where undefined (NaN)."""
    with np.errstate(invalid="ignore"):
        return np.where(a == b, 0.0, np.nan_to_num(np.abs(a - b), nan=np.inf))


def continuous(
    quantity, actual, expected, allowed, prec: Precision, where=None, ties=0, alternatives=(), note=""
) -> Check:
    """Elementwise |actual − expected| ≤ allowed over ``where`` (all elements if None).

    ``alternatives``: other admissible values, arrays shaped like ``expected``; each element
    is compared with the nearest of expected and its alternatives. ``note`` is appended to
    a failure's message.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    allowed = np.broadcast_to(np.asarray(allowed, dtype=np.float64), expected.shape)
    if actual.shape != expected.shape:
        return Check(
            quantity, "continuous", passed=False, message=f"{quantity}: shape {actual.shape}, expected {expected.shape}"
        )
    for alt in alternatives:
        expected = np.where(_distance(actual, alt) < _distance(actual, expected), alt, expected)
    sel = np.ones(expected.shape, bool) if where is None else np.asarray(where, bool)
    err = np.where(sel, _distance(actual, expected), 0.0)
    n = int(sel.sum())
    if n == 0 or not err.any():  # nothing compared, or exact everywhere: every error statistic is 0
        return Check(quantity, "continuous", n=n, ties=ties, atol=float(allowed.flat[0]) if n else 0.0,
                     errors=np.zeros(n))  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf where beyond float64
        ratio = np.where(sel, err / np.maximum(allowed, np.finfo(np.float64).tiny), 0.0)
        rel = np.where(err == 0, 0.0, err / np.abs(expected))  # inf where expected is 0
        ulp = err / _ulp(expected, prec)
    check = Check(quantity, "continuous", n=n, ties=ties, errors=ratio[sel])
    worst = int(np.argmax(ratio))
    check.max_abs, check.max_rel = float(err.max()), float(np.where(sel, rel, 0).max())
    check.max_ulp = float(np.where(sel, ulp, 0).max())
    check.ratio, check.atol = float(ratio.flat[worst]), float(allowed.flat[worst])
    bad = sel & (ratio > 1)
    check.passed = not bad.any()
    if not check.passed:
        i_abs, i_rel = int(np.argmax(err)), int(np.argmax(np.where(sel, rel, 0)))
        shape = expected.shape
        check.message = (
            f"{quantity}: Tensor-likes are not close!\n"
            f"Mismatched elements: {int(bad.sum())} / {n} ({100 * bad.sum() / n:.1f}%)\n"
            f"Greatest absolute difference: {err.flat[i_abs]:.6g} at index {_index(i_abs, shape)} "
            f"(up to {allowed.flat[i_abs]:.3g} allowed; got {float(actual.flat[i_abs]):.10g}, "
            f"expected {float(expected.flat[i_abs]):.10g})\n"
            f"Greatest relative difference: {rel.flat[i_rel]:.6g} at index {_index(i_rel, shape)}\n"
            f"Worst against its tolerance: {ratio.flat[worst]:.3g}x allowed at index "
            f"{_index(worst, shape)}" + (f"\n{note}" if note else "")
        )
    return check


def discrete(quantity, actual, expected, where=None, admissible=None, ties=None) -> Check:
    """Exact equality over ``where``; differences where ``admissible`` is set are ties."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return Check(
            quantity, "discrete", passed=False, message=f"{quantity}: shape {actual.shape}, expected {expected.shape}"
        )
    sel = np.ones(expected.shape, bool) if where is None else np.asarray(where, bool)
    diff = sel & (actual.astype(np.float64) != expected.astype(np.float64))
    ok = np.zeros(expected.shape, bool) if admissible is None else np.asarray(admissible, bool)
    bad = diff & ~ok
    n = int(sel.sum())
    n_ties = int((diff & ok).sum()) if ties is None else ties
    check = Check(
        quantity,
        "discrete",
        n=n,
        ties=n_ties,
        passed=not bad.any(),
        max_abs=float(diff.sum()),
        errors=np.where(bad[sel], 2.0, 0.0),
    )
    check.ratio = 2.0 if bad.any() else 0.0
    if bad.any():
        where_bad = [tuple(int(v) for v in i) for i in np.argwhere(bad)[:5]]
        first = where_bad[0]
        check.message = (
            f"{quantity}: Mismatched elements: {int(bad.sum())} / {n} "
            f"({100 * bad.sum() / max(n, 1):.1f}%), not explained by a tie "
            f"({n_ties} tie(s) accepted)\n"
            f"First at index {first}: got {actual[first].item()!r}, expected {expected[first].item()!r}; "
            f"differing indices: {where_bad}{' ...' if bad.sum() > 5 else ''}"
        )
    return check
