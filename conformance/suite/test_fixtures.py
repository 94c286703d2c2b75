"""Golden fixtures: the reference reproduces them, and every implementation is checked on them.

A fixture file (or manifest) that cannot be loaded does not stop the run: it becomes a
test named after the file that fails with the FixtureError, and every other test runs.
"""

from pathlib import Path

import numpy as np
import pytest

from conformance import fixtures
from conformance.families import family_of

BROKEN: list = []  # FixtureError of every file that cannot be loaded
FIXTURES = fixtures.load_all(errors=BROKEN) + [(Path(e.path).name, None, e) for e in BROKEN]
IDS = [name for name, _, _ in FIXTURES]
# The stored values were computed in float64 by some NumPy and libm; another may differ in
# the last bits, which conditioning (log near 1, exp of large logits, sums of thousands
# of terms) can amplify by up to ~1e6: 1e-9 relative keeps a wide margin above that.
RTOL, ATOL = 1e-9, 1e-12


def _loaded(case, expected) -> None:
    """Fail the test of a fixture file that could not be loaded (``expected`` is its error)."""
    if case is None:
        pytest.fail(str(expected), pytrace=False)


@pytest.mark.parametrize("name,case,expected", FIXTURES, ids=IDS)
def test_reference_reproduces_fixture(name, case, expected):
    _loaded(case, expected)
    got = family_of(case).evaluate(case)
    assert sorted(got) == sorted(expected), f"{name}: keys differ"
    for key, want in expected.items():
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got[key], want, rtol=RTOL, atol=ATOL, err_msg=f"{name}: {key}")
        else:
            np.testing.assert_array_equal(got[key], want, err_msg=f"{name}: {key}")


@pytest.mark.parametrize("name,case,expected", FIXTURES, ids=IDS)
def test_fixture(subject, name, case, expected, verify):
    _loaded(case, expected)
    verify(subject, family_of(case), case, f"test_fixture[{subject.id}-{name}]")
