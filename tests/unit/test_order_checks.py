"""The validation stage (checks that hold or validate an order) and refunds paid by several
transactions, on the order aggregate and through the decider."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.config import Settings
from ledger import commands as c
from ledger.errors import InvalidCommandError, OrderConflictError
from ledger.orders import STAGES, Order
from ledger.validation import AmountCheck, OrderToCheck, RegionCheck, run_checks

CAUSE = {"correlation_id": "c-1", "source": "test"}


def reserved_order() -> Order:
    o = Order.capture("o-1", "online", [{"line_id": "1", "sku": "A", "quantity": 2}], CAUSE)
    o.record_reservation("1", "WH1", 2, "o-1/1", CAUSE)
    return o


def facts(**kw: object) -> OrderToCheck:
    return OrderToCheck("o-1", "online", ({"line_id": "1", "sku": "A", "quantity": 1},), kw)


# ------------------------------------------------------------------ checks


def test_the_amount_check_holds_a_total_above_the_limit_of_its_currency_only():
    check = AmountCheck({"EUR": Decimal("500"), "*": Decimal("1000")})
    assert check(facts(total="499.99", currency="EUR")) is None
    assert check(facts(total="500.01", currency="EUR")) == "total 500.01 EUR is above the 500 EUR limit"
    assert check(facts(total="900", currency="USD")) is None  # the any-currency limit
    assert check(facts(total="1000.50", currency="USD")) is not None
    assert check(facts()) is None  # no total: nothing to check
    assert "not an amount" in (check(facts(total="-1", currency="EUR")) or "")


def test_the_region_check_holds_an_order_shipping_outside_the_regions():
    check = RegionCheck(frozenset({"DE", "FR"}))
    assert check(facts(region="de")) is None
    assert check(facts(region="US")) == "ships to US, outside DE, FR"
    assert check(facts()) is None


def test_checks_run_in_order_and_every_hold_is_named():
    checks = [AmountCheck({"*": Decimal("10")}), RegionCheck(frozenset({"DE"}))]
    assert run_checks(checks, facts(total="5", currency="EUR", region="DE")) == []
    holds = run_checks(checks, facts(total="50", currency="EUR", region="US"))
    assert [h["check"] for h in holds] == ["amount", "region"]


def test_the_settings_build_the_checks_and_none_when_unset():
    assert Settings().order_checks == []
    checks = Settings(hold_orders_above="EUR=5000,100", ship_to_regions="de, fr").order_checks
    assert checks == [
        AmountCheck({"EUR": Decimal("5000"), "*": Decimal("100")}),
        RegionCheck(frozenset({"DE", "FR"})),
    ]


def test_order_facts_outside_their_shape_are_refused():
    line = ({"line_id": "1", "sku": "A", "quantity": 1},)
    for bad in ({"total": 5, "currency": "EUR"}, {"total": "5"}, {"region": "DEU"}, {"email": "x@y.z"}):
        with pytest.raises(InvalidCommandError):
            c.CaptureOrder(order_id="o", channel="online", lines=line, facts=bad).validate()


# ----------------------------------------------------------- the aggregate


def test_a_held_order_reads_held_with_release_open_until_an_operator_releases_it():
    o = reserved_order()
    assert (o.stage, o.validation_status) == ("reserved", None)  # no checks: no validation stage
    o.record_checks(["amount"], [{"check": "amount", "reason": "too much"}], CAUSE)
    assert o.stage == "held" and o.held
    assert o.open_work[:2] == ["release", "ship"] and "post" in o.open_work
    o.release_hold("ops", CAUSE)
    assert o.stage == "validated" and not o.held and "release" not in o.open_work
    assert o.validation["released_by"] == "ops"
    o.release_hold("ops", CAUSE)  # again: nothing more
    assert [type(e).__name__ for e in o.collect_events()][-2:] == ["Held", "Released"]
    o.record_erp_posting("sales-order", 1, "ERP-1", CAUSE)
    assert o.stage == "posted"


def test_an_order_that_passed_its_checks_is_validated_and_cannot_be_released():
    o = reserved_order()
    o.record_checks(["amount", "region"], [], CAUSE)
    assert o.stage == "validated" and o.validation["checks"] == ["amount", "region"]
    with pytest.raises(OrderConflictError, match="not held"):
        o.release_hold("ops", CAUSE)
    o.record_checks(["amount"], [{"check": "amount", "reason": "late"}], CAUSE)  # checks run once
    assert o.stage == "validated"


def test_a_held_order_cancelled_is_cancelled_void_and_no_longer_releasable():
    o = reserved_order()
    o.record_checks(["region"], [{"check": "region", "reason": "ships to US"}], CAUSE)
    o.record_cancellation("fraud", [{"line_id": "1", "quantity": 2, "released": 2}], True, CAUSE)
    assert o.stage == "cancelled" and o.erp_void and not o.held and "release" not in o.open_work
    with pytest.raises(OrderConflictError, match="cancelled"):
        o.release_hold("ops", CAUSE)


def test_held_and_validated_are_documented_stages():
    assert {"held", "validated"} <= set(STAGES)


# ----------------------------------------------- refunds over several transactions


def refund_order(*transactions: str) -> Order:
    o = reserved_order()
    o.record_refund("rf", "15.00", "EUR", [], CAUSE, transactions=list(transactions))
    return o


def test_a_refund_is_confirmed_only_once_all_its_transactions_have_an_outcome():
    o = refund_order("t1", "t2", "t3")
    o.record_refund_transaction("rf", "t1", "success", "10.00", CAUSE)
    o.record_refund_transaction("rf", "t2", "failure", "3.00", CAUSE)
    assert o.refunds["rf"]["status"] == "recorded" and "confirm-refund" in o.open_work
    o.record_refund_transaction("rf", "t3", "success", "2.50", CAUSE)
    refund = o.refunds["rf"]
    # the failed transaction counts for nothing; the amount is exact
    assert (refund["status"], refund["amount"], refund["transaction"]) == ("confirmed", "12.50", "t3")
    assert "credit-memo:rf" in o.erp["expected"]
    o.record_refund_transaction("rf", "t2", "success", "3.00", CAUSE)  # too late: nothing changes
    assert o.refunds["rf"]["amount"] == "12.50"


def test_a_transactions_first_outcome_stands_and_a_repeat_records_nothing():
    o = refund_order("t1", "t2")
    o.record_refund_transaction("rf", "t1", "success", "7.00", CAUSE)
    n = len(o.pending_events)
    o.record_refund_transaction("rf", "t1", "success", "7.00", CAUSE)
    o.record_refund_transaction("rf", "t1", "failure", "7.00", CAUSE)
    assert len(o.pending_events) == n and o.refunds["rf"]["status"] == "recorded"


def test_a_refund_whose_every_transaction_failed_is_failed():
    o = refund_order("t1", "t2")
    o.record_refund_transaction("rf", "t1", "failure", "7.00", CAUSE)
    o.record_refund_transaction("rf", "t2", "failure", "8.00", CAUSE)
    assert o.refunds["rf"]["status"] == "failed" and "confirm-refund" not in o.open_work


def test_a_refund_transaction_outcome_is_success_or_failure():
    with pytest.raises(InvalidCommandError):
        c.RecordRefundTransaction(
            order_id="o", refund_id="rf", transaction="t", status="pending", amount="1.00"
        ).validate()
    with pytest.raises(InvalidCommandError):
        c.RecordRefundTransaction(
            order_id="o", refund_id="rf", transaction="t", status="success", amount="1e400x"
        ).validate()


def test_an_unanswered_sales_order_is_never_void_even_if_the_order_is_cancelled():
    o = reserved_order()
    o.record_erp_failure("sales-order", 1, "ReadTimeout", CAUSE, uncertain=True)
    o.record_cancellation("customer", [{"line_id": "1", "quantity": 2, "released": 2}], True, CAUSE)
    assert o.whole_cancelled and not o.erp_void and "post" in o.open_work
    certain = reserved_order()
    certain.record_erp_failure("sales-order", 1, "HTTP 503", CAUSE)
    certain.record_cancellation("customer", [{"line_id": "1", "quantity": 2, "released": 2}], True, CAUSE)
    assert certain.erp_void and "post" not in certain.open_work
