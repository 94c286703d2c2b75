"""One exception hierarchy for bad input: every error names the field, the row and the value.

All of them subclass ``ValueError`` so that callers who only know "bad input" can catch that.
"""
from __future__ import annotations


class InvalidInputError(ValueError):
    """Input that the spec rules out. ``field``, ``row`` (or None) and ``value`` say where."""

    def __init__(self, field: str, row, value, reason: str):
        self.field, self.row, self.value, self.reason = field, row, value, reason
        where = field if row is None else f"{field}[{row}]"
        super().__init__(f"{where} = {value!r}: {reason}")


class ShapeError(InvalidInputError):
    """An array with the wrong number of dimensions or the wrong size along one."""


class CoordinateError(InvalidInputError):
    """A box coordinate that is not finite, outside [0, 1], or a box of zero or negative size."""


class LabelError(InvalidInputError):
    """A class label that is not an integer or not in the valid range."""


class BatchIndexError(InvalidInputError):
    """A YOLO target row whose sample index is not an integer in [0, B)."""


class SettingError(InvalidInputError):
    """A setting (threshold, scale, variance, anchor) outside its valid range."""
