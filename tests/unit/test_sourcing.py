"""Sourcing across a channel's locations: split lines, backorders filled first come first served,
and shipments, cancellations and expiry per allocation (given / when / then, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import Aggregate
from hypothesis import given
from hypothesis import strategies as st

from ledger import commands as c
from ledger import sourcing
from ledger.application import Decider, UnitOfWork
from ledger.errors import InsufficientStockError
from ledger.orders import Order
from ledger.ports import StaticLocations
from ledger.stock import SkuLocation
from projections.folds import fold_order

GROUP = ["W1", "W2", "W3"]


class Store:
    """Aggregates by id, as the writer's cache holds them; `decide` runs one command like the writer."""

    def __init__(
        self, groups: dict[str, list[str]] | None = None, incoming: dict[str, int] | None = None
    ) -> None:
        self.aggs: dict[UUID, Aggregate] = {}
        self.decider = Decider(None, StaticLocations(groups or {"web": GROUP}, incoming))  # type: ignore[arg-type]  # no app: nothing is loaded
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

    def level(self, sku: str, location: str) -> SkuLocation | None:
        return UnitOfWork(self.aggs.get).stock(sku, location)

    def order(self, order_id: str) -> Order:
        o = UnitOfWork(self.aggs.get).order(order_id)
        assert o is not None
        return o

    def receive(self, location: str, units: int, sku: str = "A") -> None:
        self.decide(
            c.ReceiveStock(sku=sku, location=location, quantity=units, reference=f"po-{len(self.log)}")
        )

    def capture(self, order_id: str, quantity: int, partial: bool = False, **line: Any) -> dict[str, Any]:
        return self.decide(
            c.CaptureOrder(
                order_id=order_id,
                channel="web",
                lines=({"line_id": "1", "sku": "A", "quantity": quantity, **line},),
                allow_partial=partial,
            )
        )


def allocations(store: Store, order_id: str) -> dict[str, int]:
    return dict(Order.allocations_of(store.order(order_id).lines["1"]))


# ----------------------------------------------------------------- the plan


def test_one_location_that_can_fill_the_line_takes_it_all_in_group_order() -> None:
    assert sourcing.plan(3, [("W1", 2), ("W2", 5), ("W3", 9)]) == ([("W2", 3)], 0)


def test_the_fewest_locations_fill_a_line_and_the_first_such_set_in_group_order() -> None:
    # W1+W3 and W2+W3 both fill 10 with two locations; W1+W2 cannot: the first set is W1, W3.
    assert sourcing.plan(10, [("W1", 4), ("W2", 3), ("W3", 7)]) == ([("W1", 4), ("W3", 6)], 0)
    # Three small locations are not used when two larger ones suffice.
    assert sourcing.plan(6, [("W1", 2), ("W2", 2), ("W3", 3), ("W4", 3)]) == ([("W3", 3), ("W4", 3)], 0)


def test_a_group_that_cannot_fill_gives_everything_and_names_the_rest() -> None:
    assert sourcing.plan(9, [("W1", 3), ("W2", -1), ("W3", 4)]) == ([("W1", 3), ("W3", 4)], 2)


def test_a_location_that_allows_backorders_can_fill_anything() -> None:
    assert sourcing.plan(50, [("W1", 3), ("W2", None)]) == ([("W2", 50)], 0)


@given(st.integers(1, 40), st.lists(st.integers(-5, 15), min_size=1, max_size=6))
def test_a_plan_never_takes_more_than_a_location_has_and_is_minimal(quantity: int, units: list[int]) -> None:
    caps: list[sourcing.Capacity] = [(f"W{i}", n) for i, n in enumerate(units)]
    out, short = sourcing.plan(quantity, caps)
    have = dict(caps)
    assert all(0 < n <= (have[loc] or 0) for loc, n in out)
    assert sum(n for _, n in out) + short == quantity
    positive = sorted((n for n in units if n > 0), reverse=True)
    assert short == max(0, quantity - sum(positive))
    if not short:  # no plan with fewer locations exists
        fewest = next(k for k in range(1, len(positive) + 1) if sum(positive[:k]) >= quantity)
        assert len(out) == fewest


