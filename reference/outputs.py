"""The output keys of each loss: one schema, read by the reference, the implementations'
adapters and the suite (shapes, dtypes and where each is compared: spec/outputs.md).

YOLOv3 keys are per detection layer, ``layer_key(k, name)`` = ``"layer{k}.{name}"`` for
name in ("output",) + YOLO_TARGET_KEYS + YOLO_LOSS_KEYS + ("grad",); ``loss_total`` is
also the sum over layers. SSD keys are SSD_TARGET_KEYS, "decoded", SSD_LOSS_KEYS and
SSD_GRAD_KEYS.
"""

from __future__ import annotations

YOLO_TARGET_KEYS = ("obj_mask", "noobj_mask", "tx", "ty", "tw", "th", "tconf", "tcls", "class_mask", "iou_scores")
YOLO_LOSS_KEYS = (
    "loss_x",
    "loss_y",
    "loss_w",
    "loss_h",
    "loss_conf_obj",
    "loss_conf_noobj",
    "loss_conf",
    "loss_cls",
    "loss_total",
)
SSD_TARGET_KEYS = ("matched", "conf_t", "loc_t", "pos_mask", "neg_mask")
SSD_LOSS_KEYS = ("loss_l", "loss_c")
SSD_GRAD_KEYS = ("grad_loc", "grad_conf")


def layer_key(k: int, name: str) -> str:
    """The key of YOLOv3 output ``name`` of detection layer ``k``: "layer{k}.{name}"."""
    return f"layer{k}.{name}"
