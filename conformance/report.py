"""Tolerance reports: what failed and how to replay it, and how close every implementation
came to the reference, per quantity.

The pytest plugin calls ``add(Record.of(check, ...))`` once per comparison (``add`` also
takes a dict of a Record's fields). Records are aggregated at once per (impl, device,
dtype, family, quantity) into an ``Entry``. Promised outputs an implementation does not
return are listed per (impl, device, dtype, family) under "not returned"
(``add_missing``, called by conformance/suite/test_coverage.py). The pytest outcome of every test and every failure (a
``Failure``: message and repro command) are counted per (impl, device, dtype, family),
read from the test report's ``user_properties`` ("impl", "device", "dtype", "family": set
at collection by conformance/plugin.py); tests without them count under "other tests".

``ReportPlugin`` merges the aggregates of pytest-xdist workers and writes
``<dir>/<run>.json``, ``.md`` and ``.html`` plus ``<dir>/latest.*``, each atomically
(temporary file + os.replace), under a run id claimed by creating ``<run>.json``
exclusively (``reserve``). The HTML and Markdown show, in this order: the summary matrix
(implementation x device x dtype x loss), every failure with its message and repro
command, the promised outputs not returned, then the per-quantity detail (collapsed per
implementation in the HTML). docs/report.md documents the JSON's fields.

Everything inside is sorted and free of timings and worker ids, so a complete run with and
without ``-n auto`` gives the same content; only the file name and one header line of the
.md and .html carry the run's timestamp. A run that lost results (crashed tests, tests never
run, workers whose records did not arrive) has an "incomplete" section naming them (worker
ids included).

Error histogram: ``ratio`` = |err| / allowed per element, counted in the bins BINS
(upper bounds BIN_UPPER, right-closed: "<=1" passes, "<=10" and ">10" fail).
Headroom = 1 - ratio: 1 is exact, 0 is at the tolerance, below 0 fails.
"""

from __future__ import annotations

import functools
import html
import json
import math
import os
import re
import secrets
import textwrap
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from conformance.families import NAMES

BIN_UPPER = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, math.inf)
BINS = ("0", "<=1e-8", "<=1e-7", "<=1e-6", "<=1e-5", "<=1e-4", "<=1e-3", "<=1e-2", "<=1e-1", "<=1", "<=10", ">10")
PASS_BINS = 10  # the first PASS_BINS bins hold passing elements (ratio <= 1)
MAX_EXAMPLES = 5  # failing (test, case, message) kept per quantity
MAX_FAILURES = 50  # failed pytest reports kept per run
MAX_TEXT = 4000  # characters kept of a failure's text
KEY_FIELDS = ("impl", "device", "dtype", "family", "quantity")
MISSING_FIELDS = ("impl", "device", "dtype", "family")
GROUP_FIELDS = ("impl", "device", "dtype", "family")  # one row of the summary matrix
OUTCOME_COLUMNS = {
    "passed": ("passed", "xpassed"),
    "failed": ("failed", "error"),
    "xfailed": ("xfailed",),
    "skipped": ("skipped",),
}  # matrix column -> pytest outcomes
FORMAT_VERSION = 2  # 2: typed records; "matrix" added; failures carry message, repro, impl, device, dtype, family
WORKER_KEY = "conformance_report"
REPRO = re.compile(r"python -m conformance repro\s.*")  # the replay command in a failure's text


class RecordError(ValueError):
    """A record handed to ``add`` (or a report read back) with a missing or malformed field;
    the message names the field and the value."""


# ---------------------------------------------------------------- histogram


def histograms(errors: list) -> np.ndarray:
    """(len(errors), len(BINS)) int counts: row k counts ``errors[k]`` (|err| / allowed, any
    shape; NaN counts as > 10) per bin of BINS. One pass over all of them."""
    arrays = [np.abs(np.asarray(e, dtype=np.float64).ravel()) for e in errors]
    e = np.concatenate(arrays) if arrays else np.zeros(0)
    idx = np.minimum(np.searchsorted(np.asarray(BIN_UPPER), np.nan_to_num(e, nan=math.inf), side="left"), len(BINS) - 1)
    row = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])
    return np.bincount(row * len(BINS) + idx, minlength=len(arrays) * len(BINS)).reshape(len(arrays), len(BINS))


def histogram(errors) -> list:
    """Counts of ``errors`` (|err| / allowed, any shape; NaN counts as > 10) per bin of BINS."""
    return histograms([errors])[0].tolist()


# ---------------------------------------------------------------- typed records


def _field(rec: dict, name: str, kind, default=None):
    """``rec[name]`` converted by ``kind`` (str, int, float, bool); ``default`` when absent
    (RecordError when absent and ``default`` is None, or when it does not convert)."""
    if name not in rec or rec[name] is None:
        if default is None:
            raise RecordError(f"report record: field {name!r} is missing (fields given: {', '.join(sorted(rec))})")
        return default
    value = rec[name]
    try:
        if kind is bool:
            return bool(value)
        return kind(value)
    except (TypeError, ValueError):
        raise RecordError(f"report record: field {name!r} = {value!r}: not a {kind.__name__}") from None


