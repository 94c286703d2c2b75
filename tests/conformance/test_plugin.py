"""The suite's pytest plugin: --impl, the header, expected-failure files, failure output."""

import json

import pytest

from tests.adapters import UNLOADABLE
from tests.processes import run_pytest


def run_suite(tmp_path, *args):
    return run_pytest(
        "conformance/suite/test_fixtures.py",
        "-rxXs",
        "--impl",
        "tests.adapters:FirstRowWins",
        "-k",
        "Y5_two_targets_one_cell and test_fixture",
        "--report-dir",
        tmp_path / "reports",
        *args,
    )


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


def pytest_run(tmp_path, *args):
    """Run ``pytest *args`` in the repository with its report under ``tmp_path`` and
    ``tmp_path`` importable; (exit code, stdout + stderr)."""
    return run_pytest("--report-dir", tmp_path / "reports", *args, path=[tmp_path])


def assert_usage_error(code, out, message):
    """Exit code 4 (pytest's usage error) with ``message`` on one ERROR line, no traceback."""
    assert code == 4, out[-3000:]
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1 and message in errors[0], out[-3000:]
    assert "Traceback" not in out and "INTERNALERROR" not in out, out[-3000:]


# ---------------------------------------------------------------- issue 8, item 5: omitted keys


def test_omitted_keys_are_skips_with_the_reason_and_listed_in_the_report(tmp_path):
    code, out = pytest_run(
        tmp_path,
        "conformance/suite/test_coverage.py",
        "-rs",
        "--impl",
        "tests.adapters:Omitting",
        "--impl",
        "tests.adapters:Misshapen",
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
    code, out = pytest_run(tmp_path, "conformance", "--impl", "tests.adapters:Reference", option, value)
    assert_usage_error(code, out, f"{option} {value!r}: not one of {valid}")


def test_bad_declaration_is_a_usage_error_at_start(tmp_path):
    code, out = pytest_run(tmp_path, "conformance", "--impl", "tests.adapters:BadDeclaration")
    assert_usage_error(
        code, out, "--impl 'tests.adapters:BadDeclaration': devices = 'cpu': expected a non-empty sequence of str"
    )


# ---------------------------------------------------------------- issue 8, item 7: requested but cannot run


def test_requested_device_that_cannot_run_is_a_usage_error_with_the_reason(tmp_path):
    code, out = pytest_run(tmp_path, "conformance", "--impl", "tests.adapters:Gpu", "--device", "cuda")
    assert_usage_error(
        code, out, "--device cuda: no selected implementation can run: gpu-cuda-float64: no CUDA device here"
    )


def test_requested_dtype_no_adapter_declares_is_a_usage_error_naming_the_declarations(tmp_path):
    code, out = pytest_run(tmp_path, "conformance", "--impl", "tests.adapters:Gpu", "--dtype", "float32")
    assert_usage_error(
        code,
        out,
        "--dtype float32: no selected implementation can run: gpu declares devices cpu, cuda and dtypes float64",
    )


def test_without_device_option_what_cannot_run_is_skipped(tmp_path):
    code, out = pytest_run(
        tmp_path,
        "conformance/suite/test_coverage.py",
        "--impl",
        "tests.adapters:Gpu",
        "-k",
        "gpu-cuda and layer0.tx",
        "-rs",
    )
    assert code == 0, out[-3000:]
    assert "1 skipped" in out and "gpu on cuda: no CUDA device here" in out


# ---------------------------------------------------------------- issue 9, item 9: loading and options


@pytest.mark.parametrize("source,message", [u[1:] for u in UNLOADABLE], ids=[u[0] for u in UNLOADABLE])
def test_adapter_that_cannot_load_is_a_one_line_usage_error(tmp_path, source, message):
    (tmp_path / "bad.py").write_text(source)
    code, out = pytest_run(tmp_path, "conformance", "--impl", "bad:adapter", "--co", "-q")
    assert_usage_error(code, out, message.format(module="bad"))


def test_skip_reason_that_raises_is_a_one_line_usage_error(tmp_path):
    code, out = pytest_run(tmp_path, "conformance", "--impl", "tests.adapters:Broken", "--co", "-q")
    assert_usage_error(code, out, "broken: skip_reason('cpu') raised RuntimeError: driver not loaded")


def test_bad_impl_spec_is_a_usage_error(tmp_path):
    code, out = pytest_run(tmp_path, "conformance", "--impl", "no_such_module:adapter", "--co", "-q")
    assert_usage_error(
        code,
        out,
        "--impl 'no_such_module:adapter': importing no_such_module raised "
        "ModuleNotFoundError: No module named 'no_such_module'",
    )


def test_missing_xfails_file_is_a_usage_error(tmp_path):
    code, out = pytest_run(
        tmp_path,
        "conformance",
        "--impl",
        "tests.adapters:Reference",
        "--xfails-file",
        str(tmp_path / "nope.txt"),
        "--co",
        "-q",
    )
    assert_usage_error(code, out, f"--xfails-file {tmp_path / 'nope.txt'}: cannot be read: No such file or directory")
