"""`babyshield local alarm` when the responder fails: one clear line, no traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.cli import main
from tests.support.waf import WafResources, clear_caches, create_resources


@pytest.fixture
def waf(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[WafResources]:
    import ops.local_state

    resources = create_resources(monkeypatch)
    # The moto server stands in for the running stack this command insists on.
    monkeypatch.setattr(ops.local_state, "apply_local_environment", lambda **_: True)
    monkeypatch.delenv("BABYSHIELD_DEBUG", raising=False)
    yield resources
    clear_caches()


def test_an_offender_lookup_failure_is_one_clear_line(
    waf: WafResources, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Protects on-call: the responder logs its failure with a traceback and raises;
    the command shows neither the traceback nor an "unexpected failure"."""
    from functions.waf_responder import offenders

    # Given a Logs Insights query that fails
    def failed_query(*_args: object, **_kwargs: object) -> list[tuple[str, int]]:
        raise offenders.OffenderLookupFailed("Logs Insights query on the WAF log ended Failed")

    monkeypatch.setattr(offenders, "run_insights_query", failed_query)

    # When on-call fires the alarm
    code = main(["local", "alarm", "waf-blocked-requests"])

    # Then one error line says what failed, and nothing shows a traceback
    err = capsys.readouterr().err
    assert code == 1
    assert (
        "error: the responder could not find the offenders: "
        "Logs Insights query on the WAF log ended Failed"
    ) in err
    assert "next:" in err
    assert "Traceback" not in err
    assert "unexpected failure" not in err
