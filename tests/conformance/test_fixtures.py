"""The golden fixture format: round trip, determinism, corruption, check, the committed set."""

from __future__ import annotations

import io
import json
import shlex
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conformance import corpus, fixtures
from conformance.families.ssd import corpus as ssd_corpus
from conformance.families.yolo import corpus as yolo_corpus
from conformance.fixtures import FixtureError
from tests.processes import ROOT, run_pytest


def _fake_expected(case) -> dict:
    """Any dict of arrays with the reference's dtypes: the format must not care what they mean."""
    if hasattr(case, "outputs"):
        x = case.outputs[0]
        return {"layer0.grad": np.tanh(x) / 3, "layer0.obj_mask": x > 1, "loss_total": np.asarray(float(np.sum(x**2)))}
    return {
        "matched": np.arange(case.loc.shape[1]).reshape(1, -1).repeat(len(case.loc), 0) - 1,
        "loss_l": np.asarray(np.pi),
        "decoded": case.loc * np.e,
    }


SMALL = [
    yolo_corpus.y5_two_targets_one_cell(),
    yolo_corpus.y7_three_layers(),
    yolo_corpus.y8_no_targets(),
    ssd_corpus.s13_image_without_truths(),
    ssd_corpus.s12_no_positives(),
    ssd_corpus.s7_custom_variances(),
]


def _regen(tmp_path, cases=SMALL, check=False):
    out = io.StringIO()
    status = fixtures.regen(tmp_path, check=check, cases=cases, evaluator=_fake_expected, out=out)
    return status, out.getvalue()


def _same_case(a, b) -> bool:
    ia, ib = fixtures.case_arrays(a), fixtures.case_arrays(b)
    return (
        ia.keys() == ib.keys()
        and all(np.array_equal(ia[k], ib[k]) for k in ia)
        and a.settings == b.settings
        and a.name == b.name
        and type(a) is type(b)
    )


@pytest.mark.parametrize("case", SMALL, ids=lambda c: c.name)
def test_round_trip(tmp_path, case):
    expected = _fake_expected(case)
    path = tmp_path / f"{case.name}.npz"
    path.write_bytes(fixtures.encode(case, expected))
    back, got = fixtures.load(path)
    assert _same_case(back, case)
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k].shape == np.shape(v) and got[k].dtype.kind == np.asarray(v).dtype.kind, k
        assert np.array_equal(got[k], v), k


def test_npz_is_plain_numpy(tmp_path):
    """Readable by np.load without pickle; 0-d settings stay 0-d; SSD truths concatenated."""
    status, _ = _regen(tmp_path)
    assert status == 0
    with np.load(tmp_path / "S13_image_without_truths.npz", allow_pickle=False) as z:
        assert z["input.settings.threshold"].shape == ()
        assert z["input.truths_count"].tolist() == [1, 0]
        assert z["input.truths"].shape == (1, 5)
        assert z["expected.loss_l"].shape == ()


def test_regen_twice_is_byte_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _regen(a)[0] == 0 and _regen(b)[0] == 0
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert len(names) == len(SMALL) + 1
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def test_manifest_fields(tmp_path):
    _regen(tmp_path)
    text = (tmp_path / "manifest.json").read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, sort_keys=True, indent=2) + "\n"
    entry = doc["files"]["Y8_no_targets.npz"]
    assert entry["case"] == "Y8_no_targets" and entry["family"] == "yolo"
    assert entry["spec_version"] == fixtures.SPEC_VERSION
    assert entry["generator_version"] == fixtures.GENERATOR_VERSION
    assert entry["sha256"] == fixtures.sha256((tmp_path / "Y8_no_targets.npz").read_bytes())
    assert doc["files"]["S12_no_positives.npz"]["family"] == "ssd"


def test_check_passes_on_fresh_and_on_recompressed(tmp_path):
    """Check compares values, not bytes: a file written with other zip settings still passes."""
    _regen(tmp_path)
    assert _regen(tmp_path, check=True)[0] == 0
    path = tmp_path / "Y7_three_layers.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # stored, not deflated; other timestamps
    path.write_bytes(buf.getvalue())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["files"][path.name]["sha256"] = fixtures.sha256(buf.getvalue())
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert _regen(tmp_path, check=True)[0] == 0


