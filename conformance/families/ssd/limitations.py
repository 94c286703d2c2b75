"""The SSD rules an implementation may declare it does not follow (see family.Limitation)."""

from conformance.family import Limitation

LIMITATIONS = (
    Limitation(
        "S12",
        "a batch without truths (no positives) has loss_l = loss_c = 0, not NaN",
        lambda case: all(len(t) == 0 for t in case.truths),
    ),
    Limitation(
        "S13",
        "an image without truths has no positives and no negatives",
        lambda case: any(len(t) == 0 for t in case.truths),
    ),
)
