"""Diagnosis of one mismatch from facts: timing, reservations, corrections, messages, gaps, residual."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.reconciliation.diagnosis import explain
from adapters.reconciliation.facts import Fact, fold
from adapters.reconciliation.ports import InboundMessage, MessageEffect, SequenceGap
from adapters.reconciliation.thresholds import Threshold, parse_thresholds

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def stream() -> list[Fact]:
    return [
        Fact(1, 1, "Opened", at(0)),
        Fact(2, 2, "StockReceived", at(1), on_hand=20, reference="po-1"),
        Fact(3, 3, "StockReserved", at(2), reserved=3, reservation_id="o1/1"),
        Fact(4, 4, "StockSold", at(30), on_hand=-2, reference="till-9"),
        Fact(5, 5, "StockSold", at(40), on_hand=-1, reference="till-10"),
    ]


def test_a_snapshot_that_already_counts_later_sales_is_timing_not_drift():
    s = fold(stream(), at(10))
    status, causes = explain("on_hand", 18, s)
    assert status == "timing"
    assert causes[0].kind == "timing" and [e["position"] for e in causes[0].events] == [4]


def test_a_snapshot_that_missed_the_last_movements_before_it_is_timing():
    s = fold(stream(), at(45))
    status, causes = explain("on_hand", 20, s)
    assert status == "timing" and [e["position"] for e in causes[0].events] == [4, 5]


def test_an_outside_on_hand_that_deducts_reservations_is_explained_by_them():
    s = fold(stream()[:3], at(10))
    status, causes = explain("on_hand", 17, s)
    assert status == "mismatch"
    assert [(c.kind, c.quantity) for c in causes] == [("reservations-not-counted", -3)]
    assert causes[0].events[0]["position"] == 3


def test_an_outside_available_that_ignores_reservations_is_explained_by_them():
    s = fold(stream()[:3], at(10), window=timedelta(0))
    status, causes = explain("available", 20, s)
    assert [(c.kind, c.quantity) for c in causes] == [("reservations-not-counted", 3)]


def test_a_correction_the_outside_never_applied():
    facts = stream()[:3] + [
        Fact(6, 4, "MovementCorrected", at(5), on_hand=-4, reference="fix-1", data={"reason": "wrong store"})
    ]
    s = fold(facts, at(10), window=timedelta(seconds=2))
    status, causes = explain("on_hand", 20, s)
    assert [(c.kind, c.quantity) for c in causes] == [("correction", 4)]


def test_a_movement_just_before_the_moment_reads_as_timing_inside_the_window():
    facts = stream()[:3] + [Fact(6, 4, "MovementCorrected", at(5), on_hand=-4, reference="fix-1")]
    status, causes = explain("on_hand", 20, fold(facts, at(10), window=timedelta(seconds=30)))
    assert status == "timing"


def test_a_parked_message_and_a_duplicate_add_up_to_the_delta():
    parked = InboundMessage(
        "inbox:7", "pos", "parked", "unknown item X", None, [MessageEffect("SKU", "S1", -2, -2)]
    )
    dup = InboundMessage(
        "inbox:9", "pos", "duplicate", "delivered 2 times", None, [MessageEffect("SKU", "S1", -1, -1)]
    )
    s = fold(stream()[:2], at(10))
    status, causes = explain("on_hand", 17, s, [parked, dup])
    assert [(c.kind, c.quantity) for c in causes] == [("parked-message", -2), ("duplicate-refused", -1)]
    assert causes[0].messages == ["inbox:7"]


def test_a_pos_gap_is_a_possible_cause_and_a_lone_difference_is_unexplained():
    s = fold(stream()[:2], at(10))
    gap = SequenceGap("store-1", "S1", [4])
    _, causes = explain("on_hand", 15, s, gaps=[gap])
    assert [(c.kind, c.quantity, c.basis) for c in causes] == [("pos-sequence-gap", -5, "possible")]
    status, causes = explain("on_hand", 15, s)
    assert status == "mismatch"
    assert [(c.kind, c.quantity) for c in causes] == [("unexplained", -5)]


def test_part_of_a_delta_explained_leaves_the_rest_unexplained():
    s = fold(stream()[:3], at(10))
    _, causes = explain("on_hand", 10, s)
    assert [(c.kind, c.quantity) for c in causes] == [("reservations-not-counted", -3), ("unexplained", -7)]


def test_thresholds_parse_and_decide():
    t = parse_thresholds("shopify=2/5%, erp=0/0%")
    assert t["shopify"] == Threshold(2, 5.0)
    assert not t["shopify"].exceeded(2, 100) and not t["shopify"].exceeded(4, 100)
    assert t["shopify"].exceeded(6, 100) and t["erp"].exceeded(1, 0)
    for bad in ("shopify", "erp=x/1%", "pos=-1/0%"):
        try:
            parse_thresholds(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
