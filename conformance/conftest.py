"""The conformance suite's pytest plugin: which implementations, devices and dtypes run.

    pytest conformance                              all bundled implementations
    pytest conformance --impl pkg.module:adapter    yours (repeatable)
    pytest conformance --device cpu --dtype float32 restrict the matrix
    pytest conformance --xfails-file known.txt      expected failures: "<test id pattern> <reason>"
    pytest conformance --timeout 60                 per-test limit (default 300 s; 0: none)
    pytest conformance --report-dir DIR             reports, and failing cases under DIR/failures

Unknown --device / --dtype values, adapters that cannot be loaded or declare nonsense,
and an explicit --device / --dtype that nothing selected can run on are usage errors
(exit code 4) before anything runs.
"""
from __future__ import annotations

import fnmatch
import os
import warnings
from pathlib import Path

import pytest

import implementations
from conformance import (
    engine,
    profiles,  # noqa: F401  (registers the Hypothesis profiles)
)
from conformance.engine import Target
from implementations.adapter import DTYPES

_REASONS_KEY = pytest.StashKey[dict]()  # target id -> skip_reason at start (None: runs)
_XFAILS_KEY = pytest.StashKey[list]()  # _xfail_lines, read at start
DEFAULT_TIMEOUT = 300.0  # seconds per test (pytest-timeout) unless --timeout, PYTEST_TIMEOUT or ini says


def pytest_addoption(parser):
    group = parser.getgroup("conformance")
    group.addoption("--impl", action="append", default=[], metavar="MODULE:ATTR",
                    help="adapter to test, as package.module:attr (repeatable; default: bundled)")
    group.addoption("--device", action="append", default=[], help="only these devices (repeatable)")
    group.addoption("--dtype", action="append", default=[], help="only these dtypes (repeatable)")
    group.addoption("--xfails-file", action="append", default=[], metavar="FILE",
                    help="expected failures: one '<test id pattern> <reason>' per line, '#' comments")
    group.addoption("--report-dir", default="reports", help="where tolerance reports are written")


def _check_names(option: str, asked: list, valid) -> None:
    """UsageError naming the first of ``asked`` that is not in ``valid``."""
    for value in asked:
        if value not in valid:
            raise pytest.UsageError(f"{option} {value!r}: not one of {', '.join(valid)}")


def _require_runnable(adapters: list, targets: list, reasons: dict, config) -> None:
    """UsageError with every reason when the user asked for devices or dtypes and no
    selected target can run."""
    devices, dtypes = config.getoption("device"), config.getoption("dtype")
    if not (devices or dtypes) or any(reasons[t.id] is None for t in targets):
        return
    why = [f"{t.id}: {reasons[t.id]}" for t in targets]
    for spec, adapter in adapters:
        if not any(t.spec == spec for t in targets):
            why.append(f"{adapter.name} declares devices {', '.join(adapter.devices)} "
                       f"and dtypes {', '.join(adapter.dtypes)}")
    asked = " ".join([f"--device {d}" for d in devices] + [f"--dtype {d}" for d in dtypes])
    raise pytest.UsageError(f"{asked}: no selected implementation can run: {'; '.join(why)}")


def _default_timeout(config) -> None:
    """Give pytest-timeout DEFAULT_TIMEOUT when no --timeout, PYTEST_TIMEOUT or ini timeout is set."""
    if (config.pluginmanager.hasplugin("timeout") and config.getoption("timeout") is None
            and not os.environ.get("PYTEST_TIMEOUT") and not config.getini("timeout")):
        config.option.timeout = DEFAULT_TIMEOUT


