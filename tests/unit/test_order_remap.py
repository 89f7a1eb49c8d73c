"""Remapping an order line to the right SKU after a mapping fix, given / when / then (no database)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate

from ledger import commands as c
from ledger.application import Decider, UnitOfWork
from ledger.errors import OrderConflictError
from ledger.orders import Order
from ledger.ports import StaticLocations
from ledger.stock import SkuLocation
from projections.folds import fold_order, order_lines

FIX = {"key": "shopify/sku/39072856", "version": 7}


class Store:
    """Aggregates by id, as the writer's cache holds them; `decide` runs one command like the writer."""

    def __init__(self) -> None:
        self.aggs: dict[UUID, Aggregate] = {}
        self.decider = Decider(None, StaticLocations({"online": ["WH1", "WH2"]}))  # type: ignore[arg-type]  # no app: nothing is loaded
        self.log: list[Any] = []

    def decide(self, cmd: c.Command) -> dict[str, Any]:
        cmd.validate()
        uow = UnitOfWork(self.aggs.get)
        answer = self.decider.decide(cmd, uow)
        for agg in uow.aggregates():
            self.aggs[agg.id] = agg
            self.log += agg.collect_events()
        return answer

    def stock(self, sku: str, location: str) -> tuple[int, int]:
        s = UnitOfWork(self.aggs.get).stock(sku, location)
        return (0, 0) if s is None else (s.on_hand, s.reserved)

    def order(self, order_id: str) -> Order:
        o = UnitOfWork(self.aggs.get).order(order_id)
        assert o is not None
        return o


def given_an_order_on_the_wrong_sku(right_units: dict[str, int]) -> Store:
    store = Store()
    store.decide(c.ReceiveStock(sku="WRONG", location="WH1", quantity=10, reference="r0"))
    for location, units in right_units.items():
        store.decide(
            c.ReceiveStock(sku="RIGHT", location=location, quantity=units, reference=f"r-{location}")
        )
    store.decide(
        c.CaptureOrder(
            order_id="o-1",
            channel="online",
            lines=(
                {"line_id": "1", "sku": "WRONG", "quantity": 3},
                {"line_id": "2", "sku": "WRONG", "quantity": 1},
            ),
        )
    )
    return store


def remap(line_id: str = "1", sku: str = "RIGHT") -> c.RemapOrderLine:
    return c.RemapOrderLine(
        order_id="o-1", line_id=line_id, sku=sku, mapping=FIX, reference=f"remap/{line_id}"
    )


def test_the_reservation_moves_from_the_wrong_sku_to_the_right_one_at_the_same_location() -> None:
    store = given_an_order_on_the_wrong_sku({"WH1": 5, "WH2": 5})
    answer = store.decide(remap())
    assert answer["remapped"] and answer["reserved"] == 3
    assert store.stock("WRONG", "WH1") == (10, 1) and store.stock("RIGHT", "WH1") == (5, 3)
    order = store.order("o-1")
    line = order.lines["1"]
    assert (line["sku"], line["location"], Order.held_quantity(line)) == ("RIGHT", "WH1", 3)
    assert order.stage == "reserved"
    [event] = [e for e in store.log if isinstance(e, Order.LineRemapped)]
    assert (event.from_sku, event.to_sku, event.mapping, event.from_location) == (
        "WRONG",
        "RIGHT",
        FIX,
        "WH1",
    )
    released = [e for e in store.log if isinstance(e, SkuLocation.ReservationReleased)]
    assert [(e.reservation_id, e.quantity, e.reason) for e in released] == [("o-1/1", 3, "reallocated")]


def test_when_the_same_location_is_short_another_location_of_the_channel_takes_the_line() -> None:
    store = given_an_order_on_the_wrong_sku({"WH1": 2, "WH2": 4})
    store.decide(remap())
    assert store.stock("RIGHT", "WH1") == (2, 0) and store.stock("RIGHT", "WH2") == (4, 3)
    assert store.order("o-1").lines["1"]["location"] == "WH2"


def test_when_no_location_has_the_units_the_line_is_left_unreserved_and_visible() -> None:
    store = given_an_order_on_the_wrong_sku({"WH1": 1})
    answer = store.decide(remap())
    assert answer["remapped"] and answer["reserved"] == 0
    assert store.stock("WRONG", "WH1") == (10, 1) and store.stock("RIGHT", "WH1") == (1, 0)
    order = store.order("o-1")
    line = order.lines["1"]
    assert (line["sku"], line["location"], Order.held_quantity(line)) == ("RIGHT", None, 0)
    assert order.stage == "captured"


def test_a_line_already_on_the_right_sku_is_left_alone() -> None:
    store = given_an_order_on_the_wrong_sku({"WH1": 5})
    store.decide(remap())
    before = len(store.log)
    assert store.decide(remap())["remapped"] is False
    assert len(store.log) == before


def test_a_line_with_shipped_units_is_refused_and_nothing_changes() -> None:
    store = given_an_order_on_the_wrong_sku({"WH1": 5})
    store.decide(c.ShipOrder(order_id="o-1", shipment_id="s1", lines=({"line_id": "1", "quantity": 1},)))
    before = len(store.log)
    with pytest.raises(OrderConflictError, match="shipped"):
        store.decide(remap())
    assert len(store.log) == before
    assert store.stock("WRONG", "WH1") == (9, 3) and store.stock("RIGHT", "WH1") == (5, 0)


def test_the_order_read_model_folds_a_remap_to_the_same_lines_and_stage() -> None:
    store = given_an_order_on_the_wrong_sku({"WH1": 1, "WH2": 3})
    store.decide(remap("1"))
    store.decide(remap("2"))
    row = None
    for position, event in enumerate(
        (e for e in store.log if isinstance(e, Order.Event | Order.Captured)), 1
    ):
        row = fold_order(row, event, position)
    assert row is not None
    order = store.order("o-1")
    assert row["stage"] == order.stage == "reserved"
    assert (
        [(x["sku"], x["location"], x["reserved"]) for x in order_lines(row)]
        == [(x["sku"], x["location"], Order.held_quantity(x)) for x in order.lines.values()]
        == [("RIGHT", "WH2", 3), ("RIGHT", "WH1", 1)]
    )
