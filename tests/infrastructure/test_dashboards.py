"""The three dashboards and what each shows."""

from __future__ import annotations

import json

from functions.shared import names
from functions.shared.inventory import INVENTORY
from tests.infrastructure.conftest import Synthesized


def _bodies(synthesized: Synthesized) -> dict[str, str]:
    return {
        d["Properties"]["DashboardName"]: json.dumps(d["Properties"]["DashboardBody"])
        for d in synthesized.resources("AWS::CloudWatch::Dashboard").values()
    }


def test_waf_dashboard_shows_rules_top_ips_and_countries(synthesized: Synthesized):
    body = _bodies(synthesized)[names.DASHBOARD_WAF]

    assert "BlockedRequests" in body
    assert names.RATE_RULE in body
    assert "httpRequest.clientIp" in body
    assert "httpRequest.country" in body
    assert names.WAF_LOG_GROUP in body


def test_authentication_dashboard_shows_sign_ins_tokens_and_lockouts(synthesized: Synthesized):
    body = _bodies(synthesized)[names.DASHBOARD_AUTH]

    for metric in (
        names.METRIC_FAILED_SIGNINS,
        names.METRIC_TOKEN_VALIDATION_ERRORS,
        names.METRIC_LOCKOUTS,
        names.METRIC_SIGN_INS_REFUSED_LOCKED,
    ):
        assert metric in body


def test_rotation_dashboard_shows_age_of_every_secret_and_results(synthesized: Synthesized):
    body = _bodies(synthesized)[names.DASHBOARD_ROTATION]

    assert names.METRIC_SECRET_AGE_DAYS in body
    for spec in INVENTORY:
        assert f'\\"secret\\",\\"{spec.name}\\"' in body, spec.name
    assert names.METRIC_ROTATION_FAILURES in body
    assert names.METRIC_ROTATION_SUCCESSES in body
    assert "latest(level)" in body
