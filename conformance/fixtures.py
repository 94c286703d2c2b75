"""Golden fixtures: one .npz per case (inputs + the reference's outputs) and a manifest.

The format is documented in fixtures/FORMAT.md. In short: an .npz is a zip of .npy
files written with fixed member timestamps and sorted names, so that regenerating
unchanged cases gives byte-identical files; ``manifest.json`` lists every file with
its sha256. Nothing is pickled; everything is loaded with ``allow_pickle=False``.

``--check`` compares regenerated values with the files on disk within RTOL / ATOL,
not bytes: another NumPy, zlib or libm may change the last bits or the compression.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from reference.cases import SsdCase, SsdSettings, YoloCase, YoloSettings

SPEC_VERSION = "1"  # bump when reference/spec/*.md changes a decided rule
GENERATOR_VERSION = "1"  # bump when conformance/corpus.py or this format changes
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "fixtures"
MANIFEST = "manifest.json"
RTOL = 1e-9  # --check tolerance: another libm moves last bits, conditioning amplifies them
ATOL = 1e-12
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class FixtureError(ValueError):
    """A fixture file that is corrupted, edited, missing or orphaned; ``path`` names it."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


# ---------------------------------------------------------------- case <-> arrays

def _scalar(value, dtype) -> np.ndarray:
    return np.asarray(value, dtype=dtype).reshape(())


def case_arrays(case) -> dict:
    """The ``input.*`` arrays of ``case`` (float64 values, int64 counts, 0-d settings)."""
    if isinstance(case, YoloCase):
        s = case.settings
        out = {f"input.outputs.{k}": x for k, x in enumerate(case.outputs)}
        out.update({f"input.anchors.{k}": a for k, a in enumerate(case.anchors)})
        out.update({"input.targets": np.asarray(case.targets, dtype=np.float64).reshape(-1, 6),
                    "input.num_classes": _scalar(case.num_classes, np.int64),
                    "input.img_dim": _scalar(case.img_dim, np.float64),
                    "input.settings.ignore_thres": _scalar(s.ignore_thres, np.float64),
                    "input.settings.obj_scale": _scalar(s.obj_scale, np.float64),
                    "input.settings.noobj_scale": _scalar(s.noobj_scale, np.float64),
                    "input.settings.log_clamp": _scalar(s.log_clamp, np.float64)})
        return out
    s = case.settings
    truths = [np.asarray(t, dtype=np.float64).reshape(-1, 5) for t in case.truths]
    return {"input.loc": case.loc, "input.conf": case.conf, "input.priors": case.priors,
            "input.truths": np.concatenate(truths, axis=0) if truths else np.zeros((0, 5)),
            "input.truths_count": np.asarray([len(t) for t in truths], dtype=np.int64),
            "input.settings.threshold": _scalar(s.threshold, np.float64),
            "input.settings.neg_pos": _scalar(s.neg_pos, np.int64),
            "input.settings.variances": np.asarray(s.variances, dtype=np.float64).reshape(2)}


def family_of(arrays) -> str:
    """"yolo" or "ssd" from the input keys."""
    return "yolo" if "input.targets" in arrays else "ssd"


def case_from_arrays(arrays, name: str = ""):
    """Inverse of ``case_arrays``."""
    f64 = lambda k: np.asarray(arrays[k], dtype=np.float64)  # noqa: E731
    if family_of(arrays) == "yolo":
        n = sum(1 for k in arrays if k.startswith("input.outputs."))
        s = YoloSettings(*(float(arrays[f"input.settings.{k}"]) for k in
                           ("ignore_thres", "obj_scale", "noobj_scale", "log_clamp")))
        return YoloCase(outputs=tuple(f64(f"input.outputs.{k}") for k in range(n)),
                        anchors=tuple(f64(f"input.anchors.{k}") for k in range(n)),
                        targets=f64("input.targets"), num_classes=int(arrays["input.num_classes"]),
                        img_dim=float(arrays["input.img_dim"]), settings=s, name=name)
    counts = np.asarray(arrays["input.truths_count"], dtype=np.int64)
    truths = tuple(np.split(f64("input.truths"), np.cumsum(counts)[:-1], axis=0))
    s = SsdSettings(threshold=float(arrays["input.settings.threshold"]),
                    neg_pos=int(arrays["input.settings.neg_pos"]),
                    variances=tuple(float(v) for v in arrays["input.settings.variances"]))
    return SsdCase(loc=f64("input.loc"), conf=f64("input.conf"), priors=f64("input.priors"),
                   truths=truths, settings=s, name=name)


