"""Command line: ``python -m conformance regen [--check] [--dir DIR]``."""
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
    args = parser.parse_args(argv)
    return fixtures.regen(args.dir, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
