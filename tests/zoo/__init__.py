"""The zoo: outsider ports of the seeds and deliberately wrong or legitimately different
versions of them, to check that the conformance suite's verdicts can be trusted
(tests/test_zoo.py, bench/zoo.py)."""
