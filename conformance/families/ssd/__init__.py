"""SSD (ssd.pytorch's MultiBoxLoss: matching, encoding, hard negative mining; rules S1..S14)."""

from conformance.families.ssd import compare, corpus, limitations, schema, strategies
from conformance.family import Family
from reference import ssd
from reference.cases import SsdCase

FAMILY = Family(
    name="ssd",
    title="SSD",
    case_type=SsdCase,
    evaluate=ssd.evaluate,
    validate=ssd.validate,
    parts=schema.parts,
    shapes=schema.shapes,
    compare=compare.compare,
    cases=strategies.ssd_cases(),
    corpus=corpus.cases,
    to_arrays=schema.to_arrays,
    from_arrays=schema.from_arrays,
    input_problem=schema.input_problem,
    input_key="input.loc",
    probe="S2_truth_equals_prior",
    limitations=limitations.LIMITATIONS,
)
