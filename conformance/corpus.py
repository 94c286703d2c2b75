"""The golden fixture cases of every loss family (each family's ``corpus``), and what they share.

Every case has a unique ``name``. Every value is a binary fraction k / 2**m (m <= 10, |k|
small) or comes from reference.priors, so float64, float32 and (for the logits) float16
and bfloat16 see the same inputs. Only valid inputs are in the corpus: the invalid-input
rules (Y13, S14) are tested elsewhere; their boundary values (cx = 1, a whole-image
truth) are in it.
"""

from __future__ import annotations

import numpy as np

STEP = 64  # logits are k / 64 (8 significant bits at most: exact even in bfloat16)
N_GENERATED = 20  # random small cases per family


def logits(rng: np.random.Generator, shape, bound: float = 4.0) -> np.ndarray:
    """float64 array of ``shape``, values k/64 uniform in [-bound, bound]."""
    k = int(bound * STEP)
    return rng.integers(-k, k + 1, size=shape).astype(np.float64) / STEP


def all_cases() -> list:
    """Every fixture case of every family in the registry; names are unique."""
    from conformance.families import FAMILIES

    cases = [case for family in FAMILIES for case in family.corpus()]
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "duplicate fixture case names"
    return cases
