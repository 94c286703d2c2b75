"""Every implementation against the reference on cases Hypothesis draws, one test per
implementation, device, dtype and loss family: each drawn case is run once and every part
(targets, losses, gradients) is checked on it; failures and the report name the part.
Cases decided by a rule the implementation declares it does not follow are not drawn."""

from hypothesis import event, given
from hypothesis import strategies as st

from conformance import engine


def _judged(subject, family, case) -> bool:
    """False (with a Hypothesis event naming the rules) for a case ``subject`` is not judged on."""
    rules = engine.declared(subject, family, case)
    for lim in rules:
        event(f"not drawn: declared limitation {lim.rule}")
    return not rules


@given(data=st.data())
def test_property(subject, family, data, verify):
    cases = family.cases
    if subject.limitations:
        cases = cases.filter(lambda case: _judged(subject, family, case))
    case = data.draw(cases, label="case")
    verify(subject, family, case, f"test_property[{subject.id}-{family.name}]", judged=True)
