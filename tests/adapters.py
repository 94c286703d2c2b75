"""Adapters the project's own tests run the suite on: the float64 reference, and the
reference with one thing changed. Each is a class (the loader instantiates it) taken as

    pytest conformance --impl tests.adapters:FirstRowWins

with the repository root importable (tests/processes.py puts it on PYTHONPATH). ``name``
is what the suite's header, test ids and report show. UNLOADABLE lists adapter modules
that cannot be loaded, for the loader's and the plugin's tests.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

from reference import ssd as rs
from reference import yolo as ry


class YoloReference:
    """The float64 YOLOv3 reference on the CPU, and no SSD: passes. Keys ending in one of
    ``drop`` are left out of what it returns."""

    name, devices, dtypes, drop = "yolo-reference", ("cpu",), ("float64",), ()

    def skip_reason(self, device):
        return None

    def yolo(self, case, device, dtype):
        return self.kept(ry.evaluate(case, prob_dtype=dtype))

    def kept(self, out: dict) -> dict:
        """``out`` without the keys that end in one of ``drop``."""
        return {k: v for k, v in out.items() if not k.endswith(self.drop)}


class Reference(YoloReference):
    """The float64 references of both losses on the CPU: passes."""

    name = "reference"

    def ssd(self, case, device, dtype):
        return self.kept(rs.evaluate(case))


class FirstRowWins(YoloReference):
    """YOLOv3 only: targets taken in reverse order, so where two share a cell the first row
    wins (Y5 says the last); no class targets (tcls) returned."""

    name, drop = "first-row", (".tcls",)

    def yolo(self, case, device, dtype):
        return super().yolo(replace(case, targets=case.targets[::-1].copy()), device, dtype)


class DoubleLoss(Reference):
    """The reference with YOLOv3's loss_total and SSD's loss_c doubled: fails every case
    whose loss is not 0."""

    name = "double-loss"

    def yolo(self, case, device, dtype):
        out = super().yolo(case, device, dtype)
        return {**out, "loss_total": 2 * out["loss_total"]}

    def ssd(self, case, device, dtype):
        out = super().ssd(case, device, dtype)
        return {**out, "loss_c": 2 * out["loss_c"]}


class Omitting(Reference):
    """The reference without some target, loss and gradient keys of each loss."""

    name, drop = "omitting", (".obj_mask", ".tx", ".tcls", ".loss_x", ".loss_cls", "conf_t", "loss_c", "grad_conf")


class Misshapen(Reference):
    """The reference with YOLOv3's layer0.obj_mask one column short."""

    name = "misshapen"

    def yolo(self, case, device, dtype):
        out = super().yolo(case, device, dtype)
        return {**out, "layer0.obj_mask": out["layer0.obj_mask"][..., :-1]}


class Gpu(Reference):
    """Declares the CPU and CUDA but finds no CUDA device."""

    name, devices = "gpu", ("cpu", "cuda")

    def skip_reason(self, device):
        return "no CUDA device here" if device == "cuda" else None


class Broken(Reference):
    """skip_reason raises: a driver that cannot be asked."""

    name = "broken"

    def skip_reason(self, device):
        raise RuntimeError("driver not loaded")


class BadDeclaration(Reference):
    """devices is a str, not a sequence of str."""

    name, devices = "bad-declaration", "cpu"


class Hang(Reference):
    """SSD: the reference; YOLOv3: never returns."""

    name = "hang"

    def yolo(self, case, device, dtype):
        time.sleep(3600)


class Crash(Reference):
    """SSD: the reference; YOLOv3: the process dies (as in a segfaulting kernel)."""

    name = "crash"

    def yolo(self, case, device, dtype):
        os._exit(3)


# (id, source of a module that cannot serve as ``<module>:adapter``, what the error says;
# {module} stands for the module's name)
UNLOADABLE = [
    ("raises-at-import", "1 / 0\n", "importing {module} raised ZeroDivisionError: division by zero"),
    ("syntax-error", "def broken(:\n", "importing {module} raised SyntaxError: invalid syntax"),
    (
        "missing-dependency",
        "import no_such_dependency_xyz\n",
        "importing {module} raised ModuleNotFoundError: No module named 'no_such_dependency_xyz'",
    ),
    (
        "factory-needs-argument",
        "def adapter(path):\n    return None\n",
        "calling adapter() with no argument raised TypeError: adapter() missing 1 required positional argument",
    ),
    (
        "factory-raises",
        "def adapter():\n    raise OSError('no licence')\n",
        "calling adapter() with no argument raised OSError: no licence",
    ),
    ("no-attribute", "x = 1\n", "module {module} has no attribute 'adapter'"),
    ("not-an-adapter", "adapter = 42\n", "the adapter lacks name, devices, dtypes, skip_reason"),
]
