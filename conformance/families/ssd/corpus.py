"""The SSD golden fixture cases: curated (one per spec rule S1..S14 or quirk), generated,
realistic (SSD300). Every function returns an ``SsdCase`` with a unique ``name``; values
are binary fractions or come from reference.priors (see conformance/corpus.py).
"""

from __future__ import annotations

import numpy as np

from conformance.corpus import N_GENERATED, logits
from conformance.families.ssd.strategies import grid_priors
from reference.cases import SsdCase, SsdSettings
from reference.priors import VOC_300, prior_boxes


def _ssd(name: str, truths, *, priors=None, num_classes=3, seed=0, bound=4.0, settings=SsdSettings()) -> SsdCase:
    """An SSD case with one image per entry of ``truths`` (each a list of 5-rows, maybe empty)."""
    rng = np.random.default_rng(seed)
    p = grid_priors() if priors is None else np.asarray(priors, dtype=np.float64)
    b = len(truths)
    tr = tuple(np.asarray(t, dtype=np.float64).reshape(-1, 5) for t in truths)
    return SsdCase(
        loc=logits(rng, (b, len(p), 4), 1.0),
        conf=logits(rng, (b, len(p), num_classes), bound),
        priors=p,
        truths=tr,
        settings=settings,
        name=name,
    )


# ---------------------------------------------------------------- curated SSD (S1..S14)


def s2_truth_equals_prior() -> SsdCase:
    """Truth = the 0.25 prior of cell (2, 2); neighbours touch it (IoU 0: no +1 pixel)."""
    return _ssd("S2_truth_equals_prior", [[[0.5, 0.5, 0.75, 0.75, 1]]], seed=31)


def s3_best_prior_tie() -> SsdCase:
    """Truth centred between four 0.5 priors: IoU 0.25 with each, lowest index wins."""
    return _ssd("S3_best_prior_tie", [[[0.375, 0.375, 0.625, 0.625, 0]]], seed=32)


def s4_later_truth_wins() -> SsdCase:
    """Two truths share their best prior: the later one takes it, the earlier ends unmatched."""
    return _ssd("S4_later_truth_wins", [[[0.5, 0.5, 0.75, 0.75, 0], [0.5, 0.5, 0.75, 0.6875, 1]]], seed=33)


def s5_truth_overlaps_nothing() -> SsdCase:
    """Priors cover only [0, 0.5]^2; the second truth overlaps none: forced onto prior 0."""
    p = grid_priors(2, (0.25,)) * np.array([0.5, 0.5, 1.0, 1.0])
    return _ssd(
        "S5_truth_overlaps_nothing", [[[0.0, 0.25, 0.25, 0.5, 1], [0.75, 0.75, 1.0, 1.0, 0]]], priors=p, seed=34
    )


def _half_priors() -> np.ndarray:
    return np.array(
        [
            [0.25, 0.25, 0.5, 0.5],
            [0.25, 0.125, 0.5, 0.25],
            [0.25, 0.12109375, 0.5, 0.2421875],
            [0.75, 0.75, 0.25, 0.25],
            [0.75, 0.25, 0.25, 0.25],
            [0.25, 0.75, 0.5, 0.5],
        ]
    )


def s6_iou_exactly_half() -> SsdCase:
    """Prior 1 has IoU exactly 0.5 (positive), prior 2 has 0.484375 (background)."""
    return _ssd("S6_iou_exactly_half", [[[0.0, 0.0, 0.5, 0.5, 0]]], priors=_half_priors(), seed=35)


def s7_custom_variances() -> SsdCase:
    s = SsdSettings(threshold=0.375, neg_pos=2, variances=(0.125, 0.25))
    return _ssd("S7_custom_variances", [[[0.125, 0.25, 0.5, 0.625, 1], [0.5, 0.0, 1.0, 0.5, 0]]], settings=s, seed=36)


def s8_decode_large_offsets() -> SsdCase:
    case = _ssd("S8_decode_large_offsets", [[[0.25, 0.25, 0.75, 0.75, 0]]], seed=37)
    rng = np.random.default_rng(37)
    return SsdCase(
        loc=logits(rng, case.loc.shape, 8.0), conf=case.conf, priors=case.priors, truths=case.truths, name=case.name
    )


def s9_mining_scores_far_apart() -> SsdCase:
    """Rows at +-200: a global-max logsumexp (the seed) underflows in float32; per-row does not."""
    case = _ssd("S9_mining_scores_far_apart", [[[0.5, 0.5, 0.75, 0.75, 1]]], seed=38)
    conf = case.conf.copy()
    conf[0, ::3, :] += 200.0
    conf[0, 1::3, :] -= 200.0
    return SsdCase(loc=case.loc, conf=conf, priors=case.priors, truths=case.truths, name=case.name)


def s9_rows_far_below_max() -> SsdCase:
    """Hard negatives 120 and 800 below the batch max: a global-max logsumexp gives them
    -inf scores (float32 from ~103 below, float64 from ~745), so it mines others."""
    case = _ssd("S9_rows_far_below_max", [[[0.5, 0.5, 0.75, 0.75, 1]]], seed=42)
    conf = case.conf.copy()
    conf[0, 1::4, 0] -= 4.0  # background logit low: high cross-entropy, mined first
    conf[0, 1::8, :] -= 120.0
    conf[0, 5::8, :] -= 800.0
    return SsdCase(loc=case.loc, conf=conf, priors=case.priors, truths=case.truths, name=case.name)


