"""SSD reference: every kind of invalid input gives the typed error of S14 naming field, row, value."""

from dataclasses import replace

import numpy as np
import pytest

from reference import ssd
from reference.cases import SsdCase, SsdSettings
from reference.errors import CoordinateError, InvalidInputError, LabelError, SettingError, ShapeError

PRIORS = np.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
GOOD = np.array([[0.0, 0.0, 0.5, 0.5, 0], [0.2, 0.2, 0.9, 0.8, 1]])


def good_case(truths=(GOOD, GOOD), **settings):
    batch = len(truths)
    return SsdCase(
        loc=np.zeros((batch, 3, 4)),
        conf=np.zeros((batch, 3, 3)),
        priors=PRIORS,
        truths=tuple(np.asarray(t, dtype=np.float64) for t in truths),
        settings=SsdSettings(**settings),
    )


def with_truth(row, image=1):
    bad = GOOD.copy()
    bad[1] = row
    return good_case((GOOD, bad) if image == 1 else (bad, GOOD))


def test_valid_case_passes():
    assert ssd.validate(good_case()) is None
    assert ssd.validate(good_case((GOOD, np.zeros((0, 5))))) is None


@pytest.mark.parametrize(
    "row, error, value",
    [
        ([0.2, 0.2, 1.2, 0.8, 1], CoordinateError, [0.2, 0.2, 1.2, 0.8, 1.0]),  # xmax > 1
        ([-0.1, 0.2, 0.5, 0.8, 1], CoordinateError, [-0.1, 0.2, 0.5, 0.8, 1.0]),  # xmin < 0
        ([0.5, 0.2, 0.5, 0.8, 1], CoordinateError, [0.5, 0.2, 0.5, 0.8, 1.0]),  # zero width
        ([0.2, 0.8, 0.5, 0.2, 1], CoordinateError, [0.2, 0.8, 0.5, 0.2, 1.0]),  # ymin > ymax
        ([0.2, np.nan, 0.5, 0.8, 1], CoordinateError, None),  # not finite
        ([0.2, 0.2, 0.5, 0.8, 1.5], LabelError, 1.5),  # not an integer
        ([0.2, 0.2, 0.5, 0.8, 2], LabelError, 2.0),  # label + 1 would be C = 3
        ([0.2, 0.2, 0.5, 0.8, -1], LabelError, -1.0),
        ([0.2, 0.2, 0.5, 0.8, np.inf], CoordinateError, None),
    ],
)
def test_bad_truth_row_names_image_and_row(row, error, value):
    with pytest.raises(error) as info:
        ssd.evaluate(with_truth(row))
    assert info.value.field == "truths[1]" and info.value.row == 1
    if value is not None:
        assert info.value.value == value
    assert str(info.value).startswith("truths[1][1] = ")
    assert isinstance(info.value, ValueError)


def test_truths_of_wrong_shape():
    with pytest.raises(ShapeError) as info:
        ssd.validate(good_case((GOOD, GOOD[:, :4])))
    assert info.value.field == "truths[1]" and info.value.value == (2, 4)


def test_wrong_number_of_truth_arrays():
    case = replace(good_case(), truths=(GOOD,))
    with pytest.raises(ShapeError) as info:
        ssd.validate(case)
    assert info.value.field == "truths" and info.value.value == 1


@pytest.mark.parametrize(
    "field, array",
    [
        ("loc", np.zeros((2, 4, 4))),
        ("loc", np.zeros((2, 3, 3))),
        ("conf", np.zeros((1, 3, 3))),
        ("conf", np.zeros((2, 3, 1))),
        ("priors", np.zeros((3, 5))),
    ],
)
def test_shape_mismatch(field, array):
    with pytest.raises(ShapeError) as info:
        ssd.validate(replace(good_case(), **{field: array}))
    assert info.value.field == field and info.value.value == array.shape


@pytest.mark.parametrize(
    "field, index, error",
    [("loc", (1, 2, 3), CoordinateError), ("conf", (0, 1, 2), InvalidInputError), ("priors", (2, 0), CoordinateError)],
)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_not_finite(field, index, error, bad):
    case = good_case()
    array = getattr(case, field).copy()
    array[index] = bad
    with pytest.raises(error) as info:
        ssd.validate(replace(case, **{field: array}))
    assert info.value.field == field and info.value.row == index
    assert np.isnan(info.value.value) if np.isnan(bad) else info.value.value == bad


