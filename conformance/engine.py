"""Run one implementation on one case and check it: the body of every property test."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pytest

from implementations.adapter import (SSD_GRAD_KEYS, SSD_LOSS_KEYS, SSD_TARGET_KEYS, YOLO_LOSS_KEYS,
                                     YOLO_TARGET_KEYS)

from . import compare_ssd, compare_yolo, repro

PARTS = ("targets", "losses", "gradients")
COMPARE = {"yolo": compare_yolo.compare, "ssd": compare_ssd.compare}
_CACHE: "OrderedDict[tuple, dict]" = OrderedDict()
_CACHE_SIZE = 32


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


def outputs(target: Target, family: str, case) -> dict:
    """The adapter's outputs for ``case`` (already rounded), cached across the parts."""
    key = (target.id, target.spec, family, fingerprint(case))
    if key not in _CACHE:
        result = getattr(target.adapter, family)(case, target.device, target.dtype)
        _CACHE[key] = {k: np.asarray(v) for k, v in dict(result).items()}
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return _CACHE[key]


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


def check(target: Target, family: str, part, case, record=None):
    """Run and compare one part (or a tuple of parts); skip with a reason for what the
    adapter does not cover."""
    parts = (part,) if isinstance(part, str) else tuple(part)
    if not hasattr(target.adapter, family):
        pytest.skip(f"{target.adapter.name} covers no {family.upper()} loss")
    reason = target.adapter.skip_reason(target.device)
    if reason:
        pytest.skip(f"{target.adapter.name} on {target.device}: {reason}")
    rounded = case.astype(target.dtype)
    out = outputs(target, family, rounded)
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
        test_id = f"test_{family}[{target.id}-{'-'.join(parts)}]"
        command = repro.save(case, test_id, target)
        raise ConformanceFailure("\n\n".join(c.message for c in failed)
                                 + f"\n\ncase: {case.name or 'generated'}; reproduce with:\n    {command}")