@dataclass(frozen=True)
class Record:
    """One comparison of one quantity on one case, as the engine hands it to ``add``."""

    impl: str  # adapter name
    device: str
    dtype: str  # the implementation's dtype: float64, float32, float16, bfloat16
    family: str  # a Family name of conformance/families ("yolo", "ssd", ...)
    quantity: str  # output key, e.g. "layer0.tx", "loss_c"
    kind: str  # "continuous" or "discrete"
    n: int  # elements compared
    max_abs: float  # max |actual - expected|
    max_rel: float  # max |actual - expected| / |expected|
    max_ulp: float  # max error in units of the implementation dtype's spacing
    atol: float  # allowed absolute error at the worst element
    rtol: float  # allowed relative error at the worst element
    ratio: float  # max |err| / allowed (<= 1 passes; NaN fails)
    ties: int  # decisions accepted as (near-)ties
    passed: bool
    test: str  # the test that compared, e.g. "test_property[torch-cpu-float64-yolo-plain]"
    case: str  # fixture name or the generated case's fingerprint prefix
    message: str  # the mismatch message (failures)
    hist: tuple  # len(BINS) counts of |err| / allowed per bin (see ``histogram``)

    @classmethod
    def of(cls, check, hist=None, **labels) -> "Record":
        """The Record of a checks.Check: its fields of the same names, ``hist`` (default: its
        errors' histogram); ``labels``: impl, device, dtype, family, test, case."""
        shared = {name: getattr(check, name) for name in _shared_fields(type(check))}
        shared["message"] = shared["message"][:MAX_TEXT]
        return cls(**shared, **labels, hist=tuple(histogram(check.errors) if hist is None else hist))

    @classmethod
    def from_dict(cls, rec: dict) -> "Record":
        """The Record of the engine's dict; RecordError naming a missing or malformed field.
        impl, device, dtype, family and quantity are required, the rest default to 0 / ""
        / passed."""
        if not isinstance(rec, dict):
            raise RecordError(f"report record: expected a dict, got {type(rec).__name__}")
        hist = rec.get("hist") or [0] * len(BINS)
        try:
            hist = tuple(int(c) for c in hist)
        except (TypeError, ValueError):
            raise RecordError(f"report record: field 'hist' = {hist!r}: not a sequence of counts") from None
        if len(hist) != len(BINS):
            raise RecordError(f"report record: field 'hist' has {len(hist)} bins, report.BINS has {len(BINS)}")
        return cls(
            **{k: _field(rec, k, str) for k in KEY_FIELDS},
            kind=_field(rec, "kind", str, ""),
            n=_field(rec, "n", int, 0),
            **{k: _field(rec, k, float, 0.0) for k in ("max_abs", "max_rel", "max_ulp", "atol", "rtol", "ratio")},
            ties=_field(rec, "ties", int, 0),
            passed=_field(rec, "passed", bool, True),
            test=_field(rec, "test", str, ""),
            case=_field(rec, "case", str, ""),
            message=_field(rec, "message", str, "")[:MAX_TEXT],
            hist=hist,
        )


@functools.cache
def _shared_fields(check_type: type) -> tuple:
    """The names of Record's fields that the dataclass ``check_type`` (checks.Check) also has."""
    theirs = {f.name for f in fields(check_type)}
    return tuple(f.name for f in fields(Record) if f.name in theirs)


def _nanmax(a: float, b: float) -> float:
    """max treating NaN as the largest value (so that the result does not depend on order)."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def _order(x: float) -> float:
    return math.inf if math.isnan(x) else x


@dataclass(frozen=True)
class Worst:
    """The comparison with the largest ratio of one quantity."""

    ratio: float
    atol: float
    rtol: float
    test: str
    case: str

    def order(self) -> tuple:
        return (_order(self.ratio), self.test, self.case, self.atol, self.rtol)


@dataclass(frozen=True)
class Example:
    """One failing comparison of a quantity."""

    test: str
    case: str
    message: str


@dataclass(frozen=True)
class Entry:
    """The aggregate of every comparison of one (impl, device, dtype, family, quantity)."""

    impl: str
    device: str
    dtype: str
    family: str
    quantity: str
    kind: str  # the kinds seen, sorted, comma-separated
    cases: int  # comparisons aggregated
    elements: int  # elements compared, all comparisons together
    max_abs: float
    max_rel: float
    max_ulp: float
    max_ratio: float  # max |err| / allowed over every element (NaN: some element was NaN)
    worst: Worst
    ties: int
    failures: int  # failed comparisons
    examples: tuple  # of Example, sorted, at most MAX_EXAMPLES
    hist: tuple  # len(BINS) counts

    @property
    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in KEY_FIELDS)

    @property
    def headroom(self) -> float:
        return 1.0 - self.max_ratio

    @classmethod
    def of(cls, r: Record) -> "Entry":
        return cls(
            **{k: getattr(r, k) for k in KEY_FIELDS},
            kind=r.kind,
            cases=1,
            elements=r.n,
            max_abs=r.max_abs,
            max_rel=r.max_rel,
            max_ulp=r.max_ulp,
            max_ratio=r.ratio,
            worst=Worst(r.ratio, r.atol, r.rtol, r.test, r.case),
            ties=r.ties,
            failures=0 if r.passed else 1,
            examples=() if r.passed else (Example(r.test, r.case, r.message),),
            hist=r.hist,
        )

    def merge(self, b: "Entry") -> "Entry":
        """Two aggregates of the same key combined; commutative and associative."""
        # each side's kind and examples are already sorted, unique and cut to MAX_EXAMPLES
        kind = self.kind
        if b.kind != kind:
            kind = ",".join(sorted(set(filter(None, f"{self.kind},{b.kind}".split(",")))))
        examples = self.examples or b.examples
        if self.examples and b.examples:
            examples = sorted(set(self.examples + b.examples), key=lambda e: (e.test, e.case, e.message))
        return Entry(
            **{k: getattr(self, k) for k in KEY_FIELDS},
            kind=kind,
            cases=self.cases + b.cases,
            elements=self.elements + b.elements,
            **{k: _nanmax(getattr(self, k), getattr(b, k)) for k in ("max_abs", "max_rel", "max_ulp", "max_ratio")},
            worst=max(self.worst, b.worst, key=Worst.order),
            ties=self.ties + b.ties,
            failures=self.failures + b.failures,
            examples=tuple(examples[:MAX_EXAMPLES]),
            hist=tuple(x + y for x, y in zip(self.hist, b.hist)),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["examples"] = [asdict(e) for e in self.examples]
        d["hist"] = list(self.hist)
        d["headroom"] = self.headroom
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Entry":
        try:
            return cls(
                **{f.name: d[f.name] for f in fields(cls) if f.name not in ("worst", "examples", "hist")},
                worst=Worst(**d["worst"]),
                examples=tuple(Example(**e) for e in d["examples"]),
                hist=tuple(d["hist"]),
            )
        except (KeyError, TypeError) as exc:
            raise RecordError(f"report aggregate {d.get('quantity', '?')!r}: {exc}") from None


def failure_message(text: str) -> str:
    """The message of a pytest failure: its "E " lines without that prefix (dedented), else
    the whole text (``pytest.fail(..., pytrace=False)``); at most MAX_TEXT characters."""
    lines = [ln[1:] for ln in str(text).splitlines() if ln == "E" or ln.startswith("E ")]
    message = textwrap.dedent("\n".join(lines)).strip() if lines else str(text).strip()
    return message if len(message) <= MAX_TEXT else message[: MAX_TEXT - 4] + "\n..."


def repro_command(text: str) -> str:
    """The last "python -m conformance repro ..." command in a failure's text, "" if none."""
    found = REPRO.findall(str(text))
    return found[-1].strip() if found else ""


