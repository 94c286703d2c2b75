"""Tolerance reports: how close every implementation came to the reference, per quantity.

The engine calls ``add(rec)`` once per comparison (see ``add`` for the record's fields).
Records are aggregated at once per (impl, device, dtype, family, quantity). Promised
outputs an implementation does not return are listed per (impl, device, dtype, family)
under "not returned" (``add_missing``, called by conformance/test_coverage.py). ``ReportPlugin``
merges the aggregates of pytest-xdist workers and writes ``<dir>/<run>.json``, ``.md``
and ``.html`` plus ``<dir>/latest.*``, each atomically (temporary file + os.replace), under
a run id claimed by creating ``<run>.json`` exclusively (``reserve``). Everything inside is
sorted and free of timings and worker ids, so a complete run with and without ``-n auto``
gives the same content; only the file name and one header line of the .md and .html carry
the run's timestamp. A run that lost results (crashed tests, tests never run, workers whose
records did not arrive) has an "incomplete" section naming them (worker ids included).

Error histogram: ``ratio`` = |err| / allowed per element, counted in the bins BINS
(upper bounds BIN_UPPER, right-closed: "<=1" passes, "<=10" and ">10" fail).
"""
from __future__ import annotations

import html
import json
import math
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

BIN_UPPER = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, math.inf)
BINS = ("0", "<=1e-8", "<=1e-7", "<=1e-6", "<=1e-5", "<=1e-4", "<=1e-3", "<=1e-2", "<=1e-1",
        "<=1", "<=10", ">10")
PASS_BINS = 10  # the first PASS_BINS bins hold passing elements (ratio <= 1)
MAX_EXAMPLES = 5  # failing (test, case, message) kept per quantity
MAX_FAILURES = 50  # failed pytest reports kept per run
MAX_TEXT = 4000  # characters kept of a failure's text
KEY_FIELDS = ("impl", "device", "dtype", "family", "quantity")
MISSING_FIELDS = ("impl", "device", "dtype", "family")
FORMAT_VERSION = 1
WORKER_KEY = "conformance_report"


# ---------------------------------------------------------------- histogram

def histogram(errors) -> list:
    """Counts of ``errors`` (|err| / allowed, any shape; NaN counts as > 10) per bin of BINS."""
    e = np.abs(np.asarray(errors, dtype=np.float64).ravel())
    idx = np.searchsorted(np.asarray(BIN_UPPER), np.nan_to_num(e, nan=math.inf), side="left")
    return np.bincount(np.minimum(idx, len(BINS) - 1), minlength=len(BINS)).astype(int).tolist()


# ---------------------------------------------------------------- aggregation

