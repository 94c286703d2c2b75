"""SSD: matches, targets, hard negatives, losses and gradients against the reference."""
import pytest
from hypothesis import given

from conformance import strategies
from conformance.engine import PARTS, check


@pytest.mark.parametrize("part", PARTS)
@given(case=strategies.ssd_cases())
def test_ssd(target, part, case, record):
    check(target, "ssd", part, case, record)