@dataclass(frozen=True)
class Failure:
    """One failed test phase (pytest report)."""

    test: str  # pytest node id
    when: str  # "setup", "call" or "teardown"
    text: str  # the report's assertion lines ("E ...") or its tail, see ``trim``
    message: str = ""  # the failure's message, see ``failure_message``
    repro: str = ""  # the command that replays the failing case, "" if the message has none
    impl: str = ""  # from the test's user_properties; "" for tests of no implementation
    device: str = ""
    dtype: str = ""
    family: str = ""

    @classmethod
    def of(cls, test: str, when: str, text: str, properties: dict | None = None) -> "Failure":
        props = properties or {}
        return cls(
            test=test,
            when=when,
            text=trim(text),
            message=failure_message(text),
            repro=repro_command(text),
            **{k: str(props.get(k, "")) for k in GROUP_FIELDS},
        )

    def order(self) -> tuple:
        return (self.impl, self.device, self.dtype, self.family, self.test, self.when, self.text)


@dataclass(frozen=True)
class Row:
    """One row of the summary matrix: an implementation on one device in one dtype, one loss.
    impl, device, dtype and family are "" for tests of no implementation."""

    impl: str
    device: str
    dtype: str
    family: str
    outcomes: dict  # pytest outcome (passed, failed, error, skipped, xfailed, xpassed) -> tests
    passed: int  # passed + xpassed
    failed: int  # failed + error
    xfailed: int
    skipped: int
    not_returned: int  # promised outputs not returned
    limitations: str  # the spec rules the implementation declares it does not follow, comma-separated
    comparisons: int
    worst_ratio: float | None  # max |err| / allowed over every compared element; None: nothing compared
    worst_quantity: str  # the quantity with the worst ratio, "" if none
    headroom: float | None  # 1 - worst_ratio (below 0: a comparison failed); None: nothing compared


def _outcome_counts(outcomes: dict) -> dict:
    return {col: sum(outcomes.get(o, 0) for o in names) for col, names in OUTCOME_COLUMNS.items()}


# ---------------------------------------------------------------- aggregation


class Aggregate:
    """Per-key aggregates, pytest failure reports and outcome counts of one process."""

    def __init__(self):
        self.entries: dict = {}  # KEY_FIELDS tuple -> Entry
        self.failures: list = []  # Failure, sorted (Failure.order), at most MAX_FAILURES
        self.failures_total = 0
        self.outcomes: dict = {}  # GROUP_FIELDS tuple ("" for other tests) -> {outcome: tests}
        self.missing: dict = {}  # (impl, device, dtype, family) -> set of keys not returned
        self.limitations: dict = {}  # (impl, device, dtype) -> declared rule ids, comma-separated

    def add(self, rec: dict | Record) -> None:
        entry = Entry.of(rec if isinstance(rec, Record) else Record.from_dict(rec))
        self._put(entry)

    def _put(self, entry: Entry) -> None:
        old = self.entries.get(entry.key)
        self.entries[entry.key] = entry if old is None else old.merge(entry)

    def add_failure(self, test: str, when: str, text: str, properties: dict | None = None) -> None:
        """A failed test phase; ``properties``: the test's user_properties as a dict."""
        self._set_failures(self.failures + [Failure.of(test, when, text, properties)])
        self.failures_total += 1

    def add_missing(self, impl: str, device: str, dtype: str, family: str, key: str) -> None:
        self.missing.setdefault((impl, device, dtype, family), set()).add(key)

    def add_outcome(self, outcome: str, properties: dict | None = None) -> None:
        group = tuple(str((properties or {}).get(k, "")) for k in GROUP_FIELDS)
        if (properties or {}).get("limitations"):
            self.limitations[group[:3]] = str(properties["limitations"])
        counts = self.outcomes.setdefault(group, {})
        counts[outcome] = counts.get(outcome, 0) + 1

    def _set_failures(self, failures: list) -> None:
        unique = {f.order(): f for f in failures}
        self.failures = [unique[k] for k in sorted(unique)][:MAX_FAILURES]

    def merge(self, other: "Aggregate") -> None:
        for entry in other.entries.values():
            self._put(entry)
        self._set_failures(self.failures + other.failures)
        self.failures_total += other.failures_total
        for group, counts in other.outcomes.items():
            mine = self.outcomes.setdefault(group, {})
            for k, v in counts.items():
                mine[k] = mine.get(k, 0) + v
        for k, keys in other.missing.items():
            self.missing.setdefault(k, set()).update(keys)
        self.limitations.update(other.limitations)

    def matrix(self) -> list:
        """The summary matrix: a Row per (impl, device, dtype, family) seen, sorted."""
        groups = set(self.outcomes) | set(self.missing) | {k[:4] for k in self.entries}
        rows = []
        for g in sorted(groups):
            entries = [e for k, e in self.entries.items() if k[:4] == g]
            worst = max(entries, key=lambda e: (_order(e.max_ratio), e.quantity), default=None)
            outcomes = dict(sorted(self.outcomes.get(g, {}).items()))
            rows.append(
                Row(
                    *g,
                    outcomes=outcomes,
                    **_outcome_counts(outcomes),
                    not_returned=len(self.missing.get(g, ())),
                    limitations=self.limitations.get(g[:3], ""),
                    comparisons=sum(e.cases for e in entries),
                    worst_ratio=worst.max_ratio if worst else None,
                    worst_quantity=worst.quantity if worst else "",
                    headroom=worst.headroom if worst else None,
                )
            )
        return rows

    def to_dict(self) -> dict:
        """Plain, sorted, JSON-ready data (non-finite floats as "inf", "-inf", "nan");
        docs/report.md documents the fields."""
        entries = [self.entries[k] for k in sorted(self.entries)]
        totals: dict = {}
        for counts in self.outcomes.values():
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
        doc = {
            "format": FORMAT_VERSION,
            "bins": list(BINS),
            "bin_upper": list(BIN_UPPER),
            "pass_bins": PASS_BINS,
            "summary": {
                "quantities": len(entries),
                "comparisons": sum(e.cases for e in entries),
                "failed_comparisons": sum(e.failures for e in entries),
                "ties": sum(e.ties for e in entries),
                "failed_tests": self.failures_total,
                "not_returned": sum(len(v) for v in self.missing.values()),
                "outcomes": dict(sorted(totals.items())),
            },
            "matrix": [asdict(r) for r in self.matrix()],
            "aggregates": [e.to_dict() for e in entries],
            "failures": [asdict(f) for f in self.failures],
            "not_returned": [dict(zip(MISSING_FIELDS, k), keys=sorted(self.missing[k])) for k in sorted(self.missing)],
        }
        return _jsonable(doc)

    @classmethod
    def from_dict(cls, doc: dict) -> "Aggregate":
        doc = _from_jsonable(doc)
        agg = cls()
        for e in doc.get("aggregates", []):
            agg._put(Entry.from_dict(e))
        agg.failures = [Failure(**f) for f in doc.get("failures", [])]
        agg.failures_total = int(doc.get("summary", {}).get("failed_tests", 0))
        for row in doc.get("matrix", []):
            if row.get("outcomes"):
                agg.outcomes[tuple(row[k] for k in GROUP_FIELDS)] = dict(row["outcomes"])
            if row.get("limitations"):
                agg.limitations[tuple(row[k] for k in GROUP_FIELDS[:3])] = row["limitations"]
        for m in doc.get("not_returned", []):
            agg.missing[tuple(m[k] for k in MISSING_FIELDS)] = set(m["keys"])
        return agg


