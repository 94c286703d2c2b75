"""YOLOv3 keys and shapes (the adapter protocol) and the fixture format of its inputs."""

from __future__ import annotations

import numpy as np

from conformance.family import missing_or_malformed, scalar
from reference.cases import YoloCase, YoloSettings
from reference.outputs import YOLO_LOSS_KEYS, YOLO_TARGET_KEYS, layer_key

INPUT_KEY = "input.targets"  # the input array only YOLO fixture files hold
SETTINGS = ("ignore_thres", "obj_scale", "noobj_scale", "log_clamp")


def parts(case: YoloCase) -> dict:
    """{part: keys} for ``case``'s layer count: per layer targets (and the decoded output),
    losses (and loss_total), the gradient of loss_total."""
    layers = range(len(case.outputs))
    return {
        "targets": tuple(layer_key(k, n) for k in layers for n in YOLO_TARGET_KEYS + ("output",)),
        "losses": tuple(layer_key(k, n) for k in layers for n in YOLO_LOSS_KEYS) + ("loss_total",),
        "gradients": tuple(layer_key(k, "grad") for k in layers),
    }


def shapes(case: YoloCase) -> dict:
    """{key: shape}: per layer (B, A, G, G) masks and targets, tcls (B, A, G, G, C), output
    (B, A*G*G, 5 + C), grad shaped like the head output, () for losses."""
    result = {"loss_total": ()}
    for k, (x, anchors) in enumerate(zip(case.outputs, case.anchors)):
        B, _, H, W = np.shape(x)
        grid = (B, len(anchors), H, W)
        result.update({layer_key(k, n): grid for n in YOLO_TARGET_KEYS})
        result.update({layer_key(k, n): () for n in YOLO_LOSS_KEYS})
        result[layer_key(k, "tcls")] = grid + (case.num_classes,)
        result[layer_key(k, "output")] = (B, len(anchors) * H * W, 5 + case.num_classes)
        result[layer_key(k, "grad")] = tuple(np.shape(x))
    return result


def to_arrays(case: YoloCase) -> dict:
    """The ``input.*`` arrays of ``case``: outputs.k, anchors.k, targets, num_classes, img_dim, settings.*."""
    out = {f"input.outputs.{k}": x for k, x in enumerate(case.outputs)}
    out.update({f"input.anchors.{k}": a for k, a in enumerate(case.anchors)})
    out.update(
        {
            "input.targets": np.asarray(case.targets, dtype=np.float64).reshape(-1, 6),
            "input.num_classes": scalar(case.num_classes, np.int64),
            "input.img_dim": scalar(case.img_dim, np.float64),
        }
    )
    out.update({f"input.settings.{k}": scalar(getattr(case.settings, k), np.float64) for k in SETTINGS})
    return out


def input_problem(arrays) -> str | None:
    """Why ``arrays`` are not a YOLO case's inputs, or None."""
    layers = sorted(k for k in arrays if k.startswith("input.outputs."))
    required = ["input.targets"] + (
        ["input.outputs.0"] if not layers else [k.replace("outputs", "anchors") for k in layers]
    )
    required += [f"input.outputs.{k}" for k in range(len(layers))]
    scalars = ["input.num_classes", "input.img_dim"] + [f"input.settings.{k}" for k in SETTINGS]
    return missing_or_malformed(arrays, required, scalars, integers=("input.num_classes",))


def from_arrays(arrays, name: str = "") -> YoloCase:
    """Inverse of ``to_arrays``."""
    f64 = lambda k: np.asarray(arrays[k], dtype=np.float64)  # noqa: E731
    n = sum(1 for k in arrays if k.startswith("input.outputs."))
    settings = YoloSettings(*(float(arrays[f"input.settings.{k}"]) for k in SETTINGS))
    return YoloCase(
        outputs=tuple(f64(f"input.outputs.{k}") for k in range(n)),
        anchors=tuple(f64(f"input.anchors.{k}") for k in range(n)),
        targets=f64("input.targets"),
        num_classes=int(arrays["input.num_classes"]),
        img_dim=float(arrays["input.img_dim"]),
        settings=settings,
        name=name,
    )
