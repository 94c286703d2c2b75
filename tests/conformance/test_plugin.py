"""The suite's pytest plugin: --impl, the header, expected-failure files, failure output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "conformance/suite/test_fixtures.py",
        "-p",
        "no:cacheprovider",
        "-rxXs",
        "--impl",
        "first_row:adapter",
        "-k",
        "Y5_two_targets_one_cell and test_fixture",
        "--report-dir",
        str(tmp_path / "reports"),
        *args,
    ]
    result = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(tmp_path)}
    )
    return result.returncode, result.stdout + result.stderr


def test_wrong_implementation_fails_with_message_and_repro(tmp_path):
    code, out = run_suite(tmp_path)
    assert code == 1, out[-3000:]
    assert "conformance: first-row-cpu-float64" in out  # the header names what is tested
    assert "Mismatched elements" in out and "python -m conformance repro" in out


def test_xfails_file_turns_it_into_an_expected_failure_and_warns_on_unmatched(tmp_path):
    xfails = tmp_path / "xfails.txt"
    xfails.write_text(
        "# known divergences\n*Y5_two_targets_one_cell* first row wins on collisions\n*no_such_test* never matches\n"
    )
    code, out = run_suite(tmp_path, "--xfails-file", str(xfails))
    assert code == 0, out[-3000:]
    assert "xfailed" in out and "first row wins on collisions" in out
    assert "xfails.txt:3: xfail pattern '*no_such_test*' matches no test" in out


def test_bad_impl_spec_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "conformance",
            "--impl",
            "no_such_module:adapter",
            "-p",
            "no:cacheprovider",
            "--co",
            "-q",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "--impl 'no_such_module:adapter'" in result.stdout + result.stderr


# ---------------------------------------------------------------- adapters for the checks below

REFERENCE = '''
from reference import ssd as rs
from reference import yolo as ry


class Reference:
    """The float64 reference; keys ending in one of ``drop`` are left out."""
    name, devices, dtypes, drop = "ref", ("cpu",), ("float64",), ()

    def skip_reason(self, device):
        return None

    def yolo(self, case, device, dtype):
        return {k: v for k, v in ry.evaluate(case, prob_dtype=dtype).items() if not k.endswith(self.drop)}

    def ssd(self, case, device, dtype):
        return {k: v for k, v in rs.evaluate(case).items() if not k.endswith(self.drop)}
'''


def pytest_run(tmp_path, modules: dict, *args):
    """Run ``pytest *args`` in the repository with ``modules`` ({name: source}) importable;
    (exit code, stdout + stderr)."""
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(source)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--report-dir", str(tmp_path / "reports"), *args]
    result = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(tmp_path)}
    )
    return result.returncode, result.stdout + result.stderr


def assert_usage_error(code, out, message):
    """Exit code 4 (pytest's usage error) with ``message`` on one ERROR line, no traceback."""
    assert code == 4, out[-3000:]
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], out[-3000:]
    assert "Traceback" not in out and "INTERNALERROR" not in out, out[-3000:]


# ---------------------------------------------------------------- issue 8, item 5: omitted keys

OMITTING = (
    REFERENCE
    + """

class Omitting(Reference):
    name, drop = "omitting", (".obj_mask", ".tx", ".tcls", ".loss_x", ".loss_cls", "conf_t", "loss_c", "grad_conf")


class Misshapen(Reference):
    name = "misshapen"

    def yolo(self, case, device, dtype):
        out = super().yolo(case, device, dtype)
        return {**out, "layer0.obj_mask": out["layer0.obj_mask"][..., :-1]}
"""
)


def test_omitted_keys_are_skips_with_the_reason_and_listed_in_the_report(tmp_path):
    code, out = pytest_run(
        tmp_path,
        {"omitting": OMITTING},
        "conformance/suite/test_coverage.py",
        "-rs",
        "--impl",
        "omitting:Omitting",
        "--impl",
        "omitting:Misshapen",
    )
    assert code == 1, out[-3000:]
    missing_yolo = ["layer0.loss_cls", "layer0.loss_x", "layer0.obj_mask", "layer0.tcls", "layer0.tx"]
    missing_ssd = ["conf_t", "grad_conf", "loss_c"]
    for key in missing_yolo + missing_ssd:
        family = "SSD" if key in missing_ssd else "YOLOv3"
        assert f"omitting-cpu-float64 does not return {key} ({family}): not compared" in out, out[-3000:]
    promised = 22 + 10  # Y1_decode has one layer
    assert f"1 failed, {2 * promised - 8 - 1} passed, 8 skipped" in out, out[-3000:]
    assert "layer0.obj_mask: shape (1, 3, 4, 3), expected (1, 3, 4, 4)" in out
    doc = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert doc["not_returned"] == [
        {"impl": "omitting", "device": "cpu", "dtype": "float64", "family": "ssd", "keys": missing_ssd},
        {"impl": "omitting", "device": "cpu", "dtype": "float64", "family": "yolo", "keys": missing_yolo},
    ]
    md = (tmp_path / "reports" / "latest.md").read_text()
    assert "- omitting cpu float64 yolo: " + ", ".join(missing_yolo) in md


