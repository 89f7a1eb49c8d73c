"""Over HTTP, from Shopify-shaped payloads: the validation stage (an order held by its checks is an
exception until an operator releases or cancels it), refunds paid by several transactions, and
`current_quantity` on refunded orders (refunded units are not edits)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import shopify_payloads as sp
from erpstandin import ErpStandIn
from test_webhooks_order_story import refunded, transaction
from test_webhooks_shopify import OLD_SECRET, SECRET, SHOPIFY_WH, WH, Shop

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from adapters.config import Settings
from adapters.erp import CircuitBreaker, ErpPoster, HttpErp
from api.app import create_app
from bootstrap import bootstrap
from ledger.ports import StaticLocations


@pytest.fixture
def shop(pg_url: str) -> Iterator[Shop]:
    settings = Settings(
        database_url=pg_url,
        shopify_webhook_secrets=f"{SECRET},{OLD_SECRET}",
        hold_orders_above="USD=500",
        ship_to_regions="US,CA",
    )
    container = bootstrap(settings, locations=StaticLocations({"online": [WH]}))
    app = create_app(container=container, run_workers=False)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            admin = container.keys.create("admin", ["admin"])[1]
            auditor = container.keys.create("auditor", ["audit:read"])[1]
            writer = container.keys.create("writer", ["ingest:write"])[1]
            s = Shop(client, container, admin, auditor, writer)
            s.channel("online", WH)
            s.map("location", SHOPIFY_WH, WH)
            for sku in ("SKU-A", "SKU-B"):
                container.ledger.receive(sku, WH, 10, f"seed-{sku}")
            yield s
    finally:
        container.close()


def priced(order_id: int, lines: list[tuple[int, int | None, str | None, int]], total: str, country: str) -> Any:
    """orders/create with Shopify's total fields and a shipping address in a country."""
    body = sp.order(order_id, lines)
    body.update(
        total_price=total,
        total_price_set={
            "shop_money": {"amount": total, "currency_code": "USD"},
            "presentment_money": {"amount": total, "currency_code": "USD"},
        },
    )
    body["shipping_address"] |= {"country": "Country", "country_code": country, "province_code": "XX"}
    return body


HTML = {"accept": "text/html"}


