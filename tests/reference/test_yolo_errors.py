"""YOLOv3 float64 reference: every kind of invalid input raises its typed error (Y13)."""

import numpy as np
import pytest

from reference import yolo
from reference.cases import YoloCase, YoloSettings
from reference.errors import BatchIndexError, CoordinateError, InvalidInputError, LabelError, SettingError, ShapeError

C = 2
ANCHORS = np.array([[4.0, 4.0], [8.0, 2.0]])
GOOD_ROW = [0, 1, 0.5, 0.5, 0.5, 0.5]


def make(targets=None, outputs=None, anchors=None, num_classes=C, img_dim=8.0, **settings):
    if targets is None:
        targets = [GOOD_ROW, GOOD_ROW]
    if outputs is None:
        outputs = (np.zeros((2, 2 * (C + 5), 2, 2)),)
    return YoloCase(
        outputs=outputs,
        anchors=(ANCHORS,) if anchors is None else anchors,
        targets=np.asarray(targets, dtype=np.float64),
        num_classes=num_classes,
        img_dim=img_dim,
        settings=YoloSettings(**settings),
    )


def bad_row(col, value, row=1):
    rows = [list(GOOD_ROW), list(GOOD_ROW)]
    rows[row][col] = value
    return make(targets=rows)


CASES = [
    # (case, error class, field, row, value)
    (bad_row(0, 2.0), BatchIndexError, "targets", 1, 2.0),
    (bad_row(0, -1.0), BatchIndexError, "targets", 1, -1.0),
    (bad_row(0, 0.5), BatchIndexError, "targets", 1, 0.5),
    (bad_row(0, np.nan, row=0), BatchIndexError, "targets", 0, np.nan),
    (bad_row(1, 2.0), LabelError, "targets", 1, 2.0),
    (bad_row(1, -1.0), LabelError, "targets", 1, -1.0),
    (bad_row(1, 0.5), LabelError, "targets", 1, 0.5),
    (bad_row(2, 1.5), CoordinateError, "targets", 1, 1.5),
    (bad_row(3, -0.1), CoordinateError, "targets", 1, -0.1),
    (bad_row(2, np.inf), CoordinateError, "targets", 1, np.inf),
    (bad_row(4, 0.0), CoordinateError, "targets", 1, 0.0),
    (bad_row(5, -0.2), CoordinateError, "targets", 1, -0.2),
    (bad_row(5, 1.01), CoordinateError, "targets", 1, 1.01),
    (bad_row(4, np.nan, row=0), CoordinateError, "targets", 0, np.nan),
    (make(targets=np.zeros((2, 5))), ShapeError, "targets", None, (2, 5)),
    (make(outputs=(np.zeros((2, 15, 2, 2)),)), ShapeError, "outputs[0]", None, (2, 15, 2, 2)),
    (make(outputs=(np.zeros((2, 14, 2, 3)),)), ShapeError, "outputs[0]", None, (2, 14, 2, 3)),
    (
        make(outputs=(np.zeros((2, 14, 2, 2)), np.zeros((3, 14, 4, 4))), anchors=(ANCHORS,) * 2),
        ShapeError,
        "outputs[1]",
        None,
        (3, 14, 4, 4),
    ),
    (make(outputs=(np.zeros((2, 14, 2, 2)),) * 2), ShapeError, "outputs", None, 2),
    (make(anchors=(np.array([[4.0, 4.0], [8.0, 0.0]]),)), SettingError, "anchors[0]", 1, 0.0),
    (make(anchors=(np.array([[4.0, np.nan], [8.0, 2.0]]),)), SettingError, "anchors[0]", 0, np.nan),
    (make(anchors=(np.ones((2, 3)),)), ShapeError, "anchors[0]", None, (2, 3)),
    (make(img_dim=0.0), SettingError, "img_dim", None, 0.0),
    (make(ignore_thres=1.5), SettingError, "settings.ignore_thres", None, 1.5),
    (make(noobj_scale=-1.0), SettingError, "settings.noobj_scale", None, -1.0),
    (make(log_clamp=np.nan), SettingError, "settings.log_clamp", None, np.nan),
    (make(num_classes=0, outputs=(np.zeros((2, 10, 2, 2)),)), LabelError, "num_classes", None, 0),
]


@pytest.mark.parametrize(
    "case, error, field, row, value", CASES, ids=[f"{c[1].__name__}-{c[2]}-{i}" for i, c in enumerate(CASES)]
)
def test_invalid_input_raises_typed_error(case, error, field, row, value):
    with pytest.raises(error) as info:
        yolo.evaluate(case)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field == field and err.row == row
    if isinstance(value, float) and np.isnan(value):
        assert np.isnan(err.value)
    else:
        assert err.value == value
    where = field if row is None else f"{field}[{row}]"
    assert str(err).startswith(f"{where} = {err.value!r}: ")


def test_non_finite_output_names_layer_and_index():
    x = np.zeros((2, 14, 2, 2))
    x[1, 3, 0, 1] = np.nan
    with pytest.raises(InvalidInputError) as info:
        yolo.evaluate(make(outputs=(x,)))
    assert info.value.field == "outputs[0]" and info.value.row == (1, 3, 0, 1)
    assert "outputs[0][(1, 3, 0, 1)] = nan" in str(info.value)


def test_first_offending_row_is_reported():
    rows = [GOOD_ROW, [0, 1, 0.5, 0.5, 0.5, 2.0], [5, 1, 0.5, 0.5, 0.5, 0.5]]
    with pytest.raises(CoordinateError) as info:
        yolo.validate(make(targets=rows))
    assert info.value.row == 1


def test_valid_edges_accepted():
    rows = [[0, 0, 0.0, 1.0, 1.0, 1e-9], [1, 1, 1.0, 0.0, 1e-9, 1.0]]
    yolo.validate(make(targets=rows))
    yolo.validate(make(targets=np.zeros((0, 6))))


def test_assignment_override_out_of_range_is_typed_error():
    import dataclasses

    case = make()
    asg = yolo.assign(case.targets, ANCHORS, 2, case.img_dim, 0.5)
    with pytest.raises(InvalidInputError) as info:
        yolo.evaluate(case, assignments=[dataclasses.replace(asg, gi=asg.gi + 2)])
    assert info.value.field == "assignment.gi" and info.value.row == 0 and info.value.value == 3
    with pytest.raises(ShapeError):
        yolo.evaluate(case, assignments=[dataclasses.replace(asg, ignore=asg.ignore[:, :1])])
