"""The adapter protocol: how any implementation plugs into the conformance suite.

An adapter is any object with these attributes (duck typed; ``Adapter`` below is the
typing.Protocol that documents them):

``name``     short name shown in test ids and reports, e.g. ``"torch"``.
``devices``  devices the implementation can run on at all, e.g. ``("cpu", "cuda")``.
``dtypes``   dtypes it computes in: any of ``"float64"``, ``"float32"``, ``"float16"``,
             ``"bfloat16"``.
``skip_reason(device) -> str | None``
             why it cannot run on ``device`` here and now (no GPU, no provider), else None.
``yolo(case, device, dtype) -> dict``   optional: YOLOv3 outputs for a ``YoloCase``.
``ssd(case, device, dtype) -> dict``    optional: SSD outputs for an ``SsdCase``.

Each call receives one case whose arrays are float64 holding values exactly
representable in ``dtype`` (the suite rounds them first); the adapter casts them to
``dtype`` on ``device``, computes, and returns NumPy arrays under the keys below.
A missing method means "does not cover this loss"; a missing key means "does not
compute this output": both are reported as skipped with that reason, never as passed.

YOLOv3 keys (``k`` is the layer index, 0-based, in the order of ``case.outputs``):
  layer{k}.output          (B, A*G*G, 5+C)  decoded layer output: box in pixels, conf, cls
  layer{k}.obj_mask        (B, A, G, G) bool
  layer{k}.noobj_mask      (B, A, G, G) bool
  layer{k}.tx .ty .tw .th  (B, A, G, G) float, targets (compared where obj_mask is set)
  layer{k}.tconf           (B, A, G, G) float
  layer{k}.tcls            (B, A, G, G, C) float (multi-hot where targets share a cell)
  layer{k}.class_mask      (B, A, G, G) float, 1 where argmax of predicted cls == label
  layer{k}.iou_scores      (B, A, G, G) float, metric only (+1 pixel convention)
  layer{k}.loss_x .loss_y .loss_w .loss_h .loss_conf_obj .loss_conf_noobj .loss_conf
  layer{k}.loss_cls .loss_total                                  () float
  layer{k}.grad            like case.outputs[k]: d loss_total / d x for this layer's x
  loss_total               () float, the sum of every layer's loss_total

SSD keys:
  matched     (B, P) int    truth index per prior after forced matching (-1: image has none)
  conf_t      (B, P) int    0 background, label + 1 otherwise
  loc_t       (B, P, 4)     encoded targets (compared where conf_t > 0)
  pos_mask    (B, P) bool   conf_t > 0
  neg_mask    (B, P) bool   hard negatives: mined and not positive
  decoded     (B, P, 4)     loc decoded against the priors, corner form
  loss_l loss_c  () float   normalised by the batch's positive count
  grad_loc    (B, P, 4)     d (loss_l + loss_c) / d loc
  grad_conf   (B, P, C)     d (loss_l + loss_c) / d conf
"""
from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from reference.cases import SsdCase, YoloCase

DTYPES = ("float64", "float32", "float16", "bfloat16")

YOLO_TARGET_KEYS = ("obj_mask", "noobj_mask", "tx", "ty", "tw", "th", "tconf", "tcls",
                    "class_mask", "iou_scores")
YOLO_LOSS_KEYS = ("loss_x", "loss_y", "loss_w", "loss_h", "loss_conf_obj",
                  "loss_conf_noobj", "loss_conf", "loss_cls", "loss_total")
SSD_TARGET_KEYS = ("matched", "conf_t", "loc_t", "pos_mask", "neg_mask")
SSD_LOSS_KEYS = ("loss_l", "loss_c")
SSD_GRAD_KEYS = ("grad_loc", "grad_conf")


@runtime_checkable
class Adapter(Protocol):
    name: str
    devices: Sequence[str]
    dtypes: Sequence[str]

    def skip_reason(self, device: str) -> str | None: ...


class YoloAdapter(Adapter, Protocol):
    def yolo(self, case: YoloCase, device: str, dtype: str) -> Mapping[str, np.ndarray]: ...


class SsdAdapter(Adapter, Protocol):
    def ssd(self, case: SsdCase, device: str, dtype: str) -> Mapping[str, np.ndarray]: ...
