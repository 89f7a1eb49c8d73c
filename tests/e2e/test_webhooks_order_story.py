"""Shopify's order story over HTTP: refunds with their real amounts (pending, confirmed, failed),
every restock type, and routine sequences that read as routine in the inbox."""

from __future__ import annotations

from typing import Any

import shopify_payloads as sp
import test_webhooks_shopify as webhooks
from test_webhooks_shopify import SHOPIFY_WH, WH, Shop

from adapters.exceptions import list_exceptions

shop = webhooks.shop  # the same shop fixture: a ledger behind the webhook route


def transaction(txn_id: int, order_id: int, status: str, amount: str = "19.00") -> dict[str, Any]:
    """order_transactions/create payload of a refund transaction."""
    return {
        "id": txn_id,
        "order_id": order_id,
        "kind": "refund",
        "gateway": "bogus",
        "status": status,
        "amount": amount,
        "currency": "USD",
        "parent_id": None,
        "admin_graphql_api_id": f"gid://shopify/OrderTransaction/{txn_id}",
    }


def refunded(shop: Shop, order_id: int, refund_id: int) -> dict[str, Any]:
    order = shop.container.ledger.history.order(str(order_id))
    assert order is not None
    return dict(order.refunds[str(refund_id)])


def test_a_pending_refund_has_its_real_amount_and_is_confirmed_by_its_transaction(shop: Shop) -> None:
    shop.send("orders/create", sp.order(8001, [(1, None, "SKU-A", 1)]))
    shop.send(
        "refunds/create", sp.refund(8101, 8001, [(1, 1, "cancel", None)], amount="19.00", status="pending")
    )
    shop.drain()
    r = refunded(shop, 8001, 8101)
    assert (r["amount"], r["currency"], r["status"]) == ("19.00", "USD", "recorded")
    order = shop.container.ledger.history.order("8001")
    assert order is not None and "confirm-refund" in order.open_work
    shop.send("order_transactions/create", transaction(8101 * 100, 8001, "success"))
    shop.drain()
    r = refunded(shop, 8001, 8101)
    assert (r["amount"], r["status"]) == ("19.00", "confirmed")
    order = shop.container.ledger.history.order("8001")
    assert order is not None and "confirm-refund" not in order.open_work
    assert {m["status"] for m in shop.inbox()} == {"applied"}


def test_a_transaction_before_its_refund_waits_for_it(shop: Shop) -> None:
    shop.send("orders/create", sp.order(8002, [(1, None, "SKU-A", 1)]))
    shop.send("order_transactions/create", transaction(8102 * 100, 8002, "success"))
    shop.drain()
    assert sorted(m["status"] for m in shop.inbox()) == ["applied", "waiting"]
    shop.send("refunds/create", sp.refund(8102, 8002, [(1, 1, "cancel", None)], status="pending"))
    shop.drain()
    assert refunded(shop, 8002, 8102)["status"] == "confirmed"
    assert {m["status"] for m in shop.inbox()} == {"applied"}


def test_a_failed_refund_transaction_fails_the_refund_and_is_an_exception(shop: Shop) -> None:
    shop.send("orders/create", sp.order(8003, [(1, None, "SKU-A", 1)]))
    shop.send("refunds/create", sp.refund(8103, 8003, [(1, 1, "no_restock", None)], status="pending"))
    shop.send("order_transactions/create", transaction(8103 * 100, 8003, "failure"))
    shop.drain()
    assert refunded(shop, 8003, 8103)["status"] == "failed"
    found = list_exceptions(shop.container.db, "refund-failed")
    assert [e["key"] for e in found] == ["8003:8103"]
    order = shop.container.ledger.history.order("8003")
    assert order is not None and "confirm-refund" not in order.open_work


def test_legacy_restock_cancels_the_unshipped_units_and_returns_the_shipped_ones(shop: Shop) -> None:
    shop.send("orders/create", sp.order(8004, [(1, None, "SKU-A", 2), (2, None, "SKU-B", 1)]))
    shop.send("fulfillments/create", sp.fulfillment(9204, 8004, SHOPIFY_WH, [(1, 1)]))
    shop.drain()
    assert shop.stock("SKU-A", WH) == (9, 1)
    # Two units of line 1 restocked (one shipped, one not), and line 2 cancelled in the same refund.
    shop.send(
        "refunds/create",
        sp.refund(8104, 8004, [(1, 2, "legacy_restock", SHOPIFY_WH), (2, 1, "cancel", None)]),
    )
    shop.drain()
    order = shop.container.ledger.history.order("8004")
    assert order is not None
    assert (order.lines["1"]["cancelled"], order.lines["1"]["returned"]) == (1, 1)
    assert order.lines["2"]["cancelled"] == 1
    assert shop.stock("SKU-A", WH) == (10, 0)  # the shipped unit is back, the other one released
    assert shop.stock("SKU-B", WH) == (10, 0)
    refund = [m for m in shop.inbox() if m["kind"] == "refunds/create"][0]
    assert refund["status"] == "applied" and "refused" not in (refund["reason"] or "")


