"""ONNX Runtime as a third framework: the loop-free torch losses exported to ONNX graphs.

The graphs are exported from implementations/torch_batched.py with ``torch.onnx.export``
(EXPORTER below says which exporter and why). Everything data-dependent is inside the graph:
best anchor / best prior (ArgMax), cell and truth winners (ScatterElements with reduction
"max" over the row index), masks, hard negative mining (TopK over the whole row, then a
scatter of ranks), masked means, and the closed-form gradients (Y9, S11). The graph inputs
are the raw case arrays only: YOLO x (B, A*(C+5), G, G), targets (T, 6), anchors (A, 2);
SSD loc, conf, priors, and the truths padded to (B, M, 4) with labels (B, M) and a validity
mask (B, M). Settings (img_dim, thresholds, scales, variances) are constants of the graph.

Graphs and InferenceSessions are cached per (loss, shape signature, dtype, settings).

Divergences that ONNX semantics could force, and how they are avoided:
- Duplicate-index ScatterND/ScatterElements writes are unspecified in ONNX; every scatter
  with possible duplicates uses reduction "max" (Y5, S4: last row / later truth wins), so
  the result does not depend on the write order.
- TopK breaks ties by lowest index per the ONNX spec; whether a runtime honours that at the
  mining cut-off is admissible either way (S10: any choice of tied priors).
- ArgMax keeps the first maximal index (select_last_index = 0), the spec's tie rule (Y2, S3).
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnxruntime as ort
import torch

from implementations import torch_batched as tb
from reference.cases import SsdCase, YoloCase

EXPORTER = "dynamo"
YOLO_LAYER_KEYS = ("output", "obj_mask", "noobj_mask", "tx", "ty", "tw", "th", "tconf", "tcls",
                   "class_mask", "iou_scores", "loss_x", "loss_y", "loss_w", "loss_h",
                   "loss_conf_obj", "loss_conf_noobj", "loss_conf", "loss_cls", "loss_total",
                   "grad")
SSD_KEYS = ("matched", "conf_t", "loc_t", "pos_mask", "neg_mask", "decoded", "loss_l", "loss_c",
            "grad_loc", "grad_conf")
YOLO_INPUTS = ("x", "targets", "anchors")
SSD_INPUTS = ("loc", "conf", "priors", "truths", "labels", "valid")
_NP_DTYPES = {"float64": np.float64, "float32": np.float32}


class YoloGraph(torch.nn.Module):
    """One YOLOv3 layer: (x, targets, anchors) -> the YOLO_LAYER_KEYS, gradient included."""

    def __init__(self, num_classes: int, img_dim: float, settings):
        super().__init__()
        self.num_classes, self.img_dim, self.s = num_classes, float(img_dim), settings

    def forward(self, x, targets, anchors):
        s = self.s
        out = tb.yolo_layer(x, targets, anchors, self.num_classes, self.img_dim,
                            s.ignore_thres, s.obj_scale, s.noobj_scale, s.log_clamp)
        grad = tb.yolo_grad(x, out["p"], out, s.obj_scale, s.noobj_scale, s.log_clamp)
        out["grad"] = grad
        return tuple(out[k] for k in YOLO_LAYER_KEYS)


class SsdGraph(torch.nn.Module):
    """MultiBoxLoss: (loc, conf, priors, truths, labels, valid) -> the SSD_KEYS, gradients included."""

    def __init__(self, settings):
        super().__init__()
        self.s = settings

    def forward(self, loc, conf, priors, truths, labels, valid):
        s = self.s
        out = tb.multibox_loss(loc, conf, priors, truths, labels, valid, s.threshold,
                               s.neg_pos, tuple(s.variances), topk=True)
        out["grad_loc"], out["grad_conf"] = tb.ssd_grad(loc, conf, out)
        return tuple(out[k] for k in SSD_KEYS)


def export_model(module: torch.nn.Module, args: tuple, input_names, output_names) -> bytes:
    """Serialized ONNX model of ``module`` traced at the example ``args`` (fixed shapes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, dynamo=True, input_names=list(input_names),
                                    output_names=list(output_names), opset_version=18,
                                    optimize=True, verbose=False)
    return program.model_proto.SerializeToString()


