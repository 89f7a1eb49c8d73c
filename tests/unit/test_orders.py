"""The order aggregate: its facts, and the business stage derived from them."""

from __future__ import annotations

import pytest

from ledger.bounds import order_id as order_uuid
from ledger.errors import InvalidCommandError, OrderConflictError
from ledger.orders import STAGES, Order

CAUSE = {"correlation_id": "c-1", "source": "shopify"}


def captured(*quantities: int, **kw) -> Order:
    lines = [{"line_id": f"L{i}", "sku": f"SKU-{i}", "quantity": q} for i, q in enumerate(quantities, 1)]
    o = Order.capture("1001", "online", lines, CAUSE, **kw)
    return o


def reserved(*quantities: int) -> Order:
    o = captured(*quantities)
    for lid, line in o.lines.items():
        o.record_reservation(lid, "wh-1", line["quantity"], f"1001/{lid}", CAUSE)
    return o


def ship(o: Order, shipment_id: str, **lines: int) -> None:
    o.record_shipment(
        shipment_id,
        [{"line_id": lid, "quantity": q, "location": "wh-1", "consumed": q} for lid, q in lines.items()],
        CAUSE,
    )


def types(o: Order) -> list[str]:
    return [type(e).__name__ for e in o.collect_events()]


# ------------------------------------------------------------------ capture


def test_a_captured_order_has_its_lines_channel_and_correlation_ids():
    o = captured(2, 1, external_refs={"shopify": "gid://shopify/Order/1", "shopify_name": "#1001"})
    assert o.id == order_uuid("1001") == Order.create_id("1001")
    assert (o.order_id, o.channel, o.stage) == ("1001", "online", "captured")
    assert [x["quantity"] for x in o.lines.values()] == [2, 1]
    assert o.external_refs["shopify_name"] == "#1001"
    assert types(o) == ["Captured"]


def test_an_order_without_lines_is_refused():
    with pytest.raises(OrderConflictError):
        Order.capture("1001", "online", [], CAUSE)


def test_an_order_with_a_repeated_line_id_is_refused():
    lines = [{"line_id": "1", "sku": "A", "quantity": 1}, {"line_id": "1", "sku": "B", "quantity": 1}]
    with pytest.raises(OrderConflictError):
        Order.capture("1001", "online", lines, CAUSE)


@pytest.mark.parametrize(
    "line",
    [
        {"line_id": "", "sku": "A", "quantity": 1},
        {"line_id": "1", "sku": "A\x07", "quantity": 1},
        {"line_id": "1", "sku": "A", "quantity": 0},
        {"line_id": "1", "sku": "A", "quantity": 1_000_000_001},
    ],
)
def test_an_order_line_outside_the_bounds_is_refused(line):
    with pytest.raises(InvalidCommandError):
        Order.capture("1001", "online", [line], CAUSE)


def test_the_same_capture_is_recognised_whatever_the_line_order():
    o = captured(2, 1)
    again = [
        {"line_id": "L2", "sku": "SKU-2", "quantity": 1},
        {"line_id": "L1", "sku": "SKU-1", "quantity": 2},
    ]
    assert o.same_capture("online", again)
    assert not o.same_capture("pos", again)
    assert not o.same_capture("online", again[:1])


# ------------------------------------------------------------------ stages


def test_an_order_whose_lines_are_all_reserved_is_reserved():
    o = captured(2, 1)
    o.record_reservation("L1", "wh-1", 2, "1001/L1", CAUSE)
    assert o.stage == "captured"
    o.record_reservation("L2", "store-9", 1, "1001/L2", CAUSE)
    assert o.stage == "reserved"
    assert o.lines["L2"]["location"] == "store-9"


def test_a_reservation_for_an_unknown_line_is_refused():
    o = captured(1)
    with pytest.raises(OrderConflictError):
        o.record_reservation("nope", "wh-1", 1, "1001/nope", CAUSE)


def test_an_order_posted_to_the_erp_is_posted():
    o = reserved(1)
    o.record_erp_posting("sales-order", 1, "SO-77", CAUSE)
    assert o.stage == "posted"
    assert o.external_refs["erp"] == "SO-77" and o.erp["posted"]


def test_erp_failures_count_their_attempts_before_the_posting():
    o = reserved(1)
    o.record_erp_failure("sales-order", 1, "HTTP 503", CAUSE)
    o.record_erp_failure("sales-order", 2, "timeout " * 200, CAUSE)
    assert o.stage == "reserved"
    assert o.erp["attempts"] == 2 and len(o.erp["last_error"]) == 500 and not o.erp["posted"]
    o.record_erp_posting("sales-order", 3, None, CAUSE)
    assert (o.stage, o.erp["attempts"]) == ("posted", 3)
    assert types(o)[-3:] == ["ErpPostingFailed", "ErpPostingFailed", "PostedToErp"]


def test_a_partial_shipment_then_the_rest_ships_the_order():
    o = reserved(3, 1)
    ship(o, "s1", L1=2)
    assert o.stage == "partially_shipped"
    ship(o, "s2", L1=1, L2=1)
    assert o.stage == "shipped"
    assert set(o.shipments) == {"s1", "s2"}


