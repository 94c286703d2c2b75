"""The CI gate for GPU kernels: exit codes a CI job can act on, isolation of sticky device
errors, shards, and one GPU per xdist worker. conformance/plugin.py loads this module
(``pytest_plugins``); it does nothing in pytest runs that do not run the conformance
suite (``_active``). docs/gpu-gate.md has the CI command and an example workflow.

Exit codes with ``--gate``:

    0  conformant: every selected test ran; every conformance test passed, was an
       expected failure (--xfails-file) or was skipped, and at least one was judged
       (passed, failed or xfailed)
    1  departures: a conformance test failed (an implementation departs from the
       reference, breaks the adapter protocol, raises, or raised a sticky device error)
       and nothing of the next line happened
    3  could not judge (COULD_NOT_JUDGE): a test crashed its xdist worker, timed out
       (pytest-timeout), errored in setup or teardown; a test of no implementation (the
       suite's own, e.g. the reference reproducing the fixtures) failed; a collection
       error; selected tests did not run (a session stopped after a sticky device error,
       xdist gave up after --max-worker-restart crashes, -x); a worker went down outside
       a test; or no conformance test was judged (every one skipped, e.g. no device).
       3 wins over 1: a run with a departure and a crash exits 3. With
       --gate-crash-is-departure a crashed or timed-out test counts as a departure instead
       (an untrusted kernel that segfaults or hangs is then simply failing).
    2, 4, 5  pytest's own, unchanged, all "could not judge": interrupted (Ctrl-C),
       usage error (4; also --device cuda where no selected implementation can run, e.g.
       no CUDA: the message gives each one's reason), no tests collected. pytest's own
       internal error is 3 too.

Without ``--gate`` the exit codes are pytest's (a crash or a timeout is a failed test,
1), except that a session stopped after a sticky device error exits 3.

Sticky device errors. A device-side assert (an out-of-range index in a kernel), an
illegal memory access and the like leave the process's CUDA context unusable: every later
CUDA call raises too. When a test's exception (its causes, contexts and, for Hypothesis'
groups of distinct failures, its members) has one of STICKY_DEVICE_ERRORS in its message,
that test is reported as failed with that message and then:

- in an xdist worker, the worker ends (os._exit) right after sending that report, with
  its tolerance records attached to it (report.WORKER_KEY), and xdist starts a fresh
  worker for the remaining tests. xdist reports a worker's end as a crash of the test it
  was running; for this test, whose failure is already reported, the controller turns
  that crash report into the test's (passed) teardown report, so the test is blamed once
  and nothing is called crashed. Each such end uses up one of --max-worker-restart.
- without xdist, the session stops after that test (session.shouldstop), says why and
  which tests did not run, and exits 3.

Shards. ``--shard K/N`` keeps the tests whose node id's SHA-256 (stable across machines
and Python runs, unlike hash()) modulo N is K-1, after -k/-m. Run every shard with the
same command otherwise; ``python -m conformance report merge`` joins their JSON reports.

GPUs per worker. With ``--gpus-per-worker N`` (or CONFORMANCE_GPUS_PER_WORKER=N) and xdist,
the GPU ids (CUDA_VISIBLE_DEVICES's entries if it is set, else the GPUs ``nvidia-smi -L``
lists) are cut into groups of N, and each worker gets the group with the fewest live
workers (gwK the K-th group, modulo their count; a replacement worker the group freed by
the worker it replaces) as its CUDA_VISIBLE_DEVICES. The controller passes it in the
worker's ``workerinput``; the worker sets it in pytest_cmdline_main, before any
pytest_configure, so before conformance.plugin asks adapters' skip_reason (which may
initialise CUDA, after which CUDA_VISIBLE_DEVICES has no effect in that process).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from conformance import plugin
from conformance import report as tolerance_report

COULD_NOT_JUDGE = 3  # exit code: the gate could not judge (see the module docstring)
STICKY_DEVICE_ERRORS = (
    "CUDA error",  # torch: "CUDA error: <cudaGetErrorString>", also for every later call
    "device-side assert triggered",  # cudaErrorAssert (also Triton's and ONNX Runtime's wording)
    "illegal memory access",  # cudaErrorIllegalAddress
    "unspecified launch failure",  # cudaErrorLaunchFailure
    "misaligned address",  # cudaErrorMisalignedAddress
)  # substrings of an exception's message that mean the process's CUDA context is broken
TIMEOUT_MESSAGE = "from pytest-timeout"  # in pytest-timeout's failure: "Timeout (>2.0s) from pytest-timeout."
GATE_ATTR = "conformance_gate"  # TestReport attribute (travels through xdist): DEVICE_ERROR or TIMEOUT
DEVICE_ERROR, TIMEOUT = "device-error", "timeout"
GPUS_KEY = "conformance_gpus"  # xdist workerinput: the worker's CUDA_VISIBLE_DEVICES
GPUS_ENV = "CONFORMANCE_GPUS_PER_WORKER"
WORKER_EXIT = 70  # exit status of a worker ended after a sticky device error (xdist does not read it)
MAX_NAMED = 20  # tests named in the terminal when more did not run (the report names all)


def _active(config) -> bool:
    """Does this pytest run run the conformance suite? (conformance.plugin decides.)"""
    return config.stash.get(plugin.ACTIVE, False)


def device_error(exc: BaseException | None) -> str | None:
    """The first of ``exc``, its causes, contexts and group members whose message holds one
    of STICKY_DEVICE_ERRORS, as "Type: first line of the message"; None if none does."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        text = str(e)
        if any(p in text for p in STICKY_DEVICE_ERRORS):
            return f"{type(e).__name__}: {(text.strip().splitlines() or [''])[0]}"
        todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
    return None


