"""Implementations under test, and how the suite finds them.

``BUNDLED`` names the adapters that ``pytest conformance`` runs when no ``--impl`` is
given; ``load(spec)`` imports one ``package.module:attr`` spec.
"""
from __future__ import annotations

import importlib

BUNDLED = (
    "implementations.torch_adapter:adapter",
    "implementations.torch_batched:adapter",
    "implementations.onnx_runtime:adapter",
)


class AdapterLoadError(ValueError):
    """An ``--impl`` spec that does not name an adapter."""


def load(spec: str):
    """Import ``package.module:attr`` and return the adapter it names.

    ``attr`` may be the adapter itself or a class / function that returns one when
    called with no argument.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AdapterLoadError(f"--impl {spec!r}: expected 'package.module:attr'")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise AdapterLoadError(f"--impl {spec!r}: {exc}") from exc
    if not hasattr(obj, "name") and callable(obj):
        obj = obj()
    missing = [a for a in ("name", "devices", "dtypes", "skip_reason") if not hasattr(obj, a)]
    if missing:
        raise AdapterLoadError(f"--impl {spec!r}: the adapter lacks {', '.join(missing)} "
                               "(see implementations/adapter.py)")
    if not (hasattr(obj, "yolo") or hasattr(obj, "ssd")):
        raise AdapterLoadError(f"--impl {spec!r}: the adapter has neither yolo() nor ssd()")
    return obj
