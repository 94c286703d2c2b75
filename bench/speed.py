"""Forward + backward time of every implementation against the seed-style torch one, in one run.

Run: ``python bench/speed.py [--device cpu|cuda] [--rounds N] [--warmup N] [--quick]
[--only ssd|yolo] [--threads N] [--reference]``. Not a test (tests/test_bench.py runs it once,
small, and checks only that every row is there with a finite ratio).

Cases (the builders of bench/reference_vs_torch.py):
- SSD300: COCO priors (8732), B=32, C=81, 8 objects per image (--quick: B=4, C=21, 3 objects).
- YOLOv3-416: G = 13, 26, 52 with the standard anchors, B=16, C=80, 8 objects per image
  (--quick: B=2, C=20, 3 objects).

Implementations, all float32 on the one ``--device``; inputs are made before timing, so that
what is timed is the implementation's own forward and backward:
- torch-seed (the baseline): ``torch_ssd.multibox_loss`` / ``torch_yolo.yolo_loss``, then the
  backward pass (``torch.autograd.grad`` to the head outputs: no gradient accumulation).
- torch-batched: the loop-free ``torch_batched.multibox_loss`` (truths padded before timing) /
  ``yolo_layer`` on each layer, then the backward pass.
- onnxruntime: the exported graph (forward and closed-form gradients), one ``run_with_iobinding``
  per graph call, inputs already on the device, outputs left there; the session gets the
  graph from onnx_runtime's disk cache and, on CPU, torch's thread count.
- triton, when ``implementations.triton_loss`` is importable: through its adapter (the call
  includes validation, copies to the device and the results back to NumPy); the table says so.
- reference (``--reference``): the NumPy float64 reference on the CPU, for context.

Timing: ``--warmup`` rounds (default 1 on CPU, 3 on CUDA), then ``--rounds`` rounds; each round
runs every implementation once, starting one further along each round, so that load coming and
going on a shared machine hits all of them. On CUDA every timed call is bracketed by
``torch.cuda.synchronize()`` (CUDA: not yet run on a GPU). Printed per implementation: the
median milliseconds, ``seed/this`` (the median of torch-seed over this median: the speed-up) and
the range of the per-round speed-ups. Exit status 1 if an implementation that can run here failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from bench.reference_vs_torch import ssd_case, yolo_case  # noqa: E402
from implementations import AdapterLoadError, load, torch_ssd, torch_yolo  # noqa: E402
from implementations import torch_batched as tb  # noqa: E402
from reference import ssd as reference_ssd  # noqa: E402
from reference import yolo as reference_yolo  # noqa: E402

TRITON_SPEC = "implementations.triton_loss:adapter"


class Unavailable(Exception):
    """An implementation that cannot run on this device here; the message says why."""


def _tensor(a, device: str, grad: bool = False) -> torch.Tensor:
    """NumPy array -> float32 tensor on ``device``, a leaf requiring grad if ``grad``."""
    return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device).requires_grad_(grad)


def seed_torch(loss: str, case, device: str, threads: int):
    """(what is timed, step) of the seed-style torch loss: forward + autograd.grad."""
    if loss == "ssd":
        loc, conf = _tensor(case.loc, device, True), _tensor(case.conf, device, True)
        priors = _tensor(case.priors, device)
        truths = [_tensor(np.reshape(t, (-1, 5)), device) for t in case.truths]

        def step():
            out = torch_ssd.multibox_loss(loc, conf, priors, truths, case.settings)
            torch.autograd.grad(out["loss_l"] + out["loss_c"], (loc, conf))

        return "torch_ssd.multibox_loss + backward to loc, conf", step
    xs = [_tensor(x, device, True) for x in case.outputs]
    anchors = [_tensor(a, device) for a in case.anchors]
    targets = _tensor(case.targets, device)

    def step():
        _, total = torch_yolo.yolo_loss(xs, anchors, targets, case.num_classes, float(case.img_dim), case.settings)
        torch.autograd.grad(total, xs)

    return "torch_yolo.yolo_loss + backward to the 3 outputs", step


def batched_torch(loss: str, case, device: str, threads: int):
    """(what is timed, step) of the loop-free torch loss: forward + autograd.grad."""
    s = case.settings
    if loss == "ssd":
        loc, conf = _tensor(case.loc, device, True), _tensor(case.conf, device, True)
        priors = _tensor(case.priors, device)
        boxes, labels, valid = tb.pad_truths(case.truths, np.float32)
        boxes, labels = _tensor(boxes, device), _tensor(labels, device)
        valid = torch.as_tensor(valid, device=device)

        def step():
            out = tb.multibox_loss(loc, conf, priors, boxes, labels, valid, s.threshold, s.neg_pos, tuple(s.variances))
            torch.autograd.grad(out["loss_l"] + out["loss_c"], (loc, conf))

        return "torch_batched.multibox_loss (truths padded) + backward", step
    xs = [_tensor(x, device, True) for x in case.outputs]
    anchors = [_tensor(a, device) for a in case.anchors]
    targets = _tensor(case.targets, device)

    settings = (s.ignore_thres, s.obj_scale, s.noobj_scale, s.log_clamp)

    def step():
        layers = [
            tb.yolo_layer(x, targets, a, case.num_classes, float(case.img_dim), *settings) for x, a in zip(xs, anchors)
        ]
        torch.autograd.grad(sum(layer["loss_total"] for layer in layers), xs)

    return "torch_batched.yolo_layer x 3 + backward", step


def _ort_session(loss: str, device: str, threads: int):
    """InferenceSession of onnx_runtime's float32 graph for ``loss`` (from its disk cache)."""
    import onnxruntime as ort

    from implementations import onnx_runtime as ox

    graph, example, inputs, outputs = ox.GRAPHS[loss]
    # The key onnx_runtime.session uses, so that its cached export serves.
    model = ox.cached_model((loss, "float32"), lambda: ox.export_model(graph(), *example("float32"), inputs, outputs))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if device == "cpu":
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
    else:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    session = ort.InferenceSession(model, options, providers=providers)
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise Unavailable(f"onnxruntime put the graph on {session.get_providers()}, not CUDA")
    return session, outputs


