"""Failing cases as files, and the one-line command that replays one.

On a failure the engine writes the case (inputs only, fixture format) to
``reports/failures/<test id>.npz``; Hypothesis replays the shrunk example last, so the
file left behind is the minimal one. ``python -m conformance repro FILE --impl ...``
runs that implementation on it and prints every check.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from conformance import fixtures

FAILURES = Path("reports") / "failures"


def save(case, test_id: str, target, directory: Path = FAILURES) -> str:
    """Write ``case`` and return the command that replays it on ``target``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (re.sub(r"[^A-Za-z0-9_.-]+", "_", test_id).strip("_") + ".npz")
    path.write_bytes(fixtures.encode(case, {}))
    return " ".join(["python -m conformance repro", shlex.quote(str(path)), "--impl", shlex.quote(target.spec),
                     "--device", target.device, "--dtype", target.dtype])


def run(path: str, spec: str, device: str, dtype: str) -> int:
    """Replay one saved case; print each check; exit status 1 if any failed."""
    import implementations
    from conformance.engine import COMPARE, PARTS, Target, family_of, outputs

    case, _ = fixtures.split(fixtures.read_arrays(Path(path).read_bytes(), path), Path(path).stem)
    family = family_of(case)
    target = Target(spec, implementations.load(spec), device, dtype)
    rounded = case.astype(dtype)
    checks = COMPARE[family](rounded, outputs(target, family, rounded), dtype, parts=PARTS)
    for c in checks:
        print(f"{'ok  ' if c.passed else 'FAIL'} {c.quantity:<24} n={c.n:<7} ratio={c.ratio:.3g} ties={c.ties}")
    failed = [c for c in checks if not c.passed]
    for c in failed:
        print("\n" + c.message)
    return 1 if failed else 0
