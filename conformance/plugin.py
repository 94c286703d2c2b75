"""The conformance suite's pytest plugin: which implementations, devices and dtypes run,
and how a test checks one case (``verify``). The tests themselves are in conformance/suite/.

    pytest conformance                              all bundled implementations (a checkout)
    pytest --pyargs conformance --impl pkg.mod:adapter   yours, the package installed (repeatable)
    pytest conformance --limitation S13             a spec rule the implementations do not follow
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
import gc
import os
import warnings
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.errors import Unsatisfiable

import implementations
from conformance import engine, profiles, report, repro
from conformance.engine import ConformanceFailure, Subject
from conformance.families import FAMILIES, NAMES, family_of
from conformance.family import PARTS
from reference.precision import DTYPES, precision

pytest_plugins = ("conformance.gate",)  # CI gate: exit codes, sticky device errors, shards (conformance/gate.py)

ACTIVE = pytest.StashKey[bool]()  # config.stash[ACTIVE]: this run runs the conformance suite
SUBJECTS = pytest.StashKey[list]()  # config.stash[SUBJECTS]: the Subjects selected for this run
_FAILURES_KEY = pytest.StashKey[Path]()  # where failing cases are saved: <report dir>/failures

_REASONS_KEY = pytest.StashKey[dict]()  # subject id -> skip_reason at start (None: runs)
_XFAILS_KEY = pytest.StashKey[list]()  # _xfail_lines, read at start
DEFAULT_TIMEOUT = 300.0  # seconds per test (pytest-timeout) unless --timeout, PYTEST_TIMEOUT or ini says


def pytest_addoption(parser):
    group = parser.getgroup("conformance")
    group.addoption(
        "--impl",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="adapter to test, as package.module:attr (repeatable; default: bundled)",
    )
    group.addoption("--device", action="append", default=[], help="only these devices (repeatable)")
    group.addoption("--dtype", action="append", default=[], help="only these dtypes (repeatable)")
    group.addoption(
        "--xfails-file",
        action="append",
        default=[],
        metavar="FILE",
        help="expected failures: one '<test id pattern> <reason>' per line, '#' comments",
    )
    group.addoption(
        "--limitation",
        action="append",
        default=[],
        metavar="RULE",
        help="a spec rule every --impl does not follow, e.g. S13 (repeatable; also an adapter's `limitations`)",
    )
    group.addoption("--report-dir", default="reports", help="where tolerance reports are written")


def _limitations(spec: str, adapter, config) -> tuple:
    """The family.Limitations ``adapter`` declares (its ``limitations``, then every
    ``--limitation``); UsageError naming a rule id that no family lets one declare."""
    known = {lim.rule: lim for f in FAMILIES for lim in f.limitations}
    own = getattr(adapter, "limitations", ())
    if isinstance(own, str) or not all(isinstance(r, str) for r in own):
        raise pytest.UsageError(f"--impl {spec!r}: limitations = {own!r}: expected a sequence of rule ids")
    for origin, rules in ((f"--impl {spec!r}: limitations", own), ("--limitation", config.getoption("limitation"))):
        for rule in rules:
            if rule not in known:
                raise pytest.UsageError(f"{origin} {rule!r}: not a rule one may declare; one of {', '.join(known)}")
    return tuple(known[r] for r in dict.fromkeys([*own, *config.getoption("limitation")]))


def _check_names(option: str, asked: list, valid) -> None:
    """UsageError naming the first of ``asked`` that is not in ``valid``."""
    for value in asked:
        if value not in valid:
            raise pytest.UsageError(f"{option} {value!r}: not one of {', '.join(valid)}")


def _require_runnable(adapters: list, subjects: list, reasons: dict, config) -> None:
    """UsageError with every reason when the user asked for devices or dtypes and no
    selected target can run."""
    devices, dtypes = config.getoption("device"), config.getoption("dtype")
    if not (devices or dtypes) or any(reasons[t.id] is None for t in subjects):
        return
    why = [f"{t.id}: {reasons[t.id]}" for t in subjects]
    for spec, adapter in adapters:
        if not any(t.spec == spec for t in subjects):
            why.append(
                f"{adapter.name} declares devices {', '.join(adapter.devices)} and dtypes {', '.join(adapter.dtypes)}"
            )
    asked = " ".join([f"--device {d}" for d in devices] + [f"--dtype {d}" for d in dtypes])
    raise pytest.UsageError(f"{asked}: no selected implementation can run: {'; '.join(why)}")


def _default_timeout(config) -> None:
    """Give pytest-timeout DEFAULT_TIMEOUT when no --timeout, PYTEST_TIMEOUT or ini timeout is set."""
    if (
        config.pluginmanager.hasplugin("timeout")
        and config.getoption("timeout") is None
        and not os.environ.get("PYTEST_TIMEOUT")
        and not config.getini("timeout")
    ):
        config.option.timeout = DEFAULT_TIMEOUT


SUITE = Path(__file__).resolve().parent / "suite"  # the conformance tests


def suite_requested(config) -> bool:
    """Does this pytest run run the conformance suite? Yes when ``--impl`` is given, when
    an argument is the suite, holds it or lies inside this package (``pytest conformance``,
    ``pytest .`` in a checkout, ``pytest conformance/suite/test_fixtures.py::...``), or with
    ``--pyargs`` names this package (``pytest --pyargs conformance``). The plugin is loaded
    in every pytest run of an environment where this package is installed; in any other
    run it does nothing."""
    if config.getoption("impl"):
        return True
    package = SUITE.parent
    for arg in config.args:
        name = arg.split("::", 1)[0]
        if config.getoption("pyargs", False) and (name == package.name or name.startswith(package.name + ".")):
            return True
        path = (Path(config.invocation_params.dir) / name).resolve()
        if SUITE.is_relative_to(path) or path.is_relative_to(package):
            return True
    return False


@pytest.hookimpl(tryfirst=True)  # before pytest-timeout and Hypothesis read their settings
def pytest_configure(config):
    config.stash[ACTIVE] = suite_requested(config)
    if not config.stash[ACTIVE]:
        return
    profiles.register()  # before Hypothesis' plugin loads --hypothesis-profile
    if config.getoption("hypothesis_profile", None) is None:
        settings.load_profile("conformance")
    _default_timeout(config)
    report_dir = Path(config.invocation_params.dir) / config.getoption("report_dir")
    config.stash[_FAILURES_KEY] = report_dir / "failures"
    specs = config.getoption("impl") or list(implementations.BUNDLED)
    try:
        adapters = [(spec, implementations.load(spec, NAMES)) for spec in specs]
    except implementations.AdapterLoadError as exc:
        raise pytest.UsageError(str(exc)) from None
    devices, dtypes = config.getoption("device"), config.getoption("dtype")
    _check_names("--device", devices, list(dict.fromkeys(d for _, a in adapters for d in a.devices)))
    _check_names("--dtype", dtypes, DTYPES)
    subjects = [
        Subject(spec, adapter, device, precision(dtype), _limitations(spec, adapter, config))
        for spec, adapter in adapters
        for device in adapter.devices
        for dtype in adapter.dtypes
        if (not devices or device in devices) and (not dtypes or dtype in dtypes)
    ]
    try:
        reasons = {t.id: engine.skip_reason(t) for t in subjects}
    except ConformanceFailure as exc:
        raise pytest.UsageError(str(exc)) from None
    _require_runnable(adapters, subjects, reasons, config)
    config.stash[SUBJECTS] = subjects
    config.stash[_XFAILS_KEY] = _xfail_lines(config, subjects)
    config.stash[_REASONS_KEY] = reasons
    config.pluginmanager.register(report.ReportPlugin(config), "conformance-report")


def pytest_report_header(config):
    if not config.stash.get(ACTIVE, False):
        return None
    lines = []
    reasons = config.stash.get(_REASONS_KEY, {})
    for t in config.stash.get(SUBJECTS, []):
        reason = reasons.get(t.id)
        state = f"skipped: {reason}" if reason else "runs"
        covers = "/".join(f.name for f in FAMILIES if t.covers(f))
        if t.limitations:
            state += "; declares it does not follow " + ", ".join(lim.rule for lim in t.limitations)
        lines.append(f"conformance: {t.id:<28} {covers:<9} {t.spec}  ({state})")
    return lines or ["conformance: no implementation, device and dtype selected"]


def pytest_generate_tests(metafunc):
    if not Path(metafunc.definition.path).is_relative_to(SUITE):
        return  # parameters named subject or family elsewhere are someone else's
    if "subject" in metafunc.fixturenames:
        subjects = metafunc.config.stash.get(SUBJECTS, [])
        metafunc.parametrize("subject", subjects, ids=[t.id for t in subjects])
    if "feature" in metafunc.fixturenames:  # one test per family and adversarial feature
        pairs = [(f, feature) for f in FAMILIES for feature in tuple(f.features) or (None,)]
        metafunc.parametrize(("family", "feature"), pairs, ids=[feature_id(f, feature) for f, feature in pairs])
    elif "family" in metafunc.fixturenames:
        metafunc.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])


def feature_id(family, feature: str | None) -> str:
    """The test id part of a property test's family and feature: "ssd-tied_priors", or the
    family's name for a family without features."""
    return family.name if feature is None else f"{family.name}-{feature}"


