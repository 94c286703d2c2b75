"""SSD keys and shapes (the adapter protocol) and the fixture format of its inputs."""

from __future__ import annotations

import numpy as np

from conformance.family import missing_or_malformed, scalar
from reference.cases import SsdCase, SsdSettings
from reference.outputs import SSD_GRAD_KEYS, SSD_LOSS_KEYS, SSD_TARGET_KEYS

INPUT_KEY = "input.loc"  # the input array only SSD fixture files hold


def parts(case: SsdCase) -> dict:
    """{part: keys}: matching, encoding and mining (and the decoded boxes), the two losses,
    their gradient."""
    return {"targets": SSD_TARGET_KEYS + ("decoded",), "losses": SSD_LOSS_KEYS, "gradients": SSD_GRAD_KEYS}


def shapes(case: SsdCase) -> dict:
    """{key: shape}: (B, P) per prior, (B, P, 4) boxes and grad_loc, (B, P, C) grad_conf, () losses."""
    B, P, _ = case.loc.shape
    result = {k: (B, P) for k in ("matched", "conf_t", "pos_mask", "neg_mask")}
    result.update({k: (B, P, 4) for k in ("loc_t", "decoded", "grad_loc")})
    return {**result, "loss_l": (), "loss_c": (), "grad_conf": (B, P, case.num_classes)}


def to_arrays(case: SsdCase) -> dict:
    """The ``input.*`` arrays of ``case``: loc, conf, priors, truths of all images stacked
    with truths_count per image, settings.*."""
    s = case.settings
    truths = [np.asarray(t, dtype=np.float64).reshape(-1, 5) for t in case.truths]
    return {
        "input.loc": case.loc,
        "input.conf": case.conf,
        "input.priors": case.priors,
        "input.truths": np.concatenate(truths, axis=0) if truths else np.zeros((0, 5)),
        "input.truths_count": np.asarray([len(t) for t in truths], dtype=np.int64),
        "input.settings.threshold": scalar(s.threshold, np.float64),
        "input.settings.neg_pos": scalar(s.neg_pos, np.int64),
        "input.settings.variances": np.asarray(s.variances, dtype=np.float64).reshape(2),
    }


def input_problem(arrays) -> str | None:
    """Why ``arrays`` are not an SSD case's inputs (also: truths_count that does not add up), or None."""
    problem = missing_or_malformed(
        arrays,
        ("input.loc", "input.conf", "input.priors", "input.truths", "input.truths_count", "input.settings.variances"),
        scalars=("input.settings.threshold", "input.settings.neg_pos"),
        integers=("input.settings.neg_pos", "input.truths_count"),
    )
    if problem:
        return problem
    counts, truths = np.asarray(arrays["input.truths_count"]), np.asarray(arrays["input.truths"])
    if truths.ndim != 2:
        return f"input.truths has shape {truths.shape}, expected (n, 5)"
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() != len(truths):
        return f"input.truths_count = {counts.tolist()} does not split the {len(truths)} rows of input.truths"
    return None


def from_arrays(arrays, name: str = "") -> SsdCase:
    """Inverse of ``to_arrays``."""
    f64 = lambda k: np.asarray(arrays[k], dtype=np.float64)  # noqa: E731
    counts = np.asarray(arrays["input.truths_count"], dtype=np.int64)
    truths = tuple(np.split(f64("input.truths"), np.cumsum(counts)[:-1], axis=0))
    settings = SsdSettings(
        threshold=float(arrays["input.settings.threshold"]),
        neg_pos=int(arrays["input.settings.neg_pos"]),
        variances=tuple(float(v) for v in arrays["input.settings.variances"]),
    )
    return SsdCase(
        loc=f64("input.loc"),
        conf=f64("input.conf"),
        priors=f64("input.priors"),
        truths=truths,
        settings=settings,
        name=name,
    )