def test_corrupted_file_names_the_file(tmp_path):
    _regen(tmp_path)
    path = tmp_path / "Y7_three_layers.npz"
    data = bytearray(path.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
    path.write_bytes(bytes(data))
    with pytest.raises(FixtureError, match="Y7_three_layers.npz.*edited"):
        fixtures.load(path)  # the manifest's sha256 catches it first
    with pytest.raises(FixtureError, match="Y7_three_layers.npz.*corrupted"):
        fixtures.load(path, manifest={"files": {path.name: {"sha256": fixtures.sha256(bytes(data))}}})
    status, text = _regen(tmp_path, check=True)
    assert status == 1 and "Y7_three_layers.npz" in text


def test_edited_file_is_a_sha_mismatch(tmp_path):
    """A valid npz whose values were changed: sha256 mismatch, named by load and by check."""
    _regen(tmp_path)
    path = tmp_path / "S7_custom_variances.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["expected.loss_l"] = arrays["expected.loss_l"] + 1
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    with pytest.raises(FixtureError, match="S7_custom_variances.npz.*sha256"):
        fixtures.load(path)
    with pytest.raises(FixtureError, match="S7_custom_variances.npz"):
        fixtures.load_all(tmp_path)
    status, text = _regen(tmp_path, check=True)
    assert status == 1 and "S7_custom_variances.npz: edited" in text


def test_stale_value_beyond_tolerance_is_reported(tmp_path):
    """Re-sign the edited file: the sha matches, the value is stale and check names the key."""
    _regen(tmp_path)
    path = tmp_path / "S7_custom_variances.npz"
    case, expected = fixtures.load(path)
    expected["loss_l"] = expected["loss_l"] * (1 + 1e-6)
    data = fixtures.encode(case, expected)
    path.write_bytes(data)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["files"][path.name]["sha256"] = fixtures.sha256(data)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    status, text = _regen(tmp_path, check=True)
    assert status == 1 and "S7_custom_variances.npz: stale: expected.loss_l" in text


def test_stale_keys_tolerance():
    """A different libm may move the last bits: 1e-11 relative is not stale, 1e-7 is."""
    one = {"k": np.asarray([3.0, 1e-300]), "m": np.asarray([True, False])}
    assert fixtures.stale_keys(one, {"k": np.asarray([3.0 * (1 + 1e-11), 0.0]), "m": one["m"]}) == []
    assert fixtures.stale_keys(one, {"k": np.asarray([3.0 * (1 + 1e-7), 0.0]), "m": one["m"]}) == ["k"]
    assert fixtures.stale_keys(one, {"k": one["k"], "m": ~one["m"]}) == ["m"]
    assert fixtures.stale_keys(one, {"k": one["k"]}) == ["m"]
    assert fixtures.stale_keys(one, {"k": one["k"][:1], "m": one["m"]}) == ["k"]


def test_orphan_and_missing_are_reported(tmp_path):
    _regen(tmp_path)
    (tmp_path / "Y8_no_targets.npz").unlink()
    (tmp_path / "extra_case.npz").write_bytes((tmp_path / "Y7_three_layers.npz").read_bytes())
    status, text = _regen(tmp_path, check=True)
    assert status == 1
    assert "Y8_no_targets.npz: missing" in text
    assert "extra_case.npz: orphaned" in text
    with pytest.raises(FixtureError, match="extra_case.npz.*orphaned"):
        fixtures.load_all(tmp_path)
    (tmp_path / "extra_case.npz").unlink()
    with pytest.raises(FixtureError, match="Y8_no_targets.npz.*missing"):
        fixtures.load_all(tmp_path)
    assert _regen(tmp_path)[0] == 0 and _regen(tmp_path, check=True)[0] == 0


def test_check_reports_a_case_removed_from_the_corpus(tmp_path):
    _regen(tmp_path)
    status, text = _regen(tmp_path, cases=SMALL[1:], check=True)
    assert status == 1 and "Y5_two_targets_one_cell.npz: orphaned" in text


def test_regen_removes_files_no_case_writes(tmp_path):
    _regen(tmp_path)
    _regen(tmp_path, cases=SMALL[1:])
    assert not (tmp_path / "Y5_two_targets_one_cell.npz").exists()
    assert "Y5_two_targets_one_cell.npz" not in (tmp_path / "manifest.json").read_text()


def test_corpus_names_unique_and_inputs_are_binary_fractions():
    cases = [c for c in corpus.all_cases() if not c.name.startswith(("yolo416", "ssd300"))]
    assert len({c.name for c in cases}) == len(cases)
    for c in cases:
        for k, a in fixtures.case_arrays(c).items():
            if not k.startswith("input.settings.") and a.dtype.kind == "f":
                assert np.array_equal(a.astype(np.float32).astype(np.float64), a), (c.name, k)


def test_committed_fixtures_pass_check():
    """fixtures/ matches the reference within RTOL/ATOL: run `python -m conformance regen` if not."""
    out = io.StringIO()
    status = fixtures.regen(fixtures.DEFAULT_DIR, check=True, out=out)
    assert status == 0, out.getvalue()


def test_committed_fixtures_load_and_stay_small():
    loaded = fixtures.load_all()
    names = [n for n, _, _ in loaded]
    assert names == sorted(names) and len(names) == len(corpus.all_cases())
    size = sum(p.stat().st_size for p in fixtures.DEFAULT_DIR.iterdir())
    assert size < 4.5 * 2**20


def test_command_line(tmp_path, capsys):
    from conformance.__main__ import main

    assert main(["regen", "--dir", str(tmp_path)]) == 0
    assert main(["regen", "--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "S6_iou_exactly_half.npz").unlink()
    assert main(["regen", "--check", "--dir", str(tmp_path)]) == 1
    assert "S6_iou_exactly_half.npz: missing" in capsys.readouterr().err


# ---------------------------------------------------------------- regen keeps what is current


def _copy_of_fixtures(tmp_path):
    return Path(shutil.copytree(fixtures.DEFAULT_DIR, tmp_path / "fixtures"))


def _resign(directory, fname, data: bytes) -> None:
    """Write ``data`` to ``fname`` and put its sha256 into the manifest."""
    (directory / fname).write_bytes(data)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][fname]["sha256"] = fixtures.sha256(data)
    (directory / "manifest.json").write_text(fixtures.manifest_text(manifest["files"]))


def _perturbed(directory, fname, step) -> bytes:
    """``fname`` with every stored float moved by ``step(value)``, re-signed; its new bytes."""
    case, expected = fixtures.load(directory / fname)
    moved = {k: step(v) if v.dtype.kind == "f" else v for k, v in expected.items()}
    data = fixtures.encode(case, moved)
    _resign(directory, fname, data)
    return data


def _snapshot(directory) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_regen_keeps_fixtures_within_tolerance_byte_for_byte(tmp_path):
    """Last-bit differences (another NumPy or libm) rewrite nothing; --force rewrites."""
    from conformance.__main__ import main

    directory = _copy_of_fixtures(tmp_path)
    fresh = _snapshot(directory)
    fname = "yolo416_b1.npz"
    last_bits = _perturbed(directory, fname, lambda v: np.nextafter(v, np.inf))
    assert last_bits != fresh[fname]
    before = _snapshot(directory)
    assert main(["regen", "--dir", str(directory)]) == 0
    assert _snapshot(directory) == before  # the perturbed file and the manifest untouched
    assert main(["regen", "--check", "--dir", str(directory)]) == 0
    assert main(["regen", "--force", "--dir", str(directory)]) == 0
    assert _snapshot(directory) == fresh


def test_regen_rewrites_a_stale_fixture_only(tmp_path):
    directory = _copy_of_fixtures(tmp_path)
    fresh = _snapshot(directory)
    _perturbed(directory, "S7_custom_variances.npz", lambda v: v * (1 + 1e-6) + 1e-6)
    _perturbed(directory, "Y5_two_targets_one_cell.npz", lambda v: np.nextafter(v, -np.inf))
    kept = (directory / "Y5_two_targets_one_cell.npz").read_bytes()
    out = io.StringIO()
    assert fixtures.regen(directory, out=out) == 0
    after = _snapshot(directory)
    assert after["S7_custom_variances.npz"] == fresh["S7_custom_variances.npz"]  # stale: rewritten
    assert after["Y5_two_targets_one_cell.npz"] == kept  # within tolerance: kept
    assert "wrote 1 of" in out.getvalue()
    assert fixtures.regen(directory, check=True, out=io.StringIO()) == 0


def test_regen_on_an_unchanged_tree_writes_nothing(tmp_path):
    directory = _copy_of_fixtures(tmp_path)
    times = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}
    out = io.StringIO()
    assert fixtures.regen(directory, out=out) == 0
    assert {p.name: p.stat().st_mtime_ns for p in directory.iterdir()} == times
    assert f"wrote 0 of {len(corpus.all_cases())}" in out.getvalue()


# ---------------------------------------------------------------- a bad fixture does not stop the run


def test_one_bad_fixture_fails_its_own_tests_and_the_rest_runs(tmp_path):
    """A copy of the suite whose fixtures/ holds an edited file and an npz without
    input.num_classes: collection succeeds (properties included), the bad files' tests fail
    naming the file and why, the good ones pass."""
    copy = tmp_path / "suite"
    for package in ("conformance", "reference", "implementations"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    directory = _copy_of_fixtures(copy)
    (directory / "Y7_three_layers.npz").write_bytes(b"PK" + bytes(100))  # sha256 no longer matches
    with np.load(directory / "Y8_no_targets.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "input.num_classes"}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _resign(directory, "Y8_no_targets.npz", buf.getvalue())

    def pytest_run(*args):
        """The copy's suite on the YOLOv3 reference (tests.adapters from the repository)."""
        report = ["--report-dir", tmp_path / "reports"]
        return run_pytest("conformance", "-q", "--impl", "tests.adapters:YoloReference", *report, *args, cwd=copy)

    code, out = pytest_run("--co")
    assert code == 0, out[-3000:]
    assert "test_properties.py::test_property[" in out and "-yolo-plain]" in out and "-ssd-near_tie]" in out
    assert "test_reference_reproduces_fixture[Y7_three_layers.npz]" in out
    code, out = pytest_run("-k", "Y7_three_layers or Y8_no_targets or Y5_two_targets_one_cell", "-rf")
    assert code == 1, out[-3000:]
    assert "4 failed, 2 passed" in out, out[-3000:]
    assert "Y7_three_layers.npz: edited: sha256 differs from the manifest" in out
    assert "Y8_no_targets.npz: missing input.num_classes" in out


# ---------------------------------------------------------------- replay files


def test_each_failing_fixture_leaves_its_own_replay_file(tmp_path, monkeypatch, capsys):
    """Several failing fixtures of one implementation leave one file each, named after the
    case and holding its name; each printed command replays exactly that case."""
    import implementations
    from conformance.__main__ import main
    from conformance.engine import ConformanceFailure, Subject
    from conformance.families import BY_NAME
    from conformance.plugin import check
    from reference.precision import precision

    monkeypatch.chdir(tmp_path)
    spec = "tests.adapters:DoubleLoss"  # SSD: loss_c doubled
    subject = Subject(spec, implementations.load(spec), "cpu", precision("float64"))
    cases = [ssd_corpus.s6_iou_exactly_half(), ssd_corpus.s7_custom_variances(), ssd_corpus.s11_two_images()]
    commands = {}
    for case in cases:
        with pytest.raises(ConformanceFailure) as info:
            check(subject, BY_NAME["ssd"], case, "test_fixture[wrong-cpu-float64]")  # repro's default directory
        commands[case.name] = str(info.value).rsplit("\n", 1)[-1].strip()
    files = sorted(p.name for p in (tmp_path / "reports" / "failures").iterdir())
    assert len(files) == len(cases), files
    for case in cases:
        argv = shlex.split(commands[case.name])[3:]
        path = Path(argv[1])
        assert path.name in files and case.name in path.name
        with np.load(path, allow_pickle=False) as z:
            assert str(z["name"]) == case.name
        replayed, _ = fixtures.load(path)
        assert _same_case(replayed, case)
        assert main(argv) == 1
        out = capsys.readouterr().out
        assert f"case {case.name} (SSD)" in out and "FAIL loss_c" in out


def test_generated_failures_keep_the_latest_example_per_test(tmp_path):
    """Hypothesis shrinks by failing again and again: one file per test id, the last case,
    named after its fingerprint (the report's case name)."""
    from conformance import repro
    from conformance.engine import Subject, fingerprint
    from reference.precision import precision

    target = Subject("x:adapter", None, "cpu", precision("float64"))
    a, b = replace(ssd_corpus.generated_ssd(0), name=""), replace(ssd_corpus.generated_ssd(1), name="")
    repro.save(a, "test_property[x-ssd]", target, tmp_path)
    repro.save(ssd_corpus.s7_custom_variances(), "test_property[x-ssd]", target, tmp_path)
    command = repro.save(b, "test_property[x-ssd]", target, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [f"test_property_x-ssd-{fingerprint(b)[:12]}.npz", "test_property_x-ssd-S7_custom_variances.npz"]
    )
    assert f"test_property_x-ssd-{fingerprint(b)[:12]}.npz" in command
