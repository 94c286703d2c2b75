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
    return np.ldexp(2 * prec.u, np.frexp(mag)[1] - 1)  # 2u·2**floor(log2 mag), exactly


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a − b|, 0 where equal (inf == inf), inf where undefined (NaN)."""
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    d = np.where(a == b, 0.0, d)
    return np.where(d == d, d, np.inf)  # NaN (the only value unequal to itself) -> inf


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
    if actual.shape != expected.shape:
        return Check(
            quantity, "continuous", passed=False, message=f"{quantity}: shape {actual.shape}, expected {expected.shape}"
        )
    err = _distance(actual, expected)
    for alt in alternatives:
        alt_err = _distance(actual, alt)
        nearer = alt_err < err
        expected, err = np.where(nearer, alt, expected), np.where(nearer, alt_err, err)
    allowed = np.asarray(allowed, dtype=np.float64)
    if allowed.shape != expected.shape:
        allowed = np.broadcast_to(allowed, expected.shape)
    # the compared elements, flattened (C order); ``flat[i]`` is the i-th one's flat index
    if where is None:
        e, x, tol = err.ravel(), expected.ravel(), allowed.ravel()
        flat = np.arange(e.size)
    else:
        flat = np.flatnonzero(np.broadcast_to(np.asarray(where, bool), expected.shape))
        e, x, tol = err.ravel()[flat], expected.ravel()[flat], allowed.ravel()[flat]
    n = e.size
    if n == 0 or not e.any():  # nothing compared, or exact everywhere: every error statistic is 0
        return Check(quantity, "continuous", n=n, ties=ties, atol=float(tol[0]) if n else 0.0, errors=np.zeros(n))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf where beyond float64
        ratio = e / np.maximum(tol, np.finfo(np.float64).tiny)
        rel = np.where(e == 0, 0.0, e / np.abs(x))  # inf where expected is 0
        ulp = e / _ulp(x, prec)
    worst, i_abs, i_rel = int(np.argmax(ratio)), int(np.argmax(e)), int(np.argmax(rel))
    bad = int(np.count_nonzero(ratio > 1))
    check = Check(
        quantity,
        "continuous",
        n=n,
        max_abs=float(e[i_abs]),
        max_rel=float(rel[i_rel]),
        max_ulp=float(ulp.max()),
        ratio=float(ratio[worst]),
        atol=float(tol[worst]),
        ties=ties,
        passed=not bad,
        errors=ratio,
    )
    if bad:
        shape = expected.shape
        check.message = (
            f"{quantity}: Tensor-likes are not close!\n"
            f"Mismatched elements: {bad} / {n} ({100 * bad / n:.1f}%)\n"
            f"Greatest absolute difference: {e[i_abs]:.6g} at index {_index(flat[i_abs], shape)} "
            f"(up to {tol[i_abs]:.3g} allowed; got {float(actual.flat[flat[i_abs]]):.10g}, "
            f"expected {x[i_abs]:.10g})\n"
            f"Greatest relative difference: {rel[i_rel]:.6g} at index {_index(flat[i_rel], shape)}\n"
            f"Worst against its tolerance: {ratio[worst]:.3g}x allowed at index "
            f"{_index(flat[worst], shape)}" + (f"\n{note}" if note else "")
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