@pytest.hookimpl(tryfirst=True)  # before pytest-timeout reads its settings
def pytest_configure(config):
    _default_timeout(config)
    report_dir = Path(config.invocation_params.dir) / config.getoption("report_dir")
    engine.FAILURES_DIR = report_dir / "failures"
    specs = config.getoption("impl") or list(implementations.BUNDLED)
    try:
        adapters = [(spec, implementations.load(spec)) for spec in specs]
    except implementations.AdapterLoadError as exc:
        raise pytest.UsageError(str(exc)) from None
    devices, dtypes = config.getoption("device"), config.getoption("dtype")
    _check_names("--device", devices, list(dict.fromkeys(d for _, a in adapters for d in a.devices)))
    _check_names("--dtype", dtypes, DTYPES)
    targets = [Target(spec, adapter, device, dtype)
               for spec, adapter in adapters for device in adapter.devices for dtype in adapter.dtypes
               if (not devices or device in devices) and (not dtypes or dtype in dtypes)]
    try:
        reasons = {t.id: engine.skip_reason(t) for t in targets}
    except engine.ConformanceFailure as exc:
        raise pytest.UsageError(str(exc)) from None
    _require_runnable(adapters, targets, reasons, config)
    config.stash[engine.TARGETS] = targets
    config.stash[_XFAILS_KEY] = _xfail_lines(config, targets)
    config.stash[_REASONS_KEY] = reasons
    try:
        from conformance.report import ReportPlugin
    except ImportError:
        return
    config.pluginmanager.register(ReportPlugin(config), "conformance-report")


def pytest_report_header(config):
    lines = []
    reasons = config.stash.get(_REASONS_KEY, {})
    for t in config.stash.get(engine.TARGETS, []):
        reason = reasons.get(t.id)
        state = f"skipped: {reason}" if reason else "runs"
        covers = "/".join(f for f in ("yolo", "ssd") if hasattr(t.adapter, f))
        lines.append(f"conformance: {t.id:<28} {covers:<9} {t.spec}  ({state})")
    return lines or ["conformance: no implementation, device and dtype selected"]


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        targets = metafunc.config.stash[engine.TARGETS]
        metafunc.parametrize("target", targets, ids=[t.id for t in targets])


def _xfail_lines(config, targets) -> list:
    """(file, line number, pattern, reason, adapter name or None) for every xfail line of
    --xfails-file and of the adapters' own ``xfails_file``; UsageError naming a file that
    cannot be read."""
    files = [(Path(f), None, f"--xfails-file {f}") for f in config.getoption("xfails_file")]
    seen = set()
    for t in targets:
        own = getattr(t.adapter, "xfails_file", None)
        if own and (own, t.adapter.name) not in seen:
            seen.add((own, t.adapter.name))
            files.append((Path(own), t.adapter.name, f"{t.spec}: xfails_file {own}"))
    lines = []
    for path, name, origin in files:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise pytest.UsageError(f"{origin}: cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                pattern, _, reason = line.partition(" ")
                lines.append((path, number, pattern, reason.strip() or "listed as expected failure", name))
    return lines


def _item_adapter_name(item) -> str | None:
    """The name of the adapter a conformance test runs, None for other tests."""
    params = getattr(item, "callspec", None) and item.callspec.params
    target = params and (params.get("target") or (params.get("promised") or (None,))[0])
    return target.adapter.name if target else None


_MODULE_FAMILY = {"test_yolo": "yolo", "test_ssd": "ssd"}  # test module (file stem) -> the family it tests


def _item_properties(item) -> list:
    """("impl", name), ("device", d), ("dtype", t), ("family", "yolo"|"ssd") of a conformance
    test (the tolerance report's summary reads them from the TestReport), [] for other tests."""
    params = getattr(item, "callspec", None) and item.callspec.params
    if not params or not ("target" in params or "promised" in params):
        return []
    if "promised" in params:
        target, family, _ = params["promised"]
    elif params.get("case") is not None:  # test_fixtures.py: the fixture's family
        target, family = params["target"], engine.family_of(params["case"])
    else:  # test_yolo.py, test_ssd.py; a fixture file that cannot be loaded has no family
        target, family = params["target"], _MODULE_FAMILY.get(item.path.stem, "unknown")
    return [("impl", target.adapter.name), ("device", target.device), ("dtype", target.dtype), ("family", family)]


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.user_properties.extend(_item_properties(item))
    for path, number, pattern, reason, name in config.stash[_XFAILS_KEY]:
        hits = [item for item in items
                if fnmatch.fnmatch(item.nodeid, pattern) or fnmatch.fnmatch(item.name, pattern)
                if name is None or _item_adapter_name(item) in (None, name)]
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
