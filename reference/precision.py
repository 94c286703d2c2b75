"""The floating-point precisions an implementation may compute in, and what each one is.

A ``Precision`` holds every fact the suite uses about a format: its unit roundoff u (half
the distance from 1 to the next number), its smallest normal and subnormal and largest
finite numbers, the error allowed to its transcendental functions, and how to round a
float64 array to it. ``PRECISIONS`` lists them by name; the names are NumPy's and torch's
(``getattr(torch, p.name)`` is the torch dtype).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference.errors import SettingError


@dataclass(frozen=True)
class Precision:
    name: str  # "float64", "float32", "float16", "bfloat16"
    u: float  # unit roundoff
    smallest_normal: float
    smallest_subnormal: float
    largest: float
    transcendental: float = 8.0  # error of exp, log, tanh in units of u (glibc 1-2 ulps; vector kernels more)

    def round(self, a) -> np.ndarray:
        """``a`` rounded to nearest (ties to even) in this precision, returned as float64."""
        a = np.asarray(a, dtype=np.float64)
        if self.name == "bfloat16":  # round to nearest even on the top 16 bits of float32
            bits = a.astype(np.float32).view(np.uint32)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            return bits.astype(np.uint32).view(np.float32).astype(np.float64)
        return a.astype(self.name).astype(np.float64)

    def spacing(self, x) -> np.ndarray:
        """Distance from |x| (float64) to the next larger number of this precision: 2u·2^⌊log2 |x|⌋
        for normal numbers, the smallest subnormal below the smallest normal."""
        x = np.maximum(np.abs(x), self.smallest_normal)
        return np.maximum(2.0 ** np.floor(np.log2(x)) * 2 * self.u, self.smallest_subnormal)

    def __str__(self) -> str:
        return self.name


PRECISIONS = {
    p.name: p
    for p in (
        Precision("float64", 2.0**-53, 2.0**-1022, 2.0**-1074, float(np.finfo(np.float64).max)),
        Precision("float32", 2.0**-24, 2.0**-126, 2.0**-149, float(np.finfo(np.float32).max)),
        Precision("float16", 2.0**-11, 2.0**-14, 2.0**-24, 65504.0),
        Precision("bfloat16", 2.0**-8, 2.0**-126, 2.0**-133, 3.3895313892515355e38),
    )
}
DTYPES = tuple(PRECISIONS)


def precision(dtype) -> Precision:
    """The Precision named ``dtype`` (a Precision is returned as is); SettingError (field
    ``dtype``) for anything else."""
    if isinstance(dtype, Precision):
        return dtype
    if not isinstance(dtype, str) or dtype not in PRECISIONS:
        raise SettingError("dtype", None, dtype, f"must be one of {', '.join(DTYPES)}")
    return PRECISIONS[dtype]
