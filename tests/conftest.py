"""The project's own tests share the suite's Hypothesis profiles (default, ci, thorough)."""

from conformance import profiles  # noqa: F401
