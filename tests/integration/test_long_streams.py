"""A long stream costs no more to write (cached state) or to load (snapshots) than a fresh one.

Costs are counted as events read through the recorder, never as timings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.application import SNAPSHOT_INTERVAL
from ledger.bounds import stock_id
from ledger.service import Ledger

pytestmark = pytest.mark.postgres

EVENTS = 20_000


class ReadCounter:
    """Counts the stored events a recorder hands out (wraps its `select_events`)."""

    def __init__(self, recorder: Any) -> None:
        self.read = 0
        self.calls = 0
        inner = recorder.select_events

        def select_events(*args: Any, **kwargs: Any) -> Sequence[Any]:
            rows = inner(*args, **kwargs)
            self.read += len(rows)
            self.calls += 1
            return rows

        recorder.select_events = select_events


def _receive_many(ledger: Ledger, n: int, prefix: str) -> None:
    futures = [
        ledger.submit(c.ReceiveStock(sku="LONG", location="WH", quantity=1, reference=f"{prefix}{i}"))
        for i in range(n)
    ]
    for f in futures:
        f.result(timeout=120)


def test_a_long_stream_is_written_from_cache_and_loaded_from_its_last_snapshot(pg_url):
    agg_id = stock_id("LONG", "WH")
    with Ledger(ledger_env(pg_url)) as writer_side:
        counter = ReadCounter(writer_side.app.recorder)
        _receive_many(writer_side, EVENTS - 1, "r")  # + Opened = EVENTS events
        # Writing never replayed the stream: the writer decided against its cached state.
        assert counter.read == 0
        snapshots = list(writer_side.app.snapshots.get(agg_id))
        assert snapshots and EVENTS - snapshots[-1].originator_version < SNAPSHOT_INTERVAL

    with Ledger(ledger_env(pg_url)) as cold:
        counter = ReadCounter(cold.app.recorder)
        s = cold.history.stock("LONG", "WH")
        assert s is not None and s.version == EVENTS and s.on_hand == EVENTS - 1
        assert counter.read <= SNAPSHOT_INTERVAL  # from the snapshot, not from event 1
        # A cold writer on the long stream also starts from the snapshot, then writes from cache.
        counter.read = 0
        _receive_many(cold, 3 * SNAPSHOT_INTERVAL, "more")
        assert counter.read <= SNAPSHOT_INTERVAL
        assert cold.history.stock("LONG", "WH").on_hand == EVENTS - 1 + 3 * SNAPSHOT_INTERVAL


def test_history_as_of_a_position_on_a_long_stream_reads_from_a_snapshot(pg_url):
    with Ledger(ledger_env(pg_url)) as ledger:
        _receive_many(ledger, 3 * SNAPSHOT_INTERVAL + 10, "r")
        agg_id = stock_id("LONG", "WH")
        counter = ReadCounter(ledger.app.recorder)
        position = ledger.app.recorder.max_position()
        s = ledger.history.as_of_position(agg_id, position)
        assert s.on_hand == 3 * SNAPSHOT_INTERVAL + 10
        assert counter.read <= SNAPSHOT_INTERVAL


def test_a_hot_sku_with_many_open_reservations_is_snapshotted_less_often_but_loads_correctly(pg_url):
    from ledger.writer import state_size

    with Ledger(ledger_env(pg_url)) as ledger:
        ledger.receive("HOT", "WH", 100_000, "stock")
        futures = [
            ledger.submit(c.Reserve(sku="HOT", location="WH", order_id=f"o{i}", line_id="1", quantity=1))
            for i in range(3000)
        ]
        for f in futures:
            f.result(timeout=120)
        agg_id = stock_id("HOT", "WH")
        snaps = [s.originator_version for s in ledger.app.snapshots.get(agg_id)]
        # Each snapshot came at least max(interval, open reservations) events after the previous.
        assert snaps and all(b - a >= SNAPSHOT_INTERVAL for a, b in zip(snaps, snaps[1:], strict=False))
        assert len(snaps) < 3002 // SNAPSHOT_INTERVAL
        cached = ledger.writer.cache[agg_id]
    with Ledger(ledger_env(pg_url)) as cold:
        counter = ReadCounter(cold.app.recorder)
        s = cold.history.stock("HOT", "WH")
        assert s.reserved == 3000 and s.reservations == cached.reservations
        assert counter.read <= max(SNAPSHOT_INTERVAL, state_size(s))