# ----------------------------------------------------------- order capture


def test_an_order_no_single_location_can_fill_is_split_across_the_group() -> None:
    store = Store()
    store.receive("W1", 3)
    store.receive("W2", 3)
    answer = store.capture("o-1", 5)
    assert answer["lines"][0]["allocations"] == [
        {"location": "W1", "quantity": 3},
        {"location": "W2", "quantity": 2},
    ]
    assert store.stock("A", "W1") == (3, 3) and store.stock("A", "W2") == (3, 2)
    assert store.order("o-1").stage == "reserved"


def test_the_group_together_short_is_refused_and_reserves_nothing() -> None:
    store = Store()
    store.receive("W1", 3)
    store.receive("W2", 3)
    with pytest.raises(InsufficientStockError):
        store.capture("o-1", 7)
    assert store.stock("A", "W1") == (3, 0) and store.stock("A", "W2") == (3, 0)


def test_a_location_named_on_the_line_is_used_alone() -> None:
    store = Store()
    store.receive("W1", 3)
    store.receive("W2", 3)
    with pytest.raises(InsufficientStockError):
        store.capture("o-1", 5, location="W2")
    store.capture("o-2", 3, location="W2")
    assert allocations(store, "o-2") == {"W2": 3}


def test_with_allow_partial_the_rest_is_backordered_and_receipts_fill_the_oldest_first() -> None:
    store = Store()
    store.receive("W1", 2)
    store.capture("o-1", 5, partial=True)
    store.capture("o-2", 2, partial=True)
    first, second = store.order("o-1").lines["1"], store.order("o-2").lines["1"]
    assert (first["backordered"], second["backordered"]) == (3, 2)
    store.receive("W3", 4)  # o-1 (captured first) takes 3, o-2 the one left
    assert allocations(store, "o-1") == {"W1": 2, "W3": 3}
    assert store.order("o-1").lines["1"]["backordered"] == 0
    assert allocations(store, "o-2") == {"W3": 1}
    assert store.order("o-2").lines["1"]["backordered"] == 1
    store.receive("W2", 5)
    assert allocations(store, "o-2") == {"W3": 1, "W2": 1}
    assert store.stock("A", "W2") == (5, 1)
    assert store.order("o-2").stage == "reserved"


def test_a_receipt_outside_the_group_or_the_named_location_fills_nothing() -> None:
    store = Store()
    store.capture("o-1", 2, partial=True, location="W1")
    store.receive("W2", 5)
    assert allocations(store, "o-1") == {}
    store.receive("ELSEWHERE", 5)
    assert store.order("o-1").lines["1"]["backordered"] == 2
    store.receive("W1", 1)
    assert allocations(store, "o-1") == {"W1": 1}


def test_a_cancelled_backorder_is_never_filled() -> None:
    store = Store()
    store.capture("o-1", 2, partial=True)
    store.decide(c.CancelOrder(order_id="o-1", reason="customer"))
    store.receive("W1", 5)
    assert store.stock("A", "W1") == (5, 0)
    assert store.order("o-1").lines["1"]["backordered"] == 0


def test_units_a_cancellation_frees_go_to_the_backorders() -> None:
    store = Store()
    store.receive("W1", 3)
    store.capture("o-1", 3)
    store.capture("o-2", 2, partial=True)
    store.decide(c.CancelOrder(order_id="o-1", reason="customer"))
    assert allocations(store, "o-2") == {"W1": 2}


def test_a_split_line_ships_from_each_allocation() -> None:
    store = Store()
    store.receive("W1", 3)
    store.receive("W2", 3)
    store.capture("o-1", 5)
    store.decide(c.ShipOrder(order_id="o-1", shipment_id="s-1", lines=({"line_id": "1", "quantity": 4},)))
    assert store.stock("A", "W1") == (0, 0) and store.stock("A", "W2") == (2, 1)
    shipped = store.order("o-1").shipments["s-1"]
    assert [(x["location"], x["quantity"]) for x in shipped] == [("W1", 3), ("W2", 1)]
    store.decide(
        c.ShipOrder(
            order_id="o-1", shipment_id="s-2", lines=({"line_id": "1", "quantity": 1, "location": "W2"},)
        )
    )
    assert store.stock("A", "W2") == (1, 0)
    assert allocations(store, "o-1") == {}