def _xfail_lines(config, subjects) -> list:
    """(file, line number, pattern, reason, adapter name or None) for every xfail line of
    --xfails-file and of the adapters' own ``xfails_file``; UsageError naming a file that
    cannot be read."""
    files = [(Path(f), None, f"--xfails-file {f}") for f in config.getoption("xfails_file")]
    seen = set()
    for t in subjects:
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


def _item_labels(item) -> dict | None:
    """{"impl", "device", "dtype", "family", "limitations"} of the subject and family a
    conformance test checks (limitations: the declared rule ids, comma-separated), None for
    other tests."""
    params = getattr(item, "callspec", None) and item.callspec.params
    if not params:
        return None
    subject, family, _ = params.get("promised") or (params.get("subject"), params.get("family"), None)
    if subject is None:
        return None
    if family is None and params.get("case") is not None:
        family = family_of(params["case"])
    return {
        "impl": subject.adapter.name,
        "device": subject.device,
        "dtype": subject.precision.name,
        "family": family.name if family is not None else "unknown",
        "limitations": ",".join(lim.rule for lim in subject.limitations),
    }


def pytest_collection_modifyitems(config, items):
    if not config.stash.get(ACTIVE, False):
        return
    labels = {item.nodeid: _item_labels(item) or {} for item in items}
    for item in items:  # what the report reads (TestReport.user_properties, also through xdist)
        item.user_properties.extend(labels[item.nodeid].items())
    for path, number, pattern, reason, name in config.stash[_XFAILS_KEY]:
        hits = [
            item
            for item in items
            if fnmatch.fnmatch(item.nodeid, pattern) or fnmatch.fnmatch(item.name, pattern)
            if name is None or labels[item.nodeid].get("impl") in (None, name)
        ]
        if not hits:
            warnings.warn(pytest.PytestConfigWarning(f"{path}:{number}: xfail pattern {pattern!r} matches no test"))
        for item in hits:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A property test whose every drawn case is decided by a rule its implementation
    declares it does not follow (Hypothesis: Unsatisfiable) is skipped, naming the rules."""
    try:
        return (yield)
    except Unsatisfiable:
        if not pyfuncitem.config.stash.get(ACTIVE, False):
            raise
        params = getattr(pyfuncitem, "callspec", None) and pyfuncitem.callspec.params
        subject, family = (params or {}).get("subject"), (params or {}).get("family")
        rules = [lim.rule for lim in getattr(family, "limitations", ()) if lim in getattr(subject, "limitations", ())]
        if not rules:
            raise
        pytest.skip(
            f"{subject.adapter.name} declares it does not follow {', '.join(rules)}: one of them decides "
            "every case drawn here"
        )


def pytest_collection_finish(session):
    if session.config.stash.get(ACTIVE, False):
        # what is loaded by now (frameworks, adapters, the collected tests) lives to the end
        # of the run: gc.freeze moves it out of the cyclic collector's reach, so the full
        # collections that Hypothesis' allocations set off walk only what the tests create
        # (one of them took 0.15 s of a 2 s property test with torch loaded)
        gc.freeze()


def _record(subject: Subject, family, checks: list, case_name: str, test: str) -> None:
    """Add every Check of one case to the tolerance report."""
    labels = dict(impl=subject.adapter.name, device=subject.device, dtype=subject.precision.name, family=family.name)
    for c, hist in zip(checks, report.histograms([c.errors for c in checks]).tolist()):
        report.add(report.Record.of(c, hist, **labels, test=test, case=case_name))


def _failure(case, subject: Subject, test_id: str, message: str, directory: Path) -> ConformanceFailure:
    """``message`` with the command that replays ``case`` (saved by repro.save)."""
    command = repro.save(case, test_id, subject, directory)
    return ConformanceFailure(message + f"\n\ncase: {case.name or 'generated'}; reproduce with:\n    {command}")


def check(subject: Subject, family, case, test_id: str, failures_dir=None, judged: bool = False) -> None:
    """Check every part of ``case`` on ``subject``: the body of every conformance test.

    Skips (with the reason) what the subject does not cover or cannot run here, a case
    decided by a rule it declares it does not follow (the rule named; ``judged``: the
    caller drew the case among those it is judged on, see ``engine.declared``) and a case
    on which it returns none of the promised keys; records every Check in the tolerance
    report, by part; fails with every failing check, grouped by part, and the command that
    replays the case (saved under ``failures_dir``, default reports/failures).
    """
    if not subject.covers(family):
        pytest.skip(f"{subject.adapter.name} covers no {family.title} loss")
    reason = engine.skip_reason(subject)
    if reason:
        pytest.skip(f"{subject.adapter.name} on {subject.device}: {reason}")
    for lim in () if judged else engine.declared(subject, family, case):
        pytest.skip(f"{subject.adapter.name} declares it does not follow {lim.rule} ({lim.summary})")
    try:
        checks = engine.run(subject, family, case)
    except ConformanceFailure as exc:
        raise _failure(case, subject, test_id, str(exc), failures_dir) from None
    if not checks:
        keys = family.keys(case)
        pytest.skip(f"{subject.adapter.name} returns none of the {family.title} outputs ({', '.join(keys[:3])}, ...)")
    _record(subject, family, checks, case.name or engine.fingerprint(case)[:12], test_id)
    part_of = family.part_of(case)
    failed = [(part_of.get(c.quantity, "targets"), c.message) for c in checks if not c.passed]
    if failed:
        message = "\n\n".join(f"[{part}] {m}" for part in PARTS for p, m in failed if p == part)
        raise _failure(case, subject, test_id, message, failures_dir)


@pytest.fixture(scope="session")
def verify(pytestconfig):
    """verify(subject, family, case, test_id, judged=False): ``check`` with this run's
    failures directory."""
    directory = pytestconfig.stash[_FAILURES_KEY]
    return lambda subject, family, case, test_id, judged=False: check(subject, family, case, test_id, directory, judged)
