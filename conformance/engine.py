"""Run one implementation on one case and check it: the body of every property test."""
from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pytest

from implementations.adapter import SSD_GRAD_KEYS, SSD_LOSS_KEYS, SSD_TARGET_KEYS, YOLO_LOSS_KEYS, YOLO_TARGET_KEYS

from . import compare_ssd, compare_yolo, repro

PARTS = ("targets", "losses", "gradients")
COMPARE = {"yolo": compare_yolo.compare, "ssd": compare_ssd.compare}
_CACHE: "OrderedDict[tuple, Returned | str]" = OrderedDict()
_CACHE_SIZE = 32
TARGETS = pytest.StashKey[list]()  # config.stash[TARGETS]: the Targets selected for this run
FAILURES_DIR = None  # where failing cases are saved: <report dir>/failures (set by conftest); None: repro's default


@dataclass(frozen=True)
class Target:
    """One implementation on one device in one dtype."""

    spec: str  # package.module:attr
    adapter: object
    device: str
    dtype: str

    @property
    def id(self) -> str:
        return f"{self.adapter.name}-{self.device}-{self.dtype}"


class ConformanceFailure(AssertionError):
    """An implementation's output departs from the reference beyond its tolerance."""


def family_of(case) -> str:
    """"yolo" for a YoloCase, "ssd" for an SsdCase."""
    return "ssd" if hasattr(case, "truths") else "yolo"


def fingerprint(case) -> str:
    h = hashlib.sha1(repr(type(case).__name__).encode())
    for name, value in sorted(vars(case).items()):
        for a in (value if isinstance(value, tuple) and name != "variances" else (value,)):
            if isinstance(a, np.ndarray):
                h.update(np.ascontiguousarray(a).tobytes() + str(a.shape).encode())
            else:
                h.update(repr(a).encode())
    return h.hexdigest()


def part_keys(family: str, part: str, case) -> tuple:
    """The output keys one part checks, for this case's layer count."""
    if family == "ssd":
        return {"targets": SSD_TARGET_KEYS + ("decoded",),
                "losses": SSD_LOSS_KEYS, "gradients": SSD_GRAD_KEYS}[part]
    layers = range(len(case.outputs))
    if part == "targets":
        return tuple(f"layer{k}.{n}" for k in layers for n in YOLO_TARGET_KEYS + ("output",))
    if part == "losses":
        return tuple(f"layer{k}.{n}" for k in layers for n in YOLO_LOSS_KEYS) + ("loss_total",)
    return tuple(f"layer{k}.grad" for k in layers)


def promised_keys(family: str, case) -> tuple:
    """Every output key adapter.py lists for this family, for this case's layer count."""
    return tuple(k for p in PARTS for k in part_keys(family, p, case))


def expected_shapes(family: str, case) -> dict:
    """{promised key: the shape adapter.py promises for ``case``}: () for losses."""
    if family == "ssd":
        B, P, _ = case.loc.shape
        shapes = {k: (B, P) for k in ("matched", "conf_t", "pos_mask", "neg_mask")}
        shapes.update({k: (B, P, 4) for k in ("loc_t", "decoded", "grad_loc")})
        return {**shapes, "loss_l": (), "loss_c": (), "grad_conf": (B, P, case.num_classes)}
    shapes = {"loss_total": ()}
    for k, (x, anchors) in enumerate(zip(case.outputs, case.anchors)):
        B, _, H, W = np.shape(x)
        grid = (B, len(anchors), H, W)
        shapes.update({f"layer{k}.{n}": grid for n in YOLO_TARGET_KEYS})
        shapes.update({f"layer{k}.{n}": () for n in YOLO_LOSS_KEYS})
        shapes[f"layer{k}.tcls"] = grid + (case.num_classes,)
        shapes[f"layer{k}.output"] = (B, len(anchors) * H * W, 5 + case.num_classes)
        shapes[f"layer{k}.grad"] = tuple(np.shape(x))
    return shapes


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
            return (f"adapter returned a mapping with key {k!r} ({type(k).__name__}), "
                    "expected a mapping of str to arrays")
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


def returned(target: Target, family: str, case) -> Returned:
    """The adapter's outputs for ``case`` (already rounded), cached across parts and tests.

    The adapter gets a fresh deep copy of the case, so whatever it does to its inputs,
    the engine compares against the reference on its own untouched ``case``. Raises
    ConformanceFailure when the result is not a mapping of str to arrays.
    """
    key = (target.id, target.spec, family, fingerprint(case))
    if key not in _CACHE:
        result = getattr(target.adapter, family)(copy.deepcopy(case), target.device, target.dtype)
        _CACHE[key] = _collect(result, promised_keys(family, case))
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


def outputs(target: Target, family: str, case) -> dict:
    """{key: np.ndarray} of the promised keys the adapter returned for ``case`` (already
    rounded); ConformanceFailure naming every key that is not an array of the promised shape."""
    got = returned(target, family, case)
    shapes = expected_shapes(family, case)
    problems = [p for k in (*got.arrays, *got.not_arrays) if (p := key_problem(k, got, shapes[k]))]
    if problems:
        raise ConformanceFailure("\n".join(problems))
    return got.arrays


def skip_reason(target: Target) -> str | None:
    """``target.adapter.skip_reason(target.device)``; ConformanceFailure naming it when it
    raises or returns neither a str nor None."""
    try:
        reason = target.adapter.skip_reason(target.device)
    except Exception as exc:
        raise ConformanceFailure(f"{target.adapter.name}: skip_reason({target.device!r}) raised "
                                 f"{type(exc).__name__}: {exc}") from exc
    if reason is not None and not isinstance(reason, str):
        raise ConformanceFailure(f"{target.adapter.name}: skip_reason({target.device!r}) returned "
                                 f"{reason!r}, expected a str or None")
    return reason or None


def _failure(case, target: Target, family: str, parts: tuple, message: str) -> ConformanceFailure:
    """``message`` with the command that replays ``case`` (saved by repro.save)."""
    test_id = f"test_{family}[{target.id}-{'-'.join(parts)}]"
    command = repro.save(case, test_id, target, FAILURES_DIR)
    return ConformanceFailure(message + f"\n\ncase: {case.name or 'generated'}; reproduce with:\n    {command}")


def check(target: Target, family: str, part, case, record=None):
    """Run and compare one part (or a tuple of parts); skip with a reason for what the
    adapter does not cover."""
    parts = (part,) if isinstance(part, str) else tuple(part)
    if not hasattr(target.adapter, family):
        pytest.skip(f"{target.adapter.name} covers no {family.upper()} loss")
    reason = skip_reason(target)
    if reason:
        pytest.skip(f"{target.adapter.name} on {target.device}: {reason}")
    rounded = case.astype(target.dtype)
    try:
        out = outputs(target, family, rounded)
    except ConformanceFailure as exc:
        raise _failure(case, target, family, parts, str(exc)) from None
    keys = [k for p in parts for k in part_keys(family, p, rounded)]
    if not any(k in out for k in keys):
        pytest.skip(f"{target.adapter.name} returns no {'/'.join(parts)} ({', '.join(keys[:3])}, ...)")
    checks = COMPARE[family](rounded, out, target.dtype, parts=parts)
    failed = [c for c in checks if not c.passed]
    if record is not None:
        name = case.name or fingerprint(case)[:12]
        for c in checks:
            record(target, family, "-".join(parts), c, name)
    if failed:
        raise _failure(case, target, family, parts, "\n\n".join(c.message for c in failed))
