"""Loads the conformance suite's pytest plugin (conformance/plugin.py) for ``pytest conformance``."""

from conformance.plugin import *  # noqa: F401,F403  (its hooks and fixtures)