def test_a_routine_cancel_then_refund_reads_as_routine(shop: Shop) -> None:
    shop.send("orders/create", sp.order(8005, [(1, None, "SKU-A", 2)]))
    shop.send("orders/cancelled", sp.order(8005, [(1, None, "SKU-A", 2)], cancel_reason="customer"))
    shop.send("refunds/create", sp.refund(8105, 8005, [(1, 2, "cancel", None)], amount="398.00"))
    shop.drain()
    for m in shop.inbox():
        assert m["status"] == "applied", m
        assert "refused" not in (m["reason"] or ""), m
    order = shop.container.ledger.history.order("8005")
    assert order is not None and order.stage == "cancelled" and order.lines["1"]["cancelled"] == 2
    assert refunded(shop, 8005, 8105)["amount"] == "398.00"
    assert shop.stock("SKU-A", WH) == (10, 0)


def test_a_gift_card_and_a_custom_item_are_recorded_and_never_park_the_order(shop: Shop) -> None:
    payload = sp.order(8006, [(1, None, "SKU-A", 1), (2, 4484303768, "", 1), (3, None, None, 2)])
    payload["line_items"][1].update(
        gift_card=True, requires_shipping=False, variant_inventory_management=None
    )
    payload["line_items"][2].update(gift_card=False, requires_shipping=True, product_exists=False)
    shop.send("orders/create", payload)
    shop.send("fulfillments/create", sp.fulfillment(9206, 8006, SHOPIFY_WH, [(1, 1), (2, 1)]))
    shop.drain()
    assert {m["status"] for m in shop.inbox()} == {"applied"}
    order = shop.container.ledger.history.order("8006")
    assert order is not None
    assert [(lid, x["sku"], x.get("stock", True)) for lid, x in order.lines.items()] == [
        ("1", "SKU-A", True),
        ("2", "gift-card", False),
        ("3", "custom-item", False),
    ]
    assert order.lines["1"]["shipped"] == 1 and order.lines["2"]["shipped"] == 0
    assert "ship" not in order.open_work  # the only stock line shipped; the others carry no stock
    assert shop.stock("SKU-A", WH) == (9, 0)


def test_a_pos_order_reserves_at_the_store_named_by_its_location_id(shop: Shop) -> None:
    shop.container.ledger.receive("SKU-A", webhooks.STORE, 3, "seed-store")
    shop.send(
        "orders/create",
        sp.order(8007, [(1, None, "SKU-A", 2)], location_id=webhooks.SHOPIFY_STORE, source_name="pos"),
    )
    shop.send("orders/create", sp.order(8008, [(1, None, "SKU-A", 1)], location_id=123456789))
    shop.drain()
    order = shop.container.ledger.history.order("8007")
    assert order is not None and order.lines["1"]["location"] == webhooks.STORE
    assert shop.stock("SKU-A", webhooks.STORE) == (3, 2) and shop.stock("SKU-A", WH) == (10, 0)
    parked = [m for m in shop.inbox() if m["status"] == "parked"]
    assert [m["reason"] for m in parked] == ["unknown location 123456789"]


def test_an_order_edit_releases_the_units_edited_out_and_reserves_the_units_edited_in(shop: Shop) -> None:
    shop.send("orders/create", sp.order(8009, [(1, None, "SKU-A", 3), (2, None, "SKU-B", 1)]))
    shop.drain()
    edit = {
        "order_edit": {
            "id": 78912328,
            "order_id": 8009,
            "committed_at": "2026-11-20T11:00:00-05:00",
            "staff_note": "",
            "line_items": {"additions": [{"id": 2, "delta": 2}], "removals": [{"id": 1, "delta": 2}]},
        }
    }
    shop.send("orders/edited", edit)
    shop.send("orders/edited", edit, webhook_id="again")  # the same edit again changes nothing
    shop.drain()
    assert shop.stock("SKU-A", WH) == (10, 1) and shop.stock("SKU-B", WH) == (10, 3)
    # Then an orders/updated whose current quantities say one more unit of A left, and a new line.
    updated = sp.order(
        8009,
        [(1, None, "SKU-A", 3), (2, None, "SKU-B", 3), (3, None, "SKU-B", 1)],
        updated_at="2026-11-20T12:00:00-05:00",
    )
    for li, current in zip(updated["line_items"], (0, 3, 1), strict=True):
        li["current_quantity"] = current
    shop.send("orders/updated", updated)
    shop.drain()
    order = shop.container.ledger.history.order("8009")
    assert order is not None
    assert (order.lines["1"]["cancelled"], order.lines["2"]["quantity"], order.lines["3"]["quantity"]) == (
        3,
        3,
        1,
    )
    assert shop.stock("SKU-A", WH) == (10, 0) and shop.stock("SKU-B", WH) == (10, 4)
    for m in shop.inbox():
        assert m["status"] in ("applied", "duplicate") and "refused" not in (m["reason"] or ""), m
