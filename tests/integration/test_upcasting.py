"""Event versioning: stored events of an older version are upcast when read, never rewritten."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from adapters.persistence.urls import ledger_env
from ledger.bounds import stock_id
from ledger.service import Ledger
from ledger.stock import SkuLocation

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def ledger(database_url):
    with Ledger(ledger_env(database_url)) as ledger:
        yield ledger


def store_raw_reservation(ledger: Ledger, sku: str, version: int, **extra) -> None:
    """Writes a StockReserved as an older release stored it: no version marker in its state."""
    state = {
        "timestamp": datetime.now(UTC),
        "reservation_id": "old-order/1",
        "order_id": "old-order",
        "line_id": "1",
        "quantity": 3,
        "cause": {"source": "v1"},
        **extra,
    }
    stored = StoredEvent(
        originator_id=stock_id(sku, "wh-1"),
        originator_version=version,
        topic=get_topic(SkuLocation.StockReserved),
        state=ledger.app.mapper.transcoder.encode(state),
    )
    ledger.app.recorder.insert_events([stored])


def test_a_stored_version_1_reservation_loads_as_one_that_never_expires(ledger, database_url):
    sku = "SKU-" + uuid.uuid4().hex[:8]
    ledger.receive(sku, "wh-1", 5, "po-1")
    store_raw_reservation(ledger, sku, version=3)
    with Ledger(ledger_env(database_url)) as fresh:  # a fresh writer cache reads the stored stream
        s = fresh.history.stock(sku, "wh-1")
        assert (s.on_hand, s.reserved, s.available, s.version) == (5, 3, 2, 3)
        assert s.reservations["old-order/1"]["expires_at"] is None
        [event] = [e for e in fresh.app.events.get(s.id) if isinstance(e, SkuLocation.StockReserved)]
        assert event.expires_at is None and event.cause == {"source": "v1"}
        assert fresh.release_expired(sku, "wh-1", T0 + timedelta(days=3650))["released"] == 0
        fresh.reserve(sku, "wh-1", "new-order", "1", 2, expires_at=T0)
        assert fresh.release_expired(sku, "wh-1", T0)["released"] == 2
        assert fresh.history.stock(sku, "wh-1").reserved == 3


def test_a_reservation_stored_before_versioning_keeps_its_expiry(ledger, database_url):
    sku = "SKU-" + uuid.uuid4().hex[:8]
    ledger.receive(sku, "wh-1", 5, "po-1")
    store_raw_reservation(ledger, sku, version=3, expires_at=T0)
    with Ledger(ledger_env(database_url)) as fresh:
        assert fresh.history.stock(sku, "wh-1").reservations["old-order/1"]["expires_at"] == T0
        assert fresh.release_expired(sku, "wh-1", T0)["released"] == 3


def test_new_reservations_are_stored_with_their_class_version(ledger):
    sku = "SKU-" + uuid.uuid4().hex[:8]
    ledger.receive(sku, "wh-1", 5, "po-1")
    ledger.reserve(sku, "wh-1", "o-1", "1", 1, expires_at=T0)
    stored = ledger.app.recorder.select_events(stock_id(sku, "wh-1"))
    states = {e.topic.rsplit(".", 1)[-1]: ledger.app.mapper.transcoder.decode(e.state) for e in stored}
    assert states["StockReserved"]["class_version"] == 2
    assert "class_version" not in states["StockReceived"]  # unversioned means version 1
    assert states["StockReserved"]["expires_at"] == T0


def test_the_upcast_adds_only_what_version_2_needs():
    v1 = {"reservation_id": "o/1", "quantity": 1}
    SkuLocation.StockReserved.upcast_v1_v2(v1)
    assert v1 == {"reservation_id": "o/1", "quantity": 1, "expires_at": None}
