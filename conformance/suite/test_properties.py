"""Every implementation against the reference on cases Hypothesis draws, one test per
implementation, device, dtype and loss family: each drawn case is run once and every part
(targets, losses, gradients) is checked on it; failures and the report name the part."""

from hypothesis import given
from hypothesis import strategies as st


@given(data=st.data())
def test_property(subject, family, data, verify):
    case = data.draw(family.cases, label="case")
    verify(subject, family, case, f"test_property[{subject.id}-{family.name}]")
