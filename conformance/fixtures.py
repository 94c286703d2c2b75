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

from conformance.families import FAMILIES, family_of, family_of_arrays

SPEC_VERSION = "1"  # bump when reference/spec/*.md changes a decided rule
GENERATOR_VERSION = "1"  # bump when a family's corpus or schema, or this format, changes
_HERE = Path(__file__).resolve().parent
# the golden fixtures: package data conformance/golden/ in an installed wheel, fixtures/ in a checkout
DEFAULT_DIR = _HERE / "golden" if (_HERE / "golden").is_dir() else _HERE.parent / "fixtures"
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


def case_arrays(case) -> dict:
    """The ``input.*`` arrays of ``case`` (its family's ``to_arrays``)."""
    return family_of(case).to_arrays(case)


def input_problem(arrays) -> str | None:
    """Why ``arrays`` do not hold one case's inputs (no family's input key, or its family's
    ``input_problem``), or None."""
    family = family_of_arrays(arrays)
    if family is None:
        keys = " or ".join(f"{f.input_key} ({f.title})" for f in FAMILIES)
        return f"no {keys}: not a case file"
    return family.input_problem(arrays)


def case_from_arrays(arrays, name: str = ""):
    """Inverse of ``case_arrays``."""
    return family_of_arrays(arrays).from_arrays(arrays, name)


def evaluate(case) -> dict:
    """The reference's outputs for ``case`` (float64, every adapter key)."""
    return family_of(case).evaluate(case)


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


