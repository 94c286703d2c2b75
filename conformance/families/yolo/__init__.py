"""YOLOv3 (PyTorch-YOLOv3's YOLOLayer and build_targets, spec rules Y1..Y14)."""

from conformance.families.yolo import compare, corpus, limitations, schema, strategies
from conformance.family import Family
from reference import yolo
from reference.cases import YoloCase

FAMILY = Family(
    name="yolo",
    title="YOLOv3",
    case_type=YoloCase,
    evaluate=yolo.evaluate,
    validate=yolo.validate,
    parts=schema.parts,
    shapes=schema.shapes,
    compare=compare.compare,
    cases=strategies.yolo_cases(),
    corpus=corpus.cases,
    to_arrays=schema.to_arrays,
    from_arrays=schema.from_arrays,
    input_problem=schema.input_problem,
    input_key="input.targets",
    probe="Y1_decode",
    limitations=limitations.LIMITATIONS,
)
