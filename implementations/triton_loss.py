"""The Triton implementation of both losses (triton_yolo.py, triton_ssd.py) behind the adapter protocol.

Device "cpu" runs the kernels through Triton's interpreter, device "cuda" compiles them, in
the same process. TRITON_INTERPRET is not needed; set to 1 when triton is imported, it turns
triton's own library into interpreted functions, which no CUDA kernel can call: "cpu" still
runs, "cuda" is skipped with that reason.

How the switch works (triton 3.x): ``@triton.jit`` decides at decoration time, from
TRITON_INTERPRET, whether it builds a compiled ``JITFunction`` or an ``InterpretedFunction``,
and a kernel calls its helpers by global name. So ``load(name, interpret)`` loads a module
from its file once per mode, as a private module object (``implementations.triton_yolo__interpreted``
/ ``__native``, likewise for SSD and for triton_common, the helpers both share; registered in
sys.modules), with ``INTERPRET`` set in the module's namespace before its code runs; each copy
decorates its kernels and helpers with the matching class, and each kernel module binds the
helpers of triton_common's copy in its own mode as its globals, so it calls only its own kind.
The kernels use no ``tl.sum`` / ``tl.argmax`` / ``tl.cumsum`` (themselves @jit functions, built
compiled at triton's import unless TRITON_INTERPRET was set): they call ``tl.reduce`` /
``tl.associative_scan`` with triton's own combine functions, which the interpreter maps to
NumPy's sum, argmax and cumsum.

Side effects, all Triton's own: while an interpreted kernel runs, the interpreter patches
``triton.language`` and restores it afterwards (not thread-safe: do not compile CUDA kernels
in another thread at that moment), and it adds its own globals (NumPy and the like) to the
interpreted module copies' namespaces. Importing this module imports neither triton nor torch
CUDA state and changes nothing else; triton is imported on the first call.

CUDA status: the native path has not run on a GPU here. Its kernels are the interpreted ones
with CUDA-only choices made for accuracy (libdevice exp/log, IEEE division, no FMA
contraction) and register-sized tiles; tests/implementations/test_triton.py compiles them for
sm_90 with the wheel's ptxas when no GPU is present.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np

from reference import ssd as reference_ssd
from reference import yolo as reference_yolo
from reference.cases import SsdCase, YoloCase

_MODULES = ("triton_yolo", "triton_ssd")


@functools.cache
def _triton_error() -> str | None:
    """Why triton cannot be imported here, or None."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as exc:  # an incompatible install may raise anything
        return f"triton is not importable: {type(exc).__name__}: {exc}"
    return None


@functools.cache
def load(name: str, interpret: bool):
    """implementations/<name>.py as a private module built in one mode: INTERPRET set in its
    namespace before its code runs, registered in sys.modules as implementations.<name>__interpreted
    or __native. One copy per (name, mode): the kernel modules load triton_common through this."""
    full_name = f"{__package__ or 'implementations'}.{name}__{'interpreted' if interpret else 'native'}"
    spec = importlib.util.spec_from_file_location(full_name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    module.INTERPRET = interpret
    sys.modules[full_name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def kernels(interpret: bool) -> dict:
    """{"triton_yolo": module, "triton_ssd": module}, built as interpreted or as native kernels."""
    return {name: load(name, interpret) for name in _MODULES}


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def _float32_overflow(device: str):
    """The interpreter computes with NumPy, which warns where float32 overflows to inf (exp(t) of
    a large logit, the decoded box); CUDA gives the same inf silently. Silenced on "cpu" only."""
    return np.errstate(over="ignore") if device == "cpu" else contextlib.nullcontext()


class TritonAdapter:
    """Adapter for the Triton YOLOv3 and SSD losses: interpreted on CPU, compiled on CUDA; float32."""

    name = "triton"
    devices = ("cpu", "cuda")
    dtypes = ("float32",)

    def skip_reason(self, device: str) -> str | None:
        """Why ``device`` cannot run here, or None."""
        if device not in self.devices:
            return f"device {device!r} is not supported by the triton adapter"
        error = _triton_error()
        if error:
            return error
        if device == "cuda":
            import torch
            import triton.language as tl
            from triton.runtime.jit import JITFunction

            if not torch.cuda.is_available():
                return "torch.cuda.is_available() is False"
            if not isinstance(tl.standard._sum_combine, JITFunction):
                return (
                    "TRITON_INTERPRET=1 when triton was imported: its library is interpreted, no CUDA kernel compiles"
                )
        return None

    def _tensor(self, a, device: str, dtype: str):
        import torch

        if dtype != "float32":
            raise ValueError(f"dtype = {dtype!r}: the triton adapter computes in float32 only")
        return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32), device=device)

    def yolo(self, case: YoloCase, device: str, dtype: str) -> dict:
        """Every YOLO key of implementations/adapter.py for ``case`` (see triton_yolo)."""
        import torch

        case = reference_yolo.checked(case)
        yolo = kernels(device == "cpu")["triton_yolo"]
        targets = self._tensor(np.reshape(case.targets, (-1, 6)), device, dtype)
        total = torch.zeros(1, dtype=torch.float32, device=device)
        result = {}
        for k, (x, anchors) in enumerate(zip(case.outputs, case.anchors)):
            with _float32_overflow(device):
                layer = yolo.yolo_layer(
                    self._tensor(x, device, dtype),
                    self._tensor(anchors, device, dtype),
                    targets,
                    case.num_classes,
                    case.img_dim,
                    case.settings,
                    total,
                )
            result.update({f"layer{k}.{key}": _numpy(value) for key, value in layer.items()})
        result["loss_total"] = _numpy(total[0])
        return result

    def ssd(self, case: SsdCase, device: str, dtype: str) -> dict:
        """Every SSD key of implementations/adapter.py for ``case`` (see triton_ssd)."""
        import torch

        from implementations.torch_batched import pad_truths

        case = reference_ssd.checked(case)
        ssd = kernels(device == "cpu")["triton_ssd"]
        boxes, labels, valid = pad_truths(case.truths)  # padding boxes are finite; valid rows come first
        s = case.settings
        with _float32_overflow(device):
            out = ssd.multibox_loss(
                self._tensor(case.loc, device, dtype),
                self._tensor(case.conf, device, dtype),
                self._tensor(case.priors, device, dtype),
                self._tensor(boxes, device, dtype),
                torch.as_tensor(labels.astype(np.int32), device=device),
                torch.as_tensor(valid.sum(axis=1, dtype=np.int32), device=device),
                s.threshold,
                s.neg_pos,
                tuple(s.variances),
            )
        return {key: _numpy(value) for key, value in out.items()}


adapter = TritonAdapter()
