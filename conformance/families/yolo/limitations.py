"""The YOLOv3 rules an implementation may declare it does not follow (see family.Limitation)."""

import numpy as np

from conformance.family import Limitation
from reference import yolo
from reference.outputs import layer_key


def _empty_mean(case) -> bool:
    """Is a mean of Y7 over no element: a layer without obj cells (no targets) or without noobj cells?"""
    out = yolo.evaluate(case)
    return any(
        not out[layer_key(k, mask)].any() for k in range(len(case.outputs)) for mask in ("obj_mask", "noobj_mask")
    )


LIMITATIONS = (
    Limitation(
        "Y3-edge",
        "a target centre at cx = 1 or cy = 1 (in the implementation's precision) lies in the last cell",
        lambda case: bool((np.asarray(case.targets)[:, 2:4] >= 1).any()),
    ),
    Limitation("Y8", "a mean over no element (no targets, no noobj cell) is 0, not NaN", _empty_mean),
)