def test_a_shipment_split_across_locations_records_each_location():
    o = reserved(3)
    o.record_shipment("s1", [{"line_id": "L1", "quantity": 2, "location": "wh-1", "consumed": 2}], CAUSE)
    o.record_shipment("s2", [{"line_id": "L1", "quantity": 1, "location": "store-2", "released": 1}], CAUSE)
    assert o.stage == "shipped"
    assert [s[0]["location"] for s in o.shipments.values()] == ["wh-1", "store-2"]
    assert Order.held_quantity(o.lines["L1"]) == 0


def test_a_shipment_cannot_exceed_what_is_left_to_ship():
    o = reserved(2)
    ship(o, "s1", L1=1)
    o.collect_events()
    with pytest.raises(OrderConflictError):
        ship(o, "s2", L1=2)
    with pytest.raises(OrderConflictError):
        o.record_shipment(
            "s3",
            [
                {"line_id": "L1", "quantity": 1, "location": "wh-1"},
                {"line_id": "L1", "quantity": 1, "location": "x"},
            ],
            CAUSE,
        )
    with pytest.raises(OrderConflictError):
        ship(o, "s4", nope=1)
    assert not o.pending_events and o.lines["L1"]["shipped"] == 1


def test_cancelling_one_line_partially_cancels_the_order():
    o = reserved(2, 1)
    o.record_cancellation("customer", [{"line_id": "L2", "quantity": 1, "released": 1}], False, CAUSE)
    assert o.stage == "partially_cancelled"
    assert o.cancel_reason is None and Order.held_quantity(o.lines["L2"]) == 0


def test_cancelling_every_open_unit_cancels_the_order():
    o = reserved(2, 1)
    o.record_cancellation(
        "fraud", [{"line_id": "L1", "quantity": 2}, {"line_id": "L2", "quantity": 1}], True, CAUSE
    )
    assert (o.stage, o.cancel_reason) == ("cancelled", "fraud")


def test_cancelling_the_rest_after_a_partial_shipment_leaves_it_shipped():
    o = reserved(3)
    ship(o, "s1", L1=1)
    o.record_cancellation("oos", [{"line_id": "L1", "quantity": 2}], True, CAUSE)
    assert o.stage == "shipped"


def test_a_cancellation_cannot_exceed_the_open_units():
    o = reserved(2)
    ship(o, "s1", L1=1)
    o.collect_events()
    with pytest.raises(OrderConflictError):
        o.record_cancellation("x", [{"line_id": "L1", "quantity": 2}], False, CAUSE)
    with pytest.raises(OrderConflictError):
        o.record_cancellation("x", [], True, CAUSE)
    assert not o.pending_events


def test_a_return_of_some_shipped_units_is_a_partial_return_then_a_return():
    o = reserved(2)
    ship(o, "s1", L1=2)
    o.record_return(
        "r1", [{"line_id": "L1", "quantity": 1, "disposition": "damaged", "location": "wh-1"}], CAUSE
    )
    assert o.stage == "partially_returned"
    o.record_return(
        "r2", [{"line_id": "L1", "quantity": 1, "disposition": "restock", "location": "wh-1"}], CAUSE
    )
    assert o.stage == "returned"
    assert o.returns["r1"][0]["disposition"] == "damaged"


def test_units_that_never_shipped_cannot_be_returned():
    o = reserved(2)
    ship(o, "s1", L1=1)
    o.collect_events()
    with pytest.raises(OrderConflictError):
        o.record_return("r1", [{"line_id": "L1", "quantity": 2, "disposition": "restock"}], CAUSE)
    assert not o.pending_events


def test_a_refund_is_recorded_then_settled():
    o = reserved(1)
    ship(o, "s1", L1=1)
    o.record_return("r1", [{"line_id": "L1", "quantity": 1, "disposition": "restock"}], CAUSE)
    o.record_refund("rf-1", "19.90", "EUR", [{"line_id": "L1", "quantity": 1}], CAUSE)
    assert o.stage == "refunded"
    o.record_refund("rf-1", "19.90", "EUR", [], CAUSE)  # a repeat records nothing
    o.settle_refund("rf-1", "bank-42", CAUSE)
    assert o.stage == "refunded" and o.refunds["rf-1"]["settlement"] == "bank-42"
    assert o.open_work == ["post", "invoice"]  # still work to do: never `settled` before it is done
    for document in ("sales-order", "delivery:s1", "return:r1"):
        o.record_erp_posting(document, 1, None, CAUSE)
    o.record_invoice("INV-1", CAUSE)
    assert o.stage == "settled"
    o.settle_refund("rf-1", "bank-42", CAUSE)
    assert types(o).count("RefundRecorded") == 1 and types(o).count("RefundSettled") == 0


def test_an_order_with_one_unsettled_refund_is_not_settled():
    o = reserved(1)
    ship(o, "s1", L1=1)
    o.record_refund("rf-1", "5", "EUR", [], CAUSE)
    o.record_refund("rf-2", "5", "EUR", [], CAUSE)
    o.settle_refund("rf-1", "bank-1", CAUSE)
    assert o.stage == "refunded"


