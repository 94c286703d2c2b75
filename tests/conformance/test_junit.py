"""pytest's own --junitxml carries each failure's message and repro command, also with -n 2."""

import re
import xml.etree.ElementTree as ET

from tests.processes import run_pytest

# the message's last lines: "reproduce with:", then the command on a line of its own
REPRO = re.compile(
    r"reproduce with:\n(E)? +python -m conformance repro \S+\.npz "
    r"--impl tests\.adapters:DoubleLoss --device cpu --dtype float64$",
    re.M,
)


def test_junit_xml_carries_message_and_repro_command_with_xdist(tmp_path):
    xml = tmp_path / "junit.xml"
    code, out = run_pytest(
        "conformance",
        "-n",
        "2",
        "--hypothesis-profile",
        "ci",
        "--impl",
        "tests.adapters:DoubleLoss",
        "--junitxml",
        xml,
        "-k",
        "(test_fixture and Y5_two_targets_one_cell) or (test_property and yolo-plain)",
        "--report-dir",
        tmp_path / "reports",
    )
    assert code == 1, out[-3000:]
    failed = {case.get("name"): case for case in ET.parse(xml).iter("testcase") if case.find("failure") is not None}
    # one fixture test and one Hypothesis property; the lead may rename the ids, so match loosely
    assert len(failed) == 2 and any("Y5_two_targets_one_cell" in n for n in failed), sorted(failed)
    for name, case in failed.items():
        failure = case.find("failure")
        # the element text holds the whole report; pytest >= 9.2 shortens the message
        # attribute to its first lines (ending "[+N more lines; full report in element text]")
        message = failure.get("message")
        assert "loss_total: Tensor-likes are not close!" in message, (name, message[:2000])
        assert REPRO.search(message) or "full report in element text" in message, (name, message[-2000:])
        assert "loss_total: Tensor-likes are not close!" in failure.text, (name, failure.text[:2000])
        assert REPRO.search(failure.text), (name, failure.text[-2000:])  # after pytest's "E" prefix
        # the conformance plugin's user_properties become the test case's JUnit properties
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert props == {
            "impl": "double-loss",
            "device": "cpu",
            "dtype": "float64",
            "family": "yolo",
            "limitations": "",
        }, (
            name,
            props,
        )
