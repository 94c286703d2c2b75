"""Implementations under test, and how the suite finds them.

``BUNDLED`` names the adapters that ``pytest conformance`` runs when no ``--impl`` is
given; ``load(spec)`` imports one ``package.module:attr`` spec and validates what the
adapter declares (implementations/adapter.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from implementations.adapter import DTYPES, LOSSES

BUNDLED = (
    "implementations.torch_adapter:adapter",
    "implementations.torch_batched:adapter",
    "implementations.onnx_runtime:adapter",
    "implementations.triton_loss:adapter",
)


class AdapterLoadError(ValueError):
    """An ``--impl`` spec that does not name a valid adapter; the message names the spec,
    the field and the value."""


def _names(spec: str, field: str, value, allowed=None) -> None:
    """``value`` must be a non-empty sequence of non-empty str (within ``allowed``); a plain
    str is an error, not a sequence of one-letter names."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise AdapterLoadError(
            f"--impl {spec!r}: {field} = {value!r}: expected a non-empty sequence of str, "
            f"e.g. {field} = ({'cpu' if field == 'devices' else 'float32'!r},)"
        )
    for item in value:
        if not isinstance(item, str) or not item:
            raise AdapterLoadError(f"--impl {spec!r}: {field} = {value!r}: {item!r} is not a non-empty str")
        if allowed is not None and item not in allowed:
            raise AdapterLoadError(f"--impl {spec!r}: {field} = {value!r}: {item!r} is not one of {', '.join(allowed)}")


def validate(spec: str, adapter, losses: Sequence[str] = LOSSES) -> None:
    """Raise AdapterLoadError unless ``adapter`` declares name, devices, dtypes and
    skip_reason as adapter.py says, and has a callable method named after at least one of
    ``losses`` (default yolo, ssd; the suite passes its registry's family names)."""
    missing = [a for a in ("name", "devices", "dtypes", "skip_reason") if not hasattr(adapter, a)]
    if missing:
        raise AdapterLoadError(
            f"--impl {spec!r}: the adapter lacks {', '.join(missing)} (see implementations/adapter.py)"
        )
    if not isinstance(adapter.name, str) or not adapter.name:
        raise AdapterLoadError(f"--impl {spec!r}: name = {adapter.name!r}: expected a non-empty str")
    _names(spec, "devices", adapter.devices)
    _names(spec, "dtypes", adapter.dtypes, DTYPES)
    for field in ("skip_reason", *losses):
        value = getattr(adapter, field, None)
        if (field == "skip_reason" or hasattr(adapter, field)) and not callable(value):
            raise AdapterLoadError(f"--impl {spec!r}: {field} = {value!r}: expected a method")
    if not any(hasattr(adapter, loss) for loss in losses):
        methods = " nor ".join(f"{loss}()" for loss in losses)
        raise AdapterLoadError(f"--impl {spec!r}: the adapter has {'neither ' if len(losses) > 1 else 'no '}{methods}")


def load(spec: str, losses: Sequence[str] = LOSSES):
    """Import ``package.module:attr`` and return the adapter it names, validated.

    ``attr`` may be the adapter itself or a class / function that returns one when
    called with no argument. Every failure (import error, exception raised while
    importing, missing attribute, factory that needs arguments, bad declaration) is an
    AdapterLoadError with a one-line message.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AdapterLoadError(f"--impl {spec!r}: expected 'package.module:attr'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an adapter module may raise anything at import
        raise AdapterLoadError(f"--impl {spec!r}: importing {module_name} raised {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise AdapterLoadError(f"--impl {spec!r}: module {module_name} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if isinstance(obj, type) or (not hasattr(obj, "name") and callable(obj)):
        try:
            obj = obj()
        except Exception as exc:
            raise AdapterLoadError(
                f"--impl {spec!r}: calling {attr}() with no argument raised {type(exc).__name__}: {exc}"
            ) from exc
    validate(spec, obj, losses)
    return obj