def s10_tied_negative_scores() -> SsdCase:
    """All logits 0: every negative scores log(C); the cut falls inside a tie."""
    case = _ssd("S10_tied_negative_scores", [[[0.5, 0.5, 0.75, 0.75, 1]]], seed=39)
    return SsdCase(loc=case.loc, conf=np.zeros_like(case.conf), priors=case.priors, truths=case.truths, name=case.name)


def s10_neg_pos_zero() -> SsdCase:
    return _ssd("S10_neg_pos_zero", [[[0.25, 0.5, 0.75, 1.0, 0]]], settings=SsdSettings(neg_pos=0), seed=40)


def s10_negatives_capped() -> SsdCase:
    """Four priors, two positives: num_neg = min(6, P - 1) = 3, so a positive is mined too."""
    p = grid_priors(2, (0.5,))
    return _ssd("S10_negatives_capped", [[[0.0, 0.0, 0.5, 0.5, 0], [0.5, 0.5, 1.0, 1.0, 1]]], priors=p, seed=41)


def s11_two_images() -> SsdCase:
    return _ssd(
        "S11_two_images",
        [[[0.125, 0.125, 0.375, 0.5, 0], [0.5, 0.25, 1.0, 0.75, 1]], [[0.25, 0.5, 0.75, 0.875, 1]]],
        seed=42,
    )


def s12_no_positives() -> SsdCase:
    """No truth in any image: N = 0, losses and gradients 0 (the seed gives NaN)."""
    return _ssd("S12_no_positives", [[], []], seed=43)


def s13_image_without_truths() -> SsdCase:
    return _ssd("S13_image_without_truths", [[[0.25, 0.25, 0.5, 0.75, 0]], []], seed=44)


def s14_boundary_values() -> SsdCase:
    """Whole-image truth with the last label, threshold 1.0 (only forced priors positive)."""
    return _ssd(
        "S14_boundary_values",
        [[[0.0, 0.0, 1.0, 1.0, 1], [0.75, 0.0, 1.0, 0.25, 0]]],
        settings=SsdSettings(threshold=1.0),
        seed=45,
    )


SSD_CURATED = (
    s2_truth_equals_prior,
    s3_best_prior_tie,
    s4_later_truth_wins,
    s5_truth_overlaps_nothing,
    s6_iou_exactly_half,
    s7_custom_variances,
    s8_decode_large_offsets,
    s9_mining_scores_far_apart,
    s9_rows_far_below_max,
    s10_tied_negative_scores,
    s10_neg_pos_zero,
    s10_negatives_capped,
    s11_two_images,
    s12_no_positives,
    s13_image_without_truths,
    s14_boundary_values,
)


# ---------------------------------------------------------------- generated, realistic


def _random_truths(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """(n, 5) valid truths with corners on k/32 and labels in [0, C-2]."""
    lo = rng.integers(0, 32, (n, 2))
    hi = np.minimum(lo + rng.integers(1, 33, (n, 2)), 32)
    labels = rng.integers(0, num_classes - 1, n)
    return np.column_stack([lo / 32, hi / 32, labels]).astype(np.float64).reshape(n, 5)


def generated_ssd(i: int) -> SsdCase:
    """Small random SSD case number ``i`` from default_rng(2000 + i)."""
    rng = np.random.default_rng(2000 + i)
    b, c, p = int(rng.integers(1, 3)), int(rng.integers(2, 5)), int(rng.integers(6, 25))
    priors = np.column_stack([rng.integers(1, 32, (p, 2)) / 32, rng.integers(1, 33, (p, 2)) / 32])
    truths = tuple(_random_truths(rng, int(rng.integers(0, 4)), c).reshape(-1, 5) for _ in range(b))
    return SsdCase(
        loc=logits(rng, (b, p, 4), 1.0),
        conf=logits(rng, (b, p, c)),
        priors=priors,
        truths=truths,
        name=f"ssd_gen_{i:02d}",
    )


def ssd300(batch: int, num_classes: int = 3, seed: int = 300) -> SsdCase:
    """SSD300 VOC priors (8732), 1..4 truths per image, few classes to keep the file small."""
    rng = np.random.default_rng(seed + batch)
    priors = prior_boxes(VOC_300)
    truths = tuple(_random_truths(rng, int(rng.integers(1, 5)), num_classes) for _ in range(batch))
    return SsdCase(
        loc=logits(rng, (batch, len(priors), 4), 1.0),
        conf=logits(rng, (batch, len(priors), num_classes)),
        priors=priors,
        truths=truths,
        name=f"ssd300_b{batch}",
    )


def cases() -> list:
    """Every SSD fixture case: curated, then generated, then realistic."""
    return [f() for f in SSD_CURATED] + [generated_ssd(i) for i in range(N_GENERATED)] + [ssd300(1), ssd300(2)]