def evaluate(case) -> dict:
    """The reference's outputs for ``case`` (float64, every adapter key)."""
    if isinstance(case, YoloCase):
        from reference.yolo import evaluate as yolo_evaluate
        return yolo_evaluate(case)
    from reference.ssd import evaluate as ssd_evaluate
    return ssd_evaluate(case)


# ---------------------------------------------------------------- bytes

def _canonical(a) -> np.ndarray:
    """C-contiguous little-endian bool/int64/float64 copy of ``a``."""
    a = np.asarray(a)
    if a.dtype == np.bool_:
        dtype = np.bool_
    elif np.issubdtype(a.dtype, np.integer):
        dtype = np.dtype("<i8")
    else:
        dtype = np.dtype("<f8")
    return a.astype(dtype, order="C", copy=True)  # keeps 0-d arrays 0-d


def encode(case, expected: dict) -> bytes:
    """Deterministic .npz bytes: sorted members, fixed timestamps, deflate, npy format 1.0."""
    arrays = case_arrays(case)
    arrays.update({f"expected.{k}": v for k, v in expected.items()})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            npy = io.BytesIO()
            np.lib.format.write_array(npy, _canonical(arrays[key]), version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.compress_type, info.create_system, info.external_attr = zipfile.ZIP_DEFLATED, 3, 0o644 << 16
            zf.writestr(info, npy.getvalue(), compresslevel=6)
    return buf.getvalue()


def read_arrays(data: bytes, path="<bytes>") -> dict:
    """Every array of an .npz held in ``data``; FixtureError naming ``path`` if unreadable."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
        raise FixtureError(path, f"corrupted ({type(e).__name__}: {e})") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(arrays: dict, name: str = ""):
    """(case, expected) from the arrays of one fixture."""
    expected = {k[len("expected."):]: v for k, v in arrays.items() if k.startswith("expected.")}
    return case_from_arrays(arrays, name), expected


# ---------------------------------------------------------------- manifest

def read_manifest(directory) -> dict:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise FixtureError(path, "missing manifest")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise FixtureError(path, f"corrupted manifest ({e})") from None


def manifest_text(entries: dict) -> str:
    """Stable JSON: sorted keys, two-space indent, trailing newline."""
    doc = {"generator_version": GENERATOR_VERSION, "spec_version": SPEC_VERSION, "files": entries}
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"


def _entry(case, data: bytes) -> dict:
    return {"case": case.name, "family": "yolo" if isinstance(case, YoloCase) else "ssd",
            "sha256": sha256(data), "spec_version": SPEC_VERSION, "generator_version": GENERATOR_VERSION}


# ---------------------------------------------------------------- load

def load(path, manifest: dict | None = None):
    """(case, expected) from one fixture file.

    If ``manifest`` is None and a manifest.json sits next to the file, it is read; the
    file must then be listed and its sha256 must match (FixtureError otherwise).
    """
    path = Path(path)
    if manifest is None and (path.parent / MANIFEST).exists():
        manifest = read_manifest(path.parent)
    if not path.exists():
        raise FixtureError(path, "missing")
    data = path.read_bytes()
    name = path.stem
    if manifest is not None:
        entry = manifest.get("files", {}).get(path.name)
        if entry is None:
            raise FixtureError(path, "orphaned: not in the manifest")
        if entry.get("sha256") != sha256(data):
            raise FixtureError(path, "edited: sha256 differs from the manifest")
        name = entry.get("case", name)
    return split(read_arrays(data, path), name)


def load_all(directory=DEFAULT_DIR) -> list:
    """[(name, case, expected)] for every manifest entry, sorted by name; no orphans allowed."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    files = manifest.get("files", {})
    orphans = sorted(p.name for p in directory.glob("*.npz") if p.name not in files)
    if orphans:
        raise FixtureError(directory / orphans[0], "orphaned: not in the manifest")
    out = []
    for fname in sorted(files):
        case, expected = load(directory / fname, manifest)
        out.append((case.name, case, expected))
    return sorted(out, key=lambda t: t[0])


# ---------------------------------------------------------------- regen / check

def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True))
    return bool(np.array_equal(a, b))