def as_(shop: Shop, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def view(shop: Shop, order_id: int) -> dict[str, Any]:
    r = shop.client.get(f"/v1/orders/{order_id}", headers=as_(shop, shop.auditor))
    assert r.status_code == 200, r.text
    return dict(r.json())


def exceptions(shop: Shop) -> list[dict[str, Any]]:
    shop.container.projector.catch_up()
    shop.container.sweeper.sweep()
    r = shop.client.get("/v1/exceptions", params={"kind": "held-order"}, headers=as_(shop, shop.auditor))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def posted(shop: Shop, erp: ErpStandIn) -> None:
    """Feeds and posts what can go to the ERP now; held orders' documents stay waiting."""
    container = shop.container
    poster = ErpPoster(
        container.ledger,
        container.erp_queue,
        HttpErp(erp.url, timeout=30.0),
        CircuitBreaker(threshold=10_000),
        backoff_base=0.0,
        backoff_max=0.0,
        wait=0.05,
        hold_recheck=3600.0,
    )
    try:
        for _ in range(1000):
            fed = container.erp_feeder.step()
            if not poster.step() and not fed and not poster.in_flight:
                return
        raise AssertionError("the poster never settled")
    finally:
        poster.close()


def test_an_order_above_the_limit_is_held_an_exception_and_posted_once_an_operator_releases_it(
    shop: Shop,
) -> None:
    shop.send("orders/create", priced(9001, [(1, None, "SKU-A", 5)], "995.00", "US"))
    shop.send("orders/create", priced(9002, [(1, None, "SKU-A", 1)], "199.00", "CA"))
    shop.drain()
    held = view(shop, 9001)
    assert held["stage"] == "held" and held["open"][:2] == ["release", "ship"]
    assert held["validation"]["holds"] == [
        {"check": "amount", "reason": "total 995.00 USD is above the 500 USD limit"}
    ]
    assert view(shop, 9002)["stage"] == "validated"
    # The orders list (the read model, caught up) shows it under its stage, and it is an exception.
    shop.container.projector.catch_up()
    r = shop.client.get("/v1/orders", params={"stage": "held"}, headers=as_(shop, shop.auditor))
    assert [x["order_id"] for x in r.json()["items"]] == ["9001"]
    [exception] = exceptions(shop)
    assert exception["key"] == "9001" and exception["detail"]["holds"] == held["validation"]["holds"]
    erp = ErpStandIn([])
    try:
        posted(shop, erp)
        assert erp.story("9001") == [] and [p for p, _ in erp.story("9002")] == ["/sales-orders"]
        # Only an admin key releases; an order that is not held cannot be released.
        r = shop.client.post("/v1/orders/9001/release", headers=as_(shop, shop.auditor))
        assert r.status_code == 403
        r = shop.client.post("/v1/orders/9002/release", headers=as_(shop, shop.admin))
        assert r.status_code == 409 and r.json()["type"].endswith("order-conflict")
        assert shop.client.post("/v1/orders/404404/release", headers=as_(shop, shop.admin)).status_code == 404
        r = shop.client.post("/v1/orders/9001/release", headers=as_(shop, shop.admin))
        assert r.status_code == 200, r.text
        assert r.json()["stage"] == "validated" and "release" not in r.json()["open"]
        again = shop.client.post("/v1/orders/9001/release", headers=as_(shop, shop.admin))
        assert again.status_code == 200 and again.json()["stage"] == "validated"
        assert view(shop, 9001)["validation"]["released_by"] == "admin"
        posted(shop, erp)
        assert [p for p, _ in erp.story("9001")] == ["/sales-orders"]
        assert view(shop, 9001)["stage"] == "posted"
        assert exceptions(shop) == []
    finally:
        erp.close()


def test_an_order_shipping_outside_the_regions_is_held_and_a_cancel_voids_it(shop: Shop) -> None:
    shop.send("orders/create", priced(9003, [(1, None, "SKU-A", 2)], "398.00", "FR"))
    shop.drain()
    assert view(shop, 9003)["validation"]["holds"] == [{"check": "region", "reason": "ships to FR, outside CA, US"}]
    assert shop.stock("SKU-A", WH) == (10, 2)  # held, its units stay reserved
    shop.send("orders/cancelled", priced(9003, [(1, None, "SKU-A", 2)], "398.00", "FR") | {"cancel_reason": "fraud"})
    shop.drain()
    assert view(shop, 9003)["stage"] == "cancelled" and shop.stock("SKU-A", WH) == (10, 0)
    erp = ErpStandIn([])
    try:
        posted(shop, erp)
        assert erp.story("9003") == []
        assert [r["status"] for r in shop.container.erp_queue.rows("9003")] == ["voided", "voided"]
        assert exceptions(shop) == []
    finally:
        erp.close()


def refund_with(refund_id: int, order_id: int, txns: list[tuple[str, str]]) -> dict[str, Any]:
    """refunds/create whose money moves in several transactions: (status, amount) each."""
    body = sp.refund(refund_id, order_id, [(1, 1, "no_restock", None)])
    gateways = ("shopify_payments", "gift_card", "manual")
    body["transactions"] = [
        {
            "id": refund_id * 100 + i,
            "order_id": order_id,
            "kind": "refund",
            "gateway": gateway,
            "status": status,
            "amount": amount,
            "currency": "USD",
            "parent_id": None,
        }
        for i, ((status, amount), gateway) in enumerate(zip(txns, gateways, strict=False))
    ]
    return body


def test_a_refund_over_several_transactions_is_confirmed_for_the_successful_ones_once_none_is_pending(
    shop: Shop,
) -> None:
    shop.send("orders/create", priced(9004, [(1, None, "SKU-A", 1)], "150.00", "US"))
    refund = refund_with(9104, 9004, [("success", "60.00"), ("pending", "40.05"), ("failure", "9.95")])
    shop.send("refunds/create", refund)
    shop.drain()
    r = refunded(shop, 9004, 9104)
    assert (r["status"], r["amount"]) == ("recorded", "100.05")  # what the unfailed ones move
    assert {t: x["status"] for t, x in r["outcomes"].items()} == {"910400": "success", "910402": "failure"}
    refund_failed = shop.client.get(
        "/v1/exceptions", params={"kind": "refund-failed"}, headers=as_(shop, shop.auditor)
    ).json()["items"]
    assert [e["key"] for e in refund_failed] == ["9004:9104"]
    shop.send("order_transactions/create", transaction(910401, 9004, "success", amount="40.05"))
    shop.drain()
    r = refunded(shop, 9004, 9104)
    assert (r["status"], r["amount"], r["currency"]) == ("confirmed", "100.05", "USD")
    shop.send("refunds/create", refund, webhook_id="redelivered")  # Shopify redelivers: nothing changes
    shop.drain()
    assert refunded(shop, 9004, 9104)["amount"] == "100.05"
    erp = ErpStandIn([])
    try:
        posted(shop, erp)
        memos = [d for p, d in erp.story("9004") if p == "/credit-memos"]
        assert [(m["amount"], m["currency"]) for m in memos] == [("100.05", "USD")]
        assert refunded(shop, 9004, 9104)["status"] == "settled"
    finally:
        erp.close()


def test_a_refund_whose_transactions_all_failed_is_failed(shop: Shop) -> None:
    shop.send("orders/create", priced(9005, [(1, None, "SKU-A", 1)], "150.00", "US"))
    shop.send("refunds/create", refund_with(9105, 9005, [("failure", "60.00"), ("pending", "40.00")]))
    shop.send("order_transactions/create", transaction(910501, 9005, "failure", amount="40.00"))
    shop.drain()
    r = refunded(shop, 9005, 9105)
    assert r["status"] == "failed" and r["amount"] == "40.00"
    assert "confirm-refund" not in view(shop, 9005)["open"]


def updated_after_refund(order_id: int, refund: dict[str, Any], current: dict[int, int]) -> dict[str, Any]:
    """orders/updated as Shopify sends it after a refund: `current_quantity` lowered by the
    refunded units, and the refund listed under `refunds` (as in Shopify's own order fixtures)."""
    body = sp.order(
        order_id, [(1, None, "SKU-A", 3), (2, None, "SKU-B", 2)], updated_at="2026-11-22T11:00:00-05:00"
    )
    body["financial_status"] = "partially_refunded"
    for li in body["line_items"]:
        li["current_quantity"] = current[li["id"]]
        li["fulfillable_quantity"] = current[li["id"]]
    body["refunds"] = [
        refund
        | {
            "refund_line_items": [
                x | {"line_item": {"id": x["line_item_id"], "quantity": 3, "current_quantity": current[1]}}
                for x in refund["refund_line_items"]
            ]
        }
    ]
    return body


@pytest.mark.parametrize("updated_first", [False, True], ids=["refund-first", "update-first"])
def test_current_quantity_lowered_by_a_refund_is_not_an_edit_but_a_real_edit_still_applies(
    shop: Shop, updated_first: bool
) -> None:
    oid = 9006 + updated_first
    shop.send("orders/create", sp.order(oid, [(1, None, "SKU-A", 3), (2, None, "SKU-B", 2)]))
    shop.send("fulfillments/create", sp.fulfillment(9306 + updated_first, oid, SHOPIFY_WH, [(1, 1)]))
    shop.drain()
    assert shop.stock("SKU-A", WH) == (9, 2) and shop.stock("SKU-B", WH) == (10, 2)
    # The shipped unit of line 1 comes back (a `return` refund); line 2 is edited down by one.
    refund = sp.refund(9206 + updated_first, oid, [(1, 1, "return", SHOPIFY_WH)], amount="199.00")
    update = updated_after_refund(oid, refund, {1: 2, 2: 1})
    for topic, payload in [("refunds/create", refund), ("orders/updated", update)][:: -1 if updated_first else 1]:
        shop.send(topic, payload)
        shop.drain()
    order = shop.container.ledger.history.order(str(oid))
    assert order is not None
    line1, line2 = order.lines["1"], order.lines["2"]
    # Line 1: one unit returned, the two unshipped still reserved (not cancelled as an "edit").
    assert (line1["returned"], line1["cancelled"], line1["shipped"]) == (1, 0, 1)
    assert shop.stock("SKU-A", WH) == (10, 2)
    # Line 2: the unit edited out is released.
    assert line2["cancelled"] == 1 and shop.stock("SKU-B", WH) == (10, 1)
    for m in shop.inbox():
        assert m["status"] == "applied" and "refused" not in (m["reason"] or ""), m
    # The same update again changes nothing.
    shop.send("orders/updated", update, webhook_id="again")
    shop.drain()
    order = shop.container.ledger.history.order(str(oid))
    assert order is not None and (order.lines["1"]["cancelled"], order.lines["2"]["cancelled"]) == (0, 1)


def console_sign_in(shop: Shop, token: str) -> str:
    """Signs the client in to the console with `token`; the CSRF token of its session."""
    shop.client.cookies.clear()
    r = shop.client.post("/console/login", data={"token": token}, headers=HTML, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = shop.client.get("/console/operations", headers=HTML)
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m, page.text[:500]
    return m.group(1)


def test_the_console_shows_why_an_order_is_held_and_an_admin_releases_it_there(shop: Shop) -> None:
    shop.send("orders/create", priced(9101, [(1, None, "SKU-A", 5)], "995.00", "US"))
    shop.drain()
    # An auditor reads why, in plain words, and sees the release button disabled.
    token = console_sign_in(shop, shop.auditor)
    page = shop.client.get("/console/orders/9101", headers=HTML)
    assert page.status_code == 200
    assert "Held by its checks: not posted to the ERP" in page.text
    assert "total 995.00 USD is above the 500 USD limit" in page.text
    assert 'id="release-form"' in page.text and "needs the admin scope" in page.text
    assert "Held by its checks (amount: total 995.00 USD is above the 500 USD limit)" in page.text
    r = shop.client.post("/console/actions/release", data={"order_id": "9101", "csrf": token}, headers=HTML)
    assert r.status_code == 403 and view(shop, 9101)["stage"] == "held"
    # An admin releases it; a wrong CSRF token changes nothing first.
    token = console_sign_in(shop, shop.admin)
    r = shop.client.post(
        "/console/actions/release", data={"order_id": "9101", "csrf": token + "x"}, headers=HTML
    )
    assert r.status_code == 403 and view(shop, 9101)["stage"] == "held"
    r = shop.client.post(
        "/console/actions/release",
        data={"order_id": "9101", "csrf": token},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/orders/9101"
    assert view(shop, 9101)["stage"] == "validated"
    assert view(shop, 9101)["validation"]["released_by"] == "admin"
    page = shop.client.get("/console/orders/9101", headers=HTML)
    assert 'id="release-form"' not in page.text and "Released by admin: it goes on to the ERP" in page.text
    # A second release changes nothing (as over the API); an order never held, or unknown, is
    # refused in words, on the console's own page.
    again = shop.client.post(
        "/console/actions/release", data={"order_id": "9101", "csrf": token}, headers=HTML, follow_redirects=False
    )
    assert again.status_code == 303 and view(shop, 9101)["validation"]["released_by"] == "admin"
    shop.send("orders/create", priced(9102, [(1, None, "SKU-A", 1)], "19.00", "US"))
    shop.drain()
    r = shop.client.post("/console/actions/release", data={"order_id": "9102", "csrf": token}, headers=HTML)
    assert r.status_code == 409 and "text/html" in r.headers["content-type"] and "not held" in r.text
    r = shop.client.post("/console/actions/release", data={"order_id": "404404", "csrf": token}, headers=HTML)
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
