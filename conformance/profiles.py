"""Hypothesis profiles, chosen with ``--hypothesis-profile``.

default   local runs: random, a few dozen examples per property.
ci        derandomised (same examples on every run and with or without xdist), no database.
thorough  nightly: many examples, random.
"""
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("default", max_examples=50, **_COMMON)
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
settings.load_profile("default")
