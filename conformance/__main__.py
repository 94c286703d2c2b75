"""Command line: ``python -m conformance regen [--check] [--force] [--dir DIR]``,
``repro FILE --impl ... [--device D] [--dtype T]`` and ``report merge A.json B.json ... [--out DIR]``
(one report of the shards of a run).

Exit status: 0 ok, 1 a check failed (stale fixtures, a replayed case that still fails),
2 a usage error, reported in one line (a file that is not a case or not a report, an
adapter that cannot be loaded or does not cover the device or dtype).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from conformance import fixtures
from implementations.adapter import DTYPES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance")
    sub = parser.add_subparsers(dest="command", required=True)
    regen = sub.add_parser("regen", help="regenerate the golden fixtures from the reference")
    regen.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a fixture is stale, missing, edited or orphaned"
    )
    regen.add_argument(
        "--force",
        action="store_true",
        help="rewrite every fixture, also those within the --check tolerance of the "
        "fresh values (which are kept by default)",
    )
    regen.add_argument(
        "--dir",
        default=str(fixtures.DEFAULT_DIR),
        help="fixture directory (default: the package's own; an installed, read-only copy needs --dir)",
    )
    rep = sub.add_parser("repro", help="replay a saved failing case on one implementation")
    rep.add_argument("case", help="a .npz written under reports/failures/ (or any fixture)")
    rep.add_argument("--impl", required=True, help="package.module:attr")
    rep.add_argument("--device", default="cpu", help="one of the adapter's devices (default cpu)")
    rep.add_argument("--dtype", default="float32", choices=DTYPES, help="one of the adapter's dtypes (default float32)")
    reports = sub.add_parser("report", help="tolerance reports").add_subparsers(dest="action", required=True)
    merge = reports.add_parser("merge", help="merge the JSON reports of a run's shards into one report")
    merge.add_argument("reports", nargs="+", metavar="REPORT.json", help="e.g. each shard's <report dir>/latest.json")
    merge.add_argument("--out", default="reports", help="where <run>.json/.md/.html and latest.* go (default reports)")
    args = parser.parse_args(argv)
    if args.command == "report":
        return _merge(args.reports, args.out, f"{parser.prog} report merge")
    if args.command == "repro":
        from conformance import repro
        from implementations import AdapterLoadError

        try:
            return repro.run(args.case, args.impl, args.device, args.dtype)
        except (fixtures.FixtureError, AdapterLoadError, repro.ReproError) as e:
            print(f"{parser.prog} repro: error: {e}", file=sys.stderr)
            return 2
    target = Path(args.dir)
    if not args.check and target.is_dir() and not os.access(target, os.W_OK):
        print(
            f"{parser.prog} regen: error: {target} is not writable (an installed package?): "
            "write elsewhere with --dir DIR, or check it with --check",
            file=sys.stderr,
        )
        return 2
    return fixtures.regen(args.dir, check=args.check, force=args.force)


def _merge(paths: list, out: str, prog: str) -> int:
    """``report merge``: write the merged report of ``paths`` into ``out``; 2 when one cannot be read."""
    import json

    from conformance import report

    named = []
    try:
        for path in paths:
            try:
                named.append((path, json.loads(Path(path).read_text(encoding="utf-8"))))
            except ValueError as e:
                raise ValueError(f"{path}: not JSON: {e}") from None
        written = report.write(report.merge_reports(named), out)
    except (OSError, ValueError, KeyError, TypeError) as e:  # report.RecordError is a ValueError
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
