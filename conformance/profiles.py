"""Hypothesis profiles, chosen with ``--hypothesis-profile``.

conformance  what a conformance run without --hypothesis-profile loads (the plugin does,
             only in conformance runs): random, 6 examples per property test.
ci           derandomised (same examples on every run and with or without xdist), no
             database, 12 examples per property test.
thorough     nightly: random, 120 examples per property test.

There is one property test per implementation, device, dtype, family and adversarial
feature (8 YOLO, 9 SSD: conformance/suite/test_properties.py), so ci draws 96 YOLO and
108 SSD cases per implementation, device and dtype, at least 12 of every feature. (One
test per family drew 100 cases of each family, but Hypothesis' generation clusters: under
ci, YOLO's shared cell and tiny box features and SSD's tiny box feature were never drawn.)

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
    settings.register_profile("conformance", max_examples=6, **_COMMON)
    settings.register_profile("ci", max_examples=12, derandomize=True, database=None, **_COMMON)
    settings.register_profile("thorough", max_examples=120, **_COMMON)