@pytest.mark.parametrize("size", [0.0, -0.5])
def test_prior_without_area(size):
    priors = PRIORS.copy()
    priors[1, 3] = size
    with pytest.raises(CoordinateError) as info:
        ssd.validate(replace(good_case(), priors=priors))
    assert info.value.field == "priors" and info.value.row == 1


@pytest.mark.parametrize(
    "settings, field",
    [
        (dict(threshold=0.0), "settings.threshold"),
        (dict(threshold=1.01), "settings.threshold"),
        (dict(threshold=np.nan), "settings.threshold"),
        (dict(neg_pos=-1), "settings.neg_pos"),
        (dict(neg_pos=1.5), "settings.neg_pos"),
        (dict(variances=(0.1, 0.0)), "settings.variances"),
        (dict(variances=(-0.1, 0.2)), "settings.variances"),
        (dict(variances=(0.1,)), "settings.variances"),
    ],
)
def test_bad_settings(settings, field):
    with pytest.raises(SettingError) as info:
        ssd.evaluate(good_case(**settings))
    assert info.value.field == field


def test_threshold_one_is_valid():
    assert ssd.validate(good_case(threshold=1.0)) is None


# ---------------------------------------------------------------- input types (issue 9, item 7)


def _random_case(dtype=np.float64, batch=2):
    """A case with positives and mined negatives, its arrays given in ``dtype``."""
    rng = np.random.default_rng(7)
    case = good_case((GOOD, GOOD)[:batch])
    conf = (rng.normal(size=case.conf.shape) * 3).astype(np.float32).astype(dtype)
    loc = (rng.normal(size=case.loc.shape)).astype(np.float32).astype(dtype)
    return replace(
        case, conf=conf, loc=loc, priors=PRIORS.astype(dtype), truths=tuple(t.astype(dtype) for t in case.truths)
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_low_precision_arrays_are_computed_in_float64(dtype):
    """The same values as float32 / float16 or as float64 give the same float64 outputs."""
    low = _random_case(dtype)
    as64 = replace(
        low,
        loc=low.loc.astype(np.float64),
        conf=low.conf.astype(np.float64),
        priors=low.priors.astype(np.float64),
        truths=tuple(t.astype(np.float64) for t in low.truths),
    )
    got, want = ssd.evaluate(low), ssd.evaluate(as64)
    assert got["loss_c"] > 0 and got["pos_mask"].any() and got["neg_mask"].any()
    for key, value in want.items():
        assert got[key].dtype == value.dtype and np.array_equal(got[key], value), key


def test_lists_and_integer_logits_are_accepted_as_float64():
    """Like the YOLO reference: nested lists and int arrays are cast, not refused."""
    case = _random_case()
    ints = replace(case, conf=np.rint(case.conf).astype(np.int64))
    floats = replace(case, conf=np.rint(case.conf))
    want = ssd.evaluate(floats)
    lists = replace(
        ints,
        loc=case.loc.tolist(),
        conf=ints.conf.tolist(),
        priors=PRIORS.tolist(),
        truths=[t.tolist() for t in case.truths],
    )
    for variant in (ints, lists):
        got = ssd.evaluate(variant)
        for key, value in want.items():
            assert np.array_equal(got[key], value), key
    assert ssd.validate(lists) is None


def test_empty_batch_works_like_yolo():
    """B = 0: (0, P, ...) outputs and zero losses, as the YOLO reference does for B = 0."""
    case = replace(good_case(), loc=np.zeros((0, 3, 4)), conf=np.zeros((0, 3, 3)), truths=())
    out = ssd.evaluate(case)
    assert out["matched"].shape == (0, 3) and out["matched"].dtype == np.int64
    assert out["loc_t"].shape == out["decoded"].shape == out["grad_loc"].shape == (0, 3, 4)
    assert out["grad_conf"].shape == (0, 3, 3) and out["neg_mask"].dtype == bool
    assert out["loss_l"] == 0 and out["loss_c"] == 0


def test_huge_neg_pos_mines_like_a_large_one():
    """neg_pos far beyond P (1e30: no int64 overflow) mines P - 1 negatives, as neg_pos = P does."""
    case = _random_case()
    want = ssd.evaluate(replace(case, settings=SsdSettings(neg_pos=3)))
    got = ssd.evaluate(replace(case, settings=SsdSettings(neg_pos=1e30)))
    assert np.array_equal(got["neg_mask"], want["neg_mask"]) and got["loss_c"] == want["loss_c"]
