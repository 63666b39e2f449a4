"""The local stack's expiry sweep (ops/local_stack.py::ExpirySweeper): the responder's
scheduled sweep every period, as the EventBridge schedule runs it in AWS, until the
stack stops, and never fatal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from functions.shared.blocks import SWEEP_PERIOD_MINUTES
from functions.waf_responder import handler as responder
from ops.console import CommandError
from ops.local_stack import SWEEP_SECONDS_VARIABLE, ExpirySweeper, sweep_seconds_from_environment

# An exception's text may quote what it failed on (a connection string): never shown.
FAILURE_TEXT = "the text of this failure"


class Invocations:
    """Stands in for the responder's lambda_handler, recording what it is sent."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail_first = fail_first
        self.twice = threading.Event()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        if len(self.events) >= 2:
            self.twice.set()
        if len(self.events) <= self.fail_first:
            raise RuntimeError(FAILURE_TEXT)
        return {"status": "swept"}


def test_the_period_is_the_schedules_unless_the_environment_shortens_it(monkeypatch):
    monkeypatch.delenv(SWEEP_SECONDS_VARIABLE, raising=False)
    assert sweep_seconds_from_environment() == SWEEP_PERIOD_MINUTES * 60

    monkeypatch.setenv(SWEEP_SECONDS_VARIABLE, "7")
    assert sweep_seconds_from_environment() == 7


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "soon", "86401"])
def test_a_period_that_is_not_whole_seconds_in_range_is_refused_naming_the_variable(
    monkeypatch, value
):
    monkeypatch.setenv(SWEEP_SECONDS_VARIABLE, value)
    with pytest.raises(CommandError) as refused:
        sweep_seconds_from_environment()
    assert SWEEP_SECONDS_VARIABLE in str(refused.value)


def _sweep_twice(calls: Invocations, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweeper every 50 ms, stopped once `calls` was invoked twice."""
    monkeypatch.setattr(responder, "lambda_handler", calls)
    sweeper = ExpirySweeper(0.05)
    sweeper.start()
    try:
        assert calls.twice.wait(5)
    finally:
        sweeper.stop()


def test_the_sweeper_invokes_the_responder_with_the_scheduled_event_each_period(monkeypatch):
    calls = Invocations()
    _sweep_twice(calls, monkeypatch)

    assert {e["detail-type"] for e in calls.events} == {"Scheduled Event"}
    assert {e["source"] for e in calls.events} == {"aws.events"}
    # One event id per scheduled delivery, as EventBridge sends them.
    assert len({e["id"] for e in calls.events}) == len(calls.events)


def test_a_failed_sweep_is_reported_by_type_and_the_next_one_still_runs(monkeypatch, capsys):
    calls = Invocations(fail_first=1)
    _sweep_twice(calls, monkeypatch)

    err = capsys.readouterr().err
    assert "the expiry sweep failed (RuntimeError)" in err
    assert FAILURE_TEXT not in err


def test_stop_leaves_no_thread_behind_and_runs_no_sweep_after_it(monkeypatch):
    calls = Invocations()
    monkeypatch.setattr(responder, "lambda_handler", calls)
    sweeper = ExpirySweeper(3600)
    sweeper.start()

    sweeper.stop()

    assert not [t for t in threading.enumerate() if t.name == "expiry-sweep"]
    assert calls.events == []


def test_each_sweep_runs_while_no_request_is_served(monkeypatch):
    """The responder shares the API's logger and metrics in this process: a sweep
    holds what keeps requests out meanwhile (the server's one-event-at-a-time lock)."""
    held: list[bool] = []
    lock = threading.Lock()

    @contextmanager
    def alone() -> Iterator[None]:
        with lock:
            yield

    def invocation(event: dict[str, Any], context: Any) -> dict[str, Any]:
        held.append(lock.locked())
        return {"status": "swept"}

    monkeypatch.setattr(responder, "lambda_handler", invocation)

    assert ExpirySweeper(3600, alone=alone).sweep_once() == {"status": "swept"}
    assert held == [True]
