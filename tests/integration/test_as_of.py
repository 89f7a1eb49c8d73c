"""As-of reads: the state of a SKU-location or an order at a past moment or ledger position."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from adapters.persistence.urls import ledger_env
from ledger import commands as c
from ledger.application import SNAPSHOT_INTERVAL
from ledger.bounds import order_id as order_uuid
from ledger.bounds import stock_id
from ledger.service import Ledger


@pytest.fixture
def ledger(database_url):
    with Ledger(ledger_env(database_url)) as ledger:
        yield ledger


def now() -> datetime:
    return datetime.now(UTC)


def new_sku() -> str:
    return "SKU-" + uuid.uuid4().hex[:8]


def test_a_sku_location_as_of_a_moment_shows_only_what_had_happened(ledger):
    sku = new_sku()
    agg = stock_id(sku, "wh-1")
    before_anything = now()
    ledger.receive(sku, "wh-1", 5, "po-1")
    after_receipt = now()
    ledger.reserve(sku, "wh-1", "o-1", "1", 2)
    after_reserve = now()
    ledger.adjust(sku, "wh-1", -1, "cycle-count", "cc-1")
    h = ledger.history
    assert h.as_of_time(agg, before_anything - timedelta(seconds=1)) is None
    s = h.as_of_time(agg, after_receipt)
    assert (s.on_hand, s.reserved, s.version) == (5, 0, 2)
    s = h.as_of_time(agg, after_reserve)
    assert (s.on_hand, s.reserved, s.version) == (5, 2, 3)
    s = h.as_of_time(agg, now())
    assert (s.on_hand, s.reserved, s.version) == (4, 2, 4)


def test_a_sku_location_as_of_a_ledger_position(ledger):
    sku, other = new_sku(), new_sku()
    agg = stock_id(sku, "wh-1")
    ledger.receive(sku, "wh-1", 5, "po-1")
    ledger.receive(other, "wh-1", 9, "po-2")  # another stream interleaves in the total order
    ledger.execute(c.SellDirect(sku=sku, location="wh-1", quantity=2, reference="till-1"))
    positions = [p for p, _ in ledger.history.events(agg)]
    assert len(positions) == 3 and positions == sorted(positions)
    opened, received, sold = positions
    assert ledger.history.as_of_position(agg, opened - 1) is None
    assert ledger.history.as_of_position(agg, received).on_hand == 5
    assert ledger.history.as_of_position(agg, sold - 1).on_hand == 5  # the other stream's event sits between
    assert ledger.history.as_of_position(agg, sold).on_hand == 3
    assert ledger.history.as_of_position(agg, ledger.app.recorder.max_position()).on_hand == 3


def test_the_events_of_a_stream_page_by_position(ledger):
    sku = new_sku()
    agg = stock_id(sku, "wh-1")
    for i in range(5):
        ledger.receive(sku, "wh-1", 1, f"po-{i}")
    first = list(ledger.history.events(agg, limit=2))
    rest = list(ledger.history.events(agg, after=first[-1][0], limit=100))
    assert len(first) == 2 and len(rest) == 4
    assert [e.originator_version for _, e in first + rest] == [1, 2, 3, 4, 5, 6]


def test_an_order_as_of_a_moment_and_a_position_shows_its_stage_then(ledger):
    sku = new_sku()
    ledger.receive(sku, "wh-1", 2, "po-1")
    order = "as-of-" + uuid.uuid4().hex[:6]
    ledger.capture_order(order, "online", [{"line_id": "1", "sku": sku, "quantity": 2, "location": "wh-1"}])
    reserved_at = now()
    reserved_position = ledger.app.recorder.max_position()
    ledger.ship(order, "s1", [{"line_id": "1", "quantity": 1}])
    agg = order_uuid(order)
    assert ledger.history.as_of_time(agg, reserved_at).stage == "reserved"
    assert ledger.history.as_of_position(agg, reserved_position).stage == "reserved"
    assert ledger.history.as_of_time(agg, now()).stage == "partially_shipped"


def test_as_of_reads_are_right_on_both_sides_of_a_snapshot(ledger):
    sku = new_sku()
    agg = stock_id(sku, "wh-1")

    def receive(n: int, start: int) -> None:
        futures = [
            ledger.submit(c.ReceiveStock(sku=sku, location="wh-1", quantity=1, reference=f"po-{start + i}"))
            for i in range(n)
        ]
        for f in futures:
            f.result(timeout=120)

    receive(250, 0)
    middle = now()
    middle_position = ledger.app.recorder.max_position()
    receive(SNAPSHOT_INTERVAL - 250 + 10, 250)
    [snapshot] = ledger.app.snapshots.get(agg)
    assert snapshot.originator_version >= SNAPSHOT_INTERVAL  # taken after the batch that crossed it
    receive(3, SNAPSHOT_INTERVAL + 10)
    total = SNAPSHOT_INTERVAL + 13
    assert ledger.history.as_of_time(agg, middle).on_hand == 250
    assert ledger.history.as_of_position(agg, middle_position).on_hand == 250
    assert ledger.history.as_of_time(agg, now()).on_hand == total
    assert ledger.history.as_of_position(agg, ledger.app.recorder.max_position()).on_hand == total
