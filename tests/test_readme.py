"""The README's promises: two Quick start commands, and its example adapter really runs."""

import re

from tests.processes import ROOT, run_pytest

README = (ROOT / "README.md").read_text()


def test_quick_start_has_exactly_two_commands():
    block = re.search(r"^## Quick start\n.*?```sh\n(.*?)```", README, re.S | re.M).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make conformance", "make test"]


def test_example_adapter_runs_in_the_suite(tmp_path):
    example = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    (tmp_path / "readme_adapter.py").write_text(example)
    code, out = run_pytest(
        "conformance/suite/test_properties.py",
        "--impl",
        "readme_adapter:adapter",
        "--device",
        "cpu",
        "--hypothesis-profile",
        "ci",
        "-rs",
        "--report-dir",
        tmp_path,
        path=[tmp_path],
        timeout=900,
    )
    assert code == 0, out[-4000:]
    assert "my-ssd-cpu-float32" in out  # printed in the header and the test ids
    assert "9 passed, 8 skipped" in out and "covers no YOLOv3 loss" in out, out[-2000:]  # 9 SSD, 8 YOLO features
