"""The ERP and the order's own timeline: an order held by its checks waits for its release, and a
cancellation that races the sales order's posting never leaves a live order at the ERP. Against
the real HTTP ERP stand-in, which holds a request in flight until the test lets it answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from erpstandin import ErpStandIn

from adapters.config import Settings
from adapters.erp import CircuitBreaker, ErpPoster, HttpErp
from adapters.exceptions import list_exceptions
from bootstrap import Container, bootstrap
from ledger import commands as c
from ledger.ports import StaticLocations

LINE = ({"line_id": "1", "sku": "SKU-A", "quantity": 1},)


@pytest.fixture
def container(pg_url: str) -> Iterator[Container]:
    # Orders above 100 EUR, or shipping outside DE and FR, are held.
    settings = Settings(database_url=pg_url, hold_orders_above="EUR=100", ship_to_regions="DE,FR")
    c = bootstrap(settings, locations=StaticLocations({"online": ["WH1"]}))
    c.ledger.receive("SKU-A", "WH1", 100, "seed")
    try:
        yield c
    finally:
        c.close()


def poster_for(container: Container, erp: ErpStandIn, timeout: float = 30.0) -> ErpPoster:
    return ErpPoster(
        container.ledger,
        container.erp_queue,
        HttpErp(erp.url, timeout=timeout),
        CircuitBreaker(threshold=10_000),
        backoff_base=0.0,
        backoff_max=0.0,
        wait=0.05,
        hold_recheck=3600.0,  # a held order's sales order is looked at again when the feeder wakes it
    )


def settle(container: Container, poster: ErpPoster, deadline: float = 60.0) -> None:
    """Feeds and posts until nothing more can move now (held orders' documents stay waiting)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        fed = container.erp_feeder.step()
        if not poster.step() and not fed and not poster.in_flight:
            return
    raise AssertionError("the poster never settled")


def until(condition: Callable[[], bool], step: Callable[[], object], deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("the awaited state never came")
        step()


def stage(container: Container, order_id: str) -> str:
    order = container.ledger.history.order(order_id)
    assert order is not None
    return str(order.stage)


def held_exceptions(container: Container) -> list[dict[str, Any]]:
    container.projector.catch_up()
    container.sweeper.sweep()
    return list_exceptions(container.db, "held-order")


def test_a_held_order_is_not_posted_until_released_while_other_orders_go_on(container: Container) -> None:
    ledger = container.ledger
    big = {"total": "250.00", "currency": "EUR", "region": "DE"}
    ledger.execute(c.CaptureOrder(order_id="o-big", channel="online", lines=LINE, facts=big))
    small = {"total": "20.00", "currency": "EUR", "region": "FR"}
    ledger.execute(c.CaptureOrder(order_id="o-small", channel="online", lines=LINE, facts=small))
    ledger.ship("o-big", "s1", [{"line_id": "1", "quantity": 1}])  # its delivery waits behind it
    erp = ErpStandIn([])
    poster = poster_for(container, erp)
    try:
        settle(container, poster)
        assert erp.story("o-big") == []
        assert [p for p, _ in erp.story("o-small")] == ["/sales-orders"]
        rows = container.erp_queue.rows("o-big")
        assert [(r["kind"], r["status"], r["attempts"]) for r in rows] == [
            ("sales-order", "pending", 0),
            ("delivery", "pending", 0),
        ]
        order = ledger.history.order("o-big")
        assert order is not None and order.stage == "held" and "release" in order.open_work
        assert order.validation["holds"] == [
            {"check": "amount", "reason": "total 250.00 EUR is above the 100 EUR limit"}
        ]
        assert stage(container, "o-small") == "posted"
        [exception] = held_exceptions(container)
        assert exception["key"] == "o-big" and exception["detail"]["holds"] == order.validation["holds"]

        ledger.execute(c.ReleaseOrder(order_id="o-big", by="ops"))
        settle(container, poster)
        assert [p for p, _ in erp.story("o-big")] == ["/sales-orders", "/deliveries"]
        order = ledger.history.order("o-big")
        assert order is not None and order.validation["released_by"] == "ops"
        assert "post" not in order.open_work and "release" not in order.open_work
        assert held_exceptions(container) == []
    finally:
        poster.close()
        erp.close()


def test_a_held_order_cancelled_is_voided_and_never_reaches_the_erp(container: Container) -> None:
    ledger = container.ledger
    ledger.execute(
        c.CaptureOrder(order_id="o-us", channel="online", lines=LINE, facts={"region": "US"})
    )
    erp = ErpStandIn([])
    poster = poster_for(container, erp)
    try:
        settle(container, poster)
        assert stage(container, "o-us") == "held"
        assert [e["key"] for e in held_exceptions(container)] == ["o-us"]
        ledger.cancel("o-us", "fraud")
        settle(container, poster)
        assert erp.story("o-us") == []
        statuses = [(r["kind"], r["status"]) for r in container.erp_queue.rows("o-us")]
        assert statuses == [("sales-order", "voided"), ("cancellation", "voided")]
        assert held_exceptions(container) == []
    finally:
        poster.close()
        erp.close()


def test_a_cancellation_while_the_sales_order_is_in_flight_follows_it_to_the_erp(
    container: Container,
) -> None:
    ledger = container.ledger
    ledger.capture_order("o-race", "online", list(LINE))
    erp = ErpStandIn([])
    erp.hold("o-race")  # the ERP takes the request and answers only when the test says so
    poster = poster_for(container, erp)
    try:
        container.erp_feeder.step()
        poster.step()
        erp.wait_for(lambda e: "o-race" in e.waiting)
        row = container.erp_queue.rows("o-race")[0]
        assert (row["claimed_by"], row["status"], row["uncertain"]) == (poster.worker, "pending", 1)
        ledger.cancel("o-race", "customer")  # while the sales order is in flight, its lease held
        erp.release("o-race")
        settle(container, poster)
        assert [p for p, _ in erp.story("o-race")] == [
            "/sales-orders",
            "/sales-orders/o-race/cancellations",
        ]
        assert erp.story("o-race")[1][1]["whole"] is True
        order = ledger.history.order("o-race")
        assert order is not None and order.stage == "cancelled" and not order.erp_void
        assert "post" not in order.open_work
    finally:
        poster.close()
        erp.close()


def test_a_sales_order_the_erp_took_without_answering_is_cancelled_there_not_voided(
    container: Container,
) -> None:
    ledger = container.ledger
    ledger.capture_order("o-lost", "online", list(LINE))
    erp = ErpStandIn([])
    erp.hold("o-lost")
    poster = poster_for(container, erp, timeout=0.5)  # gives up on the held request
    try:
        container.erp_feeder.step()
        until(lambda: container.erp_queue.rows("o-lost")[0]["attempts"] >= 1, poster.step)
        ledger.cancel("o-lost", "customer")  # cancelled while the ERP may hold the order
        erp.release("o-lost")  # the ERP now creates the sales order it was sent
        erp.wait_for(lambda e: e.paths["/sales-orders"] == 1)
        settle(container, poster)
        # Posted again under the same key (the ERP keeps one), then cancelled there: never live.
        assert [p for p, _ in erp.story("o-lost")] == [
            "/sales-orders",
            "/sales-orders/o-lost/cancellations",
        ]
        rows = container.erp_queue.rows("o-lost")
        assert [(r["kind"], r["status"]) for r in rows] == [("sales-order", "posted"), ("cancellation", "posted")]
        order = ledger.history.order("o-lost")
        assert order is not None and order.erp["documents"]["sales-order"].get("uncertain") is True
        assert order.stage == "cancelled" and "post" not in order.open_work
    finally:
        poster.close()
        erp.close()


def test_a_sales_order_the_erp_refused_is_voided_when_the_order_is_cancelled(container: Container) -> None:
    ledger = container.ledger
    ledger.capture_order("o-503", "online", list(LINE))
    erp = ErpStandIn(["down"])
    poster = poster_for(container, erp)
    try:
        container.erp_feeder.step()
        until(lambda: container.erp_queue.rows("o-503")[0]["attempts"] >= 1, poster.step)
        assert container.erp_queue.rows("o-503")[0]["uncertain"] == 0  # a refusal: the ERP holds nothing
        ledger.cancel("o-503", "customer")
        settle(container, poster)
        assert erp.story("o-503") == []
        assert [r["status"] for r in container.erp_queue.rows("o-503")] == ["voided", "voided"]
    finally:
        poster.close()
        erp.close()
