"""ONNX Runtime as a third framework: the loop-free torch losses exported to ONNX graphs.

The graphs are exported from implementations/torch_batched.py with the dynamo exporter
(``torch.onnx.export(..., dynamo=True)``, opset 18, translated by onnxscript). Why dynamo:
it handles the scatter reductions ("amax" -> ScatterElements reduction="max"), TopK with a
symbolic k and dynamic axes out of the box, and it is the exporter torch 2.13 maintains; the
TorchScript exporter is deprecated. Everything data-dependent is inside the graph: best
anchor / best prior (ArgMax), cell and truth winners (ScatterElements "max" over the row
index), masks, hard negative mining (TopK over the whole row, then a scatter of ranks),
masked means, and the closed-form gradients (Y9, S11: MSE, clamped BCE through sigmoid,
smooth L1, softmax CE). The graph inputs are the raw case arrays and the settings only: YOLO
x (B, A*(C+5), G, G), targets (T, 6), anchors (A, 2), img_dim (), then ignore_thres,
obj_scale, noobj_scale, log_clamp (0-d, the graph's dtype); SSD loc (B, P, 4), conf (B, P, C),
priors (P, 4), the truths padded to (B, M, 4) with labels (B, M) and a validity mask (B, M)
(padding only packs the ragged list; it computes nothing), then threshold (0-d, the graph's
dtype), neg_pos (0-d int64) and variances (2,). All those axes are dynamic, YOLO's C included
(the graph reads it off x as x.shape[1] // A - 5).

One graph per (loss, dtype), serving every shape, C and settings: its ONNX bytes are cached
on disk (LOSS_ONNX_CACHE, default ~/.cache/loss-onnx, keyed by the source of this module and
of torch_batched and torch's version; an export costs 15-30 s on 2 cores), and its
InferenceSession in memory per device. CUDA is unverified (no GPU where this was written).

Divergences that ONNX semantics could force, and how they are avoided:
- Duplicate-index ScatterND/ScatterElements writes are unspecified in ONNX; every scatter
  with possible duplicates uses reduction "max" (Y5, S4: last row / later truth wins), so
  the result does not depend on the write order.
- TopK breaks ties by lowest index per the ONNX spec; whether a runtime honours that at the
  mining cut-off is admissible either way (S10: any choice of tied priors).
- ArgMax keeps the first maximal index (select_last_index = 0), the spec's tie rule (Y2, S3).
- Export runs with ``optimize=False``: torch 2.13's exporter optimizer deletes ``x + 1e-16``
  as if adding zero, which drops the epsilons of Y2's wh-IoU and Y6's size targets (tw moved
  by 1e-16 / (gw / aw), 3.6e-13 on a 2⁻¹² box; the suite caught it in float64).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch.export import Dim

from implementations import torch_batched as tb
from reference.cases import SsdCase, YoloCase
from reference.outputs import SSD_GRAD_KEYS, SSD_LOSS_KEYS, SSD_TARGET_KEYS, YOLO_LOSS_KEYS, YOLO_TARGET_KEYS, layer_key

# The graphs' outputs, in order: one YOLOv3 layer's keys (each becomes "layer{k}.{key}") and SSD's keys.
YOLO_LAYER_KEYS = ("output", *YOLO_TARGET_KEYS, *YOLO_LOSS_KEYS, "grad")
SSD_KEYS = (*SSD_TARGET_KEYS, "decoded", *SSD_LOSS_KEYS, *SSD_GRAD_KEYS)
YOLO_INPUTS = ("x", "targets", "anchors", "img_dim", "ignore_thres", "obj_scale", "noobj_scale", "log_clamp")
SSD_INPUTS = ("loc", "conf", "priors", "truths", "labels", "valid", "threshold", "neg_pos", "variances")


class YoloGraph(torch.nn.Module):
    """One YOLOv3 layer: YOLO_INPUTS -> YOLO_LAYER_KEYS, gradient included; C from x."""

    def forward(self, x, targets, anchors, img_dim, ignore_thres, obj_scale, noobj_scale, log_clamp):
        out = tb.yolo_layer(x, targets, anchors, None, img_dim, ignore_thres, obj_scale, noobj_scale, log_clamp)
        out["grad"] = tb.yolo_grad(x, out["p"], out, obj_scale, noobj_scale, log_clamp)
        return tuple(out[k] for k in YOLO_LAYER_KEYS)


class SsdGraph(torch.nn.Module):
    """MultiBoxLoss: SSD_INPUTS -> SSD_KEYS, gradients included."""

    def forward(self, loc, conf, priors, truths, labels, valid, threshold, neg_pos, variances):
        out = tb.multibox_loss(
            loc, conf, priors, truths, labels, valid, threshold, neg_pos, (variances[0], variances[1]), topk=True
        )
        out["grad_loc"], out["grad_conf"] = tb.ssd_grad(loc, conf, out)
        return tuple(out[k] for k in SSD_KEYS)


def _settings_args(values, dtype: torch.dtype) -> tuple:
    return tuple(torch.tensor(float(v), dtype=dtype) for v in values)


def yolo_inputs(settings, dtype: str) -> dict:
    """The settings inputs of a YOLO graph as NumPy 0-d arrays of ``dtype``."""
    npd = np.dtype(dtype)
    return {
        "ignore_thres": np.asarray(settings.ignore_thres, dtype=npd),
        "obj_scale": np.asarray(settings.obj_scale, dtype=npd),
        "noobj_scale": np.asarray(settings.noobj_scale, dtype=npd),
        "log_clamp": np.asarray(settings.log_clamp, dtype=npd),
    }


def ssd_inputs(settings, dtype: str) -> dict:
    """The settings inputs of an SSD graph: threshold and variances in ``dtype``, neg_pos int64."""
    npd = np.dtype(dtype)
    return {
        "threshold": np.asarray(settings.threshold, dtype=npd),
        "neg_pos": np.asarray(settings.neg_pos, dtype=np.int64),
        "variances": np.asarray(tuple(settings.variances), dtype=npd).reshape(2),
    }


def yolo_example(dtype: str):
    """Example inputs and dynamic axes of YoloGraph: B, A*(C+5), A, G and T dynamic (T may be 0)."""
    td = getattr(torch, dtype)
    b, ac, a = Dim("B", min=1), Dim("AC5", min=6), Dim("A", min=1)
    g, t = Dim("G", min=1), Dim("T", min=0)
    args = (
        torch.zeros((2, 2 * (3 + 5), 3, 3), dtype=td),
        torch.tensor([[0, 0, 0.5, 0.5, 0.2, 0.2], [1, 0, 0.2, 0.7, 0.3, 0.1], [1, 0, 0.9, 0.1, 0.1, 0.4]], dtype=td),
        torch.tensor([[10.0, 13.0], [30.0, 61.0]], dtype=td),
        torch.tensor(96.0, dtype=td),
        *_settings_args((0.5, 1.0, 100.0, -100.0), td),
    )
    dims = ({0: b, 1: ac, 2: g, 3: g}, {0: t}, {0: a}, None, None, None, None, None)
    return args, dims


def ssd_example(dtype: str):
    """Example inputs and dynamic axes of SsdGraph: B, P, C and M (truth slots) dynamic."""
    td = getattr(torch, dtype)
    b, p, c, m = Dim("B", min=1), Dim("P", min=2), Dim("C", min=2), Dim("M", min=1)
    args = (
        torch.zeros((2, 5, 4), dtype=td),
        torch.zeros((2, 5, 3), dtype=td),
        torch.full((5, 4), 0.5, dtype=td),
        torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=td).repeat(2, 3, 1),
        torch.zeros((2, 3), dtype=td),
        torch.ones((2, 3), dtype=torch.bool),
        torch.tensor(0.5, dtype=td),
        torch.tensor(3, dtype=torch.long),
        torch.tensor([0.1, 0.2], dtype=td),
    )
    dims = ({0: b, 1: p}, {0: b, 1: p, 2: c}, {0: p}, {0: b, 1: m}, {0: b, 1: m}, {0: b, 1: m}, None, None, None)
    return args, dims


def export_model(module: torch.nn.Module, args: tuple, dims: tuple, input_names, output_names) -> bytes:
    """Serialized ONNX model of ``module`` traced at ``args`` with dynamic axes ``dims``."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module.eval(),
            args,
            dynamo=True,
            dynamic_shapes=dims,
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=18,
            optimize=False,
            verbose=False,
        )
    return program.model_proto.SerializeToString()


