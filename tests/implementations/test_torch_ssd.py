"""The PyTorch SSD MultiBoxLoss (implementations/torch_ssd.py) on CPU, float32 and float64.

Hand cases check single rules (S4, S9, S10, S12, S13); a few fixed random cases check every
key against the NumPy reference. The property-based comparison is the conformance suite's job.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

reference_ssd = pytest.importorskip("reference.ssd", reason="reference.ssd is not importable yet")

from implementations import torch_ssd  # noqa: E402
from implementations.torch_adapter import adapter  # noqa: E402
from reference.cases import SsdCase  # noqa: E402
from reference.errors import CoordinateError, LabelError  # noqa: E402
from reference.priors import PriorConfig, prior_boxes  # noqa: E402

TOL = {"float64": dict(rtol=1e-9, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}
# Four priors of half the image, one per quadrant.
QUADRANTS = np.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5], [0.25, 0.75, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]])
SMALL = PriorConfig(
    feature_maps=(5, 3, 1),
    steps=(60, 100, 300),
    image_size=300,
    min_sizes=(60, 150, 240),
    max_sizes=(150, 240, 315),
    aspect_ratios=((2,), (2, 3), (2,)),
    clip=True,
)


def quadrant_case(truths, num_classes=3, seed=0):
    """A case on the four quadrant priors with random loc and conf."""
    rng = np.random.default_rng(seed)
    truths = tuple(np.asarray(t, dtype=np.float64).reshape(-1, 5) for t in truths)
    batch = len(truths)
    return SsdCase(
        loc=rng.normal(size=(batch, 4, 4)),
        conf=rng.normal(size=(batch, 4, num_classes)),
        priors=QUADRANTS,
        truths=truths,
    )


def random_case(seed, batch=3, num_classes=6):
    """Random loc, conf and 0..4 truths per image on the SMALL prior layout (P = 142)."""
    rng = np.random.default_rng(seed)
    priors = prior_boxes(SMALL)
    truths = []
    for n in rng.integers(0, 5, batch):
        xy = rng.uniform(0, 0.6, (n, 2))
        wh = rng.uniform(0.05, 0.4, (n, 2))
        truths.append(np.column_stack([xy, xy + wh, rng.integers(0, num_classes - 1, n)]))
    return SsdCase(
        loc=rng.normal(size=(batch, len(priors), 4)),
        conf=rng.normal(size=(batch, len(priors), num_classes)) * 3,
        priors=priors,
        truths=tuple(truths),
    )


def assert_same(expected: dict, got: dict, dtype: str) -> None:
    """Every reference key with its shape; ints and bools equal, floats within TOL (loc_t at positives)."""
    pos = expected["pos_mask"]
    for key, want in expected.items():
        want, have = np.asarray(want), got[key]
        assert have.shape == want.shape, (key, have.shape, want.shape)
        if key == "loc_t":
            want, have = want[pos], have[pos]
        if want.dtype.kind in "bi":
            assert have.dtype == want.dtype and np.array_equal(have, want), key
        else:
            assert have.dtype == np.dtype(dtype), (key, have.dtype)
            np.testing.assert_allclose(have, want, err_msg=key, **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_single_truth_by_hand(dtype):
    # The truth is exactly prior 0: IoU 1 there, 0 elsewhere; 1 positive, num_neg = min(3, P-1) = 3.
    case = quadrant_case([[[0.0, 0.0, 0.5, 0.5, 1]]]).astype(dtype)
    out = adapter.ssd(case, "cpu", dtype)
    assert out["matched"].tolist() == [[0, 0, 0, 0]]
    assert out["conf_t"].tolist() == [[2, 0, 0, 0]]
    assert out["pos_mask"].tolist() == [[True, False, False, False]]
    assert out["neg_mask"].tolist() == [[False, True, True, True]]
    np.testing.assert_allclose(out["loc_t"][0, 0], 0.0, atol=1e-7)
    loc = case.loc[0, 0]
    want_l = np.where(np.abs(loc) < 1, 0.5 * loc**2, np.abs(loc) - 0.5).sum()
    np.testing.assert_allclose(out["loss_l"], want_l, rtol=1e-6)
    assert_same(reference_ssd.evaluate(case), out, dtype)


def test_forced_matching_later_truth_wins_a_shared_prior():
    # S4: both truths have prior 0 as best prior; truth 1 (later) takes it, truth 0 gets none.
    case = quadrant_case([[[0.0, 0.0, 0.5, 0.5, 0], [0.0, 0.0, 0.45, 0.45, 1]]])
    out = adapter.ssd(case, "cpu", "float64")
    assert out["matched"][0, 0] == 1 and out["conf_t"][0, 0] == 2
    assert out["pos_mask"].sum() == 1


def test_overlap_exactly_at_threshold_is_positive():
    # S6: prior 4 covers the top half of the truth's prior: IoU exactly 0.5, not the truth's
    # best prior (prior 0, IoU 1), so only the threshold decides; 0.5 is positive.
    priors = np.vstack([QUADRANTS, [0.25, 0.125, 0.5, 0.25]])
    case = SsdCase(
        loc=np.zeros((1, 5, 4)), conf=np.zeros((1, 5, 3)), priors=priors, truths=(np.array([[0.0, 0.0, 0.5, 0.5, 0]]),)
    )
    out = adapter.ssd(case, "cpu", "float32")
    assert out["conf_t"].tolist() == [[1, 0, 0, 0, 1]]


def test_images_without_truths_and_no_positives_give_zeros():
    # S12, S13: no truths anywhere: matched -1, no positives, zero losses and gradients.
    case = quadrant_case([np.zeros((0, 5)), np.zeros((0, 5))])
    out = adapter.ssd(case, "cpu", "float32")
    assert (out["matched"] == -1).all() and not out["pos_mask"].any() and not out["neg_mask"].any()
    assert out["loss_l"] == 0.0 and out["loss_c"] == 0.0
    assert not out["grad_loc"].any() and not out["grad_conf"].any()


def test_mining_score_uses_each_rows_own_max():
    # S9: a float32 row 300 below another row's logits keeps a finite score (the seed's global
    # max gave -inf and ranked it last).
    conf = torch.tensor([[[300.0, 0.0, 0.0], [-300.0, -290.0, -300.0]]], dtype=torch.float32)
    conf_t = torch.zeros(1, 2, dtype=torch.long)
    score = torch_ssd.mining_score(conf, conf_t, conf_t > 0)
    want = reference_ssd.mining_score(conf.double().numpy(), conf_t.numpy())
    assert torch.isfinite(score).all()
    np.testing.assert_allclose(score.numpy(), want, rtol=1e-6, atol=1e-6)


def test_equal_scores_mine_the_lowest_prior_indices():
    # S10: all scores tie; 1 positive (prior 5) -> 3 negatives, the lowest background indices.
    score = torch.full((1, 40), 1.5, dtype=torch.float64)
    pos = torch.zeros(1, 40, dtype=torch.bool)
    pos[0, 5] = True
    score[pos] = 0.0
    mined = torch_ssd.hard_negative_mask(score, pos, 3)
    assert torch.nonzero(mined[0]).flatten().tolist() == [0, 1, 2]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_fixed_cases(seed, dtype):
    case = random_case(seed).astype(dtype)
    assert_same(reference_ssd.evaluate(case), adapter.ssd(case, "cpu", dtype), dtype)


def test_gradient_matches_finite_differences():
    case = quadrant_case([[[0.1, 0.1, 0.45, 0.5, 1]], [[0.5, 0.4, 1.0, 0.9, 0]]])
    priors = torch.tensor(case.priors)
    truths = [torch.tensor(t) for t in case.truths]

    def total(loc, conf):
        out = torch_ssd.multibox_loss(loc, conf, priors, truths)
        return out["loss_l"] + out["loss_c"]

    loc = torch.tensor(case.loc, requires_grad=True)
    conf = torch.tensor(case.conf, requires_grad=True)
    assert torch.autograd.gradcheck(total, (loc, conf), eps=1e-6, atol=1e-6)


def test_invalid_input_raises_typed_errors():
    with pytest.raises(LabelError):
        adapter.ssd(quadrant_case([[[0.0, 0.0, 0.5, 0.5, 2]]]), "cpu", "float64")
    with pytest.raises(CoordinateError):
        adapter.ssd(quadrant_case([[[0.4, 0.0, 0.4, 0.5, 0]]]), "cpu", "float64")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_matches_reference(dtype):
    case = random_case(3).astype(dtype)
    assert_same(reference_ssd.evaluate(case), adapter.ssd(case, "cuda", dtype), dtype)
