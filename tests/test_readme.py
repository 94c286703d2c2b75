"""The README's promises: two Quick start commands, and its example adapter really runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_quick_start_has_exactly_two_commands():
    block = re.search(r"^## Quick start\n.*?```sh\n(.*?)```", README, re.S | re.M).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make conformance", "make test"]


def test_example_adapter_runs_in_the_suite(tmp_path):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    (tmp_path / "readme_adapter.py").write_text(code)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "conformance/suite/test_properties.py",
            "-p",
            "no:cacheprovider",
            "--impl",
            "readme_adapter:adapter",
            "--device",
            "cpu",
            "--hypothesis-profile",
            "ci",
            "-rs",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "my-ssd-cpu-float32" in out  # printed in the header and the test ids
    assert "1 passed" in out and "covers no YOLOv3 loss" in out, out[-2000:]
