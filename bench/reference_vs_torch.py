"""Time the NumPy reference against the torch CPU float32 implementation on the same inputs.

Run: ``python bench/reference_vs_torch.py [--quick] [--repeat N]``. Not a test.

Cases (forward with gradients; ``--repeat`` rounds after one warm-up, each round running the
reference and then torch once, so that load coming and going on a shared machine hits both;
prints the median of each, the ratio of the medians and the range of the per-round ratios):
- SSD300: COCO priors (8732), B=32, C=81, 8 objects per image (--quick: B=4, C=21, 3 objects).
- YOLOv3-416: three layers G = 13, 26, 52 with the standard anchors, B=16, C=80, 8 objects
  per image (--quick: B=2, C=20, 3 objects).
The reference is ``reference.ssd.evaluate`` / ``reference.yolo.evaluate`` (float64, with its
validation and analytic gradients); torch is ``torch_ssd.multibox_loss`` /
``torch_yolo.yolo_loss`` plus ``backward()`` on tensors made once before timing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from implementations import torch_ssd, torch_yolo
from reference import ssd as reference_ssd
from reference import yolo as reference_yolo
from reference.cases import SsdCase, YoloCase
from reference.priors import COCO_300, prior_boxes

YOLO_LAYERS = (
    (13, ((116, 90), (156, 198), (373, 326))),
    (26, ((30, 61), (62, 45), (59, 119))),
    (52, ((10, 13), (16, 30), (33, 23))),
)


def ssd_case(batch: int, num_classes: int, objects: int, seed: int = 0) -> SsdCase:
    """SSD300 COCO priors, normal loc and conf, ``objects`` random truths per image."""
    rng = np.random.default_rng(seed)
    priors = prior_boxes(COCO_300)
    truths = []
    for _ in range(batch):
        xy = rng.uniform(0, 0.7, (objects, 2))
        wh = rng.uniform(0.05, 0.3, (objects, 2))
        truths.append(np.column_stack([xy, xy + wh, rng.integers(0, num_classes - 1, objects)]))
    case = SsdCase(
        loc=rng.normal(size=(batch, len(priors), 4)),
        conf=rng.normal(size=(batch, len(priors), num_classes)),
        priors=priors,
        truths=tuple(truths),
    )
    return case.astype("float32")


def yolo_case(batch: int, num_classes: int, objects: int, seed: int = 0) -> YoloCase:
    """YOLOv3-416 three layers, normal logits, ``objects`` random targets per image."""
    rng = np.random.default_rng(seed)
    outputs = tuple(rng.normal(size=(batch, 3 * (num_classes + 5), g, g)) for g, _ in YOLO_LAYERS)
    anchors = tuple(np.array(a, dtype=np.float64) for _, a in YOLO_LAYERS)
    n = batch * objects
    targets = np.column_stack(
        [
            np.repeat(np.arange(batch), objects),
            rng.integers(0, num_classes, n),
            rng.uniform(0, 1, (n, 2)),
            rng.uniform(0.02, 0.6, (n, 2)),
        ]
    )
    case = YoloCase(outputs=outputs, anchors=anchors, targets=targets, num_classes=num_classes, img_dim=416.0)
    return case.astype("float32")


def interleaved_ms(fns, repeat: int) -> list:
    """Wall times in milliseconds, one list per function of ``fns``, over ``repeat`` rounds.

    One warm-up call each first; every round then calls each function once, in turn.
    """
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ms in zip(fns, times):
            start = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - start) * 1e3)
    return times


def torch_ssd_step(case: SsdCase):
    """A closure running the torch SSD loss forward and backward on float32 CPU tensors."""
    loc0, conf0 = torch.tensor(case.loc, dtype=torch.float32), torch.tensor(case.conf, dtype=torch.float32)
    priors = torch.tensor(case.priors, dtype=torch.float32)
    truths = [torch.tensor(t, dtype=torch.float32) for t in case.truths]

    def step():
        loc, conf = loc0.clone().requires_grad_(), conf0.clone().requires_grad_()
        out = torch_ssd.multibox_loss(loc, conf, priors, truths, case.settings)
        (out["loss_l"] + out["loss_c"]).backward()

    return step


def torch_yolo_step(case: YoloCase):
    """A closure running the torch YOLOv3 loss forward and backward on float32 CPU tensors."""
    xs0 = [torch.tensor(x, dtype=torch.float32) for x in case.outputs]
    anchors = [torch.tensor(a, dtype=torch.float32) for a in case.anchors]
    targets = torch.tensor(case.targets, dtype=torch.float32)

    def step():
        xs = [x.clone().requires_grad_() for x in xs0]
        _, total = torch_yolo.yolo_loss(xs, anchors, targets, case.num_classes, case.img_dim, case.settings)
        total.backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a fast check")
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds per case")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: NumPy's loss code is single-threaded, "
        "and spinning threads on a busy shared machine distort the timing)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ssd_sizes, yolo_sizes = ((4, 21, 3), (2, 20, 3)) if args.quick else ((32, 81, 8), (16, 80, 8))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}, repeat {args.repeat}")
    print(f"{'case':44s} {'reference ms':>13s} {'torch ms':>10s} {'ref/torch':>10s} {'per round':>12s}")
    rows = [
        (
            f"SSD300 COCO B={ssd_sizes[0]} C={ssd_sizes[1]} {ssd_sizes[2]} obj/img",
            ssd_case(*ssd_sizes),
            reference_ssd.evaluate,
            torch_ssd_step,
        ),
        (
            f"YOLOv3-416 x3 B={yolo_sizes[0]} C={yolo_sizes[1]} {yolo_sizes[2]} obj/img",
            yolo_case(*yolo_sizes),
            lambda c: reference_yolo.evaluate(c, prob_dtype="float32"),
            torch_yolo_step,
        ),
    ]
    for label, case, reference_fn, torch_fn in rows:
        ref, tor = interleaved_ms([lambda: reference_fn(case), torch_fn(case)], args.repeat)
        ref_ms, torch_ms = statistics.median(ref), statistics.median(tor)
        rounds = [r / t for r, t in zip(ref, tor)]
        print(
            f"{label:44s} {ref_ms:13.1f} {torch_ms:10.1f} {ref_ms / torch_ms:10.2f} "
            f"{min(rounds):5.2f}-{max(rounds):<5.2f}"
        )


if __name__ == "__main__":
    main()
