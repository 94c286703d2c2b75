"""The registry of loss families: one name per family, each a folder here whose
``__init__.py`` defines ``FAMILY`` (a conformance.family.Family)."""

from __future__ import annotations

from importlib import import_module

NAMES = ("yolo", "ssd")
FAMILIES = tuple(import_module(f"{__name__}.{name}").FAMILY for name in NAMES)
BY_NAME = {f.name: f for f in FAMILIES}


def family_of(case):
    """The Family whose case type ``case`` is; TypeError for anything else."""
    for family in FAMILIES:
        if isinstance(case, family.case_type):
            return family
    raise TypeError(f"{type(case).__name__} is the case type of no family in {', '.join(NAMES)}")


def family_of_arrays(arrays):
    """The Family whose fixture input arrays ``arrays`` are, or None."""
    return next((f for f in FAMILIES if f.input_key in arrays), None)
