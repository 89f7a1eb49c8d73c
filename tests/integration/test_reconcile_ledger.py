"""Reconciliation against a real event store (SQLite and PostgreSQL), scenarios through the ledger."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from adapters.config import Settings
from adapters.exceptions import list_exceptions
from adapters.persistence.urls import ensure_pg_schema, is_postgres
from adapters.reconciliation.engine import Reconciler
from adapters.reconciliation.ports import Level, Snapshot
from bootstrap import Container, bootstrap
from ledger.errors import InvalidCommandError


@pytest.fixture
def container(database_url: str) -> Iterator[Container]:
    if is_postgres(database_url):
        ensure_pg_schema(database_url)  # bootstrap opens its pool before the ledger creates the schema
    c = bootstrap(Settings(database_url=database_url, reconcile_thresholds="erp=0/0%,shopify=1/0%"))
    yield c
    c.close()


def tick() -> datetime:
    """A moment strictly between the events recorded before and after it."""
    time.sleep(0.002)
    t = datetime.now(UTC)
    time.sleep(0.002)
    return t


def sku() -> str:
    return "SKU-" + uuid.uuid4().hex[:8]


def run(r: Reconciler, source: str, at: datetime, *levels: tuple[str, str, int]) -> dict:
    return r.reconcile(Snapshot(source, at, [Level(s, loc, q) for s, loc, q in levels]))


def test_snapshots_taken_mid_stream_match_the_ledger_as_of_their_moment(container):
    r, led, a = container.reconciler, container.ledger, sku()
    led.receive(a, "WH", 10, "po-" + a)
    t1 = tick()
    led.adjust(a, "WH", -3, "count", "cc1-" + a)
    t2 = tick()
    led.adjust(a, "WH", -2, "count", "cc2-" + a)
    for at, q in ((t1, 10), (t2, 7)):
        report = run(r, "erp", at, (a, "WH", q))
        assert report["mismatches"] == [] and report["timing"] == [] and report["matched"] == 1
    report = run(r, "erp", t1, (a, "WH", 5))  # the ERP's clock lags: it already counts both adjustments
    assert report["mismatches"] == []
    assert [c["kind"] for c in report["timing"][0]["causes"]] == ["timing"]
    assert report["exceptions"]["drift"] == 0
    assert list_exceptions(container.db, "drift") == []


def test_an_erp_that_deducts_reservations_is_diagnosed_and_its_drift_closes_when_it_matches(container):
    r, led, a = container.reconciler, container.ledger, sku()
    r.window = timedelta(0)
    led.receive(a, "WH", 10, "po-" + a)
    led.capture_order("ord-" + a, "web", [{"line_id": "1", "sku": a, "quantity": 3, "location": "WH"}])
    report = run(r, "erp", tick(), (a, "WH", 7))
    (m,) = report["mismatches"]
    assert (m["external"], m["ledger"], m["delta"], m["drift"]) == (7, 10, -3, True)
    assert [(c["kind"], c["quantity"]) for c in m["causes"]] == [("reservations-not-counted", -3)]
    assert f"ord-{a}/1" in m["explanation"]
    (e,) = list_exceptions(container.db, "drift")
    assert e["key"] == f"erp/{a}/WH" and e["detail"]["delta"] == -3
    report = run(r, "erp", tick(), (a, "WH", 10))
    assert report["exceptions"]["closed"] == 1
    assert list_exceptions(container.db, "drift") == []


def test_shopify_is_compared_on_available_and_a_lone_difference_is_unexplained(container):
    r, led, a = container.reconciler, container.ledger, sku()
    r.window = timedelta(0)
    led.receive(a, "WH", 10, "po-" + a)
    led.capture_order("ord-" + a, "web", [{"line_id": "1", "sku": a, "quantity": 4, "location": "WH"}])
    report = run(r, "shopify", tick(), (a, "WH", 6), (a, "OTHER", 0))
    assert report["mismatches"] == [] and report["matched"] == 2
    report = run(r, "shopify", tick(), (a, "WH", 1))
    (m,) = report["mismatches"]
    assert m["ledger"] == 6 and [(c["kind"], c["quantity"]) for c in m["causes"]] == [("unexplained", -5)]
    report = run(r, "shopify", tick(), (a, "WH", 7))  # within shopify's threshold of 1: kept, no exception
    assert report["mismatches"][0]["drift"] is False


def test_a_sku_location_with_no_events_counts_zero_and_outside_ids_go_through_the_mappings(container):
    from adapters.mappings import SqlMappingStore

    r, led, a = container.reconciler, container.ledger, sku()
    store = SqlMappingStore(container.db)
    store.set("erp", "sku", "E-" + a, a, "test")
    store.set("erp", "location", "W01", "WH", "test")
    led.receive(a, "WH", 4, "po-" + a)
    report = run(r, "erp", tick(), ("E-" + a, "W01", 4), (sku(), "WH", 2))
    assert report["matched"] == 1
    (m,) = report["mismatches"]
    assert (m["ledger"], m["external"]) == (0, 2)


def test_a_snapshot_naming_one_sku_location_twice_is_refused(container):
    r, a = container.reconciler, sku()
    with pytest.raises(InvalidCommandError):
        run(r, "erp", tick(), (a, "WH", 1), (a, "WH", 2))
    with pytest.raises(InvalidCommandError):
        run(r, "nowhere", tick(), (a, "WH", 1))
