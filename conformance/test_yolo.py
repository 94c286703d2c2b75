"""YOLOv3: targets, masks, losses and gradients of every implementation against the reference."""
import pytest
from hypothesis import given

from conformance import strategies
from conformance.engine import PARTS, check


@pytest.mark.parametrize("part", PARTS)
@given(case=strategies.yolo_cases())
def test_yolo(target, part, case, record):
    check(target, "yolo", part, case, record)
