"""Command line: ``python -m conformance regen [--check] [--dir DIR]`` and ``repro FILE --impl ...``."""
from __future__ import annotations

import argparse
import sys

from conformance import fixtures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance")
    sub = parser.add_subparsers(dest="command", required=True)
    regen = sub.add_parser("regen", help="regenerate the golden fixtures from the reference")
    regen.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if a fixture is stale, missing, edited or orphaned")
    regen.add_argument("--dir", default=str(fixtures.DEFAULT_DIR), help="fixture directory")
    rep = sub.add_parser("repro", help="replay a saved failing case on one implementation")
    rep.add_argument("case", help="a .npz written under reports/failures/ (or any fixture)")
    rep.add_argument("--impl", required=True, help="package.module:attr")
    rep.add_argument("--device", default="cpu")
    rep.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    if args.command == "repro":
        from conformance import repro
        return repro.run(args.case, args.impl, args.device, args.dtype)
    return fixtures.regen(args.dir, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
