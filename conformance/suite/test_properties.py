"""Every implementation against the reference on cases Hypothesis draws: one test per
implementation, device, dtype, loss family and adversarial feature (``family.features``;
a family without features has one test), so every feature is drawn in every run. Each
drawn case is run once and every part (targets, losses, gradients) is checked on it;
failures and the report name the part. Cases decided by a rule the implementation
declares it does not follow are not drawn (a test whose every case is is skipped)."""

from hypothesis import event, given
from hypothesis import strategies as st

from conformance import engine
from conformance.plugin import feature_id


def _judged(subject, family, case) -> bool:
    """False (with a Hypothesis event naming the rules) for a case ``subject`` is not judged on."""
    rules = engine.declared(subject, family, case)
    for lim in rules:
        event(f"not drawn: declared limitation {lim.rule}")
    return not rules


@given(data=st.data())
def test_property(subject, family, feature, data, verify):
    cases = family.cases if feature is None else family.features[feature]
    if subject.limitations:
        cases = cases.filter(lambda case: _judged(subject, family, case))
    case = data.draw(cases, label="case")
    verify(subject, family, case, f"test_property[{subject.id}-{feature_id(family, feature)}]", judged=True)
