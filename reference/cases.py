"""The inputs of one conformance case: exactly what every implementation receives.

Arrays are float64 NumPy arrays. A case cast with ``astype`` holds values exactly
representable in that dtype but is still float64, so the reference and the
implementation under test see the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from reference.precision import DTYPES, precision  # noqa: F401  (DTYPES: what round_to accepts)


def round_to(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` rounded to ``dtype`` (a Precision or its name) and returned as float64.

    Any other ``dtype`` raises SettingError (field ``dtype``).
    """
    return precision(dtype).round(a)


@dataclass(frozen=True)
class YoloSettings:
    """YOLOv3 loss settings; the defaults are the seed's."""

    ignore_thres: float = 0.5  # wh-IoU strictly above this clears noobj_mask
    obj_scale: float = 1.0
    noobj_scale: float = 100.0
    log_clamp: float = -100.0  # BCE clamps log(p) and log(1 - p) from below at this value


@dataclass(frozen=True)
class YoloCase:
    """One YOLOv3 case: one or more detection layers sharing targets.

    outputs: per layer, raw head output x of shape (B, A*(C+5), G, G).
    anchors: per layer, (A, 2) anchor (w, h) in pixels.
    targets: (T, 6) rows [sample_idx, class, cx, cy, w, h]; cx..h normalised to [0, 1].
    img_dim: side of the padded square input image, pixels.
    """

    outputs: tuple
    anchors: tuple
    targets: np.ndarray
    num_classes: int
    img_dim: float
    settings: YoloSettings = field(default_factory=YoloSettings)
    name: str = ""

    def astype(self, dtype) -> "YoloCase":
        return replace(
            self,
            outputs=tuple(round_to(x, dtype) for x in self.outputs),
            anchors=tuple(round_to(a, dtype) for a in self.anchors),
            targets=round_to(self.targets, dtype),
        )


@dataclass(frozen=True)
class SsdSettings:
    """SSD MultiBoxLoss settings; the defaults are the seed's."""

    threshold: float = 0.5  # overlap strictly below this is background
    neg_pos: int = 3  # negatives per positive in hard negative mining
    variances: tuple = (0.1, 0.2)


@dataclass(frozen=True)
class SsdCase:
    """One SSD case.

    loc: (B, P, 4) predicted offsets. conf: (B, P, C) logits, class 0 is background.
    priors: (P, 4) centre-size (cx, cy, w, h), normalised.
    truths: B arrays, each (n_i, 5) rows [xmin, ymin, xmax, ymax, label]; label is the
        0-based object class (the loss uses label + 1), n_i may be 0.
    """

    loc: np.ndarray
    conf: np.ndarray
    priors: np.ndarray
    truths: tuple
    settings: SsdSettings = field(default_factory=SsdSettings)
    name: str = ""

    @property
    def num_classes(self) -> int:
        return self.conf.shape[-1]

    def astype(self, dtype) -> "SsdCase":
        return replace(
            self,
            loc=round_to(self.loc, dtype),
            conf=round_to(self.conf, dtype),
            priors=round_to(self.priors, dtype),
            truths=tuple(round_to(t, dtype) for t in self.truths),
        )