def parse_shard(text: str) -> tuple[int, int]:
    """(K, N) of "K/N" with 1 <= K <= N; UsageError naming the value otherwise."""
    k, sep, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n:
        raise pytest.UsageError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. --shard 2/4")
    return k, n


def shard_of(nodeid: str, shards: int) -> int:
    """The shard (1 to ``shards``) of the test ``nodeid``: SHA-256 of the id modulo ``shards``, plus 1."""
    return int.from_bytes(hashlib.sha256(nodeid.encode()).digest()[:8], "big") % shards + 1


def gpu_ids() -> list:
    """The GPU ids to share out: CUDA_VISIBLE_DEVICES's comma-separated entries (ids or
    UUIDs) when it is set, else "0".."n-1" for the n GPUs ``nvidia-smi -L`` lists;
    UsageError when neither can say."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise pytest.UsageError(
            f"--gpus-per-worker: CUDA_VISIBLE_DEVICES is not set and `nvidia-smi -L` failed ({exc}); "
            "set CUDA_VISIBLE_DEVICES to the GPU ids to share out"
        ) from None
    return [str(i) for i, _ in enumerate(line for line in listed.splitlines() if line.startswith("GPU "))]


def gpu_groups(ids: list, per_worker: int) -> list:
    """``ids`` cut into consecutive groups of ``per_worker``, each as a CUDA_VISIBLE_DEVICES
    value ("0", "2,3"); ids left over are not used. UsageError when not one group fills."""
    groups = [",".join(ids[i : i + per_worker]) for i in range(0, len(ids) - per_worker + 1, per_worker)]
    if not groups:
        raise pytest.UsageError(
            f"--gpus-per-worker {per_worker}: only {len(ids)} GPU(s) to share out ({', '.join(ids) or 'none'})"
        )
    return groups


def _gpus_per_worker(config) -> int | None:
    """--gpus-per-worker, else CONFORMANCE_GPUS_PER_WORKER, else None; UsageError if not a positive int."""
    value, origin = config.getoption("gpus_per_worker"), "--gpus-per-worker"
    if value is None and os.environ.get(GPUS_ENV):
        value, origin = os.environ[GPUS_ENV], GPUS_ENV
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise pytest.UsageError(f"{origin} {value!r}: expected a positive number of GPUs per xdist worker")
    return number


def pytest_addoption(parser):
    group = parser.getgroup("conformance")
    group.addoption(
        "--gate",
        action="store_true",
        help="CI gate exit codes: 0 conformant, 1 departures, 3 could not judge (crash, timeout, "
        "tests not run, nothing judged); see docs/gpu-gate.md",
    )
    group.addoption(
        "--gate-crash-is-departure",
        action="store_true",
        help="with --gate: a crashed or timed-out test is a departure (1), not 'could not judge' (3)",
    )
    group.addoption("--shard", metavar="K/N", help="run the K-th of N shards of the selected tests (1-based)")
    group.addoption(
        "--gpus-per-worker",
        metavar="N",
        help=f"with -n: give each xdist worker N GPUs of its own through CUDA_VISIBLE_DEVICES (env {GPUS_ENV})",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """xdist worker: take the GPUs the controller gave it before any plugin initialises CUDA."""
    gpus = getattr(config, "workerinput", {}).get(GPUS_KEY)
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus


def pytest_configure(config):  # after conformance.plugin's (tryfirst), which decides _active
    if _active(config):
        config.pluginmanager.register(Gate(config), "conformance-gate")


class Gate(tolerance_report.CollectedTests):
    """The gate's state in one process: the controller (or the only process) tallies every
    report into a verdict; an xdist worker marks reports and ends after a sticky device error."""

    def __init__(self, config):
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.gate = config.getoption("gate")
        self.crash_is_departure = config.getoption("gate_crash_is_departure")
        shard = config.getoption("shard")
        self.shard = parse_shard(shard) if shard else None
        per_worker = _gpus_per_worker(config)
        xdist = config.getoption("dist", "no") != "no"
        self.gpu_groups = gpu_groups(gpu_ids(), per_worker) if per_worker and xdist and not self.is_worker else []
        self.gpu_load = [0] * len(self.gpu_groups)  # live workers per group
        self.gpu_of: dict = {}  # worker id -> group index
        self.collected: set = set()  # node ids selected to run
        self.reported: set = set()  # node ids with a report
        self.judged = 0  # conformance tests that passed, failed or xfailed
        self.departures: list = []  # node ids of failed conformance tests
        self.unjudged: list = []  # (node id or "", why) of what keeps the gate from judging
        self.isolated: dict = {}  # node id -> its report with a sticky device error, from a worker that then ended
        self.down: dict = {}  # worker id -> error, of workers that went down outside a test
        self.stopped: str | None = None  # why this process stopped its session (no xdist)
        self.verdict: tuple | None = None  # (exit code, headline, [reason, ...]) with --gate

    # ------------------------------------------------------------ selection

    @pytest.hookimpl(trylast=True)  # after -k/-m and conformance.plugin's xfail patterns
    def pytest_collection_modifyitems(self, config, items):
        if self.shard is None:
            return
        k, n = self.shard
        kept = [item for item in items if shard_of(item.nodeid, n) == k]
        deselected = [item for item in items if shard_of(item.nodeid, n) != k]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        """xdist controller: the new worker's GPUs, the group with the fewest live workers."""
        if self.gpu_groups:
            group = min(range(len(self.gpu_groups)), key=lambda g: (self.gpu_load[g], g))
            self.gpu_load[group] += 1
            self.gpu_of[node.gateway.id] = group
            node.workerinput[GPUS_KEY] = self.gpu_groups[group]

    # ------------------------------------------------------------ running

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if call.excinfo is None:
            return report
        error = device_error(call.excinfo.value)
        if error and call.when in ("setup", "call"):
            setattr(report, GATE_ATTR, DEVICE_ERROR)
            if self.is_worker:  # it ends after sending this report: its records go with it
                setattr(report, tolerance_report.WORKER_KEY, tolerance_report.dumps(tolerance_report.store().to_dict()))
            elif not item.session.shouldstop:
                self.stopped = (
                    f"{item.nodeid} raised a sticky device error ({error}): this process's CUDA context is "
                    "unusable, so the session stops here; run with -n (pytest-xdist) to go on in fresh processes"
                )
                item.session.shouldstop = self.stopped
        elif call.excinfo.errisinstance(pytest.fail.Exception) and TIMEOUT_MESSAGE in str(call.excinfo.value):
            setattr(report, GATE_ATTR, TIMEOUT)
        return report

    @pytest.hookimpl(trylast=True)  # in a worker: after xdist has sent the report
    def pytest_runtest_logreport(self, report):
        if self.is_worker:
            if getattr(report, GATE_ATTR, None) == DEVICE_ERROR:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(WORKER_EXIT)
            return
        self._tally(report)

    def _tally(self, report) -> None:
        """Count one report of the controller (or the only process) into the verdict."""
        self.reported.add(report.nodeid)
        labels = dict(tuple(p) for p in report.user_properties)
        mark = getattr(report, GATE_ATTR, None)
        node = getattr(report, "node", None)
        if mark == DEVICE_ERROR and node is not None:
            self.isolated[report.nodeid] = report
        conformance = "impl" in labels
        if conformance and (report.when == "call" and not report.skipped or hasattr(report, "wasxfail")):
            self.judged += 1
        if not report.failed:
            return
        crashed = report.when not in ("setup", "call", "teardown")  # xdist's crash report: "???"
        if crashed or mark == TIMEOUT:
            if self.crash_is_departure and (crashed or conformance):
                self.departures.append(report.nodeid)
            else:
                self.unjudged.append((report.nodeid, "crashed its worker" if crashed else "timed out"))
        elif report.when != "call":
            self.unjudged.append((report.nodeid, f"error in {report.when}"))
        elif not conformance:
            self.unjudged.append((report.nodeid, "failed, and checks no implementation (the suite's own test)"))
        else:
            self.departures.append(report.nodeid)

    def pytest_collectreport(self, report):
        if report.failed and not self.is_worker:
            self.unjudged.append((report.nodeid, "collection error"))

    @pytest.hookimpl(optionalhook=True, tryfirst=True)  # before the report plugin reads it
    def pytest_handlecrashitem(self, crashitem, report, sched):
        """xdist controller: a worker ended while running ``crashitem``. If it ended on purpose
        after that test's sticky device error (already reported), this is the teardown report
        that test never sent: passed, not a crash."""
        sticky = self.isolated.get(crashitem)
        if sticky is not None and sticky.node.gateway.id == report.node.gateway.id:
            report.outcome, report.when, report.longrepr = "passed", "teardown", None
            report.user_properties = list(sticky.user_properties)  # JUnit writes them at teardown
        self.down.pop(report.node.gateway.id, None)  # it went down in a test: that test's report says so

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        worker = node.gateway.id
        group = self.gpu_of.pop(worker, None)
        if group is not None:
            self.gpu_load[group] -= 1
        if error is not None and worker not in {r.node.gateway.id for r in self.isolated.values()}:
            self.down[worker] = error

    # ------------------------------------------------------------ verdict

    def not_run(self) -> list:
        return sorted(self.collected - self.reported)

    def pytest_sessionfinish(self, session, exitstatus):
        if self.is_worker:
            return
        stopped = self.stopped is not None and exitstatus == pytest.ExitCode.INTERRUPTED
        if stopped:
            session.exitstatus = COULD_NOT_JUDGE
        if not self.gate or not (stopped or exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)):
            return
        why = [f"{nodeid}: {reason}" if nodeid else reason for nodeid, reason in self.unjudged]
        why += [f"worker {worker} went down outside a test: {error}" for worker, error in sorted(self.down.items())]
        not_run = self.not_run()
        if not_run:
            why.append(f"{len(not_run)} selected test(s) did not run")
        if not self.judged:
            why.append("no conformance test was judged (every one was skipped, or none was selected)")
        if why:
            self.verdict = (COULD_NOT_JUDGE, "could not judge", why)
        elif self.departures:
            self.verdict = (1, f"departures: {len(self.departures)} conformance test(s) failed", [])
        else:
            self.verdict = (0, f"conformant: {self.judged} conformance test(s) judged, none failed", [])
        session.exitstatus = self.verdict[0]

    def pytest_terminal_summary(self, terminalreporter):
        if self.is_worker or not (self.verdict or self.stopped or self.isolated):
            return
        tr = terminalreporter
        tr.write_sep("-", "conformance gate")
        for nodeid, sticky in sorted(self.isolated.items()):
            tr.write_line(f"sticky device error in {nodeid}: worker {sticky.node.gateway.id} ended, xdist replaces it")
        if self.stopped:
            tr.write_line(self.stopped)
        not_run = self.not_run()
        if not_run:
            tr.write_line(f"{len(not_run)} test(s) did not run (the report's INCOMPLETE section lists all):")
            for nodeid in not_run[:MAX_NAMED]:
                tr.write_line(f"  {nodeid}")
            if len(not_run) > MAX_NAMED:
                tr.write_line(f"  and {len(not_run) - MAX_NAMED} more")
        if self.verdict:
            code, headline, why = self.verdict
            tr.write_line(f"exit {code}: {headline}" + (":" if why else ""))
            for line in why[:MAX_NAMED]:
                tr.write_line(f"  {line}")
            if len(why) > MAX_NAMED:
                tr.write_line(f"  and {len(why) - MAX_NAMED} more")