def test_shipping_from_an_unallocated_location_moves_the_reservation_with_it() -> None:
    store = Store()
    store.receive("W1", 3)
    store.receive("W2", 3)
    store.receive("W3", 5)
    store.capture("o-1", 5)  # W3 alone
    store.decide(
        c.ShipOrder(
            order_id="o-1", shipment_id="s-1", lines=({"line_id": "1", "quantity": 2, "location": "W1"},)
        )
    )
    assert store.stock("A", "W1") == (1, 0) and store.stock("A", "W3") == (5, 3)
    assert allocations(store, "o-1") == {"W3": 3}


def test_a_partial_cancellation_releases_the_last_allocation_first() -> None:
    store = Store()
    store.receive("W1", 3)
    store.receive("W2", 3)
    store.capture("o-1", 5)
    store.decide(
        c.CancelOrder(
            order_id="o-1", reason="customer", lines=({"line_id": "1", "quantity": 3},), reference="c1"
        )
    )
    assert allocations(store, "o-1") == {"W1": 2}
    assert store.stock("A", "W1") == (3, 2) and store.stock("A", "W2") == (3, 0)


def test_expiry_releases_only_the_allocation_at_the_expiring_location() -> None:
    store = Store()
    store.receive("W1", 3)
    store.receive("W2", 3)
    soon = datetime.now(UTC) + timedelta(minutes=5)
    store.decide(
        c.CaptureOrder(
            order_id="o-1",
            channel="web",
            lines=({"line_id": "1", "sku": "A", "quantity": 5},),
            expires_at=soon,
        )
    )
    store.decide(c.ReleaseExpired(sku="A", location="W2", now=soon + timedelta(seconds=1)))
    assert allocations(store, "o-1") == {"W1": 3}
    assert store.stock("A", "W2") == (3, 0)


def test_the_read_model_fold_keeps_the_same_allocations_and_backorders() -> None:
    store = Store()
    store.receive("W1", 2)
    store.capture("o-1", 5, partial=True)
    store.receive("W2", 1)
    store.decide(c.ShipOrder(order_id="o-1", shipment_id="s-1", lines=({"line_id": "1", "quantity": 2},)))
    row = None
    for i, e in enumerate(x for x in store.log if isinstance(x, Order.Captured | Order.Event)):
        row = fold_order(row, e, i + 1)
    assert row is not None
    line = row["state"]["lines"]["1"]
    mine = store.order("o-1").lines["1"]
    assert (
        (line["allocations"], line["backordered"])
        == (mine["allocations"], mine["backordered"])
        == ({"W2": 1}, 2)
    )


def test_a_shortfall_moves_the_newest_reservations_to_the_group_as_far_as_it_has_units() -> None:
    store = Store()
    store.receive("W1", 5)
    store.receive("W2", 1)
    store.capture("o-1", 2, location="W1")
    store.capture("o-2", 3)  # W1 alone
    store.decide(c.SellDirect(sku="A", location="W1", quantity=3, reference="till-1", record_shortfall=True))
    level = store.level("A", "W1")
    assert level is not None and level.available == -3
    assert level.uncovered() == [("o-2/1", 3)]
    answer = store.decide(c.CoverShortfall(sku="A", location="W1"))
    assert answer["moved"] == [{"order_id": "o-2", "line_id": "1", "from": "W1", "to": "W2", "quantity": 1}]
    assert answer["uncovered"] == [
        {"reservation_id": "o-2/1", "order_id": "o-2", "line_id": "1", "quantity": 2}
    ]
    assert allocations(store, "o-2") == {"W1": 2, "W2": 1}
    assert store.stock("A", "W2") == (1, 1)
    again = store.decide(c.CoverShortfall(sku="A", location="W1"))  # nothing free any more: no change
    assert again["moved"] == [] and again["available"] == -2
