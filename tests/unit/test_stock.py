"""The SKU-location aggregate: given past facts, when a command, then new facts (or a refusal)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger.bounds import MAX_QUANTITY, stock_id
from ledger.errors import CorrectionError, InsufficientStockError, InvalidCommandError, ReservationError
from ledger.stock import SkuLocation, movement_effect

CAUSE = {"correlation_id": "c-1", "source": "test"}
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def given(on_hand: int = 0, backorders: bool = False) -> SkuLocation:
    s = SkuLocation.open("SKU-1", "store-1", CAUSE)
    if on_hand:
        s.receive(on_hand, "seed", CAUSE)
    if backorders:
        s.configure_backorders(True, CAUSE)
    s.collect_events()
    return s


def new_events(s: SkuLocation) -> list[type]:
    return [type(e) for e in s.collect_events()]


def unchanged(s: SkuLocation, before: tuple[int, ...]) -> bool:
    return (s.on_hand, s.reserved, s.unavailable, s.incoming, s.version) == before and not s.pending_events


def snapshot(s: SkuLocation) -> tuple[int, ...]:
    return (s.on_hand, s.reserved, s.unavailable, s.incoming, s.version)


# ------------------------------------------------------------------ identity and bounds


def test_identity_is_derived_from_sku_and_location():
    s = SkuLocation.open("SKU-1", "store-1", CAUSE)
    assert s.id == stock_id("SKU-1", "store-1") == SkuLocation.create_id("SKU-1", "store-1")
    assert stock_id("SKU-1", "store-2") != s.id
    assert stock_id("SKU-1store", "-1") != stock_id("SKU-1", "store-1")


@pytest.mark.parametrize("bad", ["", "x" * 129, "a\nb", "tab\there", "\x00", None, 7])
def test_opening_refuses_an_identifier_outside_the_bounds(bad):
    with pytest.raises(InvalidCommandError):
        SkuLocation.open(bad, "store-1", CAUSE)
    with pytest.raises(InvalidCommandError):
        SkuLocation.open("SKU-1", bad, CAUSE)


def test_an_identifier_of_128_printable_characters_is_accepted():
    s = SkuLocation.open("é" * 128, "store 1", CAUSE)
    assert s.sku == "é" * 128


@pytest.mark.parametrize("bad", [0, -1, MAX_QUANTITY + 1, 1.5, "3", True, None])
def test_every_quantity_command_refuses_a_quantity_outside_1_to_a_billion(bad):
    s = given(on_hand=10)
    before = snapshot(s)
    for attempt in (
        lambda: s.receive(bad, "r", CAUSE),
        lambda: s.expect(bad, "r", CAUSE),
        lambda: s.reserve("o", "1", bad, CAUSE),
        lambda: s.sell(bad, "r", CAUSE),
        lambda: s.transfer_out("t", "store-2", bad, CAUSE),
        lambda: s.transfer_in("t", "store-2", bad, CAUSE),
        lambda: s.accept_return("r", bad, "restock", CAUSE),
        lambda: s.write_off_damaged(bad, "w", CAUSE),
    ):
        with pytest.raises(InvalidCommandError):
            attempt()
    assert unchanged(s, before)


def test_a_quantity_of_exactly_a_billion_is_accepted():
    s = given()
    s.receive(MAX_QUANTITY, "big", CAUSE)
    assert s.on_hand == MAX_QUANTITY


@pytest.mark.parametrize("bad", [0, MAX_QUANTITY + 1, -MAX_QUANTITY - 1, True, 2.0])
def test_an_adjustment_refuses_a_zero_or_oversized_delta(bad):
    s = given(on_hand=5)
    with pytest.raises(InvalidCommandError):
        s.adjust(bad, "cycle-count", "a", CAUSE)
    assert s.on_hand == 5 and not s.pending_events


# ------------------------------------------------------------------ receipts and incoming


def test_a_receipt_raises_on_hand_and_available():
    s = given()
    s.receive(7, "po-1", CAUSE)
    assert (s.on_hand, s.available) == (7, 7)
    [event] = s.collect_events()
    assert isinstance(event, SkuLocation.StockReceived)
    assert (event.quantity, event.reference, event.cause) == (7, "po-1", CAUSE)


def test_expected_stock_is_incoming_and_not_on_hand_until_received():
    s = given()
    s.expect(10, "asn-1", CAUSE)
    assert (s.incoming, s.on_hand, s.available) == (10, 0, 0)
    s.receive(4, "asn-1", CAUSE, expected=True)
    assert (s.incoming, s.on_hand) == (6, 4)
    s.receive(9, "asn-1b", CAUSE, expected=True)
    assert (s.incoming, s.on_hand) == (0, 13)
    assert new_events(s) == [SkuLocation.StockExpected, SkuLocation.StockReceived, SkuLocation.StockReceived]


# ------------------------------------------------------------------ reservations


def test_a_reservation_moves_units_from_available_to_reserved():
    s = given(on_hand=5)
    rid = s.reserve("order-1", "line-1", 3, CAUSE)
    assert rid == "order-1/line-1"
    assert (s.on_hand, s.reserved, s.available) == (5, 3, 2)
    assert s.reserved_for(rid) == 3
    assert new_events(s) == [SkuLocation.StockReserved]


def test_a_reservation_of_exactly_the_available_units_is_accepted():
    s = given(on_hand=5)
    s.reserve("order-1", "1", 5, CAUSE)
    assert s.available == 0


def test_a_reservation_beyond_available_is_refused_and_changes_nothing():
    s = given(on_hand=5)
    s.reserve("order-1", "1", 4, CAUSE)
    s.collect_events()
    before = snapshot(s)
    with pytest.raises(InsufficientStockError) as refused:
        s.reserve("order-2", "1", 2, CAUSE)
    assert refused.value.code == "insufficient-stock"
    assert refused.value.details["available"] == 1
    assert unchanged(s, before)


def test_units_that_are_unavailable_cannot_be_reserved():
    s = given(on_hand=3)
    s.accept_return("ret-1", 2, "damaged", CAUSE)
    assert (s.on_hand, s.unavailable, s.available) == (5, 2, 3)
    with pytest.raises(InsufficientStockError):
        s.reserve("order-1", "1", 4, CAUSE)


def test_a_location_that_allows_backorders_reserves_beyond_available():
    s = given(on_hand=1, backorders=True)
    s.reserve("order-1", "1", 5, CAUSE)
    assert (s.reserved, s.available) == (5, -4)


def test_configuring_backorders_records_only_a_change():
    s = given()
    s.configure_backorders(False, CAUSE)
    assert not s.pending_events
    s.configure_backorders(True, CAUSE)
    s.configure_backorders(True, CAUSE)
    assert new_events(s) == [SkuLocation.BackordersConfigured]
    assert s.allow_backorder


def test_disallowing_backorders_again_stops_overselling():
    s = given(on_hand=1, backorders=True)
    s.configure_backorders(False, CAUSE)
    with pytest.raises(InsufficientStockError):
        s.reserve("order-1", "1", 2, CAUSE)


def test_a_second_reservation_for_the_same_line_adds_to_it():
    s = given(on_hand=5)
    s.reserve("order-1", "1", 2, CAUSE)
    s.reserve("order-1", "1", 1, CAUSE)
    assert s.reserved_for("order-1/1") == 3 and s.reserved == 3


def test_a_release_returns_units_to_available():
    s = given(on_hand=5)
    rid = s.reserve("order-1", "1", 4, CAUSE)
    s.collect_events()
    s.release(rid, 3, "cancelled", CAUSE)
    assert (s.reserved, s.available, s.reserved_for(rid)) == (1, 4, 1)
    s.release(rid, 1, "reallocated", CAUSE)
    assert rid not in s.reservations and s.reserved == 0
    assert new_events(s) == [SkuLocation.ReservationReleased] * 2


def test_a_release_never_exceeds_what_the_reservation_holds():
    s = given(on_hand=5)
    rid = s.reserve("order-1", "1", 2, CAUSE)
    s.reserve("order-2", "1", 2, CAUSE)
    s.collect_events()
    before = snapshot(s)
    with pytest.raises(ReservationError):
        s.release(rid, 3, "cancelled", CAUSE)
    with pytest.raises(ReservationError):
        s.release("no-such-order/1", 1, "cancelled", CAUSE)
    assert unchanged(s, before)


def test_a_release_needs_a_known_reason():
    s = given(on_hand=5)
    rid = s.reserve("order-1", "1", 2, CAUSE)
    s.collect_events()
    with pytest.raises(ReservationError):
        s.release(rid, 1, "because", CAUSE)
    assert not s.pending_events


def test_an_expired_reservation_returns_its_units():
    s = given(on_hand=10)
    s.reserve("cart-1", "1", 3, CAUSE, expires_at=T0)
    s.reserve("cart-2", "1", 2, CAUSE, expires_at=T0 + timedelta(hours=1))
    s.reserve("order-3", "1", 4, CAUSE)
    s.collect_events()
    assert s.release_expired(T0 - timedelta(seconds=1), CAUSE) == 0
    assert s.release_expired(T0, CAUSE) == 3
    events = s.collect_events()
    assert [(e.reservation_id, e.quantity, e.reason) for e in events] == [("cart-1/1", 3, "expired")]
    assert (s.reserved, s.available) == (6, 4)
    assert s.release_expired(T0 + timedelta(days=1), CAUSE) == 2
    assert s.reserved == 4 and s.reserved_for("order-3/1") == 4


def test_an_expired_reservation_that_was_partly_sold_returns_only_the_rest():
    s = given(on_hand=10)
    rid = s.reserve("cart-1", "1", 3, CAUSE, expires_at=T0)
    s.sell(2, "sale-1", CAUSE, reservation_id=rid)
    assert s.release_expired(T0, CAUSE) == 1
    assert (s.on_hand, s.reserved, s.available) == (8, 0, 8)


# ------------------------------------------------------------------ sales


def test_a_sale_from_a_reservation_consumes_it_and_lowers_on_hand():
    s = given(on_hand=5)
    rid = s.reserve("order-1", "1", 3, CAUSE)
    s.collect_events()
    s.sell(2, "ship-1", CAUSE, reservation_id=rid)
    assert (s.on_hand, s.reserved, s.available, s.reserved_for(rid)) == (3, 1, 2, 1)
    [event] = s.collect_events()
    assert isinstance(event, SkuLocation.StockSold) and event.reservation_id == rid


def test_a_sale_cannot_take_more_than_its_reservation_holds():
    s = given(on_hand=5)
    rid = s.reserve("order-1", "1", 1, CAUSE)
    s.collect_events()
    with pytest.raises(ReservationError):
        s.sell(2, "ship-1", CAUSE, reservation_id=rid)
    assert s.on_hand == 5 and s.reserved == 1 and not s.pending_events


def test_a_direct_sale_needs_available_units_not_reserved_ones():
    s = given(on_hand=5)
    s.reserve("order-1", "1", 4, CAUSE)
    s.collect_events()
    with pytest.raises(InsufficientStockError):
        s.sell(2, "till-1", CAUSE)
    s.sell(1, "till-2", CAUSE)
    assert (s.on_hand, s.reserved, s.available) == (4, 4, 0)


def test_a_direct_sale_beyond_available_is_allowed_with_backorders():
    s = given(on_hand=1, backorders=True)
    s.sell(3, "till-1", CAUSE)
    assert s.on_hand == -2


def test_an_offline_till_sale_is_recorded_even_without_free_units():
    s = given(on_hand=1)
    s.sell(2, "till-offline", CAUSE, record_shortfall=True)
    assert (s.on_hand, s.available) == (-1, -1)


# ------------------------------------------------------------------ transfers


def test_a_transfer_moves_units_out_of_one_location_and_into_another():
    src, dst = given(on_hand=5), SkuLocation.open("SKU-1", "store-2", CAUSE)
    src.transfer_out("tr-1", "store-2", 3, CAUSE)
    dst.transfer_in("tr-1", "store-1", 3, CAUSE)
    assert (src.on_hand, dst.on_hand) == (2, 3)
    assert new_events(src) == [SkuLocation.StockTransferredOut]
    assert new_events(dst) == [SkuLocation.Opened, SkuLocation.StockTransferredIn]


def test_a_transfer_cannot_send_reserved_units_even_with_backorders():
    s = given(on_hand=5, backorders=True)
    s.reserve("order-1", "1", 4, CAUSE)
    s.collect_events()
    with pytest.raises(InsufficientStockError):
        s.transfer_out("tr-1", "store-2", 2, CAUSE)
    assert s.on_hand == 5 and not s.pending_events


# ------------------------------------------------------------------ returns


def test_a_restocked_return_is_available_again():
    s = given(on_hand=1)
    s.accept_return("ret-1", 2, "restock", CAUSE)
    assert (s.on_hand, s.unavailable, s.available) == (3, 0, 3)


def test_a_damaged_return_is_on_hand_but_unavailable():
    s = given(on_hand=1)
    s.accept_return("ret-1", 2, "damaged", CAUSE)
    assert (s.on_hand, s.unavailable, s.available) == (3, 2, 1)
    [event] = s.collect_events()
    assert isinstance(event, SkuLocation.StockReturned) and event.disposition == "damaged"


def test_a_return_with_an_unknown_disposition_is_refused():
    s = given(on_hand=1)
    with pytest.raises(ReservationError):
        s.accept_return("ret-1", 2, "lost", CAUSE)
    assert not s.pending_events


def test_writing_off_damaged_units_lowers_on_hand_and_unavailable():
    s = given()
    s.accept_return("ret-1", 3, "damaged", CAUSE)
    s.write_off_damaged(2, "wo-1", CAUSE)
    assert (s.on_hand, s.unavailable) == (1, 1)
    with pytest.raises(InsufficientStockError):
        s.write_off_damaged(2, "wo-2", CAUSE)


# ------------------------------------------------------------------ adjustments


def test_an_adjustment_changes_on_hand_by_its_delta_with_a_reason():
    s = given(on_hand=5)
    s.adjust(-2, "cycle-count", "cc-1", CAUSE)
    s.adjust(4, "found", "cc-2", CAUSE)
    assert s.on_hand == 7
    assert [(e.delta, e.reason) for e in s.collect_events()] == [(-2, "cycle-count"), (4, "found")]


def test_an_adjustment_cannot_take_on_hand_below_zero():
    s = given(on_hand=2)
    with pytest.raises(InsufficientStockError):
        s.adjust(-3, "cycle-count", "cc-1", CAUSE)
    s.adjust(-2, "cycle-count", "cc-2", CAUSE)
    assert s.on_hand == 0


def test_an_adjustment_cannot_take_on_hand_below_what_is_reserved():
    s = given(on_hand=5)
    s.reserve("order-1", "1", 3, CAUSE)
    s.collect_events()
    with pytest.raises(InsufficientStockError) as refused:
        s.adjust(-3, "cycle-count", "cc-1", CAUSE)
    assert refused.value.code == "insufficient-stock"
    assert s.on_hand == 5 and not s.pending_events
    s.adjust(-2, "cycle-count", "cc-2", CAUSE)
    assert s.available == 0


def test_an_adjustment_needs_a_reason():
    s = given(on_hand=5)
    with pytest.raises(ReservationError):
        s.adjust(-1, "", "cc-1", CAUSE)


# ------------------------------------------------------------------ corrections


def corrects(s: SkuLocation, version: int) -> dict:
    return {"sku": s.sku, "location": s.location, "version": version, "reference": "mis-posted"}


def test_a_correction_reverses_a_movement_and_names_it():
    s = given()
    s.receive(4, "wrong-store", CAUSE)
    version = s.version
    s.collect_events()
    s.correct(corrects(s, version), -4, 0, "wrong location", CAUSE)
    [event] = s.collect_events()
    assert isinstance(event, SkuLocation.MovementCorrected)
    assert event.corrects["version"] == version and event.corrects["reference"] == "mis-posted"
    assert s.on_hand == 0
    assert movement_effect(event) == (-4, 0)


def test_a_movement_cannot_be_corrected_twice():
    s = given(on_hand=2)
    s.receive(4, "wrong-store", CAUSE)
    version = s.version
    s.correct(corrects(s, version), -4, 0, "wrong location", CAUSE)
    s.collect_events()
    with pytest.raises(CorrectionError):
        s.correct(corrects(s, version), -4, 0, "wrong location", CAUSE)
    assert s.on_hand == 2 and not s.pending_events


def test_the_reposting_side_of_a_correction_is_not_a_reversal():
    wrong, right = given(), SkuLocation.open("SKU-1", "store-2", CAUSE)
    named = corrects(wrong, 2)
    right.correct(named, 4, 0, "wrong location", CAUSE)
    right.correct(named | {"version": 3}, 1, 0, "wrong location", CAUSE)
    assert right.on_hand == 5 and right.corrected == {}


def test_a_correction_that_changes_nothing_is_refused():
    s = given(on_hand=2)
    with pytest.raises(CorrectionError):
        s.correct(corrects(s, 2), 0, 0, "nothing", CAUSE)


def test_a_reversal_cannot_oversell_units_already_reserved():
    s = given()
    s.receive(4, "wrong-store", CAUSE)
    version = s.version
    s.reserve("order-1", "1", 3, CAUSE)
    s.collect_events()
    with pytest.raises(InsufficientStockError):
        s.correct(corrects(s, version), -4, 0, "wrong location", CAUSE)
    assert s.on_hand == 4 and not s.pending_events and s.corrected == {}


def test_a_reversal_of_a_damaged_return_clears_the_unavailable_units():
    s = given(on_hand=1)
    s.accept_return("ret-1", 2, "damaged", CAUSE)
    version = s.version
    s.correct(corrects(s, version), -2, -2, "wrong location", CAUSE)
    assert (s.on_hand, s.unavailable) == (1, 0)


# ------------------------------------------------------------------ the movement table


def test_every_movement_has_a_signed_effect_and_other_events_have_none():
    s = given()
    s.receive(10, "r", CAUSE)
    s.expect(5, "asn", CAUSE)
    s.reserve("o", "1", 2, CAUSE)
    s.release("o/1", 1, "cancelled", CAUSE)
    s.sell(1, "ship", CAUSE, reservation_id="o/1")
    s.sell(1, "till", CAUSE)
    s.transfer_out("t", "x", 2, CAUSE)
    s.transfer_in("t2", "x", 3, CAUSE)
    s.accept_return("ret", 2, "damaged", CAUSE)
    s.adjust(-1, "count", "a", CAUSE)
    s.write_off_damaged(1, "wo", CAUSE)
    s.configure_backorders(True, CAUSE)
    effects = [movement_effect(e) for e in s.collect_events()]
    assert effects == [
        (10, 0),
        (0, 0),
        (0, 0),
        (0, 0),
        (-1, 0),
        (-1, 0),
        (-2, 0),
        (3, 0),
        (2, 2),
        (-1, 0),
        (-1, -1),
        (0, 0),
    ]
    assert s.on_hand == sum(d for d, _ in effects)
    assert s.unavailable == sum(u for _, u in effects)


def test_counting_units_up_is_allowed_even_when_backorders_left_on_hand_below_reserved():
    s = given(on_hand=1, backorders=True)
    s.reserve("order-1", "1", 5, CAUSE)
    s.sell(3, "till-1", CAUSE)
    s.collect_events()
    s.adjust(2, "found", "cc-1", CAUSE)
    assert (s.on_hand, s.reserved) == (0, 5)
    with pytest.raises(InsufficientStockError):
        s.adjust(-1, "cycle-count", "cc-2", CAUSE)
