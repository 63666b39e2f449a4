"""The responder's own alarms page on-call with the RUNBOOK procedure that answers them."""

from __future__ import annotations

import re

import pytest

from functions.shared import names
from tests.infrastructure.conftest import REPO_ROOT, Synthesized

SECTION = "The WAF responder failed"


@pytest.mark.parametrize(
    "alarm_name",
    [
        # An attack or sweep event the responder could not handle after its retries:
        # blocks possibly made, on-call never told which.
        f"{names.WAF_RESPONDER_DLQ}-not-empty",
        # Its failures going on for ten minutes.
        f"{names.PREFIX}-waf-responder-errors",
    ],
)
def test_a_responder_alarm_names_the_runbook_section_that_answers_it(
    synthesized: Synthesized, alarm_name: str
) -> None:
    alarms = {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in synthesized.resources("AWS::CloudWatch::Alarm").values()
    }
    runbook = (REPO_ROOT / "docs" / "RUNBOOK.md").read_text()

    assert f"(RUNBOOK, '{SECTION}')" in alarms[alarm_name]["AlarmDescription"]
    heading = runbook.index(f"\n## {SECTION}\n")
    section = runbook[heading : runbook.index("\n## ", heading + 1)]
    assert alarm_name in section


def test_the_runbook_names_only_waf_commands_and_flags_that_exist() -> None:
    """What the section tells on-call to run parses with the real `babyshield waf`."""
    from ops.waf import build_parser

    runbook = (REPO_ROOT / "docs" / "RUNBOOK.md").read_text()
    heading = runbook.index(f"\n## {SECTION}\n")
    section = runbook[heading : runbook.index("\n## ", heading + 1)]
    commands = re.findall(r"babyshield (waf (?:list|unblock)[^`|\n]*)", section)
    assert commands
    for command in commands:
        build_parser().parse_args(command.split())
