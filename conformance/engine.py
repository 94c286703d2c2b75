"""Run one implementation on one case and compare it with the reference.

``run(subject, family, case)`` is the whole of it: round the case to the subject's
precision, call the adapter (on a deep copy), check what it returned is a mapping of
promised keys to arrays of the promised shapes, and compare with the reference
(``family.compare``). It knows nothing of pytest, files or reports: the pytest plugin
(conformance/plugin.py) and ``python -m conformance repro`` both call it.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from conformance.family import PARTS, Family
from reference.precision import Precision

_CACHE: "OrderedDict[tuple, Returned | str]" = OrderedDict()
_CACHE_SIZE = 32


@dataclass(frozen=True)
class Subject:
    """One implementation on one device in one precision: what a conformance test checks."""

    spec: str  # package.module:attr
    adapter: object
    device: str
    precision: Precision
    limitations: tuple = ()  # the family.Limitations it declares it does not follow

    @property
    def id(self) -> str:
        return f"{self.adapter.name}-{self.device}-{self.precision.name}"

    def __repr__(self) -> str:
        return f"Subject({self.id!r}, spec={self.spec!r})"

    def _repr_pretty_(self, printer, cycle) -> None:  # Hypothesis' falsifying examples: repr, not every field
        printer.text(repr(self))

    def covers(self, family: Family) -> bool:
        return hasattr(self.adapter, family.name)


def declared(subject: Subject, family: Family, case) -> tuple:
    """The Limitations ``subject`` declares that decide ``case`` (float64 inputs, judged
    rounded to the subject's precision): a case it is not to be judged on."""
    mine = [lim for lim in family.limitations if lim in subject.limitations]
    if not mine:
        return ()
    rounded = case.astype(subject.precision)
    return tuple(lim for lim in mine if lim.applies(rounded))


class ConformanceFailure(AssertionError):
    """An implementation's output departs from the reference beyond its tolerance, or is
    not what the adapter protocol promises."""


def fingerprint(case) -> str:
    """sha1 hex digest of a case's type and every field (array bytes and shapes included)."""
    h = hashlib.sha1(repr(type(case).__name__).encode())
    for name, value in sorted(vars(case).items()):
        for a in value if isinstance(value, tuple) and name != "variances" else (value,):
            if isinstance(a, np.ndarray):
                h.update(np.ascontiguousarray(a).tobytes() + str(a.shape).encode())
            else:
                h.update(repr(a).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Returned:
    """What an adapter returned for one case, restricted to the promised keys."""

    arrays: dict  # key -> np.ndarray of bool, int or float
    not_arrays: dict  # key -> what was returned instead of an array of numbers ("NoneType", "array of complex128")


def _collect(result, keys) -> "Returned | str":
    """``result`` sorted into a Returned, or the message saying why it is not a mapping
    of str to arrays."""
    if not isinstance(result, Mapping):
        return f"adapter returned {type(result).__name__}, expected a mapping of str to arrays"
    for k in result:
        if not isinstance(k, str):
            return (
                f"adapter returned a mapping with key {k!r} ({type(k).__name__}), expected a mapping of str to arrays"
            )
    arrays, not_arrays = {}, {}
    for k in keys:
        if k in result:
            try:
                a = np.asarray(result[k])
            except Exception:  # e.g. a torch tensor that requires grad
                a = None
            if a is not None and a.dtype.kind in "biuf":
                arrays[k] = a
            else:
                v = result[k]
                not_arrays[k] = f"array of {v.dtype}" if isinstance(v, np.ndarray) else type(v).__name__
    return Returned(arrays, not_arrays)


def returned(subject: Subject, family: Family, case) -> Returned:
    """The adapter's outputs for ``case`` (already rounded), cached by subject and case.

    The adapter gets a fresh deep copy of the case, so whatever it does to its inputs,
    the engine compares against the reference on its own untouched ``case``. Raises
    ConformanceFailure when the result is not a mapping of str to arrays.
    """
    key = (subject.id, subject.spec, family.name, fingerprint(case))
    if key not in _CACHE:
        method = getattr(subject.adapter, family.name)
        result = method(copy.deepcopy(case), subject.device, subject.precision.name)
        _CACHE[key] = _collect(result, family.keys(case))
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    entry = _CACHE[key]
    if isinstance(entry, str):
        raise ConformanceFailure(entry)
    return entry


def key_problem(key: str, got: Returned, shape: tuple) -> str | None:
    """Why returned ``key`` cannot be compared (not an array of numbers, wrong shape), or None."""
    if key in got.not_arrays:
        return f"{key}: {got.not_arrays[key]} is not an array of numbers"
    a = got.arrays[key]
    return None if a.shape == tuple(shape) else f"{key}: shape {a.shape}, expected {tuple(shape)}"


def outputs(subject: Subject, family: Family, case) -> dict:
    """{key: np.ndarray} of the promised keys the adapter returned for ``case`` (already
    rounded); ConformanceFailure naming every key that is not an array of the promised shape."""
    got = returned(subject, family, case)
    shapes = family.shapes(case)
    problems = [p for k in (*got.arrays, *got.not_arrays) if (p := key_problem(k, got, shapes[k]))]
    if problems:
        raise ConformanceFailure("\n".join(problems))
    return got.arrays


def skip_reason(subject: Subject) -> str | None:
    """``subject.adapter.skip_reason(subject.device)``; ConformanceFailure naming it when it
    raises or returns neither a str nor None."""
    try:
        reason = subject.adapter.skip_reason(subject.device)
    except Exception as exc:
        raise ConformanceFailure(
            f"{subject.adapter.name}: skip_reason({subject.device!r}) raised {type(exc).__name__}: {exc}"
        ) from exc
    if reason is not None and not isinstance(reason, str):
        raise ConformanceFailure(
            f"{subject.adapter.name}: skip_reason({subject.device!r}) returned {reason!r}, expected a str or None"
        )
    return reason or None


def run(subject: Subject, family: Family, case, parts=PARTS) -> list:
    """The checks of ``parts`` of ``subject`` on ``case`` (float64 inputs, rounded here to the
    subject's precision): one Check per compared quantity; none for keys the adapter does
    not return. ConformanceFailure when the adapter's result breaks the protocol."""
    rounded = case.astype(subject.precision)
    return family.compare(rounded, outputs(subject, family, rounded), subject.precision, parts=parts)
