"""SSD reference: Hypothesis invariants of matching, mining, losses and batch order."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from reference import ssd
from reference.cases import SsdCase, SsdSettings

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GRID = 16  # coordinates on a 1/16 grid, so exact IoU ties and shared best priors are common


@st.composite
def boxes(draw, count):
    """(count, 4) corner boxes on the grid with xmin < xmax, ymin < ymax, inside [0, 1]."""
    lo = np.array(
        draw(st.lists(st.tuples(st.integers(0, GRID - 1), st.integers(0, GRID - 1)), min_size=count, max_size=count)),
        dtype=np.float64,
    ).reshape(-1, 2)
    span = np.array(
        draw(st.lists(st.tuples(st.integers(1, GRID), st.integers(1, GRID)), min_size=count, max_size=count)),
        dtype=np.float64,
    ).reshape(-1, 2)
    hi = np.minimum(lo + span, GRID)
    return np.concatenate([lo, hi], axis=1) / GRID


@st.composite
def ssd_cases(draw):
    batch = draw(st.integers(1, 3))
    num_priors = draw(st.integers(1, 24))
    num_classes = draw(st.integers(2, 5))
    priors = ssd.center_size(draw(boxes(num_priors)))
    truths = []
    for _ in range(batch):
        n = draw(st.integers(0, 4))
        labels = draw(st.lists(st.integers(0, num_classes - 2), min_size=n, max_size=n))
        truths.append(np.concatenate([draw(boxes(n)), np.array(labels, np.float64)[:, None]], 1))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    conf = rng.normal(size=(batch, num_priors, num_classes)) * draw(st.sampled_from([0.0, 1.0, 5.0]))
    loc = rng.normal(size=(batch, num_priors, 4))
    neg_pos = draw(st.integers(0, 4))
    threshold = draw(st.sampled_from([0.5, 0.25, 1.0, 0.3]))
    return SsdCase(
        loc=loc,
        conf=conf,
        priors=priors,
        truths=tuple(truths),
        settings=SsdSettings(threshold=threshold, neg_pos=neg_pos),
    )


@SETTINGS
@given(ssd_cases())
def test_every_truth_keeps_its_forced_prior_unless_a_later_truth_took_it(case):
    out = ssd.evaluate(case)
    for b, truth in enumerate(case.truths):
        m = ssd.match(truth, case.priors, case.settings.threshold)
        for j, p in enumerate(m.best_prior):
            later = m.best_prior[j + 1 :] == p
            if later.any():
                assert m.matched[p] == j + 1 + np.flatnonzero(later)[-1]
            else:
                assert m.matched[p] == j
            assert m.overlap[p] == 2.0 and out["conf_t"][b, p] == truth[m.matched[p], 4] + 1
            assert m.overlaps[j, p] == m.overlaps[j].max()


@SETTINGS
@given(ssd_cases())
def test_number_of_mined_negatives(case):
    out = ssd.evaluate(case)
    pos = out["pos_mask"]
    score = ssd.mining_score(case.conf, out["conf_t"])
    mining = ssd.hard_negative_mask(score, pos, case.settings.neg_pos)
    assert_array_equal(mining.neg_mask, out["neg_mask"])
    num_priors = pos.shape[1]
    for b in range(pos.shape[0]):
        num_neg = min(case.settings.neg_pos * int(pos[b].sum()), num_priors - 1)
        assert mining.num_neg[b] == num_neg
        if num_neg == 0:
            assert not out["neg_mask"][b].any() and mining.cut[b] == np.inf
            continue
        cut = np.sort(score[b])[::-1][num_neg - 1]
        assert mining.cut[b] == cut
        above = score[b] > cut
        tied = np.flatnonzero(score[b] == cut)[: num_neg - above.sum()]  # lowest index first
        mined = above.copy()
        mined[tied] = True
        assert mined.sum() == num_neg
        assert out["neg_mask"][b].sum() == num_neg - (mined & pos[b]).sum()
        assert_array_equal(out["neg_mask"][b], mined & ~pos[b])


@SETTINGS
@given(ssd_cases())
def test_losses_and_gradients_finite_on_valid_input(case):
    out = ssd.evaluate(case)
    for key in ("loss_l", "loss_c", "grad_loc", "grad_conf", "decoded"):
        assert np.isfinite(out[key]).all(), key
    assert out["loss_l"] >= 0 and out["loss_c"] >= 0
    if not out["pos_mask"].any():
        assert out["loss_l"] == 0 and out["loss_c"] == 0
    assert out["matched"].dtype == np.int64 and out["conf_t"].dtype == np.int64
    assert out["pos_mask"].dtype == bool and out["neg_mask"].dtype == bool
    assert not (out["pos_mask"] & out["neg_mask"]).any()


@SETTINGS
@given(ssd_cases(), st.randoms(use_true_random=False))
def test_permuting_images_permutes_outputs(case, random):
    order = list(range(len(case.truths)))
    random.shuffle(order)
    permuted = SsdCase(
        loc=case.loc[order],
        conf=case.conf[order],
        priors=case.priors,
        truths=tuple(case.truths[i] for i in order),
        settings=case.settings,
    )
    a, b = ssd.evaluate(case), ssd.evaluate(permuted)
    for key in ("matched", "conf_t", "pos_mask", "neg_mask"):
        assert_array_equal(a[key][order], b[key], err_msg=key)
    for key in ("loc_t", "decoded", "grad_loc", "grad_conf"):
        assert_allclose(a[key][order], b[key], rtol=1e-12, atol=1e-15, err_msg=key)
    for key in ("loss_l", "loss_c"):
        assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-15, err_msg=key)


@SETTINGS
@given(ssd_cases())
def test_positive_targets_decode_to_their_truth(case):
    out = ssd.evaluate(case)
    variances = case.settings.variances
    for b, truth in enumerate(case.truths):
        pos = out["pos_mask"][b]
        decoded = ssd.decode(out["loc_t"][b][pos], case.priors[pos], variances)
        assert_allclose(decoded, truth[out["matched"][b][pos], :4], atol=1e-12)
        assert not out["loc_t"][b][~pos].any()


@SETTINGS
@given(ssd_cases())
def test_overrides_reproduce_the_defaults(case):
    s = case.settings
    matches = [ssd.match(t, case.priors, s.threshold) for t in case.truths]
    plain = ssd.evaluate(case)
    given_both = ssd.evaluate(case, matches=matches, neg_mask=plain["neg_mask"])
    for key, value in plain.items():
        assert_array_equal(value, given_both[key], err_msg=key)
