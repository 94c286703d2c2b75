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
``dtype`` on ``device``, computes, and returns NumPy arrays under the output keys.
A missing method means "does not cover this loss"; a missing key means "does not
compute this output": both are reported as skipped with that reason, never as passed.

The keys (reference/outputs.py), with shapes, dtypes and where each is compared, are in
reference/spec/outputs.md:
  YOLOv3: ``layer_key(k, name)`` for name in output, YOLO_TARGET_KEYS, YOLO_LOSS_KEYS, grad; and loss_total.
  SSD:    SSD_TARGET_KEYS, decoded, SSD_LOSS_KEYS, SSD_GRAD_KEYS.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from reference.cases import SsdCase, YoloCase
from reference.outputs import (  # noqa: F401  (the key schema, re-exported for adapters)
    SSD_GRAD_KEYS,
    SSD_LOSS_KEYS,
    SSD_TARGET_KEYS,
    YOLO_LOSS_KEYS,
    YOLO_TARGET_KEYS,
    layer_key,
)
from reference.precision import DTYPES  # noqa: F401

LOSSES = ("yolo", "ssd")  # the adapter methods of the bundled loss families


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
