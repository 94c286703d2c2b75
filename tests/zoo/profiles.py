"""The Hypothesis profile of the zoo run, loaded with ``-p tests.zoo.profiles``.

zoo-noshrink   the suite's ci profile without shrinking: a failing property test stops at
               its first failing example. Which tests fail is the same as under ci.

Why: the zoo fails ~90 property tests on purpose. After a first failure (found in ~0.2 s)
ci shrinks for ~5 s (measured on three mutants, 7 failing tests: 39 s of test time
under ci, 1.4 s without shrinking; before ci dropped the explain phase it was 342 s).
"""

from hypothesis import Phase, settings

from conformance import profiles

profiles.register()  # the suite's ci, the parent of zoo-noshrink
_CI = settings.get_profile("ci")
settings.register_profile("zoo-noshrink", parent=_CI, phases=[p for p in _CI.phases if p is not Phase.shrink])