def onnx_runtime(loss: str, case, device: str, threads: int):
    """(what is timed, step) of the ONNX Runtime graph on inputs bound to the device beforehand."""
    try:
        import onnxruntime as ort

        from implementations import onnx_runtime as ox
    except ImportError as exc:
        raise Unavailable(f"not importable: {exc}") from exc
    reason = ox.adapter.skip_reason(device)
    if reason:
        raise Unavailable(reason)
    session, outputs = _ort_session(loss, device, threads)
    f32 = np.float32
    if loss == "ssd":
        boxes, labels, valid = tb.pad_truths(case.truths, f32)
        feeds = [
            {
                "loc": case.loc.astype(f32),
                "conf": case.conf.astype(f32),
                "priors": case.priors.astype(f32),
                "truths": boxes,
                "labels": labels,
                "valid": valid,
                **ox.ssd_inputs(case.settings, "float32"),
            }
        ]
    else:
        targets = np.reshape(case.targets, (-1, 6)).astype(f32)
        feeds = [
            {
                "x": x.astype(f32),
                "targets": targets,
                "anchors": a.astype(f32),
                "img_dim": np.asarray(case.img_dim, dtype=f32),
                **ox.yolo_inputs(case.settings, "float32"),
            }
            for x, a in zip(case.outputs, case.anchors)
        ]
    bindings = []
    for feed in feeds:
        binding = session.io_binding()
        for name, value in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), device, 0))
        for name in outputs:
            binding.bind_output(name, device, 0)
        bindings.append(binding)

    def step():
        for binding in bindings:
            session.run_with_iobinding(binding)

    calls = "1 call" if loss == "ssd" else "3 calls"
    return f"ORT graph fwd + closed-form grads ({calls}), IO bound on {device}", step


def triton(loss: str, case, device: str, threads: int):
    """(what is timed, step) of the Triton implementation's adapter call, when it exists."""
    module = TRITON_SPEC.partition(":")[0]
    if importlib.util.find_spec(module) is None:
        raise Unavailable(f"{module} does not exist here")
    try:
        adapter = load(TRITON_SPEC)
    except AdapterLoadError as exc:
        raise Unavailable(str(exc)) from exc
    reason = adapter.skip_reason(device)
    if reason:
        raise Unavailable(reason)
    if not hasattr(adapter, loss):
        raise Unavailable(f"{adapter.name} has no {loss}()")
    if "float32" not in adapter.dtypes:
        raise Unavailable(f"{adapter.name} does not compute in float32")
    call = getattr(adapter, loss)
    return f"ADAPTER CALL adapter.{loss}(case): validation, copies, NumPy out", lambda: call(case, device, "float32")


def reference(loss: str, case, device: str, threads: int):
    """(what is timed, step) of the NumPy float64 reference (always on the CPU)."""
    if loss == "ssd":
        return "reference.ssd.evaluate (NumPy float64, CPU)", lambda: reference_ssd.evaluate(case)
    return "reference.yolo.evaluate (NumPy float64, CPU)", lambda: reference_yolo.evaluate(case, prob_dtype="float32")


