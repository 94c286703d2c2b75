"""SSD300 prior boxes (S1): counts, order, the first priors of every map, clipping."""

from dataclasses import replace

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from reference.priors import COCO_300, VOC_300, PriorConfig, prior_boxes

# (offset of the map's first prior, boxes per cell, f_k = 300 / step)
MAPS = [(0, 4, 37.5), (5776, 6, 18.75), (7942, 6, 9.375), (8542, 6, 4.6875), (8692, 4, 3.0), (8728, 4, 1.0)]


@pytest.mark.parametrize("config", [VOC_300, COCO_300], ids=["voc", "coco"])
def test_prior_count_is_8732(config):
    priors = prior_boxes(config)
    assert priors.shape == (8732, 4)
    assert priors.dtype == np.float64


def test_prior_count_of_each_map_by_hand():
    # 38*38*4 + 19*19*6 + 10*10*6 + 5*5*6 + 3*3*4 + 1*1*4
    assert [o for o, _, _ in MAPS] == [0, 5776, 5776 + 2166, 7942 + 600, 8542 + 150, 8692 + 36]


@pytest.mark.parametrize("config", [VOC_300, COCO_300], ids=["voc", "coco"])
@pytest.mark.parametrize("k", range(6))
def test_first_cell_of_each_map(config, k):
    offset, nb, f_k = MAPS[k]
    s = config.min_sizes[k] / 300
    s2 = np.sqrt(s * config.max_sizes[k] / 300)
    r2 = np.sqrt(2)
    expected = [(s, s), (s2, s2), (s * r2, s / r2), (s / r2, s * r2)]
    if nb == 6:
        r3 = np.sqrt(3)
        expected += [(s * r3, s / r3), (s / r3, s * r3)]
    expected = np.minimum(np.array(expected), 1.0)
    cell = prior_boxes(config)[offset : offset + nb]
    assert_allclose(cell[:, :2], 0.5 / f_k, rtol=0, atol=1e-15)
    assert_allclose(cell[:, 2:], expected, rtol=1e-15, atol=0)


def test_first_voc_priors_by_hand():
    p = prior_boxes(VOC_300)
    c = 1 / 75  # 0.5 / 37.5
    assert_allclose(
        p[:4],
        [
            [c, c, 0.1, 0.1],
            [c, c, 0.1414213562373095, 0.1414213562373095],
            [c, c, 0.1414213562373095, 0.0707106781186548],
            [c, c, 0.0707106781186548, 0.1414213562373095],
        ],
        atol=1e-15,
    )
    assert_allclose(p[5776, :3], [1 / 37.5, 1 / 37.5, 0.2], atol=1e-15)  # 0.5 / 18.75
    assert_allclose(p[8728], [0.5, 0.5, 0.88, 0.88], atol=1e-15)


def test_order_is_row_then_column_then_box():
    p = prior_boxes(VOC_300)
    assert_allclose(p[4, :2], [1.5 / 37.5, 0.5 / 37.5], atol=1e-15)  # next column: cx moves
    assert_allclose(p[38 * 4, :2], [0.5 / 37.5, 1.5 / 37.5], atol=1e-15)  # next row: cy moves


def test_clip_clamps_every_value_into_unit_interval():
    clipped = prior_boxes(VOC_300)
    raw = prior_boxes(replace(VOC_300, clip=False))
    assert raw.max() > 1.0  # 0.88 * sqrt(2) on the 1x1 map
    assert clipped.min() >= 0.0 and clipped.max() == 1.0
    assert_array_equal(clipped, np.clip(raw, 0, 1))


def test_custom_config():
    config = PriorConfig(
        feature_maps=(2,),
        steps=(50,),
        image_size=100,
        min_sizes=(20,),
        max_sizes=(80,),
        aspect_ratios=((),),
        clip=False,
    )
    p = prior_boxes(config)
    assert p.shape == (8, 4)
    assert_allclose(p[:, :2], [[0.25, 0.25]] * 2 + [[0.75, 0.25]] * 2 + [[0.25, 0.75]] * 2 + [[0.75, 0.75]] * 2)
    assert_allclose(p[:2, 2:], [[0.2, 0.2], [0.4, 0.4]])
