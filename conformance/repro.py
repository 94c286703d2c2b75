"""Failing cases as files, and the one-line command that replays one.

On a failure the engine writes the case (inputs only, fixture format, plus a ``name``
member holding the case's name) to ``reports/failures/<test id>-<case>.npz``, where
<case> is the fixture's name or, for a generated case, the first 12 hex digits of its
fingerprint (the name the tolerance report gives it). One file per failing test id and
case: several failing fixtures leave one file each. Hypothesis replays the shrunk
example last and each generated failure replaces the test's previous one, so the file
left behind is the minimal one. ``python -m conformance repro FILE --impl ...`` runs
that implementation on it and prints every check.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from pathlib import Path

from conformance import engine, fixtures
from conformance.engine import Subject, fingerprint
from conformance.families import NAMES, family_of
from reference.errors import InvalidInputError
from reference.precision import precision

FAILURES = Path("reports") / "failures"
_GENERATED = re.compile(r"-[0-9a-f]{12}\.npz")  # what save appends for a generated case


class ReproError(ValueError):
    """A replay that cannot run as asked: the adapter does not cover the case's family,
    device or dtype, says why it cannot run here, or the case is invalid."""


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def save(case, test_id: str, subject: Subject, directory=None) -> str:
    """Write ``case`` to ``directory`` (default reports/failures) and return the command
    that replays it on ``subject``; the file is named after ``test_id`` and the case."""
    directory = Path(FAILURES if directory is None else directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = _safe(test_id)
    if not case.name:  # generated: keep only the test's latest (Hypothesis: minimal) example
        case = replace(case, name=fingerprint(case)[:12])
        for old in directory.glob(f"{stem}-*.npz"):
            if _GENERATED.fullmatch(old.name[len(stem) :]):
                old.unlink(missing_ok=True)
    path = directory / f"{stem}-{_safe(case.name)}.npz"
    path.write_bytes(fixtures.encode(case, {}, with_name=True))
    return " ".join(
        [
            "python -m conformance repro",
            shlex.quote(str(path)),
            "--impl",
            shlex.quote(subject.spec),
            "--device",
            shlex.quote(subject.device),
            "--dtype",
            subject.precision.name,
        ]
    )


def _subject(spec: str, family, device: str, dtype: str) -> Subject:
    """The Subject to replay on; ReproError unless the adapter covers family, device, dtype
    and can run there now (skip_reason)."""
    import implementations

    adapter = implementations.load(spec, NAMES)
    if not hasattr(adapter, family.name):
        raise ReproError(f"--impl {spec}: {adapter.name} covers no {family.title} loss")
    if device not in adapter.devices:
        raise ReproError(f"--device {device}: {adapter.name} runs on {', '.join(adapter.devices)}")
    if dtype not in adapter.dtypes:
        raise ReproError(f"--dtype {dtype}: {adapter.name} computes in {', '.join(adapter.dtypes)}")
    try:
        reason = adapter.skip_reason(device)
    except Exception as exc:
        raise ReproError(f"--impl {spec}: skip_reason({device!r}) raised {type(exc).__name__}: {exc}") from exc
    if reason:
        raise ReproError(f"--device {device}: {adapter.name} cannot run here: {reason}")
    return Subject(spec, adapter, device, precision(dtype))


def run(path: str, spec: str, device: str, dtype: str) -> int:
    """Replay one saved case; print each check; exit status 1 if any failed.

    Raises FixtureError (unreadable case file), AdapterLoadError (bad ``spec``) or
    ReproError (see ``_subject``; invalid case): one-line messages for the command line.
    """
    case, _ = fixtures.load(path)
    family = family_of(case)
    try:
        family.validate(case)
    except InvalidInputError as e:
        raise ReproError(f"{path}: invalid {family.title} case: {e}") from None
    subject = _subject(spec, family, device, dtype)
    print(f"case {case.name} ({family.title}) on {subject.id} ({spec})")
    try:
        checks = engine.run(subject, family, case)
    except engine.ConformanceFailure as e:  # not a mapping of str to arrays, or a wrong shape
        print(f"FAIL adapter output\n\n{e}")
        return 1
    for c in checks:
        print(f"{'ok  ' if c.passed else 'FAIL'} {c.quantity:<24} n={c.n:<7} ratio={c.ratio:.3g} ties={c.ties}")
    failed = [c for c in checks if not c.passed]
    for c in failed:
        print("\n" + c.message)
    return 1 if failed else 0
