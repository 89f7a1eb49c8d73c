"""Cycle counts: an absolute count becomes the difference to what the writer holds, given / when / then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


def test_a_count_below_on_hand_moves_on_hand_by_the_difference() -> None:
    s = given(on_hand=12, reserved=3)
    answer, uow = decide(count(10), s)
    [event] = new_events(uow)
    assert isinstance(event, SkuLocation.StockCounted)
    assert (event.delta, event.reason, event.reference, event.applied) == (-2, "cycle-count", "CC-1", True)
    assert (answer["delta"], answer["on_hand"], answer["available"], answer["shortfall"]) == (-2, 10, 7, 0)


def test_a_count_above_on_hand_adds_the_units_found() -> None:
    s = given(on_hand=4)
    answer, uow = decide(count(9), s)
    assert [e.delta for e in new_events(uow)] == [5] and answer["on_hand"] == 9


def test_a_count_that_matches_moves_nothing_but_records_its_moment() -> None:
    s = given(on_hand=7, reserved=2)
    answer, uow = decide(count(7), s)
    [event] = new_events(uow)
    assert (event.delta, answer["delta"], answer["on_hand"]) == (0, 0, 7)
    assert s.last_count_at == event.counted_at.timestamp()


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
    assert [type(e).__name__ for e in events] == ["Opened", "StockCounted"]
    assert events[1].delta == 6 and answer["on_hand"] == 6


@pytest.mark.parametrize("bad", [-1, 1_000_000_001, True, 2.5, "3", None])
def test_a_count_outside_the_bounds_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidCommandError):
        count(bad).validate()


def test_the_count_is_idempotent_by_its_reference_and_fingerprinted_by_its_quantity() -> None:
    assert count(5, "CC-9").key == "count-line:CC-9/SKU-A/WH1"
    assert count(5).fingerprint() == count(5).fingerprint() != count(6).fingerprint()


# ------------------------------------------------------------- as of counted_at


def at_count(counted: int, counted_at: datetime, reference: str) -> c.CountStock:
    return c.CountStock(
        sku="SKU-A", location="WH1", counted=counted, reference=reference, counted_at=counted_at
    )


def test_a_count_taken_before_units_shipped_but_delivered_after_keeps_them_shipped() -> None:
    """REFERENCE's field failure 3: counted 19 before 3 units shipped, delivered after: 16, not 19."""
    s = given(on_hand=20)
    taken = datetime.now(UTC)
    s.sell(3, "ship-1", {})
    sale = s.pending_events[-1]
    s.collect_events()
    answer, uow = decide(at_count(19, taken, "CC-late"), s)
    [event] = new_events(uow)
    assert (answer["on_hand"], event.delta, event.counted_at) == (16, -1, taken)
    assert event.accounted == [sale.originator_version] and answer["accounted"] == [sale.originator_version]


def test_counts_arriving_out_of_order_apply_the_newest_and_keep_the_older_for_audit() -> None:
    s = given(on_hand=10)
    first = datetime.now(UTC)
    s.receive(5, "po-2", {})  # recorded after the first count was taken
    second = datetime.now(UTC) + timedelta(microseconds=1)
    s.collect_events()
    # The newer count arrives first: 12 on the shelf at `second`, nothing recorded since.
    answer, uow = decide(at_count(12, second, "CC-2"), s)
    assert answer["on_hand"] == 12 and answer["applied"] is True
    s.collect_events()
    # The older count arrives late: kept, applied false, moves nothing.
    answer, uow = decide(at_count(4, first, "CC-1"), s)
    [late] = new_events(uow)
    assert (late.applied, late.delta, late.counted, answer["on_hand"]) == (False, 0, 4, 12)


def test_the_same_counts_in_order_give_the_same_on_hand() -> None:
    s = given(on_hand=10)
    first = datetime.now(UTC)
    s.collect_events()
    decide(at_count(4, first, "CC-1"), s)
    s.collect_events()
    s.receive(5, "po-2", {})
    s.collect_events()
    second = datetime.now(UTC)
    answer, _ = decide(at_count(12, second, "CC-2"), s)
    assert answer["on_hand"] == 12


def test_a_count_without_a_time_zone_is_refused() -> None:
    with pytest.raises(InvalidCommandError):
        at_count(3, datetime(2026, 11, 20, 8, 0), "CC-naive").validate()
