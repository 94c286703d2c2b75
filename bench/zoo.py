"""How well the suite judges implementations it was not written with (tests/zoo).

Run: ``python bench/zoo.py [--profile ci|zoo-noshrink] [--workers 2] [--only NAME ...] [--keep DIR]``.
Not a test (tests/test_zoo.py asserts the same verdicts).

One pytest run of the conformance suite on every zoo adapter at once; prints per adapter
its verdict (mutants: killed / SURVIVED; variants: ok / FALSE ALARM), its test counts and
seconds, then the kill rate (mutants killed / mutants), the false-alarm rate (variants
with any failed test / variants) and the median, over killed mutants, of the duration of
the mutant's quickest failing test and of its quickest failing property test (JUnit
times: search, shrinking and reporting; ``--profile zoo-noshrink`` leaves the search
only). The first failure of every false alarm is printed with Hypothesis' example.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.zoo

from tests.zoo.adapters import MUTANTS, VARIANTS  # noqa: E402
from tests.zoo.run import run_zoo, short_message  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci", help="Hypothesis profile: ci (default) or zoo-noshrink")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default 2)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these adapters")
    parser.add_argument("--keep", metavar="DIR", help="run in DIR and keep the JUnit XML and reports there")
    args = parser.parse_args()
    names = args.only or list(MUTANTS) + list(VARIANTS)
    unknown = [n for n in names if n not in MUTANTS and n not in VARIANTS]
    if unknown:
        parser.error(f"unknown zoo adapter(s): {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="zoo-") as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        run = run_zoo(workdir, names, profile=args.profile, workers=args.workers)
    print(
        f"{len(names)} adapters, profile {args.profile}, {args.workers} workers: "
        f"{run.wall_s:.0f} s wall, {run.cpu_s:.0f} s CPU, pytest exit {run.returncode}\n"
    )
    print(
        f"{'adapter':<30} {'verdict':<11} {'pass':>4} {'fail':>4} {'skip':>4} {'fixt':>4} {'test s':>6} "
        f"{'1st prop':>8}  rule"
    )
    mutants = [n for n in names if n in MUTANTS]
    variants = [n for n in names if n in VARIANTS]
    killed, alarms, first, first_prop = [], [], [], []
    for name in mutants + variants:
        o = run.outcomes.get(name)
        if o is None:
            print(f"{name:<30} NOT RUN")
            continue
        if name in MUTANTS:
            verdict = "killed" if o.failed else "SURVIVED"
            if o.failed:
                killed.append(name)
                first.append(o.first_failure_s)
                if o.property_failures:
                    first_prop.append(o.first_property_failure_s)
        else:
            verdict = "FALSE ALARM" if o.failed else ("ok" if o.passed else "NOTHING RUN")
            if o.failed:
                alarms.append(name)
        prop = f"{o.first_property_failure_s:8.1f}" if o.property_failures else f"{'-':>8}"
        fixture_failures = len(o.failures) - len(o.property_failures)
        rule = (MUTANTS.get(name) or VARIANTS[name]).rule
        print(
            f"{name:<30} {verdict:<11} {o.passed:>4} {o.failed:>4} {o.skipped:>4} {fixture_failures:>4} "
            f"{o.seconds:>6.1f} {prop}  {rule}"
        )
    print(
        "\n(fixt: failed fixture tests; test s: JUnit seconds of all its tests; 1st prop: seconds of its "
        "quickest failing property test)\n"
    )
    if mutants:
        print(f"kill rate: {len(killed)}/{len(mutants)} = {len(killed) / len(mutants):.0%}")
        survivors = [n for n in mutants if n not in killed]
        if survivors:
            print(f"survivors: {', '.join(survivors)}")
    if variants:
        print(
            f"false-alarm rate: {len(alarms)}/{len(variants)} = {len(alarms) / len(variants):.0%}"
            + (f" ({', '.join(alarms)})" if alarms else "")
        )
    if first:
        line = f"time to a failure, median over killed mutants: quickest failing test {statistics.median(first):.2f} s"
        if first_prop:
            line += (
                f"; quickest failing property test {statistics.median(first_prop):.1f} s over "
                f"{len(first_prop)} mutants (min {min(first_prop):.1f}, max {max(first_prop):.1f})"
            )
        print(line)
    for name in alarms:
        o = run.outcomes[name]
        test, _, text = (o.property_failures or o.failures)[0]
        print(f"\n--- false alarm {name}: {o.failed} failed test(s), first: {test}")
        print(short_message(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