IMPLEMENTATIONS = (
    ("torch-seed", seed_torch),
    ("torch-batched", batched_torch),
    ("onnxruntime", onnx_runtime),
    ("triton", triton),
)


def timed_rounds(steps: list, rounds: int, warmup: int, sync) -> tuple[list, dict]:
    """Milliseconds per round for each of ``steps``, and {index: error} of those that raised.

    ``warmup`` untimed rounds first. Round r starts at step r mod n and runs every step once;
    ``sync`` is called right before and right after each timed call (CUDA: synchronize).
    A step that raises is dropped from the rounds that follow.
    """
    times = [[] for _ in steps]
    failed = {}
    for r in range(warmup + rounds):
        for i in [(r + k) % len(steps) for k in range(len(steps))]:
            if i in failed:
                continue
            try:
                sync()
                start = time.perf_counter()
                steps[i]()
                sync()
                elapsed = (time.perf_counter() - start) * 1e3
            except Exception as exc:  # a broken implementation is reported, the others still run
                failed[i] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                continue
            if r >= warmup:
                times[i].append(elapsed)
    return times, failed


def bench_case(loss: str, label: str, case, impls, device: str, threads: int, rounds: int, warmup: int) -> bool:
    """Time ``impls`` on one case and print its table; False if an implementation failed."""
    prepared, rows = [], {}
    for name, prepare in impls:
        try:
            what, step = prepare(loss, case, device, threads)
        except Unavailable as exc:
            rows[name] = ("-", "-", "-", f"skipped: {exc}")
            continue
        except Exception as exc:
            rows[name] = ("-", "-", "-", f"FAILED preparing: {type(exc).__name__}: {exc}".splitlines()[0][:200])
            continue
        prepared.append((name, what, step))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times, failed = timed_rounds([step for _, _, step in prepared], rounds, warmup, sync)
    seed = times[0] if prepared and prepared[0][0] == "torch-seed" and 0 not in failed else None
    for i, (name, what, _) in enumerate(prepared):
        if i in failed:
            rows[name] = ("-", "-", "-", f"FAILED: {failed[i]}")
            continue
        median = statistics.median(times[i])
        if seed is None:
            ratio, spread = "nan", "-"
        else:
            per_round = [s / t for s, t in zip(seed, times[i])]
            ratio = f"{statistics.median(seed) / median:.2f}"
            spread = f"{min(per_round):.2f}-{max(per_round):.2f}"
        rows[name] = (f"{median:.2f}", ratio, spread, what)
    print(f"\n{label}")
    print(f"{'implementation':15s} {'median ms':>10s} {'seed/this':>10s} {'per round':>13s}  what is timed")
    for name, _ in impls:
        median, ratio, spread, what = rows[name]
        print(f"{name:15s} {median:>10s} {ratio:>10s} {spread:>13s}  {what}")
    return not any(what.startswith("FAILED") for _, _, _, what in rows.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where every implementation runs (default: cuda if available, else cpu)",
    )
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 1 on CPU, 3 on CUDA)")
    parser.add_argument("--quick", action="store_true", help="small batches and class counts, for a smoke run")
    parser.add_argument("--only", choices=("ssd", "yolo"), help="one loss only")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch (and ONNX Runtime on CPU) intra-op threads (default 1 on CPU; on CUDA torch's default)",
    )
    parser.add_argument(
        "--reference", action="store_true", help="also time the NumPy float64 reference (on the CPU), for context"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: must be at least 1")
    warmup = args.warmup if args.warmup is not None else (3 if args.device == "cuda" else 1)
    if args.threads is not None or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    threads = torch.get_num_threads()

    where = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {threads} threads"
    print(f"torch {torch.__version__} on {where}; float32; {args.rounds} rounds after {warmup} warm-up")
    print(
        "seed/this: median of torch-seed / median of this (> 1: faster than seed-style torch); "
        "per round: range of the rounds' ratios"
    )
    ssd_sizes, yolo_sizes = ((4, 21, 3), (2, 20, 3)) if args.quick else ((32, 81, 8), (16, 80, 8))
    impls = IMPLEMENTATIONS + ((("reference", reference),) if args.reference else ())
    cases = []
    if args.only in (None, "ssd"):
        b, c, n = ssd_sizes
        cases.append(("ssd", f"SSD300 COCO priors (8732) B={b} C={c}, {n} obj/img", ssd_case(b, c, n)))
    if args.only in (None, "yolo"):
        b, c, n = yolo_sizes
        cases.append(("yolo", f"YOLOv3-416 G=13,26,52 B={b} C={c}, {n} obj/img", yolo_case(b, c, n)))
    ok = True
    for loss, label, case in cases:
        ok &= bench_case(loss, label, case, impls, args.device, threads, args.rounds, warmup)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
