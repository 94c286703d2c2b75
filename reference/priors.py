"""SSD prior (default) boxes, spec rule S1.

Priors are float64 centre-size rows (cx, cy, w, h), normalised to [0, 1] of the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PriorConfig:
    """One SSD prior layout.

    feature_maps: side f of each square feature map (cells per row), e.g. 38.
    steps: pixels per cell of each map; the grid pitch is image_size / step (not f).
    image_size: side of the square input image, pixels.
    min_sizes, max_sizes: box sides in pixels per map (s = min/image, s' = sqrt(s * max/image)).
    aspect_ratios: per map, the extra ratios r; each adds (s*sqrt(r), s/sqrt(r)) and its transpose.
    clip: clamp every centre-size value into [0, 1].
    """

    feature_maps: tuple
    steps: tuple
    image_size: float
    min_sizes: tuple
    max_sizes: tuple
    aspect_ratios: tuple
    clip: bool = True


VOC_300 = PriorConfig(
    feature_maps=(38, 19, 10, 5, 3, 1),
    steps=(8, 16, 32, 64, 100, 300),
    image_size=300,
    min_sizes=(30, 60, 111, 162, 213, 264),
    max_sizes=(60, 111, 162, 213, 264, 315),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    clip=True,
)

COCO_300 = PriorConfig(
    feature_maps=(38, 19, 10, 5, 3, 1),
    steps=(8, 16, 32, 64, 100, 300),
    image_size=300,
    min_sizes=(21, 45, 99, 153, 207, 261),
    max_sizes=(45, 99, 153, 207, 261, 315),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    clip=True,
)


def box_sizes(config: PriorConfig, k: int) -> np.ndarray:
    """(nb, 2) float64 (w, h) of the boxes of every cell of map k, in the S1 order."""
    s = config.min_sizes[k] / config.image_size
    s_prime = np.sqrt(s * (config.max_sizes[k] / config.image_size))
    sizes = [(s, s), (s_prime, s_prime)]
    for r in config.aspect_ratios[k]:
        root = np.sqrt(r)
        sizes += [(s * root, s / root), (s / root, s * root)]
    return np.array(sizes, dtype=np.float64)


def map_priors(config: PriorConfig, k: int) -> np.ndarray:
    """(f*f*nb, 4) float64 centre-size priors of map k, ordered row i, column j, box."""
    f = config.feature_maps[k]
    f_k = config.image_size / config.steps[k]
    centres = (np.arange(f, dtype=np.float64) + 0.5) / f_k
    cy, cx = np.meshgrid(centres, centres, indexing="ij")  # (f, f), row i then column j
    sizes = box_sizes(config, k)
    nb = len(sizes)
    out = np.empty((f, f, nb, 4), dtype=np.float64)
    out[..., 0] = cx[:, :, None]
    out[..., 1] = cy[:, :, None]
    out[..., 2:] = sizes[None, None]
    return out.reshape(-1, 4)


def prior_boxes(config: PriorConfig) -> np.ndarray:
    """(P, 4) float64 centre-size priors of every map in order (P = 8732 for SSD300)."""
    priors = np.concatenate([map_priors(config, k) for k in range(len(config.feature_maps))])
    if config.clip:
        np.clip(priors, 0.0, 1.0, out=priors)
    return priors
