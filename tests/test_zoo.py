"""The suite judged on implementations it was not written with (tests/zoo).

One run of ``pytest conformance`` on every zoo adapter at once, as a user runs it, two
workers, with the ci profile less shrinking (profile zoo-noshrink of tests/zoo/profiles.py:
the same tests fail; the zoo fails ~90 property tests on purpose, ~5 s of shrinking each):
every mutant must fail at least one test, every variant must fail none and pass at least
one.
Deselect with ``-m "not zoo"``; ``python bench/zoo.py`` prints the run in detail, with
Hypothesis' shrunk examples.
"""

import pytest

from tests.zoo.adapters import MUTANTS, VARIANTS
from tests.zoo.run import read_junit, run_zoo, short_message


@pytest.mark.zoo
@pytest.mark.timeout(1800)
def test_suite_kills_every_mutant_and_passes_every_variant(tmp_path):
    run = run_zoo(tmp_path, list(MUTANTS) + list(VARIANTS), profile="zoo-noshrink")
    not_run = [n for n in (*MUTANTS, *VARIANTS) if n not in run.outcomes]
    assert not not_run, f"no test ran for {not_run}; pytest exit {run.returncode}:\n{run.output}"
    survivors = [f"{n} ({MUTANTS[n].rule})" for n in MUTANTS if run.outcomes[n].failed == 0]
    alarms = []
    for name in VARIANTS:
        o = run.outcomes[name]
        if o.failed:
            test, _, text = (o.property_failures or o.failures)[0]
            alarms.append(
                f"{name} ({VARIANTS[name].rule}): {o.failed} failed, first {test}\n" + short_message(text, 12)
            )
    idle = [n for n in VARIANTS if run.outcomes[n].passed == 0]
    if survivors or alarms or idle:
        pytest.fail(
            f"mutants that passed every test: {survivors}\n\nvariants that passed nothing: {idle}\n\n"
            "false alarms on variants:\n" + "\n\n".join(alarms),
            pytrace=False,
        )


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="conformance.suite.test_properties" name="test_property[m_a-cpu-float64-yolo]" time="2.5">
  <failure message="ConformanceFailure">E   conformance.engine.ConformanceFailure: tx\nE   Falsifying example</failure>
</testcase>
<testcase classname="conformance.suite.test_fixtures" name="test_fixture[m_a-cpu-float64-Y1_decode]"
  time="0.5"><failure message="x">E   tw</failure></testcase>
<testcase classname="conformance.suite.test_properties" name="test_property[m_a-cpu-float64-ssd]" time="1.0">
  <skipped message="m_a covers no SSD loss"/></testcase>
<testcase classname="conformance.suite.test_properties" name="test_property[v_b-cpu-float32-ssd]" time="4.0"/>
<testcase classname="conformance.suite.test_fixtures" name="test_reference_reproduces_fixture[Y1_decode]" time="0.1"/>
</testsuite></testsuites>"""


def test_junit_is_read_per_adapter(tmp_path):
    path = tmp_path / "zoo.xml"
    path.write_text(JUNIT)
    out = read_junit(path)
    assert sorted(out) == ["m_a", "v_b"]  # the reference's own fixture test belongs to no adapter
    a, b = out["m_a"], out["v_b"]
    assert (a.passed, a.failed, a.skipped, b.passed, b.failed) == (0, 2, 1, 1, 0)
    assert a.first_failure_s == 0.5 and a.first_property_failure_s == 2.5 and b.first_failure_s is None
    assert short_message(a.property_failures[0][2]) == "conformance.engine.ConformanceFailure: tx\nFalsifying example"