def _cache_dir() -> Path:
    return Path(os.environ.get("LOSS_ONNX_CACHE", Path.home() / ".cache" / "loss-onnx"))


def _source_digest() -> str:
    """Hash of everything a graph depends on: this module, torch_batched and torch's version."""
    h = hashlib.sha256(torch.__version__.encode())
    for module in (tb, sys.modules[__name__]):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()[:16]


def cached_model(key: tuple, build) -> bytes:
    """Model bytes for ``key`` from the disk cache, else ``build()`` and store them."""
    name = hashlib.sha256(repr((key, _source_digest())).encode()).hexdigest()[:24]
    path = _cache_dir() / f"{name}.onnx"
    if path.exists():
        return path.read_bytes()
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError:
        pass  # a read-only home only costs the re-export
    return data


_SESSIONS: dict = {}


def _providers(device: str) -> list:
    if device == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


# loss -> (graph module, its example inputs and dynamic axes, input names, output names)
GRAPHS = {
    "yolo": (YoloGraph, yolo_example, YOLO_INPUTS, YOLO_LAYER_KEYS),
    "ssd": (SsdGraph, ssd_example, SSD_INPUTS, SSD_KEYS),
}


def session(loss: str, dtype: str, device: str = "cpu") -> ort.InferenceSession:
    """The cached InferenceSession of ``loss``'s graph ("yolo": one layer, "ssd") in
    ``dtype`` on ``device``; one graph serves every shape, C and settings."""
    key = (loss, dtype)
    if (key, device) not in _SESSIONS:
        graph, example, inputs, outputs = GRAPHS[loss]
        model = cached_model(key, lambda: export_model(graph(), *example(dtype), inputs, outputs))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        _SESSIONS[(key, device)] = ort.InferenceSession(model, options, providers=_providers(device))
    return _SESSIONS[(key, device)]


