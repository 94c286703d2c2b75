"""SSD reference: analytic gradients of loss_l + loss_c against central finite differences."""

from dataclasses import replace

import numpy as np
from finite_differences import central_difference
from numpy.testing import assert_allclose

from reference import ssd
from reference.cases import SsdCase

EPS = 1e-6


def random_case(seed, batch=2, num_priors=12, num_classes=4, objects=2):
    rng = np.random.default_rng(seed)
    priors = np.concatenate([rng.uniform(0.1, 0.9, (num_priors, 2)), rng.uniform(0.1, 0.6, (num_priors, 2))], 1)
    truths = []
    for _ in range(batch):
        lo = rng.uniform(0, 0.5, (objects, 2))
        hi = lo + rng.uniform(0.1, 0.5, (objects, 2))
        truths.append(np.concatenate([lo, hi, rng.integers(0, num_classes - 1, (objects, 1))], 1))
    return SsdCase(
        loc=rng.normal(size=(batch, num_priors, 4)) * 2,
        conf=rng.normal(size=(batch, num_priors, num_classes)) * 2,
        priors=priors,
        truths=tuple(truths),
    )


def fixed_masks(case):
    out = ssd.evaluate(case)
    return out, (out["loc_t"], out["conf_t"], out["pos_mask"], out["neg_mask"])


def test_grad_loc_matches_finite_differences():
    case = random_case(0)
    out, (loc_t, conf_t, pos, neg) = fixed_masks(case)
    assert pos.sum() > 0
    diff = np.abs(case.loc - loc_t)[pos]
    assert np.min(np.abs(diff - 1.0)) > 10 * EPS  # no smooth-L1 kink inside the stencil

    def loss(loc):
        r = ssd.multibox_loss(loc, case.conf, loc_t, conf_t, pos, neg)
        return r["loss_l"] + r["loss_c"]

    numeric = central_difference(loss, case.loc.copy())
    assert_allclose(out["grad_loc"], numeric, rtol=1e-6, atol=1e-8)
    assert np.abs(out["grad_loc"]).max() > 0


def test_grad_conf_matches_finite_differences_with_fixed_masks():
    case = random_case(1)
    out, (loc_t, conf_t, pos, neg) = fixed_masks(case)
    assert neg.sum() > 0

    def loss(conf):
        r = ssd.multibox_loss(case.loc, conf, loc_t, conf_t, pos, neg)
        return r["loss_l"] + r["loss_c"]

    numeric = central_difference(loss, case.conf.copy())
    assert_allclose(out["grad_conf"], numeric, rtol=1e-6, atol=1e-8)


def test_grad_conf_of_evaluate_when_mining_has_no_near_ties():
    """The full pipeline, mining included, is differentiable where no score is near the cut."""
    case = random_case(2, batch=1, num_priors=10, num_classes=3, objects=1)
    out = ssd.evaluate(case)
    score = ssd.mining_score(case.conf, out["conf_t"])
    mining = ssd.hard_negative_mask(score, out["pos_mask"], case.settings.neg_pos)
    ranked = np.sort(score[0])[::-1]
    k = int(mining.num_neg[0])
    assert 0 < k < score.shape[1]
    assert ranked[k - 1] - ranked[k] > 1e-3  # the cut is far from the next score: no ranking tie

    def loss(conf):
        r = ssd.evaluate(replace(case, conf=conf))
        return r["loss_l"] + r["loss_c"]

    numeric = central_difference(loss, case.conf.copy())
    assert_allclose(out["grad_conf"], numeric, rtol=1e-6, atol=1e-8)


def test_grad_is_zero_outside_the_masks():
    case = random_case(3, num_priors=30)
    out = ssd.evaluate(case)
    assert not out["grad_loc"][~out["pos_mask"]].any()
    selected = out["pos_mask"] | out["neg_mask"]
    assert not out["grad_conf"][~selected].any()
    assert_allclose(out["grad_conf"][selected].sum(axis=-1), 0.0, atol=1e-15)  # softmax - onehot