def trim(text: str) -> str:
    """The assertion lines ("E ...") of a pytest failure, else its tail; at most MAX_TEXT chars."""
    lines = str(text).splitlines()
    errors = [ln for ln in lines if ln.startswith("E ")]
    tail = lines[-1:] if lines and not lines[-1].startswith("E ") else []
    kept = "\n".join((errors + tail) if errors else lines[-30:])
    return kept if len(kept) <= MAX_TEXT else kept[: MAX_TEXT - 4] + "\n..."


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


_FLOAT_FIELDS = {"max_abs", "max_rel", "max_ulp", "max_ratio", "ratio", "atol", "rtol", "headroom", "worst_ratio"}


def _from_jsonable(x, key=None):
    if isinstance(x, dict):
        return {k: _from_jsonable(v, k) for k, v in x.items()}
    if isinstance(x, list):
        return [float(v) if key == "bin_upper" else _from_jsonable(v) for v in x]
    if key in _FLOAT_FIELDS and isinstance(x, str):
        return float(x)
    return x


def dumps(doc: dict) -> str:
    """Stable JSON text: sorted keys, two-space indent, strict (no NaN literals)."""
    return json.dumps(doc, sort_keys=True, indent=2, allow_nan=False) + "\n"


# ---------------------------------------------------------------- the process's store

_STORE = Aggregate()


def add(rec: dict | Record) -> None:
    """Aggregate one comparison: a Record (``Record.of(check, ...)``), or a dict of its fields
    (impl, device, dtype, family, quantity required; kind, n, max_abs, max_rel, max_ulp, atol,
    rtol, ratio, ties, passed, test, case, message, hist optional); RecordError naming a
    missing or bad field."""
    _STORE.add(rec)


def add_missing(impl: str, device: str, dtype: str, family: str, key: str) -> None:
    """Record that ``impl`` on ``device`` in ``dtype`` does not return the promised ``key``."""
    _STORE.add_missing(impl, device, dtype, family, key)


def store() -> Aggregate:
    return _STORE


def reset() -> None:
    global _STORE
    _STORE = Aggregate()


_SHARD = re.compile(r"([1-9]\d*)/([1-9]\d*)")  # a report's "shard": K/N


def _shards_missing(named: list) -> list:
    """The shards ("K/N") absent from ``named``'s reports, each labelled by its "shard" field
    (``--shard K/N``); [] when no report is a shard's. RecordError naming a malformed
    label, a shard given twice, reports of different N, or shard reports mixed with
    unsharded ones."""
    seen: dict = {}  # "K/N" (None: unsharded) -> name of the report
    splits = set()  # the N of every shard report
    for name, doc in named:
        shard = doc.get("shard")
        if shard is not None:
            m = _SHARD.fullmatch(str(shard))
            if not m or int(m[1]) > int(m[2]):
                raise RecordError(f"{name}: field 'shard' = {shard!r}: not K/N with 1 <= K <= N")
            splits.add(int(m[2]))
            if shard in seen:
                raise RecordError(f"{name}: shard {shard} is given twice (also {seen[shard]}): its counts would double")
        seen[shard] = name
    sharded = sorted(s for s in seen if s is not None)
    if sharded and None in seen:
        raise RecordError(f"{seen[None]}: not a shard's report, merged with the shard reports {', '.join(sharded)}")
    if len(splits) > 1:
        raise RecordError(f"shards of different splits: {', '.join(sharded)}")
    n = splits.pop() if splits else 0
    return [f"{k}/{n}" for k in range(1, n + 1) if f"{k}/{n}" not in seen]


def merge_reports(named: list) -> dict:
    """One report of several JSON reports, given as (name, doc) pairs: the reports of the
    shards of a run (``--shard K/N``) give the document of one unsharded run. Aggregates,
    failures, outcome counts and outputs not returned merge as xdist workers' do; the
    "incomplete" sections are joined, each reason and lost worker prefixed with its
    report's name, and a missing shard makes the merge incomplete. RecordError naming a
    report of another format or bins, or a shard given twice (see ``_shards_missing``)."""
    total, reasons, crashed, not_run, lost = Aggregate(), [], set(), set(), []
    for name, doc in named:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION or doc.get("bins") != list(BINS):
            raise RecordError(f"{name}: not a conformance report of format {FORMAT_VERSION} with bins {' '.join(BINS)}")
    missing = _shards_missing(named)
    if missing:
        reasons.append(f"shard{'s' * (len(missing) > 1)} {', '.join(missing)} not merged: their tests are not counted")
    for name, doc in named:
        total.merge(Aggregate.from_dict(doc))
        part = doc.get("incomplete") or {}
        if part:
            reasons.append(f"{name}: {part.get('reason') or 'incomplete'}")
        crashed.update(part.get("crashed", ()))
        not_run.update(part.get("not_run", ()))
        lost += [dict(w, worker=f"{name}:{w['worker']}") for w in part.get("workers_lost", ())]
    doc = total.to_dict()
    if reasons:
        doc["incomplete"] = {
            "reason": "; ".join(reasons),
            "crashed": sorted(crashed),
            "not_run": sorted(not_run),
            "workers_lost": lost,
        }
    return doc


