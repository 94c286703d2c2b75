"""bench/speed.py, run small on CPU: a row with a finite time and ratio for every implementation that runs here."""

import importlib.util
import math

from implementations import AdapterLoadError, load
from tests.processes import run_python


def runnable_here() -> list:
    """Names of bench/speed.py's rows that must carry a time on this machine's CPU."""
    names = ["torch-seed", "torch-batched"]
    if importlib.util.find_spec("onnxruntime") is not None:
        names.append("onnxruntime")
    if importlib.util.find_spec("implementations.triton_loss") is not None:
        try:
            adapter = load("implementations.triton_loss:adapter")
        except AdapterLoadError:
            adapter = None
        if adapter is not None and adapter.skip_reason("cpu") is None:
            names.append("triton")
    return names


def tables(stdout: str) -> dict:
    """{case title: {implementation: row split on whitespace}} from the script's output."""
    result = {}
    for block in stdout.split("\n\n")[1:]:
        title, header, *rows = block.strip().splitlines()
        assert header.split()[:4] == ["implementation", "median", "ms", "seed/this"], header
        result[title] = {row.split()[0]: row.split() for row in rows}
    return result


def test_speed_quick_has_a_finite_ratio_per_implementation():
    result = run_python("bench/speed.py", "--device", "cpu", "--quick", "--rounds", "1", timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    found = tables(result.stdout)
    assert [title.split()[0] for title in found] == ["SSD300", "YOLOv3-416"], out
    for title, rows in found.items():
        assert "triton" in rows, f"{title}: no triton row (timed or skipped with a reason)\n{out}"
        for name in runnable_here():
            assert name in rows, f"{title}: no row for {name}\n{out}"
            median, ratio = float(rows[name][1]), float(rows[name][2])
            assert math.isfinite(median) and median > 0, f"{title}: {name}: {rows[name]}"
            assert math.isfinite(ratio) and ratio > 0, f"{title}: {name}: {rows[name]}"
        assert rows["torch-seed"][2] == "1.00", rows["torch-seed"]
