"""The conformance suite's pytest plugin: which implementations, devices and dtypes run.

    pytest conformance                              all bundled implementations
    pytest conformance --impl pkg.module:adapter    yours (repeatable)
    pytest conformance --device cpu --dtype float32 restrict the matrix
    pytest conformance --xfails-file known.txt      expected failures: "<test id pattern> <reason>"
"""
from __future__ import annotations

import fnmatch
import warnings
from pathlib import Path

import pytest

import implementations
from conformance import profiles  # noqa: F401  (registers the Hypothesis profiles)
from conformance.engine import Target

_TARGETS_KEY = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("conformance")
    group.addoption("--impl", action="append", default=[], metavar="MODULE:ATTR",
                    help="adapter to test, as package.module:attr (repeatable; default: bundled)")
    group.addoption("--device", action="append", default=[], help="only these devices (repeatable)")
    group.addoption("--dtype", action="append", default=[], help="only these dtypes (repeatable)")
    group.addoption("--xfails-file", action="append", default=[], metavar="FILE",
                    help="expected failures: one '<test id pattern> <reason>' per line, '#' comments")
    group.addoption("--report-dir", default="reports", help="where tolerance reports are written")


def pytest_configure(config):
    specs = config.getoption("impl") or list(implementations.BUNDLED)
    devices, dtypes = config.getoption("device"), config.getoption("dtype")
    targets = []
    for spec in specs:
        adapter = implementations.load(spec)
        for device in adapter.devices:
            for dtype in adapter.dtypes:
                if (not devices or device in devices) and (not dtypes or dtype in dtypes):
                    targets.append(Target(spec, adapter, device, dtype))
    config.stash[_TARGETS_KEY] = targets
    try:
        from conformance.report import ReportPlugin
    except ImportError:
        return
    config.pluginmanager.register(ReportPlugin(config), "conformance-report")


def pytest_report_header(config):
    lines = []
    for t in config.stash.get(_TARGETS_KEY, []):
        reason = t.adapter.skip_reason(t.device)
        state = f"skipped: {reason}" if reason else "runs"
        covers = "/".join(f for f in ("yolo", "ssd") if hasattr(t.adapter, f))
        lines.append(f"conformance: {t.id:<28} {covers:<9} {t.spec}  ({state})")
    return lines or ["conformance: no implementation, device and dtype selected"]


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        targets = metafunc.config.stash[_TARGETS_KEY]
        metafunc.parametrize("target", targets, ids=[t.id for t in targets])


def _xfail_lines(config):
    """(file, line number, pattern, reason, adapter name or None) for every xfail line."""
    files = [(Path(f), None) for f in config.getoption("xfails_file")]
    seen = set()
    for t in config.stash[_TARGETS_KEY]:
        own = getattr(t.adapter, "xfails_file", None)
        if own and (own, t.adapter.name) not in seen:
            seen.add((own, t.adapter.name))
            files.append((Path(own), t.adapter.name))
    for path, name in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                pattern, _, reason = line.partition(" ")
                yield path, number, pattern, reason.strip() or "listed as expected failure", name


def pytest_collection_modifyitems(config, items):
    for path, number, pattern, reason, name in _xfail_lines(config):
        hits = [item for item in items
                if fnmatch.fnmatch(item.nodeid, pattern) or fnmatch.fnmatch(item.name, pattern)
                if name is None or getattr(item, "callspec", None) is None
                or item.callspec.params.get("target") is None
                or item.callspec.params["target"].adapter.name == name]
        if not hits:
            warnings.warn(pytest.PytestConfigWarning(
                f"{path}:{number}: xfail pattern {pattern!r} matches no test"))
        for item in hits:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


@pytest.fixture(scope="session")
def record():
    """Adds one Check to the tolerance report."""
    try:
        from conformance import report
    except ImportError:
        return None

    def add(target, family, part, check, case_name):
        report.add(dict(check.record(), impl=target.adapter.name, device=target.device, dtype=target.dtype,
                        family=family, test=f"test_{family}[{target.id}-{part}]", case=case_name,
                        hist=report.histogram(check.errors)))
    return add