# ---------------------------------------------------------------- issue 8, item 6: typos and declarations


@pytest.mark.parametrize(
    "option,value,valid", [("--device", "cdua", "cpu"), ("--dtype", "flaot64", "float64, float32, float16, bfloat16")]
)
def test_unknown_device_or_dtype_is_a_usage_error(tmp_path, option, value, valid):
    code, out = pytest_run(tmp_path, {"ref": REFERENCE}, "conformance", "--impl", "ref:Reference", option, value)
    assert_usage_error(code, out, f"{option} {value!r}: not one of {valid}")


def test_bad_declaration_is_a_usage_error_at_start(tmp_path):
    bad = REFERENCE + "\n\nclass Bad(Reference):\n    devices = 'cpu'\n"
    code, out = pytest_run(tmp_path, {"bad": bad}, "conformance", "--impl", "bad:Bad")
    assert_usage_error(code, out, "--impl 'bad:Bad': devices = 'cpu': expected a non-empty sequence of str")


# ---------------------------------------------------------------- issue 8, item 7: requested but cannot run

GPU = (
    REFERENCE
    + """

class Gpu(Reference):
    name, devices = "gpu", ("cpu", "cuda")

    def skip_reason(self, device):
        return "no CUDA device here" if device == "cuda" else None
"""
)


def test_requested_device_that_cannot_run_is_a_usage_error_with_the_reason(tmp_path):
    code, out = pytest_run(tmp_path, {"gpu": GPU}, "conformance", "--impl", "gpu:Gpu", "--device", "cuda")
    assert_usage_error(
        code, out, "--device cuda: no selected implementation can run: gpu-cuda-float64: no CUDA device here"
    )


def test_requested_dtype_no_adapter_declares_is_a_usage_error_naming_the_declarations(tmp_path):
    code, out = pytest_run(tmp_path, {"gpu": GPU}, "conformance", "--impl", "gpu:Gpu", "--dtype", "float32")
    assert_usage_error(
        code,
        out,
        "--dtype float32: no selected implementation can run: gpu declares devices cpu, cuda and dtypes float64",
    )


def test_without_device_option_what_cannot_run_is_skipped(tmp_path):
    code, out = pytest_run(
        tmp_path,
        {"gpu": GPU},
        "conformance/suite/test_coverage.py",
        "--impl",
        "gpu:Gpu",
        "-k",
        "gpu-cuda and layer0.tx",
        "-rs",
    )
    assert code == 0, out[-3000:]
    assert "1 skipped" in out and "gpu on cuda: no CUDA device here" in out


# ---------------------------------------------------------------- issue 9, item 9: loading and options

LOAD_ERRORS = [
    ("1 / 0\n", "adapter", "importing bad raised ZeroDivisionError: division by zero"),
    ("def broken(:\n", "adapter", "importing bad raised SyntaxError: invalid syntax"),
    (
        "def adapter(path):\n    return None\n",
        "adapter",
        "calling adapter() with no argument raised TypeError: adapter() missing 1 required positional argument",
    ),
    ("x = 1\n", "adapter", "module bad has no attribute 'adapter'"),
    (
        REFERENCE + "\n\nclass Raising(Reference):\n    def skip_reason(self, device):\n"
        "        raise RuntimeError('driver gone')\n",
        "Raising",
        "ref: skip_reason('cpu') raised RuntimeError: driver gone",
    ),
]


@pytest.mark.parametrize(
    "source,attr,message",
    LOAD_ERRORS,
    ids=["raises-at-import", "syntax-error", "factory-needs-argument", "no-attribute", "skip-reason-raises"],
)
def test_adapter_that_cannot_load_is_a_one_line_usage_error(tmp_path, source, attr, message):
    code, out = pytest_run(tmp_path, {"bad": source}, "conformance", "--impl", f"bad:{attr}", "--co", "-q")
    assert_usage_error(code, out, message)


def test_bad_impl_spec_is_a_usage_error(tmp_path):
    code, out = pytest_run(tmp_path, {}, "conformance", "--impl", "no_such_module:adapter", "--co", "-q")
    assert_usage_error(
        code,
        out,
        "--impl 'no_such_module:adapter': importing no_such_module raised "
        "ModuleNotFoundError: No module named 'no_such_module'",
    )


def test_missing_xfails_file_is_a_usage_error(tmp_path):
    code, out = pytest_run(
        tmp_path,
        {"ref": REFERENCE},
        "conformance",
        "--impl",
        "ref:Reference",
        "--xfails-file",
        str(tmp_path / "nope.txt"),
        "--co",
        "-q",
    )
    assert_usage_error(code, out, f"--xfails-file {tmp_path / 'nope.txt'}: cannot be read: No such file or directory")