# ---------------------------------------------------------------- writers


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def _num(x) -> float:
    """A number of the JSON-ready doc as a float ("nan", "inf", "-inf" included)."""
    return float(x)


def _group_name(row: dict) -> str:
    """ "torch cpu float64 yolo", or "other tests" for tests of no implementation."""
    return " ".join(row[k] for k in GROUP_FIELDS if row.get(k)) or "other tests"


_MATRIX_COLUMNS = (
    "impl",
    "device",
    "dtype",
    "family",
    "passed",
    "failed",
    "xfailed",
    "skipped",
    "not_returned",
    "headroom",
    "worst_quantity",
    "limitations",
)
_MATRIX_HEADINGS = (
    "implementation",
    "device",
    "dtype",
    "loss",
    "passed",
    "failed",
    "xfailed",
    "skipped",
    "not returned",
    "worst headroom",
    "worst quantity",
    "declared limitations",
)
_DETAIL_COLUMNS = (
    "quantity",
    "kind",
    "cases",
    "elements",
    "max_abs",
    "max_rel",
    "max_ulp",
    "max_ratio",
    "headroom",
    "ties",
    "failures",
)
_HEADROOM_NOTE = (
    "worst headroom = 1 − worst ratio, ratio = |err| / allowed over every compared element: "
    "1 is exact, 0 is at the tolerance, below 0 fails; — where nothing was compared"
)
_SPARK = "·▁▂▃▄▅▆▇█"


def _spark(hist: list) -> str:
    top = max(max(hist), 1)
    return "".join(_SPARK[0 if c == 0 else 1 + int(7 * math.log1p(c) / math.log1p(top))] for c in hist)


def _bins_text(doc: dict, hist: list) -> str:
    """The non-empty bins of ``hist``: "0:12 <=1e-8:3 >10:1"."""
    return " ".join(f"{b}:{c}" for b, c in zip(doc["bins"], hist) if c) or "empty"


def _detail_groups(doc: dict):
    """(impl, [(family, device, dtype, [aggregate, ...]), ...]) per implementation, sorted."""
    for impl in sorted({e["impl"] for e in doc["aggregates"]}):
        mine = [e for e in doc["aggregates"] if e["impl"] == impl]
        keys = sorted({(e["family"], e["device"], e["dtype"]) for e in mine})
        yield impl, [(*k, [e for e in mine if (e["family"], e["device"], e["dtype"]) == k]) for k in keys]


def _totals_line(doc: dict) -> str:
    s = doc["summary"]
    outcomes = ", ".join(f"{k} {v}" for k, v in s["outcomes"].items()) or "none"
    return (
        f"Tests: {outcomes}. {s['comparisons']} comparisons of {s['quantities']} quantities, "
        f"{s['failed_comparisons']} failed, {s['ties']} ties accepted; "
        f"promised outputs not returned: {s.get('not_returned', 0)}."
    )


def _verdict(doc: dict) -> tuple:
    """(passed: bool, "7 tests failed" / "every test passed" / ...): the run at a glance."""
    s = doc["summary"]
    failed = s["failed_tests"]
    if failed:
        return False, f"{failed} test{'s' if failed > 1 else ''} failed"
    if "incomplete" in doc:
        return False, "incomplete: results are missing"
    if not s["outcomes"].get("passed"):
        return False, "no test passed"
    return True, "every test passed" if not s["outcomes"].get("xfailed") else "passed (with expected failures)"