def stale_keys(fresh: dict, disk: dict) -> list:
    """Keys whose arrays differ beyond RTOL/ATOL (or exist on one side only), sorted."""
    return sorted(k for k in set(fresh) | set(disk)
                  if k not in fresh or k not in disk or not _same(np.asarray(fresh[k]), np.asarray(disk[k])))


def build(cases=None, evaluator=None) -> dict:
    """{file name: (case, bytes)} for ``cases`` (default: the whole corpus)."""
    if cases is None:
        from conformance.corpus import all_cases
        cases = all_cases()
    evaluator = evaluate if evaluator is None else evaluator
    return {f"{c.name}.npz": (c, encode(c, evaluator(c))) for c in cases}


def find_problems(directory, built: dict) -> list:
    """Problems of ``directory`` against the ``built`` fixtures: ["file: reason"], sorted."""
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except FixtureError as e:
        return [str(e)]
    problems = []
    if (manifest.get("spec_version"), manifest.get("generator_version")) != (SPEC_VERSION, GENERATOR_VERSION):
        problems.append(f"{directory / MANIFEST}: stale versions (spec {manifest.get('spec_version')}, "
                        f"generator {manifest.get('generator_version')}; now {SPEC_VERSION}, {GENERATOR_VERSION})")
    listed = manifest.get("files", {})
    on_disk = {p.name for p in directory.glob("*.npz")}
    for fname in sorted(on_disk - set(built)):
        problems.append(f"{directory / fname}: orphaned: no corpus case writes it")
    for fname in sorted(set(listed) - set(built) - on_disk):
        problems.append(f"{directory / fname}: orphaned manifest entry: no corpus case writes it")
    for fname, (case, data) in sorted(built.items()):
        path = directory / fname
        if fname not in on_disk:
            problems.append(f"{path}: missing")
            continue
        try:
            disk = read_arrays_checked(path, listed)
        except FixtureError as e:
            problems.append(str(e))
            continue
        keys = stale_keys(read_arrays(data, path), disk)
        if keys:
            problems.append(f"{path}: stale: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
    return problems


def read_arrays_checked(path: Path, listed: dict) -> dict:
    """Arrays of ``path`` after checking it is listed with the right sha256."""
    entry = listed.get(path.name)
    if entry is None:
        raise FixtureError(path, "orphaned: not in the manifest")
    data = path.read_bytes()
    if entry.get("sha256") != sha256(data):
        raise FixtureError(path, "edited: sha256 differs from the manifest")
    return read_arrays(data, path)


def write(directory, built: dict) -> None:
    """Write every built fixture and the manifest; remove .npz files no case writes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for p in directory.glob("*.npz"):
        if p.name not in built:
            p.unlink()
    for fname, (_, data) in built.items():
        path = directory / fname
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
    entries = {fname: _entry(case, data) for fname, (case, data) in built.items()}
    (directory / MANIFEST).write_text(manifest_text(entries))


def regen(directory=DEFAULT_DIR, check: bool = False, cases=None, evaluator=None, out=None) -> int:
    """Regenerate the fixtures in ``directory`` (or with ``check`` only compare); exit status.

    ``cases`` / ``evaluator`` default to the corpus and the reference (tests pass small ones).
    Problems go to ``out`` (default sys.stderr), one line each.
    """
    import sys
    out = sys.stderr if out is None else out
    built = build(cases, evaluator)
    if not check:
        write(directory, built)
        print(f"wrote {len(built)} fixtures to {directory}", file=out)
        return 0
    problems = find_problems(directory, built)
    for line in problems:
        print(line, file=out)
    print(f"{len(built)} fixtures checked in {directory}: {len(problems)} problem(s)", file=out)
    return 1 if problems else 0
