"""A statement whose connection failed is tried again, but not for ever.

The library's retry decorator tries ten times; with PostgreSQL down each try waits the pool's
whole timeout, so a write was held ~100 s before its 503 and clients gave up first (CI, the
outage-under-load test). `reconnecting` starts no try RECONNECT_BUDGET seconds after the first,
and the recorder's inherited statements use it too. Time here is a fake clock, never the wall.
"""

from __future__ import annotations

import inspect

import pytest
from eventsourcing.persistence import OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder

from adapters.persistence import postgres


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(postgres, "_monotonic", fake.monotonic)
    monkeypatch.setattr(postgres, "_sleep", fake.sleep)
    return fake


def failing(clock: Clock, takes: float, calls: list[float]):
    def statement() -> None:
        calls.append(clock.now)
        clock.now += takes  # e.g. the pool's wait for a connection to a server that is down
        raise OperationalError("connection refused")

    return statement


def test_a_quickly_failing_statement_is_tried_ten_times(clock):
    calls: list[float] = []
    with pytest.raises(OperationalError):
        postgres.reconnecting(failing(clock, 0.0, calls))()
    assert len(calls) == postgres.RECONNECT_ATTEMPTS


def test_no_try_starts_after_the_budget_when_each_try_waits_the_pool_timeout(clock):
    calls: list[float] = []
    with pytest.raises(OperationalError):
        postgres.reconnecting(failing(clock, 10.0, calls))()  # the pool's 10 s wait, each time
    assert calls == [0.0]  # one pool timeout, then the 503: not ten of them
    calls.clear()
    clock.now = 0.0
    with pytest.raises(OperationalError):
        postgres.reconnecting(failing(clock, 2.0, calls))()
    assert all(at < postgres.RECONNECT_BUDGET for at in calls)
    assert len(calls) == 3  # at 0, 2.2 and 4.4 s


def test_a_statement_that_succeeds_on_a_later_try_answers(clock):
    calls: list[float] = []

    def flaky() -> str:
        calls.append(clock.now)
        if len(calls) < 3:
            raise OperationalError("server closed the connection unexpectedly")
        return "ok"

    assert postgres.reconnecting(flaky)() == "ok"
    assert len(calls) == 3


@pytest.mark.parametrize("name", ["select_events", "select_notifications", "max_notification_id"])
def test_the_recorders_inherited_statements_use_the_bounded_retry(name):
    ours = getattr(postgres.LedgerPostgresRecorder, name)
    library = getattr(PostgresApplicationRecorder, name)
    assert ours is not library
    assert inspect.unwrap(ours) is inspect.unwrap(library)  # the same statement, another retry
    assert ours.__wrapped__ is inspect.unwrap(library)  # wrapped once, by `reconnecting`
