"""The suite's pytest plugin: --impl, the header, expected-failure files, failure output."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ADAPTER = '''
from dataclasses import replace
from reference import yolo as ry

class FirstRowWins:
    """YOLOv3 only, float64: the reference, except that colliding targets keep the first row."""
    name, devices, dtypes = "first-row", ("cpu",), ("float64",)
    def skip_reason(self, device):
        return None
    def yolo(self, case, device, dtype):
        return ry.evaluate(replace(case, targets=case.targets[::-1].copy()), prob_dtype=dtype)

adapter = FirstRowWins()
'''


def run_suite(tmp_path, *args):
    (tmp_path / "first_row.py").write_text(ADAPTER)
    cmd = [sys.executable, "-m", "pytest", "conformance/test_fixtures.py", "-p", "no:cacheprovider", "-rxXs",
           "--impl", "first_row:adapter", "-k", "Y5_two_targets_one_cell and implementation",
           "--report-dir", str(tmp_path / "reports"), *args]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    return result.returncode, result.stdout + result.stderr


def test_wrong_implementation_fails_with_message_and_repro(tmp_path):
    code, out = run_suite(tmp_path)
    assert code == 1, out[-3000:]
    assert "conformance: first-row-cpu-float64" in out  # the header names what is tested
    assert "Mismatched elements" in out and "python -m conformance repro" in out


def test_xfails_file_turns_it_into_an_expected_failure_and_warns_on_unmatched(tmp_path):
    xfails = tmp_path / "xfails.txt"
    xfails.write_text("# known divergences\n*Y5_two_targets_one_cell* first row wins on collisions\n"
                      "*no_such_test* never matches\n")
    code, out = run_suite(tmp_path, "--xfails-file", str(xfails))
    assert code == 0, out[-3000:]
    assert "xfailed" in out and "first row wins on collisions" in out
    assert "xfails.txt:3: xfail pattern '*no_such_test*' matches no test" in out


def test_bad_impl_spec_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pytest", "conformance", "--impl", "no_such_module:adapter",
                             "-p", "no:cacheprovider", "--co", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "--impl 'no_such_module:adapter'" in result.stdout + result.stderr
