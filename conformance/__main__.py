"""Command line: ``python -m conformance regen [--check] [--force] [--dir DIR]`` and
``repro FILE --impl ... [--device D] [--dtype T]``.

Exit status: 0 ok, 1 a check failed (stale fixtures, a replayed case that still fails),
2 a usage error, reported in one line (a file that is not a case, an adapter that cannot
be loaded or does not cover the device or dtype).
"""

from __future__ import annotations

import argparse
import sys

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
    regen.add_argument("--dir", default=str(fixtures.DEFAULT_DIR), help="fixture directory")
    rep = sub.add_parser("repro", help="replay a saved failing case on one implementation")
    rep.add_argument("case", help="a .npz written under reports/failures/ (or any fixture)")
    rep.add_argument("--impl", required=True, help="package.module:attr")
    rep.add_argument("--device", default="cpu", help="one of the adapter's devices (default cpu)")
    rep.add_argument("--dtype", default="float32", choices=DTYPES, help="one of the adapter's dtypes (default float32)")
    args = parser.parse_args(argv)
    if args.command == "repro":
        from conformance import repro
        from implementations import AdapterLoadError

        try:
            return repro.run(args.case, args.impl, args.device, args.dtype)
        except (fixtures.FixtureError, AdapterLoadError, repro.ReproError) as e:
            print(f"{parser.prog} repro: error: {e}", file=sys.stderr)
            return 2
    return fixtures.regen(args.dir, check=args.check, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