def _nanmax(a: float, b: float) -> float:
    """max treating NaN as the largest value (so that the result does not depend on order)."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def _order(x: float) -> float:
    return math.inf if math.isnan(x) else x


def new_entry(rec: dict) -> dict:
    """The aggregate of one record."""
    ratio = float(rec.get("ratio", 0.0))
    hist = [int(c) for c in rec.get("hist") or [0] * len(BINS)]
    if len(hist) != len(BINS):
        raise ValueError(f"hist has {len(hist)} bins, report.BINS has {len(BINS)}")
    passed = bool(rec.get("passed", True))
    examples = [] if passed else [{"test": str(rec.get("test", "")), "case": str(rec.get("case", "")),
                                   "message": str(rec.get("message", ""))[:MAX_TEXT]}]
    return {**{k: str(rec[k]) for k in KEY_FIELDS},
            "kind": str(rec.get("kind", "")),
            "cases": 1, "elements": int(rec.get("n", 0)),
            "max_abs": float(rec.get("max_abs", 0.0)), "max_rel": float(rec.get("max_rel", 0.0)),
            "max_ulp": float(rec.get("max_ulp", 0.0)), "max_ratio": ratio,
            "worst": {"ratio": ratio, "atol": float(rec.get("atol", 0.0)), "rtol": float(rec.get("rtol", 0.0)),
                      "test": str(rec.get("test", "")), "case": str(rec.get("case", ""))},
            "ties": int(rec.get("ties", 0)), "failures": 0 if passed else 1,
            "examples": examples, "hist": hist}


def _worst_key(w: dict):
    return (_order(w["ratio"]), w["test"], w["case"], w["atol"], w["rtol"])


def merge_entry(a: dict, b: dict) -> dict:
    """Two aggregates of the same key combined; commutative and associative."""
    kinds = sorted(set(filter(None, a["kind"].split(",") + b["kind"].split(","))))
    examples = {(e["test"], e["case"], e["message"]): e for e in a["examples"] + b["examples"]}
    return {**{k: a[k] for k in KEY_FIELDS}, "kind": ",".join(kinds),
            "cases": a["cases"] + b["cases"], "elements": a["elements"] + b["elements"],
            **{k: _nanmax(a[k], b[k]) for k in ("max_abs", "max_rel", "max_ulp", "max_ratio")},
            "worst": max(a["worst"], b["worst"], key=_worst_key),
            "ties": a["ties"] + b["ties"], "failures": a["failures"] + b["failures"],
            "examples": [examples[k] for k in sorted(examples)][:MAX_EXAMPLES],
            "hist": [x + y for x, y in zip(a["hist"], b["hist"])]}


def _failure_key(f: dict):
    return (f["test"], f["when"], f["text"])


class Aggregate:
    """Per-key aggregates, pytest failure reports and outcome counts of one process."""

    def __init__(self):
        self.entries: dict = {}
        self.failures: list = []  # {"test", "when", "text"}, sorted, at most MAX_FAILURES
        self.failures_total = 0
        self.outcomes: dict = {}
        self.missing: dict = {}  # (impl, device, dtype, family) -> set of keys not returned

    def add(self, rec: dict) -> None:
        entry = new_entry(rec)
        key = tuple(entry[k] for k in KEY_FIELDS)
        self.entries[key] = merge_entry(self.entries[key], entry) if key in self.entries else entry

    def add_failure(self, test: str, when: str, text: str) -> None:
        self._set_failures(self.failures + [{"test": test, "when": when, "text": trim(text)}])
        self.failures_total += 1

    def add_missing(self, impl: str, device: str, dtype: str, family: str, key: str) -> None:
        self.missing.setdefault((impl, device, dtype, family), set()).add(key)

    def add_outcome(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def _set_failures(self, failures: list) -> None:
        unique = {_failure_key(f): f for f in failures}
        self.failures = [unique[k] for k in sorted(unique)][:MAX_FAILURES]

    def merge(self, other: "Aggregate") -> None:
        for key, entry in other.entries.items():
            self.entries[key] = merge_entry(self.entries[key], entry) if key in self.entries else entry
        self._set_failures(self.failures + other.failures)
        self.failures_total += other.failures_total
        for k, v in other.outcomes.items():
            self.outcomes[k] = self.outcomes.get(k, 0) + v
        for k, keys in other.missing.items():
            self.missing.setdefault(k, set()).update(keys)

    def to_dict(self) -> dict:
        """Plain, sorted, JSON-ready data (non-finite floats as "inf", "-inf", "nan")."""
        aggregates = []
        for key in sorted(self.entries):
            e = dict(self.entries[key])
            e["headroom"] = 1.0 - e["max_ratio"]
            aggregates.append(e)
        comparisons = sum(e["cases"] for e in aggregates)
        doc = {"format": FORMAT_VERSION, "bins": list(BINS),
               "bin_upper": list(BIN_UPPER), "pass_bins": PASS_BINS,
               "summary": {"quantities": len(aggregates), "comparisons": comparisons,
                           "failed_comparisons": sum(e["failures"] for e in aggregates),
                           "ties": sum(e["ties"] for e in aggregates),
                           "failed_tests": self.failures_total,
                           "not_returned": sum(len(v) for v in self.missing.values()),
                           "outcomes": dict(sorted(self.outcomes.items()))},
               "aggregates": aggregates, "failures": list(self.failures),
               "not_returned": [dict(zip(MISSING_FIELDS, k), keys=sorted(self.missing[k]))
                                for k in sorted(self.missing)]}
        return _jsonable(doc)

    @classmethod
    def from_dict(cls, doc: dict) -> "Aggregate":
        doc = _from_jsonable(doc)
        agg = cls()
        for e in doc.get("aggregates", []):
            e = {k: v for k, v in e.items() if k != "headroom"}
            agg.entries[tuple(e[k] for k in KEY_FIELDS)] = e
        agg.failures = list(doc.get("failures", []))
        agg.failures_total = int(doc.get("summary", {}).get("failed_tests", 0))
        agg.outcomes = dict(doc.get("summary", {}).get("outcomes", {}))
        for m in doc.get("not_returned", []):
            agg.missing[tuple(m[k] for k in MISSING_FIELDS)] = set(m["keys"])
        return agg


def trim(text: str) -> str:
    """The assertion lines ("E ...") of a pytest failure, else its tail; at most MAX_TEXT chars."""
    lines = str(text).splitlines()
    errors = [ln for ln in lines if ln.startswith("E ")]
    tail = lines[-1:] if lines and not lines[-1].startswith("E ") else []
    kept = "\n".join((errors + tail) if errors else lines[-30:])
    return kept if len(kept) <= MAX_TEXT else kept[:MAX_TEXT - 4] + "\n..."


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


_FLOAT_FIELDS = {"max_abs", "max_rel", "max_ulp", "max_ratio", "ratio", "atol", "rtol", "headroom"}


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


def add(rec: dict) -> None:
    """Aggregate one comparison. ``rec`` fields: impl, device, dtype, family, quantity, kind,
    n, max_abs, max_rel, max_ulp, atol, rtol, ratio, ties, passed, test, case, hist (len(BINS)
    counts, see ``histogram``) and optionally message (shown for failures)."""
    _STORE.add(rec)


def add_missing(impl: str, device: str, dtype: str, family: str, key: str) -> None:
    """Record that ``impl`` on ``device`` in ``dtype`` does not return the promised ``key``."""
    _STORE.add_missing(impl, device, dtype, family, key)


def store() -> Aggregate:
    return _STORE


def reset() -> None:
    global _STORE
    _STORE = Aggregate()


# ---------------------------------------------------------------- writers

def _fmt(x) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


_COLUMNS = ("impl", "device", "dtype", "quantity", "kind", "cases", "elements", "max_abs", "max_rel",
            "max_ulp", "max_ratio", "headroom", "ties", "failures")
_SPARK = "·▁▂▃▄▅▆▇█"


def _spark(hist: list) -> str:
    top = max(max(hist), 1)
    return "".join(_SPARK[0 if c == 0 else 1 + int(7 * math.log1p(c) / math.log1p(top))] for c in hist)


def _groups(doc: dict):
    for family in sorted({e["family"] for e in doc["aggregates"]}):
        yield family, [e for e in doc["aggregates"] if e["family"] == family]


def to_markdown(doc: dict, header: str = "") -> str:
    s = doc["summary"]
    out = ["# Conformance tolerance report", ""]
    if header:
        out += [header, ""]
    if "incomplete" in doc:
        out += ["## INCOMPLETE", ""] + [f"- {line}" for line in incomplete_lines(doc["incomplete"])] + [""]
    out += [f"{s['quantities']} quantities, {s['comparisons']} comparisons, {s['failed_comparisons']} failed, "
            f"{s['ties']} ties accepted; failed tests: {s['failed_tests']}; "
            f"promised outputs not returned: {s.get('not_returned', 0)}; outcomes: "
            + (", ".join(f"{k} {v}" for k, v in s["outcomes"].items()) or "none"), "",
            "ratio = max |err| / allowed (<= 1 passes), headroom = 1 - ratio. Histogram bins of "
            "|err| / allowed: " + " ".join(f"`{b}`" for b in doc["bins"]), ""]
    for family, entries in _groups(doc):
        out += [f"## {family}", "", "| " + " | ".join(_COLUMNS) + " | histogram |",
                "|" + "---|" * (len(_COLUMNS) + 1)]
        for e in entries:
            out.append("| " + " | ".join(_fmt(e[c]) for c in _COLUMNS) + f" | `{_spark(e['hist'])}` |")
        out.append("")
    if doc.get("not_returned"):
        out += ["## Not returned", "", "Promised outputs these implementations do not return: not compared.", ""]
        for m in doc["not_returned"]:
            out.append(f"- {m['impl']} {m['device']} {m['dtype']} {m['family']}: {', '.join(m['keys'])}")
        out.append("")
    failing = [e for e in doc["aggregates"] if e["examples"]]
    if failing:
        out += ["## Failing comparisons", ""]
        for e in failing:
            for ex in e["examples"]:
                out += [f"### {e['impl']} {e['device']} {e['dtype']} {e['family']} {e['quantity']}: "
                        f"{ex['test']} ({ex['case']})", "", "```", ex["message"] or "(no message)", "```", ""]
    if doc["failures"]:
        out += ["## Failed tests", ""]
        for f in doc["failures"]:
            out += [f"### {f['test']} ({f['when']})", "", "```", f["text"], "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _svg_histogram(hist: list, bins, pass_bins: int, width: int = 240, height: int = 48) -> str:
    """An inline SVG bar chart of ``hist`` (log-scaled heights; red bins fail)."""
    n = len(hist)
    bar = width / n
    top = math.log1p(max(max(hist), 1))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 12}" '
             f'role="img" aria-label="error histogram">']
    for i, c in enumerate(hist):
        h = 0.0 if c == 0 else max(1.0, height * math.log1p(c) / top)
        colour = "#3a7d44" if i < pass_bins else "#c0392b"
        parts.append(f'<rect x="{i * bar + 1:.1f}" y="{height - h:.1f}" width="{bar - 2:.1f}" '
                     f'height="{h:.1f}" fill="{colour}"><title>{html.escape(bins[i])}: {c}</title></rect>')
    parts.append(f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#888"/>')
    x1 = pass_bins * bar
    parts.append(f'<line x1="{x1:.1f}" y1="0" x2="{x1:.1f}" y2="{height}" stroke="#888" stroke-dasharray="2,2"/>')
    parts.append(f'<text x="0" y="{height + 10}" font-size="8">0</text>'
                 f'<text x="{x1 - 8:.1f}" y="{height + 10}" font-size="8">1</text>'
                 f'<text x="{width - 14}" y="{height + 10}" font-size="8">&gt;10</text></svg>')
    return "".join(parts)


def to_html(doc: dict, header: str = "") -> str:
    e_ = html.escape
    s = doc["summary"]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>Conformance tolerance report</title><style>",
           "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;text-align:right}"
           "td.l,th.l{text-align:left}tr.fail{background:#fde2e0}pre{background:#f6f6f6;padding:6px;"
           "overflow-x:auto}", "</style></head><body>", "<h1>Conformance tolerance report</h1>"]
    if header:
        out.append(f"<p>{e_(header)}</p>")
    if "incomplete" in doc:
        out.append('<h2 style="color:#c0392b">INCOMPLETE</h2><ul>'
                   + "".join(f"<li>{e_(line)}</li>" for line in incomplete_lines(doc["incomplete"])) + "</ul>")
    out.append(f"<p>{s['quantities']} quantities, {s['comparisons']} comparisons, "
               f"{s['failed_comparisons']} failed, {s['ties']} ties accepted; failed tests: "
               f"{s['failed_tests']}; promised outputs not returned: {s.get('not_returned', 0)}; outcomes: "
               f"{e_(', '.join(f'{k} {v}' for k, v in s['outcomes'].items()) or 'none')}</p>")
    out.append("<p>ratio = max |err| / allowed (&le; 1 passes); headroom = 1 &minus; ratio. The plot "
               "counts elements per bin of |err| / allowed: " + e_(" ".join(doc["bins"]))
               + " (log-scaled bar heights; red bins fail; the dashed line is ratio 1).</p>")
    for family, entries in _groups(doc):
        out.append(f"<h2>{e_(family)}</h2><table><thead><tr>"
                   + "".join(f'<th class="l">{e_(c)}</th>' if c in ("impl", "device", "dtype", "quantity", "kind")
                             else f"<th>{e_(c)}</th>" for c in _COLUMNS)
                   + '<th class="l">|err| / allowed</th></tr></thead><tbody>')
        for e in entries:
            cls = ' class="fail"' if e["failures"] else ""
            cells = "".join(f'<td class="l">{e_(_fmt(e[c]))}</td>'
                            if c in ("impl", "device", "dtype", "quantity", "kind")
                            else f"<td>{e_(_fmt(e[c]))}</td>" for c in _COLUMNS)
            out.append(f"<tr{cls}>{cells}<td class=\"l\">"
                       f"{_svg_histogram(e['hist'], doc['bins'], doc['pass_bins'])}</td></tr>")
        out.append("</tbody></table>")
    if doc.get("not_returned"):
        out.append("<h2>Not returned</h2><p>Promised outputs these implementations do not return: "
                   "not compared.</p><ul>")
        for m in doc["not_returned"]:
            out.append(f"<li>{e_(m['impl'])} {e_(m['device'])} {e_(m['dtype'])} {e_(m['family'])}: "
                       f"{e_(', '.join(m['keys']))}</li>")
        out.append("</ul>")
    failing = [e for e in doc["aggregates"] if e["examples"]]
    if failing:
        out.append("<h2>Failing comparisons</h2>")
        for e in failing:
            for ex in e["examples"]:
                out.append(f"<h3>{e_(e['impl'])} {e_(e['device'])} {e_(e['dtype'])} {e_(e['family'])} "
                           f"{e_(e['quantity'])}: {e_(ex['test'])} ({e_(ex['case'])})</h3>"
                           f"<pre>{e_(ex['message'] or '(no message)')}</pre>")
    if doc["failures"]:
        out.append("<h2>Failed tests</h2>")
        for f in doc["failures"]:
            out.append(f"<h3>{e_(f['test'])} ({e_(f['when'])})</h3><pre>{e_(f['text'])}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def incomplete_lines(incomplete: dict) -> list:
    """One line of text per fact in a report's "incomplete" section."""
    lines = [incomplete["reason"]] if incomplete.get("reason") else []
    lines += [f"crashed: {t}" for t in incomplete.get("crashed", [])]
    lines += [f"records lost with worker {w['worker']} (comparisons of the {len(w['tests'])} test(s) it ran are "
              f"missing): {', '.join(w['tests']) or 'none'}" for w in incomplete.get("workers_lost", [])]
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
        raise pytest.UsageError(f"--report-dir {str(directory)!r}: cannot write reports there: "
                                f"{exc.strerror or exc}") from None


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