_SESSIONS: dict = {}


def _session(key, build) -> ort.InferenceSession:
    """The cached InferenceSession for ``key``; ``build()`` returns the model bytes on a miss."""
    if key not in _SESSIONS:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        _SESSIONS[key] = ort.InferenceSession(build(), options, providers=_providers(key[-1]))
    return _SESSIONS[key]


def _providers(device: str) -> list:
    if device == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def yolo_session(x_shape, t_rows, a_count, num_classes, img_dim, settings, dtype, device="cpu"):
    """Cached session of one YOLO layer for this shape signature, dtype and settings."""
    key = ("yolo", tuple(x_shape), t_rows, a_count, num_classes, float(img_dim), settings,
           dtype, device)

    def build():
        td = tb._TORCH_DTYPES[dtype]
        args = (torch.zeros(x_shape, dtype=td), torch.zeros((t_rows, 6), dtype=td),
                torch.ones((a_count, 2), dtype=td))
        return export_model(YoloGraph(num_classes, img_dim, settings), args, YOLO_INPUTS,
                            YOLO_LAYER_KEYS)
    return _session(key, build)


def ssd_session(loc_shape, num_classes, truth_slots, settings, dtype, device="cpu"):
    """Cached session of the SSD loss for this shape signature, dtype and settings."""
    b, p, _ = loc_shape
    key = ("ssd", b, p, num_classes, truth_slots, settings, dtype, device)

    def build():
        td = tb._TORCH_DTYPES[dtype]
        args = (torch.zeros((b, p, 4), dtype=td), torch.zeros((b, p, num_classes), dtype=td),
                torch.full((p, 4), 0.5, dtype=td),
                torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=td).repeat(b, truth_slots, 1),
                torch.zeros((b, truth_slots), dtype=td),
                torch.ones((b, truth_slots), dtype=torch.bool))
        return export_model(SsdGraph(settings), args, SSD_INPUTS, SSD_KEYS)
    return _session(key, build)


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
        npd = _NP_DTYPES[dtype]
        targets = np.asarray(case.targets, dtype=npd).reshape(-1, 6)
        result, total = {}, 0.0
        for k, (x, anchors) in enumerate(zip(case.outputs, case.anchors)):
            x = np.asarray(x, dtype=npd)
            anchors = np.asarray(anchors, dtype=npd)
            sess = yolo_session(x.shape, len(targets), len(anchors), case.num_classes,
                                case.img_dim, case.settings, dtype, device)
            values = sess.run(None, {"x": x, "targets": targets, "anchors": anchors})
            for key, value in zip(YOLO_LAYER_KEYS, values):
                result[f"layer{k}.{key}"] = value
            total = total + values[YOLO_LAYER_KEYS.index("loss_total")]
        result["loss_total"] = np.asarray(total)
        return result

    def ssd(self, case: SsdCase, device: str, dtype: str) -> dict:
        from reference.ssd import validate
        validate(case)
        npd = _NP_DTYPES[dtype]
        boxes, labels, valid = tb.pad_truths(case.truths, npd)
        loc = np.asarray(case.loc, dtype=npd)
        sess = ssd_session(loc.shape, case.num_classes, boxes.shape[1], case.settings, dtype,
                           device)
        values = sess.run(None, {"loc": loc, "conf": np.asarray(case.conf, dtype=npd),
                                 "priors": np.asarray(case.priors, dtype=npd),
                                 "truths": boxes, "labels": labels, "valid": valid})
        return dict(zip(SSD_KEYS, values))


adapter = OnnxRuntimeAdapter()
