"""SSD reference: one hand-computed test per spec rule S1..S14 (reference/spec/ssd.md)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from reference import ssd
from reference.cases import SsdCase, SsdSettings
from reference.errors import CoordinateError, LabelError
from reference.priors import VOC_300, prior_boxes

# Five centre-size priors: the four quadrants and the whole image.
#   p0 [0, 0, .5, .5]  p1 [.5, 0, 1, .5]  p2 [0, .5, .5, 1]  p3 [.5, .5, 1, 1]  p4 [0, 0, 1, 1]
QUADRANTS = np.array(
    [
        [0.25, 0.25, 0.5, 0.5],
        [0.75, 0.25, 0.5, 0.5],
        [0.25, 0.75, 0.5, 0.5],
        [0.75, 0.75, 0.5, 0.5],
        [0.5, 0.5, 1.0, 1.0],
    ]
)
# t0 is exactly p0 (IoU 1 with p0, 0.25 with p4); t1 is the top half (IoU 0.5 with p0, p1, p4).
T0 = [0.0, 0.0, 0.5, 0.5, 2]
T1 = [0.0, 0.0, 1.0, 0.5, 0]


def case_of(truths, priors=QUADRANTS, num_classes=4, seed=0, **settings):
    rng = np.random.default_rng(seed)
    batch = len(truths)
    return SsdCase(
        loc=rng.normal(size=(batch, len(priors), 4)),
        conf=rng.normal(size=(batch, len(priors), num_classes)),
        priors=priors,
        truths=tuple(np.array(t, dtype=np.float64).reshape(-1, 5) for t in truths),
        settings=SsdSettings(**settings),
    )


def test_S1_priors_ssd300():
    priors = prior_boxes(VOC_300)
    assert priors.shape == (8732, 4)
    assert_allclose(priors[0], [1 / 75, 1 / 75, 0.1, 0.1], atol=1e-15)


def test_S2_iou_corner_form_no_plus_one():
    a = np.array([[0.0, 0.0, 0.5, 0.5]])
    b = np.array(
        [
            [0.25, 0.25, 0.75, 0.75],
            [0.0, 0.0, 0.5, 0.5],
            [0.5, 0.0, 1.0, 0.5],
            [0.6, 0.6, 0.9, 0.9],
            [0.0, 0.0, 1.0, 1.0],
        ]
    )
    # 0.0625 / (0.25 + 0.25 - 0.0625) = 1/7; identical 1; touching edge 0; disjoint 0; inside 1/4
    assert_allclose(ssd.iou(a, b), [[1 / 7, 1.0, 0.0, 0.0, 0.25]], rtol=1e-15)


def test_S3_best_prior_and_truth_lowest_index_on_ties_with_margins():
    m = ssd.match(np.array([T0, T1]), QUADRANTS, 0.5)
    assert_allclose(m.overlaps, [[1, 0, 0, 0, 0.25], [0.5, 0.5, 0, 0, 0.5]])
    assert_array_equal(m.best_prior, [0, 0])  # t1 ties at p0, p1, p4: lowest index
    assert_allclose(m.best_prior_margin, [0.75, 0.0])
    assert_array_equal(m.best_truth, [0, 1, 0, 0, 1])  # p2, p3: 0 vs 0, lowest index
    assert_allclose(m.best_truth_margin, [0.5, 0.5, 0.0, 0.0, 0.25])
    assert m.best_prior.dtype == np.int64 and m.best_truth.dtype == np.int64


def test_S4_later_truth_wins():
    m = ssd.match(np.array([T0, T1]), QUADRANTS, 0.5)
    # both force p0; t1 (later) takes it, t0 is left with no prior at all
    assert_array_equal(m.matched, [1, 1, 0, 0, 1])
    assert_allclose(m.overlap, [2.0, 0.5, 0.0, 0.0, 0.5])
    assert 0 not in m.matched[m.overlap >= 0.5]
    swapped = ssd.match(np.array([T1, T0]), QUADRANTS, 0.5)
    assert_array_equal(swapped.matched, [1, 0, 0, 0, 0])  # t0, now later, takes p0
    assert_allclose(swapped.overlap, [2.0, 0.5, 0.0, 0.0, 0.5])


def test_S4_best_prior_override():
    m = ssd.match(np.array([T0, T1]), QUADRANTS, 0.5, best_prior=np.array([0, 1]))
    assert_array_equal(m.matched, [0, 1, 0, 0, 1])
    assert_allclose(m.overlap, [2.0, 2.0, 0.0, 0.0, 0.5])
    assert_array_equal(m.threshold_margin, [np.inf, np.inf, 0.5, 0.5, 0.0])


def test_S5_truth_overlapping_no_prior_is_forced_onto_prior_0():
    top_half = QUADRANTS[:2]
    truth = np.array([[0.0, 0.6, 0.2, 0.9, 1]])
    m = ssd.match(truth, top_half, 0.5)
    assert_array_equal(m.overlaps, [[0.0, 0.0]])
    assert_array_equal(m.best_prior, [0])
    assert_array_equal(m.matched, [0, 0])
    assert_allclose(m.overlap, [2.0, 0.0])
    out = ssd.evaluate(case_of([truth], priors=top_half))
    assert_array_equal(out["conf_t"], [[2, 0]])


def test_S6_threshold_exactly_half_is_positive():
    out = ssd.evaluate(case_of([[T0, T1]]))
    assert_array_equal(out["conf_t"], [[1, 1, 0, 0, 1]])  # p1, p4 have IoU exactly 0.5
    above = ssd.evaluate(case_of([[T0, T1]], threshold=0.5000001))
    assert_array_equal(above["conf_t"], [[1, 0, 0, 0, 0]])  # the forced p0 stays positive
    m = ssd.match(np.array([T0, T1]), QUADRANTS, 0.5000001)
    assert_allclose(m.threshold_margin, [np.inf, 1e-7, 0.5000001, 0.5000001, 1e-7], rtol=1e-9)


def test_S7_encode_by_hand():
    prior = np.array([[0.5, 0.5, 0.2, 0.4], [0.5, 0.5, 0.2, 0.4]])
    matched = np.array([[0.45, 0.35, 0.65, 0.75], [0.3, 0.3, 0.7, 0.7]])
    # centre (0.55, 0.55): 0.05 / (0.1 * 0.2) = 2.5, 0.05 / (0.1 * 0.4) = 1.25; same size: 0
    # centre (0.5, 0.5), size (0.4, 0.4): log(2) / 0.2, log(1) / 0.2
    assert_allclose(
        ssd.encode(matched, prior, (0.1, 0.2)), [[2.5, 1.25, 0.0, 0.0], [0.0, 0.0, np.log(2) / 0.2, 0.0]], atol=1e-14
    )


def test_S8_decode_by_hand():
    prior = np.array([[0.5, 0.5, 0.2, 0.4]])
    loc = np.array([[[1.0, -1.0, 0.0, np.log(2) / 0.2]]])
    # centre (0.5 + 0.02, 0.5 - 0.04), size (0.2, 0.8)
    assert_allclose(ssd.decode(loc, prior, (0.1, 0.2)), [[[0.42, 0.06, 0.62, 0.86]]], atol=1e-15)


def test_S9_mining_score_per_row_stable():
    conf = np.array([[[0.0, 0.0], [0.0, np.log(3)], [-1000.0, -1000.0], [1000.0, 0.0], [5.0, 7.0]]])
    conf_t = np.array([[0, 0, 0, 1, 1]])
    score = ssd.mining_score(conf, conf_t)
    # log 2; log 4; a row 1000 below the batch max still gives log 2 (the seed: -inf); positives 0
    assert_allclose(score, [[np.log(2), np.log(4), np.log(2), 0.0, 0.0]], rtol=1e-12)  # -1000 + log 2 rounds


def test_S10_hard_negatives_count_ties_and_margin():
    score = np.array([[0.0, 3.0, 2.0, 2.0, 2.0, 1.0]])
    pos = np.array([[True, False, False, False, False, False]])
    mining = ssd.hard_negative_mask(score, pos, 3)
    assert_array_equal(mining.num_neg, [3])
    assert_array_equal(mining.neg_mask, [[False, True, True, True, False, False]])  # tie: p2, p3
    assert_array_equal(mining.cut, [2.0])
    assert_array_equal(mining.margin, [[2.0, 1.0, 0.0, 0.0, 0.0, 1.0]])


def test_S10_mined_positives_are_not_negatives():
    score = np.array([[0.0, 0.0, 5.0, 4.0, 3.0, 2.0]])
    pos = np.array([[True, True, False, False, False, False]])
    mining = ssd.hard_negative_mask(score, pos, 3)
    assert_array_equal(mining.num_neg, [5])  # min(3 * 2, 6 - 1)
    assert_array_equal(mining.neg_mask, [[False, False, True, True, True, True]])  # p0 mined too
    assert_array_equal(mining.cut, [0.0])


def test_S10_zero_negatives_has_infinite_cut():
    mining = ssd.hard_negative_mask(np.array([[0.0, 1.0]]), np.array([[True, False]]), 0)
    assert_array_equal(mining.num_neg, [0])
    assert not mining.neg_mask.any()
    assert_array_equal(mining.cut, [np.inf])
    assert_array_equal(mining.margin, [[np.inf, np.inf]])


def test_S11_loss_values_and_gradients_by_hand():
    loc = np.array([[[0.5, 0.0, 0.0, 2.0], [9.0, 9.0, 9.0, 9.0]]])
    conf = np.array([[[0.0, 0.0], [0.0, np.log(3)]]])
    loc_t = np.zeros((1, 2, 4))
    conf_t = np.array([[1, 0]])
    pos = np.array([[True, False]])
    neg = np.array([[False, True]])
    out = ssd.multibox_loss(loc, conf, loc_t, conf_t, pos, neg)
    assert_allclose(out["loss_l"], 0.125 + 1.5)  # 0.5 * 0.5^2 + (2 - 0.5); N = 1
    assert_allclose(out["loss_c"], np.log(2) + np.log(4))
    assert_allclose(out["grad_loc"], [[[0.5, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    assert_allclose(out["grad_conf"], [[[0.5, -0.5], [-0.75, 0.75]]])
    assert out["loss_l"].shape == () and out["loss_l"].dtype == np.float64


def test_S11_normaliser_is_batch_positive_count():
    loc = np.array([[[1.0, 0, 0, 0]], [[0.0, 0, 0, 0]]])  # two images, one prior each
    conf = np.zeros((2, 1, 3))
    out = ssd.multibox_loss(
        loc, conf, np.zeros((2, 1, 4)), np.array([[1], [2]]), np.array([[True], [True]]), np.zeros((2, 1), bool)
    )
    assert_allclose(out["loss_l"], 0.5 / 2)
    assert_allclose(out["loss_c"], 2 * np.log(3) / 2)


def test_S12_no_positives_gives_zero_losses_and_gradients():
    case = case_of([np.zeros((0, 5)), np.zeros((0, 5))])
    out = ssd.evaluate(case)
    assert out["loss_l"] == 0.0 and out["loss_c"] == 0.0
    assert not out["grad_loc"].any() and not out["grad_conf"].any()
    assert not out["pos_mask"].any() and not out["neg_mask"].any()


def test_S13_image_without_truths():
    case = case_of([[T0], np.zeros((0, 5))])
    out = ssd.evaluate(case)
    assert_array_equal(out["matched"][1], -1)
    assert_array_equal(out["conf_t"][1], 0)
    assert not out["neg_mask"][1].any()  # num_neg = 0 for that image
    assert out["neg_mask"][0].sum() == 3  # image 0: one positive (p0), min(3, 4) negatives
    assert not out["grad_conf"][1].any()
    m = ssd.match(np.zeros((0, 5)), QUADRANTS, 0.5)
    assert_array_equal(m.overlap, 0.0)
    assert_array_equal(m.best_truth_margin, np.inf)
    assert m.overlaps.shape == (0, 5)


def test_S14_invalid_input_is_a_typed_error():
    with pytest.raises(CoordinateError):
        ssd.evaluate(case_of([[[0.5, 0.0, 0.5, 0.5, 0]]]))  # zero width
    with pytest.raises(LabelError):
        ssd.evaluate(case_of([[[0.0, 0.0, 0.5, 0.5, 1.5]]]))  # seed would truncate to 1


def test_S3_margins_are_infinite_without_a_runner_up():
    one_prior = ssd.match(np.array([T0]), QUADRANTS[:1], 0.5)
    assert_array_equal(one_prior.best_prior_margin, [np.inf])
    assert_array_equal(one_prior.best_truth_margin, [np.inf])
    assert_array_equal(one_prior.threshold_margin, [np.inf])  # forced