class OnnxRuntimeAdapter:
    """ONNX Runtime conformance adapter; gradients come from closed forms in the graph."""

    name = "onnxruntime"
    devices = ("cpu", "cuda")
    dtypes = ("float32", "float64")

    def skip_reason(self, device: str) -> str | None:
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDAExecutionProvider here"
        return None

    def yolo(self, case: YoloCase, device: str, dtype: str) -> dict:
        from reference.yolo import validate

        validate(case)
        npd = np.dtype(dtype)
        targets = np.asarray(case.targets, dtype=npd).reshape(-1, 6)
        settings = yolo_inputs(case.settings, dtype)
        sess = session("yolo", dtype, device)
        result, total = {}, 0.0
        for k, (x, anchors) in enumerate(zip(case.outputs, case.anchors)):
            x = np.asarray(x, dtype=npd)
            anchors = np.asarray(anchors, dtype=npd)
            values = sess.run(
                None,
                {
                    "x": x,
                    "targets": targets,
                    "anchors": anchors,
                    "img_dim": np.asarray(case.img_dim, dtype=npd),
                    **settings,
                },
            )
            for key, value in zip(YOLO_LAYER_KEYS, values):
                result[layer_key(k, key)] = value
            total = total + values[YOLO_LAYER_KEYS.index("loss_total")]
        result["loss_total"] = np.asarray(total)
        return result

    def ssd(self, case: SsdCase, device: str, dtype: str) -> dict:
        from reference.ssd import validate

        validate(case)
        npd = np.dtype(dtype)
        boxes, labels, valid = tb.pad_truths(case.truths, npd)
        loc = np.asarray(case.loc, dtype=npd)
        sess = session("ssd", dtype, device)
        values = sess.run(
            None,
            {
                "loc": loc,
                "conf": np.asarray(case.conf, dtype=npd),
                "priors": np.asarray(case.priors, dtype=npd),
                "truths": boxes,
                "labels": labels,
                "valid": valid,
                **ssd_inputs(case.settings, dtype),
            },
        )
        return dict(zip(SSD_KEYS, values))


adapter = OnnxRuntimeAdapter()
