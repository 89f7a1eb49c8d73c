"""Cycle counts: an absolute count becomes the difference to what the writer holds, given / when / then."""

from __future__ import annotations

from typing import Any

import pytest

from ledger import commands as c
from ledger.application import Decider, UnitOfWork
from ledger.errors import InvalidCommandError
from ledger.stock import SkuLocation


def given(on_hand: int = 0, reserved: int = 0, damaged: int = 0) -> SkuLocation:
    s = SkuLocation.open("SKU-A", "WH1")
    if on_hand:
        s.receive(on_hand, "seed", {})
    if reserved:
        s.reserve("o-1", "1", reserved, {})
    if damaged:
        s.accept_return("r-1", damaged, "damaged", {})
    s.collect_events()
    return s


def decide(cmd: c.CountStock, *streams: SkuLocation) -> tuple[dict[str, Any], UnitOfWork]:
    known = {s.id: s for s in streams}
    uow = UnitOfWork(known.get)
    cmd.validate()
    return Decider(None).decide(cmd, uow), uow  # type: ignore[arg-type]  # no app: nothing is loaded


def count(counted: int, reference: str = "CC-1") -> c.CountStock:
    return c.CountStock(sku="SKU-A", location="WH1", counted=counted, reference=reference)


def new_events(uow: UnitOfWork) -> list[Any]:
    return [e for a in uow.aggregates() for e in a.pending_events]


def test_a_count_below_on_hand_is_an_adjustment_of_the_difference() -> None:
    s = given(on_hand=12, reserved=3)
    answer, uow = decide(count(10), s)
    [event] = new_events(uow)
    assert isinstance(event, SkuLocation.StockAdjusted)
    assert (event.delta, event.reason, event.reference) == (-2, "cycle-count", "CC-1")
    assert (answer["delta"], answer["on_hand"], answer["available"], answer["shortfall"]) == (-2, 10, 7, 0)


def test_a_count_above_on_hand_adds_the_units_found() -> None:
    s = given(on_hand=4)
    answer, uow = decide(count(9), s)
    assert [e.delta for e in new_events(uow)] == [5] and answer["on_hand"] == 9


def test_a_count_that_matches_appends_nothing() -> None:
    s = given(on_hand=7, reserved=2)
    answer, uow = decide(count(7), s)
    assert new_events(uow) == [] and answer["delta"] == 0


def test_a_count_below_reserved_and_unavailable_is_recorded_with_its_shortfall() -> None:
    s = given(on_hand=10, reserved=4, damaged=2)  # on hand 12: 4 reserved, 2 damaged
    answer, uow = decide(count(3), s)
    assert [e.delta for e in new_events(uow)] == [-9]
    assert (answer["on_hand"], answer["reserved"], answer["unavailable"]) == (3, 4, 2)
    assert answer["available"] == -3 and answer["shortfall"] == 3


def test_a_count_of_zero_empties_the_shelf_and_a_zero_count_of_an_unknown_stream_opens_nothing() -> None:
    s = given(on_hand=5)
    answer, uow = decide(count(0), s)
    assert [e.delta for e in new_events(uow)] == [-5] and answer["on_hand"] == 0
    answer, uow = decide(count(0))
    assert new_events(uow) == [] and answer["delta"] == 0


def test_a_count_of_a_stream_the_ledger_never_saw_opens_it_with_the_units() -> None:
    answer, uow = decide(count(6))
    events = new_events(uow)
    assert [type(e).__name__ for e in events] == ["Opened", "StockAdjusted"]
    assert events[1].delta == 6 and answer["on_hand"] == 6


@pytest.mark.parametrize("bad", [-1, 1_000_000_001, True, 2.5, "3", None])
def test_a_count_outside_the_bounds_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidCommandError):
        count(bad).validate()


def test_the_count_is_idempotent_by_its_reference_and_fingerprinted_by_its_quantity() -> None:
    assert count(5, "CC-9").key == "count:CC-9"
    assert count(5).fingerprint() == count(5).fingerprint() != count(6).fingerprint()