def test_a_partly_refunded_order_with_a_unit_still_to_ship_is_not_settled():
    o = reserved(2, 1)
    o.record_erp_posting("sales-order", 1, "SO-1", CAUSE)
    ship(o, "s1", L1=2)
    o.record_refund("rf-1", "5.00", "EUR", [{"line_id": "L1", "quantity": 1}], CAUSE)
    o.confirm_refund("rf-1", "5.00", "EUR", "t-1", CAUSE)
    o.record_erp_posting("credit-memo:rf-1", 1, "CM-1", CAUSE)
    assert o.refunds["rf-1"]["status"] == "settled"
    assert o.stage == "partially_shipped"
    assert o.open_work == ["ship", "post", "invoice"]  # the delivery s1 is not posted yet
    o.record_erp_posting("delivery:s1", 1, "DL-1", CAUSE)
    ship(o, "s2", L2=1)
    o.record_erp_posting("delivery:s2", 1, "DL-2", CAUSE)
    o.record_invoice("INV-1", CAUSE)
    assert (o.stage, o.open_work) == ("settled", [])


def test_a_refund_moves_recorded_confirmed_settled_and_a_failure_stops_it():
    o = reserved(1)
    o.record_refund("rf-1", "19.00", "EUR", [], CAUSE)
    assert o.refunds["rf-1"]["status"] == "recorded" and "confirm-refund" in o.open_work
    o.confirm_refund("rf-1", "19.00", "EUR", "t-1", CAUSE)
    o.confirm_refund("rf-1", "19.00", "EUR", "t-1", CAUSE)  # redelivered: nothing new
    assert o.refunds["rf-1"]["status"] == "confirmed" and "settle-refund" in o.open_work
    assert "credit-memo:rf-1" in o.erp["expected"]
    o.record_refund("rf-2", "3.00", "EUR", [], CAUSE)
    o.fail_refund("rf-2", "t-2", "card declined", CAUSE)
    assert o.refunds["rf-2"]["status"] == "failed"
    kinds = types(o)
    assert kinds.count("RefundConfirmed") == 1 and kinds.count("RefundFailed") == 1


def test_an_order_cancelled_before_its_sales_order_was_posted_has_nothing_to_post():
    o = reserved(1)
    o.record_cancellation("customer", [{"line_id": "L1", "quantity": 1, "released": 1}], True, CAUSE)
    assert o.erp_void and o.stage == "cancelled" and "post" not in o.open_work
    p = reserved(1)
    p.record_erp_posting("sales-order", 1, "SO-1", CAUSE)
    p.record_cancellation("customer", [{"line_id": "L1", "quantity": 1, "released": 1}], True, CAUSE)
    assert not p.erp_void and p.open_work == ["post"]  # the cancellation is told to the ERP


def test_settling_an_unknown_refund_is_refused():
    o = reserved(1)
    with pytest.raises(OrderConflictError):
        o.settle_refund("nope", "bank", CAUSE)


def test_an_invoiced_order_is_invoiced_once_per_invoice():
    o = reserved(1)
    ship(o, "s1", L1=1)
    o.record_invoice("INV-1", CAUSE)
    o.record_invoice("INV-1", CAUSE)
    assert o.stage == "invoiced" and o.invoices == ["INV-1"]


def test_the_platform_status_is_recorded_but_never_drives_the_stage():
    o = captured(1, platform_status={"financial_status": "pending"})
    o.observe_platform_status({"financial_status": "paid", "fulfillment_status": "fulfilled"}, CAUSE)
    assert o.platform_status == {"financial_status": "paid", "fulfillment_status": "fulfilled"}
    assert o.stage == "captured"
    o.collect_events()
    o.observe_platform_status({"financial_status": "paid"}, CAUSE)
    assert not o.pending_events


def test_correlation_ids_are_added_once():
    o = captured(1)
    o.add_correlation_ids({"pos": "R-9", "erp": "SO-1"}, CAUSE)
    o.add_correlation_ids({"pos": "R-9"}, CAUSE)
    assert o.external_refs == {"pos": "R-9", "erp": "SO-1"}
    assert types(o) == ["Captured", "CorrelationIdsRecorded"]


def test_every_derived_stage_is_a_documented_stage():
    seen = set()
    o = captured(2)
    seen.add(o.stage)
    o.record_reservation("L1", "wh", 2, "1001/L1", CAUSE)
    seen.add(o.stage)
    o.record_erp_posting("sales-order", 1, None, CAUSE)
    seen.add(o.stage)
    ship(o, "s", L1=1)
    seen.add(o.stage)
    assert seen <= set(STAGES)
    assert seen == {"captured", "reserved", "posted", "partially_shipped"}


def test_the_view_shows_the_stage_lines_and_version():
    o = reserved(1)
    v = o.view()
    assert v["stage"] == "reserved" and v["version"] == o.version == 2
    assert v["lines"][0]["location"] == "wh-1"
