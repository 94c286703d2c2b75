"""Float64 NumPy reference for the YOLOv3 and SSD training losses (see SPEC.md)."""

from .cases import SsdCase, SsdSettings, YoloCase, YoloSettings
from .errors import BatchIndexError, CoordinateError, InvalidInputError, LabelError, SettingError, ShapeError

__all__ = [
    "YoloCase",
    "YoloSettings",
    "SsdCase",
    "SsdSettings",
    "InvalidInputError",
    "ShapeError",
    "CoordinateError",
    "LabelError",
    "BatchIndexError",
    "SettingError",
]
