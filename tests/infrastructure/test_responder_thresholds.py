"""The responder blocks on the thresholds of the alarms that start it.

An alarm counts every client's evidence over one 5-minute period; the responder
counts each client's own over its offender window. Equal thresholds, with a window
that holds the alarm's whole evaluated range, mean a client that sets an alarm off
by itself is always found, and no client is blocked on less than that. One context
key moves both: the responder reads what the template gives it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdk.app import STACK_NAME, build_app, default_context
from functions.shared import names
from functions.shared.settings import Settings, settings_from_environment
from tests.infrastructure.conftest import Synthesized

# Away from the defaults (100, 20) and from each other.
TUNED = {"babyshield:wafBlockedThreshold": 250, "babyshield:failedSigninThreshold": 7}

# Log-evidence alarm -> the responder setting that is its per-client threshold.
RESPONDER_THRESHOLD = {
    names.ALARM_WAF_BLOCKED: "blocked_requests_threshold",
    names.ALARM_FAILED_SIGNINS: "failed_sign_ins_threshold",
}


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["AlarmName"]: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def _responder_settings(template: dict[str, Any]) -> Settings:
    """The settings the deployed responder reads from its environment (the template's
    plain values; references resolve to ids and ARNs at deploy)."""
    (function,) = (
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("FunctionName") == names.function_name("waf_responder")
    )
    variables = function["Environment"]["Variables"]
    return settings_from_environment({k: v for k, v in variables.items() if isinstance(v, str)})


def _evaluated_seconds(alarm: dict[str, Any]) -> tuple[int, int]:
    """(the longest metric period, the range the alarm evaluates) in seconds."""
    if "Period" in alarm:
        period = int(alarm["Period"])
    else:
        period = max(int(m["MetricStat"]["Period"]) for m in alarm["Metrics"] if "MetricStat" in m)
    return period, period * int(alarm["EvaluationPeriods"])


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The template synthesized once with TUNED thresholds (the NIST pack off: these
    tests read the template, test_cdk_nag judges the packs)."""
    outdir = tmp_path_factory.mktemp("cdk.out.tuned")
    context = {**default_context(), **TUNED, "babyshield:nist": False}
    app, _ = build_app(outdir=str(outdir), context=context)
    app.synth()
    template: dict[str, Any] = json.loads(
        (Path(outdir) / f"{STACK_NAME}.template.json").read_text()
    )
    return template


def test_by_default_the_responder_blocks_on_its_alarms_thresholds(synthesized: Synthesized):
    alarms = _alarms(synthesized.template_json)
    settings = _responder_settings(synthesized.template_json)

    for alarm, setting in RESPONDER_THRESHOLD.items():
        assert getattr(settings, setting) == alarms[alarm]["Threshold"], alarm


def test_tuned_alarm_thresholds_reach_the_responder(tuned: dict[str, Any]):
    # Given thresholds tuned through context, When synthesized, Then the alarms and
    # the responder both use them: no second place to set them, none left behind.
    alarms = _alarms(tuned)
    settings = _responder_settings(tuned)

    assert alarms[names.ALARM_WAF_BLOCKED]["Threshold"] == 250
    assert alarms[names.ALARM_FAILED_SIGNINS]["Threshold"] == 7
    assert settings.blocked_requests_threshold == 250
    assert settings.failed_sign_ins_threshold == 7


def test_the_offender_window_holds_what_each_alarm_evaluated(synthesized: Synthesized):
    # The responder reads max(offender window, the alarm's period) back from the
    # alarm's time (offenders.find_offenders); the event does not say how many periods
    # the alarm evaluated, so the window must hold them all, or a client that set the
    # alarm off alone could count under the threshold in it.
    alarms = _alarms(synthesized.template_json)
    settings = _responder_settings(synthesized.template_json)

    for alarm in RESPONDER_THRESHOLD:
        period, evaluated = _evaluated_seconds(alarms[alarm])
        assert evaluated <= max(settings.offender_window_seconds, period), alarm