def encode(case, expected: dict, with_name: bool = False) -> bytes:
    """Deterministic .npz bytes: sorted members, fixed timestamps, deflate, npy format 1.0.

    ``with_name`` adds a member ``name`` (0-d unicode array) holding ``case.name``: replay
    files carry it; fixtures do not (the manifest names them).
    """
    arrays = {k: _canonical(v) for k, v in case_arrays(case).items()}
    arrays.update({f"expected.{k}": _canonical(v) for k, v in expected.items()})
    if with_name:
        arrays["name"] = np.asarray(str(case.name))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            npy = io.BytesIO()
            np.lib.format.write_array(npy, arrays[key], version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.compress_type, info.create_system, info.external_attr = zipfile.ZIP_DEFLATED, 3, 0o644 << 16
            zf.writestr(info, npy.getvalue(), compresslevel=6)
    return buf.getvalue()


def read_arrays(data: bytes, path="<bytes>") -> dict:
    """Every array of an .npz held in ``data``; FixtureError naming ``path`` if unreadable."""
    if not data.startswith(b"PK"):
        if data.lstrip()[:1] in (b"{", b"["):
            what = "a JSON document (a manifest? pass one of the .npz files it lists)"
        else:
            what = f"{len(data)} bytes starting {data[:8]!r}"
        raise FixtureError(path, f"not an .npz case file (a zip of .npy arrays): {what}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
        raise FixtureError(path, f"corrupted ({type(e).__name__}: {e})") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(arrays: dict, name: str = "", path="<arrays>"):
    """(case, expected) from the arrays of one fixture; FixtureError naming ``path`` if the
    inputs are incomplete or malformed. A ``name`` member (replay files) names the case."""
    problem = input_problem(arrays)
    if problem is None:
        try:
            if "name" in arrays:
                name = str(np.asarray(arrays["name"]).reshape(()))
            case = case_from_arrays(arrays, name)
        except (TypeError, ValueError) as e:
            problem = f"malformed inputs ({type(e).__name__}: {e})"
    if problem is not None:
        raise FixtureError(path, problem)
    expected = {k[len("expected.") :]: v for k, v in arrays.items() if k.startswith("expected.")}
    return case, expected


# ---------------------------------------------------------------- manifest


def read_manifest(directory) -> dict:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise FixtureError(path, "missing manifest")
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise FixtureError(path, f"corrupted manifest ({e})") from None
    if not isinstance(doc, dict):
        raise FixtureError(
            path,
            f"manifest is a JSON {type(doc).__name__}, expected an object "
            '{"files": {...}, "spec_version": ..., "generator_version": ...}',
        )
    files = doc.get("files")
    if not isinstance(files, dict):
        raise FixtureError(
            path,
            f'manifest "files" is {type(files).__name__ if "files" in doc else "missing"}, '
            "expected an object {file name: entry}",
        )
    for fname, entry in files.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise FixtureError(path, f'manifest entry "{fname}" = {entry!r}: expected an object with a sha256')
    return doc


def manifest_text(entries: dict) -> str:
    """Stable JSON: sorted keys, two-space indent, trailing newline."""
    doc = {"generator_version": GENERATOR_VERSION, "spec_version": SPEC_VERSION, "files": entries}
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"


def _entry(case, data: bytes) -> dict:
    return {
        "case": case.name,
        "family": family_of(case).name,
        "sha256": sha256(data),
        "spec_version": SPEC_VERSION,
        "generator_version": GENERATOR_VERSION,
    }


# ---------------------------------------------------------------- load


def load(path, manifest: dict | None = None):
    """(case, expected) from one fixture file.

    If ``manifest`` is None and a manifest.json sits next to the file, it is read; the
    file must then be listed and its sha256 must match (FixtureError otherwise).
    """
    path = Path(path)
    if manifest is None and (path.parent / MANIFEST).exists() and path.name != MANIFEST:
        manifest = read_manifest(path.parent)
    if path.is_dir():
        raise FixtureError(path, "a directory, expected an .npz case file")
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
    return split(read_arrays(data, path), name, path)


def load_all(directory=DEFAULT_DIR, errors: list | None = None) -> list:
    """[(name, case, expected)] for every manifest entry, sorted by name; no orphans allowed.

    The first bad file (or manifest) raises its FixtureError; with ``errors`` a list, each
    FixtureError is appended to it instead and every good file is still loaded.
    """

    def fail(error: FixtureError) -> None:
        if errors is None:
            raise error
        errors.append(error)

    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except FixtureError as e:
        fail(e)
        return []
    files = manifest["files"]
    for orphan in sorted(p.name for p in directory.glob("*.npz") if p.name not in files):
        fail(FixtureError(directory / orphan, "orphaned: not in the manifest"))
    out = []
    for fname in sorted(files):
        try:
            case, expected = load(directory / fname, manifest)
        except FixtureError as e:
            fail(e)
            continue
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
    return sorted(
        k
        for k in set(fresh) | set(disk)
        if k not in fresh or k not in disk or not _same(np.asarray(fresh[k]), np.asarray(disk[k]))
    )


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
        problems.append(
            f"{directory / MANIFEST}: stale versions (spec {manifest.get('spec_version')}, "
            f"generator {manifest.get('generator_version')}; now {SPEC_VERSION}, {GENERATOR_VERSION})"
        )
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


def _current(path: Path, data: bytes, listed: dict) -> bytes | None:
    """The bytes of ``path`` if it may stay: listed with its sha256 and today's spec and
    generator versions, readable, and within RTOL / ATOL of the fresh ``data``; else None."""
    entry = listed.get(path.name)
    if (
        entry is None
        or (entry.get("spec_version"), entry.get("generator_version")) != (SPEC_VERSION, GENERATOR_VERSION)
        or not path.is_file()
    ):
        return None
    try:
        disk = read_arrays_checked(path, listed)
    except FixtureError:
        return None
    if stale_keys(read_arrays(data, path), disk):
        return None
    return path.read_bytes()


def write(directory, built: dict, force: bool = False) -> int:
    """Write the built fixtures that are new, missing or stale, and the manifest; remove
    .npz files no case writes; return how many fixtures were written.

    A file whose stored values are within RTOL / ATOL of the fresh ones (what ``--check``
    accepts) is kept byte for byte, so that regenerating on another NumPy or libm changes
    nothing; ``force`` rewrites every file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        listed = {} if force else read_manifest(directory)["files"]
    except FixtureError:
        listed = {}
    for p in directory.glob("*.npz"):
        if p.name not in built:
            p.unlink()
    entries, written = {}, 0
    for fname, (case, data) in built.items():
        path = directory / fname
        kept = None if force else _current(path, data, listed)
        if kept is None:
            path.write_bytes(data)
            written += 1
        entries[fname] = _entry(case, data if kept is None else kept)
    text = manifest_text(entries)
    manifest = directory / MANIFEST
    if not manifest.is_file() or manifest.read_text() != text:
        manifest.write_text(text)
    return written


def regen(directory=DEFAULT_DIR, check: bool = False, cases=None, evaluator=None, out=None, force: bool = False) -> int:
    """Regenerate the fixtures in ``directory`` (or with ``check`` only compare); exit status.

    Regenerating rewrites only what is new, missing or stale (``force``: everything).
    ``cases`` / ``evaluator`` default to the corpus and the reference (tests pass small ones).
    Problems go to ``out`` (default sys.stderr), one line each.
    """
    import sys

    out = sys.stderr if out is None else out
    built = build(cases, evaluator)
    if not check:
        written = write(directory, built, force)
        print(
            f"wrote {written} of {len(built)} fixtures to {directory} "
            f"({len(built) - written} unchanged within rtol {RTOL:g}, atol {ATOL:g})",
            file=out,
        )
        return 0
    problems = find_problems(directory, built)
    for line in problems:
        print(line, file=out)
    print(f"{len(built)} fixtures checked in {directory}: {len(problems)} problem(s)", file=out)
    return 1 if problems else 0