def to_markdown(doc: dict, header: str = "") -> str:
    out = ["# Conformance report", ""]
    if header:
        out += [header, ""]
    if "incomplete" in doc:
        out += ["## INCOMPLETE", ""] + [f"- {line}" for line in incomplete_lines(doc["incomplete"])] + [""]
    out += [
        f"**{_verdict(doc)[1]}.** {_totals_line(doc)}",
        "",
        "## Summary",
        "",
        "| " + " | ".join(_MATRIX_HEADINGS) + " |",
        "|" + "---|" * len(_MATRIX_HEADINGS),
    ]
    for row in doc.get("matrix", []):
        out.append(
            "| " + " | ".join(_fmt(row[c]) if c != "impl" or row[c] else "other tests" for c in _MATRIX_COLUMNS) + " |"
        )
    out += ["", _HEADROOM_NOTE + ".", ""]
    failures, total = doc["failures"], doc["summary"]["failed_tests"]
    out += [f"## Failures ({total})", ""]
    if not failures:
        out += ["None.", ""]
    for f in failures:
        out += [f"### {_group_name(f)}: {f['test']}" + (f" ({f['when']})" if f["when"] != "call" else ""), ""]
        if f.get("repro"):
            out += ["```sh", f["repro"], "```", ""]
        out += ["```", f.get("message") or f["text"], "```", ""]
    if total > len(failures):
        out += [f"{total - len(failures)} more failed tests not listed (at most {MAX_FAILURES} are kept).", ""]
    out += ["## Not returned", ""]
    if doc.get("not_returned"):
        out += ["Promised outputs these implementations do not return: not compared.", ""]
        for m in doc["not_returned"]:
            out.append(f"- {m['impl']} {m['device']} {m['dtype']} {m['family']}: {', '.join(m['keys'])}")
    else:
        out.append("Every implementation returns every promised output.")
    out += [
        "",
        "## Detail",
        "",
        "ratio = max |err| / allowed (<= 1 passes), headroom = 1 - ratio. Histogram bins of "
        "|err| / allowed: " + " ".join(f"`{b}`" for b in doc["bins"]),
        "",
    ]
    for impl, groups in _detail_groups(doc):
        for family, device, dtype, entries in groups:
            out += [
                f"### {impl} {device} {dtype} {family}",
                "",
                "| " + " | ".join(_DETAIL_COLUMNS) + " | histogram |",
                "|" + "---|" * (len(_DETAIL_COLUMNS) + 1),
            ]
            out += [
                "| " + " | ".join(_fmt(e[c]) for c in _DETAIL_COLUMNS) + f" | `{_spark(e['hist'])}` |" for e in entries
            ]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body{font:14px/1.35 system-ui,sans-serif;margin:12px 20px;color:#222}
h1{font-size:20px;margin:0 0 2px}h2{font-size:16px;margin:14px 0 6px}h3{font-size:14px;margin:0 0 4px}
p{margin:4px 0}.note{color:#666;font-size:12px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:1px 6px;font-size:13px;text-align:right}
th{background:#f3f3f3}#summary td:nth-child(-n+3),#coverage td,#coverage th,
.detail td:nth-child(-n+2),.detail th:nth-child(-n+2){text-align:left}
#summary th{text-align:center}
.first{border-left:2px solid #999}small{color:#666}
.bad{background:#f8d7d3;color:#8b1a10;font-weight:bold}.good{color:#1e6b2e}.zero{color:#bbb}
.banner{background:#c0392b;color:#fff;padding:4px 8px;font-weight:bold}
.failure{border-left:4px solid #c0392b;background:#fdf3f2;padding:4px 8px;margin:6px 0}
.repro{display:flex;gap:6px;align-items:center;margin:2px 0 4px}
.repro code{user-select:all;background:#fff;border:1px solid #ccc;padding:2px 6px;font-size:12px;
white-space:pre-wrap;flex:1}.repro code span{white-space:nowrap}
pre{margin:0;background:#fff;padding:4px 6px;font-size:12px;max-height:12em;overflow:auto}
details{margin:4px 0}summary{cursor:pointer;font-weight:bold}
tr.fail td{background:#fde2e0}h4{margin:8px 0 2px;font-size:13px}
.h{font-family:monospace;letter-spacing:-1px;color:#3a7d44}.h b{color:#c0392b;font-weight:normal}
""".strip()

_COPY_JS = (
    "document.addEventListener('click',e=>{const b=e.target.closest('button.copy');"
    "if(b)navigator.clipboard.writeText(b.nextElementSibling.textContent)})"
)


_FAMILY_COLUMNS = ("passed", "failed", "xfailed", "skipped", "not_returned", "headroom")
_FAMILY_HEADINGS = ("passed", "failed", "xfailed", "skipped", "not returned", "worst headroom")


def _cell(row: dict | None, column: str) -> str:
    """One td of the summary matrix; an empty one where ``row`` is None (no such tests)."""
    first = ' class="first"' if column == _FAMILY_COLUMNS[0] else ""
    if row is None:
        return f"<td{first}></td>"
    value = row[column]
    if column == "headroom":
        bad = value is not None and not _num(value) >= 0  # NaN fails
        worst = f" <small>{html.escape(row['worst_quantity'])}</small>" if row["worst_quantity"] else ""
        return f'<td class="{"bad" if bad else ""}">{html.escape(_fmt(value))}{worst}</td>'
    style = {"failed": "bad", "passed": "good"}.get(column, "") if value else "zero"
    if first:
        style += " first"
    return f'<td class="{style.strip()}">{value}</td>'


def _families(doc: dict) -> list:
    """The losses of the summary matrix: the registry's order, then any other (sorted)."""
    seen = {r["family"] for r in doc.get("matrix", []) if r["impl"]}
    return [f for f in NAMES if f in seen] + sorted(seen - set(NAMES))


def _summary_html(doc: dict) -> list:
    """The summary matrix: a row per implementation, device and dtype, a column group per loss."""
    e_ = html.escape
    families = _families(doc)
    rows = {}
    for r in doc.get("matrix", []):
        if r["impl"]:
            rows.setdefault((r["impl"], r["device"], r["dtype"]), {})[r["family"]] = r
    out = [
        '<section id="summary"><h2>Summary</h2><table><thead><tr><th rowspan="2">implementation</th>'
        '<th rowspan="2">device</th><th rowspan="2">dtype</th>'
        + "".join(f'<th class="first" colspan="{len(_FAMILY_COLUMNS)}">{e_(f.upper())} loss</th>' for f in families)
        + "</tr><tr>"
        + "".join(
            f"<th{' class=first' if i == 0 else ''}>{h}</th>" for _ in families for i, h in enumerate(_FAMILY_HEADINGS)
        )
        + "</tr></thead><tbody>"
    ]
    for (impl, device, dtype), by_family in rows.items():
        declared = next((r["limitations"] for r in by_family.values() if r.get("limitations")), "")
        note = f'<br><small title="spec rules it declares it does not follow">declares: {e_(declared)}</small>'
        out.append(
            f"<tr><td>{e_(impl)}{note if declared else ''}</td><td>{e_(device)}</td><td>{e_(dtype)}</td>"
            + "".join(_cell(by_family.get(f), c) for f in families for c in _FAMILY_COLUMNS)
            + "</tr>"
        )
    out.append("</tbody></table>")
    other = [r for r in doc.get("matrix", []) if not r["impl"]]
    if other:
        counts = ", ".join(f"{k} {v}" for k, v in other[0]["outcomes"].items()) or "none"
        out.append(
            f"<p>Tests of no single implementation (e.g. the reference reproducing the fixtures): {e_(counts)}.</p>"
        )
    out.append(f'<p class="note">{e_(_HEADROOM_NOTE)}; the worst quantity follows it.</p></section>')
    return out


def _words(command: str) -> str:
    """``command`` escaped, each space-separated word in a span that does not wrap (the line
    breaks between words, not after "--"); its text is ``command`` unchanged."""
    return " ".join(f"<span>{html.escape(w)}</span>" for w in command.split(" "))


def _html_spark(doc: dict, hist: list) -> str:
    """The histogram as one character per bin (log-scaled height), failing bins red."""
    s = _spark(hist)
    p = doc["pass_bins"]
    return f'<span class="h" title="{html.escape(_bins_text(doc, hist))}">{s[:p]}<b>{s[p:]}</b></span>'


def to_html(doc: dict, header: str = "") -> str:
    e_ = html.escape
    failures, total = doc["failures"], doc["summary"]["failed_tests"]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Conformance report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Conformance report</h1>",
    ]
    if "incomplete" in doc:
        out.append(
            '<p class="banner">INCOMPLETE: this report is missing results (<a style="color:#fff" '
            'href="#incomplete">why</a>)</p>'
        )
    ok, verdict = _verdict(doc)
    out.append(
        f'<p><b class="{"good" if ok else "bad"}">&nbsp;{e_(verdict)}&nbsp;</b> '
        f"{e_(header + '. ' if header else '')}{e_(_totals_line(doc))}</p>"
    )
    out += _summary_html(doc)
    out.append(f'<section id="failures"><h2>Failures ({total})</h2>')
    if not failures:
        out.append("<p>None.</p>")
    for f in failures:
        when = f" ({e_(f['when'])})" if f["when"] != "call" else ""
        out.append(f'<div class="failure"><h3>{e_(_group_name(f))}: <code>{e_(f["test"])}</code>{when}</h3>')
        if f.get("repro"):
            out.append(
                f'<div class="repro"><button class="copy" title="copy the command">copy</button>'
                f"<code>{_words(f['repro'])}</code></div>"
            )
        out.append(f"<pre>{e_(f.get('message') or f['text'])}</pre></div>")
    if total > len(failures):
        out.append(f"<p>{total - len(failures)} more failed tests not listed (at most {MAX_FAILURES} are kept).</p>")
    out.append('</section><section id="coverage"><h2>Not returned</h2>')
    if doc.get("not_returned"):
        out.append(
            "<p>Promised outputs these implementations do not return: not compared.</p><table><thead><tr>"
            "<th>implementation</th><th>device</th><th>dtype</th><th>loss</th><th>keys</th></tr></thead><tbody>"
        )
        for m in doc["not_returned"]:
            out.append(
                "<tr>"
                + "".join(f"<td>{e_(m[k])}</td>" for k in MISSING_FIELDS)
                + f"<td>{e_(', '.join(m['keys']))}</td></tr>"
            )
        out.append("</tbody></table>")
    else:
        out.append("<p>Every implementation returns every promised output.</p>")
    out.append("</section>")
    if "incomplete" in doc:
        out.append(
            '<section id="incomplete"><h2>INCOMPLETE</h2><ul>'
            + "".join(f"<li>{e_(line)}</li>" for line in incomplete_lines(doc["incomplete"]))
            + "</ul></section>"
        )
    out.append(
        '<section id="detail"><h2>Detail per quantity</h2><p class="note">ratio = max |err| / allowed '
        "(&le; 1 passes), headroom = 1 &minus; ratio; histogram: one character per bin of |err| / allowed ("
        + e_(" ".join(doc["bins"]))
        + "), log-scaled, red bins fail; hover for the counts.</p>"
    )
    for impl, groups in _detail_groups(doc):
        entries = [e for *_, es in groups for e in es]
        failing = sum(1 for e in entries if e["failures"])
        worst = min((_num(e["headroom"]) for e in entries), key=lambda h: -math.inf if math.isnan(h) else h)
        out.append(
            f"<details{' open' if failing else ''}><summary>{e_(impl)}: {len(entries)} quantities, "
            f"{failing} failing, "
            f"worst headroom {_fmt(worst)}</summary>"
        )
        for family, device, dtype, es in groups:
            out.append(
                f'<h4>{e_(f"{impl} {device} {dtype} {family}")}</h4><table class="detail"><thead><tr>'
                + "".join(f"<th>{c}</th>" for c in _DETAIL_COLUMNS)
                + "<th>histogram</th></tr></thead><tbody>"
            )
            for e in es:
                cls = ' class="fail"' if e["failures"] else ""
                out.append(
                    f"<tr{cls}>"
                    + "".join(f"<td>{e_(_fmt(e[c]))}</td>" for c in _DETAIL_COLUMNS)
                    + f"<td>{_html_spark(doc, e['hist'])}</td></tr>"
                )
            out.append("</tbody></table>")
        out.append("</details>")
    out.append(f"</section><script>{_COPY_JS}</script></body></html>")
    return "\n".join(out) + "\n"


def incomplete_lines(incomplete: dict) -> list:
    """One line of text per fact in a report's "incomplete" section."""
    lines = [incomplete["reason"]] if incomplete.get("reason") else []
    lines += [f"crashed: {t}" for t in incomplete.get("crashed", [])]
    lines += [
        f"records lost with worker {w['worker']} (comparisons of the {len(w['tests'])} test(s) it ran are "
        f"missing): {', '.join(w['tests']) or 'none'}"
        for w in incomplete.get("workers_lost", [])
    ]
    never = incomplete.get("not_run", [])
    if never:
        lines.append(f"never ran ({len(never)}): {', '.join(never)}")
    return lines


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then os.replace it: a reader
    sees the old file or the new one, never a partial one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def reserve(directory, run: str | None = None) -> str:
    """A run id no other run in ``directory`` has: ``run`` (default: the UTC time to the
    second), then ``run-2``, ``run-3``, ... Claimed by creating ``<id>.json`` exclusively,
    so two runs starting at once get different ids."""
    run = run or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    stem, i = run, 1
    while True:
        try:
            with open(Path(directory) / f"{stem}.json", "x", encoding="utf-8"):
                return stem
        except FileExistsError:
            i += 1
            stem = f"{run}-{i}"


def write_run(doc: dict, directory, stem: str) -> list:
    """Write <stem>.json/.md/.html and latest.* (each atomically); the paths, sorted."""
    directory = Path(directory)
    header = f"Run {stem}"
    texts = {"json": dumps(doc), "md": to_markdown(doc, header), "html": to_html(doc, header)}
    paths = []
    for ext, text in texts.items():
        for name in (stem, "latest"):
            path = directory / f"{name}.{ext}"
            write_text_atomic(path, text)
            paths.append(path)
    return sorted(paths)


def write(doc: dict, directory, run: str | None = None) -> list:
    """Write <run>.json/.md/.html and latest.* into ``directory`` under a new run id (see
    ``reserve``); the written paths, sorted."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return write_run(doc, directory, reserve(directory, run))


def check_directory(directory) -> None:
    """Create ``directory`` if needed and make sure files can be written there;
    pytest.UsageError naming it otherwise."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-check.{os.getpid()}.{secrets.token_hex(4)}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise pytest.UsageError(
            f"--report-dir {str(directory)!r}: cannot write reports there: {exc.strerror or exc}"
        ) from None


# ---------------------------------------------------------------- pytest plugin


def _outcome(report) -> str | None:
    """One word per test (passed, failed, skipped, xfailed, xpassed) or per error; None for
    the phases that add nothing."""
    if hasattr(report, "wasxfail"):
        if report.skipped:
            return "xfailed"
        return "xpassed" if report.when == "call" and report.passed else None
    if report.when == "call":
        return report.outcome
    if report.failed:
        return "error"
    return "skipped" if report.skipped else None


class CollectedTests:
    """A base of pytest plugins that need the node ids of the tests selected to run (after
    -k/-m and deselection): ``self.collected``, gathered by the controller (or the only process)
    from its own collection or, under xdist, from each worker's. The plugin sets ``is_worker``
    (bool: this process is an xdist worker) and ``collected`` (an empty set) in __init__.
    Used by ReportPlugin and conformance/gate.py's Gate."""

    is_worker: bool
    collected: set

    def pytest_collection_finish(self, session):
        if not self.is_worker:
            self.collected.update(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        self.collected.update(ids)


class ReportPlugin(CollectedTests):
    """Collects records and failures; merges xdist workers; writes the reports.

    Register with ``config.pluginmanager.register(ReportPlugin(config), "conformance-report")``;
    reads ``config.getoption("report_dir")`` (default "reports"), which is checked at once
    (pytest.UsageError if reports cannot be written there).

    When the first test starts, the run gets its id (``reserve``) and a placeholder report
    marked INCOMPLETE is written, and every test started and finished is appended to
    ``<run>.log``. At the session's end the full report replaces the placeholder and the
    log is removed. So if the process dies (a crash in an adapter without ``-n``), the
    reports say the run is incomplete and the log's last test started and never finished
    is the one it died in. With ``-n`` the controller survives worker crashes and the
    final report lists the tests that crashed, the tests that never ran and the workers
    whose records were lost.
    """

    def __init__(self, config):
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.workers = Aggregate()  # merged worker aggregates (controller only)
        self.local = Aggregate()  # failures and outcomes seen by this process
        self.paths: list = []
        self.run: str | None = None  # the run id, reserved when the first test starts
        self.collected: set = set()  # node ids of the tests to run
        self.reported: set = set()  # node ids with at least one report
        self.crashed: list = []  # node ids whose worker crashed while running them
        self.ran_on: dict = {}  # worker id -> node ids it reported
        self.workers_lost: list = []  # worker ids whose records never arrived
        self.handed_over: set = set()  # worker ids that sent their records with a report (conformance/gate.py)
        reset()

    def _report_dir(self) -> Path:
        try:
            value = self.config.getoption("report_dir")
        except ValueError:
            value = None
        return Path(self.config.invocation_params.dir) / (value or "reports")

    def pytest_configure(self, config):
        if not self.is_worker:
            check_directory(self._report_dir())

    def _log(self, line: str) -> None:
        with open(self._report_dir() / f"{self.run}.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def pytest_runtest_logstart(self, nodeid, location):
        if self.is_worker:
            return
        if self.run is None:
            self.run = reserve(self._report_dir())
            placeholder = Aggregate().to_dict()
            placeholder["incomplete"] = {
                "reason": (
                    f"the run has not finished, or its process died before writing this report (a crash, a kill, "
                    f"os._exit); {self.run}.log lists the tests it started and finished: a test started and not "
                    "finished is where it died"
                )
            }
            write_run(placeholder, self._report_dir(), self.run)
        self._log(f"started {nodeid}")

    def pytest_runtest_logreport(self, report):
        if self.is_worker:  # the controller sees every worker's reports too
            return
        self.reported.add(report.nodeid)
        node = getattr(report, "node", None)  # xdist: the worker that ran it
        if node is not None:
            self.ran_on.setdefault(node.gateway.id, set()).add(report.nodeid)
        handed = getattr(report, WORKER_KEY, None)  # the records of a worker that ends after this report
        if handed and node is not None:
            self.workers.merge(Aggregate.from_dict(json.loads(handed)))
            self.handed_over.add(node.gateway.id)
        properties = {
            k: v for k, v in (tuple(p) for p in report.user_properties) if k in GROUP_FIELDS or k == "limitations"
        }
        if report.failed:
            self.local.add_failure(report.nodeid, report.when, report.longreprtext, properties)
        outcome = _outcome(report)
        if outcome:
            self.local.add_outcome(outcome, properties)

    def pytest_runtest_logfinish(self, nodeid, location):
        if not self.is_worker and self.run is not None:
            self._log(f"finished {nodeid}")

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem, report, sched):
        """xdist controller: a worker died while running ``crashitem`` (unless a plugin made the
        report a passed one: conformance/gate.py does for a worker it ended on purpose)."""
        if report.failed:
            self.crashed.append(crashitem)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """xdist controller: merge the aggregate a worker sent at its session's end."""
        text = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if text:
            self.workers.merge(Aggregate.from_dict(json.loads(text)))
        elif node.gateway.id not in self.handed_over:
            self.workers_lost.append(node.gateway.id)

    def _incomplete(self) -> dict:
        """The report's "incomplete" section; empty when every test ran and every record arrived."""
        lost = [{"worker": w, "tests": sorted(self.ran_on.get(w, ()))} for w in sorted(set(self.workers_lost))]
        facts = {
            "crashed": sorted(set(self.crashed)),
            "not_run": sorted(self.collected - self.reported),
            "workers_lost": lost,
        }
        if not any(facts.values()):
            return {}
        return {"reason": "this report is missing results: see below", **facts}

    def pytest_sessionfinish(self, session):
        if self.is_worker:
            self.config.workeroutput[WORKER_KEY] = dumps(store().to_dict())
            return
        total = Aggregate()
        total.merge(store())
        total.merge(self.workers)
        total.merge(self.local)
        doc = total.to_dict()
        shard = self.config.getoption("shard", None)  # conformance/gate.py's --shard K/N
        if shard:
            from conformance.gate import parse_shard  # gate imports this module

            doc["shard"] = "%d/%d" % parse_shard(shard)
        incomplete = self._incomplete()
        if incomplete:
            doc["incomplete"] = incomplete
        if self.run is None and not (total.entries or total.failures or total.outcomes or total.missing):
            return  # no test started: nothing to report
        directory = self._report_dir()
        self.run = self.run or reserve(directory)
        self.paths = write_run(doc, directory, self.run)
        (directory / f"{self.run}.log").unlink(missing_ok=True)

    def pytest_terminal_summary(self, terminalreporter):
        if self.paths:
            terminalreporter.write_sep("-", "conformance tolerance report")
            for p in self.paths:
                terminalreporter.write_line(str(p))
