"""YOLOv3 (PyTorch-YOLOv3's YOLOLayer and build_targets, spec rules Y1..Y14)."""

from conformance.family import Family
from reference import yolo
from reference.cases import YoloCase

FAMILY = Family.of("yolo", "YOLOv3", YoloCase, yolo, probe="Y1_decode")
