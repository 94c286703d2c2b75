"""SSD (ssd.pytorch's MultiBoxLoss: matching, encoding, hard negative mining; rules S1..S14)."""

from conformance.family import Family
from reference import ssd
from reference.cases import SsdCase

FAMILY = Family.of("ssd", "SSD", SsdCase, ssd, probe="S2_truth_equals_prior")
