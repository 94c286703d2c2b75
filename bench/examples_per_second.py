"""Property-test throughput of the suite: examples and case-parts checked per second, per
implementation, at the ci profile, for this checkout and an earlier commit side by side.

Run: ``python bench/examples_per_second.py [--before COMMIT] [--rounds N] [--impl SPEC ...]``.
Not a test. The earlier commit is extracted with ``git archive`` into a temporary
directory; each round runs, for every implementation, the earlier suite's property tests
and then this one's (``-p no:xdist``, one thread), so load coming and going hits both.
Hypothesis' own statistics (``--hypothesis-show-statistics``) give each test's examples
and generate-phase seconds. An example of the earlier suite (one test per part) checks
one part of a case; one of this suite checks targets, losses and gradients on its case,
so "parts/s" (examples x parts checked per example / seconds) compares like with like.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = (
    "implementations.torch_adapter:adapter",
    "implementations.torch_batched:adapter",
    "implementations.onnx_runtime:adapter",
)
# "- 100 passing examples, ..." (Hypothesis < 6.16x) or "- 12 passing, 0 failing, ..." (newer)
_PHASE = re.compile(r"during generate phase \(([0-9.]+) seconds\):.*?(\d+) passing\b", re.S)


def property_tests(root: Path) -> list:
    """The property test files of the suite in ``root`` (either layout)."""
    new = root / "conformance" / "suite" / "test_properties.py"
    return [str(new)] if new.exists() else [str(root / "conformance" / f) for f in ("test_yolo.py", "test_ssd.py")]


def measure(root: Path, spec: str, dtype: str) -> tuple:
    """(examples, seconds in Hypothesis' generate phase) of one run of the property tests."""
    # an earlier layout has its plugin in conformance/conftest.py: keep this checkout's installed one out
    own_plugin = ["-p", "no:conformance"] if (root / "conformance" / "conftest.py").exists() else []
    options = f"-p no:cacheprovider -p no:xdist -q --device cpu --dtype {dtype} --hypothesis-profile ci"
    cmd = [sys.executable, "-m", "pytest", *property_tests(root), *own_plugin, *options.split(), "--impl", spec]
    cmd += ["--hypothesis-show-statistics", "--report-dir", str(Path(tempfile.gettempdir()) / "eps-reports")]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=3600)
    phases = _PHASE.findall(done.stdout)
    if done.returncode != 0 or not phases:
        raise RuntimeError(f"{root}: pytest exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return sum(int(n) for _, n in phases), sum(float(s) for s, _ in phases)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="7d07769", help="the earlier commit (default: before issue 10)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--impl", action="append", default=[], help="adapter spec (default: the bundled three)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, capture_output=True, check=True).stdout
        tarfile.open(fileobj=BytesIO(archive)).extractall(before, filter="data")
        versions = {f"before ({args.before})": (before, 1), "this checkout": (ROOT, 3)}
        rates = {(spec, v): [] for spec in args.impl or BUNDLED for v in versions}
        for _ in range(args.rounds):
            for spec in args.impl or BUNDLED:
                for version, (root, parts) in versions.items():
                    examples, seconds = measure(root, spec, args.dtype)
                    rates[spec, version].append((examples / seconds, examples * parts / seconds))
        print(f"property tests, ci profile, cpu {args.dtype}, one process, medians of {args.rounds} rounds")
        print("(per round: this checkout's parts/s over the earlier one's measured just before it)")
        head = f"{'implementation':<40} {'version':<22} {'examples/s':>10} {'parts/s':>9} {'parts/s ratio':>14}"
        print(f"{head} {'per round: min .. max':>22}")
        for spec in args.impl or BUNDLED:
            base, (first, last) = None, versions
            per_round = [p / q for (_, p), (_, q) in zip(rates[spec, last], rates[spec, first])]
            for version in versions:
                eps = statistics.median(r for r, _ in rates[spec, version])
                pps = statistics.median(p for _, p in rates[spec, version])
                base = base or pps
                spread = f"{min(per_round):.2f}x .. {max(per_round):.2f}x" if version == last else ""
                print(f"{spec:<40} {version:<22} {eps:>10.1f} {pps:>9.1f} {pps / base:>13.2f}x {spread:>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
