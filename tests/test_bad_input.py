"""Bad input, class by class: each gets its typed error, and the message names the field or file.

Three groups: reference inputs (``reference.yolo`` / ``reference.ssd``: an InvalidInputError
subclass whose ``field`` is named at the start of the message), fixture files
(``conformance.fixtures``: a FixtureError naming the file and what is wrong) and
``python -m conformance repro`` (exit status 2 and one line naming the file or option).
Adapter outputs, options and report directories are covered by the plugin's own tests.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from conformance import fixtures, repro
from conformance.__main__ import main
from conformance.engine import Subject
from conformance.families.ssd import corpus as ssd_corpus
from conformance.families.yolo import corpus as yolo_corpus
from conformance.fixtures import FixtureError
from implementations import AdapterLoadError
from reference import ssd as rs
from reference import yolo as ry
from reference.cases import SsdCase, SsdSettings, YoloCase, YoloSettings
from reference.errors import DtypeError, LabelError, SettingError, ShapeError
from reference.precision import precision

# ---------------------------------------------------------------- reference inputs

C = 2
ANCHORS = np.array([[4.0, 4.0], [8.0, 2.0]])
PRIORS = np.array([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
TRUTH = np.array([[0.0, 0.0, 0.5, 0.5, 0], [0.2, 0.2, 0.9, 0.8, 1]])


def yolo(**fields) -> YoloCase:
    """A valid one-layer YOLO case (B = 2, A = 2, C = 2, G = 2) with ``fields`` replaced;
    setting names (obj_scale=...) go into its YoloSettings unchecked."""
    names = [n for n in ("ignore_thres", "obj_scale", "noobj_scale", "log_clamp") if n in fields]
    settings = YoloSettings(**{n: fields.pop(n) for n in names})
    base = dict(
        outputs=(np.zeros((2, 2 * (C + 5), 2, 2)),),
        anchors=(ANCHORS,),
        targets=np.array([[0, 1, 0.5, 0.5, 0.5, 0.5]]),
        num_classes=C,
        img_dim=8.0,
        settings=settings,
    )
    return YoloCase(**{**base, **fields})


def ssd(**fields) -> SsdCase:
    """A valid SSD case (B = 2, P = 3, C = 3) with ``fields`` replaced; setting names go
    into its SsdSettings unchecked."""
    names = [n for n in ("threshold", "neg_pos", "variances") if n in fields]
    settings = SsdSettings(**{n: fields.pop(n) for n in names})
    base = dict(
        loc=np.zeros((2, 3, 4)), conf=np.zeros((2, 3, 3)), priors=PRIORS, truths=(TRUTH, TRUTH), settings=settings
    )
    return SsdCase(**{**base, **fields})


def with_row(array: np.ndarray, index, value) -> np.ndarray:
    out = array.astype(np.result_type(array, np.asarray(value)))
    out[index] = value
    return out


X = np.zeros((2, 14, 2, 2))
REFERENCE = [  # (id, call, error type, field)
    ("yolo-num_classes-True", lambda: ry.evaluate(yolo(num_classes=True)), LabelError, "num_classes"),
    ("yolo-num_classes-str", lambda: ry.evaluate(yolo(num_classes="2")), LabelError, "num_classes"),
    ("yolo-num_classes-float", lambda: ry.evaluate(yolo(num_classes=2.0)), LabelError, "num_classes"),
    ("yolo-img_dim-str", lambda: ry.evaluate(yolo(img_dim="64")), SettingError, "img_dim"),
    ("yolo-img_dim-None", lambda: ry.evaluate(yolo(img_dim=None)), SettingError, "img_dim"),
    ("yolo-img_dim-nan", lambda: ry.evaluate(yolo(img_dim=np.nan)), SettingError, "img_dim"),
    ("yolo-obj_scale-None", lambda: ry.evaluate(yolo(obj_scale=None)), SettingError, "settings.obj_scale"),
    ("yolo-ignore_thres-str", lambda: ry.evaluate(yolo(ignore_thres="0.5")), SettingError, "settings.ignore_thres"),
    ("yolo-noobj_scale-bool", lambda: ry.evaluate(yolo(noobj_scale=True)), SettingError, "settings.noobj_scale"),
    ("yolo-log_clamp-list", lambda: ry.evaluate(yolo(log_clamp=[-100.0])), SettingError, "settings.log_clamp"),
    ("yolo-settings-None", lambda: ry.evaluate(replace(yolo(), settings=None)), SettingError, "settings"),
    ("yolo-outputs-complex", lambda: ry.evaluate(yolo(outputs=(X + 1j,))), DtypeError, "outputs[0]"),
    ("yolo-outputs-bool", lambda: ry.evaluate(yolo(outputs=(X > 0,))), DtypeError, "outputs[0]"),
    (
        "yolo-outputs-objects",
        lambda: ry.evaluate(yolo(outputs=(with_row(X.astype(object), 0, None),))),
        DtypeError,
        "outputs[0]",
    ),
    ("yolo-outputs-ragged", lambda: ry.evaluate(yolo(outputs=([[0.0], [0.0, 1.0]],))), ShapeError, "outputs[0]"),
    ("yolo-outputs-not-a-tuple", lambda: ry.evaluate(yolo(outputs=X)), ShapeError, "outputs"),
    ("yolo-anchors-complex", lambda: ry.evaluate(yolo(anchors=(ANCHORS * 1j,))), DtypeError, "anchors[0]"),
    (
        "yolo-targets-complex",
        lambda: ry.evaluate(yolo(targets=np.array([[0, 1, 0.5, 0.5, 0.5, 0.5 + 1e-3j]]))),
        DtypeError,
        "targets",
    ),
    (
        "yolo-targets-text",
        lambda: ry.evaluate(yolo(targets=[["0", "1", ".5", ".5", ".5", ".5"]])),
        DtypeError,
        "targets",
    ),
    ("yolo-prob_dtype-float8", lambda: ry.evaluate(yolo(), prob_dtype="float8"), SettingError, "prob_dtype"),
    ("yolo-prob_dtype-None", lambda: ry.evaluate(yolo(), prob_dtype=None), SettingError, "prob_dtype"),
    ("yolo-astype-float8", lambda: yolo().astype("float8"), SettingError, "dtype"),
    ("ssd-threshold-None", lambda: rs.evaluate(ssd(threshold=None)), SettingError, "settings.threshold"),
    ("ssd-threshold-str", lambda: rs.evaluate(ssd(threshold="0.5")), SettingError, "settings.threshold"),
    ("ssd-neg_pos-str", lambda: rs.evaluate(ssd(neg_pos="3")), SettingError, "settings.neg_pos"),
    ("ssd-neg_pos-nan", lambda: rs.evaluate(ssd(neg_pos=np.nan)), SettingError, "settings.neg_pos"),
    ("ssd-neg_pos-inf", lambda: rs.evaluate(ssd(neg_pos=np.inf)), SettingError, "settings.neg_pos"),
    ("ssd-neg_pos-None", lambda: rs.evaluate(ssd(neg_pos=None)), SettingError, "settings.neg_pos"),
    ("ssd-neg_pos-bool", lambda: rs.evaluate(ssd(neg_pos=True)), SettingError, "settings.neg_pos"),
    ("ssd-variances-scalar", lambda: rs.evaluate(ssd(variances=0.1)), SettingError, "settings.variances"),
    ("ssd-variances-None", lambda: rs.evaluate(ssd(variances=None)), SettingError, "settings.variances"),
    ("ssd-variances-str", lambda: rs.evaluate(ssd(variances="ab")), SettingError, "settings.variances"),
    ("ssd-variances-str-item", lambda: rs.evaluate(ssd(variances=("0.1", 0.2))), SettingError, "settings.variances"),
    ("ssd-settings-None", lambda: rs.evaluate(replace(ssd(), settings=None)), SettingError, "settings"),
    ("ssd-conf-bool", lambda: rs.evaluate(ssd(conf=np.zeros((2, 3, 3), bool))), DtypeError, "conf"),
    ("ssd-conf-complex", lambda: rs.evaluate(ssd(conf=np.zeros((2, 3, 3)) + 1j)), DtypeError, "conf"),
    ("ssd-loc-complex", lambda: rs.evaluate(ssd(loc=np.zeros((2, 3, 4), np.complex64))), DtypeError, "loc"),
    ("ssd-priors-complex", lambda: rs.evaluate(ssd(priors=PRIORS + 0j)), DtypeError, "priors"),
    ("ssd-truths-complex", lambda: rs.evaluate(ssd(truths=(TRUTH, TRUTH + 0j))), DtypeError, "truths[1]"),
    ("ssd-loc-text", lambda: rs.evaluate(ssd(loc=np.zeros((2, 3, 4)).astype(str).tolist())), DtypeError, "loc"),
    ("ssd-conf-ragged", lambda: rs.evaluate(ssd(conf=[[[0.0, 0.0, 0.0]], [[0.0, 0.0]]])), ShapeError, "conf"),
    ("ssd-truths-None", lambda: rs.evaluate(ssd(truths=None)), ShapeError, "truths"),
    (
        "ssd-truths-ragged",
        lambda: rs.evaluate(ssd(truths=([[0, 0, 0.5, 0.5, 0], [0, 0, 0.5]], TRUTH))),
        ShapeError,
        "truths[0]",
    ),
    ("ssd-astype-int8", lambda: ssd().astype("int8"), SettingError, "dtype"),
]


@pytest.mark.parametrize("call, error, field", [r[1:] for r in REFERENCE], ids=[r[0] for r in REFERENCE])
def test_reference_bad_input(call, error, field):
    with pytest.raises(error) as info:
        call()
    assert info.value.field == field
    assert str(info.value).startswith(field), str(info.value)  # "field[row] = value: reason"
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- fixture files

YOLO_CASE, SSD_CASE = yolo_corpus.y8_no_targets(), ssd_corpus.s12_no_positives()
Y, S = f"{YOLO_CASE.name}.npz", f"{SSD_CASE.name}.npz"


@pytest.fixture
def fixture_dir(tmp_path):
    """A fixture directory with one YOLO and one SSD case, as regen writes it."""
    assert fixtures.regen(tmp_path, cases=[YOLO_CASE, SSD_CASE], out=io.StringIO()) == 0
    return tmp_path


def _manifest(directory, edit) -> None:
    path = directory / fixtures.MANIFEST
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _arrays(directory, fname, edit) -> None:
    """Rewrite ``fname`` with ``edit(arrays)`` (plain np.savez) and re-sign it in the manifest."""
    path = directory / fname
    arrays = edit(fixtures.read_arrays(path.read_bytes(), path))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    _manifest(
        directory,
        lambda m: {
            **m,
            "files": {**m["files"], fname: {**m["files"][fname], "sha256": fixtures.sha256(buf.getvalue())}},
        },
    )


def _resign(directory, fname) -> None:
    """Put the sha256 of ``fname`` as it is now into the manifest (so load reads the file)."""
    sha = fixtures.sha256((directory / fname).read_bytes())
    _manifest(directory, lambda m: {**m, "files": {**m["files"], fname: {**m["files"][fname], "sha256": sha}}})


def _without(key):
    return lambda a: {k: v for k, v in a.items() if k != key}


def _with(key, value):
    return lambda a: {**a, key: np.asarray(value)}


def _signed_bytes(fname, data_of):
    """Replace ``fname`` with ``data_of(its bytes)`` and re-sign it."""

    def write(directory):
        (directory / fname).write_bytes(data_of((directory / fname).read_bytes()))
        _resign(directory, fname)

    return write


def _pickled(data: bytes) -> bytes:
    arrays = fixtures.read_arrays(data)
    arrays["input.img_dim"] = np.array([{"pickled": 1}], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


FIXTURE_FILES = [  # (id, edit of the directory, file named, reason fragment)
    ("manifest-is-a-list", lambda d: (d / "manifest.json").write_text("[]"), "manifest.json", "JSON list"),
    (
        "manifest-files-is-a-list",
        lambda d: _manifest(d, lambda m: {**m, "files": list(m["files"])}),
        "manifest.json",
        '"files" is list',
    ),
    (
        "manifest-without-files",
        lambda d: _manifest(d, lambda m: {"spec_version": "1"}),
        "manifest.json",
        '"files" is missing',
    ),
    (
        "manifest-entry-not-an-object",
        lambda d: _manifest(d, lambda m: {**m, "files": {Y: "abc", S: "abc"}}),
        "manifest.json",
        "expected an object with a sha256",
    ),
    ("manifest-not-json", lambda d: (d / "manifest.json").write_text("{files"), "manifest.json", "corrupted manifest"),
    ("manifest-missing", lambda d: (d / "manifest.json").unlink(), "manifest.json", "missing manifest"),
    ("npz-missing-num_classes", lambda d: _arrays(d, Y, _without("input.num_classes")), Y, "missing input.num_classes"),
    (
        "npz-missing-anchors-of-a-layer",
        lambda d: _arrays(d, Y, _without("input.anchors.0")),
        Y,
        "missing input.anchors.0",
    ),
    (
        "npz-missing-truths_count",
        lambda d: _arrays(d, S, _without("input.truths_count")),
        S,
        "missing input.truths_count",
    ),
    (
        "npz-truths_count-does-not-add-up",
        lambda d: _arrays(d, S, _with("input.truths_count", [3, 4])),
        S,
        "does not split",
    ),
    (
        "npz-num_classes-not-an-integer",
        lambda d: _arrays(d, Y, _with("input.num_classes", 2.5)),
        Y,
        "input.num_classes has dtype float64",
    ),
    (
        "npz-img_dim-not-one-value",
        lambda d: _arrays(d, Y, _with("input.img_dim", [64.0, 64.0])),
        Y,
        "input.img_dim has shape (2,)",
    ),
    (
        "npz-without-inputs",
        lambda d: _arrays(d, S, lambda a: {k: v for k, v in a.items() if not k.startswith("input.")}),
        S,
        "not a case file",
    ),
    ("npz-is-json", _signed_bytes(Y, lambda _: b'{"files": {}}'), Y, "not an .npz case file"),
    ("npz-truncated", _signed_bytes(Y, lambda data: data[:200]), Y, "corrupted"),
    ("npz-pickled-member", _signed_bytes(Y, _pickled), Y, "corrupted"),
    ("npz-orphaned", lambda d: (d / "extra.npz").write_bytes((d / S).read_bytes()), "extra.npz", "orphaned"),
    ("npz-edited", lambda d: (d / S).write_bytes((d / S).read_bytes() + b"\0"), S, "edited"),
    ("npz-missing", lambda d: (d / S).unlink(), S, "missing"),
    ("npz-is-a-directory", lambda d: (d / S).unlink() or (d / S).mkdir(), S, "a directory"),
]


@pytest.mark.parametrize("edit, fname, reason", [f[1:] for f in FIXTURE_FILES], ids=[f[0] for f in FIXTURE_FILES])
def test_fixture_file_bad_input(fixture_dir, edit, fname, reason):
    edit(fixture_dir)
    with pytest.raises(FixtureError) as info:
        fixtures.load_all(fixture_dir)
    assert info.value.path.endswith(fname) and fname in str(info.value) and reason in str(info.value), str(info.value)
    errors = []
    loaded = fixtures.load_all(fixture_dir, errors=errors)  # the others still load
    assert [e.path for e in errors] == [info.value.path]
    good = {Y, S} - {fname} if fname != fixtures.MANIFEST else set()
    assert {f"{name}.npz" for name, _, _ in loaded} == good


# ---------------------------------------------------------------- python -m conformance repro


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    """{what: path} of replay files and other things one might pass as the case."""
    root = tmp_path_factory.mktemp("repro")
    target = Subject("tests.adapters:Reference", None, "cpu", precision("float64"))
    paths = {
        "yolo": repro.save(YOLO_CASE, "test_property[x-yolo]", target, root).split()[4],
        "ssd": repro.save(SSD_CASE, "test_property[x-ssd]", target, root).split()[4],
    }
    invalid = replace(SSD_CASE, truths=(np.array([[0.0, 0.0, 0.5, 0.5, 7.0]]),) * len(SSD_CASE.truths), name="label_7")
    paths["invalid"] = repro.save(invalid, "test_property[x-ssd]", target, root).split()[4]
    (root / "fixtures").mkdir()
    fixtures.regen(root / "fixtures", cases=[YOLO_CASE], out=io.StringIO())
    paths["manifest"] = str(root / "fixtures" / fixtures.MANIFEST)
    paths["dir"] = str(root / "fixtures")
    paths["missing"] = str(root / "no_such_case.npz")
    (root / "notes.txt").write_text("not a case\n")
    paths["text"] = str(root / "notes.txt")
    with zipfile.ZipFile(root / "empty.npz", "w"):
        pass
    paths["empty"] = str(root / "empty.npz")
    return paths


def _run(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse
        return e.code


REF = ["--impl", "tests.adapters:Reference", "--dtype", "float64"]
REPRO = [  # (id, case, arguments after it, what the error line names, error repro.run raises or None)
    ("case-missing", "missing", REF, "no_such_case.npz: missing", FixtureError),
    ("case-is-a-directory", "dir", REF, "fixtures: a directory", FixtureError),
    ("case-is-the-manifest", "manifest", REF, "manifest.json: not an .npz case file", FixtureError),
    ("case-is-text", "text", REF, "notes.txt: not an .npz case file", FixtureError),
    ("case-without-inputs", "empty", REF, "empty.npz: no input.targets", FixtureError),
    ("case-invalid", "invalid", REF, "invalid SSD case: truths[0][0] = 7.0", repro.ReproError),
    (
        "impl-no-module",
        "yolo",
        ["--impl", "no_such_module:adapter"],
        "--impl 'no_such_module:adapter'",
        AdapterLoadError,
    ),
    ("impl-no-colon", "yolo", ["--impl", "tests.adapters"], "--impl 'tests.adapters'", AdapterLoadError),
    (
        "impl-no-attribute",
        "yolo",
        ["--impl", "tests.adapters:nothing"],
        "--impl 'tests.adapters:nothing'",
        AdapterLoadError,
    ),
    (
        "impl-without-ssd",
        "ssd",
        ["--impl", "tests.adapters:YoloReference", "--dtype", "float64"],
        "yolo-reference covers no SSD",
        repro.ReproError,
    ),
    ("device-tpu", "yolo", REF + ["--device", "tpu"], "--device tpu: reference runs on cpu", repro.ReproError),
    (
        "dtype-not-the-adapters",
        "yolo",
        REF + ["--dtype", "float32"],
        "--dtype float32: reference computes in float64",
        repro.ReproError,
    ),
    ("default-dtype-float32", "yolo", REF[:2], "--dtype float32: reference computes in float64", repro.ReproError),
    (
        "skip_reason-says-no",
        "yolo",
        ["--impl", "tests.adapters:Gpu", "--device", "cuda", "--dtype", "float64"],
        "no CUDA device here",
        repro.ReproError,
    ),
    (
        "skip_reason-raises",
        "yolo",
        ["--impl", "tests.adapters:Broken", "--dtype", "float64"],
        "skip_reason('cpu') raised RuntimeError",
        repro.ReproError,
    ),
    ("dtype-float8", "yolo", REF + ["--dtype", "float8"], "argument --dtype: invalid choice: 'float8'", None),
    ("impl-missing", "yolo", ["--dtype", "float64"], "the following arguments are required: --impl", None),
]


@pytest.mark.parametrize("what, args, named, error", [r[1:] for r in REPRO], ids=[r[0] for r in REPRO])
def test_repro_bad_input(replay, capsys, what, args, named, error):
    """Exit status 2 and one error line (argparse: after its usage), no traceback."""
    assert _run(["repro", replay[what], *args]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and named in lines[-1], err
    assert len(lines) == 1 or (error is None and lines[0].startswith("usage:")), err
    assert lines[-1].startswith("python -m conformance repro: error: ")
    if error is not None:  # the same as an exception, for callers of repro.run
        opts = {"--device": "cpu", "--dtype": "float32", **dict(zip(args[::2], args[1::2]))}
        with pytest.raises(error):
            repro.run(replay[what], opts["--impl"], opts["--device"], opts["--dtype"])


def test_repro_runs_the_good_files(replay, capsys):
    """The matrix above fails for its stated reason, not because the setup is broken."""
    for what in ("yolo", "ssd"):
        argv = ["repro", replay[what], *REF]
        assert main(argv) == 0, capsys.readouterr()
    assert f"case {SSD_CASE.name} (SSD) on reference-cpu-float64" in capsys.readouterr().out


def test_there_are_enough_classes():
    assert len(REFERENCE) + len(FIXTURE_FILES) + len(REPRO) >= 40
