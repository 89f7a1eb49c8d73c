"""Holds (`POST /v1/reservations`): placed across the channel's group like an order, released,
expired by themselves, taken over by an order without ever holding a unit twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ledger import commands as c
from ledger.bounds import hold_reservation_id, parse_hold_reservation_id, parse_reservation_id
from ledger.errors import (
    HoldNotFoundError,
    InsufficientStockError,
    InvalidCommandError,
    LedgerError,
    ReservationError,
)
from ledger.holds import Hold
from ledger.orders import Order
from tests.unit.test_sourcing import Store

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=10)


def hold(store: Store, rid: str, *lines: tuple[str, int], channel: str = "web", **kw) -> dict:
    return store.decide(
        c.PlaceHold(
            reservation_id=rid,
            channel=channel,
            lines=tuple(
                {"line_id": str(i), "sku": sku, "quantity": q, **kw} for i, (sku, q) in enumerate(lines, 1)
            ),
            expires_at=LATER,
        )
    )


def order(store: Store, oid: str, *lines: tuple[str, int], rid: str | None = None, at=T0, **kw) -> dict:
    return store.decide(
        c.CaptureOrder(
            order_id=oid,
            channel="web",
            lines=tuple(
                {"line_id": str(i), "sku": sku, "quantity": q} for i, (sku, q) in enumerate(lines, 1)
            ),
            reservation_id=rid,
            received_at=at,
            **kw,
        )
    )


def the_hold(store: Store, rid: str) -> Hold:
    from ledger.application import UnitOfWork

    h = UnitOfWork(store.aggs.get).hold(rid)
    assert h is not None
    return h


@pytest.fixture
def store() -> Store:
    s = Store({"web": ["W1", "W2"]})
    s.receive("W1", 3)
    s.receive("W2", 3)
    return s


def test_a_hold_reservation_id_is_never_an_order_lines():
    rid = hold_reservation_id("SO/1", "a/b")
    assert parse_hold_reservation_id(rid) == ("SO/1", "a/b")
    assert parse_reservation_id(rid) is None  # no order line reads it as its own


def test_a_hold_is_split_across_the_group_like_an_order(store: Store):
    answer = hold(store, "cart/1", ("A", 5))
    assert answer["status"] == "held"
    assert answer["lines"][0]["allocations"] == [
        {"location": "W1", "quantity": 3},
        {"location": "W2", "quantity": 2},
    ]
    assert store.stock("A", "W1") == (3, 3) and store.stock("A", "W2") == (3, 2)


def test_a_hold_the_group_cannot_fill_holds_nothing(store: Store):
    with pytest.raises(InsufficientStockError):
        hold(store, "cart", ("A", 7))
    assert store.stock("A", "W1") == (3, 0) and store.stock("A", "W2") == (3, 0)


def test_a_hold_without_an_offset_is_refused():
    with pytest.raises(InvalidCommandError):
        c.PlaceHold(
            reservation_id="x",
            channel="web",
            lines=({"line_id": "1", "sku": "A", "quantity": 1},),
            expires_at=datetime(2026, 1, 1),
        ).validate()


def test_releasing_a_hold_gives_every_unit_back_once(store: Store):
    hold(store, "cart", ("A", 4))
    released = store.decide(c.ReleaseHold(reservation_id="cart"))
    assert released["status"] == "released" and released["lines"][0]["held"] == 0
    assert store.stock("A", "W1") == (3, 0) and store.stock("A", "W2") == (3, 0)
    again = store.decide(c.ReleaseHold(reservation_id="cart"))
    assert again["status"] == "released"
    with pytest.raises(HoldNotFoundError):
        store.decide(c.ReleaseHold(reservation_id="nope"))


def test_an_order_takes_the_hold_over_without_reserving_twice(store: Store):
    hold(store, "cart", ("A", 4))
    answer = order(store, "SO-1", ("A", 5), rid="cart")  # one unit beyond the hold, sourced as usual
    line = answer["lines"][0]
    assert line["reserved"] == 5 and answer["hold"] == {
        "reservation_id": "cart",
        "status": "taken",
        "late": False,
    }
    assert store.stock("A", "W1")[1] + store.stock("A", "W2")[1] == 5
    assert the_hold(store, "cart").held == 0
    with pytest.raises(ReservationError):  # a hold is taken over once
        order(store, "SO-2", ("A", 1), rid="cart")


def test_what_the_order_does_not_take_is_released(store: Store):
    store.receive("W1", 2, sku="B")
    hold(store, "cart", ("A", 4), ("B", 1))
    order(store, "SO-1", ("A", 2), rid="cart")
    assert store.stock("A", "W1")[1] + store.stock("A", "W2")[1] == 2
    assert store.stock("B", "W1") == (2, 0)


def test_a_hold_expires_by_itself(store: Store):
    hold(store, "cart", ("A", 5))
    store.decide(c.ReleaseExpired(sku="A", location="W1", now=LATER - timedelta(seconds=1)))
    assert store.stock("A", "W1") == (3, 3)  # not yet
    store.decide(c.ReleaseExpired(sku="A", location="W1", now=LATER))
    assert the_hold(store, "cart").status == "held"  # W2 still holds 2
    store.decide(c.ReleaseExpired(sku="A", location="W2", now=LATER))
    assert the_hold(store, "cart").status == "expired"
    assert store.stock("A", "W1") == (3, 0) and store.stock("A", "W2") == (3, 0)


def test_an_order_after_the_expiry_is_late_and_sourced_as_usual(store: Store):
    hold(store, "cart", ("A", 2))
    answer = order(store, "SO-1", ("A", 2), rid="cart", at=LATER)  # the sweeper has not run yet
    assert answer["hold"] == {"reservation_id": "cart", "status": "expired", "late": True}
    assert answer["lines"][0]["reserved"] == 2
    assert store.stock("A", "W1") == (3, 2)  # the hold's units went back first: held once
    assert the_hold(store, "cart").late_orders == ["SO-1"]


def test_an_order_for_a_hold_the_sweeper_expired_is_late(store: Store):
    hold(store, "cart", ("A", 2))
    store.decide(c.ReleaseExpired(sku="A", location="W1", now=LATER))
    answer = order(store, "SO-1", ("A", 2), rid="cart", at=LATER)
    assert answer["hold"]["late"] is True and store.stock("A", "W1") == (3, 2)


def test_an_order_for_another_channels_hold_or_an_unknown_one_is_refused(store: Store):
    hold(store, "cart", ("A", 1))
    with pytest.raises(HoldNotFoundError):
        order(store, "SO-1", ("A", 1), rid="nope")
    with pytest.raises(ReservationError):
        store.decide(c.ReleaseHold(reservation_id="cart"))
        order(store, "SO-2", ("A", 1), rid="cart")


def test_a_hold_and_an_order_of_the_same_id_do_not_share_a_reservation(store: Store):
    hold(store, "1001", ("A", 1))
    order(store, "1001", ("A", 1))
    store.decide(c.ReleaseHold(reservation_id="1001"))
    assert store.order("1001").lines["1"]["reserved"] == 1
    assert store.stock("A", "W1") == (3, 1)


class HoldMachine(RuleBasedStateMachine):
    """Any history of holds, releases, expiries and orders taking holds over: every unit reserved
    at a SKU-location is held by exactly one hold line or order line, never beyond available."""

    def __init__(self) -> None:
        super().__init__()
        self.store = Store({"web": ["W1", "W2"]})
        self.n = 0
        self.holds: list[str] = []
        self.ever_allowed = {"W1": False, "W2": False}

    def send(self, cmd: c.Command) -> None:
        try:
            self.store.decide(cmd)
        except LedgerError:
            pass

    @rule(loc=st.sampled_from(["W1", "W2"]), units=st.integers(1, 5))
    def receive(self, loc: str, units: int) -> None:
        self.store.receive(loc, units)

    @rule(units=st.integers(1, 6), minutes=st.integers(1, 20))
    def place(self, units: int, minutes: int) -> None:
        self.n += 1
        rid = f"h{self.n}"
        self.send(
            c.PlaceHold(
                reservation_id=rid,
                channel="web",
                lines=({"line_id": "1", "sku": "A", "quantity": units},),
                expires_at=T0 + timedelta(minutes=minutes),
            )
        )
        self.holds.append(rid)

    @rule(loc=st.sampled_from(["W1", "W2"]), allowed=st.booleans())
    def location_policy(self, loc: str, allowed: bool) -> None:
        self.send(c.ConfigureLocation(location=loc, backorders=allowed))
        self.ever_allowed[loc] |= allowed

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if self.holds:
            self.send(c.ReleaseHold(reservation_id=data.draw(st.sampled_from(self.holds))))

    @rule(minutes=st.integers(0, 25), loc=st.sampled_from(["W1", "W2"]))
    def expire(self, minutes: int, loc: str) -> None:
        self.send(c.ReleaseExpired(sku="A", location=loc, now=T0 + timedelta(minutes=minutes)))

    @rule(data=st.data(), units=st.integers(1, 8), minutes=st.integers(0, 25))
    def take_over(self, data: st.DataObject, units: int, minutes: int) -> None:
        self.n += 1
        rid = data.draw(st.sampled_from(self.holds)) if self.holds else None
        self.send(
            c.CaptureOrder(
                order_id=f"o{self.n}",
                channel="web",
                lines=({"line_id": "1", "sku": "A", "quantity": units},),
                reservation_id=rid,
                received_at=T0 + timedelta(minutes=minutes),
                allow_partial=data.draw(st.booleans()),
            )
        )

    @invariant()
    def every_reserved_unit_has_one_holder(self) -> None:
        from ledger.application import UnitOfWork

        uow = UnitOfWork(self.store.aggs.get)
        for loc in ("W1", "W2"):
            s = uow.stock("A", loc)
            if s is None:
                continue
            holders = 0
            for agg in self.store.aggs.values():
                if isinstance(agg, Hold):
                    holders += sum(x["allocations"].get(loc, 0) for x in agg.lines.values())
                    assert agg.status == "held" or agg.held == 0
                elif isinstance(agg, Order):
                    holders += sum(Order.allocations_of(x).get(loc, 0) for x in agg.lines.values())
            assert holders == s.reserved == sum(int(r["quantity"]) for r in s.reservations.values())
            # never beyond what is there, unless the location allowed backorders
            assert 0 <= s.reserved and (s.reserved <= s.on_hand or self.ever_allowed[loc])


HoldMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_holds_never_hold_twice = HoldMachine.TestCase


def test_a_location_policy_allows_backorders_for_every_sku_there_even_skus_seen_later(store: Store):
    with pytest.raises(InsufficientStockError):
        order(store, "SO-0", ("A", 9))
    store.decide(c.ConfigureLocation(location="W1", backorders=True))
    answer = order(store, "SO-1", ("A", 9))
    assert answer["lines"][0]["allocations"] == [{"location": "W1", "quantity": 9}]
    assert store.stock("A", "W1") == (3, 9)
    store.receive("W2", 1, sku="NEW")  # first seen after the policy, at W2: no backorders there
    with pytest.raises(InsufficientStockError):
        store.decide(
            c.CaptureOrder(
                order_id="SO-2",
                channel="web",
                lines=({"line_id": "1", "sku": "NEW", "quantity": 2, "location": "W2"},),
            )
        )
    held = hold(store, "cart", ("LATER", 4), location="W1")  # never received anywhere, held at W1
    assert held["lines"][0]["allocations"] == [{"location": "W1", "quantity": 4}]
    store.decide(c.ConfigureLocation(location="W1", backorders=False))
    with pytest.raises(InsufficientStockError):
        store.decide(
            c.CaptureOrder(
                order_id="SO-3",
                channel="web",
                lines=({"line_id": "1", "sku": "B", "quantity": 1, "location": "W1"},),
            )
        )


def test_setting_a_location_policy_again_appends_nothing(store: Store):
    store.decide(c.ConfigureLocation(location="W1", backorders=False))
    before = len(store.log)
    store.decide(c.ConfigureLocation(location="W1", backorders=True))
    store.decide(c.ConfigureLocation(location="W1", backorders=True))
    assert len(store.log) == before + 2  # the location's stream opened, and its one setting
