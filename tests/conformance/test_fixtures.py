"""The golden fixture format: round trip, determinism, corruption, check, the committed set."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from conformance import corpus, fixtures
from conformance.fixtures import FixtureError


def _fake_expected(case) -> dict:
    """Any dict of arrays with the reference's dtypes: the format must not care what they mean."""
    if hasattr(case, "outputs"):
        x = case.outputs[0]
        return {"layer0.grad": np.tanh(x) / 3, "layer0.obj_mask": x > 1,
                "loss_total": np.asarray(float(np.sum(x ** 2)))}
    return {"matched": np.arange(case.loc.shape[1]).reshape(1, -1).repeat(len(case.loc), 0) - 1,
            "loss_l": np.asarray(np.pi), "decoded": case.loc * np.e}


SMALL = [corpus.y5_two_targets_one_cell(), corpus.y7_three_layers(), corpus.y8_no_targets(),
         corpus.s13_image_without_truths(), corpus.s12_no_positives(), corpus.s7_custom_variances()]


def _regen(tmp_path, cases=SMALL, check=False):
    out = io.StringIO()
    status = fixtures.regen(tmp_path, check=check, cases=cases, evaluator=_fake_expected, out=out)
    return status, out.getvalue()


def _same_case(a, b) -> bool:
    ia, ib = fixtures.case_arrays(a), fixtures.case_arrays(b)
    return (ia.keys() == ib.keys() and all(np.array_equal(ia[k], ib[k]) for k in ia)
            and a.settings == b.settings and a.name == b.name and type(a) is type(b))


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
    data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
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
    cases = corpus.curated() + corpus.generated()
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
    assert size < 4.5 * 2 ** 20


def test_command_line(tmp_path, capsys):
    from conformance.__main__ import main
    assert main(["regen", "--dir", str(tmp_path)]) == 0
    assert main(["regen", "--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "S6_iou_exactly_half.npz").unlink()
    assert main(["regen", "--check", "--dir", str(tmp_path)]) == 1
    assert "S6_iou_exactly_half.npz: missing" in capsys.readouterr().err
