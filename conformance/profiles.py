"""Hypothesis profiles, chosen with ``--hypothesis-profile``.

conformance  what a conformance run without --hypothesis-profile loads (the plugin does,
             only in conformance runs): random, a few dozen examples per property.
ci           derandomised (same examples on every run and with or without xdist), no database.
thorough     nightly: many examples, random.

``register()`` registers them; the plugin calls it only in conformance runs. Importing
this module changes nothing: the plugin is loaded in every pytest run of an environment
where this package is installed (pytest11 entry point), and Hypothesis has a "ci" profile
of its own, which it loads by itself where the CI environment variable is set: other
tests there keep Hypothesis' profiles.

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


def register() -> None:
    """Register conformance, ci (replacing Hypothesis' own) and thorough."""
    settings.register_profile("conformance", max_examples=50, **_COMMON)
    settings.register_profile("ci", max_examples=100, derandomize=True, database=None, **_COMMON)
    settings.register_profile("thorough", max_examples=1000, **_COMMON)