class ReportPlugin:
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

    def pytest_collection_finish(self, session):
        if not self.is_worker:
            self.collected.update(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        self.collected.update(ids)

    def pytest_runtest_logstart(self, nodeid, location):
        if self.is_worker:
            return
        if self.run is None:
            self.run = reserve(self._report_dir())
            placeholder = Aggregate().to_dict()
            placeholder["incomplete"] = {"reason": (
                f"the run has not finished, or its process died before writing this report (a crash, a kill, "
                f"os._exit); {self.run}.log lists the tests it started and finished: a test started and not "
                "finished is where it died")}
            write_run(placeholder, self._report_dir(), self.run)
        self._log(f"started {nodeid}")

    def pytest_runtest_logreport(self, report):
        if self.is_worker:  # the controller sees every worker's reports too
            return
        self.reported.add(report.nodeid)
        node = getattr(report, "node", None)  # xdist: the worker that ran it
        if node is not None:
            self.ran_on.setdefault(node.gateway.id, set()).add(report.nodeid)
        if report.failed:
            self.local.add_failure(report.nodeid, report.when, report.longreprtext)
        outcome = _outcome(report)
        if outcome:
            self.local.add_outcome(outcome)

    def pytest_runtest_logfinish(self, nodeid, location):
        if not self.is_worker and self.run is not None:
            self._log(f"finished {nodeid}")

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem, report, sched):
        """xdist controller: a worker died while running ``crashitem``."""
        self.crashed.append(crashitem)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        """xdist controller: merge the aggregate a worker sent at its session's end."""
        text = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if text:
            self.workers.merge(Aggregate.from_dict(json.loads(text)))
        else:
            self.workers_lost.append(node.gateway.id)

    def _incomplete(self) -> dict:
        """The report's "incomplete" section; empty when every test ran and every record arrived."""
        lost = [{"worker": w, "tests": sorted(self.ran_on.get(w, ()))} for w in sorted(set(self.workers_lost))]
        facts = {"crashed": sorted(set(self.crashed)), "not_run": sorted(self.collected - self.reported),
                 "workers_lost": lost}
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
