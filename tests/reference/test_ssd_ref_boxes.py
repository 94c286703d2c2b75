"""SSD reference box helpers, by hand: point_form, center_size, iou, encode/decode."""

import numpy as np
from numpy.testing import assert_allclose

from reference import ssd


def test_point_form_by_hand():
    assert_allclose(
        ssd.point_form(np.array([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.2, 0.2]])),
        [[0.4, 0.3, 0.6, 0.7], [0.0, 0.8, 0.2, 1.0]],
        atol=1e-16,
    )


def test_center_size_by_hand_and_inverse():
    corners = np.array([[0.4, 0.3, 0.6, 0.7], [0.0, 0.0, 1.0, 0.5]])
    assert_allclose(ssd.center_size(corners), [[0.5, 0.5, 0.2, 0.4], [0.5, 0.25, 1.0, 0.5]], atol=1e-16)
    assert_allclose(ssd.point_form(ssd.center_size(corners)), corners, atol=1e-16)


def test_point_form_keeps_leading_axes():
    boxes = np.arange(24, dtype=np.float64).reshape(2, 3, 4) + 1
    out = ssd.point_form(boxes)
    assert out.shape == (2, 3, 4)
    assert_allclose(out[1, 2], ssd.point_form(boxes[1, 2:3])[0])


def test_iou_by_hand():
    a = np.array([[0.0, 0.0, 0.4, 0.4], [0.2, 0.2, 0.6, 0.4]])
    b = np.array([[0.2, 0.0, 0.6, 0.4], [0.0, 0.0, 0.4, 0.4]])
    # a0 vs b0: inter 0.2*0.4 = 0.08, union 0.16 + 0.16 - 0.08 = 0.24 -> 1/3
    # a1 vs b0: inter 0.4*0.2 = 0.08, area a1 0.08, union 0.16 -> 1/2
    # a1 vs b1: inter 0.2*0.2 = 0.04, union 0.08 + 0.16 - 0.04 = 0.2 -> 1/5
    assert_allclose(ssd.iou(a, b), [[1 / 3, 1.0], [0.5, 0.2]], rtol=1e-14)
    assert ssd.iou(a, b).shape == (2, 2)
    assert ssd.iou(np.zeros((0, 4)), b).shape == (0, 2)


def test_iou_is_symmetric():
    rng = np.random.default_rng(1)
    lo = rng.uniform(0, 0.5, (5, 2))
    a = np.concatenate([lo, lo + rng.uniform(0.01, 0.5, (5, 2))], 1)
    assert_allclose(ssd.iou(a, a[::-1]), ssd.iou(a[::-1], a).T, rtol=1e-15)
    assert_allclose(np.diag(ssd.iou(a, a)), 1.0, rtol=1e-15)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(2)
    priors = np.concatenate([rng.uniform(0, 1, (50, 2)), rng.uniform(0.05, 1, (50, 2))], 1)
    lo = rng.uniform(0, 0.6, (50, 2))
    matched = np.concatenate([lo, lo + rng.uniform(0.01, 0.4, (50, 2))], 1)
    for variances in [(0.1, 0.2), (1.0, 1.0), (0.05, 0.3)]:
        loc = ssd.encode(matched, priors, variances)
        assert_allclose(ssd.decode(loc, priors, variances), matched, atol=1e-14)
    assert_allclose(ssd.encode(ssd.point_form(priors), priors, (0.1, 0.2)), 0.0, atol=1e-12)


def test_decode_of_zero_offsets_is_the_prior():
    priors = np.array([[0.5, 0.5, 0.2, 0.4], [0.1, 0.2, 0.3, 0.1]])
    out = ssd.decode(np.zeros((3, 2, 4)), priors, (0.1, 0.2))
    assert out.shape == (3, 2, 4)
    assert_allclose(out, np.broadcast_to(ssd.point_form(priors), (3, 2, 4)), atol=1e-16)
