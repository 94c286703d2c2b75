"""pytest's own --junitxml carries each failure's message and repro command, also with -n 2."""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# the message's last lines: "reproduce with:", then the command on a line of its own
REPRO = re.compile(
    r"reproduce with:\n(E)? +python -m conformance repro \S+\.npz "
    r"--impl double_loss:DoubleLoss --device cpu --dtype float64$",
    re.M,
)

ADAPTER = '''
from reference import yolo as ry


class DoubleLoss:
    """YOLOv3 only, float64: the reference with the total loss doubled."""
    name, devices, dtypes = "double-loss", ("cpu",), ("float64",)

    def skip_reason(self, device):
        return None

    def yolo(self, case, device, dtype):
        out = ry.evaluate(case, prob_dtype=dtype)
        return {**out, "loss_total": 2 * out["loss_total"]}
'''


def test_junit_xml_carries_message_and_repro_command_with_xdist(tmp_path):
    (tmp_path / "double_loss.py").write_text(ADAPTER)
    xml = tmp_path / "junit.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "conformance",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        "--hypothesis-profile",
        "ci",
        "--impl",
        "double_loss:DoubleLoss",
        "--junitxml",
        str(xml),
        "-k",
        "(test_fixture and Y5_two_targets_one_cell) or (test_property and yolo)",
        "--report-dir",
        str(tmp_path / "reports"),
    ]
    done = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(tmp_path)}
    )
    assert done.returncode == 1, (done.stdout + done.stderr)[-3000:]
    failed = {case.get("name"): case for case in ET.parse(xml).iter("testcase") if case.find("failure") is not None}
    # one fixture test and one Hypothesis property; the lead may rename the ids, so match loosely
    assert len(failed) == 2 and any("Y5_two_targets_one_cell" in n for n in failed), sorted(failed)
    for name, case in failed.items():
        failure = case.find("failure")
        for where, text in (("message attribute", failure.get("message")), ("text", failure.text)):
            assert "loss_total: Tensor-likes are not close!" in text, (name, where, text[:2000])
            assert REPRO.search(text), (name, where, text[-2000:])  # in the text, after pytest's "E" prefix
        # the conformance plugin's user_properties become the test case's JUnit properties
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props == {"impl": "double-loss", "device": "cpu", "dtype": "float64", "family": "yolo"}, (name, props)
