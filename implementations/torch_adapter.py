"""The PyTorch implementations (torch_yolo, torch_ssd) behind the adapter protocol.

``adapter.yolo(case, device, dtype)`` and ``adapter.ssd(case, device, dtype)`` validate the
NumPy case with the reference's ``validate`` (typed errors, Y13 / S14), move its arrays to
``device`` in ``dtype``, compute, back-propagate with autograd and return every key of
implementations/adapter.py as NumPy arrays: masks bool, indices int64, floats in ``dtype``.
"""

from __future__ import annotations

import numpy as np
import torch

from implementations import torch_ssd, torch_yolo
from reference import ssd as reference_ssd
from reference import yolo as reference_yolo
from reference.cases import SsdCase, YoloCase
from reference.outputs import layer_key


def _numpy(t: torch.Tensor) -> np.ndarray:
    """Tensor on any device -> NumPy array of the same dtype (bool, int64 or float)."""
    return t.detach().cpu().numpy()


class TorchAdapter:
    """Adapter for the PyTorch YOLOv3 and SSD losses on CPU and CUDA, float64 and float32."""

    name = "torch"
    devices = ("cpu", "cuda")
    dtypes = ("float64", "float32")

    def skip_reason(self, device: str) -> str | None:
        """Why ``device`` cannot run here, or None."""
        if device == "cuda" and not torch.cuda.is_available():
            return "torch.cuda.is_available() is False"
        if device not in self.devices:
            return f"device {device!r} is not supported by the torch adapter"
        return None

    def _tensor(self, a, device: str, dtype: str, grad: bool = False) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(a, dtype=np.float64)).to(device=device, dtype=getattr(torch, dtype))
        return t.requires_grad_(grad)

    def yolo(self, case: YoloCase, device: str, dtype: str) -> dict:
        """Every YOLO key of implementations/adapter.py for ``case`` (see torch_yolo)."""
        reference_yolo.validate(case)
        xs = [self._tensor(x, device, dtype, grad=True) for x in case.outputs]
        anchors = [self._tensor(a, device, dtype) for a in case.anchors]
        targets = self._tensor(np.reshape(case.targets, (-1, 6)), device, dtype)
        layers, total = torch_yolo.yolo_loss(xs, anchors, targets, case.num_classes, float(case.img_dim), case.settings)
        total.backward()
        result = {}
        for k, (x, layer) in enumerate(zip(xs, layers)):
            for key, value in layer.items():
                result[layer_key(k, key)] = _numpy(value)
            result[layer_key(k, "grad")] = _numpy(x.grad)
        result["loss_total"] = _numpy(total)
        return result

    def ssd(self, case: SsdCase, device: str, dtype: str) -> dict:
        """Every SSD key of implementations/adapter.py for ``case`` (see torch_ssd)."""
        reference_ssd.validate(case)
        loc = self._tensor(case.loc, device, dtype, grad=True)
        conf = self._tensor(case.conf, device, dtype, grad=True)
        priors = self._tensor(case.priors, device, dtype)
        truths = [self._tensor(np.reshape(t, (-1, 5)), device, dtype) for t in case.truths]
        out = torch_ssd.multibox_loss(loc, conf, priors, truths, case.settings)
        (out["loss_l"] + out["loss_c"]).backward()
        result = {key: _numpy(value) for key, value in out.items()}
        result["grad_loc"], result["grad_conf"] = _numpy(loc.grad), _numpy(conf.grad)
        return result


adapter = TorchAdapter()
