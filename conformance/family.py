"""What the suite knows about one loss family, as one record; the registry is
conformance/families/__init__.py.

The engine, the fixtures, the pytest plugin, the report and repro iterate over the
registry and name no family: a new loss is a folder ``conformance/families/<name>/``
whose ``__init__.py`` builds a ``Family`` called ``FAMILY``, plus one name in the registry.
An adapter covers a family by having a method named ``family.name``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module

import numpy as np

PARTS = ("targets", "losses", "gradients")  # what a family's outputs are grouped into
_FOLDER = ("schema", "compare", "strategies", "corpus", "limitations")  # a family folder's modules (Family.of)


@dataclass(frozen=True)
class Limitation:
    """A spec rule that decides an input differently from the seed, which an implementation
    may declare it does not follow (``adapter.limitations`` or ``--limitation``): cases the
    rule decides are then not generated for it, and fixtures it decides are skipped."""

    rule: str  # "Y8", or "Y3-edge" where the spec decides several inputs in one rule
    summary: str  # what the spec decides there, in a few words
    applies: Callable  # (case, rounded to the implementation's precision) -> bool

    def __repr__(self) -> str:
        return f"Limitation({self.rule!r})"


@dataclass(frozen=True)
class Family:
    name: str  # "yolo": the adapter's method, test ids, report rows
    title: str  # "YOLOv3": messages
    case_type: type  # the frozen dataclass of one case's inputs, with ``name`` and ``astype(dtype)``
    evaluate: Callable  # (case) -> {key: np.ndarray}: the reference's value of every key
    validate: Callable  # (case) -> None; raises reference.errors.InvalidInputError
    parts: Callable  # (case) -> {part: tuple of keys} for every part of PARTS: the key schema
    shapes: Callable  # (case) -> {key: shape} the adapter protocol promises for this case
    compare: Callable  # (case, outputs, Precision, parts) -> [checks.Check]; case rounded already
    cases: object  # a Hypothesis SearchStrategy of valid cases, every adversarial feature mixed
    corpus: Callable  # () -> [case]: the golden fixture cases, unique names
    to_arrays: Callable  # (case) -> {"input.*": np.ndarray}: the fixture format of the inputs
    from_arrays: Callable  # (arrays, name) -> case; inverse of to_arrays
    input_problem: Callable  # (arrays) -> str | None: why arrays holding ``input_key`` are not a case
    input_key: str  # an input array only this family's fixture files hold
    probe: str  # a small fixture case (name) the coverage tests call every adapter on
    limitations: tuple = ()  # the Limitations an implementation of this family may declare
    # feature name -> a SearchStrategy of cases with that adversarial feature: the property
    # tests, one per feature (none: one test on ``cases``)
    features: dict = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, title: str, case_type: type, reference, probe: str) -> "Family":
        """The Family of the folder conformance/families/<name>/, read from its modules:
        ``reference`` (evaluate, validate: the loss's reference module), schema.py (parts,
        shapes, to_arrays, from_arrays, input_problem, INPUT_KEY), compare.py (compare),
        strategies.py (cases(features=FEATURES): the strategy; FEATURES: the adversarial
        features, optional), corpus.py (cases()) and limitations.py (LIMITATIONS)."""
        folder = {m: import_module(f"{__package__}.families.{name}.{m}") for m in _FOLDER}
        schema, strategies = folder["schema"], folder["strategies"]
        return cls(
            name=name,
            title=title,
            case_type=case_type,
            evaluate=reference.evaluate,
            validate=reference.validate,
            parts=schema.parts,
            shapes=schema.shapes,
            compare=folder["compare"].compare,
            cases=strategies.cases(),
            corpus=folder["corpus"].cases,
            to_arrays=schema.to_arrays,
            from_arrays=schema.from_arrays,
            input_problem=schema.input_problem,
            input_key=schema.INPUT_KEY,
            probe=probe,
            limitations=folder["limitations"].LIMITATIONS,
            features={f: strategies.cases(features=(f,)) for f in getattr(strategies, "FEATURES", ())},
        )

    def __repr__(self) -> str:
        return f"Family({self.name!r})"

    def _repr_pretty_(self, printer, cycle) -> None:  # Hypothesis' falsifying examples: repr, not every field
        printer.text(repr(self))

    def keys(self, case) -> tuple:
        """Every key the adapter protocol promises for ``case``, part by part."""
        return tuple(k for keys in self.parts(case).values() for k in keys)

    def part_of(self, case) -> dict:
        """{key: part} for ``case``."""
        return {k: part for part, keys in self.parts(case).items() for k in keys}


# ---------------------------------------------------------------- helpers for fixture codecs


def scalar(value, dtype) -> np.ndarray:
    """``value`` as a 0-d array of ``dtype`` (fixture settings and counts)."""
    return np.asarray(value, dtype=dtype).reshape(())


def missing_or_malformed(arrays, required, scalars=(), integers=()) -> str | None:
    """The first problem of ``arrays``: a key of ``required`` or ``scalars`` missing, a key of
    ``scalars`` holding more than one value, a key of ``integers`` not of an integer dtype."""
    missing = [k for k in (*required, *scalars) if k not in arrays]
    if missing:
        return f"missing {', '.join(missing)}"
    for k in scalars:
        if np.size(arrays[k]) != 1:
            return f"{k} has shape {np.shape(arrays[k])}, expected one value"
    for k in integers:
        if k in arrays and np.asarray(arrays[k]).dtype.kind not in "iu":
            return f"{k} has dtype {np.asarray(arrays[k]).dtype}, expected int64"
    return None
