"""Hypothesis profiles, chosen with ``--hypothesis-profile``.

conformance  what a conformance run without --hypothesis-profile loads (the plugin does,
             only in conformance runs): random, a few dozen examples per property.
ci           derandomised (same examples on every run and with or without xdist), no database.
thorough     nightly: many examples, random.

Importing this module registers them and changes nothing else: Hypothesis' own default
profile is left alone, so a pytest run of other tests in an environment where this
package is installed (its plugin is loaded by the pytest11 entry point) is unaffected.

None runs Hypothesis' explain phase: on a failing property it replays the shrunk example
hundreds of times to list the lines only failing runs reach (measured on the zoo of
tests/zoo: 35 s of a 44 s failing test, against 7 s of shrinking). The suite's failure
message and its replay command say what failed instead.
"""

from hypothesis import HealthCheck, Phase, settings

_COMMON = dict(
    deadline=None,
    print_blob=True,
    phases=[p for p in Phase if p is not Phase.explain],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile("conformance", max_examples=50, **_COMMON)
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
