"""One exception hierarchy for bad input: every error names the field, the row and the value.

All of them subclass ``ValueError`` so that callers who only know "bad input" can catch that.
``real_array`` and ``real_number`` turn what a user passes (lists, ints, float32 arrays)
into float64 at the entry of both references, or raise the typed error.
"""

from __future__ import annotations

import numpy as np


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


class DtypeError(InvalidInputError):
    """An array whose elements are not real numbers: bool, complex, text or Python objects."""


# ---------------------------------------------------------------- input types, shared by both references


def real_array(field: str, value) -> np.ndarray:
    """``value`` (an array or nested sequences of int or float) as a float64 ndarray.

    Integer arrays are cast; bool, complex, text and object arrays raise DtypeError (a cast
    would drop the imaginary part or turn True into 1.0); nested sequences of unequal
    lengths raise ShapeError. Float64 input is returned as is, not copied.
    """
    try:
        a = np.asarray(value)
    except ValueError:  # inhomogeneous nested sequences
        raise ShapeError(
            field, None, type(value).__name__, "nested sequences of unequal lengths, not an array"
        ) from None
    if a.dtype.kind not in "iuf":
        raise DtypeError(
            field, None, str(a.dtype), "must hold real numbers (int or float), not bool, complex, text or objects"
        )
    return a.astype(np.float64, copy=False)


def real_number(field: str, value, row=None) -> float:
    """A setting ``value`` (int, float, NumPy integer or floating scalar, or a 0-d array of
    those) as a float; bool, None, str, sequences and complex raise SettingError."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SettingError(field, row, value, f"must be a real number, not {type(value).__name__}")
    return float(value)
